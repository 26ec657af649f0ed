//! Test harness: starts the real `switchboard` binary on free loopback
//! ports, each test with its own data directory and database, and gives
//! tests real MQTT and HTTP clients for it.
//!
//! The binary is the one `cargo build` put beside the test executables
//! (`target/debug/switchboard`); `E2E_SWITCHBOARD_BIN` overrides it. The
//! database is SQLite in the data directory, or a fresh PostgreSQL database
//! per test when `E2E_POSTGRES_URL` names a server (the test script starts
//! one).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub mod api;
pub mod backend;
pub mod calls;
pub mod cluster;
pub mod examples;
pub mod media;
pub mod mqtt;
pub mod push;
pub mod robots;
pub mod sdk;
pub mod tls;

pub use backend::Backend;

/// A JWT key known to the tests, so they can also forge and expire tokens.
pub const JWT_SECRET: &str = "e2e-test-jwt-secret-0123456789abcdef";
/// The admin bearer token of test servers.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("E2E_SWITCHBOARD_BIN") {
        return PathBuf::from(p);
    }
    // Beside this executable (a bench in target/<profile>), or one level
    // up from a test executable in target/<profile>/deps.
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let candidates = [
        dir.join("switchboard"),
        dir.parent().expect("target directory").join("switchboard"),
    ];
    match candidates.iter().find(|c| c.exists()) {
        Some(bin) => bin.clone(),
        None => panic!(
            "{} is missing: run `cargo build --bin switchboard` first (scripts/test does)",
            candidates[1].display()
        ),
    }
}

/// The database a test server uses.
pub enum Database {
    Sqlite,
    /// A database made for this test on the server in `E2E_POSTGRES_URL`.
    Postgres {
        url: String,
    },
}

impl Database {
    /// SQLite, or a fresh PostgreSQL database when the suite runs against
    /// PostgreSQL.
    pub async fn for_test() -> Result<Database> {
        match postgres_admin_url() {
            Some(admin) => Ok(Database::Postgres {
                url: fresh_postgres_database(&admin).await?,
            }),
            None => Ok(Database::Sqlite),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres { .. })
    }
}

/// The PostgreSQL server the suite runs against, if any (unset or empty:
/// SQLite).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("E2E_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Creates an empty database on the PostgreSQL server at `admin_url` and
/// returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> Result<String> {
    use sqlx::Connection;
    let name = format!("sb_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .context("E2E_POSTGRES_URL must end in /<database>")?;
    Ok(format!("{base}/{name}"))
}

/// How to start a server: environment on top of the test defaults.
pub struct ServerBuilder {
    env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
}

pub struct Server {
    child: Child,
    pub http: String,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
    /// The embedded TURN server, when it is on.
    pub turn: Option<SocketAddr>,
    /// HTTPS, MQTT over TLS and over secure WebSocket, with TLS on.
    pub https: Option<SocketAddr>,
    pub mqtts: Option<SocketAddr>,
    pub mqtt_wss: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Every log line the server wrote, parsed.
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// The thread reading the logs; it ends when the server's stderr does.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerBuilder {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Leaves a test default out (e.g. to let the server make its own key).
    pub fn unset(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Reuse a data directory (e.g. to restart on the same state).
    pub fn dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    pub async fn start(self) -> Result<Server> {
        let dir = match self.dir {
            Some(d) => d,
            None => tempfile::tempdir()?,
        };
        let mut env = vec![(
            "SWITCHBOARD_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        )];
        env.extend(self.env);
        let mut cmd = command(&env);
        cmd.args(["--log-json", "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting switchboard")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let log_sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let value: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                let ready = value["fields"]["message"] == "switchboard ready";
                // In the logs before `start` returns, for a test to read.
                log_sink.lock().unwrap().push(value.clone());
                if ready {
                    let _ = ready_tx.send(value);
                }
            }
        });
        let ready =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
                .await?;
        let ready = match ready {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "switchboard did not become ready ({status}); logs: {:?}",
                    logs.lock().unwrap()
                );
            }
        };
        let field = |name: &str| -> Result<SocketAddr> {
            ready["fields"][name]
                .as_str()
                .context("address in ready line")?
                .parse()
                .context("parsing address")
        };
        Ok(Server {
            reader: Some(reader),
            // A server with its plain listeners off is reached over TLS.
            http: match field("http_addr") {
                Ok(addr) => format!("http://{addr}"),
                Err(_) => format!("https://{}", field("https")?),
            },
            mqtt: field("mqtt").or_else(|_| field("mqtts"))?,
            mqtt_ws: field("mqtt_ws").or_else(|_| field("mqtt_wss"))?,
            turn: field("turn").ok(),
            https: field("https").ok(),
            mqtts: field("mqtts").ok(),
            mqtt_wss: field("mqtt_wss").ok(),
            child,
            dir,
            env,
            logs,
        })
    }
}

