//! Streaming one pod's capture: `exec` the capture wrapper in the capture container (or, when
//! RBAC forbids exec, `attach` to it and send the line that starts it), read tcpdump's pcap
//! from its first byte into the pod's source, drain stderr into errors and drop counts, and
//! stop gracefully: send "stop", read to the end (tcpdump flushes and prints its counts), then
//! close stdin (the dead-man switch: the remote side also ends when the connection is lost).

use super::errors;
use super::script;
use super::Via;
use crate::engine::GRACE;
use crate::live::drain_stderr;
use crate::source::{Flow, Pump, SourceError, SourceState, SourceTx};
use crate::stop::{level_after, StopLevel};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, AttachedProcess};
use kube::Api;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, SimplexStream, WriteHalf};
use tokio::sync::watch;

/// kube's stdout pipe is 1 KiB by default (57 MB/s measured); 1 MiB gave ~90 MB/s. With
/// many pods each gets a share of [`MEMORY_FOR_PODS`] instead (see [`per_pod_buffer`]).
pub const STDOUT_BUF: usize = 1024 * 1024;
/// What the per-pod buffers (kube's stdout pipe, and the source's budget) may take in all.
pub const MEMORY_FOR_PODS: usize = 8 * 1024 * 1024;

/// One pod's buffer size when `pods` pods are captured: a share of [`MEMORY_FOR_PODS`],
/// between 128 KiB and [`STDOUT_BUF`], so 32 pods stay well under 100 MiB in all.
pub fn per_pod_buffer(pods: usize) -> usize {
    (MEMORY_FOR_PODS / pods.max(1)).clamp(128 * 1024, STDOUT_BUF)
}
/// How long a terminating pod's capture is read on (its termination grace period is 30 s by
/// default; the kubelet ends the capture with the pod).
const POD_GONE_GRACE: Duration = Duration::from_secs(45);
/// How much is read from the stream at a time.
const READ: usize = 128 * 1024;

/// What to run and where.
pub struct Target<'a> {
    pub api: &'a Api<Pod>,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub capture: &'a [String],
    pub max_secs: u64,
    pub via: Via,
    /// Size of kube's stdout pipe for this stream.
    pub stdout_buf: usize,
    /// Set to true once the capture runs: tcpdump said "listening on", or a packet came.
    pub listening: &'a watch::Sender<bool>,
}

/// Whether the pod of a capture is still wanted, as the watcher sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    No,
    /// Deleted (or terminating, or finished).
    Deleted,
    /// Its labels no longer match the selection.
    Unselected,
}

/// How a pod's stream ended (when it did not fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// We stopped it (Ctrl-C, --duration, -c, the reader went away).
    Stopped,
    /// The pod went away.
    PodGone,
    /// tcpdump ended by itself with success.
    Finished,
}

/// What went wrong with a capture stream.
#[derive(Debug, thiserror::Error)]
pub enum CaptureFault {
    #[error("the capture produced no data")]
    NoData,
    /// The stream ended inside a block.
    #[error(transparent)]
    Truncated(SourceError),
    #[error("the capture stream is corrupt: {0}")]
    Corrupt(SourceError),
    #[error("reading the capture failed: {0}")]
    Read(std::io::Error),
    #[error(
        "the stream from the pod was cut (the API server or the node's kubelet went away); \
         the {received} packets before it are kept"
    )]
    Cut { received: u64 },
}

/// Why a pod's capture failed. What tcpdump said on stderr (its last lines) is part of it.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The capture container could not be added, or did not start.
    #[error(transparent)]
    Inject(#[from] super::inject::InjectError),
    /// exec or attach was refused, or failed.
    #[error("{0}")]
    Connect(String),
    /// The stream failed.
    #[error("{fault}{}{}", exit_note(.exit), said(.stderr))]
    Capture {
        fault: CaptureFault,
        exit: Option<Exit>,
        stderr: String,
    },
    /// tcpdump ended by itself with an error.
    #[error("tcpdump exited with code {code}{}", said(.stderr))]
    Tcpdump { code: i32, stderr: String },
    /// The remote command failed without an exit code.
    #[error("the capture failed: {message}{}", said(.stderr))]
    Failed { message: String, stderr: String },
    /// attach: the container ended by itself, saying something.
    #[error("the capture ended{}", said(.stderr))]
    Ended { stderr: String },
    /// The capture ended by itself and could not be started again.
    #[error("{ended}; starting it again failed: {error}")]
    ResumeFailed {
        ended: String,
        error: super::inject::InjectError,
    },
    /// The capture kept ending by itself; it was resumed this many times.
    #[error("the capture ended by itself again after {resumes} resume(s) (the last time: {last}); not resumed any more")]
    GaveUp { resumes: u32, last: String },
}

