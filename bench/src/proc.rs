//! What the server process uses, read from `/proc/<pid>`.

use anyhow::{Context, Result};

/// CPU seconds the process has used (user + system).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// CPU clock ticks the process has used (user + system).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat format")?
        .1
        .split_whitespace()
        .collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Resident memory in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Resident memory in KiB once it stops falling, and the seconds that
/// took: read each second until ten reads in a row are no lower than the
/// lowest before them (jemalloc hands freed pages back to the system in
/// steps over some seconds), for at most a minute.
pub async fn settled_rss_kib(pid: u32) -> Result<(u64, u64)> {
    let (mut lowest, mut lowest_at) = (rss_kib(pid)?, 0);
    for waited in 1..=60 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = rss_kib(pid)?;
        if now < lowest {
            (lowest, lowest_at) = (now, waited);
        } else if waited - lowest_at >= 10 {
            break;
        }
    }
    Ok((lowest, lowest_at))
}
