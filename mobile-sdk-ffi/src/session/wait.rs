//! Waiting for what the broker sends back: deadlines, and refusals reported
//! on `clients/<me>/errors` turned into errors.

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::SdkError;
use crate::router::Arrival;
use crate::types::Refusal;

/// Waits for the next arrival, at most until `deadline`.
pub(super) async fn recv_until(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    deadline: Instant,
    what: &str,
) -> Result<Arrival, SdkError> {
    match tokio::time::timeout_at(deadline, rx.recv()).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(SdkError::disconnected()),
        Err(_) => Err(SdkError::timeout(what)),
    }
}

/// The next message that reads as a `T`, at most until `deadline`; other
/// messages are skipped, and a refusal of a waited topic ends the wait with
/// its error.
pub(super) async fn next_json<T: DeserializeOwned>(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    deadline: Instant,
    what: &str,
) -> Result<T, SdkError> {
    loop {
        match recv_until(rx, deadline, what).await? {
            Arrival::Refused(r) => return Err(refusal_error(r)),
            Arrival::Message(bytes) => {
                if let Ok(value) = serde_json::from_slice(&bytes) {
                    return Ok(value);
                }
            }
        }
    }
}

/// A report on `clients/<me>/errors` as an error.
pub(super) fn refusal_error(refusal: Refusal) -> SdkError {
    let Refusal { code, message, .. } = refusal;
    match code.parse() {
        Ok(code) => SdkError::from_code(code, message),
        Err(_) => SdkError::Refused {
            code,
            reason: message,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn refused(code: &str) -> Arrival {
        Arrival::Refused(Refusal {
            topic: "invite/x/y".into(),
            code: code.into(),
            message: "no".into(),
        })
    }

    #[tokio::test]
    async fn the_next_message_of_its_type_or_the_refusal() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let deadline = Instant::now() + Duration::from_secs(5);
        tx.send(Arrival::Message(b"not json".to_vec())).unwrap();
        tx.send(Arrival::Message(b"7".to_vec())).unwrap();
        let n: u32 = next_json(&mut rx, deadline, "a number").await.unwrap();
        assert_eq!(n, 7);
        tx.send(refused("rate_limited")).unwrap();
        let e = next_json::<u32>(&mut rx, deadline, "a number").await;
        assert!(matches!(e, Err(SdkError::RateLimited { .. })), "{e:?}");
        // A code this SDK does not know keeps its name.
        tx.send(refused("new_code")).unwrap();
        let e = next_json::<u32>(&mut rx, deadline, "a number").await;
        assert!(matches!(e, Err(SdkError::Refused { code, .. }) if code == "new_code"));
        drop(tx);
        let e = next_json::<u32>(&mut rx, deadline, "a number").await;
        assert_eq!(e, Err(SdkError::disconnected()));
    }
}
