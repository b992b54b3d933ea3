//! Clock differences between nodes, learned from linked pairs (NTP style, passively).
//!
//! Every linked pair is one packet seen leaving node A (A's clock) and arriving on node B
//! (B's clock). With θ = clock(B) − clock(A):
//!
//! - a packet A → B gives `d_ab = receiver_ts − sender_ts = delay_ab + θ`,
//! - a packet B → A gives `d_ba = delay_ba − θ`,
//!
//! so `θ = (d_ab − d_ba) / 2 + (delay_ba − delay_ab) / 2`. Delays are never negative and the
//! smallest ones are the least disturbed by queueing, so the estimator takes the *minimum*
//! `d` of each direction per [`BUCKET_NS`] window of time (NTP's minimum filter), computes
//! `θ_i = (min d_ab − min d_ba) / 2` for every window that had traffic both ways, and fits
//! `θ(t) = a + b·t` (weighted least squares; the slope `b` is the drift) once the windows span
//! [`MIN_DRIFT_SPAN_NS`], a constant before that.
//!
//! **The one bias it cannot see**: if the two directions' smallest delays differ (different
//! routes, one side's capture point nearer the wire), the estimate is off by
//! `(delay_ab − delay_ba) / 2`. That bias is at most half the round trip, which is why every
//! estimate carries `bound_ns` (half the smallest round trip, NTP's error bound) beside its
//! statistical `uncertainty_ns`. A milder cousin: when one direction queues far more than the
//! other, its per-window minimum is an unqueued packet less often, which biases θ by a few µs
//! (≈ 2 standard errors in the jitter test: 90 % vs 50 % of packets queued) — also not in
//! `uncertainty_ns`.
//!
//! **Cost**: O(1) per pair (a handful of arithmetic, one hash lookup of the node pair; the
//! window a pair belongs to is at most [`OPEN_BUCKETS`] from the newest). **Memory**: per pair
//! of nodes that exchanged packets, at most [`OPEN_BUCKETS`] windows plus a fixed set of
//! running sums into which older windows are folded — bounded whatever the run's length.
//! Queries ([`SkewEstimator::estimate`] and friends) cost O(node pairs × [`OPEN_BUCKETS`] +
//! node pairs × log nodes); callers that need a correction per packet should ask once and keep
//! the answer ([`SkewEstimator::corrections`]).
//!
//! Nodes: every source belongs to the node [`SkewEstimator::set_node`] named; a source never
//! named is a node of its own called `#<source>`. Pairs whose two sources share a node tell
//! nothing about clocks and are skipped. Offsets are given relative to a *reference* node
//! (see [`SkewEstimator::reference`]); a node without a direct pair of estimates with it is
//! reached through others (the path of least variance; offsets add, variances add).

use crate::latency::show_ns;
use crate::{LinkedPair, PairObserver};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Width of a window of time over which the minimum delay of each direction is taken
/// (on the clock of the pair's lower-numbered node). Long enough to hold some unqueued
/// packets both ways, short enough that drift within it (20 ppm × 0.5 s = 10 µs) is small.
pub const BUCKET_NS: u64 = 500_000_000;

/// Windows kept open per node pair (8 s): pairs arrive in merge order, which mixes clocks, so
/// a pair's window may be up to the matcher's window (2 s) plus the clock difference older than
/// the newest. Older windows are folded into the running sums and take no more pairs (a pair
/// for one is counted in [`SkewEstimator::late`]).
pub const OPEN_BUCKETS: usize = 16;

/// Span of windows (first to last with traffic both ways) from which on drift is fitted;
/// shorter spans give a constant offset (a slope over a few seconds is noise).
pub const MIN_DRIFT_SPAN_NS: u64 = 10_000_000_000;

/// Confidence: at least this many windows with traffic both ways ...
pub const MIN_BUCKETS_BOTH_WAYS: u64 = 3;
/// ... at least this many pairs each way ...
pub const MIN_PAIRS_EACH_WAY: u64 = 20;
/// ... and an uncertainty no larger than this (1 ms).
pub const MAX_CONFIDENT_UNCERTAINTY_NS: i64 = 1_000_000;

/// The smallest uncertainty ever claimed (1 µs): capture timestamps are no better than that,
/// and a fit through identical values would claim zero.
pub const UNCERTAINTY_FLOOR_NS: i64 = 1_000;

/// Pairs whose one-way time is larger than this (60 s) either way, or with a zero timestamp
/// (a packet without one), are not clock evidence (the matcher's window is 2 s) and are
/// skipped (counted in [`SkewEstimator::implausible`]).
pub const MAX_PLAUSIBLE_NS: i64 = 60_000_000_000;

/// Weights: a window's θ_i is off by at most half its round trip, so windows weigh
/// `(1 ms / (round trip + 10 µs))²`; the 10 µs keeps a zero round trip finite.
const WEIGHT_RTT_FLOOR_NS: f64 = 10_000.0;
const WEIGHT_SCALE_NS: f64 = 1_000_000.0;

/// Inter-node pairs between refreshes of the corrections [`SkewEstimator::add`] uses to count
/// reversals after correction.
const REFRESH_PAIRS: u64 = 1024;

/// A node's clock relative to the reference node's.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// This node's clock minus the reference's, at the latest pair (ns). Positive: this node's
    /// timestamps are larger (its clock is ahead).
    pub offset_ns: i64,
    /// One standard error of `offset_ns` (ns, at least [`UNCERTAINTY_FLOOR_NS`]): the fit's, or
    /// with a single window half its round trip. Statistical only: asymmetric delays bias the
    /// estimate by up to `bound_ns` without showing here.
    pub uncertainty_ns: i64,
    /// Pairs (both ways) between the node pairs the estimate comes from.
    pub pairs: u64,
    /// The drift of this node's clock against the reference's (ppm, positive: gains), when the
    /// windows span [`MIN_DRIFT_SPAN_NS`]; `None` for a constant fit.
    pub drift_ppm: Option<f64>,
    /// One standard error of `drift_ppm`.
    pub drift_uncertainty_ppm: Option<f64>,
    /// Good enough to correct timestamps by: every node pair on the way has
    /// [`MIN_BUCKETS_BOTH_WAYS`] windows both ways and [`MIN_PAIRS_EACH_WAY`] pairs each way,
    /// and `uncertainty_ns` ≤ [`MAX_CONFIDENT_UNCERTAINTY_NS`].
    pub confident: bool,
    /// NTP's error bound (ns): half the smallest round trip seen within one window (summed over
    /// the node pairs on the way). Whatever the delays, the offset lies within
    /// `offset_ns ± bound_ns` (up to drift and the capture timestamps' own precision).
    pub bound_ns: i64,
    /// The nodes in between when the estimate is chained (empty for a direct one).
    pub via: Vec<String>,
}

/// Counts pairs received before they were sent, for timestamps as they are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReversalCounter {
    pairs: u64,
    reversed: u64,
}

impl ReversalCounter {
    /// One pair: the sender's timestamp and the receiver's (ns, as written).
    pub fn observe(&mut self, sender_ts: i64, receiver_ts: i64) {
        self.tally(receiver_ts < sender_ts);
    }
    fn tally(&mut self, reversed: bool) {
        self.pairs += 1;
        self.reversed += u64::from(reversed);
    }
    /// Pairs observed.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }
    /// Pairs whose receiver's timestamp is earlier than the sender's.
    pub fn reversed(&self) -> u64 {
        self.reversed
    }
}

/// One window of one node pair: the smallest one-way time each way and how many pairs.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    idx: u64,
    /// Direction 0: lower node → higher node; 1: back.
    min_d: [i64; 2],
    count: [u32; 2],
}

impl Bucket {
    fn both(&self) -> bool {
        self.count[0] > 0 && self.count[1] > 0
    }
    /// θ_i (clock(high) − clock(low)) and the round trip.
    fn theta_rtt(&self) -> (f64, i64) {
        let theta = (self.min_d[0] as f64 - self.min_d[1] as f64) / 2.0;
        (theta, self.min_d[0].saturating_add(self.min_d[1]))
    }
}

