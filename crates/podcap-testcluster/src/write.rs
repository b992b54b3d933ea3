//! Creating and deleting pods, with the defaults the real API server fills in and a pretend
//! scheduler/kubelet that moves a new pod from Pending to Running (and gives it a pod IP).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::nodes;
use super::objects::{self, now_unix, rfc3339, str_at};
use super::respond::{bad_request, json_resp, not_found, query_param, respond, status_body, Resp};
use super::shared::Shared;

/// Delay of each pretend scheduler/kubelet step (Pending → ContainerCreating → Running), and of
/// the removal of a pod after a graceful delete.
pub const STEP: Duration = Duration::from_millis(150);

/// One validation error: (`field`, Go error type, detail) as in `field.Error`.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `spec.ephemeralContainers[0].image`.
    pub field: String,
    /// `FieldValueRequired`, `FieldValueDuplicate`, `FieldValueNotFound`, `FieldValueForbidden`…
    pub reason: &'static str,
    /// `Required value`, `Duplicate value: "x"`, `Forbidden: …`.
    pub message: String,
}

impl Cause {
    /// `field: Required value`.
    pub fn required(field: String) -> Cause {
        Cause {
            field,
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }
    /// `field: Duplicate value: "v"`.
    pub fn duplicate(field: String, v: &str) -> Cause {
        Cause {
            field,
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", json!(v)),
        }
    }
    /// `field: Not found: "v"`.
    pub fn not_found(field: String, v: &str) -> Cause {
        Cause {
            field,
            reason: "FieldValueNotFound",
            message: format!("Not found: {}", json!(v)),
        }
    }
    /// `field: Invalid value: "v": detail`.
    pub fn invalid(field: String, v: &str, detail: &str) -> Cause {
        Cause {
            field,
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", json!(v)),
        }
    }
    /// `field: Forbidden: detail`.
    pub fn forbidden(field: String, detail: &str) -> Cause {
        Cause {
            field,
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// The 422 `Invalid` body: `Pod "x" is invalid: a: m` or, with several errors,
/// `Pod "x" is invalid: [a: m, b: n]`, with one cause per error.
pub fn invalid_body(kind: &str, name: &str, causes: &[Cause]) -> String {
    let errs: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let all = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    let causes: Vec<String> = causes
        .iter()
        .map(|c| {
            format!(
                "{{\"reason\":{},\"message\":{},\"field\":{}}}",
                json!(c.reason),
                json!(c.message),
                json!(c.field)
            )
        })
        .collect();
    let details = format!(
        "{{\"name\":{},\"kind\":{},\"causes\":[{}]}}",
        json!(name),
        json!(kind),
        causes.join(",")
    );
    status_body(
        422,
        "Invalid",
        &format!("{kind} {} is invalid: {all}", json!(name)),
        Some(&details),
    )
}

/// 422 Invalid.
pub fn invalid(kind: &str, name: &str, causes: &[Cause]) -> Resp {
    respond(
        StatusCode::UNPROCESSABLE_ENTITY,
        "application/json",
        invalid_body(kind, name, causes),
    )
}

/// 422 Invalid for a Pod.
pub fn invalid_body_resp(name: &str, causes: &[Cause]) -> Resp {
    invalid("Pod", name, causes)
}

/// Body of the 409 for a create with a taken name: `pods "x" already exists`.
pub fn already_exists_body(resource: &str, name: &str) -> String {
    status_body(
        409,
        "AlreadyExists",
        &format!("{resource} {} already exists", json!(name)),
        Some(&format!(
            "{{\"name\":{},\"kind\":{}}}",
            json!(name),
            json!(resource)
        )),
    )
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (the API defaulting).
pub fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Fills in what the API server defaults in a (regular, init or ephemeral) container, and
/// drops what Go's `omitempty` drops (`"stdin": false`, `""`, `[]`, `null`), so a container
/// compares equal to its stored self however a client spelled it.
pub fn default_container(c: &mut Value) {
    let image = str_at(c, "/image").to_string();
    let Some(m) = c.as_object_mut() else { return };
    m.retain(|k, v| {
        k == "resources"
            || !matches!(v, Value::Null | Value::Bool(false))
                && v.as_str() != Some("")
                && v.as_array().is_none_or(|a| !a.is_empty())
    });
    m.entry("resources").or_insert(json!({}));
    m.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    m.entry("terminationMessagePolicy").or_insert(json!("File"));
    m.entry("imagePullPolicy")
        .or_insert(json!(default_pull_policy(&image)));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert(json!("TCP"));
            }
        }
    }
}

fn validate_containers(pod: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        causes.push(Cause::required("spec.containers".into()));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let name = str_at(c, "/name");
        if name.is_empty() {
            causes.push(Cause::required(format!("spec.containers[{i}].name")));
        } else if !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("spec.containers[{i}].name"), name));
        }
        if str_at(c, "/image").is_empty() {
            causes.push(Cause::required(format!("spec.containers[{i}].image")));
        }
    }
    causes
}

