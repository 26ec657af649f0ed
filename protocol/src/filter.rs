//! What a client names in SUBSCRIBE: a topic of the contract, or one of the
//! few filters whose wildcards the rules can allow. Parsed once, then the
//! rules (`acl`) and the server's handlers match on the same value.
//!
//! A wildcard anywhere else (standing for another user, call or code) is
//! refused at parse time, so no rule ever sees one.

use std::fmt;
use std::str::FromStr;

use crate::acl::Denial;
use crate::ids::{Id, Sid};
use crate::topic::{CommandPart, Topic};

/// A wildcard level of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wild {
    /// `+`: one level.
    One,
    /// `#`: every level below.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    /// A topic of the contract, no wildcard.
    Topic(Topic),
    /// `users/<id>/+` or `users/<id>/#`: everything a user shows.
    User(Id, Wild),
    /// `invite/<id>/+` or `invite/<id>/#`: a user's inbox of invites.
    Invites(Id, Wild),
    /// `session/<sid>/+/request|response`: every command of one call, so a
    /// robot need not list the commands it serves.
    Commands { sid: Sid, part: CommandPart },
}

impl Filter {
    /// Every filter that reaches `user`'s own topics: the rules never let
    /// a wildcard stand for the user, so there are no others.
    pub fn reaching_user(user: &Id) -> [Filter; 5] {
        let [info, is_connected, presence] = Topic::of_user(user);
        [
            Filter::Topic(info),
            Filter::Topic(is_connected),
            Filter::Topic(presence),
            Filter::User(user.clone(), Wild::One),
            Filter::User(user.clone(), Wild::Rest),
        ]
    }

    /// The user topics this filter matches, when it is about one user's
    /// topics (whose state the server holds); `None` for any other.
    pub fn user_topics(&self) -> Option<Vec<Topic>> {
        match self {
            Filter::Topic(
                t @ (Topic::UserInfo(_) | Topic::UserIsConnected(_) | Topic::UserPresence(_)),
            ) => Some(vec![t.clone()]),
            Filter::User(id, _) => Some(Topic::of_user(id).to_vec()),
            _ => None,
        }
    }
}

impl Wild {
    fn as_str(self) -> &'static str {
        match self {
            Wild::One => "+",
            Wild::Rest => "#",
        }
    }

    fn parse(level: &str) -> Option<Wild> {
        match level {
            "+" => Some(Wild::One),
            "#" => Some(Wild::Rest),
            _ => None,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Topic(topic) => topic.fmt(f),
            Filter::User(id, wild) => write!(f, "users/{id}/{}", wild.as_str()),
            Filter::Invites(id, wild) => write!(f, "invite/{id}/{}", wild.as_str()),
            Filter::Commands { sid, part } => write!(f, "session/{sid}/+/{}", part.as_str()),
        }
    }
}

impl FromStr for Filter {
    type Err = Denial;

    /// `System` for `$` topics, `Wildcard` for a wildcard the rules could
    /// never allow, `NotInContract` for anything else outside the contract.
    fn from_str(s: &str) -> Result<Self, Denial> {
        if s.starts_with('$') {
            return Err(Denial::System);
        }
        if let Ok(topic) = s.parse() {
            return Ok(Filter::Topic(topic));
        }
        let levels: Vec<&str> = s.split('/').collect();
        match with_wildcard(&levels) {
            Some(filter) => filter,
            None if levels.iter().any(|l| Wild::parse(l).is_some()) => Err(Denial::Wildcard),
            None => Err(Denial::NotInContract),
        }
    }
}

/// The filters with a wildcard the rules can allow; `None` for any other
/// shape.
fn with_wildcard(levels: &[&str]) -> Option<Result<Filter, Denial>> {
    let filter = match *levels {
        ["users", owner, rest] => {
            let wild = Wild::parse(rest)?;
            concrete(owner).map(|id| Filter::User(id, wild))
        }
        ["invite", callee, rest] => {
            let wild = Wild::parse(rest)?;
            concrete(callee).map(|id| Filter::Invites(id, wild))
        }
        ["session", sid, "+", part] => {
            let part = CommandPart::parse(part)?;
            concrete(sid).map(|sid| Filter::Commands { sid, part })
        }
        _ => return None,
    };
    Some(filter)
}

