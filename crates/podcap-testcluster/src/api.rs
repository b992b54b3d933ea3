//! Request routing and the JSON the real API server answers with: discovery, lists/gets with
//! selectors, Tables for `kubectl get`, and `Status` errors.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::discovery;
use super::objects::{self, field_value, labels_of, str_at, Resource, State};
use super::respond::{
    bad_request, method_not_allowed, not_found, ok_json, page_not_found, query_param, status,
    unauthorized, Resp,
};
use super::selectors::{FieldSelector, LabelSelector};
use super::shared::Shared;
use super::table;
use super::{access, ephemeral, watch, write};

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
        ["apis", "apps"] => Some(discovery::group_doc("apps")),
        ["apis", access::GROUP] => Some(discovery::group_doc(access::GROUP)),
        ["apis", access::GROUP, "v1"] => Some(access::resources()),
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

    // Access reviews: every authenticated user may ask (system:basic-user).
    match (req.method(), segs.as_slice()) {
        (&Method::POST, ["apis", access::GROUP, "v1", "selfsubjectaccessreviews"]) => {
            return access::self_subject_access_review(shared, req.body())
        }
        (&Method::POST, ["apis", access::GROUP, "v1", "selfsubjectrulesreviews"]) => {
            return access::self_subject_rules_review(shared, req.body())
        }
        (_, ["apis", access::GROUP, "v1", ..]) => {
            return method_not_allowed(
                "the server does not allow this method on the requested resource",
            )
        }
        _ => {}
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
        ("pods", Some(ns), Some(name), None) if m == Method::PATCH => {
            return write::patch_pod(shared, ns, name, content_type, req.body(), query)
        }
        ("namespaces", None, Some(name), None) if m == Method::PATCH => {
            return write::patch_namespace(shared, name, content_type, req.body())
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
    use crate::respond::{status_body, url_decode};

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
