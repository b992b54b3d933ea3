//! Request routing and the JSON the real API server answers with: discovery, lists/gets with
//! selectors, Tables for `kubectl get`, and `Status` errors.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::discovery;
use super::objects::{self, field_value, labels_of, str_at, Resource, State};
use super::selectors::{FieldSelector, LabelSelector};
use super::table;
use super::{ephemeral, watch, write};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Shared {
    /// Cluster state; later work adds writers.
    pub state: Mutex<State>,
    /// The bearer token clients must present.
    pub token: String,
    /// `/version` body.
    pub version: Value,
    /// `host:port` for `serverAddressByClientCIDRs`.
    pub address: String,
    /// The emulated kubelet's processes and network namespaces.
    pub kubelet: Arc<super::kubelet::Kubelet>,
    /// Fault and policy modes (RBAC denials, disabled subresource, failing pulls).
    pub faults: super::policy::Faults,
}

impl Shared {
    /// Locks the state, ignoring poisoning (a panicked handler leaves consistent JSON).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A response body: all at once (with Content-Length), or streamed chunk by chunk (watches,
/// chunked transfer encoding) until the sender is dropped.
#[derive(Debug)]
pub enum Body {
    /// A complete body; `None` once sent.
    Full(Option<Bytes>),
    /// Chunks as they come.
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// An HTTP response.
pub type Resp = Response<Body>;

/// A response with `body`, the real server's Content-Type and Cache-Control.
pub fn respond(code: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Body::Full(Some(Bytes::from(body))));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

fn ok_json(v: &Value) -> Resp {
    json_resp(StatusCode::OK, v)
}

/// `v` as `application/json` with status `code`.
pub fn json_resp(code: StatusCode, v: &Value) -> Resp {
    respond(code, "application/json", format!("{v}\n"))
}

/// A `Status` failure body, fields in the real server's order; `details` is raw JSON.
pub fn status_body(code: u16, reason: &str, message: &str, details: Option<&str>) -> String {
    let q = |s: &str| Value::String(s.to_string()).to_string();
    let details = details.map_or(String::new(), |d| format!(",\"details\":{d}"));
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":{},\"reason\":{}{details},\"code\":{code}}}\n",
        q(message),
        q(reason)
    )
}

/// A `Status` failure response without details.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Resp {
    respond(
        code,
        "application/json",
        status_body(code.as_u16(), reason, message, None),
    )
}

fn unauthorized() -> Resp {
    respond(
        StatusCode::UNAUTHORIZED,
        "application/json",
        unauthorized_body(),
    )
}

/// Body of the 401 for a missing or wrong token (f-401-bad-token.json).
pub fn unauthorized_body() -> String {
    status_body(401, "Unauthorized", "Unauthorized", None)
}

/// Body of the 404 for a named object (f-404-get-nonexistent-pod.json): `pods "x" not found`,
/// details name, group (non-core only), kind.
pub fn not_found_body(resource: &Resource, name: &str) -> String {
    let g = if resource.group.is_empty() {
        String::new()
    } else {
        format!(",\"group\":{}", json!(resource.group))
    };
    let details = format!(
        "{{\"name\":{}{g},\"kind\":{}}}",
        json!(name),
        json!(resource.name)
    );
    let message = format!("{} \"{name}\" not found", resource.qualified());
    status_body(404, "NotFound", &message, Some(&details))
}

/// 404 NotFound for a named object.
pub fn not_found(resource: &Resource, name: &str) -> Resp {
    respond(
        StatusCode::NOT_FOUND,
        "application/json",
        not_found_body(resource, name),
    )
}

/// 400 BadRequest.
pub fn bad_request(message: &str) -> Resp {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn method_not_allowed(message: &str) -> Resp {
    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
}

/// What the real server answers for paths it has no handler for.
fn page_not_found() -> Resp {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n".to_string(),
    )
}

/// Decodes `application/x-www-form-urlencoded` query values.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A decoded query parameter.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (url_decode(k) == key).then(|| url_decode(v))
    })
}

/// Largest request body accepted (the real server's limit is 3 MiB).
const MAX_BODY: usize = 3 << 20;

