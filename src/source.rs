//! Sources: turn a byte stream (a file, stdin, a command's stdout, later a pod's capture) into
//! batches of decoded records for the engine.
//!
//! Every source has a byte budget (a semaphore of bytes): it takes permits for each batch
//! before handing it over, and the engine gives them back once the batch has been written.
//! When the output is slow, a source runs out of budget and stops reading, so the pipe (and
//! behind it tcpdump, and the kernel) pushes back instead of our memory growing.

use crate::format::{CaptureDecoder, DecodeError, Record};
use crate::output::SourceLabel;
use bytes::BytesMut;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How much a file source reads at a time.
pub const READ_CHUNK: usize = 128 * 1024;

/// Default byte budget of one source: what it may have decoded but not yet written.
pub const DEFAULT_BUDGET: usize = 1024 * 1024;

/// What a source reports to the engine.
#[derive(Debug)]
pub enum SourceEvent {
    /// Always first: how to name the source, and its budget (the engine returns permits).
    Started {
        label: SourceLabel,
        budget: Arc<Semaphore>,
    },
    /// Records decoded from one read, in input order; `charge` permits were taken for them.
    Records { records: Vec<Record>, charge: u32 },
    /// Packets the capture tool reported dropped (e.g. tcpdump's "dropped by kernel").
    Dropped(u64),
    /// The source failed; what it delivered before stays valid.
    Failed(String),
    /// What the source is doing, for its progress row ("injecting", "pulling image"…).
    State(String),
    /// Something the user should know that is not a failure (said once, on stderr).
    Note(String),
    /// The source is finished; nothing follows.
    End,
}

/// An event from source `src`.
#[derive(Debug)]
pub struct Msg {
    pub src: usize,
    pub event: SourceEvent,
}

/// The `src` of messages about the run rather than one source (see [`Events::say`]).
pub const RUN: usize = usize::MAX;

/// Where sources send their events; cloned into every source. Hands out source ids.
#[derive(Clone, Debug)]
pub struct Events {
    tx: Sender<Msg>,
    next_id: Arc<AtomicUsize>,
}

