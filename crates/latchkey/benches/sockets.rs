//! Waiting-browsers benchmark (issue 5): many browsers wait on their QR login's WebSocket at
//! once, and a phone approves QR logins at a paced 1,000 approvals/s. It starts the real
//! `latchkey` binary on a fresh data directory and measures:
//!
//! - the server's RSS once the QR logins exist but no socket is open, and again with every
//!   browser's socket open and idle: the RSS per waiting socket, and so the RSS of 50,000 waiting
//!   browsers (target: at most 1 GiB);
//! - with all those browsers still waiting, the time from just before the phone sends
//!   `POST /api/v1/qr-logins/{id}/approve` to the `approved` message reaching that browser's
//!   socket, p50/p99/max, at 1,000 approvals/s (target: p99 at most 50 ms). Each approval is a
//!   scan (`GET /api/v1/qr-logins/{id}`) and then the approval, as a phone does;
//! - then, on a second fresh server, the same approvals with only about 1,000 browsers waiting
//!   at any time (each opens its socket 1,000 approvals before its own), for comparison.
//!
//! It raises the open-file limit of this process (the server inherits it) with `prlimit`, as far
//! as the kernel lets it, and opens no more sockets than that limit allows. When that is fewer
//! than asked, it says so and projects the RSS of 50,000 from what it measured. The browsers'
//! sockets come from 127.0.0.2 and up (each source address has its own ephemeral ports). It
//! prints figures and never asserts. Run with `cargo bench -p latchkey --bench sockets` (2 to 4
//! minutes after the build); docs/performance.md ("Waiting browsers") has the last results.
//!
//! Knobs: `SOCKETS_N` (waiting browsers, default 50,000), `SOCKETS_RATE` (approvals/s, default
//! 1,000), `SOCKETS_APPROVE_SECS` (default 5), `SOCKETS_IDLE_SECS` (the idle window with every
//! socket open, default 20: one server ping round), `SOCKETS_COMPARE=0` (leaves the comparison
//! run out), `SOCKETS_LEAD_MS` (in the comparison run, a browser opens its socket this
//! long, at the paced rate, before its approval; default 1,000), `SOCKETS_SOURCES` (source addresses, at least 8). `LATCHKEY_*` and `RUST_LOG`
//! are not passed on: the server runs with `SERVER_SETTINGS`. Linux only: it reads /proc.

use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "../tests/common/listen.rs"]
mod listen;
#[path = "support/proc.rs"]
mod proc;
use proc::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

const EMAIL: &str = "phone@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// Issue 5's targets.
const TARGET_BROWSERS: usize = 50_000;
const TARGET_RSS_KIB: u64 = 1024 * 1024;
const TARGET_PUSH_P99_MS: f64 = 50.0;

const DEFAULT_RATE: u64 = 1_000;
const DEFAULT_APPROVE_SECS: u64 = 5;
const DEFAULT_IDLE_SECS: u64 = 20;
const DEFAULT_LEAD_MS: u64 = 1_000;
const DEFAULT_SOURCES: u8 = 8;

/// `POST /api/v1/qr-logins` in flight at once while setting up.
const CREATE_CONCURRENCY: usize = 64;
/// WebSocket handshakes in flight at once while setting up.
const OPEN_CONCURRENCY: usize = 256;
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Approvals (scan + approve) in flight at once; past it the pacing falls behind, and the
/// achieved rate says so.
const APPROVE_IN_FLIGHT: usize = 256;
/// How long the approvals' answers may take after the pacing ends.
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// How long after the last approval answer a push may still arrive before it counts as missing.
const PUSH_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept free for everything but the browsers' sockets (HTTP connections,
/// the database, /proc reads), in this process and in the server.
const FD_MARGIN: u64 = 1_000;
/// The server's QR lifetime (`qr.ttl_secs`, default and maximum): every socket of a phase must
/// be open, idle and approved within it.
const QR_TTL_SECS: u64 = 120;

/// The settings the server runs with, beside `log.level = warn`. Every QR login of this benchmark
/// is created from 127.0.0.1, so the per-IP creation limit and the pending caps (shared by all
/// approval flows) are raised or switched off. The defaults stay as they are; the run says so.
const SERVER_SETTINGS: &[(&str, &str, &str)] = &[
    ("LATCHKEY_QR__CREATE_PER_IP_PER_MINUTE", "100000000", "30"),
    ("LATCHKEY_DEVICE__PENDING_PER_IP", "0", "50"),
    ("LATCHKEY_DEVICE__PENDING_TOTAL", "0", "100000"),
    // Each QR sign-in adds a device; its mail would be an .eml file per sign-in (no SMTP here).
    ("LATCHKEY_MAIL__NEW_DEVICE_MAIL", "false", "true"),
];

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.replace(['_', ','], "").parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.stderr");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(&data);
        // Only the settings below: nothing from the caller's environment changes the server.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LATCHKEY_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        for (k, v, _) in SERVER_SETTINGS {
            cmd.env(k, v);
        }
        cmd.env("LATCHKEY_LOG__LEVEL", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().map_err(|e| format!("starting the latchkey binary: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let rx = listen::listen_address(stdout);
        let addr = rx.recv_timeout(Duration::from_secs(60)).ok().and_then(|a| a.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the server did not print its address; its stderr:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        };
        Ok(Server { child, pid, addr, log, _dir: dir })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's stderr (warnings and errors only, at `log.level = warn`).
    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Limits, memory, CPU (from /proc)

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().replace('\t', " ")).unwrap_or_else(|_| "?".into())
}

/// (soft, hard) open-file limits of a process; `u64::MAX` for unlimited.
fn nofile(pid: &str) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let v: Vec<&str> = line.split_whitespace().collect();
    let parse = |s: &str| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() };
    Some((parse(v.get(3)?)?, parse(v.get(4)?)?))
}

fn show_limit((soft, hard): (u64, u64)) -> String {
    format!("{} / {}", thousands(soft), thousands(hard))
}

