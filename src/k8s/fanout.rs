//! The pod capture run: list and then watch the selected pods for the whole run; each running
//! pod, once, becomes a source of the live engine (its own interface `NAMESPACE/POD/IFACE`,
//! its IP named in an NRB) with its own task: inject, stream, end. Errors of one pod never
//! stop the others; a pod that goes away ends its source cleanly.

use super::client::connect;
use super::errors::{self, ClusterError};
use super::inject::InjectError;
use super::inject::{container_name, inject};
use super::precheck::{self, FilterCheck};
use super::select::{resolve, Selection};
use super::stream::{stream, Ended, Gone, PodError, Target};
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // a filter tcpdump refuses is refused before any pod is touched (docs/design.md §10)
    let checked = precheck::check_filter(&opts.interface, &opts.filter);
    // what the local check cannot vouch for is checked on a probe pod first: a named
    // interface (a pod may lack it) or a filter no local tcpdump compiled (`any` exists in
    // every pod)
    let probe = !(checked == FilterCheck::Accepted && opts.interface == "any");
    match checked {
        FilterCheck::Accepted => {}
        FilterCheck::Refused(why) => {
            return Err(StartError::Capture(format!(
                "tcpdump refuses the capture filter {:?}: {why}; no pod was touched. Fix the \
                 filter (it goes after `--`, in tcpdump's syntax; see `man pcap-filter`)",
                opts.filter.join(" ")
            )))
        }
        FilterCheck::Unchecked(why) => {
            tracing::info!("{why}; the first pod's capture checks the filter");
            if opts.dry_run {
                eprintln!(
                    "podcap-merge: {why}: the filter is not checked by --dry-run (the first \
                     pod's capture checks it before the others are touched)"
                );
            }
        }
    }
    let session = Session::new()?;
    let Some(plan) = session.block_on(plan(&opts))? else {
        return Ok(Report::default()); // --dry-run
    };
    let Plan {
        client,
        sel,
        services,
        running,
        names,
        pending,
    } = plan;
    let verdict = Arc::new(std::sync::Mutex::new(RunVerdict::default()));
    let shared = verdict.clone();
    let mut report = session.capture(cfg, move |events, stop| {
        if let Some(p) = pending {
            events.say(p);
        }
        follow(
            client,
            sel,
            Arc::new(opts),
            events,
            stop,
            services,
            running,
            names,
            shared,
            probe,
        )
    })?;
    let verdict = std::mem::take(
        &mut *verdict
            .lock()
            .map_err(|_| StartError::Io(std::io::Error::other("a capture task panicked")))?,
    );
    if let Some(why) = verdict.refused {
        return Err(StartError::Capture(format!(
            "{why}; no other pod was touched. Fix the capture's interface (-i; `any` captures \
             every interface of the pod) or filter"
        )));
    }
    if verdict.containers > 0 {
        report.notes.push(format!(
            "{} capture container(s) added (ephemeral containers stay in their pods until the \
             pods are replaced)",
            verdict.containers
        ));
    }
    Ok(report)
}

/// What a pod run starts from: the connection, the selection, the Services' names, how
/// many pods run now and (pods named on the command line) the names to capture.
struct Plan {
    client: Client,
    sel: Selection,
    services: Vec<NameRecord>,
    running: usize,
    names: HashSet<String>,
    /// Said at the start: how many of the pods are not running yet.
    pending: Option<String>,
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
    // pending pods are followed: each is captured once it runs (said through the engine,
    // which keeps it out of quiet runs)
    let pending = (starting > 0).then(|| {
        format!(
            "{starting} of the {} {} are not running yet; each is captured once it runs",
            matching.len(),
            sel.describe()
        )
    });
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
    // named pods: the run ends once the capture of each one that runs or starts has ended
    let names = if sel.names.is_empty() {
        HashSet::new()
    } else {
        matching
            .iter()
            .filter(|p| !finished(p))
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    };
    let running = running.len();
    Ok(Some(Plan {
        client,
        sel,
        services,
        running,
        names,
        pending,
    }))
}

