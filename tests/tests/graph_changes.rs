//! The topic rules hold after SUBSCRIBE: a block, a removed contact and a
//! narrowed visibility each cut, at once, the subscriptions the new graph
//! forbids on connections held across the change, and the client is told
//! on `clients/<cid>/errors`. (An unpair: tests/robots.rs.)

use serde_json::{json, Value};
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::mqtt::{granted, Client, Incoming};
use switchboard_e2e::Backend;

#[derive(Debug, Clone, Copy)]
enum Change {
    Block,
    RemoveContact,
    NarrowVisibility,
}

/// The next message on a topic, skipping others.
async fn next_on(c: &mut Client, topic: &str) -> Value {
    loop {
        if let Incoming::Publish {
            topic: t, payload, ..
        } = c.next().await.unwrap()
        {
            if t == topic {
                return serde_json::from_slice(&payload).unwrap_or(Value::Null);
            }
        }
    }
}

async fn nickname(api: &Api, who: &SignedIn, name: &str) {
    let r = api
        .set_profile(&who.access, json!({"nickname": name}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

/// B watches A's topics; A makes `change`; B must be cut off.
async fn a_change_cuts_the_watcher_off(change: Change, phones: [&str; 3]) {
    let w = Backend::start().await;
    let a = w.user(phones[0]).await;
    let b = w.user(phones[1]).await;
    // C keeps seeing A throughout: what C gets, B would have got.
    let c = w.user(phones[2]).await;
    let (visibility, contacts) = match change {
        Change::Block | Change::RemoveContact => ("contacts", vec![&b.id, &c.id]),
        Change::NarrowVisibility => ("everyone", vec![&c.id]),
    };
    let r = w.api.set_visibility(&a.access, visibility).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = w.api.set_contacts(&a.access, &contacts).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    let mut b_mqtt = w.server.mqtt_as(&b).await;
    let mut c_mqtt = w.server.mqtt_as(&c).await;
    let errors = b.errors_topic();
    let b_info = format!("users/{}/info", b.id);
    assert!(granted(&b_mqtt.subscribe(&errors).await.unwrap()));
    assert!(granted(&b_mqtt.subscribe(&b_info).await.unwrap()));
    let watched: Vec<String> = ["info", "isConnected", "presence"]
        .iter()
        .map(|leaf| format!("users/{}/{leaf}", a.id))
        .collect();
    for topic in &watched {
        assert!(granted(&b_mqtt.subscribe(topic).await.unwrap()), "{topic}");
    }
    // A is offline: its isConnected and presence are served (from the
    // database, as the server gets to it); wait for them, so none arrives
    // after the change.
    let mut served = Vec::new();
    while served.len() < 2 {
        if let Incoming::Publish {
            topic,
            retain: true,
            ..
        } = b_mqtt.next().await.unwrap()
        {
            if watched.contains(&topic) && !served.contains(&topic) {
                served.push(topic);
            }
        }
    }
    let a_online = format!("users/{}/isConnected", a.id);
    assert!(granted(&c_mqtt.subscribe(&a_online).await.unwrap()));

    let r = match change {
        Change::Block => w.api.set_blocked(&a.access, &[&b.id]).await.unwrap(),
        Change::RemoveContact => w.api.set_contacts(&a.access, &[&c.id]).await.unwrap(),
        Change::NarrowVisibility => w.api.set_visibility(&a.access, "contacts").await.unwrap(),
    };
    assert_eq!(r.status, 200, "{change:?}: {r:?}");

    // B is told of each subscription removed.
    let mut told: Vec<String> = Vec::new();
    while told.len() < watched.len() {
        let report = next_on(&mut b_mqtt, &errors).await;
        assert_eq!(report["code"], "forbidden", "{change:?}: {report}");
        told.push(report["topic"].as_str().unwrap().to_string());
    }
    told.sort();
    let mut want = watched.clone();
    want.sort();
    assert_eq!(told, want, "{change:?}");

    // A changes its profile and comes online: C sees it, B gets none of
    // it. B's own profile change, published after, is the next message on
    // any of B's profile or presence topics.
    nickname(&w.api, &a, "after the change").await;
    let _a_mqtt = w.server.mqtt_as(&a).await;
    while c_mqtt.next().await.unwrap()
        != (Incoming::Publish {
            topic: a_online.clone(),
            payload: b"true".to_vec(),
            retain: false,
        })
    {}
    nickname(&w.api, &b, "barrier").await;
    loop {
        match b_mqtt.next().await.unwrap() {
            Incoming::Publish { topic, payload, .. } if topic == b_info => {
                let p: Value = serde_json::from_slice(&payload).unwrap();
                if p["nickname"] == "barrier" {
                    break;
                }
            }
            Incoming::Publish { topic, payload, .. } if watched.contains(&topic) => panic!(
                "{change:?}: B still got {topic}: {}",
                String::from_utf8_lossy(&payload)
            ),
            _ => {}
        }
    }
    // And B cannot subscribe again.
    for topic in &watched {
        assert!(!granted(&b_mqtt.subscribe(topic).await.unwrap()), "{topic}");
    }
}

#[tokio::test]
async fn a_block_cuts_live_subscriptions() {
    let phones = ["+48555300001", "+48555300002", "+48555300003"];
    a_change_cuts_the_watcher_off(Change::Block, phones).await;
}

#[tokio::test]
async fn a_removed_contact_loses_live_subscriptions() {
    let phones = ["+48555300011", "+48555300012", "+48555300013"];
    a_change_cuts_the_watcher_off(Change::RemoveContact, phones).await;
}

#[tokio::test]
async fn visibility_narrowed_to_contacts_cuts_strangers_off() {
    let phones = ["+48555300021", "+48555300022", "+48555300023"];
    a_change_cuts_the_watcher_off(Change::NarrowVisibility, phones).await;
}
