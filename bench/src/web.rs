//! Setup time in Chromium: from the callee's click on Accept to the first
//! remote video frame each side's page presents, over R calls between two
//! pages of the web app (`web/tests/setup-time.mjs`, playwright-core,
//! headless Chromium with a fake camera), through the relay on loopback.
//! Reported: p50, p95 and the extremes, for the callee and the caller.
//! (The pages get three minutes, as the browser test does: about 60
//! rounds here.)

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use switchboard_e2e::api::SmsInbox;
use switchboard_e2e::{run_to_end, Database, Server};

use crate::stats::{ms, quantile};

pub async fn run(rounds: usize) -> Result<()> {
    let sms = SmsInbox::start().await?;
    let server = Server::with_sms(&Database::Sqlite, &sms).start().await?;
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../web/tests/setup-time.mjs"
    ));
    let chromium = std::env::var("E2E_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut node = std::process::Command::new("node");
    node.arg(&script)
        .env("SB_URL", &server.http)
        .env("SB_SMS", &sms.url)
        .env("CHROMIUM", chromium)
        .env("SB_ROUNDS", rounds.to_string());
    let stdout = run_to_end(node, "setup-time").await;
    let result = (stdout.lines())
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(result)?;
    println!("accept to first remote frame shown, {rounds} calls in Chromium, loopback:");
    for side in ["callee", "caller"] {
        let mut times: Vec<Duration> = (result[side].as_array().context("no times")?.iter())
            .filter_map(|t| t.as_u64())
            .map(Duration::from_millis)
            .collect();
        times.sort();
        println!(
            "  {side}: p50 {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.95)),
            ms(times[0]),
            ms(times[times.len() - 1]),
        );
    }
    Ok(())
}
