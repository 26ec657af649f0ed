//! ICE servers for the clients' WebRTC stacks, with TURN credentials in
//! coturn's `use-auth-secret` scheme, checked here with an HMAC computed
//! independently of the server.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use switchboard_e2e::api::Api;
use switchboard_e2e::{random_id, run_switchboard, Database, Server};

const SECRET: &str = "turn-shared-secret-0123456789";

#[tokio::test]
async fn turn_credentials_are_time_limited_and_verifiable() {
    let db = Database::for_test().await.unwrap();
    let server = Server::builder(&db)
        .env("SWITCHBOARD_ICE_STUN_URLS", r#"["stun:127.0.0.1:3478"]"#)
        .env(
            "SWITCHBOARD_ICE_TURN_URLS",
            r#"["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"]"#,
        )
        .env("SWITCHBOARD_TURN_SECRET", SECRET)
        .env("SWITCHBOARD_TURN_CREDENTIAL_TTL_S", "600")
        .start()
        .await
        .unwrap();
    let api = Api::new(&server);
    let me = server.minted("user", Some("phone"), 600).unwrap();
    let r = api.get("/v1/ice-servers", &me.access).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["ttl"], 600);
    let servers = r.body["iceServers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
    let turn = &servers[1];
    assert_eq!(turn["urls"].as_array().unwrap().len(), 2);
    let username = turn["username"].as_str().unwrap();
    let (expires, user) = username.split_once(':').unwrap();
    assert_eq!(user, me.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires: u64 = expires.parse().unwrap();
    assert!(expires > now && expires <= now + 601, "{expires} vs {now}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected.as_str());

    assert_eq!(
        api.call("GET", "/v1/ice-servers", None, None)
            .await
            .unwrap()
            .status,
        401
    );
}

#[tokio::test]
async fn without_ice_settings_the_list_is_empty() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let id = random_id();
    let token = server.token(&id, None, "user", 600).unwrap();
    let r = Api::new(&server)
        .get("/v1/ice-servers", &token)
        .await
        .unwrap();
    assert_eq!(r.body["iceServers"], json!([]));
}

#[test]
fn turn_urls_need_a_secret_and_urls_their_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    for (env, key) in [
        (
            vec![("SWITCHBOARD_ICE_TURN_URLS", r#"["turn:example.org"]"#)],
            "turn_secret",
        ),
        (
            vec![("SWITCHBOARD_ICE_STUN_URLS", r#"["http://example.org"]"#)],
            "ice_stun_urls",
        ),
        (
            vec![
                ("SWITCHBOARD_ICE_TURN_URLS", r#"["stun:example.org"]"#),
                ("SWITCHBOARD_TURN_SECRET", SECRET),
            ],
            "ice_turn_urls",
        ),
    ] {
        let mut env = env;
        env.push(("SWITCHBOARD_DATA_DIR", &data));
        let (status, stderr) = run_switchboard(&["serve"], &env).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}
