//! Raw config → validated [`Config`]. Every rule lives here; those of `[detection]` and of
//! `[[servers]] flows` in `validate/detection.rs`.

mod detection;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use custos_core::{Agent, AgentId};

use crate::raw::RawConfig;
use crate::{
    AdminConfig, AuditConfig, ClientAuth, Config, ConfigError, CredentialSettings, InjectTarget, Injection,
    JwtSettings, Limits, PolicyConfig, SecretConfig, SecretSource, ServeConfig, ServerConfig, SigningAlgorithm,
    TlsSettings, TokenPer, TokenSettings, ToolClasses, ToolsListMode,
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
        max_argument_values: bounded(
            "max_argument_values",
            raw.limits.max_argument_values,
            defaults.max_argument_values,
            1..=custos_core::MAX_ARGUMENT_VALUES as u64,
        )?,
    };

    let mut agents = Vec::new();
    let mut spiffe_ids: Vec<(String, AgentId)> = Vec::new();
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
        if let Some(text) = &a.spiffe_id {
            let key = format!("agents[{i}].spiffe_id");
            let id = custos_auth::SpiffeId::parse(text).map_err(|e| {
                ConfigError::invalid(path, &key, format!("`{}` for agent `{}`: {e}", text.escape_debug(), a.id))
            })?;
            if id.path().is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("`{text}` names a trust domain, not a workload: add the agent's path"),
                ));
            }
            let id = id.to_string();
            if let Some((_, other)) = spiffe_ids.iter().find(|(known, _)| *known == id) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("`{id}` is the spiffe id of both agent `{other}` and agent `{}`", a.id),
                ));
            }
            spiffe_ids.push((id, AgentId(a.id.clone())));
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

    // Before the servers: their injections name secrets, their tokens default to these settings.
    let credentials = credentials(path, raw.credentials, &data_dir, resolve)?;
    let secrets = secrets(path, raw.secrets, resolve)?;

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
        let https = s.url.as_deref().is_some_and(|u| u.starts_with("https://"));
        if let Some(url) = &s.url {
            if !(https || url.starts_with("http://")) {
                return Err(ConfigError::invalid(
                    path,
                    format!("servers[{i}].url"),
                    format!("`{url}` is not supported: expected an http:// or https:// url"),
                ));
            }
        }
        let tls = upstream_tls(path, i, &s, https, resolve)?;
        let remote = s.url.is_some();
        let owner = format!("server `{}`", s.name);
        let static_headers: Vec<&str> = s.headers.keys().map(String::as_str).collect();
        let inject = injections(path, &format!("servers[{i}]"), &owner, remote, &static_headers, &s.inject, &secrets)?;
        let token = token(path, i, &s, &inject, credentials.token_ttl_secs)?;
        let flows = detection::flows(path, i, &s.name, s.flows)?;
        servers.push(ServerConfig {
            name: s.name,
            command: s.command,
            url: s.url,
            headers: s.headers.into_iter().collect(),
            tls,
            classes: ToolClasses::new(s.trust_annotations, s.tools),
            inject,
            token,
            flows,
        });
    }

    // After the servers: an api's name must not be a server's.
    let apis = crate::apis::apis(path, &dir, raw.apis, &secrets, &mut names, credentials.token_ttl_secs)?;

    let serve = serve(path, &dir, raw.serve.unwrap_or_default())?;
    let admin = match raw.admin {
        None => None,
        Some(a) => {
            let text = a.listen.unwrap_or_else(|| "127.0.0.1:9090".to_owned());
            let listen = text.parse().map_err(|_| {
                ConfigError::invalid(path, "admin.listen", format!("`{text}` is not an address: expected IP:PORT"))
            })?;
            let public_url = a.public_url.map(|u| u.trim_end_matches('/').to_owned());
            if let Some(url) = &public_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::invalid(
                        path,
                        "admin.public_url",
                        format!("`{url}` is not an http:// or https:// url"),
                    ));
                }
            }
            Some(AdminConfig {
                listen,
                token_file: resolve(&a.token_file),
                public_url,
                assert_approvers: a.assert_approvers,
            })
        }
    };
    let console = match raw.console {
        None => None,
        Some(c) => Some(console(path, c, admin.as_ref(), &resolve)?),
    };
    let approvals = approvals(path, raw.approvals, admin.as_ref(), &resolve)?;
    // After the approvals and the servers: replay holds and limits name them.
    let detection = detection::detection(path, raw.detection, &approvals, &servers)?;
    let checkpoints = match raw.audit.checkpoints {
        None => None,
        Some(c) => {
            let every_events = ranged(path, "audit.checkpoints.every_events", c.every_events, 1000, 1..=10_000_000)?;
            let every_secs = ranged(path, "audit.checkpoints.every_secs", c.every_secs, 60, 1..=86_400)?;
            Some(crate::CheckpointSettings {
                every_events,
                every_secs,
                dir: c.dir.as_deref().map_or_else(|| data_dir.join("checkpoints"), &resolve),
                publish_file: c.publish_file.as_deref().map(&resolve),
                publish_url: c
                    .publish_url
                    .map(|url| http_url(path, "audit.checkpoints.publish_url", &url).map(|()| url))
                    .transpose()?,
            })
        }
    };
    let telemetry = crate::telemetry::telemetry(path, raw.telemetry, resolve)?;
    let store = crate::store::store(path, raw.store, resolve)?;
    let audit = AuditConfig {
        record_arguments: raw.audit.record_arguments,
        record_results: raw.audit.record_results,
        checkpoints,
        sinks: crate::sinks::sinks(path, raw.audit.sinks, resolve)?,
    };
    Ok(Config {
        path: path.to_owned(),
        data_dir,
        policy,
        audit,
        limits,
        agents,
        default_agent,
        servers,
        apis,
        serve,
        admin,
        console,
        approvals,
        spiffe_ids,
        credentials,
        secrets,
        detection,
        telemetry,
        store,
    })
}

/// Bounds of `rotate_after_days` and `unused_after_days`: at least a day, at most a century, so
/// that the days in seconds or milliseconds never overflow.
const DAYS_RANGE: std::ops::RangeInclusive<u64> = 1..=36_500;
/// Bounds of every `token_ttl_secs` / `ttl_secs`: minted tokens are short-lived.
const TOKEN_TTL_RANGE: std::ops::RangeInclusive<u64> = 1..=crate::MAX_TOKEN_TTL_SECS;

/// `value` if `range` holds it, else an error naming `key`.
pub(crate) fn in_range(
    path: &Path,
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            path,
            key,
            format!("`{value}` is out of range: expected {} to {}", range.start(), range.end()),
        ))
    }
}

