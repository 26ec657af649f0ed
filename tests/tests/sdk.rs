//! The client SDK against the real server: two phones that see each other
//! and call, a robot paired and commanded, token refresh and reconnection
//! done for the app, and bad input answered with typed errors.

use switchboard_e2e::sdk::{robot, switchboard, user, Account};
use switchboard_e2e::{random_id, Backend, Server};
use switchboard_sdk::{
    CallKind, CallStateKind, Config, ConnectionState, EndReason, Event, EventQueue, ProfileUpdate,
    SdkError, Switchboard,
};

/// Two users who list each other as contacts and watch each other.
async fn friends(w: &Backend) -> (Account, Account) {
    let a = user(w, "+48555000101", "phone").await.unwrap();
    let b = user(w, "+48555000102", "phone").await.unwrap();
    a.session.set_contacts(vec![b.id()]).await.unwrap();
    b.session.set_contacts(vec![a.id()]).await.unwrap();
    a.session.watch(b.id()).await.unwrap();
    b.session.watch(a.id()).await.unwrap();
    (a, b)
}

async fn sees_online(watcher: &Account, who: &str, online: bool) {
    watcher
        .until("presence", |e| match e {
            Event::Presence { presence }
                if presence.user_id == who && presence.online == online =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn two_phones_see_each_other_and_call() {
    let w = Backend::start().await;
    let (a, b) = friends(&w).await;
    sees_online(&a, &b.id(), true).await;
    sees_online(&b, &a.id(), true).await;

    b.session
        .set_profile(ProfileUpdate {
            nickname: Some("Bea".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let profile = a
        .until("profile", |e| match e {
            Event::Profile { profile } if profile.nickname.as_deref() == Some("Bea") => {
                Some(profile)
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(profile.user_id, b.id());
    assert_eq!(a.session.profile_of(b.id()).await.unwrap(), profile);

    let sid = a.session.call(b.id(), CallKind::Video).await.unwrap();
    let call = b.incoming().await.unwrap();
    assert_eq!(
        (call.sid.as_str(), call.caller.as_str()),
        (sid.as_str(), a.id().as_str())
    );
    assert_eq!(call.kind, CallKind::Video);
    // The SDK told the server B's phone rings.
    a.state_of(&sid, CallStateKind::Ringing).await.unwrap();
    let accepted = b.session.accept(sid.clone()).await.unwrap();
    assert_eq!(accepted.state, CallStateKind::Accepted);
    assert_eq!(accepted.accepted_by, Some(b.session.client_id()));
    a.state_of(&sid, CallStateKind::Accepted).await.unwrap();

    let ended = a.session.hangup(sid.clone()).await.unwrap();
    assert_eq!(ended.reason, Some(EndReason::Hangup));
    let seen = b.state_of(&sid, CallStateKind::Ended).await.unwrap();
    assert_eq!(seen.reason, Some(EndReason::Hangup));
    let history = b.session.history(10, None).await.unwrap();
    assert_eq!(history[0].sid, sid);
    assert_eq!(history[0].reason, Some(EndReason::Hangup));

    // A decline ends a second call; the caller may cancel a third.
    let sid = a.session.call(b.id(), CallKind::Audio).await.unwrap();
    assert_eq!(b.incoming().await.unwrap().sid, sid);
    let declined = b.session.decline(sid.clone()).await.unwrap();
    assert_eq!(declined.reason, Some(EndReason::Declined));
    let sid = a.session.call(b.id(), CallKind::Audio).await.unwrap();
    let cancelled = a.session.cancel(sid.clone()).await.unwrap();
    assert_eq!(cancelled.reason, Some(EndReason::Cancelled));

    // Signing out shows B offline to A.
    b.session.sign_out().await.unwrap();
    sees_online(&a, &b.id(), false).await;
}

#[tokio::test]
async fn a_robot_is_paired_called_and_commanded() {
    let w = Backend::start_with(|server| server.env("SWITCHBOARD_COMMAND_TIMEOUT_S", "2")).await;
    let owner = user(&w, "+48555000201", "phone").await.unwrap();
    let bot = robot(&w.server).await.unwrap();

    let pairing = bot.session.start_pairing().await.unwrap();
    let code = pairing.code().code;
    assert_eq!(code.len(), 6);
    assert_eq!(owner.session.pair(code.clone()).await.unwrap(), bot.id());
    assert_eq!(pairing.wait().await.unwrap(), owner.id());
    assert_eq!(owner.session.robots().await.unwrap()[0].id, bot.id());
    assert_eq!(bot.session.owners().await.unwrap()[0].id, owner.id());
    // A code works once.
    assert_eq!(
        owner.session.pair(code.clone()).await,
        Err(SdkError::PairingRefused { code })
    );

    owner.session.watch(bot.id()).await.unwrap();
    sees_online(&owner, &bot.id(), true).await;
    let sid = owner.session.call(bot.id(), CallKind::Video).await.unwrap();
    assert_eq!(bot.incoming().await.unwrap().sid, sid);
    bot.session.accept(sid.clone()).await.unwrap();
    owner.state_of(&sid, CallStateKind::Accepted).await.unwrap();

    let pending = owner.move_to(&sid, "kitchen").await.unwrap();
    let request = bot
        .until("command request", |e| match e {
            Event::CommandRequest { request } => Some(request),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(request.command, "moveTo");
    assert_eq!(request.request_id, pending.request_id());
    assert_eq!(request.arguments_json, r#"{"destination":"kitchen"}"#);
    for status in ["moving", "arrived"] {
        bot.session
            .respond(
                sid.clone(),
                "moveTo".into(),
                request.request_id.clone(),
                status.into(),
                r#"{"room":"kitchen"}"#.into(),
            )
            .unwrap();
        let reply = pending.next_reply(10_000).await.unwrap();
        assert_eq!(reply.status, status);
        assert_eq!(reply.details_json, r#"{"room":"kitchen"}"#);
    }

    // Unanswered, the server answers `timed_out` for the robot.
    let pending = owner
        .session
        .send_command(sid.clone(), "dock".into(), String::new())
        .await
        .unwrap();
    let reply = pending.next_reply(10_000).await.unwrap();
    assert_eq!(reply.status, "timed_out");

    // The robot cannot command its owner: the server refuses it.
    let refused = bot
        .session
        .send_command(sid.clone(), "moveTo".into(), String::new())
        .await
        .unwrap()
        .next_reply(10_000)
        .await;
    assert!(
        matches!(&refused, Err(SdkError::Refused { code, .. }) if code == "forbidden"),
        "{refused:?}"
    );

    owner.session.hangup(sid.clone()).await.unwrap();
    assert_eq!(
        owner
            .session
            .send_command(sid.clone(), "moveTo".into(), String::new())
            .await
            .err(),
        Some(SdkError::NoCall { sid })
    );
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let w = Backend::start().await;
    let sb = switchboard(&w.server, Some("phone"));
    for phone in ["not a number", "+1", ""] {
        let e = sb.request_code(phone.into()).await.unwrap_err();
        assert!(
            matches!(e, SdkError::InvalidPhone { .. }),
            "{phone:?}: {e:?}"
        );
    }
    let e164 = sb.request_code("+48555000301".into()).await.unwrap();
    let code = w.sms.code_for(&e164).await.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let e = sb
        .sign_in(e164.clone(), wrong.into(), EventQueue::new())
        .await
        .err();
    assert_eq!(e, Some(SdkError::WrongCode));

    for config in [
        ("not a url", None, None),
        ("ftp://x", None, None),
        ("http://x", Some("http://not-mqtt"), None),
        ("http://x", None, Some("Not A Device!")),
    ] {
        let r = Switchboard::new(Config {
            http_url: config.0.into(),
            mqtt_url: config.1.map(str::to_owned),
            device: config.2.map(str::to_owned),
            ca_file: None,
        });
        assert!(
            matches!(r, Err(SdkError::InvalidArgument { .. })),
            "{config:?}"
        );
    }
    // A user needs a device.
    let e = switchboard(&w.server, None)
        .sign_in(e164.clone(), code.clone(), EventQueue::new())
        .await
        .err();
    assert!(matches!(e, Some(SdkError::InvalidArgument { .. })), "{e:?}");

    let a = user(&w, "+48555000302", "phone").await.unwrap();
    let unknown = random_id();
    assert_eq!(
        a.session.call(unknown.clone(), CallKind::Video).await,
        Err(SdkError::UnknownUser {
            id: unknown.clone()
        })
    );
    assert!(matches!(
        a.session.call("not-an-id".into(), CallKind::Video).await,
        Err(SdkError::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.session.call(a.id(), CallKind::Video).await,
        Err(SdkError::InvalidArgument { .. })
    ));
    assert_eq!(
        a.session.profile_of(unknown.clone()).await,
        Err(SdkError::UnknownUser {
            id: unknown.clone()
        })
    );
    assert_eq!(
        a.session.watch(unknown.clone()).await,
        Err(SdkError::UnknownUser { id: unknown })
    );
    let no_call = random_id();
    assert_eq!(
        a.session
            .send_command(no_call.clone(), "moveTo".into(), String::new())
            .await
            .err(),
        Some(SdkError::NoCall {
            sid: no_call.clone()
        })
    );
    assert_eq!(
        a.session.hangup(no_call.clone()).await,
        Err(SdkError::NoCall { sid: no_call })
    );
    for (command, args) in [
        ("1bad", ""),
        ("state", ""),
        ("moveTo", "[1]"),
        ("moveTo", "{"),
    ] {
        let e = a
            .session
            .send_command(random_id(), command.into(), args.into())
            .await
            .err();
        assert!(
            matches!(e, Some(SdkError::InvalidArgument { .. })),
            "{command} {args}: {e:?}"
        );
    }
    for code in ["12", "abcdef", "1234567"] {
        let e = a.session.pair(code.into()).await;
        assert!(
            matches!(e, Err(SdkError::InvalidArgument { .. })),
            "{code}: {e:?}"
        );
    }
    assert_eq!(
        a.session.pair("000000".into()).await,
        Err(SdkError::PairingRefused {
            code: "000000".into()
        })
    );
    let e = a
        .session
        .set_profile(ProfileUpdate {
            email: Some("not an email".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(e, Err(SdkError::InvalidArgument { .. })), "{e:?}");
    // Nothing of it was stored.
    assert_eq!(a.session.my_profile().await.unwrap().email, None);
}

#[tokio::test]
async fn tokens_are_refreshed_without_the_device_going_offline() {
    // Access tokens live 3 s: the SDK moves to a fresh connection every
    // 2.4 s, long before the server would close the old one.
    let w = Backend::start_with(|server| {
        server
            .env("SWITCHBOARD_ACCESS_TOKEN_TTL_S", "3")
            .env("SWITCHBOARD_TOKEN_GRACE_S", "1")
    })
    .await;
    let (a, b) = friends(&w).await;
    sees_online(&a, &b.id(), true).await;
    // B's connection is replaced with a new token three times.
    for _ in 0..3 {
        b.connection(ConnectionState::Connected).await.unwrap();
    }
    // Subscriptions and HTTP still work with the new tokens.
    let sid = a.session.call(b.id(), CallKind::Audio).await.unwrap();
    assert_eq!(b.incoming().await.unwrap().sid, sid);
    b.session.my_profile().await.unwrap();
    // A never saw B offline meanwhile.
    while let Some(e) = a.events.next(std::time::Duration::ZERO).await {
        if let Event::Presence { presence } = e {
            assert!(
                presence.online || presence.user_id != b.id(),
                "{presence:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_restarted_server_gets_the_sessions_back() {
    let w = Backend::start().await;
    let (a, b) = friends(&w).await;
    sees_online(&a, &b.id(), true).await;
    let (http, mqtt, ws) = (w.server.http.clone(), w.server.mqtt, w.server.mqtt_ws);
    let Backend {
        server, sms, db, ..
    } = w;
    let (_, dir) = server.terminate().unwrap();
    b.connection(ConnectionState::Reconnecting).await.unwrap();
    // Same addresses, same data.
    let _server = Server::with_sms(&db, &sms)
        .env("SWITCHBOARD_HTTP_ADDR", http.trim_start_matches("http://"))
        .env("SWITCHBOARD_MQTT_ADDR", mqtt.to_string())
        .env("SWITCHBOARD_MQTT_WS_ADDR", ws.to_string())
        .dir(dir)
        .start()
        .await
        .unwrap();
    // The SDK reconnects and subscribes again (`Connected` once the broker
    // granted them): B's presence reaches A, and A's invite reaches B.
    b.connection(ConnectionState::Connected).await.unwrap();
    sees_online(&a, &b.id(), true).await;
    let sid = a.session.call(b.id(), CallKind::Video).await.unwrap();
    assert_eq!(b.incoming().await.unwrap().sid, sid);
}

/// Waits for a media event `pick` accepts.
async fn media_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<switchboard_sdk::media::MediaEvent>,
    what: &str,
    pick: fn(&switchboard_sdk::media::MediaEvent) -> bool,
) {
    let found = async {
        while let Some(e) = events.recv().await {
            if pick(&e) {
                return;
            }
        }
        panic!("media events ended before {what}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), found)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

#[tokio::test]
async fn sdk_media_peers_exchange_rtp_through_the_relay() {
    use std::sync::Arc;
    use switchboard_sdk::media::{MediaEvent, MediaPeer, PeerOptions};

    let w = Backend::start().await;
    let (a, b) = friends(&w).await;
    let sid = a.session.call(b.id(), CallKind::Video).await.unwrap();
    b.incoming().await.unwrap();
    b.session.accept(sid.clone()).await.unwrap();
    a.state_of(&sid, CallStateKind::Accepted).await.unwrap();

    let options = PeerOptions {
        bind: Some("127.0.0.1:0".into()),
        ..PeerOptions::default()
    };
    let join = |account: &Account| {
        let (session, events) = (account.session.clone(), account.events.clone());
        let (sid, options) = (sid.clone(), options.clone());
        async move {
            let (peer, media) = MediaPeer::join(session, sid, options).await.unwrap();
            let peer = Arc::new(peer);
            // As an app does: the relay's signals go to the call's peer.
            let follower = peer.clone();
            tokio::spawn(async move {
                while let Some(event) = events.next(std::time::Duration::from_secs(3600)).await {
                    if let Event::Signal { signal, .. } = event {
                        follower.on_signal(signal).await.unwrap();
                    }
                }
            });
            (peer, media)
        }
    };
    let send = |peer: Arc<MediaPeer>, numbers: std::ops::Range<u64>| async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        for n in numbers {
            tick.tick().await;
            let payload = bytes::Bytes::copy_from_slice(&n.to_be_bytes());
            peer.send_video(payload, (n * 3000) as u32, true)
                .await
                .unwrap();
        }
    };

    // A sends before B is there: the relay reads it with nobody to
    // forward it to.
    let mut from_a = join(&a).await;
    media_event(&mut from_a.1, "connection", |e| {
        matches!(e, MediaEvent::Connected)
    })
    .await;
    send(from_a.0.clone(), 0..20).await;
    w.server
        .metric_reaches("switchboard_relay_sources", 1.0)
        .await;

    // B joins mid-stream: once it is connected, the relay asks A for a
    // keyframe B can start from, and the SDK says so.
    let mut from_b = join(&b).await;
    media_event(&mut from_b.1, "connection", |e| {
        matches!(e, MediaEvent::Connected)
    })
    .await;
    media_event(&mut from_a.1, "keyframe request", |e| {
        matches!(e, MediaEvent::KeyframeRequested)
    })
    .await;

    tokio::spawn(send(from_a.0.clone(), 1000..1200));
    let mut received = std::collections::BTreeSet::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(e) = from_b.1.recv().await {
            if let MediaEvent::Rtp { kind, packet } = e {
                assert_eq!(kind, "video");
                let n = u64::from_be_bytes(packet.payload[..8].try_into().unwrap());
                received.insert(n);
                if n == 1199 {
                    return;
                }
            }
        }
    })
    .await;
    let run = received.range(1000..1200).count();
    assert!(run >= 190, "B received {run} of 200");
    from_a.0.close().await;
    from_b.0.close().await;
}
