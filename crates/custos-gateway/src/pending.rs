//! Requests forwarded and not yet answered: the client's to the upstream, and the upstream's
//! to the client.
//!
//! Keyed by the id's raw JSON text, so `3` and `3.0` and `"3"` are three different requests, as
//! they are to the client. The map is bounded: a peer that never answers cannot make it grow
//! without limit. An answer is relayed only when it matches a request the gateway forwarded to
//! the side that answers: a response to any other id (made up, or answered already, or to a
//! call still being decided) is dropped and recorded by the pipeline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use custos_core::ToolRef;
use serde_json::value::RawValue;

/// A tool call that was allowed and forwarded.
#[derive(Debug)]
pub struct CallInFlight {
    pub tool: ToolRef,
    pub step: u64,
    /// When the client's request arrived (for the whole-call duration).
    pub received: Instant,
    /// When it was forwarded upstream (for the upstream duration).
    pub started: Instant,
    /// The token minted for this call, when its upstream takes minted tokens.
    pub token: Option<crate::broker::Bearer>,
    /// Its place under a concurrency limit, given back when the call is forgotten.
    pub slot: Option<crate::abuse::Slot>,
    /// Its class and the digest of its arguments, to remember it against replays once it has
    /// run to an answer.
    pub replay: Option<(custos_core::ToolClass, String)>,
    /// Its spans, ended when its answer is recorded (or when it is forgotten); `None` when
    /// tracing is off.
    pub trace: Option<Box<CallTrace>>,
}

impl CallInFlight {
    /// A call about to be forwarded now; its spans are added as it is.
    pub fn new(
        tool: ToolRef,
        step: u64,
        received: Instant,
        token: Option<crate::broker::Bearer>,
        slot: Option<crate::abuse::Slot>,
        replay: (custos_core::ToolClass, String),
    ) -> Self {
        Self { tool, step, received, started: Instant::now(), token, slot, replay: Some(replay), trace: None }
    }
}

/// The spans of a forwarded call and the trace context its upstream was given.
#[derive(Debug, Default)]
pub struct CallTrace {
    /// `execute_tool {tool}`.
    pub call: custos_telemetry::CallSpan,
    /// `tools/call {tool}`, from the forward to the answer.
    pub upstream: custos_telemetry::Stage,
    /// What names the upstream span as parent, for an HTTP upstream's headers too.
    pub headers: Option<custos_telemetry::TraceHeaders>,
}

#[derive(Debug)]
pub struct Pending {
    pub id: Box<RawValue>,
    pub method: String,
    pub call: Option<CallInFlight>,
    /// The client sent `notifications/cancelled` for it.
    pub cancelled: bool,
    /// Sent on to the other side. A `tools/call` is registered before it is decided, so that a
    /// duplicate id is refused, but an answer to it is taken only once it was forwarded.
    pub forwarded: bool,
}

/// What an answer's id matches.
#[derive(Debug)]
pub enum Answered {
    /// A forwarded request, now answered: no longer pending.
    Pending(Pending),
    /// A request registered but not forwarded (a call being decided or held for approval): the
    /// answer is not to anything the other side was sent; the request stays pending.
    NotForwarded,
    /// Nothing pending: never sent, or answered already.
    Unknown,
}

/// Why a request could not be registered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client reused an id that is still outstanding: answers could not be told apart.
    DuplicateId,
    /// Too many requests outstanding.
    Full,
}

