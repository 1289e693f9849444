//! Fail closed: while the audit store cannot be written (locked by another writer, its disk
//! full, or its files read-only) calls are refused with `-32002` and never forwarded, and the
//! same gateway process serves again once the fault clears; a policy that cannot be evaluated
//! denies.
//!
//! A read-only file is made with the immutable attribute (`chattr +i`), not the mode: SQLite
//! checks permissions when it opens the file, so a running gateway's open handles stay writable
//! whatever the mode (and root ignores it anyway), and remounting the file system read-only is
//! refused while files are open for writing. An immutable file refuses writes from anyone,
//! through descriptors already open. An unusable data directory at start-up is `startup.rs`'s
//! concern.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::harness::{of_kind, Deployment, RawSession, POLICIES};
use serde_json::{json, Value};

/// `custos-store`'s `BUSY_TIMEOUT`: how long a write waits for another writer's lock.
const STORE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake and a listing, from which the gateway learns that `echo` is a read tool.
fn start(s: &mut RawSession) {
    s.initialize();
    assert!(s.request(json!("list"), "tools/list", json!({}))["result"]["tools"].is_array());
}

fn echo(s: &mut RawSession, id: &str, arguments: Value) -> Value {
    s.request(json!(id), "tools/call", json!({"name": "echo", "arguments": arguments}))
}

fn assert_echoed(answer: &Value, text: &str) {
    assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
}

fn assert_audit_refused(answer: &Value) {
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("audit log cannot be written"), "{message}");
}

