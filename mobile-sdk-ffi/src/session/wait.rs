//! Waiting for what the broker sends back: deadlines, and refusals reported
//! on `clients/<me>/errors` turned into errors.

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::SdkError;
use crate::router::Arrival;

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

/// A report on `clients/<me>/errors` as an error.
pub(super) fn refusal_error(code: String, message: String) -> SdkError {
    match serde_json::from_value(Value::String(code.clone())) {
        Ok(code) => SdkError::from_code(code, message),
        Err(_) => SdkError::Refused {
            code,
            reason: message,
        },
    }
}
