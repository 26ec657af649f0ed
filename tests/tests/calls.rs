//! Calls end to end with real MQTT clients against the real binary: every
//! outcome, two callee devices, glare, wake-up pushes, history, restarts,
//! and bad input.

use serde_json::{json, Value};
use switchboard_e2e::api::{Reply, SignedIn};
use switchboard_e2e::calls::{self, invitation};
use switchboard_e2e::mqtt::{connect_persistent, granted, Client, Incoming, REFUSED};
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

#[tokio::test]
async fn ringing_accepted_hung_up_and_in_the_history() {
    let w = world().await;
    let mut caller = w.phone(&w.a).await;
    let mut callee = w.phone(&w.b).await;
    let s = sid();
    caller.call(&w.b.id, &s).await;
    let inviting = caller.reaches(&s, "inviting").await;
    assert_eq!(
        (inviting["caller"].as_str(), inviting["callee"].as_str()),
        (Some(w.a.id.as_str()), Some(w.b.id.as_str()))
    );

    let invite = callee.invited_to(&s).await;
    assert_eq!(invite["sid"], s.as_str());
    assert_eq!(invite["from"], w.a.id.as_str());
    callee.act(&s, "ringing").await;
    caller.reaches(&s, "ringing").await;
    callee.act(&s, "accept").await;
    let accepted = caller.reaches(&s, "accepted").await;
    assert_eq!(accepted["acceptedBy"], format!("{}:phone", w.b.id));
    caller.act(&s, "hangup").await;
    let ended = callee.ended(&s).await;
    assert_eq!(ended["reason"], "hangup");
    caller.ended(&s).await;

    // The history, for both and for nobody else.
    let r = w.backend.api.get("/v1/calls", &w.a.access).await.unwrap();
    let call = &r.body["calls"][0];
    assert_eq!(
        (
            call["sid"].as_str(),
            call["state"].as_str(),
            call["reason"].as_str()
        ),
        (Some(s.as_str()), Some("ended"), Some("hangup"))
    );
    assert!(call["durationMs"].as_i64().unwrap() >= 0);
    assert!(call["acceptedAt"].as_i64().unwrap() >= call["createdAt"].as_i64().unwrap());
    assert_eq!(w.record(&w.b, &s).await.status, 200);
    assert_eq!(w.record(&w.c, &s).await.status, 404);

    let metrics = w.backend.server.metrics().await;
    assert!(
        metrics.contains(r#"switchboard_calls_ended_total{reason="hangup"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_invite_to_accept_seconds_count 1"));
}

/// Both callee devices take the invite and ring; returns once the state
/// shows both legs ringing (their actions travel on two connections).
async fn ring_on_both(phone: &mut Device, tablet: &mut Device, s: &str) {
    for d in [&mut *phone, &mut *tablet] {
        d.invited_to(s).await;
        d.act(s, "ringing").await;
    }
    let (p, t) = (phone.who.client_id.clone(), tablet.who.client_id.clone());
    tablet
        .state_until(s, |v| {
            v["legs"][&p] == "ringing" && v["legs"][&t] == "ringing"
        })
        .await;
}

#[tokio::test]
async fn first_device_to_accept_wins_the_others_end_answered_elsewhere() {
    let w = world().await;
    let caller = w.phone(&w.a).await;
    let mut phone = w.phone(&w.b).await;
    let mut tablet = w.device(&w.b, "tablet").await;
    let s = sid();
    caller.invite(&w.b.id, &s).await;
    ring_on_both(&mut phone, &mut tablet, &s).await;
    tablet.act(&s, "accept").await;
    let accepted = phone.reaches(&s, "accepted").await;
    assert_eq!(accepted["legs"][&phone.who.client_id], "answered_elsewhere");
    assert_eq!(accepted["legs"][&tablet.who.client_id], "accepted");
    // The phone is too late.
    phone.act(&s, "accept").await;
    let refused = phone.error().await;
    assert_eq!(refused["code"], "conflict", "{refused}");
}

#[tokio::test]
async fn decline_from_the_last_ringing_device_ends_declined() {
    let w = world().await;
    let mut caller = w.phone(&w.a).await;
    let mut phone = w.phone(&w.b).await;
    let mut tablet = w.device(&w.b, "tablet").await;
    let s = sid();
    caller.call(&w.b.id, &s).await;
    ring_on_both(&mut phone, &mut tablet, &s).await;
    phone.act(&s, "decline").await;
    let still = caller
        .state_until(&s, |v| v["legs"][&phone.who.client_id] == "declined")
        .await;
    assert_eq!(still["state"], "ringing", "the tablet still rings");
    tablet.act(&s, "decline").await;
    assert_eq!(caller.ended(&s).await["reason"], "declined");
}

#[tokio::test]
async fn cancel_and_missed() {
    let w = world().await;
    let mut caller = w.phone(&w.a).await;
    let mut callee = w.phone(&w.b).await;
    let s = sid();
    caller.invite(&w.b.id, &s).await;
    callee.invited_to(&s).await;
    caller.act(&s, "cancel").await;
    assert_eq!(callee.ended(&s).await["reason"], "cancelled");

    // Nobody answers: missed at the (2 s) deadline.
    let s = sid();
    caller.call(&w.b.id, &s).await;
    callee.invited_to(&s).await;
    callee.act(&s, "ringing").await;
    assert_eq!(caller.ended(&s).await["reason"], "missed");
    assert_eq!(
        callee.ended(&s).await["legs"][&callee.who.client_id],
        "ended"
    );
    callee.act(&s, "accept").await;
    assert_eq!(
        callee.error().await["code"],
        "conflict",
        "a late accept sees the end"
    );
}

#[tokio::test]
async fn a_callee_in_a_call_is_busy() {
    let w = world().await;
    let a = w.phone(&w.a).await;
    let mut b = w.phone(&w.b).await;
    let mut c = w.phone(&w.c).await;
    let s = sid();
    a.invite(&w.b.id, &s).await;
    b.accepts(&s).await;

    let second = sid();
    c.invite(&w.b.id, &second).await;
    let refused = c.error().await;
    assert_eq!(refused["code"], "conflict");
    assert!(refused["message"].as_str().unwrap().contains("busy"));
    c.watch(&second).await;
    assert_eq!(c.ended(&second).await["reason"], "busy");
    // B never got C's invite: the next thing B sees is A hanging up.
    a.act(&s, "hangup").await;
    let (topic, v) = b.next().await;
    assert_eq!(
        (topic, v["reason"].as_str()),
        (format!("session/{s}/state"), Some("hangup"))
    );
}

#[tokio::test]
async fn glare_leaves_exactly_one_call_the_one_with_the_smaller_sid() {
    let w = world().await;
    let mut a = w.phone(&w.a).await;
    let b = w.phone(&w.b).await;
    let (s1, s2) = (sid(), sid());
    let (small, large) = if s1 < s2 { (s1, s2) } else { (s2, s1) };
    // Both at once: A calls B with one id, B calls A with the other.
    tokio::join!(a.invite(&w.b.id, &large), b.invite(&w.a.id, &small));
    // A hears of both: the call it made ends busy, and B's call reaches it
    // (in whichever order the two invites were processed).
    a.watch(&large).await;
    let (mut invited, mut lost) = (false, false);
    while !(invited && lost) {
        let (topic, v) = a.next().await;
        if topic.starts_with("invite/") && v["sid"] == small.as_str() {
            invited = true;
        }
        if topic == format!("session/{large}/state") && v["state"] == "ended" {
            assert_eq!(v["reason"], "busy");
            lost = true;
        }
    }
    // Its state is published after it is stored: then the history has it.
    a.watch(&small).await;
    a.reaches(&small, "inviting").await;
    let r = w.record(&w.a, &small).await;
    assert_ne!(r.body["state"], "ended", "{r:?}");
    let live: Vec<Value> = w
        .backend
        .api
        .get("/v1/calls", &w.a.access)
        .await
        .unwrap()
        .body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] != "ended")
        .cloned()
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["sid"], small.as_str());
}

