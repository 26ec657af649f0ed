//! Robot ownership.

use anyhow::Result;

use super::Store;
use crate::clock::now_ms;

impl Store {
    /// Records that `user` owns `robot` (again: keeps the first time).
    pub async fn add_owner(&self, robot: &str, user: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO ownership (robot_id, user_id, paired_at) VALUES ($1, $2, $3)
             ON CONFLICT (robot_id, user_id) DO NOTHING",
        )
        .bind(robot)
        .bind(user)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an ownership; false when there was none.
    pub async fn remove_owner(&self, robot: &str, user: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM ownership WHERE robot_id = $1 AND user_id = $2")
            .bind(robot)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A user's robots with when they were paired, oldest first.
    pub async fn robots_of(&self, user: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT robot_id, paired_at FROM ownership WHERE user_id = $1 ORDER BY paired_at, robot_id")
            .bind(user)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A robot's owners with when they paired, oldest first.
    pub async fn owners_of(&self, robot: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT user_id, paired_at FROM ownership WHERE robot_id = $1 ORDER BY paired_at, user_id")
            .bind(robot)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every `(robot, owner)`, and every robot id, for the in-memory graph.
    pub async fn load_robots(&self) -> Result<(Vec<String>, Vec<(String, String)>)> {
        let robots = sqlx::query_scalar("SELECT id FROM users WHERE kind = 'robot'")
            .fetch_all(&self.pool)
            .await?;
        let owners = sqlx::query_as("SELECT robot_id, user_id FROM ownership")
            .fetch_all(&self.pool)
            .await?;
        Ok((robots, owners))
    }
}
