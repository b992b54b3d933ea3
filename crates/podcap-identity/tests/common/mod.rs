//! Packets built byte by byte for the identity tests: every field settable, under every link
//! type the identity understands.
#![allow(dead_code)]

use podcap_identity::key::*;

/// One IP packet's fields.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub v6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ttl: u8,
    pub tos: u8,
    pub ip_id: u16,
    pub flow: u32,
    pub proto: Proto,
    pub payload: Vec<u8>,
    /// Bytes captured of the whole packet (None: all).
    pub snap: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum Proto {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
        rest: [u8; 4],
    },
}

pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;
pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;

impl Pkt {
    pub fn tcp(seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Pkt {
        Pkt {
            v6: false,
            src: v4(10, 244, 0, 5),
            dst: v4(10, 244, 0, 6),
            ttl: 64,
            tos: 0,
            ip_id: 0x1234,
            flow: 0,
            proto: Proto::Tcp {
                sport: 40000,
                dport: 80,
                seq,
                ack,
                flags,
                window: 502,
                options: vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9],
            },
            payload: payload.to_vec(),
            snap: None,
        }
    }

    pub fn udp(payload: &[u8]) -> Pkt {
        Pkt {
            proto: Proto::Udp {
                sport: 5353,
                dport: 53,
            },
            ..Pkt::tcp(0, 0, 0, payload)
        }
    }

    pub fn icmp(id: u16, seq: u16, payload: &[u8]) -> Pkt {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        Pkt {
            proto: Proto::Icmp {
                kind: 8,
                code: 0,
                rest,
            },
            ..Pkt::tcp(0, 0, 0, payload)
        }
    }

    pub fn ipv6(mut self) -> Pkt {
        self.v6 = true;
        self.src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        self.dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6];
        self.flow = 0xabcde;
        if let Proto::Icmp { kind, .. } = &mut self.proto {
            *kind = 128;
        }
        self
    }

    /// The same packet in the other direction's addressing (for replies).
    pub fn with_dst(mut self, dst: [u8; 16], dport: u16) -> Pkt {
        self.dst = dst;
        match &mut self.proto {
            Proto::Tcp { dport: d, .. } | Proto::Udp { dport: d, .. } => *d = dport,
            Proto::Icmp { .. } => {}
        }
        self
    }

    pub fn with_src(mut self, src: [u8; 16], sport: u16) -> Pkt {
        self.src = src;
        match &mut self.proto {
            Proto::Tcp { sport: s, .. } | Proto::Udp { sport: s, .. } => *s = sport,
            Proto::Icmp { .. } => {}
        }
        self
    }

    fn l4(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match &self.proto {
            Proto::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                options,
            } => {
                assert_eq!(options.len() % 4, 0);
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ack.to_be_bytes());
                b.push((((20 + options.len()) / 4) << 4) as u8);
                b.push(*flags);
                b.extend_from_slice(&window.to_be_bytes());
                b.extend_from_slice(&[0xde, 0xad, 0, 0]); // checksum (junk), urgent pointer
                b.extend_from_slice(options);
            }
            Proto::Udp { sport, dport } => {
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0xbe, 0xef]);
            }
            Proto::Icmp { kind, code, rest } => {
                b.push(*kind);
                b.push(*code);
                b.extend_from_slice(&[0x12, 0x34]);
                b.extend_from_slice(rest);
            }
        }
        b.extend_from_slice(&self.payload);
        b
    }

    fn proto_number(&self) -> u8 {
        match (&self.proto, self.v6) {
            (Proto::Tcp { .. }, _) => 6,
            (Proto::Udp { .. }, _) => 17,
            (Proto::Icmp { .. }, false) => 1,
            (Proto::Icmp { .. }, true) => 58,
        }
    }

    /// The IP packet (header and payload), cut to `snap` bytes if set.
    pub fn ip(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut b = Vec::new();
        if self.v6 {
            let w = 6u32 << 28 | u32::from(self.tos) << 20 | self.flow;
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            b.push(self.proto_number());
            b.push(self.ttl);
            b.extend_from_slice(&self.src);
            b.extend_from_slice(&self.dst);
        } else {
            b.push(0x45);
            b.push(self.tos);
            b.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            b.extend_from_slice(&self.ip_id.to_be_bytes());
            b.extend_from_slice(&[0x40, 0]); // DF
            b.push(self.ttl);
            b.push(self.proto_number());
            b.extend_from_slice(&[0x55, self.ttl]); // checksum: not checked
            b.extend_from_slice(&self.src[12..]);
            b.extend_from_slice(&self.dst[12..]);
        }
        b.extend_from_slice(&l4);
        if let Some(s) = self.snap {
            b.truncate(s);
        }
        b
    }

    fn ether_type(&self) -> [u8; 2] {
        if self.v6 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        }
    }

    /// The packet under link type `lt`; `outgoing` sets the SLL/SLL2 packet type.
    pub fn framed(&self, lt: u16, outgoing: bool) -> Vec<u8> {
        let ip = self.ip();
        let mut b = Vec::new();
        match lt {
            LINKTYPE_ETHERNET => {
                b.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 2, 0x42, 0xac, 0x11, 0, 3]);
                b.extend_from_slice(&self.ether_type());
                b.extend_from_slice(&ip);
                while b.len() < 60 {
                    b.push(0); // Ethernet padding
                }
            }
            LINKTYPE_LINUX_SLL => {
                b.extend_from_slice(&(if outgoing { 4u16 } else { 0 }).to_be_bytes());
                b.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                b.extend_from_slice(&6u16.to_be_bytes());
                b.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 0, 0]);
                b.extend_from_slice(&self.ether_type());
                b.extend_from_slice(&ip);
            }
            LINKTYPE_LINUX_SLL2 => {
                b.extend_from_slice(&self.ether_type());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&7u32.to_be_bytes()); // ifindex
                b.extend_from_slice(&1u16.to_be_bytes());
                b.push(if outgoing { 4 } else { 0 });
                b.push(6);
                b.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 0, 0]);
                b.extend_from_slice(&ip);
            }
            LINKTYPE_NULL => {
                let family: u32 = if self.v6 { 10 } else { 2 };
                b.extend_from_slice(&family.to_le_bytes());
                b.extend_from_slice(&ip);
            }
            LINKTYPE_LOOP => {
                let family: u32 = if self.v6 { 10 } else { 2 };
                b.extend_from_slice(&family.to_be_bytes());
                b.extend_from_slice(&ip);
            }
            LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 => {
                b.extend_from_slice(&ip)
            }
            other => panic!("link type {other}"),
        }
        b
    }

    pub fn id(&self, lt: u16, outgoing: bool) -> Identity {
        identify(lt, &self.framed(lt, outgoing)).expect("an identity")
    }
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[12..].copy_from_slice(&[a, b, c, d]);
    x
}

/// Link types that carry IPv4 (`v6`: IPv6) packets.
pub fn link_types(v6: bool) -> Vec<u16> {
    let mut v = vec![
        LINKTYPE_ETHERNET,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_NULL,
        LINKTYPE_LOOP,
        LINKTYPE_RAW,
        LINKTYPE_RAW_12,
        LINKTYPE_RAW_14,
    ];
    v.push(if v6 { LINKTYPE_IPV6 } else { LINKTYPE_IPV4 });
    v
}
