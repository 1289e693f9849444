//! The bounds on sessions: how many may be open (`[serve] max_sessions`), how many of them one
//! agent may hold (`max_sessions_per_agent`), and how long one may sit unused
//! (`session_idle_timeout_ms`).
//!
//! A session takes a [`Place`] before its upstreams are started and gives it back when it is
//! closed: counting places, not map entries, keeps two `initialize` requests that race from
//! both getting in past a limit while their upstreams start. What keeps a session in use is
//! its [`Activity`]: every request being handled for it and every event stream open on it
//! holds a [`Busy`]; a session none has held for `session_idle_timeout_ms` is closed by the
//! reaper (`server.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The places of open sessions, counted in all and per agent.
#[derive(Debug)]
pub(crate) struct Places {
    max: usize,
    max_per_agent: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    all: usize,
    /// Agents with no place hold no entry, so the map is bounded by `max`.
    per_agent: HashMap<String, usize>,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The agent holds `max_sessions_per_agent` already.
    Agent,
    /// The gateway holds `max_sessions`.
    Gateway,
}

impl Places {
    pub(crate) fn new(max: usize, max_per_agent: usize) -> Arc<Self> {
        Arc::new(Self { max, max_per_agent, taken: Mutex::new(Taken::default()) })
    }

    /// A place for one more session of `agent`. A full gateway is full for everyone, so that
    /// is checked first (and a config whose share is all of `max_sessions` answers as it did
    /// before there were shares); an agent at its own cap while there is room is told so.
    pub(crate) fn take(self: &Arc<Self>, agent: &str) -> Result<Place, Full> {
        let mut taken = self.lock();
        if taken.all >= self.max {
            return Err(Full::Gateway);
        }
        let mine = taken.per_agent.get(agent).copied().unwrap_or(0);
        if mine >= self.max_per_agent {
            return Err(Full::Agent);
        }
        taken.all += 1;
        taken.per_agent.insert(agent.to_owned(), mine + 1);
        Ok(Place { places: self.clone(), agent: agent.to_owned() })
    }

    /// Places taken in all, and by `agent`.
    #[cfg(test)]
    fn taken(&self, agent: &str) -> (usize, usize) {
        let taken = self.lock();
        (taken.all, taken.per_agent.get(agent).copied().unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One session's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    places: Arc<Places>,
    agent: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut taken = self.places.lock();
        taken.all = taken.all.saturating_sub(1);
        if let Some(n) = taken.per_agent.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.per_agent.remove(&self.agent);
            }
        }
    }
}

/// What keeps one session in use, and since when nothing has.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Requests being handled and streams open: each holds a [`Busy`].
    busy: AtomicUsize,
    /// When the last [`Busy`] was let go (or the session opened).
    since: Mutex<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { busy: AtomicUsize::new(0), since: Mutex::new(Instant::now()) })
    }

    /// Marks the session in use until the guard is dropped. Whoever looks a session up for a
    /// request takes this under the lock the reaper takes too, so a session is never closed
    /// between being found and being used.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// How long nothing has kept the session in use; `None` while something does.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.since.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed())
    }

    /// Whether the session has been unused for `timeout` or longer.
    pub(crate) fn idle_past(&self, timeout: Duration) -> bool {
        self.idle_for().is_some_and(|idle| idle >= timeout)
    }
}

/// A request or stream that keeps a session in use.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // INVARIANT: the time is set before the count falls, so whoever sees the count at zero
        // reads a time no older than this release.
        *self.0.since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_at_its_cap_is_refused_while_others_get_places() {
        let places = Places::new(4, 2);
        let a1 = places.take("a").unwrap();
        let _a2 = places.take("a").unwrap();
        assert_eq!(places.take("a").unwrap_err(), Full::Agent);
        let _b1 = places.take("b").unwrap();
        let _b2 = places.take("b").unwrap();
        assert_eq!(places.taken("a"), (4, 2));
        // The gateway is full, for everyone.
        assert_eq!(places.take("c").unwrap_err(), Full::Gateway);
        assert_eq!(places.take("a").unwrap_err(), Full::Gateway);
        drop(a1);
        assert_eq!(places.taken("a"), (3, 1));
        let _a3 = places.take("a").unwrap();
    }

    #[test]
    fn places_given_back_leave_no_entry_behind() {
        let places = Places::new(2, 2);
        drop(places.take("a").unwrap());
        assert_eq!(places.taken("a"), (0, 0));
        assert!(places.lock().per_agent.is_empty());
    }

    #[test]
    fn a_session_is_idle_only_while_nothing_holds_it() {
        let activity = Activity::new();
        assert!(activity.idle_for().is_some());
        let request = activity.busy();
        let stream = activity.busy();
        assert_eq!(activity.idle_for(), None);
        drop(request);
        assert_eq!(activity.idle_for(), None, "the stream still holds it");
        drop(stream);
        assert!(activity.idle_for().is_some());
        assert!(!activity.idle_past(Duration::from_secs(3600)));
        assert!(activity.idle_past(Duration::ZERO));
    }
}
