//! The test cluster against the REAL kubectl: start `podcap-testcluster`, wait for `ready`, run
//! `kubectl --kubeconfig …` and check what it prints. Skipped (loudly) when kubectl is missing.
//! Facts recorded from a real v1.28 API server are read from `$PODCAP_SHARED_DIR/k8s-real`
//! (default `../shared`), never copied into the repository.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use podcap_merge::testcluster::{api, discovery, objects, version_info};
use serde_json::Value;

/// A running `podcap-testcluster`; killed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(pods: usize, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_podcap-testcluster"))
            .arg("--pods")
            .arg(pods.to_string())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn podcap-testcluster");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child, dir };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "ready" => {}
            other => {
                let _ = server.child.kill();
                panic!("expected `ready` on stdout, got {other:?}");
            }
        }
        assert!(kubeconfig.exists(), "kubeconfig written before `ready`");
        server
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), &self.dir.path().join("cache"), args)
    }

    /// stdout of a kubectl run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stderr of a kubectl run that must fail.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl_with(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Output {
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

fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("\n!!!! WARNING: kubectl not found on PATH; skipping a test-cluster test !!!!\n");
    }
    ok
}

/// Data lines (header dropped) of `kubectl get` output.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn header(out: &str) -> Vec<String> {
    // Multi-word headers ("NOMINATED NODE") are separated by 3+ spaces in kubectl's tabwriter.
    out.lines()
        .next()
        .unwrap_or("")
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn get_pods_all_namespaces() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(3, &[]);
    let out = s.ok(&["get", "pods", "-A", "-l", "app=mando"]);
    assert_eq!(
        header(&out),
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let rows = rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    for r in &rows {
        assert_eq!(r[0], "shop");
        assert!(r[1].starts_with("mando-"), "{r:?}");
        assert_eq!(&r[2..5], ["1/1", "Running", "0"], "{r:?}");
    }
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ],
        "{wide}"
    );
    let mut ips: Vec<String> = rows_of(&wide).iter().map(|r| r[5].clone()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct pod IPs: {wide}");
    assert!(rows_of(&wide).iter().all(|r| r[6] == "node-1"), "{wide}");
}

fn rows_of(out: &str) -> Vec<Vec<String>> {
    rows(out)
}

#[test]
fn label_selectors() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    for sel in [
        "app in (mando),tier notin (db)",
        "!missing",
        "app==mando",
        "app",
        "pod-template-hash",
    ] {
        let out = s.ok(&["get", "pods", "-n", "shop", "-l", sel]);
        assert_eq!(rows(&out).len(), 2, "-l {sel:?}: {out}");
    }
    for sel in [
        "app!=mando",
        "!app",
        "tier in (db)",
        "app notin (mando)",
        "missing",
    ] {
        let out = s.kubectl(&["get", "pods", "-n", "shop", "-l", sel]);
        assert!(out.status.success(), "-l {sel:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "-l {sel:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "No resources found in shop namespace.",
            "-l {sel:?}"
        );
    }
    let err = s.fails(&["get", "pods", "-l", "app in (mando"]);
    assert!(err.contains("Error from server (BadRequest)"), "{err}");
}

#[test]
fn get_one_pod_and_not_found() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    let names = s.ok(&["get", "pods", "-n", "shop", "-o", "name"]);
    let first = names.lines().next().expect("a pod");
    let name = first.strip_prefix("pod/").expect("pod/ prefix");
    let pod: Value =
        serde_json::from_str(&s.ok(&["get", "pod", name, "-o", "json"])).expect("json");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["name"], name);
    assert_eq!(pod["metadata"]["namespace"], "shop");
    assert_eq!(pod["metadata"]["labels"]["app"], "mando");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    assert_eq!(pod["spec"]["containers"][0]["name"], "app");
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.")));
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object());

    let err = s.fails(&["get", "pod", "nope"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): pods "nope" not found"#
    );
    let err = s.fails(&["get", "deploy", "nope", "-n", "shop"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): deployments.apps "nope" not found"#
    );
}

