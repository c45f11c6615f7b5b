//! The server-rendered pages in a real headless Chromium: `e2e/account.mjs` signs in at
//! `/login`, finds this browser and a second device on `/account`, revokes the second one and
//! checks it is gone. This test then checks from the API side that the revocation took.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `chromium` on `PATH`), Node and
//! `e2e/node_modules/playwright-core` (`cd e2e && npm ci`). Without them the test prints
//! `SKIPPED: …` and passes, unless `E2E_REQUIRED` is set, when it fails instead.

mod common;

use common::{PASSWORD, s, spawn};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OTHER_DEVICE: &str = "Old phone";

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

/// Everything the browser run needs, or why it cannot run.
struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    script: PathBuf,
}

fn tools() -> Result<Tools, String> {
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
    let script = e2e.join("account.mjs");
    if !script.is_file() {
        missing.push(format!("{} is missing", script.display()));
    }
    match (node, chromium) {
        (Some(node), Some(chromium)) if missing.is_empty() => Ok(Tools { node, chromium, script }),
        _ => Err(missing.join("; ")),
    }
}

/// `None` (after a loud notice) when the browser run cannot happen here and is not required.
fn tools_or_skip() -> Option<Tools> {
    match tools() {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("E2E_REQUIRED").is_some() => {
            panic!("E2E_REQUIRED is set but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("\n!!!!!!!! SKIPPED: browser page test not run: {why} !!!!!!!!\n");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_revokes_another_device() {
    let Some(tools) = tools_or_skip() else {
        return;
    };
    let t = spawn().await;
    let email = "page@example.com";
    t.register(email).await;
    let old = t.login(email, OTHER_DEVICE).await;
    let old_refresh = s(&old, "refresh_token");
    let old_access = s(&old, "access_token");
    assert_eq!(t.get_auth("/api/v1/devices", &old_access).await.status(), 200, "the old device works before the browser revokes it");

    let shots = std::env::var_os("SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages-screenshots"));
    let started = Instant::now();
    // Spawned, not run blocking: the server in this process keeps answering the browser.
    let child = tokio::process::Command::new(&tools.node)
        .arg(&tools.script)
        .current_dir(e2e_dir())
        .env("BASE", &t.base)
        .env("EMAIL", email)
        .env("PASSWORD", PASSWORD)
        .env("OTHER_DEVICE", OTHER_DEVICE)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &tools.chromium)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("e2e/account.mjs did not finish in {SCRIPT_TIMEOUT:?}"))
        .expect("wait for node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("e2e/account.mjs took {:.1}s, {}\n--- stdout\n{stdout}--- stderr\n{stderr}---", started.elapsed().as_secs_f64(), out.status);
    assert!(out.status.success(), "e2e/account.mjs failed ({}):\n{stdout}{stderr}", out.status);

    // The revocation the browser made holds for the API client on that device.
    let r = t.refresh(&old_refresh).await;
    assert_eq!(r.status(), 400, "refreshing a revoked device's token");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant", "{e}");
    assert_eq!(t.get_auth("/api/v1/devices", &old_access).await.status(), 401, "a revoked device's access token");
}
