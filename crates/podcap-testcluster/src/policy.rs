//! Fault and policy modes: Pod Security admission (`--pod-security`), RBAC denials
//! (`--rbac-deny`), a disabled ephemeral-containers subresource (`--no-ephemeral-containers`) and
//! image pulls that fail (`--image-pull-fail`). Messages copied from a real v1.28 server.

use std::collections::BTreeSet;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::objects::{str_at, Resource};
use super::respond::{respond, status_body, Resp};

/// The namespace label Pod Security admission enforces.
pub const PSA_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Images whose pull always fails (besides `--image-pull-fail`).
pub const FAILING_REGISTRY: &str = "registry.invalid/";

/// One `--rbac-deny VERB:RESOURCE[@NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, `*`.
    pub verb: String,
    /// `pods`, `pods/ephemeralcontainers`, `pods/attach`, `pods/exec`, `deployments`, `*`.
    pub resource: String,
    /// Only in this namespace (None: everywhere).
    pub namespace: Option<String>,
}

impl Deny {
    /// Parses `patch:pods/ephemeralcontainers` or `list:pods@default`.
    pub fn parse(s: &str) -> Result<Deny, String> {
        let (rule, namespace) = match s.split_once('@') {
            Some((r, ns)) if !ns.is_empty() => (r, Some(ns.to_string())),
            Some(_) => return Err(format!("rbac deny {s:?}: empty namespace after @")),
            None => (s, None),
        };
        let (verb, resource) = rule
            .split_once(':')
            .filter(|(v, r)| !v.is_empty() && !r.is_empty())
            .ok_or_else(|| format!("rbac deny {s:?} is not VERB:RESOURCE[@NAMESPACE]"))?;
        Ok(Deny {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace,
        })
    }

    fn matches(&self, verb: &str, resource: &str, ns: Option<&str>) -> bool {
        (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && self.namespace.as_deref().is_none_or(|n| Some(n) == ns)
    }
}

/// The fault and policy modes of a server.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Requests the kubeconfig's user may not make.
    pub rbac_deny: Vec<Deny>,
    /// The user name in RBAC messages.
    pub user: String,
    /// The ephemeralcontainers subresource is not served (404, empty details).
    pub no_ephemeral_containers: bool,
    /// Images (exact references, or prefixes ending in `/`) whose pull fails.
    pub image_pull_fail: Vec<String>,
    /// How long a created pod stays Pending (unscheduled) before the pretend scheduler binds it.
    pub pending: std::time::Duration,
}

impl Faults {
    /// The 403 for `verb` on `resource` (`pods/attach`…) if a denial matches.
    pub fn authorize(
        &self,
        verb: &str,
        resource: &Resource,
        sub: Option<&str>,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Option<Resp> {
        let full = match sub {
            Some(s) => format!("{}/{s}", resource.name),
            None => resource.name.to_string(),
        };
        if !self.rbac_deny.iter().any(|d| d.matches(verb, &full, ns)) {
            return None;
        }
        let who = match name {
            Some(n) => format!("{} {}", resource.qualified(), json!(n)),
            None => resource.qualified(),
        };
        let scope = match ns {
            Some(ns) => format!("in the namespace {}", json!(ns)),
            None => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{who} is forbidden: User {} cannot {verb} resource {} in API group {} {scope}",
            json!(self.user),
            json!(full),
            json!(resource.group)
        );
        Some(forbidden(resource, name, &message))
    }

    /// Whether pulling `image` fails.
    pub fn pull_fails(&self, image: &str) -> bool {
        image.starts_with(FAILING_REGISTRY)
            || self
                .image_pull_fail
                .iter()
                .any(|i| i == image || (i.ends_with('/') && image.starts_with(i.as_str())))
    }
}

/// 403 Forbidden with details name (if any), group (non-core), kind.
pub fn forbidden(resource: &Resource, name: Option<&str>, message: &str) -> Resp {
    let mut details = String::from("{");
    if let Some(n) = name {
        details.push_str(&format!("\"name\":{},", json!(n)));
    }
    if !resource.group.is_empty() {
        details.push_str(&format!("\"group\":{},", json!(resource.group)));
    }
    details.push_str(&format!("\"kind\":{}}}", json!(resource.name)));
    respond(
        StatusCode::FORBIDDEN,
        "application/json",
        status_body(403, "Forbidden", message, Some(&details)),
    )
}

/// What a server with the ephemeral-containers subresource disabled answers: NotFound without
/// details (kubectl debug then says "ephemeral containers are disabled for this cluster").
pub fn ephemeral_disabled() -> Resp {
    respond(
        StatusCode::NOT_FOUND,
        "application/json",
        status_body(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some("{}"),
        ),
    )
}

/// `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| json!(s.as_ref()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        one.into()
    } else {
        many.into()
    }
}

