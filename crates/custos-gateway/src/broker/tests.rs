use custos_core::{EventKind, NewEvent};
use custos_secrets::{Algorithm, MasterKey};
use custos_store::{CredentialStore, SqlStore, StoredSecret};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    master: MasterKey,
    store: SqlStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("custos.key")).unwrap();
        let store = SqlStore::open(dir.path().join("audit.db")).unwrap();
        Self { dir, master, store }
    }

    fn config(&self, extra: &str) -> Config {
        let text = format!(
            "[policy]\nfiles = [\"p.cedar\"]\n{extra}\n[[servers]]\nname = \"child\"\ncommand = [\"true\"]\n\
             [[servers.inject]]\nsecret = \"stored\"\nenv = \"CHILD_KEY\"\n\
             [[servers.inject]]\nsecret = \"stored\"\nenv = \"CHILD_AUTH\"\nformat = \"Bearer {{}}\"\n\
             [[servers]]\nname = \"remote\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
             [[servers.inject]]\nsecret = \"from_file\"\nheader = \"X-Api-Key\"\n\
             [[servers.inject]]\nsecret = \"stored\"\nquery = \"key\"\n\
             [servers.token]\naudience = \"https://remote.test\"\nper = \"run\"\nttl_secs = 100\n"
        );
        Config::from_toml(&self.dir.path().join("custos.toml"), &text).unwrap()
    }

    fn store_secret(&mut self, name: &str, value: &str) {
        let sealed = self.master.seal(&secret_context(name), value.as_bytes()).unwrap();
        let fingerprint = self.master.fingerprinter().fingerprint(value.as_bytes());
        let secret = StoredSecret { name: name.into(), sealed, fingerprint, created_ms: 1, updated_ms: 1 };
        self.store.put_secret(&secret, &NewEvent::new(EventKind::SecretSet, 1)).unwrap();
    }

    fn load(&self, config: &Config, serving: &[&str]) -> Result<Broker, BrokerError> {
        let sources = BrokerSources { config, serving, master: &self.master, store: &self.store };
        Broker::load(&sources, 1_000)
    }
}

const SECRETS: &str = "[secrets.stored]\nstore = true\n[secrets.from_file]\nfile = \"key.txt\"\n";

