//! The server-rendered pages in a real headless Chromium, one Node script per walk:
//!
//! - `e2e/account.mjs` signs in at `/login`, finds this browser and a second device on
//!   `/account`, revokes the second one and checks it is gone; this test then checks from the
//!   API side that the revocation took.
//! - `e2e/device.mjs` opens a device grant's `verification_uri_complete` on a phone-sized
//!   screen, signs in on the way, confirms and approves the code with a device name; this test
//!   checks that opening the link decided nothing, and that the device then gets its tokens.
//! - `e2e/pair.mjs` shows a pairing code on `/pair`; this test types it as the new device, the
//!   page shows who joined without a reload, the browser allows it, and the device gets tokens.
//! - `e2e/mfa.mjs` signs in to an account with TOTP on a phone-sized screen, lands on `/mfa`
//!   with no session yet, asks this test for the current code (`NEED_TOTP`), types it with
//!   "Remember this device" ticked, logs out and signs in again without a second factor; this
//!   test then checks the audit log and the device's `trusted_until` from the API side.
//! - `e2e/oidc_rp.mjs` runs a tiny relying party on openid-client and signs in to it through
//!   Latchkey: `/login`, `/mfa` with the code from this test (`NEED_TOTP`) and "Remember this
//!   device" ticked, the consent page, Allow, back to the app with verified claims (`CLAIMS …`);
//!   then, logged out of Latchkey, again with the password alone: no second factor and no consent
//!   page. This test then checks the claims, the audit log and the app on the browser's device.
//! - `e2e/qr.mjs` shows the QR on `/login` on a desktop screen; this test rasterises the QR's
//!   SVG, decodes it, scans it as a phone signed up passwordless through the API, checks the
//!   number the page shows against the phone's choices and approves; the page signs itself in
//!   and lands on `/account`, and the API shows the new device approved by the phone. Run with
//!   `MODE=phone` it is the phone's own browser instead: it opens `/q/<id>` of a QR login
//!   started through the API, signs in on the way, checks the three numbers and Deny, and
//!   denies, which this test then sees through the API.
//! - `e2e/upstream_signin.mjs` clicks "Sign in with Corp" on `/login`, signs in at a real
//!   OpenID Connect issuer (oidc-provider, `e2e/upstream.mjs`) and lands on `/account` with an
//!   account that sign-in made, whose only identity cannot be unlinked; then, in a fresh browser,
//!   signs in with a password, links Corp from `/account` and unlinks it. This test then checks
//!   from the store that the identities are where the pages said.
//! - `e2e/passkey.mjs` uses Chromium's DevTools virtual authenticator: adds a passkey on
//!   `/account`, asks for step-up, logs out, signs in with "Sign in with a passkey" alone, then
//!   approves a QR login whose Approve first asks for the passkey; this test checks the session,
//!   the approval and the audit trail say so.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `chromium` on `PATH`), Node and
//! `e2e/node_modules/playwright-core` (`cd e2e && npm ci`). Without them each test prints
//! `SKIPPED: …` and passes, unless `E2E_REQUIRED` is set, when it fails instead. Screenshots go
//! to `SCREENSHOT_DIR`, or `target/tmp/pages-screenshots/`.

mod common;

use base64::Engine;
use common::totp::totp_at;
use common::{PASSWORD, TestApp, s, spawn, spawn_localhost, spawn_with};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const OTHER_DEVICE: &str = "Old phone";
const TV_NAME: &str = "Browser-approved TV";
const TABLET_NAME: &str = "Kitchen tablet";
const API_DEVICE: &str = "Laptop";
const PHONE_NAME: &str = "Ann's phone";
const RP_CLIENT: &str = "rp";
const RP_NAME: &str = "Tiny RP";
const FIREFOX_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The whole browser run may take this long; Chromium's cold start is the slow part.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn e2e_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    dir.canonicalize().unwrap_or(dir)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    on_path("chromium")
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages-screenshots"))
}

/// Everything one browser run needs, or why it cannot run.
struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    script: PathBuf,
}

fn tools(script: &str) -> Result<Tools, String> {
    let e2e = e2e_dir();
    let mut missing = Vec::new();
    let chromium = chromium();
    if chromium.is_none() {
        missing.push("no Chromium at /usr/bin/chromium or on PATH (apt-get install chromium)".to_owned());
    }
    let node = on_path("node");
    if node.is_none() {
        missing.push("no `node` on PATH".to_owned());
    }
    let playwright = e2e.join("node_modules/playwright-core");
    if !playwright.is_dir() {
        missing.push(format!("{} is missing (cd e2e && npm ci)", playwright.display()));
    }
    let script = e2e.join(script);
    if !script.is_file() {
        missing.push(format!("{} is missing", script.display()));
    }
    match (node, chromium) {
        (Some(node), Some(chromium)) if missing.is_empty() => Ok(Tools { node, chromium, script }),
        _ => Err(missing.join("; ")),
    }
}

