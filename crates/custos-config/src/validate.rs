//! Raw config → validated [`Config`]. Every rule lives here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use custos_core::{Agent, AgentId};

use crate::raw::RawConfig;
use crate::{
    AdminConfig, AuditConfig, Config, ConfigError, JwtSettings, Limits, PolicyConfig, ServeConfig, ServerConfig,
    ToolClasses, ToolsListMode,
};

/// Message size bounds: below 1 KiB no real MCP message fits; above 1 GiB is a memory hazard.
const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024 * 1024;

pub fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            dir.join(p)
        }
    };

    let data_dir = resolve(raw.data_dir.as_deref().unwrap_or(".custos"));

    if raw.policy.files.is_empty() {
        return Err(ConfigError::invalid(
            path,
            "policy.files",
            "no policy files: list at least one Cedar file (everything is denied without a policy)",
        ));
    }
    let policy = PolicyConfig {
        files: raw.policy.files.iter().map(|f| resolve(f)).collect(),
        schema: raw.policy.schema.as_deref().map(resolve),
        tools_list: raw.policy.tools_list.unwrap_or(ToolsListMode::Hide),
    };

    let defaults = Limits::default();
    let bounded = |key: &str, value: Option<u64>, default: usize, range: std::ops::RangeInclusive<u64>| {
        let value = value.unwrap_or(default as u64);
        if !range.contains(&value) {
            return Err(ConfigError::invalid(
                path,
                format!("limits.{key}"),
                format!("`{value}` is out of range: expected {} to {}", range.start(), range.end()),
            ));
        }
        Ok(usize::try_from(value).unwrap_or(default))
    };
    let limits = Limits {
        max_message_bytes: bounded(
            "max_message_bytes",
            raw.limits.max_message_bytes,
            defaults.max_message_bytes,
            MESSAGE_BYTES_RANGE,
        )?,
        max_in_flight: bounded("max_in_flight", raw.limits.max_in_flight, defaults.max_in_flight, 1..=4096)?,
        max_pending_requests: bounded(
            "max_pending_requests",
            raw.limits.max_pending_requests,
            defaults.max_pending_requests,
            1..=1_000_000,
        )?,
        shutdown_grace_ms: raw.limits.shutdown_grace_ms.unwrap_or(defaults.shutdown_grace_ms),
    };

    let mut agents = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, a) in raw.agents.into_iter().enumerate() {
        let key = format!("agents[{i}].id");
        if a.id.trim().is_empty() {
            return Err(ConfigError::invalid(path, key, "an agent id cannot be empty"));
        }
        if !seen.insert(a.id.clone()) {
            return Err(ConfigError::invalid(path, key, format!("duplicate agent `{}`", a.id)));
        }
        if a.owner.trim().is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("agents[{i}].owner"),
                format!("agent `{}` needs an owner: every agent is accountable to a human or team", a.id),
            ));
        }
        agents.push(Agent { id: AgentId(a.id), owner: a.owner, purpose: a.purpose, groups: a.groups });
    }

    let default_agent = match raw.default_agent {
        Some(id) if !seen.contains(&id) => {
            return Err(ConfigError::invalid(
                path,
                "default_agent",
                format!("unknown agent `{id}`: declare it under [[agents]]"),
            ));
        }
        other => other.map(AgentId),
    };

    let mut servers = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in raw.servers.into_iter().enumerate() {
        if s.name.is_empty() || s.name.contains('/') || s.name.contains("__") {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].name"),
                format!("`{}` is not a server name: expected a non-empty name without `/` or `__`", s.name),
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].name"),
                format!("duplicate server `{}`", s.name),
            ));
        }
        if s.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].command"),
                "an empty command: give the program and its arguments",
            ));
        }
        if s.command.is_some() && s.url.is_some() {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].url"),
                "a server has a `command` or a `url`, not both",
            ));
        }
        if let Some(url) = &s.url {
            if !url.starts_with("http://") {
                return Err(ConfigError::invalid(
                    path,
                    format!("servers[{i}].url"),
                    format!("`{url}` is not supported: expected an http:// url (put TLS in front of the gateway, not behind it, for now)"),
                ));
            }
        }
        servers.push(ServerConfig {
            name: s.name,
            command: s.command,
            url: s.url,
            headers: s.headers.into_iter().collect(),
            classes: ToolClasses::new(s.trust_annotations, s.tools),
        });
    }

    let serve = serve(path, &dir, raw.serve.unwrap_or_default())?;
    let admin = match raw.admin {
        None => None,
        Some(a) => {
            let text = a.listen.unwrap_or_else(|| "127.0.0.1:9090".to_owned());
            let listen = text.parse().map_err(|_| {
                ConfigError::invalid(path, "admin.listen", format!("`{text}` is not an address: expected IP:PORT"))
            })?;
            Some(AdminConfig { listen, token_file: resolve(&a.token_file) })
        }
    };
    let audit = AuditConfig { record_arguments: raw.audit.record_arguments, record_results: raw.audit.record_results };
    Ok(Config { path: path.to_owned(), data_dir, policy, audit, limits, agents, default_agent, servers, serve, admin })
}

