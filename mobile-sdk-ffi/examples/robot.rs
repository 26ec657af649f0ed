//! A command-line robot: shows a pairing code, accepts its owners' calls and
//! answers `moveTo` with `moving`, then `arrived`.
//!
//! ```text
//! cargo run -p switchboard-sdk --example robot -- --server http://127.0.0.1:8080 \
//!     --robot-id <id> --secret <secret>
//! ```
//! (`POST /v1/robots` with the admin token provisions a robot.)

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use switchboard_sdk::{Config, Event, EventQueue, Switchboard};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: String,
    #[arg(long)]
    robot_id: String,
    #[arg(long)]
    secret: String,
    /// How long a move takes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    travel_ms: u64,
    /// Roots (PEM) to trust instead of the system's, for a server with a
    /// private CA.
    #[arg(long)]
    ca_file: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let travel = Duration::from_millis(args.travel_ms);
    let events = EventQueue::new();
    let session = Switchboard::new(Config {
        http_url: args.server,
        mqtt_url: None,
        device: None,
        ca_file: args.ca_file,
    })?
    .sign_in_robot(args.robot_id, args.secret, events.clone())
    .await?;
    let pairing = session.start_pairing().await?;
    println!("pairing code: {}", pairing.code().code);
    tokio::spawn(async move {
        match pairing.wait().await {
            Ok(owner) => println!("paired with {owner}"),
            Err(e) => println!("not paired: {e}"),
        }
    });

    loop {
        let Some(event) = events.next(Duration::from_secs(3600)).await else {
            continue;
        };
        match event {
            Event::IncomingCall { call } => {
                println!("call from {}", call.caller);
                let state = session.accept(call.sid).await?;
                println!("call {:?}", state.state);
            }
            Event::CommandRequest { request } => {
                println!("{} {}", request.command, request.arguments_json);
                // The journey runs beside the event loop, which goes on.
                let session = session.clone();
                tokio::spawn(async move {
                    let answer = |status: &str| {
                        session.respond(
                            request.sid.clone(),
                            request.command.clone(),
                            request.request_id.clone(),
                            status.into(),
                            request.arguments_json.clone(),
                        )
                    };
                    let answered = if request.command == "moveTo" {
                        answer("moving")?;
                        tokio::time::sleep(travel).await;
                        answer("arrived")
                    } else {
                        answer("unknown_command")
                    };
                    if let Err(e) = &answered {
                        println!("could not answer: {e}");
                    }
                    answered
                });
            }
            Event::CallState { call } => println!("call {:?} {:?}", call.state, call.reason),
            Event::Connection { state } => println!("connection: {state:?}"),
            _ => {}
        }
    }
}
