//! A connect storm: N phones, each with its own login, connect at once
//! (CONNECT and the two SUBSCRIBEs of an idle phone; a failed connection
//! is tried again at once), as after a restart or a network blip; then
//! all their sockets close without DISCONNECT and, once the broker has
//! closed its side, all connect at once again, for as many rounds as
//! asked. For Switchboard and for mosquitto: the time until the last
//! phone is subscribed and the server's CPU time over each storm, and the
//! median CPU of the storms after the first (the lower middle of an even
//! count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use switchboard_e2e::{Database, Server};

use crate::broker::{self, Anonymous, Broker, Login};
use crate::proc::cpu_seconds;

/// Sockets `pid` holds open (database files it opens meanwhile do not
/// count).
fn sockets(pid: u32) -> Result<usize> {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed while listing is simply gone.
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        n += usize::from(target.to_string_lossy().starts_with("socket:"));
    }
    Ok(n)
}

/// Waits until `pid` holds no more sockets than `before`: it has closed
/// those of the clients that went.
async fn until_closed(pid: u32, before: usize) -> Result<()> {
    let started = Instant::now();
    while sockets(pid)? > before {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the broker still holds {} sockets", sockets(pid)?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// How often a phone tries again after its connection failed (reset,
/// refused, timed out), as the SDK does.
const TRIES: u32 = 10;

/// One storm: the time until every phone is subscribed, the server's CPU
/// time, and how many connections failed and were tried again.
async fn storm(broker: &Broker, logins: &[Login]) -> Result<(Duration, f64, u64)> {
    let cpu = cpu_seconds(broker.pid)?;
    let started = Instant::now();
    let none = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = logins
        .iter()
        .map(|login| {
            let (addr, login) = (broker.addr, login.clone());
            let (none, retries) = (none.clone(), retries.clone());
            tokio::spawn(async move {
                let filters = broker::phone_filters(&login);
                let mut tries = 1;
                loop {
                    match broker::connect(addr, &login, &filters, none.clone()).await {
                        Err(_) if tries < TRIES => {
                            tries += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        done => return done,
                    }
                }
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await??);
    }
    let took = started.elapsed();
    let cpu = cpu_seconds(broker.pid)? - cpu;
    // Each socket closes, no DISCONNECT: the phones lost their network.
    for (_, pump) in clients {
        pump.abort();
    }
    Ok((took, cpu, retries.load(Ordering::Relaxed)))
}

async fn measure(broker: &Broker, logins: &[Login], rounds: u32) -> Result<()> {
    let before = sockets(broker.pid)?;
    let mut again = Vec::new();
    for round in 1..=rounds {
        let (took, cpu, retries) = storm(broker, logins).await?;
        let per_phone = cpu * 1e6 / logins.len() as f64;
        let name = if round == 1 { "first" } else { "again" };
        println!(
            "{}: {} phones at once ({name}): all subscribed in {:.2} s, server CPU {:.2} s ({per_phone:.0} µs per phone), {retries} connections tried again",
            broker.name,
            logins.len(),
            took.as_secs_f64(),
            cpu,
        );
        if round > 1 {
            again.push(per_phone);
        }
        until_closed(broker.pid, before).await?;
    }
    again.sort_by(f64::total_cmp);
    println!(
        "{}: after the first, {} storms: median {:.0} µs per phone ({:.0}-{:.0})",
        broker.name,
        again.len(),
        again[(again.len() - 1) / 2],
        again[0],
        again[again.len() - 1]
    );
    Ok(())
}

pub async fn run(phones: usize, rounds: u32) -> Result<()> {
    let server = Server::start(&Database::Sqlite).await?;
    let logins = broker::user_logins(&server, phones)?;
    let switchboard = Broker {
        name: "switchboard".into(),
        addr: server.mqtt,
        pid: server.pid(),
    };
    measure(&switchboard, &logins, rounds).await?;
    drop(server);
    let mosquitto = Anonymous::mosquitto().await?;
    let broker = Broker {
        name: "mosquitto".into(),
        addr: mosquitto.addr,
        pid: mosquitto.pid(),
    };
    measure(&broker, &broker::anonymous_logins(phones), rounds).await
}
