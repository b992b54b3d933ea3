//! One capture session, the skeleton every run shares: a tokio runtime, the signal handler
//! (Ctrl-C stops gracefully, a second one at once), the engine on its own thread, and a driver
//! task that starts the sources (files, commands, or the pod watcher) and may report a
//! run-level failure. `merge`, `--cmd`/`--stdin` and pod capture differ only in their driver.

use crate::engine::{self, EngineConfig, Report};
use crate::source::Events;
use crate::stop::{Stop, StopLevel};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How long the driver gets, after the engine has finished, to end its sources and say why
/// the run failed (if it did).
const DRIVER_GRACE: Duration = Duration::from_secs(4);

pub struct Session {
    rt: tokio::runtime::Runtime,
}

impl Session {
    pub fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Session { rt })
    }

    /// Runs preparation (connecting, listing pods) on the session's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs the engine with `cfg` until every source has ended or a stop condition is met.
    /// `driver` registers the sources through the [`Events`] it is given (dropping them once no
    /// further source can come) and returns a run-level failure, if any, which lands in the
    /// report. An output that cannot be opened is the error.
    pub fn capture<D, F>(&self, cfg: EngineConfig, driver: D) -> io::Result<Report>
    where
        D: FnOnce(Events, Arc<Stop>) -> F,
        F: Future<Output = Option<String>> + Send + 'static,
    {
        self.rt.block_on(async move {
            let stop = Arc::new(Stop::new());
            // quiet runs (-q, and Wireshark's extcap, which shows any stderr line as an error)
            // do not announce a graceful stop
            let signals = tokio::spawn(handle_signals(stop.clone(), cfg.progress));
            let (tx, rx) = std::sync::mpsc::channel();
            let engine_stop = stop.clone();
            let engine = tokio::task::spawn_blocking(move || engine::run(cfg, rx, engine_stop));
            let driver = tokio::spawn(driver(Events::new(tx), stop.clone()));
            let report = engine.await.map_err(io::Error::other);
            // whatever ended the engine, the sources stop now
            stop.request(StopLevel::Now);
            let mut report = report??;
            if let Ok(Ok(Some(e))) = tokio::time::timeout(DRIVER_GRACE, driver).await {
                report.run_error = Some(e);
            }
            signals.abort();
            Ok(report)
        })
    }
}

/// SIGINT/SIGTERM: the first stops gracefully, the second at once (and if the output still
/// cannot be finished within 3 s — a reader that stopped reading — exits anyway), a third
/// exits immediately.
async fn handle_signals(stop: Arc<Stop>, announce: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut count = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        count += 1;
        match count {
            1 => {
                if announce {
                    eprintln!("podcap-merge: stopping: finishing what the sources still send (again to stop at once)");
                }
                stop.request(StopLevel::Graceful);
            }
            2 => {
                stop.request(StopLevel::Now);
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    eprintln!(
                        "podcap-merge: the output is not being read; exiting without finishing it"
                    );
                    std::process::exit(1);
                });
            }
            _ => std::process::exit(130),
        }
    }
}
