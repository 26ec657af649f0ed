//! `switchboard`: the embedded MQTT broker, the HTTP API and the store in
//! one process. See ARCHITECTURE.md at the repository root for the map.

mod accounts;
mod batched;
mod broker;
mod bus;
mod clock;
mod config;
mod holder;
mod http;
mod keys;
mod limits;
mod media;
mod metrics;
mod outbound;
mod push;
mod refused;
mod serve;
mod services;
mod sms;
mod social;
mod store;
mod tls;
mod token;
mod turn;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard_protocol::{Device, Id};

// Chosen by measurement (docs/benchmarks.md): beside glibc's malloc it
// gives the broker 1.6x its QoS 1 throughput and a third of the memory kept
// after a load; mimalloc costs 40% more per idle connection.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use crate::config::{Config, LogFormat};
use crate::token::TokenKind;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: calling and robot teleoperation backend"
)]
struct Cli {
    /// TOML configuration file; `SWITCHBOARD_*` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker and the HTTP API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Mint an access token (for development and tests); creates the
    /// account if it does not exist.
    Token {
        /// The user or robot id (32 lowercase hex); repeated, one token per
        /// line in the same order.
        #[arg(long, required = true)]
        sub: Vec<Id>,
        #[arg(long)]
        device: Option<Device>,
        #[arg(long, value_enum, default_value = "user")]
        kind: TokenKind,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 900)]
        ttl: u64,
    },
    /// Robot accounts.
    Robot {
        #[command(subcommand)]
        command: RobotCommand,
    },
}

#[derive(Subcommand)]
enum RobotCommand {
    /// Provision a robot; prints `{"robotId", "secret"}` (the secret is shown once).
    Create,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let json = cli.log_json || config.log_format == LogFormat::Json;
    init_logging(json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                // Without its background thread jemalloc hands freed pages
                // back only while allocating: a server left idle after a
                // load would keep them (68 MB instead of about 30 in the
                // broker bench, docs/benchmarks.md).
                if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
                    tracing::warn!("jemalloc's background thread: {e}");
                }
                serve::run(config).await
            }
            Command::Migrate => serve::migrate(&config).await,
            Command::Token {
                sub,
                device,
                kind,
                ttl,
            } => {
                let tokens = serve::tokens(&config)?;
                // The subject gets an account, so the token works for
                // everything a signed-in user or robot can do.
                if let Some(account) = kind.account() {
                    let store = serve::open_store(&config).await?;
                    for sub in &sub {
                        store.ensure_user(sub, account).await?;
                    }
                    store.close().await;
                }
                for sub in &sub {
                    println!("{}", tokens.mint(sub, kind, device.clone(), ttl));
                }
                Ok(())
            }
            Command::Robot {
                command: RobotCommand::Create,
            } => {
                let store = serve::open_store(&config).await?;
                let robot = accounts::create_robot(&store).await?;
                store.close().await;
                println!("{}", serde_json::to_string(&robot)?);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
