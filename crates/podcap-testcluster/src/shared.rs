//! The server's state handle that every handler is given: the objects, the token, the
//! emulated kubelet and the fault modes.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::objects::State;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Shared {
    /// Cluster state; later work adds writers.
    pub state: Mutex<State>,
    /// The bearer token clients must present.
    pub token: String,
    /// `/version` body.
    pub version: Value,
    /// `host:port` for `serverAddressByClientCIDRs`.
    pub address: String,
    /// The emulated kubelet's processes and network namespaces.
    pub kubelet: Arc<super::kubelet::Kubelet>,
    /// Fault and policy modes (RBAC denials, disabled subresource, failing pulls).
    pub faults: super::policy::Faults,
}

impl Shared {
    /// Locks the state, ignoring poisoning (a panicked handler leaves consistent JSON).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
