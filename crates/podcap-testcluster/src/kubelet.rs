//! The emulated kubelet's real side: host processes for ephemeral containers and exec, and
//! (as root) one network namespace per pod with a veth on a bridge, an address (the pod IP) and
//! a little traffic (each demo pod pings the next one).
//!
//! Without namespaces (not root) pod processes find a `tcpdump` shim first in their PATH that
//! runs the synthetic capture ([`super::synth`]), since a real tcpdump could not capture.
//!
//! Processes run in their own process group; everything started is killed and every namespace,
//! veth and the bridge (and the shim directory) removed by [`Kubelet::cleanup`] (server
//! shutdown, also on drop).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

/// Output of a process: (channel 1 = stdout / 2 = stderr, bytes).
pub type Chunk = (u8, Bytes);

/// An attached client's output sink: (id, wants stdout, wants stderr, sender).
type Sink = (u64, bool, bool, mpsc::Sender<Chunk>);

/// One running (or finished) process: a container's main process or an exec.
#[derive(Debug)]
pub struct Proc {
    /// The write end of its stdin, while open.
    pub stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    /// `stdinOnce`: close stdin when the first attached client goes away.
    pub stdin_once: bool,
    /// Attached output sinks: (id, stdout wanted, stderr wanted, sender). Output written while
    /// none is attached is dropped, as attach does not replay.
    sinks: Mutex<Vec<Sink>>,
    next_sink: Mutex<u64>,
    /// `Some(exit code)` once it has ended and its output is drained.
    pub exited: watch::Receiver<Option<i32>>,
    exited_tx: watch::Sender<Option<i32>>,
    stdin_closed_once: AtomicBool,
}

impl Proc {
    /// Registers an output sink; `None` when the process has already ended.
    pub fn attach(&self, stdout: bool, stderr: bool) -> Option<(u64, mpsc::Receiver<Chunk>)> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if self.exited.borrow().is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel(64);
        let mut n = self.next_sink.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        sinks.push((*n, stdout, stderr, tx));
        Some((*n, rx))
    }

    /// Removes a sink.
    pub fn detach(&self, id: u64) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.0 != id);
    }

    /// Closes stdin (EOF for the process).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }

    /// After an attached client with stdin went away: with `stdinOnce`, close stdin (once).
    pub async fn client_with_stdin_left(&self) {
        if self.stdin_once && !self.stdin_closed_once.swap(true, Ordering::SeqCst) {
            self.close_stdin().await;
        }
    }

    async fn forward(self: Arc<Self>, channel: u8, mut r: impl AsyncRead + Unpin) {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let data = Bytes::copy_from_slice(&buf[..n]);
            let targets: Vec<mpsc::Sender<Chunk>> = self
                .sinks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|s| if channel == 1 { s.1 } else { s.2 })
                .map(|s| s.3.clone())
                .collect();
            for t in targets {
                let _ = t.send((channel, data.clone())).await;
            }
        }
    }
}

/// What the kubelet emulates beyond one plain node.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Number of nodes (node-1…node-N). As root, each has its own bridge; the bridges are
    /// linked through a fabric bridge.
    pub nodes: usize,
    /// Prefix length of the pod network (the pods' `eth0` carry it: one L2 segment).
    pub prefix_len: u8,
    /// How often the kubelet relists its containers (a container's start or end is reported
    /// at the next relist, plus the pod sync); zero reports at once.
    pub relist: Duration,
    /// One-way delay between pods on different nodes.
    pub node_latency: Duration,
    /// Per node (0-based): nanoseconds added to every timestamp a capture there produces.
    pub clock_offsets: Vec<i64>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            nodes: 1,
            prefix_len: 16,
            relist: Duration::ZERO,
            node_latency: Duration::ZERO,
            clock_offsets: Vec::new(),
        }
    }
}

/// How the node bridges are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// One node: its pods are on the fabric bridge itself.
    Single,
    /// veth pairs from each node bridge to the fabric bridge (with `tc netem` delay on the
    /// node side when `--node-latency` is set).
    Veth,
    /// `--node-latency` without netem in the kernel: a tap per node bridge and a user-space
    /// switch that forwards frames between them after the delay ([`super::relay`]).
    Relay,
}

