//! Custos credential primitives: the gateway holds the secrets of upstreams so that agents
//! never hold long-lived ones, and this crate is what it holds them with.
//!
//! A [`MasterKey`] lives in a file outside the database; the database keeps only values sealed
//! with it (bound to their name), and the audit log only keyed fingerprints of them. The
//! [`LeakGuard`] removes every held secret and every well-known credential shape from what an
//! upstream sends toward an agent. Instead of a long-lived secret, an upstream can be given a
//! short-lived token that the gateway mints for one agent, audience and scope with a
//! [`SigningKey`], and verifies against the published JWKS.
//!
//! A pure library: no async runtime, and no I/O beyond reading or creating the key file.
//!
//! # Layout
//!
//! - `master.rs`: [`MasterKey`] (the key file, [`MasterKey::seal`] / [`MasterKey::open`]) and
//!   the [`Fingerprinter`] derived from it.
//! - `value.rs`: [`SecretValue`], a value that neither logs nor serializes.
//! - `guard.rs`: the [`LeakGuard`] and what it reports ([`Cleaned`], [`Hit`]); `guard/json.rs`
//!   walks the strings of a JSON message without building a tree; `guard/shapes.rs` holds the
//!   credential shapes.
//! - `signing.rs`: [`Algorithm`], [`SigningKey`], minting tokens ([`MintRequest`], [`Minted`]).
//! - `jwks.rs`: [`jwks_document`] and [`verify`].
//! - `error.rs`: [`SecretsError`] and [`TokenError`].

mod error;
pub mod fuzzing;
mod guard;
mod jwks;
mod master;
mod signing;
mod value;

pub use error::{SecretsError, TokenError};
pub use guard::{Cleaned, Encoding, Hit, LeakGuard, MAX_HITS, MAX_PATH_DEPTH, MIN_SECRET_LEN};
pub use jwks::{jwks_document, verify, MAX_TOKEN_LEN};
pub use master::{Fingerprinter, MasterKey};
pub use signing::{Algorithm, MintRequest, Minted, SigningKey};
pub use value::SecretValue;
