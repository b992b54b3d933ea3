//! The pod capture run: list and then watch the selected pods for the whole run; each running
//! pod, once, becomes a source of the live engine (its own interface `NAMESPACE/POD/IFACE`,
//! its IP named in an NRB) with its own task: inject, stream, end. Errors of one pod never
//! stop the others; a pod that goes away ends its source cleanly.

use super::client::connect;
use super::errors::{self, ClusterError};
use super::inject::InjectError;
use super::inject::{container_name, inject};
use super::select::{resolve, Selection};
use super::stream::{stream, Ended, Gone, Target};
use super::{PodOptions, Via};
use crate::engine::{EngineConfig, Report};
use crate::error::StartError;
use crate::output::SourceLabel;
use crate::session::Session;
use crate::source::{EndReason, Events, SourceState};
use crate::stop::{Stop, StopLevel};
use bytes::Bytes;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use podcap_format::{NameRecord, Record};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A pod ready to be captured: running, not being deleted, with an IP.
pub fn capturable(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Running"))
}

fn finished(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

fn ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(st) = &pod.status else { return vec![] };
    let mut v: Vec<IpAddr> = st
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = st.pod_ip.as_deref().and_then(|s| s.parse().ok()) {
        if !v.contains(&ip) {
            v.push(ip);
        }
    }
    v
}

/// One NRB entry: the address, then the NUL-terminated name.
pub fn name_record(ip: IpAddr, name: &str) -> NameRecord {
    let mut value = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    value.extend_from_slice(name.as_bytes());
    value.push(0);
    NameRecord {
        kind: if ip.is_ipv4() { 1 } else { 2 },
        value: Bytes::from(value),
    }
}

/// Service ClusterIPs → `NAME.NAMESPACE.svc`, where we may list services (else none).
async fn service_names(client: &Client, sel: &Selection) -> Vec<NameRecord> {
    let api: Api<Service> = match &sel.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!("services not named in the capture: {e}");
            return vec![];
        }
    };
    let mut out = Vec::new();
    for s in list {
        let (Some(name), Some(ns)) = (s.metadata.name.clone(), s.metadata.namespace.clone()) else {
            continue;
        };
        for ip in s.spec.iter().flat_map(|sp| {
            sp.cluster_ips
                .iter()
                .flatten()
                .chain(sp.cluster_ip.iter())
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
        }) {
            out.push(name_record(ip, &format!("{name}.{ns}.svc")));
        }
    }
    out
}

fn pod_key(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_else(|| full_name(pod))
}

fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn list_params(sel: &Selection) -> ListParams {
    let mut lp = ListParams::default();
    if let Some(l) = &sel.labels {
        lp = lp.labels(l);
    }
    if let Some(f) = &sel.fields {
        lp = lp.fields(f);
    }
    lp
}

/// What `--dry-run` prints for one pod.
fn describe_plan(pod: &Pod, opts: &PodOptions) -> String {
    let target = super::inject::target_container(pod, opts.target_container.as_deref());
    let caps = super::inject::capabilities(opts.profile, opts.promiscuous);
    let capture = opts.capture_argv();
    format!(
        "{}\tnode {}\tip {}\t{}\timage {}\tcapabilities {}\tvia {}\t{}",
        full_name(pod),
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("-"),
        ips(pod)
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        match target {
            Ok(t) => format!("target {t}"),
            Err(e) => format!("SKIPPED: {e}"),
        },
        opts.image,
        if caps.is_empty() {
            "none".to_string()
        } else {
            caps.join(",")
        },
        match opts.via {
            Via::Auto => "exec (attach if exec is forbidden)",
            Via::Exec => "exec",
            Via::Attach => "attach",
        },
        capture.join(" ")
    )
}

