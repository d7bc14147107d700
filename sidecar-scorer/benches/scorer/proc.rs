//! Processes of the benchmark from `/proc`: which ones make up a PostgreSQL server,
//! their CPU time, and the CPUs they may run on.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use outrider_harness::load::cpu_seconds;

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: state, then the parent's id.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The postmaster serving `url` (found by the port on its command line) and its
/// children: every process whose CPU time is the database's.
pub fn postgres_pids(url: &str) -> Vec<u32> {
    let Some(port) = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
    else {
        return Vec::new();
    };
    let postmaster = pids().find(|pid| {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"/postgres"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
    });
    let Some(postmaster) = postmaster else {
        return Vec::new();
    };
    let mut out = vec![postmaster];
    out.extend(pids().filter(|pid| parent(*pid) == Some(postmaster)));
    out
}

/// CPU seconds of each process that is still alive.
pub fn cpu_of(pids: &[u32]) -> HashMap<u32, f64> {
    pids.iter()
        .filter_map(|pid| Some((*pid, cpu_seconds(*pid).ok()?)))
        .collect()
}

/// CPU time used between two readings (processes that appeared in between count
/// whole).
pub fn cpu_between(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

/// Fails unless every thread of every process may run on `cpu` alone.
pub fn check_pinned(pids: &[u32], cpu: usize) -> Result<()> {
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let status = std::fs::read_to_string(task?.path().join("status"))?;
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .context("no Cpus_allowed_list")?
                .trim();
            if allowed != cpu.to_string() {
                bail!("process {pid} may run on CPUs {allowed}, not only {cpu}");
            }
        }
    }
    Ok(())
}
