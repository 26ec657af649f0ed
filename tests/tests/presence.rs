//! Presence with real client processes: devices killed with SIGKILL and
//! frozen with SIGSTOP (mosquitto_sub), takeover with the same client id,
//! a server crash, visibility.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use switchboard_e2e::api::{Api, SignedIn, SmsInbox};
use switchboard_e2e::mqtt::{connect, granted, Client, Incoming, Login, Via, REFUSED};
use switchboard_e2e::{random_id, Backend, Database, Server};

/// One message a watcher got on a presence topic.
#[derive(Debug, Clone)]
enum Seen {
    IsConnected(bool),
    Presence(Value),
}

struct Watcher {
    client: Client,
    /// What the subscriptions were sent at once, retained: the target's
    /// `isConnected` and `presence` then.
    now: (bool, Value),
    log: Vec<Seen>,
}

impl Watcher {
    async fn start(server: &Server, who: &SignedIn, target: &str) -> Watcher {
        let mut client = server.mqtt_as(who).await;
        for leaf in ["isConnected", "presence"] {
            let codes = client
                .subscribe(&format!("users/{target}/{leaf}"))
                .await
                .unwrap();
            assert!(granted(&codes), "{codes:?}");
        }
        // The two current values, in whichever order they come.
        let (mut online, mut presence) = (None, None);
        while online.is_none() || presence.is_none() {
            match client.next().await.unwrap() {
                Incoming::Publish {
                    topic,
                    payload,
                    retain: true,
                } if topic.ends_with("/isConnected") => online = Some(payload == b"true"),
                Incoming::Publish {
                    payload,
                    retain: true,
                    ..
                } => presence = Some(serde_json::from_slice(&payload).unwrap()),
                other => panic!("not a current value: {other:?}"),
            }
        }
        Watcher {
            client,
            now: (online.unwrap(), presence.unwrap()),
            log: Vec::new(),
        }
    }

    /// Records messages until `want` matches one; returns it.
    async fn until(&mut self, want: impl Fn(&Seen) -> bool) -> Seen {
        loop {
            let seen = match self.client.next().await.unwrap() {
                Incoming::Publish { topic, payload, .. } if topic.ends_with("/isConnected") => {
                    Seen::IsConnected(payload == b"true")
                }
                Incoming::Publish { payload, .. } => {
                    Seen::Presence(serde_json::from_slice(&payload).unwrap())
                }
                other => panic!("{other:?}"),
            };
            self.log.push(seen.clone());
            if want(&seen) {
                return seen;
            }
        }
    }

    /// Records messages until `isConnected` says `online`.
    async fn until_online(&mut self, online: bool) {
        self.until(|s| matches!(s, Seen::IsConnected(o) if *o == online))
            .await;
    }

    async fn until_devices(&mut self, devices: &[&str]) -> Value {
        let want = json!(devices);
        match self
            .until(|s| matches!(s, Seen::Presence(p) if p["devices"] == want))
            .await
        {
            Seen::Presence(p) => p,
            _ => unreachable!(),
        }
    }

    fn saw_offline(&self) -> bool {
        self.log.iter().any(|s| match s {
            Seen::IsConnected(online) => !online,
            Seen::Presence(p) => p["online"] == false,
        })
    }
}