/// `POST /api/v1/namespaces/NS/pods` (`kubectl run`, `kubectl create/apply -f`).
pub fn create_pod(shared: &Arc<Shared>, ns: &str, body: &Bytes, query: &str) -> Resp {
    let mut pod: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad_request("the body of the request was not a JSON Pod"),
    };
    if !matches!(pod.get("kind").and_then(Value::as_str), None | Some("Pod")) {
        return bad_request("the body of the request is not a Pod");
    }
    let body_ns = str_at(&pod, "/metadata/namespace");
    if !body_ns.is_empty() && body_ns != ns {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let mut st = shared.lock();
    if st.get("namespaces", None, ns).is_none() {
        return not_found(objects::resource("", "namespaces").expect("namespaces"), ns);
    }
    let mut name = str_at(&pod, "/metadata/name").to_string();
    if name.is_empty() {
        let generate = str_at(&pod, "/metadata/generateName").to_string();
        if generate.is_empty() {
            return invalid(
                "Pod",
                "",
                &[Cause {
                    field: "metadata.name".into(),
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                }],
            );
        }
        name = format!(
            "{generate}{}",
            st.rng.string(b"bcdfghjklmnpqrstvwxz2456789", 5)
        );
    }
    if st.get("pods", Some(ns), &name).is_some() {
        return respond(
            StatusCode::CONFLICT,
            "application/json",
            already_exists_body("pods", &name),
        );
    }
    let causes = validate_containers(&pod);
    if !causes.is_empty() {
        return invalid("Pod", &name, &causes);
    }

    let ts = rfc3339(now_unix());
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");
    let uid = st.rng.uuid();
    let meta = &mut pod["metadata"];
    meta["name"] = json!(name);
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(uid);
    meta["creationTimestamp"] = json!(ts);
    if let Some(m) = meta.as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(k);
        }
    }
    let spec = &mut pod["spec"];
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(m) = spec.as_object_mut() {
        m.entry("restartPolicy").or_insert(json!("Always"));
        m.entry("terminationGracePeriodSeconds")
            .or_insert(json!(30));
        m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
        m.entry("securityContext").or_insert(json!({}));
        m.entry("schedulerName")
            .or_insert(json!("default-scheduler"));
        m.entry("tolerations").or_insert(json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]));
        m.entry("priority").or_insert(json!(0));
        m.entry("enableServiceLinks").or_insert(json!(true));
        m.entry("preemptionPolicy")
            .or_insert(json!("PreemptLowerPriority"));
    }
    pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    if query_param(query, "dryRun").is_some_and(|d| d == "All") {
        pod["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        return json_resp(StatusCode::CREATED, &pod);
    }
    let created = st.put("pods", pod);
    drop(st);
    tokio::spawn(start_pod(shared.clone(), ns.to_string(), name, uid));
    json_resp(StatusCode::CREATED, &created)
}

/// Applies `f` to the pod if it still exists with `uid` and is not being deleted; returns false
/// if it no longer does.
pub fn update_pod(
    shared: &Shared,
    ns: &str,
    name: &str,
    uid: &str,
    f: impl FnOnce(&mut Value, &mut objects::State),
) -> bool {
    let mut st = shared.lock();
    let Some(mut pod) = st.get("pods", Some(ns), name).cloned() else {
        return false;
    };
    if str_at(&pod, "/metadata/uid") != uid || pod.pointer("/metadata/deletionTimestamp").is_some()
    {
        return false;
    }
    f(&mut pod, &mut st);
    st.put("pods", pod);
    true
}

