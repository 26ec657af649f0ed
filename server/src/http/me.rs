//! Profiles, contacts, blocks, visibility and contact discovery.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_protocol::payload::Profile;
use switchboard_protocol::profile::ProfileInput;
use switchboard_protocol::{ErrorBody, ErrorCode, Id, IdScheme, Phone};
use utoipa::ToSchema;

use super::error::{internal, ApiError};
use super::extract::{Body, Caller, PathParam};
use super::AppState;
use crate::store::{List, Visibility};

/// Most ids in one contact or block list (their routes take bodies up to
/// `MAX_LIST_BODY_BYTES` so that this many fit).
pub const MAX_LIST: usize = 5000;
/// Most numbers in one discovery request.
pub const MAX_DISCOVER: usize = 500;

/// A profile as stored and published on `users/<id>/info`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBody {
    id: String,
    nickname: Option<String>,
    photo_url: Option<String>,
    email: Option<String>,
    alt_phone: Option<String>,
    /// Milliseconds since the epoch; 0 for a profile never set.
    updated_at: i64,
}

impl From<Profile> for ProfileBody {
    fn from(p: Profile) -> Self {
        ProfileBody {
            id: p.id.to_string(),
            nickname: p.nickname,
            photo_url: p.photo_url,
            email: p.email,
            alt_phone: p.alt_phone,
            updated_at: p.updated_at,
        }
    }
}

/// The fields a user sets; a missing or empty one is cleared.
// The patterns describe what `validate_profile` takes. Each allows the
// whitespace it trims around the value (the class of `char::is_whitespace`,
// `\t\n\x0B...\u3000`) and the empty string. `\x00-\x1F\x7F-\x9F` is
// `char::is_control`. The nickname's is exact; photoUrl and email are
// checked by parsers no regex matches, so theirs are as close as they can
// be and stricter on long values; an altPhone's validity is
// libphonenumber's.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileUpdate {
    /// 1 to 64 characters, no control characters (after trimming).
    #[schema(
        pattern = r#"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F](?:[^\x00-\x1F\x7F-\x9F]{0,62}[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F])?)?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"#
    )]
    nickname: Option<String>,
    /// An http or https URL of at most 512 bytes.
    #[schema(
        pattern = r#"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:[Hh][Tt][Tt][Pp][Ss]?:[/\\]{0,3}(?:[A-Za-z0-9._~!$&'()*+,;=:-]{0,20}@)?(?:[!"$&'()*+,\-0-9;=A-Z_`a-z{}~]{1,20}\.){0,3}[A-Za-z][!"$&'()*+,\-0-9;=A-Z_`a-z{}~]{0,20}\.?(?::[0-9]{0,4})?(?:[/?#\\][\s\S]{0,80})?)?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"#
    )]
    photo_url: Option<String>,
    /// An address like name@example.com, at most 254 bytes.
    #[schema(
        pattern = r#"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:[^@\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F]{1,16}@[^@.\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^@\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F]{0,22}\.[^@\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F]{0,22}[^@.\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F])?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"#
    )]
    email: Option<String>,
    /// A phone number with its country code (`+...`); stored in E.164.
    #[schema(
        pattern = r#"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:\+[0-9 ()./\-]{1,40})?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"#
    )]
    alt_phone: Option<String>,
}

fn empty_profile(id: &Id) -> Profile {
    Profile {
        id: id.clone(),
        nickname: None,
        photo_url: None,
        email: None,
        alt_phone: None,
        updated_at: 0,
    }
}

