use crate::pcap::{self, PcapDecoder};
use crate::pcapng::{self, PcapngDecoder};
use crate::{DecodeError, Decoder, Note, Record};
use bytes::BytesMut;

/// Decodes either classic pcap or pcapng, chosen by the first four bytes.
#[derive(Debug, Default)]
pub enum CaptureDecoder {
    #[default]
    Detect,
    Pcap(PcapDecoder),
    Pcapng(PcapngDecoder),
}

impl CaptureDecoder {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Decoder for CaptureDecoder {
    fn offset(&self) -> u64 {
        match self {
            CaptureDecoder::Detect => 0,
            CaptureDecoder::Pcap(d) => d.offset(),
            CaptureDecoder::Pcapng(d) => d.offset(),
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Record>, DecodeError> {
        match self {
            CaptureDecoder::Pcap(d) => d.decode(buf),
            CaptureDecoder::Pcapng(d) => d.decode(buf),
            CaptureDecoder::Detect => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                if pcapng::sniff(buf) {
                    *self = CaptureDecoder::Pcapng(PcapngDecoder::new());
                } else if pcap::sniff(buf) {
                    *self = CaptureDecoder::Pcap(PcapDecoder::new());
                } else {
                    return Err(not_a_capture(buf));
                }
                self.decode(buf)
            }
        }
    }

    fn decode_eof(&mut self, buf: &BytesMut) -> Result<(), DecodeError> {
        match self {
            CaptureDecoder::Detect if !buf.is_empty() => Err(not_a_capture(buf)),
            CaptureDecoder::Detect => crate::check_eof(0, buf),
            CaptureDecoder::Pcap(d) => d.decode_eof(buf),
            CaptureDecoder::Pcapng(d) => d.decode_eof(buf),
        }
    }

    fn take_notes(&mut self) -> Vec<Note> {
        match self {
            CaptureDecoder::Detect => Vec::new(),
            CaptureDecoder::Pcap(d) => d.take_notes(),
            CaptureDecoder::Pcapng(d) => d.take_notes(),
        }
    }
}

fn not_a_capture(head: &[u8]) -> DecodeError {
    let shown: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let hint = if head.starts_with(&[0x1f, 0x8b]) {
        " (it looks gzip-compressed: decompress it first, e.g. with gunzip -k)"
    } else if head
        .iter()
        .take(4) // only the magic: the hint must not depend on how much has arrived
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        " (it looks like text: was tool output mixed into the capture stream?)"
    } else {
        ""
    };
    DecodeError::new(
        0,
        format!(
            "not a capture file: it starts with {} where a pcap magic (a1b2c3d4, a1b23c4d, either byte order) or a pcapng section header (0a0d0d0a) was expected{hint}",
            shown.join(" ")
        ),
    )
}
