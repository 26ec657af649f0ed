//! Pushes straight to APNs and FCM, against local servers that speak
//! their protocols and check what Apple and Google check
//! (`switchboard_e2e::push`): a callee with no device online is rung on
//! every token and told when the ringing stops; dead tokens are
//! forgotten, busy and failing services retried, expired credentials
//! renewed; every outcome is counted on /metrics.

use serde_json::{json, Value};
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::calls::Device;
use switchboard_e2e::push::{FakeApns, FakeFcm};
use switchboard_e2e::tls::{ca, write};
use switchboard_e2e::{random_id, run_switchboard, Backend};
use tempfile::TempDir;

/// Device tokens: APNs's are 64 hex digits.
const IOS: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const IOS_DEAD: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const IOS_BUSY: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const ANDROID: &str = "fcm:android-phone";
const ANDROID_DEAD: &str = "fcm:uninstalled";
const ANDROID_FLAKY: &str = "fcm:flaky";
const WEB: &str = "fcm:web-browser";

struct World {
    backend: Backend,
    apns: FakeApns,
    fcm: FakeFcm,
    a: SignedIn,
    b: SignedIn,
    _files: TempDir,
}

/// A calls B, who has every kind of token and no device online.
async fn world() -> World {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("push test CA");
    let apns = FakeApns::start(&ours).await.unwrap();
    let fcm = FakeFcm::start(&ours).await.unwrap();
    let ca_file = write(files.path(), "ca.pem", &ours.pem);
    let settings: Vec<_> = (apns.settings(files.path()).into_iter())
        .chain(fcm.settings(files.path()))
        .collect();
    let backend = Backend::start_with(|mut server| {
        for (key, value) in settings {
            server = server.env(key, value);
        }
        server
            .env("SWITCHBOARD_PUSH_PROVIDER", "apns,fcm")
            .env("SWITCHBOARD_PUSH_CA_FILE", ca_file)
            .env("SWITCHBOARD_RING_TIMEOUT_S", "8")
    })
    .await;
    let a = backend.user("+48555800001").await;
    let b = backend.user("+48555800002").await;
    backend.api.all_contacts(&[&a, &b]).await.unwrap();
    let r = backend
        .api
        .set_profile(&a.access, json!({"nickname": "Ana"}))
        .await;
    assert_eq!(r.unwrap().status, 200);
    for (platform, token) in [
        ("ios", IOS),
        ("ios", IOS_DEAD),
        ("ios", IOS_BUSY),
        ("android", ANDROID),
        ("android", ANDROID_DEAD),
        ("android", ANDROID_FLAKY),
        ("web", WEB),
    ] {
        let body = json!({ "platform": platform, "token": token });
        let r = backend
            .api
            .post("/v1/me/push-tokens", Some(&b.access), body);
        assert_eq!(r.await.unwrap().status, 204);
    }
    World {
        backend,
        apns,
        fcm,
        a,
        b,
        _files: files,
    }
}

impl World {
    /// The ring (`event` ring) or stop to each live token of B's.
    async fn everyone_gets(&self, event: &str, sid: &str) -> Vec<Value> {
        let of = |body: &Value| body["event"] == event && body["sid"] == sid;
        let mut got = Vec::new();
        for token in [IOS, IOS_BUSY] {
            got.push(self.apns.delivered(token, of).await.unwrap());
        }
        for token in [ANDROID, ANDROID_FLAKY, WEB] {
            got.push(self.fcm.delivered(token, of).await.unwrap());
        }
        got
    }

    /// `switchboard_push_total` of `provider` ending `result`.
    fn pushes(provider: &str, result: &str) -> String {
        format!("switchboard_push_total{{provider=\"{provider}\",result=\"{result}\"}}")
    }

    /// Waits until /metrics counts `want` pushes of `provider` ending
    /// `result` (counted once the service's answer is read).
    async fn counted(&self, provider: &str, result: &str, want: f64) {
        let name = World::pushes(provider, result);
        self.backend.server.counter_reaches(&name, want).await;
    }
}

