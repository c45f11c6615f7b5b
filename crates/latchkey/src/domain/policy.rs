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
    fn grace_only_for_live_successor_inside_window() {
        use SupersededVerdict::*;
        assert_eq!(superseded_verdict(100, true, 103, 5), Grace);
        assert_eq!(superseded_verdict(100, true, 106, 5), Reuse);
        assert_eq!(superseded_verdict(100, false, 101, 5), Reuse);
        assert_eq!(superseded_verdict(100, true, 100, 0), Reuse);
    }
}
