//! Turning API errors into messages that say what blocked us and what to do, and the error
//! of a pod run that cannot start.

/// Why a pod run cannot start (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable configuration (kubeconfig, context, in-cluster).
    #[error("{0}")]
    Config(String),
    /// The selection is malformed or names a workload that does not exist.
    #[error("{0}")]
    Selection(String),
    /// The API server refused, or could not be reached (then: where it was looked for).
    #[error("{message}{}", .unreachable_from.as_ref().map(|s| format!("; is the cluster in {s} reachable?")).unwrap_or_default())]
    Api {
        message: String,
        unreachable_from: Option<String>,
    },
    /// The selection names no running (or starting) pod.
    #[error("{0}")]
    NoPods(String),
    /// More running pods than --max-pods.
    #[error("{0}")]
    TooManyPods(String),
}

/// The API server could not be reached at all (no connection, TLS), as opposed to answering.
pub fn unreachable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// The API's `Status` of a failed request, when the error is one.
pub fn status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

pub fn code(e: &kube::Error) -> Option<u16> {
    status(e).map(|s| s.code)
}

/// `User "x" cannot patch resource "pods/ephemeralcontainers" … in the namespace "shop"`:
/// (verb, resource) when the error is an RBAC denial.
pub fn rbac_denial(e: &kube::Error) -> Option<(String, String)> {
    let s = status(e)?;
    if s.code != 403 {
        return None;
    }
    let rest = s.message.split(" cannot ").nth(1)?;
    let mut words = rest.split_whitespace();
    let verb = words.next()?.to_string();
    if words.next()? != "resource" {
        return None;
    }
    let resource = words.next()?.trim_matches('"').to_string();
    Some((verb, resource))
}

/// The Pod Security level named in a PodSecurity rejection (`baseline`, `restricted`).
pub fn pod_security_level(e: &kube::Error) -> Option<String> {
    let s = status(e)?;
    let rest = s.message.split("violates PodSecurity \"").nth(1)?;
    Some(rest.split([':', '"']).next()?.to_string())
}

/// The API server's URL, once the client is configured (for messages about reaching it).
static SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Remembers the API server's URL for [`transport`] messages.
pub fn remember_server(url: &str) {
    let _ = SERVER.set(url.trim_end_matches('/').to_string());
}

/// Why the API server could not be reached, as kubectl says it: the operating system's cause
/// and the URL (`connection refused to https://127.0.0.1:1`); None when `e` is not a
/// transport error.
pub fn transport(e: &kube::Error) -> Option<String> {
    if !unreachable(e) {
        return None;
    }
    // the innermost cause is the one that says what happened (kube and hyper wrap it as
    // "client error (Connect)", "tcp connect error")
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "the connection failed".to_string(),
    };
    Some(match SERVER.get() {
        Some(url) => format!("{text} to {url}"),
        None => text,
    })
}

/// A clear message for an API error met while doing `what` in namespace `ns`.
pub fn explain(e: &kube::Error, what: &str, ns: &str) -> String {
    if let Some(why) = transport(e) {
        return format!("{what}: cannot reach the API server: {why}");
    }
    if let Some((verb, resource)) = rbac_denial(e) {
        return format!(
            "{what}: RBAC forbids it: your user may not `{verb}` `{resource}` in namespace {ns}; \
             ask for a Role granting it (docs/rbac.md has the minimal Role)"
        );
    }
    match status(e) {
        Some(s) if s.code == 401 => format!(
            "{what}: the API server rejected our credentials (401 Unauthorized); refresh the \
             kubeconfig's token or log in again"
        ),
        Some(s) => format!("{what}: {} ({} {})", s.message, s.code, s.reason),
        None => format!("{what}: {e}"),
    }
}
