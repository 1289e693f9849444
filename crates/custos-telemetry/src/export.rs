//! The tracer provider and the OTLP exporters of spans and metrics, built from `[telemetry]`.

use std::time::Duration;

use custos_config::{OtlpProtocol, TelemetrySettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::client::RuntimeClient;
use crate::metrics::{MetricsPush, RunningPush};
use crate::span::CallTracer;

/// The instrumentation scope the gateway's spans carry.
const SCOPE: &str = "custos";
/// The longest a shutdown waits for the last spans to be sent.
const MAX_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Why telemetry cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry: `{key}`: {reason}")]
    Setting { key: String, reason: String },
    #[error("telemetry: cannot build the otlp exporter: {0}")]
    Exporter(String),
}

/// OpenTelemetry for one process: off, or a tracer provider exporting over OTLP.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: CallTracer,
    timeout: Duration,
    /// The metrics exporter, until [`Telemetry::push_metrics`] hands it to its task.
    metrics: Option<MetricsPush>,
    /// The running metrics push, stopped (after a last push) at shutdown.
    push: Option<RunningPush>,
}

impl Telemetry {
    /// No export; every span is an empty value.
    pub fn off() -> Self {
        Self::default()
    }

    /// Starts exporting to the collector of `settings` (or nothing, for `None`). Must run
    /// inside a Tokio runtime, which carries the exports. Nothing is sent yet: a collector that
    /// is down is found out (and logged) at the first export, and loses spans, not calls.
    pub fn start(settings: Option<&TelemetrySettings>) -> Result<Self, TelemetryError> {
        let Some(settings) = settings else { return Ok(Self::off()) };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let exporter = match settings.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(grpc_metadata(settings)?)
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/traces", settings.endpoint))
                .with_timeout(timeout)
                .with_headers(settings.headers.clone().into_iter().collect())
                .with_http_client(http_client(settings, timeout)?)
                .build(),
        }
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let metrics = MetricsPush::exporter(settings, timeout)?;
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        // A client's sampling decision stands; new traces are sampled at the configured ratio.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = CallTracer::new(provider.tracer(SCOPE));
        Ok(Self { provider: Some(provider), tracer, timeout, metrics: Some(metrics), push: None })
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// The tracer the gateway's pipelines share.
    pub fn tracer(&self) -> CallTracer {
        self.tracer.clone()
    }

    /// Pushes `registry`'s metrics (the instruments `/metrics` shows) over OTLP every
    /// `metrics_interval_ms` from now on, and once more at [`Telemetry::shutdown`]. Does nothing
    /// with telemetry off or when called a second time. Must run inside a Tokio runtime.
    pub fn push_metrics(&mut self, registry: custos_metrics::Registry) {
        if let Some(metrics) = self.metrics.take() {
            self.push = Some(metrics.start(registry));
        }
    }

    /// Sends what is still queued (spans, and the metrics once more) and stops, waiting at most
    /// the export timeout (five seconds at most): a short `custos run` loses no span, and a collector that is down does not keep the
    /// process from exiting.
    pub async fn shutdown(self) {
        let wait = self.timeout.min(MAX_SHUTDOWN_WAIT);
        // The last metrics and the last spans go out side by side, within one wait.
        let metrics = async {
            if let Some(push) = self.push {
                push.stop(wait).await;
            }
        };
        let spans = async {
            let Some(provider) = self.provider else { return };
            // The provider blocks while it flushes; the export it waits for runs on this runtime.
            let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(wait)).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!("telemetry: spans not sent at shutdown: {err}"),
                Err(err) => tracing::warn!("telemetry: shutdown failed: {err}"),
            }
        };
        tokio::join!(metrics, spans);
    }
}

/// `[telemetry] headers` as gRPC metadata.
pub(crate) fn grpc_metadata(settings: &TelemetrySettings) -> Result<tonic::metadata::MetadataMap, TelemetryError> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &settings.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| setting("telemetry.headers", format!("`{name}` is not a grpc metadata key")))?;
        // The value may be a credential: never echoed.
        let value = value
            .parse()
            .map_err(|_| setting(&format!("telemetry.headers.{name}"), "not a valid header value".into()))?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// The HTTP/protobuf client on the current runtime, with TLS for an `https://` collector.
pub(crate) fn http_client(settings: &TelemetrySettings, timeout: Duration) -> Result<RuntimeClient, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| TelemetryError::Exporter(format!("no async runtime: {e}")))?;
    let tls = if settings.endpoint.starts_with("https://") {
        let tls = custos_tls::client::ClientTls::load(settings.ca_file.as_deref(), None)
            .map_err(|e| setting("telemetry.ca_file", e.to_string()))?;
        Some(tls)
    } else {
        None
    };
    Ok(RuntimeClient::new(runtime, tls.as_ref(), timeout))
}

fn setting(key: &str, reason: String) -> TelemetryError {
    TelemetryError::Setting { key: key.to_owned(), reason }
}
