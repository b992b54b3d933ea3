//! Label changes and access reviews on the test cluster, judged by the real kubectl (and
//! podcap-merge): `kubectl label` / `kubectl annotate` (PATCH of a pod's metadata), label-selector
//! watches that turn a label change into DELETED / ADDED as the real apiserver's watch cache
//! does, and `kubectl auth can-i` (SelfSubjectAccessReview and, for `--list`,
//! SelfSubjectRulesReview) honouring `--rbac-deny`.

mod common;

use std::time::Duration;

use common::cluster::{expect_line, have_kubectl, parse_json, rows, Server};

fn first_pod(s: &Server) -> String {
    s.pod_names()[0].clone()
}

#[test]
fn label_and_annotate_change_a_pods_metadata() {
    have_kubectl();
    let s = Server::start(2, &[]);
    let pod = first_pod(&s);
    let rv0 = s.pod_json(&pod)["metadata"]["resourceVersion"].clone();
    assert_eq!(
        s.ok(&["label", "pod", &pod, "-n", "shop", "tier=web"])
            .trim(),
        format!("pod/{pod} labeled")
    );
    let p = s.pod_json(&pod);
    assert_eq!(p["metadata"]["labels"]["tier"], "web", "{p}");
    assert_eq!(p["metadata"]["labels"]["app"], "mando", "{p}");
    assert_ne!(
        p["metadata"]["resourceVersion"], rv0,
        "a change bumps the resourceVersion"
    );
    // kubectl refuses to overwrite without --overwrite (client side); with it, the value changes
    let err = s.fails(&["label", "pod", &pod, "-n", "shop", "tier=db"]);
    assert!(
        err.contains("'tier' already has a value (web), and --overwrite is false"),
        "{err}"
    );
    s.ok(&["label", "pod", &pod, "-n", "shop", "tier=db", "--overwrite"]);
    assert_eq!(s.pod_json(&pod)["metadata"]["labels"]["tier"], "db");
    assert_eq!(
        s.ok(&["label", "pod", &pod, "-n", "shop", "tier-"]).trim(),
        format!("pod/{pod} unlabeled")
    );
    assert!(s.pod_json(&pod)["metadata"]["labels"].get("tier").is_none());
    // many at once, by selector
    let out = s.ok(&[
        "label",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=mando",
        "team=blue",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" labeled")).count(),
        2,
        "{out}"
    );
    let blue = s.ok(&["get", "pods", "-n", "shop", "-l", "team=blue", "-o", "name"]);
    assert_eq!(blue.lines().count(), 2, "{blue}");
    // annotations
    assert_eq!(
        s.ok(&[
            "annotate",
            "pod",
            &pod,
            "-n",
            "shop",
            "note=captured by podcap"
        ])
        .trim(),
        format!("pod/{pod} annotated")
    );
    assert_eq!(
        s.pod_json(&pod)["metadata"]["annotations"]["note"],
        "captured by podcap"
    );
    // a stale resourceVersion is a conflict
    let err = s.fails(&[
        "label",
        "pod",
        &pod,
        "-n",
        "shop",
        "x=y",
        "--resource-version=1",
    ]);
    assert!(
        err.contains(&format!(
            "Error from server (Conflict): Operation cannot be fulfilled on pods \"{pod}\": the object has been modified; please apply your changes to the latest version and try again"
        )),
        "{err}"
    );
    // only metadata (and images) may change: the real message for anything else
    let err = s.fails(&[
        "patch",
        "pod",
        &pod,
        "-n",
        "shop",
        "-p",
        r#"{"spec":{"restartPolicy":"Never"}}"#,
    ]);
    assert!(
        err.contains(&format!("The Pod \"{pod}\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")),
        "{err}"
    );
    // status in a patch of the pod itself is ignored (it is the status subresource's)
    s.ok(&[
        "patch",
        "pod",
        &pod,
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    assert_eq!(s.pod_json(&pod)["status"]["phase"], "Running");
    // label values are validated by the server as well (curl: kubectl checks them first)
    let (code, body) = s
        .curl_send(
            "PATCH",
            &format!("/api/v1/namespaces/shop/pods/{pod}"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"tier":"no spaces"}}}"#,
        )
        .expect("curl");
    assert_eq!(code, 422, "{body}");
    let v = parse_json(&body);
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(
        v["message"],
        format!("Pod \"{pod}\" is invalid: metadata.labels: Invalid value: \"no spaces\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    );
    // unknown pod
    let err = s.fails(&["label", "pod", "nope", "-n", "shop", "a=b"]);
    assert!(err.contains("pods \"nope\" not found"), "{err}");
}

#[test]
fn a_label_change_leaves_and_rejoins_a_selector_watch() {
    have_kubectl();
    let s = Server::start(2, &[]);
    let pod = first_pod(&s);
    // As recorded on a real cluster: `kubectl get pods -l app=mando --watch-only
    // --output-watch-events` sees the relabelled pod DELETED and its return ADDED.
    let (mut selected, rx) = s.kubectl_stream(&[
        "get",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=mando",
        "--watch-only",
        "--output-watch-events",
    ]);
    let (mut all, rx_all) = s.kubectl_stream(&[
        "get",
        "pods",
        "-n",
        "shop",
        "--watch-only",
        "--output-watch-events",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    let rv = parse_json(&s.ok(&["get", "--raw", "/api/v1/namespaces/shop/pods"]))["metadata"]
        ["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.ok(&[
        "label",
        "pod",
        &pod,
        "-n",
        "shop",
        "app=gone",
        "--overwrite",
    ]);
    let mut seen = Vec::new();
    expect_line(&rx, &["DELETED", &pod, "Running"], &mut seen);
    s.ok(&[
        "label",
        "pod",
        &pod,
        "-n",
        "shop",
        "app=mando",
        "--overwrite",
    ]);
    expect_line(&rx, &["ADDED", &pod, "Running"], &mut seen);
    // without a selector the same changes are modifications
    let mut seen_all = Vec::new();
    expect_line(&rx_all, &["MODIFIED", &pod], &mut seen_all);
    expect_line(&rx_all, &["MODIFIED", &pod], &mut seen_all);
    assert!(
        !seen_all
            .iter()
            .any(|l| l.contains("DELETED") || l.contains("ADDED")),
        "{seen_all:?}"
    );
    for c in [&mut selected, &mut all] {
        let _ = c.kill();
        let _ = c.wait();
    }
    // The DELETED event carries the object as it was (label still app=mando) with the change's
    // resourceVersion; the ADDED one the pod as it is now.
    let events = s.raw_watch(&format!(
        "/api/v1/namespaces/shop/pods?watch=1&labelSelector=app%3Dmando&resourceVersion={rv}&timeoutSeconds=1"
    ));
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["DELETED", "ADDED"], "{events:?}");
    let gone = &events[0]["object"];
    assert_eq!(gone["metadata"]["name"], pod.as_str());
    assert_eq!(gone["metadata"]["labels"]["app"], "mando", "{gone}");
    let rv_deleted: u64 = gone["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("n");
    let rv_added: u64 = events[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("n");
    assert!(rv_deleted > rv.parse::<u64>().expect("n") && rv_added > rv_deleted);
    let gone_selector = s.raw_watch(&format!(
        "/api/v1/namespaces/shop/pods?watch=1&labelSelector=app%3Dgone&resourceVersion={rv}&timeoutSeconds=1"
    ));
    let types: Vec<&str> = gone_selector
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["ADDED", "DELETED"], "{gone_selector:?}");
    assert_eq!(
        gone_selector[1]["object"]["metadata"]["labels"]["app"],
        "gone"
    );
}

#[test]
fn auth_can_i_answers_as_the_rbac_denials_say() {
    have_kubectl();
    let open = Server::start(1, &[]);
    let yes = open.kubectl(&[
        "auth",
        "can-i",
        "patch",
        "pods",
        "--subresource=ephemeralcontainers",
        "-n",
        "shop",
    ]);
    assert!(yes.status.success());
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    let list = open.ok(&["auth", "can-i", "--list", "-n", "shop"]);
    let first = rows(&list);
    assert!(
        first
            .iter()
            .any(|r| r[0] == "*.*" && r.last().is_some_and(|v| v == "[*]")),
        "{list}"
    );
    drop(open);

    let s = Server::start(
        1,
        &[
            "--rbac-deny",
            "patch:pods/ephemeralcontainers",
            "--rbac-deny",
            "list:pods@default",
            "--rbac-deny",
            "get:pods/exec",
        ],
    );
    let ask = |args: &[&str]| -> (bool, String) {
        let mut a = vec!["auth", "can-i"];
        a.extend_from_slice(args);
        let out = s.kubectl(&a);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    // docs/rbac.md's checks, for yourself
    assert_eq!(
        ask(&[
            "patch",
            "pods",
            "--subresource=ephemeralcontainers",
            "-n",
            "shop"
        ]),
        (false, "no".into())
    );
    assert_eq!(
        ask(&["create", "pods", "--subresource=exec", "-n", "shop"]),
        (true, "yes".into())
    );
    assert_eq!(
        ask(&["get", "pods", "--subresource=exec", "-n", "shop"]),
        (false, "no".into())
    );
    assert_eq!(ask(&["list", "pods", "-n", "shop"]), (true, "yes".into()));
    assert_eq!(ask(&["watch", "pods", "-n", "shop"]), (true, "yes".into()));
    assert_eq!(
        ask(&["list", "pods", "-n", "default"]),
        (false, "no".into())
    );
    assert_eq!(
        ask(&["get", "deployments.apps", "-n", "shop"]),
        (true, "yes".into())
    );
    // and the answer matches what the server then does
    let err = s.fails(&["get", "pods", "-n", "default"]);
    assert!(err.contains("cannot list resource \"pods\""), "{err}");
    // --list shows the denied verbs missing
    let list = s.ok(&["auth", "can-i", "--list", "-n", "shop"]);
    let r = rows(&list);
    let verbs = |resource: &str| -> String {
        let row = r
            .iter()
            .find(|r| r[0] == resource)
            .unwrap_or_else(|| panic!("no {resource} in {list}"));
        row[3..].join(" ")
    };
    assert_eq!(verbs("pods/ephemeralcontainers"), "[get update]", "{list}");
    assert_eq!(verbs("pods/exec"), "[create]", "{list}");
    assert_eq!(
        verbs("pods"),
        "[create delete deletecollection get list patch update watch]",
        "{list}"
    );
    // and `can-i '*' '*'` is no for a user with denials
    assert_eq!(ask(&["*", "*"]), (false, "no".into()));
}
