//! The one error type of this crate, and what the HTTP edge makes of it.
//!
//! A variant says what is wrong without repeating what the caller sent: no message, no `Debug`
//! output names a token, a key, a key id from a token or a claim value. Names that come from the
//! gateway's own configuration (a claim name, an algorithm in the allow-list) may appear.

use thiserror::Error;

/// Who was at fault, for the audit record: the agent that presented a credential, or the gateway
/// (its configuration, its key set, its host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request carried no usable credential, or one that does not authorize it.
    Agent,
    /// The gateway cannot authenticate anyone: bad configuration, bad key set, no clock or RNG.
    Gateway,
}

/// Everything that can go wrong while authenticating an agent or setting authentication up.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    // ── request path: no or bad credential (401) ────────────────────────────────────────────
    /// No `Authorization` header, or one that is empty.
    #[error("no credential was presented")]
    MissingCredential,
    /// An `Authorization` header with a scheme other than `Bearer`.
    #[error("only bearer credentials are accepted")]
    UnsupportedScheme,
    /// The credential does not have the shape of an API key or a JWT. `reason` is fixed text.
    #[error("malformed credential: {reason}")]
    Malformed {
        /// What is wrong, in words chosen by this crate (never the input).
        reason: &'static str,
    },
    /// `exp` is in the past, beyond the allowed clock skew.
    #[error("the token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future, beyond the allowed clock skew.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is absent or names another issuer.
    #[error("the token was not issued by the configured issuer")]
    WrongIssuer,
    /// `aud` is absent or does not name this gateway.
    #[error("the token is not meant for this resource")]
    WrongAudience,
    /// The token header has no `kid`, so no key can be chosen.
    #[error("the token names no key id")]
    MissingKeyId,
    /// The token's `kid` is not in the key set.
    #[error("the token's key id is not in the key set")]
    UnknownKeyId,
    /// The token's `alg` is not in the allow-list (this covers `none` and every HMAC algorithm).
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The token's `alg` does not fit the key its `kid` selects (type, curve or the key's own `alg`).
    #[error("the token's algorithm does not match its key")]
    KeyAlgorithmMismatch,
    /// The signature does not verify with the selected key.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// A registered claim that must be present is absent.
    #[error("the token has no `{claim}` claim")]
    MissingClaim {
        /// The claim's name.
        claim: String,
    },
    /// The configured agent claim is absent.
    #[error("the token has no `{claim}` claim to name the agent")]
    MissingAgentClaim {
        /// The claim's name, as configured.
        claim: String,
    },
    /// The configured principal claim is absent.
    #[error("the token has no `{claim}` claim to name the principal")]
    MissingPrincipalClaim {
        /// The claim's name, as configured.
        claim: String,
    },
    /// A claim is present but of the wrong type or shape.
    #[error("the token's `{claim}` claim is not {expected}")]
    InvalidClaim {
        /// The claim's name.
        claim: String,
        /// What it should have been, in words chosen by this crate.
        expected: &'static str,
    },
    /// A bearer token (not an API key) where no token issuer is configured.
    #[error("bearer tokens are not accepted here: use an api key")]
    TokensNotAccepted,
    /// The API key matches no stored key (or another key's hash).
    #[error("the api key is not valid")]
    InvalidApiKey,
    /// The credential was valid once and has been revoked. Callers that keep a revocation list
    /// return it; this crate never does.
    #[error("the credential has been revoked")]
    Revoked,
    /// The credential is valid but names no configured agent. Callers return it.
    #[error("the credential names no configured agent")]
    UnknownAgent,
    /// A SPIFFE ID that breaks the SPIFFE ID rules. `reason` is fixed text.
    #[error("invalid spiffe id: {reason}")]
    InvalidSpiffeId {
        /// What is wrong, in words chosen by this crate (never the input).
        reason: &'static str,
    },
    /// The connection's verified client certificate carries a SPIFFE ID that no configured agent
    /// has. The ID itself is not repeated (it is the caller's to log, not the client's to read).
    #[error("the client certificate's spiffe id names no configured agent")]
    UnknownSpiffeId,
    /// The bearer credential and the client certificate name different agents: neither is
    /// picked.
    #[error("the bearer credential and the client certificate name different agents")]
    CredentialMismatch,
    /// A valid SPIFFE ID from a trust domain other than the configured one.
    #[error("the spiffe id is not in trust domain `{expected}`")]
    ForeignTrustDomain {
        /// The configured trust domain.
        expected: String,
    },

    // ── request path: authenticated, but not enough (403) ───────────────────────────────────
    /// The token lacks a scope the request needs.
    #[error("the token lacks a scope this request needs: `{}`", required.join(" "))]
    InsufficientScope {
        /// Every scope the request needs, as the gateway configured them.
        required: Vec<String>,
    },

    // ── set-up: the gateway's configuration or environment ─────────────────────────────────
    /// An algorithm that may never be allowed (`none`, HMAC).
    #[error("algorithm `{alg}` cannot be allowed: {reason}")]
    AlgorithmRefused {
        /// The configured name, escaped to one line.
        alg: String,
        /// Why, in words chosen by this crate.
        reason: &'static str,
    },
    /// An algorithm name this crate does not know.
    #[error(
        "unknown algorithm `{alg}`; expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
    )]
    UnknownAlgorithm {
        /// The configured name, escaped to one line.
        alg: String,
    },
    /// A configuration value that may not be empty is empty.
    #[error("`{field}` must not be empty")]
    EmptyConfigValue {
        /// The configuration key.
        field: &'static str,
    },
    /// The allowed clock skew is above the maximum.
    #[error("`leeway_secs` is {secs}; the maximum is {max}")]
    LeewayTooLarge {
        /// The configured value.
        secs: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// The key set document cannot be used at all. `reason` is fixed text or a configured key id.
    #[error("invalid key set: {reason}")]
    InvalidJwks {
        /// What is wrong.
        reason: String,
    },
    /// The key set has no key that fits the allowed algorithms.
    #[error("the key set has no key usable with the allowed algorithms")]
    NoUsableKeys,
    /// No key set has been loaded yet (the identity provider could not be reached): a token
    /// cannot be checked either way, so it is neither accepted nor called invalid (503).
    #[error("the identity provider's keys are not available yet: try again later")]
    KeysUnavailable,
    /// A resource or authorization server URL that is not an absolute http(s) URL.
    #[error("invalid url for `{field}`: {reason}")]
    InvalidUrl {
        /// The configuration key.
        field: &'static str,
        /// What is wrong, in words chosen by this crate.
        reason: &'static str,
    },
    /// An API key pepper shorter than the minimum.
    #[error("the api key pepper must be at least {min} bytes")]
    PepperTooShort {
        /// The minimum length in bytes.
        min: usize,
    },
    /// A stored key hash that is not in the `scheme:hex` form this crate writes.
    #[error("malformed stored key hash: {reason}")]
    MalformedKeyHash {
        /// What is wrong, in words chosen by this crate.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    RandomUnavailable,
    /// The system clock is before 1970 or beyond what a timestamp can hold.
    #[error("the system clock is unusable")]
    ClockUnavailable,
    /// The agent registry (where API key hashes live) could not be read.
    #[error("the agent registry cannot be read")]
    RegistryUnavailable,
}

impl AuthError {
    /// The HTTP status the edge answers with: 401 for no or bad credentials, 403 for a valid
    /// credential without the scope needed, 500 for the gateway's own faults, 503 while the
    /// identity provider's keys are not loaded.
    pub fn http_status(&self) -> u16 {
        match self.fault() {
            // Temporary: the credential may be good, and retrying later may succeed.
            Fault::Gateway if matches!(self, Self::KeysUnavailable) => 503,
            Fault::Gateway => 500,
            Fault::Agent if matches!(self, Self::InsufficientScope { .. }) => 403,
            Fault::Agent => 401,
        }
    }

    /// The OAuth 2.0 bearer `error` code (RFC 6750 §3.1), if one applies. `None` when no
    /// credential was presented (the challenge then carries no error) and for gateway faults.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            // No bearer token is at fault: the challenge only asks for one.
            Self::MissingCredential | Self::UnsupportedScheme | Self::UnknownSpiffeId => None,
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            _ if self.fault() == Fault::Gateway => None,
            _ => Some("invalid_token"),
        }
    }

    /// Who was at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Self::MissingCredential
            | Self::UnsupportedScheme
            | Self::Malformed { .. }
            | Self::Expired
            | Self::NotYetValid
            | Self::WrongIssuer
            | Self::WrongAudience
            | Self::MissingKeyId
            | Self::UnknownKeyId
            | Self::AlgorithmNotAllowed
            | Self::KeyAlgorithmMismatch
            | Self::BadSignature
            | Self::MissingClaim { .. }
            | Self::MissingAgentClaim { .. }
            | Self::MissingPrincipalClaim { .. }
            | Self::InvalidClaim { .. }
            | Self::InvalidApiKey
            | Self::TokensNotAccepted
            | Self::Revoked
            | Self::UnknownAgent
            | Self::InvalidSpiffeId { .. }
            | Self::UnknownSpiffeId
            | Self::CredentialMismatch
            | Self::ForeignTrustDomain { .. }
            | Self::InsufficientScope { .. } => Fault::Agent,
            Self::AlgorithmRefused { .. }
            | Self::UnknownAlgorithm { .. }
            | Self::EmptyConfigValue { .. }
            | Self::LeewayTooLarge { .. }
            | Self::InvalidJwks { .. }
            | Self::NoUsableKeys
            | Self::KeysUnavailable
            | Self::InvalidUrl { .. }
            | Self::PepperTooShort { .. }
            | Self::MalformedKeyHash { .. }
            | Self::RandomUnavailable
            | Self::ClockUnavailable
            | Self::RegistryUnavailable => Fault::Gateway,
        }
    }

    /// A short, stable, snake_case code for the audit record (`token_expired`, `bad_signature`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_credential",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::Malformed { .. } => "malformed_credential",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingKeyId => "missing_key_id",
            Self::UnknownKeyId => "unknown_key_id",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim { .. } => "missing_claim",
            Self::MissingAgentClaim { .. } => "missing_agent_claim",
            Self::MissingPrincipalClaim { .. } => "missing_principal_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::InvalidApiKey => "invalid_api_key",
            Self::TokensNotAccepted => "tokens_not_accepted",
            Self::Revoked => "revoked",
            Self::UnknownAgent => "unknown_agent",
            Self::InvalidSpiffeId { .. } => "invalid_spiffe_id",
            Self::UnknownSpiffeId => "unknown_spiffe_id",
            Self::CredentialMismatch => "credential_mismatch",
            Self::ForeignTrustDomain { .. } => "foreign_trust_domain",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::AlgorithmRefused { .. } => "algorithm_refused",
            Self::UnknownAlgorithm { .. } => "unknown_algorithm",
            Self::EmptyConfigValue { .. } => "empty_config_value",
            Self::LeewayTooLarge { .. } => "leeway_too_large",
            Self::InvalidJwks { .. } => "invalid_jwks",
            Self::NoUsableKeys => "no_usable_keys",
            Self::KeysUnavailable => "keys_unavailable",
            Self::InvalidUrl { .. } => "invalid_url",
            Self::PepperTooShort { .. } => "pepper_too_short",
            Self::MalformedKeyHash { .. } => "malformed_key_hash",
            Self::RandomUnavailable => "random_unavailable",
            Self::ClockUnavailable => "clock_unavailable",
            Self::RegistryUnavailable => "registry_unavailable",
        }
    }
}

