//! Media through the relay, end to end: headless WebRTC peers (the webrtc
//! crate) signalling over MQTT to the real binary, sending numbered RTP
//! packets to each other through it.

use std::net::UdpSocket;
use std::ops::Range;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::calls::{self, state_until};
use switchboard_e2e::media::{down_topic, up_topic, MediaPeer, PeerOptions};
use switchboard_e2e::mqtt::{Client, REFUSED};
use switchboard_e2e::{Backend, Server};
use webrtc::peer_connection::RTCIceServer;

/// A UDP port range nobody holds now, for the relay to use.
fn free_port_range(len: u16) -> (u16, u16) {
    loop {
        let first = 20_000 + rand::random::<u16>() % 30_000;
        let held: Vec<UdpSocket> = (first..first + len)
            .filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(len) {
            return (first, first + len - 1);
        }
    }
}

fn bindable(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

struct Call {
    backend: Backend,
    a: SignedIn,
    b: SignedIn,
    c: SignedIn,
    sid: String,
    ports: (u16, u16),
}

/// A calls B and B accepts; C is a contact of both but not in the call.
/// The caller's and the callee's devices come beside the call.
async fn accepted_call(env: &[(&str, String)]) -> (Call, Client, Client) {
    let ports = free_port_range(6);
    let backend = Backend::start_with(|mut server| {
        server = server
            .env("SWITCHBOARD_RELAY_PORT_MIN", ports.0.to_string())
            .env("SWITCHBOARD_RELAY_PORT_MAX", ports.1.to_string());
        for (k, v) in env {
            server = server.env(k, v.clone());
        }
        server
    })
    .await;
    let a = backend.user("+48555800001").await;
    let b = backend.user("+48555800002").await;
    let c = backend.user("+48555800003").await;
    backend.api.all_contacts(&[&a, &b, &c]).await.unwrap();
    let (sid, caller, callee) = calls::accepted(&backend.server, &a, &b).await.unwrap();
    let call = Call {
        backend,
        a,
        b,
        c,
        sid,
        ports,
    };
    (call, caller, callee)
}

impl Call {
    /// Both devices join the call's media, and their connections to the
    /// relay come up.
    async fn both_join(&self, caller: Client, callee: Client) -> (MediaPeer, MediaPeer) {
        self.both_join_with(caller, callee, Default::default())
            .await
    }

    /// `both_join` with the caller's and the callee's peer options.
    async fn both_join_with(
        &self,
        caller: Client,
        callee: Client,
        options: [PeerOptions; 2],
    ) -> (MediaPeer, MediaPeer) {
        let [caller_options, callee_options] = options;
        let mut peers = Vec::new();
        for (who, mqtt, options) in [
            (&self.a, caller, caller_options),
            (&self.b, callee, callee_options),
        ] {
            let mut peer = MediaPeer::join(mqtt, &self.sid, &who.client_id, options)
                .await
                .unwrap();
            peer.connected().await.unwrap();
            peers.push(peer);
        }
        let pb = peers.pop().unwrap();
        (peers.pop().unwrap(), pb)
    }

    /// The relay's peer connections now.
    async fn peer_connections(&self) -> f64 {
        self.backend
            .server
            .metric("switchboard_relay_peer_connections")
            .await
    }

    /// `peer`'s device hangs up: the relay closes the room and its
    /// connections.
    async fn hang_up_closing_the_room(&self, peer: &MediaPeer) {
        let hangup = json!({"action": "hangup"});
        peer.publish(&format!("session/{}/call", self.sid), hangup)
            .await
            .unwrap();
        self.backend
            .server
            .metric_reaches("switchboard_relay_rooms", 0.0)
            .await;
        assert_eq!(self.peer_connections().await, 0.0);
    }
}

/// Both peers send packets numbered `numbers` at once, one every 2 ms.
async fn send_both(pa: &MediaPeer, pb: &MediaPeer, numbers: Range<u64>) {
    let gap = Duration::from_millis(2);
    let (sa, sb) = tokio::join!(
        pa.send_numbered(numbers.clone(), gap),
        pb.send_numbered(numbers, gap)
    );
    sa.unwrap();
    sb.unwrap();
}

/// Checks what one side received of the other's numbered packets.
fn assert_stream(who: &str, got: &[u64], sent: u64) {
    let mut unique = got.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "{who}: duplicates");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{who}: packets out of order"
    );
    let lost = sent - got.len() as u64;
    assert!(
        lost * 100 < sent,
        "{who}: lost {lost} of {sent} packets (1% allowed)"
    );
}