/// A `switchboard` command with exactly `env` from the Switchboard
/// settings (none inherited from the test's own environment).
fn command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

impl Server {
    /// Test defaults: free loopback ports, a known JWT key, the test's
    /// database.
    pub fn builder(db: &Database) -> ServerBuilder {
        let mut env = vec![
            ("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("SWITCHBOARD_MQTT_ADDR", "127.0.0.1:0".to_string()),
            ("SWITCHBOARD_MQTT_WS_ADDR", "127.0.0.1:0".to_string()),
            ("SWITCHBOARD_JWT_SECRET", JWT_SECRET.to_string()),
            ("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ];
        if let Database::Postgres { url } = db {
            env.push(("SWITCHBOARD_DATABASE_URL", url.clone()));
        }
        ServerBuilder {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            dir: None,
        }
    }

    /// Test defaults plus one-time codes sent to `sms`.
    pub fn with_sms(db: &Database, sms: &api::SmsInbox) -> ServerBuilder {
        Server::builder(db)
            .env("SWITCHBOARD_SMS_PROVIDER", "webhook")
            .env("SWITCHBOARD_SMS_WEBHOOK_URL", sms.url.clone())
    }

    /// A server on the test's database with the test defaults.
    pub async fn start(db: &Database) -> Result<Server> {
        Server::builder(db).start().await
    }

    /// Mints an access token with `switchboard token`.
    pub fn token(&self, sub: &str, device: Option<&str>, kind: &str, ttl_s: u64) -> Result<String> {
        let mut tokens = self.tokens(&[sub.to_string()], device, kind, ttl_s)?;
        Ok(tokens.remove(0))
    }

    /// Mints one access token per subject with one `switchboard token`.
    pub fn tokens(
        &self,
        subs: &[String],
        device: Option<&str>,
        kind: &str,
        ttl_s: u64,
    ) -> Result<Vec<String>> {
        let mut cmd = command(&self.env);
        cmd.args(["token", "--kind", kind, "--ttl", &ttl_s.to_string()]);
        for sub in subs {
            cmd.args(["--sub", sub]);
        }
        if let Some(d) = device {
            cmd.args(["--device", d]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "switchboard token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tokens: Vec<String> = String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_string)
            .collect();
        if tokens.len() != subs.len() {
            bail!("{} tokens for {} subjects", tokens.len(), subs.len());
        }
        Ok(tokens)
    }

    /// A new account of `kind` (`user`, `robot`) signed in from `device`
    /// with a token `switchboard token` mints to live `ttl_s`.
    pub fn minted(&self, kind: &str, device: Option<&str>, ttl_s: u64) -> Result<api::SignedIn> {
        self.minted_for(&random_id(), kind, device, ttl_s)
    }

    /// Account `id` signed in from `device` (none: under its bare id, as a
    /// robot is) with a minted token: no refresh token, no sign-in answer.
    pub fn minted_for(
        &self,
        id: &str,
        kind: &str,
        device: Option<&str>,
        ttl_s: u64,
    ) -> Result<api::SignedIn> {
        let access = self.token(id, device, kind, ttl_s)?;
        let client_id = match device {
            Some(device) => format!("{id}:{device}"),
            None => id.to_string(),
        };
        Ok(api::SignedIn {
            id: id.to_string(),
            access,
            refresh: String::new(),
            client_id,
            body: Value::Null,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM and waits for it to exit; its logs
    /// stay readable.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        signal(&self.child, "-TERM")?;
        let status = self.child.wait()?;
        // Every line the server wrote is in `logs` once this returns.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(status)
    }

    /// Stops the server with SIGTERM and returns its data directory.
    pub fn terminate(mut self) -> Result<(ExitStatus, tempfile::TempDir)> {
        let status = self.stop()?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        Ok((status, dir))
    }

    /// Stops the server with SIGTERM, checks that it stopped cleanly, and
    /// starts another with the test defaults (and one-time codes sent to
    /// `sms`) on the same data directory and database.
    pub async fn restart(self, db: &Database, sms: &api::SmsInbox) -> Result<Server> {
        let (status, dir) = self.terminate()?;
        anyhow::ensure!(status.success(), "the server stopped with {status}");
        Server::with_sms(db, sms).dir(dir).start().await
    }

    /// Kills the server with SIGKILL, as a crash would, and returns its
    /// data directory.
    pub fn crash(mut self) -> Result<tempfile::TempDir> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(std::mem::replace(&mut self.dir, tempfile::tempdir()?))
    }

    /// An MQTT 3.1.1 client logged in over TCP as a signed-in user or robot.
    pub async fn mqtt_as(&self, who: &api::SignedIn) -> mqtt::Client {
        mqtt::connect(self.mqtt, mqtt::Via::Tcp, who.login())
            .await
            .unwrap_or_else(|e| panic!("{} could not log in: {e:?}", who.client_id))
    }

    /// The whole /metrics page.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of an unlabelled metric on /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }

    /// A counter on /metrics, labels and all (`name{label="value",...}`,
    /// labels in the server's order); 0 until it is first counted.
    pub async fn counter(&self, name: &str) -> f64 {
        (self.metrics().await.lines())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls /metrics until the counter `name` reads `want`, for what the
    /// server counts after the client saw it happen.
    pub async fn counter_reaches(&self, name: &str, want: f64) {
        for _ in 0..100 {
            if self.counter(name).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never reached {want}: {}", self.counter(name).await);
    }

    /// Polls /metrics until `name` reads `want`, for state the server
    /// changes after it answered (rooms closed, connections forgotten).
    pub async fn metric_reaches(&self, name: &str, want: f64) {
        for _ in 0..100 {
            if self.metric(name).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never reached {want}: {}", self.metric(name).await);
    }

    /// Waits until `times` log lines' messages contain `text`, for what
    /// the server does on its own (seeing NATS go away and come back).
    pub async fn logs_reach(&self, text: &str, times: usize) {
        for _ in 0..200 {
            if self.times_logged(text) >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not log {text:?} {times} times");
    }

    /// Whether some log line's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.times_logged(text) > 0
    }

    pub fn times_logged(&self, text: &str) -> usize {
        let logs = self.logs.lock().unwrap();
        let says = |l: &&Value| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        };
        logs.iter().filter(says).count()
    }
}

fn signal(child: &Child, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()?;
    if !status.success() {
        bail!("kill {sig} failed");
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test shows what the server refused or failed at.
        if std::thread::panicking() {
            // A test that panicked while reading the logs left them poisoned.
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            for line in logs.iter() {
                if line["level"] != "DEBUG" && line["level"] != "TRACE" {
                    eprintln!("server: {line}");
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `switchboard` with `args` and the given environment (nothing else
/// from the Switchboard settings) and returns its exit status and stderr.
pub fn run_switchboard(args: &[&str], env: &[(&str, &str)]) -> Result<(ExitStatus, String)> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = command(&env).args(args).output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs a test program in another language (Python, Kotlin, a browser
/// script) to its end, three minutes at most, and checks that it passed:
/// it exits 0 having printed `ALL PASSED` as its last step, so a program
/// that stopped early without an error fails. Its output, for what it
/// reports.
pub async fn run_to_end(cmd: std::process::Command, what: &str) -> String {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the {what} test did not finish within 3 minutes"))
        .unwrap_or_else(|e| panic!("starting the {what} test: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{what} test output:\n{stdout}\n{stderr}");
    assert!(output.status.success(), "the {what} test failed");
    assert!(
        stdout.contains("ALL PASSED"),
        "the {what} test did not finish"
    );
    stdout.into_owned()
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A random 32-hex id, as user and robot ids are.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
