//! Shared driver for the decoder fuzz targets.
//!
//! Input layout: the first byte is a *chunking control byte*, the rest is the capture data.
//! The data is appended to a `BytesMut` chunk by chunk, and after each chunk the decoder is
//! called until it returns `Ok(None)` (needs more bytes) or `Err` (after which it is never used
//! again), exactly like the product's sources drive it (through the `podcap_format::Decoder` trait).
//!
//! | control byte  | chunk sizes                                                  |
//! |---------------|--------------------------------------------------------------|
//! | `0x00..=0x3f` | fixed, `ctl + 1` bytes (1..=64)                              |
//! | `0x40..=0x7f` | varying 1..=64 bytes, pseudo-random sequence seeded by `ctl` |
//! | `0x80..=0xbf` | fixed, `(ctl - 0x7f) * 64` bytes (64..=4096)                 |
//! | `0xc0..=0xff` | the whole input at once                                      |
//!
//! Properties checked (a violated one aborts the run, so libFuzzer reports it as a crash):
//! * no panic / out-of-bounds / overflow anywhere in the decoder (ASan + overflow checks);
//! * no packet's data is longer than `MAX_BLOCK_LEN`, or longer than the bytes consumed by the
//!   call that returned it;
//! * the buffer never holds more than was fed, and `buf.len() + decoder.offset()` always equals
//!   the number of bytes fed (every consumed byte is accounted for in `offset`);
//! * the buffer's capacity stays proportional to what was fed, and no single allocation made
//!   inside `decode`/`decode_eof` exceeds a small multiple of the input length: the decoder
//!   never allocates from what a header *claims* (libFuzzer's `-malloc_limit_mb` backs this up);
//! * every record comes after a section header, and packets/statistics name an interface that
//!   the section described;
//! * every name record passed on is one Wireshark's reader accepts (`name_record_problem`);
//! * the decoder makes progress (at most one record in a row without consuming bytes);
//! * the records and the error are the same whether the input arrives in chunks or at once;
//! * `decode_eof` (every decoder, through the `Decoder` trait) is `Ok` exactly when all fed bytes were consumed and
//!   the input was not empty.

#![allow(dead_code)]

use bytes::BytesMut;
use podcap_format::pcapng::name_record_problem;
use podcap_format::{DecodeError, Decoder, Record, MAX_BLOCK_LEN};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made while the decoder runs.

pub struct TrackingAlloc;

static ARMED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn note(size: usize) {
    if ARMED.load(Ordering::Relaxed) {
        PEAK.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn tracked<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let r = f();
    ARMED.store(false, Ordering::Relaxed);
    (r, PEAK.load(Ordering::Relaxed))
}

/// The largest single allocation a decoder may make for an input of `n` bytes: error messages,
/// interface names (lossy UTF-8 may triple them) and the `Vec<NameRecord>` of a Name Resolution
/// Block (40 bytes per record of at least 4 input bytes, doubled by `Vec` growth) all stay well
/// within it, while anything sized from a header claim of up to 16 MiB does not.
fn alloc_limit(n: usize) -> usize {
    32 * n + 4096
}

/// The largest capacity the buffer may reach after `fed` bytes were appended to it (`BytesMut`
/// growth at most doubles what was needed, which never exceeds what was fed).
fn capacity_limit(fed: usize) -> usize {
    4 * fed + 1024
}

// ---------------------------------------------------------------------------------------------

/// The chunk sizes selected by the control byte.
pub struct Chunks {
    ctl: u8,
    rng: u32,
}

impl Chunks {
    pub fn new(ctl: u8) -> Self {
        Chunks {
            ctl,
            rng: (u32::from(ctl) + 1).wrapping_mul(0x9E37_79B9) | 1,
        }
    }

    pub fn is_whole(&self) -> bool {
        self.ctl >= 0xc0
    }

    fn next_size(&mut self, remaining: usize) -> usize {
        let size = match self.ctl {
            0x00..=0x3f => usize::from(self.ctl) + 1,
            0x40..=0x7f => {
                // xorshift32
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 17;
                self.rng ^= self.rng << 5;
                (self.rng % 64) as usize + 1
            }
            0x80..=0xbf => (usize::from(self.ctl) - 0x7f) * 64,
            _ => remaining,
        };
        size.clamp(1, remaining.max(1))
    }
}

/// What one decoding run produced.
#[derive(Debug)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub error: Option<DecodeError>,
    pub eof: Option<Result<(), DecodeError>>,
    pub left: usize,
}

/// Per-section bookkeeping for the record checks.
#[derive(Default)]
struct Sections {
    seen: bool,
    ifaces: u32,
}