/// Init containers, containers, ephemeral containers, in that order (PSA's `visitContainers`).
fn all_containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn caps_add(c: &Value) -> Vec<String> {
    c.pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Capabilities baseline allows adding (`capabilities_allowed_1_0`).
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `(bad containers, their non-allowed capabilities)` for capabilities outside `allowed`.
fn bad_caps(containers: &[&Value], allowed: &[&str]) -> (Vec<String>, BTreeSet<String>) {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers {
        let mut valid = true;
        for cap in caps_add(c) {
            if !allowed.contains(&cap.as_str()) {
                valid = false;
                caps.insert(cap);
            }
        }
        if !valid {
            bad.push(str_at(c, "/name").to_string());
        }
    }
    (bad, caps)
}

/// The violations (`reason (detail)`) of `spec` at `level` (`baseline` or `restricted`), in the
/// real order (by check ID). Only the checks an ordinary pod or a debugging container trips are
/// implemented: privileged, capabilities, and for restricted allowPrivilegeEscalation,
/// runAsNonRoot and seccompProfile.
pub fn psa_violations(level: &str, spec: &Value) -> Vec<String> {
    let cs = all_containers(spec);
    let restricted = level == "restricted";
    let mut out = Vec::new();
    let names = |f: &dyn Fn(&Value) -> bool| -> Vec<String> {
        cs.iter()
            .filter(|c| f(c))
            .map(|c| str_at(c, "/name").to_string())
            .collect()
    };
    if restricted {
        let bad = names(&|c| {
            c.pointer("/securityContext/allowPrivilegeEscalation") != Some(&json!(false))
        });
        if !bad.is_empty() {
            out.push(format!(
                "allowPrivilegeEscalation != false ({} {} must set securityContext.allowPrivilegeEscalation=false)",
                plural(bad.len(), "container", "containers"),
                join_quote(&bad)
            ));
        }
        let no_drop = names(&|c| {
            !c.pointer("/securityContext/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        });
        let (bad_add, caps) = bad_caps(&cs, &["NET_BIND_SERVICE"]);
        let mut parts = Vec::new();
        if !no_drop.is_empty() {
            parts.push(format!(
                "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
                plural(no_drop.len(), "container", "containers"),
                join_quote(&no_drop)
            ));
        }
        if !bad_add.is_empty() {
            let caps: Vec<String> = caps.into_iter().collect();
            parts.push(format!(
                "{} {} must not include {} in securityContext.capabilities.add",
                plural(bad_add.len(), "container", "containers"),
                join_quote(&bad_add),
                join_quote(&caps)
            ));
        }
        if !parts.is_empty() {
            out.push(format!("unrestricted capabilities ({})", parts.join("; ")));
        }
    } else {
        let (bad, caps) = bad_caps(&cs, BASELINE_CAPS);
        if !bad.is_empty() {
            let caps: Vec<String> = caps.into_iter().collect();
            out.push(format!(
                "non-default capabilities ({} {} must not include {} in securityContext.capabilities.add)",
                plural(bad.len(), "container", "containers"),
                join_quote(&bad),
                join_quote(&caps)
            ));
        }
    }
    let privileged = names(&|c| c.pointer("/securityContext/privileged") == Some(&json!(true)));
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} {} must not set securityContext.privileged=true)",
            plural(privileged.len(), "container", "containers"),
            join_quote(&privileged)
        ));
    }
    if restricted {
        let pod_non_root = spec.pointer("/securityContext/runAsNonRoot") == Some(&json!(true));
        let bad = names(&|c| match c.pointer("/securityContext/runAsNonRoot") {
            Some(v) => v != &json!(true),
            None => !pod_non_root,
        });
        if !bad.is_empty() {
            out.push(format!(
                "runAsNonRoot != true (pod or {} {} must set securityContext.runAsNonRoot=true)",
                plural(bad.len(), "container", "containers"),
                join_quote(&bad)
            ));
        }
        let pod_seccomp = matches!(
            str_at(spec, "/securityContext/seccompProfile/type"),
            "RuntimeDefault" | "Localhost"
        );
        let bad = names(
            &|c| match str_at(c, "/securityContext/seccompProfile/type") {
                "" => !pod_seccomp,
                t => t != "RuntimeDefault" && t != "Localhost",
            },
        );
        if !bad.is_empty() {
            out.push(format!(
                "seccompProfile (pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                plural(bad.len(), "container", "containers"),
                join_quote(&bad)
            ));
        }
    }
    out
}

