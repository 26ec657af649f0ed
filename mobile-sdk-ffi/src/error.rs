//! The one error type of the SDK. Across the FFI it becomes a typed
//! exception (Kotlin, Python) or error enum (Swift), never a panic.

use switchboard_protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum SdkError {
    /// The number is not a phone number the server can send a code to.
    #[error("invalid phone number: {reason}")]
    InvalidPhone { reason: String },
    /// An argument does not have the form the protocol requires (an id,
    /// a pairing code, a command name, JSON arguments).
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    /// The one-time code (or a robot's secret) was wrong or expired.
    #[error("wrong or expired code")]
    WrongCode,
    /// There is no such user, or it does not share itself with this
    /// account: the server makes the two look the same.
    #[error("unknown user {id}")]
    UnknownUser { id: String },
    /// The call is not one this session knows in the state the operation
    /// needs (no such call, not accepted yet, already ended).
    #[error("no call {sid} in a state that allows this")]
    NoCall { sid: String },
    /// The server refused by its rules; `code` is the protocol's error code
    /// (`forbidden`, `conflict`, `not_found`, `bad_request`, ...).
    #[error("refused ({code}): {reason}")]
    Refused { code: String, reason: String },
    /// Too many attempts; try again later.
    #[error("rate limited: {reason}")]
    RateLimited { reason: String },
    /// The pairing code is not live (never issued, used or expired), or
    /// this account looked up too many codes.
    #[error("pairing code {code} refused")]
    PairingRefused { code: String },
    /// The pairing code expired before an owner claimed it.
    #[error("pairing code {code} expired")]
    PairingExpired { code: String },
    /// Nothing arrived in time.
    #[error("timed out waiting for {what}")]
    Timeout { what: String },
    /// The session's tokens no longer work (signed out, refresh token
    /// revoked); sign in again.
    #[error("signed out")]
    SignedOut,
    /// The server could not be reached, or the connection dropped.
    #[error("network: {reason}")]
    Network { reason: String },
    /// The server answered something the SDK did not expect.
    #[error("server: {reason}")]
    Server { reason: String },
    /// `shutdown()` was called: this process starts no new session.
    #[error("the SDK is shut down")]
    ShutDown,
}

impl SdkError {
    /// An error body of the HTTP API, or a report on `clients/<me>/errors`.
    pub(crate) fn from_code(code: ErrorCode, reason: String) -> SdkError {
        match code {
            ErrorCode::RateLimited => SdkError::RateLimited { reason },
            ErrorCode::Unauthorized => SdkError::SignedOut,
            ErrorCode::BadRequest => SdkError::InvalidArgument { reason },
            ErrorCode::Internal | ErrorCode::Unavailable => SdkError::Server { reason },
            other => SdkError::Refused {
                code: other.as_str().to_owned(),
                reason,
            },
        }
    }

    pub(crate) fn invalid(e: impl std::fmt::Display) -> SdkError {
        SdkError::InvalidArgument {
            reason: e.to_string(),
        }
    }

    pub(crate) fn timeout(what: impl Into<String>) -> SdkError {
        SdkError::Timeout { what: what.into() }
    }

    pub(crate) fn disconnected() -> SdkError {
        SdkError::Network {
            reason: "the session is closed".into(),
        }
    }
}

impl From<reqwest::Error> for SdkError {
    /// With its causes: reqwest's own text names only the URL, not why
    /// (say, a certificate no trusted root vouches for).
    fn from(e: reqwest::Error) -> Self {
        let mut reason = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            reason = format!("{reason}: {c}");
            cause = c.source();
        }
        SdkError::Network { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_wire_names() {
        assert_eq!(
            SdkError::from_code(ErrorCode::NotFound, "x".into()),
            SdkError::Refused {
                code: "not_found".into(),
                reason: "x".into()
            }
        );
        assert_eq!(
            SdkError::from_code(ErrorCode::Unauthorized, "x".into()),
            SdkError::SignedOut
        );
    }
}
