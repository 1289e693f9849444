//! When to start a dead upstream again. One policy for the upstream of a session and for an
//! agent's stateless upstream: an upstream that ran a while is restarted at once; one that keeps
//! dying young waits longer each time, so a broken server is not restarted in a tight loop.

use std::time::Duration;

/// An upstream that ran at least this long before dying starts a fresh count of quick deaths.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// The first wait after a quick death; it doubles with each quick death after.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before starting again after `quick_deaths` quick deaths in a row before this one:
/// none for the first, then doubling from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
pub(crate) fn backoff(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 => Duration::ZERO,
        n => FIRST_BACKOFF.saturating_mul(1 << (n - 1).min(16)).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
