//! Pairing codes and robot commands: the pure logic of the pairing crate,
//! with the server's clock, randomness, store and publications. Codes,
//! look-ups and guess budgets are stored, so any node takes any step; a
//! call's commands are kept by the node holding the call.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use switchboard_pairing::{CommandRefusal, Commands, PairingRefusal, Pending};
use switchboard_protocol::acl::PairingRole;
use switchboard_protocol::payload::{
    CallStateKind, PairingOutcome, PairingStatus, COMMAND_TIMED_OUT,
};
use switchboard_protocol::topic::{CommandPart, PairingField};
use switchboard_protocol::{validate, CommandName, ErrorCode, Id, PairingCode, Sid, Topic};
use switchboard_signalling::Call;

use super::calls::Follow;
use super::Edges;
use crate::refused::Refused;
use crate::social::Graph;

pub struct RobotService {
    code_ttl_ms: i64,
    commands: Mutex<Commands>,
    graph: Arc<Graph>,
    edges: Edges,
}

impl RobotService {
    /// Starts the ticker.
    pub fn start(self: &Arc<Self>) {
        let service = self.clone();
        self.edges.every(Duration::from_secs(1), move || {
            let service = service.clone();
            async move { service.tick().await }
        });
    }

    pub fn new(
        code_ttl: Duration,
        command_timeout: Duration,
        graph: Arc<Graph>,
        edges: Edges,
    ) -> Arc<Self> {
        Arc::new(RobotService {
            code_ttl_ms: code_ttl.as_millis() as i64,
            commands: Mutex::new(Commands::new(command_timeout.as_millis() as i64)),
            graph,
            edges,
        })
    }

    /// A new code for `robot`, drawn from the OS's CSPRNG; a live code it
    /// replaces is finished `expired` (its retained robot id cleared).
    pub async fn issue(&self, robot: Id) -> anyhow::Result<(PairingCode, i64)> {
        let mut rng = rand::rngs::OsRng;
        let now = self.edges.now_ms();
        let random = || rng.gen_range(0..1_000_000);
        let issued = (self.edges.store)
            .issue_code(&robot, now, self.code_ttl_ms, random)
            .await?;
        for old in issued.replaced {
            self.finish(&old, PairingOutcome::Expired, robot.clone(), None)
                .await;
        }
        Ok((issued.code, issued.expires_at))
    }

    /// The robot of a live code, as a new subscriber to its `robotID` is
    /// served it.
    pub async fn robot_of(&self, code: &PairingCode) -> anyhow::Result<Option<Id>> {
        let now = self.edges.now_ms();
        self.edges.store.code_robot(code, now).await
    }

    /// Where `user` stands with `code`, for the topic rules; a store that
    /// cannot answer leaves it nowhere.
    pub async fn role(&self, user: &Id, code: &PairingCode) -> PairingRole {
        let now = self.edges.now_ms();
        match self.edges.store.pairing_role(user, code, now).await {
            Ok(role) => role,
            Err(e) => {
                tracing::warn!("reading a pairing code: {e:#}");
                PairingRole::None
            }
        }
    }

    /// A user subscribing to a code's `robotID` looks it up; a code that
    /// does not exist counts against the guess budgets of the user and of
    /// its network `address` (brute force).
    pub async fn look(
        &self,
        user: &Id,
        address: Option<IpAddr>,
        code: &PairingCode,
    ) -> anyhow::Result<Result<Id, PairingRefusal>> {
        let now = self.edges.now_ms();
        (self.edges.store)
            .look_code(user, address, code, now, self.code_ttl_ms)
            .await
    }

    /// Pairing messages the topic rules allow: the robot's id on
    /// `robotID`, and a user's claim on `userID`, which makes it an owner.
    pub async fn pairing_published(
        &self,
        user: &Id,
        code: &PairingCode,
        field: PairingField,
        payload: &[u8],
    ) -> Result<(), Refused> {
        validate::pairing_id(payload, user)?;
        if field != PairingField::UserId {
            return Ok(());
        }
        let now = self.edges.now_ms();
        let robot = (self.edges.store.claim_code(user, code, now).await)
            .map_err(|e| Refused::internal("claiming a pairing code", e))?
            .map_err(|refusal| Refused::new(ErrorCode::Conflict, refusal.to_string()))?;
        // The robot may have been made on another node and never
        // connected to this one.
        if let Err(e) = self.graph.learn(&robot).await {
            tracing::warn!(%robot, "learning a robot's account: {e:#}");
        }
        self.graph.set_owner(&robot, user, true);
        let paired = [robot.clone(), user.clone()];
        self.edges.bus.graph_changed(&paired);
        tracing::info!(robot = %robot, owner = %user, "robot paired");
        self.finish(code, PairingOutcome::Paired, robot, Some(user.clone()))
            .await;
        Ok(())
    }