impl Sections {
    fn check(&mut self, rec: &Record, consumed: u64) {
        if !matches!(rec, Record::Section { .. }) {
            assert!(self.seen, "record before any section header: {rec:?}");
        }
        match rec {
            Record::Section { .. } => {
                self.seen = true;
                self.ifaces = 0;
            }
            Record::Interface(_) => self.ifaces += 1,
            Record::Packet(p) => {
                assert!(
                    p.data.len() <= MAX_BLOCK_LEN,
                    "packet data of {} bytes exceeds MAX_BLOCK_LEN",
                    p.data.len()
                );
                assert!(
                    p.data.len() as u64 <= consumed,
                    "packet data of {} bytes from a decode call that consumed only {consumed}",
                    p.data.len()
                );
                assert!(
                    p.iface < self.ifaces,
                    "packet names interface {} but the section has {}",
                    p.iface,
                    self.ifaces
                );
            }
            Record::Names(names) => {
                assert!(!names.is_empty(), "empty Names record");
                let total: usize = names.iter().map(|n| n.value.len()).sum();
                assert!(total as u64 <= consumed, "name records larger than their block");
                for n in names {
                    assert_eq!(
                        name_record_problem(n.kind, &n.value),
                        None,
                        "a name record Wireshark would refuse was passed on: {n:?}"
                    );
                }
            }
            Record::Custom(c) => assert!(
                c.data.len() as u64 + 4 <= consumed,
                "custom block data larger than its block"
            ),
            Record::Stats(s) => assert!(
                s.iface < self.ifaces,
                "statistics for interface {} but the section has {}",
                s.iface,
                self.ifaces
            ),
        }
    }
}

/// Feeds `data` to `dec` in the chunks `chunks` selects, checking every call.
pub fn run<D: Decoder>(dec: &mut D, data: &[u8], mut chunks: Chunks) -> Outcome {
    let max_alloc = alloc_limit(data.len());
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut records = Vec::new();
    let mut error = None;
    let mut sections = Sections::default();
    let mut stalls = 0;

    'feed: while fed < data.len() {
        let n = chunks.next_size(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            let before = dec.offset();
            let (res, peak) = tracked(|| dec.decode(&mut buf));
            let after = dec.offset();
            assert!(
                peak <= max_alloc,
                "decode made a {peak}-byte allocation for a {}-byte input",
                data.len()
            );
            assert!(buf.len() <= fed, "buffer holds {} bytes, only {fed} were fed", buf.len());
            assert!(
                buf.capacity() <= capacity_limit(fed),
                "buffer capacity {} after only {fed} bytes were fed",
                buf.capacity()
            );
            assert_eq!(
                buf.len() as u64 + after,
                fed as u64,
                "buffered + offset != fed (offset {before} -> {after}, result {res:?})"
            );
            assert!(after >= before, "offset went backwards: {before} -> {after}");
            match res {
                Ok(Some(rec)) => {
                    if after == before {
                        stalls += 1;
                        assert!(stalls <= 1, "two records in a row without consuming input");
                    } else {
                        stalls = 0;
                    }
                    sections.check(&rec, after - before);
                    records.push(rec);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        e.offset <= after,
                        "error offset {} beyond the decoder offset {after}",
                        e.offset
                    );
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }

    let eof = if error.is_none() {
        let (eof, peak) = tracked(|| Some(dec.decode_eof(&buf)));
        assert!(peak <= max_alloc, "decode_eof made a {peak}-byte allocation");
        if let Some(res) = &eof {
            // `data` was fed completely here.
            let clean = buf.is_empty() && !data.is_empty();
            assert_eq!(
                res.is_ok(),
                clean,
                "decode_eof returned {res:?} with {} byte(s) left of a {}-byte input",
                buf.len(),
                data.len()
            );
            if let Err(e) = res {
                assert_eq!(e.offset, dec.offset(), "decode_eof error offset");
            }
        }
        eof
    } else {
        None
    };

    Outcome {
        records,
        error,
        eof,
        left: buf.len(),
    }
}

fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("PODCAP_FUZZ_DEBUG").is_some())
}

/// The whole fuzz target: chunked run with all checks, then (unless the control byte already
/// asked for it) a whole-input run whose outcome must be identical.
pub fn fuzz<D: Decoder>(input: &[u8], new: impl Fn() -> D) {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let chunks = Chunks::new(ctl);
    let whole = chunks.is_whole();
    let chunked = run(&mut new(), data, chunks);
    if debug() {
        eprintln!(
            "ctl={ctl:#04x} len={} records={} left={} error={:?} eof={:?}",
            data.len(),
            chunked.records.len(),
            chunked.left,
            chunked.error,
            chunked.eof
        );
    }
    if !whole {
        let reference = run(&mut new(), data, Chunks::new(0xff));
        assert_eq!(chunked.records, reference.records, "chunked vs whole: records differ");
        assert_eq!(
            chunked.error.clone(),
            reference.error,
            "chunked vs whole: errors differ"
        );
        assert_eq!(
            chunked.eof,
            reference.eof,
            "chunked vs whole: decode_eof differs"
        );
        if chunked.error.is_none() {
            // (after an error the chunked run stopped feeding, so only then may they differ)
            assert_eq!(chunked.left, reference.left, "chunked vs whole: leftover differs");
        }
    }
}
