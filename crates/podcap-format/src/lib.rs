#![doc = include_str!("../README.md")]
//!
//! Capture formats: the records every decoder yields, incremental decoders for classic pcap
//! and pcapng, and the pcapng encoder.
//!
//! Decoders work like tokio-util codecs: [`Decoder::decode`] is handed the bytes read so
//! far in a [`BytesMut`], takes one complete record off its front (packet payloads are
//! zero-copy [`Bytes`] slices of that buffer) or returns `Ok(None)` when it needs more bytes.
//! They never allocate what a header claims: a block is only returned once all of its bytes
//! have arrived, and no block may claim more than [`MAX_BLOCK_LEN`].

mod detect;
pub mod encode;
pub mod pcap;
pub mod pcapng;

pub use detect::CaptureDecoder;

use bytes::{Bytes, BytesMut};
use std::fmt;

/// An incremental capture decoder (pcap, pcapng, or either, detected by the first bytes).
///
/// Like a tokio-util codec: the caller appends the bytes it reads to a [`BytesMut`] and calls
/// [`decode`](Decoder::decode) until it returns `Ok(None)` (more bytes needed); at the end of
/// the input it calls [`decode_eof`](Decoder::decode_eof) once with what is left. After an
/// error the decoder must not be used again.
pub trait Decoder {
    /// Takes the next complete record off the front of `buf` (payloads are zero-copy slices of
    /// it), or returns `Ok(None)` when more bytes are needed.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError>;
    /// Called once the input has ended, with whatever was left unconsumed in `buf`: the error
    /// that explains an empty or truncated input, if any.
    fn decode_eof(&mut self, buf: &BytesMut) -> Result<(), DecodeError>;
    /// Bytes consumed so far: the offset of the next record from the start of the input.
    fn offset(&self) -> u64;
    /// What the decoder noticed since the last call without stopping for it (a corrupt name
    /// record or option it dropped, a timestamp it had to adjust), one [`Note`] per kind with a
    /// count. Callers drain it after each batch; at most one note per [`NoteKind`] is held.
    fn take_notes(&mut self) -> Vec<Note> {
        Vec::new()
    }
}

/// What kind of thing a decoder worked around instead of failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoteKind {
    /// A pcapng name resolution record Wireshark would refuse (a name without its NUL, an
    /// address shorter than IPv4's 4 or IPv6's 16 bytes, a record overrunning its block):
    /// dropped, so it cannot stop a reader of the output. An error of the input.
    NameRecord,
    /// A malformed pcapng option (overrunning its block, `epb_flags` not 4 bytes): dropped
    /// with the options after it. An error of the input.
    Option,
    /// A pcapng block too short for its type (a custom block without its enterprise number):
    /// dropped. An error of the input.
    Block,
    /// A classic pcap record whose sub-second field is out of range (µs ≥ 10⁶, ns ≥ 10⁹):
    /// carried into the seconds. A warning.
    Subsecond,
    /// A timestamp before 1970 or after 2554 (what 64-bit nanoseconds since the epoch can
    /// hold): pinned to the nearest end. A warning.
    TimestampRange,
    /// A classic pcap link-type field with reserved bits set: they are ignored. A warning.
    LinkTypeReserved,
}

impl NoteKind {
    /// Errors of the input (something was dropped) as opposed to warnings (a value adjusted).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            NoteKind::NameRecord | NoteKind::Option | NoteKind::Block
        )
    }

    /// "`count` such things, and what was done", for a summary.
    pub fn counted(self, count: u64) -> String {
        match self {
            NoteKind::NameRecord => {
                format!("{count} name resolution record(s) Wireshark would refuse, dropped")
            }
            NoteKind::Option => format!("{count} malformed option(s), dropped"),
            NoteKind::Block => format!("{count} malformed block(s), dropped"),
            NoteKind::Subsecond => format!(
                "{count} packet record(s) with a sub-second field out of range, carried into the seconds"
            ),
            NoteKind::TimestampRange => format!(
                "{count} timestamp(s) beyond the nanosecond range (1970 to 2554), pinned to its end"
            ),
            NoteKind::LinkTypeReserved => {
                format!("{count} link-type field(s) with reserved bits set, ignored")
            }
        }
    }
}

/// Something a decoder worked around instead of failing: the first occurrence of its kind
/// since notes were last taken, and how many there were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    /// Byte offset of the first block or record of this kind.
    pub offset: u64,
    /// What was wrong with that first one and what was done about it.
    pub message: String,
    /// How many of this kind (at least 1).
    pub count: u64,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte offset {}: {}", self.offset, self.message)
    }
}

/// A decoder's pending notes: one per kind, counted (so a file full of bad timestamps costs
/// one message, not one per packet).
#[derive(Debug, Default)]
pub(crate) struct Notes(Vec<Note>);

impl Notes {
    pub(crate) fn add(&mut self, kind: NoteKind, offset: u64, message: impl FnOnce() -> String) {
        match self.0.iter_mut().find(|n| n.kind == kind) {
            Some(n) => n.count += 1,
            None => self.0.push(Note {
                kind,
                offset,
                message: message(),
                count: 1,
            }),
        }
    }