/// Captures the selected pods until a stop condition; returns the engine's report.
pub fn run_pods(opts: PodOptions, mut cfg: EngineConfig) -> Result<Report, StartError> {
    // pods are live sources: the watermark rule, never the exact one
    cfg.window.get_or_insert(crate::merge::DEFAULT_WINDOW);
    let session = Session::new()?;
    let Some(plan) = session.block_on(plan(&opts))? else {
        return Ok(Report::default()); // --dry-run
    };
    let Plan {
        client,
        sel,
        services,
        running,
    } = plan;
    let report = session.capture(cfg, move |events, stop| {
        follow(client, sel, Arc::new(opts), events, stop, services, running)
    })?;
    Ok(report)
}

/// What a pod run starts from: the connection, the selection, the Services' names and how
/// many pods run now.
struct Plan {
    client: Client,
    sel: Selection,
    services: Vec<NameRecord>,
    running: usize,
}

/// Connects, resolves the selection and lists the pods; prints the plan and returns None
/// for --dry-run. Every failure here means the run cannot start.
async fn plan(opts: &PodOptions) -> Result<Option<Plan>, ClusterError> {
    let conn = connect(opts.kubeconfig.as_deref(), opts.context.as_deref()).await?;
    let ns = opts
        .namespace
        .clone()
        .unwrap_or_else(|| conn.default_namespace.clone());
    let client = conn.client;
    let sel = resolve(
        &client,
        Some(&ns),
        opts.all_namespaces,
        opts.selector.as_deref(),
        opts.field_selector.as_deref(),
        &opts.targets,
    )
    .await
    .map_err(ClusterError::Selection)?;
    let api = sel.api(&client);
    let listed = api.list(&list_params(&sel)).await.map_err(|e| {
        let scope = sel
            .namespace
            .clone()
            .unwrap_or_else(|| "any (all namespaces)".into());
        ClusterError::Api {
            message: errors::explain(&e, &format!("listing {}", sel.describe()), &scope),
            unreachable_from: errors::unreachable(&e).then(|| conn.source.clone()),
        }
    })?;
    let matching: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|p| sel.matches_name(p.metadata.name.as_deref().unwrap_or("")))
        .collect();
    let running: Vec<&Pod> = matching.iter().filter(|p| capturable(p)).collect();
    let starting = matching
        .iter()
        .filter(|p| !capturable(p) && !finished(p))
        .count();
    if running.is_empty() && starting == 0 {
        return Err(ClusterError::NoPods(if !matching.is_empty() {
            format!(
                "no running pods among the {} {} (they have ended or are being deleted); \
                 check them with `kubectl get pods`",
                matching.len(),
                sel.describe()
            )
        } else {
            format!(
                "no {}; check the selector with `kubectl get pods{}{}`",
                sel.describe(),
                sel.labels
                    .as_ref()
                    .map(|l| format!(" -l '{l}'"))
                    .unwrap_or_default(),
                sel.namespace
                    .as_ref()
                    .map(|n| format!(" -n {n}"))
                    .unwrap_or(" -A".into())
            )
        }));
    }
    if starting > 0 {
        // pending pods are followed: each is captured once it runs
        eprintln!(
            "podcap-merge: {starting} of the {} {} are not running yet; each is captured \
             once it runs",
            matching.len(),
            sel.describe()
        );
    }
    if running.len() > opts.max_pods {
        return Err(ClusterError::TooManyPods(format!(
            "{} running {} — more than --max-pods {}; narrow the selector or raise --max-pods",
            running.len(),
            sel.describe(),
            opts.max_pods
        )));
    }
    if opts.dry_run {
        println!("would capture {} {}:", running.len(), sel.describe());
        for p in &running {
            println!("{}", describe_plan(p, opts));
        }
        println!("(pods that start later are captured too; nothing was changed)");
        return Ok(None);
    }
    let services = service_names(&client, &sel).await;
    let running = running.len();
    Ok(Some(Plan {
        client,
        sel,
        services,
        running,
    }))
}