fn serve(path: &Path, dir: &Path, raw: crate::raw::RawServe) -> Result<ServeConfig, ConfigError> {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listen: std::net::SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::invalid(path, "serve.listen", format!("`{listen_text}` is not an address: expected IP:PORT"))
    })?;
    let public_url = raw.public_url.map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(path, "serve.public_url", format!("`{url}` is not an http(s) url")));
        }
    }
    let max_sessions = raw.max_sessions.unwrap_or(256);
    if !(1..=100_000).contains(&max_sessions) {
        return Err(ConfigError::invalid(
            path,
            "serve.max_sessions",
            format!("`{max_sessions}` is out of range: expected 1 to 100000"),
        ));
    }
    let max_concurrent = raw.max_concurrent_per_agent.unwrap_or(32);
    if !(1..=100_000).contains(&max_concurrent) {
        return Err(ConfigError::invalid(
            path,
            "serve.max_concurrent_per_agent",
            format!("`{max_concurrent}` is out of range: expected 1 to 100000"),
        ));
    }
    let request_timeout_ms = raw.request_timeout_ms.unwrap_or(60_000);
    if request_timeout_ms == 0 {
        return Err(ConfigError::invalid(path, "serve.request_timeout_ms", "`0` is out of range: expected at least 1"));
    }
    let jwt = raw.jwt.map(|j| JwtSettings {
        issuer: j.issuer,
        jwks_file: dir.join(j.jwks_file),
        audience: j.audience,
        algorithms: j.algorithms,
        leeway_secs: j.leeway_secs,
        agent_claim: j.agent_claim,
        principal_claim: j.principal_claim,
        required_scopes: j.required_scopes,
    });
    Ok(ServeConfig {
        jwt,
        listen,
        public_url,
        allowed_origins: raw.allowed_origins,
        authorization_servers: raw.authorization_servers,
        max_sessions: usize::try_from(max_sessions).unwrap_or(256),
        max_concurrent_per_agent: usize::try_from(max_concurrent).unwrap_or(32),
        request_timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError, ToolsListMode};
    use std::path::Path;

    const GOOD: &str = r#"
default_agent = "reader"
[policy]
files = ["policies/readonly.cedar"]
[[agents]]
id = "reader"
owner = "alice@example.com"
purpose = "reads"
groups = ["readers"]
[[servers]]
name = "sample"
trust_annotations = true
tools = { "delete_*" = "privileged" }
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/custos/custos.toml"), text)
    }

    #[test]
    fn a_good_config_resolves_paths_and_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/custos/.custos"));
        assert_eq!(c.policy.files, vec![Path::new("/etc/custos/policies/readonly.cedar").to_path_buf()]);
        assert_eq!(c.policy.tools_list, ToolsListMode::Hide);
        assert_eq!(c.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(c.agent("reader").unwrap().groups, vec!["readers"]);
        assert!(c.server("sample").unwrap().classes.trust_annotations);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key_and_line() {
        let err = load(&format!("{GOOD}\n[limits]\nmax_mesage_bytes = 5\n")).unwrap_err().to_string();
        assert!(err.starts_with("/etc/custos/custos.toml:"), "{err}");
        assert!(err.contains("max_mesage_bytes"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!(line, 16, "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        for (text, key) in [
            (GOOD.replace("default_agent = \"reader\"", "default_agent = \"nobody\""), "`default_agent`"),
            (format!("{GOOD}\n[[agents]]\nid = \"reader\"\nowner = \"x\"\npurpose = \"y\"\n"), "`agents[1].id`"),
            (format!("{GOOD}\n[limits]\nmax_message_bytes = 10\n"), "`limits.max_message_bytes`"),
            (GOOD.replace("files = [\"policies/readonly.cedar\"]", "files = []"), "`policy.files`"),
            (format!("{GOOD}\n[[servers]]\nname = \"a/b\"\n"), "`servers[1].name`"),
            (GOOD.replace("owner = \"alice@example.com\"", "owner = \"\""), "`agents[0].owner`"),
            (format!("{GOOD}\n[serve]\nlisten = \"localhost\"\n"), "`serve.listen`"),
            (format!("{GOOD}\n[serve]\nmax_sessions = 0\n"), "`serve.max_sessions`"),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn a_bad_class_is_a_parse_error() {
        let err = load(&GOOD.replace("\"privileged\"", "\"admin\"")).unwrap_err().to_string();
        assert!(err.contains("admin"), "{err}");
    }

    #[test]
    fn a_missing_file_says_how_to_fix_it() {
        let err = Config::load(Path::new("/nonexistent/custos.toml")).unwrap_err().to_string();
        assert!(err.contains("custos init"), "{err}");
    }
}
