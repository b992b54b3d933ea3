//! Classic pcap (libpcap) decoder: all four magics (µs/ns × little/big endian), any link type.

use crate::{
    DecodeError, Decoder, Endian, Interface, Note, NoteKind, Notes, Packet, Record, MAX_BLOCK_LEN,
};
use bytes::{Buf, BytesMut};

pub const MAGIC_USEC: u32 = 0xa1b2_c3d4;
pub const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Is this the start of a classic pcap file (either byte order, µs or ns)?
pub fn sniff(head: &[u8]) -> bool {
    if head.len() < 4 {
        return false;
    }
    let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let be = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    [le, be]
        .iter()
        .any(|m| *m == MAGIC_USEC || *m == MAGIC_NSEC)
}

#[derive(Debug, Default)]
pub struct PcapDecoder {
    header: Option<(Endian, bool)>, // (byte order, nanosecond timestamps)
    pending: Option<Interface>,     // the header's interface, yielded after the Section
    offset: u64,
    notes: Notes,
}

impl Decoder for PcapDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError> {
        self.next_record(buf)
    }

    fn decode_eof(&mut self, buf: &BytesMut) -> Result<(), DecodeError> {
        crate::check_eof(self.offset, buf)
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn take_notes(&mut self) -> Vec<Note> {
        self.notes.take()
    }
}

/// The link-type field of the file header: link type in bits 0..15, bits 16..25 and 27
/// reserved, bit 26 says an FCS length in 16-bit words is in bits 28..31 (libpcap's
/// LT_FCS_DATALINK_EXT). Returns (link type, FCS length in bits as pcapng's `if_fcslen`,
/// reserved bits that were set).
fn link_type_field(network: u32) -> (u16, Option<u8>, u32) {
    let fcs_present = network & 0x0400_0000 != 0;
    let fcs_len = fcs_present.then(|| (((network >> 28) & 0xF) * 16) as u8);
    let mut reserved = network & 0x0BFF_0000;
    if !fcs_present {
        reserved |= network & 0xF000_0000; // an FCS length without its flag means nothing
    }
    ((network & 0xffff) as u16, fcs_len, reserved)
}

