#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! [`PgConn`] against a real PostgreSQL server started by the tests (`custos-testpg`): one
//! cluster shared by the tests of this binary, a database each; the restart test has its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use custos_testpg::{TestCluster, PASSWORD, TRUST_USER, USER};

use super::*;
use crate::sql::Value;

const TIMEOUT: Duration = Duration::from_secs(10);

fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(TestCluster::start)
}

/// A fresh database on the shared cluster, and its URL.
fn fresh_db() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    cluster().create_database(&format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn connect(url: &str) -> PgConn {
    PgConn::connect(url, TIMEOUT).unwrap_or_else(|e| panic!("connect: {e}"))
}

fn ints(rows: &[Row]) -> Vec<i64> {
    rows.iter().map(|r| r.int(0).unwrap()).collect()
}

#[test]
fn every_arg_and_value_round_trips() {
    let mut db = connect(&fresh_db());
    db.batch(r#"CREATE TABLE t (k BIGINT PRIMARY KEY, i BIGINT, s TEXT COLLATE "C", b BYTEA)"#).unwrap();
    let blob: &[u8] = &[0, 1, 0xff, 0];
    let cases: [(i64, Arg<'_>, Arg<'_>, Arg<'_>); 4] = [
        (1, Arg::Int(i64::MIN), Arg::Text(""), Arg::Blob(&[])),
        (2, Arg::Int(i64::MAX), Arg::Text("é ✓ \u{1F600}"), Arg::Blob(blob)),
        (3, Arg::Int(0), Arg::Null, Arg::Null),
        (4, Arg::Null, Arg::Text("x"), Arg::Blob(blob)),
    ];
    for (k, i, s, b) in cases {
        assert_eq!(
            db.execute("INSERT INTO t (k, i, s, b) VALUES (?1, ?2, ?3, ?4)", &[Arg::Int(k), i, s, b]).unwrap(),
            1
        );
    }
    let rows = db.query("SELECT i, s, b FROM t ORDER BY k", &[]).unwrap();
    let expect = |i: Value, s: Value, b: Value| Row(vec![i, s, b]);
    assert_eq!(
        rows,
        vec![
            expect(Value::Int(i64::MIN), Value::Text(String::new()), Value::Blob(vec![])),
            expect(Value::Int(i64::MAX), Value::Text("é ✓ \u{1F600}".into()), Value::Blob(blob.to_vec())),
            expect(Value::Int(0), Value::Null, Value::Null),
            expect(Value::Null, Value::Text("x".into()), Value::Blob(blob.to_vec())),
        ]
    );
    // Every type a cell can come back as.
    let row = db
        .query_opt(
            "SELECT 7::int2, 8::int4, 9::int8, true, false, 'v'::varchar, 'n'::name, 'c'::char(1), 1.5::real, NULL",
            &[],
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        row.0,
        vec![
            Value::Int(7),
            Value::Int(8),
            Value::Int(9),
            Value::Int(1),
            Value::Int(0),
            Value::Text("v".into()),
            Value::Text("n".into()),
            Value::Text("c".into()),
            Value::Other,
            Value::Null
        ]
    );
    assert_eq!(db.query_opt("SELECT k FROM t WHERE k = ?1", &[Arg::Int(99)]).unwrap(), None);
}

#[test]
fn arguments_bind_to_the_types_postgres_infers_or_are_refused() {
    let mut db = connect(&fresh_db());
    // Narrower integer parameters take an i64 that fits, and refuse one that does not,
    // without quoting it.
    let small =
        db.query_opt("SELECT ?1::int2 + 0, ?2::int4 + 0", &[Arg::Int(-32768), Arg::Int(2_147_483_647)]).unwrap();
    assert_eq!(small.unwrap().0, vec![Value::Int(-32768), Value::Int(2_147_483_647)]);
    let err = db.query("SELECT ?1::int4", &[Arg::Int(2_147_483_648)]).unwrap_err();
    assert!(err.message.contains("out of range for an int4"), "{err}");
    assert!(!err.message.contains("2147483648"), "{err}");
    // An integer where text is inferred is written as its digits.
    assert_eq!(db.query_opt("SELECT ?1::text", &[Arg::Int(-42)]).unwrap().unwrap().0, vec![Value::Text("-42".into())]);
    // Text where an integer is inferred, a blob where text is: refused, not converted.
    let err = db.query("SELECT ?1::bigint", &[Arg::Text("12")]).unwrap_err();
    assert!(err.message.contains("cannot bind text to a parameter of type int8"), "{err}");
    let err = db.query("SELECT ?1::text", &[Arg::Blob(b"x")]).unwrap_err();
    assert!(err.message.contains("cannot bind a blob"), "{err}");
    // Null binds to anything.
    let row = db.query_opt("SELECT ?1::bigint, ?2::text, ?3::bytea, ?4::int2", &[Arg::Null; 4]).unwrap().unwrap();
    assert_eq!(row.0, vec![Value::Null; 4]);
    // The wrong number of arguments is an error, not a guess.
    assert!(db.query("SELECT ?1::bigint", &[]).is_err());
}

#[test]
fn numbered_placeholders_may_repeat_and_bare_ones_count_in_order() {
    let mut db = connect(&fresh_db());
    let row = db.query_opt("SELECT ?1::bigint * 10 + ?1, ?2::text || ?2", &[Arg::Int(4), Arg::Text("ab")]).unwrap();
    assert_eq!(row.unwrap().0, vec![Value::Int(44), Value::Text("abab".into())]);
    let row =
        db.query_opt("SELECT ?::bigint, ?::text, ?::bigint", &[Arg::Int(1), Arg::Text("two"), Arg::Int(3)]).unwrap();
    assert_eq!(row.unwrap().0, vec![Value::Int(1), Value::Text("two".into()), Value::Int(3)]);
    // The same statement again comes from the cache, with other values.
    let row = db.query_opt("SELECT ?1::bigint * 10 + ?1, ?2::text || ?2", &[Arg::Int(5), Arg::Text("c")]).unwrap();
    assert_eq!(row.unwrap().0, vec![Value::Int(55), Value::Text("cc".into())]);
}

#[test]
fn a_unique_violation_is_a_constraint_error_that_quotes_no_value() {
    let mut db = connect(&fresh_db());
    db.batch("CREATE TABLE k (id TEXT PRIMARY KEY, n BIGINT NOT NULL)").unwrap();
    db.execute("INSERT INTO k (id, n) VALUES (?1, 1)", &[Arg::Text("secret-id-value")]).unwrap();
    let err = db.execute("INSERT INTO k (id, n) VALUES (?1, 2)", &[Arg::Text("secret-id-value")]).unwrap_err();
    assert!(err.constraint, "{err}");
    assert!(err.message.contains("SQLSTATE 23505"), "{err}");
    assert!(!err.message.contains("secret-id-value"), "the detail quoting the key is left out: {err}");
    // Not null is class 23 too; a syntax error is not a constraint.
    assert!(db.execute("INSERT INTO k (id, n) VALUES ('x', ?1)", &[Arg::Null]).unwrap_err().constraint);
    let err = db.execute("INSERT INTO nowhere VALUES (1)", &[]).unwrap_err();
    assert!(!err.constraint && err.message.contains("42P01"), "{err}");
    // ON CONFLICT DO NOTHING changes no row.
    assert_eq!(
        db.execute("INSERT INTO k (id, n) VALUES (?1, 3) ON CONFLICT DO NOTHING", &[Arg::Text("secret-id-value")])
            .unwrap(),
        0
    );
}

#[test]
fn migrations_are_applied_once_by_replicas_starting_together() {
    let url = fresh_db();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || migrate(&mut connect(&url)))
        })
        .collect();
    for replica in replicas {
        replica.join().unwrap().unwrap();
    }
    let mut db = connect(&url);
    let applied: Vec<i64> = (1..=LATEST_VERSION).collect();
    assert_eq!(ints(&db.query("SELECT version FROM schema_migrations ORDER BY version", &[]).unwrap()), applied);
    let version = db.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[]).unwrap().unwrap();
    assert_eq!(version.text(0).unwrap(), "1");
    for table in [
        "events",
        "agents",
        "agent_keys",
        "tools",
        "approvals",
        "secrets",
        "signing_keys",
        "revoked_tokens",
        "tool_pins",
        "credential_uses",
        "shared_state",
        "meta",
        "schema_migrations",
    ] {
        assert!(db.table_exists(table).unwrap(), "{table}");
    }
    assert!(!db.table_exists("nothing_here").unwrap());
    // Again: nothing to do.
    migrate(&mut db).unwrap();
    assert_eq!(ints(&db.query("SELECT version FROM schema_migrations ORDER BY version", &[]).unwrap()), applied);
}

