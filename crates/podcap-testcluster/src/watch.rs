//! Watches (`?watch=1`): newline-delimited JSON events `{"type":…,"object":…}` streamed with
//! chunked transfer encoding, as the real server sends them.
//!
//! Without `resourceVersion` (or with `0`) the watch starts with a synthetic ADDED per matching
//! object, then live events. With a resourceVersion it replays the retained changes after it;
//! one older than the retained window gets 410 `Expired`
//! (`too old resource version: X (Y)`). With selectors, an object that starts (stops) matching
//! arrives as ADDED (DELETED), as from the real watch cache.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::objects::{field_value, labels_of, now_unix, str_at, Resource, State};
use super::respond::{bad_request, query_param, respond, Body, Resp};
use super::selectors::{FieldSelector, LabelSelector};
use super::shared::Shared;
use super::table;

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (the real server: about
/// once a minute).
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// What a watch sends.
struct Filter {
    resource: &'static Resource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// `Some(includeObject)` when the client asked for Tables.
    table: Option<String>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| str_at(obj, "/metadata/namespace") == ns)
            && self.labels.matches(&labels_of(obj))
            && self
                .fields
                .matches(|f| field_value(self.resource.name, obj, f))
    }

    /// One event line.
    fn line(&self, kind: &str, obj: &Value, rv: u64) -> Bytes {
        let object = match &self.table {
            Some(include) => table::table(self.resource, &[obj], rv, now_unix(), include),
            None => obj.clone(),
        };
        Bytes::from(format!(
            "{{\"type\":{},\"object\":{object}}}\n",
            json!(kind)
        ))
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let mut object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null}});
        if self.resource.name == "pods" {
            object["spec"] = json!({"containers": null});
            object["status"] = json!({});
        }
        Bytes::from(format!("{{\"type\":\"BOOKMARK\",\"object\":{object}}}\n"))
    }

    /// Event lines for the retained changes after `after`; None if they are no longer retained.
    fn since(&self, st: &State, after: u64) -> Option<Vec<Bytes>> {
        if after < st.history_base {
            return None;
        }
        let mut out = Vec::new();
        for e in st
            .history
            .iter()
            .filter(|e| e.rv > after && e.resource == self.resource.name)
        {
            let was = e.old.as_ref().is_some_and(|o| self.matches(o));
            let is = self.matches(&e.new);
            let kind = match (e.kind, was, is) {
                ("DELETED", true, _) => "DELETED",
                ("DELETED", false, _) => continue,
                (_, false, true) => "ADDED",
                (_, true, true) => "MODIFIED",
                (_, true, false) => {
                    // It left the selection: the object as it was (it matched then), with the
                    // change's resourceVersion, as the real watch cache sends it.
                    let mut was = e.old.clone().unwrap_or_else(|| e.new.clone());
                    was["metadata"]["resourceVersion"] = json!(e.rv.to_string());
                    out.push(self.line("DELETED", &was, e.rv));
                    continue;
                }
                (_, false, false) => continue,
            };
            out.push(self.line(kind, &e.new, e.rv));
        }
        Some(out)
    }
}

/// Body of the 410 for a watch from a resourceVersion older than the retained window.
pub fn expired_body(requested: u64, base: u64) -> String {
    super::respond::status_body(
        410,
        "Expired",
        &format!("too old resource version: {requested} ({base})"),
        None,
    )
}

/// Starts a watch; the response streams until the client goes away, `timeoutSeconds` passes or
/// the retained window moves past the watch.
pub fn start(
    shared: &Arc<Shared>,
    resource: &'static Resource,
    namespace: Option<&str>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &str,
    table: Option<String>,
) -> Resp {
    let filter = Filter {
        resource,
        namespace: namespace.map(str::to_string),
        labels,
        fields,
        table,
    };
    let bookmarks = query_param(query, "allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = match query_param(query, "timeoutSeconds") {
        None => None,
        Some(t) => match t.parse::<u64>() {
            Ok(t) => Some(Duration::from_secs(t)),
            Err(_) => return bad_request(&format!("invalid timeoutSeconds: {t:?}")),
        },
    };
    let rv_param = query_param(query, "resourceVersion").unwrap_or_default();
    let (initial, from, mut changed) = {
        let st = shared.lock();
        let mut initial = Vec::new();
        let from = if rv_param.is_empty() || rv_param == "0" {
            let mut objs: Vec<&Value> = st
                .list(resource.name, namespace)
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect();
            objs.sort_by_key(|o| {
                (
                    str_at(o, "/metadata/namespace"),
                    str_at(o, "/metadata/name"),
                )
            });
            for o in objs {
                let rv = str_at(o, "/metadata/resourceVersion").parse().unwrap_or(0);
                initial.push(filter.line("ADDED", o, rv));
            }
            st.resource_version
        } else {
            let Ok(rv) = rv_param.parse::<u64>() else {
                return bad_request(&format!("invalid resource version: {rv_param:?}"));
            };
            if rv < st.history_base {
                return respond(
                    StatusCode::GONE,
                    "application/json",
                    expired_body(rv, st.history_base),
                );
            }
            rv
        };
        (initial, from, st.changed.subscribe())
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let shared = shared.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last = from;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let lines = {
                let st = shared.lock();
                let lines = filter.since(&st, last);
                let base = st.history_base;
                last = last.max(st.resource_version);
                lines.ok_or(base)
            };
            match lines {
                Ok(lines) => {
                    for line in lines {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
                Err(base) => {
                    let status: Value =
                        serde_json::from_str(&expired_body(last, base)).unwrap_or(Value::Null);
                    let _ = tx
                        .send(Bytes::from(format!(
                            "{{\"type\":\"ERROR\",\"object\":{status}}}\n"
                        )))
                        .await;
                    return;
                }
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(filter.bookmark(last)).await.is_err() {
                        return;
                    }
                }
                _ = sleep => return,
                _ = tx.closed() => return,
            }
        }
    });

    let mut r = Response::new(Body::Stream(rx));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}