/// Request ids (their JSON text, as recorded) that have a `call.requested` event.
fn requested_ids(d: &Deployment) -> Vec<String> {
    of_kind(&d.events(), "call.requested")
        .iter()
        .map(|e| e["detail"]["request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Another process holding the database's write lock (`BEGIN EXCLUSIVE`) until dropped.
struct LockHolder {
    child: std::process::Child,
}

impl LockHolder {
    fn hold(database: &Path) -> Self {
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n\
                      c.execute('BEGIN EXCLUSIVE')\n\
                      print('locked', flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "locked", "the lock holder did not take the lock");
        Self { child }
    }

    /// Closes its stdin: it commits nothing and exits, releasing the lock.
    fn release(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_locked_audit_store_refuses_calls_and_the_gateway_recovers_when_released() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    start(&mut s);
    assert_echoed(&echo(&mut s, "before", json!({"text": "before"})), "before");

    let lock = LockHolder::hold(&d.database());
    let started = Instant::now();
    let refused = echo(&mut s, "while-locked", json!({"text": "while locked"}));
    let waited = started.elapsed();
    assert_audit_refused(&refused);
    assert!(
        waited >= STORE_BUSY_TIMEOUT - Duration::from_secs(1) && waited < STORE_BUSY_TIMEOUT * 2,
        "refused after the store's busy timeout, not at once nor much later: {waited:?}"
    );
    // The session is still served while the lock holds: what needs no log goes through.
    assert_eq!(s.request(json!("ping"), "ping", json!({}))["result"], json!({}));

    lock.release();
    assert_echoed(&echo(&mut s, "after", json!({"text": "after"})), "after");
    let (status, _) = s.finish();
    assert!(status.success());

    d.verify_ok();
    let ids = requested_ids(&d);
    assert_eq!(ids, [r#""before""#, r#""after""#], "the refused call left no partial record");
    let finished = of_kind(&d.events(), "call.finished").len();
    assert_eq!(finished, 2, "only the two forwarded calls finished");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when mounting is not possible here (not root, or no `CAP_SYS_ADMIN`).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes `path` until the file system has no room left; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 16, 1 << 12, 1] {
        let block = vec![0u8; chunk];
        while let Ok(n) = file.write(&block) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
    }
    let _ = file.sync_all();
    written
}

#[test]
fn a_full_disk_refuses_calls_and_the_gateway_recovers_when_space_returns() {
    let Some(disk) = Tmpfs::mount("8m") else {
        eprintln!("SKIPPED a_full_disk_…: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let d = Deployment::new(POLICIES, "");
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(d.config(), format!("data_dir = {:?}\n{config}", disk.path().to_str().unwrap())).unwrap();
    let mut s = RawSession::sample(&d, &[]);
    start(&mut s);
    assert_echoed(&echo(&mut s, "before", json!({"text": "before"})), "before");
    assert!(disk.path().join("custos.db").exists(), "the log lives on the small disk");

    let filler: PathBuf = disk.path().join("filler");
    assert!(fill(&filler) > 0);
    // Each call appends new frames to the write-ahead log, which needs pages the disk no
    // longer has.
    assert_audit_refused(&echo(&mut s, "disk-full-1", json!({"text": "full"})));
    assert_audit_refused(&echo(&mut s, "disk-full-2", json!({"text": "still full"})));

    std::fs::remove_file(&filler).unwrap();
    assert_echoed(&echo(&mut s, "after", json!({"text": "after"})), "after");
    let (status, _) = s.finish();
    assert!(status.success());
    d.verify_ok();
    assert_eq!(requested_ids(&d), [r#""before""#, r#""after""#]);
    drop(disk);
}

/// [`POLICIES`] and a forbid reading `amount`, declared `Long` in the schema.
const AMOUNT_POLICIES: &str = r#"
@id("readers-read")
permit (principal in Custos::Group::"readers", action == Custos::Action::"call_tool", resource)
when { resource.class == "read" };

@id("amount-guard")
@reason("amounts over 10 need a person")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has amount && context.arguments.amount > 10 };
"#;

#[test]
fn a_policy_that_cannot_be_evaluated_denies_and_names_itself() {
    let d = Deployment::new(AMOUNT_POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    start(&mut s);
    // A string where the policy compares a Long: the forbid errors, and although the permit
    // matched, the call is denied.
    let denied = echo(&mut s, "ill-typed", json!({"text": "t", "amount": "12"}));
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    let message = denied.to_string();
    assert!(message.contains("amount-guard"), "the failed policy is named: {message}");
    // Well typed: under the limit allowed, over it forbidden.
    assert_echoed(&echo(&mut s, "small", json!({"text": "small", "amount": 5})), "small");
    let over = echo(&mut s, "large", json!({"text": "large", "amount": 50}));
    assert_eq!(over["error"]["code"], -32001, "{over}");
    let (status, _) = s.finish();
    assert!(status.success());

    d.verify_ok();
    let events = d.events();
    let decision = |id: &str| {
        let requested = of_kind(&events, "call.requested");
        let step = &requested.iter().find(|e| e["detail"]["request_id"] == format!("{id:?}")).unwrap()["step"];
        let decided = of_kind(&events, "call.decided");
        let e = decided.iter().find(|e| &e["step"] == step).unwrap_or_else(|| panic!("{id}: {decided:#?}"));
        (e["decision"].as_str().unwrap().to_owned(), e.to_string())
    };
    let (ill, record) = decision("ill-typed");
    assert_eq!(ill, "deny");
    assert!(record.contains("amount-guard"), "the record names the failed policy: {record}");
    assert_eq!(decision("small").0, "allow");
    assert_eq!(decision("large").0, "deny");
}

/// Files made immutable (`chattr +i`) for one test, writable again when dropped.
struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    /// `None` when the attribute cannot be set here (not root, or a file system without it:
    /// tmpfs, overlayfs).
    fn set(paths: &[PathBuf]) -> Option<Self> {
        let set = Command::new("chattr").arg("+i").args(paths).stderr(Stdio::null()).status();
        let made = Self { paths: paths.to_vec() };
        set.is_ok_and(|s| s.success()).then_some(made)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.paths).stderr(Stdio::null()).status();
    }
}

#[test]
fn a_read_only_audit_store_refuses_calls_and_the_gateway_recovers_when_writable_again() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    start(&mut s);
    assert_echoed(&echo(&mut s, "before", json!({"text": "before"})), "before");
    let database = d.database();
    let wal = PathBuf::from(format!("{}-wal", database.display()));
    assert!(wal.exists(), "the gateway commits through a write-ahead log");

    let Some(read_only) = Immutable::set(&[database, wal]) else {
        eprintln!("SKIPPED a_read_only_…: cannot set the immutable attribute here (needs root and ext4/xfs/btrfs)");
        return;
    };
    assert_audit_refused(&echo(&mut s, "read-only-1", json!({"text": "read only"})));
    assert_audit_refused(&echo(&mut s, "read-only-2", json!({"text": "still read only"})));
    // The session is still served: what needs no log goes through.
    assert_eq!(s.request(json!("ping"), "ping", json!({}))["result"], json!({}));

    drop(read_only);
    assert_echoed(&echo(&mut s, "after", json!({"text": "after"})), "after");
    let (status, _) = s.finish();
    assert!(status.success());
    d.verify_ok();
    assert_eq!(requested_ids(&d), [r#""before""#, r#""after""#], "the refused calls left no partial record");
}
