//! Profile validation: what a user may put in `users/<id>/info`, through
//! HTTP or by publishing it over MQTT.

use serde::Deserialize;

use crate::ids::Id;
use crate::payload::{Profile, MAX_PAYLOAD_BYTES};
use crate::phone::Phone;

pub const MAX_NICKNAME_CHARS: usize = 64;
pub const MAX_URL_BYTES: usize = 512;
pub const MAX_EMAIL_BYTES: usize = 254;

/// The fields a user sets. `id` and `updatedAt` may be sent back as read
/// (the id must be the user's own; the time is the server's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileInput {
    pub id: Option<Id>,
    pub nickname: Option<String>,
    pub photo_url: Option<String>,
    pub email: Option<String>,
    pub alt_phone: Option<String>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    #[error("profile is not valid JSON of the profile form: {0}")]
    Malformed(String),
    #[error("profile id is not the owner's")]
    WrongId,
    #[error("nickname must be 1 to {MAX_NICKNAME_CHARS} characters without control characters")]
    Nickname,
    #[error("photoUrl must be an http or https URL of at most {MAX_URL_BYTES} bytes")]
    PhotoUrl,
    #[error("email must be an address like name@example.com of at most {MAX_EMAIL_BYTES} bytes")]
    Email,
    #[error("altPhone must be a phone number with its country code: {0}")]
    AltPhone(String),
}

/// Parses a profile payload (JSON bytes) published by `owner`.
pub fn parse_profile(payload: &[u8], owner: &Id, now_ms: i64) -> Result<Profile, ProfileError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ProfileError::TooLarge);
    }
    let input: ProfileInput =
        serde_json::from_slice(payload).map_err(|e| ProfileError::Malformed(e.to_string()))?;
    validate_profile(input, owner, now_ms)
}

/// Checks every field and returns the profile as stored and published.
/// Empty strings clear a field, as `null` does.
pub fn validate_profile(
    input: ProfileInput,
    owner: &Id,
    now_ms: i64,
) -> Result<Profile, ProfileError> {
    if input.id.as_ref().is_some_and(|id| id != owner) {
        return Err(ProfileError::WrongId);
    }
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let nickname = non_empty(input.nickname);
    if let Some(n) = &nickname {
        if n.chars().count() > MAX_NICKNAME_CHARS || n.chars().any(char::is_control) {
            return Err(ProfileError::Nickname);
        }
    }
    let photo_url = non_empty(input.photo_url);
    if let Some(u) = &photo_url {
        let ok = u.len() <= MAX_URL_BYTES
            && url::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
        if !ok {
            return Err(ProfileError::PhotoUrl);
        }
    }
    let email = non_empty(input.email);
    if let Some(e) = &email {
        if !is_email(e) {
            return Err(ProfileError::Email);
        }
    }
    let alt_phone = match non_empty(input.alt_phone) {
        Some(p) => Some(
            Phone::parse(&p, None)
                .map_err(|e| ProfileError::AltPhone(e.to_string()))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    Ok(Profile {
        id: owner.clone(),
        nickname,
        photo_url,
        email,
        alt_phone,
        updated_at: now_ms,
    })
}

/// A deliberately plain check: one `@`, a non-empty local part, a dotted
/// domain, no spaces. Whether the address receives mail is not ours to know.
fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= MAX_EMAIL_BYTES
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";

    fn owner() -> Id {
        ID.parse().unwrap()
    }

    fn parse(v: serde_json::Value) -> Result<Profile, ProfileError> {
        parse_profile(v.to_string().as_bytes(), &owner(), 42)
    }

    #[test]
    fn a_good_profile_is_normalized() {
        let p = parse(json!({
            "nickname": "  Ala  ",
            "photoUrl": "https://example.com/a.png",
            "email": "ala@example.com",
            "altPhone": "+48 555 555 555",
            "updatedAt": 1
        }))
        .unwrap();
        assert_eq!(p.id, owner());
        assert_eq!(p.nickname.as_deref(), Some("Ala"));
        assert_eq!(p.alt_phone.as_deref(), Some("+48555555555"));
        assert_eq!(p.updated_at, 42, "the server's time, not the client's");
        let empty = parse(json!({"nickname": "", "email": null})).unwrap();
        assert_eq!(empty.nickname, None);
    }

    #[test]
    fn bad_fields_are_refused() {
        let cases = [
            (json!({"nickname": "x".repeat(65)}), ProfileError::Nickname),
            (json!({"nickname": "a\u{0007}b"}), ProfileError::Nickname),
            (
                json!({"photoUrl": "javascript:alert(1)"}),
                ProfileError::PhotoUrl,
            ),
            (
                json!({"photoUrl": "ftp://example.com/a"}),
                ProfileError::PhotoUrl,
            ),
            (
                json!({"photoUrl": format!("https://e.com/{}", "a".repeat(600))}),
                ProfileError::PhotoUrl,
            ),
            (json!({"email": "not-an-email"}), ProfileError::Email),
            (json!({"email": "a b@example.com"}), ProfileError::Email),
            (json!({"email": "a@b@example.com"}), ProfileError::Email),
            (
                json!({"id": "0123456789abcdef0123456789abcdef"}),
                ProfileError::WrongId,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input.clone()), Err(want), "{input}");
        }
        assert!(matches!(
            parse(json!({"altPhone": "12"})),
            Err(ProfileError::AltPhone(_))
        ));
        assert!(matches!(
            parse(json!({"admin": true})),
            Err(ProfileError::Malformed(_))
        ));
        assert!(matches!(
            parse(json!({"nickname": 7})),
            Err(ProfileError::Malformed(_))
        ));
        assert!(matches!(
            parse(json!(["nickname"])),
            Err(ProfileError::Malformed(_))
        ));
        assert!(matches!(
            parse_profile(b"'; DROP TABLE profiles; --", &owner(), 1),
            Err(ProfileError::Malformed(_))
        ));
        let big =
            json!({"nickname": "a", "photoUrl": format!("https://e.com/{}", "a".repeat(5000))});
        assert_eq!(parse(big), Err(ProfileError::TooLarge));
    }
}