/// Weighted least-squares sums of (x = seconds since the node pair's origin, y = θ_i − θ0).
#[derive(Clone, Copy, Debug)]
struct Sums {
    n: u64,
    s: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
    syy: f64,
    x_min: f64,
    x_max: f64,
    min_rtt: i64,
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            n: 0,
            s: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
            syy: 0.0,
            x_min: f64::INFINITY,
            x_max: f64::NEG_INFINITY,
            min_rtt: i64::MAX,
        }
    }
}

impl Sums {
    fn add(&mut self, x: f64, y: f64, rtt: i64) {
        let w = (WEIGHT_SCALE_NS / (rtt.max(0) as f64 + WEIGHT_RTT_FLOOR_NS)).powi(2);
        self.n += 1;
        self.s += w;
        self.sx += w * x;
        self.sy += w * y;
        self.sxx += w * x * x;
        self.sxy += w * x * y;
        self.syy += w * y * y;
        self.x_min = self.x_min.min(x);
        self.x_max = self.x_max.max(x);
        self.min_rtt = self.min_rtt.min(rtt);
    }
}

/// What is known of one pair of nodes (`lo` < `hi` by node id).
#[derive(Clone, Debug)]
struct Edge {
    lo: u32,
    hi: u32,
    /// Open windows, oldest first.
    open: VecDeque<Bucket>,
    /// The windows folded so far (those with traffic both ways).
    closed: Sums,
    last_closed: Option<u64>,
    /// Origin of x: the start of the first pair's window (ns, the low node's clock).
    t0_ns: u64,
    /// Origin of y: the first θ_i (ns); set with the first window both ways.
    theta0: Option<f64>,
    pairs: [u64; 2],
    late: u64,
}

impl Edge {
    fn new(lo: u32, hi: u32, first_ts: u64) -> Self {
        Self {
            lo,
            hi,
            open: VecDeque::with_capacity(OPEN_BUCKETS + 1),
            closed: Sums::default(),
            last_closed: None,
            t0_ns: first_ts - first_ts % BUCKET_NS,
            theta0: None,
            pairs: [0; 2],
            late: 0,
        }
    }

    fn x_of(&self, idx: u64) -> f64 {
        let mid = i128::from(idx) * i128::from(BUCKET_NS) + i128::from(BUCKET_NS / 2);
        (mid - i128::from(self.t0_ns)) as f64 / 1e9
    }

    /// One pair: `lo_ts` its time on the low node's clock, `dir` 0 for low → high.
    fn add(&mut self, lo_ts: u64, dir: usize, d: i64) {
        self.pairs[dir] += 1;
        let idx = lo_ts / BUCKET_NS;
        if self.last_closed.is_some_and(|c| idx <= c) {
            self.late += 1;
            return;
        }
        let newest = self.open.back().map(|b| b.idx);
        if newest.is_some_and(|n| idx + OPEN_BUCKETS as u64 <= n) {
            self.late += 1;
            return;
        }
        // the window, searched from the newest (pairs come nearly in order)
        let mut pos = self.open.len();
        while pos > 0 && self.open[pos - 1].idx > idx {
            pos -= 1;
        }
        let at = if pos > 0 && self.open[pos - 1].idx == idx {
            pos - 1
        } else {
            self.open.insert(
                pos,
                Bucket {
                    idx,
                    min_d: [i64::MAX; 2],
                    count: [0; 2],
                },
            );
            pos
        };
        let b = &mut self.open[at];
        b.min_d[dir] = b.min_d[dir].min(d);
        b.count[dir] = b.count[dir].saturating_add(1);
        if self.theta0.is_none() && b.both() {
            self.theta0 = Some(b.theta_rtt().0);
        }
        while let (Some(front), Some(back)) = (self.open.front(), self.open.back()) {
            if front.idx + OPEN_BUCKETS as u64 > back.idx {
                break;
            }
            if let Some(old) = self.open.pop_front() {
                self.fold(old);
            }
        }
    }

    fn fold(&mut self, b: Bucket) {
        self.last_closed = Some(b.idx);
        if b.both() {
            let (theta, rtt) = b.theta_rtt();
            let y = theta - self.theta0.unwrap_or(theta);
            let x = self.x_of(b.idx);
            self.closed.add(x, y, rtt);
        }
    }

    /// The fit over all windows so far, or `None` without a window both ways.
    fn fit(&self) -> Option<Fit> {
        let theta0 = self.theta0?;
        let mut s = self.closed;
        for b in self.open.iter().filter(|b| b.both()) {
            let (theta, rtt) = b.theta_rtt();
            s.add(self.x_of(b.idx), theta - theta0, rtt);
        }
        if s.n == 0 {
            return None;
        }
        let bound = (s.min_rtt / 2).max(0);
        let model = if s.n == 1 {
            Model::Const {
                mean: s.sy / s.s,
                var: (bound as f64).powi(2),
            }
        } else {
            let xm = s.sx / s.s;
            let ym = s.sy / s.s;
            let sxx = (s.sxx - s.sx * xm).max(0.0);
            let sxy = s.sxy - s.sx * ym;
            let syy = (s.syy - s.sy * ym).max(0.0);
            let span_ns = (s.x_max - s.x_min) * 1e9;
            if s.n >= 3 && span_ns >= MIN_DRIFT_SPAN_NS as f64 && sxx > 0.0 {
                let b = sxy / sxx;
                let s2 = ((syy - b * sxy) / (s.n - 2) as f64).max(0.0);
                Model::Linear {
                    xm,
                    ym,
                    b,
                    s2,
                    sw: s.s,
                    sxx,
                }
            } else {
                let s2 = syy / (s.n - 1) as f64;
                Model::Const {
                    mean: ym,
                    var: s2 / s.s,
                }
            }
        };
        Some(Fit {
            t0_ns: self.t0_ns,
            theta0,
            model,
            both_ways: s.n,
            bound,
        })
    }

    fn confident_counts(&self, f: &Fit) -> bool {
        f.both_ways >= MIN_BUCKETS_BOTH_WAYS
            && self.pairs[0] >= MIN_PAIRS_EACH_WAY
            && self.pairs[1] >= MIN_PAIRS_EACH_WAY
    }
}

#[derive(Clone, Copy, Debug)]
enum Model {
    Const {
        mean: f64,
        /// Variance of the mean (ns²).
        var: f64,
    },
    Linear {
        xm: f64,
        ym: f64,
        /// ns per second.
        b: f64,
        /// Residual variance (weighted units).
        s2: f64,
        sw: f64,
        sxx: f64,
    },
}

/// θ(t) = clock(hi) − clock(lo) of one node pair.
#[derive(Clone, Copy, Debug)]
struct Fit {
    t0_ns: u64,
    theta0: f64,
    model: Model,
    both_ways: u64,
    bound: i64,
}

impl Fit {
    fn x_at(&self, t_ns: u64) -> f64 {
        (i128::from(t_ns) - i128::from(self.t0_ns)) as f64 / 1e9
    }
    fn theta_at(&self, t_ns: u64) -> f64 {
        self.theta0
            + match self.model {
                Model::Const { mean, .. } => mean,
                Model::Linear { xm, ym, b, .. } => ym + b * (self.x_at(t_ns) - xm),
            }
    }
    fn var_at(&self, t_ns: u64) -> f64 {
        match self.model {
            Model::Const { var, .. } => var,
            Model::Linear {
                xm, s2, sw, sxx, ..
            } => s2 * (1.0 / sw + (self.x_at(t_ns) - xm).powi(2) / sxx),
        }
    }
    /// (drift in ppm, its standard error)
    fn drift(&self) -> Option<(f64, f64)> {
        match self.model {
            Model::Const { .. } => None,
            Model::Linear { b, s2, sxx, .. } => Some((b / 1e3, (s2 / sxx).sqrt() / 1e3)),
        }
    }
}

