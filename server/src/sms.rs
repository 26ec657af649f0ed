//! Sending one-time codes: to the log (development) or to a webhook that
//! any SMS gateway, or a test, can receive.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use switchboard_protocol::Phone;

use crate::config::{self, Config};
use crate::store::OTP_TTL_MINUTES;

pub enum Sms {
    Log,
    Webhook {
        client: reqwest::Client,
        url: String,
    },
}

/// The text of the SMS, naming the code's lifetime.
fn message(code: &str) -> String {
    format!("Your Switchboard code is {code}. It expires in {OTP_TTL_MINUTES} minutes.")
}

/// The webhook's body: `{"phone", "code", "message"}`.
#[derive(Serialize)]
struct WebhookBody<'a> {
    phone: &'a str,
    code: &'a str,
    message: String,
}

impl Sms {
    pub fn from_config(config: &Config) -> Result<Sms> {
        Ok(match &config.sms {
            config::Sms::Log => Sms::Log,
            config::Sms::Webhook { url } => Sms::Webhook {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
                url: url.clone(),
            },
        })
    }

    pub async fn send_code(&self, phone: &Phone, code: &str) -> Result<()> {
        let message = message(code);
        match self {
            Sms::Log => {
                tracing::info!(phone = %phone, code, "one-time code (sms_provider = log)");
                Ok(())
            }
            Sms::Webhook { client, url } => {
                let body = WebhookBody {
                    phone: phone.as_str(),
                    code,
                    message,
                };
                let response = client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .context("calling the SMS webhook")?;
                if !response.status().is_success() {
                    bail!("the SMS webhook answered {}", response.status());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_tells_the_code_and_its_lifetime() {
        assert_eq!(
            super::message("012345"),
            "Your Switchboard code is 012345. It expires in 5 minutes."
        );
    }
}
