//! The OTLP push of the gateway's metrics: every `metrics_interval_ms`, what the registry's
//! instruments hold (cumulative, as `/metrics` shows it) goes to the collector's metrics
//! service, and once more at shutdown so that a short run is not lost.
//!
//! The push reads the same collection `/metrics` renders: the request path updates each
//! instrument once, whoever reads it. A collector that is down costs a warning per push.

use std::time::Duration;

use custos_config::{OtlpProtocol, TelemetrySettings};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::Temporality;

use crate::export::{grpc_metadata, http_client, TelemetryError};

/// The exporter, built with the span exporter from `[telemetry]`, before it has a registry.
#[derive(Debug)]
pub(crate) struct MetricsPush {
    exporter: opentelemetry_otlp::MetricExporter,
    interval: Duration,
}

/// The push task and the way to stop it.
#[derive(Debug)]
pub(crate) struct RunningPush {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsPush {
    pub(crate) fn exporter(settings: &TelemetrySettings, timeout: Duration) -> Result<Self, TelemetryError> {
        // Cumulative, like `/metrics`: a lost push loses nothing the next one does not carry.
        let exporter = match settings.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_temporality(Temporality::Cumulative)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(grpc_metadata(settings)?)
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_temporality(Temporality::Cumulative)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/metrics", settings.endpoint))
                .with_timeout(timeout)
                .with_headers(settings.headers.clone().into_iter().collect())
                .with_http_client(http_client(settings, timeout)?)
                .build(),
        }
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(Self { exporter, interval: Duration::from_millis(settings.metrics_interval_ms) })
    }

    /// Spawns the push of `registry` on the current runtime.
    pub(crate) fn start(self, registry: custos_metrics::Registry) -> RunningPush {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            // A slow collector delays the next push; pushes never pile up.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now, with nothing measured yet.
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => self.push(&registry).await,
                    _ = &mut stopped => break,
                }
            }
            self.push(&registry).await;
        });
        RunningPush { stop, task }
    }

    async fn push(&self, registry: &custos_metrics::Registry) {
        let Some(metrics) = registry.collect() else { return };
        if let Err(err) = self.exporter.export(&metrics).await {
            tracing::warn!("telemetry: metrics not sent: {err}");
        }
    }
}

impl RunningPush {
    /// Stops the push after a last one, waiting for it at most `wait`.
    pub(crate) async fn stop(self, wait: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(wait, self.task).await.is_err() {
            tracing::warn!("telemetry: the last metrics were not sent within {wait:?}");
        }
    }
}
