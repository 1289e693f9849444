//! `custos inventory credentials`: every credential the gateway holds, where it goes and who
//! has used it, with what needs attention.
//!
//! The uses come from the store's use projection, which every event naming credentials feeds
//! (calls that carried an injected secret or a minted token, tokens minted or exchanged), so
//! the inventory says what the log says. Nothing here reads a value beyond fingerprinting
//! secrets from the environment or files, as `secrets list` does.

use std::collections::BTreeSet;

use custos_config::Config;
use custos_gateway::now_ms;
use custos_store::{CredentialStore, CredentialUse, SigningKeyRecord};
use serde_json::json;

use super::secrets::{self, SecretView};
use super::{print_table, DAY_MS};
use crate::cli::{InventoryCommand, Location};
use crate::context;
use crate::Failure;
use custos_gateway::broker::KeyState;

pub fn run(cmd: InventoryCommand) -> Result<(), Failure> {
    match cmd {
        InventoryCommand::Credentials { location, json, unused_days } => credentials(&location, json, unused_days),
    }
}

fn credentials(location: &Location, json: bool, unused_days: Option<u64>) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let (stored, keys, uses) = match super::open_existing(&config)? {
        Some(store) => (
            store.secrets().map_err(Failure::runtime)?,
            store.signing_keys().map_err(Failure::runtime)?,
            store.credential_uses().map_err(Failure::runtime)?,
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let master = secrets::master_if_present(&config);
    let views = secrets::views(&config, &stored, &uses, master.as_ref());
    let thresholds = Thresholds {
        rotate_after_days: config.credentials.rotate_after_days,
        unused_days: unused_days.unwrap_or(config.credentials.unused_after_days),
    };
    let now = now_ms();
    let entries = entries(&config, &views, &keys, &uses, thresholds, now);
    if json {
        for e in &entries {
            println!("{}", e.to_json(now));
        }
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("custos: no credentials: no `[secrets.NAME]` in `{}` and no signing keys", config.path.display());
        return Ok(());
    }
    let header = ["CREDENTIAL", "SOURCE", "FINGERPRINT", "AGE", "UPSTREAMS", "AGENTS", "LAST-USE", "WARNINGS"];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            [
                e.credential.clone(),
                e.source_label(),
                e.fingerprint.clone().unwrap_or_else(|| "-".to_owned()),
                e.set_ms.map_or_else(|| "-".to_owned(), |set| short_age(now.saturating_sub(set))),
                list_or_dash(&e.upstreams),
                list_or_dash(&e.agents),
                e.last_use_ms.map_or_else(|| "never".to_owned(), super::rfc3339),
                e.warnings.join("; "),
            ]
        })
        .collect();
    print_table(header, &rows);
    Ok(())
}

/// When a credential needs attention.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    /// `[credentials] rotate_after_days`: for secrets that set none of their own, and keys.
    rotate_after_days: u64,
    /// Idle for longer than this many days is worth a warning.
    unused_days: u64,
}

/// What one credential is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Secret { available: bool, declared: bool },
    SigningKey { algorithm: String, state: KeyState },
}

/// One line of the inventory.
#[derive(Debug, Clone)]
struct Entry {
    /// The name the log uses: the secret's, or `signing_key:KID`.
    credential: String,
    kind: Kind,
    /// `env:VAR`, `file:PATH` or `store`.
    source: String,
    fingerprint: Option<String>,
    /// When the value in use was set (a stored secret's or key's creation, a file's
    /// modification); unknown for the environment.
    set_ms: Option<i64>,
    /// Servers it is given to: injected into, or (the active key) signing tokens for.
    upstreams: Vec<String>,
    /// Agents whose calls or tokens used it, by the log.
    agents: Vec<String>,
    last_use_ms: Option<i64>,
    uses: u64,
    warnings: Vec<String>,
}

impl Entry {
    fn source_label(&self) -> String {
        match &self.kind {
            Kind::Secret { .. } => self.source.clone(),
            Kind::SigningKey { algorithm, state } => format!("{algorithm} key ({})", state.as_str()),
        }
    }

    fn to_json(&self, now_ms: i64) -> serde_json::Value {
        let (kind, available, declared, algorithm, state) = match &self.kind {
            Kind::Secret { available, declared } => ("secret", *available, *declared, None, None),
            Kind::SigningKey { algorithm, state } => {
                ("signing_key", true, true, Some(algorithm.as_str()), Some(state.as_str()))
            }
        };
        json!({
            "credential": self.credential,
            "kind": kind,
            "source": self.source,
            "algorithm": algorithm,
            "state": state,
            "available": available,
            "declared": declared,
            "fingerprint": self.fingerprint,
            "set_ms": self.set_ms,
            "age_days": self.set_ms.map(|set| now_ms.saturating_sub(set) / DAY_MS),
            "upstreams": self.upstreams,
            "agents": self.agents,
            "last_use_ms": self.last_use_ms,
            "uses": self.uses,
            "warnings": self.warnings,
        })
    }
}

