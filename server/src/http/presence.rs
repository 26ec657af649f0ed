//! `GET /v1/presence?ids=a,b,c`: many users' presence at once.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_protocol::{ErrorBody, ErrorCode, Id};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Caller, Params};
use super::AppState;

/// Most ids in one request.
pub const MAX_IDS: usize = 200;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Comma-separated user or robot ids, at most 200 distinct (empty items
    /// are ignored).
    // Exactly what the handler takes: split on `,`, empty items dropped,
    // each other item an id. The 200 cannot be said in a regex.
    #[param(pattern = r"^([0-9a-f]{32})?(,([0-9a-f]{32})?)*$")]
    ids: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPresence {
    id: String,
    online: bool,
    /// Devices online; `""` is a connection with the bare id.
    devices: Vec<String>,
    /// Milliseconds since the epoch of the last change, if any.
    last_seen: Option<i64>,
    seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct PresenceList {
    presence: Vec<UserPresence>,
}

/// The presence of the listed users the caller may see; the others (and
/// unknown ids, which look the same) are left out.
#[utoipa::path(get, path = "/v1/presence", tag = "presence", params(PresenceQuery),
    responses((status = 200, body = PresenceList),
        (status = 400, description = "ids missing, malformed or more than 200", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presence(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<PresenceQuery>,
) -> Result<Json<PresenceList>, ApiError> {
    let mut ids = Vec::new();
    for raw in query.ids.split(',').filter(|s| !s.is_empty()) {
        let id: Id = raw.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("not an id: {:?}", raw.chars().take(40).collect::<String>()),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() > MAX_IDS {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_IDS} ids"),
            ));
        }
    }
    let mut presence = Vec::new();
    for id in ids
        .into_iter()
        .filter(|id| app.graph.can_see(&caller.id, id))
    {
        let p = (app.services.presence.current(&id).await)
            .map_err(|e| ApiError::internal("reading presence", e))?;
        presence.push(UserPresence {
            id: id.to_string(),
            online: p.online,
            devices: p.devices,
            last_seen: p.last_seen,
            seq: p.seq,
        });
    }
    Ok(Json(PresenceList { presence }))
}
