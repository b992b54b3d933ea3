//! The matcher: finds, for each packet, an earlier copy of it from another source within a
//! bounded window, in O(1) per packet and fixed memory.
//!
//! Packets are offered in merged (timestamp) order. Every offered packet becomes an entry of a
//! set-associative table (like a CPU cache): its key picks a set of [`WAYS`] entries, and the
//! packet takes the set's ways in turn (packets come in time order: the next way is the
//! oldest). Whole-matched packets are keyed by their key;
//! TCP data by (segment group, first sequence number), so a packet and its copy meet in the
//! same set, and looking up the copy and storing the packet touch the same two cache lines
//! (the set's tags and the entry). Segments longer than one MSS (offloaded or coalesced: only
//! they can be cut differently on the other side) are also referenced from a second table by
//! (segment group, 4 KiB block of sequence space) for every block their bytes touch (at most
//! [`MAX_BLOCKS`]), so a piece finds the earlier segment that holds its first byte whatever the
//! segmentation on either side; that table is only consulted for groups that had such a
//! segment.
//!
//! A candidate must come from another source, lie within the window, agree on at least one
//! endpoint (address and port: NAT changes the other), and not already be claimed by a copy
//! from the offering source (a retransmission is a new packet, not a third copy of the
//! first): a whole-matched entry can be claimed once; a data entry can be claimed again from
//! the same source only for bytes after those already claimed (the pieces of one offloaded
//! segment). IPv4 identifications must be consistent: equal at equal starts, and rising by at
//! most one per 256 bytes of offset (the pieces of one offloaded segment count up from the
//! segment's identification, or keep it). The oldest eligible candidate wins: copies of a
//! packet arrive in the order they were sent. An overheard copy (a frame a bridge flooded to a
//! third pod) links to the oldest usable copy without claiming it, and is itself never a
//! candidate.
//!
//! Entries older than the window (packet time) are ignored; a set that must overwrite a
//! younger one counts it in [`Matcher::evicted_early`]. Memory is
//! fixed at construction ([`Matcher::memory_bound`]): `capacity` entries of 64 bytes, their
//! tags, and the block references.

use crate::key::{mix, near_bytes, Direction, Endpoint, Hasher, Identity, Key};
use std::net::IpAddr;

/// The default window: how far apart in packet time two copies may be (latency plus the clock
/// difference between nodes).
pub const DEFAULT_WINDOW_NS: u64 = 2_000_000_000;
/// The default capacity: entries kept at most, whatever the window (4 MiB of entries).
pub const DEFAULT_CAPACITY: usize = 1 << 16;
/// Ways per set.
pub const WAYS: usize = 8;
/// Ways per set of the block-reference table.
const BLOCK_WAYS: usize = 4;
/// Sequence-space blocks of 4 KiB.
const BLOCK_SHIFT: u32 = 12;
/// Blocks referenced per data segment at most (a 64 KiB segment touches 17); bytes beyond are
/// not found by a later copy's first byte.
pub const MAX_BLOCKS: u32 = 17;
/// Data segments longer than this are also referenced by block: only they can have been cut
/// (or coalesced) differently on the other side (a segment no longer than the MSS never is).
pub const SMALL_SEGMENT: u32 = 1460;
/// Segments walked at most to check that another source had every byte of a copy.
const MAX_WALK: usize = 64;
/// `claimed` of an overheard copy: never a candidate.
const OVERHEARD: u16 = u16::MAX;
/// Bits of [`Entry::bits`].
const BYTES: u16 = 1;
const DIR_IN: u16 = 2;
const DIR_OUT: u16 = 4;
const HAS_ID: u16 = 8;
const V6: u16 = 16;
/// Groups that had a long segment, hashed into this many bits.
const HINT_BITS: usize = 1 << 15;

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

