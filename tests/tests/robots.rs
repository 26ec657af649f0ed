//! The use case's robot story end to end with real MQTT clients: a robot
//! provisioned, a code issued, a user pairs, calls the robot, and commands
//! it; brute force, expired and burned codes, and strangers refused.

use serde_json::{json, Value};
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::calls::{self, invitation};
use switchboard_e2e::mqtt::{granted, Client, Incoming, REFUSED};
use switchboard_e2e::robots::{
    accepted_call, follow_commands, look_up, next_json, next_on, offer, offering, pair,
    paired_with, robot, Paired,
};
use switchboard_e2e::{random_id, Backend};

/// Codes live 2 s and robots get 2 s to answer a command, so expiry and
/// timeouts happen within a test.
async fn world() -> Backend {
    Backend::start_with(|server| {
        server
            .env("SWITCHBOARD_PAIRING_CODE_TTL_S", "2")
            .env("SWITCHBOARD_COMMAND_TIMEOUT_S", "2")
    })
    .await
}

/// `user` unpairs `bot` over HTTP; the answer's status.
async fn unpair(w: &Backend, user: &SignedIn, bot: &SignedIn) -> u16 {
    w.api
        .call(
            "DELETE",
            &format!("/v1/me/robots/{}", bot.id),
            Some(&user.access),
            None,
        )
        .await
        .unwrap()
        .status
}

/// A user signed in on its phone and a robot paired with it.
async fn owner_with_robot(w: &Backend, phone: &str) -> Paired {
    let user = w.user(phone).await;
    paired_with(&w.server, &w.api, robot(&w.api).await, &user).await
}

