//! Robot commands in an accepted call: an owner sends one and reads its
//! answers, the robot answers each request as often as it takes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use switchboard_protocol::payload::{self, CallStateKind};
use switchboard_protocol::topic::CommandPart;
use switchboard_protocol::{CommandName, Topic};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::wait::next_json;
use super::{random_hex, Session};
use crate::error::SdkError;
use crate::router::Arrival;
use crate::types::CommandReply;

/// A JSON object given as text ("" is `{}`).
fn json_object(text: &str, what: &str) -> Result<Map<String, Value>, SdkError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(SdkError::InvalidArgument {
            reason: format!("{what} must be a JSON object"),
        }),
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    /// (Owners) sends a command to the robot in the accepted call `sid`;
    /// read its answers with `next_reply`.
    pub async fn send_command(
        &self,
        sid: String,
        command: String,
        arguments_json: String,
    ) -> Result<Arc<PendingCommand>, SdkError> {
        let name: CommandName = command.parse().map_err(SdkError::invalid)?;
        let mut arguments = json_object(&arguments_json, "the command's arguments")?;
        if arguments.contains_key("requestId") {
            return Err(SdkError::InvalidArgument {
                reason: "requestId is chosen by the SDK".into(),
            });
        }
        let (sid, state) = self.known_call(&sid)?;
        if state.state != CallStateKind::Accepted {
            return Err(SdkError::NoCall {
                sid: sid.to_string(),
            });
        }
        let topic = |part| {
            Topic::Command {
                sid: sid.clone(),
                command: name.clone(),
                part,
            }
            .to_string()
        };
        let (request_topic, response_topic) =
            (topic(CommandPart::Request), topic(CommandPart::Response));
        let arrivals = self.shared.wait_on_all(&[&request_topic, &response_topic]);
        self.subscribe_or(response_topic).await?;
        let request_id = random_hex(8);
        arguments.insert("requestId".into(), Value::String(request_id.clone()));
        self.publish(
            request_topic,
            Value::Object(arguments).to_string().into_bytes(),
            false,
        )?;
        Ok(Arc::new(PendingCommand {
            request_id,
            arrivals: Mutex::new(arrivals),
        }))
    }

    /// (Robots) answers a command request with a status (`moving`,
    /// `arrived`, ...), as often as it takes.
    pub fn respond(
        &self,
        sid: String,
        command: String,
        request_id: String,
        status: String,
        details_json: String,
    ) -> Result<(), SdkError> {
        let name: CommandName = command.parse().map_err(SdkError::invalid)?;
        let details = json_object(&details_json, "the answer's details")?;
        let sid = self.media_call(&sid)?;
        let body = payload::CommandResponse {
            request_id,
            status,
            details,
        };
        self.publish(
            Topic::Command {
                sid,
                command: name,
                part: CommandPart::Response,
            }
            .to_string(),
            serde_json::to_vec(&body).unwrap_or_default(),
            false,
        )
    }
}

/// A command sent to a robot, collecting its answers.
#[derive(uniffi::Object)]
pub struct PendingCommand {
    request_id: String,
    arrivals: Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl PendingCommand {
    pub fn request_id(&self) -> String {
        self.request_id.clone()
    }

    /// The robot's next answer (or the server's `timed_out`), waiting at
    /// most `timeout_ms`.
    pub async fn next_reply(&self, timeout_ms: u64) -> Result<CommandReply, SdkError> {
        let mut arrivals = self.arrivals.lock().await;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let reply: payload::CommandResponse =
                next_json(&mut arrivals, deadline, "the robot's answer").await?;
            if reply.request_id == self.request_id {
                return Ok(CommandReply {
                    request_id: reply.request_id,
                    status: reply.status,
                    details_json: Value::Object(reply.details).to_string(),
                });
            }
        }
    }
}