#[derive(Debug, Default)]
struct Inner {
    /// Process groups started (killed at cleanup).
    pgids: Vec<i32>,
    /// "ns/pod" → network namespace name.
    netns: HashMap<String, String>,
    next_if: usize,
    bridge_up: bool,
    /// How the node bridges are linked, once they exist.
    links: Option<Links>,
    /// The user-space switch of [`Links::Relay`].
    relay: Option<super::relay::Relay>,
    /// (ns, pod, container) → main process.
    containers: HashMap<(String, String, String), Arc<Proc>>,
    /// Pod IPs of the demo HTTP servers (targets of the client workload).
    demo_servers: Vec<String>,
}

/// Runs the real processes.
#[derive(Debug)]
pub struct Kubelet {
    /// Root with working `ip netns`: pods get network namespaces.
    pub netns_enabled: bool,
    prefix: String,
    /// Without namespaces: the directory holding the `tcpdump` shim (put first in the PATH of
    /// pod processes), removed at clean-up.
    pub shim_dir: Option<std::path::PathBuf>,
    /// Nodes, relist period, latency, clock offsets.
    pub config: KubeletConfig,
    /// When the kubelet started (its relist clock counts from here).
    epoch: Instant,
    inner: Mutex<Inner>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pod sync that follows a relist before the status reaches the API server.
pub const SYNC: Duration = Duration::from_millis(50);

/// `tc qdisc replace dev DEV root netem delay D` (Err: tc's message, e.g. "Specified qdisc
/// kind is unknown." where the kernel has no netem).
fn netem(dev: &str, delay: Duration) -> Result<(), String> {
    let us = format!("{}us", delay.as_micros());
    let args = [
        "qdisc", "replace", "dev", dev, "root", "netem", "delay", &us, "limit", "100000",
    ];
    let out = std::process::Command::new("tc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("tc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Finds `prog` like execvp does (Err: the message for a missing executable).
pub fn lookup(prog: &str) -> Result<String, String> {
    lookup_in(prog, None)
}

/// [`lookup`] in the search path `path` (`None`: this process's `PATH`).
pub fn lookup_in(prog: &str, path: Option<&str>) -> Result<String, String> {
    let missing = || format!("exec: \"{prog}\": executable file not found in $PATH");
    if prog.is_empty() {
        return Err(missing());
    }
    if prog.contains('/') {
        return if std::path::Path::new(prog).is_file() {
            Ok(prog.to_string())
        } else {
            Err(format!(
                "exec: \"{prog}\": stat {prog}: no such file or directory"
            ))
        };
    }
    let path = match path {
        Some(p) => p.to_string(),
        None => std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    };
    path.split(':')
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(missing)
}

impl Kubelet {
    /// `tag` makes names unique per server (the port).
    pub fn new(tag: u16, config: KubeletConfig) -> Kubelet {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let netns_enabled = root
            && std::env::var_os("PODCAP_TESTCLUSTER_NO_NETNS").is_none()
            && ip(&["netns", "list"]).is_ok();
        let prefix = format!("pc{tag}");
        let shim_dir = if !netns_enabled {
            make_shim_dir(&prefix, &format!("exec {{exe}} {}", super::synth::ARG))
        } else if config.clock_offsets.iter().any(|o| *o != 0) {
            // The real tcpdump of a node with a clock offset runs behind the offset shim.
            match lookup("tcpdump") {
                Ok(real) => make_shim_dir(
                    &prefix,
                    &format!("exec {{exe}} {} {}", super::offset::ARG, sh_quote(&real)),
                ),
                Err(e) => {
                    tracing::warn!("no clock offsets: {e}");
                    None
                }
            }
        } else {
            None
        };
        let k = Kubelet {
            netns_enabled,
            prefix,
            shim_dir,
            config,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        };
        if netns_enabled {
            remove_stale();
            let dir = state_dir();
            let _ = std::fs::create_dir_all(&dir);
            if let Err(e) = std::fs::write(dir.join(&k.prefix), std::process::id().to_string()) {
                tracing::warn!("state file in {}: {e}", dir.display());
            }
        }
        k
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node (0-based) of `pod` (its `spec.nodeName`; node-1 when unknown).
    pub fn node_of(&self, pod: &serde_json::Value) -> usize {
        super::nodes::node_index(
            super::objects::str_at(pod, "/spec/nodeName"),
            self.config.nodes,
        )
        .unwrap_or(0)
    }

    /// When a container change (a start, an end) at `since` is reported: at the kubelet's next
    /// relist after it, plus the pod sync that follows ([`SYNC`]); at once without relisting.
    pub fn report_at(&self, since: Instant) -> Instant {
        let period = self.config.relist;
        if period.is_zero() {
            return since;
        }
        let elapsed = since.saturating_duration_since(self.epoch).as_nanos();
        let ticks = elapsed / period.as_nanos() + 1;
        let next = self.epoch + Duration::from_nanos((ticks * period.as_nanos()) as u64);
        next + SYNC
    }

    /// Makes the fabric bridge `pc<PORT>br` and, with several nodes, one bridge per node
    /// (`pc<PORT>n<k>`) linked to it (see [`Links`]). False when the bridge cannot be made.
    fn ensure_bridges(&self, inner: &mut Inner) -> bool {
        if inner.bridge_up {
            return true;
        }
        let bridge = format!("{}br", self.prefix);
        let _ = ip(&["link", "del", &bridge]);
        if let Err(e) = ip(&["link", "add", &bridge, "type", "bridge"])
            .and_then(|()| ip(&["link", "set", &bridge, "up"]))
        {
            tracing::warn!("bridge: {e}; pods share the host network namespace");
            return false;
        }
        inner.bridge_up = true;
        if self.config.nodes <= 1 {
            inner.links = Some(Links::Single);
            return true;
        }
        let nodes = self.config.nodes;
        for k in 1..=nodes {
            let nb = format!("{}n{k}", self.prefix);
            let _ = ip(&["link", "del", &nb]);
            if let Err(e) = ip(&["link", "add", &nb, "type", "bridge"])
                .and_then(|()| ip(&["link", "set", &nb, "up"]))
            {
                tracing::warn!("node-{k} bridge: {e}");
            }
        }
        let latency = self.config.node_latency;
        let mut links = Links::Veth;
        for k in 1..=nodes {
            let (up, down) = (
                format!("{}u{k}", self.prefix),
                format!("{}f{k}", self.prefix),
            );
            let _ = ip(&["link", "del", &up]);
            let made = ip(&["link", "add", &up, "type", "veth", "peer", "name", &down])
                .and_then(|()| {
                    ip(&[
                        "link",
                        "set",
                        &up,
                        "master",
                        &format!("{}n{k}", self.prefix),
                        "up",
                    ])
                })
                .and_then(|()| ip(&["link", "set", &down, "master", &bridge, "up"]));
            if let Err(e) = made {
                tracing::warn!("node-{k} uplink: {e}");
                continue;
            }
            if !latency.is_zero() {
                if let Err(e) = netem(&up, latency) {
                    tracing::info!(
                        "no tc netem here ({e}): node latency through the user-space relay"
                    );
                    links = Links::Relay;
                    break;
                }
            }
        }
        if links == Links::Relay {
            for k in 1..=nodes {
                let _ = ip(&["link", "del", &format!("{}u{k}", self.prefix)]);
            }
            let bridges: Vec<String> = (1..=nodes)
                .map(|k| format!("{}n{k}", self.prefix))
                .collect();
            match super::relay::Relay::start(&self.prefix, &bridges, latency) {
                Ok(r) => inner.relay = Some(r),
                Err(e) => tracing::warn!("node latency relay: {e}; the nodes are not linked"),
            }
        }
        inner.links = Some(links);
        true
    }

    /// How the node bridges are linked (None before the first pod network exists).
    pub fn links(&self) -> Option<Links> {
        self.lock().links
    }

    /// The network namespace of pod `ns/pod` with IP `pod_ip` on node `node` (0-based),
    /// created on first use (as root); `None` when namespaces are disabled or could not be
    /// made (processes use the host's).
    pub fn pod_netns(&self, ns: &str, pod: &str, pod_ip: &str, node: usize) -> Option<String> {
        if !self.netns_enabled {
            return None;
        }
        let key = format!("{ns}/{pod}");
        let mut inner = self.lock();
        if let Some(n) = inner.netns.get(&key) {
            return Some(n.clone());
        }
        if !self.ensure_bridges(&mut inner) {
            return None;
        }
        let bridge = if self.config.nodes <= 1 {
            format!("{}br", self.prefix)
        } else {
            format!("{}n{}", self.prefix, node.min(self.config.nodes - 1) + 1)
        };
        inner.next_if += 1;
        let idx = inner.next_if;
        let name = format!("{NETNS_PREFIX}{}-{}-{idx}", self.prefix, std::process::id());
        let host_if = format!("{}v{idx}", self.prefix);
        let peer = format!("{}p{idx}", self.prefix);
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_if]);
        let addr = format!("{pod_ip}/{}", self.config.prefix_len);
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ],
            &["link", "set", &peer, "netns", &name],
            &["link", "set", &host_if, "master", &bridge, "up"],
            &["-n", &name, "link", "set", &peer, "name", "eth0"],
            &["-n", &name, "addr", "add", &addr, "dev", "eth0"],
            &["-n", &name, "link", "set", "eth0", "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        // Registered first so that cleanup removes a half-made namespace too.
        inner.netns.insert(key, name.clone());
        for s in steps {
            if let Err(e) = ip(s) {
                tracing::warn!("pod {ns}/{pod} network: {e}");
                break;
            }
        }
        Some(name)
    }

    /// The environment additions for a process of the pod with IP `pod_ip` on node `node`
    /// whose fellow pods have `peers`: without namespaces, `PATH` with the synthetic `tcpdump`
    /// shim first, the IPs the synthetic capture uses and the node's clock offset; with
    /// namespaces, on a node whose clock is off, `PATH` with the offset shim first and the
    /// offset; otherwise nothing (the pod has real traffic and a true clock).
    pub fn pod_env(&self, pod_ip: &str, peers: &[String], node: usize) -> Vec<(String, String)> {
        let Some(dir) = &self.shim_dir else {
            return Vec::new();
        };
        let offset = self.config.clock_offsets.get(node).copied().unwrap_or(0);
        if self.netns_enabled && offset == 0 {
            return Vec::new();
        }
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut env = vec![("PATH".into(), format!("{}:{path}", dir.display()))];
        if !self.netns_enabled {
            env.push((super::synth::ENV_POD_IP.into(), pod_ip.to_string()));
            env.push((super::synth::ENV_PEER_IPS.into(), peers.join(",")));
        }
        if offset != 0 {
            env.push((super::offset::ENV_CLOCK_OFFSET.into(), offset.to_string()));
        }
        env
    }

    /// Whether pods capture synthetic traffic (no network namespaces).
    pub fn synthetic(&self) -> bool {
        !self.netns_enabled && self.shim_dir.is_some()
    }

    /// Starts `argv` (in `netns` when given) in its own process group, with `env` added to the
    /// environment (its `PATH` also used to find `argv[0]`).
    pub fn spawn(
        &self,
        netns: Option<&str>,
        env: &[(String, String)],
        argv: &[String],
        stdin: bool,
        stdin_once: bool,
    ) -> Result<(Arc<Proc>, Child), String> {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let prog = lookup_in(argv.first().map_or("", String::as_str), path)?;
        let mut cmd = match netns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", n, &prog]);
                c
            }
            None => Command::new(&prog),
        };
        cmd.args(argv.get(1..).unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| format!("exec: {prog:?}: {e}"))?;
        if let Some(pid) = child.id() {
            self.lock().pgids.push(pid as i32);
        }
        let (exited_tx, exited) = watch::channel(None);
        let proc = Arc::new(Proc {
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            stdin_once,
            sinks: Mutex::new(Vec::new()),
            next_sink: Mutex::new(0),
            exited,
            exited_tx,
            stdin_closed_once: AtomicBool::new(false),
        });
        Ok((proc, child))
    }

