//! The topic rules after SUBSCRIBE: when who-sees-whom changes (a block, a
//! contact removed, visibility narrowed, an unpair), every subscription to
//! a user's topics that the new graph forbids is removed at once and its
//! client told on `clients/<cid>/errors`. The hooks also check each
//! delivery of a user's topics, so nothing already queued slips through.

use std::sync::Arc;

use switchboard_protocol::{ClientId, ErrorCode, Filter, Id, Topic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Publisher;
use crate::metrics::Metrics;
use crate::social::Graph;
use crate::store::Store;

/// How long after a failed read of who sees whom it is tried again.
const READ_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What the nodes say of who sees whom.
pub enum News {
    /// These users' rows changed.
    Users(Vec<Id>),
    /// The bus was away: anything may have changed.
    All,
}

#[derive(Clone)]
pub struct Watchers {
    publisher: Publisher,
    graph: Arc<Graph>,
}

/// Whether `viewer` may still receive a message on `topic` (checked again
/// at delivery, so nothing slips through before the subscription goes).
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
    pub fn new(publisher: Publisher, graph: Arc<Graph>) -> Self {
        Watchers { publisher, graph }
    }

    /// After this node stored and applied a change of who sees whom for
    /// `users`: the subscriptions it forbids end here, and the other
    /// nodes are told to do the same.
    pub async fn changed(&self, users: &[Id]) {
        for user in users {
            self.recheck(user).await;
        }
        self.publisher.bus().graph_changed(users);
    }

    /// Other nodes' news of who sees whom, until the stop: the users' rows
    /// read again from the store (all of them after the bus was away),
    /// then the subscriptions held here to their topics checked. News that came together is read in one go; a read
    /// that failed is done again, of everything, a little later.
    pub async fn follow(
        self,
        store: Store,
        metrics: Arc<Metrics>,
        mut news: mpsc::UnboundedReceiver<News>,
        stop: CancellationToken,
    ) {
        let mut failed = false;
        loop {
            let first = match failed {
                true => tokio::select! {
                    () = tokio::time::sleep(READ_AGAIN_AFTER) => News::All,
                    () = stop.cancelled() => return,
                },
                false => tokio::select! {
                    Some(first) = news.recv() => first,
                    () = stop.cancelled() => return,
                    else => return,
                },
            };
            let mut all = false;
            let mut users = Vec::new();
            let mut count = 0;
            for one in std::iter::once(first).chain(std::iter::from_fn(|| news.try_recv().ok())) {
                match one {
                    News::Users(some) => users.extend(some),
                    News::All => all = true,
                }
                count += 1;
            }
            let read = match all {
                true => self.graph.reload_all(&store).await,
                false => {
                    users.sort();
                    users.dedup();
                    self.graph.reload(&store, &users).await.map(|()| users)
                }
            };
            failed = read.is_err();
            let changed = match read {
                Ok(changed) => changed,
                Err(e) => {
                    tracing::error!("could not read who sees whom again: {e:#}");
                    continue;
                }
            };
            for user in &changed {
                self.recheck(user).await;
            }
            metrics.graph_news.inc_by(count);
        }
    }

    /// Removes the subscriptions to `target`'s topics held by clients that
    /// may no longer see it.
    async fn recheck(&self, target: &Id) {
        let Some(core) = self.publisher.core() else {
            return;
        };
        for filter in Filter::reaching_user(target).map(|f| f.to_string()) {
            let may_see = |client_id: &str| match client_id.parse::<ClientId>() {
                Ok(client) => self.graph.can_see(&client.id, target),
                Err(_) => true,
            };
            for client_id in core.unsubscribe_where(&filter, may_see) {
                let Ok(client) = client_id.parse::<ClientId>() else {
                    continue;
                };
                tracing::info!(%client, filter, "subscription removed: the user no longer shares it");
                let message = "subscription removed: that user no longer shares this with you";
                self.publisher
                    .report(&client, &filter, ErrorCode::Forbidden, message.into())
                    .await;
            }
        }
    }
}
