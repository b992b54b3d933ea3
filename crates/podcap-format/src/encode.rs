//! pcapng encoder: host byte order (dumpcap and Wireshark's pipe reader reject byte-swapped
//! pcapng on a pipe), nanosecond timestamps on every interface.

use crate::pcapng::{BYTE_ORDER_MAGIC, CB_COPY, EPB, IDB, ISB, NRB, SHB};
use crate::NameRecord;
use std::io::{self, Write};

/// Output buffer size: blocks are gathered and written in chunks of about this size.
pub const WRITE_CHUNK: usize = 256 * 1024;

const OPT_END: u16 = 0;
/// `opt_comment`, valid in every block.
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const EPB_FLAGS: u16 = 2;
const EPB_PACKETID: u16 = 5;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_FCSLEN: u16 = 13;
const SHB_USERAPPL: u16 = 4;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;

/// What an output interface looks like in its IDB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceDescription {
    pub link_type: u16,
    pub snap_len: u32,
    pub name: String,
    pub description: Option<String>,
    pub fcs_len: Option<u8>,
    /// `opt_comment` (what was done to this interface's packets, e.g. a clock correction).
    pub comment: Option<String>,
}

/// Statistics written in an interface's ISB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceTotals {
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub received: u64,
    pub dropped: Option<u64>,
}

