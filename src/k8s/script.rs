//! What runs inside the pod: the ephemeral container's command and the capture wrapper.
//!
//! One shell script serves both streaming designs (docs/design.md §4), so a pod never needs a second
//! container when one design is forbidden:
//! - `wait` mode is the ephemeral container's own command. It waits for one line on its stdin
//!   (bounded by the maximum duration). With `attach`, podcap-merge sends that line and the
//!   capture runs right there, on the attached stdout. With `exec`, nobody sends it: the
//!   container just waits, and the exec'd capture ends the waiting when it finishes.
//! - `exec` mode is the command podcap-merge runs through `pods/exec`: the capture alone.
//!
//! The capture wrapper: tcpdump runs in the background, a reader waits for a line on stdin;
//! a line ("stop", a graceful stop: tcpdump flushes and prints its counts, podcap-merge reads
//! to the end) or end of input (podcap-merge went away, even by SIGKILL: the API server closes
//! stdin) stops tcpdump (SIGTERM, SIGKILL 3 s later if it is still there). A ticking watchdog (one `sleep 1` at a time, so nothing long-lived
//! is left when it is killed) bounds both the container's wait and the capture to the
//! maximum duration, with nothing but `sh`, `sleep` and `kill` from the image.
//! User arguments (interface, BPF filter) are positional parameters, never pasted into the
//! script.

/// The script (`sh -c SCRIPT podcap MAX IDLE NAME MODE tcpdump ARGS…`).
pub const SCRIPT: &str = r#"max=$1 idle=$2 name=$3 mode=$4; shift 4
watchdog() {
  ( n=0; while [ $n -lt "$2" ]; do
      sleep 1; n=$((n+1))
      if [ -n "$3" ] && [ -e "$3" ]; then exit 0; fi
    done; stop $1 ) </dev/null >/dev/null 2>&1 &
}
stop() {
  kill $1 2>/dev/null || return 0
  n=0; while kill -0 $1 2>/dev/null && [ $n -lt 3 ]; do sleep 1; n=$((n+1)); done
  kill -9 $1 2>/dev/null
}
capture() {
  exec 3<&0
  "$@" &
  p=$!
  ( read -r line <&3; stop $p ) >/dev/null 2>&1 &
  r=$!
  watchdog $p "$max"; s=$!
  wait $p; rc=$?
  kill $r $s 2>/dev/null
  return $rc
}
if [ "$mode" = wait ]; then
  exec 3<&0
  sh -c 'read -r go' <&3 &
  w=$!
  watchdog $w "$max"; s=$!
  i=
  if echo $w >"/tmp/$name.pid" 2>/dev/null; then
    watchdog $w "$idle" "/tmp/$name.began"; i=$!
  fi
  wait $w; ok=$?
  kill $s $i 2>/dev/null
  rm -f "/tmp/$name.pid" "/tmp/$name.began"
  [ $ok = 0 ] || exit 0
  capture "$@"; exit $?
fi
: >"/tmp/$name.began" 2>/dev/null
capture "$@"; rc=$?
w=$(cat "/tmp/$name.pid" 2>/dev/null) && kill $w 2>/dev/null
exit $rc
"#;

/// How long the capture container waits for its capture to begin (an exec, or the attach's
/// first line) before it ends by itself: podcap-merge connects right after the container
/// runs, so this only ends containers whose run was stopped or refused in between.
pub const IDLE_SECS: u64 = 60;

/// The argv that runs [`SCRIPT`] in `mode` ("wait" or "exec") with the capture command `cmd`.
pub fn argv(
    max_secs: u64,
    idle_secs: u64,
    container: &str,
    mode: &str,
    cmd: &[String],
) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".to_string(),
        SCRIPT.to_string(),
        "podcap".to_string(),
        max_secs.to_string(),
        idle_secs.to_string(),
        container.to_string(),
        mode.to_string(),
    ];
    v.extend(cmd.iter().cloned());
    v
}

