//! `pods/NAME/attach` and `pods/NAME/exec` over WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): binary frames whose first byte is the channel (0 stdin, 1 stdout,
//! 2 stderr, 3 status, 4 resize; v5: 255 = close the stream named by the payload).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::Message;

use super::kubelet::Proc;
use super::objects::{self, str_at};
use super::respond::{bad_request, not_found, query_param, respond, url_decode, Body, Resp};
use super::shared::Shared;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// Every value of a repeated query parameter.
fn query_params(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k) == key).then(|| url_decode(v))
        })
        .collect()
}

fn flag(query: &str, key: &str) -> bool {
    query_param(query, key).is_some_and(|v| v == "true" || v == "1")
}

/// Go's JSON encoder escapes `<`, `>` and `&`.
fn go_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Handles an attach (`exec == false`) or exec request for pod `ns/pod`.
pub fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    ns: &str,
    pod_name: &str,
    exec: bool,
) -> Resp {
    let query = req.uri().query().unwrap_or("").to_string();
    let pods = objects::resource("", "pods").expect("pods");
    let Some(pod) = shared.lock().get("pods", Some(ns), pod_name).cloned() else {
        return not_found(pods, pod_name);
    };
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|c| str_at(c, "/name").to_string()).collect())
            .unwrap_or_default()
    };
    let regular = names("containers");
    let ephemeral = names("ephemeralContainers");
    let container = query_param(&query, "container")
        .filter(|c| !c.is_empty())
        .or_else(|| regular.first().cloned())
        .unwrap_or_default();
    if !regular.contains(&container)
        && !ephemeral.contains(&container)
        && !names("initContainers").contains(&container)
    {
        return bad_request(&format!(
            "container {container} is not valid for pod {pod_name}"
        ));
    }
    let argv = query_params(&query, "command");
    if exec && argv.is_empty() {
        return bad_request("you must specify at least 1 command");
    }
    // A terminated container cannot be attached to (recorded: 500, text/plain).
    let terminated = pod
        .pointer("/status/ephemeralContainerStatuses")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter().any(|s| {
                s["name"] == container.as_str() && s.pointer("/state/terminated").is_some()
            })
        });
    if terminated {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("container {container} not found in pod {pod_name}_{ns}\n"),
        );
    }
    let upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade.starts_with("spdy") {
        return bad_request("unable to upgrade: podcap-testcluster speaks WebSocket only, not SPDY (use kubectl >= 1.30, i.e. --server-version >= 1.30)");
    }
    if upgrade != "websocket" {
        return bad_request("Upgrade request required");
    }
    let minor: u32 = str_at(&shared.version, "/minor").parse().unwrap_or(0);
    let supported: &[&str] = if minor >= 30 { &[V5, V4] } else { &[V4] };
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let Some(protocol) = offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
    else {
        // Recorded: 403, empty body, Connection: close.
        let mut r = Response::new(Body::Full(Some(Bytes::new())));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return bad_request("missing Sec-WebSocket-Key");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let want = Want {
        stdin: flag(&query, "stdin"),
        stdout: flag(&query, "stdout"),
        stderr: flag(&query, "stderr"),
        v5: protocol == V5,
    };
    let shared = shared.clone();
    let (ns, pod_name) = (ns.to_string(), pod_name.to_string());
    let pod_ip = str_at(&pod, "/status/podIP").to_string();
    let node = shared.kubelet.node_of(&pod);
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("upgrade: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if exec {
            let netns = shared.kubelet.pod_netns(&ns, &pod_name, &pod_ip, node);
            let env = super::write::pod_env(&shared, &pod);
            let spawned = shared
                .kubelet
                .spawn(netns.as_deref(), &env, &argv, want.stdin, false);
            match spawned {
                Ok((proc, child)) => {
                    tokio::spawn(shared.kubelet.clone().run(proc.clone(), child));
                    session(ws, want, Some(proc), Some(argv)).await;
                }
                Err(e) => {
                    let msg = format!("Internal error occurred: error executing command in container: failed to exec in container: {e}");
                    let status = json!({"metadata": {}, "status": "Failure", "message": msg,
                        "reason": "InternalError", "details": {"causes": [{"message": msg}]}, "code": 500});
                    finish(ws, &status).await;
                }
            }
        } else {
            let proc = shared.kubelet.container(&ns, &pod_name, &container);
            session(ws, want, proc, None).await;
        }
    });
    let mut r = Response::new(Body::Full(None));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("base64"),
    );
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocol).expect("token"),
    );
    r
}

