//! The `latchkey` binary as an operator uses it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn latchkey(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--data-dir").arg(dir).env("LATCHKEY_PASSWORDS__MEMORY_KIB", "8192").env("LATCHKEY_PASSWORDS__ITERATIONS", "1");
    c
}

#[test]
fn help_teaches_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["user", "add", "--help"],
        vec!["client", "add", "--help"],
        vec!["client", "list", "--help"],
        vec!["client", "remove", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["audit", "--help"],
        vec!["policy", "check", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.len() > 200, "{args:?} help is too thin: {text}");
    }
    let top = String::from_utf8(Command::new(BIN).arg("--help").output().unwrap().stdout).unwrap();
    assert!(top.contains("LATCHKEY_"), "the top help explains environment overrides");
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("latchkey.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 1\n").unwrap();
    let out = latchkey(dir.path(), &["--config", cfg.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("listen_port"), "{err}");
    let out = latchkey(dir.path(), &["serve"]).env("LATCHKEY_TOKENS__NOPE", "1").output().unwrap();
    assert!(String::from_utf8(out.stderr).unwrap().contains("nope"));
}

/// `latchkey policy check` says what each stage of a device-grant request would get, and which
/// rule refuses it, from the configuration alone.
#[test]
fn policy_check_explains_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("latchkey.toml");
    std::fs::write(
        &cfg,
        "[device_policy]\ndefault = \"deny\"\nmax_sign_in_age_secs = 600\n\n[[device_policy.client]]\nid = \"tv\"\n\
         networks = [\"10.0.0.0/8\"]\naccounts = [\"@example.com\"]\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let check = |args: &[&str]| {
        let mut all = vec!["--config", cfg, "policy", "check"];
        all.extend_from_slice(args);
        let out = latchkey(dir.path(), &all).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = check(&["--client", "tv", "--ip", "10.1.2.3", "--account", "ann@example.com", "--sign-in-age", "60"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("allowed").count(), 3, "{text}");
    let (code, text) = check(&["--client", "tv", "--ip", "192.0.2.1", "--account", "ann@example.com"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("request     refused by the `network` rule") && text.contains("192.0.2.1"), "{text}");
    let (_, text) = check(&["--client", "tv", "--ip", "10.1.2.3", "--account", "bob@other.test", "--sign-in-age", "601"]);
    assert!(text.contains("request     allowed") && text.contains("approval    refused by the `account` rule"), "{text}");
    let (code, text) = check(&["--client", "other", "--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["stages"][0]["rule"], "client", "{v}");
    // A typo in the policy is named before anything runs.
    std::fs::write(dir.path().join("bad.toml"), "[device_policy]\nnetworks = [\"10.0.0.0/33\"]\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let out = latchkey(dir.path(), &["--config", bad.to_str().unwrap(), "policy", "check", "--client", "tv"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8(out.stderr).unwrap().contains("10.0.0.0/33"));
}

#[test]
fn operator_commands_then_serve_then_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut add = latchkey(dir.path(), &["user", "add", "Ops@Example.com", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8(out.stdout).unwrap().contains("ops@example.com"));

    let out = latchkey(dir.path(), &["client", "add", "gw", "--name", "Gateway", "--confidential"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("client_secret: lk_cs_"));
    let out = latchkey(dir.path(), &["client", "add", "gw", "--name", "Gateway"]).output().unwrap();
    assert!(!out.status.success(), "duplicate client refused");
    // An app that signs its users in through the browser.
    let args = [
        "client",
        "add",
        "grafana",
        "--name",
        "Grafana",
        "--confidential",
        "--redirect-uri",
        "https://grafana.example.com/login/generic_oauth",
        "--post-logout-redirect-uri",
        "https://grafana.example.com/login",
        "--consent",
        "always",
        "--id-token-signed-response-alg",
        "EdDSA",
    ];
    let out = latchkey(dir.path(), &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for bad in
        [["--redirect-uri", "https://grafana.example.com/cb#x"], ["--redirect-uri", "https://*.example.com/cb"], ["--consent", "never"]]
    {
        let out = latchkey(dir.path(), &["client", "add", "bad", "--name", "Bad", "--confidential", bad[0], bad[1]]).output().unwrap();
        assert!(!out.status.success(), "{bad:?} refused");
    }
    let list = String::from_utf8(latchkey(dir.path(), &["client", "list"]).output().unwrap().stdout).unwrap();
    assert!(list.contains("grafana\tconfidential\tGrafana\thttps://grafana.example.com/login/generic_oauth"), "{list}");
    assert!(!list.contains("bad"), "{list}");
    let show: serde_json::Value =
        serde_json::from_slice(&latchkey(dir.path(), &["client", "show", "grafana"]).output().unwrap().stdout).unwrap();
    assert_eq!(show["consent"], "always");
    assert_eq!(show["id_token_signed_response_alg"], "EdDSA");
    assert_eq!(show["post_logout_redirect_uris"][0], "https://grafana.example.com/login");
    assert!(latchkey(dir.path(), &["client", "remove", "grafana"]).output().unwrap().status.success());
    assert!(!latchkey(dir.path(), &["client", "show", "grafana"]).output().unwrap().status.success(), "removed");
    assert!(!latchkey(dir.path(), &["client", "remove", "latchkey-cli"]).output().unwrap().status.success(), "built in");

    assert!(latchkey(dir.path(), &["keys", "rotate"]).output().unwrap().status.success());
    let audit = String::from_utf8(latchkey(dir.path(), &["audit", "--json"]).output().unwrap().stdout).unwrap();
    for kind in ["account_created", "client_created", "client_removed", "key_rotated"] {
        assert!(audit.contains(kind), "{kind} in {audit}");
    }

    assert!(dir.path().join("latchkey.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let fresh = tempfile::tempdir().unwrap();
        let data = fresh.path().join("data");
        assert!(latchkey(&data, &["keys", "rotate"]).output().unwrap().status.success());
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700, "a new data directory is owner-only");
        assert_eq!(std::fs::metadata(data.join("latchkey.db")).unwrap().permissions().mode() & 0o777, 0o600, "the database holds keys");
    }
    let mut server =
        latchkey(dir.path(), &["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let health = std::net::TcpStream::connect(&addr).map(|mut s| {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut s, &mut buf).unwrap();
        buf
    });
    assert!(health.unwrap().starts_with("HTTP/1.1 200"));
    let killed = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().unwrap();
    assert!(killed.success());
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[path = "common/mod.rs"]
mod common;

/// Runs `latchkey <args>` against the test server, waiting for it to finish.
async fn client_cmd(creds: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN).args(args).arg("--credentials").arg(creds).output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_as_a_new_device_then_whoami_and_logout() {
    use tokio::io::AsyncBufReadExt;
    let t = common::spawn_with(|s| s.device.interval_secs = 1).await;
    t.register("ann@example.com").await;
    let phone = common::s(&t.login("ann@example.com", "Phone").await, "access_token");
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("nested").join("credentials.json");
    let mut child = tokio::process::Command::new(BIN)
        .args(["device", "login", "--server", &t.base, "--credentials"])
        .arg(&creds)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut code = None;
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        let l = line.trim();
        if l.len() == 9 && l.as_bytes()[4] == b'-' && l.chars().all(|c| c == '-' || c.is_ascii_uppercase()) {
            code = Some(l.to_owned());
        }
        if line.contains('█') || line.contains('▀') {
            break;
        }
    }
    let code = code.unwrap_or_else(|| panic!("no user code printed:\n{printed}"));
    assert!(printed.contains(&format!("{}/device", t.base)), "{printed}");
    let r = t
        .post_json_auth("/api/v1/device-grants/approve", &phone, serde_json::json!({ "user_code": code, "device_name": "CI runner" }))
        .await;
    assert_eq!(r.status(), 200);
    let rest = tokio::spawn(async move {
        let mut out = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push_str(&line);
        }
        out
    });
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("the CLI finishes after approval").unwrap();
    let out = rest.await.unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("Signed in as device"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tokens are readable by the owner only");
    }
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let devices: Vec<serde_json::Value> = t.get_auth("/api/v1/devices", &phone).await.json().await.unwrap();
    let cli = devices.iter().find(|d| d["id"] == saved["device_id"]).expect("the CLI is a device of the account");
    assert_eq!(cli["name"], "CI runner");
    assert_eq!(cli["authorized_by"], "device_code");

    // whoami renews an expired access token with the refresh token and saves the new pair.
    let mut stale = saved.clone();
    stale["expires_at"] = serde_json::json!(0);
    std::fs::write(&creds, stale.to_string()).unwrap();
    let who = client_cmd(&creds, &["whoami"]).await;
    assert!(who.status.success(), "{}", String::from_utf8_lossy(&who.stderr));
    assert!(String::from_utf8_lossy(&who.stdout).contains("ann@example.com"));
    let renewed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_ne!(renewed["refresh_token"], saved["refresh_token"], "rotated and saved");

    let out = client_cmd(&creds, &["logout"]).await;
    assert!(out.status.success());
    assert!(!creds.exists(), "tokens forgotten");
    assert_eq!(t.refresh(renewed["refresh_token"].as_str().unwrap()).await.status(), 400, "session revoked on the server");
    let out = client_cmd(&creds, &["whoami"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pairs_with_a_code_from_a_signed_in_device() {
    let t = common::spawn_with(|s| s.device.interval_secs = 1).await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    let at = common::s(&laptop, "access_token");
    let code: serde_json::Value = t.http.post(t.url("/api/v1/pairing-codes")).bearer_auth(&at).send().await.unwrap().json().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    let child = tokio::process::Command::new(BIN)
        .args(["device", "pair", "--server", &t.base, &common::s(&code, "code"), "--name", "Build server", "--credentials"])
        .arg(&creds)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The laptop sees who joined, then allows it.
    let id = common::s(&code, "id");
    let mut joined = false;
    for _ in 0..50 {
        let st: serde_json::Value = t.get_auth(&format!("/api/v1/pairing-codes/{id}"), &at).await.json().await.unwrap();
        if st["state"] == "pending" {
            assert_eq!(st["requester"]["claimed_name"], "Build server");
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined);
    let r = t.http.post(t.url(&format!("/api/v1/pairing-codes/{id}/approve"))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let who = client_cmd(&creds, &["whoami"]).await;
    assert!(String::from_utf8_lossy(&who.stdout).contains("ann@example.com"));
}

/// Writes a PNG picture of a QR code of `text`, as a phone camera would see it.
fn qr_png(text: &str, path: &std::path::Path) {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let (n, scale, quiet) = (code.width(), 8usize, 4usize);
    let size = (n + 2 * quiet) * scale;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; size * size];
    for y in 0..size {
        for x in 0..size {
            let (mx, my) = ((x / scale) as isize - quiet as isize, (y / scale) as isize - quiet as isize);
            if mx >= 0 && my >= 0 && (mx as usize) < n && (my as usize) < n && colors[my as usize * n + mx as usize] == qrcode::Color::Dark
            {
                pixels[y * size + x] = 0;
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, size as u32, size as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&pixels).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_companion_approves_a_qr_login_from_its_url_or_a_picture() {
    use tokio::io::AsyncWriteExt;
    let t = common::spawn().await;
    let phone: serde_json::Value =
        t.post_json("/api/v1/accounts", serde_json::json!({ "device": { "name": "Companion" } })).await.json().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    let saved = serde_json::json!({
        "server": t.base, "client_id": "latchkey-cli", "access_token": phone["access_token"], "refresh_token": phone["refresh_token"],
        "device_id": phone["device_id"], "expires_at": 4_000_000_000i64,
    });
    std::fs::write(&creds, saved.to_string()).unwrap();
    for by_picture in [false, true] {
        let qr: serde_json::Value = t.http.post(t.url("/api/v1/qr-logins")).send().await.unwrap().json().await.unwrap();
        let url = common::s(&qr, "url");
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("approve").arg("--credentials").arg(&creds);
        if by_picture {
            let png = dir.path().join("qr.png");
            qr_png(&url, &png);
            cmd.arg("--image").arg(&png);
        } else {
            cmd.arg(&url);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{}\n", common::s(&qr, "match_code")).as_bytes()).await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("127.0.0.1") && text.contains("Which number"), "{text}");
        let st: serde_json::Value = t
            .http
            .get(t.url(&format!("/api/v1/qr-logins/{}/status", common::s(&qr, "id"))))
            .header("x-qr-secret", common::s(&qr, "secret"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(st["type"], "approved", "by picture: {by_picture}");
    }
    // A QR for another host is refused, not followed.
    let out = client_cmd(&creds, &["approve", "https://evil.example/q/abc"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
}

/// Every line one request logs carries its request id and its route template (recorded once the
/// router has matched it), so an operator can find them together from the `x-request-id` a user quotes.
#[test]
fn a_requests_log_lines_carry_its_request_id_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = latchkey(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let body = "client_id=latchkey-cli";
    write!(
        s,
        "POST /oauth/device_authorization HTTP/1.1\r\nHost: x\r\nx-request-id: trace-7f3a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-request-id: trace-7f3a"), "the response carries the id back: {answer}");
    assert!(Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().unwrap().success());
    server.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    let audit = logged.lines().find(|l| l.contains("device_code_issued")).unwrap_or_else(|| panic!("no audit line in:\n{logged}"));
    assert!(audit.contains(r#"request_id="trace-7f3a""#), "{audit}");
    assert!(audit.contains(r#"route="/oauth/device_authorization""#), "{audit}");
}
