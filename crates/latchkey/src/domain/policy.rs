//! Time-based policies, as pure functions of the state and `now` (unix seconds).

/// Escalating per-account delay after failed logins. The first `free` failures cost nothing;
/// then the wait starts at 2 s and doubles with each failure, capped at `max_delay` seconds. There is no hard
/// lockout: a stranger who knows someone's e-mail can slow their logins to one per `max_delay`
/// at worst, never stop them.
pub fn login_delay(failures: u32, free: u32, max_delay: u64) -> u64 {
    if failures < free {
        return 0;
    }
    let exp = (failures - free).min(20);
    (2u64 << exp).min(max_delay)
}

/// Seconds still to wait before the next attempt is allowed, if any.
pub fn login_retry_after(failures: u32, last_failure_at: i64, now: i64, free: u32, max_delay: u64) -> Option<u64> {
    let delay = login_delay(failures, free, max_delay) as i64;
    let ready_at = last_failure_at.saturating_add(delay);
    (delay > 0 && now < ready_at).then(|| (ready_at - now) as u64)
}

/// A sliding-window estimate from two fixed windows: all of the current window's hits plus the
/// previous window's, weighted by how much of it still overlaps the last `window` seconds.
/// Unlike a bare fixed window, the count does not drop to zero at a window boundary.
pub fn sliding_estimate(current: i64, previous: i64, now: i64, window: i64) -> f64 {
    let window = window.max(1);
    let into = now.rem_euclid(window) as f64;
    current as f64 + previous as f64 * (1.0 - into / window as f64)
}

/// Seconds until a sliding count over `limit` drops back to it, at least 1.
pub fn sliding_retry_after(current: i64, previous: i64, now: i64, window: i64, limit: i64) -> u64 {
    let window = window.max(1);
    let into = now.rem_euclid(window);
    let left_in_window = window - into;
    if current > limit || previous == 0 {
        // Only the next window helps (the current hits stay counted until then, and beyond).
        return left_in_window.max(1) as u64;
    }
    // Solve current + previous * (1 - t / window) <= limit for t, the offset into the window.
    let needed = window as f64 * (1.0 - (limit - current) as f64 / previous as f64);
    ((needed - into as f64).ceil() as i64).clamp(1, left_in_window.max(1)) as u64
}

/// What to do with a refresh token that was presented but could not be rotated because it was
/// already superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupersededVerdict {
    /// Within the grace window, and its successor is still the live token: hand out that
    /// same successor again (a client retrying after a lost response).
    Grace,
    /// Anything else is reuse of a stolen or replayed token: revoke the whole session.
    Reuse,
}

pub fn superseded_verdict(superseded_at: i64, successor_live: bool, now: i64, grace_secs: u64) -> SupersededVerdict {
    let age = now.saturating_sub(superseded_at);
    if grace_secs > 0 && successor_live && age >= 0 && (age as u64) <= grace_secs {
        SupersededVerdict::Grace
    } else {
        SupersededVerdict::Reuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_escalates_and_caps() {
        assert_eq!(login_delay(0, 5, 60), 0);
        assert_eq!(login_delay(4, 5, 60), 0);
        assert_eq!(login_delay(5, 5, 60), 2);
        assert_eq!(login_delay(7, 5, 60), 8);
        assert_eq!(login_delay(50, 5, 60), 60);
        assert_eq!(login_retry_after(7, 100, 102, 5, 60), Some(6));
        assert_eq!(login_retry_after(7, 100, 108, 5, 60), None);
    }

    #[test]
    fn sliding_window_does_not_reset_at_the_boundary() {
        assert_eq!(sliding_estimate(3, 10, 600, 60), 13.0, "at the start of a window the previous one counts fully");
        assert_eq!(sliding_estimate(3, 10, 630, 60), 8.0);
        assert!((sliding_estimate(3, 10, 659, 60) - (3.0 + 10.0 / 60.0)).abs() < 1e-9);
        assert_eq!(sliding_retry_after(11, 0, 610, 60, 10), 50);
        let wait = sliding_retry_after(5, 10, 600, 60, 10);
        assert_eq!(wait, 30, "after 30 s half the previous window has slid out");
        assert!(sliding_estimate(5, 10, 600 + wait as i64, 60) <= 10.0);
    }

    #[test]
    fn grace_only_for_live_successor_inside_window() {
        use SupersededVerdict::*;
        assert_eq!(superseded_verdict(100, true, 103, 5), Grace);
        assert_eq!(superseded_verdict(100, true, 106, 5), Reuse);
        assert_eq!(superseded_verdict(100, false, 101, 5), Reuse);
        assert_eq!(superseded_verdict(100, true, 100, 0), Reuse);
    }
}
