//! A local stand-in Kubernetes API server that the real `kubectl` accepts: HTTPS on
//! 127.0.0.1 with a throw-away CA, bearer-token auth, discovery, namespaces, nodes (several,
//! with their own clocks and latency between them), pods (label/field selectors, watch, create,
//! delete, label/annotate, ephemeral containers run as real processes reported at the kubelet's
//! relist, attach/exec over WebSocket, per-pod network namespaces as root), services, apps/v1
//! workloads and access reviews, as a real v1.28 server answers. See docs/testing.md for what
//! it does not do yet.
//!
//! [`TestCluster::start`] serves on an ephemeral port until [`TestCluster::shutdown`] (or drop
//! of the runtime); the `podcap-testcluster` binary wraps it.

pub mod access;
pub mod api;
pub mod discovery;
pub mod ephemeral;
pub mod kubelet;
pub mod nodes;
pub mod objects;
pub mod offset;
pub mod patch;
pub mod policy;
pub mod relay;
pub mod respond;
pub mod scale;
pub mod selectors;
pub mod shared;
pub mod stream;
pub mod synth;
pub mod table;
pub mod tls;
pub mod watch;
pub mod write;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use objects::{str_at, Demo, Rng, State};

/// What to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of demo pods.
    pub pods: usize,
    /// Their namespace.
    pub namespace: String,
    /// Their labels.
    pub labels: BTreeMap<String, String>,
    /// Reported server version, `1.30` or `1.30.2` (kubectl's dispatcher picks its client by
    /// the minor version).
    pub server_version: String,
    /// Pod Security level enforced in `namespace` (label
    /// `pod-security.kubernetes.io/enforce`): `baseline` or `restricted`.
    pub pod_security: Option<String>,
    /// RBAC denials for the kubeconfig's user (`VERB:RESOURCE[@NAMESPACE]`).
    pub rbac_deny: Vec<policy::Deny>,
    /// Serve no ephemeralcontainers subresource (404 with empty details).
    pub no_ephemeral_containers: bool,
    /// Images whose pull fails (besides `registry.invalid/…`).
    pub image_pull_fail: Vec<String>,
    /// Created pods (kubectl run/apply/create) stay Pending this long before they are bound.
    pub pending_secs: f64,
    /// Seconds after start at which one more demo pod is created (one entry per pod).
    pub add_pods_after: Vec<f64>,
    /// Seconds after start at which one demo pod is deleted (one entry per pod).
    pub delete_pods_after: Vec<f64>,
    /// Number of nodes (node-1…node-N); the demo pods are spread over them in turn.
    pub nodes: usize,
    /// The pod network (IPv4 CIDR), split into one block per node.
    pub pod_network: String,
    /// Clock offsets of nodes: every timestamp a capture there produces is shifted.
    pub clock_offsets: Vec<nodes::ClockOffset>,
    /// One-way delay between pods on different nodes (as root).
    pub node_latency: std::time::Duration,
    /// The kubelet's relist period: a container's start (and end) is reported at the next
    /// relist plus the pod sync, as a real kubelet's PLEG does; zero reports at once.
    pub relist_period: std::time::Duration,
}

/// A kubelet's relist period (the generic PLEG relists every second).
pub const DEFAULT_RELIST: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for Config {
    fn default() -> Self {
        Config {
            pods: 2,
            namespace: "shop".into(),
            labels: [("app".to_string(), "mando".to_string())].into(),
            server_version: "1.30".into(),
            pod_security: None,
            rbac_deny: Vec::new(),
            no_ephemeral_containers: false,
            image_pull_fail: Vec::new(),
            pending_secs: 0.0,
            add_pods_after: Vec::new(),
            delete_pods_after: Vec::new(),
            nodes: 1,
            pod_network: nodes::DEFAULT_POD_NETWORK.into(),
            clock_offsets: Vec::new(),
            node_latency: std::time::Duration::ZERO,
            relist_period: DEFAULT_RELIST,
        }
    }
}

