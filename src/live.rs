//! Live capture from local sources: commands whose stdout is pcap or pcapng (`--cmd
//! NAME=COMMAND`, e.g. `ip netns exec web tcpdump -U -i any -w -` or `ssh host tcpdump -U -w -`)
//! and standard input, merged by the watermark rule while they run.
//!
//! Each command runs under `sh -c` in its own process group (so a terminal's Ctrl-C reaches us,
//! not it, and we stop it in order), with SIGKILL as its parent-death signal (so the command's
//! own process does not outlive us even if we are killed). Its stderr is drained, kept for error messages and parsed
//! for tcpdump's drop counts.

use crate::engine::{self, EngineConfig, Report, GRACE};
use crate::output::SourceLabel;
use crate::source::{pump, Events, SourceTx, StreamDecoder, DEFAULT_BUDGET};
use crate::stop::{Stop, StopLevel};
use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;

/// How much a command source reads at a time.
const CMD_READ: usize = 64 * 1024;
/// Lines of a command's stderr kept for error messages.
const STDERR_KEEP: usize = 12;

/// `--cmd NAME=COMMAND`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: String,
    pub command: String,
}

impl std::str::FromStr for CommandSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, command)) if !name.is_empty() && !command.trim().is_empty() => {
                Ok(CommandSpec {
                    name: name.to_string(),
                    command: command.to_string(),
                })
            }
            _ => Err(format!(
                "expected NAME=COMMAND, e.g. web='ip netns exec web tcpdump -U -i any -w -'; got {s:?}"
            )),
        }
    }
}

/// tcpdump's end-of-capture counts on stderr: "N packets dropped by kernel" (and "by interface").
pub fn parse_drops(line: &str) -> Option<u64> {
    let line = line.trim();
    if [
        "packets dropped by kernel",
        "packet dropped by kernel",
        "packets dropped by interface",
        "packet dropped by interface",
    ]
    .iter()
    .any(|end| line.ends_with(end))
    {
        line.split_whitespace().next()?.parse().ok()
    } else {
        None
    }
}

/// What a capture command said on stderr: its last lines and tcpdump's drop counts.
#[derive(Clone, Debug, Default)]
pub struct StderrLog {
    pub tail: VecDeque<String>,
    pub drops: Option<u64>,
    /// tcpdump's "N packets captured" at its end.
    pub captured: Option<u64>,
}

