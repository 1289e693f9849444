//! `[[audit.sinks]]`: where `custos serve` sends the audit log's events as they are appended
//! (SIEMs: a JSON lines file, Splunk HEC, a webhook, syslog).
//!
//! The raw TOML shape ([`RawSink`]), the validated settings ([`SinkSettings`]) and the rules
//! between them ([`sinks`]) are all here, so that this section changes nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::validate::in_range;
use crate::ConfigError;

/// Default `batch_size`: events per delivery.
pub const DEFAULT_BATCH_SIZE: u64 = 500;
/// Default `flush_interval_ms`: how often new events are looked for.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
/// Default `rotate_bytes` of a JSON lines file (64 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// Default `keep`: rotated JSON lines files kept.
pub const DEFAULT_KEEP: u64 = 10;

/// `[[audit.sinks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub format: Option<String>,
    pub batch_size: Option<u64>,
    pub flush_interval_ms: Option<u64>,
    /// `jsonl`: the file.
    pub path: Option<String>,
    pub rotate_bytes: Option<u64>,
    pub rotate_secs: Option<u64>,
    pub keep: Option<u64>,
    /// `splunk_hec`, `webhook`.
    pub url: Option<String>,
    pub token_secret: Option<String>,
    pub token_file: Option<String>,
    pub source_type: Option<String>,
    /// `syslog`: `HOST:PORT`.
    pub address: Option<String>,
    pub tls: Option<bool>,
    /// `splunk_hec`, `webhook`, `syslog` over TLS: a CA bundle to trust besides the system's.
    pub ca_file: Option<String>,
}

/// One validated sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// Unique; names the sink in messages and its cursor (`<data_dir>/sinks/<name>.cursor`).
    pub name: String,
    pub format: SinkFormat,
    pub target: SinkTarget,
    /// Events per delivery, at most.
    pub batch_size: usize,
    pub flush_interval_ms: u64,
}

/// What each event is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    Ocsf,
    Jsonl,
}

/// Where a bearer token comes from; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A secret of the encrypted store (`custos secrets set NAME`).
    Secret(String),
    /// A file holding only the token.
    File(PathBuf),
}

/// The receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    Jsonl { path: PathBuf, rotate_bytes: u64, rotate_secs: Option<u64>, keep: u32 },
    SplunkHec { url: String, token: TokenSource, source_type: String, ca_file: Option<PathBuf> },
    Webhook { url: String, token: Option<TokenSource>, ca_file: Option<PathBuf> },
    Syslog { address: String, tls: bool, ca_file: Option<PathBuf> },
}

