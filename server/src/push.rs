//! Wake-up pushes for callees with no device online: to a webhook that a
//! push gateway (FCM, APNs, ...) or a test receives.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use switchboard_protocol::payload::CallKind;
use switchboard_protocol::{Id, Sid};

use crate::config::{self, Config};
use crate::store::PushToken;

pub enum Push {
    Off,
    Webhook {
        client: reqwest::Client,
        url: String,
    },
}

/// `POST <push_webhook_url>` body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WakeUp<'a> {
    pub user_id: &'a Id,
    pub sid: &'a Sid,
    pub from: &'a Id,
    pub kind: CallKind,
    /// When the call ends `missed` if nobody answers (ms since the epoch).
    pub expires_at: i64,
    /// The callee's registered devices.
    pub tokens: &'a [PushToken],
}

impl Push {
    pub fn from_config(config: &Config) -> Result<Push> {
        Ok(match &config.push {
            config::Push::None => Push::Off,
            config::Push::Webhook { url } => Push::Webhook {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
                url: url.clone(),
            },
        })
    }

    pub async fn wake(&self, wake: &WakeUp<'_>) -> Result<()> {
        match self {
            Push::Off => Ok(()),
            Push::Webhook { client, url } => {
                let response = client
                    .post(url)
                    .json(wake)
                    .send()
                    .await
                    .context("calling the push webhook")?;
                if !response.status().is_success() {
                    bail!("the push webhook answered {}", response.status());
                }
                Ok(())
            }
        }
    }
}
