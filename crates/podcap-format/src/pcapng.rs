//! pcapng decoder: SHB, IDB, EPB, SPB, obsolete PB, NRB, ISB; custom and unknown blocks are
//! skipped. Several sections per stream, each with its own byte order and interfaces;
//! `if_tsresol` (base 10 and base 2) and `if_tsoffset` applied per interface.

use crate::{
    DecodeError, Decoder, Endian, Interface, InterfaceStats, NameRecord, Packet, Record,
    MAX_BLOCK_LEN,
};
use bytes::{Bytes, BytesMut};

pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 1;
pub const PB: u32 = 2;
pub const SPB: u32 = 3;
pub const NRB: u32 = 4;
pub const ISB: u32 = 5;
pub const EPB: u32 = 6;
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Is this the start of a pcapng stream?
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 4 && head[..4] == SHB.to_le_bytes()
}

#[derive(Clone, Copy, Debug)]
struct IfaceClock {
    /// Raw `if_tsresol` byte (default 6: microseconds).
    resol: u8,
    /// `if_tsoffset`, seconds.
    offset_s: i64,
    snap_len: u32,
}

/// Converts a raw pcapng timestamp to nanoseconds since the epoch.
pub fn timestamp_ns(raw: u64, resol: u8, offset_s: i64) -> u64 {
    let exp = u32::from(resol & 0x7f);
    let ns: u128 = if resol & 0x80 == 0 {
        // units of 10^-exp seconds
        if exp <= 9 {
            u128::from(raw) * 10u128.pow(9 - exp)
        } else if exp - 9 <= 38 {
            u128::from(raw) / 10u128.pow(exp - 9)
        } else {
            0
        }
    } else {
        // units of 2^-exp seconds
        (u128::from(raw) * 1_000_000_000) >> exp
    };
    let with_offset = ns as i128 + i128::from(offset_s) * 1_000_000_000;
    with_offset.clamp(0, i128::from(u64::MAX)) as u64
}

#[derive(Debug, Default)]
pub struct PcapngDecoder {
    endian: Option<Endian>,
    ifaces: Vec<IfaceClock>,
    offset: u64,
}

fn min_len(block_type: u32) -> usize {
    match block_type {
        SHB => 28,
        IDB => 20,
        EPB | PB => 32,
        SPB => 16,
        ISB => 24,
        _ => 12,
    }
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates over the options of a block body: (code, value). Stops at opt_endofopt.
struct Options<'a> {
    body: &'a [u8],
    endian: Endian,
    at: usize,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u16, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at + 4 > self.body.len() {
            return None;
        }
        let code = self.endian.u16(self.body, self.at);
        let len = self.endian.u16(self.body, self.at + 2) as usize;
        if code == 0 {
            return None;
        }
        let start = self.at + 4;
        if start + len > self.body.len() {
            self.at = self.body.len();
            return Some(Err(format!(
                "option {code} claims {len} bytes but the block has only {} left",
                self.body.len() - start
            )));
        }
        self.at = start + pad4(len);
        Some(Ok((code, &self.body[start..start + len])))
    }
}

