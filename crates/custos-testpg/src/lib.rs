//! A throw-away PostgreSQL cluster for tests: `initdb` into a temporary directory, a postmaster
//! on a free loopback port, stopped and removed when the test is done.
//!
//! The PostgreSQL store is tested against a real server, never a mock: what matters is how
//! PostgreSQL infers parameter types, orders text, reports constraint violations and behaves
//! when it restarts. The server binaries are found under `/usr/lib/postgresql/*/bin` (highest
//! version), through `pg_config --bindir`, or in `CUSTOS_PG_BINDIR`.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then every server command runs as
//! `nobody` through `setpriv`, and the directory is handed to that user. As a normal user the
//! commands run directly.
//!
//! Every cluster listens on `127.0.0.1` only, with TLS on (a self-signed certificate made at
//! start, [`TestCluster::tls_root`]). Authentication: the superuser [`USER`] logs in with
//! [`PASSWORD`] (SCRAM), role [`TRUST_USER`] without one (`trust`).
//!
//! # Layout
//!
//! - `lib.rs`: [`TestCluster`]: start, stop, restart, kill, databases.
//! - `server.rs`: the server's binaries, the unprivileged user, readiness.
//! - `guard.rs`: the process that removes the cluster when the test process ends, even when a
//!   shared (`static`) cluster is never dropped.

#![expect(clippy::panic, reason = "a test harness: a cluster that cannot start fails the test that asked for it")]

mod guard;
mod server;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use guard::Guard;
use server::Server;

/// The superuser, created by `initdb`.
pub const USER: &str = "custos";
/// The superuser's password (the test clusters are loopback-only and short-lived).
pub const PASSWORD: &str = "custos-test-password";
/// A role that logs in over TCP without a password (`trust` in `pg_hba.conf`).
pub const TRUST_USER: &str = "custos_trust";

/// How long a server may take to accept connections after it is started.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// One PostgreSQL cluster, running until it is dropped (or the test process ends).
#[derive(Debug)]
pub struct TestCluster {
    server: Server,
    /// The temporary directory: data, socket, certificate, server log.
    dir: PathBuf,
    port: u16,
    /// The running postmaster; `None` after [`TestCluster::stop`] or [`TestCluster::kill`].
    postmaster: Option<Child>,
    /// Stops the cluster and removes `dir` when it is dropped or this process ends.
    guard: Option<Guard>,
}

impl TestCluster {
    /// Creates and starts a cluster; panics with the server log's tail if it does not come up.
    pub fn start() -> TestCluster {
        let server = Server::find();
        let tmp = tempfile::Builder::new()
            .prefix("custos-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let dir = tmp.keep();
        let guard = Guard::spawn(&server, &dir);
        server.init(&dir);
        let mut cluster = TestCluster { server, dir, port: 0, postmaster: None, guard: Some(guard) };
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => {
                    cluster.psql("postgres", &format!("CREATE ROLE {TRUST_USER} LOGIN"));
                    return cluster;
                }
                Err(tail) => last = tail,
            }
        }
        panic!("postgres did not start; server log tail:\n{last}");
    }

    /// Whether this machine has the PostgreSQL server binaries [`TestCluster::start`] needs.
    pub fn available() -> bool {
        server::bindir().is_some()
    }

    /// The postmaster's process id while it runs; the sessions' backends are its children.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `postgres` as the superuser, with its password.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A URL for database `db` as the superuser, with its password.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (owned by the superuser) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url_for(name)
    }

    /// The certificate the server presents (self-signed, for `127.0.0.1` and `localhost`), to
    /// use as `sslrootcert`.
    pub fn tls_root(&self) -> PathBuf {
        self.dir.join("tls").join("server.crt")
    }

    /// Stops the server (fast shutdown: sessions are ended, the data is kept).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            self.server.ctl_stop(&self.dir, "fast");
            let _ = child.wait();
        }
    }

    /// Kills the postmaster with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same data and port. After
    /// [`TestCluster::kill`] the old server's sessions may still hold its shared memory for a
    /// moment: starting is retried until they are gone.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(tail) if Instant::now() >= deadline => {
                    panic!("postgres did not restart; server log tail:\n{tail}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts the postmaster and waits until it accepts connections; on failure, the log's tail.
    fn try_start(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the server log: {e}"));
        let log_err = log.try_clone().unwrap_or_else(|e| panic!("cannot open the server log: {e}"));
        let data = self.dir.join("data");
        let sock = self.dir.join("sock");
        let tls = self.dir.join("tls");
        let mut child = self
            .server
            .command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(&sock)
            .args(["-c", "fsync=on", "-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", tls.join("server.crt").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", tls.join("server.key").display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run postgres: {e}"));
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.log_tail());
            }
            if self.server.is_ready(self.port) {
                self.postmaster = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one SQL command as the superuser over the Unix socket.
    fn psql(&self, db: &str, sql: &str) {
        let out = self
            .server
            .client("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        if !out.status.success() {
            panic!("psql `{sql}` failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines of the server log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines.iter().skip(lines.len().saturating_sub(30)).copied().collect::<Vec<_>>().join("\n")
    }

    /// The cluster's directory (data in `data/`, the server log in `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            self.server.ctl_stop(&self.dir, "immediate");
            let _ = child.wait();
        }
        if let Some(guard) = self.guard.take() {
            guard.finish();
        }
    }
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}
