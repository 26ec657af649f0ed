//! The topic rules after SUBSCRIBE: when who-sees-whom changes (a block, a
//! contact removed, visibility narrowed, an unpair), every subscription to
//! a user's topics that the new graph forbids is removed at once and its
//! client told on `clients/<cid>/errors`. The hooks also check each
//! delivery of a user's topics, so nothing already queued slips through.

use std::sync::Arc;

use rmqtt::context::ServerContext;
use rmqtt::types::{Id as Connection, SharedGroup, Unsubscribe};
use switchboard_protocol::{ClientId, ErrorCode, Filter, Id, Topic};

use super::Publisher;
use crate::social::Graph;

#[derive(Clone)]
pub struct Watchers {
    scx: ServerContext,
    publisher: Publisher,
    graph: Arc<Graph>,
}

/// Whether `viewer` may receive a message on `topic`, as far as the graph
/// decides: a user's own topics go to those who see that user; anything
/// else was settled at SUBSCRIBE.
pub fn may_receive(graph: &Graph, viewer: &Id, topic: &str) -> bool {
    if !topic.starts_with("users/") {
        return true;
    }
    match topic.parse::<Topic>() {
        Ok(
            Topic::UserInfo(target) | Topic::UserIsConnected(target) | Topic::UserPresence(target),
        ) => graph.can_see(viewer, &target),
        _ => true,
    }
}

impl Watchers {
    pub fn new(scx: ServerContext, publisher: Publisher, graph: Arc<Graph>) -> Self {
        Watchers {
            scx,
            publisher,
            graph,
        }
    }

    /// Removes the subscriptions to `target`'s topics whose holders may no
    /// longer see it. Call after the graph changed.
    pub async fn recheck(&self, target: &Id) {
        let mut gone: Vec<(Connection, ClientId, String, Option<SharedGroup>)> = Vec::new();
        {
            let router = self.scx.extends.router().await;
            for filter in Filter::reaching_user(target).map(|f| f.to_string()) {
                let Some(holders) = router.relations().get(filter.as_str()) else {
                    continue;
                };
                for (client_id, (connection, options)) in holders.iter() {
                    let Ok(client) = client_id.parse::<ClientId>() else {
                        continue;
                    };
                    if !self.graph.can_see(&client.id, target) {
                        let group = options.shared_group().cloned();
                        gone.push((connection.clone(), client, filter.clone(), group));
                    }
                }
            }
        }
        for (connection, client, filter, shared_group) in gone {
            // The exact connection: the router keeps relations by it.
            let entry = self.scx.extends.shared().await.entry(connection);
            let unsubscribe = Unsubscribe {
                topic_filter: filter.as_str().into(),
                shared_group,
            };
            if let Err(e) = entry.unsubscribe(&unsubscribe).await {
                tracing::warn!(%client, filter, "removing a forbidden subscription: {e}");
                continue;
            }
            tracing::info!(%client, filter, "subscription removed: the user no longer shares it");
            let message = "subscription removed: that user no longer shares this with you";
            self.publisher
                .report(&client, &filter, ErrorCode::Forbidden, message.into())
                .await;
        }
    }
}
