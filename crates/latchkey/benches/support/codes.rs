//! Issue 11's figures: authorization-code exchanges per second (id_tokens signed RS256 and
//! EdDSA) and userinfo per second, on Latchkey and, in the same run, on the peer (panva's
//! oidc-provider, copied to `bench/peer/` with a code flow added; see its README), both under
//! `wrk -t1 -c32` as the peer's bench.sh runs it, their runs taking turns so that a machine whose
//! speed drifts weighs on both alike; and the id_token signatures one core makes per second with
//! the server's own key ring, from which the RS256 bound (the most any exchange that must sign
//! could do against the peer per CPU second) follows.
//!
//! Codes are single-use and live 60 s, so each run gets fresh ones, minted just before it: on
//! Latchkey through the real authorization endpoint by a signed-in browser (a cookie jar) whose
//! consent is remembered; on the peer through its own models (`POST /bench/codes`, the same rows
//! its authorization endpoint would store). Minting is not measured.

use super::*;

const REDIRECT: &str = "https://rp.example/cb";
/// The peer's fixed PKCE verifier (bench/peer/README.md); ours uses the same.
const VERIFIER: &str = "bench-verifier-0123456789-0123456789-0123456789";
const CONNS: usize = 32;
/// Enough codes for a run at up to this rate; more would only slow the minting.
const MAX_RATE: f64 = 20000.0;
const SIGN_SECS: f64 = 2.0;
/// Issue 11's target: code exchanges at least 3× the peer's, with p99 at most 10 ms.
const RATIO_TARGET: f64 = 3.0;
const P99_TARGET_MS: f64 = 10.0;

fn lua(name: &str) -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench")).join(name);
    p.canonicalize().unwrap_or(p)
}

fn exchange_body(code: &str, client: &str) -> String {
    format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&client_id={client}&code_verifier={VERIFIER}",
        urlencode(code),
        urlencode(REDIRECT)
    )
}

/// A source of fresh codes for one client.
enum Minter {
    /// A signed-in browser at Latchkey's authorization endpoint.
    Latchkey { browser: reqwest::Client, base: String },
    /// The peer's bench route.
    Peer { http: reqwest::Client, base: String },
}

impl Minter {
    async fn mint(&self, client: &str, n: usize) -> Result<Vec<String>, String> {
        match self {
            Minter::Latchkey { browser, base } => {
                let url = format!(
                    "{base}/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email&nonce=bench-nonce&code_challenge={}&code_challenge_method=S256",
                    urlencode(REDIRECT),
                    latchkey::domain::pkce::challenge_of(VERIFIER)
                );
                let next = Arc::new(AtomicU64::new(0));
                let tasks = (0..16).map(|_| {
                    let (browser, url, next) = (browser.clone(), url.clone(), next.clone());
                    tokio::spawn(async move {
                        let mut codes = Vec::new();
                        while (next.fetch_add(1, Ordering::Relaxed) as usize) < n {
                            let r = browser.get(&url).send().await.map_err(|e| e.to_string())?;
                            let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                            let code = loc.split("code=").nth(1).and_then(|c| c.split('&').next());
                            codes.push(code.ok_or(format!("authorize answered {} to {loc:?}", r.status()))?.to_owned());
                        }
                        Ok::<_, String>(codes)
                    })
                });
                let mut all = Vec::new();
                for t in futures_util::future::join_all(tasks).await {
                    all.extend(t.map_err(|e| e.to_string())??);
                }
                // Codes are base64url: the redirect's form encoding leaves them as they are.
                Ok(all)
            }
            Minter::Peer { http, base } => {
                let r = http.post(format!("{base}/bench/codes?client={client}&n={n}")).send().await.map_err(|e| e.to_string())?;
                let text = r.text().await.map_err(|e| e.to_string())?;
                Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
            }
        }
    }
}