#[test]
fn field_selectors() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(3, &[]);
    let count = |fs: &str| rows(&s.ok(&["get", "pods", "-A", "--field-selector", fs])).len();
    assert_eq!(count("status.phase=Running"), 3);
    assert_eq!(count("status.phase==Running,spec.nodeName=node-1"), 3);
    assert_eq!(count("status.phase!=Running"), 0);
    let names = s.ok(&["get", "pods", "-n", "shop", "-o", "name"]);
    let name = names
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("pod/"))
        .expect("pod");
    assert_eq!(count(&format!("metadata.name={name}")), 1);
    assert_eq!(count(&format!("metadata.name!={name}")), 2);
    let err = s.fails(&["get", "pods", "--field-selector", "foo=bar"]);
    assert!(err.contains("field label not supported: foo"), "{err}");
}

#[test]
fn deployments_and_services() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(4, &["--labels", "app=mando,tier=web"]);
    let out = s.ok(&["get", "deploy,svc", "-n", "shop"]);
    let lines: Vec<&str> = out.lines().collect();
    let deploy = lines
        .iter()
        .find(|l| l.starts_with("deployment.apps/mando"))
        .expect(&out);
    assert_eq!(
        deploy.split_whitespace().collect::<Vec<_>>()[1..4],
        ["4/4", "4", "4"],
        "{out}"
    );
    let svc = lines
        .iter()
        .find(|l| l.starts_with("service/mando"))
        .expect(&out);
    let svc: Vec<&str> = svc.split_whitespace().collect();
    assert_eq!(
        (svc[1], svc[3], svc[4]),
        ("ClusterIP", "<none>", "80/TCP"),
        "{out}"
    );
    let selector = s.ok(&[
        "get",
        "svc",
        "mando",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.selector}",
    ]);
    let selector: Value = serde_json::from_str(&selector).expect("json");
    assert_eq!(selector, serde_json::json!({"app": "mando", "tier": "web"}));
    assert_eq!(
        rows(&s.ok(&["get", "pods", "-n", "shop", "-l", "tier=web"])).len(),
        4
    );
    let out = s.ok(&["get", "sts,ds", "-n", "shop"]);
    assert_eq!(out, "", "no statefulsets or daemonsets");
}

#[test]
fn version_picks_matching_kubectl() {
    if !have_kubectl() {
        return;
    }
    for (arg, minor, git) in [("1.30", "30", "v1.30.0"), ("1.28.7", "28", "v1.28.7")] {
        let s = Server::start(1, &["--server-version", arg]);
        let v: Value = serde_json::from_str(&s.ok(&["version", "-o", "json"])).expect("json");
        assert_eq!(v["serverVersion"]["gitVersion"], git, "{v}");
        assert_eq!(v["serverVersion"]["minor"], minor, "{v}");
        assert_eq!(
            v["clientVersion"]["minor"], minor,
            "dispatcher ran the matching kubectl: {v}"
        );
    }
}

