//! Adding the capture container to a pod: an ephemeral container with a unique name, the
//! capabilities of the chosen profile (with the Pod Security fallback of docs/design.md §5), then
//! waiting until it runs. Every successful patch leaves a container in the pod for good, so a
//! pod gets at most one successful attempt.

use super::errors;
use super::script;
use super::{PodOptions, Profile};
use crate::source::SourceState;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::{json, Value};
use std::time::Duration;

/// The capture container, once running.
#[derive(Clone, Debug)]
pub struct Injected {
    pub container: String,
    pub target: String,
    /// Capabilities that were added (empty: none, after the Pod Security fallback).
    pub capabilities: Vec<&'static str>,
    /// Something the user should know (the fallback), said once.
    pub note: Option<String>,
}

/// Why the capture container could not be added or did not start.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The pod went away first (a rollout): no failure, the caller ends the source cleanly.
    #[error("pod deleted{}", .0.words())]
    PodGone(Gone),
    /// `--target` names no container of the pod.
    #[error("{0}")]
    Target(String),
    /// The API refused the container (RBAC, Pod Security, validation), explained.
    #[error("{0}")]
    Refused(String),
    /// The container did not start (image, runtime, timeout), explained.
    #[error("{0}")]
    Start(String),
    /// Watching the pod failed, explained.
    #[error("{0}")]
    Watch(String),
}

/// How the pod went away before its capture began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    Deleted,
    Terminating,
    Replaced,
}

impl Gone {
    fn words(self) -> &'static str {
        match self {
            Gone::Deleted => " before the capture began",
            Gone::Terminating => " (it is terminating) before the capture began",
            Gone::Replaced => ": replaced by a new pod of the same name before the capture began",
        }
    }
}

/// A container name no earlier run can have used in this pod.
pub fn container_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = crate::output::now_ns() ^ ((std::process::id() as u64) << 20);
    let mixed = (seed
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15))
    .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!("podcap-{:08x}", (mixed >> 32) as u32)
}