/// `[credentials]`, with its defaults; the key file defaults to `<data_dir>/custos.key`.
fn credentials(
    path: &Path,
    raw: crate::raw::RawCredentials,
    data_dir: &Path,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<CredentialSettings, ConfigError> {
    let key_file = match raw.key_file {
        None => data_dir.join("custos.key"),
        Some(f) if f.trim().is_empty() => {
            return Err(ConfigError::invalid(path, "credentials.key_file", "a file path cannot be empty"))
        }
        Some(f) => resolve(&f),
    };
    let algorithm = match raw.algorithm.as_deref() {
        None | Some("EdDSA") => SigningAlgorithm::EdDSA,
        Some("ES256") => SigningAlgorithm::ES256,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                "credentials.algorithm",
                format!("`{}` is not supported: expected `EdDSA` or `ES256`", other.escape_debug()),
            ))
        }
    };
    if let Some(issuer) = &raw.issuer {
        if issuer.is_empty() || issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::invalid(
                path,
                "credentials.issuer",
                format!("`{}` is not an issuer: expected a non-empty name without spaces", issuer.escape_debug()),
            ));
        }
    }
    Ok(CredentialSettings {
        key_file,
        algorithm,
        issuer: raw.issuer,
        token_ttl_secs: in_range(
            path,
            "credentials.token_ttl_secs",
            raw.token_ttl_secs.unwrap_or(crate::DEFAULT_TOKEN_TTL_SECS),
            TOKEN_TTL_RANGE,
        )?,
        rotate_after_days: in_range(
            path,
            "credentials.rotate_after_days",
            raw.rotate_after_days.unwrap_or(crate::DEFAULT_ROTATE_AFTER_DAYS),
            DAYS_RANGE,
        )?,
        unused_after_days: in_range(
            path,
            "credentials.unused_after_days",
            raw.unused_after_days.unwrap_or(crate::DEFAULT_UNUSED_AFTER_DAYS),
            DAYS_RANGE,
        )?,
    })
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[secrets.NAME]`, sorted by name (the map's order). Only where each value comes from is
/// checked: nothing here reads an environment variable or a file.
fn secrets(
    path: &Path,
    raw: std::collections::BTreeMap<String, crate::raw::RawSecret>,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<Vec<SecretConfig>, ConfigError> {
    let mut secrets = Vec::new();
    for (name, s) in raw {
        let valid = (1..=64).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(ConfigError::invalid(
                path,
                "secrets",
                format!(
                    "`{}` is not a secret name: expected 1 to 64 letters, digits, `_`, `.` or `-`",
                    name.escape_debug()
                ),
            ));
        }
        let key = |field: &str| format!("secrets.{name}.{field}");
        let store = s.store == Some(true);
        let source = match (s.env, s.file, store) {
            (Some(var), None, false) => {
                if !is_env_name(&var) {
                    return Err(ConfigError::invalid(
                        path,
                        key("env"),
                        format!(
                            "secret `{name}`: `{}` is not an environment variable name: expected letters, digits and `_`, not starting with a digit",
                            var.escape_debug()
                        ),
                    ));
                }
                SecretSource::Env(var)
            }
            (None, Some(file), false) => {
                if file.trim().is_empty() {
                    return Err(ConfigError::invalid(path, key("file"), "a file path cannot be empty"));
                }
                SecretSource::File(resolve(&file))
            }
            (None, None, true) => SecretSource::Store,
            (None, None, false) => {
                return Err(ConfigError::invalid(
                    path,
                    format!("secrets.{name}"),
                    format!("secret `{name}` has no source: give one of `env`, `file` or `store = true`"),
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    format!("secrets.{name}"),
                    format!(
                        "secret `{name}` has more than one source: give exactly one of `env`, `file` or `store = true`"
                    ),
                ))
            }
        };
        let rotate_after_days =
            s.rotate_after_days.map(|days| in_range(path, &key("rotate_after_days"), days, DAYS_RANGE)).transpose()?;
        secrets.push(SecretConfig { name, source, rotate_after_days });
    }
    Ok(secrets)
}

/// Headers the transport sets itself; a secret or token in one would break or hijack the
/// protocol. Lowercase.
const TRANSPORT_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "accept",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// Whether `name` is an HTTP field name (RFC 9110 `token`).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// A header a secret or token is written to: a valid name, not the transport's, and not already
/// set by someone else. `taken` holds (lowercase name, who sets it). `owner` names the upstream
/// in messages: "server `crm`".
fn check_header(path: &Path, key: &str, owner: &str, name: &str, taken: &[(String, &str)]) -> Result<(), ConfigError> {
    if !is_header_name(name) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("{owner}: `{}` is not an http header name", name.escape_debug()),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if TRANSPORT_HEADERS.contains(&lower.as_str()) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("{owner}: `{name}` is a header the transport sets itself: choose another"),
        ));
    }
    if let Some((_, by)) = taken.iter().find(|(t, _)| *t == lower) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("{owner}: header `{name}` is already set by {by} (header names ignore case)"),
        ));
    }
    Ok(())
}

/// A value template: `{}` exactly once, where `what` goes; no control characters (a header value
/// cannot hold a line break).
fn check_format(path: &Path, key: &str, owner: &str, format: &str, what: &str) -> Result<(), ConfigError> {
    if format.matches("{}").count() != 1 {
        return Err(ConfigError::invalid(
            path,
            key,
            format!(
                "{owner}: format `{}` must hold `{{}}` exactly once, where the {what} goes (e.g. `Bearer {{}}`)",
                format.escape_debug()
            ),
        ));
    }
    if format.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("{owner}: format `{}` holds a control character", format.escape_debug()),
        ));
    }
    Ok(())
}

/// `[[servers.inject]]` of a server, or `[[apis.inject]]` of an api, whose key is `prefix`
/// (`servers[1]`) and whose messages name `owner` ("server `crm`"): each names a declared secret
/// and exactly one target that suits the transport (headers and query parameters for a
/// `remote` upstream, environment variables for a process), and no two write the same place,
/// nor one of the `static_headers` sent anyway.
pub(crate) fn injections(
    path: &Path,
    prefix: &str,
    owner: &str,
    remote: bool,
    static_headers: &[&str],
    raw: &[crate::raw::RawInjection],
    secrets: &[SecretConfig],
) -> Result<Vec<Injection>, ConfigError> {
    let mut headers: Vec<(String, &str)> =
        static_headers.iter().map(|h| (h.to_ascii_lowercase(), "a static `headers` key")).collect();
    let mut queries: BTreeSet<String> = BTreeSet::new();
    let mut envs: BTreeSet<String> = BTreeSet::new();
    let mut inject = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("{prefix}.inject[{j}].{field}");
        if !secrets.iter().any(|d| d.name == r.secret) {
            return Err(ConfigError::invalid(
                path,
                key("secret"),
                format!("{owner}: unknown secret `{0}`: declare it as `[secrets.{0}]`", r.secret.escape_debug()),
            ));
        }
        let target = match (&r.header, &r.query, &r.env) {
            (Some(h), None, None) => InjectTarget::Header(h.clone()),
            (None, Some(q), None) => InjectTarget::Query(q.clone()),
            (None, None, Some(e)) => InjectTarget::Env(e.clone()),
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    format!("{prefix}.inject[{j}]"),
                    format!("{owner}: an injection needs exactly one target: `header`, `query` or `env`"),
                ))
            }
        };
        match &target {
            InjectTarget::Header(_) | InjectTarget::Query(_) if !remote => {
                let field = if matches!(target, InjectTarget::Header(_)) { "header" } else { "query" };
                return Err(ConfigError::invalid(
                    path,
                    key(field),
                    format!(
                        "{owner}: `inject.{field}` needs a remote server (`url`); a stdio server gets secrets as `env`"
                    ),
                ));
            }
            InjectTarget::Env(_) if remote => {
                return Err(ConfigError::invalid(
                    path,
                    key("env"),
                    format!(
                        "{owner}: `inject.env` needs a stdio server (`command`); a remote server gets secrets as `header` or `query`"
                    ),
                ));
            }
            InjectTarget::Header(name) => {
                check_header(path, &key("header"), owner, name, &headers)?;
                headers.push((name.to_ascii_lowercase(), "another `inject`"));
            }
            InjectTarget::Query(name) => {
                let url_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '-');
                if name.is_empty() || !name.chars().all(url_safe) {
                    return Err(ConfigError::invalid(
                        path,
                        key("query"),
                        format!(
                            "{owner}: `{}` is not a query parameter name: expected letters, digits, `_`, `.`, `~` or `-`",
                            name.escape_debug()
                        ),
                    ));
                }
                if !queries.insert(name.clone()) {
                    return Err(ConfigError::invalid(
                        path,
                        key("query"),
                        format!("{owner}: query parameter `{name}` is injected twice"),
                    ));
                }
            }
            InjectTarget::Env(name) => {
                if !is_env_name(name) {
                    return Err(ConfigError::invalid(
                        path,
                        key("env"),
                        format!(
                            "{owner}: `{}` is not an environment variable name: expected letters, digits and `_`, not starting with a digit",
                            name.escape_debug()
                        ),
                    ));
                }
                if !envs.insert(name.clone()) {
                    return Err(ConfigError::invalid(
                        path,
                        key("env"),
                        format!("{owner}: environment variable `{name}` is injected twice"),
                    ));
                }
            }
        }
        let format = r.format.clone().unwrap_or_else(|| "{}".to_owned());
        check_format(path, &key("format"), owner, &format, "secret")?;
        inject.push(Injection { secret: r.secret.clone(), target, format });
    }
    Ok(inject)
}

/// `[servers.token]` of server `i`: remote servers only, its header clear of the static headers
/// and injected ones.
fn token(
    path: &Path,
    i: usize,
    s: &crate::raw::RawServer,
    inject: &[Injection],
    default_ttl_secs: u64,
) -> Result<Option<TokenSettings>, ConfigError> {
    let Some(t) = &s.token else { return Ok(None) };
    let Some(url) = &s.url else {
        return Err(ConfigError::invalid(
            path,
            format!("servers[{i}].token"),
            format!("server `{}`: `token` needs a remote server (`url`)", s.name),
        ));
    };
    let owner = format!("server `{}`", s.name);
    token_settings(path, &format!("servers[{i}].token"), &owner, t, url, s.headers.keys(), inject, default_ttl_secs)
        .map(Some)
}

/// A `token` table (`[servers.token]`, `[apis.token]`) at `prefix` of `owner`, whose requests go
/// to `url` (the default audience) with `static_headers` and `inject`: the token's header must
/// be clear of both.
#[expect(clippy::too_many_arguments, reason = "the parts of one table's context, named apart")]
pub(crate) fn token_settings<'a>(
    path: &Path,
    prefix: &str,
    owner: &str,
    t: &crate::raw::RawToken,
    url: &str,
    static_headers: impl Iterator<Item = &'a String>,
    inject: &[Injection],
    default_ttl_secs: u64,
) -> Result<TokenSettings, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    let audience = t.audience.clone().unwrap_or_else(|| url.to_owned());
    if audience.trim().is_empty() || audience.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            path,
            key("audience"),
            format!("{owner}: `{}` is not an audience", audience.escape_debug()),
        ));
    }
    let per = match t.per.as_deref() {
        None | Some("call") => TokenPer::Call,
        Some("run") => TokenPer::Run,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                key("per"),
                format!("{owner}: `{}` is not supported: expected `call` or `run`", other.escape_debug()),
            ))
        }
    };
    let ttl_secs = in_range(path, &key("ttl_secs"), t.ttl_secs.unwrap_or(default_ttl_secs), TOKEN_TTL_RANGE)?;
    let header = t.header.clone().unwrap_or_else(|| "Authorization".to_owned());
    let taken: Vec<(String, &str)> = static_headers
        .map(|h| (h.to_ascii_lowercase(), "a static `headers` key"))
        .chain(inject.iter().filter_map(|inj| match &inj.target {
            InjectTarget::Header(h) => Some((h.to_ascii_lowercase(), "an `inject`")),
            InjectTarget::Query(_) | InjectTarget::Env(_) => None,
        }))
        .collect();
    check_header(path, &key("header"), owner, &header, &taken)?;
    let format = t.format.clone().unwrap_or_else(|| "Bearer {}".to_owned());
    check_format(path, &key("format"), owner, &format, "token")?;
    Ok(TokenSettings { audience, per, ttl_secs, header, format })
}

/// Whether `url` is `http://` or `https://` with a host; else an error naming `key`.
pub(crate) fn http_url(path: &Path, key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        return Err(ConfigError::invalid(path, key, format!("`{url}` is not an http:// or https:// url")));
    }
    Ok(())
}

