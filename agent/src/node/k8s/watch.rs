//! Keeps a [`PodCache`] in step with the API server: LIST this node's pods,
//! then WATCH from the list's version, relisting when the watch cannot go
//! on. Runs until the task is aborted; never gives up on the API.
use std::{
    hash::{BuildHasher as _, RandomState},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{
    K8sError, PodCache,
    client::{ApiClient, Body, encode_query_value, next_chunk, read_to_end},
    config::InClusterConfig,
    lines::Lines,
    pod::{PodList, WatchEvent},
};

/// Starts following the pods of `node_name` into `cache`, on the current
/// tokio runtime, until the task is aborted. Failures are logged (warn, not
/// repeated) and retried with back-off; the cache keeps its last content
/// meanwhile.
pub fn spawn_watcher(
    config: InClusterConfig,
    node_name: String,
    cache: PodCache,
) -> JoinHandle<()> {
    spawn_watcher_with(config, node_name, cache, Tuning::default())
}

/// Timings and limits; tests shorten them.
#[derive(Clone, Debug)]
pub(crate) struct Tuning {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// To connect and get a response's head; also for a LIST's body.
    pub request_timeout: Duration,
    /// The watch duration asked of the server; each watch asks for between
    /// this and twice this, so that the agents of many nodes do not all
    /// come back at once.
    pub watch_timeout: Duration,
    /// A watch that ends sooner than this (a proxy closing it at once) is
    /// retried after a back-off rather than in a tight loop.
    pub min_watch: Duration,
    /// One watch event's JSON; pods are rarely over a few hundred KiB.
    pub max_line: usize,
    pub max_list: usize,
    /// How long a token read from the file is used before reading again.
    pub token_max_age: Duration,
    /// How long the same failure is logged at debug before again at warn.
    pub warn_every: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(300),
            min_watch: Duration::from_secs(1),
            max_line: 16 << 20,
            max_list: 64 << 20,
            token_max_age: Duration::from_secs(60),
            warn_every: Duration::from_secs(300),
        }
    }
}

pub(crate) fn spawn_watcher_with(
    config: InClusterConfig,
    node_name: String,
    cache: PodCache,
    tuning: Tuning,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = match ApiClient::new(&config, tuning.request_timeout, tuning.token_max_age) {
            Ok(client) => client,
            Err(e) => {
                warn!("cannot watch the pods of this node: {e}");
                return;
            }
        };
        Watcher {
            client,
            selector: format!(
                "fieldSelector={}",
                encode_query_value(&format!("spec.nodeName={node_name}"))
            ),
            node_name,
            cache,
            backoff: Backoff::new(tuning.backoff_min, tuning.backoff_max),
            complaints: Complaints::new(tuning.warn_every),
            tuning,
        }
        .run()
        .await;
    })
}

struct Watcher {
    client: ApiClient,
    node_name: String,
    /// The query that keeps the LIST and WATCH to this node's pods.
    selector: String,
    cache: PodCache,
    tuning: Tuning,
    backoff: Backoff,
    complaints: Complaints,
}

/// Why a watch stopped without an error.
enum End {
    /// The server ended it (its timeout): go on from the last version.
    Closed,
    /// The last version is too old for the server: relist.
    Gone,
}

impl Watcher {
    async fn run(mut self) -> ! {
        info!(
            "watching the pods of node {} at {}",
            self.node_name,
            self.client.url("")
        );
        loop {
            let mut version = match self.list().await {
                Ok(version) => version,
                Err(e) => {
                    self.complaints.failed(&e);
                    tokio::time::sleep(self.backoff.next()).await;
                    continue;
                }
            };
            loop {
                let started = Instant::now();
                let mut events = 0;
                let result = self.watch(&mut version, &mut events).await;
                if result.is_ok() && events == 0 && started.elapsed() < self.tuning.min_watch {
                    // Ended at once without a single event: something between
                    // us and the server, not worth a tight loop of requests.
                    tokio::time::sleep(self.backoff.next()).await;
                }
                match result {
                    Ok(End::Closed) => debug!("the pod watch ended; watching on from {version}"),
                    Ok(End::Gone) => {
                        debug!("resource version {version} is too old; listing the pods again");
                        break;
                    }
                    Err(e) => {
                        self.complaints.failed(&e);
                        tokio::time::sleep(self.backoff.next()).await;
                        break;
                    }
                }
            }
        }
    }

    /// Fills the cache from a LIST; returns the list's resource version.
    async fn list(&mut self) -> Result<String, K8sError> {
        // resourceVersion=0 lets the API server answer from its watch cache
        // rather than from etcd: cheap even when every node's agent starts
        // at once. The watch that follows brings it up to date.
        let path = format!("/api/v1/pods?{}&resourceVersion=0", self.selector);
        let url = self.client.url(&path);
        let timeout = self.tuning.request_timeout;
        let mut body = self.client.get(&path, timeout).await?;
        let bytes = read_to_end(&mut body, &url, self.tuning.max_list, timeout).await?;
        let list: PodList = serde_json::from_slice(&bytes).map_err(|e| K8sError::Decode {
            url: url.clone(),
            reason: format!("not a PodList: {e}"),
        })?;
        let pods: Vec<_> = list
            .items
            .into_iter()
            .filter_map(|item| item.into_pod_meta())
            .filter(|pod| pod.node_name.is_empty() || pod.node_name == self.node_name)
            .collect();
        let first = !self.cache.synced();
        let count = pods.len();
        self.cache.replace(pods);
        if first {
            info!("{count} pods on node {}", self.node_name);
        } else {
            debug!("listed {count} pods again");
        }
        Ok(list.metadata.resource_version)
    }

