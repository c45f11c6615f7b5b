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
        vec!["keys", "rotate", "--help"],
        vec!["audit", "--help"],
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

    assert!(latchkey(dir.path(), &["keys", "rotate"]).output().unwrap().status.success());
    let audit = String::from_utf8(latchkey(dir.path(), &["audit", "--json"]).output().unwrap().stdout).unwrap();
    for kind in ["account_created", "client_created", "key_rotated"] {
        assert!(audit.contains(kind), "{kind} in {audit}");
    }

    assert!(dir.path().join("latchkey.db").exists());
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
