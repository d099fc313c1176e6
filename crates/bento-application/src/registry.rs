//! The subscriptions running through one bus: names held once, and stopped together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::subscription::Control;

/// Every subscription made through a [`crate::Bus`] (and its clones) that still runs.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    live: Mutex<Vec<Live>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Live {
    id: u64,
    name: String,
    competing: bool,
    control: Option<Weak<Control>>,
}

/// Holds a name in the registry; dropping it (with its subscription) frees the name.
pub(crate) struct Registration {
    registry: Weak<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.live.lock().retain(|live| live.id != self.id);
        }
    }
}

impl Registry {
    /// Claims `name` for a new subscription; refused when a running subscription of this bus
    /// has it, unless both say they compete on purpose.
    pub(crate) fn claim(
        self: &Arc<Self>,
        name: &str,
        competing: bool,
    ) -> Result<Registration, String> {
        let mut live = self.live.lock();
        live.retain(|entry| {
            entry
                .control
                .as_ref()
                .is_none_or(|control| control.upgrade().is_some_and(|c| !c.is_done()))
        });
        if let Some(running) = live.iter().find(|entry| entry.name == name)
            && !(competing && running.competing)
        {
            return Err(format!(
                "a subscription named `{name}` already runs through this bus; give this one a \
                 name of its own, or call SubscriptionSpec::competing on both to run competing \
                 consumers"
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        live.push(Live {
            id,
            name: name.to_owned(),
            competing,
            control: None,
        });
        Ok(Registration {
            registry: Arc::downgrade(self),
            id,
        })
    }

    /// Records how to stop the subscription `registration` stands for.
    pub(crate) fn attach(&self, registration: &Registration, control: &Arc<Control>) {
        if let Some(entry) = self
            .live
            .lock()
            .iter_mut()
            .find(|entry| entry.id == registration.id)
        {
            entry.control = Some(Arc::downgrade(control));
        }
    }

    /// Stops every running subscription and waits, up to `grace`, until all have stopped;
    /// returns how many were still running then.
    pub(crate) async fn stop_all(&self, grace: Duration) -> usize {
        let running: Vec<Arc<Control>> = self
            .live
            .lock()
            .iter()
            .filter_map(|entry| entry.control.as_ref()?.upgrade())
            .collect();
        for control in &running {
            control.stop();
        }
        let all_stopped = futures::future::join_all(running.iter().map(|c| c.stopped()));
        match tokio::time::timeout(grace, all_stopped).await {
            Ok(_) => 0,
            Err(_) => running.iter().filter(|c| !c.is_done()).count(),
        }
    }
}
