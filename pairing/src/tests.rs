use super::*;

const ROBOT: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
const USER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn id(s: &str) -> Id {
    s.parse().unwrap()
}

#[test]
fn codes_are_six_digits() {
    let cases = [
        (0, "000000"),
        (42, "000042"),
        (999_999, "999999"),
        (1_000_042, "000042"),
    ];
    for (random, want) in cases {
        assert_eq!(code_from(random).as_str(), want, "{random}");
    }
}

#[test]
fn only_a_user_who_looked_claims_a_robot() {
    let cases = [
        (USER, true, Ok(id(ROBOT))),
        (USER, false, Err(PairingRefusal::NotLooked)),
        (ROBOT, true, Err(PairingRefusal::RobotClaim)),
    ];
    for (who, looked, want) in cases {
        assert_eq!(claim(id(ROBOT), &id(who), looked), want, "{who} {looked}");
    }
}
