//! k-way chronological merge of record streams.
//!
//! The [`Merger`] holds a queue of decoded records per source and decides which record goes
//! out next. Records that carry no time (new sections, interfaces, name records, statistics)
//! go out as soon as they reach the head of their queue; packets go out in timestamp order.
//!
//! Offline rule (exact): a packet is released only when every open source has a record queued,
//! so the smallest head is the smallest packet still to come from sorted inputs. Equal
//! timestamps keep input order (the lower source index first), as mergecap does. A source whose
//! own packets go backwards in time is still merged without loss; such packets are counted.

use crate::format::Record;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

#[derive(Debug, Default)]
struct SourceQueue {
    queue: VecDeque<Record>,
    open: bool,
    /// Last timestamp pushed; packets without one (pcapng SPB) inherit it.
    last_pushed_ts: u64,
    /// Last timestamp released from this source.
    last_released_ts: Option<u64>,
    out_of_order: u64,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write this record, which came from source `.0`.
    Record(usize, Record),
    /// Nothing can be released until source `.0` delivers more records or is closed.
    NeedInput(usize),
    /// Every source is closed and drained.
    Done,
}

#[derive(Debug, Default)]
pub struct Merger {
    sources: Vec<SourceQueue>,
    /// Sources whose head is a packet, keyed by (timestamp, source index).
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Sources whose head is a timeless record.
    timeless: VecDeque<usize>,
    /// Sources that may be open with an empty queue (checked lazily, oldest first, so
    /// sources start in input order).
    starving: VecDeque<usize>,
}

impl Merger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source; it must deliver a record or be closed before any packet is released.
    pub fn add_source(&mut self) -> usize {
        let id = self.sources.len();
        self.sources.push(SourceQueue {
            open: true,
            ..SourceQueue::default()
        });
        self.starving.push_back(id);
        id
    }

    /// Queues a record from `src`. A packet without a timestamp gets the source's last one.
    pub fn push(&mut self, src: usize, mut rec: Record) {
        let s = &mut self.sources[src];
        if let Record::Packet(p) = &mut rec {
            match p.ts {
                Some(ts) => s.last_pushed_ts = ts,
                None => p.ts = Some(s.last_pushed_ts),
            }
        }
        let was_empty = s.queue.is_empty();
        s.queue.push_back(rec);
        if was_empty {
            self.index_head(src);
        }
    }

    /// No more records will come from `src`.
    pub fn close(&mut self, src: usize) {
        self.sources[src].open = false;
    }

    /// Packets of `src` that were older than one released before them from the same source.
    pub fn out_of_order(&self, src: usize) -> u64 {
        self.sources[src].out_of_order
    }

    fn index_head(&mut self, src: usize) {
        match self.sources[src].queue.front() {
            Some(Record::Packet(p)) => self.heap.push(Reverse((p.ts.unwrap_or(0), src))),
            Some(_) => self.timeless.push_back(src),
            None => self.starving.push_back(src),
        }
    }

    fn take_head(&mut self, src: usize) -> Option<Record> {
        let rec = self.sources[src].queue.pop_front()?;
        self.index_head(src);
        Some(rec)
    }

    /// The next step under the exact (offline) rule.
    pub fn step(&mut self) -> Next {
        if let Some(src) = self.timeless.pop_front() {
            if let Some(rec) = self.take_head(src) {
                return Next::Record(src, rec);
            }
        }
        while let Some(&src) = self.starving.front() {
            let s = &self.sources[src];
            if s.open && s.queue.is_empty() {
                return Next::NeedInput(src);
            }
            self.starving.pop_front();
        }
        match self.heap.pop() {
            Some(Reverse((ts, src))) => {
                let s = &mut self.sources[src];
                if s.last_released_ts.is_some_and(|last| ts < last) {
                    s.out_of_order += 1;
                } else {
                    s.last_released_ts = Some(ts);
                }
                match self.take_head(src) {
                    Some(rec) => Next::Record(src, rec),
                    None => Next::Done, // unreachable: the heap only names non-empty queues
                }
            }
            None => Next::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Packet;
    use bytes::Bytes;

    fn pkt(ts: u64) -> Record {
        Record::Packet(Packet {
            iface: 0,
            ts: Some(ts),
            orig_len: 1,
            data: Bytes::from_static(b"x"),
            flags: None,
        })
    }

    fn drain(m: &mut Merger) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        loop {
            match m.step() {
                Next::Record(s, Record::Packet(p)) => out.push((s, p.ts.unwrap())),
                Next::Record(..) => {}
                Next::NeedInput(s) => panic!("source {s} starves"),
                Next::Done => return out,
            }
        }
    }

    #[test]
    fn waits_for_every_open_source() {
        let mut m = Merger::new();
        let a = m.add_source();
        let b = m.add_source();
        m.push(a, pkt(5));
        assert_eq!(m.step(), Next::NeedInput(b));
        m.push(b, pkt(3));
        assert!(matches!(m.step(), Next::Record(1, _)));
        assert_eq!(m.step(), Next::NeedInput(b));
        m.close(b);
        assert!(matches!(m.step(), Next::Record(0, _)));
        assert_eq!(m.step(), Next::NeedInput(a));
        m.close(a);
        assert_eq!(m.step(), Next::Done);
    }

    #[test]
    fn ties_keep_input_order_and_out_of_order_is_counted() {
        let mut m = Merger::new();
        let a = m.add_source();
        let b = m.add_source();
        for t in [1, 4, 2, 9] {
            m.push(a, pkt(t));
        }
        for t in [1, 4] {
            m.push(b, pkt(t));
        }
        m.close(a);
        m.close(b);
        assert_eq!(
            drain(&mut m),
            vec![(0, 1), (1, 1), (0, 4), (0, 2), (1, 4), (0, 9)]
        );
        assert_eq!(m.out_of_order(a), 1);
        assert_eq!(m.out_of_order(b), 0);
    }
}