impl PodError {
    /// tcpdump itself ended with an error and said why (before it listened, that is a filter
    /// or an interface it refuses: the same command fails in every pod).
    pub fn refused_by_tcpdump(&self) -> Option<&str> {
        let said = match self {
            PodError::Tcpdump { code, stderr } if *code != 0 => stderr,
            PodError::Ended { stderr } => stderr,
            PodError::Capture {
                fault: CaptureFault::NoData,
                exit: Some(Exit::Code(code)),
                stderr,
            } if *code != 0 => stderr,
            _ => return None,
        };
        (!said.is_empty()).then_some(said.as_str())
    }
}

fn exit_note(exit: &Option<Exit>) -> String {
    match exit {
        Some(Exit::Code(c)) => format!(" (exit code {c})"),
        Some(Exit::Failed(m)) => format!(" ({m})"),
        None => String::new(),
    }
}

fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn params(container: &str, stdout_buf: usize) -> AttachParams {
    AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(stdout_buf)
}

type Stdin = WriteHalf<SimplexStream>;

/// Connects: exec, or attach when asked or when exec is forbidden.
async fn connect(t: &Target<'_>, tx: &SourceTx) -> Result<(AttachedProcess, Stdin, Via), PodError> {
    if t.via != Via::Attach {
        let argv = script::argv(
            t.max_secs,
            script::IDLE_SECS,
            t.container,
            "exec",
            t.capture,
        );
        match t
            .api
            .exec(t.pod, argv, &params(t.container, t.stdout_buf))
            .await
        {
            Ok(mut p) => {
                let stdin = p
                    .stdin()
                    .ok_or_else(|| PodError::Connect("exec gave no stdin".into()))?;
                return Ok((p, stdin, Via::Exec));
            }
            Err(e) if t.via == Via::Auto && errors::rbac_denial(&e).is_some() => {
                tx.note(format!(
                    "{}; streaming through pods/attach instead (the capture then also goes to \
                     the node's container log)",
                    errors::explain(&e, "exec", t.namespace)
                ));
            }
            Err(e) => {
                return Err(PodError::Connect(errors::explain(
                    &e,
                    "starting the capture (pods/exec)",
                    t.namespace,
                )))
            }
        }
    }
    let mut p = t
        .api
        .attach(t.pod, &params(t.container, t.stdout_buf))
        .await
        .map_err(|e| {
            PodError::Connect(errors::explain(
                &e,
                "attaching to the capture container (pods/attach)",
                t.namespace,
            ))
        })?;
    // the container waits for this line, so the stream starts with the pcap header
    let mut stdin = p
        .stdin()
        .ok_or_else(|| PodError::Connect("attach gave no stdin".into()))?;
    stdin
        .write_all(b"go\n")
        .await
        .map_err(|e| PodError::Connect(format!("starting the capture through attach: {e}")))?;
    Ok((p, stdin, Via::Attach))
}

/// tcpdump's informational lines, not worth an error message.
fn chatter(line: &str) -> bool {
    line.contains("listening on")
        || line.contains("data link type")
        || line.contains("captured")
        || line.contains("received by filter")
        || line.contains("dropped by")
        || line.trim().is_empty()
}

/// How the remote command ended, from the exec status frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// A failure without an exit code ("container not running", an OCI runtime error…).
    Failed(String),
}

fn exit_of(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Exit {
    if s.status.as_deref() == Some("Success") {
        return Exit::Code(0);
    }
    let code = s
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref()?.parse().ok());
    match code {
        Some(c) => Exit::Code(c),
        None => Exit::Failed(format!(
            "{}: {}",
            s.reason.as_deref().unwrap_or("Failure"),
            s.message.as_deref().unwrap_or("")
        )),
    }
}

