//! A stand-in for the Kubernetes API server, for the watcher's tests.
//!
//! No real API server can run where these tests run (none is packaged in
//! the registries this machine reaches), so this serves the same paths and
//! JSON documents over HTTPS with a fresh self-signed certificate, and lets
//! each test see every request and write every response, chunk by chunk.
use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

pub(crate) struct FakeApiServer {
    pub addr: SocketAddr,
    /// The CA to trust: the server's own self-signed certificate.
    pub ca_pem: String,
    requests: mpsc::UnboundedReceiver<Request>,
    task: JoinHandle<()>,
}

/// A request received, waiting for the test's reply.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    Whole { status: u16, body: String },
    Chunked(mpsc::UnboundedReceiver<Vec<u8>>),
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let key = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("generate a certificate");
        let cert = key.cert.der().clone();
        let private_key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], private_key)
        .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, tx).await;
                    }
                });
            }
        });
        Self {
            addr,
            ca_pem: key.cert.pem(),
            requests,
            task,
        }
    }

    /// The next request, or a panic after 10 s without one.
    pub async fn next_request(&mut self) -> Request {
        tokio::time::timeout(Duration::from_secs(10), self.requests.recv())
            .await
            .expect("no request to the fake API server within 10 s")
            .expect("the fake API server stopped")
    }
}

/// One request per connection (answered with `Connection: close`), which
/// is all the watcher needs and keeps the stand-in simple.
async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    tx: mpsc::UnboundedSender<Request>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let (reply, answer) = oneshot::channel();
    let request = Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        reply,
    };
    if tx.send(request).is_err() {
        return;
    }
    let Ok(answer) = answer.await else {
        return;
    };
    match answer {
        Reply::Whole { status, body } => {
            let response = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(status),
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
        }
        Reply::Chunked(mut chunks) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if tls.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let _ = tls.flush().await;
            while let Some(chunk) = chunks.recv().await {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                // The watcher hung up (it relisted): nothing more to send.
                if tls.write_all(&framed).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            let _ = tls.write_all(b"0\r\n\r\n").await;
        }
    }
    let _ = tls.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        410 => "Gone",
        _ => "Error",
    }
}

impl Request {
    /// A query parameter as sent (still percent-encoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("1" | "true"))
    }

    pub fn reply_json(self, status: u16, body: &Value) {
        let _ = self.reply.send(Reply::Whole {
            status,
            body: body.to_string(),
        });
    }

    /// Starts a chunked 200 response; each message sent is one chunk, and
    /// dropping the sender ends the response.
    pub fn reply_stream(self) -> mpsc::UnboundedSender<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.reply.send(Reply::Chunked(rx));
        tx
    }
}

/// A pod as the API serves it (`kubectl get pod -o json`, trimmed of
/// nothing the watcher ignores, so that it has to skip those fields).
pub(crate) fn pod(
    uid: &str,
    namespace: &str,
    name: &str,
    node: &str,
    version: &str,
    labels: &[(&str, &str)],
    containers: &[(&str, &str)],
) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": format!("{name}-"),
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": version,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
                "uid": "99999999-0000-0000-0000-000000000000", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
        },
        "spec": {
            "containers": containers.iter().map(|(name, _)| json!({
                "name": name, "image": "registry.example/app:1",
                "resources": {"limits": {"cpu": "1"}}, "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log"
            })).collect::<Vec<_>>(),
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": node,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "hostIP": "192.0.2.10",
            "podIP": "198.51.100.7",
            "podIPs": [{"ip": "198.51.100.7"}],
            "startTime": "2025-01-01T00:00:00Z",
            "containerStatuses": containers.iter().map(|(name, id)| json!({
                "name": name,
                "state": {"running": {"startedAt": "2025-01-01T00:00:01Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "registry.example/app:1",
                "imageID": "registry.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "containerID": format!("containerd://{id}"),
                "started": true
            })).collect::<Vec<_>>(),
            "qosClass": "Burstable"
        }
    })
}

/// A `PodList` as LIST answers it.
pub(crate) fn pod_list(version: &str, items: &[Value]) -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": items
    })
}

/// One watch event line, newline included.
pub(crate) fn event(kind: &str, object: &Value) -> Vec<u8> {
    let mut line = json!({"type": kind, "object": object})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// A BOOKMARK event: only the version is meaningful.
pub(crate) fn bookmark(version: &str) -> Vec<u8> {
    event(
        "BOOKMARK",
        &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": version},
            "spec": {"containers": null}, "status": {}}),
    )
}

/// A `Status` object, as errors carry.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}
