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
            if let Some(missing) = missing_kubeconfig_env() {
                return Err(ClusterError::Config(missing));
            }
            let config = Config::infer()
                .await
                .map_err(|e| ClusterError::Config(no_configuration(&e.to_string())))?;
            (
                config,
                "the default kubeconfig or the in-cluster service account".to_string(),
            )
        }
    };
    let default_namespace = config.default_namespace.clone();
    super::errors::remember_server(&config.cluster_url.to_string());
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

/// `KUBECONFIG` names files of which none exists: say exactly that (kubectl would fail too).
fn missing_kubeconfig_env() -> Option<String> {
    let value = std::env::var_os("KUBECONFIG")?;
    let paths: Vec<_> = std::env::split_paths(&value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    if paths.is_empty() || paths.iter().any(|p| p.exists()) {
        return None;
    }
    let list = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "KUBECONFIG is set to {list}, which does not exist; fix or unset KUBECONFIG, or give \
         --kubeconfig FILE"
    ))
}

/// No configuration anywhere: the places tried, once, plainly.
fn no_configuration(detail: &str) -> String {
    let home = match std::env::var_os("HOME") {
        Some(h) => {
            let path = std::path::Path::new(&h).join(".kube/config");
            if path.exists() {
                return format!(
                    "cannot use the kubeconfig {}: {detail}; fix it, or give --kubeconfig FILE",
                    path.display()
                );
            }
            format!("{} (missing)", path.display())
        }
        None => "~/.kube/config (HOME is not set)".into(),
    };
    let in_cluster = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        "the in-cluster service account (its token or CA could not be read)"
    } else {
        "the in-cluster service account (not in a pod: KUBERNETES_SERVICE_HOST is not set)"
    };
    tracing::debug!("kubeconfig inference: {detail}");
    format!(
        "no Kubernetes configuration found; tried {home} and {in_cluster}. Give \
         --kubeconfig FILE or set KUBECONFIG"
    )
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