#[tokio::test]
async fn two_headless_peers_exchange_numbered_rtp_through_the_relay() {
    let (call, caller, callee) = accepted_call(&[]).await;
    let (mut pa, mut pb) = call.both_join(caller, callee).await;
    let (server, ports) = (&call.backend.server, call.ports);
    // The relay's two sockets come from the configured range.
    let in_use = (ports.0..=ports.1).filter(|p| !bindable(*p)).count();
    assert_eq!(in_use, 2, "relay sockets in {ports:?}");
    assert_eq!(server.metric("switchboard_relay_rooms").await, 1.0);
    assert_eq!(call.peer_connections().await, 2.0);

    // Each side's first answer carried a track for the other's media: the
    // first packets get through, with no offer of the relay's. Warm up
    // until both sides receive, then measure.
    send_both(&pa, &pb, 0..250).await;
    pa.received_any().await.unwrap();
    pb.received_any().await.unwrap();
    const FIRST: u64 = 1_000_000;
    const COUNT: u64 = 1000;
    send_both(&pa, &pb, FIRST..FIRST + COUNT).await;
    let last = FIRST + COUNT - 1;
    let got_a = pa
        .received_through(FIRST, last, Duration::from_secs(5))
        .await;
    let got_b = pb
        .received_through(FIRST, last, Duration::from_secs(5))
        .await;
    assert_stream("caller", &got_a, COUNT);
    assert_stream("callee", &got_b, COUNT);
    // Every signal went through both ways: among them the relay's
    // candidates, each with a real mid.
    assert_eq!((pa.errors(), pb.errors()), (vec![], vec![]));
    assert_eq!((pa.offers(), pb.offers()), (0, 0), "the relay offered");
    // A receiver that asks the relay for a keyframe gets the sender asked.
    let before = pa.keyframe_requests();
    pb.ask_for_keyframes().await.unwrap();
    pa.keyframe_requests_above(before).await.unwrap();
    assert!(
        server
            .metric("switchboard_relay_forwarded_packets_total")
            .await
            >= (got_a.len() + got_b.len()) as f64
    );
    assert!(
        server
            .metric("switchboard_relay_keyframe_requests_total")
            .await
            >= 1.0
    );

    // Hang up: the room, its connections and its sockets are released.
    // (The rate limit may hold the asked-for keyframe up to half a second;
    // it has been seen above, so the room is idle now.)
    call.hang_up_closing_the_room(&pa).await;
    for port in ports.0..=ports.1 {
        assert!(bindable(port), "port {port} still held after hangup");
    }
    pa.close().await;
    pb.close().await;
}

#[tokio::test]
async fn a_device_joining_while_the_other_sends_gets_a_keyframe_asked_for() {
    let (call, caller, callee) = accepted_call(&[]).await;
    let server = &call.backend.server;
    let mut pa = MediaPeer::join(caller, &call.sid, &call.a.client_id, Default::default())
        .await
        .unwrap();
    pa.connected().await.unwrap();
    // A sends with nobody to receive it yet.
    pa.send_numbered(0..20, Duration::from_millis(5))
        .await
        .unwrap();
    server
        .metric_reaches("switchboard_relay_sources", 1.0)
        .await;
    assert_eq!(pa.keyframe_requests(), 0);

    // B joins mid-stream: its first answer carries A's track, and once
    // connected it can decode nothing until A sends a keyframe.
    let mut pb = MediaPeer::join(callee, &call.sid, &call.b.client_id, Default::default())
        .await
        .unwrap();
    pb.connected().await.unwrap();
    pa.keyframe_requests_above(0).await.unwrap();
    pa.send_numbered(100..120, Duration::from_millis(5))
        .await
        .unwrap();
    pb.received_any().await.unwrap();
    assert_eq!(pb.offers(), 0, "the relay offered");
    assert_eq!(pb.errors(), Vec::<Value>::new());
    pa.close().await;
    pb.close().await;
}

#[tokio::test]
async fn a_device_back_with_a_new_connection_gets_a_new_one_at_the_relay() {
    let (call, caller, callee) = accepted_call(&[]).await;
    let (pa, mut pb) = call.both_join(caller, callee).await;
    send_both(&pa, &pb, 0..50).await;
    pb.received_any().await.unwrap();

    // A comes back: a new MQTT connection, which the broker takes for a
    // takeover (so the relay keeps A's connection), and a new
    // PeerConnection with new DTLS keys. Its offer must not be applied to
    // the relay's old connection as an ICE restart: that handshake would
    // never come.
    let again = call.backend.server.mqtt_as(&call.a).await;
    pa.close().await;
    let mut pa = MediaPeer::join(again, &call.sid, &call.a.client_id, Default::default())
        .await
        .unwrap();
    pa.connected().await.unwrap();
    assert_eq!(call.peer_connections().await, 2.0);
    // Both ways again, once B has a track for A's new connection (by an
    // offer of the relay's): packets are sent until each side has some.
    const FIRST: u64 = 1_000;
    let mut next = FIRST;
    while !(pa.received_from(FIRST) && pb.received_from(FIRST)) {
        assert!(next < FIRST + 5_000, "nothing through A's new connection");
        send_both(&pa, &pb, next..next + 20).await;
        next += 20;
    }
    assert_eq!((pa.errors(), pb.errors()), (vec![], vec![]));
    pa.close().await;
    pb.close().await;
}

