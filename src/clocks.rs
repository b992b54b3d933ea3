//! Clocks that disagree between nodes (docs/design.md §12): the engine's side of
//! `podcap_identity::skew`.
//!
//! Each pod's packets are stamped by its node's clock; commands and files are each a clock of
//! their own. The linked copies of packets (one leaving a node, one arriving on another) give
//! the offset between two clocks, NTP style. Without `--correct-skew` the estimate is only
//! reported (summary, `--latency-report`), from the pairs as written. With it, each source's
//! timestamps are shifted by its node's correction before the merge:
//!
//! - live: a second linker looks at the records as they arrive (before the merge, raw
//!   timestamps) and feeds the estimator; the merge writes nothing until every node has a
//!   confident estimate, or [`SKEW_HOLD`] after the first packet, whichever comes first. Then
//!   the corrections are applied to what is queued and to everything after. A node that
//!   becomes confident later is corrected from then on (its earlier packets are counted as
//!   written uncorrected), and a correction that moves by more than [`RESHIFT_NS`] (drift) is
//!   applied anew.
//! - offline (`merge`): two passes; the first learns the offsets of the whole files, the
//!   second merges with each input shifted by its correction, constant over the file.
//!
//! The shift applied to a source goes into its interfaces' comments; the summary counts the
//! pairs received before they were sent, as captured and as written.

use crate::merge::Merger;
use crate::output::Output;
use podcap_format::Record;
use podcap_identity::latency::show_ns;
use podcap_identity::skew::{SharedSkew, SkewEstimator};
use podcap_identity::{LinkOptions, Linker, PairObserver};
use std::io::Write;
use std::time::{Duration, Instant};

/// Live `--correct-skew`: the longest the merge waits for confident estimates before it
/// writes (uncorrected what has none).
pub const SKEW_HOLD: Duration = Duration::from_secs(5);
/// A correction is applied anew when the estimate has moved by more than this (100 µs).
pub const RESHIFT_NS: i64 = 100_000;
/// How often a live run looks at the estimates again once it writes.
const RECHECK: Duration = Duration::from_secs(1);
/// ... and while it waits for them.
const WAITING_CHECK: Duration = Duration::from_millis(50);

/// What the command line and the offline driver ask.
#[derive(Clone, Debug, Default)]
pub struct ClockConfig {
    /// `--correct-skew`.
    pub correct: bool,
    /// Offline second pass: the shift of each input, and what the first pass learned.
    pub fixed: Option<(Vec<i64>, SkewEstimator)>,
}

/// The stage, as the engine runs it (only when copies are linked).
pub struct Clocks {
    /// From the pairs as written (after the merge, corrected timestamps when correcting).
    written: SharedSkew,
    /// Live `--correct-skew`: a linker of the records as they arrive, and what it learns.
    tap: Option<(Linker, SharedSkew)>,
    /// Offline second pass: what the first pass learned.
    learned: Option<SkewEstimator>,
    fixed: Option<Vec<i64>>,
    /// The shift applied to each source's timestamps from now on.
    applied: Vec<Option<i64>>,
    /// Packets of a source written before it had a correction (sources of non-reference
    /// nodes only): counted as they arrive, less those still queued when it came.
    uncorrected: Vec<u64>,
    nodes: Vec<String>,
    first_packet: Option<Instant>,
    /// The reference clock chosen among cluster nodes, if any.
    reference: Option<String>,
    /// Live `--correct-skew`: the merge may write.
    open: bool,
    checked: Option<Instant>,
}

/// What the stage found, for the summary and the latency report.
#[derive(Clone, Debug, Default)]
pub struct ClockReport {
    /// The estimates from the timestamps as captured.
    pub captured: SkewEstimator,
    pub corrected: bool,
    /// Pairs between nodes received before they were sent, as written, and their number.
    pub written_reversed: u64,
    pub written_pairs: u64,
    /// (node, packets written uncorrected) of nodes whose correction came late or never.
    pub uncorrected: Vec<(String, u64)>,
    /// (source, shift applied at the end).
    pub applied: Vec<Option<i64>>,
}

