//! `podcap-testcluster`: a local stand-in Kubernetes API server for tests and demos.
//!
//! Writes a kubeconfig for itself to `--kubeconfig`, prints `ready` on stdout, and serves until
//! SIGINT/SIGTERM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
        "podcap-testcluster: serving {} ({} pods in {}), kubeconfig {}",
        cluster.server_url(),
        config.pods,
        config.namespace,
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
