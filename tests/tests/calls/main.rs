//! Calls end to end with real MQTT clients against the real binary: every
//! outcome, two callee devices, glare, wake-up pushes, history, restarts,
//! and bad input. Here the devices and the world the tests share; the tests
//! by topic in the modules.

mod bad_input;
mod later;
mod outcomes;

use serde_json::Value;
use switchboard_e2e::api::{Reply, SignedIn};
use switchboard_e2e::calls::{self, invitation};
use switchboard_e2e::mqtt::{granted, Client, Incoming};
use switchboard_e2e::{random_id, Backend, Server};

/// A user's device: an MQTT client subscribed to its invites and errors.
struct Device {
    who: SignedIn,
    mqtt: Client,
}

impl Device {
    async fn new(server: &Server, who: &SignedIn, device: &str) -> Device {
        let who = device_of(server, who, device);
        let mut mqtt = server.mqtt_as(&who).await;
        for filter in [format!("invite/{}/+", who.id), who.errors_topic()] {
            let codes = mqtt.subscribe(&filter).await.unwrap();
            assert!(granted(&codes), "{filter}: {codes:?}");
        }
        Device { who, mqtt }
    }

    async fn invite(&self, callee: &str, sid: &str) {
        let invite = invitation(sid, &self.who, "video");
        self.mqtt
            .publish_json(&format!("invite/{callee}/{sid}"), &invite)
            .await
            .unwrap();
    }

    /// Invites `callee` to `sid` and follows the call's state.
    async fn call(&mut self, callee: &str, sid: &str) {
        self.invite(callee, sid).await;
        self.watch(sid).await;
    }

    async fn act(&self, sid: &str, action: &str) {
        calls::act(&self.mqtt, sid, action).await.unwrap();
    }

    async fn watch(&mut self, sid: &str) {
        let codes = self
            .mqtt
            .subscribe(&format!("session/{sid}/state"))
            .await
            .unwrap();
        assert!(granted(&codes), "{codes:?}");
    }

    /// The next message; panics after the harness's wait.
    async fn next(&mut self) -> (String, Value) {
        match self.mqtt.next().await.unwrap() {
            Incoming::Publish { topic, payload, .. } => (
                topic,
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Waits for a state of `sid` matching `want`.
    async fn state_until(&mut self, sid: &str, want: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("session/{sid}/state");
        loop {
            let (t, v) = self.next().await;
            if t == topic && want(&v) {
                return v;
            }
        }
    }

    /// Waits for call `sid` to be in `state`.
    async fn reaches(&mut self, sid: &str, state: &str) -> Value {
        self.state_until(sid, |v| v["state"] == state).await
    }

    async fn ended(&mut self, sid: &str) -> Value {
        self.reaches(sid, "ended").await
    }

    /// The next error report.
    async fn error(&mut self) -> Value {
        calls::next_error(&mut self.mqtt).await.unwrap()
    }

    /// The next invite; then the state of its call `sid` is followed.
    async fn invited_to(&mut self, sid: &str) -> Value {
        let invite = loop {
            let (t, v) = self.next().await;
            if t.starts_with("invite/") {
                break v;
            }
        };
        self.watch(sid).await;
        invite
    }

    /// Takes the invite to `sid` and accepts; returns once it sees the
    /// call accepted.
    async fn accepts(&mut self, sid: &str) {
        self.invited_to(sid).await;
        self.act(sid, "accept").await;
        self.reaches(sid, "accepted").await;
    }
}

/// The same user on another device (a token of its own).
fn device_of(server: &Server, who: &SignedIn, device: &str) -> SignedIn {
    server
        .minted_for(&who.id, "user", Some(device), 600)
        .unwrap()
}

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
    let (push_url, pushes) = push_receiver().await;
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

/// A webhook receiver standing in for a push gateway.
async fn push_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}
