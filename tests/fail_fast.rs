//! Failing fast and ending by itself (docs/design.md §10), against the test cluster with the
//! real kubectl as witness: a filter tcpdump refuses touches no pod, an interface no pod has
//! touches one pod, a run whose every capture failed ends by itself, named pods end the run
//! when their captures end, and a followed pod whose capture ends is captured again, with the
//! gap reported in the summary and in its interface's statistics comment.
//!
//! As root (CI) the pods' captures are real tcpdump processes in network namespaces, which the
//! tests kill to make a capture end by itself.

mod common;

use common::cluster::Server;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ephemeral containers of every pod of the selection, as kubectl lists them.
fn ephemeral_containers(server: &Server) -> Vec<String> {
    server
        .ok(&[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "app=mando",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}:{range .spec.ephemeralContainers[*]}{.name},{end}{\"\\n\"}{end}",
        ])
        .lines()
        .flat_map(|l| {
            let (pod, names) = l.split_once(':').unwrap_or((l, ""));
            names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| format!("{pod}/{n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Finished {
    status: ExitStatus,
    stderr: String,
    took: Duration,
}

/// Waits for a podcap-merge child at most `limit` (kills it and fails past that).
fn finish(mut child: Child, limit: Duration) -> Finished {
    let start = Instant::now();
    let mut err = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("podcap-merge did not end by itself within {limit:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().expect("stderr reader");
    eprintln!(
        "--- podcap-merge ({status}, {:?}) ---\n{stderr}---",
        start.elapsed()
    );
    Finished {
        status,
        stderr,
        took: start.elapsed(),
    }
}

fn spawn(server: &Server, args: &[&str], out: &Path) -> Child {
    server
        .podcap()
        .args(args)
        .arg("-w")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podcap-merge")
}

fn out_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("out.pcapng")
}

#[test]
fn a_filter_tcpdump_refuses_is_refused_before_any_pod_is_touched() {
    let server = Server::pods(3);
    let dir = tmpdir();
    // the run, and --dry-run: the same check, tcpdump's own words, exit status 2
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["-l", "app=mando"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "tcp", "prot", "80"]);
        let run = finish(
            spawn(&server, &args, &out_file(&dir)),
            Duration::from_secs(30),
        );
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("syntax error") && run.stderr.contains("no pod was touched"),
            "{}",
            run.stderr
        );
        assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    }
    assert_eq!(ephemeral_containers(&server), Vec::<String>::new());
}