/// Raises this process's open-file limit (the server inherits it) with util-linux `prlimit`
/// (the crate forbids `unsafe`, so no `setrlimit` here): to `fs.nr_open` if the kernel lets
/// us raise the hard limit (root with CAP_SYS_RESOURCE), else the soft limit to the hard one.
fn raise_nofile() -> String {
    let pid = std::process::id().to_string();
    let nr_open: u64 = read_trim("/proc/sys/fs/nr_open").parse().unwrap_or(1 << 20);
    let run = |soft: u64, hard: u64| -> Result<(), String> {
        let out = Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={soft}:{hard}"))
            .output()
            .map_err(|e| format!("prlimit: {e}"))?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    };
    let before = nofile("self").unwrap_or((0, 0));
    match run(nr_open, nr_open) {
        Ok(()) => format!("raised from {} to {} (fs.nr_open)", show_limit(before), show_limit(nofile("self").unwrap_or((0, 0)))),
        Err(e1) => match run(before.1, before.1) {
            Ok(()) => format!(
                "could not raise the hard limit to fs.nr_open ({e1}); soft limit raised to the hard one: {} -> {}",
                show_limit(before),
                show_limit(nofile("self").unwrap_or((0, 0)))
            ),
            Err(e2) => format!("could not raise it ({e1}; {e2}); it stays {}", show_limit(before)),
        },
    }
}

/// Whether this process may raise limits at all: CAP_SYS_RESOURCE (bit 24) in CapEff.
fn has_cap_sys_resource() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << 24) != 0)
}

fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

fn rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmRSS:").unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A point in time, for CPU use between two of them.
struct CpuSnap {
    at: Instant,
    server: u64,
    me: u64,
    machine: (u64, u64),
    threads: BTreeMap<u64, (String, u64)>,
}

impl CpuSnap {
    fn take(pid: u32) -> CpuSnap {
        CpuSnap {
            at: Instant::now(),
            server: process_ticks(&pid.to_string()),
            me: process_ticks("self"),
            machine: machine_ticks(),
            threads: thread_ticks(pid),
        }
    }
}

/// CPU used between two snapshots, in cores (1.0 = one CPU busy all the time).
struct CpuUse {
    server: f64,
    generator: f64,
    /// Everything else on the machine: other processes, the kernel's own work.
    others: f64,
    steal: f64,
    /// Server threads by name, busiest first: (name, threads, cores).
    by_name: Vec<(String, usize, f64)>,
}

impl CpuUse {
    fn between(a: &CpuSnap, b: &CpuSnap) -> CpuUse {
        let ticks = b.at.duration_since(a.at).as_secs_f64() * clock_ticks_per_sec();
        let mut by: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for (tid, (name, t)) in &b.threads {
            let before = a.threads.get(tid).map_or(0, |(_, t0)| *t0);
            let e = by.entry(name.clone()).or_default();
            e.0 += 1;
            e.1 += t.saturating_sub(before);
        }
        let mut by_name: Vec<(String, usize, f64)> = by.into_iter().map(|(n, (k, t))| (n, k, t as f64 / ticks)).collect();
        by_name.sort_by(|x, y| y.2.total_cmp(&x.2));
        let server = b.server.saturating_sub(a.server) as f64 / ticks;
        let generator = b.me.saturating_sub(a.me) as f64 / ticks;
        CpuUse {
            server,
            generator,
            others: (b.machine.0.saturating_sub(a.machine.0) as f64 / ticks - server - generator).max(0.0),
            steal: b.machine.1.saturating_sub(a.machine.1) as f64 / ticks,
            by_name,
        }
    }

    fn short(&self) -> String {
        format!("{:.2} / {:.2} / {:.2}", self.server, self.generator, self.others)
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.by_name.iter().filter(|n| n.2 >= 0.005).map(|(n, k, c)| format!("{n} x{k}: {c:.2}")).collect();
        format!(
            "server {:.2} cores ({}), benchmark {:.2}, others {:.2}, steal {:.2}",
            self.server,
            names.join(", "),
            self.generator,
            self.others,
            self.steal
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

fn thousands(n: impl Into<u64>) -> String {
    let n: u64 = n.into();
    if n == u64::MAX {
        return "unlimited".into();
    }
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn count(n: usize) -> String {
    thousands(n as u64)
}

/// Nearest-rank percentile of milliseconds.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx])
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 10.0 => format!("{x:.2} ms"),
        Some(x) if x < 1000.0 => format!("{x:.1} ms"),
        Some(x) => format!("{:.2} s", x / 1000.0),
    }
}

struct Dist {
    sorted: Vec<f64>,
}

impl Dist {
    fn new(mut v: Vec<f64>) -> Dist {
        v.sort_by(f64::total_cmp);
        Dist { sorted: v }
    }
    fn p(&self, q: f64) -> Option<f64> {
        percentile(&self.sorted, q)
    }
    fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }
    fn three(&self) -> String {
        format!("{} / {} / {}", ms(self.p(0.50)), ms(self.p(0.99)), ms(self.max()))
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------------------------------------
// The browsers

struct Login {
    id: String,
    secret: String,
    match_code: String,
    created: Instant,
}

/// What happened to one browser, as nanoseconds since `Clock::base` (+1; 0 = not yet).
#[derive(Default)]
struct Slot {
    scan_sent: AtomicU64,
    scanned_pushed: AtomicU64,
    approve_sent: AtomicU64,
    approve_answered: AtomicU64,
    approved_pushed: AtomicU64,
    /// The last message type: see `kind_code`.
    last: AtomicU8,
    /// 0 open, 1 closed by the server (a close frame or end of stream), 2 an error.
    end: AtomicU8,
}

#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
}

impl Clock {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
}

fn kind_code(kind: &str) -> u8 {
    match kind {
        "waiting" => 1,
        "scanned" => 2,
        "approved" => 3,
        "denied" => 4,
        "expired" => 5,
        _ => 9,
    }
}

fn message_kind(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v["type"].as_str().map(str::to_owned)).unwrap_or_default()
}

async fn create_logins(http: &reqwest::Client, url: &str, n: usize) -> (Vec<Login>, BTreeMap<String, usize>, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CREATE_CONCURRENCY {
        let (http, url, next, failures) = (http.clone(), url.to_owned(), next.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            // Give up after 100 failures in all: the server refuses, and more would not help.
            while next.fetch_add(1, Ordering::Relaxed) < n && failures.load(Ordering::Relaxed) < 100 {
                let answer = match http.post(&url).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        r.json::<serde_json::Value>().await.map_err(|e| format!("body: {e}"))
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        Err(format!("{status}: {}", body.chars().take(200).collect::<String>()))
                    }
                    Err(e) => Err(format!("no answer: {e}")),
                };
                match answer {
                    Ok(v) => {
                        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                        made.push(Login { id: s("id"), secret: s("secret"), match_code: s("match_code"), created: Instant::now() });
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        *errors.entry(e).or_default() += 1;
                    }
                }
            }
            (made, errors)
        }));
    }
    let mut logins = Vec::with_capacity(n);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok((made, errs)) => {
                logins.extend(made);
                for (k, v) in errs {
                    *errors.entry(k).or_default() += v;
                }
            }
            Err(e) => *errors.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    logins.sort_by_key(|l| l.created);
    (logins, errors, started.elapsed().as_secs_f64())
}

