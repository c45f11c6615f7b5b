//! Load benchmark: starts the real `latchkey` binary on a fresh data directory and measures
//! password logins against the argon2 bound, a login flood, refresh grants, CPU and memory. It
//! prints figures and never asserts. Run with `cargo bench -p latchkey --bench load` (about
//! 55 s after the build); docs/performance.md has the last results.
//!
//! The load generator runs in this process on a multi-thread tokio runtime with one pooled
//! (keep-alive) reqwest client, and shares the machine's cores with the server, as the peer
//! figures (wrk on the same machine) do. CPU and thread states come from /proc, so Linux only.
//! `MALLOC_*` variables pass through to the server (useful for allocator experiments);
//! `LATCHKEY_*` and `RUST_LOG` do not. `PEER_FIGURES` names another peer-figures file.

use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EMAIL: &str = "load@example.com";
const PASSWORD: &str = "correct horse battery staple";
const CLIENT_ID: &str = "latchkey-cli";

/// The server's default argon2id parameters (config.rs): m = 19456 KiB, t = 2, p = 1.
const ARGON_M_KIB: u32 = 19456;
const ARGON_T: u32 = 2;
const ARGON_P: u32 = 1;

const ARGON_SECS: f64 = 5.0;
const WARMUP: Duration = Duration::from_secs(1);
const LOGIN_CLIENTS: usize = 32;
const LOGIN_SECS: u64 = 10;
const OVERLOAD_CLIENTS: usize = 256;
const OVERLOAD_SECS: u64 = 5;
const REFRESH_CLIENTS: usize = 32;
const REFRESH_SECS: u64 = 10;
const REFRESH_SERIAL_SECS: u64 = 3;

const LOGIN_TARGET_RATIO: f64 = 0.90;
const REFUSED_P99_TARGET_MS: f64 = 100.0;
const REFRESH_TARGET_PER_SEC: f64 = 3000.0;

