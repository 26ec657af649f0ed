//! Calls end to end with real MQTT clients against the real binary: every
//! outcome, two callee devices, glare, wake-up pushes, history, restarts,
//! and bad input. Here the devices and the world the tests share; the tests
//! by topic in the modules.

mod bad_input;
mod later;
mod outcomes;

use serde_json::Value;
use switchboard_e2e::api::{Reply, SignedIn};
use switchboard_e2e::calls::Device;
use switchboard_e2e::{random_id, Backend};

fn sid() -> String {
    random_id()
}

struct World {
    backend: Backend,
    a: SignedIn,
    b: SignedIn,
    c: SignedIn,
    pushes: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

/// A, B and C, all contacts of each other; ring timeout 2 s; pushes to a
/// webhook receiver.
async fn world() -> World {
    let (push_url, pushes) = switchboard_e2e::push::webhook().await;
    let backend = Backend::start_with(|server| {
        server
            .env("SWITCHBOARD_RING_TIMEOUT_S", "2")
            .env("SWITCHBOARD_PUSH_PROVIDER", "webhook")
            .env("SWITCHBOARD_PUSH_WEBHOOK_URL", push_url)
    })
    .await;
    let a = backend.user("+48555700001").await;
    let b = backend.user("+48555700002").await;
    let c = backend.user("+48555700003").await;
    backend.api.all_contacts(&[&a, &b, &c]).await.unwrap();
    World {
        backend,
        a,
        b,
        c,
        pushes,
    }
}

impl World {
    /// A's, B's or C's phone.
    async fn phone(&self, who: &SignedIn) -> Device {
        self.device(who, "phone").await
    }

    /// `who`'s `device`.
    async fn device(&self, who: &SignedIn, device: &str) -> Device {
        Device::new(&self.backend.server, who, device).await
    }

    /// Call `sid` as `who` reads it in the history.
    async fn record(&self, who: &SignedIn, sid: &str) -> Reply {
        self.backend
            .api
            .get(&format!("/v1/calls/{sid}"), &who.access)
            .await
            .unwrap()
    }
}
