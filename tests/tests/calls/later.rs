//! What devices see later: an offline callee is woken and reads the end,
//! a device that subscribes while called is shown the invite, calls live
//! at a restart end failed, and an ended call's invite is not shown to
//! later subscribers.

use serde_json::{json, Value};
use switchboard_e2e::calls::{device_of, invitation};
use switchboard_e2e::mqtt::{connect_persistent, Incoming};
use switchboard_e2e::random_id;

use crate::{sid, world};

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
    assert_eq!(push["event"], "ring");
    assert_eq!(push["userId"], w.b.id.as_str());
    assert_eq!(push["sid"], s.as_str());
    assert_eq!(push["caller"], w.a.id.as_str());
    assert_eq!(push["kind"], "video");
    assert!(push["expiresAt"].as_i64().unwrap() > 0);
    assert_eq!(
        push["tokens"],
        json!([{"platform": "android", "token": "fcm-token-1"}])
    );
    assert_eq!(a.ended(&s).await["reason"], "missed");
    // Then the stop, so the phone stops ringing.
    let stop = tokio::time::timeout(std::time::Duration::from_secs(10), w.pushes.recv())
        .await
        .expect("a stop push")
        .unwrap();
    assert_eq!(
        (&stop["event"], &stop["reason"], &stop["sid"]),
        (&json!("stop"), &json!("missed"), &json!(s))
    );
    assert_eq!(stop["tokens"], push["tokens"]);

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

/// A device that connects while it is called, with a new session (woken
/// by a push, say), is shown the invite as it subscribes to its inbox;
/// once the call is answered, a device subscribing is not.
#[tokio::test]
async fn a_device_that_subscribes_while_called_is_shown_the_invite() {
    let w = world().await;
    let mut a = w.phone(&w.a).await;
    let s = sid();
    a.call(&w.b.id, &s).await;
    a.reaches(&s, "inviting").await;
    let mut phone = w.phone(&w.b).await;
    let (topic, payload, retain) = match phone.mqtt.next().await.unwrap() {
        Incoming::Publish {
            topic,
            payload,
            retain,
            ..
        } => (
            topic,
            serde_json::from_slice::<Value>(&payload).unwrap(),
            retain,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(topic, format!("invite/{}/{s}", w.b.id));
    assert!(retain, "served as the current value");
    assert_eq!(
        (
            &payload["sid"],
            &payload["from"],
            &payload["fromDevice"],
            &payload["kind"]
        ),
        (&json!(s), &json!(w.a.id), &json!("phone"), &json!("video"))
    );
    assert!(payload["sentAt"].as_i64().unwrap() > 0);
    phone.watch(&s).await;
    phone.act(&s, "accept").await;
    a.reaches(&s, "accepted").await;
    // Answered: a device subscribing now is not shown it. The next invite
    // its inbox gets is a new call's (once this one is over: B is busy).
    let mut tablet = w.device(&w.b, "tablet").await;
    a.act(&s, "hangup").await;
    a.ended(&s).await;
    let mut c = w.phone(&w.c).await;
    let next = sid();
    c.call(&w.b.id, &next).await;
    assert_eq!(tablet.invited_to(&next).await["sid"], next.as_str());
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
async fn a_later_subscriber_gets_no_invite_of_an_ended_call_even_one_sent_retained() {
    let w = world().await;
    let mut caller = w.phone(&w.a).await;
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
    // The first call ends; B subscribes after: the next invite it gets is
    // a new one, not the first kept for it. (An inbox is served the
    // invites of calls ringing, never retained messages; and the publish
    // hook drops a client's retain flag outside its profile and its
    // robot's pairing code.)
    caller.watch(&first).await;
    caller.act(&first, "cancel").await;
    caller.ended(&first).await;
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
