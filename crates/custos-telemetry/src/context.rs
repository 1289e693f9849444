//! W3C trace context (`traceparent`, `tracestate`) in and out.
//!
//! A client over stdio puts it in `params._meta` (the MCP convention); one over HTTP may send
//! it as request headers instead. The HTTP front end cannot hand headers through the transport-
//! agnostic pipeline, so it runs each request inside [`with_remote_parent`], and the pipeline
//! reads them from there when the message itself names no parent.

use std::collections::HashMap;
use std::future::Future;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The longest `traceparent` or `tracestate` value taken from a peer (W3C caps `tracestate` at
/// 32 entries of at most 256 characters each; nothing legitimate is longer).
const MAX_VALUE_BYTES: usize = 8192;

/// A trace context as it travels between processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// From what a peer sent; `None` without a usable `traceparent` (a malformed one starts a
    /// new trace later, it is not an error: tracing never refuses a call).
    pub fn from_peer(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent.filter(|v| !v.is_empty() && v.len() <= MAX_VALUE_BYTES)?;
        Some(Self {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate.filter(|v| !v.is_empty() && v.len() <= MAX_VALUE_BYTES).map(str::to_owned),
        })
    }

    /// The context these headers name as parent (an empty context when they are malformed).
    pub(crate) fn extract(&self) -> Context {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert("traceparent".to_owned(), self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            carrier.insert("tracestate".to_owned(), state.clone());
        }
        TraceContextPropagator::new().extract(&carrier)
    }

    /// The headers that name the span of `cx` as parent; `None` when it has no valid span.
    pub(crate) fn inject(cx: &Context) -> Option<Self> {
        let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(cx, &mut carrier);
        let traceparent = carrier.remove("traceparent")?;
        Some(Self { traceparent, tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()) })
    }
}

tokio::task_local! {
    /// The trace context of the HTTP request being handled, from its headers.
    static REMOTE_PARENT: TraceHeaders;
}

/// Runs `fut` with `headers` (from an HTTP request) as the parent of the calls it makes, unless
/// a message names its own in `_meta`.
pub async fn with_remote_parent<F: Future>(headers: Option<TraceHeaders>, fut: F) -> F::Output {
    match headers {
        Some(headers) => REMOTE_PARENT.scope(headers, fut).await,
        None => fut.await,
    }
}

/// The parent set by [`with_remote_parent`] for the running task, if any.
pub(crate) fn remote_parent() -> Option<TraceHeaders> {
    REMOTE_PARENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn a_valid_traceparent_names_a_remote_parent_and_a_bad_one_none() {
        let good = TraceHeaders::from_peer(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), None);
        let cx = good.unwrap().extract();
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");

        let bad = TraceHeaders::from_peer(Some("00-zz-b7ad6b7169203331-01"), None).unwrap().extract();
        assert!(!bad.span().span_context().is_valid());
        assert_eq!(TraceHeaders::from_peer(Some(""), None), None);
        assert_eq!(TraceHeaders::from_peer(Some(&"0".repeat(MAX_VALUE_BYTES + 1)), None), None);
    }

    #[tokio::test]
    async fn the_remote_parent_is_seen_only_inside_its_scope() {
        let headers = TraceHeaders { traceparent: "t".into(), tracestate: None };
        let inside = with_remote_parent(Some(headers.clone()), async { remote_parent() }).await;
        assert_eq!(inside, Some(headers));
        assert_eq!(remote_parent(), None);
    }
}