/// A device of `id`: a mosquitto_sub process with its own token and the
/// use case's Last Will (`false`, retained, on its own `isConnected`).
fn device(server: &Server, id: &str, device: &str, keepalive_s: u32) -> Child {
    let me = server.minted_for(id, "user", Some(device), 600).unwrap();
    Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.mqtt.port().to_string(),
            "-V",
            "mqttv311",
        ])
        .args(["-i", &me.client_id, "-u", id, "-P", &me.access])
        .args([
            "-k",
            &keepalive_s.to_string(),
            "-t",
            &format!("users/{id}/info"),
        ])
        .args([
            "--will-topic",
            &format!("users/{id}/isConnected"),
            "--will-payload",
            "false",
            "--will-retain",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub is installed (scripts/test installs mosquitto-clients)")
}

/// A device like `device`, on MQTT 5, whose Will waits `delay_s` after
/// the connection ends (Will Delay Interval); its session outlives the
/// delay, or the Will would go at once with the session.
fn device_with_delayed_will(server: &Server, id: &str, device: &str, delay_s: u32) -> Child {
    let me = server.minted_for(id, "user", Some(device), 600).unwrap();
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args([
            "-V",
            "mqttv5",
            "-i",
            &me.client_id,
            "-u",
            id,
            "-P",
            &me.access,
        ])
        .args(["-t", &format!("users/{id}/info"), "-c", "-x", "60"])
        .args(["--will-topic", &format!("users/{id}/isConnected")])
        .args(["--will-payload", "false", "--will-retain"])
        .args(["-D", "will", "will-delay-interval", &delay_s.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub is installed (scripts/test installs mosquitto-clients)")
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Kills a device with SIGKILL, as a crash would, and waits for it to go.
fn kill(device: &mut Child) {
    signal(device, "-KILL");
    device.wait().unwrap();
}

struct Setup {
    server: Server,
    api: Api,
    sms: SmsInbox,
    db: Database,
    /// The user whose presence is watched.
    a: SignedIn,
    /// A contact of `a`.
    w: SignedIn,
}

async fn setup() -> Setup {
    let backend = Backend::start().await;
    let a = backend.user("+48555600001").await;
    let w = backend.user("+48555600002").await;
    let r = backend.api.set_contacts(&a.access, &[&w.id]).await.unwrap();
    assert_eq!(r.status, 200);
    let Backend {
        server,
        api,
        sms,
        db,
    } = backend;
    Setup {
        server,
        api,
        sms,
        db,
        a,
        w,
    }
}

/// A delayed Will fires after its connection ended: like any client's
/// message on `isConnected`, it is taken and absorbed, so it cannot say
/// the user is offline while a device is on.
#[tokio::test]
async fn a_delayed_will_never_reaches_watchers() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    let mut tablet = device(&s.server, &s.a.id, "tablet", 30);
    watcher.until_online(true).await;
    let mut phone = device_with_delayed_will(&s.server, &s.a.id, "phone", 1);
    watcher.until_devices(&["phone", "tablet"]).await;
    let received = "switchboard_mqtt_messages_received_total";
    let before = s.server.metric(received).await;

    kill(&mut phone);
    watcher.until_devices(&["tablet"]).await;
    // The Will fires a second later (nothing else is published).
    s.server.metric_reaches(received, before + 1.0).await;
    kill(&mut tablet);
    watcher.until_devices(&[]).await;
    let offline = watcher
        .log
        .iter()
        .filter(|seen| matches!(seen, Seen::IsConnected(false)))
        .count();
    assert_eq!(
        offline, 1,
        "only the server's, when the tablet went: {:?}",
        watcher.log
    );
}

#[tokio::test]
async fn a_killed_device_leaves_the_user_online_until_the_last_one_goes() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    let mut phone = device(&s.server, &s.a.id, "phone", 30);
    watcher.until_online(true).await;
    let mut tablet = device(&s.server, &s.a.id, "tablet", 30);
    let both = watcher.until_devices(&["phone", "tablet"]).await;

    kill(&mut phone);
    let one = watcher.until_devices(&["tablet"]).await;
    assert_eq!(one["online"], true);
    assert!(
        !watcher.saw_offline(),
        "one device gone (its Will fired), the user is still online: {:?}",
        watcher.log
    );
    assert!(one["seq"].as_u64() > both["seq"].as_u64());

    kill(&mut tablet);
    watcher.until_online(false).await;
    let gone = watcher.until_devices(&[]).await;
    assert_eq!(gone["online"], false);
    assert!(gone["seq"].as_u64() > one["seq"].as_u64());
    assert!(gone["lastSeen"].as_i64().is_some());

    // The same through the HTTP API.
    let r = s
        .api
        .get(&format!("/v1/presence?ids={}", s.a.id), &s.w.access)
        .await
        .unwrap();
    assert_eq!(r.body["presence"][0]["online"], false);
    assert_eq!(r.body["presence"][0]["seq"], gone["seq"]);
}

#[tokio::test]
async fn a_graceful_disconnect_goes_offline() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    let never = json!({"online": false, "devices": [], "lastSeen": null, "seq": 0});
    assert_eq!(
        watcher.now,
        (false, never),
        "never connected: offline, at once"
    );
    let app = s.server.mqtt_as(&s.a).await;
    watcher.until_online(true).await;
    app.client.disconnect().await.unwrap();
    watcher.until_online(false).await;
}

#[tokio::test]
async fn a_frozen_client_goes_offline_after_its_keep_alive() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    // Keep-alive 6 s: the broker gives up after 1.5 x 6 = 9 s of silence.
    let mut frozen = device(&s.server, &s.a.id, "phone", 6);
    watcher.until_online(true).await;
    signal(&frozen, "-STOP");
    let stopped = std::time::Instant::now();
    // The wait is bounded by the harness (10 s per message); the loss must
    // arrive as an event, not be assumed after a sleep.
    let mut offline = false;
    for _ in 0..3 {
        if let Seen::IsConnected(false) = watcher.until(|x| matches!(x, Seen::IsConnected(_))).await
        {
            offline = true;
            break;
        }
    }
    eprintln!("frozen client seen offline after {:?}", stopped.elapsed());
    kill(&mut frozen);
    assert!(offline, "{:?}", watcher.log);
}