/// `value` (or `default`), if within `range`; else an error naming `key`.
pub(crate) fn ranged(
    path: &Path,
    key: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            path,
            key,
            format!("`{value}` is out of range: expected {} to {}", range.start(), range.end()),
        ))
    }
}

/// Bounds of `[approvals]`: a held call waits at most an hour; a request lasts 1 s to 7 days.
const APPROVAL_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3_600_000;
const APPROVAL_EXPIRY_RANGE: std::ops::RangeInclusive<u64> = 1_000..=604_800_000;

/// `[approvals]` and its groups.
fn approvals(
    path: &Path,
    raw: crate::raw::RawApprovals,
    admin: Option<&AdminConfig>,
    resolve: &impl Fn(&str) -> PathBuf,
) -> Result<crate::ApprovalSettings, ConfigError> {
    let ranged = |key: &str, value, default, range| ranged(path, &format!("approvals.{key}"), value, default, range);
    let timeout_ms = ranged("timeout_ms", raw.timeout_ms, crate::DEFAULT_APPROVAL_TIMEOUT_MS, APPROVAL_TIMEOUT_RANGE)?;
    let expiry_ms = ranged("expiry_ms", raw.expiry_ms, crate::DEFAULT_APPROVAL_EXPIRY_MS, APPROVAL_EXPIRY_RANGE)?;
    let mut groups = Vec::new();
    for (name, g) in raw.groups {
        let key = |field: &str| format!("approvals.groups.{name}.{field}");
        if name.trim().is_empty() {
            return Err(ConfigError::invalid(path, "approvals.groups", "an approver group needs a name"));
        }
        if g.members.is_empty() && g.idp_groups.is_empty() {
            return Err(ConfigError::invalid(
                path,
                key("members"),
                format!("group `{name}` has no members and no `idp_groups`: nobody could approve its calls"),
            ));
        }
        let blank = |m: &String| m.trim().is_empty() || m.chars().any(char::is_control);
        if let Some(bad) = g.idp_groups.iter().find(|m| blank(m)) {
            return Err(ConfigError::invalid(
                path,
                key("idp_groups"),
                format!("`{}` is not a group name", bad.escape_debug()),
            ));
        }
        if let Some(bad) = g.members.iter().find(|m| blank(m)) {
            return Err(ConfigError::invalid(
                path,
                key("members"),
                format!("`{}` is not an approver identity", bad.escape_debug()),
            ));
        }
        let webhook = match (g.webhook_url, g.webhook_secret_file) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::invalid(path, key("webhook_secret_file"), "a secret without a `webhook_url`"))
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    path,
                    key("webhook_secret_file"),
                    "required with `webhook_url`: notifications are signed with it",
                ))
            }
            (Some(url), Some(secret)) => {
                let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return Err(ConfigError::invalid(
                        path,
                        key("webhook_url"),
                        format!("`{url}` is not supported: expected an http:// or https:// url"),
                    ));
                }
                Some(crate::Webhook { url, secret_file: resolve(&secret) })
            }
        };
        groups.push(crate::ApproverGroup { name, members: g.members, idp_groups: g.idp_groups, webhook });
    }
    let admin_url = admin.map(|a| a.public_url.clone().unwrap_or_else(|| format!("http://{}", a.listen)));
    Ok(crate::ApprovalSettings {
        timeout_ms,
        expiry_ms,
        allow_principal_approval: raw.allow_principal_approval,
        groups,
        admin_url,
        console_url: None,
    })
}

/// Bounds of `[console]`: sessions idle 1 minute to a day, last 5 minutes to 7 days; sign-in
/// links last 10 seconds to an hour.
const CONSOLE_IDLE_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400;
const CONSOLE_MAX_RANGE: std::ops::RangeInclusive<u64> = 300..=604_800;
const LOGIN_LINK_RANGE: std::ops::RangeInclusive<u64> = 10..=3_600;

/// `[console]`, `[console.tls]` and `[console.oidc]`.
fn console(
    path: &Path,
    raw: crate::raw::RawConsole,
    admin: Option<&AdminConfig>,
    resolve: &impl Fn(&str) -> PathBuf,
) -> Result<crate::ConsoleConfig, ConfigError> {
    let listen = match raw.listen {
        None if admin.is_none() => {
            return Err(ConfigError::invalid(
                path,
                "console.listen",
                "required without [admin]: the console is served on its own listener or on the admin one",
            ))
        }
        None => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ConfigError::invalid(path, "console.listen", format!("`{text}` is not an address: expected IP:PORT"))
        })?),
    };
    let public_url = raw.public_url.map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &public_url {
        http_url(path, "console.public_url", url)?;
    }
    let ranged = |key: &str, value, default, range| ranged(path, &format!("console.{key}"), value, default, range);
    let idle = ranged(
        "session_idle_timeout_secs",
        raw.session_idle_timeout_secs,
        crate::DEFAULT_CONSOLE_IDLE_SECS,
        CONSOLE_IDLE_RANGE,
    )?;
    let max = ranged("session_max_secs", raw.session_max_secs, crate::DEFAULT_CONSOLE_MAX_SECS, CONSOLE_MAX_RANGE)?;
    if idle > max {
        return Err(ConfigError::invalid(
            path,
            "console.session_idle_timeout_secs",
            format!("`{idle}` is longer than `session_max_secs` ({max})"),
        ));
    }
    let link =
        ranged("login_link_ttl_secs", raw.login_link_ttl_secs, crate::DEFAULT_LOGIN_LINK_TTL_SECS, LOGIN_LINK_RANGE)?;
    let oidc = match raw.oidc {
        None => None,
        Some(o) => {
            let issuer = o.issuer.trim().to_owned();
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
            if !(issuer.starts_with("https://") || loopback.iter().any(|l| issuer.starts_with(l))) {
                return Err(ConfigError::invalid(
                    path,
                    "console.oidc.issuer",
                    format!("`{issuer}` is not supported: expected an https:// url (or http:// on loopback)"),
                ));
            }
            if o.client_id.trim().is_empty() {
                return Err(ConfigError::invalid(path, "console.oidc.client_id", "must not be empty"));
            }
            let mut scopes = o.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
            if !scopes.iter().any(|s| s == "openid") {
                scopes.insert(0, "openid".into());
            }
            if let Some(bad) =
                scopes.iter().find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(ConfigError::invalid(
                    path,
                    "console.oidc.scopes",
                    format!("`{}` is not a scope", bad.escape_debug()),
                ));
            }
            Some(crate::OidcSettings {
                issuer,
                client_id: o.client_id,
                client_secret_file: o.client_secret_file.as_deref().map(resolve),
                scopes,
                identity_claim: o.identity_claim.unwrap_or_else(|| "email".into()),
                groups_claim: o.groups_claim.unwrap_or_else(|| "groups".into()),
                ca_file: o.ca_file.as_deref().map(resolve),
            })
        }
    };
    let local_sign_in = raw.local_sign_in.unwrap_or(oidc.is_none());
    Ok(crate::ConsoleConfig {
        listen,
        public_url,
        session_idle_timeout_secs: idle,
        session_max_secs: max,
        login_link_ttl_secs: link,
        local_sign_in,
        tls: raw.tls.map(|t| (resolve(&t.cert_file), resolve(&t.key_file))),
        oidc,
    })
}

/// `ca_file`, `client_cert_file` and `client_key_file` of server `i`: for `https://` urls only,
/// and the certificate and its key together.
fn upstream_tls(
    path: &Path,
    i: usize,
    s: &crate::raw::RawServer,
    https: bool,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<crate::UpstreamTls, ConfigError> {
    for (key, set) in [
        ("ca_file", s.ca_file.is_some()),
        ("client_cert_file", s.client_cert_file.is_some()),
        ("client_key_file", s.client_key_file.is_some()),
    ] {
        if set && !https {
            let why = match (&s.command, &s.url) {
                (Some(_), _) => format!("server `{}` is started with a `command`, not called over https", s.name),
                (None, Some(url)) => format!("`{url}` is plain http, not https"),
                (None, None) => format!("server `{}` has no `url`", s.name),
            };
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].{key}"),
                format!("`{key}` applies to https:// urls only: {why}"),
            ));
        }
    }
    let client_identity = match (&s.client_cert_file, &s.client_key_file) {
        (Some(cert), Some(key)) => Some((resolve(cert), resolve(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].client_key_file"),
                "a `client_cert_file` needs its `client_key_file`",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                path,
                format!("servers[{i}].client_cert_file"),
                "a `client_key_file` needs its `client_cert_file`",
            ))
        }
    };
    Ok(crate::UpstreamTls { ca_file: s.ca_file.as_deref().map(&resolve), client_identity })
}

