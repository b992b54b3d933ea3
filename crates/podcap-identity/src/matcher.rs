//! The matcher: finds, for each packet, an earlier copy of it from another source within a
//! bounded window, in O(1) per packet and bounded memory.
//!
//! Packets are offered in merged (timestamp) order. Every offered packet becomes an entry in
//! a FIFO ring and is indexed in a hash map whose slots hold a few entry serials (oldest
//! first). Whole-matched packets are indexed by their key; TCP data by (segment group, first
//! sequence number), and segments longer than one MSS (offloaded or coalesced) also by
//! (segment group, 4 KiB block of sequence space) for every block their bytes touch (at most
//! [`MAX_BLOCKS`]), so a packet finds the earlier segment that holds its first byte whatever
//! the segmentation on either side.
//!
//! A candidate must come from another source, lie within the window, agree on at least one
//! endpoint (address and port: NAT changes the other), and not already be claimed by a copy
//! from the offering source (a retransmission is a new packet, not a third copy of the
//! first): a whole-matched entry can be claimed once per other source; a data entry can be
//! claimed again from the same source only for bytes after those already claimed (the pieces
//! of one offloaded segment). IPv4 identifications must be consistent: equal at equal starts,
//! and rising by at most one per 256 bytes of offset (the pieces of one offloaded segment
//! count up from the segment's identification, or keep it). The oldest eligible candidate
//! wins: copies of a packet arrive in the order they were sent. An overheard copy (a frame a
//! bridge flooded to a third pod) links to the oldest usable copy without claiming it, and is
//! itself never a candidate.
//!
//! Entries leave the ring when they are older than the window (packet time) or when the ring
//! holds `capacity` entries or the index `2 × capacity` keys; a slot that is full forgets its
//! oldest serial. Memory is therefore bounded by `capacity` entries plus `2 × capacity` index
//! keys ([`Matcher::memory_bound`]), whatever the traffic.

use crate::key::{mix, Direction, Endpoint, Identity, Key};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

/// The default window: how far apart in packet time two copies may be (latency plus the clock
/// difference between nodes).
pub const DEFAULT_WINDOW_NS: u64 = 2_000_000_000;
/// The default capacity: entries kept at most, whatever the window.
pub const DEFAULT_CAPACITY: usize = 1 << 16;
/// Sequence-space blocks of 4 KiB.
const BLOCK_SHIFT: u32 = 12;
/// Blocks indexed per data segment at most (a 64 KiB segment touches 17); bytes beyond are
/// not found by a later copy's first byte.
pub const MAX_BLOCKS: u32 = 17;
/// Serials per index slot.
const SLOT: usize = 6;
/// Data segments longer than this are also indexed by block: only they can have been cut (or
/// coalesced) differently on the other side (a segment no longer than the MSS never is).
pub const SMALL_SEGMENT: u32 = 1460;
/// Segments walked at most to check that another source had every byte of a copy.
const MAX_WALK: usize = 64;
const NO_ID: u32 = u32::MAX;
/// `claimed` of an overheard copy: never a candidate.
const OVERHEARD: u32 = u32::MAX;

/// The matcher's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchConfig {
    pub window_ns: u64,
    pub capacity: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            window_ns: DEFAULT_WINDOW_NS,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// One packet as offered to the matcher.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    pub source: u32,
    pub ts: u64,
    pub identity: &'a Identity,
    /// Direction as best known (link layer, input flags, or address ownership).
    pub direction: Option<Direction>,
}

/// The earlier copy a packet was linked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Earlier {
    pub source: u32,
    pub ts: u64,
    pub packet_id: u64,
    pub direction: Option<Direction>,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// This is the first copy linked to that earlier packet (latency is counted once per
    /// packet, not once per piece of an offloaded segment).
    pub first: bool,
}

/// What the matcher found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// No earlier copy: a new packet with this id.
    New(u64),
    /// A copy of an earlier packet; `covered`: every byte of this copy was seen at the
    /// earlier copy's source (always for whole-matched packets).
    Copy { earlier: Earlier, covered: bool },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ts: u64,
    packet_id: u64,
    /// Whole key, or segment group.
    k: u64,
    head: u64,
    src: Endpoint,
    dst: Endpoint,
    start: u32,
    end: u32,
    source: u32,
    /// 0: unclaimed; else the source (+1) of the copy that claimed it.
    claimed: u32,
    /// Data: end of the bytes claimed so far.
    claimed_end: u32,
    ip_id: u32,
    bytes: bool,
    direction: Option<Direction>,
}

impl Entry {
    fn contains(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.start) < self.end.wrapping_sub(self.start)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    n: u8,
    serials: [u32; SLOT],
}

impl Slot {
    fn push(&mut self, s: u32) {
        if usize::from(self.n) == SLOT {
            self.serials.copy_within(1.., 0);
            self.serials[SLOT - 1] = s;
        } else {
            self.serials[usize::from(self.n)] = s;
            self.n += 1;
        }
    }
    fn remove(&mut self, s: u32) {
        let n = usize::from(self.n);
        if let Some(i) = self.serials[..n].iter().position(|&x| x == s) {
            self.serials.copy_within(i + 1..n, i);
            self.n -= 1;
        }
    }
    fn get(&self) -> &[u32] {
        &self.serials[..usize::from(self.n)]
    }
}

