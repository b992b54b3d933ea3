//! `podcap-merge demo`: the real pipeline against the local test cluster, started in-process
//! (its own thread and runtime, as a separate API server would be): pods with traffic,
//! ephemeral containers, exec streams, one merged file.

use super::fanout::run_pods;
use super::PodOptions;
use crate::engine::{EngineConfig, Report};
use crate::error::StartError;
use crate::sink::Target;
use podcap_testcluster::{Config, TestCluster};
use std::io;
use std::path::Path;
use std::time::Duration;

/// Starts the test cluster with `pods` pods, captures them for `duration` into `out`.
pub fn run(out: &Path, pods: usize, duration: Duration) -> Result<Report, StartError> {
    let seconds = duration.as_secs_f64();
    type Ready = Result<(String, bool, Option<String>), String>;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cluster_thread = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let config = Config {
                pods,
                ..Config::default()
            };
            match TestCluster::start(&config).await {
                Ok(cluster) => {
                    let netns = cluster.shared.kubelet.netns_enabled;
                    let note = cluster.workload_note();
                    let _ = ready_tx.send(Ok((cluster.kubeconfig(), netns, note)));
                    let _ = stop_rx.await;
                    cluster.shutdown().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let (kubeconfig, netns, workload_note) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("the test cluster did not start"))?
        .map_err(|e| io::Error::other(format!("the test cluster did not start: {e}")))?;
    let path = std::env::temp_dir().join(format!("podcap-demo-{}.kubeconfig", std::process::id()));
    {
        // private and new: never through a link someone left in the temp folder
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(kubeconfig.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    eprintln!(
        "podcap-merge demo: a local test cluster runs {pods} pods labelled app=mando in namespace \
         shop{}; capturing them for {seconds} s into {}",
        if netns && workload_note.is_none() {
            " (each in its own network namespace, with real traffic)"
        } else if netns {
            " (each in its own network namespace)"
        } else {
            " (no network namespaces: not root or no `ip netns`; synthetic traffic)"
        },
        out.display()
    );
    if let Some(note) = workload_note {
        // e.g. no ping or curl on this machine: one line, not a log line per pod
        eprintln!("podcap-merge demo: {note}");
    }
    let opts = PodOptions {
        kubeconfig: Some(path.clone()),
        namespace: Some("shop".into()),
        selector: Some("app=mando".into()),
        ..PodOptions::default()
    };
    let mut cfg = EngineConfig::new(Target::File {
        path: out.to_path_buf(),
        gzip: out.to_string_lossy().ends_with(".gz"),
    });
    cfg.duration = Some(duration);
    cfg.progress = true;
    let result = run_pods(opts, cfg);
    let _ = stop_tx.send(());
    let _ = cluster_thread.join();
    let _ = std::fs::remove_file(&path);
    let report = result?;
    eprintln!(
        "podcap-merge demo: wrote {}; open it with `wireshark {0}` or `tshark -r {0} -N n` \
         (-N n shows pod names from the file's name records)",
        out.display()
    );
    Ok(report)
}
