//! Memory that must not grow with traffic, read from the server's
//! /proc/<pid> (RSS, and CPU time for an idle server):
//!
//! - `logins`: N MQTT logins of one client with a day-long token, each
//!   connection closed at once; RSS before, after and a few seconds later;
//! - `commands`: N robot commands answered `done` in one call, then the
//!   call hung up; RSS, and the CPU the idle server then burns;
//! - `soak`: minutes of mixed traffic, a round every 3 s (each user comes
//!   online, changes its profile, sends refused messages, calls and
//!   cancels, goes away; 500 robot commands in a call), RSS every 30 s;
//!   the end compared with the RSS after warm-up. The server keeps an
//!   ended call 10 minutes (late actions, late subscribers' retained
//!   `ended`), so memory rightly grows with the call rate for that long:
//!   the warm-up lasts past it by default.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use switchboard_e2e::api::Api;
use switchboard_e2e::calls::act;
use switchboard_e2e::mqtt::{connect, Client, Login, Via};
use switchboard_e2e::robots::{follow_commands, next_json, paired_with, Paired};
use switchboard_e2e::{random_id, Database, Server};

use crate::proc::{cpu_seconds, rss_kib};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A day-long token for a new account.
fn account(server: &Server, kind: &str) -> Result<(String, String)> {
    let id = random_id();
    let token = server.token(&id, None, kind, 86_400)?;
    Ok((id, token))
}

async fn login(server: &Server, id: &str, token: &str) -> Result<Client> {
    connect(server.mqtt, Via::Tcp, Login::token(id, id, token))
        .await
        .map_err(|e| anyhow::anyhow!("login refused: {e:?}"))
}

pub async fn logins(count: usize, rate: u64) -> Result<()> {
    let server = Server::start(&Database::Sqlite).await?;
    let pid = server.pid();
    let (id, token) = account(&server, "user")?;
    // Warm up allocator pools and the broker's per-client structures first.
    for _ in 0..200 {
        drop(login(&server, &id, &token).await?);
    }
    server
        .metric_reaches("switchboard_mqtt_connections", 0.0)
        .await;
    let before = rss_kib(pid)?;
    let gap = Duration::from_secs(1) / rate.max(1) as u32;
    let started = Instant::now();
    for i in 0..count {
        drop(login(&server, &id, &token).await?);
        tokio::time::sleep_until((started + gap * (i as u32 + 1)).into()).await;
    }
    server
        .metric_reaches("switchboard_mqtt_connections", 0.0)
        .await;
    let after = rss_kib(pid)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = rss_kib(pid)?;
    println!(
        "logins: {count} logins of one client at {rate}/s, each closed: RSS {:.1} MiB before, {:.1} MiB after, {:.1} MiB 5 s later; {:.0} bytes per closed connection",
        mib(before),
        mib(after),
        mib(settled),
        (settled as f64 - before as f64) * 1024.0 / count as f64,
    );
    Ok(())
}

/// A robot and an owner paired with it, both connected.
async fn paired(server: &Server, api: &Api) -> Result<Paired> {
    let owner = server.minted("user", Some("phone"), 86_400)?;
    // A robot account with a day-long token: one signed in by its secret
    // gets the default 15 minutes, and the server closes its connection.
    let bot = server.minted("robot", None, 86_400)?;
    Ok(paired_with(server, api, bot, &owner).await)
}

/// `count` commands in call `sid`, each answered `moving` then `done`.
async fn command_round(p: &mut Paired, sid: &str, count: usize, prefix: &str) -> Result<()> {
    let (request, response) = follow_commands(&mut p.owner_mqtt, &mut p.bot_mqtt, sid).await;
    // In windows, so neither side's queue grows past what it reads.
    for window in (0..count).collect::<Vec<_>>().chunks(100) {
        for i in window {
            let ask = json!({"requestId": format!("{prefix}{i}"), "destination": "dock"});
            p.owner_mqtt.publish_json(&request, &ask).await?;
        }
        for _ in window {
            let asked = next_json(&mut p.bot_mqtt, &request).await;
            for status in ["moving", "done"] {
                let answer = json!({"requestId": asked["requestId"], "status": status});
                p.bot_mqtt.publish_json(&response, &answer).await?;
            }
        }
        for _ in 0..2 * window.len() {
            next_json(&mut p.owner_mqtt, &response).await;
        }
    }
    Ok(())
}

/// Hangs up and, as an app does, stops following the call's topics.
async fn hang_up(p: &Paired, sid: &str) -> Result<()> {
    act(&p.owner_mqtt, sid, "hangup").await?;
    for topic in ["state", "moveTo/response"] {
        p.owner_mqtt
            .unsubscribe(&format!("session/{sid}/{topic}"))
            .await?;
    }
    p.bot_mqtt
        .unsubscribe(&format!("session/{sid}/moveTo/request"))
        .await
}