#[tokio::test]
async fn an_offline_callee_is_rung_everywhere_and_told_when_the_caller_cancels() {
    let w = world().await;
    // Once each: a dead token per service, a busy APNs, a failing FCM.
    w.apns.answer_next(IOS_DEAD, 410, "Unregistered");
    w.apns.answer_next(IOS_BUSY, 429, "TooManyRequests");
    w.fcm
        .answer_next(ANDROID_DEAD, 404, "NOT_FOUND", "UNREGISTERED");
    w.fcm
        .answer_next(ANDROID_FLAKY, 503, "UNAVAILABLE", "UNAVAILABLE");
    let mut a = Device::new(&w.backend.server, &w.a, "phone").await;
    let sid = random_id();
    a.call(&w.b.id, &sid).await;
    for ring in w.everyone_gets("ring", &sid).await {
        assert_eq!(ring["caller"], w.a.id.as_str());
        assert_eq!(ring["callerName"], "Ana");
        assert_eq!(ring["userId"], w.b.id.as_str());
        assert_eq!(ring["kind"], "video");
        let uuid = ring["uuid"].as_str().unwrap().replace('-', "");
        assert_eq!(uuid, sid, "the call's UUID for CallKit is its sid");
        assert!(ring.get("reason").is_none());
    }
    // FCM's data are strings; APNs's payload is JSON as it is.
    let android = w.fcm.delivered(ANDROID, |_| true).await.unwrap();
    assert!(android["expiresAt"].is_string());
    let ios = w.apns.delivered(IOS, |_| true).await.unwrap();
    assert!(ios["expiresAt"].as_i64().unwrap() > 0);

    a.act(&sid, "cancel").await;
    for stop in w.everyone_gets("stop", &sid).await {
        assert_eq!(stop["reason"], "cancelled");
    }
    assert_eq!(
        w.apns.refused(),
        Vec::<String>::new(),
        "APNs refused nothing"
    );
    assert_eq!(w.fcm.refused(), Vec::<String>::new(), "FCM refused nothing");

    // Dead tokens are forgotten: the next call does not try them.
    w.counted("apns", "dead_token", 1.0).await;
    w.counted("fcm", "dead_token", 1.0).await;
    // And access tokens FCM no longer takes are bought again.
    // And the credentials in use expire: a new provider token (one, for
    // all the pushes refused together) and access token are made.
    w.apns.expire_provider_tokens();
    w.fcm.expire_access_tokens();
    let again = random_id();
    a.call(&w.b.id, &again).await;
    w.everyone_gets("ring", &again).await;
    a.act(&again, "cancel").await;
    w.everyone_gets("stop", &again).await;
    assert_eq!(w.apns.asked(IOS_DEAD), 1);
    assert_eq!(w.fcm.asked(ANDROID_DEAD), 1);
    // Two calls, a ring and a stop each, to 2 APNs and 3 FCM tokens.
    w.counted("apns", "sent", 8.0).await;
    w.counted("fcm", "sent", 12.0).await;
    assert_eq!(w.apns.provider_tokens(), 2, "one renewal");
    // Sent again: the busy and the failing token, and each push of the
    // second ring, refused for its expired credentials.
    for (provider, retries) in [("apns", 3.0), ("fcm", 4.0)] {
        let name = format!("switchboard_push_retries_total{{provider=\"{provider}\"}}");
        w.backend.server.counter_reaches(&name, retries).await;
    }
    for provider in ["apns", "fcm"] {
        let failed = World::pushes(provider, "failed");
        assert_eq!(w.backend.server.counter(&failed).await, 0.0, "{failed}");
    }
}

#[tokio::test]
async fn a_device_that_answers_stops_the_others_ringing() {
    let w = world().await;
    let mut a = Device::new(&w.backend.server, &w.a, "phone").await;
    let sid = random_id();
    a.call(&w.b.id, &sid).await;
    w.apns
        .delivered(IOS, |r| r["event"] == "ring")
        .await
        .unwrap();
    // The woken phone connects and answers.
    let mut phone = Device::new(&w.backend.server, &w.b, "phone").await;
    phone.accepts(&sid).await;
    for stop in w.everyone_gets("stop", &sid).await {
        assert_eq!(stop["reason"], "answered");
    }
}

#[tokio::test]
async fn an_unanswered_call_stops_ringing_missed() {
    let w = world().await;
    let mut a = Device::new(&w.backend.server, &w.a, "phone").await;
    let sid = random_id();
    a.call(&w.b.id, &sid).await;
    w.everyone_gets("ring", &sid).await;
    assert_eq!(a.ended(&sid).await["reason"], "missed");
    for stop in w.everyone_gets("stop", &sid).await {
        assert_eq!(stop["reason"], "missed");
    }
}

/// A key that cannot sign stops the start before anything is written,
/// naming its setting.
#[tokio::test]
async fn push_keys_that_cannot_be_used_stop_the_start() {
    let files = tempfile::tempdir().unwrap();
    let data = files.path().join("data");
    let data = data.display().to_string();
    let not_a_key = write(
        files.path(),
        "AuthKey.p8",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let not_an_account = write(files.path(), "sa.json", "{\"type\": \"service_account\"}");
    let apns = [
        ("SWITCHBOARD_PUSH_PROVIDER", "apns"),
        ("SWITCHBOARD_APNS_KEY_FILE", not_a_key.as_str()),
        ("SWITCHBOARD_APNS_KEY_ID", "KEY4567890"),
        ("SWITCHBOARD_APNS_TEAM_ID", "TEAM567890"),
        ("SWITCHBOARD_APNS_TOPIC", "org.switchboard.test"),
    ];
    let fcm = [
        ("SWITCHBOARD_PUSH_PROVIDER", "fcm"),
        (
            "SWITCHBOARD_FCM_SERVICE_ACCOUNT_FILE",
            not_an_account.as_str(),
        ),
    ];
    for (env, key) in [
        (&apns[..], "apns_key_file"),
        (&fcm[..], "fcm_service_account_file"),
    ] {
        let mut all = vec![("SWITCHBOARD_DATA_DIR", data.as_str())];
        all.extend_from_slice(env);
        let (status, stderr) = run_switchboard(&["serve"], &all).unwrap();
        assert!(!status.success(), "{key}: started");
        assert!(stderr.contains(key), "{key}: {stderr}");
        let db = std::path::Path::new(&data).join("switchboard.db");
        assert!(!db.exists(), "{key}: nothing written");
    }
}
