//! The SDK over TLS, against a server listening over TLS only: sign-in
//! over HTTPS, then MQTT over TLS for one phone and over secure WebSocket
//! for the other, trusting the system's roots, which here name the
//! test's CA (`SSL_CERT_FILE`, read by this process alone).

use switchboard_e2e::api::SmsInbox;
use switchboard_e2e::sdk::Account;
use switchboard_e2e::tls::{ca, tls_builder, tls_only, write};
use switchboard_sdk::{CallKind, Config, EventQueue, Switchboard};

#[tokio::test]
async fn two_phones_call_each_other_over_tls_only() {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    // The system's roots, as the SDK reads them: before its first use.
    std::env::set_var("SSL_CERT_FILE", write(files.path(), "ca.pem", &ours.pem));
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_only(tls_builder(&ours, files.path(), &sms))
        .start()
        .await
        .unwrap();
    let https = format!("https://127.0.0.1:{}", server.https.unwrap().port());
    let wss = format!("wss://127.0.0.1:{}/mqtt", server.mqtt_wss.unwrap().port());
    let mut phones = Vec::new();
    // A takes the mqtts:// URL sign-in hands out; B is set to wss://.
    for (phone, mqtt_url) in [("+48555430001", None), ("+48555430002", Some(wss))] {
        let sb = Switchboard::new(Config {
            http_url: https.clone(),
            mqtt_url,
            device: Some("phone".into()),
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