#[tokio::test]
async fn pair_call_and_command_a_robot() {
    let w = world().await;
    let bot = robot(&w.api).await;
    let user = w.user("+48555800001").await;
    let mut bot_mqtt = w.server.mqtt_as(&bot).await;
    let mut user_mqtt = w.server.mqtt_as(&user).await;

    // Pairing by code.
    let code = offer(&w.api, &bot, &mut bot_mqtt).await;
    let read = pair(&user, &mut user_mqtt, &code).await;
    assert_eq!(read, bot.id);
    // The robot hears who claimed it and the verdict (in either order).
    let (mut claimed_by, mut verdict) = (None, None);
    while claimed_by.is_none() || verdict.is_none() {
        if let Incoming::Publish { topic, payload, .. } = bot_mqtt.next().await.unwrap() {
            if topic == format!("pairing/{code}/userID") {
                claimed_by = Some(String::from_utf8(payload).unwrap());
            } else if topic == format!("pairing/{code}/status") {
                verdict = Some(serde_json::from_slice::<Value>(&payload).unwrap());
            }
        }
    }
    assert_eq!(claimed_by.unwrap(), user.id);
    assert_eq!(
        verdict.unwrap(),
        json!({"status": "paired", "robotId": bot.id, "userId": user.id})
    );
    let status = next_json(&mut user_mqtt, &format!("pairing/{code}/status")).await;
    assert_eq!(status["status"], "paired");
    let r = w.api.get("/v1/me/robots", &user.access).await.unwrap();
    assert_eq!(r.body["robots"][0]["robotId"], bot.id.as_str());
    let r = w.api.get("/v1/me/owners", &bot.access).await.unwrap();
    assert_eq!(r.body["owners"][0]["userId"], user.id.as_str());
    // The code is burned and its retained robot id gone.
    let other = w.user("+48555800002").await;
    let mut other_mqtt = w.server.mqtt_as(&other).await;
    assert_eq!(
        look_up(&mut other_mqtt, &code).await,
        REFUSED,
        "a burned code cannot be claimed"
    );

    // A robot may have several owners: a second user pairs with a new code.
    let code2 = offer(&w.api, &bot, &mut bot_mqtt).await;
    pair(&other, &mut other_mqtt, &code2).await;
    assert_eq!(
        next_json(&mut other_mqtt, &format!("pairing/{code2}/status")).await["status"],
        "paired"
    );
    let r = w.api.get("/v1/me/owners", &bot.access).await.unwrap();
    let owners: Vec<&str> = r.body["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["userId"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert!(owners.contains(&user.id.as_str()) && owners.contains(&other.id.as_str()));

    // The user calls the robot; the robot accepts.
    let sid = accepted_call(&user, &mut user_mqtt, &bot, &mut bot_mqtt).await;

    // Commands: moveTo bedroom answered moving, then arrived.
    let (request, response) = follow_commands(&mut user_mqtt, &mut bot_mqtt, &sid).await;
    let ask = |id: &str| json!({"requestId": id, "destination": "bedroom"});
    user_mqtt.publish_json(&request, &ask("r1")).await.unwrap();
    let req = next_json(&mut bot_mqtt, &request).await;
    assert_eq!(req, json!({"requestId": "r1", "destination": "bedroom"}));
    for status in ["moving", "arrived"] {
        let answer = json!({"requestId": "r1", "destination": "bedroom", "status": status});
        bot_mqtt.publish_json(&response, &answer).await.unwrap();
        assert_eq!(next_json(&mut user_mqtt, &response).await["status"], status);
    }
    // A second one is blocked.
    user_mqtt.publish_json(&request, &ask("r2")).await.unwrap();
    next_json(&mut bot_mqtt, &request).await;
    let blocked = json!({"requestId": "r2", "status": "blocked"});
    bot_mqtt.publish_json(&response, &blocked).await.unwrap();
    assert_eq!(next_json(&mut user_mqtt, &response).await, blocked);
    // A third is never answered: the server says timed_out.
    user_mqtt.publish_json(&request, &ask("r3")).await.unwrap();
    next_json(&mut bot_mqtt, &request).await;
    assert_eq!(
        next_json(&mut user_mqtt, &response).await,
        json!({"requestId": "r3", "status": "timed_out"})
    );

    // Owners see their robot's presence; strangers do not.
    let online = format!("users/{}/isConnected", bot.id);
    assert!(granted(&user_mqtt.subscribe(&online).await.unwrap()));
    assert_eq!(next_on(&mut user_mqtt, &online).await, b"true");
    let stranger = w.user("+48555800007").await;
    let mut stranger_mqtt = w.server.mqtt_as(&stranger).await;
    assert!(!granted(&stranger_mqtt.subscribe(&online).await.unwrap()));

    // Ownership survives a restart.
    drop((user_mqtt, bot_mqtt, other_mqtt, stranger_mqtt));
    let w = w.restart().await;
    let r = w.api.get("/v1/me/robots", &user.access).await.unwrap();
    assert_eq!(r.body["robots"][0]["robotId"], bot.id.as_str());

    // Unpairing ends the ownership.
    assert_eq!(unpair(&w, &user, &bot).await, 204);
    let r = w.api.get("/v1/me/robots", &user.access).await.unwrap();
    assert_eq!(r.body["robots"], json!([]));
    assert_eq!(unpair(&w, &user, &bot).await, 404);
}

#[tokio::test]
async fn finished_commands_leave_the_servers_memory() {
    let w = world().await;
    let mut p = owner_with_robot(&w, "+48555800011").await;
    let sid = p.call().await;
    let (request, response) = follow_commands(&mut p.owner_mqtt, &mut p.bot_mqtt, &sid).await;
    let errors = p.bot.errors_topic();
    assert!(granted(&p.bot_mqtt.subscribe(&errors).await.unwrap()));
    let answer = |id: &str, status: &str| json!({"requestId": id, "status": status});

    // 200 requests, each answered `moving` then `done`: none is kept.
    let n = 200;
    for i in 0..n {
        let ask = json!({"requestId": format!("r{i}"), "destination": "bedroom"});
        p.owner_mqtt.publish_json(&request, &ask).await.unwrap();
    }
    for _ in 0..n {
        let id = next_json(&mut p.bot_mqtt, &request).await["requestId"]
            .as_str()
            .unwrap()
            .to_string();
        for status in ["moving", "done"] {
            p.bot_mqtt
                .publish_json(&response, &answer(&id, status))
                .await
                .unwrap();
        }
    }
    for _ in 0..2 * n {
        next_json(&mut p.owner_mqtt, &response).await;
    }
    assert_eq!(w.server.metric("switchboard_robot_commands").await, 0.0);

    // After a final status the request is gone: a further answer is
    // refused, and its id may be used again.
    p.bot_mqtt
        .publish_json(&response, &answer("r0", "moving"))
        .await
        .unwrap();
    let refusal = next_json(&mut p.bot_mqtt, &errors).await;
    assert_eq!(refusal["code"], "conflict", "{refusal}");
    // Requests answered only `moving` stay open until the call ends.
    for id in ["r0", "r1", "r2"] {
        let ask = json!({"requestId": id});
        p.owner_mqtt.publish_json(&request, &ask).await.unwrap();
        next_json(&mut p.bot_mqtt, &request).await;
        p.bot_mqtt
            .publish_json(&response, &answer(id, "moving"))
            .await
            .unwrap();
        next_json(&mut p.owner_mqtt, &response).await;
    }
    assert_eq!(w.server.metric("switchboard_robot_commands").await, 3.0);
    calls::act(&p.owner_mqtt, &sid, "hangup").await.unwrap();
    w.server
        .metric_reaches("switchboard_robot_commands", 0.0)
        .await;
}

#[tokio::test]
async fn an_unpair_cuts_the_live_subscriptions_of_both() {
    let w = world().await;
    let mut p = owner_with_robot(&w, "+48555800021").await;
    // Each watches the other, as owners and robots may.
    let watching = [
        (
            &mut p.owner_mqtt,
            &p.owner,
            format!("users/{}/isConnected", p.bot.id),
        ),
        (
            &mut p.bot_mqtt,
            &p.bot,
            format!("users/{}/info", p.owner.id),
        ),
    ];
    let mut watching: Vec<_> = watching.into_iter().collect();
    for (client, who, topic) in watching.iter_mut() {
        assert!(granted(
            &client.subscribe(&who.errors_topic()).await.unwrap()
        ));
        assert!(granted(&client.subscribe(topic).await.unwrap()), "{topic}");
    }
    assert_eq!(unpair(&w, &p.owner, &p.bot).await, 204);
    for (client, who, topic) in watching.iter_mut() {
        let report = next_json(client, &who.errors_topic()).await;
        assert_eq!(
            (report["topic"].as_str(), report["code"].as_str()),
            (Some(topic.as_str()), Some("forbidden")),
            "{report}"
        );
        assert!(!granted(&client.subscribe(topic).await.unwrap()), "{topic}");
    }
}

#[tokio::test]
async fn a_new_code_finishes_the_one_it_replaces() {
    let w = world().await;
    let (bot, mut bot_mqtt, first) = offering(&w.server, &w.api).await;
    let second = offer(&w.api, &bot, &mut bot_mqtt).await;
    assert_ne!(first, second);
    // Ended as an expired one: its retained robot id cleared, so the
    // number carries nothing stale when it is issued again.
    let status = next_json(&mut bot_mqtt, &format!("pairing/{first}/status")).await;
    assert_eq!(
        (status["status"].as_str(), status["robotId"].as_str()),
        (Some("expired"), Some(bot.id.as_str()))
    );
}

/// `who` looks `guess` up; whether the rules let it read the code.
async fn looks(client: &mut Client, guess: &str) -> bool {
    granted(&look_up(client, guess).await)
}

#[tokio::test]
async fn wrong_codes_from_one_address_are_budgeted_across_accounts() {
    let w = world().await;
    let (_bot, _bot_mqtt, code) = offering(&w.server, &w.api).await;
    let wrong = |i: u32| format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
    let mut sign_in = Vec::new();
    for phone in [
        "+48555800031",
        "+48555800032",
        "+48555800033",
        "+48555800034",
    ] {
        sign_in.push(w.user(phone).await);
    }
    let [a, b, person, late] = &sign_in[..] else {
        unreachable!()
    };
    // Everyone here comes from 127.0.0.1. A misses five times.
    let mut a_mqtt = w.server.mqtt_as(a).await;
    for i in 0..5 {
        assert!(!looks(&mut a_mqtt, &wrong(i)).await);
    }
    // A person with the right code still reads it at the first try.
    let mut person_mqtt = w.server.mqtt_as(person).await;
    assert!(looks(&mut person_mqtt, &code).await);
    // B misses five more: the address has used its ten.
    let mut b_mqtt = w.server.mqtt_as(b).await;
    for i in 5..10 {
        assert!(!looks(&mut b_mqtt, &wrong(i)).await);
    }
    let mut late_mqtt = w.server.mqtt_as(late).await;
    assert!(
        !looks(&mut late_mqtt, &code).await,
        "a fresh account on a spent address is refused"
    );
}

#[tokio::test]
async fn codes_cannot_be_brute_forced_or_reused() {
    let w = world().await;
    let (_bot, mut bot_mqtt, code) = offering(&w.server, &w.api).await;
    let guesser = w.user("+48555800003").await;
    let mut g = w.server.mqtt_as(&guesser).await;
    let wrong: Vec<String> = (0..5u32)
        .map(|i| format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000))
        .collect();
    for guess in &wrong {
        assert_eq!(look_up(&mut g, guess).await, REFUSED, "{guess}");
    }
    // Five tries used: even the right code is refused now.
    assert_eq!(look_up(&mut g, &code).await, REFUSED, "locked out");
    for filter in ["pairing/+/robotID", "pairing/#", "pairing/+/+"] {
        assert_eq!(g.subscribe(filter).await.unwrap(), REFUSED, "{filter}");
    }
    // Claiming without looking, and others' fields.
    g.subscribe(&guesser.errors_topic()).await.unwrap();
    g.publish(
        &format!("pairing/{code}/userID"),
        guesser.id.as_bytes(),
        false,
    )
    .await
    .unwrap();
    let refused = next_json(&mut g, &guesser.errors_topic()).await;
    assert_eq!(refused["code"], "forbidden");

    // Codes expire (2 s here): the robot hears so, and nobody can claim it.
    let status = next_json(&mut bot_mqtt, &format!("pairing/{code}/status")).await;
    assert_eq!(status["status"], "expired");
    let late = w.user("+48555800004").await;
    let mut l = w.server.mqtt_as(&late).await;
    assert_eq!(look_up(&mut l, &code).await, REFUSED, "expired code");

    // Only robots get codes.
    let r = w
        .api
        .call("POST", "/v1/pairing/codes", Some(&late.access), None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn strangers_can_neither_call_nor_command_a_robot() {
    let w = world().await;
    let mut p = owner_with_robot(&w, "+48555800005").await;
    let stranger = w.user("+48555800006").await;
    // Even a robot visible to everyone takes calls from its owners only.
    let r = w
        .api
        .set_visibility(&p.bot.access, "everyone")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let mut s = w.server.mqtt_as(&stranger).await;
    let errors = stranger.errors_topic();
    s.subscribe(&errors).await.unwrap();
    let sid = random_id();
    let invite = invitation(&sid, &stranger, "audio");
    s.publish_json(&format!("invite/{}/{sid}", p.bot.id), &invite)
        .await
        .unwrap();
    assert_eq!(next_json(&mut s, &errors).await["code"], "forbidden");

    // The owner's accepted call; the stranger cannot command in it.
    let sid = p.call().await;
    let request = format!("session/{sid}/moveTo/request");
    s.publish(
        &request,
        br#"{"requestId": "x", "destination": "kitchen"}"#,
        false,
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut s, &errors).await["code"], "forbidden");
    assert_eq!(s.subscribe(&request).await.unwrap(), REFUSED);
    assert_eq!(
        p.owner_mqtt.subscribe(&request).await.unwrap(),
        REFUSED,
        "only the robot reads requests"
    );

    // Bad commands from the owner are refused too.
    let owner_errors = p.owner.errors_topic();
    p.owner_mqtt.subscribe(&owner_errors).await.unwrap();
    for (topic, payload) in [
        (request.clone(), br#"{"destination": "kitchen"}"#.to_vec()),
        (request.clone(), b"not json".to_vec()),
        (
            format!("session/{sid}/webrtc/request"),
            br#"{"requestId": "a"}"#.to_vec(),
        ),
        (
            format!("session/{sid}/moveTo/response"),
            br#"{"requestId": "a", "status": "done"}"#.to_vec(),
        ),
    ] {
        p.owner_mqtt.publish(&topic, &payload, false).await.unwrap();
        let e = next_json(&mut p.owner_mqtt, &owner_errors).await;
        assert!(
            ["bad_request", "forbidden"].contains(&e["code"].as_str().unwrap()),
            "{topic}: {e}"
        );
    }
    // The robot cannot answer a request never made.
    let bot_errors = p.bot.errors_topic();
    p.bot_mqtt.subscribe(&bot_errors).await.unwrap();
    p.bot_mqtt
        .publish(
            &format!("session/{sid}/moveTo/response"),
            br#"{"requestId": "nope", "status": "moving"}"#,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut p.bot_mqtt, &bot_errors).await["code"],
        "conflict"
    );
}
