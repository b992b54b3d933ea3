//! pcapng decoder: SHB, IDB, EPB, SPB, obsolete PB, NRB, ISB and copyable custom blocks;
//! do-not-copy custom blocks and unknown blocks are skipped. Several sections per stream, each
//! with its own byte order and interfaces; `if_tsresol` (base 10 and base 2) and `if_tsoffset`
//! applied per interface.
//!
//! What is passed on is what Wireshark's reader accepts: a name record or an option it would
//! refuse (it stops reading a file there) is dropped and reported as a [`Note`], not copied.

use crate::{
    CustomBlock, DecodeError, Decoder, Endian, Interface, InterfaceStats, NameRecord, Note,
    NoteKind, Notes, Packet, Record, MAX_BLOCK_LEN,
};
use bytes::{Bytes, BytesMut};

pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 1;
pub const PB: u32 = 2;
pub const SPB: u32 = 3;
pub const NRB: u32 = 4;
pub const ISB: u32 = 5;
pub const EPB: u32 = 6;
/// Custom Block that may be copied into new files.
pub const CB_COPY: u32 = 0x0000_0BAD;
/// Custom Block that must not be copied.
pub const CB_NO_COPY: u32 = 0x4000_0BAD;
/// Name resolution record types.
pub const NRES_IP4: u16 = 1;
pub const NRES_IP6: u16 = 2;
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

/// Converts a raw pcapng timestamp to nanoseconds since the epoch, pinned to 0..=u64::MAX.
pub fn timestamp_ns(raw: u64, resol: u8, offset_s: i64) -> u64 {
    timestamp_ns_pinned(raw, resol, offset_s).0
}

/// [`timestamp_ns`], and whether the value had to be pinned (before 1970 or after 2554).
pub fn timestamp_ns_pinned(raw: u64, resol: u8, offset_s: i64) -> (u64, bool) {
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
    let pinned = with_offset.clamp(0, i128::from(u64::MAX));
    (pinned as u64, pinned != with_offset)
}

/// Is this name resolution record one Wireshark accepts? (IPv4: 4 address bytes, IPv6: 16,
/// then NUL-terminated names; readers skip other types.) Returns why not.
pub fn name_record_problem(kind: u16, value: &[u8]) -> Option<String> {
    let (what, addr_len) = match kind {
        NRES_IP4 => ("IPv4", 4),
        NRES_IP6 => ("IPv6", 16),
        _ => return None,
    };
    if value.len() < addr_len {
        return Some(format!(
            "{what} name record of {} bytes, shorter than its {addr_len}-byte address",
            value.len()
        ));
    }
    if value[addr_len..].last().is_some_and(|&b| b != 0) {
        return Some(format!(
            "{what} name record whose last name has no terminating NUL"
        ));
    }
    None
}

/// A name record as Wireshark would take it: as it is, cut after its last complete name (a
/// name without its NUL is dropped), or not at all. Returns what to keep and what was wrong.
fn repair_name_record(kind: u16, value: Bytes) -> (Option<Bytes>, Option<String>) {
    let Some(why) = name_record_problem(kind, &value) else {
        return (Some(value), None);
    };
    let addr_len = if kind == NRES_IP4 { 4 } else { 16 };
    let complete = value
        .get(addr_len..)
        .and_then(|names| names.iter().rposition(|&b| b == 0))
        .map(|nul| value.slice(..addr_len + nul + 1));
    let done = if complete.is_some() {
        "the names before it were kept"
    } else {
        "dropped"
    };
    (
        complete,
        Some(format!(
            "{why} (Wireshark would stop reading the output there): {done}"
        )),
    )
}

#[derive(Debug, Default)]
pub struct PcapngDecoder {
    endian: Option<Endian>,
    ifaces: Vec<IfaceClock>,
    offset: u64,
    /// Offset of the block being read, for notes.
    block_at: u64,
    notes: Notes,
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

    fn take_notes(&mut self) -> Vec<Note> {
        self.notes.take()
    }
}

