//! The use case's profile scenario end to end, contacts and discovery, and
//! bad input at the HTTP API.

use serde_json::{json, Value};
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::mqtt::{Client, Incoming};
use switchboard_e2e::{Backend, JWT_SECRET};

async fn next_profile(c: &mut Client) -> (Value, bool) {
    match c.next().await.unwrap() {
        Incoming::Publish {
            payload, retain, ..
        } => (serde_json::from_slice(&payload).unwrap(), retain),
        other => panic!("expected a profile, got {other:?}"),
    }
}

/// The next profile published after the subscription: a value served at
/// SUBSCRIBE is read when the server gets to it, so it may repeat one.
async fn next_live_profile(c: &mut Client) -> Value {
    loop {
        if let (p, false) = next_profile(c).await {
            return p;
        }
    }
}

/// Who may see `who`, as the API reads it back.
async fn visibility(w: &Backend, who: &SignedIn) -> Value {
    let r = w.api.get("/v1/me/visibility", &who.access).await.unwrap();
    r.body["visibility"].clone()
}

#[tokio::test]
async fn nickname_reaches_watchers_now_later_and_after_a_restart() {
    let w = Backend::start().await;
    let a = w.user("+48555200001").await;
    let b = w.user("+48555200002").await;
    let c = w.user("+48555200003").await;
    let r = w
        .api
        .set_contacts(&a.access, &[&b.id, &c.id])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let topic = format!("users/{}/info", a.id);

    // B watches; A changes the nickname over HTTP; B gets it at once.
    let mut watcher_b = w.server.mqtt_as(&b).await;
    watcher_b.subscribe(&topic).await.unwrap();
    let r = w
        .api
        .set_profile(
            &a.access,
            json!({"nickname": "Ala", "email": "ala@example.com"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let p = next_live_profile(&mut watcher_b).await;
    assert_eq!(
        (p["id"].as_str(), p["nickname"].as_str()),
        (Some(a.id.as_str()), Some("Ala"))
    );

    // A publishes its own profile over MQTT: validated, stored, stamped.
    let publisher = w.server.mqtt_as(&a).await;
    publisher
        .publish_json(&topic, &json!({"nickname": "Ala 2"}))
        .await
        .unwrap();
    let p = next_live_profile(&mut watcher_b).await;
    assert_eq!(p["nickname"], "Ala 2");
    assert!(p["updatedAt"].as_i64().unwrap() > 0);
    let stored = w
        .api
        .get(&format!("/v1/users/{}/profile", a.id), &b.access)
        .await
        .unwrap();
    assert_eq!(stored.body["nickname"], "Ala 2");

    // A bad one is refused and changes nothing.
    publisher
        .publish(
            &topic,
            br#"{"nickname": "x", "email": "not an email"}"#,
            true,
        )
        .await
        .unwrap();
    publisher
        .publish_json(&topic, &json!({"nickname": "Ala 3"}))
        .await
        .unwrap();
    let p = next_live_profile(&mut watcher_b).await;
    assert_eq!(p["nickname"], "Ala 3", "the bad profile never reached B");
    let stored = w.api.get("/v1/me/profile", &a.access).await.unwrap();
    assert_eq!(stored.body["nickname"], "Ala 3");

    // C connects later and gets the profile at once, retained.
    let mut later_c = w.server.mqtt_as(&c).await;
    later_c.subscribe(&topic).await.unwrap();
    let (p, retained) = next_profile(&mut later_c).await;
    assert_eq!(p["nickname"], "Ala 3");
    assert!(retained);

    // After a restart the retained profile is rebuilt from the database.
    let w = w.restart().await;
    let mut after = w.server.mqtt_as(&c).await;
    after.subscribe(&topic).await.unwrap();
    let (p, retained) = next_profile(&mut after).await;
    assert_eq!(p["nickname"], "Ala 3");
    assert_eq!(
        p["email"],
        Value::Null,
        "a profile message replaces the whole profile"
    );
    assert!(retained);
}

#[tokio::test]
async fn contacts_blocks_and_discovery() {
    let w =
        Backend::start_with(|server| server.env("SWITCHBOARD_DISCOVERY_DAILY_QUOTA", "6")).await;
    let a = w.user("+48555300001").await;
    let b = w.user("+48555300002").await;

    let r = w
        .api
        .discover(
            &a.access,
            json!(["+48 555 300 002", "+48555300009", "garbage"]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["matches"],
        json!([{"phone": "+48 555 300 002", "userId": b.id}])
    );

    // Invisible by default; visible once B lists A; not once B blocks A.
    let path = format!("/v1/users/{}/profile", b.id);
    assert_eq!(w.api.get(&path, &a.access).await.unwrap().status, 404);
    w.api
        .set_contacts(&b.access, &[&a.id, &a.id])
        .await
        .unwrap();
    assert_eq!(w.api.get(&path, &a.access).await.unwrap().status, 200);
    let r = w.api.get("/v1/me/contacts", &b.access).await.unwrap();
    assert_eq!(r.body["userIds"], json!([a.id]), "lists are sets");
    w.api.set_blocked(&b.access, &[&a.id]).await.unwrap();
    assert_eq!(w.api.get(&path, &a.access).await.unwrap().status, 404);
    let r = w
        .api
        .discover(&a.access, json!(["+48555300002"]))
        .await
        .unwrap();
    assert_eq!(
        r.body["matches"],
        json!([]),
        "blocked users are not discovered"
    );

    // The daily quota (6 here): 3 + 1 used; 3 more is too many and counts nothing.
    let r = w
        .api
        .discover(&a.access, json!(["1", "2", "3"]))
        .await
        .unwrap();
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    let r = w.api.discover(&a.access, json!(["1", "2"])).await.unwrap();
    assert_eq!(r.status, 200, "the refused call consumed nothing");

    let many: Vec<String> = (0..501).map(|i| format!("+4855530{i:04}")).collect();
    let r = w.api.discover(&b.access, json!(many)).await.unwrap();
    assert_eq!(r.status, 413);

    let r = w.api.set_visibility(&a.access, "everyone").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(visibility(&w, &a).await, "everyone");
}

/// A token signed with the server's key but expired, and one signed with
/// another key.
fn bad_tokens(sub: &str) -> Vec<(String, &'static str)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |secret: &str, exp: i64| {
        let claims = json!({"sub": sub, "kind": "user", "iat": now - 100, "exp": exp});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    vec![
        (sign(JWT_SECRET, now - 10), "expired"),
        (
            sign("another-key-0123456789abcdef0123456789", now + 600),
            "forged",
        ),
        ("not-a-token".to_string(), "garbage"),
    ]
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let w = Backend::start().await;
    let a = w.user("+48555400001").await;
    let r = w
        .api
        .set_profile(&a.access, json!({"nickname": "Before"}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let huge = vec![b'a'; 100 * 1024];
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("PUT", "/v1/me/profile", b"{not json".to_vec(), 400),
        ("PUT", "/v1/me/profile", br#"{"nickname": 7}"#.to_vec(), 400),
        (
            "PUT",
            "/v1/me/profile",
            br#"{"nickname": "x", "admin": true}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/profile",
            br#"{"email": "'; DROP TABLE profiles; --"}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/profile",
            br#"{"photoUrl": "javascript:alert(1)"}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/profile",
            format!(r#"{{"nickname": "{}"}}"#, "n".repeat(65)).into_bytes(),
            400,
        ),
        ("PUT", "/v1/me/profile", huge.clone(), 413),
        (
            "PUT",
            "/v1/me/contacts",
            br#"{"userIds": ["x' OR 1=1 --"]}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/contacts",
            br#"{"userIds": ["0123456789abcdef0123456789abcdef"]}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/contacts",
            br#"{"userIds": "all"}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/v1/me/visibility",
            br#"{"visibility": "nobody"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/contacts/discover",
            br#"{"phones": [1, 2]}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/auth/otp",
            br#"{"phone": "'; DROP TABLE users; --"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/auth/otp",
            br#"{"phone": "555 123 456"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/auth/otp",
            br#"{"phone": "+48555400001", "extra": 1}"#.to_vec(),
            400,
        ),
        ("POST", "/v1/auth/otp", huge, 413),
        (
            "POST",
            "/v1/auth/verify",
            br#"{"phone": "+48555400001", "code": "12", "device": "d"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/auth/verify",
            br#"{"phone": "+48555400001", "code": "123456", "device": "Bad Device"}"#.to_vec(),
            400,
        ),
        ("POST", "/v1/auth/refresh", br#"{}"#.to_vec(), 400),
        (
            "POST",
            "/v1/auth/robot",
            br#"{"robotId": "nope", "secret": "x"}"#.to_vec(),
            401,
        ),
    ];
    for (method, path, body, status) in cases {
        let r = w
            .api
            .raw(method, path, Some(&a.access), body.clone())
            .await
            .unwrap();
        assert_eq!(
            r.status,
            status,
            "{method} {path} {}: {r:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            !r.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{path}: {r:?}"
        );
    }
    // Also without a JSON content type.
    let r = reqwest::Client::new()
        .put(format!("{}/v1/me/profile", w.server.http))
        .bearer_auth(&a.access)
        .body(r#"{"nickname": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    for (token, what) in bad_tokens(&a.id) {
        let r = w.api.get("/v1/me/profile", &token).await.unwrap();
        assert_eq!((r.status, r.code()), (401, "unauthorized"), "{what}");
    }
    assert_eq!(
        w.api
            .call("GET", "/v1/me/profile", None, None)
            .await
            .unwrap()
            .status,
        401
    );
    let r = w
        .api
        .get("/v1/users/not-an-id/profile", &a.access)
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    // Nothing changed.
    let r = w.api.get("/v1/me/profile", &a.access).await.unwrap();
    assert_eq!(r.body["nickname"], "Before");
    assert_eq!(r.body["email"], Value::Null);
    assert_eq!(
        w.api.get("/v1/me/contacts", &a.access).await.unwrap().body["userIds"],
        json!([])
    );
    assert_eq!(visibility(&w, &a).await, "contacts");
}