#[tokio::test]
async fn takeover_with_the_same_client_id_does_not_flap() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    let login = s.a.login();
    let _first = connect(s.server.mqtt, Via::Tcp, login).await.unwrap();
    watcher.until_online(true).await;
    // The same client id again, twice: each takes the previous one over.
    let _second = connect(s.server.mqtt, Via::Tcp, login).await.unwrap();
    let _third = connect(s.server.mqtt_ws, Via::WebSocket, login)
        .await
        .unwrap();
    // A marker: another device's arrival is published after anything the
    // takeovers could have caused.
    let mut tablet = device(&s.server, &s.a.id, "tablet", 30);
    watcher.until_devices(&["phone", "tablet"]).await;
    kill(&mut tablet);
    assert!(
        !watcher.saw_offline(),
        "watchers saw the user go offline: {:?}",
        watcher.log
    );
}

#[tokio::test]
async fn after_a_crash_every_retained_presence_says_offline() {
    let s = setup().await;
    let mut watcher = Watcher::start(&s.server, &s.w, &s.a.id).await;
    let _online = s.server.mqtt_as(&s.a).await;
    let before = match watcher
        .until(|x| matches!(x, Seen::Presence(p) if p["online"] == true))
        .await
    {
        Seen::Presence(p) => p,
        _ => unreachable!(),
    };
    drop(watcher);

    let dir = s.server.crash().unwrap();
    let server = Server::with_sms(&s.db, &s.sms)
        .dir(dir)
        .start()
        .await
        .unwrap();
    let after = Watcher::start(&server, &s.w, &s.a.id).await;
    let (online, p) = after.now;
    assert!(!online);
    assert_eq!(p["devices"], json!([]), "{p}");
    assert_eq!(p["online"], false);
    assert!(
        p["seq"].as_u64() > before["seq"].as_u64(),
        "{p} after {before}"
    );
}

