//! A signed-in user or robot: everything an app does once it has an
//! account. HTTP for what is stored, MQTT for what is live.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchboard_protocol::payload::{self, CallActionKind, CallKind, CallStateKind, LegState};
use switchboard_protocol::topic::{CommandPart, Direction, PairingField};
use switchboard_protocol::{CommandName, Id, PairingCode as Code, Sid, Topic};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::api::Auth;
use crate::error::SdkError;
use crate::link::{Request, Shared};
use crate::router::Arrival;
use crate::types::{
    Call, CallRecord, CommandReply, ContactMatch, IceServer, Pairing, PairingCode, Profile,
    ProfileUpdate, Signal, Visibility,
};

/// How long the SDK waits for the server to answer something it sent.
const ANSWER: Duration = Duration::from_secs(10);

#[derive(uniffi::Object)]
pub struct Session {
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    me: switchboard_protocol::ClientId,
    /// The task calling the app's listener; `sign_out` waits for it.
    dispatcher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    pub(crate) async fn start(
        auth: Arc<Auth>,
        shared: Arc<Shared>,
        requests: mpsc::UnboundedSender<Request>,
        dispatcher: JoinHandle<()>,
    ) -> Result<Session, SdkError> {
        let me = shared.router().me().clone();
        let session = Session {
            auth,
            shared,
            requests,
            me,
            dispatcher: std::sync::Mutex::new(Some(dispatcher)),
        };
        session
            .subscribe_or(Topic::ClientErrors(session.me.clone()).to_string())
            .await?;
        session
            .subscribe_or(format!("invite/{}/+", session.me.id))
            .await?;
        Ok(session)
    }

    fn send(&self, request: Request) -> Result<(), SdkError> {
        self.requests
            .send(request)
            .map_err(|_| SdkError::disconnected())
    }

    fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) -> Result<(), SdkError> {
        self.send(Request::Publish {
            topic,
            payload,
            retain,
        })
    }

    /// Subscribes and learns whether the broker granted it.
    async fn subscribe(&self, filter: String) -> Result<bool, SdkError> {
        let (done, granted) = oneshot::channel();
        self.send(Request::Subscribe {
            filter,
            done: Some(done),
        })?;
        match timeout(ANSWER, granted).await {
            Ok(Ok(granted)) => Ok(granted),
            Ok(Err(_)) => Err(SdkError::disconnected()),
            Err(_) => Err(SdkError::timeout("the broker's SUBACK")),
        }
    }

    async fn subscribe_or(&self, filter: String) -> Result<(), SdkError> {
        if self.subscribe(filter.clone()).await? {
            Ok(())
        } else {
            Err(SdkError::Refused {
                code: "forbidden".into(),
                reason: format!("subscription to {filter} refused"),
            })
        }
    }

    /// The call as this session last saw it, if it may act on it.
    fn known_call(&self, sid: &str) -> Result<(Sid, payload::CallState), SdkError> {
        let no_call = || SdkError::NoCall { sid: sid.into() };
        let parsed: Sid = sid.parse().map_err(|_| no_call())?;
        let state = self
            .shared
            .router()
            .call(&parsed)
            .cloned()
            .ok_or_else(no_call)?;
        Ok((parsed, state))
    }

    /// Publishes a call action and waits for the state it leads to.
    async fn act(&self, sid: &str, action: CallActionKind) -> Result<Call, SdkError> {
        let (sid, state) = self.known_call(sid)?;
        if state.state == CallStateKind::Ended {
            return Err(SdkError::NoCall {
                sid: sid.to_string(),
            });
        }
        let action_topic = Topic::CallAction(sid.clone()).to_string();
        let state_topic = Topic::CallState(sid.clone()).to_string();
        let mut arrivals = self.shared.wait_on_all(&[&action_topic, &state_topic]);
        let (topic, payload) = self.shared.router().action(&sid, action);
        self.publish(topic, payload, false)?;
        let me = self.me.to_string();
        let deadline = Instant::now() + ANSWER;
        loop {
            match recv_until(&mut arrivals, deadline, "the call's new state").await? {
                Arrival::Refused(r) => return Err(refusal_error(r.code, r.message)),
                Arrival::Message(bytes) => {
                    let Ok(state) = serde_json::from_slice::<payload::CallState>(&bytes) else {
                        continue;
                    };
                    let done = match action {
                        // Not the retained `inviting`/`ringing` that may
                        // arrive first.
                        CallActionKind::Accept => {
                            matches!(state.state, CallStateKind::Accepted | CallStateKind::Ended)
                        }
                        CallActionKind::Decline => {
                            state.state == CallStateKind::Ended
                                || state.legs.get(&me) == Some(&LegState::Declined)
                        }
                        CallActionKind::Ringing => true,
                        CallActionKind::Cancel | CallActionKind::Hangup => {
                            state.state == CallStateKind::Ended
                        }
                    };
                    if done {
                        return Ok(Call::from(&state));
                    }
                }
            }
        }
    }
}

