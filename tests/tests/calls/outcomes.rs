//! How a call ends: accepted and hung up (and kept in the history), on the
//! first of two devices, declined, cancelled, missed, busy, and in glare.

use serde_json::Value;

use crate::{sid, world, Device};

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
