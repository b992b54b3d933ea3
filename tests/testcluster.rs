//! The test cluster against the REAL kubectl: start `podcap-testcluster`, wait for `ready`, run
//! `kubectl --kubeconfig …` and check what it prints. Skipped (loudly) when kubectl is missing.
//! Facts recorded from a real v1.28 API server are read from `$PODCAP_SHARED_DIR/k8s-real`
//! (default `../shared`), never copied into the repository.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::cluster::{
    curl_result, expect_line, have_kubectl, kubectl_with, parse_json, rows, Server,
};
use podcap_testcluster::{discovery, objects, respond, version_info};
use serde_json::Value;

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
        let out = cmd
            .output()
            .expect("curl is needed (scripts/test installs it)");
        Some(curl_result(&out))
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
        parse(respond::unauthorized_body()),
        fact(&dir, "f-401-bad-token.json")
    );
    let pods = objects::resource("", "pods").expect("pods");
    assert_eq!(
        parse(respond::not_found_body(pods, "nosuchpod")),
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
        network: podcap_testcluster::nodes::PodNetwork::parse(
            podcap_testcluster::nodes::DEFAULT_POD_NETWORK,
            1,
        )
        .expect("network"),
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

fn first_mando_pod(s: &Server) -> String {
    rows(&s.ok(&["get", "pods", "-n", "shop", "-l", "app=mando"]))[0][0].clone()
}

#[test]
fn watch_sees_pods_created_and_deleted() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    let (mut watcher, rx) = s.kubectl_stream(&["get", "pods", "-w", "-n", "shop"]);
    let mut seen = Vec::new();
    expect_line(&rx, &["NAME", "READY", "STATUS"], &mut seen);
    expect_line(&rx, &["1/1", "Running"], &mut seen);
    expect_line(&rx, &["1/1", "Running"], &mut seen);

    assert_eq!(
        s.ok(&["run", "x", "--image=nginx", "-n", "shop"]).trim(),
        "pod/x created"
    );
    expect_line(&rx, &["x", "0/1", "Pending"], &mut seen);
    expect_line(&rx, &["x", "0/1", "ContainerCreating"], &mut seen);
    expect_line(&rx, &["x", "1/1", "Running"], &mut seen);
    let err = s.fails(&["run", "x", "--image=nginx", "-n", "shop"]);
    assert!(
        err.contains("Error from server (AlreadyExists): pods \"x\" already exists"),
        "{err}"
    );

    assert_eq!(
        s.ok(&["delete", "pod", "x", "-n", "shop"]).trim(),
        "pod \"x\" deleted"
    );
    expect_line(&rx, &["x", "Terminating"], &mut seen);
    let err = s.fails(&["get", "pod", "x", "-n", "shop"]);
    assert!(err.contains("pods \"x\" not found"), "{err}");
    let _ = watcher.kill();
    let _ = watcher.wait();

    // The new pod got the defaults, a uid and a pod IP of its own.
    assert_eq!(
        s.ok(&[
            "run",
            "y",
            "--image=nginx:1.25",
            "-n",
            "shop",
            "--labels=app=other"
        ])
        .trim(),
        "pod/y created"
    );
    let pod = s.wait_pod("y", "Running", |p| p["status"]["phase"] == "Running");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["metadata"]["uid"].as_str().map(str::len), Some(36));
    let wide = s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]);
    let mut ips: Vec<String> = rows(&wide).iter().map(|r| r[5].clone()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct pod IPs: {wide}");
}

#[test]
fn raw_watch_events_resource_versions_and_expiry() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    // No resourceVersion: one synthetic ADDED per matching pod, then (nothing) until timeout.
    let events = s.raw_watch(
        "/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=1&labelSelector=app%3Dmando",
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["type"] == "ADDED" && e["object"]["kind"] == "Pod"));

    let list_rv = parse_json(&s.ok(&["get", "--raw", "/api/v1/namespaces/shop/pods"]))["metadata"]
        ["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.ok(&["run", "w", "--image=nginx", "-n", "shop"]);
    s.wait_pod("w", "Running", |p| p["status"]["phase"] == "Running");
    s.ok(&["delete", "pod", "w", "-n", "shop", "--wait=false"]);
    std::thread::sleep(Duration::from_millis(500));
    // From the list's resourceVersion: every change since, in order, with rising versions.
    let events = s.raw_watch(&format!(
        "/api/v1/pods?watch=true&resourceVersion={list_rv}&timeoutSeconds=3&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dw"
    ));
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        &types[..5],
        ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"],
        "{events:?}"
    );
    assert_eq!(events[0]["object"]["status"]["phase"], "Pending");
    assert_eq!(events[2]["object"]["status"]["phase"], "Running");
    assert!(events[3]["object"]["metadata"]["deletionTimestamp"].is_string());
    assert!(
        types[5..].iter().all(|t| *t == "BOOKMARK") && types.len() > 5,
        "{types:?}"
    );
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .expect("rv")
        })
        .collect();
    assert!(rvs[..5].windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    assert!(rvs[0] > list_rv.parse::<u64>().expect("rv"));

    // Older than the retained window: 410 Expired.
    let err = s.fails(&["get", "--raw", "/api/v1/pods?watch=1&resourceVersion=5"]);
    assert!(
        err.contains("Error from server (Expired): too old resource version: 5 ("),
        "{err}"
    );
    if let Some((code, body)) = s.curl("/api/v1/pods?watch=1&resourceVersion=5", Some(&s.token())) {
        assert_eq!(code, 410);
        let v = parse_json(&body);
        assert_eq!(v["reason"], "Expired");
        assert_eq!(v["code"], 410);
    }
}

