//! Robot ownership.

use anyhow::Result;
use switchboard_protocol::Id;

use super::{id_pairs, typed, Store};

impl Store {
    /// Records that `user` owns `robot` (again: keeps the first time); a
    /// claimed code does it in its own transaction (`claim_code`).
    #[cfg(test)]
    pub async fn add_owner(&self, robot: &Id, user: &Id) -> Result<()> {
        sqlx::query(
            "INSERT INTO ownership (robot_id, user_id, paired_at) VALUES ($1, $2, $3)
             ON CONFLICT (robot_id, user_id) DO NOTHING",
        )
        .bind(robot.as_str())
        .bind(user.as_str())
        .bind(crate::clock::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an ownership; false when there was none.
    pub async fn remove_owner(&self, robot: &Id, user: &Id) -> Result<bool> {
        let r = sqlx::query("DELETE FROM ownership WHERE robot_id = $1 AND user_id = $2")
            .bind(robot.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A user's robots with when they were paired, oldest first.
    pub async fn robots_of(&self, user: &Id) -> Result<Vec<(Id, i64)>> {
        self.paired_with("SELECT robot_id, paired_at FROM ownership WHERE user_id = $1 ORDER BY paired_at, robot_id", user)
            .await
    }

    /// A robot's owners with when they paired, oldest first.
    pub async fn owners_of(&self, robot: &Id) -> Result<Vec<(Id, i64)>> {
        self.paired_with("SELECT user_id, paired_at FROM ownership WHERE robot_id = $1 ORDER BY paired_at, user_id", robot)
            .await
    }

    /// The other side of `id`'s ownerships and when they began, by `sql`.
    async fn paired_with(&self, sql: &str, id: &Id) -> Result<Vec<(Id, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(other, at)| Ok((typed(other)?, at)))
            .collect()
    }

    /// Every `(robot, owner)`, and every robot id, for the in-memory graph.
    pub async fn load_robots(&self) -> Result<(Vec<Id>, Vec<(Id, Id)>)> {
        let robots: Vec<String> = sqlx::query_scalar("SELECT id FROM users WHERE kind = 'robot'")
            .fetch_all(&self.pool)
            .await?;
        let owners = sqlx::query_as("SELECT robot_id, user_id FROM ownership")
            .fetch_all(&self.pool)
            .await?;
        let robots = robots.into_iter().map(typed).collect::<Result<_>>()?;
        Ok((robots, id_pairs(owners)?))
    }
}