#[test]
fn a_database_migrated_by_a_newer_custos_is_refused() {
    let url = fresh_db();
    let mut db = connect(&url);
    migrate(&mut db).unwrap();
    db.execute("INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, 0)", &[Arg::Int(LATEST_VERSION + 1)])
        .unwrap();
    let err = migrate(&mut connect(&url)).unwrap_err();
    assert_eq!(err, MigrateError::Newer { found: LATEST_VERSION + 1, known: LATEST_VERSION });
    assert!(err.to_string().contains("upgrade custos"), "{err}");
}

#[test]
fn text_orders_by_bytes_as_in_sqlite() {
    let mut db = connect(&fresh_db());
    migrate(&mut db).unwrap();
    for tool in ["a0", "a/x", "a", "B", "b", "a/"] {
        db.execute(
            "INSERT INTO tools (tool, digest, descriptor, first_seen_ms, last_seen_ms) VALUES (?1, 'd', '{}', 0, 0)",
            &[Arg::Text(tool)],
        )
        .unwrap();
    }
    let texts = |rows: Vec<Row>| rows.iter().map(|r| r.text(0).unwrap()).collect::<Vec<_>>();
    assert_eq!(
        texts(db.query("SELECT tool FROM tools ORDER BY tool", &[]).unwrap()),
        ["B", "a", "a/", "a/x", "a0", "b"]
    );
    let prefix = db.query(
        "SELECT tool FROM tools WHERE tool >= ?1 AND tool < ?2 ORDER BY tool",
        &[Arg::Text("a/"), Arg::Text("a0")],
    );
    assert_eq!(texts(prefix.unwrap()), ["a/", "a/x"]);
}