#[derive(Debug, Clone, Copy)]
struct Want {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    v5: bool,
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v)
}

/// Status frame on channel 3, then close 1000.
async fn finish(mut ws: Ws, status: &Value) {
    let _ = ws.send(frame(3, go_json(status).as_bytes())).await;
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = ws.flush().await;
    // Wait (briefly) for the client's close reply.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

enum End {
    /// The process ended (exit code).
    Exited(i32),
    /// The client signalled stdin EOF on a non-stdinOnce attach: it detaches.
    StdinEof,
    /// The client went away.
    Gone,
}

/// Streams between the client and `proc` (None: a pretend container without a process — the
/// session stays open with no output until the client leaves). `argv` is set for exec.
async fn session(mut ws: Ws, want: Want, proc: Option<Arc<Proc>>, argv: Option<Vec<String>>) {
    if ws.send(frame(1, b"")).await.is_err() {
        return;
    }
    let sink = proc
        .as_ref()
        .and_then(|p| p.attach(want.stdout, want.stderr));
    let (sink_id, mut rx) = match sink {
        Some((id, rx)) => (Some(id), Some(rx)),
        None => (None, None),
    };
    let exec = argv.is_some();
    let end = loop {
        tokio::select! {
            chunk = async { match rx.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                match chunk {
                    Some((ch, data)) => {
                        if ws.send(frame(ch, &data)).await.is_err() {
                            break End::Gone;
                        }
                    }
                    None => {
                        let mut exited = proc.as_ref().expect("proc").exited.clone();
                        let code = exited.wait_for(Option::is_some).await.ok().and_then(|c| *c).unwrap_or(0);
                        break End::Exited(code);
                    }
                }
            }
            msg = ws.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(d))) => d,
                    Some(Ok(Message::Text(t))) => t.into_bytes(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Gone,
                    Some(Ok(_)) => continue,
                };
                let Some((&ch, payload)) = data.split_first() else { continue };
                match ch {
                    0 if want.stdin => {
                        if let Some(p) = &proc {
                            let mut stdin = p.stdin.lock().await;
                            if let Some(w) = stdin.as_mut() {
                                if w.write_all(payload).await.is_err() || w.flush().await.is_err() {
                                    stdin.take();
                                }
                            }
                        }
                    }
                    255 if want.v5 && payload.first() == Some(&0) => {
                        // The client closed its stdin.
                        match &proc {
                            Some(p) if exec || p.stdin_once => {
                                if exec { p.close_stdin().await } else { p.client_with_stdin_left().await }
                            }
                            _ => break End::StdinEof,
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    if let (Some(p), Some(id)) = (&proc, sink_id) {
        p.detach(id);
    }
    if let Some(p) = &proc {
        if want.stdin {
            if exec {
                p.close_stdin().await;
            } else {
                p.client_with_stdin_left().await;
            }
        }
    }
    let success = json!({"metadata": {}, "status": "Success"});
    match end {
        End::Gone => {}
        End::StdinEof => finish(ws, &success).await,
        End::Exited(code) => {
            let status = match argv {
                Some(argv) if code != 0 => {
                    json!({"metadata": {}, "status": "Failure",
                    "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", argv.join(" ")),
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
                }
                _ => success,
            };
            finish(ws, &status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_params() {
        assert_eq!(
            query_params(
                "command=sh&command=-c&command=echo+hi%3B+exit+3&stdin=true",
                "command"
            ),
            vec!["sh", "-c", "echo hi; exit 3"]
        );
    }

    #[test]
    fn go_escapes() {
        assert_eq!(go_json(&json!("a>&b")), "\"a\\u003e\\u0026b\"");
    }
}
