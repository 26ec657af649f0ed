//! The SDK over TLS, against a server listening over TLS only: sign-in
//! over HTTPS, then MQTT over TLS for one phone and over secure WebSocket
//! for the other. The SDK trusts the system's roots, which one test makes
//! name its CA (`SSL_CERT_FILE`, read by this process alone), or only the
//! roots of the CA file it is given.

use std::path::Path;

use switchboard_e2e::api::SmsInbox;
use switchboard_e2e::sdk::Account;
use switchboard_e2e::tls::{ca, tls_builder, tls_only, write, Ca};
use switchboard_sdk::{CallKind, Config, EventQueue, SdkError, Switchboard};

#[tokio::test]
async fn two_phones_call_each_other_trusting_the_system_roots() {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    // The system's roots, as the SDK reads them: before its first use.
    std::env::set_var("SSL_CERT_FILE", write(files.path(), "ca.pem", &ours.pem));
    two_phones_call(&ours, files.path(), None).await;
}

/// A CA of its own, which the system's roots (even as the test above
/// sets them) do not hold.
#[tokio::test]
async fn two_phones_call_each_other_trusting_a_ca_file() {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard private CA");
    let ca_file = write(files.path(), "private-ca.pem", &ours.pem);
    two_phones_call(&ours, files.path(), Some(ca_file)).await;
}

#[tokio::test]
async fn a_server_the_ca_file_does_not_vouch_for_is_refused() {
    let files = tempfile::tempdir().unwrap();
    let (ours, other) = (ca("switchboard test CA"), ca("someone else's CA"));
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_only(tls_builder(&ours, files.path(), &sms))
        .start()
        .await
        .unwrap();
    let sb = Switchboard::new(Config {
        http_url: format!("https://127.0.0.1:{}", server.https.unwrap().port()),
        mqtt_url: None,
        device: Some("phone".into()),
        ca_file: Some(write(files.path(), "other.pem", &other.pem)),
    })
    .unwrap();
    match sb.request_code("+48555430009".into()).await {
        // The cause is named: "invalid peer certificate: UnknownIssuer".
        Err(SdkError::Network { reason }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(sms.received.lock().unwrap().is_empty(), "no code was sent");
}

/// A takes the mqtts:// URL sign-in hands out; B is set to wss://. A
/// calls B, who is shown the call.
async fn two_phones_call(ours: &Ca, files: &Path, ca_file: Option<String>) {
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_only(tls_builder(ours, files, &sms))
        .start()
        .await
        .unwrap();
    let https = format!("https://127.0.0.1:{}", server.https.unwrap().port());
    let wss = format!("wss://127.0.0.1:{}/mqtt", server.mqtt_wss.unwrap().port());
    let mut phones = Vec::new();
    for (phone, mqtt_url) in [("+48555430001", None), ("+48555430002", Some(wss))] {
        let sb = Switchboard::new(Config {
            http_url: https.clone(),
            mqtt_url,
            device: Some("phone".into()),
            ca_file: ca_file.clone(),
        })
        .unwrap();
        let e164 = sb.request_code(phone.into()).await.unwrap();
        let code = sms.code_for(&e164).await.unwrap();
        let events = EventQueue::new();
        let session = sb
            .sign_in(phone.into(), code, events.clone())
            .await
            .unwrap();
        phones.push(Account { session, events });
    }
    let (a, b) = (&phones[0], &phones[1]);
    a.session.set_contacts(vec![b.id()]).await.unwrap();
    b.session.set_contacts(vec![a.id()]).await.unwrap();
    let sid = a.session.call(b.id(), CallKind::Audio).await.unwrap();
    assert_eq!(b.incoming().await.unwrap().sid, sid);
}
