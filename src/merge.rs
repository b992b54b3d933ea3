//! k-way chronological merge of record streams.
//!
//! The [`Merger`] holds a queue of decoded records per source and decides which record goes
//! out next. Records that carry no time (new sections, interfaces, name records, statistics)
//! go out as soon as they reach the head of their queue; packets go out in timestamp order.
//!
//! Offline rule (exact, [`Merger::new`]): a packet is released only when every open source has
//! a record queued, so the smallest head is the smallest packet still to come from sorted
//! inputs. Equal timestamps keep input order (the lower source index first; mergecap 4.0 puts
//! the last input first).
//! A source whose own packets go backwards in time is still merged without loss; such packets
//! are counted.
//!
//! Live rule (adaptive watermark, [`Merger::with_window`]): a live source says nothing while
//! its pod is quiet, so waiting for every source would stall. Each source's delivery lag is
//! learned ([`crate::lag`]: arrival time minus timestamp, smallest and largest over the last
//! 10 s). The smallest queued packet, stamped `t`, is released once every open source with
//! nothing queued would have delivered a packet stamped `t` by now: at `t + base + hold`, where
//! `base` is that source's smallest lag and `hold` its spread of lags plus a quarter, plus
//! [`HOLD_FLOOR`]. A source that hands packets over at once therefore costs a few
//! milliseconds, one that delivers in blocks is waited for as long as its blocks need, and a
//! source whose lag is not known yet (no packet so far) is waited for [`START_HOLD`] after it
//! was last heard from. The reorder window (`--reorder-window`) is a cap: no packet waits
//! longer than that after its arrival, whatever a source's lag. The rule compares the
//! packets' timestamps with each source's own lag, so clocks that disagree, and captures
//! replayed from old files, merge in order too. A packet older than one already written is
//! still written, never dropped, and counted as late. Packets of one source that arrive out
//! of order (a capture on several CPUs, `tcpdump -i any`) are put back in order among its
//! queued packets (its head included) and counted; once a source has done that, nothing is
//! released while its head is younger than [`DISORDER_HOLD`] (unless many of its packets are
//! queued, or the window is shorter), so its stragglers still find their place.

use crate::lag::Lag;
use podcap_format::Record;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

/// The live rule's reorder window when none is given (`--reorder-window`): the longest a packet
/// is held after its arrival for the sources that may still send older ones (docs/design.md §2).
/// A cap: sources that deliver at once are waited for milliseconds, not this long.
pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a source whose lag is not known yet (no packet so far) is waited for after it was
/// last heard from (added, or its stream connected): its first packets may still be in flight.
pub const START_HOLD: std::time::Duration = std::time::Duration::from_millis(300);

/// Added to every source's learned hold: the scheduling noise of this host and of the source's
/// (a source that has delivered everything at once so far may still be a few ms late).
pub const HOLD_FLOOR: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Default)]
struct SourceQueue {
    /// Records with the time (ns, the caller's clock) they arrived.
    queue: VecDeque<(Record, u64)>,
    open: bool,
    /// Last timestamp pushed; packets without one (pcapng SPB) inherit it.
    last_pushed_ts: u64,
    /// Last timestamp released from this source.
    last_released_ts: Option<u64>,
    out_of_order: u64,
    /// Packets written after a later packet of another source (live rule only).
    late: u64,
    /// When something last arrived from this source (the live rule's clock).
    last_arrival: u64,
    /// Generation of this source's heap entry; older entries are stale.
    gen: u64,
    /// Live rule: how late this source delivers.
    lag: Lag,
}

