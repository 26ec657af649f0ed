//! Request extractors that answer in the API's JSON error form: JSON
//! bodies, query strings, path parameters, bearer access tokens and the
//! admin token.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use switchboard_protocol::{ErrorCode, Id};

use super::error::ApiError;
use super::AppState;
use crate::token::{TokenError, TokenKind};

/// A JSON body; any problem with it is a 4xx in the API's error form.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::PayloadTooLarge, "request body too large");
    }
    let message = match &e {
        JsonRejection::MissingJsonContentType(_) => {
            "send a JSON body with Content-Type: application/json".to_string()
        }
        other => other.body_text(),
    };
    ApiError::new(ErrorCode::BadRequest, message)
}

/// A query string; a malformed one is a 400 in the API's error form.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Params(v))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// Path parameters. A malformed one (e.g. `%FF`, not UTF-8 once decoded)
/// is a 400 in the API's error form rather than axum's plain text.
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            // A route whose parameters do not fit `T`: our bug, not the
            // client's.
            Err(e) if e.status().is_server_error() => Err(super::error::internal(anyhow::anyhow!(
                "path parameters: {}",
                e.body_text()
            ))),
            Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
        }
    }
}

/// Who called, from a verified access token of a user or robot.
pub struct Caller {
    pub id: Id,
    pub kind: TokenKind,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer access token"))?;
        let claims = app.tokens.verify(token).map_err(|e| {
            let message = match e {
                TokenError::Expired => "access token expired: refresh it",
                TokenError::Invalid => "invalid access token",
            };
            ApiError::new(ErrorCode::Unauthorized, message)
        })?;
        let forbidden =
            || ApiError::new(ErrorCode::Forbidden, "this route is for users and robots");
        if claims.kind == TokenKind::Admin {
            return Err(forbidden());
        }
        let id: Id = claims.sub.parse().map_err(|_| forbidden())?;
        app.graph.learn(&id).await.map_err(super::error::internal)?;
        Ok(Caller {
            id,
            kind: claims.kind,
        })
    }
}

/// The admin bearer token (`admin_token`); unset refuses everyone.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let given = bearer(parts)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing admin bearer token"))?;
        let Some(expected) = app.config.accounts.admin_token.as_deref() else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "admin routes are off: admin_token is not set",
            ));
        };
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::new(ErrorCode::Unauthorized, "wrong admin token"))
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