/// Validates every `[[audit.sinks]]`; relative paths are resolved with `resolve`.
pub fn sinks(
    path: &Path,
    raw: Vec<RawSink>,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<Vec<SinkSettings>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("audit.sinks[{i}].{k}");
        let bad = |k: &str, m: String| ConfigError::invalid(path, key(k), m);
        let kind = s
            .kind
            .clone()
            .ok_or_else(|| bad("kind", "missing: expected one of jsonl, splunk_hec, webhook, syslog".into()))?;
        let name = s.name.clone().unwrap_or_else(|| kind.clone());
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "name",
                format!("`{name}` is not a sink name: expected 1 to 64 of a-z, A-Z, 0-9, - and _"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(bad("name", format!("`{name}` names two sinks: give each its own `name`")));
        }
        let format = match s.format.as_deref().unwrap_or("ocsf") {
            "ocsf" => SinkFormat::Ocsf,
            "jsonl" => SinkFormat::Jsonl,
            other => return Err(bad("format", format!("`{other}` is not a format: expected ocsf or jsonl"))),
        };
        let batch_size = in_range(path, &key("batch_size"), s.batch_size.unwrap_or(DEFAULT_BATCH_SIZE), 1..=10_000)?;
        let flush_interval_ms = in_range(
            path,
            &key("flush_interval_ms"),
            s.flush_interval_ms.unwrap_or(DEFAULT_FLUSH_INTERVAL_MS),
            10..=3_600_000,
        )?;
        // Keys of another kind are mistakes, not options.
        let allowed: &[&str] = match kind.as_str() {
            "jsonl" => &["path", "rotate_bytes", "rotate_secs", "keep"],
            "splunk_hec" => &["url", "token_secret", "token_file", "source_type", "ca_file"],
            "webhook" => &["url", "token_secret", "token_file", "ca_file"],
            "syslog" => &["address", "tls", "ca_file"],
            other => {
                return Err(bad(
                    "kind",
                    format!("`{other}` is not a sink kind: expected jsonl, splunk_hec, webhook or syslog"),
                ))
            }
        };
        for (k, set) in given(&s) {
            if set && !allowed.contains(&k) {
                return Err(bad(k, format!("not a setting of a `{kind}` sink")));
            }
        }
        let ca_file = s.ca_file.as_deref().map(&resolve);
        let token = match (&s.token_secret, &s.token_file) {
            (Some(_), Some(_)) => {
                return Err(bad("token_file", "give `token_secret` or `token_file`, not both".into()))
            }
            (Some(name), None) => Some(TokenSource::Secret(name.clone())),
            (None, Some(file)) => Some(TokenSource::File(resolve(file))),
            (None, None) => None,
        };
        let url = |s: &RawSink| -> Result<String, ConfigError> {
            let url = s.url.clone().ok_or_else(|| bad("url", "missing: expected an http:// or https:// url".into()))?;
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(bad("url", format!("`{url}` is not an http:// or https:// url")));
            }
            Ok(url)
        };
        let target = match kind.as_str() {
            "jsonl" => {
                let file =
                    s.path.as_deref().ok_or_else(|| bad("path", "missing: expected the file to write".into()))?;
                SinkTarget::Jsonl {
                    path: resolve(file),
                    rotate_bytes: in_range(
                        path,
                        &key("rotate_bytes"),
                        s.rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES),
                        1024..=u64::MAX,
                    )?,
                    rotate_secs: s
                        .rotate_secs
                        .map(|v| in_range(path, &key("rotate_secs"), v, 1..=31_536_000))
                        .transpose()?,
                    keep: u32::try_from(in_range(path, &key("keep"), s.keep.unwrap_or(DEFAULT_KEEP), 0..=1000)?)
                        .unwrap_or(1000),
                }
            }
            "splunk_hec" => SinkTarget::SplunkHec {
                url: url(&s)?,
                token: token
                    .ok_or_else(|| bad("token_secret", "missing: HEC needs `token_secret` or `token_file`".into()))?,
                source_type: s.source_type.clone().unwrap_or_else(|| match format {
                    SinkFormat::Ocsf => "ocsf".to_owned(),
                    SinkFormat::Jsonl => "custos:audit".to_owned(),
                }),
                ca_file,
            },
            "webhook" => SinkTarget::Webhook { url: url(&s)?, token, ca_file },
            _ => {
                let address = s.address.clone().ok_or_else(|| bad("address", "missing: expected HOST:PORT".into()))?;
                if address.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                    return Err(bad("address", format!("`{address}` is not HOST:PORT")));
                }
                let tls = s.tls.unwrap_or(false);
                if ca_file.is_some() && !tls {
                    return Err(bad("ca_file", "only used with `tls = true`".into()));
                }
                SinkTarget::Syslog { address, tls, ca_file }
            }
        };
        out.push(SinkSettings {
            name,
            format,
            target,
            batch_size: usize::try_from(batch_size).unwrap_or(10_000),
            flush_interval_ms,
        });
    }
    Ok(out)
}

