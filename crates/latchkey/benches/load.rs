//! Load benchmark: starts the real `latchkey` binary on a fresh data directory and measures
//! password logins against the argon2 bound, a login flood, refresh grants, CPU and memory; then,
//! on a second fresh server, the device grant (issue 3): device authorization requests and
//! pending device-token polls, first with 64 in-process clients, then with wrk and the peer's
//! settings (`wrk -t1 -c32|64 -d5s`), and right after that the peer itself (oidc-provider, its
//! own bench.sh with the same settings, `STORE=map` and `lru`), for a side-by-side table. Then
//! (issue 6) the device authorizations, pending polls and refresh grants again on PostgreSQL,
//! with one and with two server processes on a fresh schema, beside the SQLite figures. It
//! prints figures and never asserts. Run with `cargo bench -p latchkey --bench load` (about 8
//! minutes after the build); docs/performance.md has the last results.
//!
//! The in-process load generator runs on a multi-thread tokio runtime with one pooled
//! (keep-alive) reqwest client, and shares the machine's cores with the server, as the peer
//! figures (wrk on the same machine) do. CPU and thread states come from /proc, so Linux only.
//! `MALLOC_*` variables pass through to the server (useful for allocator experiments);
//! `LATCHKEY_*` and `RUST_LOG` do not: the server runs with `SERVER_SETTINGS`, which raise the
//! rate limits, and the output says so. `PEER_DIR` names the peer's folder (default
//! `../shared/peers/oidc-provider` next to the repository), `PEER_FIGURES` another recorded
//! peer-figures file, and `LOAD_PEER=0` leaves the peer out. Without wrk (`apt-get install -y
//! wrk`) the wrk and peer parts are left out. `LOAD_DATABASE_URL` names the PostgreSQL database
//! (default postgres://postgres@127.0.0.1:5432/test; the run creates and drops a `bench_…` schema
//! in it), `LOAD_PG=0` leaves PostgreSQL out; an unreachable database is reported and skipped.
//! Then (issue 11) authorization-code exchanges (id_tokens RS256 and EdDSA) and userinfo beside
//! the peer copied to `bench/peer/` with a code flow (`cd bench/peer && npm ci` first);
//! `LOAD_ONLY=codes` runs that part alone. Last (issue 13), passkey sign-ins (a software
//! authenticator in this process answering each challenge) beside password logins on one server;
//! `LOAD_ONLY=passkeys` runs that part alone.

use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "support/codes.rs"]
mod codes;
#[path = "../tests/common/listen.rs"]
mod listen;
#[path = "../tests/common/passkey.rs"]
#[allow(dead_code)]
mod passkey;
#[path = "support/passkeys.rs"]
mod passkeys;
#[path = "support/proc.rs"]
mod proc;
use proc::*;

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

/// The settings the server runs with, beside `log.level = warn`: every client of this benchmark
/// comes from 127.0.0.1, so the per-IP limits (and the device grant's per-client limit and
/// pending-request caps) are raised or switched off. The defaults stay safe; the run says so.
const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("LATCHKEY_LIMITS__LOGIN_PER_IP_PER_MINUTE", "100000000"),
    ("LATCHKEY_LIMITS__TOKEN_PER_IP_PER_MINUTE", "100000000"),
    ("LATCHKEY_LIMITS__REGISTER_PER_IP_PER_HOUR", "100000000"),
    ("LATCHKEY_DEVICE__CREATE_PER_IP_PER_MINUTE", "100000000"),
    ("LATCHKEY_DEVICE__CREATE_PER_CLIENT_PER_MINUTE", "100000000"),
    ("LATCHKEY_DEVICE__PENDING_PER_IP", "0"),
    ("LATCHKEY_DEVICE__PENDING_TOTAL", "0"),
    // The shortest polling interval allowed (default 5 s): a code may then be polled once a second
    // and still be answered `authorization_pending`, so fewer codes are needed for the poll load.
    ("LATCHKEY_DEVICE__INTERVAL_SECS", "1"),
    // Every sign-in here adds a device, and with no SMTP each new-device mail would be an .eml
    // file on disk: the run would measure the file system. Off, as for the peers (which send none).
    ("LATCHKEY_MAIL__NEW_DEVICE_MAIL", "false"),
];

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const DEVICE_CLIENTS: usize = 64;
const DEVICE_SECS: u64 = 10;
/// Pending device codes polled by the reqwest clients, and by wrk: at least this many, so that
/// each is polled less than once a second (the interval) up to this many polls per second.
const POLL_CODES_REQWEST: usize = 12_000;
const POLL_CODES_WRK: usize = 24_000;
/// The peer's procedure (its FIGURES.md and bench.sh): wrk -t1 -c<N> -d5s, 2 s warm-up, 3 runs,
/// medians; at its 32 connections and at issue 3's 64.
const WRK_CONNS: [usize; 2] = [32, 64];
const WRK_SECS: u64 = 5;
const WRK_WARMUP_SECS: u64 = 2;
const WRK_RUNS: usize = 3;
const PEER_STORES: [&str; 2] = ["map", "lru"];
/// Issue 3: at least 3 times the peer's throughput (its `STORE=map`, which keeps every code
/// as we do) on both endpoints at 64 clients, and p99 at most 10 ms.
const PEER_RATIO_TARGET: f64 = 3.0;
const DEVICE_P99_TARGET_MS: f64 = 10.0;

/// Status recorded for a request that got no HTTP answer at all.
const NO_ANSWER: u16 = 0;