/// Status recorded for a request that got no HTTP answer at all.
const NO_ANSWER: u16 = 0;

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("server.stderr");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(&data);
        // Only the settings below: nothing from the caller's environment changes the server.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LATCHKEY_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("LATCHKEY_LIMITS__LOGIN_PER_IP_PER_MINUTE", "100000000")
            .env("LATCHKEY_LIMITS__TOKEN_PER_IP_PER_MINUTE", "100000000")
            .env("LATCHKEY_LIMITS__REGISTER_PER_IP_PER_HOUR", "100000000")
            .env("LATCHKEY_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().expect("start the latchkey binary");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the address, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("latchkey listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not print its address; its stderr:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        Server { child, pid, base: format!("http://{addr}"), log, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's stderr (warnings and errors only, at `log.level = warn`).
    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Memory

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// Samples the server's RSS every 50 ms; `take_peak` answers the highest since the last call.
struct RssSampler {
    peak: Arc<AtomicU64>,
    overall: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let overall = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, o, s) = (peak.clone(), overall.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                    o.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        RssSampler { peak, overall, stop }
    }

    fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }

    fn overall(&self) -> u64 {
        self.overall.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// CPU

/// (user + system) clock ticks of one /proc stat line.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_ticks(&s)).map_or(0, |(_, t)| t)
}

/// Ticks of each live thread of `pid`, by thread id.
fn thread_ticks(pid: u32) -> BTreeMap<u64, (String, u64)> {
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
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU used in a window, in cores (1.0 = one CPU busy all the time).
struct CpuUse {
    server: f64,
    generator: f64,
    /// Everything else on the machine (other processes, the kernel's own work), and time the
    /// hypervisor gave to other guests (steal): both mean the figures were disturbed.
    others: f64,
    steal: f64,
    /// Server threads by name, busiest first: (name, threads, cores).
    by_name: Vec<(String, usize, f64)>,
    server_threads: usize,
}

impl CpuUse {
    fn describe(&self) -> String {
        let names: Vec<String> = self.by_name.iter().map(|(n, k, c)| format!("{n} x{k}: {c:.2}")).collect();
        format!(
            "server {:.2} cores ({}; {} threads), load generator {:.2} cores, others {:.2}, steal {:.2}",
            self.server,
            names.join(", "),
            self.server_threads,
            self.generator,
            self.others,
            self.steal
        )
    }
}

/// Measures the CPU the server and this process use from `w.from` to `w.end`.
async fn cpu_during(pid: u32, w: Window) -> CpuUse {
    tokio::time::sleep_until(w.from.into()).await;
    let (s0, g0, t0, m0) = (process_ticks(&pid.to_string()), process_ticks("self"), thread_ticks(pid), machine_ticks());
    let started = Instant::now();
    tokio::time::sleep_until(w.end.into()).await;
    let (s1, g1, t1, m1) = (process_ticks(&pid.to_string()), process_ticks("self"), thread_ticks(pid), machine_ticks());
    let secs = started.elapsed().as_secs_f64() * clock_ticks_per_sec();
    let mut by: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (tid, (name, t)) in &t1 {
        let before = t0.get(tid).map_or(0, |(_, b)| *b);
        let e = by.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += t.saturating_sub(before);
    }
    let mut by_name: Vec<(String, usize, f64)> = by.into_iter().map(|(n, (k, t))| (n, k, t as f64 / secs)).collect();
    by_name.sort_by(|a, b| b.2.total_cmp(&a.2));
    let (server, generator) = (s1.saturating_sub(s0) as f64 / secs, g1.saturating_sub(g0) as f64 / secs);
    CpuUse {
        server,
        generator,
        others: (m1.0.saturating_sub(m0.0) as f64 / secs - server - generator).max(0.0),
        steal: m1.1.saturating_sub(m0.1) as f64 / secs,
        by_name,
        server_threads: t1.len(),
    }
}

/// What the server's SQLite worker threads were doing, sampled every 5 ms from /proc: share of
/// samples running, idle (waiting for the next statement), or asleep in SQLite's busy handler
/// (a connection waiting for the write lock another connection holds).
struct SqliteStates {
    running: f64,
    idle: f64,
    busy_sleep: f64,
    other: f64,
}

impl SqliteStates {
    fn describe(&self) -> String {
        format!(
            "SQLite worker threads: running {:.0}%, asleep in the busy handler (waiting for the write lock) {:.0}%, idle {:.0}%, other {:.0}%",
            self.running * 100.0,
            self.busy_sleep * 100.0,
            self.idle * 100.0,
            self.other * 100.0
        )
    }
}

/// Samples the states of the server's `sqlx-sqlite-worker` threads from `w.from` to `w.end`, on
/// a thread of its own so the load generator's runtime is not disturbed.
fn sqlite_states(pid: u32, w: Window) -> std::thread::JoinHandle<SqliteStates> {
    std::thread::spawn(move || {
        std::thread::sleep(w.from.saturating_duration_since(Instant::now()));
        let (mut running, mut idle, mut busy, mut other) = (0u64, 0u64, 0u64, 0u64);
        while Instant::now() < w.end {
            if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for e in dir.flatten() {
                    let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
                    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
                    if !stat[open + 1..close].starts_with("sqlx-sqlite") {
                        continue;
                    }
                    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
                    let wchan = std::fs::read_to_string(e.path().join("wchan")).unwrap_or_default();
                    if state == "R" {
                        running += 1;
                    } else if wchan.contains("nanosleep") {
                        busy += 1;
                    } else if wchan.contains("futex") {
                        idle += 1;
                    } else {
                        other += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = (running + idle + busy + other).max(1) as f64;
        SqliteStates { running: running as f64 / n, idle: idle as f64 / n, busy_sleep: busy as f64 / n, other: other as f64 / n }
    })
}

// ---------------------------------------------------------------------------------------------
// The argon2 bound

/// argon2id hashes per second with the server's parameters, one thread per CPU, for ~5 s.
fn argon2_bound(threads: usize) -> f64 {
    let (m0, g0) = (machine_ticks(), process_ticks("self"));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            std::thread::spawn(move || {
                let params = Params::new(ARGON_M_KIB, ARGON_T, ARGON_P, Some(32)).expect("params");
                let secret = format!("user-{i}").into_bytes();
                let argon = Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params).expect("argon2");
                let salt = [7u8; 16];
                let mut out = [0u8; 32];
                let mut n = 0u64;
                while started.elapsed().as_secs_f64() < ARGON_SECS {
                    argon.hash_password_into(PASSWORD.as_bytes(), &salt, &mut out).expect("hash");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let secs = started.elapsed().as_secs_f64();
    let (m1, g1) = (machine_ticks(), process_ticks("self"));
    let ticks = secs * clock_ticks_per_sec();
    let own = g1.saturating_sub(g0) as f64 / ticks;
    println!(
        "[argon2] CPU: hashing {own:.2} cores, others {:.2}, steal {:.2}",
        (m1.0.saturating_sub(m0.0) as f64 / ticks - own).max(0.0),
        m1.1.saturating_sub(m0.1) as f64 / ticks
    );
    total as f64 / secs
}

// ---------------------------------------------------------------------------------------------
// Recording

/// When a client's answers count: those completed after `from` (the warm-up is over) and
/// before `end`. Clients stop starting requests at `end`.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    end: Instant,
}

impl Window {
    fn new(warmup: Duration, measure: Duration) -> Window {
        let from = Instant::now() + warmup;
        Window { from, end: from + measure }
    }

    fn open(&self) -> bool {
        Instant::now() < self.end
    }

    fn secs(&self) -> f64 {
        (self.end - self.from).as_secs_f64()
    }
}

#[derive(Default)]
struct Samples {
    /// (status, latency in microseconds) of each answer completed inside the window.
    all: Vec<(u16, u32)>,
}

impl Samples {
    fn record(&mut self, w: &Window, started: Instant, status: u16) {
        let done = Instant::now();
        if done >= w.from && done <= w.end {
            let micros = u32::try_from((done - started).as_micros()).unwrap_or(u32::MAX);
            self.all.push((status, micros));
        }
    }

    fn merge(parts: Vec<Samples>) -> Samples {
        Samples { all: parts.into_iter().flat_map(|s| s.all).collect() }
    }

    fn count(&self, keep: impl Fn(u16) -> bool) -> usize {
        self.all.iter().filter(|(s, _)| keep(*s)).count()
    }

    /// Latency percentile in milliseconds of the answers whose status `keep` accepts.
    fn pct_ms(&self, p: f64, keep: impl Fn(u16) -> bool) -> Option<f64> {
        let mut v: Vec<u32> = self.all.iter().filter(|(s, _)| keep(*s)).map(|(_, l)| *l).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(f64::from(v[idx]) / 1000.0)
    }

    fn statuses(&self) -> String {
        let mut by: BTreeMap<u16, u64> = BTreeMap::new();
        for (s, _) in &self.all {
            *by.entry(*s).or_default() += 1;
        }
        let parts: Vec<String> =
            by.iter().map(|(s, n)| if *s == NO_ANSWER { format!("no answer: {n}") } else { format!("{s}: {n}") }).collect();
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }
}

fn any(_: u16) -> bool {
    true
}
fn ok(s: u16) -> bool {
    s == 200
}
fn refused(s: u16) -> bool {
    s == 503 || s == 429
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.2} ms"),
        None => "-".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

async fn login(http: &reqwest::Client, url: &str) -> Result<String, u16> {
    let resp = http.post(url).json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD })).send().await.map_err(|_| NO_ANSWER)?;
    let status = resp.status().as_u16();
    if status != 200 {
        let _ = resp.bytes().await;
        return Err(status);
    }
    let body: serde_json::Value = resp.json().await.map_err(|_| NO_ANSWER)?;
    body["refresh_token"].as_str().map(str::to_owned).ok_or(NO_ANSWER)
}

/// One login; the status, with the body read so the connection goes back to the pool.
async fn login_status(http: &reqwest::Client, url: &str) -> u16 {
    match http.post(url).json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD })).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(_) => status,
                Err(_) => NO_ANSWER,
            }
        }
        Err(_) => NO_ANSWER,
    }
}