/// The caller's own profile.
#[utoipa::path(get, path = "/v1/me/profile", tag = "profiles",
    responses((status = 200, body = ProfileBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_my_profile(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<ProfileBody>, ApiError> {
    let p = app.store.get_profile(&caller.id).await.map_err(internal)?;
    Ok(Json(p.unwrap_or_else(|| empty_profile(&caller.id)).into()))
}

/// Replaces the caller's profile, stores it and publishes it retained on
/// `users/<id>/info`.
#[utoipa::path(put, path = "/v1/me/profile", tag = "profiles", request_body = ProfileUpdate,
    responses((status = 200, body = ProfileBody),
        (status = 400, description = "malformed body or invalid field", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 64 KiB, or profile over 4 KiB", body = ErrorBody),
        (status = 429, description = "too many profile changes", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_my_profile(
    State(app): State<AppState>,
    caller: Caller,
    Body(update): Body<ProfileUpdate>,
) -> Result<Json<ProfileBody>, ApiError> {
    let input = ProfileInput {
        id: None,
        nickname: update.nickname,
        photo_url: update.photo_url,
        email: update.email,
        alt_phone: update.alt_phone,
        updated_at: None,
    };
    let profile = app.services.profiles.set(&caller.id, input).await?;
    Ok(Json(profile.into()))
}

/// Another user's profile, if that user shares it with the caller.
#[utoipa::path(get, path = "/v1/users/{id}/profile", tag = "profiles",
    params(("id" = String, Path, description = "user or robot id", pattern = r"^[0-9a-f]{32}$")),
    responses((status = 200, body = ProfileBody),
        (status = 400, description = "id is not 32 lowercase hex", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 404, description = "no such user, or not shared with the caller", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_profile(
    State(app): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<ProfileBody>, ApiError> {
    let target: Id = id.parse().map_err(|e: switchboard_protocol::Invalid| {
        ApiError::new(ErrorCode::BadRequest, e.to_string())
    })?;
    // Unknown and not shared look the same: no way to probe who exists.
    if !app.graph.can_see(&caller.id, &target) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no such user, or not shared with you",
        ));
    }
    let p = app.store.get_profile(&target).await.map_err(internal)?;
    Ok(Json(p.unwrap_or_else(|| empty_profile(&target)).into()))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdList {
    /// User or robot ids, at most 5000.
    #[schema(max_items = 5000, pattern = r"^[0-9a-f]{32}$")]
    user_ids: Vec<String>,
}

async fn put_list(
    app: &AppState,
    caller: &Caller,
    list: List,
    ids: Vec<String>,
) -> Result<Json<IdList>, ApiError> {
    if ids.len() > MAX_LIST {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {MAX_LIST} ids"),
        ));
    }
    let ids = ids
        .iter()
        .map(|id| {
            id.parse::<Id>().map_err(|_| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("not a user id: {:?}", truncate(id)),
                )
            })
        })
        .collect::<Result<Vec<Id>, ApiError>>()?;
    let me = &caller.id;
    let ids: Vec<Id> = dedup(ids).into_iter().filter(|id| id != me).collect();
    let known = app.store.existing_ids(&ids).await.map_err(internal)?;
    if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("unknown user id: {unknown}"),
        ));
    }
    app.store
        .replace_list(me, list, &ids)
        .await
        .map_err(internal)?;
    app.graph.set_list(me, list, &ids);
    app.watchers.changed(std::slice::from_ref(me)).await;
    Ok(Json(app.graph.list(me, list).into()))
}

impl From<Vec<Id>> for IdList {
    fn from(ids: Vec<Id>) -> Self {
        IdList {
            user_ids: ids.iter().map(Id::to_string).collect(),
        }
    }
}

