//! The server's binaries and the user they run as.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{PASSWORD, TRUST_USER, USER};

/// `nobody` on Debian: the user the server runs as when the tests run as root.
const UNPRIVILEGED_ID: u32 = 65534;

/// Where the binaries are and whether they must drop root.
#[derive(Debug)]
pub(crate) struct Server {
    bin: PathBuf,
    /// The tests run as root: server commands run as [`UNPRIVILEGED_ID`].
    as_nobody: bool,
}

impl Server {
    pub(crate) fn find() -> Server {
        let bin = bindir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (initdb, postgres): install the `postgresql` package, or set CUSTOS_PG_BINDIR"
            )
        });
        // The owner of /proc/self is this process's effective user.
        let as_nobody = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        Server { bin, as_nobody }
    }

    /// The program and arguments that run server binary `prog` as the right user.
    pub(crate) fn command_line(&self, prog: &str) -> Vec<OsString> {
        let path = self.bin.join(prog).into_os_string();
        if self.as_nobody {
            vec![
                "setpriv".into(),
                format!("--reuid={UNPRIVILEGED_ID}").into(),
                format!("--regid={UNPRIVILEGED_ID}").into(),
                "--clear-groups".into(),
                "--".into(),
                path,
            ]
        } else {
            vec![path]
        }
    }

    /// A server binary (`initdb`, `postgres`, `pg_ctl`), as the unprivileged user when root.
    pub(crate) fn command(&self, prog: &str) -> Command {
        let line = self.command_line(prog);
        let mut cmd = Command::new(line.first().map_or_else(|| OsString::from(prog), Clone::clone));
        cmd.args(line.iter().skip(1));
        cmd
    }

    /// A client binary (`psql`, `pg_isready`): any user may run those.
    pub(crate) fn client(&self, prog: &str) -> Command {
        Command::new(self.bin.join(prog))
    }

    /// Creates the cluster in `dir/data`, the socket directory and the TLS certificate.
    pub(crate) fn init(&self, dir: &Path) {
        let pwfile = dir.join("pwfile");
        write(&pwfile, PASSWORD.as_bytes());
        for sub in ["sock", "tls"] {
            fs::create_dir(dir.join(sub)).unwrap_or_else(|e| panic!("cannot create {sub}: {e}"));
        }
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap_or_else(|e| panic!("cannot make a certificate: {e}"));
        write(&dir.join("tls").join("server.crt"), cert.cert.pem().as_bytes());
        let key = dir.join("tls").join("server.key");
        write(&key, cert.signing_key.serialize_pem().as_bytes());
        // The server refuses a key file that others may read.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("chmod key: {e}"));
        self.hand_over(dir);
        let out = self
            .command("initdb")
            .args(["-N", "-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C", "--pwfile"])
            .arg(&pwfile)
            .arg("-D")
            .arg(dir.join("data"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        if !out.status.success() {
            panic!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        let _ = fs::remove_file(&pwfile);
        // Who may log in: the harness's own `psql` over the socket, the trust role without a
        // password, everyone else (the superuser) with one, over TLS or not.
        let hba = format!(
            "local all all trust\nhost all {TRUST_USER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        );
        write(&dir.join("data").join("pg_hba.conf"), hba.as_bytes());
        self.hand_over(dir);
    }

    /// Gives everything under `dir` to the unprivileged user (when the tests run as root).
    fn hand_over(&self, dir: &Path) {
        if !self.as_nobody {
            return;
        }
        let mut todo = vec![dir.to_owned()];
        while let Some(path) = todo.pop() {
            std::os::unix::fs::chown(&path, Some(UNPRIVILEGED_ID), Some(UNPRIVILEGED_ID))
                .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
            if path.is_dir() {
                let entries = fs::read_dir(&path).unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
                todo.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
    }

    /// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting until the server is gone.
    pub(crate) fn ctl_stop(&self, dir: &Path, mode: &str) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Whether the server on `port` accepts connections.
    pub(crate) fn is_ready(&self, port: u16) -> bool {
        self.client("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-d", "postgres"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// `CUSTOS_PG_BINDIR`, else the highest `/usr/lib/postgresql/N/bin`, else `pg_config --bindir`;
/// only a directory holding `initdb` counts.
pub(crate) fn bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("CUSTOS_PG_BINDIR").map(PathBuf::from) {
        return has_initdb(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && has_initdb(&dir)).then_some(dir)
}