/// One side of the comparison: where its codes come from, its token endpoint, its process.
struct Side<'a> {
    label: &'static str,
    minter: &'a Minter,
    token_url: String,
    pid: u32,
    /// The rate of its fastest run so far, which sizes the codes minted for the next one.
    rate: f64,
    runs: Vec<WrkRun>,
}

/// One wrk run of code exchanges for `client` on fresh codes (the warm-up when `i` is 0).
async fn exchange_run(side: &mut Side<'_>, client: &str, alg: &str, i: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bodies = dir.path().join("bodies.txt");
    let secs = if i == 0 { WRK_WARMUP_SECS } else { WRK_SECS };
    let n = ((side.rate * 1.8).min(MAX_RATE) * secs as f64) as usize + 500;
    let codes = side.minter.mint(client, n).await?;
    let text: String = codes.iter().map(|c| exchange_body(c, client) + "\n").collect();
    std::fs::write(&bodies, text).map_err(|e| e.to_string())?;
    let r = wrk_once(&side.token_url, ("WRK_BODIES_FILE", bodies.display().to_string()), secs, side.pid).await?;
    // The fastest run so far: a peer still warming up must not leave the next run short of codes.
    side.rate = side.rate.max(r.get("rps"));
    println!(
        "[codes] {} {alg} {} {secs} s on {} codes: ok/s={:.1} p50_ms={:.3} p99_ms={:.3} ok={} unexpected={} server_cpu={:.2} others={:.2}",
        side.label,
        if i == 0 { "warm-up".to_owned() } else { format!("run {i}") },
        codes.len(),
        ok_per_sec(&r),
        r.get("p50_ms"),
        r.get("p99_ms"),
        r.get("ok"),
        r.get("unexpected"),
        r.server_cpu,
        r.others
    );
    if i > 0 {
        side.runs.push(r);
    }
    Ok(())
}

