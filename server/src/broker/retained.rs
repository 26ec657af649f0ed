//! Retained messages. The state the services hold (each user's profile
//! and presence) is not copied into the broker: a new subscription to a
//! user's topics is sent that state as it is at that moment, read from the
//! services and flagged retained, as a retained message would be. So an
//! account nobody watches costs no memory, and a start republishes
//! nothing. Everything else retained (call states, a robot's id on its
//! pairing code) is kept here, in memory.

use std::str::FromStr;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};
use switchboard_protocol::filter::Filter;
use switchboard_protocol::Topic;

use super::publisher::{from_server, message};
use crate::services::Services;

pub struct Retained {
    scx: ServerContext,
    kept: DefaultRetainStorage,
    /// `None` with the topic rules off (open broker): then every retained
    /// message is kept.
    services: Option<Services>,
}

impl Retained {
    pub fn new(scx: ServerContext, services: Option<Services>) -> Self {
        Retained {
            scx,
            kept: DefaultRetainStorage::new(),
            services,
        }
    }

    /// The user topics `filter` matches, when the services hold them.
    fn served(&self, filter: &str) -> Option<(&Services, Vec<Topic>)> {
        let services = self.services.as_ref()?;
        Some((services, Filter::from_str(filter).ok()?.user_topics()?))
    }
}

#[async_trait::async_trait]
impl RetainStorage for Retained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        _expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        if self.served(topic).is_some() {
            // The services stored it before it was published.
            return Ok(());
        }
        // Never expired: the server clears what it retains.
        self.kept.set_with_timeout(topic, retain, None).await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let Some((services, topics)) = self.served(filter) else {
            return self.kept.get_message(filter).await;
        };
        let current = services.current(&topics).await?;
        let from = from_server(&self.scx);
        Ok(current
            .into_iter()
            .map(|(topic, payload)| {
                let retain = Retain {
                    msg_id: None,
                    from: from.clone(),
                    publish: message(&topic, payload, true),
                };
                (TopicName::from(topic.to_string()), retain)
            })
            .collect())
    }

    async fn count(&self) -> isize {
        self.kept.count().await
    }

    async fn max(&self) -> isize {
        self.kept.max().await
    }
}
