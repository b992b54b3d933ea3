//! Packet identity: what stays the same when one packet is captured twice, leaving the sender's
//! pod and entering the receiver's.
//!
//! [`identify`] parses the link layer (Ethernet, Linux SLL and SLL2 — what `tcpdump -i any`
//! writes —, raw IPv4/IPv6, BSD loopback/null) and IPv4/IPv6 → TCP/UDP/ICMP with etherparse,
//! and returns a compact [`Key`] built only from fields that do not change in flight:
//!
//! - kept: IPv4 identification and fragment position, the IPv6 flow label, the protocol,
//!   TCP sequence/acknowledgement numbers, flags, window and options (not a SYN's: its MSS may
//!   be clamped on the way), UDP length, ICMP type,
//!   code and identifier/sequence, the payload length and a hash of the payload's first bytes;
//! - left out: TTL/hop limit, header checksums, TOS/traffic class (ECN can be set on the way),
//!   and both addresses and ports. A Service's ClusterIP:port is translated to a pod's IP and
//!   target port after the request left the client's pod, and the reply's source is
//!   translated back before it reaches the client: one endpoint of the two copies differs in
//!   either direction. The matcher checks instead that the copies agree on at least one
//!   endpoint, and the endpoint that differs tells which backend a Service chose.
//!
//! TCP segments that carry data get a byte-range key instead ([`Key::Bytes`]): segmentation
//! offload means the sender's capture can hold one 64 KB segment that the receiver's shows as
//! many (or GRO coalesces the receiver's differently), so data is matched by the sequence
//! range it covers within its *segment group*: the fields that every piece of one segment
//! shares and that GRO requires to be equal before it merges two segments (acknowledgement
//! number, window, options, flags other than CWR/FIN/PSH, the IPv6 flow label).
//!
//! Packets that are not IP, or whose headers cannot be parsed, have no identity.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, LinuxSllSlice, TransportSlice};
use std::net::IpAddr;

pub const LINKTYPE_NULL: u16 = 0;
pub const LINKTYPE_ETHERNET: u16 = 1;
/// `DLT_RAW` as some systems number it in pcap files.
pub const LINKTYPE_RAW_12: u16 = 12;
pub const LINKTYPE_RAW_14: u16 = 14;
pub const LINKTYPE_RAW: u16 = 101;
pub const LINKTYPE_LOOP: u16 = 108;
pub const LINKTYPE_LINUX_SLL: u16 = 113;
pub const LINKTYPE_IPV4: u16 = 228;
pub const LINKTYPE_IPV6: u16 = 229;
pub const LINKTYPE_LINUX_SLL2: u16 = 276;

/// Link types [`identify`] understands.
pub const LINK_TYPES: [u16; 10] = [
    LINKTYPE_NULL,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW_12,
    LINKTYPE_RAW_14,
    LINKTYPE_RAW,
    LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL2,
];

/// Which way a packet crossed the capturing interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// The direction bits of pcapng `epb_flags` (bits 0–1: 01 inbound, 10 outbound).
    pub fn epb_bits(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }

    /// The direction stated by `epb_flags`, when it states one.
    pub fn from_epb_flags(flags: u32) -> Option<Direction> {
        match flags & 3 {
            1 => Some(Direction::Inbound),
            2 => Some(Direction::Outbound),
            _ => None,
        }
    }

    /// The direction of a Linux cooked-capture packet type (`PACKET_HOST` … `PACKET_OUTGOING`).
    pub fn from_sll_packet_type(t: u16) -> Option<Direction> {
        match t {
            0..=3 => Some(Direction::Inbound),
            4 => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// One end of a packet: address and port (0 for protocols without ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.addr, self.port) {
            (a, 0) => write!(f, "{a}"),
            (IpAddr::V4(a), p) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), p) => write!(f, "[{a}]:{p}"),
        }
    }
}

/// The in-flight-invariant part of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Matched whole: a hash of every invariant field (SYN, ACK without data, UDP, ICMP,
    /// fragments, other protocols).
    Whole(u64),
    /// TCP data: bytes `start..end` of the sequence space of segment group `group`; `head` is
    /// a hash of the first captured payload bytes (equal starts must carry equal bytes).
    Bytes {
        group: u64,
        start: u32,
        end: u32,
        head: u64,
    },
}

