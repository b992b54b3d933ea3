//! Live capture from local sources: commands whose stdout is pcap or pcapng (`--cmd
//! NAME=COMMAND`, e.g. `ip netns exec web tcpdump -U -i any -w -` or `ssh host tcpdump -U -w -`)
//! and standard input, merged by the watermark rule while they run.
//!
//! Each command runs under `sh -c` in its own process group (so a terminal's Ctrl-C reaches us,
//! not it, and we stop it in order), with SIGKILL as its parent-death signal (so the command's
//! own process does not outlive us even if we are killed). Its stderr is drained, kept for error messages and parsed
//! for tcpdump's drop counts.

use crate::engine::{EngineConfig, Report, GRACE};
use crate::output::SourceLabel;
use crate::session::Session;
use crate::source::{pump, Flow, Pump, SourceError, SourceTx, DEFAULT_BUDGET};
use crate::stop::{level_after, StopLevel};
use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
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
    listening: watch::Receiver<bool>,
}

/// tcpdump's "listening on IFACE, link-type …" line: the interface opened and the filter
/// compiled, so the capture runs.
pub fn says_listening(line: &str) -> bool {
    line.contains("listening on ")
}

impl StderrDrain {
    /// Becomes true once the command said it is listening ([`says_listening`]).
    pub fn listening(&self) -> watch::Receiver<bool> {
        self.listening.clone()
    }

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
    let (heard, listening) = watch::channel(false);
    let Some(err) = err else {
        return StderrDrain {
            log,
            task: None,
            listening,
        };
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
            if says_listening(&line) {
                heard.send_replace(true);
            }
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
        listening,
    }
}

fn signal_group(pgid: Option<u32>, sig: i32) {
    if let Some(pid) = pgid {
        // SAFETY: plain kill(2) on the process group we created.
        unsafe { libc::kill(-(pid as i32), sig) };
    }
}

/// Why a command source failed, with what the command said on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` produced no capture data{}", said(.stderr))]
    NoData { command: String, stderr: String },
    #[error("reading its output failed: {source}{}", said(.stderr))]
    Read { source: io::Error, stderr: String },
    #[error("{source}{}", said(.stderr))]
    Stream { source: SourceError, stderr: String },
    #[error("`{command}` {status}{}", said(.stderr))]
    Exited {
        command: String,
        status: String,
        stderr: String,
    },
}

fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr said: {stderr}")
    }
}

/// How a command's stream ended badly, before its stderr is known.
enum Failure {
    NoData,
    Read(io::Error),
    Stream(SourceError),
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
            tx.failed(CommandError::Spawn {
                command: spec.command.clone(),
                source: e,
            });
            tx.end();
            return;
        }
    };
    let pgid = child.id();
    let stderr = drain_stderr(child.stderr.take(), spec.name.clone(), |_| true);
    let Some(mut stdout) = child.stdout.take() else {
        tx.failed(CommandError::Read {
            source: io::Error::other("no stdout"),
            stderr: String::new(),
        });
        tx.end();
        return;
    };

    let mut pump = Pump::new(CMD_READ);
    let mut st = Stopping {
        pgid,
        ..Stopping::default()
    };
    let mut failure: Option<Failure> = None;
    let mut eof_failure: Option<Failure> = None;
    let kill_timer = tokio::time::sleep(FAR);
    tokio::pin!(kill_timer);
    let level = *stop.borrow();
    st.on_level(level, kill_timer.as_mut());
    loop {
        tokio::select! {
            r = pump.read(&mut stdout) => match r {
                Ok(0) => {
                    eof_failure = match pump.finish() {
                        Ok(()) => None,
                        Err(SourceError::NoData) => Some(Failure::NoData),
                        Err(e) => Some(Failure::Stream(e)),
                    };
                    break;
                }
                Ok(_) => {
                    // waiting for budget (a slow output) must not hide a stop request
                    let delivered = pump
                        .deliver(&tx, &mut stop, |level| {
                            st.on_level(level, kill_timer.as_mut());
                            st.forced
                        })
                        .await;
                    match delivered {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Abandon) => {
                            st.forced = true;
                            break;
                        }
                        Err(e) => {
                            failure = Some(Failure::Stream(e));
                            break;
                        }
                    }
                }
                Err(e) => {
                    failure = Some(Failure::Read(e));
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
            tracing::info!(source = %spec.name, "its stream was cut after the stop");
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
    let stderr = log.said();
    let exited_badly = status.is_some_and(|s| !s.success()) && !stopping;
    match failure {
        Some(Failure::NoData) => tx.failed(CommandError::NoData {
            command: spec.command,
            stderr,
        }),
        Some(Failure::Read(source)) => tx.failed(CommandError::Read { source, stderr }),
        Some(Failure::Stream(source)) => tx.failed(CommandError::Stream { source, stderr }),
        None if exited_badly => tx.failed(CommandError::Exited {
            command: spec.command,
            status: status.map_or("?".to_string(), |s| s.to_string()),
            stderr,
        }),
        None => {}
    }
    tx.end();
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
    // live sources: the watermark rule, never the exact one
    cfg.window.get_or_insert(crate::merge::DEFAULT_WINDOW);
    Session::new()?.capture(cfg, move |events, stop| async move {
        let mut tasks = Vec::new();
        for spec in opts.commands {
            let src = events.register(
                SourceLabel {
                    name: spec.name.clone(),
                    origin: format!("command `{}`", spec.command),
                    node: None,
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
                    node: None,
                },
                opts.budget,
            );
            std::thread::spawn(move || pump(io::stdin(), src));
        }
        drop(events);
        for t in tasks {
            let _ = t.await;
        }
        None
    })
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
    }
}
