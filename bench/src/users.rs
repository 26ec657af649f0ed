//! Accounts for the benchmarks: minted as `switchboard token` does,
//! visible to everyone so that any other account may watch or call them.

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::Server;

pub async fn visible_user(server: &Server, api: &Api, device: Option<&str>) -> Result<SignedIn> {
    let user = server.minted("user", device, 3600)?;
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
