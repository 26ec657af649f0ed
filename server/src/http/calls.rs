//! Call history and push tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_protocol::payload::{CallKind, CallStateKind, EndReason};
use switchboard_protocol::{ClientId, ErrorBody, ErrorCode, Id, Sid};
use utoipa::{IntoParams, ToSchema};

use super::error::{internal, ApiError};
use super::extract::{Body, Caller, Params, PathParam};
use super::AppState;
use switchboard_signalling::Call;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Calls per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
    /// Only calls created before this time (ms since the epoch): pass the
    /// last `createdAt` of a page to get the next.
    before: Option<i64>,
}

/// A call as the history shows it.
// Named `CallRecord` in the OpenAPI document, as before this type was
// split from the store's.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallRecord)]
pub struct CallBody {
    #[schema(value_type = String)]
    sid: Sid,
    #[schema(value_type = String)]
    caller: Id,
    #[schema(value_type = String)]
    callee: Id,
    /// `video` or `audio`.
    #[schema(value_type = String)]
    kind: CallKind,
    /// `inviting`, `ringing`, `accepted` or `ended`.
    #[schema(value_type = String)]
    state: CallStateKind,
    #[schema(value_type = Option<String>)]
    reason: Option<EndReason>,
    #[schema(value_type = Option<String>)]
    accepted_by: Option<ClientId>,
    created_at: i64,
    accepted_at: Option<i64>,
    ended_at: Option<i64>,
    /// Milliseconds from accept to end, for calls that were answered.
    duration_ms: Option<i64>,
}

impl From<Call> for CallBody {
    fn from(c: Call) -> Self {
        CallBody {
            sid: c.sid,
            caller: c.caller.id,
            callee: c.callee,
            kind: c.kind,
            state: c.state,
            reason: c.reason,
            accepted_by: c.accepted_by,
            created_at: c.created_at,
            accepted_at: c.accepted_at,
            ended_at: c.ended_at,
            duration_ms: c.accepted_at.zip(c.ended_at).map(|(a, e)| e - a),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CallList {
    calls: Vec<CallBody>,
}

/// The caller's calls, newest first, paged.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", params(Page),
    responses((status = 200, body = CallList),
        (status = 400, description = "bad limit or query string", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
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
        .calls_of(&caller.id, before, limit)
        .await
        .map_err(internal)?;
    Ok(Json(CallList {
        calls: calls.into_iter().map(CallBody::from).collect(),
    }))
}

/// One call of the caller's.
#[utoipa::path(get, path = "/v1/calls/{sid}", tag = "calls",
    params(("sid" = String, Path, description = "session id", pattern = r"^[0-9a-f]{32}$")),
    responses((status = 200, body = CallBody),
        (status = 400, description = "sid is not 32 lowercase hex", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 404, description = "no such call of the caller's", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    PathParam(sid): PathParam<String>,
) -> Result<Json<CallBody>, ApiError> {
    let sid: Sid = sid.parse().map_err(|e: switchboard_protocol::Invalid| {
        ApiError::new(ErrorCode::BadRequest, e.to_string())
    })?;
    let call = app.store.call(&sid).await.map_err(internal)?;
    // Someone else's call and no call look the same.
    match call {
        Some(c) if c.caller.id == caller.id || c.callee == caller.id => Ok(Json(c.into())),
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such call of yours")),
    }
}

/// Most characters in a push token.
const MAX_PUSH_TOKEN_CHARS: usize = 4096;

/// The push service a token belongs to.
#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PushPlatform {
    Ios,
    Android,
    Web,
}

impl PushPlatform {
    /// As stored, and as serde names it.
    fn as_str(&self) -> &'static str {
        match self {
            PushPlatform::Ios => "ios",
            PushPlatform::Android => "android",
            PushPlatform::Web => "web",
        }
    }
}

/// A push token of this installation: for `ios`, PushKit's VoIP token
/// (APNs) in hex; for `android` and `web`, an FCM registration token of 1
/// to 4096 characters, none of them control characters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPushToken {
    platform: PushPlatform,
    token: String,
}

/// Its document: which tokens each platform takes, one schema per kind,
/// as the handler checks them.
impl utoipa::PartialSchema for NewPushToken {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let kind = |platforms: &[&str], token: ObjectBuilder| {
            let platform = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(platforms.iter().copied()));
            ObjectBuilder::new()
                .property("platform", platform)
                .property("token", token.schema_type(Type::String))
                .required("platform")
                .required("token")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let hex = ObjectBuilder::new()
            .min_length(Some(2))
            .max_length(Some(200))
            .pattern(Some(r"^([0-9a-fA-F]{2})+$"));
        let fcm = ObjectBuilder::new()
            .min_length(Some(1))
            .max_length(Some(MAX_PUSH_TOKEN_CHARS))
            .pattern(Some(r"^[^\x00-\x1F\x7F-\x9F]+$"));
        OneOfBuilder::new()
            .item(kind(&["ios"], hex))
            .item(kind(&["android", "web"], fcm))
            .into()
    }
}

impl utoipa::ToSchema for NewPushToken {}

/// Registers this installation for wake-up pushes (calls while no device
/// is online). The newest 10 tokens per user are kept.
#[utoipa::path(post, path = "/v1/me/push-tokens", tag = "calls", request_body = NewPushToken,
    responses((status = 204, description = "registered"),
        (status = 400, description = "malformed body, unknown platform or bad token", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_push_token(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<NewPushToken>,
) -> Result<StatusCode, ApiError> {
    let (platform, token) = (req.platform, &req.token);
    if platform == PushPlatform::Ios && !crate::push::is_device_token(token) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "an ios token is the APNs device token in hex (at most 200 digits)",
        ));
    }
    // Characters, as the message and the document's maxLength count them.
    let chars = token.chars().count();
    if chars == 0 || chars > MAX_PUSH_TOKEN_CHARS || token.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("token must be 1 to {MAX_PUSH_TOKEN_CHARS} printable characters"),
        ));
    }
    app.store
        .add_push_token(&caller.id, platform.as_str(), token)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}
