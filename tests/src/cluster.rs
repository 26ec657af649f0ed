//! Several nodes of one service on this machine: a real nats-server on a
//! free loopback port, one fresh PostgreSQL database (the server in
//! `E2E_POSTGRES_URL`), and nodes started like any test server with
//! `SWITCHBOARD_NATS_URL`, one-time codes going to one SMS inbox.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::api::{Api, SignedIn, SmsInbox};
use crate::{postgres_admin_url, Database, Server, ServerBuilder};

/// The id key every node of a test cluster shares (the JWT key is the
/// harness's).
const ID_SECRET: &str = "e2e-cluster-id-secret-0123456789abcdef";

/// A nats-server of its own, stopped when dropped.
pub struct Nats {
    child: Child,
    pub url: String,
}

/// A Debian daemon's binary (`nats-server`, `haproxy`) from PATH, or where
/// Debian puts it (`/usr/sbin` is not on every user's PATH).
fn daemon(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin").join(name))
}

impl Nats {
    /// Starts nats-server on a free port (`-p -1`) and reads the port it
    /// took from its log.
    pub async fn start() -> Result<Nats> {
        let (child, addr) = nats_server_on("-1").await?;
        Ok(Nats {
            child,
            url: format!("nats://{addr}"),
        })
    }

    /// Kills nats-server, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts nats-server again on the port it had.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        let port = self.url.rsplit(':').next().context("a port in the URL")?;
        self.child = nats_server_on(port).await?.0;
        Ok(())
    }
}

/// nats-server on loopback port `port`, once it said where it listens.
async fn nats_server_on(port: &str) -> Result<(Child, String)> {
    let mut child = Command::new(daemon("nats-server"))
        .args(["-a", "127.0.0.1", "-p", port])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting nats-server (Debian package nats-server; scripts/test installs it)")?;
    let stderr = child.stderr.take().expect("piped stderr");
    let listening = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(|l| l.ok());
        let found = lines.by_ref().find_map(|line| {
            let (_, addr) = line.split_once("Listening for client connections on ")?;
            Some(addr.trim().to_string())
        });
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    });
    match tokio::time::timeout(Duration::from_secs(30), listening).await {
        Ok(Ok(Some(addr))) => Ok((child, addr)),
        _ => {
            let _ = child.kill();
            bail!("nats-server did not say where it listens");
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HAProxy running `config`, stopped when dropped.
pub struct HaProxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy in the foreground with `config` (its checks passed:
    /// `haproxy -c` first, so a bad file fails here, with its words).
    pub fn start(config: &str) -> Result<HaProxy> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let check = Command::new(daemon("haproxy"))
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .context("running haproxy (Debian package haproxy; scripts/test installs it)")?;
        if !check.status.success() {
            bail!("haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
        }
        let child = Command::new(daemon("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(HaProxy { child, _dir: dir })
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node: its server and an API client for it.
pub struct Node {
    pub server: Server,
    pub api: Api,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub sms: SmsInbox,
    pub db: Database,
    pub nats: Nats,
}

impl Cluster {
    /// `n` nodes on one new PostgreSQL database and one nats-server.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, |_, node| node).await
    }

    /// `n` nodes, each set up by `configure` (given its index) on top of
    /// the test defaults.
    pub async fn start_with(
        n: usize,
        configure: impl Fn(usize, ServerBuilder) -> ServerBuilder,
    ) -> Cluster {
        assert!(
            postgres_admin_url().is_some(),
            "E2E_POSTGRES_URL must name a PostgreSQL server: nodes share one record"
        );
        let db = Database::for_test().await.unwrap();
        let sms = SmsInbox::start().await.unwrap();
        let nats = Nats::start().await.unwrap();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node = Server::with_sms(&db, &sms)
                .env("SWITCHBOARD_NATS_URL", nats.url.clone())
                .env("SWITCHBOARD_ID_SECRET", ID_SECRET);
            let server = configure(i, node).start().await.unwrap();
            nodes.push(Node {
                api: Api::new(&server),
                server,
            });
        }
        Cluster {
            nodes,
            sms,
            db,
            nats,
        }
    }

    /// `phone` signed in from its device `phone`, through node `node`.
    pub async fn user(&self, node: usize, phone: &str) -> SignedIn {
        (self.nodes[node].api)
            .sign_in(&self.sms, phone, "phone")
            .await
            .unwrap()
    }
}