/// Code exchanges for `client` on every side, their runs taking turns (ours, the peer's, ours…)
/// so that a machine that speeds up or slows down during the part weighs on both alike; medians.
async fn exchanges(sides: &mut [Side<'_>], client: &str, alg: &str) -> Vec<Option<Measured>> {
    let mut failed = vec![false; sides.len()];
    for side in sides.iter_mut() {
        side.runs.clear();
        side.rate = 8000.0;
    }
    for i in 0..=WRK_RUNS {
        for (side, failed) in sides.iter_mut().zip(failed.iter_mut()) {
            if *failed {
                continue;
            }
            if let Err(e) = exchange_run(side, client, alg, i).await {
                println!("[codes] {} {alg}: {e}", side.label);
                *failed = true;
            }
        }
    }
    sides.iter().zip(failed).map(|(side, failed)| (!failed).then(|| summarise(&side.runs))).collect()
}

/// One `post_once.lua` run of `secs` against `url` once `pid`'s machine is quiet.
async fn wrk_once(url: &str, env: (&'static str, String), secs: u64, pid: u32) -> Result<WrkRun, String> {
    wait_quiet(&[pid]);
    let (script, url) = (lua("post_once.lua"), url.to_owned());
    tokio::task::spawn_blocking(move || run_wrk(&script, &url, &[env], CONNS, secs, pid)).await.map_err(|e| e.to_string())?
}

/// Answers of 200 per second: a run that outlasted its codes gets refusals, which must not count.
fn ok_per_sec(r: &WrkRun) -> f64 {
    r.get("ok") / r.get("duration_s")
}

/// Server CPU per 200 answer, in ms: what one exchange costs, whatever the machine's speed that run.
fn cpu_ms(m: &Measured) -> f64 {
    m.server_cpu / m.rps * 1000.0
}

fn summarise(runs: &[WrkRun]) -> Measured {
    let sum = |k: &str| runs.iter().map(|r| r.get(k)).filter(|x| !x.is_nan()).sum::<f64>();
    Measured {
        rps: median(runs.iter().map(ok_per_sec).collect()),
        p50: median(runs.iter().map(|r| r.get("p50_ms")).collect()),
        p99: median(runs.iter().map(|r| r.get("p99_ms")).collect()),
        server_cpu: median(runs.iter().map(|r| r.server_cpu).collect()),
        others: median(runs.iter().map(|r| r.others).collect()),
        answers: format!("{:.0} requests, {:.0} answered 200, {:.0} unexpected", sum("requests"), sum("ok"), sum("unexpected")),
    }
}

/// Userinfo with one access token on each side: (label, url, token, pid). A warm-up, then
/// `WRK_RUNS` runs taking turns as the exchanges do; medians.
async fn userinfo(sides: &[(&str, String, String, u32)]) -> Vec<Measured> {
    let mut runs: Vec<Vec<WrkRun>> = sides.iter().map(|_| Vec::new()).collect();
    for i in 0..=WRK_RUNS {
        let secs = if i == 0 { WRK_WARMUP_SECS } else { WRK_SECS };
        for ((label, url, token, pid), runs) in sides.iter().zip(runs.iter_mut()) {
            let r = match wrk_once(url, ("WRK_BEARER", token.clone()), secs, *pid).await {
                Ok(r) => r,
                Err(e) => {
                    println!("[userinfo] {label}: {e}");
                    continue;
                }
            };
            println!(
                "[userinfo] {label} {}: ok/s={:.1} p99_ms={:.3} ok={} unexpected={}",
                if i == 0 { "warm-up".to_owned() } else { format!("run {i}") },
                ok_per_sec(&r),
                r.get("p99_ms"),
                r.get("ok"),
                r.get("unexpected")
            );
            if i > 0 {
                runs.push(r);
            }
        }
    }
    runs.iter().map(|r| summarise(r)).collect()
}

/// One exchange by hand, for the access token userinfo is measured with.
async fn one_token(http: &reqwest::Client, minter: &Minter, token_url: &str, client: &str) -> Result<String, String> {
    let code = minter.mint(client, 1).await?.pop().ok_or("no code")?;
    let r = http
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(exchange_body(&code, client))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    v["access_token"].as_str().map(str::to_owned).ok_or(format!("no access_token in {v}"))
}

/// id_tokens one core signs per second with the server's key ring (keys loaded once, as the
/// server holds them; every token signed afresh).
async fn signs_per_core(alg: latchkey::keys::SigningAlg) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = latchkey::store::open(&format!("sqlite://{}", dir.path().join("keys.db").display()), 2).await.expect("store");
    let ring = Arc::new(latchkey::keys::KeyRing::new(store, 600, None));
    ring.init(0).await.expect("keys");
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let claims = serde_json::json!({ "iss": "http://127.0.0.1", "sub": "01a2", "aud": "bench", "exp": 2_000_000_000i64, "iat": 1, "nonce": "n" });
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed().as_secs_f64() < SIGN_SECS {
                ring.sign_as(alg, Some("JWT"), &claims, 1).await.expect("sign");
                n += 1;
            }
            n as f64 / started.elapsed().as_secs_f64()
        })
    })
    .await
    .expect("signing")
}

