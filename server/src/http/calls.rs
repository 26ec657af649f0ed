//! Call history and push tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_protocol::{ErrorCode, Sid};
use utoipa::{IntoParams, ToSchema};

use super::error::{internal, ApiError};
use super::extract::{Body, Caller, Params};
use super::AppState;
use crate::store::CallRecord;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Calls per page, 1 to 200 (default 50).
    limit: Option<i64>,
    /// Only calls created before this time (ms since the epoch): pass the
    /// last `createdAt` of a page to get the next.
    before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CallList {
    calls: Vec<CallRecord>,
}

/// The caller's calls, newest first, paged.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", params(Page),
    responses((status = 200, body = CallList), (status = 400), (status = 401)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(page): Params<Page>,
) -> Result<Json<CallList>, ApiError> {
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let before = page.before.unwrap_or(i64::MAX);
    let calls = app
        .store
        .calls_of(&caller.0.sub, before, limit)
        .await
        .map_err(internal)?;
    Ok(Json(CallList { calls }))
}

/// One call of the caller's.
#[utoipa::path(get, path = "/v1/calls/{sid}", tag = "calls",
    params(("sid" = String, Path, description = "session id")),
    responses((status = 200, body = CallRecord), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<CallRecord>, ApiError> {
    let sid: Sid = sid.parse().map_err(|e: switchboard_protocol::Invalid| {
        ApiError::new(ErrorCode::BadRequest, e.to_string())
    })?;
    let call = app.store.call(sid.as_str()).await.map_err(internal)?;
    // Someone else's call and no call look the same.
    match call {
        Some(c) if c.caller == caller.0.sub || c.callee == caller.0.sub => Ok(Json(c)),
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such call of yours")),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPushToken {
    /// `ios`, `android` or `web`.
    platform: String,
    /// The push service's token for this installation.
    token: String,
}

/// Registers this installation for wake-up pushes (calls while no device
/// is online). The newest 10 tokens per user are kept.
#[utoipa::path(post, path = "/v1/me/push-tokens", tag = "calls", request_body = NewPushToken,
    responses((status = 204), (status = 400), (status = 401)), security(("bearer" = [])))]
pub async fn add_push_token(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<NewPushToken>,
) -> Result<StatusCode, ApiError> {
    if !matches!(req.platform.as_str(), "ios" | "android" | "web") {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "platform must be ios, android or web",
        ));
    }
    if req.token.is_empty() || req.token.len() > 4096 || req.token.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "token must be 1 to 4096 printable characters",
        ));
    }
    app.store
        .add_push_token(&caller.0.sub, &req.platform, &req.token)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}