#[test]
fn wrong_token_is_unauthorized() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &[]);
    let good = std::fs::read_to_string(s.kubeconfig()).expect("kubeconfig");
    let mut kc: Value = serde_json::from_str(&good).expect("kubeconfig is JSON");
    kc["users"][0]["user"]["token"] = Value::from("wrong-token");
    let bad = s.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, kc.to_string()).expect("write");
    let cache = s.dir.path().join("bad-cache");
    // Through discovery, client-go reports its generic 401 text; with --raw it reports the
    // Status message. Both are what a real server's identical 401 produces.
    let out = kubectl_with(&bad, &cache, &["get", "pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: You must be logged in to the server ("),
        "{err}"
    );
    let out = kubectl_with(&bad, &cache, &["get", "--raw", "/api/v1/pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: You must be logged in to the server (Unauthorized)"
    );

    // No token at all: kubectl would prompt for a username, so ask with curl instead.
    if let Some(body) = s.curl("/api/v1/pods", None) {
        assert_eq!(body.0, 401);
        assert_eq!(parse_json(&body.1)["reason"], "Unauthorized");
    }
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// JSON text without the whitespace between tokens (keeps field order, unlike `Value`).
fn compact(text: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut escaped) = (false, false);
    for c in text.chars() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

impl Server {
    /// `(HTTP code, body)` of a raw GET with curl, token `Some(t)` or none; None if no curl.
    fn curl(&self, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        use base64::Engine as _;
        let kc = parse_json(&std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig"));
        let cluster = &kc["clusters"][0]["cluster"];
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster["certificate-authority-data"].as_str().expect("ca"))
            .expect("base64");
        let ca_file = self.dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).expect("write ca");
        let url = format!("{}{path}", cluster["server"].as_str().expect("server"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(&ca_file)
            .args(["-w", "\n%{http_code}", &url]);
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        let Ok(out) = cmd.output() else {
            eprintln!("\n!!!! WARNING: curl not found; skipping a raw HTTP check !!!!\n");
            return None;
        };
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("status line");
        Some((code.trim().parse().expect("code"), body.to_string()))
    }

    fn token(&self) -> String {
        let kc = parse_json(&std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig"));
        kc["users"][0]["user"]["token"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

#[test]
fn sigterm_stops_the_server() {
    let mut s = Server::start(1, &[]);
    let pid = i32::try_from(s.child.id()).expect("pid");
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    for _ in 0..100 {
        if let Some(status) = s.child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server ignored SIGTERM");
}

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PODCAP_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("k8s-real");
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!(
            "\n!!!! WARNING: recorded Kubernetes facts not found at {} (set PODCAP_SHARED_DIR); \
             skipping the comparison with a real API server !!!!\n",
            dir.display()
        );
        None
    }
}

fn fact(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Bodies and discovery entries are those of the real v1.28 server.
#[test]
fn matches_recorded_real_server() {
    let Some(dir) = shared_dir() else { return };
    let parse = |s: String| -> Value { serde_json::from_str(&s).expect("json") };
    assert_eq!(
        parse(api::unauthorized_body()),
        fact(&dir, "f-401-bad-token.json")
    );
    let pods = objects::resource("", "pods").expect("pods");
    assert_eq!(
        parse(api::not_found_body(pods, "nosuchpod")),
        fact(&dir, "f-404-get-nonexistent-pod.json")
    );
    // Byte for byte over HTTPS, field order included (the real server's struct order).
    let raw = |name: &str| compact(&std::fs::read_to_string(dir.join(name)).expect("fact"));
    let s = Server::start(1, &[]);
    if let Some((code, body)) = s.curl("/api/v1/namespaces/shop/pods/nosuchpod", Some(&s.token())) {
        assert_eq!(code, 404);
        assert_eq!(body.trim(), raw("f-404-get-nonexistent-pod.json"));
    }
    if let Some((code, body)) = s.curl("/api/v1/pods", Some("bad-token")) {
        assert_eq!(code, 401);
        assert_eq!(body.trim(), raw("f-401-bad-token.json"));
    }
    if let Some((code, body)) = s.curl("/api", Some(&s.token())) {
        assert_eq!(code, 200);
        let (ours, real) = (parse_json(&body), fact(&dir, "h-api.json"));
        assert_eq!(ours["kind"], real["kind"]);
        assert_eq!(ours["versions"], real["versions"]);
    }

    let real = fact(&dir, "h-api-v1.json");
    let ours = discovery::core_v1();
    assert_eq!(ours["kind"], real["kind"]);
    assert_eq!(ours["groupVersion"], real["groupVersion"]);
    let real_resources = real["resources"].as_array().expect("resources");
    for r in ours["resources"].as_array().expect("resources") {
        let same = real_resources.iter().find(|x| x["name"] == r["name"]);
        assert_eq!(Some(r), same, "discovery entry {}", r["name"]);
    }

    let real_version = fact(&dir, "h-version.json");
    let ours = version_info("1.28.7").expect("version");
    let keys = |v: &Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&ours), keys(&real_version));
    assert_eq!(ours["gitVersion"], real_version["gitVersion"]);

    // A demo pod has every top-level status/spec field the real pod shows (bar ephemeral ones).
    let real_pod = &fact(&dir, "f-list-pods-labelselector.json")["items"][0];
    let state = objects::State::new(&objects::Demo {
        pods: 1,
        namespace: "shop".into(),
        labels: [("app".to_string(), "mando".to_string())].into(),
        git_version: "v1.28.7".into(),
        seed: 1,
    });
    let ours = state.list("pods", Some("shop"))[0].clone();
    for part in ["spec", "status"] {
        for key in real_pod[part].as_object().expect("object").keys() {
            if key.starts_with("ephemeralContainer")
                || key == "tolerations"
                || key == "priority"
                || key == "enableServiceLinks"
                || key == "preemptionPolicy"
            {
                continue;
            }
            assert!(ours[part].get(key).is_some(), "demo pod lacks {part}.{key}");
        }
    }
}
