//! A command-line phone: signs in with an SMS code, shows which contacts are
//! online, and calls one of them.
//!
//! ```text
//! cargo run -p switchboard-sdk --example phone -- --server http://127.0.0.1:8080 \
//!     --phone +48555000001 --contact +48555000002 --call +48555000002
//! ```

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use clap::Parser;
use switchboard_sdk::{CallKind, CallStateKind, Config, Event, EventQueue, Switchboard};

#[derive(Parser)]
struct Args {
    /// The server's HTTP API.
    #[arg(long)]
    server: String,
    /// This phone's number.
    #[arg(long)]
    phone: String,
    /// This installation's device name.
    #[arg(long, default_value = "cli")]
    device: String,
    /// Numbers of the address book to show (repeat the flag).
    #[arg(long = "contact")]
    contacts: Vec<String>,
    /// Call this number (one of the contacts) once it is online.
    #[arg(long)]
    call: Option<String>,
    /// Roots (PEM) to trust instead of the system's, for a server with a
    /// private CA.
    #[arg(long)]
    ca_file: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let switchboard = Switchboard::new(Config {
        http_url: args.server.clone(),
        mqtt_url: None,
        device: Some(args.device.clone()),
        ca_file: args.ca_file.clone(),
    })?;
    let e164 = switchboard.request_code(args.phone.clone()).await?;
    println!("code sent to {e164}; type it:");
    let code = std::io::stdin()
        .lock()
        .lines()
        .next()
        .context("no code typed")??;
    let events = EventQueue::new();
    let session = switchboard
        .sign_in(args.phone.clone(), code.trim().to_owned(), events.clone())
        .await?;
    println!("signed in as {}", session.user_id());

    // Who of the address book uses Switchboard; they may see us, we watch them.
    let matches = session.discover(args.contacts.clone()).await?;
    let ids: Vec<String> = matches.iter().map(|m| m.user_id.clone()).collect();
    session.set_contacts(ids.clone()).await?;
    for m in &matches {
        // Contacts who do not share themselves with us stay hidden.
        if let Err(e) = session.watch(m.user_id.clone()).await {
            println!("{} cannot be seen: {e}", m.phone);
        }
    }
    let number_of = |id: &str| {
        matches
            .iter()
            .find(|m| m.user_id == id)
            .map_or(id.to_owned(), |m| m.phone.clone())
    };
    let callee = match &args.call {
        Some(phone) => Some(
            matches
                .iter()
                .find(|m| &m.phone == phone)
                .map(|m| m.user_id.clone())
                .with_context(|| format!("{phone} is not a Switchboard user"))?,
        ),
        None => None,
    };

    let mut calling = None;
    loop {
        let Some(event) = events.next(std::time::Duration::from_secs(3600)).await else {
            continue;
        };
        match event {
            Event::Presence { presence } => {
                let number = number_of(&presence.user_id);
                println!(
                    "{number} is {}",
                    if presence.online { "online" } else { "offline" }
                );
                if presence.online
                    && calling.is_none()
                    && callee.as_ref() == Some(&presence.user_id)
                {
                    let sid = session
                        .call(presence.user_id.clone(), CallKind::Video)
                        .await?;
                    println!("calling {number} (call {sid})");
                    calling = Some(sid);
                }
            }
            Event::IncomingCall { call } => {
                println!(
                    "{} is calling; this phone declines",
                    number_of(&call.caller)
                );
                session.decline(call.sid).await?;
            }
            Event::CallState { call } if Some(&call.sid) == calling.as_ref() => {
                match (call.state, call.reason) {
                    (CallStateKind::Ended, Some(reason)) => {
                        println!("call ended: {reason:?}");
                        session.sign_out().await?;
                        return Ok(());
                    }
                    (state, _) => println!("call {state:?}"),
                }
            }
            Event::Connection { state } => println!("connection: {state:?}"),
            Event::Refused { refusal } => bail!("refused: {refusal:?}"),
            _ => {}
        }
    }
}