/// How one pod's capture ended, as the run sees it.
#[derive(Debug)]
enum Outcome {
    /// Ended without failing: stopped, its pod deleted or unselected, tcpdump finished.
    Ended,
    /// Failed; the engine has the error.
    Failed,
    /// tcpdump refused the capture before it began (the filter, the interface): the error,
    /// with tcpdump's own words. The same command fails in every pod.
    Refused(String),
}

/// Captures in progress, by pod key: their task and the switch that tells them their pod
/// went away.
type Active = HashMap<String, (tokio::task::JoinHandle<Outcome>, watch::Sender<Gone>)>;

/// The fan-out's gate (docs/design.md §10): the first pod's capture must be running (tcpdump
/// listening) before any other pod is touched, so a capture that tcpdump refuses costs one
/// pod a container, not all of them.
enum Gate {
    /// No capture started yet: the next pod is the probe.
    Unprobed,
    /// The probe runs: its pod's key and whether its tcpdump listens.
    Probing {
        key: String,
        listening: watch::Receiver<bool>,
    },
    Open,
}

impl Gate {
    /// Completes when the probe's tcpdump listens (never when there is no probe).
    async fn heard(&mut self) {
        match self {
            Gate::Probing { listening, .. } => {
                if listening.wait_for(|l| *l).await.is_err() {
                    // the probe's task is ending: the next reaping opens the gate
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// What the watcher shares with [`run_pods`] when the run cannot go on.
#[derive(Default)]
struct RunVerdict {
    /// The probe's tcpdump refused the capture: the message (exit status 2).
    refused: Option<String>,
    /// Capture containers added in this run.
    containers: usize,
}

/// Watches the selection; starts a capture for each new running pod (the first alone, as the
/// probe), tells captures when their pod goes away, ends the run when nothing is left to
/// capture. Holds the engine's channel open until then or a stop.
#[allow(clippy::too_many_arguments)]
async fn follow(
    client: Client,
    sel: Selection,
    opts: Arc<PodOptions>,
    events: Events,
    stop: Arc<Stop>,
    services: Vec<NameRecord>,
    initial: usize,
    mut expected_names: HashSet<String>,
    verdict: Arc<std::sync::Mutex<RunVerdict>>,
    probe: bool,
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
    let containers = Arc::new(AtomicUsize::new(0));
    let ctx = |pods: usize| PodContext {
        client: client.clone(),
        opts: opts.clone(),
        buffer: super::stream::per_pod_buffer(pods),
        services: services.clone(),
        // named pods end the run when their captures end; a selection is followed, and a
        // capture that ends while its pod still runs is resumed
        resume: sel.names.is_empty(),
        containers: containers.clone(),
    };
    // pods captured (or being captured) in this run, by UID: never a second time
    let mut seen: HashSet<String> = HashSet::new();
    let mut active: Active = HashMap::new();
    let mut gate = if probe { Gate::Unprobed } else { Gate::Open };
    // pods found while the probe runs, started once it listens
    let mut held: Vec<Pod> = Vec::new();
    // pods over --max-pods, captured when a capture ends and makes room
    let mut waiting: Vec<Pod> = Vec::new();
    // how the captures of this run ended so far
    let (mut failed, mut ended) = (0usize, 0usize);
    // pods that left the selection (captured again if they come back), and their captures
    // while those end
    let mut left = Left::default();
    // during a re-list (after a watch gap): the pods it names; the others are gone
    let mut relist: Option<HashSet<String>> = None;
    let mut lost_since: Option<std::time::Instant> = None;
    let mut announced = false;
    let mut last_err = String::new();
    let mut last_failure = String::new();
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
            _ = gate.heard() => None,
        };
        // captures of pods that left the selection, once ended, are forgotten
        left.ending.retain(|(t, _)| !t.is_finished());
        // finished captures: how they ended; the probe's end opens the gate or ends the run
        for (key, outcome) in reap(&mut active).await {
            let probe = matches!(&gate, Gate::Probing { key: k, .. } if *k == key);
            match outcome {
                Outcome::Refused(why) if probe => {
                    if let Ok(mut v) = verdict.lock() {
                        v.refused = Some(why);
                    }
                    return None;
                }
                Outcome::Refused(why) => {
                    failed += 1;
                    last_failure = why;
                }
                Outcome::Failed => failed += 1,
                Outcome::Ended => ended += 1,
            }
            if probe {
                gate = Gate::Open;
            }
        }
        if matches!(&gate, Gate::Probing { listening, .. } if *listening.borrow()) {
            gate = Gate::Open;
        }
        if matches!(gate, Gate::Open) {
            waiting.append(&mut held);
            while active.len() < opts.max_pods && !waiting.is_empty() {
                let pod = waiting.remove(0);
                let c = ctx((active.len() + 1).max(initial));
                start(&mut active, &c, pod, &events, &stop, false);
            }
        }
        // nothing left to capture: named pods have all been captured, or every capture of a
        // selection failed (a new pod would fail the same way)
        // (while the API server is lost, that is what ends the run, below)
        if active.is_empty()
            && waiting.is_empty()
            && held.is_empty()
            && failed + ended > 0
            && lost_since.is_none()
        {
            if !sel.names.is_empty() && expected_names.is_empty() {
                events.say("the captures of the named pods have ended");
                break;
            }
            if sel.names.is_empty() && ended == 0 {
                let e = format!(
                    "every capture has failed{}; no pod is being captured, stopping",
                    if last_failure.is_empty() {
                        String::new()
                    } else {
                        format!(" (the last: {last_failure})")
                    }
                );
                run_error = Some(e);
                break;
            }
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
                } else if let Some(n) = p.metadata.name.as_deref() {
                    // a named pod that goes before its capture began will not be captured
                    expected_names.remove(n);
                }
                if p.metadata.deletion_timestamp.is_none() {
                    left.let_go(&pod_key(&p), &mut active, &mut seen);
                    // a probe that left before it listened tells nothing: the gate opens
                    if matches!(&gate, Gate::Probing { key, .. } if *key == pod_key(&p)) {
                        gate = Gate::Open;
                    }
                }
                waiting.retain(|w| pod_key(w) != pod_key(&p));
                held.retain(|w| pod_key(w) != pod_key(&p));
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
            } else if let Some(n) = pod.metadata.name.as_deref() {
                expected_names.remove(n);
            }
            waiting.retain(|w| pod_key(w) != key);
            held.retain(|w| pod_key(w) != key);
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
        seen.insert(key.clone());
        if let Some(n) = pod.metadata.name.as_deref() {
            expected_names.remove(n);
        }
        match gate {
            Gate::Unprobed => {
                let c = ctx(initial.max(1));
                let listening = start(&mut active, &c, pod, &events, &stop, true);
                gate = Gate::Probing { key, listening };
            }
            Gate::Probing { .. } => held.push(pod),
            Gate::Open if active.len() >= opts.max_pods => {
                events.say(format!(
                    "{}: waiting: --max-pods {} captures are running; it is captured when one ends",
                    full_name(&pod),
                    opts.max_pods
                ));
                waiting.push(pod);
            }
            Gate::Open => {
                let c = ctx((active.len() + 1).max(initial));
                start(&mut active, &c, pod, &events, &stop, false);
            }
        }
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
    if let Ok(mut v) = verdict.lock() {
        v.containers = containers.load(Ordering::Relaxed);
    }
    run_error
}

/// Takes the finished captures out of `active`, with how each ended.
async fn reap(active: &mut Active) -> Vec<(String, Outcome)> {
    let done: Vec<String> = active
        .iter()
        .filter(|(_, (t, _))| t.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Vec::with_capacity(done.len());
    for key in done {
        if let Some((task, _)) = active.remove(&key) {
            // a task that panicked failed
            out.push((key, task.await.unwrap_or(Outcome::Failed)));
        }
    }
    out
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
    ending: Vec<(tokio::task::JoinHandle<Outcome>, watch::Sender<Gone>)>,
}

impl Left {
    /// Pod `key` left the selection: its capture (if any) is set aside, and it may be captured
    /// again.
    fn let_go(&mut self, key: &str, active: &mut Active, seen: &mut HashSet<String>) {
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

/// How often a capture that ends by itself while its pod runs is started again, and the pause
/// before the first new start (doubled each time). A capture that then runs for
/// [`RESUME_RESET`] earns its resumes back.
const MAX_RESUMES: u32 = 3;
const RESUME_PAUSE: Duration = Duration::from_secs(1);
const RESUME_RESET: Duration = Duration::from_secs(60);

/// A pod's capture wears this many of our containers before a warning (they are never removed).
const MANY_CONTAINERS: usize = 5;

/// Starts the capture of `pod` (the run's first: the `probe`); returns whether its tcpdump
/// listens.
fn start(
    active: &mut Active,
    ctx: &PodContext,
    pod: Pod,
    events: &Events,
    stop: &Arc<Stop>,
    probe: bool,
) -> watch::Receiver<bool> {
    let key = pod_key(&pod);
    let (gtx, grx) = watch::channel(Gone::No);
    let (ltx, lrx) = watch::channel(false);
    let task = tokio::spawn(capture_pod(
        ctx.clone(),
        pod,
        events.clone(),
        stop.subscribe(),
        grx,
        ltx,
        probe,
    ));
    active.insert(key, (task, gtx));
    lrx
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
    /// Whether a capture that ends by itself while its pod runs is started again.
    resume: bool,
    /// Capture containers added in this run.
    containers: Arc<AtomicUsize>,
}

/// How many of our capture containers (from any run) `pod` already holds.
fn capture_containers(pod: &Pod) -> usize {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map_or(0, |v| {
            v.iter()
                .filter(|c| super::inject::is_capture_container(&c.name))
                .count()
        })
}

async fn capture_pod(
    ctx: PodContext,
    pod: Pod,
    events: Events,
    mut stop: watch::Receiver<StopLevel>,
    gone: watch::Receiver<Gone>,
    listening: watch::Sender<bool>,
    probe: bool,
) -> Outcome {
    let PodContext {
        client,
        opts,
        buffer,
        services,
        resume,
        containers,
    } = ctx;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut container = container_name();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let node = node_name.clone().unwrap_or_else(|| "-".into());
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
        node: node_name,
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
        return Outcome::Ended;
    }
    let held = capture_containers(&pod);
    if held >= MANY_CONTAINERS {
        tx.note(format!(
            "already holds {held} capture containers from earlier runs (ephemeral containers \
             stay until the pod is replaced; `kubectl describe pod` lists every one): recreate \
             it when convenient (e.g. `kubectl rollout restart`)"
        ));
    }
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut resumes = 0u32;
    // when the previous capture ended, and why: the gap a resumed capture reports
    let mut gap: Option<(u64, String)> = None;
    loop {
        let first = gap.is_none();
        let state_tx = &tx;
        let state = move |s: SourceState| state_tx.state(s);
        // the container is in the pod for good from the moment the API accepted it, whether
        // or not it ever runs
        let added = || {
            containers.fetch_add(1, Ordering::Relaxed);
        };
        let mut gone_early = gone.clone();
        let injected = tokio::select! {
            r = inject(&api, &pod, &opts, &container, &state, &added) => r,
            _ = stop.wait_for(|l| *l != StopLevel::Running) => {
                tx.state(SourceState::Ended(if first {
                    EndReason::StoppedBeforeCapture
                } else {
                    EndReason::Stopped
                }));
                return Outcome::Ended;
            }
            Ok(_) = gone_early.wait_for(|g| *g != Gone::No) => {
                tx.state(SourceState::Ended(gone_reason(*gone.borrow(), first)));
                return Outcome::Ended;
            }
        };
        let injected = match injected {
            Ok(i) => i,
            // a pod deleted meanwhile (a rollout) is no failure
            Err(InjectError::PodGone(how)) => {
                tracing::info!(pod = %name, "{}", InjectError::PodGone(how));
                tx.state(SourceState::Ended(EndReason::PodDeleted {
                    before_capture: first,
                }));
                return Outcome::Ended;
            }
            Err(e) => {
                match gap {
                    Some((_, why)) => tx.failed(PodError::ResumeFailed {
                        ended: why,
                        error: e,
                    }),
                    None => tx.failed(e),
                }
                return Outcome::Failed;
            }
        };
        if let Some(n) = injected.note.as_ref().filter(|_| first) {
            tx.note(n.clone());
        }
        if let Some((from, why)) = gap.take() {
            tx.resumed(from, crate::output::now_ns(), why);
        }
        listening.send_replace(false);
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
            listening: &listening,
        };
        let began = std::time::Instant::now();
        let why = match stream(t, &tx, stop.clone(), gone.clone()).await {
            Ok((Ended::PodGone, _)) => {
                tx.state(SourceState::Ended(gone_reason(*gone.borrow(), false)));
                return Outcome::Ended;
            }
            Ok((Ended::Stopped, _)) => {
                tx.state(SourceState::Ended(EndReason::Stopped));
                return Outcome::Ended;
            }
            Ok((Ended::Finished, _)) if !resume => {
                tx.state(SourceState::Ended(EndReason::TcpdumpFinished));
                return Outcome::Ended;
            }
            Ok((Ended::Finished, _)) => "tcpdump finished".to_string(),
            // tcpdump refused to start: the same command fails everywhere, resuming cannot help
            Err(e) if !*listening.borrow() && e.refused_by_tcpdump().is_some() => {
                let said = e.refused_by_tcpdump().unwrap_or_default();
                let why = format!("tcpdump refused the capture in pod {ns}/{name}: {said}");
                if probe {
                    // the run ends with this as its error; the source just ends
                    tx.state(SourceState::Failed);
                } else {
                    tx.failed(e);
                }
                return Outcome::Refused(why);
            }
            // a capture that never began (exec refused…) or that is not followed: a failure
            Err(e) if !resume || !*listening.borrow() => {
                tx.failed(e);
                return Outcome::Failed;
            }
            Err(e) => e.to_string(),
        };
        // the capture ended by itself while its pod still runs (as far as the watch knows)
        if began.elapsed() >= RESUME_RESET {
            resumes = 0;
        }
        if resumes >= MAX_RESUMES {
            tx.failed(PodError::GaveUp { resumes, last: why });
            return Outcome::Failed;
        }
        resumes += 1;
        let pause = RESUME_PAUSE * 2u32.pow(resumes - 1);
        tx.note(format!(
            "the capture ended while the pod still runs ({why}); starting it again in {} s with \
             a new capture container (resume {resumes} of {MAX_RESUMES})",
            pause.as_secs()
        ));
        tx.state(SourceState::Resuming);
        gap = Some((crate::output::now_ns(), why));
        let mut gone_wait = gone.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|l| *l != StopLevel::Running) => {
                tx.state(SourceState::Ended(EndReason::Stopped));
                return Outcome::Ended;
            }
            Ok(_) = gone_wait.wait_for(|g| *g != Gone::No) => {
                tx.state(SourceState::Ended(gone_reason(*gone.borrow(), false)));
                return Outcome::Ended;
            }
        }
        container = container_name();
    }
}

/// Why a capture ended when its pod went (`Gone::Unselected`: its labels changed).
fn gone_reason(gone: Gone, before_capture: bool) -> EndReason {
    if gone == Gone::Unselected {
        EndReason::Unselected { before_capture }
    } else {
        EndReason::PodDeleted { before_capture }
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
