//! Progress on stderr: one row per source (state, packets, bytes, rate, drops, late), drawn
//! with indicatif only when stderr is a terminal; and the one-screen summary at the end.

use crate::error::SourceFailure;
use crate::source::SourceState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// What is known about one source, for progress rows and the summary.
#[derive(Clone, Debug, Default)]
pub struct SourceStatus {
    pub name: String,
    pub origin: String,
    pub state: SourceState,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: Option<u64>,
    pub late: u64,
    pub out_of_order: u64,
    /// Times the capture ended by itself and was resumed, and the time missed in all.
    pub gaps: u32,
    pub gap_ns: u64,
    pub error: Option<SourceFailure>,
}

pub struct Progress {
    multi: Option<MultiProgress>,
    rows: Vec<ProgressBar>,
    last: Vec<(Instant, u64)>,
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress {
    /// Rows are drawn only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool) -> Self {
        let multi = (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        Self {
            multi,
            rows: Vec::new(),
            last: Vec::new(),
        }
    }

    /// Prints a line above the rows (or plainly when there are none).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn update(&mut self, sources: &[SourceStatus]) {
        let Some(multi) = &self.multi else {
            return;
        };
        while self.rows.len() < sources.len() {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            self.rows.push(bar);
            self.last.push((Instant::now(), 0));
        }
        for (i, s) in sources.iter().enumerate() {
            let (t, b) = self.last[i];
            let secs = t.elapsed().as_secs_f64().max(0.001);
            let rate = (s.bytes.saturating_sub(b)) as f64 / secs;
            self.last[i] = (Instant::now(), s.bytes);
            self.rows[i].set_message(format!(
                "{:<28} {:<10} {:>9} pkts {:>10} {:>10}/s drops {:<6} late {}",
                s.name,
                s.state,
                s.packets,
                human_bytes(s.bytes),
                human_bytes(rate as u64),
                s.dropped.map_or("-".to_string(), |d| d.to_string()),
                s.late
            ));
            self.rows[i].tick();
        }
    }

    pub fn clear(&mut self) {
        for r in self.rows.drain(..) {
            r.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// The one-screen summary printed at the end.
pub fn summary(sources: &[SourceStatus], extra: &[String]) -> String {
    let packets: u64 = sources.iter().map(|s| s.packets).sum();
    let bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    let late: u64 = sources.iter().map(|s| s.late).sum();
    let ooo: u64 = sources.iter().map(|s| s.out_of_order).sum();
    let drops: u64 = sources.iter().filter_map(|s| s.dropped).sum();
    let errors = sources.iter().filter(|s| s.error.is_some()).count();
    let mut out = format!(
        "podcap-merge: {} source(s), {packets} packets, {bytes} bytes captured, {ooo} out of order, {late} late, {drops} dropped by capture, {errors} error(s)\n",
        sources.len()
    );
    for s in sources {
        out.push_str(&format!(
            "  {}: {} packets, {} bytes, {} out of order{}{}{}{}\n",
            s.name,
            s.packets,
            s.bytes,
            s.out_of_order,
            if s.gaps > 0 {
                format!(
                    ", resumed {} time(s) after its capture ended: {:.1} s not captured",
                    s.gaps,
                    s.gap_ns as f64 / 1e9
                )
            } else {
                String::new()
            },
            if s.late > 0 {
                format!(", {} late", s.late)
            } else {
                String::new()
            },
            s.dropped
                .map_or(String::new(), |d| format!(", {d} dropped by capture")),
            match (&s.error, &s.state) {
                (Some(e), _) => format!(", ERROR: {e}"),
                // why a source ended, when it is worth saying (a pod deleted…)
                (None, SourceState::Ended(why)) => why
                    .worth_saying()
                    .map_or(String::new(), |w| format!(", ended: {w}")),
                _ => String::new(),
            }
        ));
    }
    for e in extra {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    out
}