/// Whether a container name is one of ours (`podcap-` and 8 hex digits), from any run.
pub fn is_capture_container(name: &str) -> bool {
    name.strip_prefix("podcap-")
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The containers a Pod Security refusal names (`containers "a", "b" must not include …` or
/// `container "a" must …`), in order.
pub fn refused_containers(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in message.split("container").skip(1) {
        // `s "a", "b" must…` or ` "a" must…`: the quoted names before the verb
        let rest = part.strip_prefix('s').unwrap_or(part);
        let names = rest.split(" must ").next().unwrap_or("");
        for q in names.split(',') {
            let q = q.trim();
            if let Some(n) = q.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                if !n.is_empty() && !out.iter().any(|o| o == n) {
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

/// The capabilities a profile asks for.
pub fn capabilities(profile: Profile, promiscuous: bool) -> Vec<&'static str> {
    match profile {
        Profile::Baseline => vec![],
        Profile::NetAdmin => vec!["NET_RAW", "NET_ADMIN"],
        Profile::NetRaw | Profile::Auto if promiscuous => vec!["NET_RAW", "NET_ADMIN"],
        Profile::NetRaw | Profile::Auto => vec!["NET_RAW"],
    }
}

/// The ephemeral container, as JSON for a strategic merge patch.
pub fn container_spec(opts: &PodOptions, name: &str, target: &str, caps: &[&str]) -> Value {
    let capture = opts.capture_argv();
    let argv = script::argv(opts.max_secs(), script::IDLE_SECS, name, "wait", &capture);
    let mut c = json!({
        "name": name,
        "image": opts.image,
        "command": argv,
        "stdin": true,
        "stdinOnce": true,
        "tty": false,
        "targetContainerName": target,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if let Some(p) = &opts.image_pull_policy {
        c["imagePullPolicy"] = json!(p);
    }
    if !caps.is_empty() {
        c["securityContext"] = json!({"capabilities": {"add": caps}});
    }
    c
}

/// The container to target: `--target`, else the pod's first; an unknown one is an error that
/// lists what the pod has (checked before anything is added).
pub fn target_container(pod: &Pod, wanted: Option<&str>) -> Result<String, InjectError> {
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    match wanted {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(InjectError::Target(format!(
            "container {w:?} (--target) not found; the pod's containers are: {}",
            names.join(", ")
        ))),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| InjectError::Target("the pod has no containers".into())),
    }
}

/// The patch that adds `spec` to `pod`, and only to this pod: a JSON patch that first tests
/// the pod's UID (a pod deleted and re-created under the same name after we listed it must not
/// get a capture container from us: the new one is captured on its own). Without a UID, a
/// strategic merge patch (merges by name, docs/design.md §4).
pub fn patch_for(pod: &Pod, spec: Value) -> Patch<Value> {
    let Some(uid) = pod.metadata.uid.as_deref() else {
        return Patch::Strategic(json!({"spec": {"ephemeralContainers": [spec]}}));
    };
    let has_some = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|v| !v.is_empty());
    let add = if has_some {
        json!({"op": "add", "path": "/spec/ephemeralContainers/-", "value": spec.clone()})
    } else {
        json!({"op": "add", "path": "/spec/ephemeralContainers", "value": [spec.clone()]})
    };
    let ops = json!([{"op": "test", "path": "/metadata/uid", "value": uid}, add]);
    match serde_json::from_value::<json_patch::Patch>(ops) {
        Ok(p) => Patch::Json(p),
        Err(_) => Patch::Strategic(json!({"spec": {"ephemeralContainers": [spec]}})),
    }
}

/// The UID test of [`patch_for`] failed: the pod of that name is another one now.
fn replaced(e: &kube::Error) -> bool {
    errors::status(e).is_some_and(|s| {
        (s.code == 422 || s.code == 409 || s.code == 500) && s.message.contains("/metadata/uid")
    })
}

fn patch_error(e: &kube::Error, ns: &str, pod: &str, ours: &str) -> InjectError {
    if let Some(level) = errors::pod_security_level(e) {
        let message = errors::status(e).map(|s| s.message.as_str()).unwrap_or("");
        let named = refused_containers(message);
        let earlier: Vec<&String> = named
            .iter()
            .filter(|n| n.as_str() != ours && is_capture_container(n))
            .collect();
        if !earlier.is_empty() && named.iter().all(|n| n == ours || is_capture_container(n)) {
            // the admission check covers the whole pod: capture containers of earlier runs
            // (added before the namespace's level was raised) keep every new one out
            return InjectError::Refused(format!(
                "Pod Security level {level:?} of namespace {ns} rejects any new container in pod \
                 {pod}, because capture containers of earlier runs ({}) hold capabilities the \
                 level forbids ({message}); ephemeral containers cannot be removed, so this pod \
                 can be captured again only once it is recreated (e.g. `kubectl rollout restart \
                 deployment/NAME -n {ns}`, or delete the pod if a controller replaces it)",
                earlier
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return InjectError::Refused(format!(
            "Pod Security level {level:?} of namespace {ns} rejects the capture container ({}); \
             {}",
            errors::status(e).map(|s| s.message.as_str()).unwrap_or(""),
            if level == "restricted" {
                "`restricted` rejects every ephemeral container of an ordinary pod. Alternatives: \
                 capture on the node (e.g. a privileged node debug pod: kubectl debug node/NODE), \
                 or have the namespace relabelled pod-security.kubernetes.io/enforce=baseline \
                 while you debug (see docs/troubleshooting.md)"
            } else {
                "try --profile baseline (no added capabilities; works on containerd, not on CRI-O)"
            }
        ));
    }
    match errors::status(e) {
        Some(s) if s.code == 404 && s.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
            InjectError::Refused(
                "ephemeral containers are disabled on this cluster (404 on pods/ephemeralcontainers: \
                 Kubernetes before 1.25, or the EphemeralContainers feature gate off); podcap-merge \
                 needs them"
                    .to_string(),
            )
        }
        Some(s) if s.code == 404 => InjectError::PodGone(Gone::Deleted),
        _ => InjectError::Refused(errors::explain(e, "adding the capture container", ns)),
    }
}

/// Adds the capture container to `pod` and waits until it runs. `state` is told what is
/// happening ("injecting", "pulling image"…); `added` is called once the API has accepted the
/// container (it stays in the pod from then on, whatever happens next).
pub async fn inject(
    api: &Api<Pod>,
    pod: &Pod,
    opts: &PodOptions,
    name: &str,
    state: &(dyn Fn(SourceState) + Send + Sync),
    added: &(dyn Fn() + Send + Sync),
) -> Result<Injected, InjectError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let target = target_container(pod, opts.target_container.as_deref())?;
    let name = name.to_string();
    let mut caps = capabilities(opts.profile, opts.promiscuous);
    let mut note = None;
    state(SourceState::Injecting);
    let mut current = pod.clone();
    let mut refreshed = false;
    loop {
        let spec = container_spec(opts, &name, &target, &caps);
        let patch = patch_for(&current, spec);
        match api
            .patch_ephemeral_containers(&pod_name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => break,
            // someone else added the pod's first ephemeral container since we looked (our
            // JSON patch would have replaced it: refused): once more, with the pod as it is
            Err(e)
                if !refreshed
                    && errors::code(&e) == Some(422)
                    && errors::status(&e)
                        .is_some_and(|s| s.message.contains("ephemeralContainers")) =>
            {
                refreshed = true;
                match api.get(&pod_name).await {
                    Ok(p) if p.metadata.uid == pod.metadata.uid => current = p,
                    _ => return Err(patch_error(&e, &ns, &pod_name, &name)),
                }
            }
            Err(e)
                if opts.profile == Profile::Auto
                    && !opts.promiscuous // (promiscuous mode needs NET_ADMIN: no fallback)
                    && !caps.is_empty()
                    && errors::pod_security_level(&e).as_deref() == Some("baseline")
                    // only ours is refused: without capabilities it may pass
                    && errors::status(&e).is_none_or(|s| {
                        refused_containers(&s.message).iter().all(|n| *n == name)
                    }) =>
            {
                // nothing was added: one more attempt, without added capabilities
                note = Some(format!(
                    "Pod Security \"baseline\" in namespace {ns} forbids adding {}; retried with \
                     no added capabilities (tcpdump works on containerd, whose defaults include \
                     NET_RAW; on CRI-O it will fail)",
                    caps.join(" and ")
                ));
                caps.clear();
            }
            Err(e) if replaced(&e) => return Err(InjectError::PodGone(Gone::Replaced)),
            Err(e) => return Err(patch_error(&e, &ns, &pod_name, &name)),
        }
    }
    added();
    state(SourceState::StartingContainer);
    let waited = tokio::time::timeout(
        opts.start_timeout,
        wait_running(api, &ns, &pod_name, &name, &opts.image, state),
    )
    .await;
    match waited {
        Ok(Ok(())) => Ok(Injected {
            container: name,
            target,
            capabilities: caps,
            note,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(InjectError::Start(format!(
            "the capture container {name} did not start within {} s; see `kubectl describe pod -n {ns} {pod_name}`",
            opts.start_timeout.as_secs()
        ))),
    }
}

/// What a container status says about starting: done, still waiting (why), or failed.
pub fn judge(st: &ContainerStatus, image: &str) -> Result<Option<SourceState>, String> {
    let Some(state) = &st.state else {
        return Ok(Some(SourceState::StartingContainer));
    };
    if state.running.is_some() {
        return Ok(None);
    }
    if let Some(t) = &state.terminated {
        return Err(format!(
            "the capture container ended before the capture began: exit code {}{}{}",
            t.exit_code,
            t.reason
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default(),
            t.message
                .as_ref()
                .filter(|m| !m.trim().is_empty())
                .map(|m| format!(": {}", m.trim()))
                .unwrap_or_default()
        ));
    }
    let w = state.waiting.as_ref();
    let reason = w.and_then(|w| w.reason.clone()).unwrap_or_default();
    let message = w.and_then(|w| w.message.clone()).unwrap_or_default();
    match reason.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => {
            Err(format!(
            "image {image} cannot be pulled ({reason}: {message}); give an image the nodes can \
             pull with --image (it needs sh and tcpdump), or check --image-pull-policy"
        ))
        }
        "CreateContainerError" | "CreateContainerConfigError" | "RunContainerError" => Err(
            format!("the capture container could not start ({reason}: {message})"),
        ),
        "" | "ContainerCreating" => Ok(Some(SourceState::StartingContainer)),
        other => Ok(Some(SourceState::Waiting(other.to_string()))),
    }
}

async fn wait_running(
    api: &Api<Pod>,
    ns: &str,
    pod: &str,
    container: &str,
    image: &str,
    state: &(dyn Fn(SourceState) + Send + Sync),
) -> Result<(), InjectError> {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={pod}"));
    let mut events = watcher(api.clone(), cfg).boxed();
    let mut last = None;
    while let Some(ev) = events.next().await {
        let pod_obj = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(_)) => return Err(InjectError::PodGone(Gone::Deleted)),
            Ok(_) => continue,
            Err(e) => {
                // a refusal will not pass by retrying: say so now, not after the timeout
                if let watcher::Error::WatchFailed(api_err)
                | watcher::Error::InitialListFailed(api_err)
                | watcher::Error::WatchStartFailed(api_err) = &e
                {
                    if matches!(errors::code(api_err), Some(401 | 403)) {
                        return Err(InjectError::Watch(errors::explain(
                            api_err,
                            "watching the pod until the capture container runs",
                            ns,
                        )));
                    }
                }
                tracing::debug!(pod, "watch while waiting for the container: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if pod_obj.metadata.deletion_timestamp.is_some() {
            return Err(InjectError::PodGone(Gone::Terminating));
        }
        let st = pod_obj
            .status
            .as_ref()
            .and_then(|s| s.ephemeral_container_statuses.as_ref())
            .and_then(|v| v.iter().find(|c| c.name == container));
        let Some(st) = st else { continue };
        match judge(st, image).map_err(InjectError::Start)? {
            None => return Ok(()),
            Some(s) if Some(&s) != last.as_ref() => {
                state(s.clone());
                last = Some(s);
            }
            Some(_) => {}
        }
    }
    Err(InjectError::Watch(
        "the watch of the pod ended before the capture container ran".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_security_refusals_name_their_containers() {
        // as the real v1.28 apiserver words it
        let m = "pods \"mando-1\" is forbidden: violates PodSecurity \"baseline:latest\": \
                 non-default capabilities (containers \"podcap-d72dec4e\", \"podcap-6718ff4c\" \
                 must not include \"NET_RAW\" in securityContext.capabilities.add)";
        assert_eq!(
            refused_containers(m),
            ["podcap-d72dec4e", "podcap-6718ff4c"]
        );
        let one = "violates PodSecurity \"baseline:latest\": non-default capabilities \
                   (container \"podcap-0badcafe\" must not include \"NET_ADMIN\", \"NET_RAW\" in \
                   securityContext.capabilities.add)";
        assert_eq!(refused_containers(one), ["podcap-0badcafe"]);
        assert!(is_capture_container("podcap-d72dec4e"));
        assert!(!is_capture_container("podcap-sidecar"));
        assert!(!is_capture_container("app"));
    }

    #[test]
    fn names_are_unique_and_valid() {
        let a = container_name();
        let b = container_name();
        assert_ne!(a, b);
        assert!(a.len() <= 63 && a.starts_with("podcap-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn profiles() {
        assert_eq!(capabilities(Profile::Auto, false), vec!["NET_RAW"]);
        assert_eq!(
            capabilities(Profile::Auto, true),
            vec!["NET_RAW", "NET_ADMIN"]
        );
        assert!(capabilities(Profile::Baseline, true).is_empty());
        let spec = container_spec(&PodOptions::default(), "podcap-1", "app", &[]);
        assert!(spec.get("securityContext").is_none());
        assert_eq!(spec["targetContainerName"], "app");
        assert_eq!(spec["stdinOnce"], true);
    }

    #[test]
    fn the_patch_is_for_this_pod_only() {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("u-1".into());
        let spec = json!({"name": "podcap-1"});
        let body = |p: Patch<Value>| match p {
            Patch::Json(j) => serde_json::to_value(j).unwrap(),
            _ => panic!("a JSON patch expected"),
        };
        let ops = body(patch_for(&pod, spec.clone()));
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/uid", "value": "u-1"})
        );
        assert_eq!(ops[1]["path"], "/spec/ephemeralContainers");
        pod.spec = Some(Default::default());
        if let Some(s) = pod.spec.as_mut() {
            s.ephemeral_containers = Some(vec![Default::default()]);
        }
        let ops = body(patch_for(&pod, spec.clone()));
        assert_eq!(ops[1]["path"], "/spec/ephemeralContainers/-");
        pod.metadata.uid = None;
        assert!(matches!(patch_for(&pod, spec), Patch::Strategic(_)));
    }

    /// Container statuses as a real v1.28 kubelet (containerd) reports them for an ephemeral
    /// container: our own fixtures, stating the recorded facts (field names, reasons, message
    /// shapes); the recordings themselves are compared below when they are present.
    fn status_fixture(which: &str) -> Value {
        match which {
            "waiting-ErrImageNeverPull" => json!({
                "image": "registry.example/doesnotexist:1", "imageID": "", "lastState": {},
                "name": "cap-noimage", "ready": false, "restartCount": 0,
                "state": {"waiting": {
                    "message": "Container image \"registry.example/doesnotexist:1\" is not present with pull policy of Never",
                    "reason": "ErrImageNeverPull"}}
            }),
            "running" => json!({
                "containerID": "containerd://0123", "image": "registry.example/netshoot:1",
                "imageID": "sha256:0123", "lastState": {}, "name": "cap-b", "ready": false,
                "restartCount": 0, "state": {"running": {"startedAt": "2026-11-26T11:10:44Z"}}
            }),
            "terminated-error-exit7" => json!({
                "containerID": "containerd://4567", "image": "registry.example/netshoot:1",
                "imageID": "sha256:4567", "lastState": {}, "name": "cap-g-exit7", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"containerID": "containerd://4567", "exitCode": 7,
                    "finishedAt": "2026-11-26T11:14:14Z", "reason": "Error",
                    "startedAt": "2026-11-26T11:13:49Z"}}
            }),
            other => panic!("no fixture {other}"),
        }
    }

    fn check_statuses(status: &dyn Fn(&str) -> ContainerStatus) {
        let e = judge(&status("waiting-ErrImageNeverPull"), "x").unwrap_err();
        assert!(e.contains("ErrImageNeverPull"), "{e}");
        assert_eq!(judge(&status("running"), "x"), Ok(None));
        let e = judge(&status("terminated-error-exit7"), "x").unwrap_err();
        assert!(e.contains("exit code 7"), "{e}");
    }

    #[test]
    fn recorded_statuses() {
        check_statuses(&|w| serde_json::from_value(status_fixture(w)).unwrap());
    }

    /// The same checks on the recordings from a real cluster, when the shared folder is
    /// present (`$PODCAP_SHARED_DIR`, default `../shared`); said loudly when it is not.
    #[test]
    fn recorded_statuses_from_the_real_cluster() {
        let dir = std::env::var("PODCAP_SHARED_DIR").unwrap_or_else(|_| "../shared".into());
        let dir = std::path::Path::new(&dir).join("k8s-real");
        if !dir.is_dir() {
            eprintln!(
                "\n!!!!! WARNING: recorded Kubernetes facts not found at {} (set PODCAP_SHARED_DIR); \
                 checked against our own fixtures only\n",
                dir.display()
            );
            return;
        }
        check_statuses(&|w| {
            let p = dir.join(format!("f-ecstatus-{w}.json"));
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_slice(&b).unwrap()
        });
    }
}
