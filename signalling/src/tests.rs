//! One test per transition, and the multi-device, busy and glare cases.

use super::*;

const CALLER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CALLEE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const THIRD: &str = "cccccccccccccccccccccccccccccccc";
const RING: i64 = 30_000;

fn sid(n: u8) -> Sid {
    format!("{n:032x}").parse().unwrap()
}

fn cid(user: &str, device: &str) -> ClientId {
    format!("{user}:{device}").parse().unwrap()
}

fn id(user: &str) -> Id {
    user.parse().unwrap()
}

fn inv(sid: Sid, caller: ClientId, callee: Id, kind: CallKind) -> Invitation {
    Invitation {
        sid,
        caller,
        callee,
        kind,
    }
}

/// A call from CALLER:phone to CALLEE at time 0.
fn started() -> Calls {
    let mut calls = Calls::new();
    let r = calls
        .invite(
            inv(sid(1), cid(CALLER, "phone"), id(CALLEE), CallKind::Video),
            0,
            RING,
        )
        .unwrap();
    assert_eq!(r.call.state, CallStateKind::Inviting);
    assert_eq!(r.ended, None);
    calls
}

fn act(
    calls: &mut Calls,
    user: &str,
    device: &str,
    a: CallActionKind,
    at: i64,
) -> Result<Option<Call>, Refusal> {
    calls.act(&sid(1), &cid(user, device), a, at)
}

use CallActionKind::{Accept, Cancel, Decline, Hangup, Ringing};

#[test]
fn ringing_then_accepted_then_hung_up() {
    let mut c = started();
    let call = act(&mut c, CALLEE, "phone", Ringing, 1).unwrap().unwrap();
    assert_eq!(call.state, CallStateKind::Ringing);
    assert_eq!(
        act(&mut c, CALLEE, "phone", Ringing, 2),
        Ok(None),
        "repeated ringing changes nothing"
    );
    let call = act(&mut c, CALLEE, "phone", Accept, 3).unwrap().unwrap();
    assert_eq!(call.state, CallStateKind::Accepted);
    assert_eq!(call.accepted_by, Some(cid(CALLEE, "phone")));
    assert_eq!(call.accepted_at, Some(3));
    let call = act(&mut c, CALLER, "phone", Hangup, 10).unwrap().unwrap();
    assert_eq!(
        (call.state, call.reason),
        (CallStateKind::Ended, Some(EndReason::Hangup))
    );
    assert_eq!(call.ended_at, Some(10));
    assert_eq!(
        act(&mut c, CALLEE, "phone", Hangup, 11),
        Err(Refusal::Ended)
    );
}

#[test]
fn the_callee_may_hang_up_too() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Accept, 1).unwrap();
    let call = act(&mut c, CALLEE, "phone", Hangup, 2).unwrap().unwrap();
    assert_eq!(call.reason, Some(EndReason::Hangup));
}

#[test]
fn first_accept_wins_and_other_devices_end_answered_elsewhere() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    act(&mut c, CALLEE, "tablet", Ringing, 1).unwrap();
    let call = act(&mut c, CALLEE, "tablet", Accept, 2).unwrap().unwrap();
    assert_eq!(
        call.legs[&cid(CALLEE, "phone")],
        LegState::AnsweredElsewhere
    );
    assert_eq!(call.legs[&cid(CALLEE, "tablet")], LegState::Accepted);
    assert_eq!(
        act(&mut c, CALLEE, "phone", Accept, 3),
        Err(Refusal::NotNow("accept"))
    );
    assert_eq!(
        act(&mut c, CALLEE, "phone", Hangup, 4),
        Err(Refusal::NotInCall),
        "only the device in the call hangs up for the callee"
    );
}

#[test]
fn decline_ends_the_call_only_from_the_last_ringing_device() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    act(&mut c, CALLEE, "tablet", Ringing, 1).unwrap();
    let call = act(&mut c, CALLEE, "phone", Decline, 2).unwrap().unwrap();
    assert_eq!(call.state, CallStateKind::Ringing, "the tablet still rings");
    assert_eq!(call.legs[&cid(CALLEE, "phone")], LegState::Declined);
    let call = act(&mut c, CALLEE, "tablet", Decline, 3).unwrap().unwrap();
    assert_eq!(
        (call.state, call.reason),
        (CallStateKind::Ended, Some(EndReason::Declined))
    );
}