/// Parses `app=mando,tier=web`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for kv in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("label {kv:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("label {kv:?} has an empty key"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The `/version` body for `1.30` / `v1.30.2`.
pub fn version_info(server_version: &str) -> Result<Value, String> {
    let v = server_version.trim().trim_start_matches('v');
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = |s: &&str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let (major, minor, patch) = match parts.as_slice() {
        [a, b] if numeric(a) && numeric(b) => (*a, *b, "0"),
        [a, b, c] if numeric(a) && numeric(b) && numeric(c) => (*a, *b, *c),
        _ => {
            return Err(format!(
                "server version {server_version:?} is not MAJOR.MINOR[.PATCH]"
            ))
        }
    };
    Ok(json!({
        "major": major, "minor": minor, "gitVersion": format!("v{major}.{minor}.{patch}"),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

/// A running test cluster.
#[derive(Debug)]
pub struct TestCluster {
    /// Listening address (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    /// CA certificate (PEM) that signed the server certificate.
    pub ca_pem: String,
    /// Bearer token clients must send.
    pub token: String,
    /// Namespace of the demo pods (the kubeconfig context's namespace).
    pub namespace: String,
    /// Shared state, for in-process callers that want to inspect or change it.
    pub shared: Arc<shared::Shared>,
    stop: tokio_watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TestCluster {
    /// Generates the PKI, builds the demo state, binds 127.0.0.1:0 and starts serving.
    pub async fn start(config: &Config) -> Result<TestCluster, String> {
        let version = version_info(&config.server_version)?;
        let pki = tls::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?;

        let seed = objects::now_unix() as u64 ^ (u64::from(std::process::id()) << 32);
        let mut rng = Rng::new(seed ^ u64::from(addr.port()));
        let token = rng.string(b"0123456789abcdefghijklmnopqrstuvwxyz", 40);
        let network = nodes::PodNetwork::parse(&config.pod_network, config.nodes)?;
        let per_node = config.pods.div_ceil(config.nodes.max(1));
        if per_node > network.capacity() {
            return Err(format!(
                "{} pods on {} nodes need {per_node} addresses per node; the pod network {} gives each node {}",
                config.pods,
                config.nodes,
                network.cidr(),
                network.capacity()
            ));
        }
        let mut clock_offsets = vec![0i64; config.nodes];
        for o in &config.clock_offsets {
            let i = nodes::node_index(&o.node, config.nodes).ok_or_else(|| {
                format!(
                    "--clock-offset {}: no such node (there are node-1…node-{}; see --nodes)",
                    o.node, config.nodes
                )
            })?;
            clock_offsets[i] = o.nanos;
        }
        let demo = Demo {
            pods: config.pods,
            namespace: config.namespace.clone(),
            labels: config.labels.clone(),
            git_version: objects::str_at(&version, "/gitVersion").to_string(),
            seed: rng.next_u64(),
            network,
        };
        if let Some(level) = &config.pod_security {
            if level != "baseline" && level != "restricted" && level != "privileged" {
                return Err(format!(
                    "pod security level {level:?} is not baseline, restricted or privileged"
                ));
            }
        }
        let mut state = State::new(&demo);
        if let Some(level) = &config.pod_security {
            for n in state.objects.entry("namespaces").or_default() {
                if str_at(n, "/metadata/name") == config.namespace {
                    n["metadata"]["labels"][policy::PSA_LABEL] = json!(level);
                }
            }
        }
        let faults = policy::Faults {
            rbac_deny: config.rbac_deny.clone(),
            user: format!("system:serviceaccount:{}:podcap", config.namespace),
            no_ephemeral_containers: config.no_ephemeral_containers,
            image_pull_fail: config.image_pull_fail.clone(),
            pending: std::time::Duration::try_from_secs_f64(config.pending_secs)
                .map_err(|e| format!("--pending-secs: {e}"))?,
        };
        let shared = Arc::new(shared::Shared {
            faults,
            state: Mutex::new(state),
            token: token.clone(),
            version,
            address: addr.to_string(),
            kubelet: Arc::new(kubelet::Kubelet::new(
                addr.port(),
                kubelet::KubeletConfig {
                    nodes: config.nodes,
                    prefix_len: network.prefix(),
                    relist: config.relist_period,
                    node_latency: config.node_latency,
                    clock_offsets,
                },
            )),
        });
        if !config.node_latency.is_zero() && (config.nodes < 2 || !shared.kubelet.netns_enabled) {
            eprintln!(
                "podcap-testcluster: WARNING: --node-latency delays traffic between the pods of \
                 different nodes, in network namespaces: it needs --nodes 2 or more and root; \
                 here it does nothing"
            );
        }
        if shared.kubelet.netns_enabled {
            let routed = nodes::routed_overlaps(&network);
            if !routed.is_empty() {
                eprintln!(
                    "podcap-testcluster: WARNING: the pod network {} is already in use on this machine ({}): \
                     the pods may not reach each other (another cluster's bridge, routes or firewall rules \
                     for that range). Choose a free range with --pod-network-cidr.",
                    network.cidr(),
                    routed.join("; ")
                );
            }
        }
        start_demo_network(&shared);
        scale::schedule(
            &shared,
            &config.namespace,
            &config.add_pods_after,
            &config.delete_pods_after,
        );
        let (stop, stopped) = tokio_watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(pki.server_config),
            shared.clone(),
            stopped,
        ));
        Ok(TestCluster {
            addr,
            ca_pem: pki.ca_pem,
            token,
            namespace: config.namespace.clone(),
            shared,
            stop,
            task,
        })
    }

    /// One line to show whoever started the cluster when the demo pods' workload lacks a tool
    /// (ping, curl, python3 not on the PATH): None when nothing is missing, or when the pods
    /// have no network namespaces (their traffic is synthetic then and needs no tool).
    pub fn workload_note(&self) -> Option<String> {
        if !self.shared.kubelet.netns_enabled {
            return None;
        }
        kubelet::missing_workload_note(&kubelet::missing_workload_tools())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig (JSON, which kubectl reads like YAML) for this cluster with `token`.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        let name = "podcap-testcluster";
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        let v = json!({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": self.server_url(), "certificate-authority-data": ca}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": self.namespace}}],
            "current-context": name,
        });
        format!("{v:#}\n")
    }

    /// A kubeconfig with the right token.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_with_token(&self.token)
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.shared.kubelet.cleanup();
    }
}