/// One refresh grant: the status and, on success, the new refresh token.
async fn refresh(http: &reqwest::Client, url: &str, token: &str) -> (u16, Option<String>) {
    let resp =
        match http.post(url).form(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", CLIENT_ID)]).send().await {
            Ok(r) => r,
            Err(_) => return (NO_ANSWER, None),
        };
    let status = resp.status().as_u16();
    if status != 200 {
        let _ = resp.bytes().await;
        return (status, None);
    }
    match resp.json::<serde_json::Value>().await {
        Ok(body) => (status, body["refresh_token"].as_str().map(str::to_owned)),
        Err(_) => (NO_ANSWER, None),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn login_load(http: &reqwest::Client, server: &Server, clients: usize, w: Window) -> Samples {
    let url = server.url("/api/v1/sessions");
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                while w.open() {
                    let started = Instant::now();
                    let status = login_status(&http, &url).await;
                    s.record(&w, started, status);
                    if status == NO_ANSWER {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                s
            })
        })
        .collect();
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.expect("client task"));
    }
    Samples::merge(parts)
}

struct RefreshRun {
    samples: Samples,
    /// Logins needed again after a refresh was refused (each client logs in once at first).
    relogins: u64,
}

/// One fresh session per client: their first refresh tokens.
async fn first_tokens(http: &reqwest::Client, server: &Server, clients: usize) -> Vec<String> {
    let login_url = server.url("/api/v1/sessions");
    let mut tokens = Vec::new();
    for chunk in (0..clients).collect::<Vec<_>>().chunks(8) {
        let got = futures_util::future::join_all(chunk.iter().map(|_| login(http, &login_url))).await;
        for t in got {
            tokens.push(t.unwrap_or_else(|s| panic!("initial login failed with status {s}")));
        }
    }
    tokens
}