impl Clocks {
    pub fn new(cfg: &ClockConfig, live: bool) -> Self {
        let (fixed, learned) = match &cfg.fixed {
            Some((shifts, est)) => (Some(shifts.clone()), Some(est.clone())),
            None => (None, None),
        };
        let tap = (cfg.correct && live && fixed.is_none())
            .then(|| (Linker::new(LinkOptions::default()), SharedSkew::default()));
        let mut c = Self {
            written: SharedSkew::default(),
            open: tap.is_none(),
            tap,
            learned,
            fixed,
            applied: Vec::new(),
            uncorrected: Vec::new(),
            nodes: Vec::new(),
            first_packet: None,
            reference: None,
            checked: None,
        };
        if let Some((linker, est)) = &mut c.tap {
            linker.add_observer(Box::new(est.clone()));
        }
        c
    }

    /// Receives the pairs of the link stage (as written).
    pub fn observer(&self) -> Box<dyn PairObserver> {
        Box::new(self.written.clone())
    }

    /// A source joined: `node` is the clock that stamps it; `is_node`: a cluster node (a pod's
    /// `spec.nodeName`), not a clock of the source's own.
    pub fn started(&mut self, idx: usize, node: &str, is_node: bool) {
        // The reference: the cluster node with the lowest name (pods are listed in name order,
        // so the first pod's node would change from run to run), chosen again as nodes join
        // until corrections are applied; otherwise the first source's clock.
        let choose = is_node
            && !(self.tap.is_some() && self.open)
            && self.reference.as_deref().is_none_or(|r| node < r);
        if choose {
            self.reference = Some(node.to_string());
        }
        for est in std::iter::once(&self.written).chain(self.tap.as_ref().map(|(_, e)| e)) {
            let mut est = est.lock();
            est.set_node(idx, node);
            if choose {
                est.set_reference(node);
            }
        }
        if self.nodes.len() <= idx {
            self.nodes.resize(idx + 1, String::new());
            self.applied.resize(idx + 1, None);
            self.uncorrected.resize(idx + 1, 0);
        }
        self.nodes[idx] = node.to_string();
        if let Some(shifts) = &self.fixed {
            self.applied[idx] = shifts.get(idx).copied().filter(|s| *s != 0);
        }
    }

    /// A record of `idx` arrived: the tap learns from it (raw), and a packet gets the
    /// source's shift.
    #[inline]
    pub fn arrived(&mut self, idx: usize, rec: &mut Record) {
        if let Some((linker, _)) = &mut self.tap {
            let mut copy = rec.clone();
            let _ = linker.observe(idx, &mut copy);
        }
        if let Record::Packet(p) = rec {
            if self.first_packet.is_none() {
                self.first_packet = Some(Instant::now());
            }
            match self.applied.get(idx).copied().flatten() {
                Some(d) => {
                    p.ts = p.ts.map(|ts| (ts as i64).saturating_add(d).max(0) as u64);
                }
                None if self.tap.is_some() && !self.is_reference(idx) => {
                    if let Some(n) = self.uncorrected.get_mut(idx) {
                        *n += 1;
                    }
                }
                None => {}
            }
        }
    }

    fn is_reference(&self, idx: usize) -> bool {
        let Some((_, est)) = &self.tap else {
            return false;
        };
        let est = est.lock();
        est.reference() == self.nodes.get(idx).map(String::as_str)
    }

    /// Live `--correct-skew`: whether the merge must still wait for estimates. Applies the
    /// corrections once they are confident (or the wait is over) and again when they move.
    pub fn hold<W: Write>(&mut self, merger: &mut Merger, output: &mut Output<W>) -> bool {
        let Some((_, shared)) = &self.tap else {
            return false;
        };
        let now = Instant::now();
        let every = if self.open { RECHECK } else { WAITING_CHECK };
        if self.checked.is_some_and(|t| now.duration_since(t) < every) {
            return !self.open;
        }
        self.checked = Some(now);
        if !merger.any_open() {
            self.first_packet = Some(now - SKEW_HOLD); // nothing more will come: stop waiting
        }
        let Some(first) = self.first_packet else {
            return true; // no packet yet: the interfaces wait for their clock's comment
        };
        let est = shared.lock();
        let corrections = est.corrections();
        let reference = est.reference().map(str::to_string);
        let all_confident = self.nodes.iter().enumerate().all(|(i, n)| {
            Some(n) == reference.as_ref() || corrections.get(i).copied().flatten().is_some()
        });
        if !self.open && !all_confident && now.duration_since(first) < SKEW_HOLD {
            return true;
        }
        self.open = true;
        for idx in 0..self.applied.len() {
            let Some(want) = corrections.get(idx).copied().flatten() else {
                continue;
            };
            let have = self.applied[idx];
            if have.is_some_and(|h| (want - h).abs() <= RESHIFT_NS) {
                continue;
            }
            if have.is_none() && want == 0 {
                self.applied[idx] = Some(0); // the reference: nothing to do
                continue;
            }
            merger.shift(idx, want - have.unwrap_or(0));
            if have.is_none() {
                // what is still queued was corrected just now
                let queued = merger.queued_packets(idx) as u64;
                self.uncorrected[idx] = self.uncorrected[idx].saturating_sub(queued);
            }
            self.applied[idx] = Some(want);
            output.set_clock_note(idx, note(&est, &self.nodes[idx], want));
        }
        false
    }