#[tokio::test]
async fn only_those_who_may_see_a_user_get_its_presence() {
    let s = setup().await;
    let stranger = s
        .api
        .sign_in(&s.sms, "+48555600003", "phone")
        .await
        .unwrap();
    let mut c = s.server.mqtt_as(&stranger).await;
    for leaf in ["isConnected", "presence", "+", "#"] {
        let codes = c
            .subscribe(&format!("users/{}/{leaf}", s.a.id))
            .await
            .unwrap();
        assert_eq!(codes, REFUSED, "{leaf}");
    }
    let both = format!("/v1/presence?ids={},{}", s.a.id, s.w.id);
    let r = s.api.get(&both, &stranger.access).await.unwrap();
    assert_eq!(r.body["presence"], json!([]), "nothing of users not shared");

    // The watcher sees A until A blocks it.
    let r = s.api.get(&both, &s.w.access).await.unwrap();
    assert_eq!(r.body["presence"].as_array().unwrap().len(), 2, "{r:?}");
    s.api.set_blocked(&s.a.access, &[&s.w.id]).await.unwrap();
    let r = s.api.get(&both, &s.w.access).await.unwrap();
    assert_eq!(r.body["presence"].as_array().unwrap().len(), 1);
    let mut w = s.server.mqtt_as(&s.w).await;
    let codes = w
        .subscribe(&format!("users/{}/presence", s.a.id))
        .await
        .unwrap();
    assert_eq!(codes, REFUSED);

    for bad in ["/v1/presence?ids=nope", "/v1/presence"] {
        assert_eq!(
            s.api.get(bad, &s.w.access).await.unwrap().status,
            400,
            "{bad}"
        );
    }
    let many = vec![s.a.id.clone(); 1]
        .into_iter()
        .chain((0..201).map(|i| format!("{i:032x}")))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        s.api
            .get(&format!("/v1/presence?ids={many}"), &s.w.access)
            .await
            .unwrap()
            .status,
        400
    );
}

/// Each user's stored `(seq, last_seen)`, read from the server's database.
/// Each stored presence: seq, lastSeen, online.
async fn stored_presence(
    db: &Database,
    server: &Server,
) -> HashMap<String, (i64, Option<i64>, bool)> {
    use sqlx::Connection;
    let query = "SELECT user_id, seq, last_seen, online FROM presence";
    let rows: Vec<(String, i64, Option<i64>, bool)> = match db {
        Database::Postgres { url } => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
        }
        Database::Sqlite => {
            let path = server.dir.path().join("switchboard.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
        }
    };
    rows.into_iter()
        .map(|(id, seq, last_seen, online)| (id, (seq, last_seen, online)))
        .collect()
}

#[tokio::test]
async fn a_stop_with_two_thousand_clients_online_stores_everyone_offline() {
    let db = Database::for_test().await.unwrap();
    let mut server = Server::start(&db).await.unwrap();
    let n = 2000;
    let ids: Vec<String> = (0..n).map(|_| random_id()).collect();
    let tokens = server.tokens(&ids, None, "user", 600).unwrap();
    let mut clients = Vec::with_capacity(n);
    let logins: Vec<(String, String)> = ids.iter().cloned().zip(tokens).collect();
    for batch in logins.chunks(200) {
        let mut connecting = tokio::task::JoinSet::new();
        for (id, token) in batch {
            let (id, token, addr) = (id.clone(), token.clone(), server.mqtt);
            connecting.spawn(async move {
                connect(addr, Via::Tcp, Login::token(&id, &id, &token)).await
            });
        }
        while let Some(client) = connecting.join_next().await {
            clients.push(client.unwrap().unwrap());
        }
    }
    server
        .metric_reaches("switchboard_users_online", n as f64)
        .await;

    let status = server.stop().unwrap();
    assert!(status.success(), "{status}");
    // Before the ordered stop the pool closed first: one error per user.
    assert!(
        !server.logged("saving presence"),
        "presence was not saved at the stop"
    );
    let stored = stored_presence(&db, &server).await;
    for id in &ids {
        let (seq, last_seen, online) = stored.get(id).copied().unwrap_or_default();
        // Online then offline at the stop: one change or two, as they
        // were stored together or not.
        assert!((1..=2).contains(&seq), "{id}: seq {seq}");
        assert!(!online && last_seen.is_some(), "{id}: stored offline");
    }
    drop(clients);
}
