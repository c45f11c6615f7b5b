//! The events interface: one event per state change that someone may be waiting on (a socket,
//! a poller). In-process broadcast for one instance; a cross-instance implementation plugs in
//! behind the same trait.

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SessionRevoked {
        user_id: String,
        session_id: String,
    },
    DeviceRevoked {
        user_id: String,
        device_id: String,
    },
    AllSessionsRevoked {
        user_id: String,
    },
    /// A cross-device approval changed state (redeemed, approved, denied, collected).
    ApprovalChanged {
        approval_id: String,
    },
}

pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event);
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

pub struct LocalEvents {
    tx: broadcast::Sender<Event>,
}

impl Default for LocalEvents {
    fn default() -> Self {
        Self { tx: broadcast::channel(1024).0 }
    }
}

impl EventBus for LocalEvents {
    fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody was waiting.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
