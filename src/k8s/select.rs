//! Which pods to capture, in kubectl's vocabulary: `-n`/`-A`, `-l`, `--field-selector`, pod
//! names (`NAME`, `pod/NAME`) and workloads (`deploy/NAME`, `sts/NAME`, `ds/NAME`,
//! `svc/NAME`: their selector).

use super::errors;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Api, Client};
use std::collections::BTreeSet;

/// The pods a run follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub labels: Option<String>,
    pub fields: Option<String>,
    /// Only these pod names (empty: any).
    pub names: BTreeSet<String>,
}

impl Selection {
    pub fn matches_name(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.contains(name)
    }

    pub fn api(&self, client: &Client) -> Api<Pod> {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    /// For messages: "pods matching app=mando in namespace shop".
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if !self.names.is_empty() {
            what.push(format!(
                "named {}",
                self.names.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(l) = &self.labels {
            what.push(format!("matching -l {l}"));
        }
        if let Some(f) = &self.fields {
            what.push(format!("matching --field-selector {f}"));
        }
        let place = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in any namespace".into(),
        };
        if what.is_empty() {
            return format!("every pod {place}");
        }
        format!("pods {} {place}", what.join(" and "))
    }
}

/// A label selector object as the `-l` string kubectl would write.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
}

/// A kind as kubectl accepts it, normalised.
fn kind_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "po" | "pod" | "pods" => "pod",
        "deploy" | "deployment" | "deployments" | "deployment.apps" => "deploy",
        "sts" | "statefulset" | "statefulsets" | "statefulset.apps" => "sts",
        "ds" | "daemonset" | "daemonsets" | "daemonset.apps" => "ds",
        "svc" | "service" | "services" => "svc",
        _ => return None,
    })
}

fn join(a: Option<String>, b: String) -> Option<String> {
    match a {
        Some(a) if !a.is_empty() => Some(format!("{a},{b}")),
        _ => Some(b),
    }
}

/// Resolves the command line into a [`Selection`], reading workloads' selectors.
pub async fn resolve(
    client: &Client,
    namespace: Option<&str>,
    all_namespaces: bool,
    labels: Option<&str>,
    fields: Option<&str>,
    targets: &[String],
) -> Result<Selection, String> {
    let mut sel = Selection {
        namespace: if all_namespaces {
            None
        } else {
            namespace.map(str::to_string)
        },
        labels: labels.filter(|l| !l.is_empty()).map(str::to_string),
        fields: fields.filter(|f| !f.is_empty()).map(str::to_string),
        names: BTreeSet::new(),
    };
    let mut workloads = 0;
    for t in targets {
        let (kind, name) = match t.split_once('/') {
            Some((k, n)) => (
                kind_of(k).ok_or_else(|| {
                    format!("{t}: unknown kind {k:?}; use pod/, deploy/, sts/, ds/ or svc/")
                })?,
                n,
            ),
            None => ("pod", t.as_str()),
        };
        if name.is_empty() {
            return Err(format!("{t}: a name is missing after the /"));
        }
        if kind == "pod" {
            sel.names.insert(name.to_string());
            continue;
        }
        workloads += 1;
        if workloads > 1 {
            return Err(
                "give at most one workload (deploy/, sts/, ds/, svc/) per run; for several, use \
                 a label selector (-l) they share"
                    .into(),
            );
        }
        let Some(ns) = sel.namespace.clone() else {
            return Err(format!(
                "{t}: a workload is looked up in one namespace; give -n NAMESPACE instead of -A"
            ));
        };
        let what = format!("reading {t} in namespace {ns}");
        let not_found = |e: kube::Error| {
            if errors::code(&e) == Some(404) {
                format!("{t} not found in namespace {ns}; check the name with `kubectl get {kind} -n {ns}`")
            } else {
                errors::explain(&e, &what, &ns)
            }
        };
        let selector = match kind {
            "deploy" => Api::<Deployment>::namespaced(client.clone(), &ns)
                .get(name)
                .await
                .map_err(not_found)?
                .spec
                .map(|s| selector_string(&s.selector)),
            "sts" => Api::<StatefulSet>::namespaced(client.clone(), &ns)
                .get(name)
                .await
                .map_err(not_found)?
                .spec
                .map(|s| selector_string(&s.selector)),
            "ds" => Api::<DaemonSet>::namespaced(client.clone(), &ns)
                .get(name)
                .await
                .map_err(not_found)?
                .spec
                .map(|s| selector_string(&s.selector)),
            _ => Api::<Service>::namespaced(client.clone(), &ns)
                .get(name)
                .await
                .map_err(not_found)?
                .spec
                .and_then(|s| s.selector)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
        };
        match selector.filter(|s| !s.is_empty()) {
            Some(s) => sel.labels = join(sel.labels.take(), s),
            None => {
                return Err(format!(
                    "{t} has no pod selector, so it names no pods; name the pods instead"
                ))
            }
        }
    }
    // an empty -l (what --all passes) asks for every pod, as kubectl's `-l ''` lists them all
    let every = labels == Some("");
    if sel.names.is_empty() && sel.labels.is_none() && sel.fields.is_none() && !every {
        return Err(
            "which pods? give -l SELECTOR (e.g. -l app=mando), pod names, or a workload \
             (deploy/NAME, svc/NAME); --field-selector works too"
                .into(),
        );
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_are_written_as_kubectl_reads_them() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "mando".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_string(&sel), "app=mando,tier in (a,b),!canary");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("deployment"), Some("deploy"));
        assert_eq!(kind_of("svc"), Some("svc"));
        assert_eq!(kind_of("job"), None);
    }
}