#[derive(Debug)]
pub struct PendingRequests {
    max: usize,
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingRequests {
    pub fn new(max: usize) -> Self {
        Self { max, map: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A poisoned lock only means another task panicked mid-update of a plain map; the map
        // itself is still consistent, so keep serving.
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a request about to be forwarded.
    pub fn insert(&self, id: &RawValue, method: &str) -> Result<(), Refused> {
        self.register(id, method, true)
    }

    /// Registers a request that is forwarded only once decided ([`Self::set_call`]).
    pub fn reserve(&self, id: &RawValue, method: &str) -> Result<(), Refused> {
        self.register(id, method, false)
    }

    fn register(&self, id: &RawValue, method: &str, forwarded: bool) -> Result<(), Refused> {
        let mut map = self.lock();
        let key = id.get().to_owned();
        if map.contains_key(&key) {
            return Err(Refused::DuplicateId);
        }
        if map.len() >= self.max {
            return Err(Refused::Full);
        }
        map.insert(
            key,
            Pending { id: id.to_owned(), method: method.to_owned(), call: None, cancelled: false, forwarded },
        );
        Ok(())
    }

    /// Marks a registered request as an allowed tool call, about to be forwarded.
    pub fn set_call(&self, id: &RawValue, call: CallInFlight) {
        if let Some(p) = self.lock().get_mut(id.get()) {
            p.call = Some(call);
            p.forwarded = true;
        }
    }

    /// Takes the request an answer with this id answers, if it was forwarded.
    pub fn answered(&self, id: &RawValue) -> Answered {
        let mut map = self.lock();
        match map.get(id.get()) {
            None => Answered::Unknown,
            Some(p) if !p.forwarded => Answered::NotForwarded,
            Some(_) => map.remove(id.get()).map_or(Answered::Unknown, Answered::Pending),
        }
    }

    pub fn mark_cancelled(&self, id: &RawValue) {
        if let Some(p) = self.lock().get_mut(id.get()) {
            p.cancelled = true;
        }
    }

    /// The token minted for the allowed call `id`, if it has one.
    pub fn call_token(&self, id: &RawValue) -> Option<crate::broker::Bearer> {
        self.lock().get(id.get()).and_then(|p| p.call.as_ref()).and_then(|c| c.token.clone())
    }

    /// The trace context the upstream was given for call `id`, for an HTTP upstream's
    /// `traceparent` and `tracestate` headers.
    pub fn call_trace_headers(&self, id: &RawValue) -> Option<custos_telemetry::TraceHeaders> {
        self.lock()
            .get(id.get())
            .and_then(|p| p.call.as_ref())
            .and_then(|c| c.trace.as_ref())
            .and_then(|t| t.headers.clone())
    }

    pub fn remove(&self, id: &RawValue) -> Option<Pending> {
        self.lock().remove(id.get())
    }

    /// Everything still outstanding, oldest first is not guaranteed.
    pub fn drain(&self) -> Vec<Pending> {
        self.lock().drain().map(|(_, p)| p).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn ids_are_kept_by_spelling_and_bounded() {
        let p = PendingRequests::new(3);
        p.insert(&id("3"), "a").unwrap();
        p.insert(&id("3.0"), "b").unwrap();
        p.insert(&id("\"3\""), "c").unwrap();
        assert_eq!(p.insert(&id("4"), "d"), Err(Refused::Full));
        assert_eq!(p.remove(&id("3.0")).unwrap().method, "b");
        assert_eq!(p.insert(&id("3"), "e"), Err(Refused::DuplicateId));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn an_answer_takes_only_a_forwarded_request_and_only_once() {
        let p = PendingRequests::new(4);
        p.insert(&id("1"), "ping").unwrap();
        p.reserve(&id("2"), "tools/call").unwrap();
        assert!(matches!(p.answered(&id("1")), Answered::Pending(r) if r.method == "ping"));
        assert!(matches!(p.answered(&id("1")), Answered::Unknown), "answered already");
        assert!(matches!(p.answered(&id("9")), Answered::Unknown), "never sent");
        // A call still being decided is not answerable, and stays registered.
        assert!(matches!(p.answered(&id("2")), Answered::NotForwarded));
        assert_eq!(p.reserve(&id("2"), "tools/call"), Err(Refused::DuplicateId));
        let call = CallInFlight {
            tool: ToolRef::new("s", "t").unwrap(),
            step: 1,
            received: Instant::now(),
            started: Instant::now(),
            token: None,
            slot: None,
            replay: None,
            trace: None,
        };
        p.set_call(&id("2"), call);
        assert!(matches!(p.answered(&id("2")), Answered::Pending(r) if r.call.is_some()));
        assert!(p.is_empty());
    }
}
