//! `[telemetry]`: OpenTelemetry traces and metrics sent over OTLP to a collector.
//!
//! Off unless the table is there: without it no exporter starts and the request path only
//! checks that tracing is off. The TOML table and its checks live together in this file (the
//! raw struct is read by [`raw`](crate::raw), the check called from
//! [`validate`](mod@crate::validate)), so that the rest of the config does not grow with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// Default `[telemetry] service_name`.
pub const DEFAULT_SERVICE_NAME: &str = "custos";
/// Default `[telemetry] timeout_ms`: how long one export may take before it is abandoned.
pub const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 10_000;
/// Default `[telemetry] metrics_interval_ms`: how often the metrics are pushed.
pub const DEFAULT_METRICS_INTERVAL_MS: u64 = 10_000;

/// `[telemetry] protocol`: how spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (the collector's port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies, at `/v1/traces` (port 4318).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// `[telemetry]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// The collector's base URL (`http://host:4317` for gRPC, `http://host:4318` for HTTP; the
    /// signal paths are added for HTTP).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// `service.name` of the resource every span and metric carries.
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1; a trace the client already sampled (or not)
    /// keeps the client's choice.
    pub sample_ratio: f64,
    /// Headers (gRPC metadata) sent with every export, e.g. a collector's API key. The values
    /// may be credentials: they are never logged.
    pub headers: BTreeMap<String, String>,
    /// How long one export may take.
    pub timeout_ms: u64,
    /// How often the metrics (the same instruments `/metrics` shows, cumulative) are pushed;
    /// once more at shutdown.
    pub metrics_interval_ms: u64,
    /// CAs trusted for an `https://` collector besides the system's (HTTP/protobuf only).
    pub ca_file: Option<PathBuf>,
}

/// `[telemetry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub metrics_interval_ms: Option<u64>,
    pub ca_file: Option<String>,
}

/// Checks `[telemetry]`; `None` without the table.
/// Paths are resolved with `resolve` (against the config's folder).
pub(crate) fn telemetry(
    path: &Path,
    raw: Option<RawTelemetry>,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<Option<TelemetrySettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |key: &str, message: String| ConfigError::invalid(path, format!("telemetry.{key}"), message);
    let protocol = match raw.protocol.as_deref() {
        None | Some("grpc") => OtlpProtocol::Grpc,
        Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some(other) => return Err(invalid("protocol", format!("`{other}`: expected `grpc` or `http/protobuf`"))),
    };
    let endpoint = raw
        .endpoint
        .ok_or_else(|| invalid("endpoint", "missing: the collector's URL, e.g. `http://127.0.0.1:4317`".to_owned()))?;
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let rest = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains('@') => {}
        // Not echoed: a URL may carry a credential in its user part.
        _ => return Err(invalid("endpoint", "expected an `http://` or `https://` URL without user info".to_owned())),
    }
    if protocol == OtlpProtocol::Grpc && endpoint.starts_with("https://") {
        return Err(invalid(
            "endpoint",
            "`https://` needs `protocol = \"http/protobuf\"`; OTLP over gRPC is sent in the clear".to_owned(),
        ));
    }
    if raw.ca_file.is_some() && !endpoint.starts_with("https://") {
        return Err(invalid("ca_file", "only used with an `https://` endpoint".to_owned()));
    }
    let service_name = raw.service_name.unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    if service_name.is_empty() || service_name.len() > 255 || service_name.chars().any(char::is_control) {
        return Err(invalid("service_name", "expected 1 to 255 printable characters".to_owned()));
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid("sample_ratio", format!("`{sample_ratio}` is out of range: expected 0 to 1")));
    }
    for (name, value) in &raw.headers {
        let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !token {
            return Err(invalid("headers", format!("`{name}` is not a header name")));
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            // The value is not echoed: it may be a credential.
            return Err(invalid(&format!("headers.{name}"), "the value has control characters".to_owned()));
        }
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_EXPORT_TIMEOUT_MS);
    if !(1..=300_000).contains(&timeout_ms) {
        return Err(invalid("timeout_ms", format!("`{timeout_ms}` is out of range: expected 1 to 300000")));
    }
    let metrics_interval_ms = crate::validate::in_range(
        path,
        "telemetry.metrics_interval_ms",
        raw.metrics_interval_ms.unwrap_or(DEFAULT_METRICS_INTERVAL_MS),
        100..=3_600_000,
    )?;
    Ok(Some(TelemetrySettings {
        endpoint,
        protocol,
        service_name,
        sample_ratio,
        headers: raw.headers,
        timeout_ms,
        metrics_interval_ms,
        ca_file: raw.ca_file.as_deref().map(resolve),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tests_support::load;

    #[test]
    fn absent_is_off_and_defaults_fill_the_rest() {
        assert_eq!(load("").unwrap().telemetry, None);
        let t = load("[telemetry]\nendpoint = \"http://collector:4317/\"\n").unwrap().telemetry.unwrap();
        assert_eq!(t.endpoint, "http://collector:4317");
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.service_name, DEFAULT_SERVICE_NAME);
        assert!((t.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert_eq!(t.timeout_ms, DEFAULT_EXPORT_TIMEOUT_MS);
        assert_eq!(t.metrics_interval_ms, DEFAULT_METRICS_INTERVAL_MS);
        let t = load(
            "[telemetry]\nendpoint = \"https://otel.example\"\nprotocol = \"http/protobuf\"\nca_file = \"ca.pem\"\n\
             [telemetry.headers]\nx-api-key = \"k\"\n",
        )
        .unwrap()
        .telemetry
        .unwrap();
        assert_eq!(t.ca_file.as_deref(), Some(Path::new("/etc/custos/ca.pem")));
        assert_eq!(t.headers.get("x-api-key").map(String::as_str), Some("k"));
    }

    #[test]
    fn bad_values_name_their_key_and_never_echo_a_header_value() {
        for (table, key) in [
            ("protocol = \"http/json\"\nendpoint = \"http://c\"", "telemetry.protocol"),
            ("endpoint = \"http://user:pw@c\"", "telemetry.endpoint"),
            ("endpoint = \"https://c\"", "telemetry.endpoint"),
            ("endpoint = \"http://c\"\nca_file = \"ca.pem\"", "telemetry.ca_file"),
            ("endpoint = \"http://c\"\nsample_ratio = -0.1", "telemetry.sample_ratio"),
            ("endpoint = \"http://c\"\ntimeout_ms = 0", "telemetry.timeout_ms"),
            ("endpoint = \"http://c\"\nmetrics_interval_ms = 99", "telemetry.metrics_interval_ms"),
            ("endpoint = \"http://c\"\nservice_name = \"\"", "telemetry.service_name"),
            ("endpoint = \"http://c\"\n[telemetry.headers]\n\"bad header\" = \"v\"", "telemetry.headers"),
            ("endpoint = \"http://c\"\n[telemetry.headers]\nkey = \"SECRET\\n\"", "telemetry.headers.key"),
        ] {
            let err = load(&format!("[telemetry]\n{table}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{table}: {err}");
            assert!(!err.contains("SECRET") && !err.contains("pw"), "{err}");
        }
    }
}
