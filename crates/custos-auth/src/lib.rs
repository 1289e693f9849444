//! Custos agent authentication: who is calling, proven by an API key, a JWT or a SPIFFE ID.
//!
//! Every request to the gateway's HTTP endpoint must be authenticated as a configured agent.
//! This crate turns a presented credential into an agent id (and, for delegated tokens, the
//! human it acts for) or into an [`AuthError`] that knows its HTTP status and OAuth error code.
//! It is a pure library: no HTTP server, no network, no database. Fetching a JWKS, keeping key
//! hashes, revoking keys and terminating TLS belong to the caller.
//!
//! # Layout
//!
//! - [`error`]: [`AuthError`], its HTTP status, OAuth `error` code, fault and audit reason.
//! - [`credential`]: reading the `Authorization` header into an API key or a bearer JWT.
//! - [`api_key`]: `cst_<id>_<secret>` keys: generation, parsing, hashing (SHA-256 or peppered
//!   HMAC-SHA256), constant-time verification.
//! - [`jwt`]: [`JwtVerifier`]: signature against a JWKS with an algorithm allow-list, then issuer,
//!   audience, expiry with bounded leeway, agent claim, RFC 8693 `act` chain, scopes.
//! - [`spiffe`]: SPIFFE ID parsing and mapping to an agent id, for mTLS.
//! - [`metadata`]: RFC 9728 protected resource metadata and the `WWW-Authenticate` challenges.
//!
//! No error message, `Debug` output or log line of this crate contains a key, a token or a
//! value read from one.

pub mod api_key;
pub mod credential;
pub mod error;
pub mod jwt;
pub mod metadata;
pub mod spiffe;

pub use api_key::{ApiKey, HashScheme, KeyHash, KeyHasher, Pepper};
pub use credential::{BearerToken, Credential};
pub use error::{AuthError, Fault};
pub use jwt::{JwtConfig, JwtVerifier, SkippedKey, VerifiedToken};
pub use metadata::{challenge_for, ProtectedResourceMetadata};
pub use spiffe::{agent_id_from_spiffe, SpiffeId};
