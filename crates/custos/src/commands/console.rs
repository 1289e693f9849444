//! `custos console login-link --as APPROVER`: a one-time sign-in link to the console.
//!
//! Run on the gateway host against its data directory: the link is recorded in the audit log
//! (`console.link_issued`, with a digest of its token) before it is printed, and the running
//! `custos serve` finds it there. Exit codes: 0 printed, 2 usage (no `[console]`, sign-in links
//! off, a bad name).

use custos_store::Store;

use crate::cli::ConsoleCommand;
use crate::context;
use crate::Failure;

pub fn run(cmd: ConsoleCommand) -> Result<(), Failure> {
    match cmd {
        ConsoleCommand::LoginLink { location, approver, url } => login_link(&location, &approver, url),
    }
}

fn login_link(location: &crate::cli::Location, approver: &str, url: Option<String>) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let Some(console) = &config.console else {
        return Err(Failure::usage(format!(
            "{}: there is no [console] section: add one to serve the console",
            config.path.display()
        )));
    };
    if !console.local_sign_in {
        return Err(Failure::usage(format!(
            "{}: sign-in links are off ([console] local_sign_in = false, the default with [console.oidc]): \
             approvers sign in with the identity provider",
            config.path.display()
        )));
    }
    let base = url.or_else(|| console.public_url.clone()).unwrap_or_else(|| {
        let (scheme, addr) = match (console.listen, &config.admin) {
            (Some(listen), _) => (if console.tls.is_some() { "https" } else { "http" }, listen.to_string()),
            (None, Some(admin)) => ("http", admin.listen.to_string()),
            (None, None) => ("http", "127.0.0.1".to_owned()),
        };
        format!("{scheme}://{addr}")
    });
    let member = config.approvals.groups.iter().any(|g| g.members.iter().any(|m| m == approver.trim()));
    let link = custos_console::link::issue(approver, console.login_link_ttl_secs, custos_gateway::now_ms())
        .map_err(Failure::usage)?;
    let mut store = context::open_for_writing(&config)?;
    store.append(&[link.event]).map_err(Failure::runtime)?;
    println!("{}", custos_console::link::url(&base, &link.token));
    eprintln!(
        "custos: this link signs in `{}` once, within {} s; it is recorded in the audit log",
        approver.trim(),
        console.login_link_ttl_secs
    );
    if !member {
        eprintln!("custos: `{}` is a member of no [approvals.groups]: they can look, not decide", approver.trim());
    }
    Ok(())
}