/// The PostgreSQL part (issue 6): the same device-authorization, pending-poll and refresh
/// scenarios on one and on two server processes sharing a fresh schema of this database
/// (`LOAD_DATABASE_URL`; `LOAD_PG=0` leaves the part out).
const PG_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Besides `SERVER_SETTINGS`: instances behind one name share one issuer (docs/operations.md).
/// `database.max_connections` stays at its default (8 per instance).
const PG_SETTINGS: &[(&str, &str)] = &[("LATCHKEY_SERVER__PUBLIC_URL", "http://127.0.0.1")];
const PG_INSTANCES: [usize; 2] = [1, 2];
const PG_SECS: u64 = 8;
/// Pending codes the PostgreSQL poll scenario rotates over: each is polled at most every
/// `PG_POLL_CODES / rate` seconds, well over the 1 s interval below 8,000 polls/s.
const PG_POLL_CODES: usize = 8_000;
/// Schemas of killed runs older than this are dropped at the next run.
const PG_STALE_SECS: u64 = 3600;

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
    /// The data directory, for operator commands beside the running server.
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server on SQLite in a fresh data directory.
    fn start() -> Server {
        Server::start_on(None)
    }

    /// A server on SQLite in a fresh data directory, or on the PostgreSQL database `database`
    /// (with `PG_SETTINGS` besides the usual ones).
    fn start_on(database: Option<&str>) -> Server {
        Server::start_full(database, "127.0.0.1:0", &[])
    }

    /// A server on SQLite whose public URL is `http://localhost:<port>` (passkeys need a host
    /// name for their relying party), listening on 127.0.0.1 at a port the OS picked a moment before.
    fn start_localhost() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server =
            Server::start_full(None, &format!("127.0.0.1:{port}"), &[("LATCHKEY_SERVER__PUBLIC_URL", format!("http://localhost:{port}"))]);
        server.base = format!("http://localhost:{port}");
        server
    }

    fn start_full(database: Option<&str>, listen: &str, extra: &[(&str, String)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("server.stderr");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve").arg("--listen").arg(listen).arg("--data-dir").arg(&data);
        if let Some(url) = database {
            cmd.arg("--database").arg(url);
        }
        // Only the settings below: nothing from the caller's environment changes the server.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LATCHKEY_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        if database.is_some() {
            cmd.envs(PG_SETTINGS.iter().copied());
        }
        cmd.envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
        cmd.envs(SERVER_SETTINGS.iter().copied())
            .env("LATCHKEY_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().expect("start the latchkey binary");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let rx = listen::listen_address(stdout);
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not print its address; its stderr:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        Server { child, pid, base: format!("http://{addr}"), log, data, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// This server's base URL as the list the scenarios spread their clients over.
    fn bases(&self) -> Vec<String> {
        vec![self.base.clone()]
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

// ---------------------------------------------------------------------------------------------
// CPU

async fn quiet(server_pids: &[u32]) {
    let pids = server_pids.to_vec();
    tokio::task::spawn_blocking(move || wait_quiet(&pids)).await.expect("wait_quiet");
}

/// CPU used in a window, in cores (1.0 = one CPU busy all the time).
struct CpuUse {
    /// The server processes together.
    server: f64,
    generator: f64,
    /// Everything else on the machine (other processes, the kernel's own work), and time the
    /// hypervisor gave to other guests (steal): both mean the figures were disturbed. PostgreSQL
    /// is part of it; see `others_besides_postgres` for runs on PostgreSQL.
    others: f64,
    /// The local PostgreSQL's processes: all of them, whoever they serve, or with
    /// `cpu_during_pg` only those working for the servers under test.
    postgres: f64,
    postgres_procs: usize,
    /// With `cpu_during_pg`: transactions committed in the database and WAL flushes in the window.
    pg_counts: Option<(i64, i64)>,
    steal: f64,
    /// Server threads by name, busiest first: (name, threads, cores).
    by_name: Vec<(String, usize, f64)>,
    server_threads: usize,
}

impl CpuUse {
    /// Others, leaving out PostgreSQL: what disturbed a run whose server works on PostgreSQL.
    fn others_besides_postgres(&self) -> f64 {
        (self.others - self.postgres).max(0.0)
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.by_name.iter().map(|(n, k, c)| format!("{n} x{k}: {c:.2}")).collect();
        format!(
            "server {:.2} cores ({}; {} threads), load generator {:.2} cores, others {:.2} (of which postgres {:.2}, {} processes), steal {:.2}",
            self.server,
            names.join(", "),
            self.server_threads,
            self.generator,
            self.others,
            self.postgres,
            self.postgres_procs,
            self.steal
        )
    }
}

/// CPU ticks of the PostgreSQL processes: with `only`, of those processes (backends, which have
/// no children); without, of every process named `postgres` (the postmaster, its background
/// processes and every backend), with those of its children that have ended: a backend that
/// exits during a window is counted in the postmaster's children's time, so the sum only grows.
fn postgres_ticks(only: Option<&[u32]>) -> (u64, usize) {
    if let Some(pids) = only {
        return (pids.iter().map(|p| process_ticks(&p.to_string())).sum(), pids.len());
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return (0, 0) };
    let (mut total, mut procs) = (0, 0);
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if std::fs::read_to_string(e.path().join("comm")).map(|c| c.trim() != "postgres").unwrap_or(true) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime, stime, cutime, cstime are fields 14 to 17.
        total += (11..=14).filter_map(|i| rest.get(i).and_then(|v| v.parse::<u64>().ok())).sum::<u64>();
        procs += 1;
    }
    (total, procs)
}

/// Finds the PostgreSQL processes that work for the servers under test: their backends, which
/// carry the `application_name` given in their database URL, and PostgreSQL's own background
/// processes (WAL writer, checkpointer, autovacuum), which do the work their commits cause.
struct PgWatch {
    pool: sqlx::PgPool,
    app_name: String,
}

impl PgWatch {
    async fn processes(&self) -> Option<Vec<u32>> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE (application_name = $1 OR backend_type <> 'client backend') AND pid <> pg_backend_pid()",
        )
        .bind(&self.app_name)
        .fetch_all(&self.pool)
        .await
        .ok()?;
        Some(pids.into_iter().filter_map(|p| u32::try_from(p).ok()).collect())
    }

    /// Transactions committed in the database (by anyone) and WAL flushes (`pg_stat_wal`, from
    /// PostgreSQL 14) so far. PostgreSQL publishes these about once a second.
    async fn counters(&self) -> Option<(i64, i64)> {
        sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), (SELECT wal_sync FROM pg_stat_wal)",
        )
        .fetch_one(&self.pool)
        .await
        .ok()
    }
}

/// Thread ticks of all the given processes.
fn threads_of(pids: &[u32]) -> BTreeMap<u64, (String, u64)> {
    pids.iter().flat_map(|p| thread_ticks(*p)).collect()
}

/// Measures the CPU the servers, this process and PostgreSQL (all of its processes) use from
/// `w.from` to `w.end`.
async fn cpu_during(pids: &[u32], w: Window) -> CpuUse {
    cpu_window(pids, w, None).await
}

/// As `cpu_during`, for servers on PostgreSQL: counts as PostgreSQL's only the processes that
/// `watch` finds once the warm-up is over (the servers' pools are full by then), so that the
/// backends of anything else using the same PostgreSQL count as "others".
async fn cpu_during_pg(pids: &[u32], w: Window, watch: &PgWatch) -> CpuUse {
    cpu_window(pids, w, Some(watch)).await
}

async fn cpu_window(pids: &[u32], w: Window, watch: Option<&PgWatch>) -> CpuUse {
    let servers = || pids.iter().map(|p| process_ticks(&p.to_string())).sum::<u64>();
    tokio::time::sleep_until(w.from.into()).await;
    let (pg_procs, c0) = match watch {
        Some(watch) => (watch.processes().await, watch.counters().await),
        None => (None, None),
    };
    let pg = || postgres_ticks(pg_procs.as_deref());
    let (s0, g0, t0, m0, p0) = (servers(), process_ticks("self"), threads_of(pids), machine_ticks(), pg());
    let started = Instant::now();
    tokio::time::sleep_until(w.end.into()).await;
    let (s1, g1, t1, m1, p1) = (servers(), process_ticks("self"), threads_of(pids), machine_ticks(), pg());
    let secs = started.elapsed().as_secs_f64() * clock_ticks_per_sec();
    let c1 = match watch {
        Some(watch) => watch.counters().await,
        None => None,
    };
    let pg_counts = c0.zip(c1).map(|((a0, b0), (a1, b1))| (a1 - a0, b1 - b0));
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
        postgres: p1.0.saturating_sub(p0.0) as f64 / secs,
        postgres_procs: p1.1,
        pg_counts,
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
    /// Share of samples the busiest single SQLite thread was running: with one writer
    /// connection, that is the writer when the load writes.
    busiest: f64,
}

impl SqliteStates {
    fn describe(&self) -> String {
        format!(
            "SQLite worker threads: running {:.0}%, asleep in the busy handler (waiting for the write lock) {:.0}%, idle {:.0}%, other {:.0}%; the busiest one running {:.0}%",
            self.running * 100.0,
            self.busy_sleep * 100.0,
            self.idle * 100.0,
            self.other * 100.0,
            self.busiest * 100.0
        )
    }
}

