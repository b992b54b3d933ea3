//! The `pods/NAME/ephemeralcontainers` subresource: PATCH (strategic merge, JSON patch, merge
//! patch) and PUT, validated like the real server (422 Invalid with its messages), then a
//! pretend kubelet that moves each new ephemeral container from `waiting` (ContainerCreating)
//! to `running`. Only `spec.ephemeralContainers` of the patched object is kept, as the real
//! subresource strategy does.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::objects::{self, now_unix, rfc3339, str_at};
use super::patch;
use super::policy;
use super::respond::{bad_request, json_resp, not_found, respond, status_body, Resp};
use super::shared::Shared;
use super::write::{default_container, update_pod, Cause, STEP};

fn list(pod: &Value, key: &str) -> Vec<Value> {
    pod.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A short line-per-field diff of two containers (the real server prints a Go `cmp.Diff` of
/// its internal struct, which this does not reproduce).
fn diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = String::new();
    for k in keys {
        match (o.get(k), n.get(k)) {
            (a, b) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push_str(&format!("- \t{k}: {a},\n"));
                }
                if let Some(b) = b {
                    out.push_str(&format!("+ \t{k}: {b},\n"));
                }
            }
        }
    }
    out
}

/// The validation of an ephemeral-containers update (`ValidatePodEphemeralContainersUpdate`):
/// names required and unique across all containers, image required, targetContainerName must
/// name a regular or init container, existing ephemeral containers may be neither changed nor
/// removed.
pub fn validate(old: &Value, new_ecs: &[Value]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let regular: BTreeSet<String> = list(old, "containers")
        .iter()
        .chain(list(old, "initContainers").iter())
        .map(|c| str_at(c, "/name").to_string())
        .collect();
    let mut names = regular.clone();
    for (i, ec) in new_ecs.iter().enumerate() {
        let p = format!("spec.ephemeralContainers[{i}]");
        let name = str_at(ec, "/name");
        if name.is_empty() {
            causes.push(Cause::required(format!("{p}.name")));
        }
        if str_at(ec, "/image").is_empty() {
            causes.push(Cause::required(format!("{p}.image")));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{p}.name"), name));
        }
        let target = str_at(ec, "/targetContainerName");
        if !target.is_empty() && !regular.contains(target) {
            causes.push(Cause::not_found(format!("{p}.targetContainerName"), target));
        }
    }
    // Like the real server: the last new container of a name wins the lookup.
    let by_name: std::collections::BTreeMap<&str, &Value> =
        new_ecs.iter().map(|c| (str_at(c, "/name"), c)).collect();
    for o in list(old, "ephemeralContainers") {
        let name = str_at(&o, "/name");
        match by_name.get(name) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers".into(),
                &format!(
                    "existing ephemeral containers {} may not be removed\n",
                    json!(name)
                ),
            )),
            Some(n) if **n != o => causes.push(Cause::forbidden(
                "spec.ephemeralContainers".into(),
                &format!(
                    "existing ephemeral containers {} may not be changed\n{}",
                    json!(name),
                    diff(&o, n)
                ),
            )),
            Some(_) => {}
        }
    }
    causes
}

