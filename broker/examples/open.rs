//! The broker core alone, letting anyone log in and use any topic: what
//! `switchboard-bench broker --other` measures beside mosquitto.
//! `cargo run --release -p switchboard-broker --example open -- PORT`

use switchboard_broker::{Broker, ConnectRefusal, Hooks, Limits, Login};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Open;

impl Hooks for Open {
    type Client = ();

    async fn authenticate(&self, _: &Login<'_>) -> Result<(), ConnectRefusal> {
        Ok(())
    }
}

#[tokio::main(worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse().map_err(std::io::Error::other)?,
        None => 1883,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    Broker::new(Open, Limits::default())
        .serve(listener, None)
        .await
}
