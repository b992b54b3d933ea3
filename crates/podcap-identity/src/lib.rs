//! One packet, two pods: recognise the copies of a packet that two sources captured (the
//! sender's pod as it left, the receiver's as it arrived), link them, or keep one.
//!
//! This is a transform stage between the merge and the encoder: the engine hands every
//! merged record to [`Linker::observe`] in output order and writes what it is told to, with
//! the packet id it is given (pcapng `epb_packetid`) and the direction the linker put into
//! `epb_flags`.
//!
//! - [`key`]: the packet identity, from fields that do not change in flight.
//! - [`matcher`]: finds the earlier copy within a bounded window, O(1) per packet.
//! - [`latency`]: one-way times of linked pairs.
//! - [`report`]: the summary lines and the `--latency-report` file.
//!
//! Every linked pair is also handed to the [`PairObserver`]s (sender source, receiver source,
//! both timestamps), for whoever wants to learn from them (clock differences between nodes).

pub mod key;
pub mod latency;
pub mod matcher;
pub mod report;
pub mod skew;

use key::{identify, Direction, Endpoint};
use latency::LatencyTable;
use matcher::{Found, MatchConfig, Matcher, Offer};
use podcap_format::{NameRecord, Record};
use std::collections::HashMap;
use std::net::IpAddr;

/// The section comment of a de-duplicated output.
pub const DEDUP_COMMENT: &str = "De-duplicated by podcap-merge --dedup: a packet captured by \
     two sources (leaving the sender, entering the receiver) is written once, as the sender \
     captured it; the other copy is dropped.";

/// Sources whose copies can be linked (the matcher stores a source in 16 bits).
pub const MAX_SOURCES: usize = 65_000;

/// How the linker works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkOptions {
    /// Keep one copy of each packet (the first written, normally the sender's).
    pub dedup: bool,
    pub matcher: MatchConfig,
}

/// Two copies of one packet: the sender's and the receiver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkedPair {
    /// Source index (in the order the engine registered them) of the sender's copy.
    pub sender: usize,
    pub receiver: usize,
    /// Timestamps (ns since the epoch, each source's own clock).
    pub sender_ts: u64,
    pub receiver_ts: u64,
}

/// Receives every linked pair, once per packet (not once per piece of an offloaded segment).
pub trait PairObserver: Send {
    fn linked(&mut self, pair: &LinkedPair);
}

/// What to do with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, with this `epb_packetid` (packets with an identity).
    Write(Option<u64>),
    /// A copy `--dedup` drops.
    Drop,
}

#[derive(Clone, Debug, Default)]
struct SourceState {
    /// Link type of each interface of the current section.
    link_types: Vec<u16>,
    dropped: u64,
    /// The address last learned from this source's outgoing packets.
    learned: Option<IpAddr>,
}

/// The transform stage: identity, matching, de-duplication, latency.
pub struct Linker {
    opts: LinkOptions,
    matcher: Matcher,
    sources: Vec<SourceState>,
    /// Which source's pod owns an address (from the pod's name records, or from its own
    /// outgoing packets).
    owners: HashMap<IpAddr, usize>,
    /// Names of addresses (pods, Services), from name records.
    names: HashMap<IpAddr, String>,
    latency: LatencyTable,
    observers: Vec<Box<dyn PairObserver>>,
    identified: u64,
    linked: u64,
    kept_receiver: u64,
}

impl Linker {
    pub fn new(opts: LinkOptions) -> Self {
        Self {
            opts,
            matcher: Matcher::new(opts.matcher),
            sources: Vec::new(),
            owners: HashMap::new(),
            names: HashMap::new(),
            latency: LatencyTable::default(),
            observers: Vec::new(),
            identified: 0,
            linked: 0,
            kept_receiver: 0,
        }
    }

    pub fn options(&self) -> LinkOptions {
        self.opts
    }

    /// Adds a receiver of linked pairs.
    pub fn add_observer(&mut self, o: Box<dyn PairObserver>) {
        self.observers.push(o);
    }

    fn source(&mut self, src: usize) -> &mut SourceState {
        if self.sources.len() <= src {
            self.sources.resize_with(src + 1, SourceState::default);
        }
        &mut self.sources[src]
    }

