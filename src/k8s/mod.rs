//! Capturing Kubernetes pods: find them (and keep following the selector), add an ephemeral
//! container running tcpdump to each, stream every capture back as a source of the live
//! engine.
//!
//! Stages, one module each: [`client`] (kubeconfig, context, in-cluster), [`select`] (kubectl's
//! vocabulary → a namespace, label and field selectors, names), [`inject`] (the ephemeral
//! container, Pod Security fallback, waiting for it to run), [`stream`] (exec or attach, the
//! capture's bytes into a source, a graceful stop), [`fanout`] (the watcher that starts and
//! ends one capture per pod, names, the run).

pub mod client;
#[cfg(feature = "demo")]
pub mod demo;
pub mod errors;
pub mod fanout;
pub mod inject;
pub mod precheck;
pub mod script;
pub mod select;
pub mod stream;

pub use errors::ClusterError;
pub use inject::InjectError;
pub use stream::PodError;

use std::path::PathBuf;
use std::time::Duration;

/// The image of the ephemeral container (it needs sh, tcpdump, sleep, kill, cat), pinned.
pub const DEFAULT_IMAGE: &str = "nicolaka/netshoot:v0.13";

/// Which capabilities the ephemeral container asks for (docs/design.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// NET_RAW; when Pod Security rejects that (nothing was added), retry once with no added
    /// capabilities (containerd's defaults include NET_RAW).
    Auto,
    /// NET_RAW only, no retry.
    NetRaw,
    /// NET_RAW and NET_ADMIN (promiscuous mode).
    NetAdmin,
    /// No securityContext at all: what Pod Security `baseline` accepts.
    Baseline,
}

/// How the capture's bytes come back (docs/design.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `exec` (faster, nothing in the node's container logs); `attach` when RBAC forbids exec.
    Auto,
    Exec,
    Attach,
}

/// Everything a pod capture run needs to know.
#[derive(Clone, Debug)]
pub struct PodOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
    /// Pod names, `pod/NAME`, `deploy/NAME`, `sts/NAME`, `ds/NAME`, `svc/NAME`.
    pub targets: Vec<String>,
    pub max_pods: usize,
    pub dry_run: bool,
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// The container whose process namespace the capture joins (default: the pod's first).
    pub target_container: Option<String>,
    pub interface: String,
    pub snaplen: Option<u32>,
    pub promiscuous: bool,
    pub filter: Vec<String>,
    pub profile: Profile,
    pub via: Via,
    /// No remote process outlives this, whatever happens to us.
    pub max_duration: Duration,
    /// How long a pod may take to run its capture container.
    pub start_timeout: Duration,
    /// Byte budget per pod source.
    pub budget: usize,
}

impl PodOptions {
    /// The tcpdump command every pod runs, from the capture options.
    pub fn capture_argv(&self) -> Vec<String> {
        script::tcpdump_argv(
            &self.interface,
            self.snaplen,
            self.promiscuous,
            &self.filter,
        )
    }

    /// `--max-duration` in whole seconds, at least one (the remote scripts count seconds).
    pub fn max_secs(&self) -> u64 {
        self.max_duration.as_secs().max(1)
    }
}

impl Default for PodOptions {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            namespace: None,
            all_namespaces: false,
            selector: None,
            field_selector: None,
            targets: Vec::new(),
            max_pods: 64,
            dry_run: false,
            image: DEFAULT_IMAGE.into(),
            image_pull_policy: None,
            target_container: None,
            interface: "any".into(),
            snaplen: None,
            promiscuous: false,
            filter: Vec::new(),
            profile: Profile::Auto,
            via: Via::Auto,
            max_duration: Duration::from_secs(24 * 3600),
            start_timeout: Duration::from_secs(120),
            budget: crate::source::DEFAULT_BUDGET,
        }
    }
}