    /// Waits for `child` to end, then kills what is left of its process group (as a container
    /// runtime does when the main process exits), drains its output and publishes the exit code.
    pub async fn run(self: Arc<Self>, proc: Arc<Proc>, mut child: Child) -> i32 {
        let out = child
            .stdout
            .take()
            .map(|o| tokio::spawn(proc.clone().forward(1, o)));
        let err = child
            .stderr
            .take()
            .map(|e| tokio::spawn(proc.clone().forward(2, e)));
        let pid = child.id();
        let status = child.wait().await;
        if let Some(pid) = pid {
            kill_group(pid as i32);
            self.lock().pgids.retain(|p| *p != pid as i32);
        }
        for h in [out, err].into_iter().flatten() {
            let _ = h.await;
        }
        let code = match status {
            Ok(s) => s.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
            }),
            Err(_) => 128,
        };
        proc.stdin.lock().await.take();
        {
            let mut sinks = proc.sinks.lock().unwrap_or_else(|e| e.into_inner());
            let _ = proc.exited_tx.send(Some(code));
            sinks.clear();
        }
        code
    }

    /// Remembers a container's main process.
    pub fn add_container(&self, ns: &str, pod: &str, container: &str, proc: Arc<Proc>) {
        self.lock().containers.insert(
            (ns.to_string(), pod.to_string(), container.to_string()),
            proc,
        );
    }

    /// A container's main process.
    pub fn container(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<Proc>> {
        self.lock()
            .containers
            .get(&(ns.to_string(), pod.to_string(), container.to_string()))
            .cloned()
    }

    /// Starts a background traffic generator in `netns`: `ping` to `target` every 0.2 s.
    /// Nothing without `ping` on the PATH ([`missing_workload_tools`] says so once).
    pub fn start_traffic(self: &Arc<Self>, netns: &str, target: &str) {
        if !has_tool("ping") {
            return;
        }
        let argv: Vec<String> = ["ping", "-q", "-i", "0.2", target]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match self.spawn(Some(netns), &[], &argv, false, false) {
            Ok((proc, child)) => {
                tokio::spawn(self.clone().run(proc, child));
            }
            Err(e) => tracing::warn!("traffic in {netns}: {e}"),
        }
    }

    /// Remembers the demo HTTP servers' pod IPs (for [`Kubelet::start_client_workload`]).
    pub fn set_demo_servers(&self, ips: Vec<String>) {
        self.lock().demo_servers = ips;
    }

    /// The demo client pods' workload in `netns` (pod IP `own_ip`): `ping` to the first demo
    /// server and a curl loop over all of them (with no demo servers: ping itself).
    pub fn start_client_workload(self: &Arc<Self>, netns: &str, own_ip: &str) {
        let servers = self.lock().demo_servers.clone();
        self.start_traffic(netns, servers.first().map_or(own_ip, String::as_str));
        if !servers.is_empty() && has_tool("curl") {
            self.start_background(netns, &["sh", "-c", &curl_loop(&servers)]);
        }
    }

    /// Starts a background workload `argv` in `netns` (killed at clean-up).
    pub fn start_background(self: &Arc<Self>, netns: &str, argv: &[&str]) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        match self.spawn(Some(netns), &[], &argv, false, false) {
            Ok((proc, child)) => {
                tokio::spawn(self.clone().run(proc, child));
            }
            Err(e) => tracing::warn!("workload in {netns}: {e}"),
        }
    }

    /// Pod `ns/pod` is gone: kill its containers, remove its namespace.
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        let mut inner = self.lock();
        inner.containers.retain(|k, _| !(k.0 == ns && k.1 == pod));
        if let Some(n) = inner.netns.remove(&format!("{ns}/{pod}")) {
            drop(inner);
            kill_in_netns(&n);
            let _ = ip(&["netns", "del", &n]);
        }
    }

    /// Kills every process started and removes every namespace and the bridge.
    pub fn cleanup(&self) {
        let mut inner = self.lock();
        for pgid in inner.pgids.drain(..) {
            kill_group(pgid);
        }
        inner.containers.clear();
        for (_, n) in inner.netns.drain() {
            kill_in_netns(&n);
            let _ = ip(&["netns", "del", &n]);
        }
        if let Some(r) = inner.relay.take() {
            r.stop();
        }
        if inner.bridge_up {
            inner.bridge_up = false;
            let _ = ip(&["link", "del", &format!("{}br", self.prefix)]);
            if self.config.nodes > 1 {
                for k in 1..=self.config.nodes {
                    for l in ["n", "u", "t"] {
                        let _ = ip(&["link", "del", &format!("{}{l}{k}", self.prefix)]);
                    }
                }
            }
        }
        if self.netns_enabled {
            let file = state_dir().join(&self.prefix);
            if std::fs::read_to_string(&file)
                .is_ok_and(|p| p.trim() == std::process::id().to_string())
            {
                let _ = std::fs::remove_file(file);
            }
        }
        if let Some(dir) = &self.shim_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `'s'` with single quotes escaped, for a shell script.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Makes `$TMPDIR/podcap-testcluster-<PID>-<prefix>` (mode 0700, a fresh directory: an
/// existing one is never reused) holding a `tcpdump` shim script whose command is `line`
/// (`{exe}` standing for this binary) followed by `"$@"`: the synthetic capture
/// (`exec <this binary> __podcap-synthetic-tcpdump "$@"`), or the clock-offset wrapper of the
/// real one. `None` (with a warning) on failure: pod processes then get the host's tcpdump.
fn make_shim_dir(prefix: &str, line: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("no tcpdump shim for pods: current_exe: {e}");
            return None;
        }
    };
    let base = std::env::temp_dir();
    let pid = std::process::id();
    let dir = (0..100).find_map(|n| {
        let d = base.join(format!("podcap-testcluster-{pid}-{prefix}-{n}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .ok()
            .map(|()| d)
    });
    let Some(dir) = dir else {
        tracing::warn!(
            "no tcpdump shim for pods: cannot create a directory in {}",
            base.display()
        );
        return None;
    };
    let script = format!(
        "#!/bin/sh\n# podcap-testcluster: tcpdump of the emulated pods (synthetic capture, or a clock offset)\n{} \"$@\"\n",
        line.replace("{exe}", &sh_quote(&exe.to_string_lossy()))
    );
    let file = dir.join("tcpdump");
    let written = std::fs::write(&file, script)
        .and_then(|()| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = written {
        tracing::warn!("no tcpdump shim for pods: {}: {e}", file.display());
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    Some(dir)
}

/// The programs the demo pods' workload runs (as root, in their network namespaces), what each
/// makes, and the Debian package that has it.
pub const WORKLOAD_TOOLS: [(&str, &str, &str); 3] = [
    ("ping", "ping traffic", "iputils-ping"),
    ("curl", "HTTP requests", "curl"),
    ("python3", "HTTP servers", "python3"),
];

/// Is `tool` on the PATH?
pub fn has_tool(tool: &str) -> bool {
    lookup_in(tool, None).is_ok()
}

/// The workload tools missing from the PATH: (tool, what it makes, package).
pub fn missing_workload_tools() -> Vec<(&'static str, &'static str, &'static str)> {
    WORKLOAD_TOOLS
        .into_iter()
        .filter(|(tool, _, _)| !has_tool(tool))
        .collect()
}

/// One line on the missing workload tools, or None when none is missing: which are missing,
/// what the pods do without, and the install command.
pub fn missing_workload_note(missing: &[(&str, &str, &str)]) -> Option<String> {
    fn list(items: Vec<&str>) -> String {
        match items.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => items.concat(),
        }
    }
    if missing.is_empty() {
        return None;
    }
    let tools = list(missing.iter().map(|m| m.0).collect());
    let without = list(missing.iter().map(|m| m.1).collect());
    let packages: Vec<&str> = missing.iter().map(|m| m.2).collect();
    Some(format!(
        "{tools} not found on the PATH: the demo pods run without {without} (install with `apt-get install {}`)",
        packages.join(" ")
    ))
}

/// The demo clients' loop: curl every server in turn, every 0.5 s.
pub fn curl_loop(servers: &[String]) -> String {
    format!(
        "while :; do for ip in {}; do curl -s -o /dev/null -m 1 http://$ip:80/; done; sleep 0.5; done",
        servers.join(" ")
    )
}

/// Prefix of every network namespace a server makes:
/// `podcap-tc-pc<PORT>-<PID>-<i>` (links: `pc<PORT>br`, `pc<PORT>v<i>`, `pc<PORT>p<i>`; with
/// several nodes also `pc<PORT>n<k>` (node bridges), `pc<PORT>u<k>`/`pc<PORT>f<k>` (their
/// uplinks) or `pc<PORT>t<k>` (their relay taps)).
pub const NETNS_PREFIX: &str = "podcap-tc-";

/// Where each server (as root) records `pc<PORT>` → its PID: `/run/podcap-testcluster`, or
/// `$TMPDIR/podcap-testcluster` when `/run` is not writable.
pub fn state_dir() -> std::path::PathBuf {
    let run = std::path::PathBuf::from("/run/podcap-testcluster");
    if std::fs::create_dir_all(&run).is_ok() {
        run
    } else {
        std::env::temp_dir().join("podcap-testcluster")
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// `podcap-tc-pc<PORT>-<PID>-<i>` → (`pc<PORT>`, PID).
fn netns_owner(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let mut parts = rest.split('-');
    let tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    (tag.starts_with("pc") && parts.next().is_none()).then_some((tag, pid))
}

fn ip_output(args: &[&str]) -> String {
    std::process::Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes what crashed servers left behind: namespaces whose owning PID is gone, and the
/// bridge and veths of every `pc<PORT>` whose state file names a PID that is gone. What
/// belongs to a live server is never touched.
pub fn remove_stale() {
    let mut dead_tags: Vec<String> = Vec::new();
    let dir = state_dir();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let tag = e.file_name().to_string_lossy().into_owned();
            let Ok(pid) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if tag.starts_with("pc") && pid.trim().parse().is_ok_and(|p| !pid_alive(p)) {
                let _ = std::fs::remove_file(e.path());
                dead_tags.push(tag);
            }
        }
    }
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if netns_owner(name).is_some_and(|(_, pid)| !pid_alive(pid)) {
            tracing::info!("removing stale network namespace {name}");
            kill_in_netns(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
    if dead_tags.is_empty() {
        return;
    }
    for line in ip_output(&["-o", "link", "show"]).lines() {
        // `7: pc4242v1@if6: <…` → `pc4242v1`
        let Some(link) = line
            .split(": ")
            .nth(1)
            .map(|l| l.split('@').next().unwrap_or(l))
        else {
            continue;
        };
        let owned = dead_tags.iter().any(|t| {
            link.strip_prefix(t.as_str()).is_some_and(|rest| {
                rest == "br"
                    || rest
                        .strip_prefix(['v', 'p', 'n', 'u', 'f', 't'])
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
        });
        if owned {
            tracing::info!("removing stale link {link}");
            let _ = ip(&["link", "del", link]);
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Kills whatever still runs in network namespace `n` (e.g. a process that left its group).
fn kill_in_netns(n: &str) {
    if let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "pids", n])
        .stdin(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if pid > 1 {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_names_carry_the_owner() {
        assert_eq!(netns_owner("podcap-tc-pc4242-77-3"), Some(("pc4242", 77)));
        assert_eq!(netns_owner("podcap-tc-pc4242-3"), None);
        assert_eq!(netns_owner("other-pc4242-77-3"), None);
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn lookup_finds_sh() {
        assert!(lookup("sh").is_ok());
        assert!(lookup("no-such-program-xyz")
            .unwrap_err()
            .contains("not found in $PATH"));
    }
}
