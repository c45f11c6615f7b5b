//! The address a `latchkey serve` child process listens on. Shared by the two-process tests and
//! by both benchmarks (which include this file by path).

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::sync::mpsc;

/// Sends the `ADDR` of the server's `latchkey listening on http://ADDR` line once, then keeps
/// draining its stdout on the same thread so the server never blocks writing to it.
pub fn listen_address(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("latchkey listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    rx
}