/// What [`identify`] finds out about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub key: Key,
    /// IPv4 identification (IPv6 has none).
    pub ip_id: Option<u16>,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// From the link layer (SLL/SLL2 packet type), when it says.
    pub direction: Option<Direction>,
    /// The link layer says the packet was for another host (`PACKET_OTHERHOST`: a bridge
    /// flooded it to this pod too): a third copy, neither the sender's nor the receiver's.
    pub overheard: bool,
}

/// How many payload bytes the hash of a whole-matched packet covers.
const PAYLOAD_HASH_LEN: usize = 64;
/// How many payload bytes the head hash of a TCP data segment covers.
const HEAD_HASH_LEN: usize = 16;

/// Linux `PACKET_OTHERHOST`: a frame for another host.
const PACKET_OTHERHOST: u16 = 3;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The identity of a packet of link type `link_type`, or `None` when it is not IP or its
/// headers cannot be parsed.
pub fn identify(link_type: u16, data: &[u8]) -> Option<Identity> {
    let mut overheard = false;
    let (direction, sliced) = match link_type {
        LINKTYPE_ETHERNET => (None, LaxSlicedPacket::from_ethernet(data).ok()?),
        LINKTYPE_LINUX_SLL => {
            let (packet_type, ether_type, payload) = match LinuxSllSlice::from_slice(data) {
                Ok(s) => (
                    u16::from(s.packet_type()),
                    EtherType(u16::from(s.protocol_type())),
                    s.payload_slice(),
                ),
                // etherparse knows a few hardware types only; the layout is fixed
                Err(_) if data.len() >= 16 => (
                    u16::from_be_bytes([data[0], data[1]]),
                    EtherType(u16::from_be_bytes([data[14], data[15]])),
                    &data[16..],
                ),
                Err(_) => return None,
            };
            overheard = packet_type == PACKET_OTHERHOST;
            (
                Direction::from_sll_packet_type(packet_type),
                LaxSlicedPacket::from_ether_type(ether_type, payload),
            )
        }
        LINKTYPE_LINUX_SLL2 => {
            // protocol (2), reserved (2), ifindex (4), hatype (2), pkttype (1), halen (1),
            // address (8); etherparse has no SLL2
            if data.len() < 20 {
                return None;
            }
            let ether_type = EtherType(u16::from_be_bytes([data[0], data[1]]));
            overheard = u16::from(data[10]) == PACKET_OTHERHOST;
            (
                Direction::from_sll_packet_type(u16::from(data[10])),
                LaxSlicedPacket::from_ether_type(ether_type, &data[20..]),
            )
        }
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            (None, LaxSlicedPacket::from_ip(data).ok()?)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            // a 4-byte address family (host byte order of the capturing machine for NULL,
            // network order for LOOP); the IP version nibble tells the rest
            (None, LaxSlicedPacket::from_ip(data.get(4..)?).ok()?)
        }
        _ => return None,
    };
    let mut id = from_sliced(&sliced)?;
    id.direction = direction;
    id.overheard = overheard;
    Some(id)
}

