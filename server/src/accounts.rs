//! Account operations shared by the HTTP API and the command line.

use anyhow::Result;
use switchboard_protocol::Id;

use crate::http::RobotCreated;
use crate::keys::{random_secret, sha256_hex};
use crate::store::Store;

/// A new robot: a random id and secret; only the secret's hash is kept.
pub async fn create_robot(store: &Store) -> Result<RobotCreated> {
    let robot_id: Id = random_secret()[..32].parse().expect("32 hex characters");
    let secret = random_secret();
    store.create_robot(&robot_id, &sha256_hex(&secret)).await?;
    tracing::info!(robot_id = %robot_id, "robot provisioned");
    Ok(RobotCreated { robot_id, secret })
}
