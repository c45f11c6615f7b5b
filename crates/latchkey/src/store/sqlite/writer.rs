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
/// WAL growth, in pages, after which the checkpointer thread is asked to copy it.
const KICK_PAGES: i64 = 256;
/// WAL size, in pages (125 MiB), past which the writer checkpoints between two commits so that
/// the WAL starts over. Each such checkpoint stalls commits for a few ms (its fsyncs), so it is
/// rare. Measured with 64 clients creating ~20,000 device codes/s: every 2,000 pages, p99 9.6 ms;
/// every 8,000, 10–11 ms on a larger database; every 32,000, 6–7 ms (docs/performance.md).
const RESET_PAGES: i64 = 32_000;
/// After the last kick, once writes pause this long, the checkpointer copies the rest of the WAL.
const IDLE_PASS_AFTER: Duration = Duration::from_secs(1);
/// And after this much longer, it truncates the WAL file, so a large WAL does not outlive a
/// burst for long. Not sooner: growing the file again costs. Measured with pauses of 3 s
/// between bursts, truncating after 1 s took device authorizations from ~21,000/s to ~17,000/s.
const TRUNCATE_AFTER: Duration = Duration::from_secs(60);

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
        Self::open_with(path, Checkpoints { kick: KICK_PAGES, reset: RESET_PAGES, idle: IDLE_PASS_AFTER, truncate: TRUNCATE_AFTER })
    }

    fn open_with(path: &Path, every: Checkpoints) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints are split between two threads (docs/performance.md): the checkpointer copies
        // WAL frames into the database and syncs it, off the commit path, whenever the WAL has
        // grown by `KICK_PAGES`; the writer, once the WAL has passed `RESET_PAGES`, runs one more
        // passive checkpoint itself, between two commits, which has little left to copy. Only that
        // one sees the whole WAL copied with no commit in between, so the next commit starts the
        // WAL over instead of growing it (a checkpointer alone never catches up with steady writes).
        conn.wal_hook(Some(note_wal_pages));
        conn.set_prepared_statement_cache_capacity(128);
        let ckpt_conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        ckpt_conn.pragma_update(None, "synchronous", "NORMAL")?;
        let (kick, kicked) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(ckpt_conn, kicked, every))
            .map_err(|e| StoreError::Writer(format!("cannot start the checkpoint thread: {e}")))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, kick, every))
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

thread_local! {
    /// Frames in the WAL after the latest commit on this thread's connection (set by the WAL hook).
    static WAL_PAGES: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages.into());
    Ok(())
}

/// Copies the WAL into the database whenever the writer asks, off the commit path; once the
/// writes pause, copies the rest so the next commit starts the WAL over; after a long pause,
/// truncates the WAL file too.
fn checkpointer(conn: Connection, kicked: mpsc::Receiver<()>, every: Checkpoints) {
    // The passes still due once no kick comes for a while: (after how long, which mode).
    let idle_passes = [(every.idle, "PASSIVE"), (every.truncate, "TRUNCATE")];
    let mut next_idle = idle_passes.len();
    loop {
        let asked = match idle_passes.get(next_idle) {
            Some((after, _)) => kicked.recv_timeout(*after),
            None => kicked.recv().map_err(Into::into),
        };
        let mode = match asked {
            Ok(()) => {
                next_idle = 0;
                "PASSIVE"
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                next_idle += 1;
                idle_passes[next_idle - 1].1
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // TRUNCATE holds the write lock while it copies, but after a long pause there is little
        // to copy, and a commit that comes meanwhile waits (its busy timeout) rather than fails.
        // This connection has no busy timeout: a TRUNCATE that meets a running commit gives up.
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, mode, "background checkpoint failed");
        }
    }
}

/// Runs the writer's own passive checkpoint; whether it copied the whole WAL, so the next commit
/// starts it over. Busy (the checkpointer is running) or held back by a reader: not this time.
fn checkpoint_all(conn: &Connection) -> bool {
    let done =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
    matches!(done, Ok((0, log, copied)) if log == copied)
}

