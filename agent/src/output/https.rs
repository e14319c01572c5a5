//! The HTTPS client both of the agent's HTTP clients use: the OTLP
//! exporter (HTTP/protobuf, its connector) and the node agent's Kubernetes
//! API client.
//! One place builds the rustls configuration (roots, CA file, client
//! certificate), the connector with its connect timeout, and maps a
//! request's deadline and failure.
use std::{sync::Arc, time::Duration};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::error_text::error_chain;

/// A pooled HTTP/1 client over rustls, sending bodies of type `B`.
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// Whom a client trusts and how it identifies itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trust<'a> {
    /// The Mozilla roots (webpki-roots), besides `ca_pem`.
    pub public_roots: bool,
    /// Further CA certificates, PEM.
    pub ca_pem: Option<&'a [u8]>,
    /// A client certificate chain and its key, PEM.
    pub identity: Option<(&'a [u8], &'a [u8])>,
}

/// A TLS setting that cannot be used: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct TlsError {
    pub what: &'static str,
    pub reason: String,
}

/// rustls (ring, the safe default protocol versions) trusting `trust`.
/// A configuration that would trust no one is an error.
pub fn rustls_config(trust: &Trust) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let bad = |what: &'static str, e: &dyn std::fmt::Display| TlsError {
        what,
        reason: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    if trust.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for cert in CertificateDer::pem_slice_iter(trust.ca_pem.unwrap_or_default()) {
        let cert = cert.map_err(|e| bad("the CA certificate", &e))?;
        roots.add(cert).map_err(|e| bad("the CA certificate", &e))?;
    }
    if roots.is_empty() {
        return Err(bad("the CA certificate", &"no certificate in the PEM data"));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("TLS versions", &e))?
    .with_root_certificates(roots);
    match trust.identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("the client certificate", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("the client key", &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| bad("the client certificate", &e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A client over `tls` that gives up connecting after `connect_timeout`;
/// plain `http://` URLs only if `allow_http`.
pub fn client<B>(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    allow_http: bool,
) -> HttpsClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build(connector(tls, connect_timeout, allow_http))
}

/// The connector of [`client`], for clients built elsewhere (the OTLP
/// exporter's).
pub fn connector(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    allow_http: bool,
) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
    match allow_http {
        true => builder.https_or_http().enable_http1().wrap_connector(http),
        false => builder.https_only().enable_http1().wrap_connector(http),
    }
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum RequestError {
    /// None within the deadline.
    Timeout,
    /// The connection or the exchange failed: the error and its causes.
    Failed(String),
}

/// Sends `request`, waiting up to `timeout` for the response's head; the
/// body is the caller's to read.
pub async fn request<B>(
    client: &HttpsClient<B>,
    request: http::Request<B>,
    timeout: Duration,
) -> Result<http::Response<hyper::body::Incoming>, RequestError>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Err(RequestError::Timeout),
        Ok(Err(e)) => Err(RequestError::Failed(error_chain(&e))),
        Ok(Ok(response)) => Ok(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusting_no_one_is_an_error() {
        let err = rustls_config(&Trust::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the CA certificate: no certificate in the PEM data"
        );
        let garbage = Trust {
            ca_pem: Some(b"not a certificate"),
            ..Trust::default()
        };
        assert!(rustls_config(&garbage).is_err());
        let public = Trust {
            public_roots: true,
            ..Trust::default()
        };
        assert!(rustls_config(&public).is_ok());
    }
}
