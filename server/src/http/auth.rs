//! Sign-in by phone number and one-time code, token refresh and logout,
//! and robot provisioning and sign-in.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use switchboard_protocol::acl::PrincipalKind;
use switchboard_protocol::http::{MqttAccess, SignedIn, TokenPair};
use switchboard_protocol::{ClientId, Device, ErrorBody, ErrorCode, Id, Phone};
use utoipa::ToSchema;

use super::error::{internal, ApiError};
use super::extract::{Admin, Body};
use super::AppState;
use crate::keys::{keyed_hash, random_secret, sha256_hex};
use crate::limits::Keyed;
use crate::store::{OtpCheck, RefreshOutcome, SendAllowance};
use crate::token::TokenKind;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    /// As the user typed it; normalized to E.164. Whether it is a valid
    /// number (for the `default_region`) only the server can tell.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[+0-9 ()./\-]+$")]
    phone: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtpSent {
    /// The number the code went to, in E.164.
    phone: String,
    expires_in: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The number the code was sent to, as for the code request.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[+0-9 ()./\-]+$")]
    phone: String,
    /// The 6-digit code from the SMS.
    #[schema(pattern = r"^[0-9]{6}$")]
    code: String,
    /// This installation, `[a-z0-9_-]{1,32}`.
    #[schema(value_type = String, pattern = r"^[a-z0-9_-]{1,32}$")]
    device: Device,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RobotSignIn {
    #[schema(pattern = r"^[0-9a-f]{32}$")]
    robot_id: String,
    secret: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobotCreated {
    #[schema(value_type = String)]
    pub robot_id: Id,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

/// Counts a request from `peer` against `limiter`; past it, a 429 naming
/// `what`.
fn limit(limiter: &Keyed<IpAddr>, peer: SocketAddr, what: &str) -> Result<(), ApiError> {
    limiter.check_key(&peer.ip()).map_err(|_| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!("too many {what} from this address; try again later"),
        )
    })
}

fn parse_phone(app: &AppState, typed: &str) -> Result<Phone, ApiError> {
    Phone::parse(typed, app.config.accounts.default_region)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("phone: {e}")))
}

/// Sends a one-time code to a phone number.
#[utoipa::path(post, path = "/v1/auth/otp", tag = "auth", request_body = OtpRequest,
    responses((status = 200, body = OtpSent),
        (status = 400, description = "malformed body or not a phone number", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 429, description = "too many code requests", body = ErrorBody),
        (status = 503, description = "the code could not be sent", body = ErrorBody)))]
pub async fn otp(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<OtpRequest>,
) -> Result<Json<OtpSent>, ApiError> {
    limit(&app.limits.otp_per_address, peer, "code requests")?;
    let phone = parse_phone(&app, &req.phone)?;
    let phone_hash = keyed_hash(&app.id_key, &["otp-phone", phone.as_str()]);
    if let SendAllowance::Wait(ms) = app
        .store
        .otp_send_allowance(&phone_hash)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many codes for this number; try again in {} s",
                ms / 1000 + 1
            ),
        ));
    }
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000));
    // Send first: if the gateway fails, nothing is stored and the user
    // simply asks again.
    app.sms.send_code(&phone, &code).await.map_err(|e| {
        tracing::warn!("sending a one-time code: {e:#}");
        ApiError::new(
            ErrorCode::Unavailable,
            "the code could not be sent; try again later",
        )
    })?;
    let code_hash = keyed_hash(&app.id_key, &["otp-code", phone.as_str(), &code]);
    app.store
        .store_otp(&phone_hash, &code_hash)
        .await
        .map_err(internal)?;
    Ok(Json(OtpSent {
        phone: phone.to_string(),
        expires_in: crate::store::OTP_TTL_MINUTES * 60,
    }))
}

/// Checks a one-time code and signs the device in; creates the user on
/// first sign-in.
#[utoipa::path(post, path = "/v1/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = SignedIn),
        (status = 400, description = "malformed body, phone number, code or device", body = ErrorBody),
        (status = 401, description = "wrong code, or no live code", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 429, description = "too many sign-in attempts", body = ErrorBody)))]
pub async fn verify(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<VerifyRequest>,
) -> Result<Json<SignedIn>, ApiError> {
    limit(&app.limits.sign_in_per_address, peer, "sign-in attempts")?;
    let phone = parse_phone(&app, &req.phone)?;
    if req.code.len() != 6 || !req.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "code: must be 6 digits",
        ));
    }
    let phone_hash = keyed_hash(&app.id_key, &["otp-phone", phone.as_str()]);
    let code_hash = keyed_hash(&app.id_key, &["otp-code", phone.as_str(), &req.code]);
    match app
        .store
        .check_otp(&phone_hash, &code_hash)
        .await
        .map_err(internal)?
    {
        OtpCheck::Accepted => {}
        OtpCheck::Wrong => return Err(ApiError::new(ErrorCode::Unauthorized, "wrong code")),
        OtpCheck::NoCode => {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "no live code for this number (expired, used or too many tries): request a new one",
            ))
        }
    }
    let user_id = app.config.accounts.id_scheme.user_id(&phone, &app.id_key);
    if app
        .store
        .ensure_user(&user_id, PrincipalKind::User)
        .await
        .map_err(internal)?
    {
        app.graph.add_user(&user_id);
        tracing::info!(user_id = %user_id, "new user");
    }
    let client = ClientId::new(user_id.clone(), Some(req.device.clone()));
    let pair = issue(&app, &user_id, TokenKind::User, Some(&req.device), None).await?;
    Ok(Json(SignedIn {
        user_id: Some(user_id.to_string()),
        robot_id: None,
        tokens: pair,
        mqtt: app.mqtt_access(&client),
    }))
}

