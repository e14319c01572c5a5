use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use spanlet::{
    cli::RunArgs,
    kernel::caps,
    node::Node,
    node::config::RunSettings,
    node::k8s,
    node::observe::{self, MetricsExport, State},
    node::targets::Selection,
    output::otlp::{K8sResource, live::LiveOtlp},
    record::{RecordOptions, RecordSummary, Recorder},
};
use tokio::sync::watch;

use super::record::{StderrProgress, live_otlp, print_summary, start_live};

/// How long the last OTLP metrics export may take at exit.
const LAST_METRICS: Duration = Duration::from_secs(5);

pub fn run(args: Box<RunArgs>) -> anyhow::Result<ExitCode> {
    // All settings are checked first, then privileges, before anything
    // starts (a metrics export included).
    let settings = RunSettings::new(&args.selection, &args.flags)?;
    let mut otlp = live_otlp(&args.otlp)?;
    caps::check_node_agent()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let endpoint = otlp.settings.logs_endpoint.clone();
    let summary = runtime.block_on(async {
        let node_name = k8s::node_name(settings.node_name.clone());
        let cluster = k8s::start(node_name.clone())?;
        let pods = cluster.as_ref().map(|(pods, _)| pods.clone());
        let selection = Selection::resolve(&settings.selection(), pods.is_some())?;
        if let (Some(pods), Some(node_name)) = (&pods, node_name) {
            otlp.resource.k8s = Some(K8sResource {
                node_name,
                pods: Arc::new(pods.clone()),
            });
        }
        let state = Arc::new(State::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = match &settings.metrics_address {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (--metrics-address)"))?;
                tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
                let mut stop = stop_rx.clone();
                Some(tokio::spawn(observe::serve(listener, state.clone(), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })))
            }
            None => None,
        };
        // OTEL_METRICS_EXPORTER=none turns the OTLP metrics off.
        let metrics = match otlp.settings.metrics.enabled {
            true => Some(tokio::spawn(observe::export_periodically(
                MetricsExport::new(&otlp.settings, &otlp.resource)?,
                state.clone(),
                otlp.settings.metrics.interval,
                stop_rx,
            ))),
            false => None,
        };
        let start = observe::otlp::now_unix_nano();
        let node = Node::new(settings.clone(), selection.clone(), pods, Some(state), cluster.is_some(), start);
        let opts = RecordOptions {
            pids: selection.pids.clone(),
            command: Vec::new(),
            duration: settings.duration,
            output: None,
            features: settings.features.clone(),
        };
        let summary = record_as_node(opts, node, otlp).await;
        let _ = stop_tx.send(true);
        // The last metrics, within the grace period a DaemonSet's pod has;
        // none when recording failed: that is mostly a setting the kernel
        // or /proc refused (a --pid that does not exist), whose error is
        // printed at once, not after an export to the collector.
        if let Some(metrics) = metrics {
            let abort = metrics.abort_handle();
            if summary.is_err() {
                abort.abort();
            } else if tokio::time::timeout(LAST_METRICS, metrics).await.is_err() {
                abort.abort();
                tracing::warn!("the last metrics export did not finish within {LAST_METRICS:?}");
            }
        }
        if let Some(server) = server {
            let _ = server.await;
        }
        if let Some((_, watcher)) = cluster {
            watcher.abort();
        }
        anyhow::Ok(summary?)
    })?;
    Ok(print_summary(&summary, &endpoint))
}

/// Records as a node agent, exporting live to `otlp`, until stopped.
async fn record_as_node(
    opts: RecordOptions,
    node: Node,
    otlp: LiveOtlp,
) -> anyhow::Result<RecordSummary> {
    let recorder = Recorder::new(opts, Box::new(node), Box::new(StderrProgress::new()))?;
    let live = start_live(Some(otlp))?;
    Ok(recorder.run(live).await?)
}
