//! Who may log in to the broker: a pure decision on the CONNECT's username,
//! password and client id, kept apart from the broker's types so it is
//! tested directly.

use switchboard_protocol::acl::Principal;
use switchboard_protocol::{ClientId, Topic};

use crate::token::{Claims, TokenError, Tokens};

/// Why a CONNECT was refused. Also the `reason` label of the
/// `switchboard_mqtt_logins_refused` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No password (no token) at all.
    NoToken,
    /// Signature, form or claims wrong.
    BadToken,
    ExpiredToken,
    /// The username is not the token's subject.
    WrongUsername,
    /// The client id is neither `<sub>` nor `<sub>:<device>` of the token.
    WrongClientId,
    /// A Last Will on a topic other than the client's own `isConnected`.
    ForbiddenWill,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NoToken => "no_token",
            Refusal::BadToken => "bad_token",
            Refusal::ExpiredToken => "expired_token",
            Refusal::WrongUsername => "wrong_username",
            Refusal::WrongClientId => "wrong_client_id",
            Refusal::ForbiddenWill => "forbidden_will",
        }
    }

    /// Refusals about the credentials answer "bad username or password"
    /// (0x04 / 0x86); a client id the token does not cover answers "not
    /// authorized" (0x05 / 0x87): the id may be well formed, it is just
    /// not this token's.
    pub fn is_credentials(self) -> bool {
        !matches!(self, Refusal::WrongClientId | Refusal::ForbiddenWill)
    }
}

/// Checks a CONNECT: username = token subject, password = the JWT, client id
/// `<sub>` or `<sub>:<device>` of that token, and a Last Will, if any, only
/// on the client's own `users/<id>/isConnected` (the use case's Will; the
/// server reconciles it with the user's other devices).
pub fn check_login(
    tokens: &Tokens,
    username: Option<&str>,
    password: Option<&[u8]>,
    client_id: &str,
    will_topic: Option<&str>,
) -> Result<(Claims, Principal), Refusal> {
    let password = password.filter(|p| !p.is_empty()).ok_or(Refusal::NoToken)?;
    let jwt = std::str::from_utf8(password).map_err(|_| Refusal::BadToken)?;
    let claims = tokens.verify(jwt).map_err(|e| match e {
        TokenError::Expired => Refusal::ExpiredToken,
        TokenError::Invalid => Refusal::BadToken,
    })?;
    if username != Some(claims.sub.as_str()) {
        return Err(Refusal::WrongUsername);
    }
    if !claims.allows_client_id(client_id) {
        return Err(Refusal::WrongClientId);
    }
    let client: ClientId = client_id.parse().map_err(|_| Refusal::WrongClientId)?;
    if let Some(topic) = will_topic {
        if topic.parse::<Topic>() != Ok(Topic::UserIsConnected(client.id.clone())) {
            return Err(Refusal::ForbiddenWill);
        }
    }
    // Admin tokens cover no client id: refused above already.
    let kind = claims.kind.account().ok_or(Refusal::WrongClientId)?;
    Ok((claims, Principal { client, kind }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKind;
    use switchboard_protocol::acl::PrincipalKind;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";
    const OTHER: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn login_matrix() {
        let tokens = Tokens::new(&[1u8; 32]);
        let id = ID.parse().unwrap();
        let good = tokens.mint(&id, TokenKind::User, Some("phone".parse().unwrap()), 60);
        let forged = Tokens::new(&[2u8; 32]).mint(&id, TokenKind::User, None, 60);
        let admin = tokens.mint(&id, TokenKind::Admin, None, 60);
        let with_device = format!("{ID}:phone");
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a [u8]>,
            &'a str,
            Result<(), Refusal>,
        );
        let cases: [Case; 9] = [
            (Some(ID), Some(good.as_bytes()), ID, Ok(())),
            (Some(ID), Some(good.as_bytes()), &with_device, Ok(())),
            (Some(ID), None, ID, Err(Refusal::NoToken)),
            (Some(ID), Some(b""), ID, Err(Refusal::NoToken)),
            (
                Some(ID),
                Some(forged.as_bytes()),
                ID,
                Err(Refusal::BadToken),
            ),
            (Some(ID), Some(&[0xff, 0xfe]), ID, Err(Refusal::BadToken)),
            (
                Some(OTHER),
                Some(good.as_bytes()),
                ID,
                Err(Refusal::WrongUsername),
            ),
            (
                Some(ID),
                Some(good.as_bytes()),
                OTHER,
                Err(Refusal::WrongClientId),
            ),
            (
                Some(ID),
                Some(admin.as_bytes()),
                ID,
                Err(Refusal::WrongClientId),
            ),
        ];
        for (user, pass, cid, want) in cases {
            let got = check_login(&tokens, user, pass, cid, None).map(|_| ());
            assert_eq!(got, want, "user={user:?} cid={cid}");
        }
    }

    #[test]
    fn wills_only_on_own_is_connected() {
        let tokens = Tokens::new(&[1u8; 32]);
        let id = ID.parse().unwrap();
        let token = tokens.mint(&id, TokenKind::Robot, None, 60);
        let login =
            |will: &str| check_login(&tokens, Some(ID), Some(token.as_bytes()), ID, Some(will));
        let (_, principal) = login(&format!("users/{ID}/isConnected")).unwrap();
        assert_eq!(principal.kind, PrincipalKind::Robot);
        for will in [
            format!("users/{OTHER}/isConnected"),
            format!("users/{ID}/info"),
            format!("users/{ID}/presence"),
            "users/+/isConnected".to_string(),
            "anything".to_string(),
        ] {
            assert_eq!(login(&will).err(), Some(Refusal::ForbiddenWill), "{will}");
        }
    }
}
