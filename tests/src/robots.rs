//! Robot steps the end-to-end tests and the benchmarks share: a robot
//! provisioned and signed in, a code offered and claimed, a call accepted.

use serde_json::{json, Value};

use crate::api::{Api, SignedIn};
use crate::mqtt::{Client, Incoming};
use crate::{random_id, Server, ADMIN_TOKEN};

/// A provisioned, signed-in robot.
pub async fn robot(api: &Api) -> SignedIn {
    let r = api
        .call("POST", "/v1/robots", Some(ADMIN_TOKEN), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let creds = json!({"robotId": r.body["robotId"], "secret": r.body["secret"]});
    let r = api.post("/v1/auth/robot", None, creds).await.unwrap();
    assert_eq!(r.status, 200);
    SignedIn::from_reply(&r.body, "robotId").unwrap()
}

pub fn ok(codes: &[rumqttc::SubscribeReasonCode]) -> bool {
    matches!(codes, [rumqttc::SubscribeReasonCode::Success(_)])
}

/// The next message on `topic`, skipping others.
pub async fn next_on(c: &mut Client, topic: &str) -> Vec<u8> {
    loop {
        if let Incoming::Publish {
            topic: t, payload, ..
        } = c.next().await.unwrap()
        {
            if t == topic {
                return payload;
            }
        }
    }
}

pub async fn next_json(c: &mut Client, topic: &str) -> Value {
    serde_json::from_slice(&next_on(c, topic).await).unwrap()
}

/// The robot asks for a code and offers itself on it.
pub async fn offer(api: &Api, robot: &SignedIn, client: &mut Client) -> String {
    let r = api
        .call("POST", "/v1/pairing/codes", Some(&robot.access), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let code = r.body["code"].as_str().unwrap().to_string();
    assert!(r.body["expiresAt"].as_i64().unwrap() > 0);
    client
        .publish(
            &format!("pairing/{code}/robotID"),
            robot.id.as_bytes(),
            true,
        )
        .await
        .unwrap();
    for field in ["userID", "status"] {
        assert!(ok(&client
            .subscribe(&format!("pairing/{code}/{field}"))
            .await
            .unwrap()));
    }
    code
}

/// The user types the code: reads the robot id, claims it.
pub async fn pair(user: &SignedIn, client: &mut Client, code: &str) -> String {
    assert!(ok(&client
        .subscribe(&format!("pairing/{code}/robotID"))
        .await
        .unwrap()));
    let robot_id =
        String::from_utf8(next_on(client, &format!("pairing/{code}/robotID")).await).unwrap();
    assert!(ok(&client
        .subscribe(&format!("pairing/{code}/status"))
        .await
        .unwrap()));
    client
        .publish(&format!("pairing/{code}/userID"), user.id.as_bytes(), false)
        .await
        .unwrap();
    robot_id
}

/// `user` calls its robot and the robot accepts; returns the session id
/// once the user sees `accepted`.
pub async fn accepted_call(
    user: &SignedIn,
    user_mqtt: &mut Client,
    bot: &SignedIn,
    bot_mqtt: &mut Client,
) -> String {
    bot_mqtt
        .subscribe(&format!("invite/{}/+", bot.id))
        .await
        .unwrap();
    let sid = random_id();
    let invite =
        json!({"sid": sid, "from": user.id, "fromDevice": "phone", "kind": "video", "sentAt": 1});
    let topic = format!("invite/{}/{sid}", bot.id);
    user_mqtt
        .publish(&topic, invite.to_string().as_bytes(), false)
        .await
        .unwrap();
    assert_eq!(next_json(bot_mqtt, &topic).await["from"], user.id.as_str());
    let state = format!("session/{sid}/state");
    user_mqtt.subscribe(&state).await.unwrap();
    crate::calls::act(bot_mqtt, &sid, "accept").await.unwrap();
    while next_json(user_mqtt, &state).await["state"] != "accepted" {}
    sid
}

/// A robot provisioned and paired with `owner`, both connected.
pub struct Paired {
    pub bot: SignedIn,
    pub bot_mqtt: Client,
    pub owner_mqtt: Client,
}

/// Connects `bot` and `owner` and pairs them by a code.
pub async fn paired_with(server: &Server, api: &Api, bot: SignedIn, owner: &SignedIn) -> Paired {
    let mut bot_mqtt = server.mqtt_as(&bot).await;
    let mut owner_mqtt = server.mqtt_as(owner).await;
    let code = offer(api, &bot, &mut bot_mqtt).await;
    pair(owner, &mut owner_mqtt, &code).await;
    let status = next_json(&mut owner_mqtt, &format!("pairing/{code}/status")).await;
    assert_eq!(status["status"], "paired", "{status}");
    Paired {
        bot,
        bot_mqtt,
        owner_mqtt,
    }
}
