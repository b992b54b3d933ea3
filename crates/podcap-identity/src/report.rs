//! What the linker found, for people (summary lines) and for plots (`--latency-report FILE`,
//! CSV or JSON by the file's extension).

use crate::key::Endpoint;
use crate::latency::{show_ns, Histogram, LatencyTable};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

/// The note every latency output carries.
pub const CLOCK_NOTE: &str = "one-way time = receiver's timestamp - sender's; it includes any \
     clock difference between the nodes";

/// The formats of `--latency-report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Json,
}

impl ReportFormat {
    /// The format a file name asks for (`.csv` or `.json`), or the message naming the fix.
    pub fn of(path: &Path) -> Result<ReportFormat, String> {
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref()
        {
            Some("csv") => Ok(ReportFormat::Csv),
            Some("json") => Ok(ReportFormat::Json),
            _ => Err(format!(
                "--latency-report {}: the file name must end in .csv or .json (that is how the format is chosen)",
                path.display()
            )),
        }
    }
}

/// The linker's findings at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct LinkSummary {
    pub dedup: bool,
    pub window_ns: u64,
    pub capacity: usize,
    /// The most memory the matcher's tables may take, in bytes.
    pub memory_bound: usize,
    /// Packets with an identity (IP packets that parsed).
    pub identified: u64,
    /// Copies linked to an earlier copy from another source.
    pub linked: u64,
    /// Copies `--dedup` dropped, per source index.
    pub dropped: Vec<u64>,
    /// Copies dropped although they were the sender's, because the receiver's copy had been
    /// written first (stamped earlier: a clock difference between nodes).
    pub kept_receiver: u64,
    /// Entries the matcher let go before the window ended, because it was full.
    pub evicted_early: u64,
    pub latency: LatencyTable,
    pub names: HashMap<IpAddr, String>,
    /// Clock rows of the latency report (`kind` `clock`, see [`Row::clock`]), filled by whoever
    /// estimated the clocks (`crate::skew`).
    pub clocks: Vec<Row>,
}

/// One row of the latency report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `pods` (per source pair) or `service` (per Service → backend mapping).
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub p50_ns: i64,
    pub p99_ns: i64,
    pub min_ns: i64,
    pub max_ns: i64,
    pub mean_ns: i64,
}

impl Row {
    /// A clock row: `to`'s clock minus `from`'s (the reference), from `pairs` linked pairs;
    /// p50, p99 and mean hold the offset, min and max the offset ∓ its uncertainty.
    pub fn clock(from: &str, to: &str, pairs: u64, offset_ns: i64, uncertainty_ns: i64) -> Row {
        Row {
            kind: "clock",
            from: from.to_string(),
            to: to.to_string(),
            packets: pairs,
            p50_ns: offset_ns,
            p99_ns: offset_ns,
            min_ns: offset_ns.saturating_sub(uncertainty_ns),
            max_ns: offset_ns.saturating_add(uncertainty_ns),
            mean_ns: offset_ns,
        }
    }
}

fn row(kind: &'static str, from: String, to: String, h: &Histogram) -> Row {
    Row {
        kind,
        from,
        to,
        packets: h.count(),
        p50_ns: h.quantile(0.5),
        p99_ns: h.quantile(0.99),
        min_ns: h.min(),
        max_ns: h.max(),
        mean_ns: h.mean(),
    }
}

impl LinkSummary {
    fn endpoint(&self, e: &Endpoint) -> String {
        match self.names.get(&e.addr) {
            Some(n) => format!("{n} {e}"),
            None => e.to_string(),
        }
    }