#[test]
fn a_stream_yields_every_row_in_order_and_can_be_abandoned() {
    let mut db = connect(&fresh_db());
    let sql = "SELECT g::bigint, 'row ' || g FROM generate_series(1, ?1::int4) AS g ORDER BY g";
    let mut expected = 1_i64;
    for row in db.stream(sql, &[Arg::Int(100_000)], 64).unwrap() {
        let row = row.unwrap();
        assert_eq!(row.int(0).unwrap(), expected);
        assert_eq!(row.text(1).unwrap(), format!("row {expected}"));
        expected += 1;
    }
    assert_eq!(expected, 100_001);
    // Ten million rows, of which we read three: the query is cancelled and the connection
    // serves the next statement.
    let first: Vec<i64> = db
        .stream("SELECT g::bigint FROM generate_series(1, 10000000) AS g", &[], 16)
        .unwrap()
        .take(3)
        .map(|r| r.unwrap().int(0).unwrap())
        .collect();
    assert_eq!(first, [1, 2, 3]);
    assert_eq!(ints(&db.query("SELECT 5::bigint", &[]).unwrap()), [5]);
    // A query that fails says so, after the rows before the failure.
    let rows: Vec<_> = db.stream("SELECT 1 / (2 - g) FROM generate_series(1, 3) AS g", &[], 4).unwrap().collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0], Ok(Row(vec![Value::Int(1)])));
    assert!(rows[1].as_ref().unwrap_err().message.contains("22012"), "{rows:?}");
}

#[test]
fn transactions_and_savepoints_run_through_batch() {
    let mut db = connect(&fresh_db());
    db.batch("CREATE TABLE t (id BIGINT PRIMARY KEY); CREATE TABLE u (id BIGINT)").unwrap();
    db.batch("BEGIN").unwrap();
    db.execute("INSERT INTO t (id) VALUES (?1)", &[Arg::Int(1)]).unwrap();
    db.batch("ROLLBACK").unwrap();
    assert!(db.query("SELECT id FROM t", &[]).unwrap().is_empty());
    // A refused statement inside a savepoint leaves the rest of the transaction usable.
    db.batch("BEGIN").unwrap();
    db.execute("INSERT INTO t (id) VALUES (?1)", &[Arg::Int(1)]).unwrap();
    db.batch("SAVEPOINT s").unwrap();
    assert!(db.execute("INSERT INTO t (id) VALUES (?1)", &[Arg::Int(1)]).unwrap_err().constraint);
    db.batch("ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s").unwrap();
    db.execute("INSERT INTO t (id) VALUES (?1)", &[Arg::Int(2)]).unwrap();
    db.batch("COMMIT").unwrap();
    assert_eq!(ints(&db.query("SELECT id FROM t ORDER BY id", &[]).unwrap()), [1, 2]);
    // A batch that fails part way says so.
    assert!(db.batch("INSERT INTO u VALUES (1); SELECT * FROM nowhere").is_err());
}

