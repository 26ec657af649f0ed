//! Accounts for the benchmarks: tokens minted as `switchboard token` does,
//! visible to everyone so that any other account may watch or call them.

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::{random_id, Server};

pub async fn visible_user(server: &Server, api: &Api, device: Option<&str>) -> Result<SignedIn> {
    let id = random_id();
    let access = server.token(&id, device, "user", 3600)?;
    let r = api
        .put(
            "/v1/me/visibility",
            &access,
            json!({"visibility": "everyone"}),
        )
        .await?;
    if r.status != 200 {
        bail!("visibility: {r:?}");
    }
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
