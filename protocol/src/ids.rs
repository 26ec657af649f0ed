//! Identities: user and robot ids, devices, MQTT client ids, call session
//! ids, pairing codes and command names. Each is a string newtype that can
//! only hold a value of the contract's form.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::Invalid;
use crate::phone::Phone;

/// Defines a validated string newtype: `FromStr`, `Display`, `as_str`, and
/// serde through the same check, so an invalid value cannot be deserialized.
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $what:literal, $rule:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Invalid> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err(Invalid { what: $what, rule: $rule })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;

            fn try_from(s: String) -> Result<Self, Invalid> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_device(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

fn is_pairing_code(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Topic segments under `session/<sid>/` that belong to the server, not to
/// robot commands.
pub const RESERVED_COMMANDS: [&str; 3] = ["call", "state", "webrtc"];

fn is_command(s: &str) -> bool {
    let mut bytes = s.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    first_ok
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !RESERVED_COMMANDS.contains(&s)
}

checked_string!(
    /// A user or robot id: 32 lowercase hex characters.
    Id, "id", "32 lowercase hex characters", is_hex32
);
checked_string!(
    /// A call session id: 32 lowercase hex characters (128 random bits).
    Sid, "session id", "32 lowercase hex characters", is_hex32
);
checked_string!(
    /// A device of a user, chosen by the app, one per installation.
    Device, "device", "1 to 32 characters of a-z, 0-9, _ and -", is_device
);
checked_string!(
    /// A robot pairing code.
    PairingCode, "pairing code", "6 digits", is_pairing_code
);
checked_string!(
    /// A robot command name, the `<command>` of `session/<sid>/<command>/...`.
    CommandName,
    "command",
    "a letter then up to 63 of A-Z, a-z, 0-9, _ and -, and not call, state or webrtc",
    is_command
);

/// How user ids are made from phone numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdScheme {
    /// `hex(md5(E.164))`, as in the original use case: any client can compute
    /// anyone's id from a phone number, so numbers are not private.
    #[serde(rename = "md5")]
    Md5,
    /// First 16 bytes of `HMAC-SHA256(secret, E.164)`, hex: only the server
    /// can compute it, clients learn ids through contact discovery.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl FromStr for IdScheme {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "md5" => Ok(IdScheme::Md5),
            "hmac-sha256" => Ok(IdScheme::HmacSha256),
            _ => Err(Invalid {
                what: "id scheme",
                rule: "md5 or hmac-sha256",
            }),
        }
    }
}

impl fmt::Display for IdScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdScheme::Md5 => "md5",
            IdScheme::HmacSha256 => "hmac-sha256",
        })
    }
}

impl IdScheme {
    /// The user id of a phone number. `secret` is only used by
    /// `hmac-sha256`.
    pub fn user_id(self, phone: &Phone, secret: &[u8]) -> Id {
        let bytes: [u8; 16] = match self {
            IdScheme::Md5 => Md5::digest(phone.as_str().as_bytes()).into(),
            IdScheme::HmacSha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                    .expect("HMAC accepts keys of any length");
                mac.update(phone.as_str().as_bytes());
                let full = mac.finalize().into_bytes();
                full[..16].try_into().expect("SHA-256 output is 32 bytes")
            }
        };
        Id(hex::encode(bytes))
    }
}

/// An MQTT client id: `<id>` or `<id>:<device>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId {
    pub id: Id,
    pub device: Option<Device>,
}

impl ClientId {
    pub fn new(id: Id, device: Option<Device>) -> Self {
        ClientId { id, device }
    }
}

impl FromStr for ClientId {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let invalid = Invalid {
            what: "client id",
            rule: "<id> or <id>:<device>",
        };
        let (id, device) = match s.split_once(':') {
            Some((id, device)) => (id, Some(device.parse().map_err(|_| invalid.clone())?)),
            None => (s, None),
        };
        Ok(ClientId {
            id: id.parse().map_err(|_| invalid)?,
            device,
        })
    }
}

impl TryFrom<String> for ClientId {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        s.parse()
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> String {
        c.to_string()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.device {
            Some(d) => write!(f, "{}:{}", self.id, d),
            None => write!(f, "{}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Region;

    fn phone(s: &str) -> Phone {
        Phone::parse(s, Some("PL".parse::<Region>().unwrap())).unwrap()
    }

    #[test]
    fn md5_ids_match_the_use_case() {
        assert_eq!(
            IdScheme::Md5
                .user_id(&phone("+48555555555"), b"ignored")
                .as_str(),
            "36940d0ece18aebf69d0ef6825534e24"
        );
    }

    #[test]
    fn hmac_ids_are_keyed() {
        // Vector computed independently:
        // printf '+48555555555' | openssl dgst -sha256 -hmac 'switchboard-test-secret' | cut -c1-32
        let p = phone("+48555555555");
        let id = IdScheme::HmacSha256.user_id(&p, b"switchboard-test-secret");
        assert_eq!(id.as_str(), "5893526579ffe969adf9350863935b26");
        assert_ne!(
            id,
            IdScheme::HmacSha256.user_id(&p, b"another-secret"),
            "another secret gives another id"
        );
    }

    #[test]
    fn ids_must_be_32_lowercase_hex() {
        assert!("36940d0ece18aebf69d0ef6825534e24".parse::<Id>().is_ok());
        for bad in [
            "",
            "36940D0ECE18AEBF69D0EF6825534E24",
            "36940d0ece18aebf69d0ef6825534e2",
            "36940d0ece18aebf69d0ef6825534e244",
            "36940d0ece18aebf69d0ef6825534e2g",
            "+",
            "#",
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ids_have_an_optional_device() {
        let id = "36940d0ece18aebf69d0ef6825534e24";
        let plain: ClientId = id.parse().unwrap();
        assert_eq!(plain.device, None);
        let with: ClientId = format!("{id}:phone-1").parse().unwrap();
        assert_eq!(with.device.unwrap().as_str(), "phone-1");
        for bad in [
            format!("{id}:"),
            format!("{id}:Phone"),
            format!("{id}:a:b"),
            format!(":{id}"),
            "robot".to_string(),
        ] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_names_exclude_reserved_words() {
        for ok in ["moveTo", "a", "x_1-2", &"a".repeat(64)] {
            assert!(ok.parse::<CommandName>().is_ok(), "{ok}");
        }
        for bad in [
            "call",
            "state",
            "webrtc",
            "1move",
            "",
            "move/to",
            "+",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<CommandName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pairing_codes_are_six_digits() {
        assert!("012345".parse::<PairingCode>().is_ok());
        for bad in ["12345", "1234567", "12345a", "+", "١٢٣٤٥٦"] {
            assert!(bad.parse::<PairingCode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_goes_through_the_check() {
        assert!(serde_json::from_str::<Id>("\"nothex\"").is_err());
        let d: Device = serde_json::from_str("\"tablet\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"tablet\"");
    }
}
