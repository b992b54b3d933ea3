//! Sources: turn a byte stream (a file, stdin, a command's stdout, later a pod's capture) into
//! batches of decoded records for the engine.
//!
//! Every source has a byte budget (a semaphore of bytes): it takes permits for each batch
//! before handing it over, and the engine gives them back once the batch has been written.
//! When the output is slow, a source runs out of budget and stops reading, so the pipe (and
//! behind it tcpdump, and the kernel) pushes back instead of our memory growing.

use crate::error::SourceFailure;
use crate::output::SourceLabel;
use crate::stop::{level_after, StopLevel};
use bytes::BytesMut;
use podcap_format::Decoder as _;
use podcap_format::{CaptureDecoder, DecodeError, Record};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{watch, Semaphore};

/// How much a file source reads at a time.
pub const READ_CHUNK: usize = 128 * 1024;

/// Default byte budget of one source: what it may have decoded but not yet written.
pub const DEFAULT_BUDGET: usize = 1024 * 1024;

/// Why a capture stream failed, at the stream layer (files, stdin, commands and pods share
/// it; commands and pods wrap it with what they know).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input could not be opened.
    #[error("cannot open: {0}")]
    Open(io::Error),
    /// Reading failed.
    #[error("read failed after byte offset {offset}: {source}")]
    Read { offset: u64, source: io::Error },
    /// The bytes are not (or no longer) a capture.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended before it held anything.
    #[error("byte offset 0: the input is empty: no capture data at all")]
    NoData,
}

/// What a source is doing, for its progress row and the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceState {
    #[default]
    Starting,
    /// A pod: adding the capture container.
    Injecting,
    /// A pod: the capture container is being pulled and started.
    StartingContainer,
    /// A pod: the kubelet reports the capture container waiting, for this reason.
    Waiting(String),
    Capturing,
    /// A pod: its capture ended by itself; it is started again after a pause.
    Resuming,
    /// Asked to stop; delivering what it still has.
    Stopping,
    Failed,
    Ended(EndReason),
}

/// Why a source ended without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Its input ended.
    Input,
    /// We stopped it (Ctrl-C, --duration, -c, the reader went away).
    Stopped,
    StoppedBeforeCapture,
    /// The pod was deleted (or replaced, or is terminating); `before_capture`: before its
    /// capture began.
    PodDeleted {
        before_capture: bool,
    },
    /// The pod's labels no longer match the selection.
    Unselected {
        before_capture: bool,
    },
    TcpdumpFinished,
}

impl EndReason {
    /// Why it ended, when that is worth a word in the summary.
    pub fn worth_saying(self) -> Option<&'static str> {
        match self {
            EndReason::Input | EndReason::Stopped => None,
            EndReason::StoppedBeforeCapture => Some("stopped before the capture began"),
            EndReason::PodDeleted {
                before_capture: false,
            } => Some("pod deleted"),
            EndReason::PodDeleted {
                before_capture: true,
            } => Some("pod deleted before the capture began"),
            EndReason::Unselected {
                before_capture: false,
            } => Some("no longer matches the selection"),
            EndReason::Unselected {
                before_capture: true,
            } => Some("no longer matched the selection before the capture began"),
            EndReason::TcpdumpFinished => Some("tcpdump finished"),
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceState::Starting => "starting",
            SourceState::Injecting => "injecting",
            SourceState::StartingContainer => "pulling image, starting container",
            SourceState::Waiting(why) => return write!(f, "waiting: {why}"),
            SourceState::Capturing => "capturing",
            SourceState::Resuming => "resuming",
            SourceState::Stopping => "stopping",
            SourceState::Failed => "failed",
            SourceState::Ended(r) => match r {
                EndReason::Input => "ended",
                EndReason::Stopped => "ended: stopped",
                other => return write!(f, "ended: {}", other.worth_saying().unwrap_or("")),
            },
        })
    }
}

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
    Failed(SourceFailure),
    /// What the source is doing, for its progress row.
    State(SourceState),
    /// Something the user should know that is not a failure (said once, on stderr).
    Note(String),
    /// The capture ended by itself and was started again: nothing was captured from `from_ns`
    /// to `to_ns` (wall clock) because of `why`. The new capture's interfaces continue the
    /// source's interfaces (same link type: the same output interface).
    Resumed {
        from_ns: u64,
        to_ns: u64,
        why: String,
    },
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

    pub fn state(&self, state: SourceState) {
        self.send(SourceEvent::State(state));
    }

    /// See [`SourceEvent::Resumed`]; sent before the new capture's first record.
    pub fn resumed(&self, from_ns: u64, to_ns: u64, why: impl Into<String>) {
        self.send(SourceEvent::Resumed {
            from_ns,
            to_ns,
            why: why.into(),
        });
    }

    pub fn note(&self, message: impl Into<String>) {
        self.send(SourceEvent::Note(message.into()));
    }

    pub fn failed(&self, error: impl std::error::Error + Send + Sync + 'static) {
        self.send(SourceEvent::Failed(Arc::new(error)));
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
    pub fn batch(&mut self) -> (Vec<Record>, Option<DecodeError>) {
        let mut batch = Vec::new();
        let err = decode_all(&mut self.decoder, &mut self.buf, &mut batch).err();
        (batch, err)
    }

    /// At end of input: why it is not a whole capture, if it is not.
    pub fn finish(&mut self) -> Result<(), SourceError> {
        if self.decoder.offset() == 0 && self.buf.is_empty() {
            return Err(SourceError::NoData);
        }
        Ok(self.decoder.decode_eof(&self.buf)?)
    }
}