/// Every secret (configured, then stored but undeclared), then every signing key, oldest first.
fn entries(
    config: &Config,
    views: &[SecretView],
    keys: &[SigningKeyRecord],
    uses: &[CredentialUse],
    thresholds: Thresholds,
    now_ms: i64,
) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(views.len() + keys.len());
    for v in views {
        let upstreams: Vec<String> = config
            .servers
            .iter()
            .filter(|s| s.inject.iter().any(|i| i.secret == v.name))
            .map(|s| s.name.clone())
            .collect();
        let used = Used::of(uses, &v.name);
        let facts = Facts {
            set_ms: v.set_ms,
            rotate_after_days: Some(v.rotate_after_days.unwrap_or(thresholds.rotate_after_days)),
            last_use_ms: used.last_ms,
            check_unused: true,
            upstreams: &upstreams,
            missing: v.from_store && !v.available,
            undeclared: !v.declared,
        };
        let warnings = warnings(&facts, thresholds.unused_days, now_ms);
        entries.push(Entry {
            credential: v.name.clone(),
            kind: Kind::Secret { available: v.available, declared: v.declared },
            source: v.source.clone(),
            fingerprint: v.fingerprint.clone(),
            set_ms: v.set_ms,
            upstreams,
            agents: used.agents,
            last_use_ms: used.last_ms,
            uses: used.count,
            warnings,
        });
    }
    let token_servers: Vec<String> =
        config.servers.iter().filter(|s| s.token.is_some()).map(|s| s.name.clone()).collect();
    for k in keys {
        let credential = format!("signing_key:{}", k.kid);
        let state = KeyState::of(k, now_ms);
        let active = state == KeyState::Active;
        // Only the active key signs for the upstreams now; a retired key's age and idleness are
        // what rotation intends.
        let upstreams = if active { token_servers.clone() } else { Vec::new() };
        let used = Used::of(uses, &credential);
        let facts = Facts {
            set_ms: Some(k.created_ms),
            rotate_after_days: active.then_some(thresholds.rotate_after_days),
            last_use_ms: used.last_ms,
            check_unused: active,
            // A key signs for every token upstream by design: sharing is not a finding.
            upstreams: &[],
            missing: false,
            undeclared: false,
        };
        let warnings = warnings(&facts, thresholds.unused_days, now_ms);
        entries.push(Entry {
            credential,
            kind: Kind::SigningKey { algorithm: k.algorithm.clone(), state },
            source: "store".to_owned(),
            fingerprint: Some(k.kid.clone()),
            set_ms: Some(k.created_ms),
            upstreams,
            agents: used.agents,
            last_use_ms: used.last_ms,
            uses: used.count,
            warnings,
        });
    }
    entries
}

/// The recorded uses of one credential, over every server and agent.
#[derive(Debug, Default)]
struct Used {
    /// Agents by name, without the empty name of uses no agent made.
    agents: Vec<String>,
    last_ms: Option<i64>,
    count: u64,
}

impl Used {
    fn of(uses: &[CredentialUse], credential: &str) -> Self {
        let mine = uses.iter().filter(|u| u.credential == credential);
        let agents: BTreeSet<&str> = mine.clone().filter(|u| !u.agent.is_empty()).map(|u| u.agent.as_str()).collect();
        Self {
            agents: agents.into_iter().map(str::to_owned).collect(),
            last_ms: mine.clone().map(|u| u.last_ms).max(),
            count: mine.map(|u| u.uses).fold(0, u64::saturating_add),
        }
    }
}

/// What the warnings of one credential depend on.
#[derive(Debug)]
struct Facts<'a> {
    set_ms: Option<i64>,
    /// `None`: not subject to rotation (a retired key).
    rotate_after_days: Option<u64>,
    last_use_ms: Option<i64>,
    /// Whether idleness matters (not for a retired key).
    check_unused: bool,
    upstreams: &'a [String],
    /// A store secret that has not been set.
    missing: bool,
    /// A stored secret the config no longer declares: nothing can use it.
    undeclared: bool,
}