#[tokio::test]
async fn an_offline_callee_is_woken_and_later_sees_the_end() {
    let mut w = world().await;
    // B's phone has a persistent session with its invite subscription and
    // a push token; then it goes away.
    let phone = device_of(&w.backend.server, &w.b, "phone");
    let mqtt = w.backend.server.mqtt;
    let mut away = connect_persistent(mqtt, phone.login()).await.unwrap();
    away.subscribe(&format!("invite/{}/+", w.b.id))
        .await
        .unwrap();
    let token = json!({"platform": "android", "token": "fcm-token-1"});
    let r = w
        .backend
        .api
        .post("/v1/me/push-tokens", Some(&w.b.access), token)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let mut a = w.phone(&w.a).await;
    a.mqtt
        .subscribe(&format!("users/{}/isConnected", w.b.id))
        .await
        .unwrap();
    drop(away);
    // Wait until the server has seen B go: then the call is to an offline user.
    loop {
        let (topic, v) = a.next().await;
        if topic.ends_with("/isConnected") && v == json!(false) {
            break;
        }
    }
    let s = sid();
    a.call(&w.b.id, &s).await;
    let push = tokio::time::timeout(std::time::Duration::from_secs(10), w.pushes.recv())
        .await
        .expect("a wake-up push")
        .unwrap();
    assert_eq!(push["userId"], w.b.id.as_str());
    assert_eq!(push["sid"], s.as_str());
    assert_eq!(push["from"], w.a.id.as_str());
    assert_eq!(push["kind"], "video");
    assert!(push["expiresAt"].as_i64().unwrap() > 0);
    assert_eq!(
        push["tokens"],
        json!([{"platform": "android", "token": "fcm-token-1"}])
    );
    assert_eq!(a.ended(&s).await["reason"], "missed");

    // The phone wakes up late: its queued invite is there, and the call's
    // state says how it ended.
    let mut back = connect_persistent(mqtt, phone.login()).await.unwrap();
    let invite = loop {
        match back.next().await.unwrap() {
            Incoming::Publish { topic, payload, .. } if topic.starts_with("invite/") => {
                break serde_json::from_slice::<Value>(&payload).unwrap()
            }
            _ => continue,
        }
    };
    assert_eq!(invite["sid"], s.as_str());
    back.subscribe(&format!("session/{s}/state")).await.unwrap();
    match back.next().await.unwrap() {
        Incoming::Publish { payload, .. } => {
            let state: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(
                (state["state"].as_str(), state["reason"].as_str()),
                (Some("ended"), Some("missed"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let w = world().await;
    let mut a = w.phone(&w.a).await;
    let mut b = w.phone(&w.b).await;
    let mut c = w.phone(&w.c).await;
    let s = sid();
    a.invite(&w.b.id, &s).await;
    b.invited_to(&s).await;
    b.reaches(&s, "inviting").await;

    let other = sid();
    let topic = format!("invite/{}/{other}", w.b.id);
    let invite = |sid: &str, from: &SignedIn, kind: &str| {
        invitation(sid, from, kind).to_string().into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "bad_request"),
        (invite(&other, &w.c, "video"), "bad_request"),
        (invite(&s, &w.a, "video"), "bad_request"),
        (invite(&other, &w.a, "hologram"), "bad_request"),
    ];
    for (payload, code) in cases {
        a.mqtt.publish(&topic, &payload, false).await.unwrap();
        let e = a.error().await;
        assert_eq!(
            e["code"],
            code,
            "{}: {e}",
            String::from_utf8_lossy(&payload)
        );
    }
    // The same session id again.
    a.invite(&w.b.id, &s).await;
    assert_eq!(a.error().await["code"], "conflict");
    // Unknown actions, actions with someone else's device, and actions on
    // someone else's call.
    for action in [
        &br#"{"action": "explode"}"#[..],
        br#"{"action": "cancel", "device": "tablet"}"#,
        b"[]",
    ] {
        a.mqtt
            .publish(&format!("session/{s}/call"), action, false)
            .await
            .unwrap();
        assert_eq!(a.error().await["code"], "bad_request");
    }
    c.act(&s, "accept").await;
    assert_eq!(c.error().await["code"], "forbidden");
    assert_eq!(
        c.mqtt
            .subscribe(&format!("session/{s}/state"))
            .await
            .unwrap(),
        REFUSED
    );
    // Callers do not accept their own calls.
    a.act(&s, "accept").await;
    assert_eq!(a.error().await["code"], "conflict");

    // Nothing changed: B got no other invite and the call still invites.
    assert_eq!(w.record(&w.a, &s).await.body["state"], "inviting");
    assert_eq!(w.record(&w.a, &other).await.status, 404);
    a.act(&s, "cancel").await;
    let (topic, v) = b.next().await;
    assert_eq!(
        (topic, v["reason"].as_str()),
        (format!("session/{s}/state"), Some("cancelled"))
    );

    // A blocked caller cannot call.
    let r = w
        .backend
        .api
        .set_blocked(&w.b.access, &[&w.a.id])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let blocked = sid();
    a.invite(&w.b.id, &blocked).await;
    assert_eq!(a.error().await["code"], "forbidden");
    assert_eq!(w.record(&w.a, &blocked).await.status, 404);

    // Bad history requests.
    for path in [
        "/v1/calls?limit=0",
        "/v1/calls?limit=1000",
        "/v1/calls?limit=x",
        "/v1/calls/not-a-sid",
    ] {
        assert_eq!(
            w.backend.api.get(path, &w.a.access).await.unwrap().status,
            400,
            "{path}"
        );
    }
    for bad in [
        json!({"platform": "pager", "token": "t"}),
        json!({"platform": "ios", "token": ""}),
        json!({"platform": "ios"}),
    ] {
        let r = w
            .backend
            .api
            .post("/v1/me/push-tokens", Some(&w.a.access), bad.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn calls_live_at_a_restart_end_failed() {
    let mut w = world().await;
    let a = w.phone(&w.a).await;
    let mut b = w.phone(&w.b).await;
    let s = sid();
    a.invite(&w.b.id, &s).await;
    b.accepts(&s).await;
    drop((a, b));

    w.backend = w.backend.restart().await;
    let r = w.record(&w.a, &s).await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["reason"].as_str()),
        (Some("ended"), Some("failed")),
        "{r:?}"
    );
    // Participants still read how it ended.
    let mut b = w.phone(&w.b).await;
    b.watch(&s).await;
    assert_eq!(b.ended(&s).await["reason"], "failed");
}

#[tokio::test]
async fn a_retained_invite_is_not_kept_for_later_subscribers() {
    let w = world().await;
    let caller = w.phone(&w.a).await;
    let mut c_phone = w.phone(&w.c).await;
    let first = random_id();
    caller
        .mqtt
        .publish(
            &format!("invite/{}/{first}", w.b.id),
            invitation(&first, &caller.who, "video")
                .to_string()
                .as_bytes(),
            true,
        )
        .await
        .unwrap();
    // A's publishes are handled in order: once C has A's next invite, the
    // first one is routed, and would be retained.
    let to_c = random_id();
    caller.invite(&w.c.id, &to_c).await;
    let topic = format!("invite/{}/{to_c}", w.c.id);
    while !matches!(c_phone.mqtt.next().await.unwrap(), Incoming::Publish { topic: t, .. } if t == topic)
    {
    }
    // B subscribes after: the next invite it gets is a new one, not the
    // first kept for it (a client's retain flag outside its profile and
    // its robot's pairing code is dropped).
    let mut b_phone = w.phone(&w.b).await;
    let second = random_id();
    caller.invite(&w.b.id, &second).await;
    match b_phone.mqtt.next().await.unwrap() {
        Incoming::Publish { topic, .. } => {
            assert_eq!(topic, format!("invite/{}/{second}", w.b.id))
        }
        other => panic!("{other:?}"),
    }
}