/// The 403 Pod Security admission answers for pod `name` with `spec` in a namespace labelled
/// `level` (`baseline`/`restricted`; anything else admits everything).
pub fn psa_check(level: &str, name: &str, spec: &Value, pods: &Resource) -> Option<Resp> {
    if level != "baseline" && level != "restricted" {
        return None;
    }
    let v = psa_violations(level, spec);
    if v.is_empty() {
        return None;
    }
    let message = format!(
        "pods {} is forbidden: violates PodSecurity \"{level}:latest\": {}",
        json!(name),
        v.join(", ")
    );
    Some(forbidden(pods, Some(name), &message))
}

/// The normalized reference containerd reports (`busybox` → `docker.io/library/busybox:latest`).
fn normalize(image: &str) -> String {
    let (first, _) = image.split_once('/').unwrap_or(("", image));
    let mut r = if first.contains('.') || first.contains(':') || first == "localhost" {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    let last = r.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        r.push_str(":latest");
    }
    r
}

/// The `waiting.message` of a failed pull (kubelet 1.28 + containerd: the CRI error).
pub fn pull_error_message(image: &str) -> String {
    let r = normalize(image);
    let (host, rest) = r.split_once('/').unwrap_or(("", &r));
    let (repo, tag) = rest.rsplit_once(':').unwrap_or((rest, "latest"));
    let host_only = host.split(':').next().unwrap_or(host);
    format!(
        "rpc error: code = Unknown desc = failed to pull and unpack image {r:?}: failed to resolve reference {r:?}: failed to do request: Head \"https://{host}/v2/{repo}/manifests/{tag}\": dial tcp: lookup {host_only}: no such host"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_denials() {
        let d = Deny::parse("list:pods@default").expect("parse");
        assert_eq!(d.namespace.as_deref(), Some("default"));
        assert!(d.matches("list", "pods", Some("default")));
        assert!(!d.matches("list", "pods", Some("shop")));
        assert!(Deny::parse("pods").is_err());
    }

    #[test]
    fn baseline_and_restricted_messages() {
        let spec = json!({"containers": [{"name": "app"}], "ephemeralContainers": [
            {"name": "psa-b1", "securityContext": {"capabilities": {"add": ["NET_RAW", "NET_ADMIN"]}}}]});
        assert_eq!(
            psa_violations("baseline", &spec),
            ["non-default capabilities (container \"psa-b1\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)"]
        );
        assert!(psa_violations("baseline", &json!({"containers": [{"name": "app"}]})).is_empty());
        assert_eq!(psa_violations("restricted", &spec).len(), 4);
    }

    #[test]
    fn pull_messages() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("registry.invalid/x:1"), "registry.invalid/x:1");
        assert!(pull_error_message("registry.invalid/x:1")
            .contains("Head \"https://registry.invalid/v2/x/manifests/1\""));
    }
}
