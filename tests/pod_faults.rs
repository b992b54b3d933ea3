//! Pod capture against a test cluster with faults: wrong kubeconfig or context, nothing
//! selected, RBAC denials (ephemeral containers, exec, attach), ephemeral containers disabled,
//! Pod Security baseline and restricted, an image that cannot be pulled, an unknown target
//! container, a pod deleted mid-capture, the API server lost mid-capture, a 1.28 server
//! (WebSocket v4 only).
//!
//! Each test has its own `podcap-testcluster` and checks the message on stderr (the pod and the
//! cause, and what to do), the exit status, that the other pods are unaffected where the fault
//! is per pod, that the output file is valid where one is written, and that no tcpdump is left
//! in the pods. As root (CI), pods are network namespaces with real traffic and real tcpdump.

mod common;

use common::cluster::Server;
use common::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a podcap-merge run left: its exit status, its stderr, its output file.
struct Run {
    status: ExitStatus,
    stderr: String,
    out: PathBuf,
    took: Duration,
    _dir: tempfile::TempDir,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Lines that report a failure of pod `shop/POD` (`podcap-merge: pod shop/POD (…): MSG;
    /// this source stops here, the others go on`).
    fn pod_errors(&self, pod: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with(&format!("podcap-merge: pod shop/{pod} (")))
            .filter(|l| l.ends_with("; this source stops here, the others go on"))
            .collect()
    }

    /// Lines about pod `shop/POD` that are notes (not failures, not the summary).
    fn pod_notes(&self, pod: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with(&format!("podcap-merge: pod shop/{pod} (")))
            .filter(|l| !l.ends_with("; this source stops here, the others go on"))
            .collect()
    }

    /// Every per-pod failure line.
    fn all_pod_errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("podcap-merge: pod "))
            .filter(|l| l.ends_with("; this source stops here, the others go on"))
            .collect()
    }

    /// `podcap-merge: error: …` lines.
    fn run_errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("podcap-merge: error: "))
            .collect()
    }
}