impl Events {
    pub fn new(tx: Sender<Msg>) -> Self {
        Self {
            tx,
            next_id: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A message about the run (a pod waiting for room, a lost watch…), printed by the engine
    /// above its progress rows so they do not draw over it.
    pub fn say(&self, message: impl Into<String>) {
        let _ = self.tx.send(Msg {
            src: RUN,
            event: SourceEvent::Note(message.into()),
        });
    }

    /// Registers a new source (its `Started` event is sent at once, so sources registered one
    /// after the other are numbered and merged in that order).
    pub fn register(&self, label: SourceLabel, budget_bytes: usize) -> SourceTx {
        let src = self.next_id.fetch_add(1, Ordering::SeqCst);
        let budget = Arc::new(Semaphore::new(budget_bytes));
        let _ = self.tx.send(Msg {
            src,
            event: SourceEvent::Started {
                label,
                budget: budget.clone(),
            },
        });
        SourceTx {
            src,
            tx: self.tx.clone(),
            budget,
            budget_bytes: budget_bytes as u32,
        }
    }
}

/// One source's side of the channel. Dropping it ends the source (so a source that panics
/// or forgets to call [`SourceTx::end`] cannot hold the merge open).
#[derive(Debug)]
pub struct SourceTx {
    pub src: usize,
    tx: Sender<Msg>,
    budget: Arc<Semaphore>,
    budget_bytes: u32,
}

impl Drop for SourceTx {
    fn drop(&mut self) {
        self.send(SourceEvent::End);
    }
}

/// What a batch costs against the budget: its bytes plus a little per record, capped at the
/// whole budget (so one huge block can always pass).
fn charge_of(records: &[Record], budget_bytes: u32) -> u32 {
    let bytes: usize = records
        .iter()
        .map(|r| match r {
            Record::Packet(p) => p.data.len() + 64,
            _ => 64,
        })
        .sum();
    bytes.min(budget_bytes as usize).max(1) as u32
}

impl SourceTx {
    fn send(&self, event: SourceEvent) -> bool {
        self.tx
            .send(Msg {
                src: self.src,
                event,
            })
            .is_ok()
    }

    /// Hands a batch over, waiting (blocking the thread) for budget. False: the engine is gone.
    pub fn records_blocking(&self, records: Vec<Record>) -> bool {
        let charge = charge_of(&records, self.budget_bytes);
        match self.budget.blocking_acquire_many(charge) {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.send(SourceEvent::Records { records, charge })
    }

    /// Hands a batch over, waiting for budget. False: the engine is gone.
    pub async fn records(&self, records: Vec<Record>) -> bool {
        let charge = charge_of(&records, self.budget_bytes);
        match self.budget.acquire_many(charge).await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.send(SourceEvent::Records { records, charge })
    }

    pub fn dropped(&self, n: u64) {
        self.send(SourceEvent::Dropped(n));
    }

    pub fn state(&self, state: impl Into<String>) {
        self.send(SourceEvent::State(state.into()));
    }

    pub fn note(&self, message: impl Into<String>) {
        self.send(SourceEvent::Note(message.into()));
    }

    pub fn failed(&self, message: impl Into<String>) {
        self.send(SourceEvent::Failed(message.into()));
    }

    /// The source is finished (the same as dropping it).
    pub fn end(self) {}
}

/// Reads from `fd` into the spare capacity of `buf` (at least `want` bytes of room), without
/// zeroing it first. Returns 0 at end of input.
pub fn read_into(fd: impl AsFd, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    reserve_for_read(buf, want);
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

/// Makes room to read into `buf`: a new buffer of `want` bytes only when the spare room of the
/// current one is nearly used up. Packets are zero-copy slices of these buffers, so small
/// reads (a live capture delivering one packet at a time) must fill one buffer after another
/// rather than each pinning a fresh `want`-byte buffer: memory held stays close to the bytes
/// held, which is what the source's budget counts.
pub fn reserve_for_read(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < (want / 8).max(2048) {
        buf.reserve(want);
    }
}

/// Decodes everything complete in `buf` into `out`; on a decoding error the records before it
/// are in `out`.
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

/// A decoder with its buffer: feed it bytes as they arrive, take batches out.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pub decoder: CaptureDecoder,
    pub buf: BytesMut,
}

impl StreamDecoder {
    /// Decodes what has arrived. On error returns the records decoded before it too.
    pub fn batch(&mut self) -> (Vec<Record>, Option<String>) {
        let mut batch = Vec::new();
        let err = decode_all(&mut self.decoder, &mut self.buf, &mut batch)
            .err()
            .map(|e| e.to_string());
        (batch, err)
    }

    /// At end of input: the error that explains an empty or truncated input, if any.
    pub fn finish(&mut self) -> Option<String> {
        self.decoder
            .decode_eof(&self.buf)
            .err()
            .map(|e| e.to_string())
    }
}

/// Reads and decodes `fd` to its end on the calling thread, handing batches to `tx`. Stops
/// early when the engine is gone. Always ends the source.
pub fn pump(fd: impl AsFd, tx: SourceTx) {
    let mut dec = StreamDecoder::default();
    loop {
        match read_into(&fd, &mut dec.buf, READ_CHUNK) {
            Ok(0) => {
                if let Some(e) = dec.finish() {
                    tx.failed(e);
                }
                break;
            }
            Ok(_) => {
                let (batch, err) = dec.batch();
                if !batch.is_empty() && !tx.records_blocking(batch) {
                    return;
                }
                if let Some(e) = err {
                    tx.failed(e);
                    break;
                }
            }
            Err(e) => {
                tx.failed(format!(
                    "read failed after byte offset {}: {e}",
                    dec.decoder.offset()
                ));
                break;
            }
        }
    }
    tx.end();
}