/// Watches the selection; starts a capture for each new running pod, tells captures when
/// their pod goes away. Holds the engine's channel open until a stop.
async fn follow(
    client: Client,
    sel: Selection,
    opts: Arc<PodOptions>,
    events: Events,
    stop: Arc<Stop>,
    services: Vec<NameRecord>,
    initial: usize,
) -> Option<String> {
    let api = sel.api(&client);
    let mut cfg = watcher::Config::default();
    if let Some(l) = &sel.labels {
        cfg = cfg.labels(l);
    }
    if let Some(f) = &sel.fields {
        cfg = cfg.fields(f);
    }
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut stop_rx = stop.subscribe();
    // pods captured (or being captured) in this run, by UID: never a second time
    let mut seen: HashSet<String> = HashSet::new();
    // captures in progress: their task and the switch that tells them their pod went away
    let mut active: HashMap<String, (tokio::task::JoinHandle<()>, watch::Sender<Gone>)> =
        HashMap::new();
    // pods over --max-pods, captured when a capture ends and makes room
    let mut waiting: Vec<Pod> = Vec::new();
    // pods that left the selection (captured again if they come back), and their captures
    // while those end
    let mut left = Left::default();
    // during a re-list (after a watch gap): the pods it names; the others are gone
    let mut relist: Option<HashSet<String>> = None;
    let mut lost_since: Option<std::time::Instant> = None;
    let mut announced = false;
    let mut last_err = String::new();
    let mut run_error = None;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        if *stop_rx.borrow() != StopLevel::Running {
            break;
        }
        let ev = tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            _ = stop_rx.changed() => continue,
            _ = check.tick() => None, // housekeeping only
        };
        // finished captures make room for waiting pods
        active.retain(|_, (t, _)| !t.is_finished());
        left.ending.retain(|(t, _)| !t.is_finished());
        while active.len() < opts.max_pods && !waiting.is_empty() {
            let pod = waiting.remove(0);
            let ctx = ctx_of(&client, &opts, &services, (active.len() + 1).max(initial));
            start(&mut active, &ctx, pod, &events, &stop);
        }
        let Some(ev) = ev else {
            if let Some(since) = lost_since {
                if !announced && since.elapsed() >= LOST_FOR {
                    announced = true;
                    events.say(format!(
                        "lost the watch of {} ({last_err}); captures in progress go on, retrying",
                        sel.describe()
                    ));
                }
                // the watch has been failing for a while and nothing is being captured: end
                if since.elapsed() >= LOST_FOR && active.is_empty() {
                    let e = format!(
                        "the API server has been unreachable for {} s and no capture is \
                         running; stopping",
                        LOST_FOR.as_secs()
                    );
                    events.say(e.clone());
                    run_error = Some(e);
                    stop.request(StopLevel::Graceful);
                }
            }
            continue;
        };
        let pod = match ev {
            Ok(watcher::Event::Init) => {
                relist = Some(HashSet::new());
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                // pods captured before the gap that the new list no longer holds are gone
                if let Some(listed) = relist.take() {
                    for (key, (_, g)) in &active {
                        if !listed.contains(key) {
                            let _ = g.send(Gone::Deleted);
                        }
                    }
                }
                continue;
            }
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                if let Some(listed) = relist.as_mut() {
                    listed.insert(pod_key(&p));
                }
                if announced {
                    events.say("the API server is back; following the pods again");
                }
                lost_since = None;
                announced = false;
                p
            }
            Ok(watcher::Event::Delete(p)) => {
                // (a running pod that is not being deleted left the selection: its labels
                // changed; it is let go like a deleted one)
                if let Some((_, g)) = active.get(&pod_key(&p)) {
                    if p.metadata.deletion_timestamp.is_none() && capturable(&p) {
                        events.say(format!(
                            "{}: no longer matches the selection; its capture ends",
                            full_name(&p)
                        ));
                        let _ = g.send(Gone::Unselected);
                    } else {
                        let _ = g.send(Gone::Deleted);
                    }
                }
                if p.metadata.deletion_timestamp.is_none() {
                    left.let_go(&pod_key(&p), &mut active, &mut seen);
                }
                waiting.retain(|w| pod_key(w) != pod_key(&p));
                continue;
            }
            Err(e) => {
                // a watch that expired (410) re-lists at once: only a failure that lasts is
                // worth telling
                lost_since.get_or_insert_with(std::time::Instant::now);
                tracing::debug!("watch: {e}");
                last_err = e.to_string();
                continue;
            }
        };
        let key = pod_key(&pod);
        if finished(&pod) {
            if let Some((_, g)) = active.get(&key) {
                let _ = g.send(Gone::Deleted);
            }
            waiting.retain(|w| pod_key(w) != key);
            continue;
        }
        if seen.contains(&key)
            || !capturable(&pod)
            || !sel.matches_name(pod.metadata.name.as_deref().unwrap_or(""))
        {
            continue;
        }
        if left.back(&key) {
            events.say(format!(
                "{}: matches the selection again; capturing it again",
                full_name(&pod)
            ));
        }
        seen.insert(key);
        if active.len() >= opts.max_pods {
            events.say(format!(
                "{}: waiting: --max-pods {} captures are running; it is captured when one ends",
                full_name(&pod),
                opts.max_pods
            ));
            waiting.push(pod);
            continue;
        }
        let ctx = ctx_of(&client, &opts, &services, (active.len() + 1).max(initial));
        start(&mut active, &ctx, pod, &events, &stop);
    }
    drop(events);
    // keep telling captures about deleted pods while they finish
    let deadline = tokio::time::sleep(crate::engine::GRACE + Duration::from_secs(1));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tick.tick() => {}
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some((_, g)) = active.get(&pod_key(&p)) {
                        let _ = g.send(Gone::Deleted);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        if active.values().all(|(t, _)| t.is_finished()) {
            break;
        }
    }
    for (t, _) in active.into_values().chain(left.ending) {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    run_error
}