/// tcpdump's options for a live stream: pcap on stdout, each packet flushed as it comes
/// (`-U --immediate-mode`: ~1 ms lag instead of ~78 ms), nanosecond timestamps, not
/// promiscuous unless asked (that needs NET_ADMIN), the filter as separate words.
pub fn tcpdump_argv(
    interface: &str,
    snaplen: Option<u32>,
    promiscuous: bool,
    filter: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = ["tcpdump", "-i", interface, "-U", "--immediate-mode"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push("--time-stamp-precision=nano".into());
    if !promiscuous {
        v.push("-p".into());
    }
    if let Some(s) = snaplen {
        v.push("-s".into());
        v.push(s.to_string());
    }
    v.extend(["-w".to_string(), "-".to_string()]);
    if !filter.is_empty() {
        v.push("--".into());
        v.extend(filter.iter().cloned());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn spawn(a: &[String]) -> std::process::Child {
        Command::new(&a[0])
            .args(&a[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the script with `input` on stdin; stdin is closed after it when `eof`, else only
    /// after the script ended.
    fn run(mode: &str, cmd: &[&str], input: &[u8], eof: bool) -> (String, i32, Duration) {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("podcap-test-{}-{n}", std::process::id());
        let a = argv(30, 30, &name, mode, &cmd);
        let start = Instant::now();
        let mut child = spawn(&a);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        let keep = if eof {
            drop(stdin);
            None
        } else {
            Some(stdin)
        };
        let out = child.wait_with_output().unwrap();
        drop(keep);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
            start.elapsed(),
        )
    }

    #[test]
    fn exec_mode_runs_the_command_with_its_arguments_verbatim() {
        // a filter word with shell syntax stays one argument
        let (out, rc, _) = run("exec", &["printf", "%s|", "a b", "$(x)", ";"], b"", false);
        assert_eq!(out, "a b|$(x)|;|");
        assert_eq!(rc, 0);
    }

    #[test]
    fn a_line_or_eof_on_stdin_stops_the_capture() {
        let (_, _, t) = run("exec", &["sleep", "20"], b"stop\n", false);
        assert!(t < Duration::from_secs(5), "{t:?}");
        let (_, _, t) = run("exec", &["sleep", "20"], b"", true);
        assert!(t < Duration::from_secs(5), "{t:?}");
    }

    #[test]
    fn wait_mode_starts_on_the_first_line_and_ends_on_eof_without_one() {
        let (out, rc, _) = run("wait", &["echo", "started"], b"go\n", false);
        assert_eq!((out.as_str(), rc), ("started\n", 0));
        let (out, rc, t) = run("wait", &["echo", "started"], b"", true);
        assert_eq!((out.as_str(), rc), ("", 0));
        assert!(t < Duration::from_secs(5));
    }

    #[test]
    fn the_maximum_duration_bounds_the_wait_and_the_capture() {
        let cmd: Vec<String> = vec!["sleep".into(), "30".into()];
        for (mode, input) in [("wait", &b""[..]), ("exec", &b""[..])] {
            let a = argv(1, 30, "podcap-test-max", mode, &cmd);
            let start = Instant::now();
            let mut child = Command::new(&a[0])
                .args(&a[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            // stdin stays open: only the bound can end it
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            drop(stdin);
            assert!(start.elapsed() < Duration::from_secs(5), "{mode}: {out:?}");
        }
    }

    #[test]
    fn a_container_nobody_connects_to_ends_after_the_idle_bound() {
        let cmd: Vec<String> = vec!["true".into()];
        let a = argv(30, 1, "podcap-test-idle", "wait", &cmd);
        let start = Instant::now();
        let mut child = spawn(&a);
        let stdin = child.stdin.take().unwrap(); // open: only the idle bound can end it
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let t = start.elapsed();
        assert!(
            t >= Duration::from_secs(1) && t < Duration::from_secs(5),
            "{t:?} {out:?}"
        );
    }

    #[test]
    fn a_capture_that_ignores_sigterm_is_killed_3_s_later() {
        // (the line is sent once the handler is surely set: after 1 s)
        let ignore =
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(20)";
        let cmd: Vec<String> = ["python3", "-c", ignore]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = argv(30, 30, "podcap-test-kill", "exec", &cmd);
        let mut child = spawn(&a);
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        stdin.write_all(b"stop\n").unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let t = start.elapsed();
        assert_eq!(out.status.code(), Some(128 + 9), "SIGKILL");
        assert!(
            t >= Duration::from_secs(2) && t < Duration::from_secs(8),
            "{t:?}"
        );
    }

    #[test]
    fn the_exit_status_of_the_command_is_kept() {
        let (_, rc, _) = run("exec", &["sh", "-c", "exit 3"], b"", false);
        assert_eq!(rc, 3);
    }

    #[test]
    fn tcpdump_arguments() {
        let v = tcpdump_argv("eth0", Some(96), false, &["port".into(), "80".into()]);
        assert_eq!(
            v.join(" "),
            "tcpdump -i eth0 -U --immediate-mode --time-stamp-precision=nano -p -s 96 -w - -- port 80"
        );
    }
}