impl SourceQueue {
    /// Live rule: the arrival time (ns, the merge's clock) by which this source, now with
    /// nothing queued, would have delivered a packet stamped `ts`.
    fn expected_by(&self, ts: u64, start_hold: u64) -> u64 {
        if !self.lag.known() {
            return self.last_arrival.saturating_add(start_hold);
        }
        let at = i128::from(ts) + i128::from(self.lag.base()) + i128::from(hold(&self.lag));
        at.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// Live rule: how long after its quickest delivery a source may still deliver (ns).
fn hold(lag: &Lag) -> u64 {
    let spread = lag.spread();
    spread
        .saturating_add(spread / 4)
        .saturating_add(HOLD_FLOOR.as_nanos() as u64)
}

/// Live rule: how long the packets of a source that has delivered packets out of order are
/// held, at least, before anything later is released (the disorder of a capture on several
/// CPUs spans microseconds of arrival; this covers it with room to spare).
pub const DISORDER_HOLD: std::time::Duration = std::time::Duration::from_millis(10);
/// ... unless that many packets of it are queued (a fast stream: what could still come
/// out of order is behind them).
const DISORDER_DEEP: usize = 64;

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write this record, which came from source `.0`.
    Record(usize, Record),
    /// Nothing can be released until source `.0` delivers more records or is closed.
    NeedInput(usize),
    /// Live rule: nothing can be released before this time (ns, the caller's clock) unless
    /// more input arrives; `None`: wait for input.
    WaitUntil(Option<u64>),
    /// Every source is closed and drained.
    Done,
}

#[derive(Debug, Default)]
pub struct Merger {
    sources: Vec<SourceQueue>,
    /// Sources whose head is a packet, keyed by (timestamp, source index, generation); an
    /// entry whose generation is not its source's current one is stale and skipped.
    heap: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Live rule: sources that have delivered packets out of order.
    disordered: Vec<usize>,
    /// Live rule: [`DISORDER_HOLD`] in ns (never more than the window).
    hold: u64,
    /// Live rule: [`START_HOLD`] in ns (never more than the window).
    start_hold: u64,
    /// Sources whose head is a timeless record (lowest source first, so that under the exact
    /// rule interfaces are announced in input order).
    timeless: BTreeSet<usize>,
    /// Sources that may be open with an empty queue (checked lazily, oldest first, so
    /// sources start in input order).
    starving: VecDeque<usize>,
    /// Open sources with nothing queued.
    open_empty: usize,
    /// Reorder window (ns) of the live rule; `None` for the exact rule.
    window: Option<u64>,
    /// Timestamp of the last packet released.
    last_released: u64,
}

impl Merger {
    /// A merger with the exact (offline) rule.
    pub fn new() -> Self {
        Self::default()
    }

    /// A merger with the live (watermark) rule and this reorder window.
    pub fn with_window(window: std::time::Duration) -> Self {
        let window = window.as_nanos() as u64;
        Self {
            window: Some(window),
            hold: window.min(DISORDER_HOLD.as_nanos() as u64),
            start_hold: window.min(START_HOLD.as_nanos() as u64),
            ..Self::default()
        }
    }

    /// Adds a source; under the exact rule it must deliver a record or be closed before any
    /// packet is released.
    pub fn add_source(&mut self) -> usize {
        self.add_source_at(0)
    }

    /// Adds a source at `now` (the live rule counts it as just heard from).
    pub fn add_source_at(&mut self, now: u64) -> usize {
        let id = self.sources.len();
        self.sources.push(SourceQueue {
            open: true,
            last_arrival: now,
            ..SourceQueue::default()
        });
        if self.window.is_none() {
            self.starving.push_back(id);
        }
        self.open_empty += 1;
        id
    }

    /// Queues a record from `src`. A packet without a timestamp gets the source's last one.
    pub fn push(&mut self, src: usize, rec: Record) {
        self.push_at(src, rec, 0);
    }

    /// Queues a record from `src` that arrived at `now` (ns; the live rule's clock).
    pub fn push_at(&mut self, src: usize, mut rec: Record, now: u64) {
        let s = &mut self.sources[src];
        if let Record::Packet(p) = &mut rec {
            match p.ts {
                Some(ts) => {
                    s.last_pushed_ts = ts;
                    if self.window.is_some() {
                        s.lag.record(ts, now);
                    }
                }
                None => p.ts = Some(s.last_pushed_ts),
            }
        }
        let was_empty = s.queue.is_empty();
        s.last_arrival = s.last_arrival.max(now);
        if self.window.is_some() {
            if let Record::Packet(p) = &rec {
                // Live: a capture's own packets can be slightly out of order (several CPUs);
                // put this one in its place among those still queued (before the head too).
                let ts = p.ts.unwrap_or(0);
                let mut at = s.queue.len();
                while at > 0 {
                    match &s.queue[at - 1].0 {
                        Record::Packet(q) if q.ts.unwrap_or(0) > ts => at -= 1,
                        _ => break,
                    }
                }
                if at < s.queue.len() {
                    if s.out_of_order == 0 {
                        self.disordered.push(src);
                    }
                    s.out_of_order += 1;
                    s.queue.insert(at, (rec, now));
                    if at == 0 {
                        self.index_head(src); // a new head: re-key the source
                    }
                    return;
                }
            }
        }
        s.queue.push_back((rec, now));
        if was_empty {
            if s.open {
                self.open_empty -= 1;
            }
            self.index_head(src);
        }
    }

