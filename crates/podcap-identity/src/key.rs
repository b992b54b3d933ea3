//! Packet identity: what stays the same when one packet is captured twice, leaving the sender's
//! pod and entering the receiver's.
//!
//! [`identify`] parses the link layer (Ethernet with VLAN tags, Linux SLL and SLL2 — what `tcpdump -i any`
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

use etherparse::{
    EtherType, Ethernet2HeaderSlice, Ipv4HeaderSlice, LaxIpv6Slice, LinuxSllSlice,
    SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};
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
    /// Where to look for copies of a whole-matched packet: equal for copies, and close for
    /// the consecutive packets of one TCP flow (their sequence and acknowledgement numbers
    /// advance), so a stream walks through the matcher's memory instead of jumping about.
    pub near: u64,
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
    let (direction, l3) = match link_type {
        LINKTYPE_ETHERNET => {
            let eth = Ethernet2HeaderSlice::from_slice(data).ok()?;
            let mut ether_type = eth.ether_type();
            let mut rest = &data[eth.slice().len()..];
            // up to two VLAN tags (802.1Q, 802.1ad)
            for _ in 0..2 {
                if !matches!(ether_type.0, 0x8100 | 0x88a8 | 0x9100) {
                    break;
                }
                let vlan = SingleVlanHeaderSlice::from_slice(rest).ok()?;
                ether_type = vlan.ether_type();
                rest = &rest[vlan.slice().len()..];
            }
            (None, ip_payload(ether_type, rest)?)
        }
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
                ip_payload(ether_type, payload)?,
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
                ip_payload(ether_type, &data[20..])?,
            )
        }
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            (None, data)
        }
        // a 4-byte address family (host byte order of the capturing machine for NULL, network
        // order for LOOP); the IP version nibble tells the rest
        LINKTYPE_NULL | LINKTYPE_LOOP => (None, data.get(4..)?),
        _ => return None,
    };
    let mut id = match l3.first()? >> 4 {
        4 => ipv4(l3)?,
        6 => ipv6(l3)?,
        _ => return None,
    };
    id.direction = direction;
    id.overheard = overheard;
    Some(id)
}

fn ip_payload(ether_type: EtherType, rest: &[u8]) -> Option<&[u8]> {
    (ether_type == EtherType::IPV4 || ether_type == EtherType::IPV6).then_some(rest)
}

/// What the network layer tells the transport layer.
struct Net<'a> {
    h: Hasher,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ip_id: Option<u16>,
    fragmented: bool,
    /// The transport layer as captured (cut at the length the IP header claims).
    l4: &'a [u8],
    /// Its length as the IP header claims it (the capture may be cut short by the snap
    /// length; or what was captured when the header's length is unusable: 0 for a
    /// segmentation-offload packet larger than 64 KiB).
    l4_len: usize,
}

fn ipv4(l3: &[u8]) -> Option<Identity> {
    let hd = Ipv4HeaderSlice::from_slice(l3).ok()?;
    let hl = hd.slice().len();
    let total = usize::from(hd.total_len());
    let (l4, l4_len) = if total <= hl {
        (&l3[hl..], l3.len() - hl)
    } else {
        (&l3[hl..total.min(l3.len())], total - hl)
    };
    let fragmented = hd.is_fragmenting_payload();
    let mut h = Hasher::new();
    if fragmented {
        h.u64(u64::from(hd.fragments_offset().value()) << 1 | u64::from(hd.more_fragments()));
    }
    transport(
        Net {
            h,
            proto: hd.protocol().0,
            src: IpAddr::V4(hd.source_addr()),
            dst: IpAddr::V4(hd.destination_addr()),
            ip_id: Some(hd.identification()),
            fragmented,
            l4,
            l4_len,
        },
        0,
    )
}

fn ipv6(l3: &[u8]) -> Option<Identity> {
    let (ip, _) = LaxIpv6Slice::from_slice(l3).ok()?;
    let hd = ip.header();
    let pl = ip.payload();
    let offset = pl.payload.as_ptr() as usize - hd.slice().as_ptr() as usize;
    let total = 40 + usize::from(hd.payload_length());
    let l4_len = if pl.incomplete && total > offset {
        total - offset
    } else {
        pl.payload.len()
    };
    transport(
        Net {
            h: Hasher::new(),
            proto: pl.ip_number.0,
            src: IpAddr::V6(hd.source_addr()),
            dst: IpAddr::V6(hd.destination_addr()),
            ip_id: None,
            fragmented: pl.fragmented,
            l4: pl.payload,
            l4_len,
        },
        hd.flow_label().value(),
    )
}