/// The pretend scheduler and kubelet: bind to a node (the one with the fewest pods, or the
/// one the spec names), ContainerCreating; start the first container's process; report it
/// Running (pod IP, Ready) at the kubelet's next relist; report its end the same way.
async fn start_pod(shared: Arc<Shared>, ns: String, name: String, uid: String) {
    tokio::time::sleep(STEP + shared.faults.pending).await;
    let node = {
        let st = shared.lock();
        let Some(pod) = st.get("pods", Some(&ns), &name) else {
            return;
        };
        match str_at(pod, "/spec/nodeName") {
            "" => st.pick_node(),
            // A node that does not exist runs nothing: the pod stays Pending, as on a cluster
            // without that node.
            n => match nodes::node_index(n, st.network.nodes()) {
                Some(i) => i,
                None => return,
            },
        }
    };
    let alive = update_pod(&shared, &ns, &name, &uid, |pod, _| {
        let ts = rfc3339(now_unix());
        pod["spec"]["nodeName"] = json!(nodes::node_name(node));
        let statuses: Vec<Value> = containers(pod)
            .iter()
            .map(|c| json!({"name": str_at(c, "/name"), "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {}, "ready": false, "restartCount": 0, "image": str_at(c, "/image"), "imageID": "",
                "started": false}))
            .collect();
        let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": ts});
        let mut ready = cond("Ready", "False");
        ready["reason"] = json!("ContainersNotReady");
        ready["message"] = json!(format!(
            "containers with unready status: [{}]",
            containers(pod)
                .iter()
                .map(|c| str_at(c, "/name"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let mut cready = ready.clone();
        cready["type"] = json!("ContainersReady");
        let host_ip = nodes::host_ip(node);
        pod["status"] = json!({"phase": "Pending",
            "conditions": [cond("Initialized", "True"), ready, cready, cond("PodScheduled", "True")],
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": ts,
            "containerStatuses": statuses, "qosClass": "BestEffort"});
    });
    if !alive {
        return;
    }
    tokio::time::sleep(STEP).await;
    let Some(pod) = shared.lock().get("pods", Some(&ns), &name).cloned() else {
        return;
    };
    if str_at(&pod, "/metadata/uid") != uid {
        return;
    }
    let ip = shared.lock().next_pod_ip(node);
    let started_at = std::time::Instant::now();
    let started = rfc3339(now_unix());
    let first = start_first_container(&shared, &pod, &ip, node);
    tokio::time::sleep_until(shared.kubelet.report_at(started_at).into()).await;
    let alive = update_pod(&shared, &ns, &name, &uid, |pod, st| {
        let statuses: Vec<Value> = containers(pod)
            .iter()
            .map(|c| {
                json!({"name": str_at(c, "/name"), "state": {"running": {"startedAt": started}},
                "lastState": {}, "ready": true, "restartCount": 0, "image": str_at(c, "/image"),
                "imageID": format!("sha256:{}", st.rng.string(b"0123456789abcdef", 64)),
                "containerID": format!("containerd://{}", st.rng.string(b"0123456789abcdef", 64)),
                "started": true})
            })
            .collect();
        let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": started});
        let s = &mut pod["status"];
        s["phase"] = json!("Running");
        s["conditions"] = json!([
            cond("Initialized"),
            cond("Ready"),
            cond("ContainersReady"),
            cond("PodScheduled")
        ]);
        s["podIP"] = json!(ip);
        s["podIPs"] = json!([{"ip": ip}]);
        s["containerStatuses"] = json!(statuses);
    });
    if !alive {
        return;
    }
    super::scale::pod_changed(&shared, &ns, &pod);
    let never = str_at(&pod, "/spec/restartPolicy") == "Never";
    let finish =
        move |pod: &mut Value, cname: &str, code: i32, reason: &str, message: Option<String>| {
            let ts = rfc3339(now_unix());
            if let Some(Value::Array(statuses)) = pod.pointer_mut("/status/containerStatuses") {
                for s in statuses.iter_mut().filter(|s| s["name"] == cname) {
                    let mut t = json!({"containerID": s["containerID"], "exitCode": code,
                    "finishedAt": ts, "reason": reason, "startedAt": started});
                    if let Some(m) = &message {
                        t["message"] = json!(m);
                    }
                    s["state"] = json!({"terminated": t});
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                }
            }
            if let Some(Value::Array(conds)) = pod.pointer_mut("/status/conditions") {
                for cond in conds
                    .iter_mut()
                    .filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady")
                {
                    cond["status"] = json!("False");
                }
            }
            if never {
                pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            }
        };
    match first {
        First::Nothing => {}
        First::Failed(cname, e) => {
            update_pod(&shared, &ns, &name, &uid, |pod, _| {
                finish(pod, &cname, 128, "StartError", Some(format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: {e}: unknown")));
            });
        }
        First::Running(cname, mut exited) => {
            let Ok(code) = exited
                .wait_for(Option::is_some)
                .await
                .map(|c| c.unwrap_or(0))
            else {
                return;
            };
            tokio::time::sleep_until(shared.kubelet.report_at(std::time::Instant::now()).into())
                .await;
            let reason = if code == 0 { "Completed" } else { "Error" };
            update_pod(&shared, &ns, &name, &uid, |pod, _| {
                finish(pod, &cname, code, reason, None);
            });
        }
    }
}

/// What [`start_first_container`] started.
enum First {
    /// No process (a container without a command: not root, or the demo workload as root).
    Nothing,
    /// The first container (its name) runs; its exit code arrives on the receiver.
    Running(String, tokio::sync::watch::Receiver<Option<i32>>),
    /// It could not start (name, the error).
    Failed(String, String),
}

/// What the kubelet adds to the environment of a process of `pod` (see
/// [`super::kubelet::Kubelet::pod_env`]): the peers are the other pods' IPs, cluster-wide.
pub fn pod_env(shared: &Shared, pod: &Value) -> Vec<(String, String)> {
    let pod_ip = str_at(pod, "/status/podIP");
    let node = shared.kubelet.node_of(pod);
    let peers: Vec<String> = if shared.kubelet.synthetic() {
        shared
            .lock()
            .list("pods", None)
            .into_iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .map(|p| str_at(p, "/status/podIP").to_string())
            .filter(|ip| !ip.is_empty() && ip != pod_ip)
            .collect()
    } else {
        Vec::new()
    };
    shared.kubelet.pod_env(pod_ip, &peers, node)
}

/// The real side of a created pod about to run (its IP `ip`, on node `node`): its first
/// container's `command` + `args` run as a host process (as root in the pod's network
/// namespace), like an ephemeral container's; a first container without a command gets, as
/// root, the demo client pods' workload (ping + curl loop to the demo HTTP servers).
fn start_first_container(shared: &Arc<Shared>, pod: &Value, ip: &str, node: usize) -> First {
    let (ns, name) = (
        str_at(pod, "/metadata/namespace"),
        str_at(pod, "/metadata/name"),
    );
    let Some(c) = containers(pod).into_iter().next() else {
        return First::Nothing;
    };
    let strings = |k: &str| -> Vec<String> {
        c.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    // No image entrypoint to fall back on: `args` alone (`kubectl run P --image=I -- ARGS`) run
    // as the command.
    let argv: Vec<String> = strings("command")
        .into_iter()
        .chain(strings("args"))
        .collect();
    if argv.is_empty() {
        if shared.kubelet.netns_enabled {
            if let Some(n) = shared.kubelet.pod_netns(ns, name, ip, node) {
                shared.kubelet.start_client_workload(&n, ip);
            }
        }
        return First::Nothing;
    }
    let netns = shared.kubelet.pod_netns(ns, name, ip, node);
    let mut placed = pod.clone();
    placed["status"]["podIP"] = json!(ip);
    placed["spec"]["nodeName"] = json!(nodes::node_name(node));
    let env = pod_env(shared, &placed);
    let cname = str_at(&c, "/name").to_string();
    let (stdin, stdin_once) = (c["stdin"] == true, c["stdinOnce"] == true);
    match shared
        .kubelet
        .spawn(netns.as_deref(), &env, &argv, stdin, stdin_once)
    {
        Ok((proc, child)) => {
            shared.kubelet.add_container(ns, name, &cname, proc.clone());
            let exited = proc.exited.clone();
            tokio::spawn(shared.kubelet.clone().run(proc, child));
            First::Running(cname, exited)
        }
        Err(e) => First::Failed(cname, e),
    }
}

fn containers(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending with
/// an alphanumeric (Err: the real validation message).
pub fn check_label_value(v: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = v.is_empty()
        || (v.chars().all(|c| alnum(c) || "-_.".contains(c))
            && v.starts_with(alnum)
            && v.ends_with(alnum));
    if !ok {
        return Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    if v.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    Ok(())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_`, `.` starting and ending with an alphanumeric.
fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| alnum(c) || "-_.".contains(c))
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    let prefix_ok = !k.contains('/')
        || (!prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            }));
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into())
    }
}

/// `spec` without the fields a pod update may change (the containers' images), to compare.
fn immutable_spec(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut() {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("activeDeadlineSeconds");
    }
    s
}

/// `PATCH /api/v1/namespaces/NS/pods/NAME` (`kubectl label`, `kubectl annotate`, `kubectl
/// patch`): strategic merge, JSON merge or JSON patch. As the real pod strategy: the metadata
/// (labels, annotations, owner references, finalizers) may change, in the spec only the
/// containers' images and `activeDeadlineSeconds` (else the real 422 `pod updates may not
/// change fields other than …`), the status is the status subresource's and is left as it is.
/// A `metadata.resourceVersion` in the patch must be the current one (409 Conflict). A patch
/// that changes nothing answers the pod as it is, without a new resourceVersion.
pub fn patch_pod(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &Bytes,
    query: &str,
) -> Resp {
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let mut st = shared.lock();
    let pods = objects::resource("", "pods").expect("pods");
    let Some(old) = st.get("pods", Some(ns), name).cloned() else {
        return not_found(pods, name);
    };
    let mut patched = old.clone();
    if let Err(r) = super::patch::apply(content_type, &mut patched, &patch) {
        return *r;
    }
    let rv = str_at(&patched, "/metadata/resourceVersion");
    if rv != str_at(&old, "/metadata/resourceVersion") && !rv.is_empty() {
        return respond(
            StatusCode::CONFLICT,
            "application/json",
            status_body(
                409,
                "Conflict",
                &format!("Operation cannot be fulfilled on pods {}: the object has been modified; please apply your changes to the latest version and try again", json!(name)),
                Some(&format!("{{\"name\":{},\"kind\":\"pods\"}}", json!(name))),
            ),
        );
    }
    if str_at(&patched, "/metadata/name") != name || str_at(&patched, "/metadata/namespace") != ns {
        return bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            str_at(&patched, "/metadata/name")
        ));
    }
    let mut causes = Vec::new();
    for (k, v) in objects::labels_of(&patched) {
        if let Err(e) = check_label_key(&k) {
            causes.push(Cause::invalid("metadata.labels".into(), &k, &e));
        }
        if let Err(e) = check_label_value(&v) {
            causes.push(Cause::invalid("metadata.labels".into(), &v, &e));
        }
    }
    if immutable_spec(&old["spec"]) != immutable_spec(&patched["spec"]) {
        causes.push(Cause::forbidden(
            "spec".into(),
            &format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n{}",
                spec_diff(&old["spec"], &patched["spec"])
            ),
        ));
    }
    if !causes.is_empty() {
        return invalid("Pod", name, &causes);
    }
    // What the pod strategy keeps of the patch: metadata's mutable fields and the spec.
    let mut pod = old.clone();
    for k in ["labels", "annotations", "ownerReferences", "finalizers"] {
        match patched["metadata"].get(k) {
            Some(v) if !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()) => {
                pod["metadata"][k] = v.clone()
            }
            _ => {
                if let Some(m) = pod["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    pod["spec"] = patched["spec"].clone();
    if pod == old {
        return json_resp(StatusCode::OK, &old);
    }
    if query_param(query, "dryRun").is_some_and(|d| d == "All") {
        return json_resp(StatusCode::OK, &pod);
    }
    let stored = st.put("pods", pod);
    json_resp(StatusCode::OK, &stored)
}

/// PATCH of a namespace: its labels and annotations (`kubectl label ns shop
/// pod-security.kubernetes.io/enforce=baseline`, which Pod Security admission reads at the
/// next request, as the real one does).
pub fn patch_namespace(shared: &Arc<Shared>, name: &str, content_type: &str, body: &Bytes) -> Resp {
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let mut st = shared.lock();
    let namespaces = objects::resource("", "namespaces").expect("namespaces");
    let Some(old) = st.get("namespaces", None, name).cloned() else {
        return not_found(namespaces, name);
    };
    let mut patched = old.clone();
    if let Err(r) = super::patch::apply(content_type, &mut patched, &patch) {
        return *r;
    }
    let mut causes = Vec::new();
    for (k, v) in objects::labels_of(&patched) {
        if let Err(e) = check_label_key(&k) {
            causes.push(Cause::invalid("metadata.labels".into(), &k, &e));
        }
        if let Err(e) = check_label_value(&v) {
            causes.push(Cause::invalid("metadata.labels".into(), &v, &e));
        }
    }
    if !causes.is_empty() {
        return invalid("Namespace", name, &causes);
    }
    let mut ns = old.clone();
    for k in ["labels", "annotations"] {
        match patched["metadata"].get(k) {
            Some(v) if !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()) => {
                ns["metadata"][k] = v.clone()
            }
            _ => {
                if let Some(m) = ns["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    if ns == old {
        return json_resp(StatusCode::OK, &old);
    }
    let stored = st.put("namespaces", ns);
    json_resp(StatusCode::OK, &stored)
}

/// A line per changed top-level spec field (the real server prints a Go `cmp.Diff` of its
/// internal `core.PodSpec`, which this does not reproduce).
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        if o.get(k) != n.get(k) {
            if let Some(a) = o.get(k) {
                out.push_str(&format!("- \t{k}: {a},\n"));
            }
            if let Some(b) = n.get(k) {
                out.push_str(&format!("+ \t{k}: {b},\n"));
            }
        }
    }
    out.push_str("  }\n");
    out
}

/// `DELETE /api/v1/namespaces/NS/pods/NAME`. A graceful delete (the default) marks the pod
/// (`deletionTimestamp`, MODIFIED) and answers with it; the pretend kubelet removes it shortly
/// after (DELETED). `gracePeriodSeconds=0` removes it at once.
pub fn delete_pod(shared: &Arc<Shared>, ns: &str, name: &str, body: &Bytes, query: &str) -> Resp {
    let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let grace = query_param(query, "gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
        .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
    let mut st = shared.lock();
    let pods = objects::resource("", "pods").expect("pods");
    let Some(mut pod) = st.get("pods", Some(ns), name).cloned() else {
        return not_found(pods, name);
    };
    let uid = str_at(&pod, "/metadata/uid").to_string();
    let grace = grace.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    if grace == 0 || pod.pointer("/metadata/deletionTimestamp").is_some() {
        let gone = st.remove("pods", Some(ns), name);
        drop(st);
        shared.kubelet.remove_pod(ns, name);
        return json_resp(StatusCode::OK, &gone.unwrap_or(pod));
    }
    pod["metadata"]["deletionTimestamp"] = json!(rfc3339(now_unix() + grace));
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    let marked = st.put("pods", pod);
    drop(st);
    let shared = shared.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(STEP).await;
        let mut st = shared.lock();
        if st
            .get("pods", Some(&ns), &name)
            .is_some_and(|p| str_at(p, "/metadata/uid") == uid)
        {
            st.remove("pods", Some(&ns), &name);
            drop(st);
            shared.kubelet.remove_pod(&ns, &name);
        }
    });
    json_resp(StatusCode::OK, &marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/x"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/x:1"), "IfNotPresent");
    }

    #[test]
    fn invalid_message_shapes() {
        let one = invalid_body(
            "Pod",
            "p",
            &[Cause::duplicate(
                "spec.ephemeralContainers[0].name".into(),
                "app",
            )],
        );
        let v: Value = serde_json::from_str(&one).expect("json");
        assert_eq!(
            v["message"],
            "Pod \"p\" is invalid: spec.ephemeralContainers[0].name: Duplicate value: \"app\""
        );
        let two = invalid_body(
            "Pod",
            "p",
            &[
                Cause::required("a".into()),
                Cause::forbidden("b".into(), "no"),
            ],
        );
        let v: Value = serde_json::from_str(&two).expect("json");
        assert_eq!(
            v["message"],
            "Pod \"p\" is invalid: [a: Required value, b: Forbidden: no]"
        );
        assert_eq!(v["details"]["causes"][1]["reason"], "FieldValueForbidden");
    }
}