/// One packet in the table: 64 bytes, one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Entry {
    ts: u64,
    packet_id: u64,
    /// Whole key, or segment group.
    k: u64,
    /// Endpoints: IPv4 address << 16 | port, or (IPv6) a hash with the top bit set.
    src: u64,
    dst: u64,
    start: u32,
    end: u32,
    head: u32,
    /// Data: end of the bytes claimed so far.
    claimed_end: u32,
    source: u16,
    /// 0: unclaimed; [`OVERHEARD`]; else the source (+1) of the copy that claimed it.
    claimed: u16,
    ip_id: u16,
    bits: u16,
}

impl Entry {
    fn contains(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.start) < self.end.wrapping_sub(self.start)
    }
    fn bytes(&self) -> bool {
        self.bits & BYTES != 0
    }
    fn ip_id(&self) -> Option<u16> {
        (self.bits & HAS_ID != 0).then_some(self.ip_id)
    }
    fn direction(&self) -> Option<Direction> {
        if self.bits & DIR_OUT != 0 {
            Some(Direction::Outbound)
        } else if self.bits & DIR_IN != 0 {
            Some(Direction::Inbound)
        } else {
            None
        }
    }
}

fn endpoint_word(e: &Endpoint) -> u64 {
    match e.addr {
        IpAddr::V4(a) => u64::from(u32::from(a)) << 16 | u64::from(e.port),
        IpAddr::V6(a) => {
            let mut h = Hasher::new();
            h.bytes(&a.octets());
            h.u64(u64::from(e.port));
            h.finish() | 1 << 63
        }
    }
}

fn endpoint_of(w: u64) -> Option<Endpoint> {
    (w >> 63 == 0).then(|| Endpoint {
        addr: IpAddr::from(std::net::Ipv4Addr::from((w >> 16) as u32)),
        port: w as u16,
    })
}

/// A set's tags and the coarse times of its ways (ts >> 20: about 1 ms), in one cache line:
/// what a packet needs to know of a set without reading the entries.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct SetTags {
    tags: [u32; WAYS],
    times: [u32; WAYS],
}

const TIME_SHIFT: u32 = 20;

/// The bounded-window matcher.
pub struct Matcher {
    cfg: MatchConfig,
    /// `sets - 1` (sets is a power of two).
    mask: usize,
    tags: Vec<SetTags>,
    /// Per set: the way to fill next (ways fill in turn: packets come in time order, so the
    /// next way is the oldest)...
    next_way: Vec<u8>,
    /// ... unless a way holds a packet whose copy was found (a bit per way): that one goes
    /// first.
    done: Vec<u8>,
    entries: Vec<[Entry; WAYS]>,
    /// IPv6 endpoints of the entries (whose words are hashes), allocated on the first one.
    v6: Vec<[(Endpoint, Endpoint); WAYS]>,
    block_mask: usize,
    /// Per block set: (tag, entry location), newest last.
    blocks: Vec<[(u32, u32); BLOCK_WAYS]>,
    /// Groups that had a long segment (a bit per hash of the group).
    hints: Vec<u64>,
    next_id: u64,
    occupied: usize,
    /// Entries overwritten before the window ended, because their set was full.
    pub evicted_early: u64,
}