#[test]
fn calls_block_a_tokio_worker_thread_without_touching_its_runtime() {
    let url = fresh_db();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answer = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut db = connect(&url);
            let rows = db.query("SELECT 41::bigint + 1", &[]).unwrap();
            let streamed = db.stream("SELECT generate_series(1, 3)::bigint", &[], 1).unwrap().count();
            (ints(&rows), streamed)
        })
        .await
        .unwrap()
    });
    assert_eq!(answer, (vec![42], 3));
}

#[test]
fn a_dropped_connection_ends_its_session() {
    fn assert_send<T: Send>() {}
    assert_send::<PgConn>();
    let url = fresh_db();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let sessions = |db: &mut PgConn| {
        let row = db.query_opt("SELECT count(*) FROM pg_stat_activity WHERE datname = ?1", &[Arg::Text(&name)]);
        row.unwrap().unwrap().int(0).unwrap()
    };
    let mut watcher = connect(&cluster().url());
    let db = connect(&url);
    assert_eq!(sessions(&mut watcher), 1);
    drop(db);
    wait_for("the session has ended", || sessions(&mut watcher) == 0);
}

/// Polls `cond` until it holds, or fails the test after a deadline.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn calls_fail_while_postgres_is_down_and_work_again_after_reconnect() {
    let mut cluster = TestCluster::start();
    let mut db = connect(&cluster.url());
    assert_eq!(ints(&db.query("SELECT 1::bigint", &[]).unwrap()), [1]);
    assert!(!db.is_closed());

    // A clean restart: the old session is gone, and calls on it fail rather than hang.
    cluster.restart();
    let err = db.query("SELECT 1::bigint", &[]).unwrap_err();
    assert!(err.message.contains("postgres"), "{err}");
    wait_for("the connection is seen closed", || db.is_closed());
    assert!(db.execute("SELECT 1", &[]).is_err(), "still closed: no silent reconnect");
    db.reconnect().unwrap();
    assert_eq!(ints(&db.query("SELECT 2::bigint", &[]).unwrap()), [2]);

    // A crash: calls fail while the server is down and reconnecting fails too; once it is
    // back, the next unit of work reconnects.
    cluster.kill();
    // The orphaned session notices the postmaster's death and ends; then every call fails.
    wait_for("the connection is seen closed", || db.is_closed());
    assert!(db.query("SELECT 1::bigint", &[]).is_err());
    let down = db.reconnect().unwrap_err();
    assert!(down.message.starts_with("cannot connect to postgres://custos@127.0.0.1:"), "{down}");
    assert!(!down.message.contains(PASSWORD), "{down}");
    cluster.restart();
    db.ensure_open().unwrap();
    assert_eq!(ints(&db.query("SELECT 3::bigint", &[]).unwrap()), [3]);
    db.ensure_open().unwrap();
}

