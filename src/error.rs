//! The errors of a run, one type per layer, so no code has to read an error's text to know
//! what happened:
//!
//! - [`StartError`]: the run could not start (exit status 2): the command line, the output,
//!   the cluster connection or the selection.
//! - per source, one type per layer: [`podcap_format::DecodeError`] (the bytes),
//!   [`crate::source::SourceError`] (a file, stdin or a local command),
//!   [`crate::k8s::PodError`] (a pod's capture). The engine keeps each failed source's error
//!   as a [`SourceFailure`] and only ever displays it.

use std::sync::Arc;

/// Why a run could not start. Exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The command line asks for something impossible or contradictory.
    #[error("{0}")]
    Usage(String),
    /// The output (or the runtime) could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The cluster could not be reached, or the selection names no pods.
    #[error(transparent)]
    Cluster(#[from] crate::k8s::ClusterError),
    /// tcpdump refuses the capture (its filter, its interface): its own words.
    #[error("{0}")]
    Capture(String),
    /// This build lacks a feature the command needs.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::Usage(message)
    }
}

/// A source's failure as the engine keeps it: any layer's error, shown to the user.
pub type SourceFailure = Arc<dyn std::error::Error + Send + Sync>;
