//! Robot steps the end-to-end tests and the benchmarks share: a robot
//! provisioned and signed in, a code offered, looked up and claimed, a call
//! accepted, commands followed.

use rumqttc::SubscribeReasonCode;
use serde_json::Value;

use crate::api::{Api, SignedIn};
use crate::calls::{act, invitation};
use crate::mqtt::{granted, Client, Incoming};
use crate::{random_id, Server, ADMIN_TOKEN};

/// A provisioned, signed-in robot.
pub async fn robot(api: &Api) -> SignedIn {
    let r = api.create_robot(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(r.status, 201);
    let field = |f: &str| r.body[f].as_str().unwrap().to_owned();
    let r = api
        .robot_sign_in(&field("robotId"), &field("secret"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    SignedIn::from_reply(&r.body, "robotId").unwrap()
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
        assert!(granted(
            &client
                .subscribe(&format!("pairing/{code}/{field}"))
                .await
                .unwrap()
        ));
    }
    code
}

/// A robot provisioned, connected, and offering itself on a new code.
pub async fn offering(server: &Server, api: &Api) -> (SignedIn, Client, String) {
    let bot = robot(api).await;
    let mut bot_mqtt = server.mqtt_as(&bot).await;
    let code = offer(api, &bot, &mut bot_mqtt).await;
    (bot, bot_mqtt, code)
}

/// Subscribes to the robot id behind `code`, as a user who typed it does:
/// the SUBACK's codes (refused for a code that is wrong, burned or expired,
/// or to a user out of tries).
pub async fn look_up(client: &mut Client, code: &str) -> Vec<SubscribeReasonCode> {
    client
        .subscribe(&format!("pairing/{code}/robotID"))
        .await
        .unwrap()
}

/// The user types the code: reads the robot id, claims it.
pub async fn pair(user: &SignedIn, client: &mut Client, code: &str) -> String {
    assert!(granted(&look_up(client, code).await));
    let robot_id =
        String::from_utf8(next_on(client, &format!("pairing/{code}/robotID")).await).unwrap();
    assert!(granted(
        &client
            .subscribe(&format!("pairing/{code}/status"))
            .await
            .unwrap()
    ));
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
    let topic = format!("invite/{}/{sid}", bot.id);
    user_mqtt
        .publish_json(&topic, &invitation(&sid, user, "video"))
        .await
        .unwrap();
    assert_eq!(next_json(bot_mqtt, &topic).await["from"], user.id.as_str());
    let state = format!("session/{sid}/state");
    user_mqtt.subscribe(&state).await.unwrap();
    act(bot_mqtt, &sid, "accept").await.unwrap();
    while next_json(user_mqtt, &state).await["state"] != "accepted" {}
    sid
}

/// The robot follows the `moveTo` requests of call `sid` and the user
/// their answers; returns the request and response topics.
pub async fn follow_commands(
    user_mqtt: &mut Client,
    bot_mqtt: &mut Client,
    sid: &str,
) -> (String, String) {
    let (request, response) = (
        format!("session/{sid}/moveTo/request"),
        format!("session/{sid}/moveTo/response"),
    );
    assert!(granted(&bot_mqtt.subscribe(&request).await.unwrap()));
    assert!(granted(&user_mqtt.subscribe(&response).await.unwrap()));
    (request, response)
}

/// A robot provisioned and paired with `owner`, both connected.
pub struct Paired {
    pub owner: SignedIn,
    pub owner_mqtt: Client,
    pub bot: SignedIn,
    pub bot_mqtt: Client,
}

impl Paired {
    /// The owner calls the robot and the robot accepts; the session id.
    pub async fn call(&mut self) -> String {
        accepted_call(
            &self.owner,
            &mut self.owner_mqtt,
            &self.bot,
            &mut self.bot_mqtt,
        )
        .await
    }
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
        owner: owner.clone(),
        owner_mqtt,
        bot,
        bot_mqtt,
    }
}
