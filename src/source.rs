//! Sources: turn a byte stream (a file, stdin, a command's stdout) into batches of decoded
//! records.

use crate::format::{CaptureDecoder, DecodeError, Record};
use bytes::BytesMut;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// How much a source reads at a time.
pub const READ_CHUNK: usize = 256 * 1024;

/// What a source reports.
#[derive(Debug)]
pub enum SourceEvent {
    /// Records decoded from one read, in input order.
    Records(Vec<Record>),
    /// The source failed; what it delivered before stays valid. No more events follow but `End`.
    Failed(String),
    /// The source is finished.
    End,
}

/// Reads from `fd` into the spare capacity of `buf` (at least `want` bytes of room), without
/// zeroing it first. Returns 0 at end of input.
pub fn read_into(fd: impl AsFd, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: `spare` is valid writable memory of `spare.len()` bytes owned by `buf`;
        // read(2) writes at most that many bytes and we only expose the ones it wrote.
        let n = unsafe {
            libc::read(
                fd.as_fd().as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Decodes everything complete in `buf`; on a decoding error returns the records before it.
pub fn decode_all(
    decoder: &mut CaptureDecoder,
    buf: &mut BytesMut,
    out: &mut Vec<Record>,
) -> Result<(), DecodeError> {
    while let Some(rec) = decoder.decode(buf)? {
        out.push(rec);
    }
    Ok(())
}

/// Reads and decodes `fd` to its end, calling `emit` with each batch. Stops early when `emit`
/// returns false (nobody wants more). The last event is always `End`, after a `Failed` if the
/// input was bad.
pub fn pump(fd: impl AsFd, mut emit: impl FnMut(SourceEvent) -> bool) {
    let mut decoder = CaptureDecoder::new();
    let mut buf = BytesMut::new();
    loop {
        match read_into(&fd, &mut buf, READ_CHUNK) {
            Ok(0) => {
                if let Err(e) = decoder.decode_eof(&buf) {
                    emit(SourceEvent::Failed(e.to_string()));
                }
                break;
            }
            Ok(_) => {
                let mut batch = Vec::with_capacity(256);
                let res = decode_all(&mut decoder, &mut buf, &mut batch);
                if !batch.is_empty() && !emit(SourceEvent::Records(batch)) {
                    return;
                }
                if let Err(e) = res {
                    emit(SourceEvent::Failed(e.to_string()));
                    break;
                }
            }
            Err(e) => {
                emit(SourceEvent::Failed(format!(
                    "read failed after byte offset {}: {e}",
                    decoder.offset()
                )));
                break;
            }
        }
    }
    emit(SourceEvent::End);
}
