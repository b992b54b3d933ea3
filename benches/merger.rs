//! In-process microbenchmarks (criterion) of the k-way merge, reported per packet: [`K`]
//! sources of [`N`] pre-decoded packets each, timestamps interleaved across sources, merged
//! through the exact (offline) rule and through the live watermark rule on a synthetic clock.
//! Records are handed over in batches of [`BATCH`], as the engine receives them from a source.
//!
//! `cargo bench --bench merger`. (The process-level comparisons are `--bench merge`.)

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use podcap_format::{Packet, Record};
use podcap_merge::merge::{Merger, Next};
use std::time::Duration;

/// Sources.
const K: usize = 8;
/// Packets per source.
const N: usize = 10_000;
/// Records pushed at a time (what one read of a source decodes to, about).
const BATCH: usize = 64;
/// Live rule: the reorder window, and how far the synthetic clock moves per round of input.
const WINDOW: Duration = Duration::from_millis(100);
const TICK_NS: u64 = 1_000_000;

/// Per source, its packets in time order; packet `i` of source `s` has timestamp
/// `(i * K + s) µs` plus jitter below 1 µs, so the sources interleave closely.
fn inputs() -> Vec<Vec<Record>> {
    let payload = Bytes::from(vec![0xabu8; 128]);
    let base = 1_700_000_000 * 1_000_000_000u64;
    (0..K)
        .map(|s| {
            (0..N)
                .map(|i| {
                    let jitter = ((i * 7919 + s * 104_729) % 997) as u64;
                    Record::Packet(Packet {
                        iface: 0,
                        ts: Some(base + ((i * K + s) as u64) * 1_000 + jitter),
                        orig_len: payload.len() as u32,
                        data: payload.clone(),
                        flags: None,
                    })
                })
                .collect()
        })
        .collect()
}

/// Per source, its records cut into batches (consumed front to back).
fn batches(inputs: &[Vec<Record>]) -> Vec<std::vec::IntoIter<Vec<Record>>> {
    inputs
        .iter()
        .map(|recs| {
            recs.chunks(BATCH)
                .map(<[Record]>::to_vec)
                .collect::<Vec<_>>()
                .into_iter()
        })
        .collect()
}

/// The exact rule, driven as the offline engine is: a source that is asked for gets its next
/// batch, or is closed once it has none. Returns the packets written.
fn merge_exact(mut srcs: Vec<std::vec::IntoIter<Vec<Record>>>) -> usize {
    let mut m = Merger::new();
    for _ in 0..srcs.len() {
        m.add_source();
    }
    let mut written = 0;
    loop {
        match m.step() {
            Next::Record(idx, rec) => {
                black_box((idx, rec));
                written += 1;
            }
            Next::NeedInput(src) => match srcs[src].next() {
                Some(batch) => batch.into_iter().for_each(|rec| m.push(src, rec)),
                None => m.close(src),
            },
            Next::WaitUntil(t) => unreachable!("the exact rule waits for no clock ({t:?})"),
            Next::Done => return written,
        }
    }
}

/// The watermark rule: every tick of the synthetic clock, each source delivers its next batch
/// and then whatever the rule releases is written; at the end every source closes and the
/// rest drains (the clock jumping to whatever the rule waits for). Returns the packets written.
fn merge_watermark(mut srcs: Vec<std::vec::IntoIter<Vec<Record>>>) -> usize {
    let mut m = Merger::with_window(WINDOW);
    let mut now = 0;
    for _ in 0..srcs.len() {
        m.add_source_at(now);
    }
    let mut written = 0;
    loop {
        now += TICK_NS;
        let mut more = false;
        for (src, batches) in srcs.iter_mut().enumerate() {
            if let Some(batch) = batches.next() {
                more = true;
                batch.into_iter().for_each(|rec| m.push_at(src, rec, now));
            }
        }
        if !more {
            break;
        }
        while let Next::Record(idx, rec) = m.step_at(now) {
            black_box((idx, rec));
            written += 1;
        }
    }
    for src in 0..srcs.len() {
        m.close(src);
    }
    loop {
        match m.step_at(now) {
            Next::Record(idx, rec) => {
                black_box((idx, rec));
                written += 1;
            }
            Next::WaitUntil(Some(t)) => now = t,
            Next::WaitUntil(None) | Next::NeedInput(_) => unreachable!("every source is closed"),
            Next::Done => return written,
        }
    }
}

fn bench_merger(c: &mut Criterion) {
    let inputs = inputs();
    assert_eq!(merge_exact(batches(&inputs)), K * N);
    assert_eq!(merge_watermark(batches(&inputs)), K * N);

    let mut g = c.benchmark_group(format!("merger/{K}x{N}"));
    g.throughput(Throughput::Elements((K * N) as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("exact", |b| {
        b.iter_batched(|| batches(&inputs), merge_exact, BatchSize::LargeInput)
    });
    g.bench_function("watermark", |b| {
        b.iter_batched(|| batches(&inputs), merge_watermark, BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, bench_merger);
criterion_main!(benches);
