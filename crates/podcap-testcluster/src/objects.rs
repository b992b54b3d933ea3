//! The cluster state: a fixed set of objects built at start (namespaces, one node, a Deployment
//! with its ReplicaSet and N pods, Services), kept behind a `Mutex` in [`super::shared::Shared`] so later
//! work can add create/delete/watch.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

/// Image of the demo pods' only container, `app`.
pub const IMAGE: &str = "nginx:1.25";

/// A resource the server knows: the path segment (`pods`), its group/version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Plural name, as in the URL.
    pub name: &'static str,
    /// API group, "" for core.
    pub group: &'static str,
    /// Version, `v1`.
    pub version: &'static str,
    /// Kind of one object.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl Resource {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.name.to_string()
        } else {
            format!("{}.{}", self.name, self.group)
        }
    }
}

/// Every resource that can be listed and fetched.
pub const RESOURCES: &[Resource] = &[
    Resource {
        name: "namespaces",
        group: "",
        version: "v1",
        kind: "Namespace",
        namespaced: false,
    },
    Resource {
        name: "nodes",
        group: "",
        version: "v1",
        kind: "Node",
        namespaced: false,
    },
    Resource {
        name: "pods",
        group: "",
        version: "v1",
        kind: "Pod",
        namespaced: true,
    },
    Resource {
        name: "services",
        group: "",
        version: "v1",
        kind: "Service",
        namespaced: true,
    },
    Resource {
        name: "deployments",
        group: "apps",
        version: "v1",
        kind: "Deployment",
        namespaced: true,
    },
    Resource {
        name: "replicasets",
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        namespaced: true,
    },
    Resource {
        name: "statefulsets",
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        namespaced: true,
    },
    Resource {
        name: "daemonsets",
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        namespaced: true,
    },
];

/// Looks a resource up by group and plural name.
pub fn resource(group: &str, name: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.name == name)
}

/// What the demo cluster contains.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Number of demo pods.
    pub pods: usize,
    /// Their namespace.
    pub namespace: String,
    /// Their labels (also the Deployment's and Service's selector).
    pub labels: BTreeMap<String, String>,
    /// `gitVersion`, reported by the node as kubeletVersion too.
    pub git_version: String,
    /// RNG seed for names and uids.
    pub seed: u64,
    /// The nodes' pod network (and so the number of nodes).
    pub network: super::nodes::PodNetwork,
}

/// One change to an object, kept for watches.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change (the new object's, or the deleted object's last).
    pub rv: u64,
    /// Resource name (`pods`).
    pub resource: &'static str,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object before the change (None for ADDED).
    pub old: Option<Value>,
    /// The object after the change (for DELETED: the object as it was deleted).
    pub new: Value,
}

/// How many changes a watch can be resumed from (older resourceVersions get 410 Expired).
pub const HISTORY_LIMIT: usize = 1000;

/// Mutable server state.
#[derive(Debug)]
pub struct State {
    /// Last resourceVersion handed out.
    pub resource_version: u64,
    /// Objects per resource name, each with full metadata.
    pub objects: BTreeMap<&'static str, Vec<Value>>,
    /// Unix seconds of "now" at construction; every object was created then.
    pub started: i64,
    /// Recent changes, oldest first, all with `rv > history_base`.
    pub history: VecDeque<Event>,
    /// Watches from a resourceVersion below this get 410 Expired ("too old resource version").
    pub history_base: u64,
    /// Maximum length of `history`.
    pub history_limit: usize,
    /// Carries the latest resourceVersion; watches wait on it.
    pub changed: tokio::sync::watch::Sender<u64>,
    /// The nodes' pod network.
    pub network: super::nodes::PodNetwork,
    /// Per node: index of the next pod IP to hand out in its block.
    pub next_ip: Vec<usize>,
    /// Names, uids, container ids of created objects.
    pub rng: Rng,
}

/// xorshift64*: names and uids only, not security.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `n` characters from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| {
                let i = (self.next_u64() % alphabet.len() as u64) as usize;
                char::from(alphabet[i])
            })
            .collect()
    }

    /// A random (v4-shaped) UUID.
    pub fn uuid(&mut self) -> String {
        let h = self.string(b"0123456789abcdef", 32);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
}

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const HEX: &[u8] = b"0123456789abcdef";