/// The warnings of one credential at `now_ms`, most urgent first.
fn warnings(f: &Facts<'_>, unused_days: u64, now_ms: i64) -> Vec<String> {
    let mut out = Vec::new();
    if f.missing {
        out.push("not available".to_owned());
    }
    if f.undeclared {
        out.push("not declared in the config".to_owned());
    }
    let age_ms = f.set_ms.map(|set| now_ms.saturating_sub(set));
    if let (Some(age_ms), Some(limit)) = (age_ms, f.rotate_after_days) {
        // Whole days on both sides, so the message never reads "90 days > 90".
        let days = age_ms / DAY_MS;
        if u64::try_from(days).is_ok_and(|d| d > limit) {
            out.push(format!("rotation overdue (age {} > rotate_after_days {limit})", day_count(days)));
        }
    }
    if f.check_unused {
        let threshold_ms = i64::try_from(unused_days).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
        match f.last_use_ms {
            Some(last) => {
                let idle_ms = now_ms.saturating_sub(last);
                // Under a day is not idle, whatever the threshold: "unused for 0 days" says nothing.
                if idle_ms > threshold_ms && idle_ms >= DAY_MS {
                    out.push(format!("unused for {}", day_count(idle_ms / DAY_MS)));
                }
            }
            // A credential younger than the threshold has not had the time to be used.
            None if age_ms.is_none_or(|age| age > threshold_ms) => out.push("never used".to_owned()),
            None => {}
        }
    }
    if f.upstreams.len() > 1 {
        out.push(format!("shared by upstreams {}", f.upstreams.join(", ")));
    }
    out
}

/// `1 day`, `2 days`.
fn day_count(days: i64) -> String {
    if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    }
}