    /// Live rule: `src` showed it is alive at `now` without sending a record (a pod's capture
    /// just connected): its first packets, still in flight, are waited for a window.
    pub fn heard_from(&mut self, src: usize, now: u64) {
        let s = &mut self.sources[src];
        s.last_arrival = s.last_arrival.max(now);
    }

    /// The timestamps of `src` are shifted by `delta` ns (a clock correction): its queued
    /// packets are shifted now, as if they had come so; what it pushes next must come shifted.
    pub fn shift(&mut self, src: usize, delta: i64) {
        let s = &mut self.sources[src];
        let by = |ts: u64| ts.saturating_add_signed(delta);
        for (rec, _) in &mut s.queue {
            if let Record::Packet(p) = rec {
                p.ts = p.ts.map(by);
            }
        }
        s.last_pushed_ts = by(s.last_pushed_ts);
        s.lag.shift(delta);
        if !s.queue.is_empty() {
            self.index_head(src); // its head's key moved
        }
    }

    /// Whether a source may still push records.
    pub fn any_open(&self) -> bool {
        self.sources.iter().any(|s| s.open)
    }

    /// Packets of `src` queued (not released yet).
    pub fn queued_packets(&self, src: usize) -> usize {
        self.sources[src]
            .queue
            .iter()
            .filter(|(r, _)| matches!(r, Record::Packet(_)))
            .count()
    }

    /// No more records will come from `src`.
    pub fn close(&mut self, src: usize) {
        let s = &mut self.sources[src];
        if s.open && s.queue.is_empty() {
            self.open_empty -= 1;
        }
        s.open = false;
    }

    /// Packets of `src` written after a later packet (live rule).
    pub fn late(&self, src: usize) -> u64 {
        self.sources[src].late
    }

    /// Live rule: the lag of `src` (ns): how much later than its quickest packet it has
    /// delivered one over the last 10 s, once a packet of it has arrived. The others wait for
    /// it that long and a quarter more, plus [`HOLD_FLOOR`].
    pub fn lag(&self, src: usize) -> Option<u64> {
        let s = &self.sources[src];
        (self.window.is_some() && s.lag.known()).then(|| s.lag.spread())
    }

    /// Packets of `src` that were older than one released before them from the same source.
    pub fn out_of_order(&self, src: usize) -> u64 {
        self.sources[src].out_of_order
    }

    fn index_head(&mut self, src: usize) {
        self.sources[src].gen += 1;
        let gen = self.sources[src].gen;
        match self.sources[src].queue.front() {
            Some((Record::Packet(p), _)) => {
                self.heap.push(Reverse((p.ts.unwrap_or(0), src, gen)));
            }
            Some(_) => {
                self.timeless.insert(src);
            }
            // (only the exact rule asks for a starving source; the live rule counts them)
            None if self.window.is_none() => self.starving.push_back(src),
            None => {}
        }
    }

    fn take_head(&mut self, src: usize) -> Option<Record> {
        let (rec, _) = self.sources[src].queue.pop_front()?;
        if self.sources[src].queue.is_empty() && self.sources[src].open {
            self.open_empty += 1;
        }
        self.index_head(src);
        Some(rec)
    }

    /// The next step under the exact rule. With a window (live rule), use [`Merger::step_at`].
    pub fn step(&mut self) -> Next {
        self.step_at(0)
    }