/// Handles one request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    // attach/exec upgrade the connection: they need the request itself, not its body.
    let segs: Vec<&str> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let ["api", "v1", "namespaces", ns, "pods", pod, sub @ ("attach" | "exec")] = segs.as_slice()
    {
        if !authorized(&shared, &req) {
            return Ok(unauthorized());
        }
        if req.method() == Method::GET || req.method() == Method::POST {
            // A WebSocket upgrade (GET) is authorized as `get` before 1.35, `create` from 1.35;
            // a POST is always `create`.
            let minor: u32 = str_at(&shared.version, "/minor").parse().unwrap_or(0);
            let verb = if req.method() == Method::POST || minor >= 35 {
                "create"
            } else {
                "get"
            };
            let pods = objects::resource("", "pods").expect("pods");
            if let Some(r) = shared
                .faults
                .authorize(verb, pods, Some(sub), Some(ns), Some(pod))
            {
                return Ok(r);
            }
            let (ns, pod, exec) = (ns.to_string(), pod.to_string(), *sub == "exec");
            return Ok(super::stream::handle(&shared, req, &ns, &pod, exec));
        }
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("request body: {e}"),
            ))
        }
    };
    Ok(route(&shared, &Request::from_parts(parts, body)))
}

fn authorized<B>(shared: &Shared, req: &Request<B>) -> bool {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token)
}

fn route(shared: &Arc<Shared>, req: &Request<Bytes>) -> Resp {
    if !authorized(shared, req) {
        return unauthorized();
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;

    // Discovery. Aggregated discovery (Accept …;as=APIGroupDiscoveryList) gets the legacy body
    // with Content-Type application/json, as servers before 1.26 do; kubectl falls back.
    let discovery_body = match segs.as_slice() {
        ["version"] => Some(shared.version.clone()),
        ["api"] => Some(discovery::api_versions(&shared.address)),
        ["apis"] => Some(discovery::api_group_list()),
        ["apis", "apps"] => Some(discovery::apps_group()),
        ["api", "v1"] => Some(discovery::core_v1()),
        ["apis", "apps", "v1"] => Some(discovery::apps_v1()),
        ["openapi", "v3"] => Some(discovery::openapi_v3_root()),
        ["openapi", "v3", "api", "v1"] => Some(discovery::openapi_v3_core_v1()),
        _ => None,
    };
    if let Some(body) = discovery_body {
        if !get {
            return method_not_allowed(
                "the server does not allow this method on the requested resource",
            );
        }
        return ok_json(&body);
    }

    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        _ => return page_not_found(),
    };
    // (namespace, resource, name, subresource)
    let (ns, res, name, sub) = match rest {
        ["namespaces", ns, res, tail @ ..] => match tail {
            [] => (Some(*ns), *res, None, None),
            [name] => (Some(*ns), *res, Some(*name), None),
            [name, sub] => (Some(*ns), *res, Some(*name), Some(*sub)),
            _ => return page_not_found(),
        },
        [res] => (None, *res, None, None),
        [res, name] => (None, *res, Some(*name), None),
        [res, name, sub] => (None, *res, Some(*name), Some(*sub)),
        _ => return page_not_found(),
    };
    let Some(resource) = objects::resource(group, res) else {
        return page_not_found();
    };
    // `namespaces/<ns>/<x>` where the resource is cluster-scoped is not a path the server serves,
    // except `/api/v1/namespaces/<name>` itself (handled above as `[res, name]`).
    if ns.is_some() && !resource.namespaced {
        return page_not_found();
    }
    match sub {
        None | Some("status") => {}
        Some("ephemeralcontainers") if resource.name == "pods" => {}
        // attach, exec, log, portforward, proxy, scale…: not yet.
        Some(_) => return page_not_found(),
    }
    let m = req.method();
    let watch = query_param(query, "watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (m, name) {
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ if watch => "watch",
        (_, Some(_)) => "get",
        (_, None) => "list",
    };
    if let Some(r) = shared.faults.authorize(verb, resource, sub, ns, name) {
        return r;
    }
    if sub == Some("ephemeralcontainers") && shared.faults.no_ephemeral_containers {
        return super::policy::ephemeral_disabled();
    }
    let as_table = accept.contains("as=Table");
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match (resource.name, ns, name, sub) {
        ("pods", Some(ns), None, None) if m == Method::POST => {
            return write::create_pod(shared, ns, req.body(), query)
        }
        ("pods", Some(ns), Some(name), None) if m == Method::DELETE => {
            return write::delete_pod(shared, ns, name, req.body(), query)
        }
        ("pods", Some(ns), Some(name), Some("ephemeralcontainers"))
            if m == Method::PATCH || m == Method::PUT =>
        {
            return ephemeral::update(
                shared,
                ns,
                name,
                m == Method::PUT,
                content_type,
                req.body(),
                query,
            )
        }
        _ => {}
    }
    if !get {
        return method_not_allowed(
            "the server does not allow this method on the requested resource",
        );
    }

    if watch {
        if name.is_some() {
            return method_not_allowed("watch of a single object: use a list with a fieldSelector");
        }
        let (labels, fields) = match selectors(resource, query) {
            Ok(s) => s,
            Err(e) => return bad_request(&e),
        };
        return watch::start(
            shared,
            resource,
            ns,
            labels,
            fields,
            query,
            as_table.then(|| query_param(query, "includeObject").unwrap_or_default()),
        );
    }
    let st = shared.lock();
    match name {
        Some(name) => match st.get(resource.name, ns, name) {
            Some(obj) if as_table => ok_json(&table::table(
                resource,
                &[obj],
                st.resource_version,
                objects::now_unix(),
                &query_param(query, "includeObject").unwrap_or_default(),
            )),
            Some(obj) => ok_json(obj),
            None => not_found(resource, name),
        },
        None => list(&st, resource, ns, query, as_table),
    }
}

