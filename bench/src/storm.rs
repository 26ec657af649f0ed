//! A connect storm: N phones, each with its own login, connect at once
//! (CONNECT and the two SUBSCRIBEs of an idle phone; a failed connection
//! is tried again at once), as after a restart or a network blip; then
//! all their sockets close without DISCONNECT and, once the broker has
//! closed its side, all connect at once again, for as many rounds as
//! asked. For Switchboard and for mosquitto: the time until the last
//! phone is subscribed; the server's CPU time for each storm's connects
//! and, apart, for its disconnects, each counted until the server is idle
//! again (so work it defers, like stores that wait to gather, counts where
//! it was caused); and the medians of the storms after the first (the
//! lower middle of an even count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use switchboard_e2e::{Database, Server};

use crate::broker::{self, Anonymous, Broker, Login};
use crate::proc::{cpu_seconds, cpu_ticks};

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

/// Waits until `pid` uses no more than one clock tick of CPU in each of
/// two reads in a row 200 ms apart: what it was doing is done.
async fn until_idle(pid: u32) -> Result<()> {
    let started = Instant::now();
    let (mut last, mut quiet) = (cpu_ticks(pid)?, 0);
    while quiet < 2 {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the broker is still busy after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cpu_ticks(pid)?;
        quiet = if now - last <= 1 { quiet + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

/// How often a phone tries again after its connection failed (reset,
/// refused, timed out), as the SDK does.
const TRIES: u32 = 10;

/// One storm's figures.
struct Storm {
    /// Until every phone is subscribed.
    took: Duration,
    /// The server's CPU seconds for the connects, and for the disconnects.
    connects: f64,
    disconnects: f64,
    /// Connections that failed and were tried again.
    retries: u64,
}

/// One storm: every phone connects and subscribes, then every socket
/// closes; the broker's CPU for each half, until it is idle again.
async fn storm(broker: &Broker, logins: &[Login], sockets_before: usize) -> Result<Storm> {
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
    until_idle(broker.pid).await?;
    let connected = cpu_seconds(broker.pid)?;
    // Each socket closes, no DISCONNECT: the phones lost their network.
    for (_, pump) in clients {
        pump.abort();
    }
    until_closed(broker.pid, sockets_before).await?;
    until_idle(broker.pid).await?;
    Ok(Storm {
        took,
        connects: connected - cpu,
        disconnects: cpu_seconds(broker.pid)? - connected,
        retries: retries.load(Ordering::Relaxed),
    })
}

/// The median (the lower middle of an even count) and the range.
fn spread(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "median {:.0} µs per phone ({:.0}-{:.0})",
        values[(values.len() - 1) / 2],
        values[0],
        values[values.len() - 1]
    )
}

async fn measure(broker: &Broker, logins: &[Login], rounds: u32) -> Result<()> {
    until_idle(broker.pid).await?;
    let before = sockets(broker.pid)?;
    let per_phone = |cpu: f64| cpu * 1e6 / logins.len() as f64;
    let (mut connects, mut disconnects) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let figures = storm(broker, logins, before).await?;
        let name = if round == 1 { "first" } else { "again" };
        println!(
            "{}: {} phones at once ({name}): all subscribed in {:.2} s, server CPU for the connects {:.2} s ({:.0} µs per phone), for the disconnects {:.2} s ({:.0} µs per phone), {} connections tried again",
            broker.name,
            logins.len(),
            figures.took.as_secs_f64(),
            figures.connects,
            per_phone(figures.connects),
            figures.disconnects,
            per_phone(figures.disconnects),
            figures.retries,
        );
        if round > 1 {
            connects.push(per_phone(figures.connects));
            disconnects.push(per_phone(figures.disconnects));
        }
    }
    println!(
        "{}: after the first, {} storms: connects {}; disconnects {}",
        broker.name,
        connects.len(),
        spread(connects),
        spread(disconnects)
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