impl StderrLog {
    /// The kept lines, joined; empty when there are none.
    pub fn said(&self) -> String {
        self.tail
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// A stderr being drained in the background.
pub struct StderrDrain {
    log: Arc<Mutex<StderrLog>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StderrDrain {
    /// Waits (at most `wait`) for the stream's end, then gives what it said.
    pub async fn finish(self, wait: Duration) -> StderrLog {
        if let Some(task) = self.task {
            let _ = tokio::time::timeout(wait, task).await;
        }
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Drains a stderr stream (if there is one) to its end (an undrained stderr stalls or kills the
/// capture): bytes, not UTF-8 lines, so one odd byte cannot stop the draining. Keeps the last
/// lines that `keep` accepts and sums tcpdump's drop counts.
pub fn drain_stderr<R>(err: Option<R>, name: String, keep: fn(&str) -> bool) -> StderrDrain
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let log = Arc::new(Mutex::new(StderrLog::default()));
    let Some(err) = err else {
        return StderrDrain { log, task: None };
    };
    let state = log.clone();
    let task = tokio::spawn(async move {
        let mut reader = BufReader::new(err);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            tracing::debug!(source = %name, "stderr: {line}");
            if let Ok(mut s) = state.lock() {
                if let Some(n) = parse_drops(&line) {
                    s.drops = Some(s.drops.unwrap_or(0) + n);
                }
                if let Some(n) = line
                    .trim()
                    .strip_suffix(" packets captured")
                    .or_else(|| line.trim().strip_suffix(" packet captured"))
                    .and_then(|n| n.parse().ok())
                {
                    s.captured = Some(n);
                }
                if keep(&line) {
                    s.tail.push_back(line);
                    if s.tail.len() > STDERR_KEEP {
                        s.tail.pop_front();
                    }
                }
            }
        }
    });
    StderrDrain {
        log,
        task: Some(task),
    }
}

fn signal_group(pgid: Option<u32>, sig: i32) {
    if let Some(pid) = pgid {
        // SAFETY: plain kill(2) on the process group we created.
        unsafe { libc::kill(-(pid as i32), sig) };
    }
}

/// Runs one command source to its end.
pub async fn command_source(spec: CommandSpec, tx: SourceTx, mut stop: watch::Receiver<StopLevel>) {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tx.failed(format!("cannot start `{}`: {e}", spec.command));
            tx.end();
            return;
        }
    };
    let pgid = child.id();
    let stderr = drain_stderr(child.stderr.take(), spec.name.clone(), |_| true);
    let Some(mut stdout) = child.stdout.take() else {
        tx.failed("no stdout");
        tx.end();
        return;
    };

    let mut dec = StreamDecoder::default();
    let mut st = Stopping {
        pgid,
        ..Stopping::default()
    };
    let mut failure: Option<String> = None;
    let mut eof_failure: Option<String> = None;
    let kill_timer = tokio::time::sleep(FAR);
    tokio::pin!(kill_timer);
    let level = *stop.borrow();
    st.on_level(level, kill_timer.as_mut());
    'read: loop {
        crate::source::reserve_for_read(&mut dec.buf, CMD_READ);
        tokio::select! {
            r = stdout.read_buf(&mut dec.buf) => match r {
                Ok(0) => {
                    eof_failure = if dec.decoder.offset() == 0 && dec.buf.is_empty() {
                        Some(format!("`{}` produced no capture data", spec.command))
                    } else {
                        dec.finish()
                    };
                    break;
                }
                Ok(_) => {
                    let (batch, err) = dec.batch();
                    if !batch.is_empty() {
                        // waiting for budget (a slow output) must not hide a stop request
                        let send = tx.records(batch);
                        tokio::pin!(send);
                        loop {
                            tokio::select! {
                                ok = &mut send => {
                                    if !ok {
                                        st.forced = true;
                                    }
                                    break;
                                }
                                changed = stop.changed() => {
                                    st.on_level(level_after(changed, &stop), kill_timer.as_mut());
                                    if st.forced {
                                        break;
                                    }
                                }
                                _ = &mut kill_timer => st.kill(kill_timer.as_mut()),
                            }
                        }
                        if st.forced {
                            break 'read;
                        }
                    }
                    if let Some(e) = err {
                        failure = Some(e);
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(format!("reading its output failed: {e}"));
                    break;
                }
            },
            changed = stop.changed() => {
                st.on_level(level_after(changed, &stop), kill_timer.as_mut());
                if st.forced {
                    break;
                }
            }
            // killed after the grace period: read what it had written, to the end
            _ = &mut kill_timer => st.kill(kill_timer.as_mut()),
        }
    }
    let stopping = st.signalled || st.forced;
    if let Some(f) = eof_failure {
        if stopping {
            // we stopped it: a stream cut mid-block (ssh, kubectl) is expected, not a failure
            tracing::info!(source = %spec.name, "after the stop: {f}");
        } else {
            failure = Some(f);
        }
    }
    // The stream is over (or we stop reading): make sure the process goes too. One that was
    // already asked to stop is left to finish (a second SIGINT can cut tcpdump's final counts).
    if st.forced {
        signal_group(pgid, libc::SIGKILL);
    } else if failure.is_some() {
        signal_group(pgid, libc::SIGTERM);
    } else if !st.signalled {
        signal_group(pgid, libc::SIGINT);
    }
    drop(stdout);
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            signal_group(pgid, libc::SIGKILL);
            child.wait().await.ok()
        }
    };
    let log = stderr.finish(Duration::from_secs(1)).await;
    signal_group(pgid, libc::SIGKILL); // anything left in its group
    if let Some(n) = log.drops {
        tx.dropped(n);
    }
    let said = if log.tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr said: {}", log.said())
    };
    let exited_badly = status.is_some_and(|s| !s.success()) && !stopping;
    if let Some(f) = failure {
        tx.failed(format!("{f}{said}"));
    } else if exited_badly {
        let status = status.map_or("?".to_string(), |s| s.to_string());
        tx.failed(format!("`{}` {status}{said}", spec.command));
    }
    tx.end();
}

