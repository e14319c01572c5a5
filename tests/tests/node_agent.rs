//! `spanlet run` as a node agent: processes selected by cgroup and
//! container as they start (one in its own PID namespace), a process
//! outside the selection left alone, the selection reloaded on SIGHUP,
//! /metrics counters that move (drops included, with the collector down),
//! capabilities dropped after load, and a clear refusal without them.
//!
//! Needs root and eBPF, and rotel (`cargo xtask setup` installs it).

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use spanlet_tests::{
    Background, C_MUTEX, GateTids, GatedWorkload, Reaped,
    collector::{Received, Rotel},
    kernel_ready, kernel_test_lock,
    node::{
        CONTAINER_ID, TestCgroup, http_get, in_cgroup, metric, only_child, start_agent,
        start_agent_with, stop_agent, thread_caps, wait_for_metric,
    },
    spanlet_bin,
};

const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_BPF: u64 = 1 << 39;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_SYS_ADMIN: u64 = 1 << 21;

fn free_port() -> u16 {
    Rotel::free_ports().0
}

/// What `rotel` received once the agent on `port` recorded at least
/// `mutex_waits` mutex waits and exported as many spanlets.
fn received_after(rotel: &Rotel, port: u16, mutex_waits: f64) -> Received {
    let waits = wait_for_metric(
        port,
        "spanlet_spanlets_total{kind=\"mutex_wait\"}",
        Duration::from_secs(10),
        |v| v >= mutex_waits,
    );
    let exported = wait_for_metric(
        port,
        "spanlet_exported_spanlets_total",
        Duration::from_secs(10),
        |v| v >= waits,
    );
    rotel.received(exported as usize, 0)
}

/// The `process.pid` resource attributes of every log record, as printed.
fn logged_pids(got: &Received) -> BTreeSet<String> {
    got.logs
        .iter()
        .filter_map(|l| got.resources[l.resource].get("process.pid").cloned())
        .collect()
}

#[test]
fn run_traces_new_processes_of_a_cgroup_including_a_pid_namespace_and_not_others() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("select");
    let port = free_port();
    let parent = cgroup.parent.display().to_string();
    let agent = start_agent(&["--cgroup", &parent], &rotel, port);

    // All three start after the agent: two inside the cgroup (one of them
    // as PID 1 of a new PID namespace), one outside it.
    // Long enough (4 s) for a metrics publication (every second) to see
    // them, even on a loaded machine.
    let rounds = "80";
    let inside = Background::from_command(cgroup.command(C_MUTEX, &[rounds, "30"]));
    let unshared = Background::from_command(cgroup.command(
        "unshare",
        &["--pid", "--fork", "--mount-proc", C_MUTEX, rounds, "30"],
    ));
    let outside = Background::start(C_MUTEX, &[rounds, "30"]);
    let in_namespace = only_child(unshared.pid());
    let expected: BTreeSet<u32> = [inside.pid(), in_namespace].into();

    // In the cgroup: `unshare` (which only waits for its child), the
    // process it forked, and the other workload.
    let traced = wait_for_metric(
        port,
        "spanlet_traced_processes",
        Duration::from_secs(10),
        |v| v >= 3.0,
    );
    assert_eq!(traced, 3.0, "traced processes");
    let caps = thread_caps(agent.0.id());
    assert!(!caps.is_empty());
    for eff in &caps {
        assert_eq!(
            eff & (CAP_BPF | CAP_PERFMON | CAP_SYS_ADMIN),
            0,
            "a thread of the agent kept a loading capability after load: {eff:#x}"
        );
        assert_ne!(
            eff & CAP_SYS_PTRACE,
            0,
            "CAP_SYS_PTRACE was dropped: {eff:#x}"
        );
    }

    for w in [inside, unshared, outside] {
        let (status, _) = w.wait(Duration::from_secs(30));
        assert!(status.success());
    }
    // Three waiters a round in each traced process.
    let got = received_after(&rotel, port, 2.0 * 3.0 * 8.0);
    let stderr = stop_agent(agent);

    let mut pids = BTreeSet::new();
    for log in &got.logs {
        let resource = &got.resources[log.resource];
        let pid: u32 = resource["process.pid"]
            .trim_start_matches("Int(")
            .trim_end_matches(')')
            .parse()
            .expect("process.pid");
        pids.insert(pid);
        assert_eq!(
            resource.get("container.id").map(String::as_str),
            Some(format!("Str({CONTAINER_ID})").as_str()),
            "container.id of pid {pid}"
        );
        let vpid = resource.get("process.vpid");
        let vtid = log.int("spanlet.thread.vtid");
        if pid == in_namespace {
            assert_eq!(vpid.map(String::as_str), Some("Int(1)"), "{resource:?}");
            // The namespace numbers its threads from 1 (the main thread, which
            // waits in pthread_join), unlike the host.
            assert!(
                vtid.is_some_and(|t| (1..=16).contains(&t)),
                "{:?}",
                log.attributes
            );
            assert!(log.int("thread.id").is_some_and(|t| t > 16));
        } else {
            assert_eq!(vpid, None, "pid {pid} is in the host PID namespace");
            assert_eq!(vtid, None);
        }
    }
    assert_eq!(
        pids,
        expected,
        "traced processes (outside: {})\n{stderr}",
        got.logs.len()
    );
}

