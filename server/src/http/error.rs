//! One error type for every handler, rendered as
//! `{"error": {"code": "...", "message": "..."}}` with the matching status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchboard_protocol::{ErrorBody, ErrorCode};

use crate::refused::Refused;

/// The handlers' error: the services' refusal, answered with the status
/// of its code.
pub type ApiError = Refused;

fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = status(self.code);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// A failure of ours (database, broker): logged in full, answered without
/// details.
pub fn internal(e: anyhow::Error) -> ApiError {
    Refused::internal("request failed", e)
}

/// Unknown routes answer in the same JSON form as every other error.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}