#[test]
fn apply_and_create_pod_manifests() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &[]);
    let manifest = s.dir.path().join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: app\n    image: nginx:1.25\n    ports: [{containerPort: 80}]\n",
    )
    .expect("manifest");
    let m = manifest.to_str().expect("path");
    assert_eq!(
        s.ok(&["apply", "-f", m, "-n", "shop"]).trim(),
        "pod/web created"
    );
    assert_eq!(
        s.ok(&["apply", "-f", m, "-n", "shop"]).trim(),
        "pod/web unchanged"
    );
    let err = s.fails(&["create", "-f", m, "-n", "shop"]);
    assert!(err.contains("pods \"web\" already exists"), "{err}");
    let pod = s.wait_pod("web", "Running", |p| p["status"]["phase"] == "Running");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert!(pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.213.")));
    let out = s.ok(&["get", "pods", "-n", "shop", "-l", "app=web"]);
    assert_eq!(rows(&out).len(), 1, "{out}");
}

#[test]
fn debug_adds_an_ephemeral_container() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &[]);
    let pod = first_mando_pod(&s);
    let rv0 = s.pod_json(&pod)["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();

    // Without -i kubectl only creates the container.
    let out = s.ok(&[
        "debug",
        "-n",
        "shop",
        &pod,
        "--image=busybox",
        "--target=app",
        "--",
        "sleep",
        "30",
    ]);
    let first = out
        .split("Defaulting debug container name to ")
        .nth(1)
        .and_then(|r| r.split('.').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let p = s.wait_pod(&pod, "ephemeral container running", |p| {
        p["status"]["ephemeralContainerStatuses"][0]["state"]["running"].is_object()
    });
    let ec = &p["spec"]["ephemeralContainers"][0];
    assert_eq!(ec["name"], first.as_str());
    assert_eq!(ec["image"], "busybox");
    assert_eq!(ec["targetContainerName"], "app");
    assert_eq!(ec["command"], serde_json::json!(["sleep", "30"]));
    assert_eq!(p["status"]["ephemeralContainerStatuses"][0]["ready"], false);

    // The watch saw the recorded sequence: spec only, then waiting (ContainerCreating), running.
    let events = s.raw_watch(&format!(
        "/api/v1/namespaces/shop/pods?watch=1&resourceVersion={rv0}&timeoutSeconds=1&fieldSelector=metadata.name%3D{pod}"
    ));
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e["type"] == "MODIFIED"));
    assert!(events[0]["object"]["status"]["ephemeralContainerStatuses"].is_null());
    assert_eq!(
        events[1]["object"]["status"]["ephemeralContainerStatuses"][0]["state"]["waiting"]
            ["reason"],
        "ContainerCreating"
    );
    assert!(
        events[2]["object"]["status"]["ephemeralContainerStatuses"][0]["state"]["running"]
            .is_object()
    );

    // With -i kubectl waits (a watch) for it to run, then attaches; its stdin (/dev/null) ends at
    // once, which detaches from a container without stdinOnce: rc 0.
    let out = s.kubectl(&[
        "debug",
        "-i",
        "-n",
        "shop",
        &pod,
        "--image=busybox",
        "--target=app",
        "--",
        "sleep",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let p = s.pod_json(&pod);
    let names: Vec<&str> = p["spec"]["ephemeralContainers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], first, "the newest is first: {names:?}");
    assert_eq!(p["spec"]["ephemeralContainers"][0]["stdin"], true);

    // PUT of the subresource with a duplicate name: 422.
    let mut dup = p.clone();
    // unconditional (no resourceVersion): the kubelet's relist may update the pod's status
    // between our GET and this PUT, which a conditional PUT meets as 409, as on a real cluster
    if let Some(m) = dup["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let copy = dup["spec"]["ephemeralContainers"][1].clone();
    dup["spec"]["ephemeralContainers"]
        .as_array_mut()
        .expect("list")
        .push(copy);
    let file = s.dir.path().join("dup.json");
    std::fs::write(&file, dup.to_string()).expect("write");
    let path = format!("/api/v1/namespaces/shop/pods/{pod}/ephemeralcontainers");
    let err = s.fails(&[
        "replace",
        "--raw",
        &path,
        "-f",
        file.to_str().expect("path"),
    ]);
    assert!(
        err.contains(&format!(
            "is invalid: spec.ephemeralContainers[2].name: Duplicate value: \"{first}\""
        )),
        "{err}"
    );

    // JSON patch adding a changed duplicate: both errors, as recorded.
    let patch = format!(
        r#"[{{"op":"add","path":"/spec/ephemeralContainers/-","value":{{"name":"{first}","image":"busybox","command":["sleep","2"]}}}}]"#
    );
    if let Some((code, body)) = s.curl_send("PATCH", &path, "application/json-patch+json", &patch) {
        assert_eq!(code, 422, "{body}");
        let v = parse_json(&body);
        assert_eq!(v["reason"], "Invalid");
        let prefix = format!("Pod \"{pod}\" is invalid: [spec.ephemeralContainers[2].name: Duplicate value: \"{first}\", spec.ephemeralContainers: Forbidden: existing ephemeral containers \"{first}\" may not be changed\n");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&prefix)),
            "{body}"
        );
        assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueDuplicate");
        assert_eq!(v["details"]["causes"][1]["reason"], "FieldValueForbidden");
    }
    // Removing one, via merge patch (replaces the list): 422 "may not be removed".
    let keep =
        serde_json::json!({"spec": {"ephemeralContainers": [p["spec"]["ephemeralContainers"][0]]}});
    if let Some((code, body)) = s.curl_send(
        "PATCH",
        &path,
        "application/merge-patch+json",
        &keep.to_string(),
    ) {
        assert_eq!(code, 422, "{body}");
        let v = parse_json(&body);
        assert_eq!(
            v["message"],
            format!("Pod \"{pod}\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"{first}\" may not be removed\n")
        );
    }
    // SMP with a name taken by a regular container; then one without an image.
    let smp = r#"{"spec":{"ephemeralContainers":[{"name":"app","image":"busybox"}]}}"#;
    if let Some((code, body)) = s.curl_send(
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        smp,
    ) {
        assert_eq!(code, 422, "{body}");
        assert_eq!(
            parse_json(&body)["message"],
            format!("Pod \"{pod}\" is invalid: spec.ephemeralContainers[0].name: Duplicate value: \"app\"")
        );
    }
    let smp = r#"{"spec":{"ephemeralContainers":[{"name":"noimage"}]}}"#;
    if let Some((code, body)) = s.curl_send(
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        smp,
    ) {
        assert_eq!(code, 422, "{body}");
        assert_eq!(
            parse_json(&body)["message"],
            format!("Pod \"{pod}\" is invalid: spec.ephemeralContainers[0].image: Required value")
        );
    }
    assert_eq!(
        s.pod_json(&pod)["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "failed patches change nothing"
    );
}

/// The 422 bodies for ephemeral containers are the real server's, computed on the recorded pod.
#[test]
fn ephemeral_validation_matches_recorded_real_server() {
    use podcap_testcluster::{ephemeral, patch, write};
    let Some(dir) = shared_dir() else { return };
    let pod = fact(&dir, "f-get-pod-mando-2-with-ephemeral.json");
    let check = |new_ecs: Vec<Value>, fact_name: &str| {
        let mut new_ecs = new_ecs;
        new_ecs.iter_mut().for_each(write::default_container);
        let causes = ephemeral::validate(&pod, &new_ecs);
        let ours: Value =
            serde_json::from_str(&write::invalid_body("Pod", "mando-2", &causes)).expect("json");
        let real = fact(&dir, fact_name);
        if fact_name == "f-422-change-existing.json" {
            // The Go diff after the first line is not reproduced.
            let first = |v: &Value| {
                v["message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .map(str::to_string)
            };
            assert_eq!(first(&ours), first(&real));
            assert_eq!(
                ours["details"]["causes"][0]["field"],
                real["details"]["causes"][0]["field"]
            );
            assert_eq!(
                ours["details"]["causes"][0]["reason"],
                real["details"]["causes"][0]["reason"]
            );
        } else {
            assert_eq!(ours, real, "{fact_name}");
        }
    };
    let smp = |p: Value| {
        let mut pod = pod.clone();
        patch::strategic_merge_patch(&mut pod, &p);
        pod["spec"]["ephemeralContainers"]
            .as_array()
            .cloned()
            .expect("list")
    };
    check(
        smp(
            serde_json::json!({"spec": {"ephemeralContainers": [{"name": "app", "image": "k8sfeas.local/netshoot:1"}]}}),
        ),
        "f-422-name-collides-with-container.json",
    );
    check(
        smp(
            serde_json::json!({"spec": {"ephemeralContainers": [{"name": "x", "image": "k8sfeas.local/netshoot:1", "targetContainerName": "nope"}]}}),
        ),
        "f-422-bad-target.json",
    );
    let mut removed = pod["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .expect("list");
    removed.retain(|c| c["name"] != "cap-e-kill");
    check(removed, "f-422-remove-existing-jsonpatch.json");
    check(
        smp(
            serde_json::json!({"spec": {"ephemeralContainers": [{"name": "cap-b", "command": ["tcpdump", "-i", "eth0", "-U", "-w", "-"]}]}}),
        ),
        "f-422-change-existing.json",
    );
    // A JSON-patch-added duplicate: the same two causes as the real server, in its order.
    let mut dup = pod["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .expect("list");
    dup.push(serde_json::json!({"name": "cap-b", "image": "k8sfeas.local/netshoot:1", "command": ["sleep", "1"]}));
    dup.iter_mut().for_each(write::default_container);
    let ours = ephemeral::validate(&pod, &dup);
    let real = fact(&dir, "f-422-duplicate-name-jsonpatch.json");
    assert_eq!(ours.len(), 2);
    // (The recorded pod had 7 ephemeral containers then, 8 now: compare the index-free field.)
    let unindexed = |f: &str| f.split('[').next().unwrap_or("").to_string();
    for (i, c) in ours.iter().enumerate() {
        assert_eq!(
            unindexed(&c.field),
            unindexed(
                real["details"]["causes"][i]["field"]
                    .as_str()
                    .expect("field")
            )
        );
        assert_eq!(
            c.reason,
            real["details"]["causes"][i]["reason"]
                .as_str()
                .expect("reason")
        );
    }
    // The recorded watch stream: `type` comes before `object` on every line.
    let text = std::fs::read_to_string(dir.join("f-watch-events.jsonl")).expect("watch facts");
    assert!(text.lines().all(|l| l.starts_with("{\"type\":\"")));
    // kubectl's SMP for a new container (b-patch-request.json) prepends it.
    let mut before = pod.clone();
    before["spec"]["ephemeralContainers"] = serde_json::json!([{"name": "older", "image": "x"}]);
    patch::strategic_merge_patch(&mut before, &fact(&dir, "b-patch-request.json"));
    assert_eq!(before["spec"]["ephemeralContainers"][0]["name"], "cap-b");
    assert_eq!(before["spec"]["ephemeralContainers"][1]["name"], "older");
}

/// Whether the server runs pods in network namespaces (root); tests say which mode they ran in.
fn netns_mode() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0
        && std::env::var_os("PODCAP_TESTCLUSTER_NO_NETNS").is_none();
    if !root {
        eprintln!("\n!!!! NOTE: not root (or PODCAP_TESTCLUSTER_NO_NETNS): pods share the host network namespace !!!!\n");
    }
    root
}

#[test]
fn exec_runs_a_command_and_returns_its_exit_code() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    let pod = first_mando_pod(&s);
    let out = s.kubectl(&[
        "exec",
        "-n",
        "shop",
        &pod,
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = s.ok(&[
        "exec",
        "-n",
        "shop",
        &pod,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(out, "out\n");
    if netns_mode() {
        // The pod's own network namespace: eth0 carries the pod IP.
        let ip = s.pod_json(&pod)["status"]["podIP"]
            .as_str()
            .expect("podIP")
            .to_string();
        let out = s.ok(&[
            "exec", "-n", "shop", &pod, "--", "ip", "-br", "addr", "show", "eth0",
        ]);
        assert!(out.contains(&format!("{ip}/16")), "{out}");
    }
    let err = s.fails(&["exec", "-n", "shop", &pod, "--", "no-such-command-xyz"]);
    assert!(err.contains("executable file not found in $PATH"), "{err}");
}

/// A whole pcap: 24-byte header, then exactly `n` records. Returns the record count.
fn pcap_records(data: &[u8]) -> usize {
    assert!(data.len() >= 24, "short pcap: {} bytes", data.len());
    assert_eq!(&data[..4], b"\xd4\xc3\xb2\xa1", "magic");
    let mut at = 24;
    let mut n = 0;
    while at < data.len() {
        assert!(at + 16 <= data.len(), "truncated record header at {at}");
        let incl = u32::from_le_bytes(data[at + 8..at + 12].try_into().expect("4")) as usize;
        at += 16 + incl;
        assert!(at <= data.len(), "truncated record");
        n += 1;
    }
    n
}

#[test]
fn debug_runs_tcpdump_and_yields_a_whole_pcap() {
    have_kubectl();
    assert!(
        Command::new("tcpdump").arg("--version").output().is_ok(),
        "tcpdump is needed (scripts/test installs it)"
    );
    let s = Server::start(2, &[]);
    let pod = first_mando_pod(&s);
    // As root the demo pods ping each other inside their namespaces; otherwise tcpdump sees the
    // host's traffic (at least kubectl's own connection on lo).
    netns_mode();
    let script = format!(
        "(echo; sleep 8) | kubectl --kubeconfig {} --cache-dir {} debug -n shop -i {pod} \
         --image=nicolaka/netshoot --target=app -- sh -c 'read x; exec tcpdump -i any -c 5 -U -w -'",
        s.kubeconfig().display(),
        s.dir.path().join("cache").display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("5 packets captured"), "{err}");
    // kubectl prints its own lines first ("Targeting container…", "Defaulting debug container…").
    let start = out
        .stdout
        .windows(4)
        .position(|w| w == b"\xd4\xc3\xb2\xa1")
        .unwrap_or_else(|| {
            panic!(
                "no pcap magic in {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    assert!(
        String::from_utf8_lossy(&out.stdout[..start]).starts_with("Targeting container \"app\""),
        "prefix"
    );
    assert_eq!(pcap_records(&out.stdout[start..]), 5);
    let p = s.wait_pod(&pod, "debug container terminated", |p| {
        p["status"]["ephemeralContainerStatuses"][0]["state"]["terminated"].is_object()
    });
    let t = &p["status"]["ephemeralContainerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{t}");
    assert_eq!(t["reason"], "Completed", "{t}");
}

impl Server {
    /// Adds ephemeral container `name` running `script` (sh -c) with stdin; waits until running.
    fn add_shell_container(&self, pod: &str, name: &str, stdin_once: bool, script: &str) {
        let body = serde_json::json!({"spec": {"ephemeralContainers": [{"name": name,
            "image": "busybox", "stdin": true, "stdinOnce": stdin_once,
            "command": ["sh", "-c", script]}]}});
        let path = format!("/api/v1/namespaces/shop/pods/{pod}/ephemeralcontainers");
        let (code, resp) = self
            .curl_send(
                "PATCH",
                &path,
                "application/strategic-merge-patch+json",
                &body.to_string(),
            )
            .expect("curl is needed for this test");
        assert_eq!(code, 200, "{resp}");
        self.wait_pod(pod, "container running", |p| {
            container_state(p, name)["running"].is_object()
        });
    }

    /// `kubectl attach -i` with a piped stdin that stays open; stderr goes to a file.
    fn attach(&self, pod: &str, name: &str, err: &Path) -> Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(["attach", "-i", "-n", "shop", pod, "-c", name])
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(err).expect("stderr file"))
            .spawn()
            .expect("spawn kubectl attach")
    }
}

fn container_state(pod: &Value, name: &str) -> Value {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .map_or(Value::Null, |s| s["state"].clone())
}

#[test]
fn attach_with_stdin_once_closes_stdin_on_detach() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &[]);
    let pod = first_mando_pod(&s);
    let script = "echo started >&2; cat; echo stdin-closed >&2; sleep 1; echo bye >&2; exit 7";

    // stdinOnce, client killed with SIGKILL: stdin closes, the container ends (exit 7, Error).
    s.add_shell_container(&pod, "once-kill", true, script);
    let err_file = s.dir.path().join("kill.err");
    let mut k = s.attach(&pod, "once-kill", &err_file);
    let mut stdout = k.stdout.take().expect("stdout");
    {
        use std::io::{Read as _, Write as _};
        let mut stdin = k.stdin.take().expect("stdin");
        stdin.write_all(b"hello\n").expect("write");
        let mut buf = [0u8; 6];
        stdout.read_exact(&mut buf).expect("echo through attach");
        assert_eq!(&buf, b"hello\n");
        k.kill().expect("kill -9");
        let _ = k.wait();
        drop(stdin);
    }
    let p = s.wait_pod(&pod, "once-kill terminated", |p| {
        container_state(p, "once-kill")["terminated"].is_object()
    });
    let t = &container_state(&p, "once-kill")["terminated"];
    assert_eq!(
        (t["exitCode"].clone(), t["reason"].clone()),
        (7.into(), "Error".into()),
        "{t}"
    );
    let err = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(
        !err.contains("started"),
        "output before attach is not replayed: {err}"
    );

    // Attaching to the terminated container: the recorded 500.
    let err = s.fails(&["attach", "-n", "shop", &pod, "-c", "once-kill"]);
    assert!(
        err.contains(&format!("container once-kill not found in pod {pod}_shop")),
        "{err}"
    );

    // stdinOnce, graceful stdin EOF: kubectl stays attached, sees the rest, exits 0.
    s.add_shell_container(&pod, "once-eof", true, script);
    let err_file = s.dir.path().join("eof.err");
    let mut k = s.attach(&pod, "once-eof", &err_file);
    drop(k.stdin.take());
    let status = k.wait().expect("wait");
    let err = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(status.success(), "{err}");
    assert!(err.contains("stdin-closed") && err.contains("bye"), "{err}");
    s.wait_pod(&pod, "once-eof terminated", |p| {
        container_state(p, "once-eof")["terminated"]["exitCode"] == 7
    });

    // Without stdinOnce, neither kill nor EOF closes the container's stdin: it keeps running.
    s.add_shell_container(&pod, "many", false, script);
    let mut k = s.attach(&pod, "many", &s.dir.path().join("many.err"));
    std::thread::sleep(Duration::from_millis(500));
    k.kill().expect("kill -9");
    let _ = k.wait();
    let mut k = s.attach(&pod, "many", &s.dir.path().join("many2.err"));
    drop(k.stdin.take());
    let _ = k.wait();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        container_state(&s.pod_json(&pod), "many")["running"].is_object(),
        "keeps running"
    );
}

impl Server {
    /// Status line, headers and (for non-101) body of a WebSocket upgrade offering `protocols`.
    fn ws_handshake(&self, path: &str, protocols: &str) -> String {
        let kc = parse_json(&std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig"));
        let url = format!(
            "{}{path}",
            kc["clusters"][0]["cluster"]["server"]
                .as_str()
                .expect("server")
        );
        self.curl(path, None); // writes ca.pem
        let out = Command::new("curl")
            .args(["-sS", "-i", "--http1.1", "--max-time", "2", "--cacert"])
            .arg(self.dir.path().join("ca.pem"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token()))
            .args([
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: websocket",
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "-H",
            ])
            .arg(format!("Sec-WebSocket-Protocol: {protocols}"))
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn websocket_subprotocols_as_recorded() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is needed (scripts/test installs it)"
    );
    for (version, offer, expect) in [
        (
            "1.30",
            "v5.channel.k8s.io, v4.channel.k8s.io",
            Some("v5.channel.k8s.io"),
        ),
        ("1.30", "v4.channel.k8s.io", Some("v4.channel.k8s.io")),
        (
            "1.28.7",
            "v5.channel.k8s.io, v4.channel.k8s.io",
            Some("v4.channel.k8s.io"),
        ),
        ("1.28.7", "v5.channel.k8s.io", None),
        ("1.30", "v3.channel.k8s.io", None),
    ] {
        let s = Server::start(1, &["--server-version", version]);
        let pod = {
            let (_, body) = s
                .curl("/api/v1/namespaces/shop/pods", Some(&s.token()))
                .expect("curl");
            parse_json(&body)["items"][0]["metadata"]["name"]
                .as_str()
                .expect("name")
                .to_string()
        };
        let path = format!("/api/v1/namespaces/shop/pods/{pod}/exec?command=true&stdout=true");
        let resp = s.ws_handshake(&path, offer);
        let head = resp.to_ascii_lowercase();
        match expect {
            Some(p) => {
                assert!(
                    head.starts_with("http/1.1 101"),
                    "{version} {offer}: {resp}"
                );
                assert!(
                    head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
                    "{resp}"
                );
                assert!(
                    head.contains(&format!("sec-websocket-protocol: {p}")),
                    "{resp}"
                );
            }
            None => {
                // Recorded: 403, Connection: close, empty body.
                assert!(
                    head.starts_with("http/1.1 403"),
                    "{version} {offer}: {resp}"
                );
                assert!(head.contains("connection: close"), "{resp}");
                assert!(resp.ends_with("\r\n\r\n"), "empty body: {resp:?}");
            }
        }
        // Unknown container and missing upgrade: the recorded 400s.
        let (code, body) = s
            .curl(
                &format!("/api/v1/namespaces/shop/pods/{pod}/attach?container=nosuch&stdout=true"),
                Some(&s.token()),
            )
            .expect("curl");
        assert_eq!(code, 400);
        assert_eq!(
            parse_json(&body)["message"],
            format!("container nosuch is not valid for pod {pod}")
        );
        let (code, body) = s
            .curl(
                &format!("/api/v1/namespaces/shop/pods/{pod}/attach?container=app&stdout=true"),
                Some(&s.token()),
            )
            .expect("curl");
        assert_eq!(
            (code, parse_json(&body)["message"].clone()),
            (400, "Upgrade request required".into())
        );
    }
}

/// The recorded PodSecurity messages, reproduced from the recorded pod (app + older ephemeral
/// containers) with the new container prepended, as the real admission sees it.
#[test]
fn pod_security_messages_match_recorded_real_server() {
    use podcap_testcluster::policy::psa_violations;
    let Some(dir) = shared_dir() else { return };
    let pod = fact(&dir, "f-200-psa-baseline-no-securitycontext.json");
    let with = |level: &str, ec: Value, older: bool| -> String {
        let mut spec = pod["spec"].clone();
        let mut ecs = if older {
            spec["ephemeralContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        ecs.insert(0, ec);
        spec["ephemeralContainers"] = Value::Array(ecs);
        format!(
            "pods \"mando-1\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
            psa_violations(level, &spec).join(", ")
        )
    };
    let caps = |name: &str, add: &[&str]| serde_json::json!({"name": name, "image": "i", "securityContext": {"capabilities": {"add": add}}});
    let real = |f: &str| {
        fact(&dir, f)["message"]
            .as_str()
            .expect("message")
            .to_string()
    };
    // baseline checks only capabilities, so the older containers do not show up there.
    assert_eq!(
        with("baseline", caps("psa-b1", &["NET_RAW", "NET_ADMIN"]), true),
        real("f-403-psa-baseline-netraw-netadmin.json")
    );
    assert_eq!(
        with("baseline", caps("psa-b2", &["NET_RAW"]), true),
        real("f-403-psa-baseline-netraw-only.json")
    );
    assert_eq!(
        with(
            "restricted",
            caps("psa-r1", &["NET_RAW", "NET_ADMIN"]),
            true
        ),
        real("f-403-psa-restricted-netraw-netadmin.json")
    );
    assert_eq!(
        with(
            "restricted",
            serde_json::json!({"name": "psa-r2", "image": "i"}),
            true
        ),
        real("f-403-psa-restricted-no-securitycontext.json")
    );
    let compliant = serde_json::json!({"name": "psa-r3", "image": "i", "securityContext": {
        "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}});
    assert_eq!(
        with("restricted", compliant, true),
        real("f-403-psa-restricted-compliant-ec.json")
    );
}

impl Server {
    fn patch_ec(&self, pod: &str, ec: &Value) -> (u16, Value) {
        let body = serde_json::json!({"spec": {"ephemeralContainers": [ec]}});
        let (code, resp) = self
            .curl_send(
                "PATCH",
                &format!("/api/v1/namespaces/shop/pods/{pod}/ephemeralcontainers"),
                "application/strategic-merge-patch+json",
                &body.to_string(),
            )
            .expect("curl is needed for this test");
        (code, parse_json(&resp))
    }
}

#[test]
fn pod_security_baseline_and_restricted() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &["--pod-security", "baseline"]);
    let pod = first_mando_pod(&s);
    let labels = s.ok(&["get", "ns", "shop", "--show-labels"]);
    assert!(
        labels.contains("pod-security.kubernetes.io/enforce=baseline"),
        "{labels}"
    );
    // kubectl debug --profile=netadmin adds NET_ADMIN and NET_RAW.
    let err = s.fails(&[
        "debug",
        &pod,
        "--image=busybox",
        "-c",
        "psa-b1",
        "--profile=netadmin",
        "--",
        "true",
    ]);
    assert!(
        err.contains(&format!("Error from server (Forbidden): pods \"{pod}\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"psa-b1\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)")),
        "{err}"
    );
    let (code, body) = s.patch_ec(
        &pod,
        &serde_json::json!({"name": "psa-b2", "image": "busybox",
        "command": ["true"], "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}),
    );
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["details"],
        serde_json::json!({"name": pod, "kind": "pods"})
    );
    // No securityContext: admitted (and it runs).
    let (code, _) = s.patch_ec(
        &pod,
        &serde_json::json!({"name": "psa-b3", "image": "busybox", "command": ["true"]}),
    );
    assert_eq!(code, 200);
    drop(s);

    let s = Server::start(1, &["--pod-security", "restricted"]);
    let pod = first_mando_pod(&s);
    let compliant = serde_json::json!({"name": "psa-r3", "image": "busybox", "command": ["true"],
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}});
    let (code, body) = s.patch_ec(&pod, &compliant);
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        format!("pods \"{pod}\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")")
    );
    let err = s.fails(&["debug", &pod, "--image=busybox", "--", "true"]);
    assert!(err.contains("violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (containers \"app\", \"debugger-"), "{err}");
}

#[test]
fn rbac_denials_as_recorded() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(
        1,
        &[
            "--rbac-deny",
            "patch:pods/ephemeralcontainers",
            "--rbac-deny",
            "list:pods@default",
            "--rbac-deny",
            "get:pods/attach",
            "--rbac-deny",
            "create:pods/exec",
        ],
    );
    let pod = first_mando_pod(&s);
    let dir = shared_dir();
    let same_as = |body: &Value, f: &str| {
        if let Some(dir) = &dir {
            let real = serde_json::to_string(&fact(dir, f))
                .expect("json")
                .replace("mando-2", &pod);
            assert_eq!(serde_json::to_string(body).expect("json"), real, "{f}");
        }
    };
    let (code, body) = s.patch_ec(&pod, &serde_json::json!({"name": "x", "image": "busybox"}));
    assert_eq!(code, 403);
    same_as(&body, "f-403-rbac-patch-ephemeralcontainers.json");
    let err = s.fails(&["debug", &pod, "--image=busybox", "--", "true"]);
    assert!(err.contains(&format!("Error from server (Forbidden): pods \"{pod}\" is forbidden: User \"system:serviceaccount:shop:podcap\" cannot patch resource \"pods/ephemeralcontainers\" in API group \"\" in the namespace \"shop\"")), "{err}");
    let err = s.fails(&["get", "pods", "-n", "default"]);
    assert!(err.contains("Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:shop:podcap\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""), "{err}");
    assert_eq!(rows(&s.ok(&["get", "pods", "-n", "shop"])).len(), 1);
    // A WebSocket upgrade (GET) is authorized as `get` before 1.35.
    let resp = s.ws_handshake(
        &format!("/api/v1/namespaces/shop/pods/{pod}/attach?container=app&stdout=true"),
        "v4.channel.k8s.io",
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let body = parse_json(resp.split("\r\n\r\n").nth(1).expect("body"));
    same_as(&body, "f-403-rbac-attach-get.json");
    // A POST is `create`: exec denied, attach (create allowed) goes on to the upgrade check.
    let (code, body) = s
        .curl_send(
            "POST",
            &format!("/api/v1/namespaces/shop/pods/{pod}/exec?command=true"),
            "application/json",
            "",
        )
        .expect("curl");
    assert_eq!(code, 403);
    assert!(
        body.contains("cannot create resource \\\"pods/exec\\\""),
        "{body}"
    );
    let (code, body) = s
        .curl_send(
            "POST",
            &format!("/api/v1/namespaces/shop/pods/{pod}/attach?container=app&stdout=true"),
            "application/json",
            "",
        )
        .expect("curl");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn ephemeral_containers_disabled() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &["--no-ephemeral-containers"]);
    let pod = first_mando_pod(&s);
    let err = s.fails(&["debug", &pod, "--image=busybox", "--", "true"]);
    assert!(err.contains("error: ephemeral containers are disabled for this cluster (error from server: \"the server could not find the requested resource\")"), "{err}");
    let (code, body) = s.patch_ec(&pod, &serde_json::json!({"name": "x", "image": "busybox"}));
    assert_eq!(code, 404);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["details"], serde_json::json!({}));
}

#[test]
fn image_pull_failures_start_nothing() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(1, &["--image-pull-fail", "example.com/broken:1"]);
    let pod = first_mando_pod(&s);
    let marker = s.dir.path().join("started");
    let touch = serde_json::json!(["touch", marker.to_string_lossy()]);
    let (code, body) = s.patch_ec(&pod, &serde_json::json!({"name": "pf", "image": "registry.invalid/netshoot:1", "command": touch}));
    assert_eq!(code, 200);
    let rv = body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.wait_pod(&pod, "ImagePullBackOff", |p| {
        container_state(p, "pf")["waiting"]["reason"] == "ImagePullBackOff"
    });
    let events = s.raw_watch(&format!(
        "/api/v1/namespaces/shop/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1"
    ));
    let reasons: Vec<String> = events
        .iter()
        .map(|e| {
            container_state(&e["object"], "pf")["waiting"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        reasons.starts_with(&[
            "ContainerCreating".into(),
            "ErrImagePull".into(),
            "ImagePullBackOff".into()
        ]),
        "{reasons:?}"
    );
    assert_eq!(
        container_state(&events[2]["object"], "pf")["waiting"]["message"],
        "Back-off pulling image \"registry.invalid/netshoot:1\""
    );
    let err_msg = events[1]["object"]["status"]["ephemeralContainerStatuses"][0]["state"]
        ["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err_msg.starts_with("rpc error: code = Unknown desc = failed to pull and unpack image \"registry.invalid/netshoot:1\""), "{err_msg}");
    // pull policy Never: the recorded ErrImageNeverPull.
    let (code, _) = s.patch_ec(&pod, &serde_json::json!({"name": "pn", "image": "example.com/broken:1", "imagePullPolicy": "Never", "command": touch}));
    assert_eq!(code, 200);
    let p = s.wait_pod(&pod, "ErrImageNeverPull", |p| {
        container_state(p, "pn")["waiting"]["reason"] == "ErrImageNeverPull"
    });
    if let Some(dir) = shared_dir() {
        let real = fact(&dir, "f-ecstatus-waiting-ErrImageNeverPull.json")["state"]["waiting"]
            ["message"]
            .as_str()
            .expect("message")
            .replace("k8sfeas.local/doesnotexist:1", "example.com/broken:1");
        assert_eq!(
            container_state(&p, "pn")["waiting"]["message"],
            real.as_str()
        );
    }
    assert!(
        !marker.exists(),
        "no process may start for an image that cannot be pulled"
    );
    // An ordinary one still runs, and exec into a running ephemeral container works.
    let (code, _) = s.patch_ec(
        &pod,
        &serde_json::json!({"name": "ok", "image": "busybox", "command": ["sleep", "30"]}),
    );
    assert_eq!(code, 200);
    s.wait_pod(&pod, "running", |p| {
        container_state(p, "ok")["running"].is_object()
    });
    assert_eq!(
        s.ok(&["exec", &pod, "-c", "ok", "--", "echo", "hi"]),
        "hi\n"
    );
}

#[test]
fn demo_pods_serve_and_curl_http() {
    if !have_kubectl() || !netns_mode() {
        return;
    }
    let s = Server::start(2, &[]);
    let out = s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]);
    let pods: Vec<(String, String)> = rows(&out)
        .into_iter()
        .map(|r| (r[0].clone(), r[5].clone()))
        .collect();
    // python3 needs a moment to listen.
    let mut served = 0;
    for _ in 0..30 {
        served = 0;
        for (_, ip) in &pods {
            let url = format!("http://{ip}:80/");
            let out = s.kubectl(&[
                "exec",
                &pods[0].0,
                "--",
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ]);
            served += usize::from(out.stdout == b"200");
        }
        if served == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served, 1, "exactly one of two demo pods serves HTTP");
    for (name, _) in &pods {
        let out = s.kubectl(&[
            "exec", name, "--", "timeout", "5", "tcpdump", "-i", "any", "-n", "-c", "2", "tcp",
            "port", "80",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("2 packets captured"), "{name}: {err}");
    }
}

/// The port of a server, from its kubeconfig's `server: https://127.0.0.1:PORT`.
fn server_port(s: &Server) -> String {
    let kc = parse_json(&std::fs::read_to_string(s.kubeconfig()).expect("kubeconfig"));
    let url = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .to_string();
    url.rsplit(':').next().expect("port").to_string()
}

fn netns_names() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn crashed_server_leftovers_are_removed_at_next_start() {
    if !netns_mode() {
        return;
    }
    let mut first = Server::start(2, &[]);
    let port = server_port(&first);
    let pid = first.child.id();
    let prefix = format!("podcap-tc-pc{port}-{pid}-");
    let mine = |names: &[String]| names.iter().filter(|n| n.starts_with(&prefix)).count();
    assert_eq!(mine(&netns_names()), 2, "{:?}", netns_names());
    assert!(link_exists(&format!("pc{port}br")));
    assert!(link_exists(&format!("pc{port}v1")));
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("wait");
    // Left behind by the crash (not asserted: a server of a parallel test may already have
    // removed them).

    let second = Server::start(1, &[]);
    assert_eq!(mine(&netns_names()), 0, "{:?}", netns_names());
    assert!(!link_exists(&format!("pc{port}br")));
    assert!(!link_exists(&format!("pc{port}v1")));
    // The second server's own namespace is there, and goes with a normal stop.
    let port2 = server_port(&second);
    let pid2 = second.child.id();
    let prefix2 = format!("podcap-tc-pc{port2}-{pid2}-");
    assert_eq!(
        netns_names()
            .iter()
            .filter(|n| n.starts_with(&prefix2))
            .count(),
        1
    );
    drop(second);
    assert!(!netns_names().iter().any(|n| n.starts_with(&prefix2)));
    assert!(!link_exists(&format!("pc{port2}br")));
    // `first` was reaped above; its drop's SIGTERM goes to a PID freed milliseconds ago.
    drop(first);
}

#[test]
fn pods_added_and_deleted_mid_capture() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(
        2,
        &[
            "--add-pods",
            "1@1.5",
            "--add-pod-after",
            "1.5",
            "--delete-pod-after",
            "3",
        ],
    );
    let (mut watcher, rx) = s.kubectl_stream(&[
        "get",
        "pods",
        "-w",
        "-n",
        "shop",
        "-l",
        "app=mando",
        "--output-watch-events",
    ]);
    let mut seen = Vec::new();
    expect_line(&rx, &["EVENT", "NAME", "READY", "STATUS"], &mut seen);
    expect_line(&rx, &["ADDED", "1/1", "Running"], &mut seen);
    expect_line(&rx, &["ADDED", "1/1", "Running"], &mut seen);
    let added1 = expect_line(&rx, &["ADDED", "0/1", "Pending"], &mut seen);
    let added2 = expect_line(&rx, &["ADDED", "0/1", "Pending"], &mut seen);
    let new: Vec<String> = [added1, added2]
        .iter()
        .map(|l| l.split_whitespace().nth(1).expect("name").to_string())
        .collect();
    assert_ne!(new[0], new[1]);
    for n in &new {
        expect_line(&rx, &["MODIFIED", n, "1/1", "Running"], &mut seen);
    }
    let term = expect_line(&rx, &["MODIFIED", "Terminating"], &mut seen);
    let gone = term.split_whitespace().nth(1).expect("name").to_string();
    expect_line(&rx, &["DELETED", &gone], &mut seen);
    let _ = watcher.kill();
    let _ = watcher.wait();

    // The new pods look like the Deployment's: same labels, owned by its ReplicaSet.
    let pod = s.pod_json(&new[0]);
    let rs = pod["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .expect("owner");
    assert!(new[0].starts_with(&format!("{rs}-")), "{}", new[0]);
    assert_eq!(pod["metadata"]["labels"]["app"], "mando");
    assert!(pod["metadata"]["labels"]["pod-template-hash"].is_string());
    assert_eq!(
        rows(&s.ok(&["get", "pods", "-n", "shop", "-l", "app=mando"])).len(),
        3
    );

    // The Deployment's replicas follow: 2 + 2 - 1.
    std::thread::sleep(Duration::from_millis(500));
    let d = parse_json(&s.ok(&["get", "deploy", "mando", "-n", "shop", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 3, "{d}");
    assert_eq!(d["status"]["replicas"], 3, "{d}");
    assert_eq!(d["status"]["readyReplicas"], 3, "{d}");
    let table = s.ok(&["get", "deploy", "-n", "shop"]);
    assert_eq!(rows(&table)[0][1], "3/3", "{table}");
}

#[test]
fn created_pods_run_their_command() {
    if !have_kubectl() {
        return;
    }
    let s = Server::start(2, &[]);
    let out = s.dir.path().join("cmd-out");
    let script = format!(
        "ip -br addr show eth0 > {0} 2>&1 || echo no-netns > {0}; echo done >> {0}; exit 3",
        out.display()
    );
    s.ok(&[
        "run",
        "job",
        "--image=busybox",
        "--restart=Never",
        "-n",
        "shop",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let pod = s.wait_pod("job", "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{pod}");
    assert_eq!(t["reason"], "Error", "{pod}");
    let text = std::fs::read_to_string(&out).expect("the command ran");
    assert!(text.ends_with("done\n"), "{text}");
    if netns_mode() {
        let ip = pod["status"]["podIP"].as_str().expect("podIP");
        assert!(text.contains(&format!("{ip}/16")), "{text}");
    }

    // A command that does not exist: StartError, exit 128.
    s.ok(&[
        "run",
        "bad",
        "--image=busybox",
        "-n",
        "shop",
        "--",
        "no-such-program-xyz",
    ]);
    let pod = s.wait_pod("bad", "StartError", |p| {
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "StartError"
    });
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        128
    );

    // No command: as root, the demo clients' workload (ping + curl loop) in its namespace.
    if netns_mode() {
        s.ok(&["run", "web", "--image=nginx", "-n", "shop"]);
        s.wait_pod("web", "Running", |p| p["status"]["phase"] == "Running");
        let comms = s.ok(&[
            "exec",
            "-n",
            "shop",
            "web",
            "--",
            "sh",
            "-c",
            "for p in $(ip netns pids $(ip netns identify $$)); do cat /proc/$p/comm 2>/dev/null; done; true",
        ]);
        assert!(comms.lines().any(|l| l == "ping"), "{comms}");
        assert!(comms.lines().any(|l| l == "curl" || l == "sh"), "{comms}");
    }
}
