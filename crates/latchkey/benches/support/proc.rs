//! /proc readings shared by the benchmarks (`load.rs`, `sockets.rs`): CPU ticks of processes,
//! threads and the machine, RSS in MiB, and waiting for a quiet machine. Linux only.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The longest wait for a quiet machine before each scenario (bench.sh's `QUIET_WAIT`).
pub const QUIET_WAIT: Duration = Duration::from_secs(60);

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// (user + system) clock ticks of one /proc stat line.
pub fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

pub fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_ticks(&s)).map_or(0, |(_, t)| t)
}

/// Ticks of each live thread of `pid`, by thread id.
pub fn thread_ticks(pid: u32) -> BTreeMap<u64, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if let Some(t) = std::fs::read_to_string(e.path().join("stat")).ok().and_then(|s| stat_ticks(&s)) {
            out.insert(tid, t);
        }
    }
    out
}

/// Machine-wide (busy, steal) clock ticks from /proc/stat; busy leaves out idle, iowait and steal.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU ticks of this process's children that have been waited for (wrk, once it ended).
pub fn children_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = stat.rfind(')') else { return 0 };
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // cutime is field 16, cstime field 17.
    let at = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    at(13) + at(14)
}

/// Waits, up to `QUIET_WAIT`, until processes other than this benchmark (and its children) and
/// the servers use less than 15% of the machine, as the peer's bench.sh does before each run: on
/// a shared machine a build running beside the benchmark halves the figures. Says so when it
/// waited or gave up.
pub fn wait_quiet(server_pids: &[u32]) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let ours = || process_ticks("self") + children_ticks() + server_pids.iter().map(|p| process_ticks(&p.to_string())).sum::<u64>();
    let started = Instant::now();
    loop {
        let (m0, o0, t0) = (machine_ticks().0, ours(), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let (m1, o1) = (machine_ticks().0, ours());
        let others =
            (m1.saturating_sub(m0) as f64 - o1.saturating_sub(o0) as f64).max(0.0) / (t0.elapsed().as_secs_f64() * clock_ticks_per_sec());
        let waited = started.elapsed().as_secs();
        if others < 0.15 * cpus {
            if waited > 2 {
                println!("[quiet] waited {waited} s for other processes to calm down");
            }
            return;
        }
        if started.elapsed() >= QUIET_WAIT {
            println!("[quiet] WARNING: other processes still use {others:.2} cores after {waited} s; the next figures are disturbed");
            return;
        }
    }
}
