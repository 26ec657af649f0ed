//! The SDK's foreign bindings against the real server: a Python program
//! and a Kotlin program (each in `mobile-sdk-ffi/bindings-tests/`) sign in
//! two users with codes from the SMS webhook, see each other online, call
//! and accept, and pair and command a robot. A Python program also exits
//! without signing out, many times over, and must exit cleanly. Both
//! programs run over TLS too (HTTPS, then MQTT over TLS), trusting the
//! test's CA file (`Config.ca_file`).
//! `scripts/test` generates the bindings (`scripts/bindings`) and installs
//! Python, kotlinc and JNA.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use switchboard_e2e::api::{Api, SmsInbox};
use switchboard_e2e::tls::{ca, tls_builder, write};
use switchboard_e2e::{run_to_end, Backend, Server, ADMIN_TOKEN};
use tempfile::TempDir;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn from_env(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
}

/// `target/bindings/<language>`, as `scripts/bindings` writes them.
fn bindings(language: &str) -> PathBuf {
    let dir = from_env("E2E_BINDINGS", workspace().join("target/bindings")).join(language);
    assert!(
        dir.is_dir(),
        "no {language} bindings in {}: run scripts/bindings (scripts/test does)",
        dir.display()
    );
    dir
}

/// `target/bindings/python`, the directory for `PYTHONPATH`: it holds the
/// `switchboard_sdk` package (the generated module, the library, and the
/// `__init__.py` that shuts the SDK down at interpreter exit).
fn python_path() -> PathBuf {
    let dir = bindings("python");
    assert!(
        dir.join("switchboard_sdk/__init__.py").is_file(),
        "no switchboard_sdk package in {}: run scripts/bindings again",
        dir.display()
    );
    dir
}

type Env = Vec<(&'static str, String)>;

/// A server, a provisioned robot, and the environment the foreign test
/// programs read.
async fn setup() -> (Backend, Env) {
    let backend = Backend::start().await;
    let env = robot_env(&backend.api, &backend.server.http, &backend.sms.url).await;
    (backend, env)
}

/// The same over TLS: a server with a certificate from the test's CA,
/// which the programs trust as their CA file (`SB_CA_FILE`).
async fn tls_setup() -> (Server, TempDir, Env) {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_builder(&ours, files.path(), &sms)
        .start()
        .await
        .unwrap();
    let https = format!("https://127.0.0.1:{}", server.https.unwrap().port());
    let mut env = robot_env(&Api::new(&server), &https, &sms.url).await;
    env.push(("SB_CA_FILE", write(files.path(), "ca.pem", &ours.pem)));
    (server, files, env)
}

/// Provisions a robot; the programs' environment.
async fn robot_env(api: &Api, http: &str, sms: &str) -> Env {
    let r = api.create_robot(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(r.status, 201);
    let field = |f: &str| r.body[f].as_str().unwrap().to_owned();
    vec![
        ("SB_HTTP", http.to_owned()),
        ("SB_SMS", sms.to_owned()),
        ("SB_ROBOT_ID", field("robotId")),
        ("SB_ROBOT_SECRET", field("secret")),
    ]
}

/// The Python test program's command, with `env`.
fn python_test(env: Env) -> Command {
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg(workspace().join("mobile-sdk-ffi/bindings-tests/python/test_sdk.py"))
        .env("PYTHONPATH", python_path())
        .envs(env);
    cmd
}

#[tokio::test]
async fn python_bindings_against_the_real_server() {
    let (_backend, env) = setup().await;
    run_to_end(python_test(env), "Python").await;
}

/// The same program over TLS: the SDK signs in over HTTPS and is handed
/// MQTT over TLS.
#[tokio::test]
async fn python_bindings_over_tls() {
    let (_server, _files, env) = tls_setup().await;
    run_to_end(python_test(env), "Python over TLS").await;
}

/// Robot sign-ins of the exit test: 9 in each mode, one after another,
/// within the server's burst of 30 sign-ins per address
/// (server/src/limits.rs).
const EXIT_RUNS: usize = 27;

/// A Python app may exit without signing out. The session's last event
/// reaches the listener from an SDK thread a few ms after the session is
/// freed; a call into an interpreter that has started tearing itself down
/// aborts the process ("FATAL: exception not rethrown"), unless the
/// package's atexit hook (`shutdown`) stopped delivery first. The race is
/// run many times: `busy` exits with a listener call in progress, `global`
/// frees the session during teardown, `idle` is an ordinary app.
#[tokio::test]
async fn python_exits_cleanly_without_signing_out() {
    let (_backend, env) = setup().await;
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = workspace().join("mobile-sdk-ffi/bindings-tests/python/exit_without_sign_out.py");
    let path = python_path();
    for run in 0..EXIT_RUNS {
        let mode = ["busy", "global", "idle"][run % 3];
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script)
            .arg(mode)
            .env("PYTHONPATH", &path)
            .envs(env.iter().cloned())
            .kill_on_drop(true);
        // A hang at exit (how Python 3.14 treats such a thread) fails too.
        let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("run {run} ({mode}) did not exit within 30 s"))
            .unwrap_or_else(|e| panic!("starting {python}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // An abort (SIGABRT) or a crash is not a success either.
        let clean = output.status.success()
            && stdout.contains("EXITING")
            && !["FATAL", "Fatal Python error", "panicked"]
                .iter()
                .any(|bad| stderr.contains(bad));
        assert!(
            clean,
            "run {run} ({mode}) did not exit cleanly ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
}

#[tokio::test]
async fn kotlin_bindings_against_the_real_server() {
    let (_backend, env) = setup().await;
    run_to_end(kotlin_test(env), "Kotlin").await;
}

#[tokio::test]
async fn kotlin_bindings_over_tls() {
    let (_server, _files, env) = tls_setup().await;
    run_to_end(kotlin_test(env), "Kotlin over TLS").await;
}

/// The compiled Kotlin test program's command, with `env`.
fn kotlin_test(env: Env) -> Command {
    let dir = bindings("kotlin");
    let jar = from_env(
        "E2E_KOTLIN_JAR",
        workspace().join("target/kotlin/sdk-test.jar"),
    );
    assert!(
        jar.is_file(),
        "no compiled Kotlin test at {}: scripts/test compiles it with kotlinc",
        jar.display()
    );
    let classpath = std::env::var("E2E_KOTLIN_CLASSPATH").unwrap_or_else(|_| {
        panic!("E2E_KOTLIN_CLASSPATH (kotlin stdlib, coroutines, JNA) is set by scripts/test")
    });
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Djna.library.path={}", dir.display()))
        .arg("-cp")
        .arg(format!("{}:{classpath}", jar.display()))
        .arg("SdkTestKt")
        .envs(env);
    cmd
}
