//! The web console of `custos serve`: where approvers sign in and decide held calls, and
//! security reviews agents, runs and calls.
//!
//! # Layout
//!
//! - [`oidc`]: the OpenID Connect relying party approvers sign in through: discovery,
//!   the authorization code flow with PKCE, ID token verification ([`oidc::OidcClient`]).

pub mod oidc;
