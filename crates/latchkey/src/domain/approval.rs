//! The cross-device approval state machine, pure: device grant, pairing and QR login are one
//! machine seen from three sides (DESIGN.md, "the one idea in the middle").
//!
//! ```text
//!            approve            collect
//! pending ──────────▶ approved ─────────▶ collected
//!    │                   │
//!    │ deny, abuse,      │ approver revoked
//!    │ approver revoked  ▼
//!    ├──────────────▶ denied
//!    │  time passes expires_at (pending or approved)
//!    └──────────────▶ expired
//! ```
//!
//! Only `pending`, `approved`, `denied` and `collected` are stored; `expired` is what a pending
//! or approved request is once its clock has run out, so expiry needs no write and can never be
//! extended. The store's conditional writes check the same conditions as [`transition`]; the
//! store tests drive both side by side.

use std::fmt;

/// Which side the requester is on: how it shows or types its code and how it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flow {
    /// RFC 8628: the requester shows a user code and polls the token endpoint.
    #[default]
    DeviceCode,
    /// Seed 000: the requester types the approver's pairing code and polls.
    Pairing,
    /// Seed 001: the requester (a browser) shows a QR code and waits on a socket.
    Qr,
}

impl Flow {
    pub const ALL: [Flow; 3] = [Flow::DeviceCode, Flow::Pairing, Flow::Qr];

    pub const fn as_str(self) -> &'static str {
        match self {
            Flow::DeviceCode => "device_code",
            Flow::Pairing => "pairing",
            Flow::Qr => "qr",
        }
    }

    pub fn parse(s: &str) -> Option<Flow> {
        Flow::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// What the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    #[default]
    Pending,
    Approved,
    Denied,
    Collected,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Approved, Status::Denied, Status::Collected];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Collected => "collected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

macro_rules! text_enum {
    ($T:ident) => {
        impl fmt::Display for $T {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $T {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $T::parse(&s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($T)))
            }
        }
    };
}
text_enum!(Flow);
text_enum!(Status);

/// What a requester or approver sees at a moment: the stored status with the clock applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    Collected,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Collected => "collected",
        }
    }

    /// Nothing can happen to the request any more.
    pub const fn is_terminal(self) -> bool {
        matches!(self, State::Denied | State::Expired | State::Collected)
    }
}

/// The state of a request whose stored status is `status` and whose life ends at `expires_at`.
pub fn state(status: Status, expires_at: i64, now: i64) -> State {
    match status {
        Status::Collected => State::Collected,
        Status::Denied => State::Denied,
        _ if now >= expires_at => State::Expired,
        Status::Approved => State::Approved,
        Status::Pending => State::Pending,
    }
}

/// Something that happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A signed-in device approves.
    Approve,
    /// A signed-in device denies, or the server does after polling abuse.
    Deny,
    /// The requester collects its session (by poll or by handoff).
    Collect,
    /// The device that approved the request, or holds it, is revoked: what it let in is void.
    Revoke,
}

/// Why a transition did not happen: the request is not in a state it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request is {}", .0.as_str())]
pub struct Refused(pub State);

/// The one rule of the machine: the status after `t`, or why `t` cannot happen now. Approving
/// and denying need a live pending request; collecting needs a live approved one; revoking the
/// approver denies a live request that is not collected yet. Nothing leaves a terminal state,
/// and no transition moves `expires_at`.
pub fn transition(status: Status, expires_at: i64, now: i64, t: Transition) -> Result<Status, Refused> {
    match (state(status, expires_at, now), t) {
        (State::Pending, Transition::Approve) => Ok(Status::Approved),
        (State::Pending, Transition::Deny) => Ok(Status::Denied),
        (State::Approved, Transition::Collect) => Ok(Status::Collected),
        (State::Pending | State::Approved, Transition::Revoke) => Ok(Status::Denied),
        (s, _) => Err(Refused(s)),
    }
}

