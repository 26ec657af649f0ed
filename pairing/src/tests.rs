use super::*;

const ROBOT: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";
const USER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn id(s: &str) -> Id {
    s.replace('r', "e").parse().unwrap()
}

fn code(n: u32) -> PairingCode {
    format!("{n:06}").parse().unwrap()
}

/// A deterministic "random" source for tests.
fn numbers(list: &[u32]) -> impl FnMut() -> u32 + '_ {
    let mut i = 0;
    move || {
        i += 1;
        list[i - 1]
    }
}

#[test]
fn a_code_is_looked_up_then_claimed_once() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (k, expires) = c.issue(id(ROBOT), 0, numbers(&[123456]));
    assert_eq!((k.as_str(), expires), ("123456", CODE_TTL_MS));
    assert_eq!(c.claim(&id(USER), &k, 1), Err(PairingRefusal::NotLooked));
    assert_eq!(c.look(&id(USER), &k, 1), Ok(id(ROBOT)));
    assert!(c.looked(&id(USER), &k, 2));
    assert_eq!(c.claim(&id(USER), &k, 2), Ok(id(ROBOT)));
    assert_eq!(
        c.claim(&id(USER), &k, 3),
        Err(PairingRefusal::NoSuchCode),
        "burned"
    );
    assert_eq!(c.look(&id(OTHER), &k, 3), Err(PairingRefusal::NoSuchCode));
}

#[test]
fn codes_are_unique_among_live_ones_and_one_per_robot() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (first, _) = c.issue(id(ROBOT), 0, numbers(&[42]));
    let (second, _) = c.issue(id(USER), 0, numbers(&[42, 1_000_042, 7]));
    assert_eq!(first.as_str(), "000042");
    assert_eq!(
        second.as_str(),
        "000007",
        "a live code is never issued twice"
    );
    let (again, _) = c.issue(id(ROBOT), 1, numbers(&[9]));
    assert_eq!(
        c.robot_of(&first, 1),
        None,
        "a robot's new code replaces its old one"
    );
    assert_eq!(c.robot_of(&again, 1), Some(&id(ROBOT)));
}

#[test]
fn codes_expire() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (k, _) = c.issue(id(ROBOT), 0, numbers(&[5]));
    c.look(&id(USER), &k, 1).unwrap();
    assert_eq!(
        c.claim(&id(USER), &k, CODE_TTL_MS),
        Err(PairingRefusal::NoSuchCode)
    );
    assert_eq!(c.tick(CODE_TTL_MS), vec![(k.clone(), id(ROBOT))]);
    assert!(c.tick(CODE_TTL_MS + 1).is_empty());
}

#[test]
fn five_distinct_codes_a_minute_then_locked_out() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (real, _) = c.issue(id(ROBOT), 0, numbers(&[999_999]));
    for n in 0..5 {
        assert_eq!(
            c.look(&id(USER), &code(n), 1),
            Err(PairingRefusal::NoSuchCode)
        );
    }
    assert_eq!(
        c.look(&id(USER), &code(0), 2),
        Err(PairingRefusal::NoSuchCode),
        "a code again is no new try"
    );
    assert_eq!(
        c.look(&id(USER), &real, 3),
        Err(PairingRefusal::TooManyTries)
    );
    assert_eq!(
        c.look(&id(USER), &real, LOOK_WINDOW_MS + 10),
        Err(PairingRefusal::TooManyTries),
        "locked out past the window"
    );
    assert_eq!(
        c.look(&id(OTHER), &real, 4),
        Ok(id(ROBOT)),
        "others are not affected"
    );
    let (fresh, _) = c.issue(id(ROBOT), LOCKOUT_MS, numbers(&[777_777]));
    assert_eq!(
        c.look(&id(USER), &fresh, 3 + LOCKOUT_MS),
        Ok(id(ROBOT)),
        "the lockout ends"
    );
}

#[test]
fn a_robot_cannot_claim_its_own_code() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (k, _) = c.issue(id(ROBOT), 0, numbers(&[1]));
    c.look(&id(ROBOT), &k, 1).unwrap();
    assert_eq!(c.claim(&id(ROBOT), &k, 1), Err(PairingRefusal::RobotClaim));
}