/// Opens one browser's socket from `src`, sends the secret, and waits for the first state,
/// which must be `waiting`.
async fn open_socket(server: SocketAddr, src: Ipv4Addr, url: String, secret: String) -> Result<Ws, String> {
    let open = async {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0))).map_err(|e| format!("bind {src}: {e}"))?;
        let stream = sock.connect(server).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        // A small read buffer: 50,000 of tungstenite's default 128 KiB would be 6 GiB here.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config)).await.map_err(|e| format!("handshake: {e}"))?;
        ws.send(Message::text(serde_json::json!({ "secret": secret }).to_string()))
            .await
            .map_err(|e| format!("sending the secret: {e}"))?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if message_kind(t.as_str()) == "waiting" => Ok(ws),
            Some(Ok(m)) => Err(format!("first message: {}", m.to_string().chars().take(120).collect::<String>())),
            Some(Err(e)) => Err(format!("first message: {e}")),
            None => Err("closed before the first message".into()),
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, open).await.map_err(|_| format!("no `waiting` within {} s", OPEN_TIMEOUT.as_secs()))?
}

/// The browser waits: it reads (so tungstenite answers the server's pings) and notes when each
/// state arrives. It ends when the server closes, or drops the socket when told to stop.
async fn browser(mut ws: Ws, slots: Arc<Vec<Slot>>, i: usize, clock: Clock, mut stop: tokio::sync::watch::Receiver<bool>) {
    let slot = &slots[i];
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let now = clock.now();
                    let kind = message_kind(t.as_str());
                    match kind.as_str() {
                        "approved" => slot.approved_pushed.store(now, Ordering::Relaxed),
                        "scanned" => slot.scanned_pushed.store(now, Ordering::Relaxed),
                        _ => {}
                    }
                    slot.last.store(kind_code(&kind), Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_))) | None => {
                    slot.end.store(1, Ordering::Relaxed);
                    return;
                }
                Some(Err(_)) => {
                    slot.end.store(2, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

struct Opened {
    ok: usize,
    errors: BTreeMap<String, usize>,
    secs: f64,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

async fn open_sockets(
    server: SocketAddr,
    logins: &Arc<Vec<Login>>,
    slots: &Arc<Vec<Slot>>,
    sources: u8,
    clock: Clock,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Opened {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..OPEN_CONCURRENCY {
        let (logins, slots, next, stop) = (logins.clone(), slots.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(l) = logins.get(i) else { break };
                let src = Ipv4Addr::new(127, 0, 0, 2 + (i % sources as usize) as u8);
                let url = format!("ws://{server}/api/v1/qr-logins/{}/events", l.id);
                match open_socket(server, src, url, l.secret.clone()).await {
                    Ok(ws) => {
                        slots[i].last.store(kind_code("waiting"), Ordering::Relaxed);
                        handles.push(tokio::spawn(browser(ws, slots.clone(), i, clock, stop.clone())));
                    }
                    Err(e) => {
                        slots[i].end.store(2, Ordering::Relaxed);
                        *errors.entry(e.chars().take(160).collect()).or_default() += 1;
                    }
                }
            }
            (handles, errors)
        }));
    }
    let mut out = Opened { ok: 0, errors: BTreeMap::new(), secs: 0.0, handles: Vec::new() };
    for t in tasks {
        if let Ok((handles, errors)) = t.await {
            out.ok += handles.len();
            out.handles.extend(handles);
            for (k, v) in errors {
                *out.errors.entry(k).or_default() += v;
            }
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    out
}

// ---------------------------------------------------------------------------------------------
// The phone

async fn phone_token(http: &reqwest::Client, server: &Server) -> Result<String, String> {
    let r = http
        .post(server.url("/api/v1/accounts"))
        .json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await
        .map_err(|e| format!("creating the account: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("creating the account: {} {}", r.status(), r.text().await.unwrap_or_default()));
    }
    let r = http
        .post(server.url("/api/v1/sessions"))
        .json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD, "device": { "name": "Benchmark phone" } }))
        .send()
        .await
        .map_err(|e| format!("signing in: {e}"))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| format!("signing in: {status} {e}"))?;
    body["access_token"].as_str().map(str::to_owned).ok_or_else(|| format!("signing in: {status} {body}"))
}