/// Keys are already hashes: use them as they are.
#[derive(Default)]
struct PassHasher(u64);

impl std::hash::Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Index = HashMap<u64, Slot, BuildHasherDefault<PassHasher>>;

/// The bounded-window matcher.
pub struct Matcher {
    cfg: MatchConfig,
    ring: VecDeque<Entry>,
    /// Serial of `ring[0]` (serials wrap; the ring is far shorter than 2^32).
    head: u32,
    index: Index,
    keys: usize,
    next_id: u64,
    /// Entries that left because the ring or index was full (not because of age).
    pub evicted_early: u64,
}

/// The keys an entry is indexed under: whole-matched packets by their key; data segments by
/// (group, first sequence number), and those longer than [`SMALL_SEGMENT`] (offloaded or
/// coalesced: only they can be cut differently on the other side) also by every 4 KiB block
/// of sequence space they touch (at most [`MAX_BLOCKS`]).
fn keys_of(e: &Entry) -> impl Iterator<Item = u64> {
    let (first, n) = if e.bytes && e.end.wrapping_sub(e.start) > SMALL_SEGMENT {
        let span = e
            .end
            .wrapping_sub(1)
            .wrapping_sub(e.start & !((1 << BLOCK_SHIFT) - 1))
            >> BLOCK_SHIFT;
        (e.start >> BLOCK_SHIFT, (span + 1).min(MAX_BLOCKS))
    } else {
        (0, 0)
    };
    let (own, group) = if e.bytes {
        (start_key(e.k, e.start), e.k)
    } else {
        (e.k, 0)
    };
    std::iter::once(own).chain((0..n).map(move |i| block_key(group, first.wrapping_add(i))))
}

#[inline]
fn block_key(group: u64, block: u32) -> u64 {
    mix(group, u64::from(block & (u32::MAX >> BLOCK_SHIFT)))
}

#[inline]
fn start_key(group: u64, start: u32) -> u64 {
    mix(group ^ 0x5354_4152_5400_0000, u64::from(start))
}

impl Matcher {
    pub fn new(cfg: MatchConfig) -> Self {
        let cfg = MatchConfig {
            capacity: cfg.capacity.clamp(1, 1 << 30),
            ..cfg
        };
        Self {
            cfg,
            ring: VecDeque::new(),
            head: 0,
            index: Index::default(),
            keys: 0,
            next_id: 1,
            evicted_early: 0,
        }
    }