/// A configured value made safe for a one-line message: control characters escaped, at most
/// 64 characters kept. Never call it on a credential.
pub(crate) fn one_line(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = value.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if value.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_oauth_code_follow_the_fault() {
        assert_eq!(AuthError::MissingCredential.http_status(), 401);
        assert_eq!(AuthError::MissingCredential.oauth_error(), None);
        assert_eq!(AuthError::Expired.http_status(), 401);
        assert_eq!(AuthError::Expired.oauth_error(), Some("invalid_token"));
        assert_eq!(AuthError::Revoked.oauth_error(), Some("invalid_token"));
        let scope = AuthError::InsufficientScope { required: vec!["tools:call".into()] };
        assert_eq!(scope.http_status(), 403);
        assert_eq!(scope.oauth_error(), Some("insufficient_scope"));
        assert_eq!(AuthError::NoUsableKeys.http_status(), 500);
        assert_eq!(AuthError::NoUsableKeys.oauth_error(), None);
        assert_eq!(AuthError::NoUsableKeys.fault(), Fault::Gateway);
        assert_eq!(AuthError::KeysUnavailable.http_status(), 503);
        assert_eq!(AuthError::KeysUnavailable.oauth_error(), None);
        assert_eq!(AuthError::UnknownSpiffeId.http_status(), 401);
        assert_eq!(AuthError::UnknownSpiffeId.oauth_error(), None);
        assert_eq!(AuthError::UnknownSpiffeId.reason(), "unknown_spiffe_id");
        assert_eq!(AuthError::CredentialMismatch.http_status(), 401);
        assert_eq!(AuthError::CredentialMismatch.oauth_error(), Some("invalid_token"));
        assert_eq!(AuthError::CredentialMismatch.reason(), "credential_mismatch");
    }

    #[test]
    fn messages_are_lowercase_and_one_line() {
        let all = [
            AuthError::MissingCredential,
            AuthError::Malformed { reason: "not three segments" },
            AuthError::Expired,
            AuthError::UnknownKeyId,
            AuthError::MissingAgentClaim { claim: "sub".into() },
            AuthError::InsufficientScope { required: vec!["a".into(), "b".into()] },
            AuthError::AlgorithmRefused { alg: "none".into(), reason: "unsigned tokens are never accepted" },
            AuthError::LeewayTooLarge { secs: 301, max: 300 },
            AuthError::ClockUnavailable,
            AuthError::UnknownSpiffeId,
            AuthError::CredentialMismatch,
        ];
        for err in all {
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.chars().next().is_some_and(|c| !c.is_uppercase()), "{msg}");
            assert!(!err.reason().is_empty());
        }
    }

    #[test]
    fn one_line_escapes_and_truncates() {
        assert_eq!(one_line("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert_eq!(one_line(&long).chars().count(), 65);
    }
}