/// Pods that left the selection while the run goes on (their labels changed; they were not
/// deleted). A user following `-l app=x` expects a pod that comes back into it to be captured
/// again, so such a pod is forgotten as "seen"; its capture, told to end, is kept aside until
/// it has (and awaited at the end of the run like the others).
#[derive(Default)]
struct Left {
    /// UIDs of pods that left and have not come back.
    pods: HashSet<String>,
    /// Captures of pods that left, while they end.
    ending: Vec<(tokio::task::JoinHandle<()>, watch::Sender<Gone>)>,
}

impl Left {
    /// Pod `key` left the selection: its capture (if any) is set aside, and it may be captured
    /// again.
    fn let_go(
        &mut self,
        key: &str,
        active: &mut HashMap<String, (tokio::task::JoinHandle<()>, watch::Sender<Gone>)>,
        seen: &mut HashSet<String>,
    ) {
        if let Some(capture) = active.remove(key) {
            self.ending.push(capture);
        }
        if seen.remove(key) {
            self.pods.insert(key.to_string());
        }
    }

    /// Whether pod `key`, about to be captured, is one that left and came back.
    fn back(&mut self, key: &str) -> bool {
        self.pods.remove(key)
    }
}

/// How long the watch may fail, with no capture running, before the run ends.
const LOST_FOR: Duration = Duration::from_secs(5);

fn ctx_of(
    client: &Client,
    opts: &Arc<PodOptions>,
    services: &[NameRecord],
    pods: usize,
) -> PodContext {
    PodContext {
        client: client.clone(),
        opts: opts.clone(),
        buffer: super::stream::per_pod_buffer(pods),
        services: services.to_vec(),
    }
}

/// Starts the capture of `pod`.
fn start(
    active: &mut HashMap<String, (tokio::task::JoinHandle<()>, watch::Sender<Gone>)>,
    ctx: &PodContext,
    pod: Pod,
    events: &Events,
    stop: &Arc<Stop>,
) {
    let key = pod_key(&pod);
    let (gtx, grx) = watch::channel(Gone::No);
    let task = tokio::spawn(capture_pod(
        ctx.clone(),
        pod,
        events.clone(),
        stop.subscribe(),
        grx,
    ));
    active.insert(key, (task, gtx));
}

/// What every pod's capture shares with the run.
#[derive(Clone)]
struct PodContext {
    client: Client,
    opts: Arc<PodOptions>,
    /// This pod's buffer size (kube's stdout pipe, the source's budget).
    buffer: usize,
    /// Service names for the NRB.
    services: Vec<NameRecord>,
}