/// `None` (after a loud notice) when the browser run cannot happen here and is not required.
fn tools_or_skip(script: &str) -> Option<Tools> {
    match tools(script) {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("E2E_REQUIRED").is_some() => {
            panic!("E2E_REQUIRED is set but the browser test e2e/{script} cannot run: {why}")
        }
        Err(why) => {
            eprintln!("\n!!!!!!!! SKIPPED: browser page test e2e/{script} not run: {why} !!!!!!!!\n");
            None
        }
    }
}

/// A running e2e script. Spawned, not run blocking: the server in this process keeps answering
/// the browser. Its stdout is read line by line, so the test can act on what the script prints
/// mid-run; its stderr is collected on the side. Killed if the test panics.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    /// Everything read from stdout so far.
    seen: String,
    started: Instant,
    deadline: tokio::time::Instant,
}

impl Script {
    fn start(tools: &Tools, t: &TestApp, env: &[(&str, &str)]) -> Script {
        let name = format!("e2e/{}", tools.script.file_name().unwrap_or_default().to_string_lossy());
        let mut child = tokio::process::Command::new(&tools.node)
            .arg(&tools.script)
            .current_dir(e2e_dir())
            .env("BASE", &t.base)
            .env("SCREENSHOT_DIR", screenshot_dir())
            .env("CHROMIUM", &tools.chromium)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Script {
            name,
            child,
            stdin,
            stdout,
            stderr,
            seen: String::new(),
            started: Instant::now(),
            deadline: tokio::time::Instant::now() + SCRIPT_TIMEOUT,
        }
    }

    /// Stops the script and fails the test with everything it printed. Never returns; call it as
    /// `match script.fail(…).await {}`.
    async fn fail(mut self, why: &str) -> Infallible {
        let _ = self.child.kill().await;
        let stderr = self.stderr.await.unwrap_or_default();
        panic!("{} {why} after {:.1}s\n--- stdout\n{}--- stderr\n{stderr}---", self.name, self.started.elapsed().as_secs_f64(), self.seen);
    }

    /// The next stdout line, `None` at the end; fails the test once the run is over time.
    async fn next_line(&mut self) -> Result<Option<String>, String> {
        match tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await {
            Err(_) => Err(format!("did not finish in {SCRIPT_TIMEOUT:?}")),
            Ok(Err(e)) => Err(format!("stdout unreadable: {e}")),
            Ok(Ok(line)) => {
                if let Some(l) = &line {
                    // Whole, except the odd huge line (a QR's SVG), which only its start identifies.
                    match l.char_indices().nth(200) {
                        Some((cut, _)) => self.seen.push_str(&format!("{}… ({} bytes)", &l[..cut], l.len())),
                        None => self.seen.push_str(l),
                    }
                    self.seen.push('\n');
                }
                Ok(line)
            }
        }
    }

    /// Reads stdout until a line starting with `prefix`; returns the rest of that line.
    async fn wait_for_line(mut self, prefix: &str) -> (Script, String) {
        loop {
            match self.next_line().await {
                Ok(Some(l)) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return (self, rest.trim().to_owned());
                    }
                }
                Ok(None) => match self.fail(&format!("ended without printing {prefix}…")).await {},
                Err(why) => match self.fail(&why).await {},
            }
        }
    }

    /// Sends one line to the script's stdin.
    async fn say(mut self, line: &str) -> Script {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(format!("{line}\n").as_bytes()).await.and(stdin.flush().await),
            None => Ok(()),
        };
        match sent {
            Ok(()) => self,
            Err(e) => match self.fail(&format!("could not be told {line:?}: {e}")).await {},
        }
    }

    /// Waits for the script to end and fails the test unless it exited 0.
    async fn finish(mut self) {
        drop(self.stdin.take());
        loop {
            match self.next_line().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(why) => match self.fail(&why).await {},
            }
        }
        let status = match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => match self.fail(&format!("could not be waited for: {e}")).await {},
            Err(_) => match self.fail(&format!("did not exit in {SCRIPT_TIMEOUT:?}")).await {},
        };
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        eprintln!(
            "{} took {:.1}s, {status}\n--- stdout\n{}--- stderr\n{stderr}---",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.seen
        );
        assert!(status.success(), "{} failed ({status}):\n{}{stderr}", self.name, self.seen);
    }
}

/// Polls the token endpoint as the new device, at least a second apart (the server runs these
/// tests with a one-second interval), until it hands out tokens.
async fn poll_for_tokens(t: &TestApp, device_code: &str) -> Value {
    let mut answers = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = t.poll(device_code).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            for key in ["access_token", "refresh_token", "device_id"] {
                assert!(body[key].is_string(), "no {key} in the token response {body}");
            }
            return body;
        }
        answers.push(format!("{status} {body}"));
    }
    panic!("no tokens after the browser approved; the token endpoint said: {}", answers.join(" | "))
}

