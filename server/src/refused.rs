//! Why a client's message was refused: a code and words for the client.
//! The services return it; the broker hooks report it in one place.

use switchboard_protocol::acl::Denial;
use switchboard_protocol::profile::ProfileError;
use switchboard_protocol::validate::BadPayload;
use switchboard_protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl Refused {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refused {
            code,
            message: message.into(),
        }
    }

    /// A failure of ours: logged in full, refused without details.
    pub fn internal(what: &str, e: anyhow::Error) -> Self {
        tracing::error!("{what}: {e:#}");
        Refused::new(ErrorCode::Internal, "internal error")
    }
}

impl From<Denial> for Refused {
    fn from(denial: Denial) -> Self {
        let code = match denial {
            Denial::NotInContract => ErrorCode::BadRequest,
            _ => ErrorCode::Forbidden,
        };
        Refused::new(code, denial.to_string())
    }
}

impl From<BadPayload> for Refused {
    fn from(bad: BadPayload) -> Self {
        Refused::new(ErrorCode::BadRequest, bad.0)
    }
}

impl From<ProfileError> for Refused {
    fn from(e: ProfileError) -> Self {
        Refused::new(ErrorCode::BadRequest, e.to_string())
    }
}