/// The label and field selectors of a list or watch (Err: the 400 message).
fn selectors(resource: &Resource, query: &str) -> Result<(LabelSelector, FieldSelector), String> {
    let labels = LabelSelector::parse(&query_param(query, "labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(&query_param(query, "fieldSelector").unwrap_or_default())?;
    if let Some(bad) = fields
        .0
        .iter()
        .find(|r| field_value(resource.name, &json!({}), &r.field).is_none())
    {
        return Err(format!("field label not supported: {}", bad.field));
    }
    Ok((labels, fields))
}

fn list(st: &State, resource: &Resource, ns: Option<&str>, query: &str, as_table: bool) -> Resp {
    let (labels, fields) = match selectors(resource, query) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let mut items: Vec<&Value> = st
        .list(resource.name, ns)
        .into_iter()
        .filter(|o| labels.matches(&labels_of(o)))
        .filter(|o| fields.matches(|f| field_value(resource.name, o, f)))
        .collect();
    // etcd returns keys in order: namespace, then name.
    items.sort_by_key(|o| {
        (
            str_at(o, "/metadata/namespace"),
            str_at(o, "/metadata/name"),
        )
    });
    if as_table {
        return ok_json(&table::table(
            resource,
            &items,
            st.resource_version,
            objects::now_unix(),
            &query_param(query, "includeObject").unwrap_or_default(),
        ));
    }
    // List items carry no kind/apiVersion, like the real server's.
    let items: Vec<Value> = items
        .into_iter()
        .map(|o| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    ok_json(&json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": st.resource_version.to_string()},
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            url_decode("app+in+%28mando%29%2Ctier"),
            "app in (mando),tier"
        );
        assert_eq!(url_decode("%"), "%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("a%2"), "a%2");
        assert_eq!(
            query_param("limit=500&labelSelector=%21missing", "labelSelector").as_deref(),
            Some("!missing")
        );
    }

    #[test]
    fn status_bodies_are_statuses() {
        let v: Value =
            serde_json::from_str(&status_body(401, "Unauthorized", "Unauthorized", None))
                .expect("json");
        assert_eq!(v["code"], 401);
        assert_eq!(v["reason"], "Unauthorized");
    }
}
