//! The engine: receives decoded records from every source, merges them by timestamp (exact or
//! watermark rule), encodes pcapng and writes it to the sink, with backpressure through the
//! sources' byte budgets. It runs on its own thread (writing blocks); sources may be threads
//! (files, stdin) or tokio tasks (commands, pods). Offline `merge` and live capture both run
//! here; they differ only in the rule and the sources.

use crate::merge::{Merger, Next};
use crate::output::{now_ns, Output};
use crate::progress::{summary, Progress, SourceStatus};
use crate::sink::{stdout_reader_gone, FileOut, Sink, Target};
use crate::source::{EndReason, Msg, SourceEvent, SourceState};
use crate::stop::{Stop, StopLevel};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The most the sources may deliver beyond their budgets while `--correct-skew` holds the
/// output for a confident estimate (docs/design.md §12).
pub const HOLD_MEMORY: usize = 64 << 20;

/// How long sources get to deliver what they hold after a graceful stop before they are killed.
pub const GRACE: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `None`: the exact offline rule; `Some(w)`: the live watermark rule with window `w`.
    pub window: Option<Duration>,
    /// For the exact rule: how many sources to wait for before merging.
    pub expected_sources: usize,
    pub target: Target,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Stop this long after the start.
    pub duration: Option<Duration>,
    /// How often buffered output is flushed (and the pipe, the clock and stop requests checked).
    pub flush_interval: Duration,
    /// Not quiet: draw progress rows (only when stderr is a terminal) and say informational
    /// notes (quiet runs, and the Wireshark extcap, say only errors and the summary).
    pub progress: bool,
    /// Print per-source errors as they happen.
    pub report_errors: bool,
    /// Packet identity across sources (`None`: `--no-link`); see [`crate::link`].
    pub link: Option<crate::link::LinkConfig>,
    /// Clocks between nodes (`--correct-skew`); only with `link`. See [`crate::clocks`].
    pub clocks: crate::clocks::ClockConfig,
}

impl EngineConfig {
    pub fn new(target: Target) -> Self {
        Self {
            window: None,
            expected_sources: 0,
            target,
            count: None,
            duration: None,
            flush_interval: Duration::from_millis(25),
            progress: false,
            report_errors: true,
            link: Some(crate::link::LinkConfig::default()),
            clocks: crate::clocks::ClockConfig::default(),
        }
    }
}

/// How the run ended.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sources: Vec<SourceStatus>,
    /// The reader of our stdout went away (not an error).
    pub consumer_closed: bool,
    /// Packets handed to the output before the reader went away (when it did).
    pub delivered: Option<u64>,
    /// Why the run stopped, when it was not the end of every source.
    pub stopped_by: Option<String>,
    /// Files written (a ring may have deleted the oldest since).
    pub files: Vec<PathBuf>,
    /// The output failed (disk full…): what was closed before stays valid.
    pub output_error: Option<String>,
    /// The run itself failed outside any source (e.g. the API server stayed unreachable).
    pub run_error: Option<String>,
    /// What the run did that the user should know (capture containers added…).
    pub notes: Vec<String>,
    /// What packet identity found (copies linked or dropped, latency).
    pub link: Option<podcap_identity::report::LinkSummary>,
    /// What was learned of the clocks of the sources' nodes (when copies were linked).
    pub clocks: Option<crate::clocks::ClockReport>,
}

impl Report {
    pub fn packets(&self) -> u64 {
        self.sources.iter().map(|s| s.packets).sum()
    }
    /// Failed sources (and the input errors their decoders repaired: dropped name records…),
    /// plus the output and the run when they failed.
    pub fn errors(&self) -> usize {
        self.sources
            .iter()
            .map(|s| usize::from(s.error.is_some()) + s.notes.errors() as usize)
            .sum::<usize>()
            + usize::from(self.output_error.is_some())
            + usize::from(self.run_error.is_some())
    }
    pub fn summary(&self) -> String {
        let mut extra = Vec::new();
        if let Some(s) = &self.stopped_by {
            extra.push(format!("stopped: {s}"));
        }
        if self.consumer_closed {
            let delivered = self.delivered.unwrap_or(0);
            extra.push(format!(
                "the reader of the output went away after {delivered} of the {} packets were \
                 handed to it (the rest were not delivered); capture stopped",
                self.packets()
            ));
        }
        if let Some(e) = &self.output_error {
            extra.push(format!("OUTPUT FAILED: {e}"));
        }
        if let Some(e) = &self.run_error {
            extra.push(format!("RUN FAILED: {e}"));
        }
        if self.files.len() > 1 {
            extra.push(format!("{} files written", self.files.len()));
        }
        if let Some(l) = &self.link {
            let names: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
            extra.extend(l.lines(&names));
        }
        if let Some(c) = &self.clocks {
            extra.extend(c.lines());
        }
        extra.extend(self.notes.iter().cloned());
        summary(&self.sources, self.errors(), &extra)
    }
}