/// Streams the capture into `tx` until it ends, we stop it, or the pod goes away
/// (`gone` changes). Returns how it ended; the error names what went wrong.
pub async fn stream(
    t: Target<'_>,
    tx: &SourceTx,
    mut stop: watch::Receiver<StopLevel>,
    mut gone: watch::Receiver<Gone>,
) -> Result<(Ended, Via), PodError> {
    // a stop (or the pod going) while the connection is still being set up ends it there
    let connected = tokio::select! {
        c = connect(&t, tx) => c,
        _ = stop.wait_for(|l| *l != StopLevel::Running) => return Ok((Ended::Stopped, t.via)),
        Ok(_) = gone.wait_for(|g| *g != Gone::No) => return Ok((Ended::PodGone, t.via)),
    };
    let (mut proc, mut stdin, via) = connected?;
    let mut stdout = proc
        .stdout()
        .ok_or_else(|| PodError::Connect("no stdout from the capture".into()))?;
    // kube's loop resolves this when it ends (with the exit status, or without one when the
    // connection broke, in which case it also leaves our stdout without an end of file)
    let mut status = proc.take_status().map(Box::pin);
    let mut exit: Option<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>> = None;
    let mut link_lost = false;
    let mut gone_open = true;
    let stderr = drain_stderr(proc.stderr(), t.pod.to_string(), |l| !chatter(l));
    let mut heard = stderr.listening();
    let mut heard_open = true;
    tx.state(SourceState::Capturing);
    let mut pump = Pump::new(READ);
    let mut ended: Option<Ended> = None;
    let mut failure: Option<CaptureFault> = None;
    let mut asked_to_stop = false;
    let deadline = tokio::time::sleep(crate::live::FAR);
    tokio::pin!(deadline);
    let mut level = *stop.borrow();
    loop {
        if level == StopLevel::Now {
            ended = Some(Ended::Stopped);
            break;
        }
        if level == StopLevel::Graceful && !asked_to_stop {
            asked_to_stop = true;
            tx.state(SourceState::Stopping);
            // tcpdump flushes and prints its counts; we read on to the end
            let _ = tokio::time::timeout(Duration::from_secs(1), stdin.write_all(b"stop\n")).await;
            deadline.as_mut().reset(tokio::time::Instant::now() + GRACE);
        }
        tokio::select! {
            r = pump.read(&mut stdout) => match r {
                Ok(0) => {
                    if asked_to_stop {
                        ended.get_or_insert(Ended::Stopped);
                    }
                    if !asked_to_stop && *gone.borrow() == Gone::No {
                        failure = match pump.finish() {
                            Ok(()) => None,
                            Err(SourceError::NoData) => Some(CaptureFault::NoData),
                            Err(e) => Some(CaptureFault::Truncated(e)),
                        };
                    }
                    break;
                }
                Ok(_) => {
                    // waiting for budget (a slow output) must not hide a stop request
                    let delivered = pump
                        .deliver(tx, &mut stop, |l| {
                            level = l;
                            l == StopLevel::Now
                        })
                        .await;
                    match delivered {
                        Ok(Flow::Continue) => {
                            if pump.packets > 0 {
                                t.listening.send_if_modified(|l| !std::mem::replace(l, true));
                            }
                        }
                        Ok(Flow::Abandon) => {
                            ended = Some(Ended::Stopped);
                            break;
                        }
                        Err(e) => {
                            failure = Some(CaptureFault::Corrupt(e));
                            break;
                        }
                    }
                }
                Err(e) => {
                    failure = Some(CaptureFault::Read(e));
                    break;
                }
            },
            changed = stop.changed() => {
                level = level_after(changed, &stop);
            }
            changed = heard.changed(), if heard_open => {
                if changed.is_err() {
                    heard_open = false; // stderr ended
                } else if *heard.borrow() {
                    t.listening.send_if_modified(|l| !std::mem::replace(l, true));
                    heard_open = false;
                }
            }
            st = async {
                match status.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if exit.is_none() && status.is_some() => {
                // what kube received is in the pipe: read it, then stop waiting for an EOF
                // that a broken connection never sends
                if st.is_none() && !asked_to_stop {
                    link_lost = true;
                }
                exit = Some(st);
                if !asked_to_stop {
                    deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            changed = gone.changed(), if gone_open => {
                if changed.is_err() {
                    gone_open = false; // the watcher is done; the pod is not gone for that
                } else if *gone.borrow() == Gone::Unselected {
                    // the pod left the selection and runs on: nobody ends its capture for us,
                    // so stop it now, gracefully (tcpdump flushes), and read on to the end
                    ended.get_or_insert(Ended::PodGone);
                    if !asked_to_stop {
                        asked_to_stop = true;
                        let _ = tokio::time::timeout(Duration::from_secs(1), stdin.write_all(b"stop\n")).await;
                        deadline.as_mut().reset(tokio::time::Instant::now() + GRACE);
                    }
                } else if *gone.borrow() != Gone::No {
                    // the pod is terminating: its last traffic (the draining of a rollout) is
                    // worth having, so read on until the kubelet ends the capture with the
                    // pod, within the usual grace period
                    ended.get_or_insert(Ended::PodGone);
                    if !asked_to_stop {
                        asked_to_stop = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + POD_GONE_GRACE);
                    }
                }
            }
            _ = &mut deadline => {
                if link_lost && ended.is_none() {
                    failure = Some(CaptureFault::Cut { received: pump.packets });
                } else if exit.is_none() || asked_to_stop {
                    ended.get_or_insert(Ended::Stopped);
                }
                break;
            }
        }
    }
    let received = pump.packets;
    // a stream that ended by itself may be its pod going away (the watch can tell us a moment
    // after the kubelet killed the capture): that is a clean end, not a failure
    if ended.is_none() && !asked_to_stop {
        let went =
            tokio::time::timeout(Duration::from_secs(2), gone.wait_for(|g| *g != Gone::No)).await;
        if matches!(went, Ok(Ok(_))) {
            ended = Some(Ended::PodGone);
            failure = None;
        }
    }
    // end of input (v5) or of the connection (v4): the remote wrapper stops tcpdump either way
    let _ = tokio::time::timeout(Duration::from_millis(500), stdin.shutdown()).await;
    drop(stdout);
    let mut code = match (exit, status) {
        (Some(st), _) => st.as_ref().map(exit_of),
        (None, Some(st)) => match tokio::time::timeout(Duration::from_secs(1), st).await {
            Ok(Some(s)) => Some(exit_of(&s)),
            _ => None,
        },
        (None, None) => None,
    };
    // attach's status frame always says Success (docs/design.md §4): it knows no exit code
    if via == Via::Attach && code == Some(Exit::Code(0)) {
        code = None;
    }
    drop(proc);
    let log = stderr.finish(Duration::from_millis(500)).await;
    if let Some(n) = log.drops {
        tx.dropped(n);
    }
    // nothing lost silently: tcpdump's own count against what reached us
    if let Some(c) = log.captured.filter(|c| *c > received) {
        if level != StopLevel::Now {
            tx.note(format!(
                "tcpdump reports {c} packets captured but {received} reached podcap-merge \
                 (the stream was cut before its end)"
            ));
        }
    }
    let stderr = log.said();
    if let Some(fault) = failure {
        return Err(PodError::Capture {
            fault,
            exit: code,
            stderr,
        });
    }
    match (ended, code) {
        (Some(e), _) => Ok((e, via)),
        (None, Some(Exit::Code(0))) => Ok((Ended::Finished, via)),
        (None, Some(Exit::Code(code))) => Err(PodError::Tcpdump { code, stderr }),
        (None, Some(Exit::Failed(message))) => Err(PodError::Failed { message, stderr }),
        // attach: the container ended by itself; what it said tells whether that was fine
        (None, None) if via == Via::Attach && !stderr.is_empty() => Err(PodError::Ended { stderr }),
        (None, None) if via == Via::Attach => Ok((Ended::Finished, via)),
        // the stream ended with no exit status: the connection went, not the capture
        (None, None) => Err(PodError::Capture {
            fault: CaptureFault::Cut { received },
            exit: None,
            stderr,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_shrink_with_many_pods() {
        assert_eq!(per_pod_buffer(1), STDOUT_BUF);
        assert_eq!(per_pod_buffer(8), STDOUT_BUF);
        assert_eq!(per_pod_buffer(32), 256 * 1024);
        assert_eq!(per_pod_buffer(1000), 128 * 1024);
    }

    #[test]
    fn tcpdump_chatter_is_not_an_error() {
        assert!(chatter("tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes"));
        assert!(chatter("12 packets captured"));
        assert!(chatter("1 packet dropped by kernel"));
        assert!(!chatter("tcpdump: eth1: No such device exists"));
    }
}
