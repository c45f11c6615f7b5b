//! Issue 13's figures: passkey sign-ins verified per second, beside password logins on the same
//! server in the same run, per server core, with the latency of the verifying request.
//!
//! Each client holds its own software authenticator (1Password's passkey-client and
//! passkey-authenticator, as in the tests) with a passkey registered on the account, and loops:
//! `POST /api/v1/passkeys/login/start`, sign the challenge here, `POST …/login/finish` (which
//! verifies the assertion, moves the counter and opens a session with tokens). The signing runs
//! in this process on the same cores, like the rest of the load generator. Password logins are
//! the same server's `/api/v1/sessions`, bound by argon2id.

use super::passkey::SoftKey;
use super::*;

const CLIENTS: usize = 32;
/// A lighter load too: the verifying request's own latency, with less queueing on two cores.
const LIGHT_CLIENTS: usize = 4;
const SECS: u64 = 10;
/// Issue 13's target: passkey sign-ins at least 20× password logins per server core, and the
/// verifying request's p99 at most 10 ms.
const RATIO_TARGET: f64 = 20.0;
const P99_TARGET_MS: f64 = 10.0;

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value, bearer: Option<&str>) -> Result<serde_json::Value, u16> {
    let mut req = http.post(url).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|_| NO_ANSWER)?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if (200..300).contains(&status) { Ok(body) } else { Err(status) }
}

/// One authenticator per client, each with a passkey on the account.
async fn keys(http: &reqwest::Client, server: &Server, n: usize) -> Result<Vec<SoftKey>, String> {
    let r = post(http, &server.url("/api/v1/sessions"), &serde_json::json!({ "email": EMAIL, "password": PASSWORD }), None).await;
    let at = r.map_err(|s| format!("password login {s}"))?["access_token"].as_str().unwrap_or_default().to_owned();
    let mut keys = Vec::new();
    for i in 0..n {
        let mut key = SoftKey::new(&server.base);
        let started =
            post(http, &server.url("/api/v1/passkeys/register/start"), &serde_json::json!({ "name": format!("key {i}") }), Some(&at))
                .await
                .map_err(|s| format!("register/start {s}"))?;
        let credential = key.register(&started["options"]).await;
        let body = serde_json::json!({ "challenge_id": started["challenge_id"], "credential": credential });
        post(http, &server.url("/api/v1/passkeys/register/finish"), &body, Some(&at)).await.map_err(|s| format!("register/finish {s}"))?;
        keys.push(key);
    }
    Ok(keys)
}

/// The load: each client signs in with its passkey again and again. Answers the whole
/// ceremonies (start, sign, finish) and the finish requests alone.
async fn sign_in_load(http: &reqwest::Client, server: &Server, keys: Vec<SoftKey>, w: Window) -> (Samples, Samples) {
    let (start_url, finish_url) = (server.url("/api/v1/passkeys/login/start"), server.url("/api/v1/passkeys/login/finish"));
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|mut key| {
            let (http, start_url, finish_url) = (http.clone(), start_url.clone(), finish_url.clone());
            tokio::spawn(async move {
                let (mut whole, mut finish) = (Samples::default(), Samples::default());
                while w.open() {
                    let began = Instant::now();
                    let started = match post(&http, &start_url, &serde_json::json!({}), None).await {
                        Ok(s) => s,
                        Err(status) => {
                            whole.record(&w, began, status);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let credential = key.sign(&started["options"]).await;
                    let body = serde_json::json!({ "challenge_id": started["challenge_id"], "credential": credential });
                    let sent = Instant::now();
                    let status = match post(&http, &finish_url, &body, None).await {
                        Ok(_) => 200,
                        Err(s) => s,
                    };
                    finish.record(&w, sent, status);
                    whole.record(&w, began, status);
                }
                (whole, finish)
            })
        })
        .collect();
    let (mut wholes, mut finishes) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, b) = t.await.expect("client task");
        wholes.push(a);
        finishes.push(b);
    }
    (Samples::merge(wholes), Samples::merge(finishes))
}

