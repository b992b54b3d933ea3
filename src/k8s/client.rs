//! The Kubernetes client: `--kubeconfig`, `--context`, else what kubectl would use
//! (`$KUBECONFIG`, `~/.kube/config`), else the in-cluster service account.

use super::errors::ClusterError;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use std::path::Path;

/// A connected client and the namespace to use when none is given.
pub struct Connection {
    pub client: Client,
    pub default_namespace: String,
    /// Where the configuration came from, for messages.
    pub source: String,
}

pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connection, ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let (config, source) = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                ClusterError::Config(format!(
                    "cannot read the kubeconfig {}: {e}; check the path given to --kubeconfig",
                    path.display()
                ))
            })?;
            let config = Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| context_error(e, context, &path.display().to_string()))?;
            (config, path.display().to_string())
        }
        None if context.is_some() => {
            let config = Config::from_kubeconfig(&options)
                .await
                .map_err(|e| context_error(e, context, "the default kubeconfig"))?;
            (config, "the default kubeconfig".to_string())
        }
        None => {
            let config = Config::infer().await.map_err(|e| {
                ClusterError::Config(format!(
                    "no Kubernetes configuration found ({e}); give --kubeconfig FILE, set \
                     KUBECONFIG, or run inside a cluster with a service account"
                ))
            })?;
            (
                config,
                "the default kubeconfig or the in-cluster service account".to_string(),
            )
        }
    };
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| {
        ClusterError::Config(format!(
            "cannot set up the Kubernetes client from {source}: {e}"
        ))
    })?;
    Ok(Connection {
        client,
        default_namespace,
        source,
    })
}

fn context_error(e: KubeconfigError, context: Option<&str>, file: &str) -> ClusterError {
    ClusterError::Config(match (context, &e) {
        (Some(c), KubeconfigError::LoadContext(_) | KubeconfigError::LoadClusterOfContext(_)) => {
            format!(
                "context {c:?} not found in {file} ({e}); list the contexts with `kubectl config get-contexts`"
            )
        }
        _ => format!("cannot use {file}: {e}"),
    })
}