    /// Commands the topic rules allow: an owner's request (needs a
    /// `requestId` unused in this call) or the robot's response (to a
    /// request made).
    pub fn command_published(
        &self,
        sid: &Sid,
        command: &CommandName,
        part: CommandPart,
        payload: &[u8],
    ) -> Result<(), Refused> {
        let message = validate::command(part, payload)?;
        let request = Pending {
            sid: sid.clone(),
            command: command.clone(),
            request_id: message.request_id,
        };
        let mut commands = self.commands.lock().expect("commands lock");
        let outcome = match message.status {
            None => commands.request(request, self.edges.now_ms()),
            Some(status) => commands.respond(&request, &status),
        };
        self.edges.metrics.robot_commands.set(commands.len() as i64);
        outcome.map_err(|refusal| {
            let code = match refusal {
                CommandRefusal::TooMany => ErrorCode::RateLimited,
                CommandRefusal::InUse | CommandRefusal::NoSuchRequest => ErrorCode::Conflict,
            };
            Refused::new(code, refusal.to_string())
        })
    }

    /// Expired codes end `expired` (each once, over every node); robots
    /// silent past a request's deadline get `timed_out` answered for them.
    /// Both read only what is due.
    async fn tick(&self) {
        let now = self.edges.now_ms();
        let expired = match self.edges.store.expire_codes(now).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::warn!("ending expired pairing codes: {e:#}");
                Vec::new()
            }
        };
        for (code, robot) in expired {
            self.finish(&code, PairingOutcome::Expired, robot, None)
                .await;
        }
        // Late requests stay open for a late answer: the count is as it was.
        let late = self.commands.lock().expect("commands lock").tick(now);
        for p in late {
            let topic = Topic::Command {
                sid: p.sid.clone(),
                command: p.command.clone(),
                part: CommandPart::Response,
            };
            let body = serde_json::json!({"requestId": p.request_id, "status": COMMAND_TIMED_OUT});
            if let Err(e) = self
                .edges
                .publish
                .publish(&topic, body.to_string().into_bytes(), false)
                .await
            {
                tracing::warn!("publishing a command timeout: {e:#}");
            }
        }
    }

    /// Publishes a pairing's outcome on `pairing/<code>/status` and clears
    /// the retained robot id, so nobody reads a finished code.
    async fn finish(
        &self,
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
            if let Err(e) = self.edges.publish.publish(&topic, payload, retain).await {
                tracing::warn!(%topic, "finishing a pairing: {e:#}");
            }
        }
    }
}