fn transport(n: Net<'_>, flow: u32) -> Option<Identity> {
    let Net {
        mut h,
        proto,
        ip_id,
        l4,
        l4_len,
        ..
    } = n;
    let mut src = Endpoint {
        addr: n.src,
        port: 0,
    };
    let mut dst = Endpoint {
        addr: n.dst,
        port: 0,
    };
    let id_word = ip_id.map_or(1 << 16, u64::from);
    h.u64(u64::from(proto) << 32 | u64::from(flow));
    let hash_payload = |h: &mut Hasher, pl: &[u8]| h.bytes(&pl[..pl.len().min(PAYLOAD_HASH_LEN)]);
    let whole = !n.fragmented;
    let tcp = (whole && proto == 6)
        .then(|| TcpHeaderSlice::from_slice(l4).ok())
        .flatten();
    let udp = (whole && proto == 17)
        .then(|| UdpHeaderSlice::from_slice(l4).ok())
        .flatten();
    let mut near = None;
    let key = match (tcp, udp) {
        (Some(tcp), _) => {
            let hdr = tcp.slice();
            src.port = tcp.source_port();
            dst.port = tcp.destination_port();
            let flags = hdr[13];
            let data_len = l4_len.saturating_sub(hdr.len()) as u32;
            let seq = tcp.sequence_number();
            let ack = tcp.acknowledgment_number();
            let window = u64::from(tcp.window_size());
            let payload = &l4[hdr.len()..];
            if data_len > 0 && flags & (TCP_SYN | TCP_RST) == 0 {
                h.u64(
                    u64::from(ack) << 32
                        | window << 8
                        | u64::from(flags & !(TCP_CWR | TCP_FIN | TCP_PSH)),
                );
                h.bytes(tcp.options());
                let mut head = Hasher::new();
                head.bytes(&payload[..payload.len().min(HEAD_HASH_LEN)]);
                Key::Bytes {
                    group: h.finish(),
                    start: seq,
                    end: seq.wrapping_add(data_len),
                    head: head.finish(),
                }
            } else {
                near = Some(u64::from(seq.wrapping_add(ack) >> NEAR_SHIFT));
                h.u64(u64::from(seq) << 32 | u64::from(ack));
                h.u64(id_word << 40 | window << 24 | u64::from(flags) << 16 | u64::from(data_len));
                if flags & TCP_SYN == 0 {
                    // (a SYN's MSS option may be clamped on the way)
                    h.bytes(tcp.options());
                }
                hash_payload(&mut h, payload);
                Key::Whole(h.finish())
            }
        }
        (_, Some(udp)) => {
            src.port = udp.source_port();
            dst.port = udp.destination_port();
            let len = usize::from(udp.length()).clamp(8, l4.len());
            h.u64(id_word << 32 | u64::from(udp.length()));
            hash_payload(&mut h, &l4[8..len]);
            Key::Whole(h.finish())
        }
        _ if whole && matches!(proto, 1 | 58) && l4.len() >= 8 => {
            // ICMP and ICMPv6: type, code, then identifier and sequence (echo) or the like
            let id_word = if proto == 1 { id_word } else { 0 };
            h.u64(id_word << 32 | u64::from(l4[0]) << 8 | u64::from(l4[1]));
            h.u64(
                u64::from(u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])) << 32 | l4_len as u64,
            );
            hash_payload(&mut h, &l4[8..]);
            Key::Whole(h.finish())
        }
        // fragments, other protocols, transport headers that do not fit
        _ => {
            h.u64(id_word << 32 | l4_len as u64);
            hash_payload(&mut h, l4);
            Key::Whole(h.finish())
        }
    };
    let near = match key {
        Key::Whole(k) => near.unwrap_or(k),
        Key::Bytes { group, start, .. } => near_bytes(group, start),
    };
    Some(Identity {
        key,
        near,
        ip_id,
        src,
        dst,
        direction: None,
        overheard: false,
    })
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

/// [`Identity::near`] advances every 512 bytes of sequence space: a few small segments share a
/// set, a full one moves three sets on.
const NEAR_SHIFT: u32 = 9;

/// [`Identity::near`] of TCP data: the segment group's, advancing with the sequence number.
#[inline]
pub fn near_bytes(group: u64, start: u32) -> u64 {
    (group >> 32).wrapping_add(u64::from(start >> NEAR_SHIFT))
}

/// Mixes two words into one (index keys).
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    fold(a ^ K1, b ^ K0)
}
