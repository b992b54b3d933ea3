//! What every handler shares: the response body type and the response helpers that build the real API server's answers (Status bodies, 401,
//! 404, 400) and read query strings. The router ([`super::api`]) and the handlers (ephemeral
//! containers, exec/attach, watches, writes, policy) all import from here; nothing here
//! imports them back.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::objects::Resource;

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

pub fn ok_json(v: &Value) -> Resp {
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

pub fn unauthorized() -> Resp {
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

pub fn method_not_allowed(message: &str) -> Resp {
    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
}

/// What the real server answers for paths it has no handler for.
pub fn page_not_found() -> Resp {
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
