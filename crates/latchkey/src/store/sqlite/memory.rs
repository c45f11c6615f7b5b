//! What the SQLite backend keeps in memory instead of writing on every request.
//!
//! A SQLite file is served by one process, so these are shared by every request that could
//! race on them, exactly as rows would be; the PostgreSQL backend, which several instances
//! share, keeps the same things in the database. Losing them on a restart is harmless: a
//! rate-limit window starts over (at most one window of extra attempts; the per-account login
//! back-off stays in the database), and a device-code poll right after a restart is taken as
//! on time.

use super::WindowCounts;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Memory {
    windows: Mutex<HashMap<String, Window>>,
    polls: Mutex<HashMap<String, Poll>>,
}

#[derive(Clone, Copy)]
struct Window {
    length: i64,
    start: i64,
    count: i64,
    previous: i64,
}

#[derive(Clone, Copy)]
struct Poll {
    at: i64,
    expires_at: i64,
}

fn window_start(now: i64, length: i64) -> i64 {
    now - now.rem_euclid(length)
}

impl Window {
    /// The counts as of the window holding `now`.
    fn at(self, start: i64) -> WindowCounts {
        if self.start == start {
            WindowCounts { current: self.count, previous: self.previous }
        } else if self.start == start - self.length {
            WindowCounts { current: 0, previous: self.count }
        } else {
            WindowCounts::default()
        }
    }
}

impl Memory {
    /// Counts one hit in the fixed window holding `now`, as the `rate_limits` upsert does.
    pub fn hit(&self, key: &str, length: i64, now: i64) -> WindowCounts {
        let length = length.max(1);
        let start = window_start(now, length);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(key.to_owned()).or_insert(Window { length, start, count: 0, previous: 0 });
        let before = Window { length, ..*w }.at(start);
        *w = Window { length, start, count: before.current + 1, previous: before.previous };
        WindowCounts { current: w.count, previous: w.previous }
    }

    pub fn peek(&self, key: &str, length: i64, now: i64) -> WindowCounts {
        let length = length.max(1);
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.get(key).map(|w| Window { length, ..*w }.at(window_start(now, length))).unwrap_or_default()
    }

    /// Records a poll of the request `id` at `now` and tells whether it came sooner than
    /// `interval` seconds after the previous one. One lock, so of two polls racing, one is early.
    pub fn poll(&self, id: &str, now: i64, interval: i64, expires_at: i64) -> bool {
        let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        let previous = polls.insert(id.to_owned(), Poll { at: now, expires_at });
        previous.is_some_and(|p| now - p.at < interval)
    }

    /// Forgets what can no longer matter at `now`; returns how many entries went.
    pub fn sweep(&self, now: i64) -> u64 {
        let mut gone = 0;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let before = windows.len();
        windows.retain(|_, w| w.start + 2 * w.length > now);
        gone += before - windows.len();
        drop(windows);
        let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        let before = polls.len();
        polls.retain(|_, p| p.expires_at > now);
        gone += before - polls.len();
        gone as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide_like_the_store_upsert() {
        let m = Memory::default();
        assert_eq!(m.hit("k", 60, 120), WindowCounts { current: 1, previous: 0 });
        assert_eq!(m.hit("k", 60, 179), WindowCounts { current: 2, previous: 0 });
        assert_eq!(m.peek("k", 60, 185), WindowCounts { current: 0, previous: 2 });
        assert_eq!(m.hit("k", 60, 185), WindowCounts { current: 1, previous: 2 });
        assert_eq!(m.peek("k", 60, 300), WindowCounts::default(), "two windows later nothing counts");
        assert_eq!(m.hit("k", 60, 300), WindowCounts { current: 1, previous: 0 });
        assert_eq!(m.peek("other", 60, 300), WindowCounts::default());
    }

    #[test]
    fn polls_are_early_only_within_the_interval() {
        let m = Memory::default();
        assert!(!m.poll("a", 100, 5, 700), "the first poll is never early");
        assert!(m.poll("a", 104, 5, 700));
        assert!(!m.poll("a", 109, 5, 700), "measured from the previous poll, early or not");
        assert!(!m.poll("b", 109, 5, 700));
        assert_eq!(m.sweep(701), 2);
        assert!(!m.poll("a", 702, 5, 900), "forgotten once expired");
    }

    #[test]
    fn sweep_keeps_live_windows() {
        let m = Memory::default();
        m.hit("old", 60, 0);
        m.hit("new", 60, 100);
        assert_eq!(m.sweep(130), 1);
        assert_eq!(m.peek("new", 60, 130), WindowCounts { current: 0, previous: 1 });
    }
}
