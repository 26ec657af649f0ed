//! The web app the server serves at `/`, driven in headless Chromium by
//! `web/tests/app.mjs` (playwright-core, a fake camera and microphone):
//! two people sign in with codes from the SMS webhook, see each other
//! online, call with video, decode each other's video and hear the audio,
//! restart ICE and keep decoding, drop the connection to the server and
//! decode again on a new media connection, mute, turn the camera off, hang up; a
//! copied tab is a device of its own; a second device answers elsewhere
//! while a call from the first finds the user busy; calls are declined and
//! cancelled; a robot (the SDK's example) is paired, called and commanded. Screenshots of the calls go to
//! `target/web-screenshots`. `scripts/test` installs Chromium and the
//! web package's npm dependencies.

use std::path::PathBuf;

use switchboard_e2e::examples::robot;
use switchboard_e2e::{run_to_end, Backend};

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test]
async fn the_web_app_signs_in_calls_with_video_and_commands_a_robot() {
    // Tokens of 4 s, connections closed 1 s past them: the pages' sessions
    // live only by renewing theirs, again and again, as the test runs.
    let w = Backend::start_with(|server| {
        server
            .env("SWITCHBOARD_ACCESS_TOKEN_TTL_S", "4")
            .env("SWITCHBOARD_TOKEN_GRACE_S", "1")
            // The robot's code outlives a slow run.
            .env("SWITCHBOARD_PAIRING_CODE_TTL_S", "600")
    })
    .await;
    let page = reqwest::get(&w.server.http).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"/app.js\">"),
        "{html}"
    );

    let (_robot, _out, code) = robot(&w, 200).await;

    let chromium = std::env::var("E2E_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = workspace().join("web/tests/app.mjs");
    let shots = workspace().join("target/web-screenshots");
    let mut node = std::process::Command::new("node");
    node.arg(&script)
        .env("SB_URL", &w.server.http)
        .env("SB_SMS", w.sms.url.clone())
        .env("SB_PAIR_CODE", code)
        .env("CHROMIUM", chromium)
        .env("SB_SCREENSHOTS", &shots);
    run_to_end(node, "browser").await;
    for shot in ["call-ana.png", "call-ben.png", "robot-ana.png"] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
}
