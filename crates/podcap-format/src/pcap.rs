//! Classic pcap (libpcap) decoder: all four magics (µs/ns × little/big endian), any link type.

use crate::{DecodeError, Decoder, Endian, Interface, Packet, Record, MAX_BLOCK_LEN};
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
        // libpcap: bit 26 says an FCS length is present, bits 28..31 give it in 16-bit words.
        // pcapng's if_fcslen (what we carry) is in bits.
        let fcs_len = if network & 0x0400_0000 != 0 {
            Some((((network >> 28) & 0xF) * 16) as u8)
        } else {
            None
        };
        buf.advance(FILE_HEADER_LEN);
        self.offset += FILE_HEADER_LEN as u64;
        self.header = Some((endian, nanos));
        self.pending = Some(Interface {
            link_type: (network & 0xffff) as u16,
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