struct Approvals {
    planned: usize,
    sent: usize,
    ok: usize,
    errors: BTreeMap<String, usize>,
    dispatch_secs: f64,
    /// approve sent -> `approved` on the browser's socket.
    push: Dist,
    /// scan sent -> `scanned` on the browser's socket.
    scanned_push: Dist,
    /// approve sent -> its 204 answer.
    answer: Dist,
    /// Approved (204) but no `approved` message within `PUSH_GRACE` after the last answer.
    missing: usize,
    cpu: CpuUse,
    rss_after: u64,
    /// Browsers' sockets open (`waiting` received) at the start and at the end of the pacing.
    waiting_start: usize,
    waiting_end: usize,
}

/// The comparison run: each browser opens its socket only `rate × lead` approvals before its
/// own (`lead` ahead at the paced rate), so that about that many browsers wait at any time.
struct JustInTime {
    server: SocketAddr,
    sources: u8,
    lead: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    handles: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    open_errors: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
}

fn errors_count(jit: Option<&JustInTime>) -> usize {
    jit.map_or(0, |j| j.open_errors.lock().unwrap_or_else(|e| e.into_inner()).values().sum())
}

fn open_count(slots: &[Slot]) -> usize {
    slots.iter().filter(|s| s.end.load(Ordering::Relaxed) == 0 && s.last.load(Ordering::Relaxed) != 0).count()
}

fn short_error(prefix: &str, e: &reqwest::Error) -> String {
    format!("{prefix}: {}", if e.is_timeout() { "timed out (30 s)".into() } else { e.to_string() })
}

/// Approves `chosen` logins at `rate` per second: each one is a scan (`GET`) and then the
/// approval (`POST …/approve` with the browser's number), as a phone does. Everything must be
/// over by `deadline` (when the oldest waiting browsers' logins expire): the pacing gives up
/// early enough for that, and for three times its planned time at most.
#[allow(clippy::too_many_arguments)]
async fn approve_paced(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    logins: &Arc<Vec<Login>>,
    slots: &Arc<Vec<Slot>>,
    chosen: &[usize],
    rate: u64,
    clock: Clock,
    deadline: Instant,
    jit: Option<&JustInTime>,
) -> Approvals {
    let sem = Arc::new(tokio::sync::Semaphore::new(APPROVE_IN_FLIGHT));
    let planned = chosen.len();

    // The comparison run: a browser opens its socket `ahead` approvals before its own, so that
    // about `ahead` browsers wait at any time, however fast the approvals go.
    let ahead = jit.map_or(0, |j| ((rate as f64 * j.lead.as_secs_f64()) as usize).max(1));
    let open_one = |k: usize| {
        let (Some(j), Some(&i)) = (jit, chosen.get(k)) else { return };
        let (slots, stop, handles, errors) = (slots.clone(), j.stop.clone(), j.handles.clone(), j.open_errors.clone());
        let url = format!("ws://{}/api/v1/qr-logins/{}/events", j.server, logins[i].id);
        let (server, secret) = (j.server, logins[i].secret.clone());
        let src = Ipv4Addr::new(127, 0, 0, 2 + (i % j.sources as usize) as u8);
        tokio::spawn(async move {
            match open_socket(server, src, url, secret).await {
                Ok(ws) => {
                    slots[i].last.store(kind_code("waiting"), Ordering::Relaxed);
                    let h = tokio::spawn(browser(ws, slots.clone(), i, clock, stop));
                    handles.lock().unwrap_or_else(|e| e.into_inner()).push(h);
                }
                Err(e) => {
                    slots[i].end.store(2, Ordering::Relaxed);
                    *errors.lock().unwrap_or_else(|e| e.into_inner()).entry(e.chars().take(160).collect()).or_default() += 1;
                }
            }
        });
    };
    // The first `ahead` browsers wait before the approvals start (10 s at most).
    for k in 0..ahead {
        open_one(k);
    }
    let opened_by = Instant::now() + Duration::from_secs(10);
    while jit.is_some() && Instant::now() < opened_by && open_count(slots) + errors_count(jit) < ahead.min(planned) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let answers_by = deadline.checked_sub(PUSH_GRACE).unwrap_or(deadline);
    let dispatch_by = (started + Duration::from_secs_f64(planned as f64 / rate as f64 * 3.0 + 5.0))
        .min(answers_by.checked_sub(ANSWER_WAIT).unwrap_or(answers_by));
    let schedule = move |j: usize| started + Duration::from_secs_f64(j as f64 / rate as f64);
    let waiting_start = open_count(slots);
    let cpu0 = CpuSnap::take(server.pid);
    let mut tasks = Vec::with_capacity(planned);
    for (j, &i) in chosen.iter().enumerate() {
        if Instant::now() > dispatch_by {
            break;
        }
        tokio::time::sleep_until(schedule(j).into()).await;
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        if jit.is_some() {
            open_one(j + ahead);
        }
        let (http, token, logins, slots) = (http.clone(), token.to_owned(), logins.clone(), slots.clone());
        let (scan_url, approve_url) = (
            server.url(&format!("/api/v1/qr-logins/{}", logins[i].id)),
            server.url(&format!("/api/v1/qr-logins/{}/approve", logins[i].id)),
        );
        let wait_open = jit.is_some();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let slot = &slots[i];
            // The comparison run: the browser must be waiting before the phone scans.
            if wait_open {
                let until = Instant::now() + Duration::from_secs(5);
                while slot.last.load(Ordering::Relaxed) == 0 && slot.end.load(Ordering::Relaxed) == 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if slot.last.load(Ordering::Relaxed) == 0 {
                    return Err("the browser's socket was not open in time".to_owned());
                }
            }
            slot.scan_sent.store(clock.now(), Ordering::Relaxed);
            match http.get(&scan_url).bearer_auth(&token).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => {
                    let _ = r.bytes().await;
                }
                Ok(r) => return Err(format!("scan: {}", r.status())),
                Err(e) => return Err(short_error("scan", &e)),
            }
            slot.approve_sent.store(clock.now(), Ordering::Relaxed);
            let r =
                http.post(&approve_url).bearer_auth(&token).json(&serde_json::json!({ "match_code": logins[i].match_code })).send().await;
            slot.approve_answered.store(clock.now(), Ordering::Relaxed);
            match r {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => Ok(()),
                Ok(r) => Err(format!("approve: {}", r.status())),
                Err(e) => Err(short_error("approve", &e)),
            }
        }));
    }
    let sent = tasks.len();
    let dispatch_secs = started.elapsed().as_secs_f64();
    let waiting_end = open_count(slots);
    let cpu1 = CpuSnap::take(server.pid);
    let mut ok = 0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut approved = Vec::new();
    for (mut t, &i) in tasks.into_iter().zip(chosen) {
        let left = answers_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, &mut t).await {
            Ok(Ok(Ok(()))) => {
                ok += 1;
                approved.push(i);
            }
            Ok(Ok(Err(e))) => *errors.entry(e).or_default() += 1,
            Ok(Err(e)) => *errors.entry(format!("task: {e}")).or_default() += 1,
            Err(_) => {
                t.abort();
                *errors.entry("no answer before the phase's deadline (the logins expire)".into()).or_default() += 1;
            }
        }
    }
    if sent < planned {
        errors.insert(format!("not sent: the pacing gave up after {dispatch_secs:.0} s"), planned - sent);
    }
    // The pushes still on their way.
    let grace_end = (Instant::now() + PUSH_GRACE).min(deadline);
    while Instant::now() < grace_end && approved.iter().any(|&i| slots[i].approved_pushed.load(Ordering::Relaxed) == 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ms_between = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e6;
    let mut push = Vec::new();
    let mut answer = Vec::new();
    let mut scanned_push = Vec::new();
    let mut missing = 0;
    for &i in &approved {
        let s = &slots[i];
        let (sent_at, pushed) = (s.approve_sent.load(Ordering::Relaxed), s.approved_pushed.load(Ordering::Relaxed));
        if pushed == 0 {
            missing += 1;
        } else {
            push.push(ms_between(sent_at, pushed));
        }
        answer.push(ms_between(sent_at, s.approve_answered.load(Ordering::Relaxed)));
        let (scan_at, scanned) = (s.scan_sent.load(Ordering::Relaxed), s.scanned_pushed.load(Ordering::Relaxed));
        if scanned != 0 {
            scanned_push.push(ms_between(scan_at, scanned));
        }
    }
    Approvals {
        planned,
        sent,
        ok,
        errors,
        dispatch_secs,
        push: Dist::new(push),
        scanned_push: Dist::new(scanned_push),
        answer: Dist::new(answer),
        missing,
        cpu: CpuUse::between(&cpu0, &cpu1),
        rss_after: rss_kib(&server.pid.to_string()),
        waiting_start,
        waiting_end,
    }
}