/// The devices the new device's token sees: the one marked current, and the one that let it in.
async fn new_device_and_approver(t: &TestApp, access_token: &str) -> (Value, Value) {
    let r = t.get_auth("/api/v1/devices", access_token).await;
    assert_eq!(r.status(), 200, "GET /api/v1/devices with the new device's token");
    let devices: Vec<Value> = r.json().await.unwrap();
    let current = devices.iter().find(|d| d["current"] == true).unwrap_or_else(|| panic!("no current device in {devices:?}")).clone();
    let approver_id = current["approved_by_device"].as_str().unwrap_or_else(|| panic!("the new device has no approver: {current}"));
    let approver = devices.iter().find(|d| d["id"] == approver_id).unwrap_or_else(|| panic!("approver {approver_id} not listed")).clone();
    (current, approver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_revokes_another_device() {
    let Some(tools) = tools_or_skip("account.mjs") else {
        return;
    };
    let t = spawn().await;
    let email = "page@example.com";
    t.register(email).await;
    let old = t.login(email, OTHER_DEVICE).await;
    let old_refresh = s(&old, "refresh_token");
    let old_access = s(&old, "access_token");
    assert_eq!(t.get_auth("/api/v1/devices", &old_access).await.status(), 200, "the old device works before the browser revokes it");

    Script::start(&tools, &t, &[("EMAIL", email), ("PASSWORD", PASSWORD), ("OTHER_DEVICE", OTHER_DEVICE)]).finish().await;

    // The revocation the browser made holds for the API client on that device.
    let r = t.refresh(&old_refresh).await;
    assert_eq!(r.status(), 400, "refreshing a revoked device's token");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant", "{e}");
    assert_eq!(t.get_auth("/api/v1/devices", &old_access).await.status(), 401, "a revoked device's access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_approves_a_device_code_from_its_link() {
    let Some(tools) = tools_or_skip("device.mjs") else {
        return;
    };
    let t = spawn_with(|s| s.device.interval_secs = 1).await;
    let email = "tv-owner@example.com";
    t.register(email).await;
    let grant = t.device_authorization().await;
    let (user_code, device_code, link) = (s(&grant, "user_code"), s(&grant, "device_code"), s(&grant, "verification_uri_complete"));

    let script = Script::start(
        &tools,
        &t,
        &[
            ("EMAIL", email),
            ("PASSWORD", PASSWORD),
            ("VERIFICATION_URI_COMPLETE", &link),
            ("USER_CODE", &user_code),
            ("DEVICE_NAME", TV_NAME),
            ("HANDSHAKE", "1"),
        ],
    );
    // The browser has followed the link, signed in and sits on /device with the code filled in.
    // None of that may decide anything: the request is still pending and bound to nobody.
    let (script, _) = script.wait_for_line("FORM_SHOWN").await;
    let r = t.poll(&device_code).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!((status.as_u16(), &body["error"]), (400, &json!("authorization_pending")), "after opening the link: {body}");
    let id = latchkey::domain::secret::located_token_id(&device_code, "lk_dc_").expect("a device code names its request");
    let a = t.app.store.approval(id).await.unwrap().unwrap();
    let (state, bound) = (a.status, a.user_id.is_some());
    assert_eq!((state.as_str(), bound), ("pending", false), "opening the link changed the request");
    script.say("continue").await.finish().await;

    let tokens = poll_for_tokens(&t, &device_code).await;
    let access = s(&tokens, "access_token");
    let (tv, approver) = new_device_and_approver(&t, &access).await;
    assert_eq!(tv["name"], TV_NAME, "{tv}");
    assert_eq!(tv["authorized_by"], "device_code", "{tv}");
    assert_eq!(approver["authorized_by"], "password", "the browser that signed in approved it: {approver}");
    let audit: Vec<Value> = t.get_auth("/api/v1/audit", &access).await.json().await.unwrap();
    let kinds: Vec<&str> = audit.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "device_code_approved").count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&"device_code_wrong"), "{kinds:?}");
}

