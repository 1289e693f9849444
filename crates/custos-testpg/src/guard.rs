//! Removes a cluster when the test process ends.
//!
//! A cluster shared by the tests of one binary lives in a `static`, and statics are never
//! dropped: without this, every test run would leave a postmaster behind. The guard is a shell
//! that reads its standard input until end of file, then stops the server (immediate mode)
//! and removes the directory. Only this process holds the pipe's other end (std opens it
//! close-on-exec), so the guard runs when the test process exits, however it exits.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::server::Server;

const SCRIPT: &str = r#"cat >/dev/null 2>&1; "$@" >/dev/null 2>&1; rm -rf "$CUSTOS_PG_DIR""#;

#[derive(Debug)]
pub(crate) struct Guard {
    child: Child,
    /// Closing it (drop, or this process's exit) sets the guard off.
    stdin: Option<ChildStdin>,
}

impl Guard {
    pub(crate) fn spawn(server: &Server, dir: &Path) -> Guard {
        let mut stop = server.command_line("pg_ctl");
        stop.extend(["stop".into(), "-w".into(), "-m".into(), "immediate".into(), "-D".into()]);
        stop.push(dir.join("data").into_os_string());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("custos-pg-guard")
            .args(stop)
            .env("CUSTOS_PG_DIR", dir)
            // Its own process group: a Ctrl-C to the tests does not stop the cleanup.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the cleanup guard: {e}"));
        let stdin = child.stdin.take();
        Guard { child, stdin }
    }

    /// Sets the guard off and waits until it has stopped the server and removed the directory.
    pub(crate) fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