/// Samples the states of the server's SQLite threads (`sqlx-sqlite-worker`, `sqlite-writer`,
/// `sqlite-ckpt`) from `w.from` to `w.end`, on a thread of its own so the load generator's
/// runtime is not disturbed.
fn sqlite_states(pid: u32, w: Window) -> std::thread::JoinHandle<SqliteStates> {
    std::thread::spawn(move || {
        std::thread::sleep(w.from.saturating_duration_since(Instant::now()));
        let (mut running, mut idle, mut busy, mut other) = (0u64, 0u64, 0u64, 0u64);
        let mut by_thread: BTreeMap<std::ffi::OsString, (u64, u64)> = BTreeMap::new();
        while Instant::now() < w.end {
            if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for e in dir.flatten() {
                    let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
                    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
                    // sqlx's SQLite workers, and the server's own writer and checkpointer threads.
                    let name = &stat[open + 1..close];
                    if !name.starts_with("sqlx-sqlite") && !name.starts_with("sqlite-") {
                        continue;
                    }
                    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
                    let wchan = std::fs::read_to_string(e.path().join("wchan")).unwrap_or_default();
                    let t = by_thread.entry(e.file_name()).or_default();
                    t.1 += 1;
                    if state == "R" {
                        t.0 += 1;
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
        let busiest = by_thread.values().map(|(r, k)| *r as f64 / (*k).max(1) as f64).fold(0.0, f64::max);
        SqliteStates { running: running as f64 / n, idle: idle as f64 / n, busy_sleep: busy as f64 / n, other: other as f64 / n, busiest }
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
    /// (status, label, latency in microseconds) of each answer completed inside the window. The
    /// label tells apart answers with the same status (the OAuth `error` of a device-token poll).
    all: Vec<(u16, &'static str, u32)>,
}

impl Samples {
    fn record(&mut self, w: &Window, started: Instant, status: u16) {
        self.record_as(w, started, status, "");
    }

    fn record_as(&mut self, w: &Window, started: Instant, status: u16, label: &'static str) {
        let done = Instant::now();
        if done >= w.from && done <= w.end {
            let micros = u32::try_from((done - started).as_micros()).unwrap_or(u32::MAX);
            self.all.push((status, label, micros));
        }
    }

    fn merge(parts: Vec<Samples>) -> Samples {
        Samples { all: parts.into_iter().flat_map(|s| s.all).collect() }
    }

    fn count(&self, keep: impl Fn(u16) -> bool) -> usize {
        self.all.iter().filter(|(s, _, _)| keep(*s)).count()
    }

    fn count_label(&self, label: &str) -> usize {
        self.all.iter().filter(|(_, l, _)| *l == label).count()
    }

    /// Latency percentile in milliseconds of the answers whose status `keep` accepts.
    fn pct_ms(&self, p: f64, keep: impl Fn(u16) -> bool) -> Option<f64> {
        percentile_ms(self.all.iter().filter(|(s, _, _)| keep(*s)).map(|(_, _, l)| *l).collect(), p)
    }

    /// Latency percentile in milliseconds of the answers whose label `keep` accepts.
    fn pct_label_ms(&self, p: f64, keep: impl Fn(&str) -> bool) -> Option<f64> {
        percentile_ms(self.all.iter().filter(|(_, l, _)| keep(l)).map(|(_, _, l)| *l).collect(), p)
    }

    fn statuses(&self) -> String {
        let mut by: BTreeMap<(u16, &str), u64> = BTreeMap::new();
        for (s, l, _) in &self.all {
            *by.entry((*s, *l)).or_default() += 1;
        }
        let parts: Vec<String> = by
            .iter()
            .map(|((s, l), n)| match (*s, *l) {
                (NO_ANSWER, _) => format!("no answer: {n}"),
                (s, "") => format!("{s}: {n}"),
                (s, l) => format!("{s} {l}: {n}"),
            })
            .collect();
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }
}

fn percentile_ms(mut v: Vec<u32>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(f64::from(v[idx]) / 1000.0)
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

/// The base URLs' `path`, one URL per server: clients spread over them round-robin.
fn urls(bases: &[String], path: &str) -> Vec<String> {
    assert!(!bases.is_empty(), "at least one server");
    bases.iter().map(|b| format!("{b}{path}")).collect()
}

async fn login_load(http: &reqwest::Client, bases: &[String], clients: usize, w: Window) -> Samples {
    let urls = urls(bases, "/api/v1/sessions");
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
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

/// One fresh session per client: their first refresh tokens (logins spread over the servers).
async fn first_tokens(http: &reqwest::Client, bases: &[String], clients: usize) -> Vec<String> {
    let login_urls = urls(bases, "/api/v1/sessions");
    let mut tokens = Vec::new();
    for chunk in (0..clients).collect::<Vec<_>>().chunks(8) {
        let got = futures_util::future::join_all(chunk.iter().map(|i| login(http, &login_urls[i % login_urls.len()]))).await;
        for t in got {
            tokens.push(t.unwrap_or_else(|s| panic!("initial login failed with status {s}")));
        }
    }
    tokens
}

/// Each client keeps to its own refresh-token chain; with several servers, its successive grants
/// go to the servers in turn (client i starts at server i), so each rotation is checked by
/// another instance than the last.
async fn refresh_load(http: &reqwest::Client, bases: &[String], tokens: Vec<String>, w: Window) -> RefreshRun {
    let login_urls = urls(bases, "/api/v1/sessions");
    let token_urls = urls(bases, "/oauth/token");
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, mut token)| {
            let (http, login_urls, token_urls) = (http.clone(), login_urls.clone(), token_urls.clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                let mut relogins = 0u64;
                let mut turn = i;
                while w.open() {
                    let n = turn % token_urls.len();
                    turn += 1;
                    let started = Instant::now();
                    let (status, next) = refresh(&http, &token_urls[n], &token).await;
                    s.record(&w, started, status);
                    match next {
                        Some(t) => token = t,
                        None => {
                            // The chain is broken (or the server refused): start a new session.
                            relogins += 1;
                            loop {
                                match login(&http, &login_urls[n]).await {
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
// Device grant (issue 3): device authorization requests and pending token polls

/// One device authorization request: the status and, on success, the device code.
async fn device_authorization(http: &reqwest::Client, url: &str) -> (u16, Option<String>) {
    let resp = match http.post(url).form(&[("client_id", CLIENT_ID)]).send().await {
        Ok(r) => r,
        Err(_) => return (NO_ANSWER, None),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let _ = resp.bytes().await;
        return (status, None);
    }
    match resp.json::<serde_json::Value>().await {
        Ok(body) => (status, body["device_code"].as_str().map(str::to_owned)),
        Err(_) => (NO_ANSWER, None),
    }
}

/// The OAuth errors a device-token poll may answer, as labels for the samples.
const POLL_ERRORS: &[&str] = &["authorization_pending", "slow_down", "access_denied", "expired_token", "invalid_grant", "invalid_client"];

/// One device-token poll: the status and the OAuth `error` of the answer ("" for another answer).
async fn poll(http: &reqwest::Client, url: &str, device_code: &str) -> (u16, &'static str) {
    let form = [("grant_type", DEVICE_CODE_GRANT), ("device_code", device_code), ("client_id", CLIENT_ID)];
    let resp = match http.post(url).form(&form).send().await {
        Ok(r) => r,
        Err(_) => return (NO_ANSWER, ""),
    };
    let status = resp.status().as_u16();
    let Ok(body) = resp.bytes().await else { return (NO_ANSWER, "") };
    let error = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
    (status, error.and_then(|e| POLL_ERRORS.iter().find(|k| **k == e).copied()).unwrap_or(""))
}

fn pending_poll(label: &str) -> bool {
    label == "authorization_pending" || label == "slow_down"
}

/// `clients` clients loop device authorization requests; answers the samples and every device
/// code obtained (warm-up included), all still pending.
async fn device_authorization_load(http: &reqwest::Client, bases: &[String], clients: usize, w: Window) -> (Samples, Vec<String>) {
    let urls = urls(bases, "/oauth/device_authorization");
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move {
                let (mut s, mut codes) = (Samples::default(), Vec::new());
                while w.open() {
                    let started = Instant::now();
                    let (status, code) = device_authorization(&http, &url).await;
                    s.record(&w, started, status);
                    codes.extend(code);
                    if status == NO_ANSWER {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (s, codes)
            })
        })
        .collect();
    let (mut parts, mut codes) = (Vec::new(), Vec::new());
    for t in tasks {
        let (s, c) = t.await.expect("client task");
        parts.push(s);
        codes.extend(c);
    }
    (Samples::merge(parts), codes)
}

/// More pending device codes, `n` of them, made by 64 concurrent requests (not measured).
async fn more_codes(http: &reqwest::Client, bases: &[String], n: usize) -> Vec<String> {
    let urls = urls(bases, "/oauth/device_authorization");
    let each = n.div_ceil(64);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move {
                let mut codes = Vec::with_capacity(each);
                let mut failures = 0;
                while codes.len() < each {
                    match device_authorization(&http, &url).await {
                        (_, Some(c)) => codes.push(c),
                        (s, None) => {
                            failures += 1;
                            assert!(failures < 100, "device authorization keeps failing with status {s}");
                        }
                    }
                }
                codes
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.extend(t.await.expect("client task"));
    }
    codes
}

/// Each client polls its own share of `codes` in turn, so a code is polled again only after
/// the client has polled all its others.
async fn poll_load(http: &reqwest::Client, bases: &[String], codes: Vec<String>, clients: usize, w: Window) -> Samples {
    let urls = urls(bases, "/oauth/token");
    let per = codes.len().div_ceil(clients).max(1);
    let shares: Vec<Vec<String>> = codes.chunks(per).map(<[String]>::to_vec).collect();
    let tasks: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                for code in share.iter().cycle() {
                    if !w.open() {
                        break;
                    }
                    let started = Instant::now();
                    let (status, label) = poll(&http, &url, code).await;
                    s.record_as(&w, started, status, label);
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

// ---------------------------------------------------------------------------------------------
// wrk: the load generator of the peer figures, on our server and on the peer

/// The `key=value` fields of a `RESULT` line printed by the wrk scripts or by the peer's bench.sh.
fn fields(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?))).collect()
}

/// One wrk run on our server: wrk's figures, and the CPU used by the server, by wrk and by
/// everything else, in cores.
struct WrkRun {
    f: BTreeMap<String, f64>,
    server_cpu: f64,
    wrk_cpu: f64,
    others: f64,
}

impl WrkRun {
    fn get(&self, k: &str) -> f64 {
        self.f.get(k).copied().unwrap_or(f64::NAN)
    }
}

fn wrk_available() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `wrk -t1 -c<conns> -d<secs>s --timeout 10s -s <script> <url>` with `env`, as the peer's bench.sh
/// runs it.
fn run_wrk(
    script: &std::path::Path,
    url: &str,
    env: &[(&str, String)],
    conns: usize,
    secs: u64,
    server_pid: u32,
) -> Result<WrkRun, String> {
    let (s0, c0, m0) = (process_ticks(&server_pid.to_string()), children_ticks(), machine_ticks());
    let started = Instant::now();
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let ticks = started.elapsed().as_secs_f64() * clock_ticks_per_sec();
    let (s1, c1, m1) = (process_ticks(&server_pid.to_string()), children_ticks(), machine_ticks());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT ")) else {
        return Err(format!("wrk printed no RESULT line: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    };
    let (server_cpu, wrk_cpu) = (s1.saturating_sub(s0) as f64 / ticks, c1.saturating_sub(c0) as f64 / ticks);
    let others = (m1.0.saturating_sub(m0.0) as f64 / ticks - server_cpu - wrk_cpu).max(0.0);
    Ok(WrkRun { f: fields(line), server_cpu, wrk_cpu, others })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// One line of the comparison: an endpoint at one concurrency, on one server, as medians over
/// the runs (the median rps and the median p99 may come from different runs, as in bench.sh).
#[derive(Clone)]
struct Measured {
    rps: f64,
    p50: f64,
    p99: f64,
    /// Server CPU in cores (1.0 = one CPU busy all the time).
    server_cpu: f64,
    /// CPU used by other processes than the server and wrk, in cores: 0 on a quiet machine.
    others: f64,
    /// What the answers were, summed over the runs.
    answers: String,
}

impl Measured {
    fn per_cpu_second(&self) -> f64 {
        self.rps / self.server_cpu
    }
}

/// bench.sh's procedure on our server: a warm-up run, then `WRK_RUNS` runs, medians.
async fn wrk_series(
    script: PathBuf,
    url: String,
    env: Vec<(&'static str, String)>,
    conns: usize,
    pid: u32,
    label: String,
) -> Option<Measured> {
    tokio::task::spawn_blocking(move || {
        let mut runs = Vec::new();
        for i in 0..=WRK_RUNS {
            // A wait for a quiet machine first, as in bench.sh (at least a second, so that a
            // new pass over the poll codes comes more than the polling interval after the last).
            wait_quiet(&[pid]);
            let secs = if i == 0 { WRK_WARMUP_SECS } else { WRK_SECS };
            match run_wrk(&script, &url, &env, conns, secs, pid) {
                Ok(r) if i == 0 => {
                    println!("[wrk] {label} warm-up {secs} s: rps={:.0}", r.get("rps"));
                }
                Ok(r) => {
                    println!(
                        "[wrk] {label} run {i}: rps={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.1} unexpected={} socket_errors={}{} server_cpu={:.2} wrk_cpu={:.2} others={:.2}",
                        r.get("rps"),
                        r.get("p50_ms"),
                        r.get("p99_ms"),
                        r.get("max_ms"),
                        r.get("unexpected"),
                        r.get("socket_errors"),
                        r.f.get("pending").map(|p| format!(" pending={p} slow_down={}", r.get("slow_down"))).unwrap_or_default(),
                        r.server_cpu,
                        r.wrk_cpu,
                        r.others
                    );
                    runs.push(r);
                }
                Err(e) => {
                    println!("[wrk] {label}: {e}");
                    return None;
                }
            }
        }
        let sum = |k: &str| runs.iter().map(|r| r.get(k)).filter(|x| !x.is_nan()).sum::<f64>();
        let mut answers = format!("{:.0} requests, {:.0} unexpected, {:.0} socket errors", sum("requests"), sum("unexpected"), sum("socket_errors"));
        if runs.iter().any(|r| r.f.contains_key("pending")) {
            let _ = write!(answers, " ({:.0} authorization_pending, {:.0} slow_down)", sum("pending"), sum("slow_down"));
        }
        Some(Measured {
            rps: median(runs.iter().map(|r| r.get("rps")).collect()),
            p50: median(runs.iter().map(|r| r.get("p50_ms")).collect()),
            p99: median(runs.iter().map(|r| r.get("p99_ms")).collect()),
            server_cpu: median(runs.iter().map(|r| r.server_cpu).collect()),
            others: median(runs.iter().map(|r| r.others).collect()),
            answers,
        })
    })
    .await
    .expect("wrk runs")
}

/// The peer's figures from one run of its bench.sh.
struct PeerRun {
    device_authorization: Measured,
    token_poll: Measured,
    rss: String,
    versions: String,
}

/// Runs the peer's own bench.sh (it starts and stops its server), with our wrk settings.
fn run_peer(dir: &std::path::Path, store: &str, conns: usize) -> Result<PeerRun, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())?;
    let mut child = Command::new("bash")
        .arg(dir.join("bench.sh"))
        .env("PORT", port.to_string())
        .env("STORE", store)
        .env("CONNS", conns.to_string())
        .env("THREADS", "1")
        .env("DURATION", WRK_SECS.to_string())
        .env("WARMUP", WRK_WARMUP_SECS.to_string())
        .env("RUNS", WRK_RUNS.to_string())
        .env_remove("DA_BODY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its complaints go straight to ours (a pipe nobody reads could fill up and block it).
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run bash {}: {e}", dir.join("bench.sh").display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        println!("[peer {store} c{conns}] {line}");
        lines.push(line);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("bench.sh failed ({status}); its messages are above"));
    }
    let medians = |name: &str| -> Result<Measured, String> {
        let line = lines.iter().find(|l| l.starts_with(&format!("median {name}:"))).ok_or(format!("no median line for {name}"))?;
        let f = fields(line);
        let get = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
        Ok(Measured {
            rps: get("rps"),
            p50: get("p50_ms"),
            p99: get("p99_ms"),
            server_cpu: get("server_cpu_pct") / 100.0,
            others: get("other_cpu_pct") / 100.0 * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            answers: format!("{WRK_RUNS} runs, none unexpected (bench.sh stops on any)"),
        })
    };
    let rss = lines.iter().find_map(|l| l.strip_prefix("server rss after load: ")).unwrap_or("?").to_owned();
    let versions = lines
        .iter()
        .find_map(|l| l.strip_prefix("# oidc-provider "))
        .map(|v| v.split(", store").next().unwrap_or(v).to_owned())
        .unwrap_or_default();
    Ok(PeerRun { device_authorization: medians("device_authorization")?, token_poll: medians("token_poll")?, rss, versions })
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL, one and two instances (issue 6)

/// A schema of its own for one configuration: `bench_<unix seconds>_<random>`, reached through
/// `options=-c search_path=…` in the URL, as tests/common does. Dropped when this is dropped.
struct BenchSchema {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchSchema {
    async fn create(admin_url: &str) -> Result<BenchSchema, String> {
        use sqlx::Connection;
        let mut conn = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(admin_url))
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Schemas left over by killed runs.
        let names: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bench\\_%'")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        for name in names {
            if name.split('_').nth(1).and_then(|t| t.parse::<u64>().ok()).is_some_and(|born| born + PG_STALE_SECS < now) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))).execute(&mut conn).await;
            }
        }
        let name = format!("bench_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&mut conn).await.map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
        Ok(BenchSchema { admin_url: admin_url.to_owned(), name, url })
    }
}

impl Drop for BenchSchema {
    /// Drops the schema from a thread of its own (no blocking inside the benchmark's runtime).
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return false };
            rt.block_on(async {
                use sqlx::Connection;
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await else { return false };
                let _ = sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await;
                let done =
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))).execute(&mut conn).await.is_ok();
                let _ = conn.close().await;
                done
            })
        });
        if !dropper.join().unwrap_or(false) {
            println!("[pg] could not drop schema {}; the next run drops it once it is an hour old", self.name);
        }
    }
}

/// A database URL for printing: any password replaced by `***`.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// One scenario on one backend, for the comparison table.
struct Row {
    rate: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    /// Answers counted in `rate` over the window.
    counted: usize,
    secs: f64,
    /// In cores: the server processes together, PostgreSQL, the load generator, and everything
    /// else (PostgreSQL left out when the servers run on it).
    server: f64,
    /// None for SQLite runs (whatever PostgreSQL did then counts as "others").
    postgres: Option<f64>,
    generator: f64,
    others: f64,
    /// PostgreSQL commits (in the whole database) and WAL flushes per counted answer.
    commits: Option<f64>,
    wal_syncs: Option<f64>,
    answers: String,
}

impl Row {
    fn new(samples: &Samples, counted: usize, secs: f64, pcts: (Option<f64>, Option<f64>), cpu: &CpuUse, on_pg: bool, extra: &str) -> Row {
        Row {
            rate: counted as f64 / secs,
            p50: pcts.0,
            p99: pcts.1,
            counted,
            secs,
            server: cpu.server,
            postgres: on_pg.then_some(cpu.postgres),
            generator: cpu.generator,
            others: if on_pg { cpu.others_besides_postgres() } else { cpu.others },
            commits: cpu.pg_counts.filter(|_| counted > 0).map(|(c, _)| c as f64 / counted as f64),
            wal_syncs: cpu.pg_counts.filter(|_| counted > 0).map(|(_, w)| w as f64 / counted as f64),
            answers: format!("{}{extra}", samples.statuses()),
        }
    }

    /// Server plus PostgreSQL CPU per counted answer, in microseconds.
    fn cpu_per_request_us(&self) -> f64 {
        if self.counted == 0 { f64::NAN } else { (self.server + self.postgres.unwrap_or(0.0)) * self.secs / self.counted as f64 * 1e6 }
    }

    fn describe(&self) -> String {
        format!(
            "{:.0}/s, p50 {} p99 {}; CPU server {:.2}, postgres {}, generator {:.2}, others {:.2}; per request: {} PostgreSQL commits, {} WAL flushes; {}",
            self.rate,
            ms(self.p50),
            ms(self.p99),
            self.server,
            cores(self.postgres),
            self.generator,
            self.others,
            per(self.commits),
            per(self.wal_syncs),
            self.answers
        )
    }
}

fn cores(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn per(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The three scenarios' rows: device authorizations, pending polls, refresh grants.
type Rows = [Row; 3];

/// One PostgreSQL configuration: its instance count, and its rows and the servers' stderr
/// lines, or why it was not measured.
type PgRun = (usize, Result<(Rows, Vec<String>), String>);

/// The three scenarios on `instances` server processes sharing a fresh schema of `admin_url`,
/// clients spread over them round-robin. Answers the rows and the servers' stderr lines.
async fn pg_run(http: &reqwest::Client, admin_url: &str, instances: usize) -> Result<(Rows, Vec<String>), String> {
    let label = format!("pg x{instances}");
    let schema = BenchSchema::create(admin_url).await?;
    // The schema's name also marks the servers' connections, for `PgWatch`.
    let db_url = format!("{}&application_name={}", schema.url, schema.name);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(|e| e.to_string())?;
    let watch = PgWatch { pool, app_name: schema.name.clone() };
    let mut servers = Vec::new();
    for _ in 0..instances {
        // One after the other: the first applies the migrations.
        let url = db_url.clone();
        servers.push(tokio::task::spawn_blocking(move || Server::start_on(Some(&url))).await.map_err(|e| e.to_string())?);
    }
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let listing: Vec<String> = servers.iter().map(|s| format!("pid {} at {}", s.pid, s.base)).collect();
    println!("\n[{label}] schema {}; {}", schema.name, listing.join(", "));
    let created =
        http.post(format!("{}/api/v1/accounts", bases[0])).json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD })).send().await;
    match created {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => return Err(format!("creating the account: {}", r.status())),
        Err(e) => return Err(format!("creating the account: {e}")),
    }
    let window = || Window::new(WARMUP, Duration::from_secs(PG_SECS));

    println!("[{label} device_authorization] {DEVICE_CLIENTS} clients, {}s warm-up + {PG_SECS} s ...", WARMUP.as_secs());
    quiet(&pids).await;
    let w = window();
    let ((da, mut codes), cpu) = tokio::join!(device_authorization_load(http, &bases, DEVICE_CLIENTS, w), cpu_during_pg(&pids, w, &watch));
    let da_row = Row::new(&da, da.count(ok), w.secs(), (da.pct_ms(0.50, any), da.pct_ms(0.99, any)), &cpu, true, "");
    println!("[{label} device_authorization] {}", da_row.describe());
    println!("[{label} device_authorization] CPU: {}", cpu.describe());

    if codes.len() < PG_POLL_CODES {
        println!("[{label}] making {} more pending device codes for the polls ...", PG_POLL_CODES - codes.len());
        let more = more_codes(http, &bases, PG_POLL_CODES - codes.len()).await;
        codes.extend(more);
    }
    let poll_codes = codes.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "[{label} polls] {DEVICE_CLIENTS} clients polling {poll_codes} pending codes in turn, {}s warm-up + {PG_SECS} s ...",
        WARMUP.as_secs()
    );
    quiet(&pids).await;
    let w = window();
    let (polls, cpu) = tokio::join!(poll_load(http, &bases, codes, DEVICE_CLIENTS, w), cpu_during_pg(&pids, w, &watch));
    let pending = polls.count_label("authorization_pending") + polls.count_label("slow_down");
    let pcts = (polls.pct_label_ms(0.50, pending_poll), polls.pct_label_ms(0.99, pending_poll));
    let poll_row = Row::new(&polls, pending, w.secs(), pcts, &cpu, true, &format!("; {poll_codes} codes in turn"));
    println!("[{label} polls] {}", poll_row.describe());
    println!("[{label} polls] CPU: {}", cpu.describe());

    println!("[{label} refresh] {REFRESH_CLIENTS} clients, {}s warm-up + {PG_SECS} s ...", WARMUP.as_secs());
    let tokens = first_tokens(http, &bases, REFRESH_CLIENTS).await;
    quiet(&pids).await;
    let w = window();
    let (run, cpu) = tokio::join!(refresh_load(http, &bases, tokens, w), cpu_during_pg(&pids, w, &watch));
    let pcts = (run.samples.pct_ms(0.50, any), run.samples.pct_ms(0.99, any));
    let refresh_row = Row::new(&run.samples, run.samples.count(ok), w.secs(), pcts, &cpu, true, &format!("; {} re-logins", run.relogins));
    println!("[{label} refresh] {}", refresh_row.describe());
    println!("[{label} refresh] CPU: {}", cpu.describe());

    let log: Vec<String> = servers.iter().flat_map(|s| s.log_lines().into_iter().map(move |l| format!("pid {}: {l}", s.pid))).collect();
    drop(servers);
    watch.pool.close().await;
    drop(schema);
    Ok(([da_row, poll_row, refresh_row], log))
}

/// The table: each scenario on SQLite (measured earlier in the run) and on PostgreSQL with one
/// and with two instances.
fn backend_table(sqlite: &Rows, pg: &[PgRun], cpus: usize, pg_url: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n## Backends: SQLite and PostgreSQL, one and two instances (issue 6)\n\n\
         Same in-process clients and scenarios. SQLite: the figures measured earlier in this run ({DEVICE_SECS} s windows; refresh \
         on the first server). PostgreSQL ({}): a fresh schema per configuration, 1 or 2 server processes on it, clients spread \
         round-robin over them (refresh: each client's grants go to the instances in turn), {}s warm-up + {PG_SECS} s, \
         database.max_connections 8 per instance, {}. CPU in cores of {cpus}: server = all instances; postgres = the backends \
         of the servers under test (by application_name) and PostgreSQL's background processes (WAL writer, checkpointer, \
         autovacuum); others = everything else, any other PostgreSQL work included (near 0 on a quiet machine). Commits: \
         pg_stat_database.xact_commit of the whole database; WAL flushes: pg_stat_wal.wal_sync.\n",
        redact(pg_url),
        WARMUP.as_secs(),
        PG_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        t,
        "| scenario | backend | req/s | ÷ SQLite | p50 | p99 | server CPU | postgres CPU | generator CPU | others CPU | server + postgres CPU per request | PostgreSQL commits / WAL flushes per request | answers |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let scenarios = [
        format!("device authorizations/s, {DEVICE_CLIENTS} clients"),
        format!("pending polls/s, {DEVICE_CLIENTS} clients"),
        format!("refresh grants/s, {REFRESH_CLIENTS} clients"),
    ];
    for (i, scenario) in scenarios.iter().enumerate() {
        let mut lines: Vec<(String, &Row)> = vec![("SQLite".to_owned(), &sqlite[i])];
        for (n, r) in pg {
            if let Ok((rows, _)) = r {
                lines.push((format!("PostgreSQL, {n} instance{}", if *n == 1 { "" } else { "s" }), &rows[i]));
            }
        }
        for (backend, row) in lines {
            let _ = writeln!(
                t,
                "| {scenario} | {backend} | {:.0} | {:.2}× | {} | {} | {:.2} | {} | {:.2} | {:.2} | {:.0} µs | {} / {} | {} |",
                row.rate,
                row.rate / sqlite[i].rate,
                ms(row.p50),
                ms(row.p99),
                row.server,
                cores(row.postgres),
                row.generator,
                row.others,
                row.cpu_per_request_us(),
                per(row.commits),
                per(row.wal_syncs),
                row.answers
            );
        }
    }
    for (n, r) in pg {
        match r {
            Err(e) => {
                let _ = writeln!(t, "\nPostgreSQL with {n} instance(s): not measured: {e}");
            }
            Ok((_, log)) => {
                let _ = writeln!(t, "\nPostgreSQL with {n} instance(s): {} server stderr lines (warn and above)", log.len());
                for l in log.iter().take(5) {
                    let _ = writeln!(t, "    server: {l}");
                }
            }
        }
    }
    t
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

/// Percent-encodes everything but RFC 3986's unreserved characters, for a form body.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    // `LOAD_ONLY=codes`: only the apps part (issue 11), about two minutes.
    if std::env::var("LOAD_ONLY").is_ok_and(|v| v == "codes") {
        codes::run(&http).await;
        println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
        return;
    }
    // `LOAD_ONLY=passkeys`: only the passkey part (issue 13), under a minute.
    if std::env::var("LOAD_ONLY").is_ok_and(|v| v == "passkeys") {
        passkeys::run(&http).await;
        println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
        return;
    }

    // 1. The argon2 bound, before the server starts so nothing competes with it.
    println!("\n[argon2] {cpus} threads hashing with argon2id m={ARGON_M_KIB} KiB t={ARGON_T} p={ARGON_P} for {ARGON_SECS} s ...");
    quiet(&[]).await;
    let bound = tokio::task::spawn_blocking(move || argon2_bound(cpus)).await.expect("argon2 bound");
    println!("[argon2] {bound:.1} hashes/s");

    // 2. The server.
    let server = Server::start();
    let (bases, pids) = (server.bases(), [server.pid]);
    println!("\n[server] pid {} at {}", server.pid, server.base);
    let rss = RssSampler::start(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(server.pid).unwrap_or(0);
    rss.take_peak();
    println!("[server] idle RSS {}", mib(rss_idle));

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
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(LOGIN_SECS));
    let (logins, cpu_logins) = tokio::join!(login_load(&http, &bases, LOGIN_CLIENTS, w), cpu_during(&pids, w));
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
    quiet(&pids).await;
    let bound_after = tokio::task::spawn_blocking(move || argon2_bound(cpus)).await.expect("argon2 bound");
    println!("[argon2] {bound_after:.1} hashes/s");
    let bound_mean = (bound + bound_after) / 2.0;
    let login_ratio = login_rate / bound_mean;
    println!("[logins] {:.0}% of the mean argon2 bound", login_ratio * 100.0);

    // 4. Overload: far more login clients than the hash pool admits.
    println!("\n[overload] {OVERLOAD_CLIENTS} login clients for {OVERLOAD_SECS} s ...");
    quiet(&pids).await;
    let w = Window::new(Duration::ZERO, Duration::from_secs(OVERLOAD_SECS));
    let (over, cpu_over) = tokio::join!(login_load(&http, &bases, OVERLOAD_CLIENTS, w), cpu_during(&pids, w));
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
    let tokens = first_tokens(&http, &bases, 1).await;
    quiet(&pids).await;
    let w = Window::new(Duration::from_millis(500), Duration::from_secs(REFRESH_SERIAL_SECS));
    let states = sqlite_states(server.pid, w);
    let (serial, cpu_serial) = tokio::join!(refresh_load(&http, &bases, tokens, w), cpu_during(&pids, w));
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
    let tokens = first_tokens(&http, &bases, REFRESH_CLIENTS).await;
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(REFRESH_SECS));
    let states = sqlite_states(server.pid, w);
    let (run, cpu_refresh) = tokio::join!(refresh_load(&http, &bases, tokens, w), cpu_during(&pids, w));
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
    let pcts = (run.samples.pct_ms(0.50, any), refresh_p99);
    let sqlite_refresh = Row::new(
        &run.samples,
        run.samples.count(ok),
        REFRESH_SECS as f64,
        pcts,
        &cpu_refresh,
        false,
        &format!("; {} re-logins", run.relogins),
    );

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
            "| SQLite worker threads during {label}: running / asleep in busy handler / idle / other; busiest thread running | {:.0}% / {:.0}% / {:.0}% / {:.0}%; {:.0}% | - |",
            st.running * 100.0,
            st.busy_sleep * 100.0,
            st.idle * 100.0,
            st.other * 100.0,
            st.busiest * 100.0
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

    // 7. The device grant (issue 3) on a fresh server: 64 reqwest clients, then wrk.
    let server = Server::start();
    let (bases, pids) = (server.bases(), [server.pid]);
    println!("\n[device] fresh server, pid {} at {}", server.pid, server.base);
    let rss = RssSampler::start(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dev_rss_idle = rss_kib(server.pid).unwrap_or(0);
    rss.take_peak();

    println!("\n[device_authorization] {DEVICE_CLIENTS} clients, {}s warm-up + {DEVICE_SECS} s ...", WARMUP.as_secs());
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(DEVICE_SECS));
    let states = sqlite_states(server.pid, w);
    let ((da, mut codes), cpu_da) = tokio::join!(device_authorization_load(&http, &bases, DEVICE_CLIENTS, w), cpu_during(&pids, w));
    let states_da = states.join().expect("sampler");
    let da_rate = da.count(ok) as f64 / w.secs();
    let da_p99 = da.pct_ms(0.99, any);
    let rss_da = rss.take_peak();
    println!(
        "[device_authorization] {da_rate:.0}/s, p50 {} p99 {}, statuses {}, peak RSS {}",
        ms(da.pct_ms(0.50, any)),
        ms(da_p99),
        da.statuses(),
        mib(rss_da)
    );
    println!("[device_authorization] CPU: {}", cpu_da.describe());
    println!("[device_authorization] {}", states_da.describe());
    let sqlite_da = Row::new(&da, da.count(ok), w.secs(), (da.pct_ms(0.50, any), da_p99), &cpu_da, false, "");

    // Pending codes to poll: those just made, and more if needed. A third for the reqwest
    // clients, the rest for wrk.
    let need = POLL_CODES_REQWEST + POLL_CODES_WRK;
    if codes.len() < need {
        println!("[device] making {} more pending device codes for the polls ...", need - codes.len());
        let more = more_codes(&http, &bases, need - codes.len()).await;
        codes.extend(more);
    }
    let wrk_codes = codes.split_off(codes.len() * POLL_CODES_REQWEST / need);
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!(
        "\n[polls] {DEVICE_CLIENTS} clients polling {} pending codes in turn ({} each), {}s warm-up + {DEVICE_SECS} s ...",
        codes.len(),
        codes.len().div_ceil(DEVICE_CLIENTS),
        WARMUP.as_secs()
    );
    let poll_codes = codes.len();
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(DEVICE_SECS));
    let states = sqlite_states(server.pid, w);
    let (polls, cpu_polls) = tokio::join!(poll_load(&http, &bases, codes, DEVICE_CLIENTS, w), cpu_during(&pids, w));
    let states_polls = states.join().expect("sampler");
    let polls_pending = polls.count_label("authorization_pending");
    let polls_slow = polls.count_label("slow_down");
    let polls_other = polls.all.len() - polls_pending - polls_slow;
    let poll_rate = (polls_pending + polls_slow) as f64 / w.secs();
    let poll_p99 = polls.pct_label_ms(0.99, pending_poll);
    let rss_polls = rss.take_peak();
    println!(
        "[polls] {poll_rate:.0}/s pending answers ({polls_pending} authorization_pending, {polls_slow} slow_down, {polls_other} other), \
         p50 {} p99 {} (authorization_pending only: p50 {} p99 {}), statuses {}, peak RSS {}",
        ms(polls.pct_label_ms(0.50, pending_poll)),
        ms(poll_p99),
        ms(polls.pct_label_ms(0.50, |l| l == "authorization_pending")),
        ms(polls.pct_label_ms(0.99, |l| l == "authorization_pending")),
        polls.statuses(),
        mib(rss_polls)
    );
    println!("[polls] CPU: {}", cpu_polls.describe());
    println!("[polls] {}", states_polls.describe());
    let pcts = (polls.pct_label_ms(0.50, pending_poll), poll_p99);
    let sqlite_polls =
        Row::new(&polls, polls_pending + polls_slow, w.secs(), pcts, &cpu_polls, false, &format!("; {poll_codes} codes in turn"));

    // The same endpoints under wrk, with the peer's settings and its post_form.lua.
    let peer_dir = std::env::var("PEER_DIR")
        .map_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/peers/oidc-provider")), PathBuf::from);
    let peer_dir = peer_dir.canonicalize().unwrap_or(peer_dir);
    let post_form = peer_dir.join("wrk/post_form.lua");
    let post_bodies = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/post_bodies.lua"));
    let post_bodies = post_bodies.canonicalize().unwrap_or(post_bodies);
    let have_wrk = wrk_available();
    let mut ours: BTreeMap<(&str, usize), Measured> = BTreeMap::new();
    if !have_wrk {
        println!("\n[wrk] wrk is not installed (apt-get install -y wrk): the side-by-side comparison is left out");
    } else if !post_form.exists() {
        println!("\n[wrk] {} is missing (set PEER_DIR): the side-by-side comparison is left out", post_form.display());
    } else {
        let bodies_dir = tempfile::tempdir().expect("temp dir");
        let bodies = bodies_dir.path().join("poll_bodies.txt");
        let mut text = String::new();
        for c in &wrk_codes {
            let _ = writeln!(
                text,
                "grant_type={}&device_code={}&client_id={}",
                urlencode(DEVICE_CODE_GRANT),
                urlencode(c),
                urlencode(CLIENT_ID)
            );
        }
        std::fs::write(&bodies, text).expect("poll bodies");
        println!(
            "\n[wrk] wrk -t1 -c<N> -d{WRK_SECS}s --timeout 10s, {WRK_WARMUP_SECS} s warm-up + {WRK_RUNS} runs (medians), as the peer's bench.sh; \
             device_authorization with {}, pending polls rotating over {} codes with {}",
            post_form.display(),
            wrk_codes.len(),
            post_bodies.display()
        );
        for conns in WRK_CONNS {
            let env = vec![
                ("WRK_BODY", format!("client_id={CLIENT_ID}")),
                ("WRK_EXPECT_STATUS", "200".to_owned()),
                ("WRK_EXPECT_BODY", "\"device_code\"".to_owned()),
            ];
            let url = server.url("/oauth/device_authorization");
            if let Some(m) = wrk_series(post_form.clone(), url, env, conns, server.pid, format!("device_authorization c{conns}")).await {
                ours.insert(("device_authorization", conns), m);
            }
            let env = vec![("WRK_BODIES_FILE", bodies.display().to_string())];
            let url = server.url("/oauth/token");
            if let Some(m) = wrk_series(post_bodies.clone(), url, env, conns, server.pid, format!("pending poll c{conns}")).await {
                ours.insert(("pending poll", conns), m);
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dev_rss_after = rss_kib(server.pid).unwrap_or(0);
    let dev_rss_peak = rss.overall();
    drop(rss);
    let dev_log = server.log_lines();
    drop(server);

    // The PostgreSQL part (issue 6): the same three scenarios on one and on two instances.
    let pg_url = std::env::var("LOAD_DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| PG_DEFAULT_URL.to_owned());
    let mut pg_runs = Vec::new();
    if std::env::var("LOAD_PG").is_ok_and(|v| v == "0") {
        println!("\n[pg] LOAD_PG=0: PostgreSQL is not measured");
    } else {
        for n in PG_INSTANCES {
            let r = pg_run(&http, &pg_url, n).await;
            if let Err(e) = &r {
                let loud = format!(
                    "[pg] ********** SKIPPED: PostgreSQL with {n} instance(s) not measured: {e} (database {}; set LOAD_DATABASE_URL, \
                     or LOAD_PG=0 to leave PostgreSQL out) **********",
                    redact(&pg_url)
                );
                println!("\n{loud}");
                eprintln!("{loud}");
            }
            let unreachable = r.is_err() && pg_runs.is_empty();
            pg_runs.push((n, r));
            if unreachable {
                break;
            }
        }
    }
    let pg_table = (!pg_runs.is_empty()).then(|| backend_table(&[sqlite_da, sqlite_polls, sqlite_refresh], &pg_runs, cpus, &pg_url));

    // 8. The peer, its own bench.sh with the same wrk settings, right after.
    let mut peers: Vec<(&str, usize, PeerRun)> = Vec::new();
    if std::env::var("LOAD_PEER").is_ok_and(|v| v == "0") {
        println!("\n[peer] LOAD_PEER=0: the peer is not run");
    } else if !have_wrk || !peer_dir.join("bench.sh").exists() {
        println!("\n[peer] no wrk or no {}: the peer is not run", peer_dir.join("bench.sh").display());
    } else {
        for conns in WRK_CONNS {
            for store in PEER_STORES {
                println!("\n[peer] STORE={store} CONNS={conns} bash {} (about 45 s) ...", peer_dir.join("bench.sh").display());
                let dir = peer_dir.clone();
                match tokio::task::spawn_blocking(move || run_peer(&dir, store, conns)).await.expect("peer run") {
                    Ok(r) => peers.push((store, conns, r)),
                    Err(e) => println!("[peer] STORE={store} CONNS={conns}: {e}"),
                }
            }
        }
    }

    // 9. The device tables.
    let mut t = String::new();
    let _ = writeln!(t, "\n## Device grant (issue 3)\n");
    let _ = writeln!(
        t,
        "Fresh server and data directory. Settings for this run (rate limits are configuration; the defaults stay safe): {}.\n",
        SERVER_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(t, "| figure | measured | target |");
    let _ = writeln!(t, "|---|---:|---|");
    let _ =
        writeln!(t, "| device_authorization/s, {DEVICE_CLIENTS} reqwest clients, {DEVICE_SECS} s | {da_rate:.0} | see the comparison |");
    let _ = writeln!(
        t,
        "| device_authorization latency p50 / p99 | {} / {} | p99 <= {DEVICE_P99_TARGET_MS:.0} ms: {} |",
        ms(da.pct_ms(0.50, any)),
        ms(da_p99),
        verdict(da_p99.is_some_and(|p| p <= DEVICE_P99_TARGET_MS))
    );
    let _ = writeln!(t, "| device_authorization statuses | {} | all 200 |", da.statuses());
    let _ = writeln!(
        t,
        "| pending polls/s, {DEVICE_CLIENTS} reqwest clients, {poll_codes} codes in turn, {DEVICE_SECS} s | {poll_rate:.0} | see the comparison |"
    );
    let _ = writeln!(
        t,
        "| pending poll latency p50 / p99 (authorization_pending and slow_down) | {} / {} | p99 <= {DEVICE_P99_TARGET_MS:.0} ms: {} |",
        ms(polls.pct_label_ms(0.50, pending_poll)),
        ms(poll_p99),
        verdict(poll_p99.is_some_and(|p| p <= DEVICE_P99_TARGET_MS))
    );
    let _ = writeln!(t, "| poll answers | {} | all authorization_pending |", polls.statuses());
    for (label, c) in [("device_authorization", &cpu_da), ("pending polls", &cpu_polls)] {
        let _ = writeln!(
            t,
            "| CPU during {label}: server / load generator / others / steal (of {cpus} cores) | {:.2} / {:.2} / {:.2} / {:.2} | - |",
            c.server, c.generator, c.others, c.steal
        );
    }
    for (label, c, n) in [("device_authorization", &cpu_da, da.count(ok)), ("pending polls", &cpu_polls, polls_pending + polls_slow)] {
        let per = if n > 0 { c.server * DEVICE_SECS as f64 / n as f64 * 1e6 } else { f64::NAN };
        let _ = writeln!(t, "| server CPU per request, {label} | {per:.0} µs | - |");
    }
    for (label, st) in [("device_authorization", &states_da), ("pending polls", &states_polls)] {
        let _ = writeln!(
            t,
            "| SQLite worker threads during {label}: running / asleep in busy handler / idle / other; busiest thread running | {:.0}% / {:.0}% / {:.0}% / {:.0}%; {:.0}% | - |",
            st.running * 100.0,
            st.busy_sleep * 100.0,
            st.idle * 100.0,
            st.other * 100.0,
            st.busiest * 100.0
        );
    }
    let _ = writeln!(
        t,
        "| server RSS idle / peak during device_authorization / polls / after all (wrk too) / peak overall | {} / {} / {} / {} / {} | - |",
        mib(dev_rss_idle),
        mib(rss_da),
        mib(rss_polls),
        mib(dev_rss_after),
        mib(dev_rss_peak)
    );
    let _ = writeln!(t, "| server stderr lines (warn and above) | {} | - |", dev_log.len());
    print!("{t}");
    for l in dev_log.iter().take(5) {
        println!("    server: {l}");
    }

    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n## Latchkey vs oidc-provider, same load generator, same run\n\n\
         wrk -t1 -c<N> -d{WRK_SECS}s, {WRK_WARMUP_SECS} s warm-up, medians of {WRK_RUNS} runs; server and wrk share the {cpus} cores. \
         Latchkey: POST /oauth/device_authorization (client_id={CLIENT_ID}) with the peer's post_form.lua, and POST /oauth/token \
         device-code polls rotating over {} pending codes (bench/post_bodies.lua). Peer: its bench.sh (POST /device/auth; POST /token \
         polling one pending code, which it never slows down). CPU in cores, medians over the runs; \
         others: processes other than the server and wrk (0 on a quiet machine).\n",
        wrk_codes.len()
    );
    let _ = writeln!(
        t,
        "| endpoint | wrk -c | server | req/s | p50 | p99 | server CPU | req per server CPU-s | others CPU | latchkey ÷ this | answers |"
    );
    let _ = writeln!(t, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let fmt_ms = |v: f64| if v.is_nan() { "-".to_owned() } else { format!("{v:.2} ms") };
    let mut verdicts = Vec::new();
    for endpoint in ["device_authorization", "pending poll"] {
        for conns in WRK_CONNS {
            let Some(o) = ours.get(&(endpoint, conns)) else { continue };
            let _ = writeln!(
                t,
                "| {endpoint} | {conns} | latchkey | {:.0} | {} | {} | {:.2} | {:.0} | {:.2} | - | {} |",
                o.rps,
                fmt_ms(o.p50),
                fmt_ms(o.p99),
                o.server_cpu,
                o.per_cpu_second(),
                o.others,
                o.answers
            );
            for (store, c, p) in &peers {
                if *c != conns {
                    continue;
                }
                let m = if endpoint == "device_authorization" { &p.device_authorization } else { &p.token_poll };
                let _ = writeln!(
                    t,
                    "| {endpoint} | {conns} | oidc-provider STORE={store} | {:.0} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2}× | {} |",
                    m.rps,
                    fmt_ms(m.p50),
                    fmt_ms(m.p99),
                    m.server_cpu,
                    m.per_cpu_second(),
                    m.others,
                    o.rps / m.rps,
                    m.answers
                );
                if *store == "map" && conns == DEVICE_CLIENTS {
                    verdicts.push(format!(
                        "- {endpoint}, {conns} connections: {:.2}× oidc-provider STORE=map ({:.0} vs {:.0} req/s): >= {PEER_RATIO_TARGET:.0}× {}; \
                         p99 {} vs <= {DEVICE_P99_TARGET_MS:.0} ms: {}",
                        o.rps / m.rps,
                        o.rps,
                        m.rps,
                        verdict(o.rps >= PEER_RATIO_TARGET * m.rps),
                        fmt_ms(o.p99),
                        verdict(o.p99 <= DEVICE_P99_TARGET_MS)
                    ));
                }
            }
        }
    }
    if ours.is_empty() {
        let _ = writeln!(t, "(no wrk runs)");
    }
    let _ = writeln!(t, "\nTargets (issue 3, at {DEVICE_CLIENTS} clients, against STORE=map, which keeps every code as we do):");
    if verdicts.is_empty() {
        let _ = writeln!(t, "- not judged: no peer figures from this run");
    }
    for v in &verdicts {
        let _ = writeln!(t, "{v}");
    }
    if let Some((_, _, p)) = peers.first() {
        let rss: Vec<String> = peers.iter().map(|(store, conns, p)| format!("STORE={store} c{conns} {}", p.rss)).collect();
        let _ = writeln!(t, "\nPeer: oidc-provider {}. Its RSS after load: {}.", p.versions, rss.join("; "));
    }
    print!("{t}");

    if let Some(t) = &pg_table {
        print!("{t}");
    }

    // 10. Apps signing in (issue 11): code exchanges and userinfo, beside the peer's.
    codes::run(&http).await;
    passkeys::run(&http).await;

    // 11. The recorded peer figures, Rauthy included (it cannot be rerun from here).
    let peers_path = std::env::var("PEER_FIGURES").unwrap_or_else(|_| peer_dir.join("../FIGURES.md").display().to_string());
    println!("\n## Recorded peer figures (from {peers_path}; wrk -t1 -c32 -d5s, not this run)\n");
    match std::fs::read_to_string(&peers_path) {
        Ok(text) => {
            let rows = peer_rows(&text);
            println!("| peer | device_authorization req/s | p99 | pending poll req/s | p99 | RSS after load |");
            println!("|---|---:|---:|---:|---:|---:|");
            for r in &rows {
                println!("| {} | {} | {} ms | {} | {} ms | {} |", r[0], r[1], r[2], r[3], r[4], r[5]);
            }
            if rows.is_empty() {
                println!("(no table found in {peers_path})");
            }
        }
        Err(e) => println!("(cannot read {peers_path}: {e})"),
    }
    println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
}
