//! Legacy (unaggregated) discovery documents, copied in shape from a real v1.28 API server.

use serde_json::{json, Value};

/// `GET /api`.
pub fn api_versions(address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv], "preferredVersion": gv})
}

/// `GET /apis`: only the groups this server serves.
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1",
        "groups": [group("apps"), group(super::access::GROUP)]})
}

/// `GET /apis/apps`, `GET /apis/authorization.k8s.io`.
pub fn group_doc(name: &str) -> Value {
    let mut g = group(name);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const GPU: &[&str] = &["get", "patch", "update"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
const CG: &[&str] = &["create", "get"];

fn res(name: &str, singular: &str, namespaced: bool, kind: &str, verbs: &[&str]) -> Value {
    json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs})
}

fn top(
    name: &str,
    singular: &str,
    namespaced: bool,
    kind: &str,
    short: &[&str],
    all: bool,
    hash: &str,
) -> Value {
    let mut r = res(name, singular, namespaced, kind, CRUD);
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    if all {
        r["categories"] = json!(["all"]);
    }
    if !hash.is_empty() {
        r["storageVersionHash"] = json!(hash);
    }
    r
}

/// `GET /api/v1` (subset of the real list; entries identical to v1.28's).
pub fn core_v1() -> Value {
    let mut ns = top(
        "namespaces",
        "namespace",
        false,
        "Namespace",
        &["ns"],
        false,
        "Q3oi5N2YM8M=",
    );
    ns["verbs"] = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
    let mut eviction = res("pods/eviction", "", true, "Eviction", &["create"]);
    eviction["group"] = json!("policy");
    eviction["version"] = json!("v1");
    let resources = vec![
        ns,
        res("namespaces/finalize", "", false, "Namespace", &["update"]),
        res("namespaces/status", "", false, "Namespace", GPU),
        top(
            "nodes",
            "node",
            false,
            "Node",
            &["no"],
            false,
            "XwShjMxG9Fs=",
        ),
        res("nodes/proxy", "", false, "NodeProxyOptions", PROXY),
        res("nodes/status", "", false, "Node", GPU),
        top("pods", "pod", true, "Pod", &["po"], true, "xPOwRZ+Yhw8="),
        res("pods/attach", "", true, "PodAttachOptions", CG),
        res("pods/binding", "", true, "Binding", &["create"]),
        res("pods/ephemeralcontainers", "", true, "Pod", GPU),
        eviction,
        res("pods/exec", "", true, "PodExecOptions", CG),
        res("pods/log", "", true, "Pod", &["get"]),
        res("pods/portforward", "", true, "PodPortForwardOptions", CG),
        res("pods/proxy", "", true, "PodProxyOptions", PROXY),
        res("pods/status", "", true, "Pod", GPU),
        top(
            "services",
            "service",
            true,
            "Service",
            &["svc"],
            true,
            "0/CO1lhkEBI=",
        ),
        res("services/proxy", "", true, "ServiceProxyOptions", PROXY),
        res("services/status", "", true, "Service", GPU),
    ];
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

/// `GET /apis/apps/v1`.
pub fn apps_v1() -> Value {
    let scale = |name: &str| {
        let mut r = res(name, "", true, "Scale", GPU);
        r["group"] = json!("autoscaling");
        r["version"] = json!("v1");
        r
    };
    let resources = vec![
        top(
            "daemonsets",
            "daemonset",
            true,
            "DaemonSet",
            &["ds"],
            true,
            "",
        ),
        res("daemonsets/status", "", true, "DaemonSet", GPU),
        top(
            "deployments",
            "deployment",
            true,
            "Deployment",
            &["deploy"],
            true,
            "",
        ),
        scale("deployments/scale"),
        res("deployments/status", "", true, "Deployment", GPU),
        top(
            "replicasets",
            "replicaset",
            true,
            "ReplicaSet",
            &["rs"],
            true,
            "",
        ),
        scale("replicasets/scale"),
        res("replicasets/status", "", true, "ReplicaSet", GPU),
        top(
            "statefulsets",
            "statefulset",
            true,
            "StatefulSet",
            &["sts"],
            true,
            "",
        ),
        scale("statefulsets/scale"),
        res("statefulsets/status", "", true, "StatefulSet", GPU),
    ];
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": resources})
}

/// `/openapi/v3`: the index of per-group-version documents. Only `api/v1` is served, and only
/// so far as kubectl needs it to decide that the server validates fields itself (so `kubectl
/// apply/create` send `fieldValidation=Strict` instead of downloading schemas).
pub fn openapi_v3_root() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}})
}

/// `/openapi/v3/api/v1`: a stub with one PATCH operation per core kind, each declaring the
/// `fieldValidation` query parameter (what client-go's `QueryParamVerifierV3` looks for). No
/// schemas: `kubectl explain` does not work.
pub fn openapi_v3_core_v1() -> Value {
    let mut paths = serde_json::Map::new();
    for (plural, kind, namespaced) in [
        ("pods", "Pod", true),
        ("services", "Service", true),
        ("namespaces", "Namespace", false),
        ("nodes", "Node", false),
    ] {
        let path = if namespaced {
            format!("/api/v1/namespaces/{{namespace}}/{plural}/{{name}}")
        } else {
            format!("/api/v1/{plural}/{{name}}")
        };
        paths.insert(path, json!({"patch": {
            "x-kubernetes-group-version-kind": {"group": "", "kind": kind, "version": "v1"},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        }}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"}, "paths": paths})
}