/// Reads and decodes `fd` to its end on the calling thread (files, stdin), handing batches to
/// `tx`. Stops early when the engine is gone. Always ends the source.
pub fn pump(fd: impl AsFd, tx: SourceTx) {
    let mut dec = StreamDecoder::default();
    loop {
        match read_into(&fd, &mut dec.buf, READ_CHUNK) {
            Ok(0) => {
                if let Err(e) = dec.finish() {
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
                    tx.failed(SourceError::Decode(e));
                    break;
                }
            }
            Err(e) => {
                tx.failed(SourceError::Read {
                    offset: dec.decoder.offset(),
                    source: e,
                });
                break;
            }
        }
    }
    tx.end();
}

/// The async pump that command and pod sources share: reads a capture stream, decodes it and
/// hands the batches to the engine within the source's budget, every wait for budget raced
/// against a stop request (a slow output must not hide a Ctrl-C).
#[derive(Debug)]
pub struct Pump {
    dec: StreamDecoder,
    read_size: usize,
    /// Packets handed to the engine so far.
    pub packets: u64,
}

/// What the caller does after [`Pump::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read on.
    Continue,
    /// Stop reading: the engine is gone, or the stop handler gave up waiting.
    Abandon,
}

impl Pump {
    pub fn new(read_size: usize) -> Self {
        Pump {
            dec: StreamDecoder::default(),
            read_size,
            packets: 0,
        }
    }

    /// Reads what the stream has into the pump's buffer; 0 at its end. Cancel-safe, so it can
    /// be one branch of a `select!`.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        reserve_for_read(&mut self.dec.buf, self.read_size);
        stream.read_buf(&mut self.dec.buf).await
    }

    /// Decodes what was read and hands it to `tx`, waiting for budget. Every stop level seen
    /// meanwhile goes to `on_stop`, which returns true to give up waiting (stop now). A decoding
    /// error comes after the records before it were handed over.
    pub async fn deliver(
        &mut self,
        tx: &SourceTx,
        stop: &mut watch::Receiver<StopLevel>,
        mut on_stop: impl FnMut(StopLevel) -> bool,
    ) -> Result<Flow, SourceError> {
        let (batch, err) = self.dec.batch();
        if !batch.is_empty() {
            self.packets += batch
                .iter()
                .filter(|r| matches!(r, Record::Packet(_)))
                .count() as u64;
            let send = tx.records(batch);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    delivered = &mut send => {
                        if !delivered {
                            return Ok(Flow::Abandon);
                        }
                        break;
                    }
                    changed = stop.changed() => {
                        if on_stop(level_after(changed, stop)) {
                            return Ok(Flow::Abandon);
                        }
                    }
                }
            }
        }
        match err {
            Some(e) => Err(SourceError::Decode(e)),
            None => Ok(Flow::Continue),
        }
    }

    /// At the end of the stream: why it is not a whole capture, if it is not.
    pub fn finish(&mut self) -> Result<(), SourceError> {
        self.dec.finish()
    }
}
