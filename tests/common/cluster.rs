//! The test cluster as a child process: `podcap-testcluster` started for a test, its kubeconfig,
//! kubectl against it. Shared by the test-cluster tests and the pod capture tests.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `podcap-testcluster` binary of the workspace's test-cluster crate, built beside ours
/// (scripts/test builds every binary of the workspace before it runs the tests).
pub fn testcluster_bin() -> PathBuf {
    let ours = Path::new(env!("CARGO_BIN_EXE_podcap-merge"));
    let bin = ours.with_file_name("podcap-testcluster");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A running `podcap-testcluster`; killed on drop.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start(pods: usize, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let child = spawn_ready(
            Command::new(testcluster_bin())
                .arg("--pods")
                .arg(pods.to_string())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(extra)
                .stderr(Stdio::inherit()),
            "podcap-testcluster",
        );
        let server = Server { child, dir };
        assert!(kubeconfig.exists(), "kubeconfig written before `ready`");
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), &self.dir.path().join("cache"), args)
    }

    /// stdout of a kubectl run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stderr of a kubectl run that must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Server {
    /// SIGTERM first, so that the server kills its processes and removes its network
    /// namespaces; SIGKILL if it does not exit within 5 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..100 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a test cluster (its stdout piped) and waits for its `ready` line; kills it and fails
/// the test, naming `what`, if that line does not come within 30 s.
pub fn spawn_ready(cmd: &mut Command, what: &str) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line == "ready" => child,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("expected `ready` on stdout of {what}, got {other:?}");
        }
    }
}

pub fn kubectl_with(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

pub fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // kubectl is the judge of the test cluster: without it the tests fail, never skip
    assert!(
        ok,
        "kubectl is not installed (it is on every project machine: /usr/bin/kubectl)"
    );
    ok
}

impl Server {
    /// Starts the test cluster with 3 pods (`--pods` in `extra` is not allowed: use `start`).
    pub fn pods(n: usize) -> Server {
        Server::start(n, &[])
    }

    /// podcap-merge pointed at this cluster's kubeconfig (namespace shop, -l app=mando).
    pub fn podcap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podcap-merge"));
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["-n", "shop"])
            .env_remove("KUBECONFIG");
        c
    }

    /// Processes the cluster started (its kubelet's workloads and containers), as
    /// `(pid, command line)`: everything below the server process.
    pub fn processes(&self) -> Vec<(u32, String)> {
        descendants(self.child.id())
    }

    /// Capture processes (tcpdump) running in any of the cluster's pods: below the server, or
    /// (orphaned, reparented away from it) inside one of its pods' network namespaces.
    pub fn captures(&self) -> Vec<(u32, String)> {
        use std::os::unix::fs::MetadataExt;
        let tag = format!("-{}-", self.child.id());
        let pod_netns: std::collections::HashSet<u64> = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(&tag))
            .filter_map(|e| std::fs::metadata(e.path()).ok().map(|m| m.ino()))
            .collect();
        let mut out: Vec<(u32, String)> = all_processes()
            .into_iter()
            .filter(|(pid, _, _)| {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| pod_netns.contains(&m.ino()))
            })
            .map(|(pid, _, cmd)| (pid, cmd))
            .chain(self.processes())
            .filter(|(_, cmd)| is_tcpdump(cmd))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Names of the pods in namespace shop with `-l app=mando`.
    pub fn pod_names(&self) -> Vec<String> {
        self.ok(&["get", "pods", "-n", "shop", "-l", "app=mando", "-o", "name"])
            .lines()
            .map(|l| l.trim_start_matches("pod/").to_string())
            .collect()
    }

    /// The node of each pod in namespace shop, keyed by a field of the pod (`.metadata.name`,
    /// `.status.podIP`).
    pub fn node_by(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        let jsonpath =
            format!("jsonpath={{range .items[*]}}{{{key}}} {{.spec.nodeName}}{{\"\\n\"}}{{end}}");
        self.ok(&["get", "pods", "-n", "shop", "-o", &jsonpath])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect()
    }
}

