//! A minimal HTTPS client for the Kubernetes API: GET with the service
//! account's token, the cluster CA, and timeouts. kube-rs would bring far
//! more than the one resource the agent reads.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, combinators::UnsyncBoxBody};

use crate::{
    error_text::error_chain,
    output::https::{self, HttpsClient, RequestError},
};

use super::{
    K8sError,
    config::{InClusterConfig, Token, tls_config},
};

/// A response body, its errors already flattened to text (so that the
/// watcher need not name hyper's types).
pub(crate) type Body = UnsyncBoxBody<Bytes, String>;

/// How much of an error response is read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) struct ApiClient {
    base: String,
    http: HttpsClient<Empty<Bytes>>,
    token: Token,
}

impl ApiClient {
    pub fn new(
        config: &InClusterConfig,
        connect_timeout: Duration,
        token_max_age: Duration,
    ) -> Result<Self, K8sError> {
        let tls = tls_config(&config.ca_pem)?;
        Ok(Self {
            base: config.api_url.trim_end_matches('/').to_owned(),
            http: https::client(tls, connect_timeout, false),
            token: Token::new(config.token_path.clone(), token_max_age),
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// GETs `path_and_query`, waiting up to `timeout` for the response's
    /// head; the body is the caller's to read. Anything but a 2xx is an
    /// error carrying the API's message.
    pub async fn get(&mut self, path_and_query: &str, timeout: Duration) -> Result<Body, K8sError> {
        let url = self.url(path_and_query);
        let token = self.token.get()?;
        let request = http::Request::get(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("spanlet/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| K8sError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = match https::request(&self.http, request, timeout).await {
            Err(RequestError::Timeout) => return Err(K8sError::Timeout { url, timeout }),
            Err(RequestError::Failed(reason)) => return Err(K8sError::Unreachable { url, reason }),
            Ok(response) => response,
        };
        let status = response.status();
        let mut body = response
            .into_body()
            .map_err(|e| error_chain(&e))
            .boxed_unsync();
        if status.is_success() {
            return Ok(body);
        }
        if status == http::StatusCode::UNAUTHORIZED {
            self.token.expire();
        }
        let text = read_to_end(&mut body, &url, MAX_ERROR_BODY, timeout)
            .await
            .unwrap_or_default();
        Err(K8sError::Status {
            url,
            status: status.as_u16(),
            message: status_message(status.as_u16(), &text),
        })
    }
}

/// The next piece of `body`; None at its end. Waits at most `idle`.
pub(crate) async fn next_chunk(
    body: &mut Body,
    url: &str,
    idle: Duration,
) -> Result<Option<Bytes>, K8sError> {
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(K8sError::Timeout {
                    url: url.to_owned(),
                    timeout: idle,
                });
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(reason))) => {
                return Err(K8sError::Unreachable {
                    url: url.to_owned(),
                    reason,
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing the agent needs.
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return Ok(Some(data));
        }
    }
}

/// All of `body`, if within `limit` bytes and `timeout`.
pub(crate) async fn read_to_end(
    body: &mut Body,
    url: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, K8sError> {
    let read = async {
        let mut out = Vec::new();
        while let Some(chunk) = next_chunk(body, url, timeout).await? {
            if out.len() + chunk.len() > limit {
                return Err(K8sError::Decode {
                    url: url.to_owned(),
                    reason: format!("the response exceeds {limit} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(K8sError::Timeout {
                url: url.to_owned(),
                timeout,
            })
        })
}

/// The message of a failed request: the `Status` object's, if the body is
/// one, with a hint for the usual causes.
fn status_message(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
    }
    let mut message = match serde_json::from_slice::<Status>(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(body).chars().take(200).collect(),
    };
    let hint = match status {
        401 => "the service account token was refused; it is read again before the next try",
        403 => {
            "the agent's service account needs get, list and watch on pods (a ClusterRole bound to it)"
        }
        _ => "",
    };
    if !hint.is_empty() {
        message = if message.trim().is_empty() {
            hint.to_owned()
        } else {
            format!("{}; {hint}", message.trim())
        };
    }
    message.trim().to_owned()
}

/// `value` for a URL query: everything but the unreserved characters
/// percent-encoded.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode_query_value("node-1.example.com"),
            "node-1.example.com"
        );
        assert_eq!(
            encode_query_value("spec.nodeName=a b&c"),
            "spec.nodeName%3Da%20b%26c"
        );
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    #[test]
    fn status_messages() {
        let forbidden = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:obs:spanlet\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#;
        let text = status_message(403, forbidden);
        assert!(text.starts_with("pods is forbidden"), "{text}");
        assert!(text.contains("get, list and watch on pods"), "{text}");
        assert_eq!(status_message(500, b"oops"), "oops");
        assert!(status_message(401, b"").starts_with("the service account token was refused"));
    }
}