/// PATCH/PUT `/api/v1/namespaces/NS/pods/NAME/ephemeralcontainers`.
pub fn update(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    put: bool,
    content_type: &str,
    body: &Bytes,
    _query: &str,
) -> Resp {
    let patch_body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let mut st = shared.lock();
    let Some(old) = st.get("pods", Some(ns), name).cloned() else {
        return not_found(objects::resource("", "pods").expect("pods"), name);
    };
    let mut patched = old.clone();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if put {
        let rv = str_at(&patch_body, "/metadata/resourceVersion");
        if !rv.is_empty() && rv != str_at(&old, "/metadata/resourceVersion") {
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
        patched = patch_body;
    } else {
        if let Err(r) = patch::apply(media, &mut patched, &patch_body) {
            return *r;
        }
    }
    let mut new_ecs = list(&patched, "ephemeralContainers");
    new_ecs.iter_mut().for_each(default_container);
    let causes = validate(&old, &new_ecs);
    if !causes.is_empty() {
        return super::write::invalid_body_resp(name, &causes);
    }
    // Pod Security admission (a validating admission: after validation) checks the whole pod.
    let level = st
        .get("namespaces", None, ns)
        .map(|n| {
            objects::labels_of(n)
                .get(policy::PSA_LABEL)
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut spec = old["spec"].clone();
    spec["ephemeralContainers"] = json!(new_ecs);
    let pods = objects::resource("", "pods").expect("pods");
    if let Some(r) = policy::psa_check(&level, name, &spec, pods) {
        return r;
    }
    let old_ecs = list(&old, "ephemeralContainers");
    if new_ecs == old_ecs {
        return json_resp(StatusCode::OK, &old);
    }
    let added: Vec<Value> = new_ecs
        .iter()
        .filter(|c| !old_ecs.iter().any(|o| o["name"] == c["name"]))
        .cloned()
        .collect();
    let mut pod = old;
    pod["spec"]["ephemeralContainers"] = json!(new_ecs);
    let stored = st.put("pods", pod);
    drop(st);
    let uid = str_at(&stored, "/metadata/uid").to_string();
    tokio::spawn(start_containers(
        shared.clone(),
        ns.to_string(),
        name.to_string(),
        uid,
        added,
    ));
    json_resp(StatusCode::OK, &stored)
}

fn set_status(pod: &mut Value, status: Value) {
    let mut all: Vec<Value> = pod
        .pointer("/status/ephemeralContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    all.retain(|s| s["name"] != status["name"]);
    all.push(status);
    // The real kubelet reports them sorted by name.
    all.sort_by(|a, b| str_at(a, "/name").cmp(str_at(b, "/name")));
    pod["status"]["ephemeralContainerStatuses"] = json!(all);
}

/// The pretend kubelet: waiting (ContainerCreating), then running, one MODIFIED each.
async fn start_containers(
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: String,
    added: Vec<Value>,
) {
    if added.is_empty() {
        return;
    }
    tokio::time::sleep(STEP).await;
    let alive = update_pod(&shared, &ns, &name, &uid, |pod, _| {
        for c in &added {
            set_status(
                pod,
                json!({"name": c["name"], "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {}, "ready": false, "restartCount": 0, "image": c["image"], "imageID": ""}),
            );
        }
    });
    if !alive {
        return;
    }
    // Images that cannot be pulled: no process, ErrImagePull / ImagePullBackOff for ever.
    let (failing, added): (Vec<Value>, Vec<Value>) = added
        .into_iter()
        .partition(|c| shared.faults.pull_fails(str_at(c, "/image")));
    if !failing.is_empty() {
        tokio::spawn(pull_fails(
            shared.clone(),
            ns.clone(),
            name.clone(),
            uid.clone(),
            failing,
        ));
    }
    if added.is_empty() {
        return;
    }
    tokio::time::sleep(STEP).await;
    // Start the real processes (as root in the pod's network namespace); each is reported
    // running at the kubelet's next relist (output before the client attaches is lost, as on
    // a real node), and its end likewise. A command that cannot be found is reported at once,
    // terminated with StartError.
    let Some(pod) = shared.lock().get("pods", Some(&ns), &name).cloned() else {
        return;
    };
    let pod_ip = str_at(&pod, "/status/podIP").to_string();
    let netns = shared
        .kubelet
        .pod_netns(&ns, &name, &pod_ip, shared.kubelet.node_of(&pod));
    let env = super::write::pod_env(&shared, &pod);
    for c in added {
        let argv = container_argv(&c);
        let stdin = c["stdin"] == true;
        let stdin_once = c["stdinOnce"] == true;
        let ids = {
            let mut st = shared.lock();
            (
                format!("containerd://{}", st.rng.string(b"0123456789abcdef", 64)),
                format!("sha256:{}", st.rng.string(b"0123456789abcdef", 64)),
            )
        };
        match shared
            .kubelet
            .spawn(netns.as_deref(), &env, &argv, stdin, stdin_once)
        {
            Ok((proc, child)) => {
                shared
                    .kubelet
                    .add_container(&ns, &name, str_at(&c, "/name"), proc.clone());
                let exited = proc.exited.clone();
                tokio::spawn(shared.kubelet.clone().run(proc, child));
                tokio::spawn(report(
                    shared.clone(),
                    (ns.clone(), name.clone(), uid.clone()),
                    c,
                    ids,
                    exited,
                ));
            }
            Err(e) => {
                let ts = rfc3339(now_unix());
                let (container_id, image_id) = ids;
                update_pod(&shared, &ns, &name, &uid, |pod, _| {
                    set_status(
                        pod,
                        json!({"name": c["name"], "state": {"terminated": {"containerID": container_id, "exitCode": 128,
                            "finishedAt": ts, "message": format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: {e}: unknown"),
                            "reason": "StartError", "startedAt": "1970-01-01T00:00:00Z"}},
                        "lastState": {}, "ready": false, "restartCount": 0, "image": c["image"],
                        "imageID": image_id, "containerID": container_id}),
                    );
                });
            }
        }
    }
}

/// The kubelet's reports of one started ephemeral container `c` (pod `ns/name/uid`, ids
/// (containerID, imageID)): `running` at the next relist after the start, `terminated` (exit
/// code, Completed/Error) at the next relist after the end — or `terminated` at once when it
/// had already ended at the first one.
async fn report(
    shared: Arc<Shared>,
    (ns, name, uid): (String, String, String),
    c: Value,
    (container_id, image_id): (String, String),
    mut exited: tokio::sync::watch::Receiver<Option<i32>>,
) {
    let started = rfc3339(now_unix());
    let at = shared.kubelet.report_at(std::time::Instant::now());
    tokio::time::sleep_until(at.into()).await;
    let status = |state: Value| {
        json!({"name": c["name"], "state": state, "lastState": {}, "ready": false,
            "restartCount": 0, "image": c["image"], "imageID": image_id, "containerID": container_id})
    };
    let ended_before = *exited.borrow();
    if ended_before.is_none() {
        let running = status(json!({"running": {"startedAt": started}}));
        if !update_pod(&shared, &ns, &name, &uid, |pod, _| set_status(pod, running)) {
            return;
        }
    }
    let code = match ended_before {
        Some(code) => code,
        None => {
            let Ok(code) = exited
                .wait_for(Option::is_some)
                .await
                .map(|c| c.unwrap_or(0))
            else {
                return;
            };
            let at = shared.kubelet.report_at(std::time::Instant::now());
            let finished = rfc3339(now_unix());
            tokio::time::sleep_until(at.into()).await;
            return terminated(
                &shared,
                (&ns, &name, &uid),
                &status,
                code,
                &started,
                &finished,
            );
        }
    };
    let finished = rfc3339(now_unix());
    terminated(
        &shared,
        (&ns, &name, &uid),
        &status,
        code,
        &started,
        &finished,
    );
}

fn terminated(
    shared: &Shared,
    (ns, name, uid): (&str, &str, &str),
    status: &dyn Fn(Value) -> Value,
    code: i32,
    started: &str,
    finished: &str,
) {
    let reason = if code == 0 { "Completed" } else { "Error" };
    let container_id = status(Value::Null)["containerID"].clone();
    let s = status(
        json!({"terminated": {"containerID": container_id, "exitCode": code,
        "finishedAt": finished, "reason": reason, "startedAt": started}}),
    );
    update_pod(shared, ns, name, uid, |pod, _| set_status(pod, s));
}

/// The pretend kubelet for images that cannot be pulled: `ErrImagePull` (or, with
/// `imagePullPolicy: Never`, the recorded `ErrImageNeverPull`), then `ImagePullBackOff`, then
/// again `ErrImagePull` after a back-off (1 s, doubling up to 8 s), until the pod goes away.
async fn pull_fails(shared: Arc<Shared>, ns: String, name: String, uid: String, cs: Vec<Value>) {
    let set = |backoff: bool| {
        update_pod(&shared, &ns, &name, &uid, |pod, _| {
            for c in &cs {
                let image = str_at(c, "/image");
                let waiting = if str_at(c, "/imagePullPolicy") == "Never" {
                    json!({"message": format!("Container image {} is not present with pull policy of Never", json!(image)),
                        "reason": "ErrImageNeverPull"})
                } else if backoff {
                    json!({"message": format!("Back-off pulling image {}", json!(image)),
                        "reason": "ImagePullBackOff"})
                } else {
                    json!({"message": policy::pull_error_message(image), "reason": "ErrImagePull"})
                };
                set_status(
                    pod,
                    json!({"name": c["name"], "state": {"waiting": waiting},
                    "lastState": {}, "ready": false, "restartCount": 0, "image": c["image"], "imageID": ""}),
                );
            }
        })
    };
    let never = cs.iter().all(|c| str_at(c, "/imagePullPolicy") == "Never");
    let mut delay = std::time::Duration::from_secs(1);
    tokio::time::sleep(STEP).await;
    loop {
        if !set(false) || never {
            return;
        }
        tokio::time::sleep(STEP * 3).await;
        if !set(true) {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(8));
    }
}

/// `command` + `args` of a container. Without a command the image's entrypoint would run; here
/// `args` alone are the command line, and with neither a shell (`sh`) runs.
fn container_argv(c: &Value) -> Vec<String> {
    let strs = |k: &str| -> Vec<String> {
        c[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strs("command");
    argv.extend(strs("args"));
    if argv.is_empty() {
        argv.push("sh".into());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "x"}],
            "ephemeralContainers": [{"name": "cap-b", "image": "i", "command": ["tcpdump"]}]}})
    }

    #[test]
    fn validation_messages() {
        let old = pod();
        let keep = json!({"name": "cap-b", "image": "i", "command": ["tcpdump"]});
        let c = validate(&old, &[json!({"name": "app", "image": "y"}), keep.clone()]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec.ephemeralContainers[0].name");
        assert_eq!(c[0].message, "Duplicate value: \"app\"");
        let c = validate(
            &old,
            &[
                json!({"name": "n", "targetContainerName": "nope"}),
                keep.clone(),
            ],
        );
        assert_eq!(c[0].field, "spec.ephemeralContainers[0].image");
        assert_eq!(c[1].message, "Not found: \"nope\"");
        let c = validate(&old, &[]);
        assert_eq!(
            c[0].message,
            "Forbidden: existing ephemeral containers \"cap-b\" may not be removed\n"
        );
        let c = validate(
            &old,
            &[keep.clone(), json!({"name": "cap-b", "image": "j"})],
        );
        assert_eq!(c[0].reason, "FieldValueDuplicate");
        assert!(c[1].message.starts_with(
            "Forbidden: existing ephemeral containers \"cap-b\" may not be changed\n"
        ));
        assert!(validate(&old, &[json!({"name": "new", "image": "z"}), keep]).is_empty());
    }
}
