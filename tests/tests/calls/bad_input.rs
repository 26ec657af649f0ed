//! Invites, call actions and history requests that are refused, and
//! change nothing.

use serde_json::json;
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::calls::invitation;
use switchboard_e2e::mqtt::REFUSED;

use crate::{sid, world};

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
        json!({"platform": "ios", "token": "../../3/device/x"}),
        json!({"platform": "ios", "token": "abc"}),
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