/// Signs a cookie jar in through `/login` and lets `clients` in once, so that the authorization
/// endpoint answers with a code straight away.
async fn browser_for(server: &Server, clients: &[&str]) -> Result<reqwest::Client, String> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .map_err(|e| e.to_string())?;
    let page = browser.get(server.url("/login")).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
    let field = |page: &str, name: &str| -> Option<String> {
        let raw = page.split(&format!("name=\"{name}\" value=\"")).nth(1)?.split('"').next()?;
        Some(raw.replace("&amp;", "&").replace("&#38;", "&").replace("&#x27;", "'"))
    };
    let csrf = field(&page, "csrf").ok_or("no csrf on /login")?;
    let r = browser
        .post(server.url("/login"))
        .form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", csrf.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!("web login answered {}", r.status()));
    }
    for client in clients {
        let url = format!(
            "{}/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email&code_challenge={}&code_challenge_method=S256",
            server.base,
            urlencode(REDIRECT),
            latchkey::domain::pkce::challenge_of(VERIFIER)
        );
        let page = browser.get(&url).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
        let (csrf, request) = (field(&page, "csrf").ok_or("no consent page")?, field(&page, "request").ok_or("no request field")?);
        let r = browser
            .post(server.url("/oauth/authorize/decision"))
            .form(&[("csrf", csrf.as_str()), ("request", request.as_str()), ("decision", "approve")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 303 {
            return Err(format!("consent for {client} answered {}", r.status()));
        }
    }
    Ok(browser)
}

fn add_client(server: &Server, id: &str, alg: &str) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["client", "add", id, "--name", id, "--redirect-uri", REDIRECT, "--id-token-signed-response-alg", alg, "--data-dir"])
        .arg(&server.data)
        .env("LATCHKEY_LOG__LEVEL", "warn")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