#[test]
fn each_upstream_gets_its_secrets_where_it_needs_them_and_the_log_only_fingerprints() {
    let mut f = Fixture::new();
    std::fs::write(f.dir.path().join("key.txt"), "file-secret-value\r\n").unwrap();
    f.store_secret("stored", "stored-secret-value");
    let config = f.config(SECRETS);
    let broker = f.load(&config, &["child", "remote"]).unwrap();

    assert_eq!(
        broker.child_env("child"),
        vec![
            ("CHILD_KEY".to_owned(), "stored-secret-value".to_owned()),
            ("CHILD_AUTH".to_owned(), "Bearer stored-secret-value".to_owned())
        ]
    );
    assert_eq!(broker.headers("remote"), vec![("X-Api-Key".to_owned(), "file-secret-value".to_owned())]);
    assert_eq!(broker.query("remote"), vec![("key".to_owned(), "stored-secret-value".to_owned())]);
    assert!(broker.child_env("remote").is_empty() && broker.headers("child").is_empty());
    let fp = f.master.fingerprinter().fingerprint(b"stored-secret-value");
    let names: Vec<_> = broker.credentials_of("remote").into_iter().map(|c| (c.name, c.fingerprint)).collect();
    assert_eq!(names[1], ("stored".to_owned(), fp));
    assert!(!format!("{broker:?}").contains("secret-value"), "Debug shows no value");
    // The guard knows both values.
    let leaked = broker.guard().scan_message(br#"{"result":{"text":"file-secret-value"}}"#).unwrap();
    assert_eq!(leaked.hits[0].secret.as_deref(), Some("from_file"));
}

#[test]
fn a_secret_an_upstream_needs_must_load_and_others_may_be_missing() {
    let f = Fixture::new();
    let config = f.config(SECRETS);
    // `stored` is not in the store: the child needs it.
    let err = f.load(&config, &["child"]).unwrap_err();
    assert!(err.to_string().contains("`custos secrets set stored`"), "{err}");
    // The file is missing too: the remote needs it.
    let err = f.load(&config, &["remote"]).unwrap_err();
    assert!(err.to_string().contains("key.txt"), "{err}");
    // Serving nothing that needs them: the broker starts without them.
    assert!(f.load(&config, &[]).is_ok());
    let config =
        f.config("[secrets.stored]\nenv = \"CUSTOS_BROKER_TEST_SURELY_UNSET\"\n[secrets.from_file]\nstore = true\n");
    let err = f.load(&config, &["child"]).unwrap_err();
    assert!(err.to_string().contains("`CUSTOS_BROKER_TEST_SURELY_UNSET` is not set"), "{err}");
    let broker = f.load(&config, &[]).unwrap();
    assert_eq!(broker.env_removed(), ["CUSTOS_BROKER_TEST_SURELY_UNSET".to_owned()]);
}

#[test]
fn a_stored_secret_opens_only_under_its_own_name_and_master_key() {
    let mut f = Fixture::new();
    std::fs::write(f.dir.path().join("key.txt"), "file-secret-value").unwrap();
    // Sealed for another name, stored under this one: refused, not decrypted.
    let sealed = f.master.seal(&secret_context("other"), b"stored-secret-value").unwrap();
    let secret = StoredSecret { name: "stored".into(), sealed, fingerprint: "x".into(), created_ms: 1, updated_ms: 1 };
    f.store.put_secret(&secret, &NewEvent::new(EventKind::SecretSet, 1)).unwrap();
    let err = f.load(&f.config(SECRETS), &["child"]).unwrap_err();
    assert!(err.to_string().starts_with("secret `stored`:"), "{err}");
}

fn rotate(f: &mut Fixture, at_ms: i64, overlap_ms: i64) -> String {
    rotate_in(f, at_ms, overlap_ms, 0)
}

fn rotate_in(f: &mut Fixture, at_ms: i64, overlap_ms: i64, activate_in_ms: i64) -> String {
    let event = NewEvent::new(EventKind::SigningKeyCreated, at_ms);
    rotate_key(&mut f.store, &f.master, Algorithm::ES256, overlap_ms, activate_in_ms, event).unwrap()
}

fn kids(keys: &Keys) -> Vec<String> {
    keys.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_retired_key_stays_published_for_its_overlap_then_leaves() {
    let mut f = Fixture::new();
    let config = f.config(SECRETS);
    let first = rotate(&mut f, 1_000, 5_000);
    let keys = Keys::load(&f.store, &f.master, &config, 1_500).unwrap();
    assert_eq!(kids(&keys), vec![first.clone()]);
    let who = Minting { agent: "bot", principal: &[], run: None, scope: "t" };
    let old_token = keys.mint("aud", 60, &who).unwrap();

    let second = rotate(&mut f, 2_000, 5_000);
    let version = keys.version();
    assert!(keys.reload(&f.store, &f.master, 2_500).unwrap());
    assert!(keys.version() > version);
    assert_eq!(kids(&keys), vec![first.clone(), second.clone()]);
    assert_eq!(keys.active_kid(), Some(second.clone()));
    let now = old_token.issued_at;
    custos_secrets::verify(&old_token.token, &keys.jwks(), "aud", keys.issuer(), now, 0).unwrap();
    assert_eq!(keys.mint("aud", 60, &who).unwrap().kid, second);

    // Nothing changed: nothing swapped.
    assert!(!keys.reload(&f.store, &f.master, 6_999).unwrap());
    // The overlap ends at 2_000 + 5_000.
    assert!(keys.reload(&f.store, &f.master, 7_000).unwrap());
    assert_eq!(kids(&keys), vec![second]);
    let gone = custos_secrets::verify(&old_token.token, &keys.jwks(), "aud", keys.issuer(), now, 0).unwrap_err();
    assert_eq!(gone.reason(), "unknown_key");
}

#[test]
fn per_run_tokens_are_reused_and_per_call_tokens_are_not() {
    let mut f = Fixture::new();
    std::fs::write(f.dir.path().join("key.txt"), "file-secret-value").unwrap();
    f.store_secret("stored", "stored-secret-value");
    rotate(&mut f, 1_000, 0);
    let config = f.config(SECRETS);
    let broker = f.load(&config, &["remote"]).unwrap();
    let cache = TokenCache::default();
    let principal = vec!["alice@example.com".to_owned()];
    let who = Minting { agent: "bot", principal: &principal, run: Some("r1"), scope: "lookup" };
    // `per = "run"` here: the same token for the run's calls of the same tool.
    let a = cache.token(&broker, "remote", &who, true).unwrap().unwrap();
    let b = cache.token(&broker, "remote", &who, true).unwrap().unwrap();
    assert_eq!(a.jti, b.jti);
    let other = Minting { scope: "refund", ..who };
    assert_ne!(cache.token(&broker, "remote", &other, true).unwrap().unwrap().jti, a.jti);
    let claims = custos_secrets::verify(
        &a.token,
        &broker.keys().unwrap().jwks(),
        "https://remote.test",
        "custos",
        a.issued_at,
        0,
    )
    .unwrap();
    assert_eq!(claims["act"]["sub"], "alice@example.com");
    assert_eq!(claims["run"], "r1");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 100);
    // No token settings: nothing minted.
    assert!(cache.token(&broker, "child", &who, true).unwrap().is_none());
}

#[test]
fn a_rotated_in_key_is_published_before_it_mints() {
    let mut f = Fixture::new();
    let config = f.config(SECRETS);
    let first = rotate_in(&mut f, 1_000, 5_000, 60_000); // the first key mints at once
    let second = rotate_in(&mut f, 2_000, 5_000, 3_000); // mints from 5_000
    let states = |now: i64| -> Vec<&'static str> {
        f.store.signing_keys().unwrap().iter().map(|k| KeyState::of(k, now).as_str()).collect()
    };
    assert_eq!(states(2_500), ["active", "pending"]);
    assert_eq!(states(5_000), ["retired", "active"]);
    assert_eq!(states(10_000), ["expired", "active"]);
    let keys = Keys::load(&f.store, &f.master, &config, 2_500).unwrap();
    assert_eq!(kids(&keys), vec![first.clone(), second.clone()], "published before it mints");
    assert_eq!(keys.active_kid(), Some(first));
    assert!(keys.reload(&f.store, &f.master, 5_000).unwrap(), "activation is a change");
    assert_eq!(keys.active_kid(), Some(second.clone()));
    let retired = of_kind_events(&f.store, EventKind::SigningKeyRetired);
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].detail["replaced_by"], second.as_str());
    assert_eq!(retired[0].detail["mints_until_ms"], 5_000);
    assert_eq!(retired[0].detail["published_until_ms"], 10_000);
}

fn of_kind_events(store: &SqlStore, kind: EventKind) -> Vec<NewEvent> {
    use custos_store::Store;
    let q = custos_store::EventQuery { kind: Some(kind), ..Default::default() };
    store.query(&q).unwrap().into_iter().map(|e| e.event).collect()
}