/// A code typed on a device elsewhere (another network): the screen warns with the device's
/// address, and Approve needs "I started this on a device in front of me".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_is_warned_about_a_device_on_another_network() {
    let Some(tools) = tools_or_skip("device.mjs") else {
        return;
    };
    let t = spawn_with(|s| {
        s.device.interval_secs = 1;
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let email = "far@example.com";
    t.register(email).await;
    let r =
        t.http.post(t.url("/oauth/device_authorization")).header("x-forwarded-for", "198.51.100.7").form(&[("client_id", "latchkey-cli")]);
    let grant: Value = r.send().await.unwrap().json().await.unwrap();
    let (user_code, device_code, link) = (s(&grant, "user_code"), s(&grant, "device_code"), s(&grant, "verification_uri_complete"));
    let vars = [
        ("EMAIL", email),
        ("PASSWORD", PASSWORD),
        ("VERIFICATION_URI_COMPLETE", link.as_str()),
        ("USER_CODE", user_code.as_str()),
        ("FORWARDED_FOR", "203.0.113.77"),
        ("REQUESTER_IP", "198.51.100.7"),
    ];
    Script::start(&tools, &t, &vars).finish().await;
    let tokens = poll_for_tokens(&t, &device_code).await;
    assert!(tokens["access_token"].is_string());
}

/// "This wasn't me" from a new-device mail, then "Forgot your password?" and the reset link, in
/// the browser; the mails go over real SMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_disowns_a_device_from_its_mail_and_resets_the_password() {
    let Some(tools) = tools_or_skip("mail_links.mjs") else {
        return;
    };
    let (sink, port) = common::smtp::Sink::start().await;
    let t = spawn_with(move |s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        s.accounts.verify_email = false;
    })
    .await;
    let email = "ann@example.com";
    t.register(email).await;
    t.login(email, "Laptop").await;
    sink.message(1).await;
    let intruder = t.login(email, "Intruder").await;
    let link = common::smtp::link_in(&sink.message(2).await, "/wasnt-me/");
    let new_password = "a brand new passphrase";
    let vars = [("WASNT_ME_LINK", link.as_str()), ("INTRUDER_NAME", "Intruder"), ("EMAIL", email), ("NEW_PASSWORD", new_password)];
    let (script, _) = Script::start(&tools, &t, &vars).wait_for_line("RESET_ASKED").await;
    let reset = common::smtp::link_in(&sink.message(3).await, "/reset-password/");
    let (script, _) = script.say(&reset).await.wait_for_line("ACCOUNT_OPEN").await;
    // From a phone: revoke the browser (the other device left after the reset).
    let phone = t.post_json("/api/v1/sessions", json!({ "email": email, "password": new_password, "device": { "name": "Phone" } })).await;
    let phone = s(&phone.json::<Value>().await.unwrap(), "access_token");
    let devices: Value = t.get_auth("/api/v1/devices", &phone).await.json().await.unwrap();
    let browser = devices.as_array().unwrap().iter().find(|d| d["current"] == false).expect("the browser's device").clone();
    let r = t.http.delete(t.url(&format!("/api/v1/devices/{}", s(&browser, "id")))).bearer_auth(&phone).send().await.unwrap();
    assert_eq!(r.status(), 204);
    script.say("revoked").await.finish().await;
    assert_eq!(t.get_auth("/api/v1/devices", &s(&intruder, "access_token")).await.status(), 401);
    let old = t.post_json("/api/v1/sessions", json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(old.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_a_pairing_code_and_allows_who_joined() {
    let Some(tools) = tools_or_skip("pair.mjs") else {
        return;
    };
    let t = spawn_with(|s| s.device.interval_secs = 1).await;
    let email = "pairer@example.com";
    t.register(email).await;

    let script = Script::start(&tools, &t, &[("EMAIL", email), ("PASSWORD", PASSWORD), ("DEVICE_NAME", TABLET_NAME)]);
    // The code is on the browser's screen; type it on the new device.
    let (script, code) = script.wait_for_line("CODE=").await;
    let r = t.post_json("/api/v1/pairing-codes/redeem", json!({ "code": code, "device": { "name": TABLET_NAME } })).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    if status != 200 {
        match script.fail(&format!("showed {code}, which did not redeem: {status} {body}")).await {}
    }
    let device_code = s(&body, "device_code");
    // The browser now sees who joined and allows it.
    script.finish().await;

    let tokens = poll_for_tokens(&t, &device_code).await;
    let (tablet, approver) = new_device_and_approver(&t, &s(&tokens, "access_token")).await;
    assert_eq!(tablet["name"], TABLET_NAME, "{tablet}");
    assert_eq!(tablet["authorized_by"], "pairing", "{tablet}");
    assert_eq!(approver["authorized_by"], "password", "the browser that showed the code allowed it: {approver}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_remembers_a_device_after_the_second_factor() {
    let Some(tools) = tools_or_skip("mfa.mjs") else {
        return;
    };
    let t = spawn().await;
    let email = "ann@example.com";
    t.register(email).await;
    let access = s(&t.login(email, API_DEVICE).await, "access_token");

    // TOTP on, through the API, with a code computed here.
    let r = t.http.post(t.url("/api/v1/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200, "POST /api/v1/mfa/totp");
    let secret = s(&r.json::<Value>().await.unwrap(), "secret");
    let enrolled_at = t.app.now();
    let r = t.post_json_auth("/api/v1/mfa/totp/confirm", &access, json!({ "code": totp_at(&secret, enrolled_at) })).await;
    assert_eq!(r.status(), 200, "confirming TOTP: {}", r.text().await.unwrap_or_default());
    let remember_days = t.app.settings.mfa.remember_days.to_string();

    let script = Script::start(&tools, &t, &[("EMAIL", email), ("PASSWORD", PASSWORD), ("REMEMBER_DAYS", &remember_days)]);
    // The browser is on /mfa, half signed in. The enrolment used up its 30-second step and the
    // replay guard refuses it again, so move the server's clock past it if need be.
    let (script, _) = script.wait_for_line("NEED_TOTP").await;
    let behind = enrolled_at.div_euclid(30) - t.app.now().div_euclid(30);
    if behind >= 0 {
        t.clock.advance(30 * (behind + 1));
    }
    script.say(&totp_at(&secret, t.app.now())).await.finish().await;

    // The second sign-in skipped the second factor because of the remembered device, once.
    let audit = t.app.store.audit_all(100).await.unwrap();
    let skipped: Vec<_> = audit.iter().filter(|e| e.kind == "mfa_skipped_trusted_device").collect();
    let kinds: Vec<&str> = audit.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(skipped.len(), 1, "audit log: {kinds:?}");
    assert_eq!(audit.iter().filter(|e| e.kind == "device_remembered").count(), 1, "audit log: {kinds:?}");
    assert_eq!(audit.iter().filter(|e| e.kind == "mfa_succeeded").count(), 1, "one second factor, the first time only: {kinds:?}");
    let trusted_device = skipped[0].device_id.clone().expect("mfa_skipped_trusted_device names no device");

    // The browser is one device, remembered for two-factor logins.
    let r = t.get_auth("/api/v1/devices", &access).await;
    assert_eq!(r.status(), 200, "GET /api/v1/devices");
    let devices: Vec<Value> = r.json().await.unwrap();
    let browsers: Vec<&Value> = devices.iter().filter(|d| d["name"] != API_DEVICE).collect();
    assert_eq!(browsers.len(), 1, "one browser device, both sign-ins on it: {devices:?}");
    let browser = browsers[0];
    assert_eq!(browser["id"], trusted_device.as_str(), "the skipped second factor was for another device: {browser}");
    assert_eq!(browser["authorized_by"], "password", "{browser}");
    let until = browser["trusted_until"].as_str().unwrap_or_else(|| panic!("the browser device is not remembered: {browser}"));
    let until = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).expect("trusted_until is RFC 3339");
    let days = (until.unix_timestamp() - t.app.now()) as f64 / 86_400.0;
    assert!((days - t.app.settings.mfa.remember_days as f64).abs() < 1.0, "trusted for {days:.2} days: {browser}");
    let api = devices.iter().find(|d| d["name"] == API_DEVICE).unwrap_or_else(|| panic!("no {API_DEVICE} in {devices:?}"));
    assert!(api["trusted_until"].is_null(), "the API device was never remembered: {api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_signs_in_through_login_with_totp_then_a_remembered_device() {
    let Some(tools) = tools_or_skip("oidc_rp.mjs") else {
        return;
    };
    // The relying party in the script is openid-client, which an older `npm ci` did not install.
    let openid_client = e2e_dir().join("node_modules/openid-client");
    if !openid_client.is_dir() {
        let why = format!("{} is missing (cd e2e && npm ci)", openid_client.display());
        assert!(std::env::var_os("E2E_REQUIRED").is_none(), "E2E_REQUIRED is set but the browser test e2e/oidc_rp.mjs cannot run: {why}");
        eprintln!("\n!!!!!!!! SKIPPED: browser page test e2e/oidc_rp.mjs not run: {why} !!!!!!!!\n");
        return;
    }
    let t = spawn().await;
    let email = "rp-user@example.com";
    t.register(email).await;
    let access = s(&t.login(email, API_DEVICE).await, "access_token");

    // TOTP on, through the API, with a code computed here.
    let r = t.http.post(t.url("/api/v1/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200, "POST /api/v1/mfa/totp");
    let secret = s(&r.json::<Value>().await.unwrap(), "secret");
    let enrolled_at = t.app.now();
    let r = t.post_json_auth("/api/v1/mfa/totp/confirm", &access, json!({ "code": totp_at(&secret, enrolled_at) })).await;
    assert_eq!(r.status(), 200, "confirming TOTP: {}", r.text().await.unwrap_or_default());

    // The app: public, a loopback redirect (any port), consent asked the first time only.
    let client = latchkey::service::clients::NewClient {
        id: RP_CLIENT.into(),
        name: RP_NAME.into(),
        confidential: false,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        post_logout_redirect_uris: vec![],
        scopes: None,
        consent: latchkey::service::clients::Consent::Auto,
        id_token_alg: latchkey::keys::SigningAlg::RS256,
        introspects_any: false,
    };
    assert!(latchkey::service::clients::create(&t.app, client).await.unwrap().is_none(), "a public client got a secret");

    let script = Script::start(&tools, &t, &[("EMAIL", email), ("PASSWORD", PASSWORD), ("CLIENT_ID", RP_CLIENT), ("CLIENT_NAME", RP_NAME)]);
    // The browser is on /mfa, half signed in. The enrolment used up its 30-second step and the
    // replay guard refuses it again, so move the server's clock past it if need be.
    let (script, _) = script.wait_for_line("NEED_TOTP").await;
    let behind = enrolled_at.div_euclid(30) - t.app.now().div_euclid(30);
    if behind >= 0 {
        t.clock.advance(30 * (behind + 1));
    }
    let script = script.say(&totp_at(&secret, t.app.now())).await;
    // What the app verified, both times: the same user, issued here for the app.
    let (script, first) = script.wait_for_line("CLAIMS ").await;
    let (script, second) = script.wait_for_line("CLAIMS ").await;
    script.finish().await;
    let claims: Vec<Value> = [first, second].iter().map(|c| serde_json::from_str(c).expect("CLAIMS is JSON")).collect();

    let audit = t.app.store.audit_all(100).await.unwrap();
    let kinds: Vec<&str> = audit.iter().rev().map(|e| e.kind.as_str()).collect();
    let authorized: Vec<_> = audit.iter().filter(|e| e.kind == "app_authorized").collect();
    assert_eq!(authorized.len(), 2, "two codes for the app, one per sign-in: {kinds:?}");
    assert_eq!(audit.iter().filter(|e| e.kind == "app_consent_granted").count(), 1, "consent asked once, then remembered: {kinds:?}");
    let skipped: Vec<_> = audit.iter().filter(|e| e.kind == "mfa_skipped_trusted_device").collect();
    assert_eq!(skipped.len(), 1, "the second sign-in skipped the second factor: {kinds:?}");
    assert_eq!(audit.iter().filter(|e| e.kind == "mfa_succeeded").count(), 1, "one second factor, the first time only: {kinds:?}");
    let user_id = authorized[0].user_id.clone().expect("app_authorized names no user");
    for c in &claims {
        assert_eq!(c["id_token"]["sub"], user_id.as_str(), "the app signed in someone else: {c}");
        assert_eq!(c["id_token"]["iss"], t.base.as_str(), "{c}");
        assert_eq!(c["id_token"]["aud"], RP_CLIENT, "{c}");
        assert_eq!(c["userinfo"]["email"], email, "{c}");
    }
    let trusted_device = skipped[0].device_id.clone().expect("mfa_skipped_trusted_device names no device");
    for a in &authorized {
        assert_eq!(a.device_id.as_deref(), Some(trusted_device.as_str()), "the app was authorized on another device: {a:?}");
    }

    // The browser is one device, remembered, with the app signed in on it.
    let r = t.get_auth("/api/v1/devices", &access).await;
    assert_eq!(r.status(), 200, "GET /api/v1/devices");
    let devices: Vec<Value> = r.json().await.unwrap();
    let browsers: Vec<&Value> = devices.iter().filter(|d| d["name"] != API_DEVICE).collect();
    assert_eq!(browsers.len(), 1, "one browser device, both sign-ins on it: {devices:?}");
    let browser = browsers[0];
    assert_eq!(browser["id"], trusted_device.as_str(), "the skipped second factor was for another device: {browser}");
    assert!(browser["trusted_until"].is_string(), "the browser device is not remembered: {browser}");
    let apps = browser["apps"].as_array().unwrap_or_else(|| panic!("no apps on the browser device: {browser}"));
    assert!(apps.iter().any(|a| a["client_id"] == RP_CLIENT), "{RP_CLIENT} is not signed in on the browser device: {browser}");
    let api = devices.iter().find(|d| d["name"] == API_DEVICE).unwrap_or_else(|| panic!("no {API_DEVICE} in {devices:?}"));
    assert!(api["apps"].as_array().is_some_and(|a| a.is_empty()), "the app was never signed in on the API device: {api}");
}

/// What a QR code in an SVG says: rasterised with resvg on white, then decoded with rqrr, as a
/// phone's camera would read the screen.
fn decode_qr_svg(svg: &[u8]) -> Result<String, String> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_data(svg, &usvg::Options::default()).map_err(|e| format!("not an SVG usvg can read: {e}"))?;
    let size = tree.size();
    // Four pixels a module or more, whatever size the SVG says it is.
    let scale = (800.0 / size.width().max(size.height())).max(1.0);
    let (w, h) = ((size.width() * scale).ceil() as u32, (size.height() * scale).ceil() as u32);
    let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or_else(|| format!("cannot make a {w}x{h} pixmap"))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    let rgba = pixmap.data();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
        let p = &rgba[(y * w as usize + x) * 4..][..3];
        ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
    });
    let grids = img.detect_grids();
    match grids.as_slice() {
        [grid] => grid.decode().map(|(_, text)| text).map_err(|e| format!("found a QR code but could not decode it: {e:?}")),
        more => Err(format!("found {} QR codes in a {w}x{h} rendering, not one", more.len())),
    }
}

/// Saves what the page showed, for a look when its QR does not decode.
fn keep(name: &str, bytes: &[u8]) -> String {
    let dir = screenshot_dir();
    let path = dir.join(name);
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes)) {
        Ok(()) => format!("saved to {}", path.display()),
        Err(e) => format!("could not be saved to {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_by_scanning_its_qr_with_a_phone() {
    let Some(tools) = tools_or_skip("qr.mjs") else {
        return;
    };
    let t = spawn().await;
    // The phone: a passwordless account made from the device itself, with an e-mail to show.
    let email = "ann@example.com";
    let r = t.post_json("/api/v1/accounts", json!({ "email": email, "device": { "name": PHONE_NAME, "kind": "mobile" } })).await;
    assert_eq!(r.status(), 201, "passwordless sign-up from the phone");
    let phone: Value = r.json().await.unwrap();
    let (pat, phone_device) = (s(&phone, "access_token"), s(&phone, "device_id"));

    let script = Script::start(&tools, &t, &[("MODE", "browser"), ("EMAIL", email), ("PHONE_NAME", PHONE_NAME)]);

    // Read the QR off the page as a camera would: rasterise its SVG and decode it.
    let (script, svg_b64) = script.wait_for_line("QR_SVG=").await;
    let svg = match base64::engine::general_purpose::STANDARD.decode(&svg_b64) {
        Ok(svg) => svg,
        Err(e) => match script.fail(&format!("printed a QR_SVG that is not base64: {e}")).await {},
    };
    let url = match decode_qr_svg(&svg) {
        Ok(url) => url,
        Err(why) => match script.fail(&format!("showed a QR that does not read: {why}; the SVG {}", keep("qr-login.svg", &svg))).await {},
    };
    let (script, page_url) = script.wait_for_line("QR_URL=").await;
    let prefix = t.url("/q/");
    let id = match url.strip_prefix(&prefix) {
        Some(id) if url == page_url && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            id.to_owned()
        }
        _ => match script.fail(&format!("showed a QR of {url:?}, not {prefix}<id> (the page says it is {page_url:?})")).await {},
    };

    // Scan it with the phone; the page then shows its number, which must be one of the phone's.
    let r = t.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await;
    let status = r.status();
    let view: Value = r.json().await.unwrap_or_default();
    if status != 200 {
        match script.fail(&format!("showed a QR the phone cannot scan: GET /api/v1/qr-logins/{id} said {status} {view}")).await {}
    }
    let choices: Vec<&str> = view["match_choices"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert_eq!(choices.len(), 3, "the phone is offered three numbers: {view}");
    assert_eq!(view["same_network"], true, "{view}");
    let (script, number) = script.wait_for_line("NUMBER=").await;
    if !choices.contains(&number.as_str()) {
        match script.fail(&format!("shows {number}, which is not among the phone's choices {choices:?}")).await {}
    }

    // Approve with it; the page signs itself in and lands on /account.
    let r = t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &pat, json!({ "match_code": number })).await;
    let status = r.status();
    if status != 204 {
        let body = r.text().await.unwrap_or_default();
        match script.fail(&format!("showed {number}; approving with it said {status} {body}")).await {}
    }
    let (script, _) = script.wait_for_line("DONE").await;
    script.finish().await;

    // The browser is a device of its own, let in by QR by the phone, and the phone is told.
    let r = t.get_auth("/api/v1/devices", &pat).await;
    assert_eq!(r.status(), 200, "GET /api/v1/devices as the phone");
    let devices: Vec<Value> = r.json().await.unwrap();
    let by_qr: Vec<&Value> = devices.iter().filter(|d| d["authorized_by"] == "qr").collect();
    assert_eq!(by_qr.len(), 1, "one device signed in by QR: {devices:?}");
    assert_eq!(by_qr[0]["approved_by_device"], phone_device.as_str(), "approved by the phone: {}", by_qr[0]);
    assert_eq!(by_qr[0]["current"], false, "the browser is not the phone: {}", by_qr[0]);
    let r = t.get_auth("/api/v1/audit", &pat).await;
    assert_eq!(r.status(), 200, "GET /api/v1/audit as the phone");
    let audit: Vec<Value> = r.json().await.unwrap();
    let kinds: Vec<&str> = audit.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        audit.iter().any(|e| e["kind"] == "qr_sign_in" && e["device_id"] == by_qr[0]["id"]),
        "no qr_sign_in for the browser: {kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "qr_approved").count(), 1, "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_browser_denies_a_qr_login_on_its_page() {
    let Some(tools) = tools_or_skip("qr.mjs") else {
        return;
    };
    let t = spawn().await;
    let email = "qr-phone@example.com";
    t.register(email).await;
    // A browser somewhere starts a QR login through the API.
    let r = t.http.post(t.url("/api/v1/qr-logins")).header("user-agent", FIREFOX_UA).send().await.unwrap();
    assert_eq!(r.status(), 201, "POST /api/v1/qr-logins");
    let qr: Value = r.json().await.unwrap();
    let (id, secret, url, number) = (s(&qr, "id"), s(&qr, "secret"), s(&qr, "url"), s(&qr, "match_code"));

    let script = Script::start(
        &tools,
        &t,
        &[("MODE", "phone"), ("EMAIL", email), ("PASSWORD", PASSWORD), ("QR_URL", &url), ("ASKING_BROWSER", "Firefox on Windows")],
    );
    let (script, choices) = script.wait_for_line("CHOICES=").await;
    if !choices.split(',').any(|c| c == number) {
        match script.fail(&format!("offered {choices}, without the browser's number {number}")).await {}
    }
    script.finish().await;

    // The browser hears it was denied, and the denial was the phone's browser's.
    let r = t.http.get(t.url(&format!("/api/v1/qr-logins/{id}/status"))).header("x-qr-secret", &secret).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET /api/v1/qr-logins/{id}/status");
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["type"], "denied", "{st}");
    assert!(st.get("handoff_code").is_none(), "{st}");
    let access = s(&t.login(email, API_DEVICE).await, "access_token");
    let audit: Vec<Value> = t.get_auth("/api/v1/audit", &access).await.json().await.unwrap();
    let denied: Vec<&Value> = audit.iter().filter(|e| e["kind"] == "qr_denied").collect();
    assert_eq!(denied.len(), 1, "{audit:?}");
    assert_eq!(denied[0]["detail"]["reason"], "denied", "{}", denied[0]);
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &access).await.json().await.unwrap();
    let browser = devices.iter().find(|d| d["authorized_by"] == "password" && d["name"] != API_DEVICE);
    let browser = browser.unwrap_or_else(|| panic!("no browser device in {devices:?}"));
    assert_eq!(denied[0]["device_id"], browser["id"], "denied from the phone's browser: {}", denied[0]);
    assert_eq!(devices.iter().filter(|d| d["authorized_by"] == "qr").count(), 0, "nobody signed in by QR: {devices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_with_an_upstream_and_links_and_unlinks_it() {
    let Some(tools) = tools_or_skip("upstream_signin.mjs") else {
        return;
    };
    let Some(corp) = common::upstream::Corp::start().await else {
        return;
    };
    let issuer = corp.issuer.clone();
    let t = spawn_with(move |s| {
        s.upstreams = vec![common::upstream::corp_settings("corp", &issuer, true)];
    })
    .await;
    corp.register("latchkey", &t.url("/login/upstream/corp/callback")).await;
    let email = "local@example.com";
    t.register(email).await;
    let vars =
        [("EMAIL", email), ("PASSWORD", PASSWORD), ("UPSTREAM_LOGIN", "carol"), ("UPSTREAM_LOGIN_B", "alice"), ("UPSTREAM_NAME", "Corp")];
    let script = Script::start(&tools, &t, &vars);
    let (script, _) = script.wait_for_line("ACCOUNT_A_OK").await;
    let (script, _) = script.wait_for_line("ACCOUNT_B_OK").await;
    script.finish().await;

    // carol's sign-in made her account, still linked; alice was linked to the local account and
    // unlinked again, and never got an account of her own.
    let carol = t.app.store.identity("corp", &corp.issuer, "carol").await.unwrap().expect("carol's identity");
    let account = t.app.store.user_by_id(&carol.user_id).await.unwrap().unwrap();
    assert_eq!(account.email.as_deref(), Some("carol@example.com"));
    assert!(t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().is_none());
    assert!(t.app.store.user_by_email("alice@example.com").await.unwrap().is_none());
    let local = t.app.store.user_by_email(email).await.unwrap().unwrap();
    let audit = t.app.store.audit_for_user(&local.id, 50).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    assert!(kinds.contains(&"identity_linked") && kinds.contains(&"identity_unlinked"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_adds_a_passkey_signs_in_with_it_and_steps_up_to_approve() {
    let Some(tools) = tools_or_skip("passkey.mjs") else {
        return;
    };
    let t = spawn_localhost(|_| {}).await;
    let email = "passkey@example.com";
    t.register(email).await;
    let script = Script::start(&tools, &t, &[("EMAIL", email), ("PASSWORD", PASSWORD)]);
    let (script, _) = script.wait_for_line("SIGNED_IN_WITH_PASSKEY").await;

    let user = t.app.store.user_by_email(email).await.unwrap().unwrap();
    let keys = t.app.store.passkeys_for_user(&user.id).await.unwrap();
    assert_eq!(keys.len(), 1, "one passkey added from /account");
    assert!(t.app.store.passkey_step_up(&user.id).await.unwrap(), "the account asked for step-up");
    // The passkey sign-in is itself a fresh assertion; let it grow stale so that approving
    // needs the page's step-up, then start a QR login from "another computer".
    t.clock.advance(t.app.settings.passkeys.step_up_max_age_secs as i64 + 1);
    let r = t.http.post(t.url("/api/v1/qr-logins")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let qr: Value = r.json().await.unwrap();
    let script = script.say(&format!("{} {}", s(&qr, "url"), s(&qr, "match_code"))).await;
    let (script, _) = script.wait_for_line("APPROVED").await;

    // The same step-up on /device (a device grant) and on /pair (a pairing code).
    t.clock.advance(t.app.settings.passkeys.step_up_max_age_secs as i64 + 1);
    let grant = t.device_authorization().await;
    let script = script.say(&s(&grant, "verification_uri_complete")).await;
    let (script, _) = script.wait_for_line("DEVICE_APPROVED").await;
    t.clock.advance(t.app.settings.passkeys.step_up_max_age_secs as i64 + 1);
    let (script, code) = script.wait_for_line("PAIR_CODE=").await;
    let r = t.post_json("/api/v1/pairing-codes/redeem", json!({ "code": code, "device": { "name": "Tablet" } })).await;
    if r.status() != 200 {
        match script.fail(&format!("the pairing code {code} did not redeem: {}", r.status())).await {}
    }
    let paired: Value = r.json().await.unwrap();
    let (script, _) = script.wait_for_line("PAIR_APPROVED").await;
    let (script, _) = script.wait_for_line("FALLBACK_OK").await;
    script.finish().await;
    for (flow, device_code) in [("device grant", s(&grant, "device_code")), ("pairing", s(&paired, "device_code"))] {
        let id = latchkey::domain::secret::located_token_id(&device_code, "lk_dc_");
        let approval = t.app.store.approval(id.expect("a code naming its request")).await.unwrap().unwrap();
        assert!(approval.passkey_verified, "the {flow} approval records the step-up");
    }

    let approval = t.app.store.approval(&s(&qr, "id")).await.unwrap().unwrap();
    assert!(approval.passkey_verified, "the approval records the step-up");
    let audit = t.app.store.audit_for_user(&user.id, 50).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    for kind in ["passkey_added", "passkey_step_up_choice", "passkey_step_up", "qr_approved"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let passkey_login = audit.iter().find(|a| a.kind == "login_succeeded" && a.detail.contains("passkey"));
    assert!(passkey_login.is_some(), "{kinds:?}");
}