struct Src {
    budget: Arc<Semaphore>,
    /// (records left, permits) per batch handed over and not yet written.
    charges: VecDeque<(usize, u32)>,
}

struct Engine {
    cfg: EngineConfig,
    stop: Arc<Stop>,
    merger: Merger,
    output: Output<FileOut>,
    sink: Sink,
    ids: HashMap<usize, usize>,
    srcs: Vec<Src>,
    status: Vec<SourceStatus>,
    progress: Progress,
    written: u64,
    started: Instant,
    report: Report,
    /// Each note said by a source, and by how many.
    notes: HashMap<String, usize>,
    /// The interruption has been said.
    interrupted: bool,
    link: Option<crate::link::Stage>,
    clocks: Option<crate::clocks::Clocks>,
    /// Budget lent while the output was held ([`Engine::lend_budget`]).
    lent: usize,
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

impl Engine {
    fn handle(&mut self, msg: Msg, now: u64) {
        if let SourceEvent::Started { label, budget } = msg.event {
            let idx = self.merger.add_source_at(now);
            self.output.add_source(label.clone());
            if let Some(c) = &mut self.clocks {
                c.started(
                    idx,
                    label.node.as_deref().unwrap_or(&label.name),
                    label.node.is_some(),
                );
                c.announce(&mut self.output, idx);
            }
            self.ids.insert(msg.src, idx);
            self.srcs.push(Src {
                budget,
                charges: VecDeque::new(),
            });
            self.status.push(SourceStatus {
                name: label.name,
                origin: label.origin,
                state: SourceState::Starting,
                ..SourceStatus::default()
            });
            return;
        }
        let Some(&idx) = self.ids.get(&msg.src) else {
            if let (crate::source::RUN, SourceEvent::Note(n)) = (msg.src, &msg.event) {
                if self.cfg.progress {
                    self.progress.println(&format!("podcap-merge: {n}"));
                }
            }
            return;
        };
        match msg.event {
            SourceEvent::Started { .. } => {}
            SourceEvent::Records { records, charge } => {
                self.srcs[idx].charges.push_back((records.len(), charge));
                if self.status[idx].state != SourceState::Stopping {
                    self.status[idx].state = SourceState::Capturing;
                }
                for mut rec in records {
                    if let Some(c) = &mut self.clocks {
                        c.arrived(idx, &mut rec);
                    }
                    self.merger.push_at(idx, rec, now);
                }
            }
            SourceEvent::Dropped(n) => {
                self.output.set_dropped(idx, n);
                self.status[idx].dropped = Some(n);
            }
            SourceEvent::Failed(e) => {
                if self.cfg.report_errors {
                    self.progress.println(&format!(
                        "podcap-merge: {}: {e}; this source stops here, the others go on",
                        self.status[idx].origin
                    ));
                }
                self.status[idx].error = Some(e);
            }
            SourceEvent::State(s) => {
                // a state change is a sign of life (e.g. "capturing": the stream just began)
                self.merger.heard_from(idx, now);
                self.status[idx].state = s;
            }
            SourceEvent::Resumed {
                from_ns,
                to_ns,
                why,
            } => {
                self.output.resume(idx, from_ns, to_ns, &why);
                self.status[idx].gaps += 1;
                self.status[idx].gap_ns += to_ns.saturating_sub(from_ns);
            }
            SourceEvent::Format(notes) => {
                // counted for the summary; the first of each kind said now
                for n in notes {
                    if self.status[idx].notes.add(&n) && self.cfg.report_errors {
                        self.progress
                            .println(&format!("podcap-merge: {}: {n}", self.status[idx].origin));
                    }
                }
            }
            SourceEvent::Note(n) => {
                // a note every pod repeats (a Pod Security fallback, exec forbidden) is said
                // once, and how many it concerned goes in the summary
                let seen = self.notes.entry(n.clone()).or_insert(0);
                *seen += 1;
                // (informational: not in quiet runs)
                if self.cfg.report_errors && self.cfg.progress && *seen == 1 {
                    self.progress
                        .println(&format!("podcap-merge: {}: {n}", self.status[idx].origin));
                }
            }
            SourceEvent::End => {
                self.merger.close(idx);
                if self.status[idx].error.is_some() {
                    self.status[idx].state = SourceState::Failed;
                } else if !matches!(self.status[idx].state, SourceState::Ended(_)) {
                    self.status[idx].state = SourceState::Ended(EndReason::Input);
                }
            }
        }
    }

