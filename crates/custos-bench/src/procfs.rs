//! What `/proc` says about a process: CPU time spent and memory held.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// User plus system CPU time `pid` has used so far (all its threads).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let (_, ticks) = stat(pid)?;
    Ok(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// CPU time `root` and its children have used so far: a PostgreSQL server is a postmaster and
/// one backend process per session. A child that has exited since is not counted.
pub fn tree_cpu_time(root: u32) -> Result<Duration> {
    let mut ticks = stat(root)?.1;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process may end between listing and reading: skip it.
        if let Ok((ppid, t)) = stat(pid) {
            if ppid == root {
                ticks += t;
            }
        }
    }
    Ok(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// The parent's pid and the user plus system clock ticks of `pid`, from `/proc/PID/stat`.
fn stat(pid: u32) -> Result<(u32, u64)> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("no `)` in /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so ppid (4), utime (14) and stime (15) are at 1, 11
    // and 12 here.
    let field = |i: usize| -> Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| anyhow!("no field {} in /proc/{pid}/stat", i + 3))
    };
    Ok((u32::try_from(field(1)?).unwrap_or(0), field(11)? + field(12)?))
}

/// Memory of `pid`, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Memory {
    /// Resident set size now, in bytes.
    pub rss: u64,
    /// The largest resident set size so far, in bytes.
    pub peak_rss: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
    };
    Ok(Memory { rss: kib("VmRSS:")?, peak_rss: kib("VmHWM:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_spent_cpu_and_holds_memory() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_time(pid).unwrap() > before);
        let m = memory(pid).unwrap();
        assert!(m.rss > 0 && m.peak_rss >= m.rss);
    }
}