/// As root: a network namespace per demo pod, each pinging the next one (the last pings the
/// first; a single pod pings itself), so captures inside a pod see traffic.
fn start_demo_network(shared: &Arc<shared::Shared>) {
    if !shared.kubelet.netns_enabled {
        return;
    }
    let pods: Vec<(String, String, String, usize)> = shared
        .lock()
        .list("pods", None)
        .into_iter()
        .map(|p| {
            (
                objects::str_at(p, "/metadata/namespace").to_string(),
                objects::str_at(p, "/metadata/name").to_string(),
                objects::str_at(p, "/status/podIP").to_string(),
                shared.kubelet.node_of(p),
            )
        })
        .filter(|p| !p.2.is_empty())
        .collect();
    let netns: Vec<Option<String>> = pods
        .iter()
        .map(|(ns, name, ip, node)| shared.kubelet.pod_netns(ns, name, ip, *node))
        .collect();
    // Even-numbered pods serve HTTP (`python3 -m http.server 80`), odd-numbered ones curl every
    // server in a loop (a single pod curls itself); every pod also pings the next one.
    let servers: Vec<String> = pods.iter().step_by(2).map(|p| p.2.clone()).collect();
    // a missing tool is said once by whoever started the cluster (missing_workload_tools)
    let (curl, python) = (kubelet::has_tool("curl"), kubelet::has_tool("python3"));
    let curl_loop = kubelet::curl_loop(&servers);
    shared.kubelet.set_demo_servers(servers);
    for (i, n) in netns.iter().enumerate() {
        if let Some(n) = n {
            shared
                .kubelet
                .start_traffic(n, &pods[(i + 1) % pods.len()].2);
            if i % 2 == 0 && python {
                shared
                    .kubelet
                    .start_background(n, &["python3", "-m", "http.server", "80"]);
            }
            if curl && (i % 2 == 1 || pods.len() == 1) {
                shared
                    .kubelet
                    .start_background(n, &["sh", "-c", &curl_loop]);
            }
        }
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<shared::Shared>,
    mut stopped: tokio_watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
            };
            let service = service_fn(move |req| api::handle(shared.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}
