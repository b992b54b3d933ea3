//! podcap-merge: capture traffic from many sources (Kubernetes pods, local commands, files)
//! and merge it by timestamp into one pcapng stream in which every source interface is its own
//! named interface.
//!
//! Data flows one way, one module per stage:
//! [`source`] (bytes → records, with a byte budget) → [`engine`] ([`merge`] by timestamp,
//! [`link`]: copies of one packet across sources linked or de-duplicated, [`output`] interface
//! mapping and pcapng encoding via [`podcap_format::encode`], [`sink`]: stdout, file or ring). [`offline`] feeds files (`podcap-merge merge`), [`live`] feeds commands and
//! stdin; both run the same engine.

pub mod clocks;
pub mod engine;
pub mod error;
pub mod extcap;
pub mod flags;
pub mod install;
pub mod k8s;
pub mod lag;
pub mod link;
pub mod live;
pub mod merge;
pub mod offline;
pub mod output;
pub mod progress;
pub mod session;
pub mod sink;
pub mod source;
pub mod stop;

/// Logging for the binaries: `tracing` to stderr, filtered by `RUST_LOG` (default: our own
/// warnings; the Kubernetes client's and HTTP stack's messages only with RUST_LOG, since every
/// failure they see reaches the user as our own message naming the pod), coloured only on a
/// terminal.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,kube=off,kube_client=off,kube_runtime=off,hyper=off,hyper_util=off,tungstenite=off")
            }),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