struct Peer {
    child: Child,
    base: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(dir: &std::path::Path) -> Result<Peer, String> {
    if !dir.join("node_modules/oidc-provider").is_dir() {
        return Err(format!("{} has no node_modules (cd bench/peer && npm ci)", dir.display()));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())?;
    let mut child = Command::new("node")
        .arg(dir.join("server.mjs"))
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("STORE", "map")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.contains("ready") {
        let _ = child.kill();
        return Err(format!("the peer printed {line:?}"));
    }
    // It prints notices later: keep reading, or its next write fails on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(Peer { child, base: format!("http://127.0.0.1:{port}") })
}

/// The whole part; returns its table (markdown).
pub async fn run(http: &reqwest::Client) -> String {
    use latchkey::keys::SigningAlg;
    let mut t = String::from("\n## Apps signing in (issue 11)\n\n");
    if !wrk_available() {
        println!("\n[codes] wrk is not installed: the code-exchange part is left out");
        return t + "wrk is not installed: left out.\n";
    }
    println!("\n[codes] id_token signatures per core, {SIGN_SECS} s each ...");
    let (rs_signs, ed_signs) = (signs_per_core(SigningAlg::RS256).await, signs_per_core(SigningAlg::EdDSA).await);
    println!("[codes] RS256 {rs_signs:.0}/s, EdDSA {ed_signs:.0}/s on one core");

    let server = Server::start();
    println!("[codes] fresh server, pid {} at {}", server.pid, server.base);
    let created = http.post(server.url("/api/v1/accounts")).json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD })).send().await;
    let setup = async {
        if !created.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Err("creating the account failed".to_owned());
        }
        add_client(&server, "bench-rs", "RS256")?;
        add_client(&server, "bench-ed", "EdDSA")?;
        browser_for(&server, &["bench-rs", "bench-ed"]).await
    };
    let browser = match setup.await {
        Ok(b) => b,
        Err(e) => {
            println!("[codes] setting up: {e}");
            return t + &format!("setting up failed: {e}\n");
        }
    };
    let minter = Minter::Latchkey { browser, base: server.base.clone() };
    let peer_dir = lua("peer");
    let peer_proc = if std::env::var("LOAD_PEER").is_ok_and(|v| v == "0") {
        println!("[codes] LOAD_PEER=0: the peer is left out");
        None
    } else {
        match start_peer(&peer_dir) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("[codes] the peer cannot run: {e}");
                None
            }
        }
    };
    let peer_minter = peer_proc.as_ref().map(|p| Minter::Peer { http: http.clone(), base: p.base.clone() });
    let new_side = |label, minter, token_url, pid| Side { label, minter, token_url, pid, rate: 0.0, runs: Vec::new() };
    let mut sides = vec![new_side("latchkey", &minter, server.url("/oauth/token"), server.pid)];
    if let (Some(p), Some(m)) = (&peer_proc, &peer_minter) {
        sides.push(new_side("peer", m, format!("{}/token", p.base), p.child.id()));
    }
    let mut ours: Vec<(String, Measured)> = Vec::new();
    let mut peer: Vec<(String, Measured)> = Vec::new();
    for (client, alg) in [("bench-rs", "RS256"), ("bench-ed", "EdDSA")] {
        let measured = exchanges(&mut sides, client, alg).await;
        for (i, m) in measured.into_iter().enumerate() {
            if let Some(m) = m {
                (if i == 0 { &mut ours } else { &mut peer }).push((format!("code exchange, id_token {alg}"), m));
            }
        }
    }
    // Userinfo with one access token from each side.
    let mut bearers = Vec::new();
    for side in &sides {
        let url = if side.label == "latchkey" { server.url("/oauth/userinfo") } else { side.token_url.replace("/token", "/me") };
        match one_token(http, side.minter, &side.token_url, "bench-rs").await {
            Ok(token) => bearers.push((side.label, url, token, side.pid)),
            Err(e) => println!("[userinfo] {}: {e}", side.label),
        }
    }
    for ((label, ..), m) in bearers.iter().zip(userinfo(&bearers).await) {
        (if *label == "latchkey" { &mut ours } else { &mut peer }).push(("userinfo".into(), m));
    }
    drop(server);
    drop(peer_proc);

    let _ = writeln!(
        t,
        "wrk -t1 -c{CONNS}, {WRK_RUNS} runs of {WRK_SECS} s after a {WRK_WARMUP_SECS} s warm-up, ours and the peer's taking turns, medians; fresh codes for every run; rates count 200 answers only.\n"
    );
    let _ = writeln!(
        t,
        "| figure | Latchkey 200s/s (p50 / p99 ms; server CPU, cores; CPU ms per answer) | peer, the same | ratio | CPU per answer, peer / ours | target |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---|");
    for (label, m) in &ours {
        let p = peer.iter().find(|(l, _)| l == label).map(|(_, p)| p);
        let ratio = p.map(|p| m.rps / p.rps);
        let target = if label.starts_with("code exchange") {
            let met = ratio.is_some_and(|r| r >= RATIO_TARGET) && m.p99 <= P99_TARGET_MS;
            format!(">= {RATIO_TARGET:.0}x, p99 <= {P99_TARGET_MS:.0} ms: {}", verdict(met))
        } else {
            "-".into()
        };
        let cell = |m: &Measured| format!("{:.0} ({:.2} / {:.2}; {:.2}; {:.3})", m.rps, m.p50, m.p99, m.server_cpu, cpu_ms(m));
        let _ = writeln!(
            t,
            "| {label} | {} | {} | {} | {} | {target} |",
            cell(m),
            p.map_or("-".into(), cell),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            p.map_or("-".into(), |p| format!("{:.2}x", cpu_ms(p) / cpu_ms(m)))
        );
        let _ = writeln!(t, "| {label}: answers | {} | {} | | | |", m.answers, p.map_or("-".into(), |p| p.answers.clone()));
    }
    let _ = writeln!(
        t,
        "| id_token signatures per core per second, RS256 / EdDSA (the server's key ring) | {rs_signs:.0} / {ed_signs:.0} | | | | |"
    );
    // The most any server could do against this peer with RS256, on CPU alone: each exchange
    // must make one RSA-2048 signature, which costs the same here as in the peer (both sign with
    // an OpenSSL-family library), so at best ours costs that signature and nothing else.
    if let Some(p) = peer.iter().find(|(l, _)| l == "code exchange, id_token RS256").map(|(_, p)| p) {
        let sign_ms = 1000.0 / rs_signs;
        let _ = writeln!(
            t,
            "\nRS256 bound: the peer spends {:.3} ms of CPU per exchange; one RS256 signature alone costs {sign_ms:.3} ms here, so even an exchange that cost nothing but its signature would do at most {:.2}x the peer's exchanges per CPU second.",
            cpu_ms(p),
            cpu_ms(p) / sign_ms
        );
    }
    print!("{t}");
    t
}