/// Unix seconds → `2026-11-26T11:08:44Z`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `2026-11-26T11:08:44Z` → Unix seconds (None if malformed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `metadata.labels` of an object as a map (missing → empty).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A string field of an object by JSON pointer ("" when absent).
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl State {
    /// Builds the demo cluster.
    pub fn new(demo: &Demo) -> State {
        let started = now_unix();
        let mut st = State {
            resource_version: 200,
            objects: BTreeMap::new(),
            started,
            history: VecDeque::new(),
            history_base: 0,
            history_limit: HISTORY_LIMIT,
            changed: tokio::sync::watch::channel(0).0,
            network: demo.network,
            next_ip: vec![0; demo.network.nodes()],
            rng: Rng::new(demo.seed ^ 0x5bd1_e995),
        };
        let mut rng = Rng::new(demo.seed);
        let ts = rfc3339(started);
        let ns = demo.namespace.as_str();
        let app = demo
            .labels
            .get("app")
            .cloned()
            .unwrap_or_else(|| "mando".to_string());

        let mut namespaces = vec!["default", "kube-node-lease", "kube-public", "kube-system"];
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
        for name in namespaces {
            let meta = st.meta(
                &mut rng,
                name,
                None,
                &ts,
                json!({"kubernetes.io/metadata.name": name}),
            );
            st.insert(
                "namespaces",
                json!({
                    "kind": "Namespace", "apiVersion": "v1", "metadata": meta,
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }),
            );
        }

        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        for k in 0..demo.network.nodes() {
            let name = super::nodes::node_name(k);
            let host_ip = super::nodes::host_ip(k);
            let cidr = demo.network.node_cidr(k);
            let meta = st.meta(&mut rng, &name, None, &ts, json!({
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            }));
            st.insert("nodes", json!({
                "kind": "Node", "apiVersion": "v1", "metadata": meta,
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": ts, "lastTransitionTime": ts,
                        "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                    "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
                    "nodeInfo": {"kubeletVersion": demo.git_version, "kubeProxyVersion": demo.git_version,
                        "operatingSystem": "linux", "architecture": "amd64",
                        "containerRuntimeVersion": "containerd://1.7.0", "osImage": "podcap-testcluster", "kernelVersion": kernel},
                },
            }));
        }

        let labels = json!(demo.labels);
        let container = json!({
            "name": "app", "image": IMAGE, "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {}, "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
        });
        let pod_spec = json!({
            "containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler",
        });
        let n = demo.pods;

        let mut dmeta = st.meta(&mut rng, &app, Some(ns), &ts, labels.clone());
        dmeta["generation"] = json!(1);
        dmeta["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        let deploy_uid = str_at(&dmeta, "/uid").to_string();
        let mut status = json!({"observedGeneration": 1, "replicas": n, "updatedReplicas": n,
        "readyReplicas": n, "availableReplicas": n,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
             "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
             "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{app}\" has successfully progressed.")},
        ]});
        if n == 0 {
            // The real server omits zero counters.
            for k in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ] {
                if let Some(o) = status.as_object_mut() {
                    o.remove(k);
                }
            }
        }
        st.insert("deployments", json!({
            "kind": "Deployment", "apiVersion": "apps/v1", "metadata": dmeta,
            "spec": {"replicas": n, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": status,
        }));

        let hash = rng.string(HEX, 10);
        let rs_name = format!("{app}-{hash}");
        let mut pod_labels = demo.labels.clone();
        pod_labels.insert("pod-template-hash".to_string(), hash.clone());
        let mut rsmeta = st.meta(&mut rng, &rs_name, Some(ns), &ts, json!(pod_labels));
        rsmeta["generation"] = json!(1);
        rsmeta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": app,
            "uid": deploy_uid, "controller": true, "blockOwnerDeletion": true}]);
        let rs_uid = str_at(&rsmeta, "/uid").to_string();
        let rs_status = if n == 0 {
            json!({"replicas": 0, "observedGeneration": 1})
        } else {
            json!({"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": n, "availableReplicas": n, "observedGeneration": 1})
        };
        st.insert(
            "replicasets",
            json!({
                "kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": rsmeta,
                "spec": {"replicas": n, "selector": {"matchLabels": pod_labels},
                    "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}},
                "status": rs_status,
            }),
        );

        for i in 0..n {
            let name = format!("{rs_name}-{}", rng.string(SAFE, 5));
            // Spread over the nodes in turn, as the scheduler spreads a ReplicaSet's pods.
            let node = i % demo.network.nodes();
            let ip = demo.network.pod_ip(node, st.next_ip[node]).to_string();
            st.next_ip[node] += 1;
            let host_ip = super::nodes::host_ip(node);
            let mut meta = st.meta(&mut rng, &name, Some(ns), &ts, json!(pod_labels));
            meta["generateName"] = json!(format!("{rs_name}-"));
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]);
            let cid = format!("containerd://{}", rng.string(HEX, 64));
            let mut spec = pod_spec.clone();
            spec["nodeName"] = json!(super::nodes::node_name(node));
            let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": ts});
            st.insert("pods", json!({
                "kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec,
                "status": {
                    "phase": "Running",
                    "conditions": [cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
                    "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                    "podIP": ip, "podIPs": [{"ip": ip}], "startTime": ts,
                    "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": ts}}, "lastState": {},
                        "ready": true, "restartCount": 0, "image": format!("docker.io/library/{IMAGE}"),
                        "imageID": format!("docker.io/library/nginx@sha256:{}", rng.string(HEX, 64)),
                        "containerID": cid, "started": true}],
                    "qosClass": "BestEffort",
                },
            }));
        }

        let meta = st.meta(
            &mut rng,
            "kubernetes",
            Some("default"),
            &ts,
            json!({"component": "apiserver", "provider": "kubernetes"}),
        );
        st.insert(
            "services",
            service(
                meta,
                "10.96.0.1",
                json!([{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}]),
                None,
            ),
        );
        let meta = st.meta(&mut rng, &app, Some(ns), &ts, labels.clone());
        st.insert(
            "services",
            service(
                meta,
                "10.96.0.10",
                json!([{"protocol": "TCP", "port": 80, "targetPort": 80}]),
                Some(labels),
            ),
        );

        for r in RESOURCES {
            st.objects.entry(r.name).or_default();
        }
        // The start-up objects are in the watch history too, so a watch can resume from any
        // object's resourceVersion; only versions before them are "too old".
        let mut added: Vec<Event> = st
            .objects
            .iter()
            .flat_map(|(resource, objs)| {
                objs.iter().map(|o| Event {
                    rv: str_at(o, "/metadata/resourceVersion").parse().unwrap_or(0),
                    resource,
                    kind: "ADDED",
                    old: None,
                    new: o.clone(),
                })
            })
            .collect();
        added.sort_by_key(|e| e.rv);
        st.history_base = added.first().map_or(st.resource_version, |e| e.rv - 1);
        st.history = added.into();
        st.changed.send_replace(st.resource_version);
        st
    }

    /// A new pod IP in node `node`'s (0-based) block: the next one not handed out before, or
    /// once the block is used up, the next one no pod holds now.
    pub fn next_pod_ip(&mut self, node: usize) -> String {
        let node = node.min(self.next_ip.len().saturating_sub(1));
        let in_use: std::collections::HashSet<String> = self
            .list("pods", None)
            .iter()
            .map(|p| str_at(p, "/status/podIP").to_string())
            .collect();
        let mut ip = String::new();
        for _ in 0..=self.network.capacity() {
            ip = self.network.pod_ip(node, self.next_ip[node]).to_string();
            self.next_ip[node] += 1;
            if !in_use.contains(&ip) {
                return ip;
            }
        }
        tracing::warn!("node {}: every pod IP of its block is in use", node + 1);
        ip
    }

    /// The node (0-based) a new pod is bound to: the one running the fewest pods (the first of
    /// those), as the scheduler's spreading would choose.
    pub fn pick_node(&self) -> usize {
        let mut count = vec![0usize; self.network.nodes()];
        for p in self.list("pods", None) {
            if let Some(i) =
                super::nodes::node_index(str_at(p, "/spec/nodeName"), self.network.nodes())
            {
                count[i] += 1;
            }
        }
        (0..count.len()).min_by_key(|i| count[*i]).unwrap_or(0)
    }

    fn record(
        &mut self,
        resource: &'static str,
        kind: &'static str,
        old: Option<Value>,
        new: Value,
    ) {
        self.history.push_back(Event {
            rv: self.resource_version,
            resource,
            kind,
            old,
            new,
        });
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.history_base = e.rv;
            }
        }
        self.changed.send_replace(self.resource_version);
    }

    /// Creates or replaces (by namespace and name) an object: bumps the resourceVersion,
    /// stores it in `metadata.resourceVersion`, records ADDED/MODIFIED for watches. Returns
    /// the stored object.
    pub fn put(&mut self, resource: &'static str, mut obj: Value) -> Value {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ns = str_at(&obj, "/metadata/namespace").to_string();
        let name = str_at(&obj, "/metadata/name").to_string();
        let objs = self.objects.entry(resource).or_default();
        let old = match objs.iter().position(|o| {
            str_at(o, "/metadata/namespace") == ns && str_at(o, "/metadata/name") == name
        }) {
            Some(i) => Some(std::mem::replace(&mut objs[i], obj.clone())),
            None => {
                objs.push(obj.clone());
                None
            }
        };
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(resource, kind, old, obj.clone());
        obj
    }

    /// Removes an object; the DELETED event carries it with a new resourceVersion.
    pub fn remove(
        &mut self,
        resource: &'static str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let objs = self.objects.get_mut(resource)?;
        let i = objs.iter().position(|o| {
            namespace.is_none_or_eq(str_at(o, "/metadata/namespace"))
                && str_at(o, "/metadata/name") == name
        })?;
        let old = objs.remove(i);
        let rv = self.next_rv();
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(resource, "DELETED", Some(old), gone.clone());
        Some(gone)
    }

    /// Next resourceVersion.
    pub fn next_rv(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn meta(
        &mut self,
        rng: &mut Rng,
        name: &str,
        ns: Option<&str>,
        ts: &str,
        labels: Value,
    ) -> Value {
        let mut m = json!({"name": name, "uid": rng.uuid(), "resourceVersion": self.next_rv().to_string(),
            "creationTimestamp": ts, "labels": labels});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    }

    fn insert(&mut self, resource: &'static str, obj: Value) {
        self.objects.entry(resource).or_default().push(obj);
    }

    /// Objects of `resource`, optionally in one namespace.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(resource)
            .map(|objs| {
                objs.iter()
                    .filter(|o| namespace.is_none_or_eq(str_at(o, "/metadata/namespace")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One object by namespace and name.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<&Value> {
        self.list(resource, namespace)
            .into_iter()
            .find(|o| str_at(o, "/metadata/name") == name)
    }
}

trait NsFilter {
    fn is_none_or_eq(&self, ns: &str) -> bool;
}

impl NsFilter for Option<&str> {
    fn is_none_or_eq(&self, ns: &str) -> bool {
        match self {
            None => true,
            Some(want) => *want == ns,
        }
    }
}

fn service(meta: Value, cluster_ip: &str, ports: Value, selector: Option<Value>) -> Value {
    let mut spec = json!({"ports": ports, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
        "type": "ClusterIP", "sessionAffinity": "None", "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"});
    if let Some(sel) = selector {
        spec["selector"] = sel;
    }
    json!({"kind": "Service", "apiVersion": "v1", "metadata": meta, "spec": spec,
        "status": {"loadBalancer": {}}})
}

/// Field values a field selector may test, per resource (None: the real server answers
/// `field label not supported`).
pub fn field_value(resource: &str, obj: &Value, field: &str) -> Option<String> {
    let p = match (resource, field) {
        (_, "metadata.name") => "/metadata/name",
        (r, "metadata.namespace") if r != "namespaces" && r != "nodes" => "/metadata/namespace",
        ("pods", "spec.nodeName") => "/spec/nodeName",
        ("pods", "spec.restartPolicy") => "/spec/restartPolicy",
        ("pods", "spec.schedulerName") => "/spec/schedulerName",
        ("pods", "spec.serviceAccountName") => "/spec/serviceAccountName",
        ("pods", "status.phase") => "/status/phase",
        ("pods", "status.podIP") => "/status/podIP",
        ("pods", "status.nominatedNodeName") => "/status/nominatedNodeName",
        ("namespaces", "status.phase") => "/status/phase",
        ("nodes", "spec.unschedulable") => {
            return Some(
                obj.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            )
        }
        _ => return None,
    };
    Some(str_at(obj, p).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_795_000_000, 1_795_000_000 + 86_399] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn demo_objects() {
        let demo = Demo {
            pods: 3,
            namespace: "shop".into(),
            labels: [("app".to_string(), "mando".to_string())].into(),
            git_version: "v1.30.0".into(),
            seed: 7,
            network: crate::nodes::PodNetwork::parse(crate::nodes::DEFAULT_POD_NETWORK, 2)
                .expect("network"),
        };
        let st = State::new(&demo);
        let pods = st.list("pods", Some("shop"));
        assert_eq!(pods.len(), 3);
        for p in &pods {
            let name = str_at(p, "/metadata/name");
            let parts: Vec<&str> = name.split('-').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert_eq!(parts[0], "mando");
            assert!(parts[1].len() == 10 && parts[1].chars().all(|c| c.is_ascii_hexdigit()));
            assert!(parts[2].len() == 5 && parts[2].chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(
                labels_of(p).get("pod-template-hash").map(String::as_str),
                Some(parts[1])
            );
        }
        let mut ips: Vec<&str> = pods.iter().map(|p| str_at(p, "/status/podIP")).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips, ["10.213.0.2", "10.213.0.3", "10.213.1.2"]);
        let nodes: Vec<&str> = pods.iter().map(|p| str_at(p, "/spec/nodeName")).collect();
        assert_eq!(nodes.iter().filter(|n| **n == "node-1").count(), 2);
        assert_eq!(st.list("nodes", None).len(), 2);
        assert!(st.get("deployments", Some("shop"), "mando").is_some());
        assert!(st.get("services", Some("shop"), "mando").is_some());
        assert!(st.get("namespaces", None, "shop").is_some());
    }
}