/// `[serve.jwt]`'s key source: exactly one of `jwks_file` and `jwks_url`, and the settings that
/// only make sense with a url.
fn jwks_source(path: &Path, dir: &Path, j: &crate::raw::RawJwt) -> Result<crate::JwksSource, ConfigError> {
    let url = match (&j.jwks_file, &j.jwks_url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(path, "serve.jwt.jwks_url", "give `jwks_file` or `jwks_url`, not both"))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                path,
                "serve.jwt",
                "the identity provider's keys are missing: give `jwks_file` or `jwks_url`",
            ))
        }
        (Some(file), None) => {
            for (key, set) in
                [("jwks_ca_file", j.jwks_ca_file.is_some()), ("jwks_refresh_secs", j.jwks_refresh_secs.is_some())]
            {
                if set {
                    return Err(ConfigError::invalid(
                        path,
                        format!("serve.jwt.{key}"),
                        format!("`{key}` applies to `jwks_url` only, not to a `jwks_file`"),
                    ));
                }
            }
            return Ok(crate::JwksSource::File(dir.join(file)));
        }
        (None, Some(url)) => url,
    };
    if !url.starts_with("https://") {
        match url.strip_prefix("http://").map(url_host) {
            Some(host) if is_loopback(host) => {}
            Some(_) => {
                return Err(ConfigError::invalid(
                    path,
                    "serve.jwt.jwks_url",
                    format!(
                        "`{url}` is plain http to a host that is not loopback: anyone on the way could swap the keys; use https:// (http:// is accepted for 127.0.0.1, ::1 and localhost only)"
                    ),
                ))
            }
            None => {
                return Err(ConfigError::invalid(
                    path,
                    "serve.jwt.jwks_url",
                    format!("`{url}` is not supported: expected an https:// url"),
                ))
            }
        }
        if j.jwks_ca_file.is_some() {
            return Err(ConfigError::invalid(
                path,
                "serve.jwt.jwks_ca_file",
                format!("`jwks_ca_file` applies to https:// urls only: `{url}` is plain http"),
            ));
        }
    }
    let refresh_secs = j.jwks_refresh_secs.unwrap_or(crate::DEFAULT_JWKS_REFRESH_SECS);
    if !(30..=86_400).contains(&refresh_secs) {
        return Err(ConfigError::invalid(
            path,
            "serve.jwt.jwks_refresh_secs",
            format!("`{refresh_secs}` is out of range: expected 30 to 86400"),
        ));
    }
    Ok(crate::JwksSource::Url { url: url.clone(), ca_file: j.jwks_ca_file.as_ref().map(|f| dir.join(f)), refresh_secs })
}

/// The host of `rest`, a url after its `scheme://`: without user info, port, path or brackets.
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
    // The default share follows what one agent needs, not the size of the gateway: raising
    // `max_sessions` for more agents does not give each of them more.
    let per_agent_default = DEFAULT_MAX_SESSIONS_PER_AGENT.min(max_sessions);
    let max_sessions_per_agent = in_range(
        path,
        "serve.max_sessions_per_agent",
        raw.max_sessions_per_agent.unwrap_or(per_agent_default),
        1..=max_sessions,
    )?;
    let session_idle_timeout_ms = in_range(
        path,
        "serve.session_idle_timeout_ms",
        raw.session_idle_timeout_ms.unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT_MS),
        SESSION_IDLE_TIMEOUT_RANGE,
    )?;
    let max_concurrent = raw.max_concurrent_per_agent.unwrap_or(32);
    if !(1..=100_000).contains(&max_concurrent) {
        return Err(ConfigError::invalid(
            path,
            "serve.max_concurrent_per_agent",
            format!("`{max_concurrent}` is out of range: expected 1 to 100000"),
        ));
    }
    let max_subscriptions = raw.max_subscriptions_per_agent.unwrap_or(16);
    if !(1..=10_000).contains(&max_subscriptions) {
        return Err(ConfigError::invalid(
            path,
            "serve.max_subscriptions_per_agent",
            format!("`{max_subscriptions}` is out of range: expected 1 to 10000"),
        ));
    }
    let request_timeout_ms = raw.request_timeout_ms.unwrap_or(60_000);
    if request_timeout_ms == 0 {
        return Err(ConfigError::invalid(path, "serve.request_timeout_ms", "`0` is out of range: expected at least 1"));
    }
    let max_connections =
        in_range(path, "serve.max_connections", raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS), 1..=100_000)?;
    let header_timeout_ms = in_range(
        path,
        "serve.header_timeout_ms",
        raw.header_timeout_ms.unwrap_or(DEFAULT_HEADER_TIMEOUT_MS),
        HTTP_TIMEOUT_RANGE,
    )?;
    let body_timeout_ms = in_range(
        path,
        "serve.body_timeout_ms",
        raw.body_timeout_ms.unwrap_or(DEFAULT_BODY_TIMEOUT_MS),
        HTTP_TIMEOUT_RANGE,
    )?;
    let jwks = raw.jwt.as_ref().map(|j| jwks_source(path, dir, j)).transpose()?;
    let jwt = raw.jwt.zip(jwks).map(|(j, jwks)| JwtSettings {
        issuer: j.issuer,
        jwks,
        audience: j.audience,
        algorithms: j.algorithms,
        leeway_secs: j.leeway_secs,
        agent_claim: j.agent_claim,
        principal_claim: j.principal_claim,
        required_scopes: j.required_scopes,
    });
    let tls = raw.tls.map(|t| tls(path, dir, t)).transpose()?;
    Ok(ServeConfig {
        jwt,
        tls,
        listen,
        public_url,
        allowed_origins: raw.allowed_origins,
        authorization_servers: raw.authorization_servers,
        max_sessions: usize::try_from(max_sessions).unwrap_or(256),
        max_sessions_per_agent: usize::try_from(max_sessions_per_agent).unwrap_or(1),
        session_idle_timeout_ms,
        max_concurrent_per_agent: usize::try_from(max_concurrent).unwrap_or(32),
        max_subscriptions_per_agent: usize::try_from(max_subscriptions).unwrap_or(16),
        request_timeout_ms,
        max_connections: usize::try_from(max_connections).unwrap_or(1024),
        header_timeout_ms,
        body_timeout_ms,
    })
}

/// `[serve] max_sessions_per_agent` unless set (or `max_sessions`, when that is lower). An MCP
/// client holds one session per server it uses (a federated one for `/mcp`); sixteen leaves room
/// for sub-agents that share an identity and for a client that opens a new session before its
/// old one has idled out, while at the default `max_sessions` (256) it takes sixteen agents at
/// their cap, not one, to fill the gateway.
const DEFAULT_MAX_SESSIONS_PER_AGENT: u64 = 16;
/// `[serve] session_idle_timeout_ms` unless set: ten minutes. Far longer than an agent thinks
/// between two tool calls, and short enough that the sessions of clients that went away without
/// a DELETE (crashed, killed, or simply never sending one) give back their upstream processes
/// and places well before a long-running gateway fills up with them.
const DEFAULT_SESSION_IDLE_TIMEOUT_MS: u64 = 600_000;
/// `[serve] session_idle_timeout_ms`: from 100 ms to a day. There is no "never": a session that
/// nobody uses must end some time, or its place and its processes are lost until a restart.
const SESSION_IDLE_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=86_400_000;
/// `[serve] max_connections` unless set: room for many agents, well under the open-file limits
/// servers are given (each connection is one file descriptor).
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// `[serve] header_timeout_ms` unless set: a request head is a few hundred bytes; ten seconds is
/// ample over any link an agent uses, and short enough that stalled connections do not pile up.
const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// `[serve] body_timeout_ms` unless set: a message at the default size limit (4 MiB) arrives in
/// time at about 140 KiB/s.
const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// `[serve] header_timeout_ms` and `body_timeout_ms`: from 100 ms (below that, a loaded but
/// honest client is cut off) to 10 minutes.
const HTTP_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;

/// `[serve.tls]`: paths resolved; asking for client certificates needs the CA that issues them.
fn tls(path: &Path, dir: &Path, raw: crate::raw::RawTls) -> Result<TlsSettings, ConfigError> {
    for (key, value) in [("serve.tls.cert_file", &raw.cert_file), ("serve.tls.key_file", &raw.key_file)] {
        if value.trim().is_empty() {
            return Err(ConfigError::invalid(path, key, "a file path cannot be empty"));
        }
    }
    let client_ca_file = raw.client_ca_file.filter(|f| !f.trim().is_empty()).map(|f| dir.join(f));
    let client_auth = match (raw.client_auth, &client_ca_file) {
        (None, Some(_)) => ClientAuth::Optional,
        (None, None) => ClientAuth::None,
        (Some(mode @ (ClientAuth::Optional | ClientAuth::Required)), None) => {
            let name = if mode == ClientAuth::Optional { "optional" } else { "required" };
            return Err(ConfigError::invalid(
                path,
                "serve.tls.client_auth",
                format!("`{name}` needs `client_ca_file`: the CA bundle that issues the agents' certificates"),
            ));
        }
        (Some(mode), _) => mode,
    };
    Ok(TlsSettings {
        cert_file: dir.join(raw.cert_file),
        key_file: dir.join(raw.key_file),
        client_ca_file,
        client_auth,
    })
}