/// Waits for the next arrival, at most until `deadline`.
async fn recv_until(
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
fn refusal_error(code: String, message: String) -> SdkError {
    match serde_json::from_value(Value::String(code.clone())) {
        Ok(code) => SdkError::from_code(code, message),
        Err(_) => SdkError::Refused {
            code,
            reason: message,
        },
    }
}

fn parse_id(id: &str) -> Result<Id, SdkError> {
    id.parse().map_err(SdkError::invalid)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Robots {
    robots: Vec<RobotRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RobotRow {
    robot_id: String,
    paired_at: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owners {
    owners: Vec<OwnerRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRow {
    user_id: String,
    paired_at: i64,
}

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    /// This account's id (a user's or a robot's).
    pub fn user_id(&self) -> String {
        self.me.id.to_string()
    }

    /// The MQTT client id: `<id>` or `<id>:<device>`.
    pub fn client_id(&self) -> String {
        self.me.to_string()
    }

    // --- profiles and presence -------------------------------------------

    pub async fn my_profile(&self) -> Result<Profile, SdkError> {
        let p: payload::Profile = self.auth.call(Method::GET, "/v1/me/profile", None).await?;
        Ok(p.into())
    }

    /// Replaces this account's profile; contacts watching it see the change.
    pub async fn set_profile(&self, update: ProfileUpdate) -> Result<Profile, SdkError> {
        let body = json!({
            "nickname": update.nickname,
            "photoUrl": update.photo_url,
            "email": update.email,
            "altPhone": update.alt_phone,
        });
        let p: payload::Profile = self
            .auth
            .call(Method::PUT, "/v1/me/profile", Some(&body))
            .await?;
        Ok(p.into())
    }

    /// Another user's profile; `UnknownUser` if there is none or it is not
    /// shared with this account.
    pub async fn profile_of(&self, user_id: String) -> Result<Profile, SdkError> {
        let id = parse_id(&user_id)?;
        match self
            .auth
            .call::<payload::Profile>(Method::GET, &format!("/v1/users/{id}/profile"), None)
            .await
        {
            Ok(p) => Ok(p.into()),
            Err(SdkError::Refused { code, .. }) if code == "not_found" => {
                Err(SdkError::UnknownUser { id: user_id })
            }
            Err(e) => Err(e),
        }
    }

    /// Follows a user's profile and presence: `Event::Profile` and
    /// `Event::Presence` now (if it has them) and on every change, across
    /// reconnects.
    pub async fn watch(&self, user_id: String) -> Result<(), SdkError> {
        let id = parse_id(&user_id)?;
        for topic in [Topic::UserInfo(id.clone()), Topic::UserPresence(id)] {
            if !self.subscribe(topic.to_string()).await? {
                return Err(SdkError::UnknownUser { id: user_id });
            }
        }
        Ok(())
    }

    pub async fn unwatch(&self, user_id: String) -> Result<(), SdkError> {
        let id = parse_id(&user_id)?;
        self.send(Request::Unsubscribe(
            Topic::UserInfo(id.clone()).to_string(),
        ))?;
        self.send(Request::Unsubscribe(Topic::UserPresence(id).to_string()))
    }

    /// The users who may see this account (under `contacts` visibility).
    pub async fn set_contacts(&self, user_ids: Vec<String>) -> Result<(), SdkError> {
        for id in &user_ids {
            parse_id(id)?;
        }
        let _: Value = self
            .auth
            .call(
                Method::PUT,
                "/v1/me/contacts",
                Some(&json!({ "userIds": user_ids })),
            )
            .await?;
        Ok(())
    }

    pub async fn set_visibility(&self, visibility: Visibility) -> Result<(), SdkError> {
        let name = match visibility {
            Visibility::Everyone => "everyone",
            Visibility::Contacts => "contacts",
        };
        let _: Value = self
            .auth
            .call(
                Method::PUT,
                "/v1/me/visibility",
                Some(&json!({ "visibility": name })),
            )
            .await?;
        Ok(())
    }

    /// Which of these numbers belong to registered users (rate limited).
    pub async fn discover(&self, phones: Vec<String>) -> Result<Vec<ContactMatch>, SdkError> {
        #[derive(Deserialize)]
        struct Matches {
            matches: Vec<ContactMatch>,
        }
        let m: Matches = self
            .auth
            .call(
                Method::POST,
                "/v1/contacts/discover",
                Some(&json!({ "phones": phones })),
            )
            .await?;
        Ok(m.matches)
    }

    // --- calls ------------------------------------------------------------

    /// Calls a user (or, for owners, a robot) and returns the call's sid
    /// once the server recorded it; its states arrive as `Event::CallState`.
    pub async fn call(&self, callee: String, kind: CallKind) -> Result<String, SdkError> {
        let callee_id = parse_id(&callee)?;
        if callee_id == self.me.id {
            return Err(SdkError::InvalidArgument {
                reason: "a user cannot call itself".into(),
            });
        }
        let sid: Sid = random_hex(16).parse().map_err(SdkError::invalid)?;
        let invite_topic = Topic::Invite {
            callee: callee_id,
            sid: sid.clone(),
        }
        .to_string();
        let state_topic = Topic::CallState(sid.clone()).to_string();
        let mut arrivals = self.shared.wait_on_all(&[&invite_topic, &state_topic]);
        self.shared.router().placed(sid.clone());
        let invite = payload::Invite {
            sid: sid.clone(),
            from: self.me.id.clone(),
            from_device: self.me.device.clone(),
            kind,
            sent_at: now_ms(),
        };
        self.publish(
            invite_topic,
            serde_json::to_vec(&invite).unwrap_or_default(),
            false,
        )?;
        // Once recorded, the caller may read the state (the broker handles
        // a connection's packets in order). A refused invite refuses this
        // too, and the reason arrives on the errors topic.
        self.send(Request::Subscribe {
            filter: state_topic,
            done: None,
        })?;
        let deadline = Instant::now() + ANSWER;
        match recv_until(&mut arrivals, deadline, "the call to be recorded").await? {
            Arrival::Message(_) => Ok(sid.to_string()),
            Arrival::Refused(r) if r.code == "forbidden" => {
                Err(SdkError::UnknownUser { id: callee })
            }
            Arrival::Refused(r) => Err(refusal_error(r.code, r.message)),
        }
    }

    pub async fn accept(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Accept).await
    }

    pub async fn decline(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Decline).await
    }

    /// The caller gives up before an answer.
    pub async fn cancel(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Cancel).await
    }

    pub async fn hangup(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Hangup).await
    }

    /// The last state this session saw of a call.
    pub fn call_state(&self, sid: String) -> Option<Call> {
        self.known_call(&sid).ok().map(|(_, s)| Call::from(&s))
    }

    /// This account's calls, newest first; pass the last `created_at` as
    /// `before` for the next page.
    pub async fn history(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<CallRecord>, SdkError> {
        #[derive(Deserialize)]
        struct Calls {
            calls: Vec<CallRecord>,
        }
        let mut path = format!("/v1/calls?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let c: Calls = self.auth.call(Method::GET, &path, None).await?;
        Ok(c.calls)
    }

    // --- media signalling -------------------------------------------------

    /// STUN and TURN servers for this account's WebRTC stack.
    pub async fn ice_servers(&self) -> Result<Vec<IceServer>, SdkError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Servers {
            ice_servers: Vec<IceServer>,
        }
        let s: Servers = self.auth.call(Method::GET, "/v1/ice-servers", None).await?;
        Ok(s.ice_servers)
    }

    /// Sends an offer, answer or candidate to the relay for a call this
    /// device carries; the relay's arrive as `Event::Signal`.
    pub fn send_signal(&self, sid: String, signal: Signal) -> Result<(), SdkError> {
        let (sid, _) = self.known_call(&sid)?;
        if !self.shared.router().is_media_device(&sid) {
            return Err(SdkError::NoCall {
                sid: sid.to_string(),
            });
        }
        let topic = Topic::WebRtc {
            sid,
            client: self.me.clone(),
            direction: Direction::Up,
        };
        let body = payload::WebRtcSignal::from(signal);
        self.publish(
            topic.to_string(),
            serde_json::to_vec(&body).unwrap_or_default(),
            false,
        )
    }

    // --- robots: pairing --------------------------------------------------

    /// (Robots) a new pairing code to show; `wait` on it for the owner.
    pub async fn start_pairing(&self) -> Result<Arc<PairingWait>, SdkError> {
        let issued: PairingCode = self
            .auth
            .call(Method::POST, "/v1/pairing/codes", Some(&json!({})))
            .await?;
        let code: Code = issued.code.parse().map_err(|_| SdkError::Server {
            reason: format!("the server issued a malformed code {}", issued.code),
        })?;
        let topic = |field| Topic::Pairing {
            code: code.clone(),
            field,
        };
        let status = topic(PairingField::Status).to_string();
        let robot_topic = topic(PairingField::RobotId).to_string();
        let arrivals = self.shared.wait_on_all(&[&status, &robot_topic]);
        self.subscribe_or(status).await?;
        self.publish(robot_topic, self.me.id.to_string().into_bytes(), true)?;
        Ok(Arc::new(PairingWait {
            code: issued,
            arrivals: Mutex::new(arrivals),
        }))
    }

    /// (Users) pairs with the robot showing `code`; returns its id.
    pub async fn pair(&self, code: String) -> Result<String, SdkError> {
        let parsed: Code = code.parse().map_err(SdkError::invalid)?;
        let topic = |field| {
            Topic::Pairing {
                code: parsed.clone(),
                field,
            }
            .to_string()
        };
        let (robot_topic, user_topic, status) = (
            topic(PairingField::RobotId),
            topic(PairingField::UserId),
            topic(PairingField::Status),
        );
        let refused = || SdkError::PairingRefused { code: code.clone() };
        let mut robot_ids = self.shared.wait_on(&robot_topic);
        let mut outcome = self.shared.wait_on_all(&[&user_topic, &status]);
        let result = async {
            if !self.subscribe(robot_topic.clone()).await? {
                return Err(refused());
            }
            let deadline = Instant::now() + ANSWER;
            let robot = loop {
                if let Arrival::Message(bytes) =
                    recv_until(&mut robot_ids, deadline, "the robot's id").await?
                {
                    match std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse::<Id>().ok())
                    {
                        Some(id) => break id,
                        None => return Err(refused()),
                    }
                }
            };
            self.subscribe_or(status.clone()).await?;
            self.publish(
                user_topic.clone(),
                self.me.id.to_string().into_bytes(),
                false,
            )?;
            loop {
                match recv_until(&mut outcome, deadline, "the pairing's outcome").await? {
                    Arrival::Refused(r) => return Err(refusal_error(r.code, r.message)),
                    Arrival::Message(bytes) => {
                        let Ok(s) = serde_json::from_slice::<payload::PairingStatus>(&bytes) else {
                            continue;
                        };
                        return match s.status {
                            payload::PairingOutcome::Paired => Ok(robot.to_string()),
                            payload::PairingOutcome::Expired => {
                                Err(SdkError::PairingExpired { code: code.clone() })
                            }
                            payload::PairingOutcome::Rejected => Err(refused()),
                        };
                    }
                }
            }
        }
        .await;
        let _ = self.send(Request::Unsubscribe(robot_topic));
        let _ = self.send(Request::Unsubscribe(status));
        result
    }

    /// (Users) the robots this user owns.
    pub async fn robots(&self) -> Result<Vec<Pairing>, SdkError> {
        let r: Robots = self.auth.call(Method::GET, "/v1/me/robots", None).await?;
        Ok(r.robots
            .into_iter()
            .map(|r| Pairing {
                id: r.robot_id,
                paired_at: r.paired_at,
            })
            .collect())
    }

    /// (Robots) the users who own this robot.
    pub async fn owners(&self) -> Result<Vec<Pairing>, SdkError> {
        let o: Owners = self.auth.call(Method::GET, "/v1/me/owners", None).await?;
        Ok(o.owners
            .into_iter()
            .map(|o| Pairing {
                id: o.user_id,
                paired_at: o.paired_at,
            })
            .collect())
    }

    /// (Users) gives a robot up.
    pub async fn unpair(&self, robot_id: String) -> Result<(), SdkError> {
        let id = parse_id(&robot_id)?;
        let _: Value = self
            .auth
            .call(Method::DELETE, &format!("/v1/me/robots/{id}"), None)
            .await?;
        Ok(())
    }

    // --- robots: commands -------------------------------------------------

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
        let (sid, _) = self.known_call(&sid)?;
        if !self.shared.router().is_media_device(&sid) {
            return Err(SdkError::NoCall {
                sid: sid.to_string(),
            });
        }
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

    /// Disconnects and ends this sign-in on the server. When it returns,
    /// the listener has had its last event (`SignedOut`).
    pub async fn sign_out(&self) -> Result<(), SdkError> {
        let (done, closed) = oneshot::channel();
        if self.send(Request::Close(done)).is_ok() {
            let _ = timeout(ANSWER, closed).await;
        }
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = dispatcher {
            let _ = timeout(ANSWER, d).await;
        }
        self.auth.logout().await
    }
}

