//! Point reads (one row by a unique key) run right on the calling task, on a small set of
//! read-only connections, with no thread hop.
//!
//! Why: a sqlx read is handed to the connection's worker thread and back, and on the hot paths
//! (a device-code poll, the session behind every API call, a refresh token) those switches cost
//! more than the read itself, which is a few index pages already in memory. Such a read takes
//! microseconds, so running it on an async worker holds that worker no longer than parsing a
//! request does. Anything that scans or lists stays on the sqlx read pool.

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// `n` connections: a few more than the async worker threads, so a reader rarely waits.
    pub fn open(path: &Path, n: usize) -> Result<Self, StoreError> {
        let conns = (0..n.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
                // WAL readers do not wait for the writer; this only covers WAL recovery.
                c.busy_timeout(Duration::from_secs(1))?;
                c.set_prepared_statement_cache_capacity(64);
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self { conns, next: AtomicUsize::new(0) })
    }

    /// Runs one short read on a free connection (or waits for one, which is rare and brief).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(c) = self.conns[(start + i) % n].try_lock() {
                return Ok(f(&c)?);
            }
        }
        let c = self.conns[start].lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&c)?)
    }
}
