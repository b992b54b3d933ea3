//! Scale-up and deletion mid-capture (`--add-pod-after`, `--delete-pod-after`): at the given
//! times after start, a new pod of the demo ReplicaSet is created (through the same path as a
//! POST, so watches see ADDED, then MODIFIED ContainerCreating / Running), or one demo pod is
//! deleted (MODIFIED with `deletionTimestamp`, then DELETED). The Deployment's and ReplicaSet's
//! `spec.replicas` and status counters follow.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::objects::str_at;
use super::shared::Shared;
use super::write::{self, STEP};

/// Parses `N@SECS` (`--add-pods`) into N copies of SECS.
pub fn parse_count_at(s: &str) -> Result<Vec<f64>, String> {
    let (n, secs) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?} is not N@SECS"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: N is not a number"))?;
    let secs = parse_secs(secs)?;
    Ok(vec![secs; n])
}

/// Parses a non-negative number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// Schedules the additions and deletions (seconds from now).
pub fn schedule(shared: &Arc<Shared>, namespace: &str, add: &[f64], delete: &[f64]) {
    for &secs in add {
        let (shared, ns) = (shared.clone(), namespace.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            add_pod(&shared, &ns);
        });
    }
    for &secs in delete {
        let (shared, ns) = (shared.clone(), namespace.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            delete_pod(&shared, &ns);
        });
    }
}

/// The demo ReplicaSet of `ns` (the one owned by a Deployment).
fn replicaset(shared: &Shared, ns: &str) -> Option<Value> {
    shared
        .lock()
        .list("replicasets", Some(ns))
        .into_iter()
        .find(|rs| str_at(rs, "/metadata/ownerReferences/0/kind") == "Deployment")
        .cloned()
}

fn owned_by(pod: &Value, rs_uid: &str) -> bool {
    str_at(pod, "/metadata/ownerReferences/0/uid") == rs_uid
}

/// Creates one more pod of the demo ReplicaSet (as its controller would after a scale-up).
pub fn add_pod(shared: &Arc<Shared>, ns: &str) {
    let Some(rs) = replicaset(shared, ns) else {
        tracing::warn!("add pod: no ReplicaSet in {ns}");
        return;
    };
    let rs_name = str_at(&rs, "/metadata/name");
    let body = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": format!("{rs_name}-"),
            "namespace": ns,
            "labels": rs.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                "uid": str_at(&rs, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": rs.pointer("/spec/template/spec").cloned().unwrap_or(json!({})),
    });
    let body = Bytes::from(body.to_string());
    let resp = write::create_pod(shared, ns, &body, "");
    tracing::info!("added a pod to {rs_name}: {:?}", resp.status());
    // The status counters follow when the pod runs ([`pod_changed`]).
    set_replicas(shared, ns, 1);
}

/// A pod of namespace `ns` started running: the counters of the demo ReplicaSet (and its
/// Deployment) follow if it is one of its pods.
pub fn pod_changed(shared: &Shared, ns: &str, pod: &Value) {
    let owned =
        replicaset(shared, ns).is_some_and(|rs| owned_by(pod, str_at(&rs, "/metadata/uid")));
    if owned {
        update_status(shared, ns);
    }
}

/// Deletes one demo pod (the first by name that is not already being deleted).
pub fn delete_pod(shared: &Arc<Shared>, ns: &str) {
    let Some(rs) = replicaset(shared, ns) else {
        tracing::warn!("delete pod: no ReplicaSet in {ns}");
        return;
    };
    let rs_uid = str_at(&rs, "/metadata/uid").to_string();
    let victim = shared
        .lock()
        .list("pods", Some(ns))
        .into_iter()
        .find(|p| owned_by(p, &rs_uid) && p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| str_at(p, "/metadata/name").to_string());
    let Some(name) = victim else {
        tracing::warn!("delete pod: no pod left in {ns}");
        return;
    };
    write::delete_pod(shared, ns, &name, &Bytes::new(), "");
    set_replicas(shared, ns, -1);
    follow_status(shared.clone(), ns.to_string(), STEP * 2);
}

/// Changes `spec.replicas` of the demo Deployment and ReplicaSet by `delta`.
fn set_replicas(shared: &Shared, ns: &str, delta: i64) {
    let mut st = shared.lock();
    for (res, pick) in [("deployments", "Deployment"), ("replicasets", "ReplicaSet")] {
        let objs: Vec<Value> = st
            .list(res, Some(ns))
            .into_iter()
            .filter(|o| {
                pick == "Deployment"
                    || str_at(o, "/metadata/ownerReferences/0/kind") == "Deployment"
            })
            .cloned()
            .collect();
        for mut o in objs {
            let n = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            o["spec"]["replicas"] = json!((n + delta).max(0));
            if pick == "Deployment" {
                let g = o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                o["metadata"]["generation"] = json!(g + 1);
            }
            st.put(res, o);
        }
    }
}

/// After `delay`, recomputes the status counters from the pods that exist.
fn follow_status(shared: Arc<Shared>, ns: String, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        update_status(&shared, &ns);
    });
}

/// Sets the Deployment's and ReplicaSet's status counters from the ReplicaSet's pods.
pub fn update_status(shared: &Shared, ns: &str) {
    let Some(rs) = replicaset(shared, ns) else {
        return;
    };
    let rs_uid = str_at(&rs, "/metadata/uid").to_string();
    let mut st = shared.lock();
    let pods: Vec<&Value> = st
        .list("pods", Some(ns))
        .into_iter()
        .filter(|p| owned_by(p, &rs_uid))
        .collect();
    let total = pods.len() as i64;
    let ready = pods
        .iter()
        .filter(|p| {
            str_at(p, "/status/phase") == "Running"
                && p.pointer("/metadata/deletionTimestamp").is_none()
        })
        .count() as i64;
    // The real server omits zero counters.
    let put_counts = |status: &mut Value, counts: &[(&str, i64)]| {
        for (k, v) in counts {
            if *v == 0 {
                if let Some(o) = status.as_object_mut() {
                    o.remove(*k);
                }
            } else {
                status[*k] = json!(v);
            }
        }
    };
    let mut rs = rs;
    put_counts(
        &mut rs["status"],
        &[
            ("replicas", total),
            ("fullyLabeledReplicas", total),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
        ],
    );
    if total == 0 {
        rs["status"]["replicas"] = json!(0);
    }
    st.put("replicasets", rs);
    let deploys: Vec<Value> = st
        .list("deployments", Some(ns))
        .into_iter()
        .cloned()
        .collect();
    for mut d in deploys {
        let generation = d
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        d["status"]["observedGeneration"] = generation;
        put_counts(
            &mut d["status"],
            &[
                ("replicas", total),
                ("updatedReplicas", total),
                ("readyReplicas", ready),
                ("availableReplicas", ready),
            ],
        );
        st.put("deployments", d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(parse_count_at("2@1.5"), Ok(vec![1.5, 1.5]));
        assert!(parse_count_at("2").is_err());
        assert!(parse_secs("-1").is_err());
        assert_eq!(parse_secs("3"), Ok(3.0));
    }
}