    /// Looks at the next record of the merged output (from source `src`): learns interfaces
    /// and names, and for a packet sets its direction in `flags` and says whether to write it
    /// and with which packet id.
    pub fn observe(&mut self, src: usize, rec: &mut Record) -> Verdict {
        match rec {
            Record::Packet(p) => {
                let Some(&lt) = self.source(src).link_types.get(p.iface as usize) else {
                    return Verdict::Write(None);
                };
                if src >= MAX_SOURCES {
                    return Verdict::Write(None);
                }
                let Some(id) = identify(lt, &p.data) else {
                    return Verdict::Write(None);
                };
                self.identified += 1;
                let dir = id
                    .direction
                    .or_else(|| p.flags.and_then(Direction::from_epb_flags))
                    .or_else(|| self.owned_direction(src, &id.src, &id.dst));
                if id.direction == Some(Direction::Outbound)
                    && self.sources[src].learned != Some(id.src.addr)
                    && !id.src.addr.is_loopback()
                {
                    self.sources[src].learned = Some(id.src.addr);
                    self.owners.entry(id.src.addr).or_insert(src);
                }
                if let Some(d) = dir {
                    p.flags = Some((p.flags.unwrap_or(0) & !3) | d.epb_bits());
                }
                let ts = p.ts.unwrap_or(0);
                let found = self.matcher.offer(Offer {
                    source: src as u32,
                    ts,
                    identity: &id,
                    direction: dir,
                });
                let (earlier, covered) = match found {
                    Found::New(pid) => return Verdict::Write(Some(pid)),
                    Found::Copy { earlier, covered } => (earlier, covered),
                };
                self.linked += 1;
                let this_is_sender = match (earlier.direction, dir) {
                    (Some(Direction::Inbound), d) => d != Some(Direction::Inbound),
                    (e, Some(Direction::Outbound)) => e != Some(Direction::Outbound),
                    _ => false,
                };
                // two copies that both arrived (a multicast, or a frame from a third party
                // both pods received) or both left: no one-way time between them, and no
                // evidence of the clocks' difference
                let same_way = earlier.direction.is_some() && earlier.direction == dir;
                if earlier.first && !same_way {
                    let e_src = earlier.source as usize;
                    let (pair, sent, received) = if this_is_sender {
                        (
                            LinkedPair {
                                sender: src,
                                receiver: e_src,
                                sender_ts: ts,
                                receiver_ts: earlier.ts,
                            },
                            (id.src, id.dst),
                            (earlier.src, earlier.dst),
                        )
                    } else {
                        (
                            LinkedPair {
                                sender: e_src,
                                receiver: src,
                                sender_ts: earlier.ts,
                                receiver_ts: ts,
                            },
                            (earlier.src, earlier.dst),
                            (id.src, id.dst),
                        )
                    };
                    self.record_pair(&pair, sent, received);
                }
                if self.opts.dedup && covered {
                    self.source(src).dropped += 1;
                    if this_is_sender {
                        self.kept_receiver += 1;
                    }
                    return Verdict::Drop;
                }
                Verdict::Write(Some(earlier.packet_id))
            }
            Record::Interface(i) => {
                let lt = i.link_type;
                self.source(src).link_types.push(lt);
                Verdict::Write(None)
            }
            Record::Section { .. } => {
                self.source(src).link_types.clear();
                Verdict::Write(None)
            }
            Record::Names(names) => {
                for n in names.iter() {
                    self.learn_name(src, n);
                }
                Verdict::Write(None)
            }
            Record::Stats(_) | Record::Custom(_) => Verdict::Write(None),
        }
    }

    fn owned_direction(&self, src: usize, from: &Endpoint, to: &Endpoint) -> Option<Direction> {
        if self.owners.is_empty() {
            None
        } else if self.owners.get(&from.addr) == Some(&src) {
            Some(Direction::Outbound)
        } else if self.owners.get(&to.addr) == Some(&src) {
            Some(Direction::Inbound)
        } else {
            None
        }
    }

    fn learn_name(&mut self, src: usize, n: &NameRecord) {
        let (addr, rest): (IpAddr, &[u8]) = match n.kind {
            1 if n.value.len() > 4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&n.value[..4]);
                (IpAddr::from(a), &n.value[4..])
            }
            2 if n.value.len() > 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&n.value[..16]);
                (IpAddr::from(a), &n.value[16..])
            }
            _ => return,
        };
        let Some(name) = rest
            .split(|&b| b == 0)
            .find(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
        else {
            return;
        };
        if name.ends_with(".pod") {
            self.owners.insert(addr, src);
        }
        self.names.entry(addr).or_insert(name);
    }

    fn record_pair(
        &mut self,
        pair: &LinkedPair,
        sent: (Endpoint, Endpoint),
        received: (Endpoint, Endpoint),
    ) {
        let one_way = pair.receiver_ts as i64 - pair.sender_ts as i64;
        self.latency.record(pair.sender, pair.receiver, one_way);
        // one endpoint differs: a Service's address translated on the way
        let via = if sent.0 == received.0 && sent.1 != received.1 {
            Some((sent.1, received.1)) // request: addressed to the Service, delivered to a pod
        } else if sent.1 == received.1 && sent.0 != received.0 {
            Some((received.0, sent.0)) // reply: from a pod, seen as from the Service
        } else {
            None
        };
        if let Some(k) = via {
            self.latency.services.entry(k).or_default().record(one_way);
        }
        for o in &mut self.observers {
            o.linked(pair);
        }
    }

    /// Ends the stage: what it found.
    pub fn finish(mut self) -> report::LinkSummary {
        self.latency.settle();
        report::LinkSummary {
            dedup: self.opts.dedup,
            window_ns: self.matcher.config().window_ns,
            capacity: self.matcher.config().capacity,
            memory_bound: self.matcher.memory_bound(),
            identified: self.identified,
            linked: self.linked,
            dropped: self.sources.iter().map(|s| s.dropped).collect(),
            kept_receiver: self.kept_receiver,
            evicted_early: self.matcher.evicted_early,
            latency: self.latency,
            names: self.names,
        }
    }
}