/// Which kind-specific keys were written.
fn given(s: &RawSink) -> [(&'static str, bool); 11] {
    [
        ("path", s.path.is_some()),
        ("rotate_bytes", s.rotate_bytes.is_some()),
        ("rotate_secs", s.rotate_secs.is_some()),
        ("keep", s.keep.is_some()),
        ("url", s.url.is_some()),
        ("token_secret", s.token_secret.is_some()),
        ("token_file", s.token_file.is_some()),
        ("source_type", s.source_type.is_some()),
        ("address", s.address.is_some()),
        ("tls", s.tls.is_some()),
        ("ca_file", s.ca_file.is_some()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn load(sinks: &str) -> Result<Vec<SinkSettings>, String> {
        let text = format!("[policy]\nfiles = [\"p.cedar\"]\n{sinks}");
        Config::from_toml(Path::new("/etc/custos/custos.toml"), &text).map(|c| c.audit.sinks).map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_with_its_defaults() {
        let got = load(
            "[[audit.sinks]]\nkind = \"jsonl\"\npath = \"siem/e.jsonl\"\n\
             [[audit.sinks]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = \"https://s:8088\"\ntoken_secret = \"hec\"\n\
             [[audit.sinks]]\nkind = \"webhook\"\nformat = \"jsonl\"\nurl = \"http://h/x\"\nbatch_size = 10\n\
             [[audit.sinks]]\nkind = \"syslog\"\naddress = \"siem:6514\"\ntls = true\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0].target,
            SinkTarget::Jsonl {
                path: PathBuf::from("/etc/custos/siem/e.jsonl"),
                rotate_bytes: DEFAULT_ROTATE_BYTES,
                rotate_secs: None,
                keep: 10
            }
        );
        assert_eq!((got[0].name.as_str(), got[0].format, got[0].batch_size), ("jsonl", SinkFormat::Ocsf, 500));
        assert!(matches!(&got[1].target, SinkTarget::SplunkHec { token: TokenSource::Secret(s), source_type, .. }
            if s == "hec" && source_type == "ocsf"));
        assert_eq!((got[2].format, got[2].batch_size), (SinkFormat::Jsonl, 10));
        assert!(matches!(&got[3].target, SinkTarget::Syslog { tls: true, ca_file: Some(_), .. }));
    }

    /// The README's example of every kind is a config that loads.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../../../README.md");
        let section = readme.split("### Sinks").nth(1).unwrap();
        let example = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let got = load(example).unwrap();
        let kinds: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kinds, ["archive", "splunk", "webhook", "syslog"]);
    }

    #[test]
    fn mistakes_name_the_key() {
        for (sinks, key, says) in [
            ("kind = \"kafka\"", "audit.sinks[0].kind", "not a sink kind"),
            ("path = \"x\"", "audit.sinks[0].kind", "missing"),
            ("kind = \"jsonl\"", "audit.sinks[0].path", "missing"),
            (
                "kind = \"jsonl\"\npath = \"x\"\nurl = \"http://h\"",
                "audit.sinks[0].url",
                "not a setting of a `jsonl` sink",
            ),
            ("kind = \"jsonl\"\npath = \"x\"\nrotate_bytes = 10", "audit.sinks[0].rotate_bytes", "out of range"),
            ("kind = \"webhook\"\nurl = \"ftp://h\"", "audit.sinks[0].url", "not an http"),
            ("kind = \"webhook\"\nurl = \"http://h\"\nbatch_size = 0", "audit.sinks[0].batch_size", "out of range"),
            ("kind = \"splunk_hec\"\nurl = \"http://h\"", "audit.sinks[0].token_secret", "missing"),
            ("kind = \"syslog\"\naddress = \"h\"", "audit.sinks[0].address", "not HOST:PORT"),
            ("kind = \"syslog\"\naddress = \"h:1\"\nca_file = \"c\"", "audit.sinks[0].ca_file", "tls = true"),
            ("kind = \"jsonl\"\npath = \"x\"\nformat = \"cef\"", "audit.sinks[0].format", "not a format"),
            ("kind = \"jsonl\"\npath = \"x\"\nname = \"a b\"", "audit.sinks[0].name", "not a sink name"),
        ] {
            let err = load(&format!("[[audit.sinks]]\n{sinks}\n")).unwrap_err();
            assert!(err.contains(&format!("`{key}`")) && err.contains(says), "{sinks}: {err}");
        }
        let twice =
            "[[audit.sinks]]\nkind = \"jsonl\"\npath = \"a\"\n[[audit.sinks]]\nkind = \"jsonl\"\npath = \"b\"\n";
        assert!(load(twice).unwrap_err().contains("names two sinks"));
        assert!(load("[[audit.sinks]]\nkind = \"jsonl\"\npath = \"a\"\nrotate = 1\n").unwrap_err().contains("rotate"));
    }
}
