//! What can go wrong signing an approver in through the OpenID provider.
//!
//! No message names a token, a code, a state, a nonce, a verifier or the client secret; values
//! that come from the provider (an issuer, an OAuth error code) are escaped to one short line.

use std::path::PathBuf;

use custos_auth::AuthError;

/// Everything that can stop discovery or a sign-in. [`OidcError::reason`] is the short code for
/// the audit record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    // ── set-up: the configuration and the provider's discovery ────────────────────────────
    /// `client_secret_file` cannot be read.
    #[error("the client secret file `{}` cannot be read: {reason}", path.display())]
    ClientSecretUnreadable { path: PathBuf, reason: String },
    /// `client_secret_file` holds nothing but white space.
    #[error("the client secret file `{}` is empty", path.display())]
    ClientSecretEmpty { path: PathBuf },
    /// The trust settings for an `https://` provider cannot be loaded (`ca_file`).
    #[error("the openid provider's tls settings cannot be loaded: {reason}")]
    Tls { reason: String },
    /// No answer from the provider: refused, unresolvable, a TLS failure, a timeout.
    #[error("the openid provider cannot be reached at `{url}`: {reason}")]
    ProviderUnreachable { url: String, reason: String },
    /// The provider answered, but not with what was asked for (status, size, not json).
    #[error("the openid provider's answer at `{url}` is not usable: {reason}")]
    ProviderAnswer { url: String, reason: String },
    /// The discovery document names an issuer other than the configured one: its tokens would
    /// name it too, and the configured issuer is not who answered.
    #[error("the discovery document names issuer `{found}`, not the configured `{configured}`")]
    DiscoveryIssuerMismatch { configured: String, found: String },
    /// The discovery document lacks something the sign-in needs, or names an endpoint that
    /// may not be used.
    #[error("the discovery document cannot be used: {reason}")]
    DiscoveryInvalid { reason: String },
    /// The provider's key set cannot be used (no usable key, not a JWK set).
    #[error("the openid provider's key set cannot be used: {reason}")]
    KeySetInvalid { reason: String },

    // ── the browser's round trip ─────────────────────────────────────────────────────────
    /// The redirect URI handed to `begin` is not an absolute http(s) URL.
    #[error("the redirect uri is not an absolute http or https url")]
    InvalidRedirectUri,
    /// The `state` the browser came back with is not the one of its pending sign-in.
    #[error("the sign-in's state does not match the one this browser started")]
    StateMismatch,
    /// The pending sign-in is older than [`PENDING_TTL_MS`](super::PENDING_TTL_MS).
    #[error("the sign-in was started too long ago: start again")]
    SignInExpired,
    /// `finish` was given a redirect URI other than the one `begin` sent the provider.
    #[error("the redirect uri differs from the one the sign-in started with")]
    RedirectMismatch,
    /// The callback carried no usable authorization code.
    #[error("the callback carries no usable authorization code")]
    InvalidCode,
    /// The token endpoint refused the code (used already, expired, wrong verifier, wrong
    /// client credentials). `error` is the provider's OAuth error code, when it is one.
    #[error("the token endpoint refused the code (http status {status}{})", error.as_deref().map(|e| format!(", `{e}`")).unwrap_or_default())]
    TokenEndpointRefused { status: u16, error: Option<String> },
    /// The token endpoint answered 200 without a usable ID token.
    #[error("the token endpoint's answer has no usable id token: {reason}")]
    TokenResponseInvalid { reason: &'static str },

    // ── the ID token ──────────────────────────────────────────────────────────────────────
    /// Not a compact JWS, or an unreadable header or payload.
    #[error("the id token is malformed: {reason}")]
    Malformed { reason: &'static str },
    /// `alg` outside the allow-list: `none`, every `HS*`, anything unknown.
    #[error("the id token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No `kid` in the header.
    #[error("the id token names no key id")]
    MissingKeyId,
    /// A `kid` the provider's key set lacks, even after fetching it again.
    #[error("the id token's key id is not in the provider's key set")]
    UnknownKeyId,
    /// `alg` does not fit the key that `kid` names.
    #[error("the id token's algorithm does not match its key")]
    KeyAlgorithmMismatch,
    /// The signature does not verify with the key that `kid` names.
    #[error("the id token's signature is not valid")]
    BadSignature,
    /// No key set is loaded.
    #[error("the openid provider's keys are not available")]
    KeysUnavailable,
    /// `iss` is not the configured issuer.
    #[error("the id token was not issued by the configured issuer")]
    WrongIssuer,
    /// `aud` does not contain the client id.
    #[error("the id token is not meant for this client")]
    WrongAudience,
    /// `azp` names another client, or is missing while `aud` names several.
    #[error("the id token's authorized party is not this client")]
    WrongAuthorizedParty,
    /// `exp` has passed, beyond the leeway.
    #[error("the id token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    #[error("the id token is not valid yet")]
    NotYetValid,
    /// `nonce` is missing or not the one of the pending sign-in: a replayed or injected token.
    #[error("the id token's nonce is not the one of this sign-in")]
    WrongNonce,
    /// A claim the ID token must carry is absent.
    #[error("the id token has no `{claim}` claim")]
    MissingClaim { claim: String },
    /// A claim of the wrong type or shape.
    #[error("the id token's `{claim}` claim is not {expected}")]
    InvalidClaim { claim: String, expected: &'static str },
    /// The identity claim is absent, empty or not a string: nobody to name.
    #[error("the id token has no `{claim}` string to name the approver")]
    MissingIdentity { claim: String },
    /// The identity claim is `email` and the provider says the address is not verified.
    #[error("the id token's email address is not verified")]
    EmailNotVerified,

    // ── this host ─────────────────────────────────────────────────────────────────────────
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    RandomUnavailable,
    /// The system clock is before 1970 or beyond what a timestamp holds.
    #[error("the system clock is unusable")]
    ClockUnavailable,
}

impl OidcError {
    /// A short, stable, snake_case code for the audit record.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClientSecretUnreadable { .. } => "client_secret_unreadable",
            Self::ClientSecretEmpty { .. } => "client_secret_empty",
            Self::Tls { .. } => "tls_config",
            Self::ProviderUnreachable { .. } => "provider_unreachable",
            Self::ProviderAnswer { .. } => "provider_bad_answer",
            Self::DiscoveryIssuerMismatch { .. } => "discovery_issuer_mismatch",
            Self::DiscoveryInvalid { .. } => "discovery_invalid",
            Self::KeySetInvalid { .. } => "key_set_invalid",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::StateMismatch => "state_mismatch",
            Self::SignInExpired => "sign_in_expired",
            Self::RedirectMismatch => "redirect_mismatch",
            Self::InvalidCode => "invalid_code",
            Self::TokenEndpointRefused { .. } => "token_endpoint_refused",
            Self::TokenResponseInvalid { .. } => "token_response_invalid",
            Self::Malformed { .. } => "malformed_id_token",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::MissingKeyId => "missing_key_id",
            Self::UnknownKeyId => "unknown_key_id",
            Self::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::KeysUnavailable => "keys_unavailable",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongAuthorizedParty => "wrong_authorized_party",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongNonce => "wrong_nonce",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::MissingIdentity { .. } => "missing_identity_claim",
            Self::EmailNotVerified => "email_not_verified",
            Self::RandomUnavailable => "random_unavailable",
            Self::ClockUnavailable => "clock_unavailable",
        }
    }

    /// Whether the provider, or the way to it, is at fault rather than the person signing in
    /// or what their browser sent: the console answers these with "try again later" (and an
    /// operator should look), the others with "sign in again".
    pub fn is_provider_fault(&self) -> bool {
        matches!(
            self,
            Self::Tls { .. }
                | Self::ProviderUnreachable { .. }
                | Self::ProviderAnswer { .. }
                | Self::DiscoveryIssuerMismatch { .. }
                | Self::DiscoveryInvalid { .. }
                | Self::KeySetInvalid { .. }
                | Self::KeysUnavailable
                | Self::TokenResponseInvalid { .. }
                | Self::ClientSecretUnreadable { .. }
                | Self::ClientSecretEmpty { .. }
                | Self::RandomUnavailable
                | Self::ClockUnavailable
        )
    }
}

