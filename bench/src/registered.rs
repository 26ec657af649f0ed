//! What registered users cost a node before anyone connects: N accounts,
//! each with a profile and a presence row (as if each had been online
//! once), written straight into the SQLite database of a stopped server;
//! then the time from starting the server to its ready line, and its RSS
//! once ready, against the same restart with no accounts.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use switchboard_e2e::{Database, Server};

use crate::proc::rss_kib;

/// A restart on `dir`: the server, its time to ready, its RSS (KiB) then.
async fn restart(dir: tempfile::TempDir) -> Result<(Server, Duration, u64)> {
    let started = Instant::now();
    let server = Server::builder(&Database::Sqlite).dir(dir).start().await?;
    let took = started.elapsed();
    // Whatever startup spawned has had its turn once the API answers.
    reqwest::get(format!("{}/health", server.http)).await?;
    let rss = rss_kib(server.pid())?;
    Ok((server, took, rss))
}

/// Stops `server` and hands back its data directory.
fn stopped(server: Server) -> Result<tempfile::TempDir> {
    let (status, dir) = server.terminate()?;
    ensure!(status.success(), "the server stopped with {status}");
    Ok(dir)
}

/// N users with a profile and a stored presence, in one transaction.
async fn seed(dir: &tempfile::TempDir, users: usize) -> Result<()> {
    let mut db = SqliteConnectOptions::new()
        .filename(dir.path().join("switchboard.db"))
        .connect()
        .await?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
         INSERT INTO users (id, kind, created_at) SELECT printf('%032x', i), 'user', 0 FROM n",
    )
    .bind(users as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO profiles (user_id, nickname, updated_at)
         SELECT id, 'user ' || rowid, 0 FROM users",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO presence (user_id, seq, last_seen)
         SELECT id, 3, 1764000000000 FROM users",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    db.close().await?;
    Ok(())
}

pub async fn run(users: usize) -> Result<()> {
    let (server, _, _) = restart(tempfile::tempdir()?).await?;
    let (server, empty_took, empty_rss) = restart(stopped(server)?).await?;
    let dir = stopped(server)?;
    let seeding = Instant::now();
    seed(&dir, users).await?;
    println!(
        "seeded {users} users in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let (server, took, rss) = restart(dir).await?;
    // The first start with the users does the per-user work a restart does.
    let (server, again_took, again_rss) = restart(stopped(server)?).await?;
    drop(server);
    println!(
        "no users: ready in {:.2} s, RSS {:.1} MB",
        empty_took.as_secs_f64(),
        empty_rss as f64 / 1024.0
    );
    for (name, took, rss) in [
        ("first start", took, rss),
        ("restart", again_took, again_rss),
    ] {
        println!(
            "{users} users, {name}: ready in {:.2} s, RSS {:.1} MB, {:.0} bytes per user",
            took.as_secs_f64(),
            rss as f64 / 1024.0,
            (rss.saturating_sub(empty_rss) * 1024) as f64 / users as f64
        );
    }
    Ok(())
}