/// An age in its largest unit: `12d`, `5h`, `3m`, `0m`.
fn short_age(ms: i64) -> String {
    const HOUR_MS: i64 = 60 * 60 * 1000;
    const MINUTE_MS: i64 = 60 * 1000;
    if ms >= DAY_MS {
        format!("{}d", ms / DAY_MS)
    } else if ms >= HOUR_MS {
        format!("{}h", ms / HOUR_MS)
    } else {
        format!("{}m", ms.max(0) / MINUTE_MS)
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000 * DAY_MS;

    fn facts(set_ms: Option<i64>, last_use_ms: Option<i64>) -> Facts<'static> {
        Facts {
            set_ms,
            rotate_after_days: Some(90),
            last_use_ms,
            check_unused: true,
            upstreams: &[],
            missing: false,
            undeclared: false,
        }
    }

    #[test]
    fn rotation_is_overdue_only_past_whole_days_of_the_limit() {
        let at = |days: i64, extra_ms: i64| facts(Some(NOW - days * DAY_MS - extra_ms), Some(NOW));
        assert!(warnings(&at(90, DAY_MS - 1), 30, NOW).is_empty(), "90 days and change is not over 90");
        assert_eq!(warnings(&at(91, 0), 30, NOW), ["rotation overdue (age 91 days > rotate_after_days 90)"]);
        let mut own = at(2, 0);
        own.rotate_after_days = Some(1);
        assert_eq!(warnings(&own, 30, NOW), ["rotation overdue (age 2 days > rotate_after_days 1)"]);
        let mut retired = at(500, 0);
        retired.rotate_after_days = None;
        assert!(warnings(&retired, 30, NOW).is_empty(), "a retired key is not due");
        assert!(warnings(&facts(None, Some(NOW)), 30, NOW).is_empty(), "an unknown age is never overdue");
    }

    #[test]
    fn idle_and_never_used_credentials_are_reported_after_the_threshold() {
        let set = Some(NOW - 50 * DAY_MS);
        assert!(warnings(&facts(set, Some(NOW - 30 * DAY_MS)), 30, NOW).is_empty(), "exactly the threshold");
        assert_eq!(warnings(&facts(set, Some(NOW - 31 * DAY_MS)), 30, NOW), ["unused for 31 days"]);
        assert_eq!(warnings(&facts(set, None), 30, NOW), ["never used"]);
        // Too young to have been used yet, unless its age is unknown.
        assert!(warnings(&facts(Some(NOW - 29 * DAY_MS), None), 30, NOW).is_empty());
        assert_eq!(warnings(&facts(None, None), 30, NOW), ["never used"]);
        // 0 days: anything never used is reported at once, anything used today is not idle.
        assert_eq!(warnings(&facts(Some(NOW - 1), None), 0, NOW), ["never used"]);
        assert!(warnings(&facts(set, Some(NOW - DAY_MS + 1)), 0, NOW).is_empty());
        assert_eq!(warnings(&facts(set, Some(NOW - DAY_MS)), 0, NOW), ["unused for 1 day"]);
        let mut retired = facts(set, None);
        retired.check_unused = false;
        assert!(warnings(&retired, 30, NOW).is_empty());
    }

    #[test]
    fn missing_undeclared_and_shared_secrets_are_reported() {
        let upstreams = ["a".to_owned(), "b".to_owned()];
        let f = Facts {
            set_ms: None,
            rotate_after_days: Some(90),
            last_use_ms: Some(NOW),
            check_unused: true,
            upstreams: &upstreams,
            missing: true,
            undeclared: true,
        };
        assert_eq!(warnings(&f, 30, NOW), ["not available", "not declared in the config", "shared by upstreams a, b"]);
    }

    fn config(text: &str) -> Config {
        Config::from_toml(std::path::Path::new("/tmp/custos.toml"), text).unwrap()
    }

    fn use_of(credential: &str, agent: &str, uses: u64, last_ms: i64) -> CredentialUse {
        CredentialUse {
            credential: credential.into(),
            fingerprint: "fp".into(),
            server: "s".into(),
            agent: agent.into(),
            uses,
            first_ms: 0,
            last_ms,
        }
    }

    #[test]
    fn entries_join_the_config_the_keys_and_the_uses() {
        let config = config(
            r#"
[policy]
files = ["p.cedar"]
[secrets.gh]
store = true
rotate_after_days = 1
[[servers]]
name = "one"
command = ["true"]
[[servers.inject]]
secret = "gh"
env = "GH"
[[servers]]
name = "two"
command = ["true"]
[[servers.inject]]
secret = "gh"
env = "GH"
"#,
        );
        let views = vec![SecretView {
            name: "gh".into(),
            source: "store".into(),
            available: true,
            fingerprint: Some("fp".into()),
            fingerprint_from: Some(secrets::FingerprintFrom::Value),
            set_ms: Some(NOW - 3 * DAY_MS),
            declared: true,
            rotate_after_days: Some(1),
            from_store: true,
        }];
        let key =
            |kid: &str, created_ms: i64, retired_ms: Option<i64>, publish_until_ms: Option<i64>| SigningKeyRecord {
                kid: kid.into(),
                algorithm: "EdDSA".into(),
                sealed_private: Vec::new(),
                public_jwk: serde_json::Value::Null,
                created_ms,
                retired_ms,
                publish_until_ms,
            };
        let keys =
            [key("old", NOW - 200 * DAY_MS, Some(NOW - DAY_MS), Some(NOW - 1)), key("new", NOW - DAY_MS, None, None)];
        let uses = [
            use_of("gh", "bot", 2, NOW - 40 * DAY_MS),
            use_of("gh", "", 1, NOW - 35 * DAY_MS),
            use_of("gh", "alice", 1, NOW - 32 * DAY_MS),
            use_of("signing_key:new", "bot", 5, NOW - 1000),
        ];
        let thresholds = Thresholds { rotate_after_days: 90, unused_days: 30 };
        let entries = entries(&config, &views, &keys, &uses, thresholds, NOW);
        assert_eq!(entries.len(), 3);
        let [gh, old, new] = [&entries[0], &entries[1], &entries[2]];
        assert_eq!(gh.upstreams, ["one", "two"]);
        assert_eq!(gh.agents, ["alice", "bot"]);
        assert_eq!((gh.last_use_ms, gh.uses), (Some(NOW - 32 * DAY_MS), 4));
        assert_eq!(
            gh.warnings,
            [
                "rotation overdue (age 3 days > rotate_after_days 1)",
                "unused for 32 days",
                "shared by upstreams one, two"
            ]
        );
        assert_eq!(old.credential, "signing_key:old");
        assert_eq!(old.kind, Kind::SigningKey { algorithm: "EdDSA".into(), state: KeyState::Expired });
        assert!(old.warnings.is_empty() && old.upstreams.is_empty(), "{:?}", old.warnings);
        assert_eq!(
            (new.agents.clone(), new.uses, new.fingerprint.as_deref()),
            (vec!["bot".to_owned()], 5, Some("new"))
        );
        assert!(new.warnings.is_empty(), "{:?}", new.warnings);
        let line = new.to_json(NOW);
        assert_eq!((line["state"].as_str(), line["age_days"].as_i64()), (Some("active"), Some(1)));
    }

    #[test]
    fn ages_are_shown_in_their_largest_unit() {
        assert_eq!(short_age(3 * DAY_MS + 5), "3d");
        assert_eq!(short_age(5 * 60 * 60 * 1000), "5h");
        assert_eq!(short_age(59_999), "0m");
        assert_eq!(short_age(-5), "0m");
    }
}
