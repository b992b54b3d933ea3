//! One-way times of linked pairs (receiver's timestamp minus sender's), per pod pair and per
//! Service → backend mapping, in log-scale histograms: fixed relative precision (1/64, about
//! 1.6 %), memory proportional to the number of distinct magnitudes seen, not to the number of
//! packets. Values may be negative: the receiver's clock may run behind the sender's.

use crate::key::Endpoint;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 6;

/// A signed log-linear histogram of nanoseconds: counts per bucket key, densely from the
/// lowest key seen to the highest (values cluster: a few powers of two, a few hundred buckets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Key of `counts[0]`.
    lo: i32,
    counts: Vec<u64>,
    count: u64,
    min: i64,
    max: i64,
    sum: i128,
}

fn magnitude_bucket(m: u64) -> i32 {
    if m < 1 << SUB_BITS {
        return m as i32;
    }
    let exp = 63 - m.leading_zeros();
    let sub = (m >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    ((exp - SUB_BITS + 1) << SUB_BITS) as i32 + sub as i32
}

/// The middle of a magnitude bucket.
fn bucket_value(b: i32) -> u64 {
    let b = b as u32;
    if b < 1 << SUB_BITS {
        return u64::from(b);
    }
    let exp = (b >> SUB_BITS) + SUB_BITS - 1;
    let sub = u64::from(b & ((1 << SUB_BITS) - 1));
    let low = (1u64 << exp) | (sub << (exp - SUB_BITS));
    low + (1u64 << (exp - SUB_BITS)) / 2
}

impl Histogram {
    pub fn record(&mut self, ns: i64) {
        let b = magnitude_bucket(ns.unsigned_abs());
        let key = if ns < 0 { -b - 1 } else { b };
        if self.counts.is_empty() {
            self.lo = key;
        }
        if key < self.lo {
            let grow = (self.lo - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.lo = key;
        }
        let i = (key - self.lo) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        if self.count == 0 {
            self.min = ns;
            self.max = ns;
        } else {
            self.min = self.min.min(ns);
            self.max = self.max.max(ns);
        }
        self.count += 1;
        self.sum += i128::from(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn min(&self) -> i64 {
        self.min
    }
    pub fn max(&self) -> i64 {
        self.max
    }
    pub fn mean(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / i128::from(self.count)) as i64
        }
    }

    /// The value at quantile `q` (0..=1): the bucket's middle, clamped to the exact min/max.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            let k = self.lo + i as i32;
            seen += n;
            if seen >= rank {
                let v = if k < 0 {
                    -(bucket_value(-k - 1) as i64)
                } else {
                    bucket_value(k) as i64
                };
                return v.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Latency per (sender source, receiver source) and per (Service endpoint → backend endpoint).
#[derive(Clone, Debug, Default)]
pub struct LatencyTable {
    pub pairs: BTreeMap<(usize, usize), Histogram>,
    /// (as addressed, as delivered) → one-way times.
    pub services: BTreeMap<(Endpoint, Endpoint), Histogram>,
    /// Where each pair's histogram is while recording (`pairs` is filled by `settle`).
    recording: HashMap<(usize, usize), Histogram, BuildHasherDefault<PairHasher>>,
}

/// Hashes a (sender, receiver) pair with one multiplication.
#[derive(Default)]
pub struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(29) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl LatencyTable {
    /// Records a one-way time of a packet `sender` → `receiver`.
    pub fn record(&mut self, sender: usize, receiver: usize, ns: i64) {
        self.recording
            .entry((sender, receiver))
            .or_default()
            .record(ns);
    }

    /// Moves what was recorded into [`LatencyTable::pairs`] (sorted).
    pub fn settle(&mut self) {
        self.pairs.extend(self.recording.drain());
    }
}

/// Nanoseconds the way a person reads them: `812 ns`, `45.2 µs`, `1.31 ms`, `2.05 s`.
pub fn show_ns(ns: i64) -> String {
    let a = ns.unsigned_abs() as f64;
    let sign = if ns < 0 { "-" } else { "" };
    if a < 1e3 {
        format!("{ns} ns")
    } else if a < 1e6 {
        format!("{sign}{:.1} µs", a / 1e3)
    } else if a < 1e9 {
        format!("{sign}{:.2} ms", a / 1e6)
    } else {
        format!("{sign}{:.2} s", a / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_the_stated_precision() {
        let mut h = Histogram::default();
        for v in 1..=10_000i64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.02, "{p50}");
        assert!((p99 - 9_900_000.0).abs() / 9_900_000.0 < 0.02, "{p99}");
        assert_eq!(h.min(), 1000);
        assert_eq!(h.max(), 10_000_000);
        // ten thousand distinct values, 64 buckets per power of two they span
        assert!(h.counts.len() <= 64 * 14, "{}", h.counts.len()); // 64 per power of two
    }

    #[test]
    fn negative_and_small_values() {
        let mut h = Histogram::default();
        for v in [-300_000i64, -200_000, 5, 10, 20] {
            h.record(v);
        }
        assert!(h.quantile(0.2) < -290_000 && h.quantile(0.2) > -310_000);
        assert_eq!(h.quantile(0.6), 5);
        assert_eq!(h.quantile(1.0), 20);
        assert_eq!(h.quantile(0.0), -300_000);
    }

    #[test]
    fn every_bucket_value_lies_in_its_bucket() {
        for m in (0..40).map(|e| 1u64 << e).chain([3, 65, 1000, 123_456_789]) {
            let b = magnitude_bucket(m);
            assert_eq!(magnitude_bucket(bucket_value(b)), b, "{m}");
        }
    }
}
