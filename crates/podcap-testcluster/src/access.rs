//! Access reviews (`kubectl auth can-i`): `SelfSubjectAccessReview` (one question) and
//! `SelfSubjectRulesReview` (`--list`), answered from the same `--rbac-deny` rules the server
//! enforces, so what can-i says is what the requests then meet. Everything not denied is
//! allowed (the kubeconfig's user is bound to everything else); access reviews themselves are
//! always allowed, as the real `system:basic-user` role allows them to every user.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::policy::Deny;
use super::respond::{bad_request, json_resp, respond, status_body, Resp};
use super::shared::Shared;

/// The API group.
pub const GROUP: &str = "authorization.k8s.io";

/// `GET /apis/authorization.k8s.io/v1`.
pub fn resources() -> Value {
    let r = |name: &str, namespaced: bool, kind: &str| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["create"]});
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/v1"),
    "resources": [
        r("localsubjectaccessreviews", true, "LocalSubjectAccessReview"),
        r("selfsubjectaccessreviews", false, "SelfSubjectAccessReview"),
        r("selfsubjectrulesreviews", false, "SelfSubjectRulesReview"),
        r("subjectaccessreviews", false, "SubjectAccessReview"),
    ]})
}

/// Whether a denial covers `verb` on `resource` (`pods/exec`) in `ns` (None: cluster scope);
/// `*` in the question matches any denied verb or resource (`kubectl auth can-i '*' '*'`).
fn covers(d: &Deny, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    (d.verb == "*" || verb == "*" || d.verb == verb)
        && (d.resource == "*" || resource == "*" || d.resource == resource)
        && d.namespace.as_deref().is_none_or(|n| Some(n) == ns)
}

/// Why an allowed request is allowed, in the RBAC authorizer's words.
fn allowed_reason(user: &str) -> String {
    // system:serviceaccount:NS:NAME → ServiceAccount "NAME/NS"
    let sa = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
        .map(|(ns, n)| format!("ServiceAccount \"{n}/{ns}\""))
        .unwrap_or_else(|| format!("User {}", json!(user)));
    format!("RBAC: allowed by ClusterRoleBinding \"podcap-testcluster\" of ClusterRole \"podcap-testcluster\" to {sa}")
}

fn created(kind: &str, spec: &Value, status: Value) -> Resp {
    json_resp(
        StatusCode::CREATED,
        &json!({"kind": kind, "apiVersion": format!("{GROUP}/v1"),
            "metadata": {"creationTimestamp": null}, "spec": spec, "status": status}),
    )
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub fn self_subject_access_review(shared: &Arc<Shared>, body: &Bytes) -> Resp {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding the review: {e}")),
    };
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let faults = &shared.faults;
    let status = match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
        (Some(r), None) => {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let resource = match s("subresource") {
                "" => s("resource").to_string(),
                sub => format!("{}/{sub}", s("resource")),
            };
            let ns = Some(s("namespace")).filter(|n| !n.is_empty());
            let denied = faults
                .rbac_deny
                .iter()
                .any(|d| covers(d, s("verb"), &resource, ns));
            if denied {
                json!({"allowed": false})
            } else {
                json!({"allowed": true, "reason": allowed_reason(&faults.user)})
            }
        }
        (None, Some(_)) => json!({"allowed": true, "reason": allowed_reason(&faults.user)}),
        _ => {
            return respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                "application/json",
                status_body(
                    422,
                    "Invalid",
                    "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    Some("{\"group\":\"authorization.k8s.io\",\"kind\":\"SelfSubjectAccessReview\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"null\\\": exactly one of nonResourceAttributes or resourceAttributes must be specified\",\"field\":\"spec.resourceAttributes\"}]}"),
                ),
            )
        }
    };
    created("SelfSubjectAccessReview", &spec, status)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` (`kubectl auth can-i --list`):
/// with no denial for the namespace, everything (`*.*`); otherwise every served resource and
/// subresource with the verbs discovery lists for it, less the denied ones.
pub fn self_subject_rules_review(shared: &Arc<Shared>, body: &Bytes) -> Resp {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding the review: {e}")),
    };
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let ns = spec
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let denials: Vec<&Deny> = shared
        .faults
        .rbac_deny
        .iter()
        .filter(|d| d.namespace.as_deref().is_none_or(|n| Some(n) == ns))
        .collect();
    let reviews = json!({"verbs": ["create"], "apiGroups": [GROUP],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]});
    let mut rules = Vec::new();
    if denials.is_empty() {
        rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
    } else {
        for (group, list) in [
            ("", super::discovery::core_v1()),
            ("apps", super::discovery::apps_v1()),
        ] {
            for r in list["resources"].as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or("");
                let verbs: Vec<&str> = r["verbs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|v| !denials.iter().any(|d| covers(d, v, name, ns)))
                    .collect();
                if !verbs.is_empty() {
                    rules.push(json!({"verbs": verbs, "apiGroups": [group], "resources": [name]}));
                }
            }
        }
    }
    rules.push(reviews);
    created(
        "SelfSubjectRulesReview",
        &spec,
        json!({"resourceRules": rules,
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_cover_questions() {
        let d = Deny::parse("patch:pods/ephemeralcontainers").expect("parse");
        assert!(covers(
            &d,
            "patch",
            "pods/ephemeralcontainers",
            Some("shop")
        ));
        assert!(covers(&d, "*", "*", None));
        assert!(!covers(&d, "get", "pods/ephemeralcontainers", Some("shop")));
        let d = Deny::parse("list:pods@default").expect("parse");
        assert!(covers(&d, "list", "pods", Some("default")));
        assert!(!covers(&d, "list", "pods", Some("shop")));
        assert!(!covers(&d, "list", "pods", None));
        assert_eq!(
            allowed_reason("system:serviceaccount:shop:podcap"),
            "RBAC: allowed by ClusterRoleBinding \"podcap-testcluster\" of ClusterRole \"podcap-testcluster\" to ServiceAccount \"podcap/shop\""
        );
    }
}