#[tokio::test]
async fn only_the_two_devices_of_an_accepted_call_reach_the_relay() {
    // The devices in the call stay connected throughout.
    let (call, _caller, _callee) = accepted_call(&[]).await;
    let (server, sid) = (&call.backend.server, &call.sid);
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    // C, in no call, and B's tablet, which did not accept: refused at the
    // topic rules, and nothing comes down.
    for (who, device) in [(&call.c, "phone"), (&call.b, "tablet")] {
        let device = server
            .minted_for(&who.id, "user", Some(device), 600)
            .unwrap();
        let client_id = &device.client_id;
        let mut client = server.mqtt_as(&device).await;
        client.subscribe(&device.errors_topic()).await.unwrap();
        let codes = client.subscribe(&down_topic(sid, client_id)).await.unwrap();
        assert_eq!(codes, REFUSED, "{client_id}");
        client
            .publish_json(&up_topic(sid, client_id), &offer)
            .await
            .unwrap();
        let report = calls::next_error(&mut client).await.unwrap();
        assert_eq!(report["code"], "forbidden", "{client_id}: {report}");
        // Nor may anyone read or write another device's signalling.
        let codes = client
            .subscribe(&down_topic(sid, &call.a.client_id))
            .await
            .unwrap();
        assert_eq!(codes, REFUSED);
    }
    // No connection was made for them.
    assert_eq!(call.peer_connections().await, 0.0);
}

#[tokio::test]
async fn bad_signalling_is_refused_and_changes_nothing() {
    let (call, mut caller, _callee) = accepted_call(&[]).await;
    let (a, sid) = (&call.a, &call.sid);
    caller.subscribe(&a.errors_topic()).await.unwrap();
    caller
        .subscribe(&down_topic(sid, &a.client_id))
        .await
        .unwrap();
    let up = up_topic(sid, &a.client_id);
    for (payload, code) in [
        (json!("not an object"), "bad_request"),
        (json!({"type": "offer"}), "bad_request"),
        (json!({"type": "hello", "sdp": "x"}), "bad_request"),
        (
            json!({"type": "offer", "sdp": "x", "extra": 1}),
            "bad_request",
        ),
        // Well formed but meaningless to the relay.
        (
            json!({"type": "offer", "sdp": "this is not SDP"}),
            "bad_request",
        ),
        // SDP, but no media an offer needs (no ICE credentials).
        (
            json!({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"}),
            "bad_request",
        ),
        (json!({"type": "answer", "sdp": "v=0\r\n"}), "bad_request"),
        (
            json!({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}),
            "bad_request",
        ),
    ] {
        caller.publish_json(&up, &payload).await.unwrap();
        let report = calls::next_error(&mut caller).await.unwrap();
        assert_eq!(report["code"], code, "{payload}: {report}");
    }
    assert_eq!(call.peer_connections().await, 0.0);

    // After the call ends the relay answers nobody.
    calls::act(&caller, sid, "hangup").await.unwrap();
    state_until(&mut caller, sid, "ended").await.unwrap();
    caller
        .publish_json(&up, &json!({"type": "offer", "sdp": "v=0\r\n"}))
        .await
        .unwrap();
    let report = calls::next_error(&mut caller).await.unwrap();
    assert_eq!(report["code"], "forbidden", "{report}");
}

#[tokio::test]
async fn peers_allowed_only_relayed_candidates_connect_through_the_embedded_turn_server() {
    let secret = "turn-shared-secret-for-tests-0123";
    let (call, caller, callee) = accepted_call(&[
        ("SWITCHBOARD_TURN_LISTEN_ADDR", "127.0.0.1:0".into()),
        ("SWITCHBOARD_TURN_SECRET", secret.into()),
    ])
    .await;
    let turn = call
        .backend
        .server
        .turn
        .expect("the TURN server's address in the ready line");
    let mut options: [PeerOptions; 2] = Default::default();
    for (who, options) in [&call.a, &call.b].into_iter().zip(&mut options) {
        // Each peer uses what the API hands out, as an app would.
        let r = call
            .backend
            .api
            .get("/v1/ice-servers", &who.access)
            .await
            .unwrap();
        let entry = &r.body["iceServers"][0];
        assert_eq!(entry["urls"][0], format!("turn:{turn}?transport=udp"));
        let ice = RTCIceServer {
            urls: vec![entry["urls"][0].as_str().unwrap().into()],
            username: entry["username"].as_str().unwrap().into(),
            credential: entry["credential"].as_str().unwrap().into(),
        };
        *options = PeerOptions {
            ice_servers: vec![ice],
            relay_only: true,
            ..PeerOptions::default()
        };
    }
    let (pa, pb) = call.both_join_with(caller, callee, options).await;
    send_both(&pa, &pb, 0..250).await;
    let mut peers = [pa, pb];
    for peer in &mut peers {
        peer.received_any().await.unwrap();
        let types = peer.candidate_types();
        assert!(
            !types.is_empty() && types.iter().all(|t| t == "relay"),
            "{types:?}"
        );
    }
    for peer in peers {
        peer.close().await;
    }
}

/// The Python with aiortc and paho-mqtt: `E2E_PYTHON` (the test script
/// makes a virtualenv), or `python3`.
fn python() -> String {
    std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn aiortc_peer(
    role: &str,
    server: &Server,
    sid: &str,
    who: &SignedIn,
    more: &[&str],
) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/aiortc_peer.py");
    std::process::Command::new(python())
        .arg(script)
        .arg(role)
        .args(["--host", &server.mqtt.ip().to_string()])
        .args(["--port", &server.mqtt.port().to_string()])
        .args(["--sid", sid, "--client-id", &who.client_id])
        .args(["--user", &who.id, "--token", &who.access])
        .args(more)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (aiortc and paho-mqtt, installed by scripts/test): {e}",
                python()
            )
        })
}

