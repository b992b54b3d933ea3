//! Delivery lag of one live source: how late its packets reach the merge compared with the
//! earliest they could (docs/design.md §2).
//!
//! A packet's lag is its arrival time (the engine's clock) minus its timestamp (the source's
//! clock). The two clocks need not agree (another node, a replayed file): only differences of
//! lags matter. Over a sliding interval ([`INTERVAL`], in one-second buckets) the tracker keeps
//! the smallest lag (`base`: the transit of a packet handed over at once, plus the clock
//! difference) and the largest. A packet with timestamp `t` from this source has therefore
//! reached the merge, with the confidence of the interval, by `t + base + spread`, where
//! `spread` is the largest lag minus the smallest. That is what the live rule waits for
//! ([`crate::merge`]): nothing longer, so a source that delivers at once costs a few
//! milliseconds, and one that delivers in blocks (libpcap without immediate mode hands packets
//! over up to a second late) is waited for as long as its blocks need.
//!
//! The largest lag, not a high percentile: a percentile needs a distribution per bucket, and
//! the case that matters, a block-delivering source, has its highest lags on the few oldest
//! packets of each block, which a percentile over a quiet interval would discard. A single
//! stall raises the hold for one interval of the source's arrivals at most, and never beyond
//! the reorder window. Buckets age only as packets arrive: a source that falls silent keeps
//! its hold (its next packet may be sitting in libpcap's buffer).

use std::collections::VecDeque;

/// How long a lag is remembered.
pub const INTERVAL_NS: u64 = 10_000_000_000;
/// Buckets of the interval.
const BUCKET_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Arrival time / [`BUCKET_NS`].
    id: u64,
    min: i64,
    max: i64,
}

/// The lags of one source over the last [`INTERVAL_NS`] of arrivals.
#[derive(Clone, Debug, Default)]
pub struct Lag {
    buckets: VecDeque<Bucket>,
    /// Smallest and largest lag over the buckets (kept when the source falls silent: its next
    /// packets are expected to behave as its last did).
    base: i64,
    high: i64,
    known: bool,
}

impl Lag {
    /// A packet with timestamp `ts` arrived at `now` (both ns).
    pub fn record(&mut self, ts: u64, now: u64) {
        let lag = (now as i64).wrapping_sub(ts as i64);
        let id = now / BUCKET_NS;
        let mut stale = false;
        while self
            .buckets
            .front()
            .is_some_and(|b| b.id + INTERVAL_NS / BUCKET_NS <= id)
        {
            self.buckets.pop_front();
            stale = true;
        }
        match self.buckets.back_mut() {
            Some(b) if b.id == id => {
                b.min = b.min.min(lag);
                b.max = b.max.max(lag);
            }
            _ => self.buckets.push_back(Bucket {
                id,
                min: lag,
                max: lag,
            }),
        }
        if stale || !self.known {
            self.base = self.buckets.iter().map(|b| b.min).min().unwrap_or(lag);
            self.high = self.buckets.iter().map(|b| b.max).max().unwrap_or(lag);
            self.known = true;
        } else {
            self.base = self.base.min(lag);
            self.high = self.high.max(lag);
        }
    }

    /// The source's timestamps are shifted by `delta` ns from now on (a clock correction):
    /// its lags so far are restated as if they had been.
    pub fn shift(&mut self, delta: i64) {
        for b in &mut self.buckets {
            b.min = b.min.saturating_sub(delta);
            b.max = b.max.saturating_sub(delta);
        }
        self.base = self.base.saturating_sub(delta);
        self.high = self.high.saturating_sub(delta);
    }

    /// Whether a packet was ever recorded.
    pub fn known(&self) -> bool {
        self.known
    }

    /// The smallest lag (ns) over the interval.
    pub fn base(&self) -> i64 {
        self.base
    }

    /// Largest minus smallest lag over the interval (ns): how much later than its quickest
    /// packet this source has delivered one.
    pub fn spread(&self) -> u64 {
        self.high.saturating_sub(self.base).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn a_steady_source_has_its_transit_as_base_and_no_spread() {
        let mut l = Lag::default();
        assert!(!l.known());
        for i in 0..100 {
            l.record(1_000 * S + i * 10 * MS, 1_000 * S + i * 10 * MS + 2 * MS);
        }
        assert_eq!(l.base(), 2 * MS as i64);
        assert_eq!(l.spread(), 0);
    }

    #[test]
    fn a_block_delivering_source_spreads_over_its_block_at_once() {
        // one block: packets of the last 800 ms handed over together
        let mut l = Lag::default();
        let now = 50 * S;
        for i in 0..80 {
            l.record(now - 800 * MS + i * 10 * MS, now);
        }
        assert_eq!(l.spread(), 790 * MS);
        assert_eq!(l.base(), 10 * MS as i64);
    }

    #[test]
    fn clocks_that_disagree_only_move_the_base() {
        let mut ahead = Lag::default();
        for i in 0..10 {
            // the source's clock is 40 ms ahead of ours
            ahead.record(7 * S + i * MS + 40 * MS, 7 * S + i * MS + MS);
        }
        assert_eq!(ahead.base(), -39 * MS as i64);
        assert_eq!(ahead.spread(), 0);
    }

    #[test]
    fn a_stall_is_forgotten_after_the_interval() {
        let mut l = Lag::default();
        l.record(S, S + 500 * MS); // one packet 500 ms late
        for i in 1..=200u64 {
            let t = S + i * 100 * MS;
            l.record(t, t + MS);
        }
        // 20 s later, the stall has left the interval
        assert_eq!(l.spread(), 0);
        assert_eq!(l.base(), MS as i64);
        // while it was inside, it counted
        let mut l = Lag::default();
        l.record(S, S + 500 * MS);
        l.record(2 * S, 2 * S + MS);
        assert_eq!(l.spread(), 499 * MS);
    }

    #[test]
    fn a_shift_moves_the_base_not_the_spread() {
        let mut l = Lag::default();
        l.record(S, S + 2 * MS);
        l.record(S + MS, S + 5 * MS);
        l.shift(-40 * MS as i64); // timestamps 40 ms earlier from now on
        assert_eq!(l.base(), 42 * MS as i64);
        assert_eq!(l.spread(), 2 * MS);
        l.record(2 * S - 40 * MS, 2 * S + 2 * MS);
        assert_eq!(l.spread(), 2 * MS);
    }

    #[test]
    fn silence_keeps_what_was_learned() {
        let mut l = Lag::default();
        l.record(S, S + 300 * MS);
        l.record(S + 100 * MS, S + 300 * MS);
        // nothing for a minute: the lag is what it was
        assert_eq!(l.spread(), 100 * MS);
    }
}