    fn source_name(sources: &[String], i: usize) -> String {
        sources
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("source {i}"))
    }

    /// Latency rows: pod pairs (named by source), then Service → backend mappings.
    pub fn rows(&self, sources: &[String]) -> Vec<Row> {
        let mut out: Vec<Row> = self
            .latency
            .pairs
            .iter()
            .map(|(&(s, r), h)| {
                row(
                    "pods",
                    Self::source_name(sources, s),
                    Self::source_name(sources, r),
                    h,
                )
            })
            .collect();
        out.extend(self.latency.services.iter().map(|((svc, backend), h)| {
            row("service", self.endpoint(svc), self.endpoint(backend), h)
        }));
        out.extend(self.clocks.iter().cloned());
        out
    }

    /// Lines for the run's summary.
    pub fn lines(&self, sources: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let dropped: u64 = self.dropped.iter().sum();
        if self.dedup {
            let per: Vec<String> = self
                .dropped
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, n)| format!("{} {n}", Self::source_name(sources, i)))
                .collect();
            let mut l = format!(
                "de-duplicated (--dedup): {dropped} second cop{} of packets captured by two sources dropped{}",
                if dropped == 1 { "y" } else { "ies" },
                if per.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", per.join(", "))
                }
            );
            if self.kept_receiver > 0 {
                l.push_str(&format!(
                    "; {} times the receiver's copy was kept: it was written first (stamped before the sender's: a clock difference between nodes; or, live, the sender's copy arrived late)",
                    self.kept_receiver
                ));
            }
            out.push(l);
        } else {
            out.push(format!(
                "copies across sources: {} packet(s) captured by two sources, both copies kept with the same packet id (frame.packet_id)",
                self.linked
            ));
        }
        let rows = self.rows(sources);
        if !rows.is_empty() {
            out.push(format!("pod-to-pod latency ({CLOCK_NOTE}):"));
            for r in rows {
                let arrow = if r.kind == "service" { "svc " } else { "" };
                out.push(format!(
                    "  {arrow}{} -> {}: p50 {}, p99 {} ({} packets)",
                    r.from,
                    r.to,
                    show_ns(r.p50_ns),
                    show_ns(r.p99_ns),
                    r.packets
                ));
            }
        }
        if self.evicted_early > 0 {
            out.push(format!(
                "copy matching: {} packets left the matcher before its {} s window (it holds {} packets, at most {:.1} MiB): copies further apart were not linked",
                self.evicted_early,
                self.window_ns as f64 / 1e9,
                self.capacity,
                self.memory_bound as f64 / (1 << 20) as f64
            ));
        }
        out
    }

    /// Writes the latency report to `path`, CSV or JSON by its extension.
    pub fn write_report(&self, path: &Path, sources: &[String]) -> io::Result<()> {
        let format = ReportFormat::of(path).map_err(io::Error::other)?;
        let rows = self.rows(sources);
        let mut f = io::BufWriter::new(std::fs::File::create(path)?);
        match format {
            ReportFormat::Csv => {
                writeln!(
                    f,
                    "kind,from,to,packets,p50_us,p99_us,min_us,max_us,mean_us"
                )?;
                for r in &rows {
                    writeln!(
                        f,
                        "{},{},{},{},{},{},{},{},{}",
                        r.kind,
                        csv_field(&r.from),
                        csv_field(&r.to),
                        r.packets,
                        us(r.p50_ns),
                        us(r.p99_ns),
                        us(r.min_ns),
                        us(r.max_ns),
                        us(r.mean_ns)
                    )?;
                }
            }
            ReportFormat::Json => {
                let items: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "kind": r.kind,
                            "from": r.from,
                            "to": r.to,
                            "packets": r.packets,
                            "p50_us": us_f(r.p50_ns),
                            "p99_us": us_f(r.p99_ns),
                            "min_us": us_f(r.min_ns),
                            "max_us": us_f(r.max_ns),
                            "mean_us": us_f(r.mean_ns),
                        })
                    })
                    .collect();
                let doc = serde_json::json!({ "note": CLOCK_NOTE, "latency": items });
                serde_json::to_writer_pretty(&mut f, &doc).map_err(io::Error::other)?;
                writeln!(f)?;
            }
        }
        f.flush()
    }
}

fn us(ns: i64) -> String {
    format!("{:.3}", ns as f64 / 1000.0)
}

fn us_f(ns: i64) -> f64 {
    (ns as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