#[test]
fn run_reloads_its_selection_on_sighup() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let first = TestCgroup::new("first");
    let second = TestCgroup::new("second");
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("spanlet.toml");
    let select = |cgroup: &Path| {
        std::fs::write(
            &config,
            format!("cgroups = [{:?}]\n", cgroup.display().to_string()),
        )
        .expect("write config");
    };
    select(&first.parent);
    let port = free_port();
    let agent = start_agent(&["--config", config.to_str().expect("utf-8")], &rotel, port);

    // A workload in the second cgroup, not selected yet: it execs there
    // and contends at once, and none of that may be traced. It runs (20 s)
    // until the test ends.
    let workload = Background::from_command(second.command(C_MUTEX, &["400", "30"]));
    sleep(Duration::from_millis(1500));
    let text = http_get(port, "/metrics").expect("metrics").1;
    assert_eq!(
        metric(&text, "spanlet_spanlets_total{kind=\"mutex_wait\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "spanlet_traced_processes"),
        Some(0.0),
        "{text}"
    );

    select(&second.parent);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGHUP) };
    wait_for_metric(
        port,
        "spanlet_selection_reloads_total",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    wait_for_metric(
        port,
        "spanlet_traced_processes",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    wait_for_metric(
        port,
        "spanlet_spanlets_total{kind=\"mutex_wait\"}",
        Duration::from_secs(10),
        |v| v >= 3.0,
    );
    // A bad file keeps the selection in force.
    std::fs::write(&config, "cgroups = [\"/no/such/cgroup\"]\n").expect("write config");
    // SAFETY: as above.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGHUP) };
    wait_for_metric(
        port,
        "spanlet_selection_reload_errors_total",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    let text = http_get(port, "/metrics").expect("metrics").1;
    assert_eq!(
        metric(&text, "spanlet_selection_reloads_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "spanlet_traced_processes"),
        Some(1.0),
        "{text}"
    );
    drop(workload);
    let stderr = stop_agent(agent);
    assert!(
        stderr.contains("no such cgroup: /no/such/cgroup"),
        "{stderr}"
    );
}

#[test]
fn run_metrics_count_export_drops_while_the_collector_is_down() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let (grpc, http) = Rotel::free_ports();
    let Some(mut rotel) = Rotel::start_on(grpc, http) else {
        return;
    };
    let workload = Background::start(env!("CARGO_BIN_EXE_rust_mutex"), &["400", "30"]);
    let port = free_port();
    let agent = start_agent(&["--pid", &workload.pid().to_string()], &rotel, port);
    let exported = wait_for_metric(
        port,
        "spanlet_exported_spanlets_total",
        Duration::from_secs(15),
        |v| v > 0.0,
    );
    let failed = "spanlet_dropped_total{cause=\"export_failed\"}";
    let text = http_get(port, "/metrics").expect("metrics").1;
    assert_eq!(metric(&text, failed), Some(0.0), "{text}");

    rotel.stop();
    let dropped = wait_for_metric(port, failed, Duration::from_secs(30), |v| v > 0.0);
    wait_for_metric(
        port,
        "spanlet_export_errors_total",
        Duration::from_secs(5),
        |v| v > 0.0,
    );

    let _back = Rotel::start_on(grpc, http).expect("rotel was there a moment ago");
    let later = wait_for_metric(
        port,
        "spanlet_exported_spanlets_total",
        Duration::from_secs(30),
        |v| v > exported,
    );
    assert!(later > exported);
    assert!(
        metric(&http_get(port, "/metrics").expect("metrics").1, failed)
            .is_some_and(|v| v >= dropped)
    );
    drop(workload);
    stop_agent(agent);
}

#[test]
fn run_refuses_to_start_without_the_capabilities_it_needs() {
    // setpriv (util-linux) takes CAP_SYS_PTRACE out of the bounding set, so
    // even root starts spanlet without it.
    let out = Command::new("setpriv")
        .args(["--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"])
        .arg(spanlet_bin())
        .args(["run", "--all", "--metrics-address", "off"])
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing capability CAP_SYS_PTRACE"),
        "{stderr}"
    );
}

/// The stand-in API server (`workloads/k8s_apiserver.py`; no real one can
/// run here) with a service-account directory as a pod would have it.
struct ApiServer {
    server: Reaped,
    port: u16,
    account: tempfile::TempDir,
}

impl ApiServer {
    fn start(pods: &serde_json::Value) -> Self {
        let account = tempfile::tempdir().expect("temporary directory");
        let d = account.path();
        spanlet_tests::collector::test_certificates(d);
        std::fs::copy(d.join("ca.pem"), d.join("ca.crt")).expect("ca.crt");
        std::fs::write(d.join("token"), "test-token\n").expect("token");
        std::fs::write(d.join("pods.json"), pods.to_string()).expect("pods");
        let port = free_port();
        let mut server = Reaped(
            Command::new(spanlet_tests::python())
                .arg(env!("SPANLET_K8S_APISERVER"))
                .arg(port.to_string())
                .arg(d.join("server.pem"))
                .arg(d.join("server.key"))
                .arg("test-token")
                .arg(d.join("pods.json"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the stand-in API server starts"),
        );
        let mut first = [0u8; 6];
        server
            .0
            .stdout
            .as_mut()
            .expect("stdout piped")
            .read_exact(&mut first)
            .expect("API server output");
        assert_eq!(&first, b"ready\n");
        Self {
            server,
            port,
            account,
        }
    }

    /// The in-cluster environment a pod on `node` would have.
    fn env(&self, node: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", self.port.to_string()),
            (
                "SPANLET_K8S_SERVICEACCOUNT_DIR",
                self.account.path().display().to_string(),
            ),
            ("SPANLET_NODE_NAME", node.to_owned()),
        ]
    }
}

fn pod(
    name: &str,
    namespace: &str,
    uid: &str,
    app: &str,
    node: &str,
    container: &str,
    id: &str,
) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": container, "image": "shop:1"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": container, "containerID": format!("containerd://{id}"), "ready": true}
        ]}
    })
}