/// Waits for `child` at most `limit`; SIGKILLs it (and fails the test) past that.
fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects a child's stderr in the background.
fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Runs `cmd` (podcap-merge) with `-w OUT` added, bounded by `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    let dir = tmpdir();
    let out = dir.path().join("out.pcapng");
    cmd.arg("-w")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn podcap-merge");
    let err = drain_stderr(&mut child);
    let status = wait_limited(&mut child, limit, "podcap-merge");
    let took = start.elapsed();
    let stderr = err.join().expect("stderr reader");
    eprintln!("--- podcap-merge stderr ({status}, {took:?}) ---\n{stderr}---");
    Run {
        status,
        stderr,
        out,
        took,
        _dir: dir,
    }
}

/// `podcap-merge -l app=mando --duration SECS EXTRA…` against `server`.
fn capture(server: &Server, secs: u32, extra: &[&str]) -> Run {
    let mut cmd = server.podcap();
    cmd.args(["-l", "app=mando", "--duration", &secs.to_string()])
        .args(extra);
    run_bounded(cmd, Duration::from_secs(u64::from(secs) + 20))
}

/// Packets per interface name, as tshark reads the file (which it must read without warning).
fn packets_per_pod(path: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in tshark_packets(path) {
        *m.entry(p.iface_name).or_insert(0) += 1;
    }
    m
}

/// The file is a valid pcapng (capinfos and tshark read it cleanly); its packets per pod.
fn valid_output(run: &Run) -> BTreeMap<String, usize> {
    assert!(
        run.out.exists(),
        "no output file {} was written",
        run.out.display()
    );
    let info = capinfos_clean(&run.out);
    assert!(info.contains("pcapng"), "capinfos: {info}");
    packets_per_pod(&run.out)
}

/// Every pod of the selection has packets on its own interface `shop/POD/any`.
fn assert_every_pod_captured(per_pod: &BTreeMap<String, usize>, pods: &[String]) {
    for pod in pods {
        let iface = format!("shop/{pod}/any");
        assert!(
            per_pod.get(&iface).copied().unwrap_or(0) > 0,
            "no packets from {iface}: {per_pod:?}"
        );
    }
}

/// No tcpdump is left in the cluster's pods within a few seconds.
fn assert_no_tcpdump_left(server: &Server) {
    let ok = wait_until(Duration::from_secs(5), || server.captures().is_empty());
    assert!(
        ok,
        "tcpdump left in the pods after the run: {:?}",
        server.captures()
    );
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "{n:?} not in:\n{haystack}");
    }
}

/// Every pod failed with exactly one error line holding all of `needles`; returns them.
fn assert_each_pod_failed<'a>(run: &'a Run, pods: &[String], needles: &[&str]) -> Vec<&'a str> {
    let mut lines = Vec::new();
    for pod in pods {
        let errs = run.pod_errors(pod);
        assert_eq!(
            errs.len(),
            1,
            "expected one error line for pod {pod}, got {errs:?}; stderr:\n{}",
            run.stderr
        );
        assert_contains(errs[0], needles);
        lines.push(errs[0]);
    }
    assert_eq!(
        run.all_pod_errors().len(),
        pods.len(),
        "error lines for other pods: {}",
        run.stderr
    );
    lines
}

// 1 ------------------------------------------------------------------------------------------

#[test]
fn unknown_context_is_a_run_error_naming_it() {
    let server = Server::start(1, &[]);
    let mut cmd = server.podcap();
    cmd.args(["--context", "no-such-context", "-l", "app=mando"])
        .args(["--duration", "2"]);
    let run = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(run.code(), Some(2), "exit status: {}", run.status);
    let errs = run.run_errors();
    assert_eq!(errs.len(), 1, "{}", run.stderr);
    assert_contains(
        errs[0],
        &[
            "context \"no-such-context\" not found in ",
            &server.kubeconfig().display().to_string(),
            "kubectl config get-contexts",
        ],
    );
    assert!(
        !run.stderr.contains("podcap-merge: pod "),
        "no pod was touched: {}",
        run.stderr
    );
    assert!(
        !run.out.exists(),
        "no output file for a run that never started"
    );
    assert_no_tcpdump_left(&server);
}

#[test]
fn unreadable_kubeconfig_is_a_run_error_naming_the_file() {
    let dir = tmpdir();
    // a path that does not exist, and a file that is not a kubeconfig
    let missing = dir.path().join("missing").join("kubeconfig");
    let garbage = dir.path().join("garbage.yaml");
    std::fs::write(&garbage, "this: [is not: a kubeconfig\n\t{{{").unwrap();
    for path in [&missing, &garbage] {
        let mut cmd = bin();
        cmd.arg("--kubeconfig")
            .arg(path)
            .args(["-n", "shop", "-l", "app=mando", "--duration", "2"])
            .env_remove("KUBECONFIG");
        let run = run_bounded(cmd, Duration::from_secs(20));
        assert_eq!(
            run.code(),
            Some(2),
            "{}: exit status {}",
            path.display(),
            run.status
        );
        assert_eq!(run.run_errors().len(), 1, "{}", run.stderr);
        // a YAML error spans several lines: the advice comes at the end of the message
        let message = &run.stderr[run.stderr.find("podcap-merge: error: ").unwrap()..];
        assert!(
            message.starts_with(&format!(
                "podcap-merge: error: cannot read the kubeconfig {}: ",
                path.display()
            )),
            "{message}"
        );
        assert!(
            message
                .trim_end()
                .ends_with("; check the path given to --kubeconfig"),
            "{message}"
        );
        assert!(
            !run.out.exists(),
            "no output file for a run that never started"
        );
    }
}

// 2 ------------------------------------------------------------------------------------------

#[test]
fn no_matching_pods_is_a_run_error_naming_the_selector() {
    let server = Server::start(2, &[]);
    let mut cmd = server.podcap();
    cmd.args(["-l", "app=nope", "--duration", "2"]);
    let run = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(run.code(), Some(2), "exit status: {}", run.status);
    let errs = run.run_errors();
    assert_eq!(errs.len(), 1, "{}", run.stderr);
    assert_contains(
        errs[0],
        &[
            "no pods matching -l app=nope in namespace shop",
            "kubectl get pods -l 'app=nope' -n shop",
        ],
    );
    assert!(
        !run.out.exists(),
        "no output file for a run that never started"
    );
    assert_no_tcpdump_left(&server);
}

// 3 ------------------------------------------------------------------------------------------

#[test]
fn rbac_denied_ephemeral_containers_fail_every_pod_with_a_valid_empty_file() {
    let server = Server::start(3, &["--rbac-deny", "patch:pods/ephemeralcontainers"]);
    let pods = server.pod_names();
    assert_eq!(pods.len(), 3);
    let run = capture(&server, 2, &[]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            "adding the capture container: RBAC forbids it",
            "may not `patch` `pods/ephemeralcontainers` in namespace shop",
            "ask for a Role granting it",
        ],
    );
    let per_pod = valid_output(&run);
    assert!(per_pod.is_empty(), "no packets expected: {per_pod:?}");
    // nothing can be captured, and a new pod would be refused the same way: the run ends
    assert_eq!(
        run.run_errors(),
        ["podcap-merge: error: every capture has failed; no pod is being captured, stopping"],
        "{}",
        run.stderr
    );
    assert_no_tcpdump_left(&server);
}

// 4 ------------------------------------------------------------------------------------------

/// kube-rs opens exec and attach as a WebSocket upgrade (GET), which the test cluster (like a
/// real server before 1.35) authorizes as `get`; `create` is what a POST (SPDY, or ≥ 1.35)
/// needs. Both are denied, so exec is forbidden whichever way it is asked.
#[test]
fn rbac_denied_exec_falls_back_to_attach() {
    let server = Server::start(
        3,
        &[
            "--rbac-deny",
            "get:pods/exec",
            "--rbac-deny",
            "create:pods/exec",
        ],
    );
    let pods = server.pod_names();
    let run = capture(&server, 4, &[]);
    assert_eq!(run.code(), Some(0), "exit status: {}", run.status);
    assert!(run.all_pod_errors().is_empty(), "{}", run.stderr);
    for pod in &pods {
        let notes = run.pod_notes(pod);
        assert!(
            notes.iter().any(|n| n.contains("RBAC forbids it")
                && n.contains("`pods/exec`")
                && n.contains("streaming through pods/attach instead")),
            "no note about the attach fallback for {pod}: {}",
            run.stderr
        );
    }
    let per_pod = valid_output(&run);
    assert_every_pod_captured(&per_pod, &pods);
    assert_no_tcpdump_left(&server);
}

// 5 ------------------------------------------------------------------------------------------

#[test]
fn rbac_denied_exec_and_attach_fail_every_pod_naming_attach() {
    let server = Server::start(
        3,
        &[
            "--rbac-deny",
            "get:pods/exec",
            "--rbac-deny",
            "create:pods/exec",
            "--rbac-deny",
            "get:pods/attach",
            "--rbac-deny",
            "create:pods/attach",
        ],
    );
    let pods = server.pod_names();
    let run = capture(&server, 3, &[]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            "attaching to the capture container (pods/attach): RBAC forbids it",
            "may not `get` `pods/attach` in namespace shop",
            "ask for a Role granting it",
        ],
    );
    // the exec denial was said too, before the attempt through attach
    for pod in &pods {
        assert!(
            run.pod_notes(pod).iter().any(|n| n.contains("`pods/exec`")),
            "exec denial not reported for {pod}: {}",
            run.stderr
        );
    }
    let per_pod = valid_output(&run);
    assert!(per_pod.is_empty(), "no packets expected: {per_pod:?}");
    assert_no_tcpdump_left(&server);
}

// 6 ------------------------------------------------------------------------------------------

#[test]
fn ephemeral_containers_disabled_fails_every_pod() {
    let server = Server::start(2, &["--no-ephemeral-containers"]);
    let pods = server.pod_names();
    let run = capture(&server, 2, &[]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            "ephemeral containers are disabled on this cluster",
            "404 on pods/ephemeralcontainers",
            "podcap-merge needs them",
        ],
    );
    assert!(valid_output(&run).is_empty());
    assert_no_tcpdump_left(&server);
}

// 7 ------------------------------------------------------------------------------------------

#[test]
fn pod_security_baseline_default_profile_retries_without_net_raw() {
    let server = Server::start(3, &["--pod-security", "baseline"]);
    let pods = server.pod_names();
    let run = capture(&server, 4, &[]);
    assert_eq!(run.code(), Some(0), "exit status: {}", run.status);
    assert!(run.all_pod_errors().is_empty(), "{}", run.stderr);
    for pod in &pods {
        let notes = run.pod_notes(pod);
        assert!(
            notes.iter().any(|n| n.contains(
                "Pod Security \"baseline\" in namespace shop forbids adding NET_RAW; retried \
                 with no added capabilities"
            )),
            "no note about the retry without NET_RAW for {pod}: {}",
            run.stderr
        );
    }
    let per_pod = valid_output(&run);
    assert_every_pod_captured(&per_pod, &pods);
    assert_no_tcpdump_left(&server);
}

#[test]
fn pod_security_baseline_with_profile_netraw_fails_naming_the_level() {
    let server = Server::start(2, &["--pod-security", "baseline"]);
    let pods = server.pod_names();
    let run = capture(&server, 2, &["--profile", "netraw"]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            "Pod Security level \"baseline\" of namespace shop rejects the capture container",
            "violates PodSecurity \"baseline:latest\"",
            "NET_RAW",
            "try --profile baseline",
        ],
    );
    assert!(valid_output(&run).is_empty());
    assert_no_tcpdump_left(&server);
}

// 8 ------------------------------------------------------------------------------------------

#[test]
fn pod_security_restricted_fails_naming_the_level_and_alternatives() {
    let server = Server::start(2, &["--pod-security", "restricted"]);
    let pods = server.pod_names();
    let run = capture(&server, 2, &[]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    let lines = assert_each_pod_failed(
        &run,
        &pods,
        &[
            "Pod Security level \"restricted\" of namespace shop rejects the capture container",
            "violates PodSecurity \"restricted:latest\"",
            "rejects every ephemeral container of an ordinary pod",
            "kubectl debug node/NODE",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
    );
    // no retry into the same wall: one attempt, no baseline note
    for l in lines {
        assert!(!l.contains("try --profile baseline"), "{l}");
    }
    assert!(!run.stderr.contains("retried with no added capabilities"));
    assert!(valid_output(&run).is_empty());
    assert_no_tcpdump_left(&server);
}

// 9 ------------------------------------------------------------------------------------------

#[test]
fn image_pull_failure_fails_every_pod_naming_the_image() {
    let image = "registry.example/bad:1";
    let server = Server::start(2, &["--image-pull-fail", image]);
    let pods = server.pod_names();
    let run = capture(&server, 3, &["--image", image, "--start-timeout", "8"]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            &format!("image {image} cannot be pulled (ErrImagePull"),
            "failed to pull and unpack image \"registry.example/bad:1\"",
            "give an image the nodes can pull with --image",
        ],
    );
    assert!(valid_output(&run).is_empty());
    assert_no_tcpdump_left(&server);
}

// 10 -----------------------------------------------------------------------------------------

#[test]
fn unknown_target_container_fails_listing_the_pods_containers() {
    let server = Server::start(2, &[]);
    let pods = server.pod_names();
    let run = capture(&server, 2, &["--target", "nope"]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &pods,
        &[
            "container \"nope\" (--target) not found",
            "the pod's containers are: app",
        ],
    );
    assert!(valid_output(&run).is_empty());
    // checked before anything is added: no capture container in any pod
    for pod in &pods {
        let json = server.ok(&["get", "pod", "-n", "shop", pod, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(
            v["spec"]["ephemeralContainers"].is_null(),
            "{pod} got a capture container: {}",
            v["spec"]["ephemeralContainers"]
        );
    }
    assert_no_tcpdump_left(&server);
}

/// The same fault for one pod only: a pod whose container is not named like the others'. It
/// fails; the other pods are captured.
#[test]
fn unknown_target_in_one_pod_leaves_the_others_captured() {
    let server = Server::start(2, &[]);
    let pods = server.pod_names();
    // a pod of the selection whose only container is `odd`
    server.ok(&[
        "run",
        "odd",
        "-n",
        "shop",
        "--image=nginx:1.25",
        "--labels=app=mando",
    ]);
    server.ok(&[
        "wait",
        "-n",
        "shop",
        "--for=jsonpath={.status.phase}=Running",
        "pod/odd",
        "--timeout=10s",
    ]);
    let run = capture(&server, 3, &["--target", "app"]);
    assert_eq!(run.code(), Some(1), "exit status: {}", run.status);
    assert_each_pod_failed(
        &run,
        &["odd".to_string()],
        &[
            "container \"app\" (--target) not found",
            "the pod's containers are: odd",
        ],
    );
    let per_pod = valid_output(&run);
    assert_every_pod_captured(&per_pod, &pods);
    assert_eq!(
        per_pod.get("shop/odd/any"),
        None,
        "no packets from the failed pod"
    );
    assert_no_tcpdump_left(&server);
}

// 11 -----------------------------------------------------------------------------------------

/// Last packet time (ns) per interface.
fn last_packet(path: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for p in tshark_packets(path) {
        let ts = p.ts.expect("timestamp");
        let e = m.entry(p.iface_name).or_insert(0);
        *e = (*e).max(ts);
    }
    m
}

#[test]
fn pod_deleted_mid_capture_ends_its_source_the_others_go_on() {
    let server = Server::start(3, &["--delete-pod-after", "2"]);
    let pods = server.pod_names();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let run = capture(&server, 5, &[]);
    assert_eq!(run.code(), Some(0), "exit status: {}", run.status);
    assert!(run.all_pod_errors().is_empty(), "{}", run.stderr);
    // which one went (the test cluster deletes the first it created, not the first by name)
    let after = server.pod_names();
    let gone: Vec<&String> = pods.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        gone.len(),
        1,
        "one pod deleted: before {pods:?}, after {after:?}"
    );
    let deleted = gone[0].clone();
    // the summary says why its source ended
    assert!(
        run.stderr
            .contains(&format!("shop/{deleted}/any: ") as &str)
            && run.stderr.contains("ended: pod deleted"),
        "{}",
        run.stderr
    );
    let per_pod = valid_output(&run);
    assert_every_pod_captured(&per_pod, &pods);
    let last = last_packet(&run.out);
    let deleted_last = last[&format!("shop/{deleted}/any")];
    for pod in pods.iter().filter(|p| **p != deleted) {
        let l = last[&format!("shop/{pod}/any")];
        // the deletion came ~2 s after the cluster start, the run lasts 5 s: the others go on
        // for seconds after the deleted pod's last packet
        assert!(
            l > deleted_last + 1_500_000_000,
            "{pod} last packet {l} not well after the deleted pod's {deleted_last}"
        );
    }
    assert_no_tcpdump_left(&server);
}

// 12 -----------------------------------------------------------------------------------------

/// On drop, removes what a SIGKILLed test cluster left (pod namespaces and their processes) by
/// starting another one, which clears the leftovers of dead servers.
struct CleanAfterCrash;

impl Drop for CleanAfterCrash {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| drop(Server::start(1, &[])));
    }
}

#[test]
fn api_server_lost_mid_capture_is_reported_and_the_file_stays_valid() {
    let _clean = CleanAfterCrash;
    let server = Server::start(2, &[]);
    let pods = server.pod_names();
    let dir = tmpdir();
    let out = dir.path().join("out.pcapng");
    let mut cmd = server.podcap();
    cmd.args(["-l", "app=mando", "--duration", "60", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn podcap-merge");
    let err = drain_stderr(&mut child);
    // wait until every pod is captured (a tcpdump per pod)
    assert!(
        wait_until(Duration::from_secs(10), || server.captures().len()
            >= pods.len()),
        "captures did not start: {:?}",
        server.captures()
    );
    std::thread::sleep(Duration::from_secs(1));
    let server_pid = server.child.id() as i32;
    // SAFETY: kill(2) on the test cluster, our own child
    unsafe { libc::kill(server_pid, libc::SIGKILL) };
    let killed = Instant::now();
    // does podcap-merge end by itself?
    let mut ended_alone = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if let Some(st) = child.try_wait().unwrap() {
            ended_alone = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = match ended_alone {
        Some(st) => st,
        None => {
            // SAFETY: kill(2) on our own child
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            wait_limited(
                &mut child,
                Duration::from_secs(10),
                "podcap-merge after SIGINT",
            )
        }
    };
    let stderr = err.join().unwrap();
    eprintln!(
        "--- podcap-merge stderr ({status}; ended by itself: {}, {:?} after the kill) ---\n{stderr}---",
        ended_alone.is_some(),
        killed.elapsed()
    );
    // the capture wrappers see their stdin close and stop tcpdump, server or not
    let left = wait_until(Duration::from_secs(5), || server.captures().is_empty());
    let captures = server.captures();
    // the file is valid and holds what came before the loss, from every pod
    let run = Run {
        status,
        stderr: stderr.clone(),
        out,
        took: killed.elapsed(),
        _dir: dir,
    };
    let per_pod = valid_output(&run);
    assert!(left, "tcpdump left in the pods: {captures:?}");
    assert_every_pod_captured(&per_pod, &pods);
    // the loss is said, clearly: the watch, and each pod's capture that it ended
    assert!(
        stderr.contains(
            "podcap-merge: lost the watch of pods matching -l app=mando in namespace shop"
        ),
        "the lost watch is not reported:\n{stderr}"
    );
    for pod in &pods {
        let errs = run.pod_errors(pod);
        assert!(
            errs.iter()
                .any(|l| l.contains("the stream from the pod was cut")),
            "the end of {pod}'s capture (its connection to the API server lost) is not \
             reported as an error:\n{stderr}"
        );
    }
    // every capture was cut short: the run failed
    assert_eq!(status.code(), Some(1), "exit status: {status}");
    // with no capture left and no API server, the run ends by itself
    assert!(
        stderr.contains(
            "podcap-merge: error: the API server has been unreachable for 5 s and no capture is running"
        ),
        "no word of stopping for the lost API server:\n{stderr}"
    );
    assert!(
        ended_alone.is_some(),
        "podcap-merge did not end by itself within 10 s of losing the API server (it needed \
         SIGINT)"
    );
}

// a run ends soon after --duration ---------------------------------------------------------

/// Found while testing the faults: a run sometimes lasts ~4 s past `--duration`. Three runs
/// against one cluster, each must end within 2 s of its duration (tcpdump's flush takes
/// milliseconds).
#[test]
fn runs_end_soon_after_the_duration() {
    let server = Server::start(2, &[]);
    let pods = server.pod_names();
    let mut took = Vec::new();
    for _ in 0..3 {
        let run = capture(&server, 2, &[]);
        assert_eq!(run.code(), Some(0), "exit status: {}", run.status);
        assert_every_pod_captured(&valid_output(&run), &pods);
        took.push(run.took);
    }
    assert_no_tcpdump_left(&server);
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(4)),
        "runs of --duration 2 took {took:?}"
    );
}

// 13 -----------------------------------------------------------------------------------------

#[test]
fn server_1_28_captures_over_websocket_v4() {
    let server = Server::start(3, &["--server-version", "1.28.4"]);
    let version = server.ok(&["version", "-o", "json"]);
    assert!(version.contains("v1.28.4"), "{version}");
    let pods = server.pod_names();
    let run = capture(&server, 4, &[]);
    assert_eq!(run.code(), Some(0), "exit status: {}", run.status);
    assert!(run.all_pod_errors().is_empty(), "{}", run.stderr);
    assert!(
        !run.stderr.contains("pods/attach"),
        "exec works on 1.28 (v4), no fallback expected: {}",
        run.stderr
    );
    let per_pod = valid_output(&run);
    assert_every_pod_captured(&per_pod, &pods);
    assert!(run.took < Duration::from_secs(15), "took {:?}", run.took);
    assert_no_tcpdump_left(&server);
}

/// A pod deleted and re-created under the same name between our look at it and our patch: the
/// patch names the old pod's UID, so the new pod gets no capture container from it.
#[test]
fn a_patch_for_a_replaced_pod_is_refused() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PatchParams;
    let server = Server::start(1, &[]);
    let run_solo = |s: &Server| {
        s.ok(&[
            "run",
            "solo",
            "-n",
            "shop",
            "--image=nginx:1.25",
            "--labels=app=solo",
        ]);
        s.ok(&[
            "wait",
            "-n",
            "shop",
            "--for=jsonpath={.status.phase}=Running",
            "pod/solo",
            "--timeout=10s",
        ]);
    };
    run_solo(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kc = server.kubeconfig();
    let (api, old) = rt.block_on(async {
        let conn = podcap_merge::k8s::client::connect(Some(&kc), None)
            .await
            .unwrap();
        let api: kube::Api<Pod> = kube::Api::namespaced(conn.client, "shop");
        let old = api.get("solo").await.unwrap();
        (api, old)
    });
    server.ok(&["delete", "pod", "solo", "-n", "shop", "--wait=true"]);
    run_solo(&server);
    let spec = podcap_merge::k8s::inject::container_spec(
        &podcap_merge::k8s::PodOptions::default(),
        "podcap-late",
        "solo",
        &[],
    );
    let patch = podcap_merge::k8s::inject::patch_for(&old, spec.clone());
    let err = rt
        .block_on(api.patch_ephemeral_containers("solo", &PatchParams::default(), &patch))
        .expect_err("the old pod's patch must not apply to the new pod");
    assert!(err.to_string().contains("/metadata/uid"), "{err}");
    let ecs = server.ok(&[
        "get",
        "pod",
        "solo",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.ephemeralContainers[*].name}",
    ]);
    assert!(ecs.trim().is_empty(), "the new pod got {ecs:?}");
    // the same patch for the pod as it is now applies
    let now = rt.block_on(api.get("solo")).unwrap();
    let patch = podcap_merge::k8s::inject::patch_for(&now, spec);
    rt.block_on(api.patch_ephemeral_containers("solo", &PatchParams::default(), &patch))
        .expect("the patch for the current pod applies");
}