    pub fn config(&self) -> MatchConfig {
        self.cfg
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Index keys held now.
    pub fn index_keys(&self) -> usize {
        self.keys
    }

    /// The most memory the matcher's tables can take (bytes): `capacity` entries and
    /// `2 × capacity` index keys (+ one entry's worth), with the hash map's own overhead (one
    /// control byte per bucket, buckets a power of two at most 7/8 full: counted as 2×).
    pub fn memory_bound(&self) -> usize {
        let c = self.cfg.capacity;
        c.next_power_of_two() * std::mem::size_of::<Entry>()
            + 2 * (2 * c + MAX_BLOCKS as usize + 1).next_power_of_two()
                * (std::mem::size_of::<(u64, Slot)>() + 1)
    }

    fn entry(&self, serial: u32) -> Option<&Entry> {
        self.ring.get(serial.wrapping_sub(self.head) as usize)
    }

    fn evict_front(&mut self) {
        let Some(e) = self.ring.pop_front() else {
            return;
        };
        let serial = self.head;
        self.head = self.head.wrapping_add(1);
        for k in keys_of(&e) {
            if let Some(slot) = self.index.get_mut(&k) {
                slot.remove(serial);
                if slot.n == 0 {
                    self.index.remove(&k);
                }
            }
            self.keys -= 1;
        }
    }

    fn insert(&mut self, e: Entry) {
        let serial = self.head.wrapping_add(self.ring.len() as u32);
        for k in keys_of(&e) {
            self.index.entry(k).or_default().push(serial);
            self.keys += 1;
        }
        self.ring.push_back(e);
    }

    fn expire(&mut self, now: u64) {
        while let Some(front) = self.ring.front() {
            let full = self.ring.len() >= self.cfg.capacity || self.keys >= 2 * self.cfg.capacity;
            if full {
                self.evicted_early += 1;
            } else if front.ts.saturating_add(self.cfg.window_ns) >= now {
                break;
            }
            self.evict_front();
        }
    }

    /// Serials of the data segments of `group` that may hold byte `seq`: those starting there,
    /// then the long ones indexed under its block.
    fn holding(&self, group: u64, seq: u32) -> impl Iterator<Item = (u32, &Entry)> {
        let starting = self.index.get(&start_key(group, seq));
        let spanning = self.index.get(&block_key(group, seq >> BLOCK_SHIFT));
        starting
            .into_iter()
            .chain(spanning)
            .flat_map(|slot| slot.get().iter().copied())
            .filter_map(move |s| {
                self.entry(s)
                    .filter(|e| e.bytes && e.k == group && e.contains(seq))
                    .map(|e| (s, e))
            })
    }

    /// The oldest eligible earlier copy of `o` (whole: with its key; data: holding its first
    /// byte).
    fn candidate(&self, o: &Offer<'_>) -> Option<u32> {
        let id = o.identity;
        let me = o.source + 1;
        let free = |e: &Entry| e.claimed == 0 || o.identity.overheard;
        let usable = |e: &Entry| {
            e.claimed != OVERHEARD
                && e.source != o.source
                && e.ts.abs_diff(o.ts) <= self.cfg.window_ns
                && (e.src == id.src || e.dst == id.dst)
        };
        match id.key {
            Key::Whole(k) => {
                let slot = self.index.get(&k)?;
                slot.get().iter().copied().find(|&s| {
                    self.entry(s).is_some_and(|e| {
                        !e.bytes && e.k == k && free(e) && e.ip_id == ip(id) && usable(e)
                    })
                })
            }
            Key::Bytes {
                group, start, head, ..
            } => self
                .holding(group, start)
                .find(|(_, e)| {
                    usable(e)
                        && (free(e)
                            || (e.claimed == me && start.wrapping_sub(e.claimed_end) < 1 << 31))
                        && (e.start != start || e.head == head)
                        && ids_consistent(e.ip_id, ip(id), start.wrapping_sub(e.start))
                })
                .map(|(s, _)| s),
        }
    }

    /// Offers the next packet (merged order); returns its earlier copy, or a new packet id.
    pub fn offer(&mut self, o: Offer<'_>) -> Found {
        self.expire(o.ts);
        let id = o.identity;
        let found = self.candidate(&o);
        let mut entry = Entry {
            ts: o.ts,
            packet_id: 0,
            k: 0,
            head: 0,
            src: id.src,
            dst: id.dst,
            start: 0,
            end: 0,
            source: o.source,
            claimed: 0,
            claimed_end: 0,
            ip_id: ip(id),
            bytes: false,
            direction: o.direction,
        };
        match id.key {
            Key::Whole(k) => entry.k = k,
            Key::Bytes {
                group,
                start,
                end,
                head,
            } => {
                entry.k = group;
                entry.start = start;
                entry.end = end;
                entry.head = head;
                entry.bytes = true;
            }
        }
        let overheard = id.overheard;
        let result = match found {
            None => {
                entry.packet_id = self.next_id;
                self.next_id += 1;
                Found::New(entry.packet_id)
            }
            Some(serial) => {
                let off = serial.wrapping_sub(self.head) as usize;
                let e = &mut self.ring[off];
                let first = e.claimed == 0 && !overheard;
                if !overheard {
                    e.claimed = o.source + 1;
                }
                let last = entry.end.wrapping_sub(1);
                let holds_last = e.contains(last);
                if entry.bytes && !overheard {
                    // claimed up to the end of this copy, within e
                    e.claimed_end = if holds_last { entry.end } else { e.end };
                }
                let earlier = Earlier {
                    source: e.source,
                    ts: e.ts,
                    packet_id: e.packet_id,
                    direction: e.direction,
                    src: e.src,
                    dst: e.dst,
                    first,
                };
                let (e_source, e_end) = (e.source, e.end);
                entry.packet_id = e.packet_id;
                entry.claimed = e.source + 1;
                entry.claimed_end = entry.end;
                let covered = !entry.bytes
                    || holds_last
                    || self.covers(e_source, entry.k, e_end, entry.end, o.ts);
                Found::Copy { earlier, covered }
            }
        };
        if overheard {
            entry.claimed = OVERHEARD;
        }
        self.insert(entry);
        result
    }

    /// Did `source` have the bytes `from..end` of `group` within the window (in contiguous
    /// segments, at most [`MAX_WALK`] of them)?
    fn covers(&self, source: u32, group: u64, from: u32, end: u32, now: u64) -> bool {
        let mut at = from;
        for _ in 0..MAX_WALK {
            if at.wrapping_sub(end) < 1 << 31 {
                return true;
            }
            match self
                .holding(group, at)
                .find(|(_, e)| e.source == source && e.ts.abs_diff(now) <= self.cfg.window_ns)
            {
                Some((_, e)) => at = e.end,
                None => return false,
            }
        }
        false
    }
}

fn ip(id: &Identity) -> u32 {
    id.ip_id.map_or(NO_ID, u32::from)
}

/// IPv4 identifications of two copies whose starts are `offset` bytes apart: equal at equal
/// starts; rising by at most one per 256 bytes of offset (offloaded pieces count up from the
/// segment's identification, or keep it).
fn ids_consistent(earlier: u32, later: u32, offset: u32) -> bool {
    if earlier == NO_ID || later == NO_ID {
        return true;
    }
    (later.wrapping_sub(earlier) & 0xFFFF) <= offset / 256
}