impl PcapngDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with each option (code, value) of `body` from `at` on. An option overrunning
    /// the block (Wireshark refuses the file there) ends the options: it and those after it
    /// are dropped and noted.
    fn each_option(
        &mut self,
        endian: Endian,
        body: &[u8],
        at: usize,
        block: &str,
        mut f: impl FnMut(&mut Notes, u16, &[u8]),
    ) {
        for opt in (Options { body, endian, at }) {
            match opt {
                Ok((code, value)) => f(&mut self.notes, code, value),
                Err(why) => {
                    self.notes.add(NoteKind::Option, self.block_at, || {
                        format!("{block}: {why}: the options from there on were dropped")
                    });
                    break;
                }
            }
        }
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
            self.block_at = at;
            self.offset += len as u64;
            let body = block.slice(8..len - 4);
            let rec = match block_type {
                SHB => self.section(endian, &body).map_err(err)?,
                IDB => self.interface(endian, &body).map_err(err)?,
                EPB => Some(self.enhanced_packet(endian, &body).map_err(err)?),
                PB => Some(self.obsolete_packet(endian, &body).map_err(err)?),
                SPB => Some(self.simple_packet(endian, &body).map_err(err)?),
                NRB => self.names(endian, &body),
                ISB => self.stats(endian, &body),
                CB_COPY => self.custom(endian, &body),
                _ => None, // do-not-copy custom, decryption secrets, journal and unknown blocks
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
        self.each_option(
            endian,
            body,
            8,
            "interface description",
            |_, code, v| match code {
                2 => iface.name = Some(string_opt(v)),
                3 => iface.description = Some(string_opt(v)),
                9 if !v.is_empty() => clock.resol = v[0],
                13 if !v.is_empty() => iface.fcs_len = Some(v[0]),
                14 if v.len() >= 8 => clock.offset_s = endian.u64(v, 0) as i64,
                _ => {}
            },
        );
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

    /// `epb_flags` / `pack_flags`: exactly 4 bytes (Wireshark refuses any other length).
    fn flags(&mut self, endian: Endian, body: &[u8], at: usize, what: &str) -> Option<u32> {
        let at_block = self.block_at;
        let mut flags = None;
        self.each_option(endian, body, at, what, |notes, code, v| {
            if code != 2 {
                return;
            }
            if v.len() == 4 {
                flags = Some(endian.u32(v, 0));
            } else {
                notes.add(NoteKind::Option, at_block, || {
                    format!(
                        "{what}: flags option of {} bytes instead of 4: dropped",
                        v.len()
                    )
                });
            }
        });
        flags
    }

    fn enhanced_packet(&mut self, endian: Endian, body: &Bytes) -> Result<Record, String> {
        let iface = endian.u32(body, 0);
        self.timed_packet(endian, body, iface, "enhanced packet")
    }

    /// The obsolete Packet Block: an EPB with a 16-bit interface id (and a drop count).
    fn obsolete_packet(&mut self, endian: Endian, body: &Bytes) -> Result<Record, String> {
        let iface = u32::from(endian.u16(body, 0));
        self.timed_packet(endian, body, iface, "packet block")
    }

    /// What EPB and PB share after the interface id: timestamp, lengths, data, options.
    fn timed_packet(
        &mut self,
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
        let flags = self.flags(endian, body, end, what);
        let (ts, pinned) = timestamp_ns_pinned(raw, clock.resol, clock.offset_s);
        if pinned {
            self.notes.add(NoteKind::TimestampRange, self.block_at, || {
                format!(
                    "{what}: timestamp {raw} in units of if_tsresol {:#04x} with if_tsoffset {} s is beyond the nanosecond range of the output (1970 to 2554): pinned to {}; every such packet is counted in the summary",
                    clock.resol,
                    clock.offset_s,
                    if ts == 0 { "1970" } else { "2554" }
                )
            });
        }
        Ok(Record::Packet(Packet {
            iface,
            ts: Some(ts),
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

    /// The records of a Name Resolution Block that Wireshark accepts; the others are dropped
    /// and noted (a record overrunning the block ends it).
    fn names(&mut self, endian: Endian, body: &Bytes) -> Option<Record> {
        let mut records = Vec::new();
        let mut at = 0;
        while at + 4 <= body.len() {
            let kind = endian.u16(body, at);
            let len = endian.u16(body, at + 2) as usize;
            if kind == 0 {
                break;
            }
            let start = at + 4;
            if start + pad4(len) > body.len() {
                self.notes.add(NoteKind::NameRecord, self.block_at, || {
                    format!(
                        "name resolution record claims {len} bytes but the block has only {} left: it and the rest of the block were dropped",
                        body.len() - start
                    )
                });
                break;
            }
            let (keep, why) = repair_name_record(kind, body.slice(start..start + len));
            if let Some(why) = why {
                self.notes.add(NoteKind::NameRecord, self.block_at, || {
                    format!("name resolution block: {why}")
                });
            }
            if let Some(value) = keep {
                records.push(NameRecord { kind, value });
            }
            at = start + pad4(len);
        }
        (!records.is_empty()).then_some(Record::Names(records))
    }

    fn stats(&mut self, endian: Endian, body: &[u8]) -> Option<Record> {
        let iface = endian.u32(body, 0);
        if iface as usize >= self.ifaces.len() {
            return None; // statistics for an interface we never saw: nothing to attach them to
        }
        let mut stats = InterfaceStats {
            iface,
            ..InterfaceStats::default()
        };
        self.each_option(
            endian,
            body,
            12,
            "interface statistics",
            |_, code, v| match code {
                4 if v.len() >= 8 => stats.received = Some(endian.u64(v, 0)),
                5 if v.len() >= 8 => stats.dropped = Some(endian.u64(v, 0)),
                _ => {}
            },
        );
        Some(Record::Stats(stats))
    }

    /// A copyable Custom Block: its enterprise number, then data and options as they are.
    fn custom(&mut self, endian: Endian, body: &Bytes) -> Option<Record> {
        if body.len() < 4 {
            self.notes.add(NoteKind::Block, self.block_at, || {
                "custom block without its 4-byte enterprise number (Wireshark refuses it): dropped"
                    .to_string()
            });
            return None;
        }
        Some(Record::Custom(CustomBlock {
            pen: endian.u32(body, 0),
            data: body.slice(4..),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian block of `kind` with `body` (padded).
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.extend(len.to_le_bytes());
        b
    }

    fn section() -> Vec<u8> {
        let mut shb = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend(u64::MAX.to_le_bytes());
        block(SHB, &shb)
    }

    fn record(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend((value.len() as u16).to_le_bytes());
        r.extend(value);
        while !r.len().is_multiple_of(4) {
            r.push(0);
        }
        r
    }

    fn decode_all(bytes: Vec<u8>) -> (Vec<Record>, Vec<Note>) {
        let mut d = PcapngDecoder::new();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = Vec::new();
        while let Some(r) = d.decode(&mut buf).expect("decodes") {
            out.push(r);
        }
        d.decode_eof(&buf).expect("whole");
        (out, d.take_notes())
    }

    #[test]
    fn name_records_wireshark_refuses_are_dropped_or_cut_and_noted() {
        let mut nrb = record(NRES_IP4, b"\x0a\0\0\x01good\0");
        nrb.extend(record(NRES_IP4, b"\x0a\0\0\x02no-nul"));
        nrb.extend(record(NRES_IP4, b"\x0a\0"));
        nrb.extend(record(NRES_IP6, &[0xfd; 15]));
        let mut v6 = vec![0xfd; 16];
        v6.extend(b"a\0b\0cut");
        nrb.extend(record(NRES_IP6, &v6));
        nrb.extend(record(7, b"unknown types pass"));
        nrb.extend([0; 4]);
        let mut input = section();
        input.extend(block(NRB, &nrb));
        let (recs, notes) = decode_all(input);
        let Some(Record::Names(names)) = recs.get(1) else {
            panic!("{recs:?}")
        };
        let kept: Vec<(u16, &[u8])> = names.iter().map(|n| (n.kind, &n.value[..])).collect();
        let mut v6_cut = vec![0xfd; 16];
        v6_cut.extend(b"a\0b\0");
        assert_eq!(
            kept,
            vec![
                (NRES_IP4, &b"\x0a\0\0\x01good\0"[..]),
                (NRES_IP6, &v6_cut[..]),
                (7, &b"unknown types pass"[..]),
            ]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            (notes[0].kind, notes[0].count, notes[0].offset),
            (NoteKind::NameRecord, 4, 28)
        );
        assert!(
            notes[0].message.contains("no terminating NUL"),
            "{}",
            notes[0]
        );
        assert!(notes[0].kind.is_error());
    }

    #[test]
    fn a_name_record_overrunning_its_block_ends_the_block_not_the_stream() {
        let mut nrb = record(NRES_IP4, b"\x0a\0\0\x01kept\0");
        nrb.extend(1u16.to_le_bytes());
        nrb.extend(100u16.to_le_bytes());
        nrb.extend(b"\x0a\0\0\x02x\0\0\0");
        let mut input = section();
        input.extend(block(NRB, &nrb));
        input.extend(block(NRB, &record(NRES_IP4, b"\x0a\0\0\x03next\0")));
        let (recs, notes) = decode_all(input);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].message.contains("claims 100 bytes"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn malformed_options_are_dropped_and_noted_and_the_packet_kept() {
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend([0, 0]);
        idb.extend(0u32.to_le_bytes());
        idb.extend(record(2, b"eth0")); // if_name, shaped like a record
        idb.extend(record(9, &[9]));
        idb.extend(3u16.to_le_bytes());
        idb.extend(50u16.to_le_bytes()); // if_description claiming 50 bytes
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(0u32.to_le_bytes());
        epb.extend(7u32.to_le_bytes());
        epb.extend(4u32.to_le_bytes());
        epb.extend(4u32.to_le_bytes());
        epb.extend([1, 2, 3, 4]);
        epb.extend(record(2, &[1, 0, 0, 0, 0])); // epb_flags of 5 bytes
        let mut input = section();
        input.extend(block(IDB, &idb));
        input.extend(block(EPB, &epb));
        let (recs, notes) = decode_all(input);
        match (&recs[1], &recs[2]) {
            (Record::Interface(i), Record::Packet(p)) => {
                assert_eq!(i.name.as_deref(), Some("eth0"));
                assert_eq!(
                    (p.ts, p.flags, &p.data[..]),
                    (Some(7), None, &[1, 2, 3, 4][..])
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].kind, notes[0].count), (NoteKind::Option, 2));
    }

    #[test]
    fn copyable_custom_blocks_are_yielded_the_others_not() {
        let mut copy = 32473u32.to_le_bytes().to_vec();
        copy.extend(b"data");
        let mut input = section();
        input.extend(block(CB_COPY, &copy));
        input.extend(block(CB_NO_COPY, &copy));
        input.extend(block(CB_COPY, &[]));
        let (recs, notes) = decode_all(input);
        assert_eq!(
            recs[1..],
            [Record::Custom(CustomBlock {
                pen: 32473,
                data: Bytes::from_static(b"data"),
            })]
        );
        assert_eq!((notes[0].kind, notes[0].count), (NoteKind::Block, 1));
    }

    #[test]
    fn pinned_timestamps_are_said() {
        assert_eq!(timestamp_ns_pinned(1, 9, 0), (1, false));
        assert_eq!(timestamp_ns_pinned(1 << 40, 0, 0), (u64::MAX, true));
        assert_eq!(timestamp_ns_pinned(1, 9, -1), (0, true));
    }

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