pub async fn run(http: &reqwest::Client) {
    println!("\n# passkeys (issue 13): sign-ins with a passkey beside password logins, one server");
    let server = Server::start_localhost();
    let pids = [server.pid];
    println!("[passkeys] server pid {} at {}", server.pid, server.base);
    if let Err(s) = post(http, &server.url("/api/v1/accounts"), &serde_json::json!({ "email": EMAIL, "password": PASSWORD }), None).await {
        println!("[passkeys] could not create the account ({s}); part skipped");
        return;
    }
    let mut keys = match keys(http, &server, CLIENTS + LIGHT_CLIENTS).await {
        Ok(k) => k,
        Err(why) => {
            println!("[passkeys] could not register passkeys ({why}); part skipped");
            return;
        }
    };

    let light_keys = keys.split_off(CLIENTS);
    println!("[passkeys] {LIGHT_CLIENTS} clients signing in with a passkey, {}s warm-up + {SECS} s ...", WARMUP.as_secs());
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(SECS));
    let ((_, light), cpu_light) = tokio::join!(sign_in_load(http, &server, light_keys, w), cpu_during(&pids, w));
    let light_rate = light.count(ok) as f64 / w.secs();
    let light_p99 = light.pct_ms(0.99, ok);
    println!(
        "[passkeys] {LIGHT_CLIENTS} clients: {light_rate:.0} sign-ins/s; finish p50 {} p99 {}; server {:.2} cores; statuses {}",
        ms(light.pct_ms(0.50, ok)),
        ms(light_p99),
        cpu_light.server,
        light.statuses()
    );

    println!("[passkeys] {CLIENTS} clients signing in with a passkey, {}s warm-up + {SECS} s ...", WARMUP.as_secs());
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(SECS));
    let ((whole, finish), cpu_pk) = tokio::join!(sign_in_load(http, &server, keys, w), cpu_during(&pids, w));
    let pk_rate = finish.count(ok) as f64 / w.secs();
    let finish_p99 = finish.pct_ms(0.99, ok);
    println!(
        "[passkeys] {pk_rate:.0} sign-ins/s; finish (verify + session) p50 {} p99 {}; whole ceremony p50 {} p99 {}; statuses {}",
        ms(finish.pct_ms(0.50, ok)),
        ms(finish_p99),
        ms(whole.pct_ms(0.50, ok)),
        ms(whole.pct_ms(0.99, ok)),
        finish.statuses()
    );
    println!("[passkeys] CPU: {}", cpu_pk.describe());

    println!("[passkeys] {LOGIN_CLIENTS} clients logging in with the password, {}s warm-up + {SECS} s ...", WARMUP.as_secs());
    quiet(&pids).await;
    let w = Window::new(WARMUP, Duration::from_secs(SECS));
    let bases = server.bases();
    let (logins, cpu_pw) = tokio::join!(login_load(http, &bases, LOGIN_CLIENTS, w), cpu_during(&pids, w));
    let pw_rate = logins.count(ok) as f64 / w.secs();
    println!(
        "[passkeys] password logins {pw_rate:.1}/s, p50 {} p99 {}, statuses {}",
        ms(logins.pct_ms(0.50, ok)),
        ms(logins.pct_ms(0.99, ok)),
        logins.statuses()
    );
    println!("[passkeys] CPU: {}", cpu_pw.describe());

    let per_core = |rate: f64, cores: f64| if cores > 0.0 { rate / cores } else { 0.0 };
    let (pk_core, pw_core) = (per_core(pk_rate, cpu_pk.server), per_core(pw_rate, cpu_pw.server));
    let ratio = if pw_core > 0.0 { pk_core / pw_core } else { 0.0 };
    let p99_ok = finish_p99.is_some_and(|p| p <= P99_TARGET_MS);
    let light_ok = light_p99.is_some_and(|p| p <= P99_TARGET_MS);
    println!("\n| figure | passkey sign-ins | password logins | ratio |");
    println!("|---|---:|---:|---:|");
    println!("| per second | {pk_rate:.0} | {pw_rate:.1} | {:.1}× |", if pw_rate > 0.0 { pk_rate / pw_rate } else { 0.0 });
    println!("| server cores busy | {:.2} | {:.2} | - |", cpu_pk.server, cpu_pw.server);
    println!("| per server core per second | {pk_core:.0} | {pw_core:.1} | {ratio:.1}× |");
    println!(
        "| p50 / p99 of the verifying request | {} / {} | {} / {} | - |",
        ms(finish.pct_ms(0.50, ok)),
        ms(finish_p99),
        ms(logins.pct_ms(0.50, ok)),
        ms(logins.pct_ms(0.99, ok))
    );
    println!("| p99 with {LIGHT_CLIENTS} clients ({light_rate:.0}/s, server {:.2} cores) | {} | - | - |", cpu_light.server, ms(light_p99));
    println!(
        "[passkeys] target (≥ {RATIO_TARGET:.0}× password logins per core, p99 ≤ {P99_TARGET_MS:.0} ms): ratio {}, p99 at {CLIENTS} clients {}, at {LIGHT_CLIENTS} clients {}",
        if ratio >= RATIO_TARGET { "met" } else { "NOT met" },
        if p99_ok { "met" } else { "NOT met" },
        if light_ok { "met" } else { "NOT met" }
    );
    let errors: Vec<String> = server.log_lines().into_iter().filter(|l| l.contains("ERROR")).take(5).collect();
    if !errors.is_empty() {
        println!("[passkeys] server errors: {errors:?}");
    }
}
