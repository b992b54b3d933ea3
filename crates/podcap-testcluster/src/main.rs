//! `podcap-testcluster`: a local stand-in Kubernetes API server for tests and demos.
//!
//! Writes a kubeconfig for itself to `--kubeconfig`, prints `ready` on stdout, and serves until
//! SIGINT/SIGTERM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use podcap_testcluster::nodes::ClockOffset;
use podcap_testcluster::policy::Deny;
use podcap_testcluster::scale;
use podcap_testcluster::{parse_labels, Config, TestCluster};

/// Logging to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A local stand-in Kubernetes API server that the real kubectl accepts.
#[derive(Debug, Parser)]
#[command(name = "podcap-testcluster", version)]
struct Args {
    /// Number of demo pods (a Deployment's pods, all Running).
    #[arg(long)]
    pods: usize,
    /// Namespace of the demo pods.
    #[arg(long, default_value = "shop")]
    namespace: String,
    /// Labels of the demo pods (and selector of the Deployment and Service), `k=v[,k=v…]`.
    #[arg(long, default_value = "app=mando")]
    labels: String,
    /// Where to write a kubeconfig for this server (written when ready).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Server version to report (kubectl's dispatcher runs the matching client).
    #[arg(long, default_value = "1.30")]
    server_version: String,
    /// Label the namespace `pod-security.kubernetes.io/enforce=LEVEL` (baseline or restricted):
    /// adding an ephemeral container that violates it gets the real 403.
    #[arg(long, value_name = "LEVEL")]
    pod_security: Option<String>,
    /// Deny the kubeconfig's user VERB on RESOURCE (403 as from RBAC), e.g.
    /// `patch:pods/ephemeralcontainers`, `create:pods/attach`, `list:pods@default`. Repeatable.
    #[arg(long, value_name = "VERB:RESOURCE[@NS]")]
    rbac_deny: Vec<String>,
    /// Do not serve the ephemeralcontainers subresource (404 NotFound with empty details).
    #[arg(long)]
    no_ephemeral_containers: bool,
    /// Pulling IMAGE fails (exact reference, or a prefix ending in `/`); `registry.invalid/…`
    /// always fails. Repeatable.
    #[arg(long, value_name = "IMAGE")]
    image_pull_fail: Vec<String>,
    /// Pods created through the API (kubectl run/apply/create) stay Pending (unscheduled) for
    /// SECS before they are bound and start.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pending_secs: f64,
    /// SECS after start, create one more pod of the demo Deployment (same labels; watches see
    /// ADDED, then ContainerCreating and Running). Repeatable.
    #[arg(long, value_name = "SECS")]
    add_pod_after: Vec<String>,
    /// SECS after start, create N more pods of the demo Deployment. Repeatable.
    #[arg(long, value_name = "N@SECS")]
    add_pods: Vec<String>,
    /// SECS after start, delete one demo pod (Terminating, then gone). Repeatable.
    #[arg(long, value_name = "SECS")]
    delete_pod_after: Vec<String>,
    /// Emulate N nodes (node-1…node-N, each with its own hostIP, pod CIDR block and, as root,
    /// bridge); the demo pods are spread over them in turn, created pods go to the emptiest.
    #[arg(long, value_name = "N", default_value_t = 1)]
    nodes: usize,
    /// The pod network (IPv4), split into one block per node (a /24 each when it fits).
    #[arg(long, value_name = "CIDR", default_value = podcap_testcluster::nodes::DEFAULT_POD_NETWORK)]
    pod_network_cidr: String,
    /// NODE's clock is off by ±DURATION (e.g. `node-2=+40ms`): every timestamp a capture in
    /// its pods produces is shifted by it. Repeatable.
    #[arg(long, value_name = "NODE=±DURATION", allow_hyphen_values = true)]
    clock_offset: Vec<String>,
    /// One-way delay between pods on different nodes (as root), e.g. `20ms`.
    #[arg(long, value_name = "DURATION", default_value = "0")]
    node_latency: String,
    /// The kubelet's relist period: a container's start and end are reported at the next
    /// relist (plus ~50 ms of pod sync), as a real kubelet's PLEG does; `0` reports at once.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    relist_period: String,
}

/// `--node-latency 20ms` → a Duration (`what` names the option in errors).
fn duration_arg(what: &str, s: &str) -> Result<std::time::Duration, String> {
    let ns = podcap_testcluster::nodes::parse_duration_ns(s)
        .map_err(|e| format!("{what} {s:?}: {e}"))?;
    u64::try_from(ns)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{what} {s:?} is too long"))
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = podcap_testcluster::synth::main_if_invoked() {
        return code;
    }
    init_logging();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podcap-testcluster: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config {
        pods: args.pods,
        namespace: args.namespace,
        labels: parse_labels(&args.labels)?,
        server_version: args.server_version,
        pod_security: args.pod_security,
        rbac_deny: args
            .rbac_deny
            .iter()
            .map(|d| Deny::parse(d))
            .collect::<Result<_, _>>()?,
        no_ephemeral_containers: args.no_ephemeral_containers,
        image_pull_fail: args.image_pull_fail,
        pending_secs: args.pending_secs,
        add_pods_after: {
            let mut v: Vec<f64> = args
                .add_pod_after
                .iter()
                .map(|s| scale::parse_secs(s))
                .collect::<Result<_, _>>()?;
            for a in &args.add_pods {
                v.extend(scale::parse_count_at(a)?);
            }
            v
        },
        delete_pods_after: args
            .delete_pod_after
            .iter()
            .map(|s| scale::parse_secs(s))
            .collect::<Result<_, _>>()?,
        nodes: args.nodes,
        pod_network: args.pod_network_cidr,
        clock_offsets: args
            .clock_offset
            .iter()
            .map(|s| ClockOffset::parse(s))
            .collect::<Result<_, _>>()?,
        node_latency: duration_arg("--node-latency", &args.node_latency)?,
        relist_period: duration_arg("--relist-period", &args.relist_period)?,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let cluster = TestCluster::start(&config).await?;
    if let Some(note) = cluster.workload_note() {
        eprintln!("podcap-testcluster: {note}");
    }

    // Write atomically so a reader never sees half a kubeconfig.
    let tmp = args.kubeconfig.with_extension("tmp-podcap-testcluster");
    std::fs::write(&tmp, cluster.kubeconfig())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.kubeconfig)
        .map_err(|e| format!("rename to {}: {e}", args.kubeconfig.display()))?;
    eprintln!(
        "podcap-testcluster: serving {} ({} pods in {} on {} node{}, pod network {}), kubeconfig {}",
        cluster.server_url(),
        config.pods,
        config.namespace,
        config.nodes,
        if config.nodes == 1 { "" } else { "s" },
        config.pod_network,
        args.kubeconfig.display()
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }

    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("SIGINT handler: {e}"))?,
        _ = sigterm.recv() => {}
    }
    cluster.shutdown().await;
    Ok(())
}