/// The value of a slot that names a user or a call: a wildcard there would
/// reach others'.
fn concrete<T: FromStr>(level: &str) -> Result<T, Denial> {
    match Wild::parse(level) {
        Some(_) => Err(Denial::Wildcard),
        None => level.parse().map_err(|_| Denial::NotInContract),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";
    const SID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_filters_the_rules_can_allow() {
        let id: Id = ID.parse().unwrap();
        let sid: Sid = SID.parse().unwrap();
        let cases: Vec<(String, Result<Filter, Denial>)> = vec![
            (
                format!("users/{ID}/info"),
                Ok(Filter::Topic(Topic::UserInfo(id.clone()))),
            ),
            (
                format!("users/{ID}/+"),
                Ok(Filter::User(id.clone(), Wild::One)),
            ),
            (
                format!("users/{ID}/#"),
                Ok(Filter::User(id.clone(), Wild::Rest)),
            ),
            (
                format!("invite/{ID}/+"),
                Ok(Filter::Invites(id.clone(), Wild::One)),
            ),
            (
                format!("invite/{ID}/#"),
                Ok(Filter::Invites(id, Wild::Rest)),
            ),
            (
                format!("session/{SID}/+/request"),
                Ok(Filter::Commands {
                    sid: sid.clone(),
                    part: CommandPart::Request,
                }),
            ),
            (
                format!("session/{SID}/+/response"),
                Ok(Filter::Commands {
                    sid,
                    part: CommandPart::Response,
                }),
            ),
            ("$SYS/#".into(), Err(Denial::System)),
            ("$share/g/users/x/info".into(), Err(Denial::System)),
            ("#".into(), Err(Denial::Wildcard)),
            ("users/+/info".into(), Err(Denial::Wildcard)),
            ("users/+/#".into(), Err(Denial::Wildcard)),
            ("invite/#".into(), Err(Denial::Wildcard)),
            (format!("session/{SID}/#"), Err(Denial::Wildcard)),
            (format!("session/{SID}/#/request"), Err(Denial::Wildcard)),
            ("session/+/+/request".into(), Err(Denial::Wildcard)),
            (
                format!("session/{SID}/webrtc/+/down"),
                Err(Denial::Wildcard),
            ),
            ("pairing/+/robotID".into(), Err(Denial::Wildcard)),
            ("users/not-an-id/+".into(), Err(Denial::NotInContract)),
            ("session/short/+/request".into(), Err(Denial::NotInContract)),
            (format!("users/{ID}/secrets"), Err(Denial::NotInContract)),
            ("foo/bar".into(), Err(Denial::NotInContract)),
            ("".into(), Err(Denial::NotInContract)),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Filter>(), want, "{s:?}");
        }
    }

    #[test]
    fn the_filters_reaching_a_user_name_that_user() {
        let id: Id = ID.parse().unwrap();
        let names: Vec<String> = Filter::reaching_user(&id)
            .iter()
            .map(Filter::to_string)
            .collect();
        let leaves = ["info", "isConnected", "presence", "+", "#"];
        let want: Vec<String> = leaves.iter().map(|l| format!("users/{ID}/{l}")).collect();
        assert_eq!(names, want);
    }

    #[test]
    fn a_filter_on_a_users_topics_names_them() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("users/ID/info", Some(&["users/ID/info"])),
            ("users/ID/isConnected", Some(&["users/ID/isConnected"])),
            ("users/ID/presence", Some(&["users/ID/presence"])),
            (
                "users/ID/+",
                Some(&["users/ID/info", "users/ID/isConnected", "users/ID/presence"]),
            ),
            (
                "users/ID/#",
                Some(&["users/ID/info", "users/ID/isConnected", "users/ID/presence"]),
            ),
            ("invite/ID/+", None),
            ("clients/ID/errors", None),
        ];
        for (filter, want) in cases {
            let filter: Filter = filter.replace("ID", ID).parse().unwrap();
            let got: Option<Vec<String>> = filter
                .user_topics()
                .map(|ts| ts.iter().map(Topic::to_string).collect());
            let want: Option<Vec<String>> =
                want.map(|ts| ts.iter().map(|t| t.replace("ID", ID)).collect());
            assert_eq!(got, want, "{filter}");
        }
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("+".to_string()),
            Just("#".to_string()),
            Just("users".to_string()),
            Just("invite".to_string()),
            Just("session".to_string()),
            Just("request".to_string()),
            Just("info".to_string()),
            Just(ID.to_string()),
            Just(SID.to_string()),
            "[a-z]{0,3}",
        ]
    }

    proptest! {
        #[test]
        fn display_inverts_parse(levels in proptest::collection::vec(level(), 1..5)) {
            let s = levels.join("/");
            if let Ok(filter) = s.parse::<Filter>() {
                prop_assert_eq!(filter.to_string(), s);
            }
        }
    }
}
