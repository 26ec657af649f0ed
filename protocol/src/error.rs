//! Errors shared by the HTTP API and the MQTT error reports.

use serde::{Deserialize, Serialize};

/// A value that does not have the form the contract requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: must be {rule}")]
pub struct Invalid {
    /// What was being parsed, e.g. "user id".
    pub what: &'static str,
    /// The form it must have, in words.
    pub rule: &'static str,
}

/// Machine-readable error codes, used in HTTP error bodies and on
/// `clients/<clientId>/errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

names!(
    ErrorCode,
    "error code",
    BadRequest = "bad_request",
    Unauthorized = "unauthorized",
    Forbidden = "forbidden",
    NotFound = "not_found",
    Conflict = "conflict",
    PayloadTooLarge = "payload_too_large",
    RateLimited = "rate_limited",
    Unavailable = "unavailable",
    Internal = "internal",
);

/// The JSON error body of every failed HTTP request:
/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}