/// When checkpoints run: the constants above, but in tests.
#[derive(Clone, Copy)]
struct Checkpoints {
    kick: i64,
    reset: i64,
    idle: Duration,
    truncate: Duration,
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>, kick: mpsc::SyncSender<()>, every: Checkpoints) {
    // WAL size after the latest commit, at the latest kick, and when the writer next resets it.
    let (mut last_pages, mut kicked_at, mut reset_at) = (0, 0, every.reset);
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
        let pages = WAL_PAGES.get();
        if pages < last_pages {
            // The WAL started over.
            (kicked_at, reset_at) = (0, every.reset);
        }
        last_pages = pages;
        if pages >= reset_at {
            if !checkpoint_all(&conn) {
                // Not before the WAL has grown some more: a reader may be holding it back, or
                // the checkpointer was running. No kick before that retry either: a kick just
                // before it kept the checkpointer busy at every retry on a loaded machine, and
                // the WAL then never started over.
                reset_at = pages + every.kick;
                kicked_at = pages;
            }
        } else if pages - kicked_at >= every.kick && kick.try_send(()).is_ok() {
            kicked_at = pages;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in the WAL now, as a separate connection sees it (this also checkpoints it).
    fn wal_frames(path: &Path) -> i64 {
        let c = Connection::open(path).unwrap();
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap()
    }

    /// Steady writes with random keys, as device codes are: the checkpoints keep the WAL file
    /// bounded (it would hold every page written otherwise); once the writes pause, the next
    /// commit starts it over, and after a long pause the file is truncated.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_writes_keep_the_wal_bounded_and_it_starts_over_after_a_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let setup = Connection::open(&path).unwrap();
        setup.pragma_update(None, "journal_mode", "WAL").unwrap();
        setup.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL)", []).unwrap();
        let every = Checkpoints { kick: 16, reset: 64, idle: Duration::from_millis(200), truncate: Duration::from_millis(1_500) };
        let writer = std::sync::Arc::new(Writer::open_with(&path, every).unwrap());
        const ROWS: usize = 4_000;
        for chunk in 0..ROWS / 50 {
            let writes = (0..50).map(|i| {
                let w = writer.clone();
                tokio::spawn(async move {
                    let key = crate::domain::secret::sha256(format!("{chunk}/{i}").as_bytes());
                    w.write(move |c| Ok(c.execute("INSERT INTO t VALUES (?, zeroblob(500))", [key])?)).await
                })
            });
            for w in futures_util::future::join_all(writes).await {
                assert_eq!(w.unwrap().unwrap(), 1);
            }
        }
        // Without the WAL starting over, the file holds every page written: 12 MB here. With it,
        // about 64 pages plus what was written while the checkpointer held the WAL (up to
        // 1.3 MB seen under a loaded CI machine).
        let wal = std::fs::metadata(dir.path().join("w.db-wal")).unwrap().len();
        assert!(wal < 4_000_000, "the WAL grew to {wal} bytes");
        let wal_file = || std::fs::metadata(dir.path().join("w.db-wal")).unwrap().len();
        tokio::time::sleep(every.idle + Duration::from_millis(300)).await;
        writer.write(|c| Ok(c.execute("INSERT INTO t VALUES (x'00', x'00')", [])?)).await.unwrap();
        let frames = wal_frames(&path);
        assert!(frames <= 8, "after a pause the WAL should start over, it holds {frames} frames");
        assert!(wal_file() > 100_000, "a short pause should not truncate the WAL file");
        tokio::time::sleep(every.idle + every.truncate + Duration::from_millis(500)).await;
        assert_eq!(wal_file(), 0, "after a long pause the WAL file should be truncated");
        let n: i64 = setup.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, ROWS as i64 + 1);
    }
}