/// Duplicates removed, order kept: lists are sets.
fn dedup(ids: Vec<Id>) -> Vec<Id> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Replaces the caller's contacts: the users who may see the caller when
/// its visibility is `contacts`.
#[utoipa::path(put, path = "/v1/me/contacts", tag = "contacts", request_body = IdList,
    responses((status = 200, body = IdList),
        (status = 400, description = "malformed body, or an id that is malformed or not registered", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 256 KiB, or more than 5000 ids", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_contacts(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<IdList>,
) -> Result<Json<IdList>, ApiError> {
    put_list(&app, &caller, List::Contacts, body.user_ids).await
}

#[utoipa::path(get, path = "/v1/me/contacts", tag = "contacts",
    responses((status = 200, body = IdList),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_contacts(State(app): State<AppState>, caller: Caller) -> Json<IdList> {
    Json(app.graph.list(&caller.id, List::Contacts).into())
}

/// Replaces the caller's block list: blocked users see nothing of the
/// caller and cannot call.
#[utoipa::path(put, path = "/v1/me/blocked", tag = "contacts", request_body = IdList,
    responses((status = 200, body = IdList),
        (status = 400, description = "malformed body, or an id that is malformed or not registered", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 256 KiB, or more than 5000 ids", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_blocked(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<IdList>,
) -> Result<Json<IdList>, ApiError> {
    put_list(&app, &caller, List::Blocked, body.user_ids).await
}

#[utoipa::path(get, path = "/v1/me/blocked", tag = "contacts",
    responses((status = 200, body = IdList),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_blocked(State(app): State<AppState>, caller: Caller) -> Json<IdList> {
    Json(app.graph.list(&caller.id, List::Blocked).into())
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityBody {
    visibility: Visibility,
}

/// Who may see the caller: `everyone` or `contacts` (the default).
#[utoipa::path(put, path = "/v1/me/visibility", tag = "contacts", request_body = VisibilityBody,
    responses((status = 200, body = VisibilityBody),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_visibility(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<VisibilityBody>,
) -> Result<Json<VisibilityBody>, ApiError> {
    app.store
        .set_visibility(&caller.id, body.visibility)
        .await
        .map_err(internal)?;
    app.graph.set_visibility(&caller.id, body.visibility);
    app.watchers.changed(std::slice::from_ref(&caller.id)).await;
    Ok(Json(body))
}

#[utoipa::path(get, path = "/v1/me/visibility", tag = "contacts",
    responses((status = 200, body = VisibilityBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_visibility(State(app): State<AppState>, caller: Caller) -> Json<VisibilityBody> {
    Json(VisibilityBody {
        visibility: app.graph.visibility(&caller.id),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// Numbers as the user's address book has them, at most 500 (invalid
    /// ones are skipped, not refused).
    #[schema(max_items = 500)]
    phones: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// The number as it was sent.
    phone: String,
    user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Matches {
    matches: Vec<Match>,
}

/// Which of these numbers belong to registered users, and their ids.
/// Numbers that are not valid are left out. Counted against a daily quota.
#[utoipa::path(post, path = "/v1/contacts/discover", tag = "contacts", request_body = DiscoverRequest,
    responses((status = 200, body = Matches),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody),
        (status = 413, description = "body over 64 KiB, or more than 500 numbers", body = ErrorBody),
        (status = 429, description = "daily discovery quota reached", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn discover(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<DiscoverRequest>,
) -> Result<Json<Matches>, ApiError> {
    if req.phones.len() > MAX_DISCOVER {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {MAX_DISCOVER} numbers per request"),
        ));
    }
    let quota = app.config.accounts.discovery_daily_quota as i64;
    if !app
        .store
        .take_discovery_quota(&caller.id, req.phones.len() as i64, quota)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("daily discovery quota of {quota} numbers reached"),
        ));
    }
    let region = app.config.accounts.default_region;
    let scheme: IdScheme = app.config.accounts.id_scheme;
    let candidates: Vec<(String, Id)> = req
        .phones
        .into_iter()
        .filter_map(|typed| {
            let phone = Phone::parse(&typed, region).ok()?;
            Some((typed, scheme.user_id(&phone, &app.id_key)))
        })
        .collect();
    let ids: Vec<Id> = candidates.iter().map(|(_, id)| id.clone()).collect();
    let known = app.store.existing_ids(&ids).await.map_err(internal)?;
    let matches = candidates
        .into_iter()
        .filter(|(_, id)| known.contains(id) && !app.graph.has_blocked(id, &caller.id))
        .map(|(phone, id)| Match {
            phone,
            user_id: id.to_string(),
        })
        .collect();
    Ok(Json(Matches { matches }))
}
