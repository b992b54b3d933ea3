//! The one parser for every time flag (`--reorder-window`, `--duration`, `-a duration:`,
//! `-b duration:`/`interval:`, `--max-duration`, `--start-timeout`, `demo --duration`).

use std::time::Duration;

/// Parses `300ms`, `2s`, `1.5` (seconds), `90s`, `5m`, `1h`, `250us`/`250µs`, `10ns`.
/// A number without a unit is seconds, as dumpcap and tcpdump take their times.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use ns, us, ms, s, m or h (e.g. 300ms, 2s, 1.5, 1h)"
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a time such as 300ms, 2s, 1.5 or 1h"))?;
    Duration::try_from_secs_f64(v * scale).map_err(|_| format!("{s:?}: not a usable time"))
}

/// A time flag's value as clap holds it: parsed by [`parse_duration`], shown as a user would
/// write it (so defaults read `300ms`, `24h` in `--help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub Duration);

impl Time {
    pub const fn secs(s: u64) -> Self {
        Time(Duration::from_secs(s))
    }

    /// The value, checked to lie within `min..=max`; the message names the flag.
    pub fn within(self, flag: &str, min: Duration, max: Duration) -> Result<Duration, String> {
        if self.0 < min || self.0 > max {
            return Err(format!(
                "{flag} {self}: must be between {} and {}",
                show(min),
                show(max)
            ));
        }
        Ok(self.0)
    }
}

impl std::str::FromStr for Time {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Time)
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&show(self.0))
    }
}

/// A duration as a user would write it back.
pub fn show(d: Duration) -> String {
    let s = d.as_secs_f64();
    if d.is_zero() {
        "0".into()
    } else if s < 1.0 {
        format!("{}ms", (s * 1000.0 * 1000.0).round() / 1000.0)
    } else if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{}h", s / 3600.0)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("300ms"), Ok(ms(300)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1.5"), Ok(ms(1500)));
        assert_eq!(parse_duration("60"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "ms", "1e20", "-1", "1x", "1.2.3s", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(Time(ms(0)).within("--duration", ms(1), ms(10)).is_err());
        assert_eq!(Time(ms(5)).within("--duration", ms(1), ms(10)), Ok(ms(5)));
        assert_eq!(show(ms(300)), "300ms");
        assert_eq!(show(ms(2500)), "2.5s");
        assert_eq!(show(Duration::from_secs(86400)), "24h");
    }
}
