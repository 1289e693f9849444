//! [`Approver`]: who decides a request, and how the gateway knows who they are.

use serde_json::{json, Value};

/// How an approver's identity was established. Recorded with every decision, so a review can
/// tell a signed-in approver from a name someone typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApproverMethod {
    /// Signed in to the console through the OpenID Connect provider.
    Oidc,
    /// Signed in to the console with a one-time link made by `custos console login-link` on the
    /// gateway host.
    LoginLink,
    /// Named with `--as` by whoever runs `custos approvals` on the host (asserted).
    Cli,
    /// Named by a holder of the admin token, allowed by `[admin] assert_approvers` (asserted).
    AdminToken,
    /// The scripted approver of `custos demo`.
    Demo,
}

impl ApproverMethod {
    /// `oidc`, `login-link`, `cli`, `admin-token` or `demo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::LoginLink => "login-link",
            Self::Cli => "cli",
            Self::AdminToken => "admin-token",
            Self::Demo => "demo",
        }
    }
}

/// Who decides a request: the name compared with `[approvals.groups]` members, and the
/// evidence of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// The identity compared with group members and the principal chain (an e-mail address,
    /// for instance).
    pub name: String,
    pub method: ApproverMethod,
    /// The identity provider's issuer (`Oidc`).
    pub issuer: Option<String>,
    /// The subject the provider vouched for (`Oidc`).
    pub subject: Option<String>,
    /// The console session the decision was made in: a fingerprint of its id, never the id.
    pub session: Option<String>,
    /// The groups the identity provider says the approver is in (`Oidc`); matched against
    /// `idp_groups` of the approver groups.
    pub idp_groups: Vec<String>,
}

impl Approver {
    /// An approver named by whoever runs the command (`Cli`) or holds the admin token
    /// (`AdminToken`): nothing but the name is known.
    pub fn asserted(name: impl Into<String>, method: ApproverMethod) -> Self {
        Self { name: name.into(), method, issuer: None, subject: None, session: None, idp_groups: Vec::new() }
    }

    /// What the audit event records of the approver beside the name.
    pub fn identity_json(&self) -> Value {
        let mut v = json!({ "method": self.method.as_str() });
        if let Some(o) = v.as_object_mut() {
            for (key, value) in [("issuer", &self.issuer), ("subject", &self.subject), ("session", &self.session)] {
                if let Some(value) = value {
                    o.insert(key.into(), json!(value));
                }
            }
            if !self.idp_groups.is_empty() {
                o.insert("idp_groups".into(), json!(self.idp_groups));
            }
        }
        v
    }
}

/// What [`IdentityVerifier::approver`] answers: the approver, or a short reason code and a
/// one-line message.
pub type VerifiedApprover<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Approver, (&'static str, String)>> + Send + 'a>>;

/// Verifies a token from the identity provider approvers sign in with, and says which approver
/// it names: how the admin API learns who decides without letting its own token assert it.
pub trait IdentityVerifier: Send + Sync + std::fmt::Debug {
    /// The approver `id_token` names, or why it is refused: a short code for the record, and a
    /// one-line message (never the token).
    fn approver<'a>(&'a self, id_token: &'a str) -> VerifiedApprover<'a>;
}