#[test]
fn run_selects_pods_by_namespace_and_label_and_names_them() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let checkout_id = CONTAINER_ID;
    let cart_id = "ca470000ca470000ca470000ca470000ca470000ca470000ca470000ca470000";
    let checkout_uid = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
    let api = ApiServer::start(&serde_json::json!([
        pod(
            "checkout-7d9f",
            "shop",
            checkout_uid,
            "checkout",
            "node-1",
            "server",
            checkout_id
        ),
        pod(
            "cart-5c4b",
            "shop",
            "1c2d3e4f-5061-4728-93a4-b5c6d7e8f90a",
            "cart",
            "node-1",
            "server",
            cart_id
        ),
        pod(
            "checkout-elsewhere",
            "shop",
            "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
            "checkout",
            "node-2",
            "server",
            &"ee".repeat(32)
        ),
    ]));
    let checkout = TestCgroup::for_container("checkout", checkout_id);
    let cart = TestCgroup::for_container("cart", cart_id);
    let port = free_port();
    let mut in_cluster = Command::new(spanlet_bin());
    in_cluster.envs(api.env("node-1"));
    let agent = start_agent_with(
        in_cluster,
        &["--k8s-namespace", "shop", "--k8s-pod-label", "app=checkout"],
        &rotel,
        port,
    );
    // Ready means this node's pods are listed: two of the three.
    let text = http_get(port, "/metrics").expect("metrics").1;
    assert_eq!(metric(&text, "spanlet_k8s_pods"), Some(2.0), "{text}");

    let traced = Background::from_command(checkout.command(C_MUTEX, &["10", "30"]));
    let other = Background::from_command(cart.command(C_MUTEX, &["10", "30"]));
    let traced_pid = traced.pid();
    for w in [traced, other] {
        let (status, _) = w.wait(Duration::from_secs(30));
        assert!(status.success());
    }
    let got = received_after(&rotel, port, 3.0 * 8.0);
    stop_agent(agent);
    drop(api.server);

    for log in &got.logs {
        let r = &got.resources[log.resource];
        let s = |k: &str| r.get(k).map(String::as_str);
        assert_eq!(
            s("process.pid"),
            Some(format!("Int({traced_pid})").as_str()),
            "{r:?}"
        );
        assert_eq!(s("k8s.pod.name"), Some("Str(checkout-7d9f)"));
        assert_eq!(s("k8s.namespace.name"), Some("Str(shop)"));
        assert_eq!(
            s("k8s.pod.uid"),
            Some(format!("Str({checkout_uid})").as_str())
        );
        assert_eq!(s("k8s.container.name"), Some("Str(server)"));
        assert_eq!(s("k8s.node.name"), Some("Str(node-1)"));
        assert_eq!(
            s("container.id"),
            Some(format!("Str({checkout_id})").as_str())
        );
    }
}

