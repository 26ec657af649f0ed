//! Accounts for the benchmarks: minted as `switchboard token` does,
//! visible to everyone so that any other account may watch or call them.

use anyhow::{bail, Result};
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::Server;

pub async fn visible_user(server: &Server, api: &Api, device: Option<&str>) -> Result<SignedIn> {
    let user = server.minted("user", device, 3600)?;
    let r = api.set_visibility(&user.access, "everyone").await?;
    if r.status != 200 {
        bail!("visibility: {r:?}");
    }
    Ok(user)
}
