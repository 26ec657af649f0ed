//! Pairing codes and robot commands at the edges: the pure logic of the
//! pairing crate, with the server's clock, randomness and publications.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use switchboard_pairing::{Codes, CommandRefusal, Commands, PairingRefusal, Pending};
use switchboard_protocol::payload::{PairingOutcome, PairingStatus, COMMAND_TIMED_OUT};
use switchboard_protocol::topic::{CommandPart, PairingField};
use switchboard_protocol::{Id, PairingCode, Sid, Topic};

use crate::broker::Publisher;
use crate::metrics::Metrics;
use crate::store::now_ms;

pub struct RobotService {
    codes: Mutex<Codes>,
    commands: Mutex<Commands>,
    metrics: Arc<Metrics>,
}

impl RobotService {
    pub fn new(code_ttl: Duration, command_timeout: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(RobotService {
            codes: Mutex::new(Codes::new(code_ttl.as_millis() as i64)),
            commands: Mutex::new(Commands::new(command_timeout.as_millis() as i64)),
            metrics,
        })
    }

    /// A new pairing code for `robot`, drawn from the OS's CSPRNG.
    /// A new code for `robot`; a live code it replaces is finished
    /// `expired` (its retained robot id cleared).
    pub async fn issue(&self, robot: Id, publisher: &Publisher) -> (PairingCode, i64) {
        let mut rng = rand::rngs::OsRng;
        let (code, expires_at, replaced) =
            self.codes
                .lock()
                .expect("codes lock")
                .issue(robot.clone(), now_ms(), || rng.gen_range(0..1_000_000));
        if let Some(old) = replaced {
            finish_pairing(publisher, &old, PairingOutcome::Expired, robot, None).await;
        }
        (code, expires_at)
    }

    pub fn robot_of(&self, code: &PairingCode) -> Option<Id> {
        self.codes
            .lock()
            .expect("codes lock")
            .robot_of(code, now_ms())
            .cloned()
    }

    pub fn look(
        &self,
        user: &Id,
        address: Option<IpAddr>,
        code: &PairingCode,
    ) -> Result<Id, PairingRefusal> {
        self.codes
            .lock()
            .expect("codes lock")
            .look(user, address, code, now_ms())
    }

    pub fn looked(&self, user: &Id, code: &PairingCode) -> bool {
        self.codes
            .lock()
            .expect("codes lock")
            .looked(user, code, now_ms())
    }

    pub fn claim(&self, user: &Id, code: &PairingCode) -> Result<Id, PairingRefusal> {
        self.codes
            .lock()
            .expect("codes lock")
            .claim(user, code, now_ms())
    }

    pub fn request(&self, request: Pending) -> Result<(), CommandRefusal> {
        let mut commands = self.commands.lock().expect("commands lock");
        let result = commands.request(request, now_ms());
        self.metrics.robot_commands.set(commands.len() as i64);
        result
    }

    pub fn respond(&self, request: &Pending, status: &str) -> Result<(), CommandRefusal> {
        let mut commands = self.commands.lock().expect("commands lock");
        let result = commands.respond(request, status);
        self.metrics.robot_commands.set(commands.len() as i64);
        result
    }

    /// A call ended: its command requests are forgotten.
    pub fn end_call(&self, sid: &Sid) {
        let mut commands = self.commands.lock().expect("commands lock");
        commands.end_call(sid);
        self.metrics.robot_commands.set(commands.len() as i64);
    }

    /// Once a second: expired codes end `expired`; robots silent past a
    /// request's deadline get `timed_out` answered for them. Both read
    /// only what is due.
    pub fn spawn_ticker(self: &Arc<Self>, publisher: Publisher) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let now = now_ms();
                let expired = service.codes.lock().expect("codes lock").tick(now);
                for (code, robot) in expired {
                    finish_pairing(&publisher, &code, PairingOutcome::Expired, robot, None).await;
                }
                let late = service.commands.lock().expect("commands lock").tick(now);
                for p in late {
                    let topic = Topic::Command {
                        sid: p.sid.clone(),
                        command: p.command.clone(),
                        part: CommandPart::Response,
                    };
                    let body =
                        serde_json::json!({"requestId": p.request_id, "status": COMMAND_TIMED_OUT});
                    if let Err(e) = publisher
                        .publish(&topic, body.to_string().into_bytes(), false)
                        .await
                    {
                        tracing::warn!("publishing a command timeout: {e:#}");
                    }
                }
            }
        });
    }
}

/// Publishes a pairing's outcome on `pairing/<code>/status` and clears the
/// retained robot id, so nobody reads a finished code.
pub async fn finish_pairing(
    publisher: &Publisher,
    code: &PairingCode,
    status: PairingOutcome,
    robot: Id,
    user: Option<Id>,
) {
    let body = PairingStatus {
        status,
        robot_id: robot,
        user_id: user,
    };
    let status_topic = Topic::Pairing {
        code: code.clone(),
        field: PairingField::Status,
    };
    let robot_topic = Topic::Pairing {
        code: code.clone(),
        field: PairingField::RobotId,
    };
    let payload = serde_json::to_vec(&body).expect("status serializes");
    for (topic, payload, retain) in [
        (status_topic, payload, false),
        (robot_topic, Vec::new(), true),
    ] {
        if let Err(e) = publisher.publish(&topic, payload, retain).await {
            tracing::warn!(%topic, "finishing a pairing: {e:#}");
        }
    }
}
