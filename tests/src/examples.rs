//! The SDK's command-line examples as processes: started, read line by
//! line, killed at the end.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::{Backend, ADMIN_TOKEN};

/// The SDK example `name`, built, with its stdin and stdout piped.
pub fn example(name: &str) -> Command {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debug/examples"
    ))
    .join(name);
    assert!(
        path.is_file(),
        "{} is not built: cargo build -p switchboard-sdk --examples (scripts/test does)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// The example's output, line by line (read on a thread of its own).
pub struct Output(tokio::sync::mpsc::UnboundedReceiver<String>);

impl Output {
    pub fn of(child: &mut Child) -> Output {
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("example: {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Output(rx)
    }

    /// Skips lines until one contains `text`; returns it.
    pub async fn line_with(&mut self, text: &str) -> String {
        let found = async {
            while let Some(line) = self.0.recv().await {
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(10), found)
            .await
            .unwrap_or_else(|_| panic!("no {text:?} from the example within 10 s"))
            .unwrap_or_else(|| panic!("the example ended without printing {text:?}"))
    }
}

/// A child process, killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The robot example, provisioned on `backend` and started (each move
/// taking `travel_ms`): the process, its output, and the pairing code it
/// shows.
pub async fn robot(backend: &Backend, travel_ms: u64) -> (Running, Output, String) {
    let r = backend.api.create_robot(Some(ADMIN_TOKEN)).await.unwrap();
    let field = |f: &str| r.body[f].as_str().unwrap().to_owned();
    let mut child = example("robot")
        .args(["--server", &backend.server.http])
        .args([
            "--robot-id",
            &field("robotId"),
            "--secret",
            &field("secret"),
        ])
        .args(["--travel-ms", &travel_ms.to_string()])
        .spawn()
        .unwrap();
    let mut out = Output::of(&mut child);
    let running = Running(child);
    let line = out.line_with("pairing code: ").await;
    let code = line.trim().rsplit(' ').next().unwrap().to_owned();
    (running, out, code)
}