/// How a source came to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Unknown,
    /// Named by `set_node`.
    Named(u32),
    /// A node of its own (`#<source>`), made when its first pair came.
    Own(u32),
}

/// One step of the way from the reference to a node.
#[derive(Clone, Copy, Debug)]
struct Step {
    edge: usize,
    /// +1 when walking low → high (the offset grows by θ), −1 the other way.
    sign: f64,
    from: u32,
}

/// The reference, the fits and each node's way from the reference.
struct Solution {
    reference: Option<u32>,
    fits: Vec<Option<Fit>>,
    /// Per node: the last step of its least-variance path from the reference.
    prev: Vec<Option<Step>>,
}

/// Learns every node's clock relative to a reference node, from linked pairs.
#[derive(Clone, Debug, Default)]
pub struct SkewEstimator {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    sources: Vec<Slot>,
    edges: Vec<Edge>,
    edge_ids: HashMap<(u32, u32), usize>,
    reference_override: Option<String>,
    /// The latest sender timestamp of an inter-node pair (ns): "now".
    latest_ns: u64,
    same_node: u64,
    inter_node: u64,
    implausible: u64,
    raw: ReversalCounter,
    corrected: ReversalCounter,
    /// Per node: (offset at `cache_at`, drift in ns/ns), the confident estimates as of the last
    /// refresh.
    cache: Vec<Option<(f64, f64)>>,
    cache_at: u64,
    since_refresh: u64,
}

