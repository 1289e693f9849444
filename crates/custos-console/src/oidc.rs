//! PLACEHOLDER until the OpenID Connect relying party lands (replaced on merge).
#![allow(dead_code, clippy::unused_async)]
#[derive(Clone, Debug)]
pub struct PendingSignIn {
    pub state: String,
}
#[derive(Debug)]
pub struct OidcClient;
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct OidcError;
impl OidcError {
    pub fn reason(&self) -> &'static str {
        "placeholder"
    }
}
#[derive(Debug)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    pub name: String,
    pub groups: Vec<String>,
    pub expires_ms: i64,
}
impl OidcClient {
    pub fn begin(&self, _r: &str) -> Result<(String, PendingSignIn), OidcError> {
        Err(OidcError)
    }
    pub async fn finish(&self, _p: &PendingSignIn, _s: &str, _c: &str, _r: &str) -> Result<SignedIn, OidcError> {
        Err(OidcError)
    }
    pub fn issuer(&self) -> &str {
        ""
    }
}
impl OidcClient {
    pub async fn discover(_s: &custos_config::OidcSettings) -> Result<OidcClient, OidcError> {
        Err(OidcError)
    }
}
