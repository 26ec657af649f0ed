//! The HTTP API: sign-in, and the signed-in calls with an access token the
//! SDK keeps fresh (refreshed ahead of expiry, and once more on a `401`).

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchboard_protocol::http::TokenPair;
use switchboard_protocol::ErrorBody;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::SdkError;

/// How long any one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub(crate) struct Http {
    base: String,
    client: reqwest::Client,
}

/// A failed request: the status and the body's error, if it had one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: u16,
    pub error: Option<ErrorBody>,
}

impl Failure {
    pub fn into_error(self) -> SdkError {
        match self.error {
            Some(body) => SdkError::from_code(body.error.code, body.error.message),
            None => SdkError::Server {
                reason: format!("HTTP {}", self.status),
            },
        }
    }
}

pub(crate) enum HttpError {
    Failed(Failure),
    Other(SdkError),
}

impl From<HttpError> for SdkError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Failed(f) => f.into_error(),
            HttpError::Other(e) => e,
        }
    }
}

impl Http {
    pub fn new(base: &str, tls: &rustls::ClientConfig) -> Result<Http, SdkError> {
        let url = reqwest::Url::parse(base).map_err(|e| SdkError::InvalidArgument {
            reason: format!("server URL {base:?}: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SdkError::InvalidArgument {
                reason: format!("server URL {base:?}: must be http or https"),
            });
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(SdkError::from)?;
        Ok(Http {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// Sends a request and reads a JSON answer (`Value::Null` for none).
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<T, HttpError> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| HttpError::Other(e.into()))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| HttpError::Other(e.into()))?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Failed(Failure {
                status,
                error: serde_json::from_slice(&bytes).ok(),
            }));
        }
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| {
            HttpError::Other(SdkError::Server {
                reason: format!("unexpected answer to {path}: {e}"),
            })
        })
    }
}

struct Tokens {
    access: String,
    refresh: String,
    /// When to refresh: four fifths into the access token's life.
    refresh_at: Instant,
}

impl Tokens {
    fn new(pair: TokenPair) -> Tokens {
        Tokens {
            access: pair.access_token,
            refresh: pair.refresh_token,
            refresh_at: Instant::now() + Duration::from_secs(pair.expires_in) * 4 / 5,
        }
    }
}

/// A signed-in account's tokens and the authenticated HTTP calls.
pub(crate) struct Auth {
    http: Http,
    tokens: std::sync::Mutex<Tokens>,
    /// One refresh at a time: each refresh token works once.
    refreshing: Mutex<()>,
}

impl Auth {
    pub fn new(http: Http, pair: TokenPair) -> Auth {
        Auth {
            http,
            tokens: std::sync::Mutex::new(Tokens::new(pair)),
            refreshing: Mutex::new(()),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn access(&self) -> String {
        self.tokens().access.clone()
    }

    pub fn refresh_at(&self) -> Instant {
        self.tokens().refresh_at
    }

    /// Trades the refresh token for new tokens. `seen` is the access token
    /// the caller found wanting: if another task refreshed meanwhile, that
    /// refresh is taken instead of a second one.
    pub async fn refresh(&self, seen: &str) -> Result<(), SdkError> {
        let _one = self.refreshing.lock().await;
        let refresh = {
            let t = self.tokens();
            if t.access != seen {
                return Ok(());
            }
            t.refresh.clone()
        };
        let body = serde_json::json!({ "refreshToken": refresh });
        match self
            .http
            .send::<TokenPair>(Method::POST, "/v1/auth/refresh", None, Some(&body))
            .await
        {
            Ok(pair) => {
                *self.tokens() = Tokens::new(pair);
                Ok(())
            }
            Err(HttpError::Failed(f)) if f.status == 401 => Err(SdkError::SignedOut),
            Err(e) => {
                // Try again soon rather than at once in a loop.
                self.tokens().refresh_at = Instant::now() + Duration::from_secs(5);
                Err(e.into())
            }
        }
    }

    /// An authenticated request; a `401` refreshes the tokens and retries
    /// once.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, SdkError> {
        let access = self.access();
        match self
            .http
            .send(method.clone(), path, Some(&access), body)
            .await
        {
            Err(HttpError::Failed(f)) if f.status == 401 => {
                self.refresh(&access).await?;
                Ok(self
                    .http
                    .send(method, path, Some(&self.access()), body)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// Ends this sign-in on the server: its refresh tokens stop working.
    pub async fn logout(&self) -> Result<(), SdkError> {
        let body = serde_json::json!({ "refreshToken": self.tokens().refresh.clone() });
        self.http
            .send::<Value>(Method::POST, "/v1/auth/logout", None, Some(&body))
            .await?;
        Ok(())
    }
}
