//! Accounts for the benchmarks: tokens minted as `switchboard token` does,
//! visible to everyone so that any other account may watch or call them.

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::{random_id, Server};

/// A new account of `kind` (`user`, `robot`) with a token for `device`
/// that lives `ttl_s`.
pub fn minted(server: &Server, kind: &str, device: Option<&str>, ttl_s: u64) -> Result<SignedIn> {
    let id = random_id();
    let access = server.token(&id, device, kind, ttl_s)?;
    let client_id = match device {
        Some(device) => format!("{id}:{device}"),
        None => id.clone(),
    };
    Ok(SignedIn {
        client_id,
        id,
        access,
        refresh: String::new(),
        body: serde_json::Value::Null,
    })
}

pub async fn visible_user(server: &Server, api: &Api, device: Option<&str>) -> Result<SignedIn> {
    let user = minted(server, "user", device, 3600)?;
    let r = api
        .put(
            "/v1/me/visibility",
            &user.access,
            json!({"visibility": "everyone"}),
        )
        .await?;
    if r.status != 200 {
        bail!("visibility: {r:?}");
    }
    Ok(user)
}
