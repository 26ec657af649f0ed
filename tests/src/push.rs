//! APNs and FCM as the server meets them, on loopback: HTTP/2 over TLS
//! (ALPN h2 only, a certificate from the test's CA) that checks what Apple
//! and Google check — the path, every header, the provider token's ES256
//! signature against the test's key, the OAuth bearer bought with the
//! service account's RS256 assertion, the payload — and answers with the
//! services' real error bodies, scripted per token to drive token
//! deletion, retries and renewals.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::tls::{server_cert, Ca};

/// What a fake accepted: the device token and the payload.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub token: String,
    pub body: Value,
}

/// What both fakes keep: deliveries, refusals of malformed requests (a
/// test wants none), the answers scripted per token, and every request
/// per token.
#[derive(Default)]
struct Book {
    delivered: Vec<Delivery>,
    refused: Vec<String>,
    scripted: HashMap<String, VecDeque<(u16, Value)>>,
    asked: HashMap<String, usize>,
}

#[derive(Clone, Default)]
struct Shared {
    book: Arc<Mutex<Book>>,
    changed: Arc<Notify>,
}

impl Shared {
    /// Counts a request for `token`; the answer scripted for it, if any.
    fn ask(&self, token: &str) -> Option<(u16, Value)> {
        let mut book = self.book.lock().unwrap();
        *book.asked.entry(token.to_owned()).or_default() += 1;
        book.scripted.get_mut(token).and_then(VecDeque::pop_front)
    }

    fn refuse(&self, why: String, status: StatusCode, body: Value) -> Response {
        self.book.lock().unwrap().refused.push(why);
        self.changed.notify_waiters();
        (status, axum::Json(body)).into_response()
    }

    fn deliver(&self, token: &str, body: Value) {
        let delivery = Delivery {
            token: token.to_owned(),
            body,
        };
        self.book.lock().unwrap().delivered.push(delivery);
        self.changed.notify_waiters();
    }

    fn script(&self, token: &str, status: u16, body: Value) {
        let mut book = self.book.lock().unwrap();
        book.scripted
            .entry(token.to_owned())
            .or_default()
            .push_back((status, body));
    }

    /// Waits for a delivery to `token` whose body `matches`.
    async fn delivered(&self, token: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                {
                    let book = self.book.lock().unwrap();
                    if let Some(d) =
                        (book.delivered.iter()).find(|d| d.token == token && matches(&d.body))
                    {
                        return d.body.clone();
                    }
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .map_err(|_| anyhow!("no push to {token} arrived: {:?}", self.refused()))
    }

    fn refused(&self) -> Vec<String> {
        self.book.lock().unwrap().refused.clone()
    }

    fn asked(&self, token: &str) -> usize {
        self.book
            .lock()
            .unwrap()
            .asked
            .get(token)
            .copied()
            .unwrap_or(0)
    }
}

/// A loopback listener, and its `https://` URL.
async fn listen() -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    Ok((listener, url))
}

/// Serves `app` on `listener` over HTTP/2 and TLS only, with a
/// certificate for 127.0.0.1 and localhost from `ca`.
fn serve_h2(ca: &Ca, listener: tokio::net::TcpListener, app: Router) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = server_cert(ca);
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper_util::service::TowerToHyperService::new(app);
                let http2 =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = http2.serve_connection(io, service).await;
            });
        }
    });
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// APNs as a provider with token authentication meets it.
#[derive(Clone)]
pub struct FakeApns {
    pub url: String,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id; VoIP pushes must name `<topic>.voip`.
    pub topic: String,
    /// The `.p8` key the server signs with.
    pub key_pem: String,
    public_pem: String,
    /// Every provider token seen, and whether it is taken as expired.
    provider_tokens: Arc<Mutex<HashMap<String, bool>>>,
    shared: Shared,
}

impl FakeApns {
    pub async fn start(ca: &Ca) -> Result<FakeApns> {
        let key = rcgen::KeyPair::generate()?;
        let (listener, url) = listen().await?;
        let fake = FakeApns {
            url,
            key_id: "KEY4567890".into(),
            team_id: "TEAM567890".into(),
            topic: "org.switchboard.test".into(),
            key_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
            provider_tokens: Arc::default(),
            shared: Shared::default(),
        };
        let app = Router::new()
            .route("/3/device/{token}", axum::routing::post(apns_push))
            .with_state(fake.clone());
        serve_h2(ca, listener, app)?;
        Ok(fake)
    }

