//! The one SQLite writer: a dedicated thread that owns the only write connection and runs each
//! store operation as one closure, with group commit.
//!
//! Why not a sqlx connection: sqlx hands every *statement* to its worker thread and back over
//! channels, and under load the thread switches cost more than SQLite itself (measured: ~4
//! switches per statement, 47% of server time in the scheduler). Here one operation is one hop,
//! and operations that queue up while a commit is running share the next transaction: each runs
//! inside its own savepoint, so a failing one rolls back alone, and all of them are answered only
//! once the commit has succeeded. Operations still run one at a time, so every conditional
//! write is as atomic as before.

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// At most this many operations share one commit, so one commit stays short.
const MAX_BATCH: usize = 512;
/// WAL pages after which a commit checkpoints (SQLite's default is 1,000).
const CHECKPOINT_PAGES: i64 = 500;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs its operation on the connection, or, given an error, answers with it unrun; either way
/// returns whether the operation succeeded and how to answer once the commit is known.
type Job = Box<dyn FnOnce(Result<&Connection, String>) -> (bool, Finish) + Send>;

pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the write connection on its own thread. The schema must already be migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints stay with the writer, as SQLite's automatic one, run inside the commit that
        // crosses the threshold: each completes, so the next commit starts the WAL over. Measured
        // under 64 clients creating device codes (docs/performance.md): a checkpointing thread of
        // its own never caught up with steady writes, the WAL was never reset and grew past
        // 80 MB in 10 s, and its fsyncs stalled commits for 150+ ms; inline every 1,000 pages
        // (the default), one commit in seven waited ~25 ms; every 500 pages halves that stall
        // for the same throughput.
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(128);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `op` on the write connection inside a transaction and answers once it is committed.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => catch_unwind(AssertUnwindSafe(|| op(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Writer("a store operation panicked".into()))),
                Err(e) => Err(StoreError::Writer(e)),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = answer.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Writer(e)),
                });
            });
            (ok, finish)
        });
        self.jobs.send(job).map_err(|_| StoreError::Writer("the writer thread has stopped".into()))?;
        answered.await.map_err(|_| StoreError::Writer("the writer thread dropped an operation".into()))?
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(|e| e.to_string())
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut finishes = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Set when the transaction itself broke: then nothing of the batch is kept.
        let mut broken = exec(&conn, "BEGIN IMMEDIATE").err();
        for job in batch.drain(..) {
            if let Some(e) = &broken {
                finishes.push(job(Err(e.clone())).1);
                continue;
            }
            if let Err(e) = exec(&conn, "SAVEPOINT op") {
                finishes.push(job(Err(e.clone())).1);
                broken = Some(e);
                continue;
            }
            let (ok, finish) = job(Ok(&conn));
            finishes.push(finish);
            let closed =
                if ok { exec(&conn, "RELEASE op") } else { exec(&conn, "ROLLBACK TO op").and_then(|()| exec(&conn, "RELEASE op")) };
            broken = closed.err();
        }
        let outcome = match broken {
            None => exec(&conn, "COMMIT"),
            Some(e) => Err(e),
        };
        if outcome.is_err() && !conn.is_autocommit() {
            let _ = exec(&conn, "ROLLBACK");
        }
        for finish in finishes.drain(..) {
            finish(outcome.clone());
        }
    }
}
