//! Access tokens: HS256 JWTs naming a subject (user, robot or admin), its
//! device and an expiry.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_protocol::acl::PrincipalKind;
use switchboard_protocol::{ClientId, Device, Id, Invalid};

/// Whom a token speaks for: the `kind` claim of an access token, and the
/// `kind` stored with a refresh token, so a refresh gives a token of the
/// same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    User,
    Robot,
    Admin,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Robot => "robot",
            TokenKind::Admin => "admin",
        }
    }

    /// The kind of account a token of this kind belongs to; an admin token
    /// belongs to none.
    pub fn account(self) -> Option<PrincipalKind> {
        match self {
            TokenKind::User => Some(PrincipalKind::User),
            TokenKind::Robot => Some(PrincipalKind::Robot),
            TokenKind::Admin => None,
        }
    }
}

impl FromStr for TokenKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "user" => Ok(TokenKind::User),
            "robot" => Ok(TokenKind::Robot),
            "admin" => Ok(TokenKind::Admin),
            _ => Err(Invalid {
                what: "token kind",
                rule: "one of user, robot, admin",
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub kind: TokenKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<Device>,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token is refused the second it expires.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn mint(&self, sub: &Id, kind: TokenKind, dev: Option<Device>, ttl_s: u64) -> String {
        let iat = now_s();
        let claims = Claims {
            sub: sub.to_string(),
            kind,
            dev,
            iat,
            exp: iat + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

impl Claims {
    /// Whether `client_id` is one this token may use on MQTT: `<sub>` or
    /// `<sub>:<device>` with the token's own device. Admin tokens have no
    /// MQTT identity.
    pub fn allows_client_id(&self, client_id: &str) -> bool {
        if self.kind == TokenKind::Admin {
            return false;
        }
        let Ok(cid) = client_id.parse::<ClientId>() else {
            return false;
        };
        let Ok(sub) = self.sub.parse::<Id>() else {
            return false;
        };
        cid.id == sub && (cid.device.is_none() || cid.device == self.dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";

    /// One name per kind, the same for serde (the claim), the command
    /// line's `--kind` and the store.
    #[test]
    fn kinds_have_one_name_each() {
        use clap::ValueEnum;
        let table = [
            (TokenKind::User, "user", Some(PrincipalKind::User)),
            (TokenKind::Robot, "robot", Some(PrincipalKind::Robot)),
            (TokenKind::Admin, "admin", None),
        ];
        assert_eq!(table.len(), TokenKind::value_variants().len());
        for (kind, name, account) in table {
            assert_eq!(kind.as_str(), name);
            assert_eq!(name.parse::<TokenKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(kind.to_possible_value().unwrap().get_name(), name);
            assert_eq!(kind.account(), account);
        }
        for bad in ["", "User", "root"] {
            assert!(bad.parse::<TokenKind>().is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_and_forgery() {
        let t = Tokens::new(&[7u8; 32]);
        let token = t.mint(
            &ID.parse().unwrap(),
            TokenKind::User,
            Some("phone".parse().unwrap()),
            60,
        );
        let c = t.verify(&token).unwrap();
        assert_eq!(c.sub, ID);
        assert_eq!(c.kind, TokenKind::User);
        assert_eq!(
            Tokens::new(&[8u8; 32]).verify(&token),
            Err(TokenError::Invalid)
        );
        assert_eq!(t.verify("not.a.jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = Tokens::new(&[7u8; 32]);
        let claims = Claims {
            sub: ID.into(),
            kind: TokenKind::User,
            dev: None,
            iat: now_s() - 120,
            exp: now_s() - 60,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &t.encoding).unwrap();
        assert_eq!(t.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn client_id_must_be_the_tokens_own() {
        let c = Claims {
            sub: ID.into(),
            kind: TokenKind::User,
            dev: Some("phone".parse().unwrap()),
            iat: 0,
            exp: 0,
        };
        assert!(c.allows_client_id(ID));
        assert!(c.allows_client_id(&format!("{ID}:phone")));
        assert!(!c.allows_client_id(&format!("{ID}:tablet")));
        assert!(!c.allows_client_id("0123456789abcdef0123456789abcdef"));
        assert!(!c.allows_client_id("anything"));
        let admin = Claims {
            kind: TokenKind::Admin,
            ..c
        };
        assert!(!admin.allows_client_id(ID));
    }
}