#[inline]
fn tag_of(key: u64) -> u32 {
    (key >> 32) as u32 | 1
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
        let sets = (cfg.capacity.clamp(WAYS, 1 << 30) / WAYS).next_power_of_two();
        let block_sets = (sets * WAYS / BLOCK_WAYS / 2).max(1);
        let cfg = MatchConfig {
            capacity: sets * WAYS,
            ..cfg
        };
        Self {
            cfg,
            mask: sets - 1,
            tags: vec![SetTags::default(); sets],
            next_way: vec![0; sets],
            done: vec![0; sets],
            entries: vec![[Entry::default(); WAYS]; sets],
            v6: Vec::new(),
            block_mask: block_sets - 1,
            blocks: vec![[(0, 0); BLOCK_WAYS]; block_sets],
            hints: vec![0; HINT_BITS / 64],
            next_id: 1,
            occupied: 0,
            evicted_early: 0,
        }
    }

    pub fn config(&self) -> MatchConfig {
        self.cfg
    }

    /// Entries in the table (some may be older than the window).
    pub fn len(&self) -> usize {
        self.occupied
    }

    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// The memory the matcher's tables take (bytes), fixed at construction; IPv6 traffic adds
    /// a side table of its endpoints ([`Matcher::memory_bound_v6`]).
    pub fn memory_bound(&self) -> usize {
        self.tags.len() * std::mem::size_of::<SetTags>()
            + self.next_way.len()
            + self.done.len()
            + self.entries.len() * std::mem::size_of::<[Entry; WAYS]>()
            + self.blocks.len() * std::mem::size_of::<[(u32, u32); BLOCK_WAYS]>()
            + self.hints.len() * 8
    }

    /// [`Matcher::memory_bound`] plus the IPv6 endpoint table.
    pub fn memory_bound_v6(&self) -> usize {
        self.memory_bound()
            + self.entries.len() * std::mem::size_of::<[(Endpoint, Endpoint); WAYS]>()
    }

    fn fresh(&self, e: &Entry, now: u64) -> bool {
        e.bits != 0 && e.ts.abs_diff(now) <= self.cfg.window_ns
    }

    fn hinted(&self, group: u64) -> bool {
        let b = (group >> 20) as usize % HINT_BITS;
        self.hints[b / 64] & 1 << (b % 64) != 0
    }

    /// Locations (set * WAYS + way) of fresh data entries of `group` holding byte `seq`: those
    /// starting there, then the long ones referenced from its block.
    fn holding(&self, group: u64, seq: u32, now: u64, mut f: impl FnMut(usize, &Entry) -> bool) {
        let key = start_key(group, seq);
        let set = near_bytes(group, seq) as usize & self.mask;
        let tag = tag_of(key);
        for (w, &t) in self.tags[set].tags.iter().enumerate() {
            if t == tag {
                let e = &self.entries[set][w];
                if e.bytes()
                    && e.k == group
                    && e.start == seq
                    && self.fresh(e, now)
                    && f(set * WAYS + w, e)
                {
                    return;
                }
            }
        }
        if !self.hinted(group) {
            return;
        }
        let key = block_key(group, seq >> BLOCK_SHIFT);
        let tag = tag_of(key);
        for &(t, loc) in self.blocks[key as usize & self.block_mask].iter().rev() {
            if t == tag {
                let loc = loc as usize;
                let e = &self.entries[loc / WAYS][loc % WAYS];
                if e.bytes()
                    && e.k == group
                    && e.contains(seq)
                    && e.start != seq
                    && self.fresh(e, now)
                    && f(loc, e)
                {
                    return;
                }
            }
        }
    }

    /// The oldest eligible earlier copy of `o` (whole: with its key; data: holding its first
    /// byte), as a location.
    fn candidate(&self, o: &Offer<'_>, src: u64, dst: u64) -> Option<usize> {
        let id = o.identity;
        let me = o.source as u16 + 1;
        let usable = |e: &Entry| {
            e.claimed != OVERHEARD && e.source != o.source as u16 && (e.src == src || e.dst == dst)
        };
        let free = |e: &Entry| e.claimed == 0 || id.overheard;
        let mut best: Option<(u64, usize)> = None;
        let mut consider = |loc: usize, e: &Entry| {
            if best.is_none_or(|(ts, _)| e.ts < ts) {
                best = Some((e.ts, loc));
            }
        };
        match id.key {
            Key::Whole(k) => {
                let set = id.near as usize & self.mask;
                let tag = tag_of(k);
                for (w, &t) in self.tags[set].tags.iter().enumerate() {
                    if t != tag {
                        continue;
                    }
                    let e = &self.entries[set][w];
                    if !e.bytes()
                        && e.k == k
                        && e.ip_id() == id.ip_id
                        && free(e)
                        && usable(e)
                        && self.fresh(e, o.ts)
                    {
                        consider(set * WAYS + w, e);
                    }
                }
            }
            Key::Bytes {
                group, start, head, ..
            } => {
                let head = head as u32;
                self.holding(group, start, o.ts, |loc, e| {
                    if usable(e)
                        && (free(e)
                            || (e.claimed == me && start.wrapping_sub(e.claimed_end) < 1 << 31))
                        && (e.start != start || e.head == head)
                        && ids_consistent(e.ip_id(), id.ip_id, start.wrapping_sub(e.start))
                    {
                        consider(loc, e);
                    }
                    false
                });
            }
        }
        best.map(|(_, loc)| loc)
    }

    /// Offers the next packet (merged order); returns its earlier copy, or a new packet id.
    pub fn offer(&mut self, o: Offer<'_>) -> Found {
        let id = o.identity;
        let (src, dst) = (endpoint_word(&id.src), endpoint_word(&id.dst));
        let found = self.candidate(&o, src, dst);
        let mut entry = Entry {
            ts: o.ts,
            src,
            dst,
            source: o.source as u16,
            ip_id: id.ip_id.unwrap_or(0),
            bits: match o.direction {
                Some(Direction::Inbound) => DIR_IN,
                Some(Direction::Outbound) => DIR_OUT,
                None => 0,
            } | if id.ip_id.is_some() { HAS_ID } else { 0 }
                | if src >> 63 != 0 { V6 } else { 0 }
                | 32, // (never 0: 0 marks an empty way)
            ..Entry::default()
        };
        let key = match id.key {
            Key::Whole(k) => {
                entry.k = k;
                k
            }
            Key::Bytes {
                group,
                start,
                end,
                head,
            } => {
                entry.k = group;
                entry.start = start;
                entry.end = end;
                entry.head = head as u32;
                entry.bits |= BYTES;
                start_key(group, start)
            }
        };
        let overheard = id.overheard;
        let result = match found {
            None => {
                entry.packet_id = self.next_id;
                self.next_id += 1;
                Found::New(entry.packet_id)
            }
            Some(loc) => {
                let e = &mut self.entries[loc / WAYS][loc % WAYS];
                let first = e.claimed == 0 && !overheard;
                if !overheard {
                    e.claimed = o.source as u16 + 1;
                }
                let holds_last = e.contains(entry.end.wrapping_sub(1));
                if entry.bytes() && !overheard {
                    // claimed up to the end of this copy, within e
                    e.claimed_end = if holds_last { entry.end } else { e.end };
                }
                let e = *e;
                if !overheard && (!e.bytes() || e.claimed_end == e.end) {
                    // nothing more to find there: its way may go first
                    self.done[loc / WAYS] |= 1 << (loc % WAYS);
                }
                let (e_src, e_dst) = if e.bits & V6 != 0 {
                    self.v6
                        .get(loc / WAYS)
                        .map_or((id.src, id.dst), |s| s[loc % WAYS])
                } else {
                    (
                        endpoint_of(e.src).unwrap_or(id.src),
                        endpoint_of(e.dst).unwrap_or(id.dst),
                    )
                };
                entry.packet_id = e.packet_id;
                entry.claimed = e.source + 1;
                entry.claimed_end = entry.end;
                let covered = !entry.bytes()
                    || holds_last
                    || self.covers(u32::from(e.source), e.k, e.end, entry.end, o.ts);
                Found::Copy {
                    earlier: Earlier {
                        source: u32::from(e.source),
                        ts: e.ts,
                        packet_id: e.packet_id,
                        direction: e.direction(),
                        src: e_src,
                        dst: e_dst,
                        first,
                    },
                    covered,
                }
            }
        };
        if overheard {
            entry.claimed = OVERHEARD;
        }
        self.insert(key, id.near, entry, &o);
        result
    }

    fn insert(&mut self, key: u64, near: u64, entry: Entry, o: &Offer<'_>) {
        let set = near as usize & self.mask;
        let reuse_done = self.done[set] != 0;
        let way = if reuse_done {
            self.done[set].trailing_zeros() as usize
        } else {
            let w = usize::from(self.next_way[set]);
            self.next_way[set] = ((w + 1) % WAYS) as u8;
            w
        };
        self.done[set] &= !(1 << way);
        let meta = &mut self.tags[set];
        let now = (o.ts >> TIME_SHIFT) as u32;
        if meta.tags[way] == 0 {
            self.occupied += 1;
        } else if !reuse_done
            && now.wrapping_sub(meta.times[way]) <= (self.cfg.window_ns >> TIME_SHIFT) as u32
        {
            // (an entry whose copies are all linked is no loss when it is overwritten)
            // (the coarse time, to leave the entry's own line unread)
            self.evicted_early += 1;
        }
        meta.times[way] = now;
        self.tags[set].tags[way] = tag_of(key);
        self.entries[set][way] = entry;
        if entry.bits & V6 != 0 {
            if self.v6.is_empty() {
                let none = Endpoint {
                    addr: IpAddr::from([0u8; 4]),
                    port: 0,
                };
                self.v6 = vec![[(none, none); WAYS]; self.entries.len()];
            }
            self.v6[set][way] = (o.identity.src, o.identity.dst);
        }
        if entry.bytes() {
            // the flow's next segment (and its copy) will look there: fetch its tags now
            prefetch(&self.tags[near_bytes(entry.k, entry.end) as usize & self.mask]);
        }
        if entry.bytes() && entry.end.wrapping_sub(entry.start) > SMALL_SEGMENT {
            let b = (entry.k >> 20) as usize % HINT_BITS;
            self.hints[b / 64] |= 1 << (b % 64);
            let loc = (set * WAYS + way) as u32;
            let first = entry.start >> BLOCK_SHIFT;
            let span = entry
                .end
                .wrapping_sub(1)
                .wrapping_sub(entry.start & !((1 << BLOCK_SHIFT) - 1))
                >> BLOCK_SHIFT;
            for i in 0..(span + 1).min(MAX_BLOCKS) {
                let k = block_key(entry.k, first.wrapping_add(i));
                let refs = &mut self.blocks[k as usize & self.block_mask];
                refs.copy_within(1.., 0);
                refs[BLOCK_WAYS - 1] = (tag_of(k), loc);
            }
        }
    }

    /// Did `source` have the bytes `from..end` of `group` within the window (in contiguous
    /// segments, at most [`MAX_WALK`] of them)?
    fn covers(&self, source: u32, group: u64, from: u32, end: u32, now: u64) -> bool {
        let mut at = from;
        for _ in 0..MAX_WALK {
            if at.wrapping_sub(end) < 1 << 31 {
                return true;
            }
            let mut next = None;
            self.holding(group, at, now, |_, e| {
                if u32::from(e.source) == source {
                    next = Some(e.end);
                    true
                } else {
                    false
                }
            });
            match next {
                Some(n) => at = n,
                None => return false,
            }
        }
        false
    }
}

/// Asks the CPU to bring `x`'s cache line in (a hint: nothing happens where there is none).
#[inline]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            (x as *const T).cast::<i8>(),
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// IPv4 identifications of two copies whose starts are `offset` bytes apart: equal at equal
/// starts; rising by at most one per 256 bytes of offset (offloaded pieces count up from the
/// segment's identification, or keep it).
fn ids_consistent(earlier: Option<u16>, later: Option<u16>, offset: u32) -> bool {
    match (earlier, later) {
        (Some(a), Some(b)) => u32::from(b.wrapping_sub(a)) <= offset / 256,
        _ => true,
    }
}