// ---------------------------------------------------------------------------------------------
// One phase: a fresh server, the waiting browsers, then paced approvals among them

struct Phase {
    label: String,
    /// The comparison run: sockets opened just in time, `lead` before their approval.
    lead: Option<Duration>,
    requested: usize,
    created: usize,
    create_errors: BTreeMap<String, usize>,
    create_secs: f64,
    opened: usize,
    open_errors: BTreeMap<String, usize>,
    open_secs: f64,
    /// Server RSS: QR logins created, no socket open / all sockets open (after 2 s) / after the
    /// idle window.
    rss_before: u64,
    rss_open: u64,
    rss_idle: Option<u64>,
    rss_anon_before: u64,
    rss_anon_open: u64,
    maps_before: usize,
    maps_open: usize,
    server_fds: usize,
    client_rss_before: u64,
    client_rss_open: u64,
    idle: Option<(f64, CpuUse)>,
    /// Sockets the server closed (or that failed) in the idle window, before the approvals.
    lost_while_idle: usize,
    approvals: Option<Approvals>,
    /// Seconds from the first socket open to the end of the approvals (they must fit in the
    /// logins' lifetime).
    span_secs: f64,
    expired_seen: usize,
    warnings: Vec<String>,
}

impl Phase {
    fn per_socket_kib(&self) -> f64 {
        let with = self.rss_idle.unwrap_or(0).max(self.rss_open);
        (with.saturating_sub(self.rss_before)) as f64 / self.opened.max(1) as f64
    }
}

struct Plan {
    waiting: usize,
    approvals: usize,
    idle_secs: u64,
    rate: u64,
    sources: u8,
    /// `Some`: the comparison run, see `JustInTime`.
    lead: Option<Duration>,
}

/// Memory mappings of a process: glibc serves allocations of 128 KiB and more with a mapping
/// of their own, so this shows per-socket buffers of that size.
fn map_count(pid: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| m.lines().count()).unwrap_or(0)
}