    /// Live `--correct-skew` at the end of a run: stop waiting; what has no estimate stays
    /// uncorrected.
    pub fn release<W: Write>(&mut self, merger: &mut Merger, output: &mut Output<W>) {
        if self.tap.is_some() && !self.open {
            self.first_packet = Some(Instant::now() - SKEW_HOLD);
            self.checked = None;
            let _ = self.hold(merger, output);
        }
    }

    /// Offline second pass: the comment of a shifted input (before anything of it is written).
    pub fn announce<W: Write>(&self, output: &mut Output<W>, idx: usize) {
        if let (Some(d), Some(est)) = (self.applied.get(idx).copied().flatten(), &self.learned) {
            output.set_clock_note(idx, note(est, &self.nodes[idx], d));
        }
    }

    pub fn finish(self) -> ClockReport {
        let written = self.written.lock().clone();
        let corrected = self.tap.is_some() || self.fixed.is_some();
        let captured = match (&self.tap, self.learned) {
            (Some((_, est)), _) => est.lock().clone(),
            (None, Some(est)) => est,
            (None, None) => written.clone(),
        };
        let mut uncorrected: Vec<(String, u64)> = Vec::new();
        for (idx, &n) in self.uncorrected.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let node = &self.nodes[idx];
            match uncorrected.iter_mut().find(|(m, _)| m == node) {
                Some(e) => e.1 += n,
                None => uncorrected.push((node.clone(), n)),
            }
        }
        ClockReport {
            captured,
            corrected,
            written_reversed: written.received_before_sent(),
            written_pairs: written.inter_node_pairs(),
            uncorrected,
            applied: self.applied,
        }
    }
}

/// The comment of a shifted source's interfaces.
fn note(est: &SkewEstimator, node: &str, shift: i64) -> String {
    let reference = est.reference().unwrap_or("?");
    let why = est
        .estimate(node)
        .map(|e| {
            format!(
                "{node} is {}{} (± {}) from {reference}",
                if e.offset_ns >= 0 { "+" } else { "" },
                show_ns(e.offset_ns),
                show_ns(e.uncertainty_ns)
            )
        })
        .unwrap_or_else(|| node.to_string());
    format!(
        "clock shifted by {}{} by podcap-merge --correct-skew ({why})",
        if shift >= 0 { "+" } else { "" },
        show_ns(shift)
    )
}

impl ClockReport {
    /// The summary's lines about clocks (none when no pair crossed nodes).
    pub fn lines(&self) -> Vec<String> {
        let mut v = self.captured.lines();
        let reversed = self.captured.received_before_sent();
        let pairs = self.captured.inter_node_pairs();
        if self.corrected {
            if pairs == 0 {
                v.push(
                    "clocks: --correct-skew corrected nothing: no packet was linked between \
                     sources on different clocks (copies more than 2 s apart are not linked)"
                        .to_string(),
                );
            } else {
                v.push(format!(
                    "clocks: received before sent: {reversed} of {pairs} pairs as captured, {} \
                     as written (--correct-skew)",
                    self.written_reversed
                ));
            }
            for (node, n) in &self.uncorrected {
                v.push(format!(
                    "clocks: {n} packets of {node} written uncorrected (no confident estimate \
                     for its clock yet)"
                ));
            }
        } else if reversed > 0 {
            v.push(format!(
                "clocks: {reversed} of {pairs} linked pairs between nodes look received before \
                 they were sent; --correct-skew shifts each node's timestamps by its estimate"
            ));
        }
        v
    }
}