fn is_tcpdump(cmd: &str) -> bool {
    cmd.split_whitespace()
        .next()
        .is_some_and(|a| a == "tcpdump" || a.ends_with("/tcpdump"))
}

/// Every live process: (pid, parent pid, command line).
pub fn all_processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" {
            continue;
        }
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        out.push((pid, ppid, cmd));
    }
    out
}

/// Every process below `root` (children, their children…), with its command line.
pub fn descendants(root: u32) -> Vec<(u32, String)> {
    let procs = all_processes();
    let parent: std::collections::HashMap<u32, u32> =
        procs.iter().map(|(p, pp, _)| (*p, *pp)).collect();
    let mut out = Vec::new();
    for (pid, _, cmd) in &procs {
        let mut p = *pid;
        for _ in 0..64 {
            p = parent.get(&p).copied().unwrap_or(0);
            if p <= 1 {
                break;
            }
            if p == root {
                out.push((*pid, cmd.clone()));
                break;
            }
        }
    }
    out.sort();
    out
}

// ---- kubectl and raw API helpers shared by the test-cluster tests ----

/// Data lines (header dropped) of `kubectl get` output.
pub fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

impl Server {
    /// `(HTTP code, body)` of a raw request with curl and the right token; None if no curl.
    pub fn curl_send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        use base64::Engine as _;
        let kc = parse_json(&std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig"));
        let cluster = &kc["clusters"][0]["cluster"];
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster["certificate-authority-data"].as_str().expect("ca"))
            .expect("base64");
        let ca_file = self.dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).expect("write ca");
        let url = format!("{}{path}", cluster["server"].as_str().expect("server"));
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca_file)
            .args(["-X", method, "-H"])
            .arg(format!("Authorization: Bearer {}", self.token()))
            .arg("-H")
            .arg(format!("Content-Type: {content_type}"))
            .args(["--data-binary", body, "-w", "\n%{http_code}", &url])
            .output()
            .expect("curl is needed (scripts/test installs it)");
        Some(curl_result(&out))
    }

    /// A long-running kubectl whose stdout lines arrive on the channel; killed by the caller.
    pub fn kubectl_stream(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    /// Watch events (`kubectl get --raw` of a watch that ends after `timeoutSeconds`).
    pub fn raw_watch(&self, path_and_query: &str) -> Vec<Value> {
        let out = self.ok(&["get", "--raw", path_and_query]);
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                assert!(l.starts_with("{\"type\":"), "event line: {l}");
                parse_json(l)
            })
            .collect()
    }

    pub fn pod_json(&self, name: &str) -> Value {
        parse_json(&self.ok(&["get", "pod", name, "-n", "shop", "-o", "json"]))
    }

    /// Polls the pod until `pred` holds (5 s at most).
    pub fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..50 {
            let pod = self.pod_json(name);
            if pred(&pod) {
                return pod;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pod {name}: {what} did not happen");
    }

    pub fn token(&self) -> String {
        let kc = parse_json(&std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig"));
        kc["users"][0]["user"]["token"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

/// Waits (10 s at most) for a line containing all of `words`; returns it.
pub fn expect_line(rx: &mpsc::Receiver<String>, words: &[&str], seen: &mut Vec<String>) -> String {
    let matches = |line: &str| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        words.iter().all(|w| cols.contains(w))
    };
    // Events of pods created together may come in either order: an earlier wait may have read
    // this one already. Lines already matched are marked with USED and not matched again.
    const USED: &str = "(matched) ";
    if let Some(i) = seen.iter().position(|l| !l.starts_with(USED) && matches(l)) {
        let line = seen[i].clone();
        seen[i] = format!("{USED}{line}");
        return line;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if matches(&line) {
                    seen.push(format!("{USED}{line}"));
                    return line;
                }
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    panic!("no line with {words:?}; saw:\n{}", seen.join("\n"));
}

/// Splits `curl -w "\n%{http_code}"` output into (status, body); curl itself must succeed.
pub fn curl_result(out: &std::process::Output) -> (u16, String) {
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("code"), body.to_string())
}
