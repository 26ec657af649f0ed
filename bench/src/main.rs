//! `switchboard-bench`: starts the real `switchboard` binary (the release
//! build beside this one) on free loopback ports and measures it with real
//! MQTT clients. Figures go to docs/benchmarks.md with the command that
//! made them.

mod broker;
mod calls;
mod cluster;
mod memory;
mod presence;
mod proc;
mod registered;
mod relay;
mod stats;
mod storm;
mod tls;
mod users;
mod web;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchboard-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Presence fan-out: one user watched by N subscribers; time from its
    /// disconnect to each watcher's `false`.
    Presence {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// Signalling round trip: invite -> callee notified -> accept -> caller
    /// sees `accepted`, with many calls at once.
    Calls {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// N nodes on PostgreSQL (`E2E_POSTGRES_URL`) and NATS, instead
        /// of one server on SQLite.
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// Media relay: K calls, both sides sending RTP at `rate` packets/s;
    /// packets forwarded per CPU-second and write-to-arrival latency.
    Relay {
        #[arg(long, default_value_t = 10)]
        calls: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The broker beside mosquitto: memory per idle connection, CPU per
    /// connect, and the robot hot path's throughput at QoS 1 and 0.
    Broker {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Messages per stream test, shared by its pairs.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Another broker of anonymous clients to measure the same way,
        /// `NAME=COMMAND` (the port is added as its last argument).
        #[arg(long = "other")]
        others: Vec<String>,
        /// Leave Switchboard out (mosquitto and the others only).
        #[arg(long)]
        others_only: bool,
    },
    /// A connect storm: N phones connect and subscribe at once, then
    /// again after all their sockets closed, beside mosquitto; the
    /// server's CPU for the connects and for the disconnects apart.
    Storm {
        /// 19,000 is what a 20,000 file limit per process allows.
        #[arg(long, default_value_t = 19_000)]
        phones: usize,
        /// Storms per broker: the first, then the others, whose medians
        /// are reported.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..))]
        rounds: u32,
    },
    /// Memory per closed connection: N logins of one client with a
    /// day-long token, each connection closed at once.
    Logins {
        #[arg(long, default_value_t = 8000)]
        count: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
    /// Memory per answered robot command, and the idle server's CPU after
    /// the call ends.
    Commands {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    /// Registered users nobody has connected: a node's time to ready and
    /// RSS with N accounts (each with a profile and a stored presence)
    /// against none.
    Registered {
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
    },
    /// MQTT over TLS against plain: connects per second, server CPU per
    /// connect and RSS per idle connection.
    Tls {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
    },
    /// What crossing nodes adds to a message's latency: two nodes on
    /// PostgreSQL (`E2E_POSTGRES_URL`) and a nats-server of its own.
    Cluster {
        #[arg(long, default_value_t = 5000)]
        rounds: usize,
    },
    /// Setup time in Chromium: the callee's accept to the first remote
    /// video frame shown, on both sides, over R calls of the web app.
    Web {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Mixed traffic for minutes: RSS at the end against after warm-up.
    Soak {
        #[arg(long, default_value_t = 25)]
        minutes: u64,
        /// Past the 10 minutes the server keeps an ended call.
        #[arg(long, default_value_t = 11)]
        warm_up_minutes: u64,
        #[arg(long, default_value_t = 50)]
        users: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Presence { watchers, rounds } => presence::run(watchers, rounds).await,
        Bench::Broker {
            connections,
            pairs,
            messages,
            others,
            others_only,
        } => broker::run(connections, pairs, messages, &others, others_only).await,
        Bench::Storm { phones, rounds } => storm::run(phones, rounds).await,
        Bench::Calls {
            pairs,
            rounds,
            nodes,
        } => calls::run(pairs, rounds, nodes).await,
        Bench::Relay {
            calls,
            rate,
            seconds,
        } => relay::run(calls, rate, seconds).await,
        Bench::Logins { count, rate } => memory::logins(count, rate).await,
        Bench::Commands { count } => memory::commands(count).await,
        Bench::Registered { users } => registered::run(users).await,
        Bench::Cluster { rounds } => cluster::run(rounds).await,
        Bench::Tls { connections } => tls::run(connections).await,
        Bench::Web { rounds } => web::run(rounds).await,
        Bench::Soak {
            minutes,
            warm_up_minutes,
            users,
        } => memory::soak(minutes, warm_up_minutes, users).await,
    }
}