impl PcapDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_record(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError> {
        if let Some(iface) = self.pending.take() {
            return Ok(Some(Record::Interface(iface)));
        }
        let Some((endian, nanos)) = self.header else {
            return self.decode_header(buf);
        };
        if buf.len() < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let secs = endian.u32(buf, 0) as u64;
        let frac = endian.u32(buf, 4) as u64;
        let incl = endian.u32(buf, 8) as usize;
        let orig = endian.u32(buf, 12);
        if incl > MAX_BLOCK_LEN {
            return Err(DecodeError::new(
                self.offset,
                format!(
                    "packet record claims {incl} captured bytes (more than the {MAX_BLOCK_LEN} byte limit): the file is corrupt"
                ),
            ));
        }
        let total = RECORD_HEADER_LEN + incl;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(RECORD_HEADER_LEN);
        let data = buf.split_to(incl).freeze();
        self.offset += total as u64;
        let limit = if nanos { 1_000_000_000 } else { 1_000_000 };
        if frac >= limit {
            // libpcap and tcpdump carry it over too; Wireshark shows it unnormalised
            self.notes.add(NoteKind::Subsecond, self.offset - total as u64, || {
                format!(
                    "the packet record's sub-second field is {frac} {} ({limit} or more): carried into the seconds; every such record is counted in the summary",
                    if nanos { "nanoseconds" } else { "microseconds" }
                )
            });
        }
        let ts = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Record::Packet(Packet {
            iface: 0,
            ts: Some(ts),
            orig_len: orig,
            data,
            flags: None,
        })))
    }

    fn decode_header(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError> {
        if buf.len() < FILE_HEADER_LEN {
            return Ok(None);
        }
        let (endian, nanos) = match Endian::Little.u32(buf, 0) {
            MAGIC_USEC => (Endian::Little, false),
            MAGIC_NSEC => (Endian::Little, true),
            _ => match Endian::Big.u32(buf, 0) {
                MAGIC_USEC => (Endian::Big, false),
                MAGIC_NSEC => (Endian::Big, true),
                m => {
                    return Err(DecodeError::new(
                        self.offset,
                        format!("not a pcap file (magic number {m:#010x})"),
                    ))
                }
            },
        };
        let major = endian.u16(buf, 4);
        if major != 2 {
            return Err(DecodeError::new(
                self.offset,
                format!("unsupported pcap version {major}.{}", endian.u16(buf, 6)),
            ));
        }
        let snap_len = endian.u32(buf, 16);
        let network = endian.u32(buf, 20);
        let (link_type, fcs_len, reserved) = link_type_field(network);
        if reserved != 0 {
            // tshark refuses such a file ("network type reserved field not zero")
            self.notes.add(NoteKind::LinkTypeReserved, self.offset, || {
                format!(
                    "the file header's link-type field {network:#010x} has reserved bits {reserved:#010x} set: ignored, link type {link_type} kept{}",
                    fcs_len.map_or(String::new(), |b| format!(" with an FCS of {b} bits"))
                )
            });
        }
        buf.advance(FILE_HEADER_LEN);
        self.offset += FILE_HEADER_LEN as u64;
        self.header = Some((endian, nanos));
        self.pending = Some(Interface {
            link_type,
            snap_len,
            name: None,
            description: None,
            fcs_len,
        });
        Ok(Some(Record::Section {
            big_endian: endian == Endian::Big,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(nanos: bool, network: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(if nanos { MAGIC_NSEC } else { MAGIC_USEC }.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend(65535u32.to_le_bytes());
        h.extend(network.to_le_bytes());
        h
    }

    fn record(h: &mut Vec<u8>, secs: u32, frac: u32) {
        h.extend(secs.to_le_bytes());
        h.extend(frac.to_le_bytes());
        h.extend(1u32.to_le_bytes());
        h.extend(1u32.to_le_bytes());
        h.push(0xaa);
    }

    fn run(bytes: Vec<u8>) -> (Vec<Record>, Vec<Note>) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut d = PcapDecoder::new();
        let mut out = Vec::new();
        while let Some(r) = d.decode(&mut buf).expect("decodes") {
            out.push(r);
        }
        (out, d.take_notes())
    }

    #[test]
    fn out_of_range_subseconds_are_carried_and_counted_in_one_note() {
        for (nanos, unit) in [(false, 1_000_000u32), (true, 1_000_000_000)] {
            let mut f = header(nanos, 1);
            record(&mut f, 10, unit - 1);
            record(&mut f, 10, unit);
            record(&mut f, 10, unit + unit / 2);
            let (recs, notes) = run(f);
            let ts: Vec<u64> = recs
                .iter()
                .filter_map(|r| match r {
                    Record::Packet(p) => p.ts,
                    _ => None,
                })
                .collect();
            let scale = if nanos { 1 } else { 1000 };
            let at = |f: u32| 10_000_000_000 + u64::from(f) * scale;
            assert_eq!(ts, [at(unit - 1), at(unit), at(unit + unit / 2)]);
            assert_eq!(notes.len(), 1);
            let n = &notes[0];
            assert_eq!(
                (n.kind, n.count, n.offset),
                (NoteKind::Subsecond, 2, 24 + 17)
            );
            assert!(!n.kind.is_error());
        }
    }

    #[test]
    fn reserved_link_type_bits_are_ignored_and_noted() {
        assert_eq!(link_type_field(0x0000_0001), (1, None, 0));
        assert_eq!(link_type_field(0x2400_0001), (1, Some(32), 0));
        assert_eq!(link_type_field(0x2401_0001), (1, Some(32), 0x0001_0000));
        assert_eq!(link_type_field(0x2000_00e4), (228, None, 0x2000_0000));
        let (recs, notes) = run(header(false, 0x0801_0071));
        assert_eq!(
            recs[1],
            Record::Interface(Interface {
                link_type: 113,
                snap_len: 65535,
                ..Interface::default()
            })
        );
        assert_eq!(notes[0].kind, NoteKind::LinkTypeReserved);
        assert!(notes[0].message.contains("0x08010000"), "{}", notes[0]);
    }

    #[test]
    fn fcs_length_from_the_link_type_field() {
        // libpcap: bit 26 = FCS length present, bits 28..31 = length in 16-bit words
        let mut h = Vec::new();
        h.extend(MAGIC_USEC.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend(65535u32.to_le_bytes());
        h.extend(0x2400_0001u32.to_le_bytes()); // Ethernet with a 4-byte FCS
        let mut buf = BytesMut::from(&h[..]);
        let mut d = PcapDecoder::new();
        assert!(matches!(
            d.decode(&mut buf),
            Ok(Some(Record::Section { .. }))
        ));
        match d.decode(&mut buf) {
            Ok(Some(Record::Interface(i))) => {
                assert_eq!(i.link_type, 1);
                assert_eq!(i.fcs_len, Some(32)); // pcapng's if_fcslen is in bits
            }
            other => panic!("{other:?}"),
        }
    }
}