impl SkewEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    fn node_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    fn slot(&mut self, source: usize) -> &mut Slot {
        if self.sources.len() <= source {
            self.sources.resize(source + 1, Slot::Unknown);
        }
        &mut self.sources[source]
    }

    /// Says which node `source` runs on. Call it before the source's first pair: pairs already
    /// added stay with the node the source had then (its own, `#<source>`, if it had none).
    pub fn set_node(&mut self, source: usize, node: &str) {
        let id = self.node_id(node);
        *self.slot(source) = Slot::Named(id);
    }

    /// Makes `node` the reference instead of the default (see [`SkewEstimator::reference`]).
    pub fn set_reference(&mut self, node: &str) {
        self.reference_override = Some(node.to_string());
    }

    /// The node of a source, made up (`#<source>`) for one never named.
    fn node_of(&mut self, source: usize) -> u32 {
        match *self.slot(source) {
            Slot::Named(id) | Slot::Own(id) => id,
            Slot::Unknown => {
                let id = self.node_id(&format!("#{source}"));
                *self.slot(source) = Slot::Own(id);
                id
            }
        }
    }

    /// One linked pair. O(1) amortised.
    pub fn add(&mut self, pair: &LinkedPair) {
        let a = self.node_of(pair.sender);
        let b = self.node_of(pair.receiver);
        if a == b {
            self.same_node += 1;
            return;
        }
        self.inter_node += 1;
        let (s, r) = (pair.sender_ts, pair.receiver_ts);
        self.raw.tally(r < s);
        // the confident corrections of the moment (minus the offset, drift applied)
        let shift = |n: u32, t: u64| -> i128 {
            match self.cache.get(n as usize).copied().flatten() {
                Some((off, drift)) => {
                    let since = (i128::from(t) - i128::from(self.cache_at)) as f64;
                    -((off + drift * since).round() as i128)
                }
                None => 0,
            }
        };
        let cs = i128::from(s) + shift(a, s);
        let cr = i128::from(r) + shift(b, r);
        self.corrected.tally(cr < cs);

        let d = i128::from(r) - i128::from(s);
        if s == 0 || r == 0 || d.abs() > i128::from(MAX_PLAUSIBLE_NS) {
            self.implausible += 1;
            return;
        }
        let d = d as i64;
        self.latest_ns = self.latest_ns.max(s);
        let (lo, hi, dir, lo_ts) = if a < b { (a, b, 0, s) } else { (b, a, 1, r) };
        let e = match self.edge_ids.get(&(lo, hi)) {
            Some(&e) => e,
            None => {
                self.edges.push(Edge::new(lo, hi, lo_ts));
                self.edge_ids.insert((lo, hi), self.edges.len() - 1);
                self.edges.len() - 1
            }
        };
        self.edges[e].add(lo_ts, dir, d);
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_PAIRS {
            self.refresh();
        }
    }

    /// Recomputes the confident corrections `add` counts reversals with.
    fn refresh(&mut self) {
        self.since_refresh = 0;
        let sol = self.solve();
        let now = self.latest_ns;
        let cache = (0..self.names.len() as u32)
            .map(|n| {
                let e = self.estimate_of(&sol, n)?;
                e.confident.then(|| {
                    let ppm = e.drift_ppm.unwrap_or(0.0);
                    (e.offset_ns as f64, ppm / 1e6)
                })
            })
            .collect();
        self.cache = cache;
        self.cache_at = now;
    }

    /// The reference node: the one [`SkewEstimator::set_reference`] named; else the node of
    /// the lowest-numbered source given one by [`SkewEstimator::set_node`]; else (no source
    /// named) the own node of the lowest-numbered source seen in a pair.
    pub fn reference(&self) -> Option<&str> {
        self.reference_id()
            .map(|id| self.names[id as usize].as_str())
    }

    fn reference_id(&self) -> Option<u32> {
        if let Some(r) = &self.reference_override {
            return self.ids.get(r).copied();
        }
        let named = self.sources.iter().find_map(|s| match s {
            Slot::Named(id) => Some(*id),
            _ => None,
        });
        named.or_else(|| {
            self.sources.iter().find_map(|s| match s {
                Slot::Own(id) => Some(*id),
                _ => None,
            })
        })
    }

    /// Fits every node pair and finds, from the reference, each node's path of least variance
    /// (Dijkstra over the node pairs with an estimate; variances at "now" add).
    fn solve(&self) -> Solution {
        let fits: Vec<Option<Fit>> = self.edges.iter().map(Edge::fit).collect();
        let n = self.names.len();
        let mut prev: Vec<Option<Step>> = vec![None; n];
        let reference = self.reference_id();
        let Some(r) = reference else {
            return Solution {
                reference,
                fits,
                prev,
            };
        };
        let mut adj: Vec<Vec<(u32, Step, f64)>> = vec![Vec::new(); n];
        for (i, (e, f)) in self.edges.iter().zip(&fits).enumerate() {
            if let Some(f) = f {
                // a tiny cost per hop prefers fewer hops among equals
                let v = f.var_at(self.latest_ns).max(0.0) + 1e-3;
                let step = |from, sign| Step {
                    edge: i,
                    sign,
                    from,
                };
                adj[e.lo as usize].push((e.hi, step(e.lo, 1.0), v));
                adj[e.hi as usize].push((e.lo, step(e.hi, -1.0), v));
            }
        }
        let mut dist = vec![f64::INFINITY; n];
        dist[r as usize] = 0.0;
        let mut heap = BinaryHeap::new();
        heap.push(Near(0.0, r));
        while let Some(Near(d, u)) = heap.pop() {
            if d > dist[u as usize] {
                continue;
            }
            for &(v, step, w) in &adj[u as usize] {
                let nd = d + w;
                if nd < dist[v as usize] {
                    dist[v as usize] = nd;
                    prev[v as usize] = Some(step);
                    heap.push(Near(nd, v));
                }
            }
        }
        Solution {
            reference,
            fits,
            prev,
        }
    }

    /// The steps from the reference to `node`, in order; `None` when not connected.
    fn path(&self, sol: &Solution, node: u32) -> Option<Vec<Step>> {
        let mut steps = Vec::new();
        let mut at = node;
        while Some(at) != sol.reference {
            let step = sol.prev.get(at as usize).copied().flatten()?;
            steps.push(step);
            at = step.from;
            if steps.len() > self.names.len() {
                return None;
            }
        }
        steps.reverse();
        Some(steps)
    }

    fn offset_on(&self, sol: &Solution, node: u32, t_ns: u64) -> Option<f64> {
        let path = self.path(sol, node)?;
        let mut off = 0.0;
        for s in path {
            off += s.sign * sol.fits[s.edge]?.theta_at(t_ns);
        }
        Some(off)
    }

    fn estimate_of(&self, sol: &Solution, node: u32) -> Option<Estimate> {
        let path = self.path(sol, node)?;
        let now = self.latest_ns;
        let (mut off, mut var, mut pairs, mut bound) = (0.0, 0.0, 0u64, 0i64);
        let (mut drift, mut drift_var, mut any_drift) = (0.0, 0.0, false);
        let mut counts_ok = true;
        let mut via = Vec::new();
        for (i, s) in path.iter().enumerate() {
            let e = &self.edges[s.edge];
            let f = sol.fits[s.edge]?;
            off += s.sign * f.theta_at(now);
            var += f.var_at(now).max(0.0);
            pairs += e.pairs[0] + e.pairs[1];
            bound = bound.saturating_add(f.bound);
            if let Some((b, se)) = f.drift() {
                any_drift = true;
                drift += s.sign * b;
                drift_var += se * se;
            }
            counts_ok &= e.confident_counts(&f);
            if i > 0 {
                via.push(self.names[s.from as usize].clone());
            }
        }
        let uncertainty = (var.sqrt().round() as i64).max(UNCERTAINTY_FLOOR_NS);
        let is_reference = path.is_empty();
        Some(Estimate {
            offset_ns: off.round() as i64,
            uncertainty_ns: if is_reference { 0 } else { uncertainty },
            pairs,
            drift_ppm: any_drift.then_some(drift),
            drift_uncertainty_ppm: any_drift.then(|| drift_var.sqrt()),
            confident: counts_ok && uncertainty <= MAX_CONFIDENT_UNCERTAINTY_NS,
            bound_ns: bound,
            via,
        })
    }

    /// `node`'s clock relative to the reference's, at the latest pair. The reference itself
    /// gets a zero, confident estimate; a node not linked to it by pairs both ways (directly or
    /// through others), or unknown, gets `None`.
    pub fn estimate(&self, node: &str) -> Option<Estimate> {
        let id = *self.ids.get(node)?;
        self.estimate_of(&self.solve(), id)
    }

    /// `node`'s clock minus the reference's at time `t_ns` (ns since the epoch; on either
    /// clock — the difference is offset × drift, nanoseconds), with the drift applied.
    pub fn offset_at(&self, node: &str, t_ns: u64) -> Option<i64> {
        let id = *self.ids.get(node)?;
        self.offset_on(&self.solve(), id, t_ns)
            .map(|o| o.round() as i64)
    }

    /// Every node but the reference that has an estimate, by name.
    pub fn estimates(&self) -> Vec<(String, Estimate)> {
        let sol = self.solve();
        let mut out: Vec<(String, Estimate)> = (0..self.names.len() as u32)
            .filter(|&n| Some(n) != sol.reference)
            .filter_map(|n| Some((self.names[n as usize].clone(), self.estimate_of(&sol, n)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn source_node(&self, source: usize) -> Option<u32> {
        match self.sources.get(source)? {
            Slot::Named(id) | Slot::Own(id) => Some(*id),
            Slot::Unknown => None,
        }
    }

    /// The shift (ns) to add to `source`'s timestamps to put them on the reference clock
    /// (minus its node's offset at the latest pair), when the estimate is confident; 0 for the
    /// reference's own sources. `None` otherwise, or for a source never seen.
    pub fn correction_for_source(&self, source: usize) -> Option<i64> {
        let node = self.source_node(source)?;
        let e = self.estimate_of(&self.solve(), node)?;
        e.confident.then_some(-e.offset_ns)
    }

    /// [`SkewEstimator::correction_for_source`] at time `t_ns` (drift applied).
    pub fn correction_at(&self, source: usize, t_ns: u64) -> Option<i64> {
        let node = self.source_node(source)?;
        let sol = self.solve();
        let e = self.estimate_of(&sol, node)?;
        if !e.confident {
            return None;
        }
        self.offset_on(&sol, node, t_ns)
            .map(|o| -(o.round() as i64))
    }

    /// [`SkewEstimator::correction_for_source`] of every source index up to the highest seen,
    /// computed once (for callers that correct every packet).
    pub fn corrections(&self) -> Vec<Option<i64>> {
        let sol = self.solve();
        let per_node: Vec<Option<i64>> = (0..self.names.len() as u32)
            .map(|n| {
                let e = self.estimate_of(&sol, n)?;
                e.confident.then_some(-e.offset_ns)
            })
            .collect();
        (0..self.sources.len())
            .map(|s| per_node[self.source_node(s)? as usize])
            .collect()
    }

    /// Pairs between different nodes whose receiver's timestamp (as captured) is earlier than
    /// the sender's.
    pub fn received_before_sent(&self) -> u64 {
        self.raw.reversed()
    }

    /// The same pairs counted after shifting each node's timestamps by the confident
    /// correction known *when the pair came* (refreshed every 1024 pairs, drift applied): what
    /// a writer that corrects with the estimates of the moment would show. Pairs before the
    /// first confident estimate count uncorrected. To count what was actually written, feed the
    /// written timestamps to a [`ReversalCounter`].
    pub fn received_before_sent_corrected(&self) -> u64 {
        self.corrected.reversed()
    }

    /// Pairs between sources of different nodes (all, including implausible ones).
    pub fn inter_node_pairs(&self) -> u64 {
        self.inter_node
    }

    /// Pairs between sources of one node (no clock evidence).
    pub fn same_node_pairs(&self) -> u64 {
        self.same_node
    }

    /// Inter-node pairs skipped as evidence: a zero timestamp, or more than
    /// [`MAX_PLAUSIBLE_NS`] between the two.
    pub fn implausible(&self) -> u64 {
        self.implausible
    }

    /// Pairs that came for a window already folded (older than [`OPEN_BUCKETS`] windows before
    /// the newest): counted, not used.
    pub fn late(&self) -> u64 {
        self.edges.iter().map(|e| e.late).sum()
    }

    /// Windows held open now, over all node pairs (at most [`OPEN_BUCKETS`] per node pair).
    pub fn kept_buckets(&self) -> usize {
        self.edges.iter().map(|e| e.open.len()).sum()
    }

    /// The latency report's clock rows: one per node with an estimate, relative to the
    /// reference (`report::Row::clock`).
    pub fn rows(&self) -> Vec<crate::report::Row> {
        let Some(reference) = self.reference() else {
            return Vec::new();
        };
        self.estimates()
            .into_iter()
            .map(|(node, e)| {
                crate::report::Row::clock(reference, &node, e.pairs, e.offset_ns, e.uncertainty_ns)
            })
            .collect()
    }

    /// The run summary: one line per node other than the reference, e.g.
    /// `node-2 is +40.00 ms (± 2.1 µs) from node-1, from 812 pairs, drifting +12.0 ppm`, or why
    /// it has no estimate. Nothing when no pair crossed nodes.
    pub fn lines(&self) -> Vec<String> {
        if self.inter_node == 0 {
            return Vec::new();
        }
        let sol = self.solve();
        let Some(r) = sol.reference else {
            return Vec::new();
        };
        let rname = &self.names[r as usize];
        let mut order: Vec<u32> = (0..self.names.len() as u32).filter(|&n| n != r).collect();
        order.sort_by(|&a, &b| self.names[a as usize].cmp(&self.names[b as usize]));
        let mut out = Vec::new();
        for n in order {
            let name = &self.names[n as usize];
            if let Some(e) = self.estimate_of(&sol, n) {
                let mut l = format!(
                    "{name} is {} (± {}) from {rname}",
                    signed_ns(e.offset_ns),
                    show_ns(e.uncertainty_ns)
                );
                if !e.via.is_empty() {
                    l.push_str(&format!(" via {}", e.via.join(", ")));
                }
                l.push_str(&format!(", from {} pairs", e.pairs));
                if let (Some(d), Some(se)) = (e.drift_ppm, e.drift_uncertainty_ppm) {
                    if d.abs() >= 1.0 && d.abs() >= 3.0 * se {
                        l.push_str(&format!(", drifting {d:+.1} ppm"));
                    }
                }
                if !e.confident {
                    l.push_str(" (too little to correct by)");
                }
                out.push(l);
            } else {
                out.push(format!(
                    "{name}: no estimate ({})",
                    self.why_not(&sol, n, r)
                ));
            }
        }
        out
    }

    /// Why `node` has no estimate, for [`SkewEstimator::lines`].
    fn why_not(&self, sol: &Solution, node: u32, reference: u32) -> String {
        let mine: Vec<(usize, &Edge)> = self
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.lo == node || e.hi == node)
            .collect();
        if mine.is_empty() {
            return "no packets linked with another node".to_string();
        }
        if mine.iter().any(|(i, _)| sol.fits[*i].is_some()) {
            return format!(
                "not linked to {} by pairs both ways",
                self.names[reference as usize]
            );
        }
        // the node pair with the most pairs, preferring the one with the reference
        let Some((_, e)) = mine.iter().max_by_key(|(_, e)| {
            (
                e.lo == reference || e.hi == reference,
                e.pairs[0] + e.pairs[1],
            )
        }) else {
            return "no packets linked with another node".to_string();
        };
        let (lo, hi) = (&self.names[e.lo as usize], &self.names[e.hi as usize]);
        match (e.pairs[0] > 0, e.pairs[1] > 0) {
            (true, false) => format!("pairs only {lo} → {hi}; needs traffic both ways"),
            (false, true) => format!("pairs only {hi} → {lo}; needs traffic both ways"),
            _ => format!(
                "{lo} → {hi} and back never within {}",
                show_ns(BUCKET_NS as i64)
            ),
        }
    }
}

/// A Dijkstra heap entry, nearest first.
#[derive(PartialEq)]
struct Near(f64, u32);

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// `show_ns` with the sign always shown.
fn signed_ns(ns: i64) -> String {
    if ns >= 0 {
        format!("+{}", show_ns(ns))
    } else {
        show_ns(ns)
    }
}

impl PairObserver for SkewEstimator {
    fn linked(&mut self, pair: &LinkedPair) {
        self.add(pair);
    }
}

/// A [`SkewEstimator`] shared between the [`crate::Linker`] (as an observer) and whoever reads
/// it (the engine, for corrections and the summary).
#[derive(Clone, Debug, Default)]
pub struct SharedSkew(pub Arc<Mutex<SkewEstimator>>);

impl SharedSkew {
    pub fn new(estimator: SkewEstimator) -> Self {
        Self(Arc::new(Mutex::new(estimator)))
    }

    /// The estimator (a poisoned lock is taken over: the estimator has no invariant a panic
    /// elsewhere could break halfway).
    pub fn lock(&self) -> MutexGuard<'_, SkewEstimator> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PairObserver for SharedSkew {
    fn linked(&mut self, pair: &LinkedPair) {
        self.lock().add(pair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Uniform in [0, n) ns.
        fn upto(&mut self, n: u64) -> u64 {
            (self.unit() * n as f64) as u64
        }
        /// Exponential with this mean (ns).
        fn exp(&mut self, mean: f64) -> u64 {
            (-mean * (1.0 - self.unit()).ln()) as u64
        }
    }

    const T0: u64 = 1_700_000_000_000_000_000;
    const MS: i64 = 1_000_000;
    const US: i64 = 1_000;
    const S: u64 = 1_000_000_000;

    /// A node's clock: true time + offset + drift since T0.
    #[derive(Clone, Copy)]
    struct Clock {
        offset_ns: i64,
        ppm: f64,
    }

    const TRUE: Clock = Clock {
        offset_ns: 0,
        ppm: 0.0,
    };

    fn ahead(offset_ns: i64) -> Clock {
        Clock {
            offset_ns,
            ppm: 0.0,
        }
    }

    impl Clock {
        fn offset_at(&self, t: u64) -> i64 {
            self.offset_ns + ((t - T0) as f64 * self.ppm / 1e6).round() as i64
        }
        fn at(&self, t: u64) -> u64 {
            (t as i64 + self.offset_at(t)) as u64
        }
    }

    /// A source on a simulated node.
    #[derive(Clone, Copy)]
    struct Side {
        source: usize,
        clock: Clock,
    }

    fn side(source: usize, clock: Clock) -> Side {
        Side { source, clock }
    }

    fn pair(from: Side, to: Side, t: u64, delay: u64) -> LinkedPair {
        LinkedPair {
            sender: from.source,
            receiver: to.source,
            sender_ts: from.clock.at(t),
            receiver_ts: to.clock.at(t + delay),
        }
    }

    /// Packets both ways between `a` and `b` for `secs` from `start`, `per_sec` each way,
    /// alternating, with `delay(rng, a_to_b)`. Returns the pairs in sending order.
    fn exchange(
        rng: &mut Rng,
        a: Side,
        b: Side,
        start: u64,
        secs: f64,
        per_sec: u64,
        delay: &dyn Fn(&mut Rng, bool) -> u64,
    ) -> Vec<LinkedPair> {
        let n = (secs * per_sec as f64 * 2.0) as u64;
        let step = S / (per_sec * 2);
        (0..n)
            .map(|i| {
                let t = start + i * step + rng.upto(step / 2);
                let ab = i % 2 == 0;
                let d = delay(rng, ab);
                if ab {
                    pair(a, b, t, d)
                } else {
                    pair(b, a, t, d)
                }
            })
            .collect()
    }

    fn feed(est: &mut SkewEstimator, pairs: &[LinkedPair]) {
        for p in pairs {
            est.add(p);
        }
    }

    /// 150–200 µs each way.
    fn symmetric(rng: &mut Rng, _: bool) -> u64 {
        150_000 + rng.upto(50_000)
    }

    fn two_nodes() -> (SkewEstimator, Side, Side) {
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-1");
        est.set_node(1, "node-2");
        (est, side(0, TRUE), side(1, ahead(40 * MS)))
    }

    fn near(got: i64, want: i64, tol: i64, what: &str) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: {got} ns, want {want} ± {tol}"
        );
    }

    #[test]
    fn constant_offset_with_symmetric_delay() {
        let mut rng = Rng(1);
        let (mut est, a, b) = two_nodes();
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 60.0, 100, &symmetric),
        );
        let e = est.estimate("node-2").expect("an estimate");
        near(e.offset_ns, 40 * MS, 10 * US, "offset");
        assert!(e.confident, "{e:?}");
        assert!(e.uncertainty_ns <= 10 * US, "{e:?}");
        assert!(e.uncertainty_ns >= UNCERTAINTY_FLOOR_NS);
        // the smallest round trip is ~300 µs
        assert!((140 * US..=160 * US).contains(&e.bound_ns), "{e:?}");
        assert_eq!(e.pairs, 12_000);
        assert!(e.via.is_empty());
        let drift = e.drift_ppm.expect("60 s is long enough to fit drift");
        assert!(drift.abs() < 1.0, "{e:?}");
        assert_eq!(est.reference(), Some("node-1"));
        let line = &est.lines()[0];
        assert!(
            line.starts_with("node-2 is +40.00 ms (± ")
                && line.ends_with("from node-1, from 12000 pairs"),
            "{line}"
        );
        assert_eq!(est.lines().len(), 1);
        assert_eq!(est.late(), 0);
        assert_eq!(est.implausible(), 0);
    }

    #[test]
    fn sign_conventions() {
        // node-2's clock is 40 ms ahead: its timestamps are larger
        let mut rng = Rng(2);
        let (mut est, a, b) = two_nodes();
        let pairs = exchange(&mut rng, a, b, T0, 30.0, 100, &symmetric);
        let a_to_b = pairs.iter().find(|p| p.sender == 0).expect("a pair A → B");
        assert!(a_to_b.receiver_ts > a_to_b.sender_ts + 40_000_000);
        feed(&mut est, &pairs);
        let e = est.estimate("node-2").expect("an estimate");
        assert!(e.offset_ns > 0, "node clock − reference clock: {e:?}");
        // corrections are minus the offset: added to node-2's timestamps, they give node-1's
        let c = est.correction_for_source(1).expect("confident");
        near(c, -40 * MS, 10 * US, "correction");
        assert_eq!(est.correction_for_source(0), Some(0), "the reference's own");
        assert_eq!(est.corrections(), vec![Some(0), Some(c)]);
        let corrected = a_to_b.receiver_ts as i64 + c - a_to_b.sender_ts as i64;
        assert!((150 * US..=210 * US).contains(&corrected), "{corrected}");
        // every B → A pair seems received before it was sent ...
        let b_to_a = pairs.iter().filter(|p| p.sender == 1).count() as u64;
        assert_eq!(est.received_before_sent(), b_to_a);
        // ... until the corrections are known: only those before the first refresh remain
        let left = est.received_before_sent_corrected();
        assert!(left <= REFRESH_PAIRS / 2, "{left}");
        let mut again = est.clone();
        let before = again.received_before_sent_corrected();
        feed(
            &mut again,
            &exchange(&mut rng, a, b, T0 + 30 * S, 30.0, 100, &symmetric),
        );
        assert_eq!(again.received_before_sent_corrected(), before);
        assert_eq!(again.received_before_sent(), 2 * b_to_a);
        // the reference is node-1 whichever way round
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-2");
        est.set_node(1, "node-1");
        let (a, b) = (side(1, TRUE), side(0, ahead(40 * MS)));
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 30.0, 100, &symmetric),
        );
        assert_eq!(est.reference(), Some("node-2"));
        let e = est.estimate("node-1").expect("an estimate");
        near(e.offset_ns, -40 * MS, 10 * US, "node-1 is behind node-2");
        assert!(
            est.lines()[0].starts_with("node-1 is -40.00 ms"),
            "{:?}",
            est.lines()
        );
    }

    #[test]
    fn asymmetric_delay_biases_by_half_the_difference() {
        // A → B takes 300 µs, B → A 100 µs: the estimate is off by (300 − 100) / 2 = +100 µs,
        // within the bound (half the round trip), and nothing in the data can show it
        let mut rng = Rng(3);
        let (mut est, a, b) = two_nodes();
        let delay = |rng: &mut Rng, ab: bool| {
            if ab {
                300_000 + rng.upto(20_000)
            } else {
                100_000 + rng.upto(20_000)
            }
        };
        feed(&mut est, &exchange(&mut rng, a, b, T0, 60.0, 100, &delay));
        let e = est.estimate("node-2").expect("an estimate");
        near(e.offset_ns, 40 * MS + 100 * US, 10 * US, "offset");
        assert!(
            e.uncertainty_ns < 10 * US,
            "{e:?}: the bias is not statistical"
        );
        assert!((e.offset_ns - 40 * MS).abs() <= e.bound_ns, "{e:?}");
        near(e.bound_ns, 200 * US, 5 * US, "bound");
    }

    #[test]
    fn jitter_is_filtered_by_the_minimum() {
        // most packets queue (exponential, 2 ms mean; one direction far more loaded)
        let mut rng = Rng(4);
        let (mut est, a, b) = two_nodes();
        let delay = |rng: &mut Rng, ab: bool| {
            let base = 100_000 + rng.upto(20_000);
            let (share, mean) = if ab { (0.9, 5e6) } else { (0.5, 1e6) };
            if rng.unit() < share {
                base + rng.exp(mean)
            } else {
                base
            }
        };
        let pairs = exchange(&mut rng, a, b, T0, 120.0, 50, &delay);
        // the mean one-way times would be ~2 ms off
        let mean = |dir: usize| {
            let v: Vec<i64> = pairs
                .iter()
                .filter(|p| p.sender == dir)
                .map(|p| p.receiver_ts as i64 - p.sender_ts as i64)
                .collect();
            v.iter().sum::<i64>() / v.len() as i64
        };
        let naive = (mean(0) - mean(1)) / 2;
        assert!((naive - 40 * MS).abs() > MS, "{naive}");
        feed(&mut est, &pairs);
        let e = est.estimate("node-2").expect("an estimate");
        near(e.offset_ns, 40 * MS, 100 * US, "offset");
        assert!(e.confident, "{e:?}");
        assert!(
            (e.offset_ns - 40 * MS).abs() <= 4 * e.uncertainty_ns + 20 * US,
            "the uncertainty should cover the error: {e:?}"
        );
    }

    #[test]
    fn drift_over_five_minutes() {
        let mut rng = Rng(5);
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-1");
        est.set_node(1, "node-2");
        let b_clock = Clock {
            offset_ns: 40 * MS,
            ppm: 20.0,
        };
        let (a, b) = (side(0, TRUE), side(1, b_clock));
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 300.0, 50, &symmetric),
        );
        let end = T0 + 300 * S;
        near(
            est.offset_at("node-2", T0).expect("start"),
            40 * MS,
            100 * US,
            "start",
        );
        near(
            est.offset_at("node-2", end).expect("end"),
            46 * MS,
            100 * US,
            "end",
        );
        let e = est.estimate("node-2").expect("an estimate");
        near(e.offset_ns, b_clock.offset_at(end), 100 * US, "now");
        let drift = e.drift_ppm.expect("drift");
        assert!((drift - 20.0).abs() <= 2.0, "{e:?}");
        assert!(e.drift_uncertainty_ppm.expect("its error") < 1.0, "{e:?}");
        assert!(e.confident);
        near(
            est.correction_at(1, T0).expect("confident"),
            -40 * MS,
            100 * US,
            "at start",
        );
        let line = &est.lines()[0];
        assert!(line.contains(", drifting +2"), "{line}");
        // a constant fit over the same data would be 3 ms off at either end
        assert!(e.uncertainty_ns < 20 * US, "{e:?}");
    }

    #[test]
    fn three_nodes_chained() {
        // A–B and B–C talk, A and C never do
        let mut rng = Rng(6);
        let mut est = SkewEstimator::new();
        for (s, n) in [(0, "node-1"), (1, "node-2"), (2, "node-3")] {
            est.set_node(s, n);
        }
        let a = side(0, TRUE);
        let b = side(1, ahead(40 * MS));
        let c = side(2, ahead(25 * MS));
        // noisy enough that the uncertainties are above the floor
        let delay = |rng: &mut Rng, _: bool| 100_000 + rng.upto(2_000_000);
        let mut pairs = exchange(&mut rng, a, b, T0, 60.0, 20, &delay);
        pairs.extend(exchange(&mut rng, b, c, T0, 60.0, 20, &delay));
        pairs.sort_by_key(|p| p.sender_ts.min(p.receiver_ts));
        feed(&mut est, &pairs);
        let e = est.estimate("node-3").expect("chained");
        near(e.offset_ns, 25 * MS, 100 * US, "A → C");
        assert_eq!(e.via, vec!["node-2".to_string()]);
        let ab = est.estimate("node-2").expect("direct");
        assert!(ab.via.is_empty());
        let mut from_b = est.clone();
        from_b.set_reference("node-2");
        let bc = from_b.estimate("node-3").expect("direct");
        near(bc.offset_ns, -15 * MS, 100 * US, "B → C");
        assert!(
            ab.uncertainty_ns > UNCERTAINTY_FLOOR_NS && bc.uncertainty_ns > UNCERTAINTY_FLOOR_NS
        );
        let quadrature = ((ab.uncertainty_ns.pow(2) + bc.uncertainty_ns.pow(2)) as f64).sqrt();
        near(
            e.uncertainty_ns,
            quadrature as i64,
            2,
            "uncertainties in quadrature",
        );
        assert_eq!(e.pairs, ab.pairs + bc.pairs);
        assert_eq!(e.bound_ns, ab.bound_ns + bc.bound_ns);
        assert_eq!(e.confident, ab.confident && bc.confident);
        let names: Vec<String> = est.estimates().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["node-2", "node-3"]);
        let lines = est.lines();
        assert!(
            lines[1].starts_with("node-3 is +25.")
                && lines[1].contains(" from node-1 via node-2, from "),
            "{lines:?}"
        );
    }

    #[test]
    fn direct_estimate_preferred_over_a_noisier_chain() {
        let mut rng = Rng(7);
        let mut est = SkewEstimator::new();
        for (s, n) in [(0, "node-1"), (1, "node-2"), (2, "node-3")] {
            est.set_node(s, n);
        }
        let a = side(0, TRUE);
        let b = side(1, ahead(40 * MS));
        let c = side(2, ahead(25 * MS));
        let noisy = |rng: &mut Rng, _: bool| 100_000 + rng.upto(2_000_000);
        let mut pairs = exchange(&mut rng, a, b, T0, 60.0, 20, &noisy);
        pairs.extend(exchange(&mut rng, b, c, T0, 60.0, 20, &noisy));
        pairs.extend(exchange(&mut rng, a, c, T0, 60.0, 20, &noisy));
        pairs.sort_by_key(|p| p.sender_ts.min(p.receiver_ts));
        feed(&mut est, &pairs);
        let e = est.estimate("node-3").expect("an estimate");
        assert!(e.via.is_empty(), "{e:?}");
        near(e.offset_ns, 25 * MS, 100 * US, "A → C");
    }

    #[test]
    fn one_way_traffic_gives_no_estimate_and_says_why() {
        let mut rng = Rng(8);
        let mut est = SkewEstimator::new();
        for (s, n) in [
            (0, "node-1"),
            (1, "node-2"),
            (2, "node-3"),
            (3, "node-4"),
            (4, "node-5"),
        ] {
            est.set_node(s, n);
        }
        let a = side(0, TRUE);
        let b = side(1, ahead(40 * MS));
        let c = side(2, ahead(25 * MS));
        let d = side(3, ahead(-5 * MS));
        let e = side(4, ahead(7 * MS));
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 20.0, 50, &symmetric),
        );
        // only A → C
        let only: Vec<LinkedPair> = exchange(&mut rng, a, c, T0, 20.0, 50, &symmetric)
            .into_iter()
            .filter(|p| p.sender == 0)
            .collect();
        feed(&mut est, &only);
        // D and E talk both ways but never with the others
        feed(
            &mut est,
            &exchange(&mut rng, d, e, T0, 20.0, 50, &symmetric),
        );
        assert!(est.estimate("node-3").is_none());
        assert!(est.estimate("node-4").is_none());
        assert!(est.estimate("node-2").is_some());
        assert_eq!(est.correction_for_source(2), None);
        let lines = est.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(
            lines[1],
            "node-3: no estimate (pairs only node-1 → node-3; needs traffic both ways)"
        );
        assert_eq!(
            lines[2],
            "node-4: no estimate (not linked to node-1 by pairs both ways)"
        );
        assert_eq!(
            lines[3],
            "node-5: no estimate (not linked to node-1 by pairs both ways)"
        );
        assert_eq!(est.estimates().len(), 1);

        // both ways, but never in the same window
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-1");
        est.set_node(1, "node-2");
        est.set_node(2, "node-3");
        let mut pairs = exchange(&mut rng, a, c, T0, 20.0, 50, &symmetric);
        pairs.retain(|p| match p.sender {
            0 => p.sender_ts < T0 + 9 * S,
            _ => p.sender_ts > T0 + 11 * S,
        });
        feed(&mut est, &pairs);
        assert!(est.estimate("node-3").is_none());
        assert_eq!(
            est.lines(),
            [
                "node-2: no estimate (no packets linked with another node)",
                "node-3: no estimate (node-1 → node-3 and back never within 500.00 ms)",
            ]
        );
    }

    #[test]
    fn confidence_thresholds() {
        let mut rng = Rng(9);
        // two windows, many pairs: not confident
        let (mut est, a, b) = two_nodes();
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 1.0, 200, &symmetric),
        );
        let e = est.estimate("node-2").expect("an estimate");
        assert!(!e.confident, "{e:?}");
        near(e.offset_ns, 40 * MS, 10 * US, "offset");
        assert_eq!(est.correction_for_source(1), None);
        assert!(est.lines()[0].ends_with(" (too little to correct by)"));

        // three windows, 20 pairs each way: just enough
        let (mut est, a, b) = two_nodes();
        let pairs = exchange(&mut rng, a, b, T0, 1.5, 14, &symmetric);
        assert_eq!(pairs.len(), 42);
        feed(&mut est, &pairs[..40]);
        let e = est.estimate("node-2").expect("an estimate");
        assert_eq!(est.edges[0].fit().map(|f| f.both_ways), Some(3));
        assert!(e.confident, "{e:?}");
        // 19 one way: not enough
        let (mut est, _, _) = two_nodes();
        feed(&mut est, &pairs[..39]);
        let e = est.estimate("node-2").expect("an estimate");
        assert!(!e.confident, "{e:?}");
        assert_eq!(est.correction_for_source(1), None);

        // plenty of windows and pairs, but delays so varied the fit is unsure by ms
        let (mut est, a, b) = two_nodes();
        let wild = |rng: &mut Rng, _: bool| rng.upto(50_000_000);
        // a pair each way per window
        feed(&mut est, &exchange(&mut rng, a, b, T0, 20.0, 2, &wild));
        let e = est.estimate("node-2").expect("an estimate");
        assert!(e.uncertainty_ns > MAX_CONFIDENT_UNCERTAINTY_NS, "{e:?}");
        assert!(!e.confident);
        // and the truth still lies within the bound
        assert!((e.offset_ns - 40 * MS).abs() <= e.bound_ns, "{e:?}");
    }

    #[test]
    fn a_single_window_falls_back_to_the_ntp_bound() {
        let (mut est, a, b) = two_nodes();
        // one pair each way, round trip 300 µs
        est.add(&pair(a, b, T0 + 1000, 100_000));
        est.add(&pair(b, a, T0 + 2000, 200_000));
        let e = est.estimate("node-2").expect("an estimate");
        assert_eq!(e.offset_ns, 40 * MS - 50 * US);
        assert_eq!(e.bound_ns, 150 * US);
        assert_eq!(e.uncertainty_ns, 150 * US);
        assert!(!e.confident);
        assert_eq!(e.drift_ppm, None);
    }

    #[test]
    fn reference_choice() {
        let mut rng = Rng(10);
        // the node of the lowest source named, whatever the order of naming
        let mut est = SkewEstimator::new();
        est.set_node(3, "c");
        est.set_node(1, "b");
        est.set_node(2, "a");
        assert_eq!(est.reference(), Some("b"));
        let zero = est.estimate("b").expect("the reference");
        assert_eq!(
            (zero.offset_ns, zero.uncertainty_ns, zero.confident),
            (0, 0, true)
        );
        // a source never named is a node of its own, and not the reference
        let x = side(0, ahead(3 * MS));
        let b = side(1, TRUE);
        feed(
            &mut est,
            &exchange(&mut rng, x, b, T0, 10.0, 50, &symmetric),
        );
        assert_eq!(est.reference(), Some("b"));
        let e = est.estimate("#0").expect("source 0's own node");
        near(e.offset_ns, 3 * MS, 10 * US, "#0");
        assert_eq!(est.correction_for_source(0), Some(-e.offset_ns));
        // explicitly chosen
        est.set_reference("#0");
        assert_eq!(est.reference(), Some("#0"));
        near(
            est.estimate("b").expect("b").offset_ns,
            -3 * MS,
            10 * US,
            "b",
        );
        est.set_reference("nowhere");
        assert_eq!(est.reference(), None);
        assert!(est.estimates().is_empty());

        // nothing named: the lowest source seen
        let mut est = SkewEstimator::new();
        let s5 = side(5, ahead(MS));
        let s2 = side(2, TRUE);
        assert_eq!(est.reference(), None);
        feed(
            &mut est,
            &exchange(&mut rng, s5, s2, T0, 10.0, 50, &symmetric),
        );
        assert_eq!(est.reference(), Some("#2"));
        near(est.estimate("#5").expect("#5").offset_ns, MS, 10 * US, "#5");
        assert_eq!(est.corrections().len(), 6);
        assert_eq!(est.corrections()[3], None);
        assert_eq!(est.correction_for_source(99), None);
    }

    #[test]
    fn pairs_within_a_node_and_implausible_ones_are_no_evidence() {
        let mut rng = Rng(11);
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-1");
        est.set_node(1, "node-1");
        feed(
            &mut est,
            &exchange(
                &mut rng,
                side(0, TRUE),
                side(1, ahead(MS)),
                T0,
                5.0,
                50,
                &symmetric,
            ),
        );
        assert_eq!(est.same_node_pairs(), 500);
        assert_eq!(est.inter_node_pairs(), 0);
        assert!(est.lines().is_empty());
        assert!(est.estimates().is_empty());
        assert_eq!(est.kept_buckets(), 0);

        let (mut est, a, b) = two_nodes();
        let good = exchange(&mut rng, a, b, T0, 10.0, 50, &symmetric);
        feed(&mut est, &good);
        let before = est.estimate("node-2");
        for p in [
            LinkedPair {
                sender: 0,
                receiver: 1,
                sender_ts: 0,
                receiver_ts: T0,
            },
            LinkedPair {
                sender: 1,
                receiver: 0,
                sender_ts: T0 + 5 * S,
                receiver_ts: T0 + 125 * S,
            },
            LinkedPair {
                sender: 1,
                receiver: 0,
                sender_ts: u64::MAX,
                receiver_ts: T0,
            },
        ] {
            est.add(&p);
        }
        assert_eq!(est.implausible(), 3);
        assert_eq!(est.inter_node_pairs(), 1003);
        assert_eq!(est.estimate("node-2"), before);
    }

    #[test]
    fn out_of_order_pairs_within_the_open_windows() {
        let mut rng = Rng(12);
        let (mut ordered, a, b) = two_nodes();
        let pairs = exchange(&mut rng, a, b, T0, 30.0, 50, &symmetric);
        feed(&mut ordered, &pairs);
        // the merge delivers pairs up to ~2 s out of order
        let mut shuffled = pairs.clone();
        let mut keyed: Vec<(u64, LinkedPair)> = shuffled
            .drain(..)
            .map(|p| (p.sender_ts + rng.upto(2 * S), p))
            .collect();
        keyed.sort_by_key(|k| k.0);
        let (mut est, _, _) = two_nodes();
        for (_, p) in &keyed {
            est.add(p);
        }
        assert_eq!(est.late(), 0);
        let (x, y) = (est.estimate("node-2"), ordered.estimate("node-2"));
        let (x, y) = (x.expect("shuffled"), y.expect("ordered"));
        assert_eq!(
            (x.offset_ns, x.pairs, x.bound_ns),
            (y.offset_ns, y.pairs, y.bound_ns)
        );
        // a pair for a window folded long ago is counted, not used
        est.add(&pair(a, b, T0, 1));
        assert_eq!(est.late(), 1);
        assert_eq!(
            est.estimate("node-2").map(|e| e.offset_ns),
            Some(x.offset_ns)
        );
    }

    #[test]
    fn bounded_memory_over_an_hour() {
        // a million pairs over an hour, with drift; three node pairs
        let mut rng = Rng(13);
        let mut est = SkewEstimator::new();
        for (s, n) in [(0, "node-1"), (1, "node-2"), (2, "node-3")] {
            est.set_node(s, n);
        }
        let a = side(0, TRUE);
        let b = side(
            1,
            Clock {
                offset_ns: 40 * MS,
                ppm: 20.0,
            },
        );
        let c = side(
            2,
            Clock {
                offset_ns: -3 * MS,
                ppm: -7.0,
            },
        );
        let links = [(a, b), (b, c), (a, c)];
        let started = std::time::Instant::now();
        let mut most = 0;
        let n = 1_000_000u64;
        let step = 3600 * S / n;
        for i in 0..n {
            let t = T0 + i * step;
            let (x, y) = links[(i % 3) as usize];
            let p = if i % 2 == 0 {
                pair(x, y, t, symmetric(&mut rng, true))
            } else {
                pair(y, x, t, symmetric(&mut rng, false))
            };
            est.add(&p);
            if i % 10_000 == 0 {
                most = most.max(est.kept_buckets());
            }
        }
        let took = started.elapsed();
        assert!(most <= 3 * OPEN_BUCKETS, "{most}");
        assert!(est.kept_buckets() <= 3 * OPEN_BUCKETS);
        assert_eq!(est.late(), 0);
        let end = T0 + 3600 * S;
        let e = est.estimate("node-2").expect("node-2");
        near(
            e.offset_ns,
            b.clock.offset_at(end),
            10 * US,
            "node-2 after an hour",
        );
        assert!((e.drift_ppm.expect("drift") - 20.0).abs() < 0.1, "{e:?}");
        near(
            est.offset_at("node-3", T0).expect("node-3"),
            -3 * MS,
            10 * US,
            "node-3 at the start",
        );
        near(
            est.offset_at("node-3", end).expect("node-3"),
            c.clock.offset_at(end),
            10 * US,
            "node-3 at the end",
        );
        eprintln!("1M pairs in {took:?}");
    }

    #[test]
    fn shared_handle_observes_pairs() {
        let mut rng = Rng(14);
        let (est, a, b) = two_nodes();
        let shared = SharedSkew::new(est);
        let mut observer: Box<dyn PairObserver> = Box::new(shared.clone());
        for p in exchange(&mut rng, a, b, T0, 10.0, 50, &symmetric) {
            observer.linked(&p);
        }
        let e = shared.lock().estimate("node-2").expect("an estimate");
        near(e.offset_ns, 40 * MS, 10 * US, "offset");
    }

    #[test]
    fn reversal_counter_counts_what_it_is_given() {
        let mut c = ReversalCounter::default();
        c.observe(10, 20);
        c.observe(10, 10);
        c.observe(10, 9);
        assert_eq!((c.pairs(), c.reversed()), (3, 1));
    }

    #[test]
    fn naming_a_source_late_leaves_its_earlier_pairs_with_its_own_node() {
        let mut rng = Rng(15);
        let mut est = SkewEstimator::new();
        est.set_node(0, "node-1");
        let (a, b) = (side(0, TRUE), side(1, ahead(40 * MS)));
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0, 10.0, 50, &symmetric),
        );
        near(
            est.estimate("#1").expect("#1").offset_ns,
            40 * MS,
            10 * US,
            "#1",
        );
        est.set_node(1, "node-2");
        assert!(est.estimate("node-2").is_none());
        assert!(est.correction_for_source(1).is_none());
        feed(
            &mut est,
            &exchange(&mut rng, a, b, T0 + 10 * S, 10.0, 50, &symmetric),
        );
        let e = est.estimate("node-2").expect("node-2");
        assert_eq!(e.pairs, 1000);
        near(
            est.correction_for_source(1).expect("confident"),
            -40 * MS,
            10 * US,
            "src 1",
        );
        assert!(est.estimate("#1").is_some());
    }
}
