//! The names of the contract's enums as plain strings, for where a value is
//! stored, counted or compared as text rather than carried in JSON.

/// `as_str` and `FromStr` for an enum, from one list of its variants and
/// names. Serde keeps its own (derived) names: the tests below hold the two
/// equal.
macro_rules! names {
    ($ty:ident, $what:literal, $first:ident = $first_name:literal $(, $variant:ident = $name:literal)* $(,)?) => {
        impl $ty {
            /// Every value, for the tests.
            #[cfg(test)]
            pub(crate) const ALL: &'static [$ty] = &[$ty::$first $(, $ty::$variant)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $ty::$first => $first_name,
                    $($ty::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::error::Invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $first_name => Ok($ty::$first),
                    $($name => Ok($ty::$variant),)*
                    _ => Err($crate::error::Invalid {
                        what: $what,
                        rule: concat!("one of ", $first_name $(, ", ", $name)*),
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::str::FromStr;

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::acl::PrincipalKind;
    use crate::error::{ErrorCode, Invalid};
    use crate::payload::{CallActionKind, CallKind, CallStateKind, EndReason};

    /// Each name of `table` is the value's `as_str` and parses back to it;
    /// the table holds every value; other spellings are refused.
    fn check_names<T>(table: &[(T, &str)], all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + Debug + PartialEq + FromStr<Err = Invalid>,
    {
        assert_eq!(table.len(), all.len(), "{all:?}: the table lists them all");
        for &(value, name) in table {
            assert_eq!(as_str(value), name);
            assert_eq!(name.parse::<T>(), Ok(value), "{name}");
            for other in [name.to_uppercase(), format!("{name} "), String::new()] {
                assert!(other.parse::<T>().is_err(), "{other:?}");
            }
        }
    }

    /// As `check_names`, and each name is serde's too.
    fn check<T>(table: &[(T, &str)], all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + Debug + PartialEq + Serialize + DeserializeOwned + FromStr<Err = Invalid>,
    {
        check_names(table, all, as_str);
        for &(value, name) in table {
            assert_eq!(serde_json::to_value(value).unwrap(), name, "{name}");
            assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), value);
        }
    }

    #[test]
    fn names_parse_back_and_are_serdes() {
        use CallActionKind as A;
        use CallStateKind as S;
        use EndReason as R;
        use ErrorCode as E;
        let kinds = [(CallKind::Video, "video"), (CallKind::Audio, "audio")];
        check(&kinds, CallKind::ALL, CallKind::as_str);
        let states = [
            (S::Inviting, "inviting"),
            (S::Ringing, "ringing"),
            (S::Accepted, "accepted"),
            (S::Ended, "ended"),
        ];
        check(&states, S::ALL, S::as_str);
        let reasons = [
            (R::Declined, "declined"),
            (R::Cancelled, "cancelled"),
            (R::Busy, "busy"),
            (R::Missed, "missed"),
            (R::Hangup, "hangup"),
            (R::AnsweredElsewhere, "answered_elsewhere"),
            (R::Failed, "failed"),
            (R::Expired, "expired"),
        ];
        check(&reasons, R::ALL, R::as_str);
        let actions = [
            (A::Ringing, "ringing"),
            (A::Accept, "accept"),
            (A::Decline, "decline"),
            (A::Cancel, "cancel"),
            (A::Hangup, "hangup"),
        ];
        check(&actions, A::ALL, A::as_str);
        let codes = [
            (E::BadRequest, "bad_request"),
            (E::Unauthorized, "unauthorized"),
            (E::Forbidden, "forbidden"),
            (E::NotFound, "not_found"),
            (E::Conflict, "conflict"),
            (E::PayloadTooLarge, "payload_too_large"),
            (E::RateLimited, "rate_limited"),
            (E::Unavailable, "unavailable"),
            (E::Internal, "internal"),
        ];
        check(&codes, E::ALL, E::as_str);
        let accounts = [
            (PrincipalKind::User, "user"),
            (PrincipalKind::Robot, "robot"),
        ];
        check_names(&accounts, PrincipalKind::ALL, PrincipalKind::as_str);
    }

    #[test]
    fn refusals_name_the_choices() {
        assert_eq!(
            "hd".parse::<CallKind>().unwrap_err().to_string(),
            "invalid call kind: must be one of video, audio"
        );
    }
}
