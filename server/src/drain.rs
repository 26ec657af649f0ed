//! Draining the services' queues at shutdown: each publisher task handles
//! what was queued before the stop (presence and call states to store),
//! then ends, so the store closes last.

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// The next queued item. Once `stop` is cancelled the queue closes: what is
/// already in it still comes out, then `None`.
pub async fn next<T>(queue: &mut UnboundedReceiver<T>, stop: &CancellationToken) -> Option<T> {
    if stop.is_cancelled() {
        // Closing again is a no-op; nothing sent after the stop comes out.
        queue.close();
        return queue.recv().await;
    }
    tokio::select! {
        biased;
        item = queue.recv() => item,
        () = stop.cancelled() => {
            queue.close();
            queue.recv().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_was_queued_before_the_stop_still_comes_out() {
        let (tx, mut queue) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tx.send(1).unwrap();
        assert_eq!(next(&mut queue, &stop).await, Some(1));
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        stop.cancel();
        assert_eq!(next(&mut queue, &stop).await, Some(2));
        assert!(tx.send(4).is_err(), "closed at the stop");
        assert_eq!(next(&mut queue, &stop).await, Some(3));
        assert_eq!(next(&mut queue, &stop).await, None);
    }
}