pub struct PcapngWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    written: u64,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl<W: Write> PcapngWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(WRITE_CHUNK + 64 * 1024),
            written: 0,
        }
    }

    /// Bytes handed to the underlying writer plus those still buffered.
    pub fn position(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn ts(&mut self, ns: u64) {
        self.u32((ns >> 32) as u32);
        self.u32(ns as u32);
    }
    fn pad(&mut self, len: usize) {
        self.buf.resize(self.buf.len() + pad4(len) - len, 0);
    }
    fn option(&mut self, code: u16, value: &[u8]) {
        let len = value.len().min(u16::MAX as usize & !3);
        self.u16(code);
        self.u16(len as u16);
        self.buf.extend_from_slice(&value[..len]);
        self.pad(len);
    }
    /// Starts a block; returns its start so `end_block` can fill in the length.
    fn begin(&mut self, block_type: u32) -> usize {
        let start = self.buf.len();
        self.u32(block_type);
        self.u32(0);
        start
    }
    fn end_block(&mut self, start: usize) -> io::Result<()> {
        let len = (self.buf.len() - start + 4) as u32;
        self.u32(len);
        self.buf[start + 4..start + 8].copy_from_slice(&len.to_ne_bytes());
        self.maybe_flush()
    }
    fn end_options(&mut self) {
        self.u16(OPT_END);
        self.u16(0);
    }

    #[inline]
    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= WRITE_CHUNK {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes out everything buffered and flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer()?;
        self.out.flush()
    }

    /// Section Header Block with `shb_userappl`.
    pub fn section_header(&mut self, user_appl: &str) -> io::Result<()> {
        self.section_header_with_comment(user_appl, None)
    }

    /// Section Header Block with `shb_userappl` and, when given, an `opt_comment`.
    pub fn section_header_with_comment(
        &mut self,
        user_appl: &str,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let start = self.begin(SHB);
        self.u32(BYTE_ORDER_MAGIC);
        self.u16(1);
        self.u16(0);
        self.u64(u64::MAX); // section length unknown
        if let Some(c) = comment {
            self.option(OPT_COMMENT, c.as_bytes());
        }
        self.option(SHB_USERAPPL, user_appl.as_bytes());
        self.end_options();
        self.end_block(start)
    }

    /// Interface Description Block with `if_name`, `if_description`, `if_tsresol` = 9.
    pub fn interface(&mut self, d: &InterfaceDescription) -> io::Result<()> {
        let start = self.begin(IDB);
        self.u16(d.link_type);
        self.u16(0);
        self.u32(d.snap_len);
        self.option(IF_NAME, d.name.as_bytes());
        if let Some(desc) = &d.description {
            self.option(IF_DESCRIPTION, desc.as_bytes());
        }
        self.option(IF_TSRESOL, &[9]);
        if let Some(fcs) = d.fcs_len {
            self.option(IF_FCSLEN, &[fcs]);
        }
        if let Some(c) = &d.comment {
            self.option(OPT_COMMENT, c.as_bytes());
        }
        self.end_options();
        self.end_block(start)
    }

    /// Enhanced Packet Block; `epb_flags` written when given.
    #[inline]
    pub fn packet(
        &mut self,
        iface: u32,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
        flags: Option<u32>,
    ) -> io::Result<()> {
        self.packet_with_id(iface, ts_ns, orig_len, data, flags, None)
    }

    /// Enhanced Packet Block; `epb_flags` and `epb_packetid` (option 5: copies of one packet
    /// share it) written when given.
    #[inline]
    pub fn packet_with_id(
        &mut self,
        iface: u32,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
        flags: Option<u32>,
        packet_id: Option<u64>,
    ) -> io::Result<()> {
        let cap = data.len();
        let padded = pad4(cap);
        let opts = match (flags.is_some(), packet_id.is_some()) {
            (false, false) => 0,
            (f, p) => 4 + if f { 8 } else { 0 } + if p { 12 } else { 0 },
        };
        let total = (32 + padded + opts) as u32;
        let mut hdr = [0u8; 28];
        hdr[0..4].copy_from_slice(&EPB.to_ne_bytes());
        hdr[4..8].copy_from_slice(&total.to_ne_bytes());
        hdr[8..12].copy_from_slice(&iface.to_ne_bytes());
        hdr[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
        hdr[16..20].copy_from_slice(&(ts_ns as u32).to_ne_bytes());
        hdr[20..24].copy_from_slice(&(cap as u32).to_ne_bytes());
        hdr[24..28].copy_from_slice(&orig_len.to_ne_bytes());
        self.buf.reserve(total as usize);
        self.buf.extend_from_slice(&hdr);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(&[0u8; 3][..padded - cap]);
        if let Some(f) = flags {
            self.option(EPB_FLAGS, &f.to_ne_bytes());
        }
        if let Some(id) = packet_id {
            self.option(EPB_PACKETID, &id.to_ne_bytes());
        }
        if opts > 0 {
            self.end_options();
        }
        self.u32(total);
        self.maybe_flush()
    }

    /// Name Resolution Block carrying the given records. A record too long for its 16-bit
    /// length is left out (cutting it could cut its names' NUL, which Wireshark refuses).
    pub fn names(&mut self, records: &[NameRecord]) -> io::Result<()> {
        let start = self.begin(NRB);
        for r in records {
            let Ok(len) = u16::try_from(r.value.len()) else {
                continue;
            };
            self.u16(r.kind);
            self.u16(len);
            self.buf.extend_from_slice(&r.value);
            self.pad(r.value.len());
        }
        self.end_options(); // nrb_record_end has the same shape as opt_endofopt
        self.end_block(start)
    }

    /// Custom Block that may be copied (0x00000BAD): the enterprise number in our byte order,
    /// then the custom data and options as they came (padded to 4 bytes).
    pub fn custom(&mut self, pen: u32, data: &[u8]) -> io::Result<()> {
        let start = self.begin(CB_COPY);
        self.u32(pen);
        self.buf.extend_from_slice(data);
        self.pad(data.len());
        self.end_block(start)
    }

    /// Interface Statistics Block: start/end time, packets received, dropped if known.
    pub fn statistics(&mut self, iface: u32, now_ns: u64, t: &InterfaceTotals) -> io::Result<()> {
        self.statistics_with_comment(iface, now_ns, t, None)
    }

    /// An Interface Statistics Block with an `opt_comment` (e.g. the gaps of a capture that
    /// was resumed), which Wireshark shows with the interface's statistics.
    pub fn statistics_with_comment(
        &mut self,
        iface: u32,
        now_ns: u64,
        t: &InterfaceTotals,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let start = self.begin(ISB);
        self.u32(iface);
        self.ts(now_ns);
        if let Some(c) = comment.filter(|c| !c.is_empty()) {
            self.option(OPT_COMMENT, c.as_bytes());
        }
        if let Some(first) = t.first_ns {
            self.option(ISB_STARTTIME, &split_ts(first));
        }
        if let Some(last) = t.last_ns {
            self.option(ISB_ENDTIME, &split_ts(last));
        }
        self.option(ISB_IFRECV, &t.received.to_ne_bytes());
        if let Some(d) = t.dropped {
            self.option(ISB_IFDROP, &d.to_ne_bytes());
        }
        self.end_options();
        self.end_block(start)
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

/// A timestamp as pcapng stores it in options: high 32 bits, then low 32 bits.
fn split_ts(ns: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
    b[4..].copy_from_slice(&(ns as u32).to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaptureDecoder, Decoder, Record};
    use bytes::BytesMut;

    #[test]
    fn packet_ids_and_flags_make_valid_blocks() {
        let mut w = PcapngWriter::new(Vec::new());
        w.section_header_with_comment("t", Some("a comment"))
            .unwrap();
        w.interface(&InterfaceDescription {
            link_type: 1,
            snap_len: 0,
            name: "x".into(),
            ..InterfaceDescription::default()
        })
        .unwrap();
        for (flags, id) in [
            (None, None),
            (Some(2), None),
            (None, Some(7)),
            (Some(1), Some(u64::MAX)),
        ] {
            w.packet_with_id(0, 5, 3, b"abc", flags, id).unwrap();
        }
        let out = w.into_inner().unwrap();
        let mut buf = BytesMut::from(&out[..]);
        let mut d = CaptureDecoder::new();
        let mut seen = Vec::new();
        while let Some(r) = d.decode(&mut buf).unwrap() {
            if let Record::Packet(p) = r {
                assert_eq!(&p.data[..], b"abc");
                seen.push(p.flags);
            }
        }
        d.decode_eof(&buf).unwrap();
        assert_eq!(seen, vec![None, Some(2), None, Some(1)]);
    }
}