#[test]
fn the_caller_may_cancel_before_an_answer() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    let call = act(&mut c, CALLER, "laptop", Cancel, 2).unwrap().unwrap();
    assert_eq!(call.reason, Some(EndReason::Cancelled));
    assert_eq!(call.legs[&cid(CALLEE, "phone")], LegState::Ended);
    let mut c = started();
    act(&mut c, CALLEE, "phone", Accept, 1).unwrap();
    assert_eq!(
        act(&mut c, CALLER, "phone", Cancel, 2),
        Err(Refusal::NotNow("cancel"))
    );
}

#[test]
fn unanswered_calls_end_missed_at_their_deadline() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    assert_eq!(c.expire(&sid(1), RING - 1), None);
    assert_eq!(c.expire(&sid(2), RING), None, "no such call");
    c.invite(
        inv(sid(3), cid(THIRD, "phone"), id(CALLEE), CallKind::Audio),
        0,
        RING,
    )
    .unwrap();
    let missed = c.expire(&sid(1), RING).unwrap();
    assert_eq!(missed.reason, Some(EndReason::Missed));
    assert!(
        c.get(&sid(3)).unwrap().is_live(),
        "another call due goes its own way"
    );
    assert_eq!(
        act(&mut c, CALLEE, "phone", Accept, RING + 1),
        Err(Refusal::Ended),
        "a late accept sees the end"
    );
    assert_eq!(c.expire(&sid(1), RING * 2), None, "it ends once");
    // Ended calls are forgotten later.
    c.forget_ended(RING + KEEP_ENDED_MS - 1);
    assert!(c.get(&sid(1)).is_some());
    c.forget_ended(RING + KEEP_ENDED_MS);
    assert!(c.get(&sid(1)).is_none());
    // Accepted calls have no deadline.
    let mut c = started();
    act(&mut c, CALLEE, "phone", Accept, 1).unwrap();
    assert_eq!(c.expire(&sid(1), RING * 10), None);
}

/// Each change counts one; a node hearing of them out of order keeps the
/// newest, and only a live call can fail.
#[test]
fn versions_count_the_changes_and_the_newest_is_kept() {
    let mut c = started();
    let first = c.get(&sid(1)).unwrap().clone();
    assert_eq!(first.version, 1);
    // (device, action, version after it)
    let steps = [
        ("phone", Ringing, 2),
        ("phone", Ringing, 2),
        ("tablet", Ringing, 3),
        ("phone", Decline, 4),
        ("tablet", Accept, 5),
    ];
    for (device, action, version) in steps {
        act(&mut c, CALLEE, device, action, 1).unwrap();
        assert_eq!(
            c.get(&sid(1)).unwrap().version,
            version,
            "{device} {action:?}"
        );
    }
    let accepted = c.get(&sid(1)).unwrap().clone();
    let mut other = Calls::new();
    assert!(other.apply(accepted.clone()));
    assert!(!other.apply(first), "older");
    assert!(!other.apply(accepted.clone()), "the same");
    assert_eq!(other.get(&sid(1)), Some(&accepted));

    let mut failed = accepted;
    assert!(failed.fail(7));
    assert_eq!(
        (failed.state, failed.reason, failed.ended_at, failed.version),
        (CallStateKind::Ended, Some(EndReason::Failed), Some(7), 6)
    );
    assert!(!failed.fail(8), "ended already");
    assert!(other.apply(failed));
}

#[test]
fn a_callee_in_a_call_is_busy() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Accept, 1).unwrap();
    let r = c
        .invite(
            inv(sid(2), cid(THIRD, "phone"), id(CALLEE), CallKind::Audio),
            2,
            RING,
        )
        .unwrap();
    assert_eq!(
        (r.call.state, r.call.reason),
        (CallStateKind::Ended, Some(EndReason::Busy))
    );
    // The caller of an accepted call is busy too.
    let r = c
        .invite(
            inv(sid(3), cid(THIRD, "phone"), id(CALLER), CallKind::Audio),
            2,
            RING,
        )
        .unwrap();
    assert_eq!(r.call.reason, Some(EndReason::Busy));
}