    /// Follows one watch request until it ends; `version` follows the
    /// events applied, `events` counts them.
    async fn watch(&mut self, version: &mut String, events: &mut u64) -> Result<End, K8sError> {
        let seconds = jittered(self.tuning.watch_timeout).as_secs().max(1);
        let path = format!(
            "/api/v1/pods?{}&watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={seconds}",
            self.selector,
            encode_query_value(version),
        );
        let url = self.client.url(&path);
        let mut body: Body = match self.client.get(&path, self.tuning.request_timeout).await {
            Ok(body) => body,
            Err(K8sError::Status { status: 410, .. }) => return Ok(End::Gone),
            Err(e) => return Err(e),
        };
        // The server sends at least its bookmarks while the watch lasts.
        let idle = Duration::from_secs(seconds) + self.tuning.request_timeout;
        let mut lines = Lines::new(self.tuning.max_line);
        let too_long = |limit| K8sError::Decode {
            url: url.clone(),
            reason: format!("a watch event longer than {limit} bytes"),
        };
        while let Some(chunk) = next_chunk(&mut body, &url, idle).await? {
            lines.push(&chunk).map_err(|e| too_long(e.limit))?;
            while let Some(line) = lines.next_line() {
                let line = line.map_err(|e| too_long(e.limit))?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(end) = self.apply(line, &url, version)? {
                    return Ok(end);
                }
                *events += 1;
                if *events == 1 {
                    // Events flow: whatever failed before works again.
                    self.backoff.reset();
                    self.complaints.recovered();
                }
            }
        }
        Ok(End::Closed)
    }

    /// Applies one watch event to the cache.
    fn apply(&self, line: &[u8], url: &str, version: &mut String) -> Result<Option<End>, K8sError> {
        let event: WatchEvent = serde_json::from_slice(line).map_err(|e| K8sError::Decode {
            url: url.to_owned(),
            reason: format!("not a watch event: {e}"),
        })?;
        let object = event.object;
        let event_version = object.metadata.resource_version.clone();
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                let uid = object.metadata.uid.to_ascii_lowercase();
                match object.into_pod_meta() {
                    Some(pod) if pod.node_name.is_empty() || pod.node_name == self.node_name => {
                        self.cache.upsert(pod)
                    }
                    // Not this node's: the field selector should have kept it out.
                    Some(_) => self.cache.remove(&uid),
                    None => debug!("ignoring a pod without a uid"),
                }
            }
            "DELETED" => self.cache.remove(&object.metadata.uid),
            "BOOKMARK" => {}
            "ERROR" if object.code == 410 => return Ok(Some(End::Gone)),
            "ERROR" => {
                return Err(K8sError::Status {
                    url: url.to_owned(),
                    status: object.code,
                    message: format!("watch error {}: {}", object.reason, object.message),
                });
            }
            other => debug!("ignoring a watch event of type {other:?}"),
        }
        if !event_version.is_empty() {
            *version = event_version;
        }
        Ok(None)
    }
}

/// Exponential back-off with jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        // Between 3/4 and all of it: agents of many nodes that lost the API
        // together should not come back together.
        delay.mul_f64(0.75 + 0.25 * random_fraction())
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Between `d` and twice `d`.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + random_fraction())
}

/// A number in [0, 1): std's randomly keyed hasher is randomness enough
/// for jitter, without a crate for it.
fn random_fraction() -> f64 {
    (RandomState::new().hash_one(Instant::now()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Logs failures at warn without repeating: the same failure again is
/// logged at debug, unless `warn_every` has passed.
struct Complaints {
    warn_every: Duration,
    last: Option<(String, Instant)>,
    failing: bool,
}

impl Complaints {
    fn new(warn_every: Duration) -> Self {
        Self {
            warn_every,
            last: None,
            failing: false,
        }
    }

    fn failed(&mut self, e: &K8sError) {
        let text = e.to_string();
        self.failing = true;
        let repeat = self
            .last
            .as_ref()
            .is_some_and(|(last, at)| *last == text && at.elapsed() < self.warn_every);
        if repeat {
            debug!("pod metadata: {text}");
        } else {
            warn!("pod metadata: {text}; retrying");
            self.last = Some((text, Instant::now()));
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.failing) {
            info!("pod metadata: watching the API server again");
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..5).map(|_| b.next()).collect();
        for (delay, nominal) in delays.iter().zip([1, 2, 4, 5, 5]) {
            let nominal = Duration::from_secs(nominal);
            assert!(
                *delay <= nominal && *delay >= nominal.mul_f64(0.75),
                "{delays:?}"
            );
        }
        b.reset();
        assert!(b.next() <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
            let d = jittered(Duration::from_secs(300));
            assert!(d >= Duration::from_secs(300) && d < Duration::from_secs(600));
        }
    }
}