#[cfg(test)]
mod tests {
    use crate::{ClientAuth, Config, ConfigError, ToolsListMode};
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
        assert_eq!(c.limits.max_argument_values, 10_000);
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
            (format!("{GOOD}\n[limits]\nmax_argument_values = 0\n"), "`limits.max_argument_values`"),
            (format!("{GOOD}\n[limits]\nmax_argument_values = 100001\n"), "`limits.max_argument_values`"),
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
    fn connection_limits_default_and_are_bounded() {
        let defaults = load(GOOD).unwrap().serve;
        assert_eq!(
            (defaults.max_connections, defaults.header_timeout_ms, defaults.body_timeout_ms),
            (1024, 10_000, 30_000)
        );
        let set = load(&format!(
            "{GOOD}\n[serve]\nmax_connections = 64\nheader_timeout_ms = 100\nbody_timeout_ms = 600000\n"
        ))
        .unwrap()
        .serve;
        assert_eq!((set.max_connections, set.header_timeout_ms, set.body_timeout_ms), (64, 100, 600_000));
        for (key, value, expected) in [
            ("max_connections", "0", "expected 1 to 100000"),
            ("max_connections", "100001", "expected 1 to 100000"),
            ("header_timeout_ms", "0", "expected 100 to 600000"),
            ("header_timeout_ms", "99", "expected 100 to 600000"),
            ("body_timeout_ms", "600001", "expected 100 to 600000"),
        ] {
            let err = load(&format!("{GOOD}\n[serve]\n{key} = {value}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("`serve.{key}`")) && err.contains(expected), "{key} = {value}: {err}");
        }
        let err = load(&format!("{GOOD}\n[serve]\nheader_timeout = 5\n")).unwrap_err().to_string();
        assert!(err.contains("header_timeout"), "unknown keys are refused: {err}");
    }

    #[test]
    fn session_limits_default_and_are_bounded() {
        let defaults = load(GOOD).unwrap().serve;
        assert_eq!((defaults.max_sessions_per_agent, defaults.session_idle_timeout_ms), (16, 600_000));
        let few = load(&format!("{GOOD}\n[serve]\nmax_sessions = 4\n")).unwrap().serve;
        assert_eq!(few.max_sessions_per_agent, 4, "the default share never exceeds max_sessions");
        let set = load(&format!("{GOOD}\n[serve]\nmax_sessions_per_agent = 2\nsession_idle_timeout_ms = 100\n"))
            .unwrap()
            .serve;
        assert_eq!((set.max_sessions_per_agent, set.session_idle_timeout_ms), (2, 100));
        let whole = load(&format!("{GOOD}\n[serve]\nmax_sessions_per_agent = 256\n")).unwrap().serve;
        assert_eq!(whole.max_sessions_per_agent, 256);
        for (settings, key, expected) in [
            ("max_sessions_per_agent = 0", "max_sessions_per_agent", "expected 1 to 256"),
            ("max_sessions_per_agent = 257", "max_sessions_per_agent", "expected 1 to 256"),
            ("max_sessions = 8\nmax_sessions_per_agent = 9", "max_sessions_per_agent", "expected 1 to 8"),
            ("session_idle_timeout_ms = 0", "session_idle_timeout_ms", "expected 100 to 86400000"),
            ("session_idle_timeout_ms = 99", "session_idle_timeout_ms", "expected 100 to 86400000"),
            ("session_idle_timeout_ms = 86400001", "session_idle_timeout_ms", "expected 100 to 86400000"),
        ] {
            let err = load(&format!("{GOOD}\n[serve]\n{settings}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("`serve.{key}`")) && err.contains(expected), "{settings}: {err}");
        }
    }

    #[test]
    fn the_public_url_defaults_to_the_bound_address_with_the_transports_scheme() {
        let bound: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let plain = load(GOOD).unwrap();
        assert_eq!(plain.serve.public_url_or(bound), "http://127.0.0.1:8443");
        let tls = load(&format!("{GOOD}\n[serve.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n")).unwrap();
        assert_eq!(
            (tls.serve.scheme(), tls.serve.public_url_or(bound)),
            ("https", "https://127.0.0.1:8443".to_owned())
        );
        let mut named = tls.serve.clone();
        named.public_url = Some("https://gw.example.com".into());
        assert_eq!(named.public_url_or(bound), "https://gw.example.com");
    }

    #[test]
    fn tls_paths_resolve_and_client_auth_follows_the_ca() {
        let c =
            load(&format!("{GOOD}\n[serve.tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"/keys/server.key\"\n"))
                .unwrap();
        let tls = c.serve.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/custos/tls/server.pem"));
        assert_eq!(tls.key_file, Path::new("/keys/server.key"));
        assert_eq!((tls.client_ca_file, tls.client_auth), (None, ClientAuth::None));
        let with_ca =
            format!("{GOOD}\n[serve.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n");
        let tls = load(&with_ca).unwrap().serve.tls.unwrap();
        assert_eq!(tls.client_ca_file.as_deref(), Some(Path::new("/etc/custos/ca.pem")));
        assert_eq!(tls.client_auth, ClientAuth::Optional);
        let tls = load(&format!("{with_ca}client_auth = \"required\"\n")).unwrap().serve.tls.unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert!(load(GOOD).unwrap().serve.tls.is_none());
    }

    #[test]
    fn the_console_defaults_to_local_sign_in_and_to_the_admin_listener() {
        let admin = "[admin]\nlisten = \"127.0.0.1:9999\"\ntoken_file = \"t\"\n";
        let c = load(&format!("{GOOD}\n{admin}[console]\n")).unwrap();
        let console = c.console.unwrap();
        assert_eq!(console.listen, None, "on the admin listener");
        assert!(console.local_sign_in && !console.secure());
        assert_eq!(
            (console.session_idle_timeout_secs, console.session_max_secs, console.login_link_ttl_secs),
            (crate::DEFAULT_CONSOLE_IDLE_SECS, crate::DEFAULT_CONSOLE_MAX_SECS, crate::DEFAULT_LOGIN_LINK_TTL_SECS)
        );
        assert!(!c.admin.unwrap().assert_approvers, "the admin token names no approver by default");

        let oidc = "[console]\nlisten = \"127.0.0.1:9091\"\npublic_url = \"https://console.example/\"\n\
                    [console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"custos\"\n\
                    client_secret_file = \"secret\"\nscopes = [\"email\", \"groups\"]\n";
        let console = load(&format!("{GOOD}\n{oidc}")).unwrap().console.unwrap();
        assert!(!console.local_sign_in, "links are off once there is an identity provider");
        assert!(console.secure(), "an https public url means Secure cookies");
        assert_eq!(console.public_url.as_deref(), Some("https://console.example"));
        let oidc = console.oidc.unwrap();
        assert_eq!(oidc.scopes, ["openid", "email", "groups"], "openid is always asked for");
        assert_eq!((oidc.identity_claim.as_str(), oidc.groups_claim.as_str()), ("email", "groups"));
        assert_eq!(oidc.client_secret_file.as_deref(), Some(Path::new("/etc/custos/secret")));
    }

    #[test]
    fn console_errors_name_the_key() {
        let admin = "[admin]\ntoken_file = \"t\"\n";
        for (text, key, expected) in [
            ("[console]\n".to_owned(), "`console.listen`", "required without [admin]"),
            (format!("{admin}[console]\nlisten = \"nowhere\"\n"), "`console.listen`", "not an address"),
            (format!("{admin}[console]\npublic_url = \"ftp://x\"\n"), "`console.public_url`", "not an http"),
            (format!("{admin}[console]\nsession_idle_timeout_secs = 5\n"), "idle_timeout", "out of range"),
            (
                format!("{admin}[console]\nsession_idle_timeout_secs = 7200\nsession_max_secs = 3600\n"),
                "idle_timeout",
                "longer than",
            ),
            (format!("{admin}[console]\nlogin_link_ttl_secs = 86400\n"), "login_link_ttl_secs", "out of range"),
            (
                format!("{admin}[console]\n[console.oidc]\nissuer = \"http://idp.example\"\nclient_id = \"c\"\n"),
                "`console.oidc.issuer`",
                "https://",
            ),
            (
                format!("{admin}[console]\n[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \" \"\n"),
                "client_id",
                "empty",
            ),
            (format!("{admin}[console]\ncolour = \"blue\"\n"), "colour", "unknown field"),
        ] {
            let err = load(&format!("{GOOD}\n{text}")).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn checkpoints_default_to_the_data_dir_and_check_their_bounds_and_url() {
        let c = load(&format!("{GOOD}\n[audit.checkpoints]\n")).unwrap().audit.checkpoints.unwrap();
        assert_eq!((c.every_events, c.every_secs), (1000, 60));
        assert!(c.dir.ends_with("checkpoints") && c.publish_file.is_none() && c.publish_url.is_none());
        assert!(load(GOOD).unwrap().audit.checkpoints.is_none(), "off unless configured");
        for (extra, key) in [
            ("every_events = 0\n", "every_events"),
            ("every_secs = 100000\n", "every_secs"),
            ("publish_url = \"ftp://x\"\n", "publish_url"),
        ] {
            let err = load(&format!("{GOOD}\n[audit.checkpoints]\n{extra}")).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn an_approver_group_may_be_idp_groups_alone() {
        let group = "[approvals.groups.leads]\nidp_groups = [\"support-leads\"]\n";
        let c = load(&format!("{GOOD}\n{group}")).unwrap();
        let leads = c.approvals.group("leads").unwrap();
        assert!(leads.members.is_empty());
        assert_eq!(leads.idp_groups, ["support-leads"]);
        let err = load(&format!("{GOOD}\n[approvals.groups.none]\nidp_groups = []\n")).unwrap_err().to_string();
        assert!(err.contains("no members and no `idp_groups`"), "{err}");
        let err = load(&format!("{GOOD}\n[approvals.groups.bad]\nidp_groups = [\" \"]\n")).unwrap_err().to_string();
        assert!(err.contains("idp_groups"), "{err}");
    }

    #[test]
    fn tls_errors_name_the_key() {
        let tls = "[serve.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n";
        for (extra, key, expected) in [
            ("client_auth = \"required\"\n", "`serve.tls.client_auth`", "`required` needs `client_ca_file`"),
            ("client_auth = \"optional\"\n", "`serve.tls.client_auth`", "`optional` needs `client_ca_file`"),
            ("client_auth = \"sometimes\"\n", "sometimes", "expected one of"),
            ("ca_file = \"ca.pem\"\n", "ca_file", "unknown field"),
        ] {
            let err = load(&format!("{GOOD}\n{tls}{extra}")).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(expected), "{extra}: {err}");
        }
        let err = load(&format!("{GOOD}\n[serve.tls]\ncert_file = \"s.pem\"\n")).unwrap_err().to_string();
        assert!(err.contains("key_file"), "{err}");
    }

    fn with_spiffe(first: &str, second: &str) -> String {
        format!(
            "{GOOD}\n[[agents]]\nid = \"billing\"\nowner = \"o\"\npurpose = \"p\"\nspiffe_id = \"{first}\"\n\
             [[agents]]\nid = \"ops\"\nowner = \"o\"\npurpose = \"p\"\nspiffe_id = \"{second}\"\n"
        )
    }

    #[test]
    fn spiffe_ids_name_agents() {
        let c = load(&with_spiffe("spiffe://corp.example/agent/billing", "spiffe://corp.example/agent/ops")).unwrap();
        assert_eq!(c.agent_for_spiffe("spiffe://corp.example/agent/billing").unwrap().id.0, "billing");
        assert_eq!(c.agent_for_spiffe("spiffe://corp.example/agent/ops").unwrap().id.0, "ops");
        assert!(c.agent_for_spiffe("spiffe://corp.example/agent/other").is_none());
        assert!(c.agent_for_spiffe("spiffe://corp.example/agent").is_none());
        assert!(load(GOOD).unwrap().spiffe_ids.is_empty());
    }

    #[test]
    fn bad_or_duplicate_spiffe_ids_are_errors_naming_the_agents() {
        let err = load(&with_spiffe("spiffe://corp.example/a", "https://corp.example/b")).unwrap_err().to_string();
        assert!(err.contains("`agents[2].spiffe_id`") && err.contains("`ops`") && err.contains("scheme"), "{err}");
        let err = load(&with_spiffe("spiffe://Corp.example/a", "spiffe://corp.example/b")).unwrap_err().to_string();
        assert!(err.contains("`agents[1].spiffe_id`") && err.contains("lowercase"), "{err}");
        let err = load(&with_spiffe("spiffe://corp.example", "spiffe://corp.example/b")).unwrap_err().to_string();
        assert!(err.contains("`agents[1].spiffe_id`") && err.contains("not a workload"), "{err}");
        let err =
            load(&with_spiffe("spiffe://corp.example/same", "spiffe://corp.example/same")).unwrap_err().to_string();
        assert!(
            err.contains("`agents[2].spiffe_id`") && err.contains("agent `billing`") && err.contains("agent `ops`"),
            "{err}"
        );
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

    #[test]
    fn https_upstreams_take_tls_files_and_nothing_else_does() {
        let remote = |extra: &str| format!("{GOOD}\n[[servers]]\nname = \"r\"\n{extra}\n");
        let c = load(&remote(
            "url = \"https://mcp.example/mcp\"\nca_file = \"ca.pem\"\nclient_cert_file = \"c.pem\"\nclient_key_file = \"/k.pem\"",
        ))
        .unwrap();
        let tls = &c.server("r").unwrap().tls;
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/custos/ca.pem")));
        assert_eq!(
            tls.client_identity,
            Some((Path::new("/etc/custos/c.pem").to_path_buf(), Path::new("/k.pem").to_path_buf()))
        );
        assert_eq!(c.server("sample").unwrap().tls, crate::UpstreamTls::default());
        for (extra, needles) in [
            ("url = \"ftp://x/mcp\"", &["`servers[1].url`", "https://"][..]),
            ("url = \"http://x/mcp\"\nca_file = \"ca.pem\"", &["`servers[1].ca_file`", "plain http"][..]),
            (
                "command = [\"srv\"]\nclient_cert_file = \"c.pem\"\nclient_key_file = \"k.pem\"",
                &["`servers[1].client_cert_file`", "`command`"][..],
            ),
            ("ca_file = \"ca.pem\"", &["`servers[1].ca_file`", "no `url`"][..]),
            ("url = \"https://x/mcp\"\nclient_cert_file = \"c.pem\"", &["`servers[1].client_key_file`"][..]),
            ("url = \"https://x/mcp\"\nclient_key_file = \"k.pem\"", &["`servers[1].client_cert_file`"][..]),
        ] {
            let err = load(&remote(extra)).unwrap_err().to_string();
            assert!(needles.iter().all(|n| err.contains(n)), "{extra}: {err}");
        }
    }

    #[test]
    fn a_jwks_comes_from_exactly_one_file_or_url() {
        let jwt = |keys: &str| format!("{GOOD}\n[serve.jwt]\nissuer = \"https://idp\"\n{keys}\n");
        let c = load(&jwt("jwks_url = \"https://idp.example/jwks\"\njwks_ca_file = \"ca.pem\"")).unwrap();
        assert_eq!(
            c.serve.jwt.unwrap().jwks,
            crate::JwksSource::Url {
                url: "https://idp.example/jwks".into(),
                ca_file: Some(Path::new("/etc/custos/ca.pem").to_path_buf()),
                refresh_secs: 300,
            }
        );
        let c = load(&jwt("jwks_file = \"jwks.json\"")).unwrap();
        assert_eq!(c.serve.jwt.unwrap().jwks, crate::JwksSource::File(Path::new("/etc/custos/jwks.json").into()));
        for url in ["http://127.0.0.1:8/jwks", "http://[::1]:8/jwks", "http://LOCALHOST/jwks", "http://127.0.0.2/"] {
            assert!(load(&jwt(&format!("jwks_url = \"{url}\""))).is_ok(), "{url}");
        }
        for (keys, needles) in [
            ("", &["`serve.jwt`", "`jwks_file` or `jwks_url`"][..]),
            ("jwks_file = \"a\"\njwks_url = \"https://idp/jwks\"", &["`serve.jwt.jwks_url`", "not both"][..]),
            ("jwks_url = \"http://idp.example/jwks\"", &["`serve.jwt.jwks_url`", "loopback", "https://"][..]),
            ("jwks_url = \"http://127.0.0.1.evil.example/jwks\"", &["loopback"][..]),
            ("jwks_url = \"http://user@localhost.evil/jwks\"", &["loopback"][..]),
            ("jwks_url = \"file:///jwks\"", &["`serve.jwt.jwks_url`"][..]),
            ("jwks_url = \"http://127.0.0.1/jwks\"\njwks_ca_file = \"ca.pem\"", &["`serve.jwt.jwks_ca_file`"][..]),
            ("jwks_file = \"a\"\njwks_refresh_secs = 60", &["`serve.jwt.jwks_refresh_secs`", "`jwks_url`"][..]),
            ("jwks_url = \"https://idp/jwks\"\njwks_refresh_secs = 1", &["`serve.jwt.jwks_refresh_secs`", "30"][..]),
        ] {
            let err = load(&jwt(keys)).unwrap_err().to_string();
            assert!(needles.iter().all(|n| err.contains(n)), "{keys}: {err}");
        }
    }

    #[test]
    fn approvals_default_and_groups_resolve() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.approvals, crate::ApprovalSettings::default());
        assert_eq!((c.approvals.timeout_ms, c.approvals.expiry_ms), (60_000, 900_000));
        let text = format!(
            "{GOOD}\n[admin]\nlisten = \"127.0.0.1:9999\"\ntoken_file = \"t\"\n[approvals]\ntimeout_ms = 5000\n\
             allow_principal_approval = true\n[approvals.groups.finance]\nmembers = [\"carol@example.com\"]\n\
             webhook_url = \"https://hooks.example/custos\"\nwebhook_secret_file = \"hook.secret\"\n"
        );
        let c = load(&text).unwrap();
        let finance = c.approvals.group("finance").unwrap();
        assert_eq!(finance.members, ["carol@example.com"]);
        let hook = finance.webhook.as_ref().unwrap();
        assert_eq!(hook.secret_file, Path::new("/etc/custos/hook.secret"));
        assert_eq!((c.approvals.timeout_ms, c.approvals.allow_principal_approval), (5000, true));
        assert_eq!(c.approvals.admin_url.as_deref(), Some("http://127.0.0.1:9999"));
        let public = text.replace("token_file = \"t\"", "token_file = \"t\"\npublic_url = \"https://admin.example/\"");
        assert_eq!(load(&public).unwrap().approvals.admin_url.as_deref(), Some("https://admin.example"));
    }

    #[test]
    fn approval_errors_name_the_key() {
        let group = |body: &str| format!("{GOOD}\n[approvals.groups.ops]\n{body}\n");
        for (text, needles) in [
            (format!("{GOOD}\n[approvals]\ntimeout_ms = 0\n"), &["`approvals.timeout_ms`"][..]),
            (format!("{GOOD}\n[approvals]\nexpiry_ms = 10\n"), &["`approvals.expiry_ms`"][..]),
            (group("members = []"), &["`approvals.groups.ops.members`", "no members"][..]),
            (group("members = [\" \"]"), &["`approvals.groups.ops.members`"][..]),
            (
                group("members = [\"a\"]\nwebhook_url = \"https://h/x\""),
                &["`approvals.groups.ops.webhook_secret_file`", "required"][..],
            ),
            (
                group("members = [\"a\"]\nwebhook_url = \"ftp://h/x\"\nwebhook_secret_file = \"s\""),
                &["`approvals.groups.ops.webhook_url`", "`ftp://h/x`"][..],
            ),
            (
                group("members = [\"a\"]\nwebhook_secret_file = \"s\""),
                &["`approvals.groups.ops.webhook_secret_file`"][..],
            ),
            (group("members = [\"a\"]\nmembrs = []"), &["membrs"][..]),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(needles.iter().all(|n| err.contains(n)), "{text}: {err}");
        }
    }
    const CREDENTIALS: &str = r#"
[credentials]
key_file = "keys/master.key"
algorithm = "ES256"
issuer = "https://gw.example.com"
token_ttl_secs = 600
rotate_after_days = 60
unused_after_days = 14

[secrets.crm_key]
env = "CRM_API_KEY"
rotate_after_days = 30

[secrets."db.password"]
file = "secrets/db.password"

[secrets.github-token]
store = true

[[servers]]
name = "crm"
url = "https://crm.example/mcp"
headers = { "X-Tenant" = "acme" }
[[servers.inject]]
secret = "crm_key"
header = "X-Api-Key"
[[servers.inject]]
secret = "github-token"
query = "api_key"
format = "tok-{}"
[servers.token]
audience = "https://crm.example"
per = "run"
ttl_secs = 900
header = "X-Custos-Token"
format = "JWT {}"

[[servers]]
name = "db"
command = ["db-mcp"]
[[servers.inject]]
secret = "db.password"
env = "DB_PASSWORD"
format = "postgres://app:{}@db/app"
"#;

    #[test]
    fn credentials_secrets_injections_and_tokens_resolve() {
        use crate::{InjectTarget, Injection, SecretConfig, SecretSource, SigningAlgorithm, TokenPer, TokenSettings};
        let c = load(&format!("{GOOD}{CREDENTIALS}")).unwrap();
        assert_eq!(
            c.credentials,
            crate::CredentialSettings {
                key_file: Path::new("/etc/custos/keys/master.key").into(),
                algorithm: SigningAlgorithm::ES256,
                issuer: Some("https://gw.example.com".into()),
                token_ttl_secs: 600,
                rotate_after_days: 60,
                unused_after_days: 14,
            }
        );
        assert_eq!(
            c.secrets,
            [
                SecretConfig {
                    name: "crm_key".into(),
                    source: SecretSource::Env("CRM_API_KEY".into()),
                    rotate_after_days: Some(30),
                },
                SecretConfig {
                    name: "db.password".into(),
                    source: SecretSource::File(Path::new("/etc/custos/secrets/db.password").into()),
                    rotate_after_days: None,
                },
                SecretConfig { name: "github-token".into(), source: SecretSource::Store, rotate_after_days: None },
            ]
        );
        let crm = c.server("crm").unwrap();
        assert_eq!(
            crm.inject,
            [
                Injection {
                    secret: "crm_key".into(),
                    target: InjectTarget::Header("X-Api-Key".into()),
                    format: "{}".into()
                },
                Injection {
                    secret: "github-token".into(),
                    target: InjectTarget::Query("api_key".into()),
                    format: "tok-{}".into()
                },
            ]
        );
        assert_eq!(
            crm.token,
            Some(TokenSettings {
                audience: "https://crm.example".into(),
                per: TokenPer::Run,
                ttl_secs: 900,
                header: "X-Custos-Token".into(),
                format: "JWT {}".into(),
            })
        );
        let db = c.server("db").unwrap();
        assert_eq!(db.inject[0].target, InjectTarget::Env("DB_PASSWORD".into()));
        assert_eq!(db.inject[0].render("s3cret"), "postgres://app:s3cret@db/app");
        assert_eq!(crm.inject[0].render("k"), "k");
        assert_eq!(crm.token.as_ref().unwrap().render("t.o.k"), "JWT t.o.k");
        assert_eq!(db.token, None);
        assert_eq!(c.max_token_ttl_secs(), 900);
        assert_eq!(c.secret("db.password").unwrap().source.describe(), "file:/etc/custos/secrets/db.password");
        assert_eq!(c.secret("crm_key").unwrap().source.describe(), "env:CRM_API_KEY");
        assert_eq!(c.secret("github-token").unwrap().source.describe(), "store");
        assert!(c.secret("nope").is_none());
        assert_eq!((SigningAlgorithm::EdDSA.as_str(), SigningAlgorithm::ES256.as_str()), ("EdDSA", "ES256"));
        assert_eq!((TokenPer::Call.as_str(), TokenPer::Run.as_str()), ("call", "run"));
    }

    #[test]
    fn credentials_and_tokens_default() {
        let c = load(GOOD).unwrap();
        assert_eq!(
            c.credentials,
            crate::CredentialSettings {
                key_file: Path::new("/etc/custos/.custos/custos.key").into(),
                algorithm: crate::SigningAlgorithm::EdDSA,
                issuer: None,
                token_ttl_secs: crate::DEFAULT_TOKEN_TTL_SECS,
                rotate_after_days: 90,
                unused_after_days: 30,
            }
        );
        assert!(c.secrets.is_empty());
        let sample = c.server("sample").unwrap();
        assert!(sample.inject.is_empty() && sample.token.is_none());
        assert_eq!(c.max_token_ttl_secs(), 300);

        let text = format!(
            "data_dir = \"/var/lib/custos\"\n{}\n[credentials]\ntoken_ttl_secs = 120\n\
             [[servers]]\nname = \"r\"\nurl = \"https://r.example/mcp\"\n[servers.token]\n",
            GOOD.replace("default_agent = \"reader\"\n", "")
        );
        let c = load(&text).unwrap();
        assert_eq!(c.credentials.key_file, Path::new("/var/lib/custos/custos.key"));
        assert_eq!(
            c.server("r").unwrap().token,
            Some(crate::TokenSettings {
                audience: "https://r.example/mcp".into(),
                per: crate::TokenPer::Call,
                ttl_secs: 120,
                header: "Authorization".into(),
                format: "Bearer {}".into(),
            })
        );
        assert_eq!(c.max_token_ttl_secs(), 120);
    }

    #[test]
    fn secrets_are_named_not_read() {
        // Neither the variable nor the file exists: the config records where, and reads nothing.
        let text = format!(
            "{GOOD}\n[secrets.a]\nenv = \"CUSTOS_TEST_SURELY_UNSET_VARIABLE\"\n[secrets.b]\nfile = \"/nonexistent/b\"\n"
        );
        let c = load(&text).unwrap();
        assert_eq!(c.secret("b").unwrap().source, crate::SecretSource::File(Path::new("/nonexistent/b").into()));
    }

    /// `GOOD`, a declared secret `k`, and server `crm` (`transport` is its url or command line)
    /// followed by `body`.
    fn with_server(transport: &str, body: &str) -> String {
        format!("{GOOD}\n[secrets.k]\nenv = \"K\"\n[[servers]]\nname = \"crm\"\n{transport}\n{body}\n")
    }
    const REMOTE: &str = "url = \"https://crm.example/mcp\"";
    const STDIO: &str = "command = [\"crm\"]";

    #[test]
    fn credential_errors_name_the_key() {
        let creds = |body: &str| format!("{GOOD}\n[credentials]\n{body}\n");
        let secret = |body: &str| format!("{GOOD}\n[secrets.k]\n{body}\n");
        let long = "x".repeat(65);
        for (text, needles) in [
            (creds("algorithm = \"RS256\""), &["`credentials.algorithm`", "`RS256`", "`EdDSA`", "`ES256`"][..]),
            (creds("algorithm = \"eddsa\""), &["`credentials.algorithm`", "`eddsa`"][..]),
            (creds("token_ttl_secs = 0"), &["`credentials.token_ttl_secs`", "1 to 86400"][..]),
            (creds("token_ttl_secs = 86401"), &["`credentials.token_ttl_secs`", "`86401`"][..]),
            (creds("rotate_after_days = 0"), &["`credentials.rotate_after_days`"][..]),
            (creds("unused_after_days = 0"), &["`credentials.unused_after_days`"][..]),
            (creds("issuer = \"\""), &["`credentials.issuer`"][..]),
            (creds("issuer = \"my gateway\""), &["`credentials.issuer`", "`my gateway`"][..]),
            (creds("key_file = \"\""), &["`credentials.key_file`"][..]),
            (
                secret("env = \"K\"\nstore = true"),
                &["`secrets.k`", "secret `k`", "`env`, `file` or `store = true`"][..],
            ),
            (secret("env = \"K\"\nfile = \"k\""), &["`secrets.k`", "more than one source"][..]),
            (secret("rotate_after_days = 5"), &["`secrets.k`", "no source", "`env`, `file` or `store = true`"][..]),
            (secret("store = false"), &["`secrets.k`", "no source"][..]),
            (secret("env = \"1K\""), &["`secrets.k.env`", "`1K`"][..]),
            (secret("env = \"K-2\""), &["`secrets.k.env`", "`K-2`"][..]),
            (secret("file = \"\""), &["`secrets.k.file`"][..]),
            (secret("store = true\nrotate_after_days = 0"), &["`secrets.k.rotate_after_days`"][..]),
            (format!("{GOOD}\n[secrets.\"bad name\"]\nstore = true\n"), &["`secrets`", "`bad name`"][..]),
            (format!("{GOOD}\n[secrets.\"\"]\nstore = true\n"), &["`secrets`", "not a secret name"][..]),
            (format!("{GOOD}\n[secrets.{long}]\nstore = true\n"), &["`secrets`", long.as_str()][..]),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(needles.iter().all(|n| err.contains(n)), "{text}: {err}");
        }
        let ok = format!("{GOOD}\n[secrets.{}]\nstore = true\n", "x".repeat(64));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn injection_and_token_errors_name_the_server_and_key() {
        let inject = |fields: &str| format!("[[servers.inject]]\nsecret = \"k\"\n{fields}\n");
        let two = |a: &str, b: &str| format!("{}{}", inject(a), inject(b));
        let static_headers = format!("headers = {{ \"x-api-key\" = \"a\" }}\n{}", inject("header = \"X-Api-Key\""));
        for (transport, body, needles) in [
            (
                REMOTE,
                "[[servers.inject]]\nsecret = \"nope\"\nheader = \"X\"".to_owned(),
                &["`servers[1].inject[0].secret`", "server `crm`", "unknown secret `nope`", "`[secrets.nope]`"][..],
            ),
            (
                STDIO,
                inject("header = \"X-Api-Key\""),
                &[
                    "`servers[1].inject[0].header`",
                    "server `crm`: `inject.header` needs a remote server (`url`); a stdio server gets secrets as `env`",
                ][..],
            ),
            (STDIO, inject("query = \"k\""), &["`servers[1].inject[0].query`", "server `crm`", "(`url`)"][..]),
            ("", inject("header = \"X\""), &["`servers[1].inject[0].header`", "needs a remote server"][..]),
            (REMOTE, inject("env = \"K\""), &["`servers[1].inject[0].env`", "server `crm`", "`inject.env`"][..]),
            (REMOTE, inject(""), &["`servers[1].inject[0]`", "server `crm`", "exactly one target"][..]),
            (REMOTE, inject("header = \"X\"\nquery = \"k\""), &["`servers[1].inject[0]`", "exactly one target"][..]),
            (
                REMOTE,
                inject("header = \"Content-Type\""),
                &["`servers[1].inject[0].header`", "server `crm`", "`Content-Type`", "transport"][..],
            ),
            (REMOTE, inject("header = \"MCP-Session-Id\""), &["`servers[1].inject[0].header`", "transport"][..]),
            (REMOTE, inject("header = \"host\""), &["`servers[1].inject[0].header`", "transport"][..]),
            (REMOTE, inject("header = \"X Api\""), &["`servers[1].inject[0].header`", "`X Api`"][..]),
            (REMOTE, inject("header = \"\""), &["`servers[1].inject[0].header`", "not an http header name"][..]),
            (
                REMOTE,
                static_headers,
                &["`servers[1].inject[0].header`", "server `crm`", "`X-Api-Key`", "static `headers`"][..],
            ),
            (
                REMOTE,
                two("header = \"X-Key\"", "header = \"x-key\""),
                &["`servers[1].inject[1].header`", "another `inject`"][..],
            ),
            (REMOTE, two("query = \"k\"", "query = \"k\""), &["`servers[1].inject[1].query`", "`k`"][..]),
            (REMOTE, inject("query = \"a b\""), &["`servers[1].inject[0].query`", "`a b`"][..]),
            (REMOTE, inject("query = \"\""), &["`servers[1].inject[0].query`"][..]),
            (STDIO, two("env = \"K\"", "env = \"K\""), &["`servers[1].inject[1].env`", "`K`", "twice"][..]),
            (STDIO, inject("env = \"A=B\""), &["`servers[1].inject[0].env`", "`A=B`"][..]),
            (
                REMOTE,
                inject("header = \"Authorization\"\nformat = \"Bearer\""),
                &["`servers[1].inject[0].format`", "server `crm`", "`Bearer`", "exactly once"][..],
            ),
            (
                STDIO,
                inject("env = \"K\"\nformat = \"{}:{}\""),
                &["`servers[1].inject[0].format`", "`{}:{}`", "exactly once"][..],
            ),
            (
                REMOTE,
                inject("header = \"X\"\nformat = \"{}\\r\\nX-Evil: 1\""),
                &["`servers[1].inject[0].format`", "control character"][..],
            ),
            (
                STDIO,
                "[servers.token]\n".to_owned(),
                &["`servers[1].token`", "server `crm`: `token` needs a remote server (`url`)"][..],
            ),
            (REMOTE, "[servers.token]\nttl_secs = 0".to_owned(), &["`servers[1].token.ttl_secs`", "`0`"][..]),
            (REMOTE, "[servers.token]\nttl_secs = 86401".to_owned(), &["`servers[1].token.ttl_secs`", "`86401`"][..]),
            (
                REMOTE,
                "[servers.token]\nper = \"day\"".to_owned(),
                &["`servers[1].token.per`", "server `crm`", "`day`", "`call` or `run`"][..],
            ),
            (REMOTE, "[servers.token]\nformat = \"Bearer\"".to_owned(), &["`servers[1].token.format`"][..]),
            (REMOTE, "[servers.token]\nheader = \"Host\"".to_owned(), &["`servers[1].token.header`", "transport"][..]),
            (REMOTE, "[servers.token]\naudience = \"\"".to_owned(), &["`servers[1].token.audience`"][..]),
            (
                REMOTE,
                "headers = { authorization = \"Basic x\" }\n[servers.token]".to_owned(),
                &["`servers[1].token.header`", "server `crm`", "`Authorization`", "static `headers`"][..],
            ),
            (
                REMOTE,
                format!("{}[servers.token]\nheader = \"x-api-key\"", inject("header = \"X-Api-Key\"")),
                &["`servers[1].token.header`", "`x-api-key`", "`inject`"][..],
            ),
        ] {
            let text = with_server(transport, &body);
            let err = load(&text).unwrap_err().to_string();
            assert!(needles.iter().all(|n| err.contains(n)), "{text}: {err}");
        }
        // The token's ttl defaults to `[credentials]`, so a bad one there is named there.
        let text = format!("{}\n[credentials]\ntoken_ttl_secs = 0\n", with_server(REMOTE, "[servers.token]"));
        assert!(load(&text).unwrap_err().to_string().contains("`credentials.token_ttl_secs`"));
    }

    #[test]
    fn headers_query_and_env_each_go_where_they_fit() {
        let c = load(&with_server(
            REMOTE,
            "headers = { \"X-Tenant\" = \"acme\" }\n[[servers.inject]]\nsecret = \"k\"\nheader = \"X-Api-Key\"\n\
             [[servers.inject]]\nsecret = \"k\"\nquery = \"key\"\n[servers.token]\nheader = \"X-Token\"",
        ))
        .unwrap();
        assert_eq!(c.server("crm").unwrap().inject.len(), 2);
        let c = load(&with_server("", "[[servers.inject]]\nsecret = \"k\"\nenv = \"CRM_KEY\"")).unwrap();
        assert_eq!(c.server("crm").unwrap().inject[0].target, crate::InjectTarget::Env("CRM_KEY".into()));
    }

    #[test]
    fn unknown_keys_in_credential_tables_are_refused() {
        for (text, key) in [
            (format!("{GOOD}\n[credentials]\nttl = 5\n"), "ttl"),
            (format!("{GOOD}\n[secrets.k]\nstore = true\nvalue = \"hunter2\"\n"), "value"),
            (with_server(REMOTE, "[[servers.inject]]\nsecret = \"k\"\nheader = \"X\"\nprefix = \"B\""), "prefix"),
            (with_server(REMOTE, "[servers.token]\naud = \"x\""), "aud"),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("unknown field"), "{text}: {err}");
        }
    }
}