    /// The next step; `now` (ns) is the live rule's clock, ignored by the exact rule.
    pub fn step_at(&mut self, now: u64) -> Next {
        if self.window.is_none() {
            // exact rule: hear from every open source first (in input order)
            while let Some(&src) = self.starving.front() {
                let s = &self.sources[src];
                if s.open && s.queue.is_empty() {
                    return Next::NeedInput(src);
                }
                self.starving.pop_front();
            }
        }
        if let Some(src) = self.timeless.pop_first() {
            if let Some(rec) = self.take_head(src) {
                return Next::Record(src, rec);
            }
        }
        // drop stale heap entries (a source re-keyed when a packet went before its head)
        while let Some(&Reverse((_, src, gen))) = self.heap.peek() {
            if self.sources[src].gen == gen {
                break;
            }
            self.heap.pop();
        }
        if let Some(window) = self.window {
            let Some(&Reverse((ts, src, _))) = self.heap.peek() else {
                return if self.open_empty > 0 {
                    Next::WaitUntil(None)
                } else {
                    Next::Done
                };
            };
            // never held longer than the window after its arrival
            let arrived = self.sources[src].queue.front().map_or(0, |(_, a)| *a);
            let cap = arrived.saturating_add(window);
            if self.open_empty > 0 {
                // the latest moment a source with nothing queued may still deliver something
                // stamped before this packet
                let start_hold = self.start_hold;
                let release_at = self
                    .sources
                    .iter()
                    .filter(|s| s.open && s.queue.is_empty())
                    .map(|s| s.expected_by(ts, start_hold))
                    .max()
                    .unwrap_or(0)
                    .min(cap);
                if now < release_at {
                    return Next::WaitUntil(Some(release_at));
                }
            }
            // a source known to deliver out of order may still send something older than
            // its head: hold until its head has waited a little (not past the window)
            let mut hold_until = 0;
            for &d in &self.disordered {
                let q = &self.sources[d].queue;
                if let Some((_, a)) = q.front() {
                    if self.sources[d].open && q.len() < DISORDER_DEEP {
                        hold_until = hold_until.max(a.saturating_add(self.hold));
                    }
                }
            }
            let hold_until = hold_until.min(cap);
            if now < hold_until {
                return Next::WaitUntil(Some(hold_until));
            }
        }
        match self.heap.pop() {
            Some(Reverse((ts, src, _))) => {
                let live = self.window.is_some();
                let s = &mut self.sources[src];
                if s.last_released_ts.is_some_and(|last| ts < last) {
                    if !live {
                        s.out_of_order += 1; // (live counts them when they arrive)
                    }
                } else {
                    s.last_released_ts = Some(ts);
                }
                if live && ts < self.last_released {
                    s.late += 1;
                }
                self.last_released = self.last_released.max(ts);
                match self.take_head(src) {
                    Some(rec) => Next::Record(src, rec),
                    None => Next::Done, // unreachable: the heap only names non-empty queues
                }
            }
            None => Next::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use podcap_format::Packet;

    fn pkt(ts: u64) -> Record {
        Record::Packet(Packet {
            iface: 0,
            ts: Some(ts),
            orig_len: 1,
            data: Bytes::from_static(b"x"),
            flags: None,
        })
    }

    fn drain(m: &mut Merger) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        loop {
            match m.step() {
                Next::Record(s, Record::Packet(p)) => out.push((s, p.ts.unwrap())),
                Next::Record(..) => {}
                Next::NeedInput(s) => panic!("source {s} starves"),
                Next::WaitUntil(t) => panic!("waits until {t:?}"),
                Next::Done => return out,
            }
        }
    }

    #[test]
    fn waits_for_every_open_source() {
        let mut m = Merger::new();
        let a = m.add_source();
        let b = m.add_source();
        m.push(a, pkt(5));
        assert_eq!(m.step(), Next::NeedInput(b));
        m.push(b, pkt(3));
        assert!(matches!(m.step(), Next::Record(1, _)));
        assert_eq!(m.step(), Next::NeedInput(b));
        m.close(b);
        assert!(matches!(m.step(), Next::Record(0, _)));
        assert_eq!(m.step(), Next::NeedInput(a));
        m.close(a);
        assert_eq!(m.step(), Next::Done);
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn live_rule_waits_for_a_source_without_lag_for_the_start_hold_only() {
        let mut m = Merger::with_window(std::time::Duration::from_secs(2));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        assert_eq!(m.step_at(0), Next::WaitUntil(None));
        // b has sent nothing yet: waited for the start hold after it was added
        m.push_at(a, pkt(5), 50 * MS);
        assert_eq!(m.step_at(60 * MS), Next::WaitUntil(Some(300 * MS)));
        m.push_at(b, pkt(3), 70 * MS);
        assert!(matches!(m.step_at(70 * MS), Next::Record(1, _)));
        // a source heard from again (its stream connected) is waited for again
        let c = m.add_source_at(0);
        m.heard_from(c, 900 * MS);
        assert_eq!(m.step_at(900 * MS), Next::WaitUntil(Some(1200 * MS)));
    }

    #[test]
    fn live_rule_waits_for_what_a_prompt_source_could_still_deliver_only() {
        let mut m = Merger::with_window(std::time::Duration::from_secs(2));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        // both deliver 1 ms after capture
        for i in 0..10 {
            let t = 1000 * MS + i * 10 * MS;
            m.push_at(a, pkt(t), t + MS);
            m.push_at(b, pkt(t + 5 * MS), t + 6 * MS);
            let _ = drain_at(&mut m, t + 6 * MS);
        }
        let _ = drain_at(&mut m, 1200 * MS);
        assert_eq!(m.lag(a), Some(0));
        // a packet of a at 2000 ms: b, quiet, would have delivered one stamped so by 2001 ms;
        // held that long and the floor more, not for a window
        m.push_at(a, pkt(2000 * MS), 2001 * MS);
        assert_eq!(
            m.step_at(2001 * MS),
            Next::WaitUntil(Some(2001 * MS + HOLD_FLOOR.as_nanos() as u64))
        );
        assert!(matches!(m.step_at(2011 * MS), Next::Record(0, _)));
    }

    #[test]
    fn live_rule_learns_a_block_delivering_source_and_writes_it_in_order() {
        // a delivers each packet 1 ms after capture; b hands over blocks of the last 800 ms
        let mut m = Merger::with_window(std::time::Duration::from_secs(2));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        let mut out = Vec::new();
        let mut late_after_first_block = 0;
        for step in 0..400u64 {
            let now = 10 * MS * step + 1_000 * MS;
            m.push_at(a, pkt(now - MS), now);
            if step % 80 == 79 {
                for k in (0..80).rev() {
                    m.push_at(b, pkt(now - k * 10 * MS - 3 * MS), now);
                }
            }
            if step == 160 {
                late_after_first_block = m.late(a) + m.late(b);
            }
            out.extend(drain_at(&mut m, now));
        }
        m.close(a);
        m.close(b);
        out.extend(drain_at(&mut m, u64::MAX));
        // the first block is late (nothing was known of b); after it, nothing
        assert!(m.late(b) > 0);
        assert_eq!(m.late(a) + m.late(b), late_after_first_block);
        let lag = m.lag(b).unwrap();
        assert!((780 * MS..=800 * MS).contains(&lag), "{lag}");
        let after: Vec<u64> = out
            .iter()
            .map(|&(_, t)| t)
            .filter(|&t| t > 2_700 * MS)
            .collect();
        assert!(after.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(out.len(), 400 + 400);
    }

    #[test]
    fn a_shifted_source_is_merged_on_its_corrected_clock() {
        let mut m = Merger::with_window(std::time::Duration::from_secs(2));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        // b's clock is 40 ms ahead
        m.push_at(b, pkt(1045 * MS), 1006 * MS);
        m.push_at(b, pkt(1050 * MS), 1011 * MS);
        m.push_at(a, pkt(1008 * MS), 1009 * MS);
        m.shift(b, -40 * MS as i64);
        m.push_at(b, pkt(1012 * MS), 1013 * MS); // comes corrected from now on
        m.close(a);
        m.close(b);
        assert_eq!(
            drain_at(&mut m, 2000 * MS),
            vec![
                (b, 1005 * MS),
                (a, 1008 * MS),
                (b, 1010 * MS),
                (b, 1012 * MS)
            ]
        );
        assert_eq!(m.late(a) + m.late(b), 0);
    }

    #[test]
    fn live_rule_never_holds_past_the_window() {
        let mut m = Merger::with_window(std::time::Duration::from_millis(500));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        // b replays an old capture: its lag is huge, and spreads over its file
        m.push_at(b, pkt(10 * MS), 1000 * MS);
        m.push_at(b, pkt(900 * MS), 1000 * MS);
        let _ = drain_at(&mut m, 1000 * MS);
        m.push_at(a, pkt(5000 * MS), 5000 * MS);
        assert_eq!(m.step_at(5000 * MS), Next::WaitUntil(Some(5500 * MS)));
    }

    #[test]
    fn live_rule_compares_timestamps_on_each_sources_own_clock() {
        let mut m = Merger::with_window(std::time::Duration::from_secs(2));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        // b's clock is 40 ms ahead: its packets arrive "39 ms before" their timestamps
        for i in 0..5 {
            let t = 1000 * MS + i * MS;
            m.push_at(a, pkt(t), t + MS);
            m.push_at(b, pkt(t + 40 * MS), t + MS);
        }
        let _ = drain_at(&mut m, 1060 * MS);
        // a packet of b stamped 1100 ms (captured at 1060 ms on a's clock): a, quiet, could
        // still deliver a packet stamped up to 1100 ms until 1101 ms (+ the floor)
        m.push_at(b, pkt(1100 * MS), 1061 * MS);
        assert_eq!(
            m.step_at(1061 * MS),
            Next::WaitUntil(Some(1101 * MS + HOLD_FLOOR.as_nanos() as u64))
        );
        // and a packet of a waits for b only as long as b could still send an older one
        let mut m2 = m;
        m2.push_at(a, pkt(1070 * MS), 1071 * MS);
        assert!(matches!(m2.step_at(1071 * MS), Next::Record(0, _)));
    }

    #[test]
    fn live_rule_keeps_no_bookkeeping_per_empty_queue() {
        let mut m = Merger::with_window(std::time::Duration::from_millis(1));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        for i in 0..10_000u64 {
            m.push_at(a, pkt(i), i * 10_000_000);
            m.push_at(b, pkt(i), i * 10_000_000);
            while let Next::Record(..) = m.step_at(i * 10_000_000 + 5_000_000) {}
        }
        assert!(m.starving.is_empty(), "{} entries", m.starving.len());
    }

    #[test]
    fn live_rule_reorders_a_sources_own_packets_within_its_queue() {
        let mut m = Merger::with_window(std::time::Duration::from_millis(100));
        let a = m.add_source();
        for t in [10, 30, 20, 40, 25] {
            m.push_at(a, pkt(t), 0);
        }
        m.close(a);
        assert_eq!(
            drain_at(&mut m, 0),
            vec![(0, 10), (0, 20), (0, 25), (0, 30), (0, 40)]
        );
        assert_eq!(m.out_of_order(a), 2);
    }

    #[test]
    fn live_rule_puts_an_older_packet_before_the_head_and_then_holds_that_source() {
        let ms = 1_000_000;
        let mut m = Merger::with_window(std::time::Duration::from_millis(300));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        m.push_at(a, pkt(50), 0);
        m.push_at(b, pkt(100), 0);
        m.push_at(b, pkt(60), 0); // older than b's head: becomes the head
        assert_eq!(m.out_of_order(b), 1);
        // b has shown disorder: held for DISORDER_HOLD after its head arrived
        assert_eq!(m.step_at(ms), Next::WaitUntil(Some(10 * ms)));
        // then a (quiet now) is waited for, as usual
        assert_eq!(drain_at(&mut m, 10 * ms), vec![(a, 50)]);
        m.push_at(a, pkt(70), 11 * ms);
        m.push_at(b, pkt(65), 11 * ms); // would be late had 60 and 100 gone out already
        m.close(a);
        m.close(b);
        // closed sources send nothing more: no hold
        assert_eq!(
            drain_at(&mut m, 11 * ms),
            vec![(b, 60), (b, 65), (a, 70), (b, 100)]
        );
        assert_eq!(m.late(a) + m.late(b), 0);
    }

    #[test]
    fn a_source_heard_from_is_waited_for_a_window_again() {
        let ms = 1_000_000;
        let mut m = Merger::with_window(std::time::Duration::from_millis(300));
        let a = m.add_source_at(0);
        let _b = m.add_source_at(0); // registered, then silent while its capture is set up
        m.heard_from(_b, 900 * ms); // its stream just connected
        m.push_at(a, pkt(5), 1000 * ms);
        assert_eq!(m.step_at(1000 * ms), Next::WaitUntil(Some(1200 * ms)));
    }

    #[test]
    fn a_source_in_order_is_not_held() {
        let mut m = Merger::with_window(std::time::Duration::from_millis(300));
        let a = m.add_source_at(0);
        let b = m.add_source_at(0);
        m.push_at(a, pkt(1), 0);
        m.push_at(b, pkt(2), 0);
        assert_eq!(m.step_at(0), Next::Record(a, pkt(1)));
    }

    fn drain_at(m: &mut Merger, now: u64) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        while let Next::Record(s, r) = m.step_at(now) {
            if let Record::Packet(p) = r {
                out.push((s, p.ts.unwrap()));
            }
        }
        out
    }

    #[test]
    fn ties_keep_input_order_and_out_of_order_is_counted() {
        let mut m = Merger::new();
        let a = m.add_source();
        let b = m.add_source();
        for t in [1, 4, 2, 9] {
            m.push(a, pkt(t));
        }
        for t in [1, 4] {
            m.push(b, pkt(t));
        }
        m.close(a);
        m.close(b);
        assert_eq!(
            drain(&mut m),
            vec![(0, 1), (1, 1), (0, 4), (0, 2), (1, 4), (0, 9)]
        );
        assert_eq!(m.out_of_order(a), 1);
        assert_eq!(m.out_of_order(b), 0);
    }
}