/// Mints an access token and a refresh token; `family` continues a
/// rotation, `None` starts a new sign-in.
async fn issue(
    app: &AppState,
    subject: &Id,
    kind: TokenKind,
    device: Option<&Device>,
    family: Option<String>,
) -> Result<TokenPair, ApiError> {
    let ttl = app.config.accounts.access_token_ttl.as_secs();
    let access_token = app.tokens.mint(subject, kind, device.cloned(), ttl);
    let refresh_token = random_secret();
    let family = family.unwrap_or_else(random_secret);
    app.store
        .insert_refresh(
            &sha256_hex(&refresh_token),
            &family,
            subject,
            kind,
            device,
            app.config.accounts.refresh_token_ttl.as_millis() as i64,
        )
        .await
        .map_err(internal)?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        expires_in: ttl,
    })
}

/// Exchanges a refresh token for a new pair. Each refresh token works once;
/// using one again revokes every token of that sign-in.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "invalid, expired or reused refresh token", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody)))]
pub async fn refresh(
    State(app): State<AppState>,
    Body(req): Body<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let hash = sha256_hex(&req.refresh_token);
    match app.store.use_refresh(&hash).await.map_err(internal)? {
        RefreshOutcome::Rotated(stored) => {
            // The new pair is of the same kind, for the same device.
            let pair = issue(
                &app,
                &stored.subject,
                stored.kind,
                stored.device.as_ref(),
                Some(stored.family),
            )
            .await?;
            Ok(Json(pair))
        }
        RefreshOutcome::Reused => {
            tracing::warn!("a refresh token was used twice: its sign-in is revoked");
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "refresh token already used: this sign-in is revoked, sign in again",
            ))
        }
        RefreshOutcome::Invalid => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "invalid or expired refresh token",
        )),
    }
}

/// Ends a sign-in: its refresh tokens stop working. Access tokens already
/// issued stay valid until they expire (minutes).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "signed out"),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody)))]
pub async fn logout(
    State(app): State<AppState>,
    Body(req): Body<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    // Answer the same whether or not the token existed: nothing to learn.
    if let Some(family) = app
        .store
        .refresh_family(&sha256_hex(&req.refresh_token))
        .await
        .map_err(internal)?
    {
        app.store.revoke_family(&family).await.map_err(internal)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Provisions a robot (admin).
#[utoipa::path(post, path = "/v1/robots", tag = "robots",
    responses((status = 201, body = RobotCreated),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 403, description = "admin routes are off (no admin_token)", body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_robot(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<(StatusCode, Json<RobotCreated>), ApiError> {
    let robot = crate::accounts::create_robot(&app.store)
        .await
        .map_err(internal)?;
    app.graph.add_robot(&robot.robot_id);
    Ok((StatusCode::CREATED, Json(robot)))
}

/// Signs a robot in with its id and secret.
#[utoipa::path(post, path = "/v1/auth/robot", tag = "auth", request_body = RobotSignIn,
    responses((status = 200, body = SignedIn),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "unknown robot or wrong secret", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 429, description = "too many sign-in attempts", body = ErrorBody)))]
pub async fn robot_sign_in(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<RobotSignIn>,
) -> Result<Json<SignedIn>, ApiError> {
    limit(&app.limits.sign_in_per_address, peer, "sign-in attempts")?;
    let wrong = || ApiError::new(ErrorCode::Unauthorized, "unknown robot or wrong secret");
    let robot_id: Id = req.robot_id.parse().map_err(|_| wrong())?;
    let stored = app
        .store
        .robot_secret_hash(&robot_id)
        .await
        .map_err(internal)?
        .ok_or_else(wrong)?;
    use subtle::ConstantTimeEq;
    if !bool::from(sha256_hex(&req.secret).as_bytes().ct_eq(stored.as_bytes())) {
        return Err(wrong());
    }
    app.graph.learn(&robot_id).await.map_err(internal)?;
    let pair = issue(&app, &robot_id, TokenKind::Robot, None, None).await?;
    Ok(Json(SignedIn {
        user_id: None,
        robot_id: Some(robot_id.to_string()),
        tokens: pair,
        mqtt: app.mqtt_access(&ClientId::new(robot_id, None)),
    }))
}

impl super::App {
    fn mqtt_access(&self, client: &ClientId) -> MqttAccess {
        MqttAccess {
            tcp: self.mqtt_urls.0.clone(),
            ws: self.mqtt_urls.1.clone(),
            client_id: client.to_string(),
        }
    }
}