async fn refresh_load(http: &reqwest::Client, server: &Server, tokens: Vec<String>, w: Window) -> RefreshRun {
    let login_url = server.url("/api/v1/sessions");
    let token_url = server.url("/oauth/token");
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|mut token| {
            let (http, login_url, token_url) = (http.clone(), login_url.clone(), token_url.clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                let mut relogins = 0u64;
                while w.open() {
                    let started = Instant::now();
                    let (status, next) = refresh(&http, &token_url, &token).await;
                    s.record(&w, started, status);
                    match next {
                        Some(t) => token = t,
                        None => {
                            // The chain is broken (or the server refused): start a new session.
                            relogins += 1;
                            loop {
                                match login(&http, &login_url).await {
                                    Ok(t) => {
                                        token = t;
                                        break;
                                    }
                                    Err(_) if w.open() => tokio::time::sleep(Duration::from_millis(50)).await,
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                }
                (s, relogins)
            })
        })
        .collect();
    let mut parts = Vec::new();
    let mut relogins = 0;
    for t in tasks {
        let (s, r) = t.await.expect("client task");
        parts.push(s);
        relogins += r;
    }
    RefreshRun { samples: Samples::merge(parts), relogins }
}

// ---------------------------------------------------------------------------------------------
// Report

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown RAM".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
    format!("{model}, {cpus} CPUs, {mem}, Linux {kernel}")
}

/// The peer table of FIGURES.md as rows of cells (header and separator left out).
fn peer_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>())
        .filter(|cells| cells.len() == 6 && cells[0] != "peer" && !cells[0].starts_with("---"))
        .collect()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let machine = machine();
    println!("# latchkey load benchmark");
    println!("machine: {machine}");

    // 1. The argon2 bound, before the server starts so nothing competes with it.
    println!("\n[argon2] {cpus} threads hashing with argon2id m={ARGON_M_KIB} KiB t={ARGON_T} p={ARGON_P} for {ARGON_SECS} s ...");
    let bound = tokio::task::spawn_blocking(move || argon2_bound(cpus)).await.expect("argon2 bound");
    println!("[argon2] {bound:.1} hashes/s");

    // 2. The server.
    let server = Server::start();
    println!("\n[server] pid {} at {}", server.pid, server.base);
    let rss = RssSampler::start(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(server.pid).unwrap_or(0);
    rss.take_peak();
    println!("[server] idle RSS {}", mib(rss_idle));

    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");

    let created = http
        .post(server.url("/api/v1/accounts"))
        .json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await
        .expect("create account");
    let status = created.status();
    let body = created.text().await.unwrap_or_default();
    if !status.is_success() {
        panic!("creating the account: {status} {body}");
    }

    // 3. Password logins.
    println!("\n[logins] {LOGIN_CLIENTS} clients, {}s warm-up + {LOGIN_SECS} s ...", WARMUP.as_secs());
    let w = Window::new(WARMUP, Duration::from_secs(LOGIN_SECS));
    let (logins, cpu_logins) = tokio::join!(login_load(&http, &server, LOGIN_CLIENTS, w), cpu_during(server.pid, w));
    let login_rate = logins.count(ok) as f64 / w.secs();
    let login_ratio_before = login_rate / bound;
    let rss_logins = rss.take_peak();
    println!(
        "[logins] {login_rate:.1}/s ({:.0}% of the argon2 bound measured before), p50 {} p99 {}, statuses {}, peak RSS {}",
        login_ratio_before * 100.0,
        ms(logins.pct_ms(0.50, ok)),
        ms(logins.pct_ms(0.99, ok)),
        logins.statuses(),
        mib(rss_logins)
    );
    println!("[logins] CPU: {}", cpu_logins.describe());

    // The argon2 bound again, right after (the server is idle): the speed of a shared VM drifts,
    // so the logins are compared with the mean of the bounds measured just before and after.
    println!("\n[argon2] again, right after the logins ...");
    let bound_after = tokio::task::spawn_blocking(move || argon2_bound(cpus)).await.expect("argon2 bound");
    println!("[argon2] {bound_after:.1} hashes/s");
    let bound_mean = (bound + bound_after) / 2.0;
    let login_ratio = login_rate / bound_mean;
    println!("[logins] {:.0}% of the mean argon2 bound", login_ratio * 100.0);

    // 4. Overload: far more login clients than the hash pool admits.
    println!("\n[overload] {OVERLOAD_CLIENTS} login clients for {OVERLOAD_SECS} s ...");
    let w = Window::new(Duration::ZERO, Duration::from_secs(OVERLOAD_SECS));
    let (over, cpu_over) = tokio::join!(login_load(&http, &server, OVERLOAD_CLIENTS, w), cpu_during(server.pid, w));
    let over_ok = over.count(ok);
    let over_refused = over.count(refused);
    let over_other = over.count(|s| !ok(s) && !refused(s));
    let refused_p99 = over.pct_ms(0.99, refused);
    let rss_over = rss.take_peak();
    println!(
        "[overload] 200: {over_ok} ({:.1}/s), 503/429: {over_refused}, other: {over_other}; refused p50 {} p99 {}; 200 p50 {} p99 {}; statuses {}, peak RSS {}",
        over_ok as f64 / w.secs(),
        ms(over.pct_ms(0.50, refused)),
        ms(refused_p99),
        ms(over.pct_ms(0.50, ok)),
        ms(over.pct_ms(0.99, ok)),
        over.statuses(),
        mib(rss_over)
    );
    println!("[overload] CPU: {}", cpu_over.describe());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 5. Refresh grants: one client alone (the latency floor), then 32.
    println!("\n[refresh] 1 client, 0.5 s warm-up + {REFRESH_SERIAL_SECS} s ...");
    let tokens = first_tokens(&http, &server, 1).await;
    let w = Window::new(Duration::from_millis(500), Duration::from_secs(REFRESH_SERIAL_SECS));
    let states = sqlite_states(server.pid, w);
    let (serial, cpu_serial) = tokio::join!(refresh_load(&http, &server, tokens, w), cpu_during(server.pid, w));
    let states_serial = states.join().expect("sampler");
    let serial_rate = serial.samples.count(ok) as f64 / REFRESH_SERIAL_SECS as f64;
    println!(
        "[refresh] 1 client: {serial_rate:.0}/s, p50 {} p99 {}, statuses {}",
        ms(serial.samples.pct_ms(0.50, ok)),
        ms(serial.samples.pct_ms(0.99, ok)),
        serial.samples.statuses()
    );
    println!("[refresh] 1 client CPU: {}", cpu_serial.describe());
    println!("[refresh] 1 client {}", states_serial.describe());
    println!("[refresh] {REFRESH_CLIENTS} clients, {}s warm-up + {REFRESH_SECS} s ...", WARMUP.as_secs());
    let rss_before_refresh = rss_kib(server.pid).unwrap_or(0);
    rss.take_peak();
    let tokens = first_tokens(&http, &server, REFRESH_CLIENTS).await;
    let w = Window::new(WARMUP, Duration::from_secs(REFRESH_SECS));
    let states = sqlite_states(server.pid, w);
    let (run, cpu_refresh) = tokio::join!(refresh_load(&http, &server, tokens, w), cpu_during(server.pid, w));
    let states_refresh = states.join().expect("sampler");
    let refresh_rate = run.samples.count(ok) as f64 / REFRESH_SECS as f64;
    let refresh_non_ok = run.samples.count(|s| !ok(s));
    let refresh_p99 = run.samples.pct_ms(0.99, any);
    let rss_refresh = rss.take_peak();
    println!(
        "[refresh] {refresh_rate:.0}/s, p50 {} p99 {}, statuses {}, re-logins {}, peak RSS {}",
        ms(run.samples.pct_ms(0.50, any)),
        ms(refresh_p99),
        run.samples.statuses(),
        run.relogins,
        mib(rss_refresh)
    );
    println!("[refresh] CPU: {}", cpu_refresh.describe());
    println!("[refresh] {}", states_refresh.describe());

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(server.pid).unwrap_or(0);
    let rss_peak = rss.overall();
    drop(rss);
    let log = server.log_lines();
    drop(server);

    // 6. The table.
    let mut t = String::new();
    let _ = writeln!(t, "\n## Figures\n\nMachine: {machine}. Server and load generator share the CPUs.\n");
    let _ = writeln!(t, "| figure | measured | target |");
    let _ = writeln!(t, "|---|---:|---|");
    let _ = writeln!(
        t,
        "| argon2id bound: hashes/s, m={ARGON_M_KIB} KiB t={ARGON_T} p={ARGON_P}, {cpus} threads, {ARGON_SECS} s: just before / just after the logins (mean) | {bound:.1} / {bound_after:.1} ({bound_mean:.1}) | - |"
    );
    let _ = writeln!(t, "| password logins/s, {LOGIN_CLIENTS} clients, {LOGIN_SECS} s | {login_rate:.1} | - |");
    let _ = writeln!(
        t,
        "| logins / argon2 bound (mean; vs before / after) | {:.0}% ({:.0}% / {:.0}%) | >= {:.0}%: {} |",
        login_ratio * 100.0,
        login_ratio_before * 100.0,
        login_rate / bound_after * 100.0,
        LOGIN_TARGET_RATIO * 100.0,
        verdict(login_ratio >= LOGIN_TARGET_RATIO)
    );
    let _ = writeln!(t, "| login latency p50 / p99 | {} / {} | - |", ms(logins.pct_ms(0.50, ok)), ms(logins.pct_ms(0.99, ok)));
    let _ = writeln!(t, "| login statuses | {} | all 200 |", logins.statuses());
    let _ = writeln!(
        t,
        "| overload, {OVERLOAD_CLIENTS} login clients, {OVERLOAD_SECS} s: 200 / 503+429 / other | {over_ok} / {over_refused} / {over_other} | - |"
    );
    let _ = writeln!(
        t,
        "| overload: refused (503/429) latency p50 / p99 | {} / {} | p99 <= {REFUSED_P99_TARGET_MS:.0} ms: {} |",
        ms(over.pct_ms(0.50, refused)),
        ms(refused_p99),
        verdict(refused_p99.is_some_and(|p| p <= REFUSED_P99_TARGET_MS))
    );
    let _ =
        writeln!(t, "| overload: admitted (200) latency p50 / p99 | {} / {} | - |", ms(over.pct_ms(0.50, ok)), ms(over.pct_ms(0.99, ok)));
    let _ = writeln!(
        t,
        "| refresh grants/s, 1 client, {REFRESH_SERIAL_SECS} s (p50 / p99) | {serial_rate:.0} ({} / {}) | - |",
        ms(serial.samples.pct_ms(0.50, ok)),
        ms(serial.samples.pct_ms(0.99, ok))
    );
    let _ = writeln!(
        t,
        "| refresh grants/s, {REFRESH_CLIENTS} clients, {REFRESH_SECS} s | {refresh_rate:.0} | >= {REFRESH_TARGET_PER_SEC:.0}: {} |",
        verdict(refresh_rate >= REFRESH_TARGET_PER_SEC)
    );
    let _ = writeln!(t, "| refresh latency p50 / p99 | {} / {} | - |", ms(run.samples.pct_ms(0.50, any)), ms(refresh_p99));
    let _ = writeln!(t, "| refresh non-200 answers (statuses) | {refresh_non_ok} ({}) | 0 |", run.samples.statuses());
    for (label, c) in [("logins", &cpu_logins), ("overload", &cpu_over), ("refresh, 1 client", &cpu_serial), ("refresh", &cpu_refresh)] {
        let _ = writeln!(
            t,
            "| CPU during {label}: server / load generator / others / steal (of {cpus} cores) | {:.2} / {:.2} / {:.2} / {:.2} | - |",
            c.server, c.generator, c.others, c.steal
        );
    }
    for (label, st) in [("refresh, 1 client", &states_serial), ("refresh", &states_refresh)] {
        let _ = writeln!(
            t,
            "| SQLite worker threads during {label}: running / asleep in busy handler / idle / other | {:.0}% / {:.0}% / {:.0}% / {:.0}% | - |",
            st.running * 100.0,
            st.busy_sleep * 100.0,
            st.idle * 100.0,
            st.other * 100.0
        );
    }
    let _ = writeln!(t, "| server RSS idle after start | {} | - |", mib(rss_idle));
    let _ = writeln!(
        t,
        "| server RSS peak: logins / overload / refresh | {} / {} / {} | - |",
        mib(rss_logins),
        mib(rss_over),
        mib(rss_refresh)
    );
    let _ = writeln!(
        t,
        "| server RSS before refresh run / after all load / peak overall | {} / {} / {} | - |",
        mib(rss_before_refresh),
        mib(rss_after),
        mib(rss_peak)
    );
    let _ = writeln!(t, "| server stderr lines (warn and above) | {} | - |", log.len());
    print!("{t}");
    for l in log.iter().take(5) {
        println!("    server: {l}");
    }

    // 7. Peers, for context only.
    let peers_path = std::env::var("PEER_FIGURES").unwrap_or_else(|_| "/work/shared/peers/FIGURES.md".into());
    println!(
        "\n## For context: peer figures (from {peers_path})\n\n\
         Not the same measurement: the peers were loaded with wrk on device_authorization and on \
         a pending device-token poll, not on password login or the refresh grant. Shown beside \
         our refresh grant, the closest thing we measure (a token-endpoint POST).\n"
    );
    match std::fs::read_to_string(&peers_path) {
        Ok(text) => {
            let rows = peer_rows(&text);
            println!("| server | endpoint measured | req/s | p99 | RSS |");
            println!("|---|---|---:|---:|---:|");
            println!(
                "| latchkey (this run, {REFRESH_CLIENTS} reqwest clients) | refresh grant, POST /oauth/token | {refresh_rate:.0} | {} | {} peak |",
                ms(refresh_p99),
                mib(rss_peak)
            );
            for r in &rows {
                println!("| {} (peer) | device_authorization | {} | {} ms | {} after load |", r[0], r[1], r[2], r[5]);
                println!("| {} (peer) | pending token poll | {} | {} ms | |", r[0], r[3], r[4]);
            }
            if rows.is_empty() {
                println!("(no table found in {peers_path})");
            }
        }
        Err(e) => println!("(cannot read {peers_path}: {e})"),
    }
    println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
}