#[test]
fn run_degrades_cleanly_outside_a_cluster() {
    let out = Command::new(spanlet_bin())
        .args(["run", "--k8s-namespace", "shop", "--metrics-address", "off"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("spanlet runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("need the Kubernetes API"), "{stderr}");
}

#[test]
fn run_all_traces_every_process_but_itself() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let port = free_port();
    let agent = start_agent(&["--all"], &rotel, port);
    let workload = Background::start(C_MUTEX, &["10", "30"]);
    let pid = workload.pid();
    let (status, _) = workload.wait(Duration::from_secs(30));
    assert!(status.success());
    let got = received_after(&rotel, port, 3.0 * 8.0);
    // Every process on the machine but the agent: dozens even on a
    // fresh CI machine.
    let traced = wait_for_metric(
        port,
        "spanlet_traced_processes",
        Duration::from_secs(5),
        |v| v >= 10.0,
    );
    let agent_pid = agent.0.id();
    stop_agent(agent);
    let pids = logged_pids(&got);
    assert!(
        pids.contains(&format!("Int({pid})")),
        "the workload: {pids:?}"
    );
    assert!(
        !pids.contains(&format!("Int({agent_pid})")),
        "spanlet traced itself: {pids:?}"
    );
    assert!(
        traced >= 10.0,
        "every process on the machine counts: {traced}"
    );
}

/// Thread context (OTEP 4947, from a shared library the workload loads)
/// of a process that starts after the agent dropped its loading
/// capabilities: found with what the agent keeps (the library is read
/// through /proc/PID/root, not map_files, which needs more).
#[test]
fn run_reads_thread_context_after_dropping_capabilities() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("context");
    let port = free_port();
    let parent = cgroup.parent.display().to_string();
    let agent = start_agent(&["--cgroup", &parent], &rotel, port);
    let mut cmd = cgroup.command(spanlet_tests::C_THREAD_CTX, &["2", "300"]);
    cmd.stdout(Stdio::piped());
    let (mut workload, tids): (GatedWorkload, GateTids) = GatedWorkload::from_command(cmd);
    // The library's slot is found on the agent's second look, 2 s after
    // the exec it saw.
    sleep(Duration::from_millis(3000));
    workload.go();
    // go() returned: the workload has exited. Its two mutex waits, and
    // everything before them, must reach the collector.
    wait_for_metric(
        port,
        "spanlet_spanlets_total{kind=\"mutex_wait\"}",
        Duration::from_secs(10),
        |v| v >= 2.0,
    );
    let text = http_get(port, "/metrics").expect("metrics").1;
    let recorded: f64 = ["futex_wait", "mutex_wait"]
        .iter()
        .filter_map(|k| metric(&text, &format!("spanlet_spanlets_total{{kind=\"{k}\"}}")))
        .sum();
    let exported = wait_for_metric(
        port,
        "spanlet_exported_spanlets_total",
        Duration::from_secs(10),
        |v| v >= recorded,
    );
    let got = rotel.received(exported as usize, 0);
    stop_agent(agent);
    let long = |tid: u32| {
        got.logs
            .iter()
            .find(|l| {
                l.int("thread.id") == Some(i64::from(tid))
                    && l.str("spanlet.kind") == Some("mutex_wait")
                    && l.int("spanlet.wait.duration_ns")
                        .is_some_and(|ns| ns > 150_000_000)
            })
            .unwrap_or_else(|| panic!("no long mutex wait of thread {tid}: {:?}", got.logs))
    };
    let with_ctx = long(tids.waiters[0]);
    assert!(
        !with_ctx.trace_id.is_empty() && with_ctx.trace_id.chars().any(|c| c != '0'),
        "the first waiter publishes context: {with_ctx:?}"
    );
    assert!(
        with_ctx.str("spanlet.holder.trace_id").is_some(),
        "and so does the holder: {with_ctx:?}"
    );
    let without = long(*tids.waiters.last().expect("waiters"));
    assert!(
        without.trace_id.chars().all(|c| c == '0'),
        "the last waiter publishes none: {without:?}"
    );
}

/// The agent in a pod-like cgroup namespace of its own, where
/// /proc/PID/cgroup shows other processes' cgroups relative to its own
/// (`/../cri-containerd-….scope`): `--cgroup` must still select the right
/// ones. The agent's cgroup and the selected one share a parent below the
/// root, as pods under `kubepods.slice` do, so paths relative to the
/// namespace and to the mount differ.
#[test]
fn run_selects_a_cgroup_from_inside_its_own_cgroup_namespace() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let pod = TestCgroup::new("pods");
    let (home, other) = (pod.parent.join("agent"), pod.parent.join("other"));
    for dir in [&home, &other] {
        std::fs::create_dir_all(dir).expect("cgroup");
    }
    let spanlet = spanlet_bin();
    let wrapper = in_cgroup(
        &home,
        "unshare",
        &["--cgroup", spanlet.to_str().expect("utf-8")],
    );
    let port = free_port();
    let selected = pod.leaf.display().to_string();
    let agent = start_agent_with(wrapper, &["--cgroup", &selected], &rotel, port);
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).expect("cgroup ns");
    assert_ne!(
        ns(&agent.0.id().to_string()),
        ns("self"),
        "the agent is in a cgroup namespace of its own"
    );

    let traced = Background::from_command(pod.command(C_MUTEX, &["10", "30"]));
    let untraced = Background::from_command(in_cgroup(&other, C_MUTEX, &["10", "30"]));
    let traced_pid = traced.pid();
    for w in [traced, untraced] {
        let (status, _) = w.wait(Duration::from_secs(30));
        assert!(status.success());
    }
    let got = received_after(&rotel, port, 3.0 * 8.0);
    stop_agent(agent);
    for dir in [&home, &other] {
        let _ = std::fs::remove_dir(dir);
    }
    let pids = logged_pids(&got);
    assert_eq!(pids, BTreeSet::from([format!("Int({traced_pid})")]));
}
