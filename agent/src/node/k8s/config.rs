//! Where the API server is and how to authenticate to it, from what
//! Kubernetes gives every pod: the service environment variables and the
//! service account's files.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::K8sError;
use crate::output::https::{self, Trust};

/// Where kubelet mounts the pod's service account.
pub const DEFAULT_SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Overrides [`DEFAULT_SERVICEACCOUNT_DIR`] (for tests and odd mounts).
pub const SERVICEACCOUNT_DIR_ENV: &str = "SPANLET_K8S_SERVICEACCOUNT_DIR";

/// How to reach the API server from inside the cluster.
#[derive(Clone, Debug)]
pub struct InClusterConfig {
    /// `https://host:port`, the host bracketed if IPv6.
    pub api_url: String,
    /// The service account's token file; read again as it rotates.
    pub token_path: PathBuf,
    /// The cluster CA (PEM) that signed the API server's certificate.
    pub ca_pem: Vec<u8>,
}

impl InClusterConfig {
    /// The in-cluster settings, from the environment; None when not running
    /// in a pod (`KUBERNETES_SERVICE_HOST` unset).
    pub fn detect() -> Result<Option<Self>, K8sError> {
        Self::detect_from(|name| std::env::var(name).ok())
    }

    /// [`Self::detect`] with `env` in place of the process's environment
    /// (tests cannot safely change that of a threaded process).
    pub fn detect_from(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, K8sError> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(host) = var("KUBERNETES_SERVICE_HOST") else {
            return Ok(None);
        };
        let port = var("KUBERNETES_SERVICE_PORT").ok_or_else(|| {
            K8sError::Environment(
                "KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not".into(),
            )
        })?;
        if port.parse::<u16>().is_err() {
            return Err(K8sError::Environment(format!(
                "KUBERNETES_SERVICE_PORT is not a port number: {port:?}"
            )));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let api_url = format!("https://{host}:{port}");
        api_url
            .parse::<http::Uri>()
            .map_err(|e| K8sError::Environment(format!("bad API server address {api_url}: {e}")))?;

        let dir = PathBuf::from(
            var(SERVICEACCOUNT_DIR_ENV).unwrap_or_else(|| DEFAULT_SERVICEACCOUNT_DIR.to_owned()),
        );
        let token_path = dir.join("token");
        read_token(&token_path)?;
        let ca_path = dir.join("ca.crt");
        let ca_pem =
            std::fs::read(&ca_path).map_err(|e| service_account("CA certificate", &ca_path, &e))?;
        // Fail now, with the path in the message, rather than at each request.
        tls_config(&ca_pem).map_err(|e| service_account("CA certificate", &ca_path, &e))?;
        Ok(Some(Self {
            api_url,
            token_path,
            ca_pem,
        }))
    }
}

fn service_account(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> K8sError {
    K8sError::ServiceAccount {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn read_token(path: &Path) -> Result<String, K8sError> {
    let token = std::fs::read_to_string(path).map_err(|e| service_account("token", path, &e))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(service_account("token", path, &"the file is empty"));
    }
    Ok(token.to_owned())
}

/// rustls trusting only the cluster CA: the API server's certificate is
/// the cluster's own, so public roots would only widen whom we trust.
pub(crate) fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, K8sError> {
    let trust = Trust {
        public_roots: false,
        ca_pem: Some(ca_pem),
        identity: None,
    };
    https::rustls_config(&trust).map_err(|e| K8sError::Tls(e.reason))
}

/// The service account token, read again when older than `max_age` or
/// after the API refused it: bound tokens are rotated by kubelet (hourly by
/// default) and the old one stops working.
pub(crate) struct Token {
    path: PathBuf,
    max_age: Duration,
    current: Option<(String, Instant)>,
    refused: bool,
}

impl Token {
    pub fn new(path: PathBuf, max_age: Duration) -> Self {
        Self {
            path,
            max_age,
            current: None,
            refused: false,
        }
    }

    pub fn get(&mut self) -> Result<String, K8sError> {
        if let Some((token, read_at)) = &self.current
            && !self.refused
            && read_at.elapsed() < self.max_age
        {
            return Ok(token.clone());
        }
        match read_token(&self.path) {
            Ok(token) => {
                self.current = Some((token.clone(), Instant::now()));
                self.refused = false;
                Ok(token)
            }
            // Mid-rotation the file can be briefly missing: the old token
            // is still the best there is.
            Err(e) => match &self.current {
                Some((token, _)) => {
                    tracing::debug!("keeping the previous service account token: {e}");
                    Ok(token.clone())
                }
                None => Err(e),
            },
        }
    }

    /// After a 401: the next [`Self::get`] reads the file.
    pub fn expire(&mut self) {
        self.refused = true;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A self-signed certificate, as a service account's ca.crt.
    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn service_account_dir(token: Option<&str>, ca: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(token) = token {
            std::fs::write(dir.path().join("token"), token).unwrap();
        }
        if let Some(ca) = ca {
            std::fs::write(dir.path().join("ca.crt"), ca).unwrap();
        }
        dir
    }

    #[test]
    fn outside_a_cluster_is_none() {
        assert!(InClusterConfig::detect_from(env(&[])).unwrap().is_none());
        assert!(
            InClusterConfig::detect_from(env(&[("KUBERNETES_SERVICE_HOST", " ")]))
                .unwrap()
                .is_none()
        );
        // Whatever the directory holds.
        let dir = service_account_dir(Some("t"), Some(&ca_pem()));
        let dir = dir.path().to_str().unwrap();
        assert!(
            InClusterConfig::detect_from(env(&[(SERVICEACCOUNT_DIR_ENV, dir)]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn in_a_cluster() {
        let dir = service_account_dir(Some("tok\n"), Some(&ca_pem()));
        let path = dir.path().to_str().unwrap();
        let config = InClusterConfig::detect_from(env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            (SERVICEACCOUNT_DIR_ENV, path),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.api_url, "https://10.96.0.1:443");
        assert_eq!(config.token_path, dir.path().join("token"));

        let config = InClusterConfig::detect_from(env(&[
            ("KUBERNETES_SERVICE_HOST", "fd00:10:96::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
            (SERVICEACCOUNT_DIR_ENV, path),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.api_url, "https://[fd00:10:96::1]:6443");
    }

    #[test]
    fn missing_service_account_files_are_errors() {
        let ca = ca_pem();
        for (token, ca, what) in [
            (None, Some(ca.as_str()), "token"),
            (Some(""), Some(ca.as_str()), "token"),
            (Some("tok"), None, "CA certificate"),
            (Some("tok"), Some("not a certificate"), "CA certificate"),
        ] {
            let dir = service_account_dir(token, ca);
            let err = InClusterConfig::detect_from(env(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                (SERVICEACCOUNT_DIR_ENV, dir.path().to_str().unwrap()),
            ]))
            .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(what), "{text}");
            assert!(text.contains(dir.path().to_str().unwrap()), "{text}");
        }
    }

    #[test]
    fn the_default_directory_is_used_without_the_override() {
        let err = InClusterConfig::detect_from(env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]));
        // This machine is no pod: the default mount is absent.
        if !Path::new(DEFAULT_SERVICEACCOUNT_DIR).exists() {
            let text = err.unwrap_err().to_string();
            assert!(text.contains(DEFAULT_SERVICEACCOUNT_DIR), "{text}");
        }
    }

    #[test]
    fn bad_ports_are_errors() {
        for port in [None, Some("https"), Some("70000")] {
            let mut vars = vec![("KUBERNETES_SERVICE_HOST", "10.96.0.1")];
            if let Some(port) = port {
                vars.push(("KUBERNETES_SERVICE_PORT", port));
            }
            let text = InClusterConfig::detect_from(env(&vars))
                .unwrap_err()
                .to_string();
            assert!(text.contains("KUBERNETES_SERVICE_PORT"), "{text}");
        }
    }

    #[test]
    fn tokens_are_read_again() {
        let dir = service_account_dir(Some("one"), None);
        let path = dir.path().join("token");
        let mut token = Token::new(path.clone(), Duration::from_secs(3600));
        assert_eq!(token.get().unwrap(), "one");
        std::fs::write(&path, "two").unwrap();
        assert_eq!(token.get().unwrap(), "one", "cached until old or refused");
        token.expire();
        assert_eq!(token.get().unwrap(), "two");
        // Briefly missing mid-rotation: the previous one is kept.
        std::fs::remove_file(&path).unwrap();
        token.expire();
        assert_eq!(token.get().unwrap(), "two");

        let mut fresh = Token::new(path, Duration::ZERO);
        assert!(fresh.get().is_err());
    }
}