pub async fn commands(count: usize) -> Result<()> {
    let server = Server::start(&Database::Sqlite).await?;
    let api = Api::new(&server);
    let pid = server.pid();
    let mut robot = paired(&server, &api).await?;
    let sid = robot.call().await;
    command_round(&mut robot, &sid, 1_000, "warm").await?;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    command_round(&mut robot, &sid, count, "r").await?;
    let elapsed = started.elapsed();
    let answered = rss_kib(pid)?;
    hang_up(&robot, &sid).await?;
    server
        .metric_reaches("switchboard_robot_commands", 0.0)
        .await;
    let idle_from = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = cpu_seconds(pid)? - idle_from;
    println!(
        "commands: {count} commands answered moving then done in one call ({:.0}/s): RSS {:.1} MiB before, {:.1} MiB after ({:.1} bytes per answered command); after hangup the idle server used {:.1}% of a core",
        count as f64 / elapsed.as_secs_f64(),
        mib(before),
        mib(answered),
        (answered as f64 - before as f64) * 1024.0 / count as f64,
        idle_cpu * 10.0,
    );
    Ok(())
}

/// One minute's worth of mixed traffic from `users` (watching each other)
/// and a robot call.
async fn mixed_round(
    server: &Server,
    users: &[(String, String)],
    robot: &mut Paired,
    round: usize,
) -> Result<()> {
    // Presence churn: every user connects, publishes a profile and leaves.
    let mut clients = Vec::new();
    for (i, (id, token)) in users.iter().enumerate() {
        let client = login(server, id, token).await?;
        let profile = json!({"nickname": format!("user {i} round {round}")});
        client
            .publish(
                &format!("users/{id}/info"),
                profile.to_string().as_bytes(),
                true,
            )
            .await?;
        // Refused messages: not JSON, a topic of someone else's, a topic
        // outside the contract.
        let other = &users[(i + 1) % users.len()].0;
        client
            .publish(&format!("users/{id}/info"), b"{not json", false)
            .await?;
        client
            .publish(&format!("users/{other}/info"), b"{}", false)
            .await?;
        client.publish("nowhere/at/all", b"x", false).await?;
        clients.push(client);
    }
    // Calls: each user calls the next one, who is connected, and hangs up
    // once the server stored the invite.
    for pair in users.chunks(2) {
        let [(caller, _), (callee, _)] = pair else {
            continue;
        };
        let sid = random_id();
        let invite =
            json!({"sid": sid, "from": caller, "fromDevice": null, "kind": "audio", "sentAt": 0});
        let index = users
            .iter()
            .position(|(id, _)| id == caller)
            .expect("a user");
        clients[index]
            .publish(
                &format!("invite/{callee}/{sid}"),
                invite.to_string().as_bytes(),
                false,
            )
            .await?;
        clients[index]
            .publish(
                &format!("session/{sid}/call"),
                br#"{"action": "cancel"}"#,
                false,
            )
            .await?;
    }
    drop(clients);
    // Commands in a robot call, hung up at the end.
    let sid = robot.call().await;
    command_round(robot, &sid, 500, &format!("s{round}-")).await?;
    hang_up(robot, &sid).await?;
    Ok(())
}

const ROUND_GAP: Duration = Duration::from_secs(3);

pub async fn soak(minutes: u64, warm_up_minutes: u64, users: usize) -> Result<()> {
    let server = Server::start(&Database::Sqlite).await?;
    let api = Api::new(&server);
    let pid = server.pid();
    let mut accounts = Vec::with_capacity(users);
    for _ in 0..users {
        let (id, token) = account(&server, "user")?;
        // Everyone sees everyone: profiles and presence fan out.
        let r = api.set_visibility(&token, "everyone").await?;
        if r.status != 200 {
            bail!("visibility: {r:?}");
        }
        accounts.push((id, token));
    }
    let mut robot = paired(&server, &api).await?;
    let started = Instant::now();
    let warm_up = Duration::from_secs(warm_up_minutes * 60);
    let mut warm: Option<u64> = None;
    let mut next_sample = Duration::ZERO;
    let mut round = 0;
    println!("soak: {users} users, {minutes} min; RSS every 30 s:");
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        let round_started = Instant::now();
        mixed_round(&server, &accounts, &mut robot, round).await?;
        round += 1;
        // Every user acts once a round: rounds 3 s apart stay inside the
        // per-user limits (30 invites and profile changes a minute), so
        // the traffic is served, not refused.
        tokio::time::sleep_until((round_started + ROUND_GAP).into()).await;
        if started.elapsed() >= next_sample {
            let rss = rss_kib(pid)?;
            println!(
                "  {:>4} s  {:.1} MiB",
                started.elapsed().as_secs(),
                mib(rss)
            );
            next_sample += Duration::from_secs(30);
            if warm.is_none() && started.elapsed() >= warm_up {
                warm = Some(rss);
            }
        }
    }
    let end = rss_kib(pid)?;
    let warm = warm.context("the soak ended before its warm-up")?;
    println!(
        "soak: {round} rounds in {minutes} min; RSS after warm-up {:.1} MiB, at the end {:.1} MiB ({:+.1}%)",
        mib(warm),
        mib(end),
        (end as f64 - warm as f64) * 100.0 / warm as f64,
    );
    Ok(())
}