/// A robot's pairing code, waiting for an owner to claim it.
#[derive(uniffi::Object)]
pub struct PairingWait {
    code: PairingCode,
    arrivals: Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl PairingWait {
    pub fn code(&self) -> PairingCode {
        self.code.clone()
    }

    /// The owner's user id once the code is claimed; `PairingExpired` if it
    /// is not claimed in time.
    pub async fn wait(&self) -> Result<String, SdkError> {
        let mut arrivals = self.arrivals.lock().await;
        let left = (self.code.expires_at - now_ms()).max(0) as u64;
        // The server publishes `expired` itself; the margin covers its timer.
        let deadline = Instant::now() + Duration::from_millis(left) + ANSWER;
        loop {
            match recv_until(&mut arrivals, deadline, "an owner").await? {
                Arrival::Refused(r) => return Err(refusal_error(r.code, r.message)),
                Arrival::Message(bytes) => {
                    let Ok(s) = serde_json::from_slice::<payload::PairingStatus>(&bytes) else {
                        continue;
                    };
                    return match (s.status, s.user_id) {
                        (payload::PairingOutcome::Paired, Some(user)) => Ok(user.to_string()),
                        (payload::PairingOutcome::Expired, _) => Err(SdkError::PairingExpired {
                            code: self.code.code.clone(),
                        }),
                        _ => Err(SdkError::PairingRefused {
                            code: self.code.code.clone(),
                        }),
                    };
                }
            }
        }
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
            match recv_until(&mut arrivals, deadline, "the robot's answer").await? {
                Arrival::Refused(r) => return Err(refusal_error(r.code, r.message)),
                Arrival::Message(bytes) => {
                    let Ok(reply) = serde_json::from_slice::<payload::CommandResponse>(&bytes)
                    else {
                        continue;
                    };
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
    }
}