    /// While `--correct-skew` holds the output, gives the sources back the budget of what they
    /// have delivered, up to [`HOLD_MEMORY`] in all: a busy pod fills its budget in a fraction
    /// of a second, and a source that cannot deliver gives the estimator nothing to learn from.
    /// (Lent permits are not given back again when the records are written.)
    fn lend_budget(&mut self) {
        for src in &mut self.srcs {
            for charge in src.charges.iter_mut() {
                let permits = charge.1 as usize;
                if permits == 0 {
                    continue;
                }
                if self.lent + permits > HOLD_MEMORY {
                    return;
                }
                self.lent += permits;
                src.budget.add_permits(permits);
                charge.1 = 0;
            }
        }
    }

    /// Gives back the budget of a written record of `idx`.
    fn written_one(&mut self, idx: usize) {
        let src = &mut self.srcs[idx];
        if let Some(front) = src.charges.front_mut() {
            front.0 -= 1;
            if front.0 == 0 {
                src.budget.add_permits(front.1 as usize);
                src.charges.pop_front();
            }
        }
    }

    fn write(&mut self, idx: usize, mut rec: podcap_format::Record) -> io::Result<()> {
        let is_packet = matches!(rec, podcap_format::Record::Packet(_));
        if is_packet && self.cfg.count.is_some_and(|c| self.written >= c) {
            // -c N: exactly N packets; what sources still send after that is not written
            self.written_one(idx);
            return Ok(());
        }
        // packet identity: a transform between the merge and the encoder
        let packet_id = match self.link.as_mut().map(|l| l.pass(idx, &mut rec)) {
            Some(crate::link::Pass::Drop) => {
                self.written_one(idx);
                return Ok(());
            }
            Some(crate::link::Pass::Write(id)) => id,
            None => None,
        };
        if is_packet {
            if let Some(ring) = &mut self.sink.ring {
                if ring.due(self.output.position()) {
                    self.rotate()?;
                }
            }
        }
        self.output.write_with_id(idx, rec, packet_id)?;
        self.written_one(idx);
        if is_packet {
            self.written += 1;
            if let Some(ring) = &mut self.sink.ring {
                ring.count_packet();
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let Some(ring) = &mut self.sink.ring else {
            return Ok(());
        };
        let (next, path) = ring.open_next()?;
        let old = match self.output.rotate(next) {
            Ok(old) => old,
            Err(e) => {
                // the file being finished failed; the new one holds nothing worth keeping
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        ring.commit(path);
        old.close()?;
        ring.prune()
    }

    fn refresh_status(&mut self) {
        for (idx, s) in self.status.iter_mut().enumerate() {
            (s.packets, s.bytes) = self.output.source_totals(idx);
            s.late = self.merger.late(idx);
            s.lag = self.merger.lag(idx);
            s.out_of_order = self.merger.out_of_order(idx);
        }
    }

    /// A signal stopped the run: say so once, above the progress rows, and in the summary.
    fn note_interruption(&mut self) {
        if self.interrupted {
            return;
        }
        if let Some(signal) = self.stop.interrupted_by() {
            self.interrupted = true;
            if self.report.stopped_by.is_none() {
                self.report.stopped_by = Some(format!("interrupted by {signal}"));
            }
            // quiet runs (-q, and Wireshark's extcap, which shows any stderr line as an
            // error) do not announce a graceful stop
            if self.cfg.progress {
                self.progress.println(
                    "podcap-merge: stopping: finishing what the sources still send (again to stop at once)",
                );
            }
        }
    }

    /// Periodic work: flush, watch the pipe, stop conditions, time-based rotation, progress.
    fn housekeeping(&mut self) -> io::Result<()> {
        self.output.flush()?;

        if self.sink.is_stdout && stdout_reader_gone() {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        if let Some(d) = self.cfg.duration {
            if self.started.elapsed() >= d && self.stop.level() == StopLevel::Running {
                self.report.stopped_by = Some(format!("duration of {} s reached", d.as_secs_f64()));
                self.stop.request(StopLevel::Graceful);
            }
        }
        if self.sink.ring.as_ref().is_some_and(|r| r.due_by_time()) {
            self.rotate()?;
        }
        if self.cfg.progress {
            self.refresh_status();
            self.progress.update(&self.status);
        }
        Ok(())
    }

    fn run(&mut self, rx: &Receiver<Msg>) -> io::Result<()> {
        let tick = self.cfg.flush_interval;
        let mut next_tick = Instant::now() + tick;
        let mut graceful_since: Option<Instant> = None;
        let mut disconnected = false;
        // exact rule: every source must have announced itself
        while self.cfg.window.is_none() && self.srcs.len() < self.cfg.expected_sources {
            match rx.recv() {
                Ok(msg) => self.handle(msg, 0),
                Err(_) => break,
            }
        }
        loop {
            let mut level = self.stop.level();
            if level != StopLevel::Running {
                self.note_interruption();
            }
            if level == StopLevel::Graceful && self.cfg.window.is_none() {
                level = StopLevel::Now; // files: nothing to wait for
            }
            if level == StopLevel::Now
                || graceful_since.is_some_and(|t| t.elapsed() >= GRACE + Duration::from_secs(1))
            {
                // drain what we hold, in order, and finish
                while let Ok(msg) = rx.try_recv() {
                    self.handle(msg, now_ns());
                }
                for idx in 0..self.srcs.len() {
                    self.merger.close(idx);
                }
                if let Some(c) = &mut self.clocks {
                    c.release(&mut self.merger, &mut self.output);
                }
                while let Next::Record(idx, rec) = self.merger.step_at(u64::MAX) {
                    self.write(idx, rec)?;
                }
                return Ok(());
            }
            if level == StopLevel::Graceful && graceful_since.is_none() {
                graceful_since = Some(Instant::now());
            }
            // absorb what has arrived (bounded, so writing goes on under a firehose)
            let now = now_ns();
            for _ in 0..64 {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg, now),
                    Err(_) => break,
                }
            }
            // write what the rule releases (once the clocks' estimates allow it)
            let mut wait: Option<Duration> = None;
            let mut n = 0;
            let held = self
                .clocks
                .as_mut()
                .is_some_and(|c| c.hold(&mut self.merger, &mut self.output));
            if held {
                self.lend_budget();
                wait = Some(Duration::from_millis(50));
            } else {
                loop {
                    match self.merger.step_at(now) {
                        Next::Record(idx, rec) => {
                            self.write(idx, rec)?;
                            if self.cfg.count.is_some_and(|c| self.written >= c)
                                && self.report.stopped_by.is_none()
                            {
                                // stop the sources gracefully: their final counts still arrive
                                self.report.stopped_by =
                                    Some(format!("{} packets written", self.written));
                                self.stop.request(StopLevel::Graceful);
                            }
                            n += 1;
                            if n >= 4096 {
                                wait = Some(Duration::ZERO);
                                break;
                            }
                        }
                        Next::WaitUntil(Some(t)) => {
                            wait = Some(Duration::from_nanos(t.saturating_sub(now)));
                            break;
                        }
                        Next::WaitUntil(None) | Next::NeedInput(_) => break,
                        // live sources may still be registered (a watcher finds new pods) until
                        // every holder of the channel is gone
                        Next::Done if self.cfg.window.is_some() && !disconnected => break,
                        Next::Done => return Ok(()),
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.housekeeping()?;
                next_tick = Instant::now() + tick;
            }
            let until_tick = next_tick.saturating_duration_since(Instant::now());
            let timeout = wait.map_or(until_tick, |w| w.min(until_tick));
            if timeout.is_zero() {
                continue;
            }
            match rx.recv_timeout(timeout) {
                Ok(msg) => self.handle(msg, now_ns()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // no source can ever come: close whatever is still open
                    disconnected = true;
                    for idx in 0..self.srcs.len() {
                        self.merger.close(idx);
                    }
                    if let Some(c) = &mut self.clocks {
                        c.release(&mut self.merger, &mut self.output);
                    }
                    if self.srcs.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Runs the engine until every source has ended or a stop condition is met. Returns the
/// report; an output that cannot be opened is an error, a failing output is in the report.
pub fn run(cfg: EngineConfig, rx: Receiver<Msg>, stop: Arc<Stop>) -> io::Result<Report> {
    let (out, sink) = Sink::open(&cfg.target)?;
    let output = Output::with_comment(out, crate::link::Stage::comment(cfg.link.as_ref()))?;
    let mut engine = Engine {
        progress: Progress::new(cfg.progress),
        cfg,
        stop: stop.clone(),
        merger: Merger::new(),
        output,
        sink,
        ids: HashMap::new(),
        srcs: Vec::new(),
        status: Vec::new(),
        written: 0,
        started: Instant::now(),
        report: Report::default(),
        notes: HashMap::new(),
        interrupted: false,
        link: None,
        clocks: None,
        lent: 0,
    };
    engine.link = engine.cfg.link.as_ref().map(crate::link::Stage::new);
    if let Some(link) = &mut engine.link {
        let clocks = crate::clocks::Clocks::new(&engine.cfg.clocks, engine.cfg.window.is_some());
        link.add_observer(clocks.observer());
        engine.clocks = Some(clocks);
    }
    if let Some(w) = engine.cfg.window {
        engine.merger = Merger::with_window(w);
    }
    let cfg_target = engine.cfg.target.clone();
    let result = engine.run(&rx);
    engine.note_interruption();
    let mut repeated: Vec<(&String, &usize)> =
        engine.notes.iter().filter(|(_, n)| **n > 1).collect();
    repeated.sort();
    let repeated: Vec<String> = repeated
        .into_iter()
        .map(|(note, n)| format!("said of {n} sources (printed once): {note}"))
        .collect();
    engine.report.notes.extend(repeated);
    // whatever happened, sources must stop now (also those waiting for budget)
    stop.request(StopLevel::Now);
    for src in &engine.srcs {
        src.budget.close();
    }
    drop(rx);
    engine.refresh_status();
    engine.progress.clear();
    let Engine {
        output,
        sink,
        status,
        mut report,
        link,
        clocks,
        ..
    } = engine;
    report.sources = status;
    report.clocks = clocks.map(crate::clocks::Clocks::finish);
    let delivered = output.delivered();
    let clock_rows = report
        .clocks
        .as_ref()
        .map(|c| c.captured.rows())
        .unwrap_or_default();
    let link_error = link.map(|l| {
        let names: Vec<String> = report.sources.iter().map(|s| s.name.clone()).collect();
        let (summary, err) = l.finish(&names, clock_rows);
        report.link = Some(summary);
        err
    });
    let finished = match result {
        Ok(()) => output.finish().and_then(FileOut::close),
        Err(e) => {
            // keep what can be kept (e.g. a ring that could not open its next file still
            // finishes the current one); the first error is the one reported
            if !is_broken_pipe(&e) {
                let _ = output.finish().and_then(FileOut::close);
            }
            Err(e)
        }
    };
    if let Some(ring) = sink.ring {
        report.files = ring.written;
    }
    match finished {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => {
            report.consumer_closed = true;
            report.delivered = Some(delivered);
        }
        Err(e) => {
            let what = match (&cfg_target, report.files.last()) {
                (Target::Ring { .. }, Some(f)) => format!(
                    "writing {} failed: {e}; the {} file(s) closed before it are complete",
                    f.display(),
                    report.files.len() - 1
                ),
                (Target::File { path, .. }, _) => format!("writing {} failed: {e}", path.display()),
                _ => format!("writing the output failed: {e}"),
            };
            report.output_error = Some(what);
        }
    }
    if let Some(Some(e)) = link_error {
        report.output_error.get_or_insert(e);
    }
    Ok(report)
}