/// An aiortc peer sends VP8 to another (started with `receiver_args`)
/// through the relay: what the receiver saw, once it decoded 60 frames.
async fn aiortc_call(receiver_args: &[&str]) -> Value {
    let (call, caller, callee) = accepted_call(&[]).await;
    let server = &call.backend.server;
    // The devices' MQTT sessions pass to the Python processes.
    drop((caller, callee));
    let mut sender = aiortc_peer("send", server, &call.sid, &call.a, &[]);
    let receiver = aiortc_peer("receive", server, &call.sid, &call.b, receiver_args);
    let output = tokio::task::spawn_blocking(move || receiver.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let _ = sender.kill();
    let _ = sender.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the aiortc receiver ({}) failed (its errors are above; scripts/test installs aiortc and sets E2E_PYTHON): {stdout}",
        python()
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("aiortc receiver: {seen}");
    assert!(seen["decoded"].as_u64().unwrap() >= 60, "{seen}");
    assert_eq!(seen["sizes"], json!(["320x240"]), "{seen}");
    assert_eq!(seen["errors"], json!([]), "{seen}");
    seen
}

#[tokio::test]
async fn an_aiortc_peer_sends_vp8_that_another_aiortc_peer_decodes_through_the_relay() {
    let seen = aiortc_call(&[]).await;
    // The relay's first answer had a track for the sender's video.
    assert_eq!(
        (&seen["offers"], &seen["tracks"]),
        (&json!(0), &json!(1)),
        "{seen}"
    );
}

#[tokio::test]
async fn a_receiver_preferring_another_codec_gets_the_video_on_its_one_track() {
    // The receiver prefers H264, so the relay's first answer has an H264
    // track for it; the sender's VP8 then comes on that line, by an offer
    // of the relay's, instead of on a second line beside a track that
    // never plays.
    let seen = aiortc_call(&["--prefer", "H264"]).await;
    assert_eq!(
        (&seen["offers"], &seen["tracks"]),
        (&json!(1), &json!(1)),
        "{seen}"
    );
}

#[tokio::test]
async fn a_device_that_goes_offline_loses_its_connection_and_the_other_keeps_its_own() {
    let (call, caller, callee) = accepted_call(&[]).await;
    let (pa, pb) = call.both_join(caller, callee).await;
    assert_eq!(call.peer_connections().await, 2.0);
    // B's app dies: its MQTT connection goes with it.
    pb.close().await;
    call.backend
        .server
        .metric_reaches("switchboard_relay_peer_connections", 1.0)
        .await;
    assert_eq!(
        call.backend.server.metric("switchboard_relay_rooms").await,
        1.0
    );
    // The call goes on for A, whose connection still stands.
    call.hang_up_closing_the_room(&pa).await;
    pa.close().await;
}

#[tokio::test]
async fn a_track_added_mid_call_is_offered_to_the_other_device() {
    let (call, caller, callee) = accepted_call(&[]).await;
    let (pa, mut pb) = call.both_join(caller, callee).await;
    pa.send_numbered(0..100, Duration::from_millis(2))
        .await
        .unwrap();
    assert_eq!(pb.forwarded_kinds(1).await.unwrap(), ["video"]);
    // A turns its microphone on: it offers the new track, the relay
    // answers, and then offers it to B.
    pa.add_audio_and_offer().await.unwrap();
    assert_eq!(pb.forwarded_kinds(2).await.unwrap(), ["audio", "video"]);
    pa.close().await;
    pb.close().await;
}