#[test]
fn glare_leaves_exactly_one_call_the_smaller_id() {
    // Second invite has the larger id: it loses.
    let mut c = started();
    let r = c
        .invite(
            inv(sid(9), cid(CALLEE, "phone"), id(CALLER), CallKind::Video),
            1,
            RING,
        )
        .unwrap();
    assert_eq!(r.call.reason, Some(EndReason::Busy));
    assert_eq!(r.ended, None);
    assert!(c.get(&sid(1)).unwrap().is_live());

    // Second invite has the smaller id: the first one ends.
    let mut c = Calls::new();
    c.invite(
        inv(sid(9), cid(CALLER, "phone"), id(CALLEE), CallKind::Video),
        0,
        RING,
    )
    .unwrap();
    let r = c
        .invite(
            inv(sid(1), cid(CALLEE, "phone"), id(CALLER), CallKind::Video),
            1,
            RING,
        )
        .unwrap();
    assert!(r.call.is_live());
    assert_eq!(r.ended.unwrap().reason, Some(EndReason::Busy));
    assert_eq!(c.live().filter(|c| c.involves(&id(CALLER))).count(), 1);
}

#[test]
fn bad_invites_and_actions_change_nothing() {
    let mut c = started();
    let again = c.invite(
        inv(sid(1), cid(THIRD, "phone"), id(CALLEE), CallKind::Video),
        1,
        RING,
    );
    assert_eq!(again, Err(Refusal::SessionIdUsed));
    let own = c.invite(
        inv(sid(6), cid(THIRD, "phone"), id(THIRD), CallKind::Video),
        1,
        RING,
    );
    assert_eq!(own, Err(Refusal::SelfCall));
    assert_eq!(
        act(&mut c, THIRD, "phone", Hangup, 1),
        Err(Refusal::NotInCall)
    );
    assert_eq!(
        c.act(&sid(7), &cid(CALLER, "phone"), Cancel, 1),
        Err(Refusal::NoSuchCall)
    );
    assert_eq!(
        act(&mut c, CALLER, "phone", Accept, 1),
        Err(Refusal::NotNow("accept")),
        "callers do not accept"
    );
    assert_eq!(
        act(&mut c, CALLEE, "phone", Cancel, 1),
        Err(Refusal::NotNow("cancel")),
        "callees decline"
    );
    assert_eq!(
        act(&mut c, CALLER, "phone", Ringing, 1),
        Err(Refusal::NotNow("ringing"))
    );
    assert_eq!(
        act(&mut c, CALLEE, "phone", Hangup, 1),
        Err(Refusal::NotNow("hangup"))
    );
    let call = c.get(&sid(1)).unwrap();
    assert_eq!(call.state, CallStateKind::Inviting);
    assert!(call.legs.is_empty());
}

#[test]
fn wire_form_names_the_legs() {
    let mut c = started();
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    let wire = c.get(&sid(1)).unwrap().wire();
    assert_eq!(wire.legs[&format!("{CALLEE}:phone")], LegState::Ringing);
    assert_eq!(wire.caller, id(CALLER));
}

/// Which devices a late subscriber's invite is served to, as the call goes.
#[test]
fn an_invite_is_shown_to_the_callees_devices_until_answered_or_declined() {
    let (phone, tablet, caller) = (
        cid(CALLEE, "phone"),
        cid(CALLEE, "tablet"),
        cid(CALLER, "phone"),
    );
    let ringing = |c: &Calls, device: &ClientId| c.get(&sid(1)).unwrap().rings_for(device);
    let mut c = started();
    for (device, shown) in [
        (&phone, true),
        (&tablet, true),
        (&caller, false),
        (&cid(THIRD, "phone"), false),
    ] {
        assert_eq!(ringing(&c, device), shown, "inviting, {device}");
    }
    act(&mut c, CALLEE, "phone", Ringing, 1).unwrap();
    act(&mut c, CALLEE, "tablet", Ringing, 1).unwrap();
    act(&mut c, CALLEE, "phone", Decline, 2).unwrap();
    assert!(!ringing(&c, &phone), "the phone declined");
    assert!(ringing(&c, &tablet), "the tablet still rings");
    assert!(
        ringing(&c, &cid(CALLEE, "laptop")),
        "a device that never rang"
    );
    act(&mut c, CALLEE, "tablet", Accept, 3).unwrap();
    for device in [&phone, &tablet, &cid(CALLEE, "laptop")] {
        assert!(!ringing(&c, device), "answered, {device}");
    }
    let call = c.get(&sid(1)).unwrap();
    let invite = call.invite();
    assert_eq!(
        (
            invite.sid,
            invite.from,
            invite.from_device,
            invite.kind,
            invite.sent_at
        ),
        (
            sid(1),
            id(CALLER),
            caller.device.clone(),
            CallKind::Video,
            0
        )
    );
}