fn from_sliced(p: &LaxSlicedPacket<'_>) -> Option<Identity> {
    let mut h = Hasher::new();
    let (src, dst, ip_id, flow, payload, fragmented, l4_len) = match p.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let hd = ip.header();
            let pl = ip.payload();
            let off = pl.payload.as_ptr() as usize - hd.slice().as_ptr() as usize;
            let l4_len = claimed_len(pl, usize::from(hd.total_len()), off);
            let frag = hd.is_fragmenting_payload();
            if frag {
                h.u64(
                    u64::from(hd.fragments_offset().value()) << 1 | u64::from(hd.more_fragments()),
                );
            }
            (
                IpAddr::V4(hd.source_addr()),
                IpAddr::V4(hd.destination_addr()),
                Some(hd.identification()),
                0u32,
                pl,
                frag,
                l4_len,
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let hd = ip.header();
            let pl = ip.payload();
            let off = pl.payload.as_ptr() as usize - hd.slice().as_ptr() as usize;
            let l4_len = claimed_len(pl, 40 + usize::from(hd.payload_length()), off);
            (
                IpAddr::V6(hd.source_addr()),
                IpAddr::V6(hd.destination_addr()),
                None,
                hd.flow_label().value(),
                pl,
                pl.fragmented,
                l4_len,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let proto = pl_proto(payload);
    h.u64(u64::from(proto) << 32 | u64::from(flow));
    let id_word = ip_id.map_or(1 << 16, u64::from);
    let mut src = Endpoint { addr: src, port: 0 };
    let mut dst = Endpoint { addr: dst, port: 0 };
    let transport = if fragmented {
        None
    } else {
        p.transport.as_ref()
    };
    let key = match transport {
        Some(TransportSlice::Tcp(tcp)) => {
            src.port = tcp.source_port();
            dst.port = tcp.destination_port();
            let hdr = tcp.header_slice();
            let flags = hdr[13];
            let data_len = l4_len.saturating_sub(hdr.len()) as u32;
            let seq = tcp.sequence_number();
            let ack = tcp.acknowledgment_number();
            let window = u64::from(tcp.window_size());
            if data_len > 0 && flags & (TCP_SYN | TCP_RST) == 0 {
                h.u64(
                    u64::from(ack) << 32
                        | window << 8
                        | u64::from(flags & !(TCP_CWR | TCP_FIN | TCP_PSH)),
                );
                h.bytes(tcp.options());
                let mut head = Hasher::new();
                head.bytes(&tcp.payload()[..tcp.payload().len().min(HEAD_HASH_LEN)]);
                Key::Bytes {
                    group: h.finish(),
                    start: seq,
                    end: seq.wrapping_add(data_len),
                    head: head.finish(),
                }
            } else {
                h.u64(u64::from(seq) << 32 | u64::from(ack));
                h.u64(id_word << 32 | window << 8 | u64::from(flags));
                h.u64(u64::from(data_len));
                if flags & TCP_SYN == 0 {
                    // (a SYN's MSS option may be clamped on the way)
                    h.bytes(tcp.options());
                }
                h.bytes(&tcp.payload()[..tcp.payload().len().min(PAYLOAD_HASH_LEN)]);
                Key::Whole(h.finish())
            }
        }
        Some(TransportSlice::Udp(udp)) => {
            src.port = udp.source_port();
            dst.port = udp.destination_port();
            h.u64(id_word << 32 | u64::from(udp.length()));
            let pl = udp.payload();
            h.bytes(&pl[..pl.len().min(PAYLOAD_HASH_LEN)]);
            Key::Whole(h.finish())
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            h.u64(id_word << 32 | u64::from(icmp.type_u8()) << 8 | u64::from(icmp.code_u8()));
            h.u64(u64::from(u32::from_be_bytes(icmp.bytes5to8())) << 32 | l4_len as u64);
            let pl = icmp.payload();
            h.bytes(&pl[..pl.len().min(PAYLOAD_HASH_LEN)]);
            Key::Whole(h.finish())
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            h.u64(u64::from(icmp.type_u8()) << 8 | u64::from(icmp.code_u8()));
            h.u64(u64::from(u32::from_be_bytes(icmp.bytes5to8())) << 32 | l4_len as u64);
            let pl = icmp.payload();
            h.bytes(&pl[..pl.len().min(PAYLOAD_HASH_LEN)]);
            Key::Whole(h.finish())
        }
        // fragments, other protocols, transport headers that do not parse
        _ => {
            h.u64(id_word << 32 | l4_len as u64);
            let pl = payload.payload;
            h.bytes(&pl[..pl.len().min(PAYLOAD_HASH_LEN)]);
            Key::Whole(h.finish())
        }
    };
    Some(Identity {
        key,
        ip_id,
        src,
        dst,
        direction: None,
        overheard: false,
    })
}

fn pl_proto(pl: &etherparse::LaxIpPayloadSlice<'_>) -> u8 {
    pl.ip_number.0
}

/// The length of the transport layer as the IP header claims it (the capture may be cut short
/// by the snap length), or what was captured when the header's length is unusable (0 for a
/// segmentation-offload packet larger than 64 KiB).
fn claimed_len(pl: &etherparse::LaxIpPayloadSlice<'_>, total: usize, offset: usize) -> usize {
    if pl.incomplete && total > offset {
        total - offset
    } else {
        pl.payload.len()
    }
}

/// A small, fast 64-bit hash (folded multiply). Not for adversarial input: a collision only
/// makes two unrelated packets candidates, and the matcher checks more than the key.
#[derive(Clone, Copy, Debug)]
pub struct Hasher(u64);

const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0xD6E8_FEB8_6659_FD93;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher(K0)
    }

    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.0 = fold(self.0 ^ v, K1);
    }

    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.u64(u64::from_le_bytes(w) ^ (b.len() as u64) << 56);
    }

    #[inline]
    pub fn finish(self) -> u64 {
        fold(self.0, K0)
    }
}

/// Mixes two words into one (index keys).
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    fold(a ^ K1, b ^ K0)
}
