//! The output stage: maps every (source, source interface) to its own output interface, names
//! it, and writes merged records as pcapng. Ends with one ISB per output interface.

use podcap_format::encode::{InterfaceDescription, InterfaceTotals, PcapngWriter};
use podcap_format::{Interface, NameRecord, Record};
use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// How a source's interfaces are named in the output.
#[derive(Clone, Debug)]
pub struct SourceLabel {
    /// Prefix of every interface name of this source (a file stem, a pod name…).
    pub name: String,
    /// Where the source comes from, for `if_description` (a path, a command, a pod…).
    pub origin: String,
    /// The node whose clock stamps its packets (a pod's `spec.nodeName`); `None`: the source
    /// is a clock of its own (a command, a file).
    pub node: Option<String>,
}

#[derive(Debug, Default)]
struct SourceState {
    /// Output interface id of each interface of the current section.
    ifaces: Vec<u32>,
    sections: u32,
    packets: u64,
    bytes: u64,
    /// Drops the source reported outside its stream (tcpdump's stderr). They can arrive
    /// before an interface of the source has been written, so they are applied at ISB time.
    dropped: Option<u64>,
    /// After a resumed capture: the index of the next interface it re-announces (interfaces
    /// of the same link type keep their output interface).
    reannounce: Option<usize>,
    /// The gaps of a resumed capture, for its interfaces' statistics comment.
    gaps: Vec<String>,
    /// What was done to this source's timestamps (`--correct-skew`), for its interfaces'
    /// comments (IDB from then on, and ISB).
    clock: Option<String>,
}

/// Totals of one output interface.
#[derive(Clone, Debug)]
pub struct OutputInterface {
    pub source: usize,
    pub description: InterfaceDescription,
    pub totals: InterfaceTotals,
}

pub struct Output<W: Write> {
    writer: PcapngWriter<W>,
    labels: Vec<SourceLabel>,
    sources: Vec<SourceState>,
    interfaces: Vec<OutputInterface>,
    names_used: HashSet<String>,
    /// Every name record written so far, repeated at the start of each rotated file.
    names: Vec<NameRecord>,
    names_seen: HashSet<(u16, bytes::Bytes)>,
    /// Packets written to the writer, and those of them the writer has handed on (flushed).
    written: u64,
    delivered: u64,
    /// The section comment (`--dedup` says so), repeated in every rotated file.
    comment: Option<String>,
}

/// The application name written in the SHB.
pub fn user_appl() -> String {
    format!("podcap-merge {}", env!("CARGO_PKG_VERSION"))
}