#[test]
fn an_interface_no_pod_has_costs_one_pod_and_ends_with_tcpdumps_words() {
    let server = Server::pods(3);
    let dir = tmpdir();
    let run = finish(
        spawn(&server, &["-l", "app=mando", "-i", "eth9"], &out_file(&dir)),
        Duration::from_secs(60),
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("podcap-merge: error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr));
    // tcpdump's own message, the pod it came from, what was spared
    assert!(error.contains("eth9"), "{error}");
    assert!(error.contains("No such device"), "{error}");
    assert!(error.contains("pod shop/mando-"), "{error}");
    assert!(error.contains("no other pod was touched"), "{error}");
    let added = ephemeral_containers(&server);
    assert_eq!(added.len(), 1, "exactly one pod touched: {added:?}");
}

#[test]
fn a_run_whose_every_capture_failed_ends_by_itself() {
    // every capture container fails to start (its image cannot be pulled): nothing is
    // captured, and a new pod would fail the same way; no --duration
    let image = "registry.example/bad:1";
    let server = Server::start(2, &["--image-pull-fail", image]);
    let dir = tmpdir();
    let run = finish(
        spawn(
            &server,
            &["-l", "app=mando", "--image", image, "--start-timeout", "8"],
            &out_file(&dir),
        ),
        Duration::from_secs(60),
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("every capture has failed"),
        "{}",
        run.stderr
    );
    capinfos_clean(&out_file(&dir));
}

/// Kills one tcpdump of the cluster's pods with `signal` once `want` captures run.
fn kill_one_capture(server: &Server, want: usize, signal: i32) -> u32 {
    assert!(
        wait_until(Duration::from_secs(30), || server.captures().len() >= want),
        "captures never ran: {:?}",
        server.captures()
    );
    std::thread::sleep(Duration::from_secs(1));
    let (pid, cmd) = server.captures()[0].clone();
    eprintln!("killing {pid} ({cmd}) with signal {signal}");
    // SAFETY: kill(2) on a tcpdump process of the test cluster's pods.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    pid
}

#[test]
fn named_pods_end_the_run_when_their_captures_end() {
    let server = Server::pods(2);
    let pod = server.pod_names()[0].clone();
    let dir = tmpdir();
    let child = spawn(&server, &[&pod], &out_file(&dir));
    kill_one_capture(&server, 1, libc::SIGTERM);
    // no --duration: the run ends because its only capture ended
    let run = finish(child, Duration::from_secs(30));
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the captures of the named pods have ended"),
        "{}",
        run.stderr
    );
    let packets = tshark_packets(&out_file(&dir));
    assert!(!packets.is_empty(), "the capture before its end is kept");
}

/// The `opt_comment`s of the Interface Statistics Blocks of a little-endian pcapng we wrote.
fn isb_comments(path: &Path) -> Vec<String> {
    let b = std::fs::read(path).expect("read output");
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut out = Vec::new();
    let mut i = 0;
    while i + 12 <= b.len() {
        let (kind, len) = (u32_at(i), u32_at(i + 4) as usize);
        assert!(len >= 12 && i + len <= b.len(), "block at {i}");
        if kind == 5 {
            // interface id, timestamp (high, low), then options
            let mut o = i + 20;
            while o + 4 <= i + len - 4 {
                let code = u16::from_le_bytes([b[o], b[o + 1]]);
                let olen = u16::from_le_bytes([b[o + 2], b[o + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 1 {
                    out.push(String::from_utf8_lossy(&b[o + 4..o + 4 + olen]).into_owned());
                }
                o += 4 + olen.div_ceil(4) * 4;
            }
        }
        i += len;
    }
    out
}

#[test]
fn a_followed_pod_whose_capture_ends_is_captured_again_and_the_gap_reported() {
    let server = Server::pods(2);
    let dir = tmpdir();
    let child = spawn(
        &server,
        &["-l", "app=mando", "--duration", "12"],
        &out_file(&dir),
    );
    let killed = kill_one_capture(&server, 2, libc::SIGKILL);
    // the capture comes back (a new tcpdump) while the run goes on
    assert!(
        wait_until(Duration::from_secs(15), || {
            let now = server.captures();
            now.len() == 2 && now.iter().all(|(p, _)| *p != killed)
        }),
        "the killed capture was not resumed: {:?}",
        server.captures()
    );
    let run = finish(child, Duration::from_secs(40));
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    let note = run
        .stderr
        .lines()
        .find(|l| l.contains("the capture ended while the pod still runs"))
        .unwrap_or_else(|| panic!("no resume note:\n{}", run.stderr));
    assert!(note.contains("resume 1 of 3"), "{note}");
    let pod = note
        .split("pod shop/")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("pod named in the note")
        .to_string();
    // the summary tells the gap; the interface's statistics comment too
    assert!(
        run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("shop/{pod}/any "))
                && l.contains(" s (1x) ")),
        "the summary's NOT CAPTURED column does not show the gap:\n{}",
        run.stderr
    );
    let out = out_file(&dir);
    capinfos_clean(&out);
    let comments = isb_comments(&out);
    assert!(
        comments
            .iter()
            .any(|c| c.contains("no capture for") && c.contains("resumed")),
        "ISB comments: {comments:?}"
    );
    // one interface per pod (the resumed capture continues its interface), packets after the gap
    let packets = tshark_packets(&out);
    let mut names: Vec<&str> = packets.iter().map(|p| p.iface_name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2, "{names:?}");
    let mine: Vec<_> = packets
        .iter()
        .filter(|p| p.iface_name == format!("shop/{pod}/any"))
        .collect();
    let gaps = mine
        .windows(2)
        .filter(|w| w[1].ts.unwrap_or(0).saturating_sub(w[0].ts.unwrap_or(0)) > 900_000_000)
        .count();
    assert!(gaps >= 1, "no gap seen in {pod}'s packets");
    let last = mine
        .last()
        .expect("packets of the resumed pod")
        .ts
        .unwrap_or(0);
    let first = mine.first().expect("packets").ts.unwrap_or(0);
    assert!(
        last - first > 5_000_000_000,
        "packets after the gap: first {first} last {last}"
    );
}

/// podcap-merge with only the environment given (no kubeconfig of this machine's user).
fn bare(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let dir = tmpdir();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_podcap-merge"));
    cmd.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir.path())
        .args(args)
        .arg("-w")
        .arg(dir.path().join("out.pcapng"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run podcap-merge");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_server_is_named_with_its_url_and_the_cause() {
    let dir = tmpdir();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:1"}}],"users":[{"name":"u","user":{"token":"x"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":"u","namespace":"shop"}}],"current-context":"x"}"#,
    )
    .expect("write kubeconfig");
    let (code, stderr) = bare(&[], &["--kubeconfig", &kc.to_string_lossy(), "-l", "app=x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("connection refused to https://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("ServiceError"), "{stderr}");
}

#[test]
fn a_missing_kubeconfig_is_said_plainly() {
    let (code, stderr) = bare(&[("KUBECONFIG", "/nonexistent/kc.yaml")], &["-l", "app=x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "KUBECONFIG is set to /nonexistent/kc.yaml, which does not exist; fix or unset KUBECONFIG"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"/nonexistent"),
        "path quoted twice: {stderr}"
    );
    let (code, stderr) = bare(&[], &["-l", "app=x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no Kubernetes configuration found; tried "),
        "{stderr}"
    );
    assert!(stderr.contains(".kube/config (missing)"), "{stderr}");
    assert!(
        stderr.contains("KUBERNETES_SERVICE_HOST is not set"),
        "{stderr}"
    );
}

#[test]
fn a_pod_that_already_holds_many_capture_containers_is_warned_about() {
    let server = Server::pods(1);
    let pod = server.pod_names()[0].clone();
    let dir = tmpdir();
    let mut last = String::new();
    // every run leaves its container in the pod: the sixth run finds five
    for run in 1..=6 {
        let done = finish(
            spawn(&server, &[&pod, "--duration", "3"], &out_file(&dir)),
            Duration::from_secs(30),
        );
        assert_eq!(done.status.code(), Some(0), "run {run}: {}", done.stderr);
        assert!(
            done.stderr
                .contains("1 capture container(s) added (ephemeral containers stay"),
            "run {run}: {}",
            done.stderr
        );
        last = done.stderr;
    }
    assert_eq!(ephemeral_containers(&server).len(), 6);
    assert!(
        last.contains("already holds 5 capture containers from earlier runs")
            && last.contains("kubectl rollout restart"),
        "{last}"
    );
}

#[test]
fn pod_security_raised_over_earlier_capture_containers_advises_recreating_the_pod() {
    let server = Server::pods(1);
    let pod = server.pod_names()[0].clone();
    let dir = tmpdir();
    // an earlier run (no Pod Security yet) leaves a capture container with NET_RAW
    let first = finish(
        spawn(&server, &[&pod, "--duration", "1"], &out_file(&dir)),
        Duration::from_secs(30),
    );
    assert_eq!(first.status.code(), Some(0), "{}", first.stderr);
    // then the namespace's level is raised, as an administrator would
    server.ok(&[
        "label",
        "ns",
        "shop",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    let run = finish(
        spawn(&server, &[&pod, "--duration", "5"], &out_file(&dir)),
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("Pod Security level"))
        .unwrap_or_else(|| panic!("no Pod Security error:\n{}", run.stderr));
    assert!(
        line.contains("capture containers of earlier runs (podcap-"),
        "{line}"
    );
    assert!(
        line.contains("until it is recreated") || line.contains("only once it is recreated"),
        "{line}"
    );
    assert!(line.contains("kubectl rollout restart"), "{line}");
    // a profile cannot help: none is suggested, and none was tried
    assert!(!run.stderr.contains("--profile"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("retried with no added capabilities"),
        "{}",
        run.stderr
    );
    assert_eq!(ephemeral_containers(&server).len(), 1, "nothing added");
}