impl From<AuthError> for OidcError {
    /// The verifier's verdict on a token, in this module's words.
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Malformed { reason } => Self::Malformed { reason },
            AuthError::Expired => Self::Expired,
            AuthError::NotYetValid => Self::NotYetValid,
            AuthError::WrongIssuer => Self::WrongIssuer,
            AuthError::WrongAudience => Self::WrongAudience,
            AuthError::MissingKeyId => Self::MissingKeyId,
            AuthError::UnknownKeyId => Self::UnknownKeyId,
            AuthError::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
            AuthError::KeyAlgorithmMismatch => Self::KeyAlgorithmMismatch,
            AuthError::BadSignature => Self::BadSignature,
            AuthError::MissingClaim { claim } => Self::MissingClaim { claim },
            // The verifier's agent claim is `sub` here: the subject.
            AuthError::MissingAgentClaim { claim } | AuthError::MissingPrincipalClaim { claim } => {
                Self::MissingClaim { claim }
            }
            AuthError::InvalidClaim { claim, expected } => Self::InvalidClaim { claim, expected },
            AuthError::KeysUnavailable => Self::KeysUnavailable,
            AuthError::ClockUnavailable => Self::ClockUnavailable,
            AuthError::InvalidJwks { reason } => Self::KeySetInvalid { reason },
            AuthError::NoUsableKeys => Self::KeySetInvalid { reason: "no key fits the allowed algorithms".into() },
            // Set-up errors of the verifier's own configuration, which this module builds.
            other => Self::KeySetInvalid { reason: other.to_string() },
        }
    }
}

/// A value from the provider made safe for a one-line message: control characters escaped, at
/// most 100 characters kept. Never call it on a token, a code or a secret.
pub(crate) fn one_line(value: &str) -> String {
    const MAX_CHARS: usize = 100;
    let mut out: String = value.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if value.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}
