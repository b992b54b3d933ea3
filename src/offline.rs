//! Offline merge of capture files (`podcap-merge merge FILE…`): one reader thread per input
//! decodes ahead into a small bounded queue; the calling thread merges by the exact rule and
//! encodes.

use crate::merge::{Merger, Next};
use crate::output::{Output, SourceLabel};
use crate::source::{pump, SourceEvent};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

/// Batches a reader may decode ahead of the merger (each up to one read of
/// [`crate::source::READ_CHUNK`]): bounds memory per input.
const QUEUE_BATCHES: usize = 2;

/// One input of an offline merge.
#[derive(Clone, Debug)]
pub struct Input {
    /// A path, or `-` for standard input.
    pub path: PathBuf,
    /// Interface name prefix (default: the file stem).
    pub name: String,
}

impl Input {
    pub fn new(path: impl Into<PathBuf>, name: Option<String>) -> Self {
        let path = path.into();
        let name = name.unwrap_or_else(|| default_name(&path));
        Self { path, name }
    }

    fn is_stdin(&self) -> bool {
        self.path == Path::new("-")
    }

    /// How the input is named in messages.
    pub fn display(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else {
            self.path.display().to_string()
        }
    }
}

/// The file stem (`captures/a.pcap` → `a`), or `stdin` for `-`.
pub fn default_name(path: &Path) -> String {
    if path == Path::new("-") {
        return "stdin".into();
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// What happened to one input.
#[derive(Clone, Debug, Default)]
pub struct InputReport {
    pub input: String,
    pub packets: u64,
    pub bytes: u64,
    pub out_of_order: u64,
    pub error: Option<String>,
}

/// What happened in a merge.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub inputs: Vec<InputReport>,
    /// The consumer went away before the end (broken pipe).
    pub consumer_closed: bool,
}

impl Report {
    pub fn packets(&self) -> u64 {
        self.inputs.iter().map(|i| i.packets).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().map(|i| i.bytes).sum()
    }
    pub fn out_of_order(&self) -> u64 {
        self.inputs.iter().map(|i| i.out_of_order).sum()
    }
    pub fn errors(&self) -> usize {
        self.inputs.iter().filter(|i| i.error.is_some()).count()
    }

    /// A short human summary, for stderr.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "podcap-merge: {} input(s), {} packets, {} bytes captured, {} out of order, {} error(s)\n",
            self.inputs.len(),
            self.packets(),
            self.bytes(),
            self.out_of_order(),
            self.errors()
        );
        for i in &self.inputs {
            s.push_str(&format!(
                "  {}: {} packets, {} bytes, {} out of order{}\n",
                i.input,
                i.packets,
                i.bytes,
                i.out_of_order,
                match &i.error {
                    Some(e) => format!(", ERROR: {e}"),
                    None => String::new(),
                }
            ));
        }
        if self.consumer_closed {
            s.push_str("  the reader of the output went away; merging stopped early\n");
        }
        s
    }
}

fn spawn_reader(input: &Input) -> Receiver<SourceEvent> {
    let (tx, rx) = sync_channel(QUEUE_BATCHES);
    let input = input.clone();
    thread::spawn(move || {
        let send = |ev| tx.send(ev).is_ok();
        if input.is_stdin() {
            pump(io::stdin(), send);
        } else {
            match File::open(&input.path) {
                Ok(f) => pump(f, send),
                Err(e) => {
                    let _ = tx.send(SourceEvent::Failed(format!("cannot open: {e}")));
                    let _ = tx.send(SourceEvent::End);
                }
            }
        }
    });
    rx
}

/// Merges `inputs` into one pcapng written to `out`. Bad inputs are reported, never fatal:
/// what they delivered before the fault is kept and the others are merged to their end.
/// Returns an error only when the output cannot be written (a broken pipe is not an error).
pub fn merge_files<W: Write>(inputs: &[Input], out: W) -> io::Result<Report> {
    let mut output = Output::new(out)?;
    let mut merger = Merger::new();
    let mut report = Report::default();
    let mut receivers = Vec::new();
    for input in inputs {
        let src = merger.add_source();
        output.add_source(SourceLabel {
            name: input.name.clone(),
            origin: input.display(),
        });
        report.inputs.push(InputReport {
            input: input.display(),
            ..InputReport::default()
        });
        receivers.push(spawn_reader(input));
        debug_assert_eq!(src + 1, receivers.len());
    }
    let result = (|| -> io::Result<()> {
        loop {
            match merger.step() {
                Next::Record(src, rec) => output.write(src, rec)?,
                Next::NeedInput(src) => match receivers[src].recv() {
                    Ok(SourceEvent::Records(batch)) => {
                        for rec in batch {
                            merger.push(src, rec);
                        }
                    }
                    Ok(SourceEvent::Failed(e)) => {
                        eprintln!(
                            "podcap-merge: {}: {e}; the rest of this input is skipped, the other inputs go on",
                            report.inputs[src].input
                        );
                        report.inputs[src].error = Some(e);
                    }
                    Ok(SourceEvent::End) | Err(_) => merger.close(src),
                },
                Next::Done => return Ok(()),
            }
        }
    })();
    drop(receivers); // readers still running (after a broken pipe) see the hang-up and stop
    for (src, r) in report.inputs.iter_mut().enumerate() {
        (r.packets, r.bytes) = output.source_totals(src);
        r.out_of_order = merger.out_of_order(src);
    }
    let finished = result.and_then(|()| output.finish().map(|_| ()));
    match finished {
        Ok(()) => Ok(report),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            report.consumer_closed = true;
            Ok(report)
        }
        Err(e) => Err(e),
    }
}