async fn capture_pod(
    ctx: PodContext,
    pod: Pod,
    events: Events,
    mut stop: watch::Receiver<StopLevel>,
    gone: watch::Receiver<Gone>,
) {
    let PodContext {
        client,
        opts,
        buffer,
        services,
    } = ctx;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = container_name();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "-".into());
    let addrs = ips(&pod);
    let target = super::inject::target_container(&pod, opts.target_container.as_deref())
        .unwrap_or_else(|_| "-".into());
    let label = SourceLabel {
        name: format!("{ns}/{name}/{}", opts.interface),
        origin: format!(
            "pod {ns}/{name} (node {node}, ip {}, container {container} targeting {target})",
            addrs
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let tx = events.register(label, opts.budget.min(buffer));
    drop(events);
    // a hostNetwork pod's IP is its node's: naming the node after the pod would mislead
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut names: Vec<NameRecord> = if host_network {
        tx.note("uses the node's network (hostNetwork): its capture is the node's traffic, and its IP is not named after it");
        Vec::new()
    } else {
        addrs
            .iter()
            .map(|ip| name_record(*ip, &format!("{name}.{ns}.pod")))
            .collect()
    };
    names.extend(services);
    if !tx.records(vec![Record::Names(names)]).await {
        return;
    }
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let state_tx = &tx;
    let state = move |s: SourceState| state_tx.state(s);
    let mut gone_early = gone.clone();
    let injected = tokio::select! {
        r = inject(&api, &pod, &opts, &container, &state) => r,
        _ = stop.wait_for(|l| *l != StopLevel::Running) => {
            tx.state(SourceState::Ended(EndReason::StoppedBeforeCapture));
            return;
        }
        Ok(_) = gone_early.wait_for(|g| *g != Gone::No) => {
            tx.state(SourceState::Ended(if *gone.borrow() == Gone::Unselected {
                EndReason::Unselected {
                    before_capture: true,
                }
            } else {
                EndReason::PodDeleted {
                    before_capture: true,
                }
            }));
            return;
        }
    };
    let injected = match injected {
        Ok(i) => i,
        // a pod deleted meanwhile (a rollout) is no failure
        Err(InjectError::PodGone(how)) => {
            tracing::info!(pod = %name, "{}", InjectError::PodGone(how));
            tx.state(SourceState::Ended(EndReason::PodDeleted {
                before_capture: true,
            }));
            return;
        }
        Err(e) => {
            tx.failed(e);
            return;
        }
    };
    if let Some(n) = &injected.note {
        tx.note(n.clone());
    }
    let capture = opts.capture_argv();
    let t = Target {
        api: &api,
        namespace: &ns,
        pod: &name,
        container: &injected.container,
        capture: &capture,
        max_secs: opts.max_secs(),
        via: opts.via,
        stdout_buf: buffer,
    };
    let why = gone.clone();
    match stream(t, &tx, stop, gone).await {
        Ok((Ended::PodGone, _)) if *why.borrow() == Gone::Unselected => {
            tx.state(SourceState::Ended(EndReason::Unselected {
                before_capture: false,
            }))
        }
        Ok((Ended::PodGone, _)) => tx.state(SourceState::Ended(EndReason::PodDeleted {
            before_capture: false,
        })),
        Ok((Ended::Stopped, _)) => tx.state(SourceState::Ended(EndReason::Stopped)),
        Ok((Ended::Finished, _)) => tx.state(SourceState::Ended(EndReason::TcpdumpFinished)),
        Err(e) => tx.failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_records_hold_the_address_and_a_terminated_name() {
        let r = name_record("10.1.2.3".parse().unwrap(), "mando-1.shop.pod");
        assert_eq!(r.kind, 1);
        assert_eq!(&r.value[..4], &[10, 1, 2, 3]);
        assert_eq!(&r.value[4..], b"mando-1.shop.pod\0");
        let r = name_record("fd00::1".parse().unwrap(), "x");
        assert_eq!((r.kind, r.value.len()), (2, 18));
    }
}