/// Whether the session of `db` is encrypted, as the server sees it.
fn ssl_in_use(db: &mut PgConn) -> bool {
    let row = db.query_opt("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().unwrap();
    row.int(0).unwrap() == 1
}

#[test]
fn tls_follows_sslmode_and_verifies_the_server_when_asked() {
    let c = cluster();
    let base = c.url();
    let root = c.tls_root();
    let root = root.to_str().unwrap();
    assert!(ssl_in_use(&mut connect(&base)), "prefer is the default and the server offers TLS");
    assert!(ssl_in_use(&mut connect(&format!("{base}?sslmode=require"))));
    assert!(!ssl_in_use(&mut connect(&format!("{base}?sslmode=disable"))));
    let full = format!("{base}?sslmode=verify-full&sslrootcert={root}");
    assert!(ssl_in_use(&mut connect(&full)));

    // The certificate names 127.0.0.1 and localhost: another name fails verify-full, not verify-ca.
    let port = c.port();
    let other_name =
        format!("postgres://{USER}:{PASSWORD}@other.invalid:{port}/postgres?hostaddr=127.0.0.1&sslrootcert={root}");
    let err = PgConn::connect(&format!("{other_name}&sslmode=verify-full"), TIMEOUT).unwrap_err();
    assert!(err.message.contains("cannot connect to postgres://custos@other.invalid:"), "{err}");
    assert!(err.message.contains("certificate not valid for name"), "{err}");
    assert!(ssl_in_use(&mut connect(&format!("{other_name}&sslmode=verify-ca"))));

    // A certificate from another authority is refused by both.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger.crt");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&stranger, cert.cert.pem()).unwrap();
    for mode in ["verify-ca", "verify-full"] {
        let url = format!("{base}?sslmode={mode}&sslrootcert={}", stranger.display());
        assert!(PgConn::connect(&url, TIMEOUT).is_err(), "{mode}");
    }
    // The system's roots do not include a certificate made for this test; they are for
    // verify-full only.
    let err = PgConn::connect(&format!("{base}?sslmode=verify-full&sslrootcert=system"), TIMEOUT).unwrap_err();
    let unknown = err.message.contains("cannot connect") && err.message.contains("UnknownIssuer");
    assert!(unknown || err.message.contains("no trusted root certificates"), "{err}");
    let err = PgConn::connect(&format!("{base}?sslmode=verify-ca&sslrootcert=system"), TIMEOUT).unwrap_err();
    assert!(err.message.contains("needs `sslmode=verify-full`"), "{err}");
    // Verifying needs something to verify against.
    let err = PgConn::connect(&format!("{base}?sslmode=verify-full"), TIMEOUT).unwrap_err();
    assert!(err.message.contains("sslrootcert"), "{err}");
    let err =
        PgConn::connect(&format!("{base}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"), TIMEOUT).unwrap_err();
    assert!(err.message.contains("cannot read sslrootcert `/nonexistent/ca.pem`"), "{err}");
}

#[test]
fn a_wrong_password_is_refused_without_showing_it_and_trust_needs_none() {
    let c = cluster();
    let wrong = "not-the-password-4711";
    let url = format!("postgres://{USER}:{wrong}@127.0.0.1:{}/postgres", c.port());
    let err = PgConn::connect(&url, TIMEOUT).unwrap_err();
    assert!(err.message.contains("28P01"), "{err}");
    assert!(!err.message.contains(wrong), "{err}");
    assert!(err.message.contains(&format!("postgres://{USER}@127.0.0.1:{}/postgres", c.port())), "{err}");
    let mut trusted = connect(&format!("postgres://{TRUST_USER}@127.0.0.1:{}/postgres", c.port()));
    let me = trusted.query_opt("SELECT current_user::text", &[]).unwrap().unwrap();
    assert_eq!(me.text(0).unwrap(), TRUST_USER);
    assert_eq!(trusted.redacted_url(), format!("postgres://{TRUST_USER}@127.0.0.1:{}/postgres", c.port()));
    let debug = format!("{:?}", connect(&c.url()));
    assert!(debug.contains("postgres://custos@127.0.0.1") && !debug.contains(PASSWORD), "{debug}");
}

#[test]
fn urls_are_checked_and_shown_without_their_password() {
    assert_eq!(
        redacted("postgres://u:hunter2@db.example:6432/audit?sslmode=require"),
        "postgres://u@db.example:6432/audit"
    );
    assert_eq!(redacted("postgresql://u:hunter2@db.example/audit"), "postgres://u@db.example:5432/audit");
    assert!(!redacted("mysql://u:hunter2@h/d").contains("hunter2"));
    let refused = |url: &str| PgConn::connect(url, TIMEOUT).unwrap_err().message;
    assert!(refused("mysql://u:hunter2@h/d").contains("must start with `postgres://`"));
    let err = refused("postgres://u:hunter2@127.0.0.1:1/d?sslmode=allow");
    assert!(err.contains("unknown sslmode `allow`") && !err.contains("hunter2"), "{err}");
    let err = refused("postgres://u:hunter2@127.0.0.1:1/d?port=x");
    assert!(err.starts_with("invalid database URL") && !err.contains("hunter2"), "{err}");
    let err = refused("postgres://u:hunter2@127.0.0.1:1/d?sslmode=verify-ca&sslrootcert=%2Fno%20such%2Fca.pem");
    assert!(err.contains("`/no such/ca.pem`"), "{err}");
    // Nothing listens on port 1: the error names the server, not the password.
    let err = refused("postgres://u:hunter2@127.0.0.1:1/d?sslmode=disable&connect_timeout=1");
    assert!(err.starts_with("cannot connect to postgres://u@127.0.0.1:1/d") && !err.contains("hunter2"), "{err}");
    let err = refused("postgres://u:hunter2@127.0.0.1:1/d?sslmode=disable");
    assert!(err.starts_with("cannot connect to postgres://u@127.0.0.1:1/d") && !err.contains("hunter2"), "{err}");
}