async fn run_phase(label: &str, plan: &Plan) -> Result<Phase, String> {
    match plan.lead {
        None => println!(
            "\n[{label}] {} browsers open their sockets and wait; then {} approvals at {}/s among them",
            count(plan.waiting),
            count(plan.approvals),
            plan.rate
        ),
        Some(lead) => println!(
            "\n[{label}] {} approvals at {}/s; each browser opens its socket {} approvals before its own ({} ms at the paced rate)",
            count(plan.approvals),
            plan.rate,
            count((plan.rate as f64 * lead.as_secs_f64()) as usize),
            lead.as_millis()
        ),
    }
    let mut server = Server::start()?;
    let pid = server.pid.to_string();
    println!(
        "[{label}] server pid {} on {}; its open-file limit (soft / hard): {}",
        server.pid,
        server.addr,
        nofile(&pid).map_or("?".into(), show_limit)
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(APPROVE_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let token = phone_token(&http, &server).await?;

    // 1. The QR logins, no socket yet.
    let (logins, create_errors, create_secs) = create_logins(&http, &server.url("/api/v1/qr-logins"), plan.waiting).await;
    println!(
        "[{label}] created {} QR logins in {create_secs:.1} s ({:.0}/s){}",
        count(logins.len()),
        logins.len() as f64 / create_secs,
        if create_errors.is_empty() { String::new() } else { format!("; refused or failed: {create_errors:?}") }
    );
    if logins.is_empty() {
        return Err(format!("no QR login could be created: {create_errors:?}"));
    }
    let logins = Arc::new(logins);
    // Every socket lives until its login expires; the phase ends 3 s before the oldest does.
    let deadline = logins[0].created + Duration::from_secs(QR_TTL_SECS) - Duration::from_secs(3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, rss_anon_before, client_rss_before, maps_before) =
        (rss_kib(&pid), status_kib(&pid, "RssAnon:").unwrap_or(0), rss_kib("self"), map_count(&pid));

    let clock = Clock { base: Instant::now() };
    let slots: Arc<Vec<Slot>> = Arc::new((0..logins.len()).map(|_| Slot::default()).collect());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    let (mut opened_ok, mut open_errors, mut open_secs) = (0, BTreeMap::new(), 0.0);
    let (mut rss_open, mut rss_anon_open, mut client_rss_open, mut server_fds, mut maps_open) = (0, 0, 0, 0, 0);
    let (mut idle, mut rss_idle) = (None, None);
    let mut jit = None;

    if plan.lead.is_none() {
        // 2. Every browser opens its socket and waits.
        let opened = open_sockets(server.addr, &logins, &slots, plan.sources, clock, &stop_rx).await;
        println!(
            "[{label}] opened {} sockets in {:.1} s ({:.0}/s){}",
            count(opened.ok),
            opened.secs,
            opened.ok as f64 / opened.secs,
            if opened.errors.is_empty() { String::new() } else { format!("; failed: {:?}", opened.errors) }
        );
        (opened_ok, open_errors, open_secs) = (opened.ok, opened.errors, opened.secs);
        handles = opened.handles;
        tokio::time::sleep(Duration::from_secs(2)).await;
        (rss_open, rss_anon_open, client_rss_open, server_fds, maps_open) =
            (rss_kib(&pid), status_kib(&pid, "RssAnon:").unwrap_or(0), rss_kib("self"), fd_count(server.pid), map_count(&pid));
        println!(
            "[{label}] server RSS {} before the sockets, {} with {} open ({} fds, {} -> {} memory mappings); this process {} -> {}",
            mib(rss_before),
            mib(rss_open),
            count(opened_ok),
            count(server_fds),
            count(maps_before),
            count(maps_open),
            mib(client_rss_before),
            mib(client_rss_open)
        );
        if !server.alive() {
            return Err(format!("the server died with the sockets open; its stderr:\n{}", server.log_lines().join("\n")));
        }

        // 3. All of them idle for one ping round (the server pings every 20 s, and re-reads the
        // login at each ping), if the logins' lifetime leaves room for it.
        let reserve = plan.approvals as f64 / plan.rate as f64 + ANSWER_WAIT.as_secs_f64() + PUSH_GRACE.as_secs_f64() + 5.0;
        let room = deadline.saturating_duration_since(Instant::now()).as_secs_f64() - reserve;
        let idle_secs = (plan.idle_secs as f64).min(room.max(0.0)).floor();
        if idle_secs < plan.idle_secs as f64 {
            println!("[{label}] idle window cut to {idle_secs:.0} s: the oldest QR login expires {QR_TTL_SECS} s after its creation");
        }
        if idle_secs >= 1.0 {
            let c0 = CpuSnap::take(server.pid);
            tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
            let cpu = CpuUse::between(&c0, &CpuSnap::take(server.pid));
            rss_idle = Some(rss_kib(&pid));
            println!("[{label}] idle {idle_secs:.0} s: {}; server RSS {}", cpu.describe(), mib(rss_idle.unwrap_or(0)));
            idle = Some((idle_secs, cpu));
        }
    } else if let Some(lead) = plan.lead {
        jit = Some(JustInTime {
            server: server.addr,
            sources: plan.sources,
            lead,
            stop: stop_rx.clone(),
            handles: Arc::new(std::sync::Mutex::new(Vec::new())),
            open_errors: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
        });
    }
    let lost_while_idle =
        slots.iter().filter(|s| s.last.load(Ordering::Relaxed) == kind_code("waiting") && s.end.load(Ordering::Relaxed) != 0).count();

    // 4. The phone approves the youngest ones at the paced rate, while the others wait.
    let candidates: Vec<usize> = match plan.lead {
        None => (0..logins.len()).filter(|&i| slots[i].end.load(Ordering::Relaxed) == 0).collect(),
        Some(_) => (0..logins.len()).collect(),
    };
    let chosen: Vec<usize> = candidates.iter().rev().take(plan.approvals).rev().copied().collect();
    let mut approvals = None;
    if !chosen.is_empty() {
        println!("[{label}] approving {} browsers at {}/s (scan, then approve) ...", count(chosen.len()), plan.rate);
        let a = approve_paced(&http, &server, &token, &logins, &slots, &chosen, plan.rate, clock, deadline, jit.as_ref()).await;
        println!(
            "[{label}] {} approvals sent in {:.1} s ({:.0}/s), {} answered 204{}; push p50/p99/max {}; {} missing; {} -> {} waiting",
            count(a.sent),
            a.dispatch_secs,
            a.sent as f64 / a.dispatch_secs,
            count(a.ok),
            if a.errors.is_empty() { String::new() } else { format!(", errors {:?}", a.errors) },
            a.push.three(),
            count(a.missing),
            count(a.waiting_start),
            count(a.waiting_end)
        );
        println!("[{label}] CPU during the approvals: {}", a.cpu.describe());
        approvals = Some(a);
    }
    let span_secs = clock.base.elapsed().as_secs_f64();
    let expired_seen = slots.iter().filter(|s| s.last.load(Ordering::Relaxed) == kind_code("expired")).count();
    if let Some(j) = &jit {
        handles = std::mem::take(&mut *j.handles.lock().unwrap_or_else(|e| e.into_inner()));
        opened_ok = handles.len();
        open_errors = j.open_errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    }

    // 5. Every browser goes away; then the server stops.
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    if !server.alive() {
        println!("[{label}] WARNING: the server exited during the phase");
    }
    let warnings = server.log_lines();
    drop(server);
    Ok(Phase {
        label: label.into(),
        lead: plan.lead,
        requested: plan.waiting,
        created: logins.len(),
        create_errors,
        create_secs,
        opened: opened_ok,
        open_errors,
        open_secs,
        rss_before,
        rss_open,
        rss_idle,
        rss_anon_before,
        rss_anon_open,
        maps_before,
        maps_open,
        server_fds,
        client_rss_before,
        client_rss_open,
        idle,
        lost_while_idle,
        approvals,
        span_secs,
        expired_seen,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// The report

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem =
        status_like("/proc/meminfo", "MemTotal:").map(|kib| format!("{:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0)).unwrap_or_default();
    format!("{model}, {cpus} CPUs, {mem}, Linux {}", read_trim("/proc/sys/kernel/osrelease"))
}

fn status_like(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// The server's warnings by kind: the message without its timestamp and `key=value` fields.
fn warning_kinds(lines: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in lines {
        let text = l.split_once(" WARN ").or_else(|| l.split_once(" ERROR ")).map_or(l.as_str(), |(_, t)| t);
        let kind: Vec<&str> = text.split_whitespace().filter(|w| !w.contains('=')).collect();
        *out.entry(kind.join(" ").chars().take(200).collect()).or_default() += 1;
    }
    out
}

fn errors_cell(errors: &BTreeMap<String, usize>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    errors.iter().map(|(k, v)| format!("{} × {k}", count(*v))).collect::<Vec<_>>().join("; ")
}

fn print_phase_rows(p: &Phase) {
    let l = &p.label;
    println!(
        "| {l}: QR logins created (setup) | {} of {} in {:.1} s ({:.0}/s); refused or failed: {} | - |",
        count(p.created),
        count(p.requested),
        p.create_secs,
        p.created as f64 / p.create_secs,
        errors_cell(&p.create_errors)
    );
    if let Some(lead) = p.lead {
        println!(
            "| {l}: sockets opened {} approvals before their own, secret sent, `waiting` received | {}; failed: {} | - |",
            count((env_num("SOCKETS_RATE", DEFAULT_RATE) as f64 * lead.as_secs_f64()) as usize),
            count(p.opened),
            errors_cell(&p.open_errors)
        );
    } else {
        println!(
            "| {l}: sockets opened, secret sent, `waiting` received (setup) | {} in {:.1} s ({:.0}/s); failed: {} | - |",
            count(p.opened),
            p.open_secs,
            p.opened as f64 / p.open_secs,
            errors_cell(&p.open_errors)
        );
        let per = p.per_socket_kib();
        println!(
            "| {l}: server RSS, logins only / all sockets open{} | {} / {}{} (anon {} / {}) | - |",
            if p.rss_idle.is_some() { " / after the idle window" } else { "" },
            mib(p.rss_before),
            mib(p.rss_open),
            p.rss_idle.map_or(String::new(), |r| format!(" / {}", mib(r))),
            mib(p.rss_anon_before),
            mib(p.rss_anon_open)
        );
        println!(
            "| {l}: server fds / memory mappings, logins only → all sockets open | {} fds; {} → {} mappings | - |",
            count(p.server_fds),
            count(p.maps_before),
            count(p.maps_open)
        );
        println!("| {l}: **server RSS per waiting socket** | **{per:.1} KiB** | - |");
        let measured_total = p.rss_idle.unwrap_or(0).max(p.rss_open);
        let (total, how) = if p.opened >= TARGET_BROWSERS {
            (measured_total, "measured".to_owned())
        } else {
            (
                p.rss_before + (per * TARGET_BROWSERS as f64) as u64,
                format!("projected from {}: RSS before + 50,000 × per socket", count(p.opened)),
            )
        };
        println!(
            "| {l}: **server RSS with {} waiting browsers** ({how}) | **{}** | ≤ 1 GiB: **{}** |",
            count(TARGET_BROWSERS),
            if total >= 1024 * 1024 { format!("{:.2} GiB", total as f64 / 1024.0 / 1024.0) } else { mib(total) },
            verdict(total <= TARGET_RSS_KIB)
        );
        println!(
            "| {l}: benchmark process RSS (the browsers: tokio-tungstenite with a 4 KiB read buffer) | {} → {} ({:.1} KiB per socket) | - |",
            mib(p.client_rss_before),
            mib(p.client_rss_open),
            p.client_rss_open.saturating_sub(p.client_rss_before) as f64 / p.opened.max(1) as f64
        );
        if let Some((secs, cpu)) = &p.idle {
            println!("| {l}: CPU with every socket idle for {secs:.0} s: server / benchmark / others (cores) | {} | - |", cpu.short());
        }
        if p.lost_while_idle > 0 {
            println!("| {l}: sockets lost while idle | {} | 0 |", count(p.lost_while_idle));
        }
    }
    if let Some(a) = &p.approvals {
        println!(
            "| {l}: approvals (scan + approve), paced at {}/s, {} → {} browsers waiting | {} planned, {} sent in {:.1} s: **{:.0}/s**; {} answered 204; errors: {} | 1,000/s |",
            thousands(env_num("SOCKETS_RATE", DEFAULT_RATE)),
            count(a.waiting_start),
            count(a.waiting_end),
            count(a.planned),
            count(a.sent),
            a.dispatch_secs,
            a.sent as f64 / a.dispatch_secs,
            count(a.ok),
            errors_cell(&a.errors)
        );
        let p99 = a.push.p(0.99);
        let met = p99.is_some_and(|v| v <= TARGET_PUSH_P99_MS) && a.missing == 0 && a.ok == a.planned;
        println!(
            "| {l}: **approve sent → `approved` on the browser's socket**, p50 / p99 / max | **{}** | p99 ≤ 50 ms: **{}** |",
            a.push.three(),
            verdict(met)
        );
        println!("| {l}: approved (204) but no push within {} s | {} | 0 |", PUSH_GRACE.as_secs(), count(a.missing));
        println!("| {l}: approve sent → its 204, p50 / p99 / max | {} | - |", a.answer.three());
        println!("| {l}: scan sent → `scanned` on the socket, p50 / p99 / max | {} | - |", a.scanned_push.three());
        println!(
            "| {l}: CPU during the approvals: server / benchmark / others (cores) | {}; server CPU per approval sent: {:.1} ms | - |",
            a.cpu.short(),
            a.cpu.server * a.dispatch_secs / a.sent.max(1) as f64 * 1e3
        );
        println!("| {l}: server RSS after the approvals | {} | - |", mib(a.rss_after));
    }
    if p.expired_seen > 0 {
        println!("| {l}: browsers told `expired` during the phase | {} | 0 |", count(p.expired_seen));
    }
    let kinds: Vec<String> = warning_kinds(&p.warnings).into_iter().map(|(k, n)| format!("{} × {k}", count(n))).collect();
    println!("| {l}: server warnings | {} | - |", if kinds.is_empty() { "0".into() } else { kinds.join("; ") });
}

#[tokio::main]
async fn main() {
    let requested: usize = env_num("SOCKETS_N", TARGET_BROWSERS);
    let rate: u64 = env_num("SOCKETS_RATE", DEFAULT_RATE).max(1);
    let approve_secs: u64 = env_num("SOCKETS_APPROVE_SECS", DEFAULT_APPROVE_SECS).max(1);
    let idle_secs: u64 = env_num("SOCKETS_IDLE_SECS", DEFAULT_IDLE_SECS);
    let compare: u64 = env_num("SOCKETS_COMPARE", 1);
    let lead = Duration::from_millis(env_num("SOCKETS_LEAD_MS", DEFAULT_LEAD_MS).max(1));
    let sources: u8 = env_num("SOCKETS_SOURCES", DEFAULT_SOURCES).clamp(1, 250);
    let started = Instant::now();

    println!("# Waiting browsers (issue 5)\n");
    println!("machine: {}", machine());
    println!(
        "kernel: fs.file-max {}, fs.nr_open {}, fs.file-nr {}, ip_local_port_range {}, vm.max_map_count {}, somaxconn {}",
        read_trim("/proc/sys/fs/file-max"),
        read_trim("/proc/sys/fs/nr_open"),
        read_trim("/proc/sys/fs/file-nr"),
        read_trim("/proc/sys/net/ipv4/ip_local_port_range"),
        read_trim("/proc/sys/vm/max_map_count"),
        read_trim("/proc/sys/net/core/somaxconn")
    );
    let raised = raise_nofile();
    let limit = nofile("self").unwrap_or((1024, 1024));
    println!(
        "open-file limit of this process (the server inherits it): {raised}; CAP_SYS_RESOURCE: {}",
        match has_cap_sys_resource() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        }
    );
    // Each browser is one descriptor here and one in the server.
    let fd_room = limit.0.saturating_sub(FD_MARGIN) as usize;
    let n = requested.min(fd_room);
    if n < requested {
        println!(
            "NOTE: {} waiting browsers asked, but the open-file limit ({}) allows only {} here and in the server: \
             the run opens {} and projects the RSS of {} from them",
            count(requested),
            thousands(limit.0),
            count(fd_room),
            count(n),
            count(TARGET_BROWSERS)
        );
    }
    let (port_lo, port_hi) = {
        let r = read_trim("/proc/sys/net/ipv4/ip_local_port_range");
        let mut it = r.split_whitespace().filter_map(|v| v.parse::<usize>().ok());
        (it.next().unwrap_or(32768), it.next().unwrap_or(60999))
    };
    let per_source = port_hi.saturating_sub(port_lo) + 1;
    let sources = sources.max((n.div_ceil(per_source.max(1)) + 1).min(250) as u8);
    println!("browsers' source addresses: 127.0.0.2 to 127.0.0.{} ({} ephemeral ports each)", 1 + sources as usize, count(per_source));
    println!("server settings changed for this run (the defaults stay in config.rs):");
    for (k, v, d) in SERVER_SETTINGS {
        println!("  {k}={v} (default {d})");
    }
    println!("  (qr.ttl_secs stays at its default and maximum, {QR_TTL_SECS} s; qr.socket_idle_secs at 60 s: the browsers answer pings)");

    let approvals = (rate * approve_secs) as usize;
    let mut phases = Vec::new();
    let mut failures = Vec::new();

    wait_quiet(&[]);
    let plan = Plan { waiting: n, approvals: approvals.min(n), idle_secs, rate, sources, lead: None };
    match run_phase("all waiting", &plan).await {
        Ok(p) => phases.push(p),
        Err(e) => {
            println!("[all waiting] FAILED: {e}");
            failures.push(format!("all waiting: {e}"));
        }
    }
    if compare != 0 {
        wait_quiet(&[]);
        let label = format!("~{} waiting", count((rate as f64 * lead.as_secs_f64()) as usize));
        let plan = Plan { waiting: approvals, approvals, idle_secs: 0, rate, sources, lead: Some(lead) };
        match run_phase(&label, &plan).await {
            Ok(p) => phases.push(p),
            Err(e) => {
                println!("[{label}] FAILED: {e}");
                failures.push(format!("{label}: {e}"));
            }
        }
    }

    println!("\n## Results\n");
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    println!(
        "| open-file limit (soft / hard) of this process and the server | {} | ≥ {} + margin |",
        show_limit(limit),
        count(TARGET_BROWSERS)
    );
    for p in &phases {
        print_phase_rows(p);
    }
    println!();
    for p in &phases {
        println!("[{}] {:.0} s from the first socket to the end of the approvals (the logins live {QR_TTL_SECS} s)", p.label, p.span_secs);
        for (w, n) in warning_kinds(&p.warnings) {
            println!("[{}] server warnings: {} × {w}", p.label, count(n));
        }
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    println!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
    if phases.is_empty() {
        std::process::exit(1);
    }
}
