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
/// How often the reference is chosen again while the merge waits ([`best_reference`]: a solve
/// per candidate).
const RECHOOSE: Duration = Duration::from_millis(500);

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
    /// Whether each source's clock is a cluster node's (not a command's or a file's own).
    cluster: Vec<bool>,
    /// The reference clock (see [`Clocks::started`] and [`best_reference`]).
    reference: Option<String>,
    /// Live `--correct-skew`: the merge may write.
    open: bool,
    checked: Option<Instant>,
    rechosen: Option<Instant>,
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
            cluster: Vec::new(),
            reference: None,
            checked: None,
            rechosen: None,
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
        // a clock of the source's own is unique even when two inputs share a name (`a/x.pcap`,
        // `b/x.pcap`): two files are two clocks
        let own;
        let node = if !is_node && self.nodes.iter().any(|n| n == node) {
            let mut k = 2;
            while self.nodes.iter().any(|n| *n == format!("{node}#{k}")) {
                k += 1;
            }
            own = format!("{node}#{k}");
            own.as_str()
        } else {
            node
        };
        // The reference, until corrections are applied: the cluster node with the lowest name
        // (pods are listed in name order, so the first pod's node would change from run to
        // run); without cluster nodes, the first source's clock. Before the corrections are
        // applied (and at the end of a run that applies none) it moves to the best connected
        // clock ([`best_reference`]).
        let choose = !(self.tap.is_some() && self.open)
            && match &self.reference {
                None => true,
                Some(r) => is_node && (!self.is_cluster_node(r) || node < r.as_str()),
            };
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
            self.cluster.resize(idx + 1, false);
        }
        self.nodes[idx] = node.to_string();
        self.cluster[idx] = is_node;
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
                    p.ts = p.ts.map(|ts| ts.saturating_add_signed(d));
                }
                None if self.tap.is_some() && self.open && !self.is_reference(idx) => {
                    if let Some(n) = self.uncorrected.get_mut(idx) {
                        *n += 1;
                    }
                }
                None => {}
            }
        }
    }

    /// Whether `clock` is a cluster node's (not a command's or a file's own).
    fn is_cluster_node(&self, clock: &str) -> bool {
        self.nodes
            .iter()
            .zip(&self.cluster)
            .any(|(n, c)| *c && n == clock)
    }

    fn is_reference(&self, idx: usize) -> bool {
        self.reference.is_some() && self.reference.as_ref() == self.nodes.get(idx)
    }

    /// The clocks that may be the reference, best first: cluster nodes by name, or (none)
    /// every clock in the order its source joined.
    fn candidates(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let cluster = self.cluster.iter().any(|c| *c);
        for (n, c) in self.nodes.iter().zip(&self.cluster) {
            if (*c || !cluster) && !n.is_empty() && !v.contains(n) {
                v.push(n.clone());
            }
        }
        if cluster {
            v.sort();
        }
        v
    }

    /// Moves the reference of `est` (and of the pairs as written) to the best connected clock.
    fn rechoose(&mut self, est: &mut SkewEstimator) {
        let Some(best) = best_reference(est, &self.candidates()) else {
            return;
        };
        if self.reference.as_ref() != Some(&best) {
            if self.tap.is_some() {
                self.written.lock().set_reference(&best);
            }
            self.reference = Some(best);
        }
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
        // (sources that all ended do not end the wait: pods register one by one and a watcher
        // may find more; the end of the run does, by `release`)
        let Some(first) = self.first_packet else {
            return true; // no packet yet: the interfaces wait for their clock's comment
        };
        let shared = shared.clone();
        let mut est = shared.lock();
        if !self.open
            && self
                .rechosen
                .is_none_or(|t| now.duration_since(t) >= RECHOOSE)
        {
            self.rechosen = Some(now);
            self.rechoose(&mut est);
        }
        let corrections = est.corrections();
        let reference = est.reference().map(str::to_string);
        let all_confident = self.nodes.iter().enumerate().all(|(i, n)| {
            Some(n) == reference.as_ref() || corrections.get(i).copied().flatten().is_some()
        });
        if !self.open && !all_confident && now.duration_since(first) < SKEW_HOLD {
            return true;
        }
        if !self.open {
            self.open = true;
            // from now on what a non-reference source without a correction delivers is written
            // uncorrected, starting with what it has queued (less, below, if it gets one now)
            for idx in 0..self.uncorrected.len() {
                self.uncorrected[idx] = if self.is_reference(idx) {
                    0
                } else {
                    merger.queued_packets(idx) as u64
                };
            }
        }
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

    /// Live `--correct-skew` at the end of a run (or when no source can come any more): stop
    /// waiting; what has no estimate stays uncorrected.
    pub fn release<W: Write>(&mut self, merger: &mut Merger, output: &mut Output<W>) {
        if self.tap.is_some() && !self.open {
            self.first_packet = Some(Instant::now() - SKEW_HOLD);
            self.checked = None;
            self.rechosen = None;
            let _ = self.hold(merger, output);
        }
    }

    /// Offline second pass: the comment of a shifted input (before anything of it is written).
    pub fn announce<W: Write>(&self, output: &mut Output<W>, idx: usize) {
        if let (Some(d), Some(est)) = (self.applied.get(idx).copied().flatten(), &self.learned) {
            output.set_clock_note(idx, note(est, &self.nodes[idx], d));
        }
    }

    pub fn finish(mut self) -> ClockReport {
        if self.tap.is_none() && self.learned.is_none() {
            // nothing was corrected: report from the best connected clock
            let written = self.written.clone();
            self.rechoose(&mut written.lock());
        }
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

/// Of `candidates` (best first), the clock from which the most other clocks have a confident
/// estimate: a reference with no pair to the others would correct nothing. Leaves it set in
/// `est`.
fn best_reference(est: &mut SkewEstimator, candidates: &[String]) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for c in candidates {
        est.set_reference(c);
        let n = est.estimates().iter().filter(|(_, e)| e.confident).count();
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, c));
        }
    }
    let (_, best) = best?;
    est.set_reference(best);
    Some(best.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn correcting() -> Clocks {
        Clocks::new(
            &ClockConfig {
                correct: true,
                fixed: None,
            },
            true,
        )
    }

    #[test]
    fn live_correction_holds_before_any_source_joined() {
        let mut clocks = correcting();
        let mut merger = Merger::new();
        let mut output = Output::new(Vec::new()).expect("output");
        // no source yet: nothing is open, but more will come; the wait must not end here
        assert!(clocks.hold(&mut merger, &mut output));
        assert!(!clocks.open);
    }

    #[test]
    fn live_correction_waits_for_sources_to_come_until_released() {
        let mut clocks = correcting();
        let mut merger = Merger::new();
        let mut output = Output::new(Vec::new()).expect("output");
        let idx = merger.add_source_at(0);
        clocks.started(idx, "node-a", true);
        assert!(clocks.hold(&mut merger, &mut output), "a source is open");
        // the first pod's capture ended before the others registered: still waiting
        merger.close(idx);
        clocks.checked = None;
        assert!(clocks.hold(&mut merger, &mut output));
        // no source can come any more
        clocks.release(&mut merger, &mut output);
        assert!(!clocks.hold(&mut merger, &mut output));
    }

    /// A live `--correct-skew` run with pod-0, pod-1, pod-2 on node-a, node-b, node-c.
    fn three_pods_on_three_nodes() -> (Clocks, Merger, Output<Vec<u8>>) {
        let mut clocks = correcting();
        let mut merger = Merger::new();
        let mut output = Output::new(Vec::new()).expect("output");
        for (node, idx) in [("node-a", 0), ("node-b", 1), ("node-c", 2)] {
            assert_eq!(merger.add_source_at(0), idx);
            output.add_source(crate::output::SourceLabel {
                name: format!("pod-{idx}"),
                origin: format!("shop/pod-{idx}"),
                node: Some(node.to_string()),
            });
            clocks.started(idx, node, true);
        }
        (clocks, merger, output)
    }

    fn packet(ts: u64) -> Record {
        Record::Packet(podcap_format::Packet {
            iface: 0,
            ts: Some(ts),
            orig_len: 4,
            data: vec![0u8; 4].into(),
            flags: None,
        })
    }

    #[test]
    fn packets_written_uncorrected_are_counted_from_the_opening() {
        // node-a (lowest name) is the reference at first; node-b and node-c are linked, and
        // node-b becomes the reference: its packets are not "written uncorrected", node-a's
        // queued ones are (it never gets an estimate), node-c's none (corrected when opening)
        let (mut clocks, mut merger, mut output) = three_pods_on_three_nodes();
        for idx in 0..3 {
            for i in 0..5 {
                let mut rec = packet(1_700_000_000_000_000_000 + i);
                clocks.arrived(idx, &mut rec);
                merger.push_at(idx, rec, 0);
            }
        }
        let tap = clocks.tap.as_ref().map(|(_, e)| e.clone()).expect("tap");
        exchange(&tap, 1, 2);
        clocks.first_packet = Some(Instant::now() - SKEW_HOLD);
        assert!(!clocks.hold(&mut merger, &mut output));
        assert_eq!(clocks.reference.as_deref(), Some("node-b"));
        // one more of node-a after the opening: written uncorrected too
        let mut rec = packet(1_700_000_000_000_000_009);
        clocks.arrived(0, &mut rec);
        assert_eq!(clocks.uncorrected, [6, 0, 0]);
        assert_eq!(clocks.finish().uncorrected, [("node-a".to_string(), 6)]);
    }

    #[test]
    fn a_node_with_more_pods_but_no_pairs_is_not_the_reference() {
        // node-a runs two pods and has no pair with anyone; node-b and node-c are linked
        let mut clocks = Clocks::new(&ClockConfig::default(), false);
        clocks.started(0, "node-a", true);
        clocks.started(1, "node-a", true);
        clocks.started(2, "node-b", true);
        clocks.started(3, "node-c", true);
        exchange(&clocks.written, 2, 3);
        assert_eq!(clocks.finish().captured.reference(), Some("node-b"));
    }

    /// Pairs both ways between sources `a` and `b` (`b`'s clock 40 ms ahead, 5 ms each way),
    /// 10 s of them, 20 per second.
    fn exchange(est: &SharedSkew, a: usize, b: usize) {
        const MS: u64 = 1_000_000;
        let mut est = est.lock();
        for i in 0..200u64 {
            let t = 1_700_000_000_000_000_000 + i * 50 * MS;
            let (s, r) = if i % 2 == 0 { (a, b) } else { (b, a) };
            let (sts, rts) = if s == a {
                (t, t + 45 * MS)
            } else {
                (t + 40 * MS, t + 5 * MS)
            };
            est.add(&podcap_identity::LinkedPair {
                sender: s,
                receiver: r,
                sender_ts: sts,
                receiver_ts: rts,
            });
        }
    }

    #[test]
    fn the_reference_is_a_clock_connected_to_the_others() {
        // node-a has the lowest name but no pair with anyone: node-b, linked to node-c,
        // becomes the reference, so node-c is corrected
        let mut clocks = Clocks::new(&ClockConfig::default(), false);
        clocks.started(0, "node-a", true);
        clocks.started(1, "node-b", true);
        clocks.started(2, "node-c", true);
        exchange(&clocks.written, 1, 2);
        let report = clocks.finish();
        assert_eq!(report.captured.reference(), Some("node-b"));
        let c = report
            .captured
            .estimate("node-c")
            .expect("node-c from node-b");
        assert!((c.offset_ns - 40_000_000).abs() < 100_000, "{c:?}");

        // when the lowest is connected, it stays the reference
        let mut clocks = Clocks::new(&ClockConfig::default(), false);
        clocks.started(0, "node-c", true);
        clocks.started(1, "node-a", true);
        exchange(&clocks.written, 1, 0);
        assert_eq!(clocks.finish().captured.reference(), Some("node-a"));
    }

    #[test]
    fn live_correction_chooses_a_connected_reference_before_it_writes() {
        let (mut clocks, mut merger, mut output) = three_pods_on_three_nodes();
        assert_eq!(clocks.reference.as_deref(), Some("node-a"));
        let tap = clocks.tap.as_ref().map(|(_, e)| e.clone()).expect("tap");
        exchange(&tap, 1, 2);
        // node-a never gets an estimate: held until SKEW_HOLD after the first packet
        clocks.first_packet = Some(Instant::now());
        assert!(clocks.hold(&mut merger, &mut output));
        assert_eq!(clocks.reference.as_deref(), Some("node-b"));
        clocks.first_packet = Some(Instant::now() - SKEW_HOLD);
        clocks.checked = None;
        assert!(!clocks.hold(&mut merger, &mut output), "the wait is over");
        assert_eq!(clocks.reference.as_deref(), Some("node-b"));
        assert_eq!(clocks.written.lock().reference(), Some("node-b"));
        assert_eq!(clocks.applied[1], Some(0), "node-b: the reference");
        assert!(
            clocks.applied[2].is_some_and(|d| (d + 40_000_000).abs() < 100_000),
            "node-c shifted back by 40 ms: {:?}",
            clocks.applied
        );
    }

    #[test]
    fn inputs_with_the_same_name_are_two_clocks() {
        let mut clocks = correcting();
        clocks.started(0, "x", false);
        clocks.started(1, "x", false);
        clocks.started(2, "x", false);
        clocks.started(3, "node-1", true);
        clocks.started(4, "node-1", true);
        assert_eq!(clocks.nodes, ["x", "x#2", "x#3", "node-1", "node-1"]);
    }
}