/// Whether two addresses look like one network: the same IPv4 /24 or IPv6 /64. What the
/// approval screens warn about when a requester is elsewhere (a phished code is typed far away).
pub fn same_network(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(std::net::IpAddr::V4(x)), Ok(std::net::IpAddr::V4(y))) => x.octets()[..3] == y.octets()[..3],
        (Ok(std::net::IpAddr::V6(x)), Ok(std::net::IpAddr::V6(y))) => x.segments()[..4] == y.segments()[..4],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for f in Flow::ALL {
            assert_eq!(Flow::parse(f.as_str()), Some(f));
            assert_eq!(Flow::try_from(f.to_string()), Ok(f));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Flow::parse("device"), None);
        assert!(Status::try_from("expired".to_owned()).is_err(), "expired is never stored");
    }

    #[test]
    fn the_happy_path_and_its_ends() {
        let (exp, now) = (100, 10);
        assert_eq!(transition(Status::Pending, exp, now, Transition::Approve), Ok(Status::Approved));
        assert_eq!(transition(Status::Pending, exp, now, Transition::Deny), Ok(Status::Denied));
        assert_eq!(transition(Status::Approved, exp, now, Transition::Collect), Ok(Status::Collected));
        assert_eq!(transition(Status::Pending, exp, now, Transition::Collect), Err(Refused(State::Pending)));
        assert_eq!(transition(Status::Approved, exp, now, Transition::Deny), Err(Refused(State::Approved)));
        assert_eq!(transition(Status::Approved, exp, exp, Transition::Collect), Err(Refused(State::Expired)));
        assert_eq!(transition(Status::Pending, exp, exp + 1, Transition::Approve), Err(Refused(State::Expired)));
        assert_eq!(transition(Status::Approved, exp, now, Transition::Revoke), Ok(Status::Denied));
        assert_eq!(transition(Status::Collected, exp, now, Transition::Revoke), Err(Refused(State::Collected)));
    }

    fn any_status() -> impl Strategy<Value = Status> {
        prop::sample::select(Status::ALL.to_vec())
    }

    fn any_transition() -> impl Strategy<Value = Transition> {
        prop::sample::select(vec![Transition::Approve, Transition::Deny, Transition::Collect, Transition::Revoke])
    }

    proptest! {
        /// No transition out of a terminal state, whatever happens and whenever.
        #[test]
        fn terminal_states_are_final(status in any_status(), exp in 0i64..1000, now in 0i64..1000, t in any_transition()) {
            let s = state(status, exp, now);
            if s.is_terminal() {
                prop_assert_eq!(transition(status, exp, now, t), Err(Refused(s)));
            }
        }

        /// Expiry is never extended: once a request reads expired it stays expired, and a
        /// request that moved on is still bound by the same `expires_at`.
        #[test]
        fn expiry_is_never_extended(status in any_status(), exp in 0i64..1000, now in 0i64..1000, later in 0i64..1000, t in any_transition()) {
            if state(status, exp, now) == State::Expired {
                prop_assert_eq!(state(status, exp, now + later), State::Expired);
            }
            if let Ok(next) = transition(status, exp, now, t) {
                prop_assert!(now < exp, "a transition happened at or after expiry");
                if next != Status::Collected && next != Status::Denied {
                    prop_assert_eq!(state(next, exp, exp + later), State::Expired);
                }
            }
        }

        /// Any run of transitions collects at most once, and only after an approval.
        #[test]
        fn collected_at_most_once(steps in prop::collection::vec((any_transition(), 0i64..200), 0..24), exp in 0i64..200) {
            let mut status = Status::Pending;
            let (mut collected, mut approved) = (0, false);
            let mut clock = 0;
            for (t, dt) in steps {
                clock += dt / 8;
                if let Ok(next) = transition(status, exp, clock, t) {
                    approved |= next == Status::Approved;
                    if next == Status::Collected {
                        prop_assert!(approved);
                        collected += 1;
                    }
                    status = next;
                }
            }
            prop_assert!(collected <= 1);
        }
    }
}
