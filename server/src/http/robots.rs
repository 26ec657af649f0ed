//! Pairing codes for robots, and who owns which robot.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use switchboard_protocol::{ErrorBody, ErrorCode, Id};
use utoipa::ToSchema;

use super::error::{internal, ApiError};
use super::extract::{Caller, PathParam};
use super::AppState;
use crate::token::TokenKind;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewCode {
    /// 6 digits, to show to the person pairing.
    code: String,
    /// When the code stops working (ms since the epoch).
    expires_at: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedRobot {
    robot_id: String,
    paired_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Robots {
    robots: Vec<OwnedRobot>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    user_id: String,
    paired_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Owners {
    owners: Vec<Owner>,
}

fn require(caller: &Caller, kind: TokenKind, what: &str) -> Result<(), ApiError> {
    if caller.kind == kind {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route is for {what}"),
        ))
    }
}

/// A new pairing code for the calling robot (its previous one stops
/// working). The robot then publishes its id retained on
/// `pairing/<code>/robotID`.
#[utoipa::path(post, path = "/v1/pairing/codes", tag = "robots",
    responses((status = 201, body = NewCode),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn new_code(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<NewCode>), ApiError> {
    require(&caller, TokenKind::Robot, "robots")?;
    let (code, expires_at) = (app.services.robots.issue(caller.id).await).map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(NewCode {
            code: code.to_string(),
            expires_at,
        }),
    ))
}

/// The robots the calling user owns.
#[utoipa::path(get, path = "/v1/me/robots", tag = "robots",
    responses((status = 200, body = Robots),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn my_robots(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Robots>, ApiError> {
    require(&caller, TokenKind::User, "users")?;
    let rows = app.store.robots_of(&caller.id).await.map_err(internal)?;
    let robots = rows
        .into_iter()
        .map(|(robot, paired_at)| OwnedRobot {
            robot_id: robot.to_string(),
            paired_at,
        })
        .collect();
    Ok(Json(Robots { robots }))
}

/// Unpairs: the caller no longer owns the robot.
#[utoipa::path(delete, path = "/v1/me/robots/{id}", tag = "robots",
    params(("id" = String, Path, description = "robot id", pattern = r"^[0-9a-f]{32}$")),
    responses((status = 204, description = "unpaired"),
        (status = 400, description = "id is not 32 lowercase hex", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user token", body = ErrorBody),
        (status = 404, description = "the caller does not own this robot", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unpair(
    State(app): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, TokenKind::User, "users")?;
    let robot: Id = id.parse().map_err(|e: switchboard_protocol::Invalid| {
        ApiError::new(ErrorCode::BadRequest, e.to_string())
    })?;
    if !app
        .store
        .remove_owner(&robot, &caller.id)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "you do not own this robot",
        ));
    }
    app.graph.set_owner(&robot, &caller.id, false);
    // Neither sees the other any more, unless the graph says otherwise.
    app.watchers.changed(&[robot, caller.id]).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling robot's owners.
#[utoipa::path(get, path = "/v1/me/owners", tag = "robots",
    responses((status = 200, body = Owners),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn my_owners(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Owners>, ApiError> {
    require(&caller, TokenKind::Robot, "robots")?;
    let rows = app.store.owners_of(&caller.id).await.map_err(internal)?;
    let owners = rows
        .into_iter()
        .map(|(user, paired_at)| Owner {
            user_id: user.to_string(),
            paired_at,
        })
        .collect();
    Ok(Json(Owners { owners }))
}