/// `HH:MM:SS.mmm` of a wall-clock time in ns since the epoch (UTC).
fn clock(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ns / 1_000_000 % 1000
    )
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl<W: Write> Output<W> {
    /// Starts the output with its Section Header Block.
    pub fn new(out: W) -> io::Result<Self> {
        Self::with_comment(out, None)
    }

    /// Starts the output with its Section Header Block, carrying `comment` if given.
    pub fn with_comment(out: W, comment: Option<String>) -> io::Result<Self> {
        let mut writer = PcapngWriter::new(out);
        writer.section_header_with_comment(&user_appl(), comment.as_deref())?;
        Ok(Self {
            writer,
            labels: Vec::new(),
            sources: Vec::new(),
            interfaces: Vec::new(),
            names_used: HashSet::new(),
            names: Vec::new(),
            names_seen: HashSet::new(),
            written: 0,
            delivered: 0,
            comment,
        })
    }

    /// Bytes written to the current file so far (including what is buffered).
    pub fn position(&self) -> u64 {
        self.writer.position()
    }

    /// Ends the current file (one ISB per interface) and continues in `next`, which starts
    /// self-contained: SHB, every interface so far, every name record so far. Returns the
    /// finished writer, flushed.
    pub fn rotate(&mut self, next: W) -> io::Result<W> {
        self.write_statistics()?;
        let mut writer = PcapngWriter::new(next);
        writer.section_header_with_comment(&user_appl(), self.comment.as_deref())?;
        for i in &mut self.interfaces {
            // the clock note of now (a correction applied or moved since it was announced)
            if let Some(note) = self.sources.get(i.source).and_then(|s| s.clock.as_ref()) {
                i.description.comment = Some(note.clone());
            }
            writer.interface(&i.description)?;
            i.totals = InterfaceTotals {
                dropped: i.totals.dropped,
                ..InterfaceTotals::default()
            };
        }
        if !self.names.is_empty() {
            writer.names(&self.names)?;
        }
        let old = std::mem::replace(&mut self.writer, writer);
        old.into_inner()
    }

    fn write_statistics(&mut self) -> io::Result<()> {
        let now = now_ns();
        for (id, i) in self.interfaces.iter().enumerate() {
            let mut totals = i.totals;
            if let Some(d) = self.sources.get(i.source).and_then(|s| s.dropped) {
                totals.dropped = Some(d);
            }
            let gaps = self
                .sources
                .get(i.source)
                .map(|s| s.gaps.iter().chain(&s.clock).cloned().collect::<Vec<_>>())
                .unwrap_or_default()
                .join("; ");
            self.writer
                .statistics_with_comment(id as u32, now, &totals, Some(&gaps))?;
        }
        Ok(())
    }

    /// Registers a source; sources are numbered in the order they are added.
    pub fn add_source(&mut self, label: SourceLabel) -> usize {
        self.labels.push(label);
        self.sources.push(SourceState::default());
        self.sources.len() - 1
    }

    /// Packets and captured bytes written for `src`.
    pub fn source_totals(&self, src: usize) -> (u64, u64) {
        let s = &self.sources[src];
        (s.packets, s.bytes)
    }

    fn unique_name(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 2;
        while !self.names_used.insert(name.clone()) {
            name = format!("{base}#{n}");
            n += 1;
        }
        name
    }

    /// Says in the comments of `src`'s interfaces what was done to its timestamps (interfaces
    /// announced from now on carry it in their IDB; every one in its ISB).
    pub fn set_clock_note(&mut self, src: usize, note: String) {
        self.sources[src].clock = Some(note);
    }

    /// The capture of `src` was started again after a gap (wall-clock ns `from`..`to`, because
    /// of `why`): its next interfaces continue the current ones, and the gap goes in their
    /// statistics comment.
    pub fn resume(&mut self, src: usize, from: u64, to: u64, why: &str) {
        let state = &mut self.sources[src];
        state.reannounce = Some(0);
        state.gaps.push(format!(
            "no capture for {:.3} s from {} to {} (UTC): {why}; resumed",
            to.saturating_sub(from) as f64 / 1e9,
            clock(from),
            clock(to)
        ));
    }

    fn new_interface(&mut self, src: usize, iface: Interface) -> io::Result<()> {
        let state = &mut self.sources[src];
        if let Some(k) = state.reannounce.take() {
            let same = state.ifaces.get(k).is_some_and(|&id| {
                let d = &self.interfaces[id as usize].description;
                d.link_type == iface.link_type && d.snap_len == iface.snap_len
            });
            if same {
                state.reannounce = Some(k + 1);
                return Ok(());
            }
            // a different interface: the resumed capture starts its own set
            state.ifaces.clear();
            state.sections += 1;
        }
        let state = &self.sources[src];
        let index = state.ifaces.len();
        let section = state.sections;
        let label = &self.labels[src];
        let base = match &iface.name {
            Some(n) if !n.is_empty() => format!("{}/{}", label.name, n),
            _ if iface.description.is_none() && index == 0 && section <= 1 => label.name.clone(),
            _ => format!("{}/if{}", label.name, index),
        };
        let mut description = format!("{} interface {}", label.origin, index);
        if section > 1 {
            description.push_str(&format!(" of section {section}"));
        }
        if let Some(d) = &iface.description {
            description.push_str(": ");
            description.push_str(d);
        }
        let name = self.unique_name(base);
        let desc = InterfaceDescription {
            link_type: iface.link_type,
            snap_len: iface.snap_len,
            name,
            description: Some(description),
            fcs_len: iface.fcs_len,
            comment: self.sources[src].clock.clone(),
        };
        self.writer.interface(&desc)?;
        let id = self.interfaces.len() as u32;
        self.interfaces.push(OutputInterface {
            source: src,
            description: desc,
            totals: InterfaceTotals::default(),
        });
        self.sources[src].ifaces.push(id);
        Ok(())
    }

    /// Writes one record from source `src`.
    #[inline]
    pub fn write(&mut self, src: usize, rec: Record) -> io::Result<()> {
        self.write_with_id(src, rec, None)
    }

    /// Writes one record from source `src`; a packet gets `epb_packetid` = `packet_id` if set.
    #[inline]
    pub fn write_with_id(
        &mut self,
        src: usize,
        rec: Record,
        packet_id: Option<u64>,
    ) -> io::Result<()> {
        match rec {
            Record::Packet(p) => {
                let state = &mut self.sources[src];
                // Decoders only yield packets of interfaces they announced.
                let Some(&id) = state.ifaces.get(p.iface as usize) else {
                    return Ok(());
                };
                state.packets += 1;
                self.written += 1;
                state.bytes += p.data.len() as u64;
                let ts = p.ts.unwrap_or(0);
                let t = &mut self.interfaces[id as usize].totals;
                t.received += 1;
                t.first_ns = Some(t.first_ns.map_or(ts, |f| f.min(ts)));
                t.last_ns = Some(t.last_ns.map_or(ts, |l| l.max(ts)));
                self.writer
                    .packet_with_id(id, ts, p.orig_len, &p.data, p.flags, packet_id)
            }
            Record::Interface(iface) => self.new_interface(src, iface),
            Record::Section { .. } => {
                let s = &mut self.sources[src];
                if s.reannounce == Some(0) {
                    return Ok(()); // a resumed pcapng capture: its first section continues
                }
                s.ifaces.clear();
                s.sections += 1;
                Ok(())
            }
            Record::Names(names) => {
                // each name once per file (pods announce themselves and the services again)
                let new: Vec<NameRecord> = names
                    .into_iter()
                    .filter(|n| self.names_seen.insert((n.kind, n.value.clone())))
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                self.names.extend(new.iter().cloned());
                self.writer.names(&new)
            }
            Record::Stats(st) => {
                if let Some(&id) = self.sources[src].ifaces.get(st.iface as usize) {
                    if st.dropped.is_some() {
                        self.interfaces[id as usize].totals.dropped = st.dropped;
                    }
                }
                Ok(())
            }
            // a copyable custom block, where it came in the source's stream
            Record::Custom(c) => self.writer.custom(c.pen, &c.data),
        }
    }

    /// Records drops reported outside the capture stream (e.g. tcpdump's stderr); they go in
    /// the ISB of every interface of `src`.
    pub fn set_dropped(&mut self, src: usize, dropped: u64) {
        self.sources[src].dropped = Some(dropped);
    }

    /// Writes one ISB per interface and flushes; returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_statistics()?;
        self.writer.into_inner()
    }

    /// Flushes what is buffered to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.delivered = self.written;
        Ok(())
    }

    /// Packets handed on by the last successful flush (what a reader that went away may have
    /// read at most).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcap_format::Interface;

    fn count(hay: &[u8], needle: &str) -> usize {
        hay.windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count()
    }

    #[test]
    fn a_rotated_file_announces_the_clock_note_of_now() {
        let mut out = Output::new(Vec::new()).expect("output");
        out.add_source(SourceLabel {
            name: "pod-a".into(),
            origin: "shop/pod-a".into(),
            node: Some("node-2".into()),
        });
        out.set_clock_note(0, "clock shifted by -40.00 ms".into());
        out.write(
            0,
            Record::Interface(Interface {
                link_type: 1,
                snap_len: 262_144,
                name: Some("eth0".into()),
                description: None,
                fcs_len: None,
            }),
        )
        .expect("interface");
        out.set_clock_note(0, "clock shifted by -40.20 ms".into());
        let first = out.rotate(Vec::new()).expect("rotate");
        let second = out.finish().expect("finish");
        assert_eq!(
            count(&first, "shifted by -40.00 ms"),
            1,
            "the IDB as announced"
        );
        assert_eq!(
            count(&first, "shifted by -40.20 ms"),
            1,
            "the ISB: the note of now"
        );
        assert_eq!(count(&second, "shifted by -40.00 ms"), 0);
        assert_eq!(count(&second, "shifted by -40.20 ms"), 2, "IDB and ISB");
    }
}
