//! Pushes to an operator's webhook: one POST per note with every token of
//! the user, for a push gateway of the operator's own.

use serde::Serialize;

use super::note::Note;
use super::outcome::{retry_after, Outcome};
use crate::store::PushToken;

pub struct Webhook {
    pub client: reqwest::Client,
    pub url: String,
}

/// `POST <push_webhook_url>` body: the note and the user's tokens.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    note: &'a Note,
    tokens: &'a [PushToken],
}

impl Webhook {
    pub async fn send(&self, note: &Note, tokens: &[PushToken]) -> Outcome {
        let sent = self
            .client
            .post(&self.url)
            .json(&Body { note, tokens })
            .send()
            .await;
        match sent {
            Ok(r) => {
                let why = format!("the push webhook answered {}", r.status());
                Outcome::from_status(r.status().as_u16(), retry_after(r.headers()), why)
            }
            Err(e) => Outcome::unanswered("the push webhook", &e),
        }
    }
}
