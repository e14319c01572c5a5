//! The watcher against the stand-in API server ([`super::fake_apiserver`]):
//! what it asks for, and what the cache holds after each answer.
use std::{collections::HashMap, future::Future, time::Duration};

use super::{
    InClusterConfig, PodCache, SERVICEACCOUNT_DIR_ENV,
    fake_apiserver::{FakeApiServer, Request, bookmark, event, pod, pod_list, status},
    watch::{Tuning, spawn_watcher_with},
};

const NODE: &str = "node-1";
const UID_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const UID_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const UID_C: &str = "cccccccc-0000-4000-8000-000000000003";
const UID_E: &str = "eeeeeeee-0000-4000-8000-000000000005";
const UID_OTHER: &str = "ffffffff-0000-4000-8000-000000000006";

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

struct Harness {
    server: FakeApiServer,
    cache: PodCache,
    sa_dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn harness(max_line: usize) -> Harness {
    let server = FakeApiServer::start().await;
    let sa_dir = tempfile::tempdir().unwrap();
    std::fs::write(sa_dir.path().join("token"), "token-1\n").unwrap();
    std::fs::write(sa_dir.path().join("ca.crt"), &server.ca_pem).unwrap();
    let env: HashMap<&str, String> = HashMap::from([
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", server.addr.port().to_string()),
        (
            SERVICEACCOUNT_DIR_ENV,
            sa_dir.path().to_str().unwrap().to_owned(),
        ),
    ]);
    let config = InClusterConfig::detect_from(|k| env.get(k).cloned())
        .unwrap()
        .unwrap();
    let cache = PodCache::new();
    let tuning = Tuning {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        request_timeout: Duration::from_secs(5),
        min_watch: Duration::ZERO,
        max_line,
        // Only a 401 makes it read the token again, in these tests.
        token_max_age: Duration::from_secs(3600),
        ..Tuning::default()
    };
    let task = spawn_watcher_with(config, NODE.to_owned(), cache.clone(), tuning);
    Harness {
        server,
        cache,
        sa_dir,
        task,
    }
}

/// Waits until `check` holds, polling; fails after 10 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs a test on a runtime like the agent's (current thread).
fn run<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

fn assert_list(req: &Request, token: &str) {
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/api/v1/pods");
    assert!(!req.is_watch(), "expected a LIST, got a watch");
    assert_eq!(req.param("fieldSelector"), Some("spec.nodeName%3Dnode-1"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(req.header("accept"), Some("application/json"));
}

fn assert_watch(req: &Request, version: &str) {
    assert_eq!(req.path, "/api/v1/pods");
    assert!(req.is_watch(), "expected a watch");
    assert_eq!(req.param("fieldSelector"), Some("spec.nodeName%3Dnode-1"));
    assert_eq!(req.param("resourceVersion"), Some(version));
    assert_eq!(req.param("allowWatchBookmarks"), Some("true"));
    let timeout: u64 = req.param("timeoutSeconds").unwrap().parse().unwrap();
    assert!((300..600).contains(&timeout), "{timeout}");
    assert_eq!(req.header("authorization"), Some("Bearer token-1"));
}

#[test]
fn list_watch_and_relist() {
    run(async {
        let mut h = harness(16 << 20).await;
        assert!(!h.cache.synced());

        let req = h.server.next_request().await;
        assert_list(&req, "token-1");
        let web = pod(
            UID_A,
            "shop",
            "web",
            NODE,
            "90",
            &[("app", "web")],
            &[("nginx", &id('a'))],
        );
        let db = pod(
            UID_B,
            "shop",
            "db",
            NODE,
            "95",
            &[("app", "db")],
            &[("postgres", &id('b'))],
        );
        // Kept out by the field selector on a real server; dropped anyway.
        let elsewhere = pod(
            UID_OTHER,
            "shop",
            "web-2",
            "node-2",
            "96",
            &[("app", "web")],
            &[],
        );
        req.reply_json(200, &pod_list("100", &[web, db.clone(), elsewhere]));
        until("the list is in the cache", || h.cache.synced()).await;
        assert_eq!(h.cache.len(), 2);
        let (found, container) = h.cache.by_container_id(&id('a')).unwrap();
        assert_eq!((found.name.as_str(), container.as_str()), ("web", "nginx"));
        assert_eq!(found.node_name, NODE);
        let selected = h.cache.select(
            &["shop".to_owned()],
            &[("app".to_owned(), "web".to_owned())],
        );
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].uid, UID_A);

        let req = h.server.next_request().await;
        assert_watch(&req, "100");
        let stream = req.reply_stream();

        // ADDED, split across chunks mid-line.
        let generation = h.cache.generation();
        let added = event(
            "ADDED",
            &pod(
                UID_C,
                "ops",
                "agent",
                NODE,
                "101",
                &[("app", "agent")],
                &[("agent", &id('c'))],
            ),
        );
        let (first, second) = added.split_at(added.len() / 2);
        stream.send(first.to_vec()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(h.cache.len(), 2, "half an event is not an event");
        stream.send(second.to_vec()).unwrap();
        until("the added pod is in the cache", || h.cache.len() == 3).await;
        assert_ne!(h.cache.generation(), generation);
        assert_eq!(h.cache.by_container_id(&id('c')).unwrap().1, "agent");

        // MODIFIED: the database container restarted with a new id.
        let restarted = pod(
            UID_B,
            "shop",
            "db",
            NODE,
            "102",
            &[("app", "db")],
            &[("postgres", &id('d'))],
        );
        stream.send(event("MODIFIED", &restarted)).unwrap();
        until("the new container id is known", || {
            h.cache.by_container_id(&id('d')).is_some()
        })
        .await;
        assert!(h.cache.by_container_id(&id('b')).is_none());

        // DELETED.
        stream
            .send(event(
                "DELETED",
                &pod(UID_A, "shop", "web", NODE, "103", &[], &[]),
            ))
            .unwrap();
        until("the deleted pod is gone", || {
            h.cache.by_pod_uid(UID_A).is_none()
        })
        .await;
        assert_eq!(h.cache.len(), 2);

        // A bookmark and an expiry in one chunk: relist.
        let mut chunk = bookmark("150");
        chunk.extend(event(
            "ERROR",
            &status(410, "Expired", "too old resource version: 100 (140)"),
        ));
        stream.send(chunk).unwrap();
        let req = h.server.next_request().await;
        assert_list(&req, "token-1");
        let agent = pod(
            UID_E,
            "ops",
            "agent-2",
            NODE,
            "290",
            &[("app", "agent")],
            &[("agent", &id('e'))],
        );
        let generation = h.cache.generation();
        req.reply_json(200, &pod_list("300", &[agent]));
        until("the relist replaced the cache", || {
            h.cache.generation() != generation
        })
        .await;
        assert_eq!(h.cache.len(), 1, "the relist replaces, not merges");
        assert!(h.cache.by_pod_uid(UID_E).is_some());
        assert!(h.cache.by_container_id(&id('c')).is_none());

        let req = h.server.next_request().await;
        assert_watch(&req, "300");
        let stream = req.reply_stream();
        stream.send(bookmark("310")).unwrap();
        // The server's timeout: the watch goes on from the last version.
        drop(stream);
        let req = h.server.next_request().await;
        assert_watch(&req, "310");
        drop(req);
    });
}

#[test]
fn errors_and_token_rotation() {
    run(async {
        let mut h = harness(64 * 1024).await;
        let one = || {
            pod(
                UID_A,
                "shop",
                "web",
                NODE,
                "10",
                &[("app", "web")],
                &[("nginx", &id('a'))],
            )
        };

        // A refused token is read again before the next try.
        let req = h.server.next_request().await;
        assert_list(&req, "token-1");
        std::fs::write(h.sa_dir.path().join("token"), "token-2").unwrap();
        req.reply_json(401, &status(401, "Unauthorized", "Unauthorized"));
        let req = h.server.next_request().await;
        assert_list(&req, "token-2");
        std::fs::write(h.sa_dir.path().join("token"), "token-1").unwrap();

        // Missing permissions: retried.
        req.reply_json(
            403,
            &status(403, "Forbidden", "pods is forbidden: User \"system:serviceaccount:obs:spanlet\" cannot list resource \"pods\""),
        );
        let req = h.server.next_request().await;
        // The token only changes on a 401 (or with age).
        assert_list(&req, "token-2");
        req.reply_json(200, &pod_list("20", &[one()]));
        until("synced", || h.cache.synced()).await;

        // A watch answered 410 Gone: relist at once.
        let req = h.server.next_request().await;
        assert!(req.is_watch());
        req.reply_json(410, &status(410, "Gone", "too old resource version"));
        let req = h.server.next_request().await;
        assert!(!req.is_watch(), "410 must relist");
        req.reply_json(200, &pod_list("30", &[one()]));

        // Bad JSON: logged, and a relist.
        let req = h.server.next_request().await;
        assert_watch_version(&req, "30");
        let stream = req.reply_stream();
        stream
            .send(b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\n".to_vec())
            .unwrap();
        let req = h.server.next_request().await;
        assert!(!req.is_watch(), "bad JSON must relist");
        assert_eq!(h.cache.len(), 1, "the cache is kept while relisting");
        req.reply_json(200, &pod_list("40", &[one()]));

        // A line past the limit: given up before it ends, and a relist.
        let req = h.server.next_request().await;
        assert_watch_version(&req, "40");
        let stream = req.reply_stream();
        let mut long = pod(UID_B, "shop", "big", NODE, "41", &[], &[]);
        long["metadata"]["annotations"]["big"] = "x".repeat(100 * 1024).into();
        let line = event("ADDED", &long);
        stream.send(line[..70 * 1024].to_vec()).unwrap();
        let req = h.server.next_request().await;
        assert!(!req.is_watch(), "an over-long line must relist");
        assert!(h.cache.by_pod_uid(UID_B).is_none());
        req.reply_json(200, &pod_list("50", &[one()]));

        // A watch ERROR other than 410: relist after a back-off.
        let req = h.server.next_request().await;
        assert_watch_version(&req, "50");
        let stream = req.reply_stream();
        stream
            .send(event(
                "ERROR",
                &status(500, "InternalError", "etcd is unhappy"),
            ))
            .unwrap();
        let req = h.server.next_request().await;
        assert!(!req.is_watch());
        // Not JSON at all where a PodList should be: retried.
        req.reply_json(200, &serde_json::json!("not a list"));
        let req = h.server.next_request().await;
        assert!(!req.is_watch());
        req.reply_json(200, &pod_list("60", &[]));
        until("the empty list is applied", || h.cache.is_empty()).await;
        assert!(h.cache.synced());

        // Events of unknown types are skipped.
        let req = h.server.next_request().await;
        assert_watch_version(&req, "60");
        let stream = req.reply_stream();
        let mut chunk = b"{\"type\":\"SOMETHING_NEW\",\"object\":{}}\n\n".to_vec();
        chunk.extend(event("ADDED", &one()));
        stream.send(chunk).unwrap();
        until("the pod after the unknown event is added", || {
            h.cache.len() == 1
        })
        .await;
    });
}

fn assert_watch_version(req: &Request, version: &str) {
    assert!(req.is_watch(), "expected a watch");
    assert_eq!(req.param("resourceVersion"), Some(version));
}

#[test]
fn unreachable_api_is_retried_quietly() {
    run(async {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = harness(1024).await;
        let env: HashMap<&str, String> = HashMap::from([
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", port.to_string()),
            (
                SERVICEACCOUNT_DIR_ENV,
                h.sa_dir.path().to_str().unwrap().to_owned(),
            ),
        ]);
        let config = InClusterConfig::detect_from(|k| env.get(k).cloned())
            .unwrap()
            .unwrap();
        let cache = PodCache::new();
        let task = spawn_watcher_with(
            config,
            NODE.to_owned(),
            cache.clone(),
            Tuning {
                backoff_min: Duration::from_millis(5),
                backoff_max: Duration::from_millis(20),
                ..Tuning::default()
            },
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished(), "the watcher keeps trying");
        assert!(!cache.synced());
        task.abort();
    });
}