/// The stop level after a change notification; a vanished sender means stop now.
fn level_after(
    changed: Result<(), watch::error::RecvError>,
    stop: &watch::Receiver<StopLevel>,
) -> StopLevel {
    if changed.is_ok() {
        *stop.borrow()
    } else {
        StopLevel::Now
    }
}

/// A timer that does not fire.
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where a command source is in stopping.
#[derive(Default)]
struct Stopping {
    pgid: Option<u32>,
    /// It got SIGINT from us (a graceful stop): its exit and a cut stream are expected.
    signalled: bool,
    /// Stop at once: SIGKILL, no waiting.
    forced: bool,
}

impl Stopping {
    fn on_level(&mut self, level: StopLevel, kill_timer: std::pin::Pin<&mut tokio::time::Sleep>) {
        match level {
            StopLevel::Now => self.forced = true,
            StopLevel::Graceful if !self.signalled => {
                // like Ctrl-C on tcpdump: it flushes, prints its counts and exits
                self.signalled = true;
                signal_group(self.pgid, libc::SIGINT);
                kill_timer.reset(tokio::time::Instant::now() + GRACE);
            }
            _ => {}
        }
    }

    /// The grace period is over: kill it, then keep reading what it wrote until EOF.
    fn kill(&mut self, kill_timer: std::pin::Pin<&mut tokio::time::Sleep>) {
        signal_group(self.pgid, libc::SIGKILL);
        self.signalled = true;
        kill_timer.reset(tokio::time::Instant::now() + FAR);
    }
}

/// Options of a live run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub commands: Vec<CommandSpec>,
    /// Read a capture from standard input too, under this name.
    pub stdin: Option<String>,
    /// Byte budget per source.
    pub budget: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            commands: Vec::new(),
            stdin: None,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// Captures from the local sources until they end, a stop condition is met, or SIGINT/SIGTERM
/// (a second one forces the stop).
pub fn run_live(opts: LiveOptions, mut cfg: EngineConfig) -> io::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(Stop::new());
    if cfg.window.is_none() {
        cfg.window = Some(Duration::from_millis(300));
    }
    rt.block_on(async move {
        let signals = tokio::spawn(handle_signals(stop.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let events = Events::new(tx);
        let mut tasks = Vec::new();
        for spec in opts.commands {
            let src = events.register(
                SourceLabel {
                    name: spec.name.clone(),
                    origin: format!("command `{}`", spec.command),
                },
                opts.budget,
            );
            tasks.push(tokio::spawn(command_source(spec, src, stop.subscribe())));
        }
        if let Some(name) = opts.stdin {
            let src = events.register(
                SourceLabel {
                    name,
                    origin: "<stdin>".into(),
                },
                opts.budget,
            );
            std::thread::spawn(move || pump(io::stdin(), src));
        }
        drop(events);
        let engine_stop = stop.clone();
        let report = tokio::task::spawn_blocking(move || engine::run(cfg, rx, engine_stop))
            .await
            .map_err(io::Error::other)?;
        stop.request(StopLevel::Now);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        signals.abort();
        report
    })
}

/// SIGINT/SIGTERM: the first stops gracefully, the second at once (and if the output still
/// cannot be finished within 3 s — a reader that stopped reading — exits anyway), a third
/// exits immediately.
pub async fn handle_signals(stop: Arc<Stop>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut count = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        count += 1;
        match count {
            1 => {
                eprintln!("podcap-merge: stopping: finishing what the sources still send (again to stop at once)");
                stop.request(StopLevel::Graceful);
            }
            2 => {
                stop.request(StopLevel::Now);
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    eprintln!(
                        "podcap-merge: the output is not being read; exiting without finishing it"
                    );
                    std::process::exit(1);
                });
            }
            _ => std::process::exit(130),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_specs() {
        assert_eq!(parse_drops("17 packets dropped by kernel"), Some(17));
        assert_eq!(parse_drops("3 packets dropped by interface"), Some(3));
        assert_eq!(parse_drops("1 packet dropped by kernel"), Some(1));
        assert_eq!(parse_drops("5 packets captured"), None);
        let s: CommandSpec = "web=tcpdump -w - -i any".parse().unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.command, "tcpdump -w - -i any");
        assert!("=x".parse::<CommandSpec>().is_err());
        assert!("web".parse::<CommandSpec>().is_err());
    }
}