    pub(crate) fn take(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.0)
    }
}

/// The notes of one source over a whole run, by kind: for its summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoteTally(Vec<(NoteKind, u64)>);

impl NoteTally {
    /// Counts `note`; true when it is the first of its kind (the one worth printing).
    pub fn add(&mut self, note: &Note) -> bool {
        match self.0.iter_mut().find(|(k, _)| *k == note.kind) {
            Some((_, n)) => {
                *n += note.count;
                false
            }
            None => {
                self.0.push((note.kind, note.count));
                self.0.sort();
                true
            }
        }
    }

    /// Errors of the input counted (dropped records, options, blocks).
    pub fn errors(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.is_error())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// "INPUT ERRORS: …; WARNINGS: …", each kind with its count.
impl fmt::Display for NoteTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |errors: bool| -> Vec<String> {
            self.0
                .iter()
                .filter(|(k, _)| k.is_error() == errors)
                .map(|(k, n)| k.counted(*n))
                .collect()
        };
        let (errors, warnings) = (part(true), part(false));
        if !errors.is_empty() {
            write!(f, "INPUT ERRORS: {}", errors.join(", "))?;
            if !warnings.is_empty() {
                f.write_str("; ")?;
            }
        }
        if !warnings.is_empty() {
            write!(f, "WARNINGS: {}", warnings.join(", "))?;
        }
        Ok(())
    }
}

/// The end-of-input check every decoder shares: nothing may be left over, and an input must
/// have held something.
pub(crate) fn check_eof(offset: u64, rest: &BytesMut) -> Result<(), DecodeError> {
    if offset == 0 && rest.is_empty() {
        Err(DecodeError::new(
            0,
            "the input is empty: no capture data at all",
        ))
    } else if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::new(
            offset,
            format!(
                "truncated: the input ends {} byte(s) into a block or record; the packets before it were kept",
                rest.len()
            ),
        ))
    }
}

/// The largest block or record we accept (16 MiB). Real captures stay far below it
/// (tcpdump's largest snaplen is 256 KiB); anything claiming more is corrupt.
pub const MAX_BLOCK_LEN: usize = 16 * 1024 * 1024;

/// One captured packet as read from an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Index of the interface within the input's current section (0 for classic pcap).
    pub iface: u32,
    /// Nanoseconds since the Unix epoch, with the interface's resolution and offset applied.
    /// `None` for pcapng Simple Packet Blocks, which carry no timestamp.
    pub ts: Option<u64>,
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// The captured bytes (may be shorter than `orig_len`).
    pub data: Bytes,
    /// pcapng `epb_flags` / `pack_flags` (direction, reception type, FCS length), if present.
    pub flags: Option<u32>,
}

/// An interface described by an input (a pcapng IDB, or a classic pcap file header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub link_type: u16,
    pub snap_len: u32,
    /// `if_name`, when the input gave one.
    pub name: Option<String>,
    /// `if_description`, when the input gave one.
    pub description: Option<String>,
    /// `if_fcslen` (in bits, as pcapng stores it), or the FCS length of a classic pcap header.
    pub fcs_len: Option<u8>,
}

/// One entry of a pcapng Name Resolution Block, kept as it was (the value is byte-order
/// independent: an address followed by NUL-terminated names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRecord {
    /// 1 = IPv4, 2 = IPv6, 3 = EUI-48, 4 = EUI-64; others are passed through as they are.
    pub kind: u16,
    pub value: Bytes,
}

/// A pcapng Custom Block that may be copied (type 0x00000BAD); those that must not be copied
/// (0x40000BAD) are never yielded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomBlock {
    /// Private Enterprise Number (read in the section's byte order).
    pub pen: u32,
    /// Custom data and options, as they were (padded to 4 bytes): their byte order is the
    /// vendor's business, so they are copied without change.
    pub data: Bytes,
}

/// Counters from a pcapng Interface Statistics Block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub iface: u32,
    /// `isb_ifrecv`
    pub received: Option<u64>,
    /// `isb_ifdrop`
    pub dropped: Option<u64>,
}

/// What a decoder yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A new section begins (pcapng SHB, or the classic pcap file header): the interfaces of
    /// the previous section are gone.
    Section {
        big_endian: bool,
    },
    /// A new interface; its index is the number of interfaces seen before it in the section.
    Interface(Interface),
    Packet(Packet),
    /// Name records, each one Wireshark accepts (see [`NoteKind::NameRecord`]).
    Names(Vec<NameRecord>),
    Stats(InterfaceStats),
    Custom(CustomBlock),
}

/// A decoding error: where in the input it happened and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset from the start of the input of the block or record at fault.
    pub offset: u64,
    pub message: String,
}

impl DecodeError {
    pub fn new(offset: u64, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte offset {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Little helpers to read integers in a section's byte order. Callers check lengths first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

impl Endian {
    #[inline]
    pub(crate) fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    #[inline]
    pub(crate) fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
    #[inline]
    pub(crate) fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }
}