/// A call that ended takes its command requests with it.
impl Follow for RobotService {
    fn call_changed(&self, call: &Call) {
        if call.state == CallStateKind::Ended {
            let mut commands = self.commands.lock().expect("commands lock");
            commands.end_call(&call.sid);
            self.edges.metrics.robot_commands.set(commands.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;
    use crate::services::test_edges;
    use switchboard_protocol::acl::PrincipalKind;

    const ROBOT: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OWNER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const SID: &str = "0123456789abcdef0123456789abcdef";

    async fn service(edges: Edges) -> Arc<RobotService> {
        let store = &edges.store;
        store
            .ensure_user(&id(ROBOT), PrincipalKind::Robot)
            .await
            .unwrap();
        store
            .ensure_user(&id(OWNER), PrincipalKind::User)
            .await
            .unwrap();
        let graph = Arc::new(Graph::load(&edges.store).await.unwrap());
        RobotService::new(
            Duration::from_secs(300),
            Duration::from_secs(30),
            graph,
            edges,
        )
    }

    fn id(s: &str) -> Id {
        s.parse().unwrap()
    }

    fn ended_call(sid: &Sid) -> Call {
        Call {
            sid: sid.clone(),
            caller: format!("{OWNER}:phone").parse().unwrap(),
            callee: id(ROBOT),
            kind: switchboard_protocol::payload::CallKind::Video,
            state: CallStateKind::Ended,
            reason: None,
            legs: Default::default(),
            accepted_by: None,
            created_at: 0,
            accepted_at: None,
            ended_at: Some(1),
            ring_deadline: 0,
            version: 2,
            node: None,
        }
    }

    fn status(payload: &[u8]) -> PairingStatus {
        serde_json::from_slice(payload).unwrap()
    }

    #[tokio::test]
    async fn a_claimed_code_makes_an_owner_and_ends_paired() {
        let (edges, _clock, mut sent) = test_edges().await;
        let store = edges.store.clone();
        let robots = service(edges).await;
        let (code, _) = robots.issue(id(ROBOT)).await.unwrap();
        let owner = id(OWNER);
        let not_looked = robots
            .pairing_published(&owner, &code, PairingField::UserId, OWNER.as_bytes())
            .await;
        assert_eq!(
            not_looked.unwrap_err().message,
            "look the code up first (subscribe to its robotID)"
        );
        assert_eq!(robots.role(&owner, &code).await, PairingRole::None);
        robots.look(&owner, None, &code).await.unwrap().unwrap();
        assert_eq!(robots.role(&owner, &code).await, PairingRole::Looked);
        assert_eq!(robots.role(&id(ROBOT), &code).await, PairingRole::Robot);
        let not_mine = robots
            .pairing_published(&owner, &code, PairingField::UserId, ROBOT.as_bytes())
            .await;
        assert_eq!(
            not_mine.unwrap_err().message,
            "the payload must be your own id"
        );
        robots
            .pairing_published(&owner, &code, PairingField::UserId, OWNER.as_bytes())
            .await
            .unwrap();
        let owners = store.owners_of(&id(ROBOT)).await.unwrap();
        assert_eq!(owners.len(), 1, "stored");
        assert!(robots.graph.paired(&id(ROBOT), &owner), "in the graph");
        let (topic, payload, retain) = sent.recv().await.unwrap();
        assert_eq!(topic.to_string(), format!("pairing/{code}/status"));
        assert_eq!(status(&payload).status, PairingOutcome::Paired);
        assert!(!retain);
        let (topic, payload, retain) = sent.recv().await.unwrap();
        assert_eq!(topic.to_string(), format!("pairing/{code}/robotID"));
        assert!(payload.is_empty() && retain, "the robot id cleared");
        let again = robots
            .pairing_published(&owner, &code, PairingField::UserId, OWNER.as_bytes())
            .await;
        assert_eq!(again.unwrap_err().code, ErrorCode::Conflict, "single use");
    }

    #[tokio::test]
    async fn a_code_ends_expired_at_its_deadline_and_not_before() {
        let (edges, clock, mut sent) = test_edges().await;
        let robots = service(edges).await;
        let (code, expires_at) = robots.issue(id(ROBOT)).await.unwrap();
        clock.advance(expires_at - clock.now_ms() - 1);
        robots.tick().await;
        assert!(sent.try_recv().is_err(), "still live");
        assert_eq!(robots.robot_of(&code).await.unwrap(), Some(id(ROBOT)));
        clock.advance(1);
        robots.tick().await;
        let (_, payload, _) = sent.recv().await.unwrap();
        assert_eq!(status(&payload).status, PairingOutcome::Expired);
        let (topic, payload, _) = sent.recv().await.unwrap();
        assert_eq!(
            (topic.to_string(), payload),
            (format!("pairing/{code}/robotID"), vec![])
        );
        assert_eq!(robots.robot_of(&code).await.unwrap(), None);
        robots.tick().await;
        assert!(sent.try_recv().is_err(), "ended once");
    }

    #[tokio::test]
    async fn a_silent_robot_gets_timed_out_answered_once_and_requests_go_with_a_final_status_or_their_call(
    ) {
        let (edges, clock, mut sent) = test_edges().await;
        let metrics = edges.metrics.clone();
        let robots = service(edges).await;
        let (sid, command): (Sid, CommandName) = (SID.parse().unwrap(), "moveTo".parse().unwrap());
        let request = |id: &str| format!(r#"{{"requestId":"{id}"}}"#);
        let respond =
            |id: &str, status: &str| format!(r#"{{"requestId":"{id}","status":"{status}"}}"#);
        let publish = |part, payload: String| {
            robots.command_published(&sid, &command, part, payload.as_bytes())
        };
        publish(CommandPart::Request, request("done-soon")).unwrap();
        publish(CommandPart::Request, request("silent")).unwrap();
        let in_use = publish(CommandPart::Request, request("silent")).unwrap_err();
        assert_eq!(in_use.code, ErrorCode::Conflict);
        publish(CommandPart::Response, respond("done-soon", "done")).unwrap();
        assert_eq!(
            metrics.robot_commands.get(),
            1,
            "the finished one forgotten"
        );
        let unknown = publish(CommandPart::Response, respond("done-soon", "done")).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::Conflict);
        clock.advance(30_000);
        robots.tick().await;
        let (topic, payload, _) = sent.recv().await.unwrap();
        assert_eq!(topic.to_string(), format!("session/{SID}/moveTo/response"));
        let body: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"requestId": "silent", "status": "timed_out"})
        );
        assert_eq!(metrics.robot_commands.get(), 1, "open for a late answer");
        robots.tick().await;
        assert!(sent.try_recv().is_err(), "timed out once");
        robots.call_changed(&ended_call(&sid));
        assert_eq!(metrics.robot_commands.get(), 0, "forgotten with its call");
    }
}
