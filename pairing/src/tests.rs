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
    let (k, expires, replaced) = c.issue(id(ROBOT), 0, numbers(&[123456]));
    assert_eq!(
        (k.as_str(), expires, replaced),
        ("123456", CODE_TTL_MS, None)
    );
    assert_eq!(c.claim(&id(USER), &k, 1), Err(PairingRefusal::NotLooked));
    assert_eq!(c.look(&id(USER), None, &k, 1), Ok(id(ROBOT)));
    assert!(c.looked(&id(USER), &k, 2));
    assert_eq!(c.claim(&id(USER), &k, 2), Ok(id(ROBOT)));
    assert_eq!(
        c.claim(&id(USER), &k, 3),
        Err(PairingRefusal::NoSuchCode),
        "burned"
    );
    assert_eq!(
        c.look(&id(OTHER), None, &k, 3),
        Err(PairingRefusal::NoSuchCode)
    );
}

#[test]
fn codes_are_unique_among_live_ones_and_one_per_robot() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (first, _, _) = c.issue(id(ROBOT), 0, numbers(&[42]));
    let (second, _, _) = c.issue(id(USER), 0, numbers(&[42, 1_000_042, 7]));
    assert_eq!(first.as_str(), "000042");
    assert_eq!(
        second.as_str(),
        "000007",
        "a live code is never issued twice"
    );
    let (again, _, replaced) = c.issue(id(ROBOT), 1, numbers(&[9]));
    assert_eq!(replaced, Some(first.clone()), "to be finished");
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
    let (k, _, _) = c.issue(id(ROBOT), 0, numbers(&[5]));
    c.look(&id(USER), None, &k, 1).unwrap();
    assert_eq!(
        c.claim(&id(USER), &k, CODE_TTL_MS),
        Err(PairingRefusal::NoSuchCode)
    );
    assert_eq!(c.tick(CODE_TTL_MS), vec![(k.clone(), id(ROBOT))]);
    assert!(c.tick(CODE_TTL_MS + 1).is_empty());
}

#[test]
fn wrong_codes_use_up_the_budget_and_the_right_one_does_not() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (real, _, _) = c.issue(id(ROBOT), 0, numbers(&[999_999]));
    let home = Some("203.0.113.5".parse().unwrap());
    assert_eq!(c.look(&id(USER), home, &real, 1), Ok(id(ROBOT)));
    assert_eq!(
        c.look(&id(USER), home, &real, 2),
        Ok(id(ROBOT)),
        "hits cost nothing"
    );
    for n in 0..PER_USER as u32 {
        assert_eq!(
            c.look(&id(USER), home, &code(n), 3),
            Err(PairingRefusal::NoSuchCode)
        );
    }
    assert_eq!(
        c.look(&id(USER), home, &real, 4),
        Err(PairingRefusal::TooManyTries),
        "refused before the code is even read"
    );
    assert_eq!(
        c.look(&id(OTHER), Some("198.51.100.1".parse().unwrap()), &real, 5),
        Ok(id(ROBOT)),
        "others are not affected"
    );
}

#[test]
fn a_robot_cannot_claim_its_own_code() {
    let mut c = Codes::new(CODE_TTL_MS);
    let (k, _, _) = c.issue(id(ROBOT), 0, numbers(&[1]));
    c.look(&id(ROBOT), None, &k, 1).unwrap();
    assert_eq!(c.claim(&id(ROBOT), &k, 1), Err(PairingRefusal::RobotClaim));
}
