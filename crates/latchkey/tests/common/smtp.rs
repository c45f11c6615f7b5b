//! A real SMTP sink on a random port: speaks enough SMTP for a client to deliver, and keeps
//! every message it receives.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Default)]
pub struct Sink {
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    pub async fn start() -> (Self, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = Sink::default();
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 sink ESMTP\r\n").await.ok();
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(buf) = data.as_mut() {
                            if line == "." {
                                s.messages.lock().unwrap().push(std::mem::take(buf));
                                data = None;
                                w.write_all(b"250 2.0.0 queued\r\n").await.ok();
                            } else {
                                buf.push_str(line.strip_prefix('.').unwrap_or(&line));
                                buf.push('\n');
                            }
                            continue;
                        }
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("DATA") {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        } else if cmd.starts_with("QUIT") {
                            w.write_all(b"221 bye\r\n").await.ok();
                            break;
                        } else {
                            b"250 ok\r\n"
                        };
                        w.write_all(reply).await.ok();
                    }
                });
            }
        });
        (sink, port)
    }

    /// Waits for the `n`th message (1-based) and returns it.
    pub async fn message(&self, n: usize) -> String {
        for _ in 0..100 {
            if let Some(m) = self.messages.lock().unwrap().get(n - 1) {
                return m.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no message {n} arrived at the SMTP sink");
    }
}

/// The 6-digit code in a mail's plain-text part.
pub fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_owned()
}

/// The link to `path` (such as `/wasnt-me/`) in a mail as the sink received it, quoted-printable
/// undone: from its `http` to the end of the token.
pub fn link_in(mail: &str, path: &str) -> String {
    let plain = mail.replace("=\n", "").replace("=3D", "=");
    let at = plain.find(path).unwrap_or_else(|| panic!("no {path} link in {plain}"));
    let start = plain[..at].rfind("http").expect("an absolute link");
    let rest = &plain[at + path.len()..];
    let end = at + path.len() + rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
    plain[start..end].to_owned()
}
