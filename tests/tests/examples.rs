//! The SDK's command-line examples, run as processes against the real
//! server, with an SDK session on the other side. `scripts/test` builds
//! them (`cargo build --workspace --examples`).

use std::io::Write;

use switchboard_e2e::examples::{example, robot, Output, Running};
use switchboard_e2e::sdk::user;
use switchboard_e2e::Backend;
use switchboard_sdk::{CallStateKind, Visibility};

#[tokio::test]
async fn the_robot_example_pairs_accepts_and_moves() {
    let w = Backend::start().await;
    let (_running, mut out, code) = robot(&w, 10).await;

    let owner = user(&w, "+48555000601", "phone").await.unwrap();
    let robot_id = owner.session.pair(code).await.unwrap();
    out.line_with("paired with").await;
    let sid = owner
        .session
        .call(robot_id, switchboard_sdk::CallKind::Video)
        .await
        .unwrap();
    owner.state_of(&sid, CallStateKind::Accepted).await.unwrap();
    let pending = owner.move_to(&sid, "door").await.unwrap();
    for status in ["moving", "arrived"] {
        assert_eq!(pending.next_reply(10_000).await.unwrap().status, status);
    }
    owner.session.hangup(sid).await.unwrap();
}

#[tokio::test]
async fn the_phone_example_signs_in_sees_a_contact_and_calls() {
    let w = Backend::start().await;
    let callee = user(&w, "+48555000702", "phone").await.unwrap();
    // Anyone may see the callee, so the new phone sees it online.
    callee
        .session
        .set_visibility(Visibility::Everyone)
        .await
        .unwrap();
    let mut child = example("phone")
        .args(["--server", &w.server.http, "--phone", "+48555000701"])
        .args(["--contact", "+48555000702", "--call", "+48555000702"])
        .spawn()
        .unwrap();
    let mut out = Output::of(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let mut running = Running(child);
    out.line_with("type it").await;
    let code = w.sms.code_for("+48555000701").await.unwrap();
    writeln!(stdin, "{code}").unwrap();
    let caller_id = out.line_with("signed in as").await;
    let caller_id = caller_id.trim().rsplit(' ').next().unwrap().to_owned();
    out.line_with("+48555000702 is online").await;
    let call = callee.incoming().await.unwrap();
    assert_eq!(call.caller, caller_id);
    callee.session.accept(call.sid.clone()).await.unwrap();
    out.line_with("call Accepted").await;
    callee.session.hangup(call.sid).await.unwrap();
    out.line_with("call ended: Hangup").await;
    let status = tokio::task::spawn_blocking(move || running.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