    /// The next push to `token` is answered `status` with `{"reason"}`.
    pub fn answer_next(&self, token: &str, status: u16, reason: &str) {
        let body = json!({ "reason": reason, "timestamp": 1_700_000_000_000u64 });
        self.shared.script(token, status, body);
    }

    pub async fn delivered(&self, token: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        self.shared.delivered(token, matches).await
    }

    /// Every provider token seen so far is refused from now on
    /// (`ExpiredProviderToken`), as when an hour has passed.
    pub fn expire_provider_tokens(&self) {
        for expired in self.provider_tokens.lock().unwrap().values_mut() {
            *expired = true;
        }
    }

    /// How many provider tokens were used: Apple refuses one renewed too
    /// often.
    pub fn provider_tokens(&self) -> usize {
        self.provider_tokens.lock().unwrap().len()
    }

    /// Requests refused as malformed (a header, the provider token, the
    /// payload): what the server got wrong.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused()
    }

    /// Requests for `token`, however answered.
    pub fn asked(&self, token: &str) -> usize {
        self.shared.asked(token)
    }

    /// The server's settings for this APNs.
    pub fn settings(&self, dir: &Path) -> Vec<(&'static str, String)> {
        let key_file = dir.join("AuthKey.p8");
        std::fs::write(&key_file, &self.key_pem).unwrap();
        vec![
            ("SWITCHBOARD_APNS_KEY_FILE", key_file.display().to_string()),
            ("SWITCHBOARD_APNS_KEY_ID", self.key_id.clone()),
            ("SWITCHBOARD_APNS_TEAM_ID", self.team_id.clone()),
            ("SWITCHBOARD_APNS_TOPIC", self.topic.clone()),
            ("SWITCHBOARD_APNS_URL", self.url.clone()),
        ]
    }

    /// Apple's checks, in its order; `Err` is its answer.
    fn check(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, (StatusCode, &'static str)> {
        let bad = |reason| (StatusCode::BAD_REQUEST, reason);
        let forbidden = |reason| (StatusCode::FORBIDDEN, reason);
        let jwt = (header(headers, "authorization"))
            .and_then(|a| a.strip_prefix("bearer "))
            .ok_or(forbidden("MissingProviderToken"))?;
        let jwt_header =
            jsonwebtoken::decode_header(jwt).map_err(|_| forbidden("InvalidProviderToken"))?;
        if jwt_header.alg != Algorithm::ES256 || jwt_header.kid.as_deref() != Some(&self.key_id) {
            return Err(forbidden("InvalidProviderToken"));
        }
        let key = DecodingKey::from_ec_pem(self.public_pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
            .map_err(|_| forbidden("InvalidProviderToken"))?
            .claims;
        if claims["iss"] != self.team_id.as_str() {
            return Err(forbidden("InvalidProviderToken"));
        }
        let now = crate::now_s();
        let iat = claims["iat"]
            .as_i64()
            .ok_or(forbidden("InvalidProviderToken"))?;
        if iat > now + 60 || now - iat > 3600 {
            return Err(forbidden("ExpiredProviderToken"));
        }
        let mut seen = self.provider_tokens.lock().unwrap();
        if *seen.entry(jwt.to_owned()).or_insert(false) {
            return Err(forbidden("ExpiredProviderToken"));
        }
        drop(seen);
        match header(headers, "apns-topic") {
            None => return Err(bad("MissingTopic")),
            Some(t) if t != format!("{}.voip", self.topic) => {
                return Err(bad("DeviceTokenNotForTopic"))
            }
            Some(_) => {}
        }
        if header(headers, "apns-push-type") != Some("voip") {
            return Err(bad("InvalidPushType"));
        }
        if header(headers, "apns-priority") != Some("10") {
            return Err(bad("BadPriority"));
        }
        if header(headers, "apns-expiration") != Some("0") {
            return Err(bad("BadExpirationDate"));
        }
        if body.is_empty() {
            return Err(bad("PayloadEmpty"));
        }
        // VoIP pushes may carry 5 KB.
        if body.len() > 5120 {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
        }
        serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .ok_or(bad("BadPayload"))
    }
}

async fn apns_push(
    State(fake): State<FakeApns>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        let why = format!("device token {token:?}");
        return fake.shared.refuse(
            why,
            StatusCode::BAD_REQUEST,
            json!({"reason": "BadDeviceToken"}),
        );
    }
    let payload = match fake.check(&headers, &body) {
        Ok(payload) => payload,
        // An expired provider token is the server's to renew, not an error.
        Err((status, reason @ "ExpiredProviderToken")) => {
            return (status, axum::Json(json!({ "reason": reason }))).into_response()
        }
        Err((status, reason)) => {
            return fake
                .shared
                .refuse(reason.to_owned(), status, json!({ "reason": reason }))
        }
    };
    if let Some((status, body)) = fake.shared.ask(&token) {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    fake.shared.deliver(&token, payload);
    let id = "3C7B2E1A-8A3B-4F4A-9E5D-5B1B9F6E0C11";
    (StatusCode::OK, [("apns-id", id)]).into_response()
}

type FcmError = (StatusCode, &'static str, &'static str);

/// FCM's error body.
fn fcm_body((status, name, why): FcmError) -> Value {
    json!({"error": {"code": status.as_u16(), "message": why, "status": name}})
}

/// FCM HTTP v1 and Google's OAuth token URL, as a service account meets
/// them.
#[derive(Clone)]
pub struct FakeFcm {
    pub url: String,
    pub project_id: String,
    pub client_email: String,
    key_pem: String,
    public_pem: String,
    /// Access tokens bought, in order.
    bought: Arc<Mutex<Vec<String>>>,
    shared: Shared,
}

impl FakeFcm {
    pub async fn start(ca: &Ca) -> Result<FakeFcm> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let (listener, url) = listen().await?;
        let fake = FakeFcm {
            url,
            project_id: "switchboard-test".into(),
            client_email: "push@switchboard-test.iam.gserviceaccount.com".into(),
            key_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
            bought: Arc::default(),
            shared: Shared::default(),
        };
        let app = Router::new()
            .route("/token", axum::routing::post(oauth_token))
            .route(
                "/v1/projects/{project}/{method}",
                axum::routing::post(fcm_send),
            )
            .with_state(fake.clone());
        serve_h2(ca, listener, app)?;
        Ok(fake)
    }

    /// The next push to `token` is answered `status` with FCM's error
    /// body of `status_name` and `error_code`.
    pub fn answer_next(&self, token: &str, status: u16, status_name: &str, error_code: &str) {
        let body = json!({"error": {
            "code": status,
            "message": "scripted by the test",
            "status": status_name,
            "details": [{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }],
        }});
        self.shared.script(token, status, body);
    }

    /// Access tokens in use are refused from now on, as when they expire.
    pub fn expire_access_tokens(&self) {
        self.bought.lock().unwrap().clear();
    }

    pub async fn delivered(&self, token: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        self.shared.delivered(token, matches).await
    }

    pub fn refused(&self) -> Vec<String> {
        self.shared.refused()
    }

    pub fn asked(&self, token: &str) -> usize {
        self.shared.asked(token)
    }

    /// The server's settings: the service account's key file (naming
    /// this fake's token URL) and FCM's address.
    pub fn settings(&self, dir: &Path) -> Vec<(&'static str, String)> {
        let account = json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "0123456789abcdef",
            "private_key": self.key_pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": format!("{}/token", self.url),
        });
        let file = dir.join("service-account.json");
        std::fs::write(&file, account.to_string()).unwrap();
        vec![
            (
                "SWITCHBOARD_FCM_SERVICE_ACCOUNT_FILE",
                file.display().to_string(),
            ),
            ("SWITCHBOARD_FCM_URL", self.url.clone()),
        ]
    }

    /// Google's checks of a JWT bearer grant (RFC 7523).
    fn grant(&self, form: &HashMap<String, String>) -> Result<(), &'static str> {
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err("unsupported_grant_type");
        }
        let assertion = form.get("assertion").ok_or("invalid_request")?;
        let key = DecodingKey::from_rsa_pem(self.public_pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[format!("{}/token", self.url)]);
        validation.set_issuer(&[&self.client_email]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
            .map_err(|_| "invalid_grant")?
            .claims;
        let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
        let (Some(iat), Some(exp)) = (iat, exp) else {
            return Err("invalid_grant");
        };
        if exp - iat > 3600 || iat > crate::now_s() + 60 {
            return Err("invalid_grant");
        }
        let scopes = claims["scope"].as_str().unwrap_or("");
        if !scopes
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/firebase.messaging")
        {
            return Err("invalid_scope");
        }
        Ok(())
    }

    /// FCM's checks of a send; `Err` is its answer: the status, its
    /// name, and why.
    fn check(&self, headers: &HeaderMap, body: &Bytes) -> Result<(String, Value), FcmError> {
        let bearer = (header(headers, "authorization")).and_then(|a| a.strip_prefix("Bearer "));
        let known = bearer.is_some_and(|b| self.bought.lock().unwrap().iter().any(|t| t == b));
        if !known {
            let why = "Request had invalid authentication credentials.";
            return Err((StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", why));
        }
        let invalid = |why| (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", why);
        let request: Value = serde_json::from_slice(body).map_err(|_| invalid("not JSON"))?;
        let message = &request["message"];
        let token = message["token"]
            .as_str()
            .ok_or_else(|| invalid("no token"))?;
        let data = message["data"]
            .as_object()
            .ok_or_else(|| invalid("no data"))?;
        if !data.values().all(Value::is_string) {
            return Err(invalid("data values must be strings"));
        }
        // Keys FCM keeps for itself.
        let reserved = |k: &str| {
            ["from", "message_type", "notification"].contains(&k)
                || k.starts_with("google.")
                || k.starts_with("gcm.")
        };
        if data.keys().any(|k| reserved(k)) {
            return Err(invalid("Invalid data payload key"));
        }
        let android = &message["android"];
        let webpush = &message["webpush"];
        match (android.is_null(), webpush.is_null()) {
            (false, true) => {
                let high = matches!(android["priority"].as_str(), Some("high" | "HIGH"));
                let ttl = android["ttl"].as_str().unwrap_or("0s");
                if !high || !ttl.ends_with('s') || ttl.trim_end_matches('s').parse::<u64>().is_err()
                {
                    return Err(invalid("android: priority high and a ttl in seconds"));
                }
            }
            (true, false) => {
                if webpush["headers"]["Urgency"] != "high" {
                    return Err(invalid("webpush: Urgency high"));
                }
            }
            _ => return Err(invalid("one of android and webpush")),
        }
        Ok((token.to_owned(), Value::Object(data.clone())))
    }
}

async fn oauth_token(
    State(fake): State<FakeFcm>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(error) = fake.grant(&form) {
        let why = format!("OAuth grant: {error}");
        return fake
            .shared
            .refuse(why, StatusCode::BAD_REQUEST, json!({ "error": error }));
    }
    let token = format!("ya29.{}", crate::random_id());
    fake.bought.lock().unwrap().push(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn fcm_send(
    State(fake): State<FakeFcm>,
    UrlPath((project, method)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if project != fake.project_id || method != "messages:send" {
        let why = format!("path {project}/{method}");
        let body = json!({"error": {"code": 404, "message": why, "status": "NOT_FOUND"}});
        return fake.shared.refuse(why, StatusCode::NOT_FOUND, body);
    }
    let (token, data) = match fake.check(&headers, &body) {
        Ok(checked) => checked,
        // An expired access token is the server's to renew, not an error.
        Err(e) if e.0 == StatusCode::UNAUTHORIZED => {
            return (e.0, axum::Json(fcm_body(e))).into_response()
        }
        Err(e) => return fake.shared.refuse(e.2.to_owned(), e.0, fcm_body(e)),
    };
    if let Some((status, body)) = fake.shared.ask(&token) {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    fake.shared.deliver(&token, data);
    let name = format!(
        "projects/{}/messages/{}",
        fake.project_id,
        crate::random_id()
    );
    axum::Json(json!({ "name": name })).into_response()
}

/// A webhook receiver standing in for an operator's push gateway: its
/// URL, and each body it is sent.
pub async fn webhook() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/push",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}
