//! The OpenAPI document against the real binary: Schemathesis, a
//! property-based API tester nobody here wrote, generates requests for every
//! operation of `/openapi.json` (tests/interop/openapi_fuzz.py), once without
//! a token and once as a new user. A 5xx, an answer the document does not
//! describe, a request it calls valid that is refused or one it calls
//! invalid that is accepted all fail the test. Beside it, what the fuzz
//! cannot reach: path segments that are not UTF-8, and lists as long as the
//! document allows.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_e2e::{random_id, Database, Server};

/// Examples per operation and phase: both passes take about 25 s on two
/// cores, and the time grows with this.
const MAX_EXAMPLES: &str = "50";

/// The Python with Schemathesis: `E2E_PYTHON`, which scripts/test sets to
/// its virtualenv of tests/interop/requirements.txt.
fn python() -> String {
    std::env::var("E2E_PYTHON").unwrap_or_else(|_| {
        panic!(
            "E2E_PYTHON is not set: point it at a Python with tests/interop/requirements.txt \
             installed (scripts/test makes one in target/e2e-venv)"
        )
    })
}

#[tokio::test]
async fn every_answer_to_schemathesis_is_one_the_openapi_document_describes() {
    let python = python();
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    // A user of its own: profile changes and discovery are limited per user.
    let token = server.token(&random_id(), None, "user", 3600).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/openapi_fuzz.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(script)
        .arg(&server.http)
        .args(["--token", &token])
        .args(["--max-examples", MAX_EXAMPLES])
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the OpenAPI fuzz did not finish within 300 s")
        .unwrap_or_else(|e| panic!("running {python} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "openapi_fuzz.py took {:.1} s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "the OpenAPI fuzz failed ({}); its output:\n{stdout}\n{stderr}",
        output.status
    );
}

/// Schemathesis sends valid UTF-8 only; these still answer in the
/// document's error form.
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_answers_in_the_error_form() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let token = server.token(&random_id(), None, "user", 600).unwrap();
    let client = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/calls/%FF"),
        (reqwest::Method::GET, "/v1/users/%C3%28/profile"),
        (reqwest::Method::DELETE, "/v1/me/robots/%FF"),
    ] {
        let r = client
            .request(method.clone(), format!("{}{path}", server.http))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "bad_request",
            "{method} {path}: {body}"
        );
    }
}

/// The document allows 5000 ids in a contact or block list: that many pass
/// the body and count limits (and are refused only because nobody has
/// these ids); 5001 are too many.
#[tokio::test]
async fn a_list_of_5000_ids_is_within_the_limits_and_5001_are_not() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let token = server.token(&random_id(), None, "user", 600).unwrap();
    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..5001).map(|_| random_id()).collect();
    for list in ["contacts", "blocked"] {
        let url = format!("{}/v1/me/{list}", server.http);
        for (n, status, code, message) in [
            (5000, 400, "bad_request", "unknown user id"),
            (5001, 413, "payload_too_large", "at most 5000 ids"),
        ] {
            let r = client
                .put(&url)
                .bearer_auth(&token)
                .json(&json!({ "userIds": &ids[..n] }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{n} {list}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{n} {list}: {body}");
            let said = body["error"]["message"].as_str().unwrap();
            assert!(said.starts_with(message), "{n} {list}: {body}");
        }
    }
}
