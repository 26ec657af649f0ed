//! Signing in: the entry point of the SDK.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{json, Value};
use switchboard_protocol::http::SignedIn;
use switchboard_protocol::{ClientId, Device};
use tokio::sync::mpsc;

use crate::api::{Auth, Http, HttpError};
use crate::error::SdkError;
use crate::link::{self, Broker, Identity, Shared};
use crate::listener::{dispatch, ensure_running, Listener};
use crate::router::Router;
use crate::session::Session;
use crate::trust;
use crate::types::Config;

#[derive(uniffi::Object)]
pub struct Switchboard {
    http: Http,
    mqtt_url: Option<Broker>,
    device: Option<Device>,
    /// What HTTPS and MQTT over TLS trust.
    tls: Arc<rustls::ClientConfig>,
}

#[uniffi::export(async_runtime = "tokio")]
impl Switchboard {
    /// Checks the configuration; nothing is sent yet.
    #[uniffi::constructor]
    pub fn new(config: Config) -> Result<Arc<Switchboard>, SdkError> {
        let device = config
            .device
            .map(|d| d.parse::<Device>().map_err(SdkError::invalid))
            .transpose()?;
        let tls = trust::client_config(config.ca_file.as_deref())?;
        Ok(Arc::new(Switchboard {
            http: Http::new(&config.http_url, &tls)?,
            mqtt_url: config.mqtt_url.as_deref().map(Broker::parse).transpose()?,
            device,
            tls,
        }))
    }

    /// Sends a one-time code by SMS; returns the number in E.164.
    pub async fn request_code(&self, phone: String) -> Result<String, SdkError> {
        #[derive(serde::Deserialize)]
        struct Sent {
            phone: String,
        }
        match self
            .http
            .send::<Sent>(
                Method::POST,
                "/v1/auth/otp",
                None,
                Some(&json!({ "phone": phone })),
            )
            .await
        {
            Ok(sent) => Ok(sent.phone),
            Err(e) => Err(phone_error(e)),
        }
    }

    /// Signs a user in with the code it received, and connects.
    pub async fn sign_in(
        &self,
        phone: String,
        code: String,
        listener: Arc<dyn Listener>,
    ) -> Result<Arc<Session>, SdkError> {
        // After `shutdown` no session may start: fail before the server
        // signs the device in.
        ensure_running()?;
        let device = self
            .device
            .clone()
            .ok_or_else(|| SdkError::InvalidArgument {
                reason: "a user signs in from a device: set Config.device".into(),
            })?;
        let body = json!({ "phone": phone, "code": code, "device": device.to_string() });
        let signed_in = self.credentials("/v1/auth/verify", body).await?;
        self.connect(signed_in, false, listener).await
    }

    /// Signs a provisioned robot in with its id and secret, and connects.
    pub async fn sign_in_robot(
        &self,
        robot_id: String,
        secret: String,
        listener: Arc<dyn Listener>,
    ) -> Result<Arc<Session>, SdkError> {
        ensure_running()?;
        let body = json!({ "robotId": robot_id, "secret": secret });
        let signed_in = self.credentials("/v1/auth/robot", body).await?;
        self.connect(signed_in, true, listener).await
    }
}

impl Switchboard {
    /// Trades a code (or a robot's secret) for tokens at `path`.
    async fn credentials(&self, path: &str, body: Value) -> Result<SignedIn, SdkError> {
        match self
            .http
            .send::<SignedIn>(Method::POST, path, None, Some(&body))
            .await
        {
            Ok(s) => Ok(s),
            Err(HttpError::Failed(f)) if f.status == 401 => Err(SdkError::WrongCode),
            Err(e) => Err(phone_error(e)),
        }
    }

    async fn connect(
        &self,
        signed_in: SignedIn,
        robot: bool,
        listener: Arc<dyn Listener>,
    ) -> Result<Arc<Session>, SdkError> {
        let unexpected = |what: &str| SdkError::Server {
            reason: format!("sign-in answered {what}"),
        };
        let me: ClientId = signed_in
            .mqtt
            .client_id
            .parse()
            .map_err(|_| unexpected("a malformed client id"))?;
        let subject = signed_in.user_id.or(signed_in.robot_id);
        if subject.as_deref() != Some(me.id.as_str()) {
            return Err(unexpected("a client id of another account"));
        }
        let broker = match &self.mqtt_url {
            Some(b) => b.clone(),
            None => {
                Broker::parse(&signed_in.mqtt.tcp).or_else(|_| Broker::parse(&signed_in.mqtt.ws))?
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            router: Mutex::new(Router::new(me.clone(), robot)),
            waiters: Mutex::new(HashMap::new()),
            events: events_tx,
        });
        // Refused if `shutdown` came meanwhile; the listener is then dropped
        // here, on the app's calling thread, not on an SDK thread.
        let dispatcher = dispatch(listener, events_rx)?;
        let auth = Arc::new(Auth::new(self.http.clone(), signed_in.tokens));
        let (requests, requests_rx) = mpsc::unbounded_channel();
        link::spawn(
            Identity {
                broker,
                client_id: me.to_string(),
                username: me.id.to_string(),
                tls: self.tls.clone(),
            },
            auth.clone(),
            shared.clone(),
            requests_rx,
        );
        // On failure the session is dropped, and with it the connection.
        Ok(Arc::new(
            Session::start(auth, shared, requests, dispatcher).await?,
        ))
    }
}

/// An error of the sign-in routes, where a bad request is a bad number.
fn phone_error(e: HttpError) -> SdkError {
    match SdkError::from(e) {
        SdkError::InvalidArgument { reason } if reason.starts_with("phone") => {
            SdkError::InvalidPhone { reason }
        }
        other => other,
    }
}