fn string_opt(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

impl Decoder for PcapngDecoder {
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

impl PcapngDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn options<'a>(&self, endian: Endian, body: &'a [u8], at: usize) -> Options<'a> {
        Options { body, endian, at }
    }

    fn next_record(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError> {
        loop {
            if buf.len() < 12 {
                return Ok(None);
            }
            let at = self.offset;
            let err = |m: String| DecodeError::new(at, m);
            let raw_type = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let (endian, block_type) = if raw_type == SHB {
                let e = match u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) {
                    BYTE_ORDER_MAGIC => Endian::Little,
                    m if m.swap_bytes() == BYTE_ORDER_MAGIC => Endian::Big,
                    m => {
                        return Err(err(format!(
                            "section header has an invalid byte-order magic {m:#010x}"
                        )))
                    }
                };
                (e, SHB)
            } else {
                let Some(e) = self.endian else {
                    return Err(err(
                        "does not start with a Section Header Block: not a pcapng file".into(),
                    ));
                };
                (e, e.u32(buf, 0))
            };
            let len = endian.u32(buf, 4) as usize;
            if !len.is_multiple_of(4) {
                return Err(err(format!(
                    "block type {block_type:#x} has length {len}, which is not a multiple of 4"
                )));
            }
            if len < min_len(block_type) {
                return Err(err(format!(
                    "block type {block_type:#x} has length {len}, smaller than its minimum of {}",
                    min_len(block_type)
                )));
            }
            if len > MAX_BLOCK_LEN {
                return Err(err(format!(
                    "block type {block_type:#x} claims {len} bytes, more than the {MAX_BLOCK_LEN} byte limit: the file is corrupt"
                )));
            }
            if buf.len() < len {
                return Ok(None);
            }
            let trailer = endian.u32(buf, len - 4) as usize;
            if trailer != len {
                return Err(err(format!(
                    "block type {block_type:#x}: trailing length {trailer} differs from leading length {len}"
                )));
            }
            let block = buf.split_to(len).freeze();
            self.offset += len as u64;
            let body = block.slice(8..len - 4);
            let rec = match block_type {
                SHB => self.section(endian, &body).map_err(err)?,
                IDB => self.interface(endian, &body).map_err(err)?,
                EPB => Some(self.enhanced_packet(endian, &body).map_err(err)?),
                PB => Some(self.obsolete_packet(endian, &body).map_err(err)?),
                SPB => Some(self.simple_packet(endian, &body).map_err(err)?),
                NRB => self.names(endian, &body).map_err(err)?,
                ISB => self.stats(endian, &body).map_err(err)?,
                _ => None, // custom, decryption secrets, journal and unknown blocks
            };
            if let Some(rec) = rec {
                return Ok(Some(rec));
            }
        }
    }

    fn section(&mut self, endian: Endian, body: &[u8]) -> Result<Option<Record>, String> {
        let major = endian.u16(body, 4);
        if major != 1 {
            return Err(format!(
                "unsupported pcapng version {major}.{}",
                endian.u16(body, 6)
            ));
        }
        self.endian = Some(endian);
        self.ifaces.clear();
        Ok(Some(Record::Section {
            big_endian: endian == Endian::Big,
        }))
    }

    fn interface(&mut self, endian: Endian, body: &[u8]) -> Result<Option<Record>, String> {
        let mut iface = Interface {
            link_type: endian.u16(body, 0),
            snap_len: endian.u32(body, 4),
            ..Interface::default()
        };
        let mut clock = IfaceClock {
            resol: 6,
            offset_s: 0,
            snap_len: iface.snap_len,
        };
        for opt in self.options(endian, body, 8) {
            let (code, v) = opt?;
            match code {
                2 => iface.name = Some(string_opt(v)),
                3 => iface.description = Some(string_opt(v)),
                9 if !v.is_empty() => clock.resol = v[0],
                13 if !v.is_empty() => iface.fcs_len = Some(v[0]),
                14 if v.len() >= 8 => clock.offset_s = endian.u64(v, 0) as i64,
                _ => {}
            }
        }
        self.ifaces.push(clock);
        Ok(Some(Record::Interface(iface)))
    }

    fn clock(&self, iface: u32) -> Result<IfaceClock, String> {
        self.ifaces.get(iface as usize).copied().ok_or_else(|| {
            format!(
                "packet names interface {iface}, but the section has only {} interface(s)",
                self.ifaces.len()
            )
        })
    }

    fn packet_data(
        body: &Bytes,
        at: usize,
        cap_len: usize,
        what: &str,
    ) -> Result<(Bytes, usize), String> {
        if at + cap_len > body.len() {
            return Err(format!(
                "{what} captured length {cap_len} exceeds the {} bytes left in the block",
                body.len() - at
            ));
        }
        Ok((body.slice(at..at + cap_len), at + pad4(cap_len)))
    }

    fn flags(&self, endian: Endian, body: &[u8], at: usize) -> Result<Option<u32>, String> {
        let mut flags = None;
        for opt in self.options(endian, body, at) {
            let (code, v) = opt?;
            if code == 2 && v.len() >= 4 {
                flags = Some(endian.u32(v, 0));
            }
        }
        Ok(flags)
    }

    fn enhanced_packet(&self, endian: Endian, body: &Bytes) -> Result<Record, String> {
        let iface = endian.u32(body, 0);
        self.timed_packet(endian, body, iface, "enhanced packet")
    }

    /// The obsolete Packet Block: an EPB with a 16-bit interface id (and a drop count).
    fn obsolete_packet(&self, endian: Endian, body: &Bytes) -> Result<Record, String> {
        let iface = u32::from(endian.u16(body, 0));
        self.timed_packet(endian, body, iface, "packet block")
    }

    /// What EPB and PB share after the interface id: timestamp, lengths, data, options.
    fn timed_packet(
        &self,
        endian: Endian,
        body: &Bytes,
        iface: u32,
        what: &str,
    ) -> Result<Record, String> {
        let clock = self.clock(iface)?;
        let raw = (u64::from(endian.u32(body, 4)) << 32) | u64::from(endian.u32(body, 8));
        let cap_len = endian.u32(body, 12) as usize;
        let orig_len = endian.u32(body, 16);
        let (data, end) = Self::packet_data(body, 20, cap_len, what)?;
        let flags = self.flags(endian, body, end)?;
        Ok(Record::Packet(Packet {
            iface,
            ts: Some(timestamp_ns(raw, clock.resol, clock.offset_s)),
            orig_len,
            data,
            flags,
        }))
    }

    fn simple_packet(&self, endian: Endian, body: &Bytes) -> Result<Record, String> {
        let clock = self.clock(0)?;
        let orig_len = endian.u32(body, 0);
        let mut cap_len = (orig_len as usize).min(body.len() - 4);
        if clock.snap_len != 0 {
            cap_len = cap_len.min(clock.snap_len as usize);
        }
        Ok(Record::Packet(Packet {
            iface: 0,
            ts: None,
            orig_len,
            data: body.slice(4..4 + cap_len),
            flags: None,
        }))
    }

    fn names(&self, endian: Endian, body: &Bytes) -> Result<Option<Record>, String> {
        let mut records = Vec::new();
        let mut at = 0;
        while at + 4 <= body.len() {
            let kind = endian.u16(body, at);
            let len = endian.u16(body, at + 2) as usize;
            if kind == 0 {
                break;
            }
            let start = at + 4;
            if start + len > body.len() {
                return Err(format!(
                    "name resolution record claims {len} bytes but the block has only {} left",
                    body.len() - start
                ));
            }
            records.push(NameRecord {
                kind,
                value: body.slice(start..start + len),
            });
            at = start + pad4(len);
        }
        Ok((!records.is_empty()).then_some(Record::Names(records)))
    }

    fn stats(&self, endian: Endian, body: &[u8]) -> Result<Option<Record>, String> {
        let iface = endian.u32(body, 0);
        if iface as usize >= self.ifaces.len() {
            return Ok(None); // statistics for an interface we never saw: nothing to attach them to
        }
        let mut stats = InterfaceStats {
            iface,
            ..InterfaceStats::default()
        };
        for opt in self.options(endian, body, 12) {
            let (code, v) = opt?;
            match code {
                4 if v.len() >= 8 => stats.received = Some(endian.u64(v, 0)),
                5 if v.len() >= 8 => stats.dropped = Some(endian.u64(v, 0)),
                _ => {}
            }
        }
        Ok(Some(Record::Stats(stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp_ns;

    #[test]
    fn resolutions() {
        assert_eq!(timestamp_ns(1_500_000, 6, 0), 1_500_000_000);
        assert_eq!(timestamp_ns(7, 9, 0), 7);
        assert_eq!(timestamp_ns(12_345, 12, 0), 12);
        assert_eq!(timestamp_ns(3 << 20 | 1 << 19, 0x80 | 20, 0), 3_500_000_000);
        assert_eq!(timestamp_ns(1_000_000, 6, 10), 11_000_000_000);
        assert_eq!(timestamp_ns(1_000_000, 6, -10), 0);
        assert_eq!(timestamp_ns(u64::MAX, 0, 0), u64::MAX);
        assert_eq!(timestamp_ns(u64::MAX, 127, 0), 0);
    }
}
