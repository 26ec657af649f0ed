//! Pushes for callees with no device online: a ring when the call is
//! made, and a stop when it stops ringing (answered, or ended before
//! anyone answered). Each goes to every token of the user: `ios` tokens
//! to APNs (VoIP), `android` and `web` tokens to FCM, and all of them in
//! one POST to the operator's webhook, as configured. A push is retried
//! while it can still matter; a token a service calls dead is forgotten.

mod apns;
mod fcm;
mod note;
mod outcome;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::future::join_all;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

pub use apns::is_device_token;
use note::Event;
pub use note::Note;
use outcome::{backoff, Outcome};

use crate::clock::Clock;
use crate::config;
use crate::metrics::Metrics;
use crate::services::Edges;
use crate::store::{PushToken, Store};

/// How long a stop is tried: the phone rings until it hears it.
pub const STOP_FOR_MS: i64 = 30_000;

/// The services pushes go to, their keys read and checked.
pub struct Services {
    webhook: Option<webhook::Webhook>,
    apns: Option<apns::Apns>,
    fcm: Option<fcm::Fcm>,
}

impl Services {
    /// No service: a push is decided and marked, and goes nowhere.
    #[cfg(test)]
    pub fn none() -> Services {
        Services {
            webhook: None,
            apns: None,
            fcm: None,
        }
    }

    /// `None` when none is configured. A key that cannot be read or used
    /// stops the start, naming its setting.
    pub fn from_config(config: &config::Push) -> Result<Option<Services>> {
        if config.webhook.is_none() && config.apns.is_none() && config.fcm.is_none() {
            return Ok(None);
        }
        let client = client(config.ca_file.as_deref())?;
        Ok(Some(Services {
            webhook: (config.webhook.clone()).map(|url| webhook::Webhook {
                client: client.clone(),
                url,
            }),
            apns: (config.apns.as_ref())
                .map(|c| apns::Apns::new(c, client.clone()))
                .transpose()?,
            fcm: (config.fcm.as_ref())
                .map(|c| fcm::Fcm::new(c, client.clone()))
                .transpose()?,
        }))
    }
}

/// The services, and what their answers act on.
pub struct Push {
    services: Services,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// The server's stop: retries end.
    stop: CancellationToken,
}

impl Push {
    pub fn new(services: Services, edges: &Edges) -> Push {
        Push {
            services,
            store: edges.store.clone(),
            metrics: edges.metrics.clone(),
            clock: edges.clock.clone(),
            stop: edges.stop.clone(),
        }
    }

    /// Sends `note` to every one of `tokens` (its user's), all at once,
    /// each tried until `until` (ms) or the server's stop.
    pub async fn send(&self, note: &Note, tokens: &[PushToken], until: i64) {
        let mut sends: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        let Services { webhook, apns, fcm } = &self.services;
        if let Some(webhook) = webhook {
            sends.push(Box::pin(self.deliver("webhook", "", note, until, || {
                webhook.send(note, tokens)
            })));
        }
        for token in tokens {
            let t = token.token.as_str();
            match (token.platform.as_str(), apns, fcm) {
                ("ios", Some(apns), _) => {
                    sends.push(Box::pin(self.deliver("apns", t, note, until, move || {
                        apns.send(t, note, self.clock.now_ms())
                    })))
                }
                ("android" | "web", _, Some(fcm)) => {
                    let platform = token.platform.as_str();
                    sends.push(Box::pin(self.deliver("fcm", t, note, until, move || {
                        fcm.send(platform, t, note, self.clock.now_ms())
                    })))
                }
                _ => {}
            }
        }
        join_all(sends).await;
    }

    /// One push to one service, sent again while the service says it may
    /// help and there is time; counted by its last outcome.
    async fn deliver<F, Fut>(
        &self,
        provider: &'static str,
        token: &str,
        note: &Note,
        until: i64,
        mut send: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut attempt = 0;
        let mut renewed = false;
        let result = loop {
            let sent = tokio::select! {
                _ = self.stop.cancelled() => break "gave_up",
                sent = send() => sent,
            };
            let wait = match sent {
                Outcome::Sent => break "sent",
                Outcome::DeadToken => {
                    let forgot = self.store.delete_push_token(&note.user_id, token).await;
                    if let Err(e) = forgot {
                        tracing::warn!("forgetting a dead push token: {e:#}");
                    }
                    break "dead_token";
                }
                Outcome::Failed(why) => {
                    tracing::warn!(sid = %note.sid, provider, "push: {why}");
                    break "failed";
                }
                // Once in a row: a service that refuses new credentials
                // too is misconfigured.
                Outcome::Renew if !renewed => {
                    renewed = true;
                    Duration::ZERO
                }
                Outcome::Renew => {
                    tracing::warn!(sid = %note.sid, provider, "push: new credentials refused");
                    break "failed";
                }
                Outcome::Retry { after } => {
                    attempt += 1;
                    backoff(attempt, after)
                }
            };
            if self.clock.now_ms() + wait.as_millis() as i64 >= until || !self.wanted(note).await {
                break "gave_up";
            }
            self.metrics.count_push_retry(provider);
            tokio::select! {
                _ = self.stop.cancelled() => break "gave_up",
                _ = tokio::time::sleep(wait) => {}
            }
        };
        self.count(provider, result);
    }

    /// Whether a push is still worth sending again: a ring only while its
    /// call rings (its stop would overtake it).
    async fn wanted(&self, note: &Note) -> bool {
        match note.event {
            Event::Stop => true,
            Event::Ring => self.store.rings_pushed(&note.sid).await.unwrap_or(true),
        }
    }

    fn count(&self, provider: &'static str, result: &'static str) {
        self.metrics.count_push(provider, result);
    }
}

/// The HTTP client of every push service: HTTP/2 where the service
/// offers it (APNs speaks nothing else), trusting `ca_file`'s roots
/// instead of the web's when given.
fn client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(file) = ca_file {
        let read = || format!("push_ca_file: reading {}", file.display());
        builder = builder.tls_built_in_root_certs(false);
        let mut any = false;
        for cert in CertificateDer::pem_file_iter(file).with_context(read)? {
            let der = cert.with_context(read)?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(&der)?);
            any = true;
        }
        anyhow::ensure!(any, "push_ca_file: no certificate in {}", file.display());
    }
    Ok(builder.build()?)
}
