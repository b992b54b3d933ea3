//! Progress on stderr: one row per source (state, packets, bytes, rate, drops, late), drawn
//! with indicatif only when stderr is a terminal; and the one-screen summary at the end.

use crate::error::SourceFailure;
use crate::source::SourceState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
    /// Live: the source's delivery lag (ns) over the last 10 s (`crate::lag`), once known.
    pub lag: Option<u64>,
    pub out_of_order: u64,
    /// Times the capture ended by itself and was resumed, and the time missed in all.
    pub gaps: u32,
    pub gap_ns: u64,
    pub error: Option<SourceFailure>,
    /// What the decoder worked around, by kind (input errors repaired, warnings).
    pub notes: podcap_format::NoteTally,
}

pub struct Progress {
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
    rows: Vec<ProgressBar>,
    rates: Vec<Rate>,
    /// When the rates were last sampled.
    sampled: Option<Instant>,
}

/// Bytes per second over a sliding interval of [`RATE_WINDOW`], sampled every
/// [`RATE_EVERY`]: a capture delivers in bursts, so the bytes of one 25 ms tick say nothing.
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3);
const RATE_EVERY: Duration = Duration::from_millis(250);

impl Rate {
    fn push(&mut self, now: Instant, bytes: u64) {
        if bytes == 0 {
            return; // the rate counts from the first bytes, not from the source's start
        }
        self.samples.push_back((now, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// None until half a second has been seen.
    fn per_sec(&self) -> Option<f64> {
        let (t0, b0) = self.samples.front()?;
        let (t1, b1) = self.samples.back()?;
        let span = t1.duration_since(*t0).as_secs_f64();
        (span >= 0.5).then(|| b1.saturating_sub(*b0) as f64 / span)
    }
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

/// The terminal's width in columns (stderr's), 80 when it cannot be told.
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize we pass; a failure leaves it zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// `s` in at most `width` characters: its end kept (a pod's name ends with what tells it
/// apart), `…` for what was cut.
fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let keep: String = s.chars().skip(n - width.saturating_sub(1)).collect();
    format!("…{keep}")
}

/// The columns after the name: state, packets, bytes, rate, drops, late, lag.
const STATE_W: usize = 10;
/// Width of everything but the name, the spinner ("x ") included, and a last column left
/// free (a line that fills the terminal wraps on some).
const FIXED_W: usize = 2 + STATE_W + 1 + 8 + 1 + 9 + 1 + 10 + 1 + 5 + 1 + 5 + 1 + 6 + 1 + 1;

fn columns(width: usize, cells: [&str; 8]) -> String {
    let name_w = width.saturating_sub(FIXED_W).max(8);
    format!(
        "{:<name_w$} {:<STATE_W$} {:>8} {:>9} {:>10} {:>5} {:>5} {:>6}",
        fit(cells[0], name_w),
        fit(cells[1], STATE_W),
        cells[2],
        cells[3],
        cells[4],
        cells[5],
        cells[6],
        cells[7],
    )
}

/// A source's lag as a progress cell: `4ms`, `1.3s`, `<1ms`, `-` while unknown.
fn show_lag(lag: Option<u64>) -> String {
    match lag {
        None => "-".into(),
        Some(ns) if ns < 1_000_000 => "<1ms".into(),
        Some(ns) if ns < 1_000_000_000 => format!("{}ms", ns / 1_000_000),
        Some(ns) => format!("{:.1}s", ns as f64 / 1e9),
    }
}

impl Progress {
    /// Rows are drawn only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool) -> Self {
        let multi = (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        Self {
            multi,
            header: None,
            rows: Vec::new(),
            rates: Vec::new(),
            sampled: None,
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
        let now = Instant::now();
        if self
            .sampled
            .is_some_and(|t| now.duration_since(t) < RATE_EVERY)
        {
            return;
        }
        self.sampled = Some(now);
        let width = term_width();
        let style = |template| {
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
        };
        let header = self.header.get_or_insert_with(|| {
            let h = multi.add(ProgressBar::new_spinner());
            h.set_style(style("  {msg}"));
            h
        });
        header.set_message(columns(
            width,
            [
                "SOURCE", "STATE", "PACKETS", "BYTES", "RATE", "DROPS", "LATE", "LAG",
            ],
        ));
        while self.rows.len() < sources.len() {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style("{spinner} {msg}"));
            self.rows.push(bar);
            self.rates.push(Rate::default());
        }
        for (i, s) in sources.iter().enumerate() {
            self.rates[i].push(now, s.bytes);
            let rate = match self.rates[i].per_sec() {
                Some(r) => format!("{}/s", human_bytes(r as u64)),
                None => "-".into(),
            };
            let state = s.state.short();
            self.rows[i].set_message(columns(
                width,
                [
                    &s.name,
                    state,
                    &s.packets.to_string(),
                    &human_bytes(s.bytes),
                    &rate,
                    &s.dropped.map_or("-".to_string(), |d| d.to_string()),
                    &s.late.to_string(),
                    &show_lag(s.lag),
                ],
            ));
            self.rows[i].tick();
        }
    }

    /// Removes the rows (before the summary is printed).
    pub fn clear(&mut self) {
        for r in self.rows.drain(..).chain(self.header.take()) {
            r.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// The one-screen summary printed at the end: a headline, then one row per source with the
/// same columns every time, then what else the run has to say (`extra`). `errors` counts the
/// failed sources, and the output and the run when they failed.
pub fn summary(sources: &[SourceStatus], errors: usize, extra: &[String]) -> String {
    let packets: u64 = sources.iter().map(|s| s.packets).sum();
    let bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    let late: u64 = sources.iter().map(|s| s.late).sum();
    let ooo: u64 = sources.iter().map(|s| s.out_of_order).sum();
    let drops: u64 = sources.iter().filter_map(|s| s.dropped).sum();
    let mut out = format!(
        "podcap-merge: {} source(s), {packets} packets, {bytes} bytes captured, {ooo} out of order, {late} late, {drops} dropped by capture, {errors} error(s)\n",
        sources.len()
    );
    if !sources.is_empty() {
        let name_w = sources
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("SOURCE".len());
        let row = |cells: [&str; 8]| {
            format!(
                "  {:<name_w$} {:>9} {:>11} {:>6} {:>6} {:>7} {:>12}  {}\n",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7]
            )
        };
        out.push_str(&row([
            "SOURCE",
            "PACKETS",
            "BYTES",
            "OOO",
            "LATE",
            "DROPPED",
            "NOT CAPTURED",
            "END",
        ]));
        for s in sources {
            let gaps = if s.gaps > 0 {
                format!("{:.1} s ({}x)", s.gap_ns as f64 / 1e9, s.gaps)
            } else {
                "-".to_string()
            };
            let end = match (&s.error, &s.state) {
                (Some(e), _) => format!("ERROR: {e}"),
                (None, SourceState::Ended(why)) => why
                    .worth_saying()
                    .map_or("ended".to_string(), |w| format!("ended: {w}")),
                (None, state) => state.to_string(),
            };
            // what the decoder repaired or adjusted, counted by kind
            let end = if s.notes.is_empty() {
                end
            } else {
                format!("{end}; {}", s.notes)
            };
            out.push_str(&row([
                &s.name,
                &s.packets.to_string(),
                &s.bytes.to_string(),
                &s.out_of_order.to_string(),
                &s.late.to_string(),
                &s.dropped.map_or("-".to_string(), |d| d.to_string()),
                &gaps,
                &end,
            ]));
        }
    }
    for e in extra {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    out
}
