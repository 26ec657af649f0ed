//! The setup most tests start from: a server on the test's database that
//! sends its one-time codes to an SMS inbox, and an API client for it.

use crate::api::{Api, SignedIn, SmsInbox};
use crate::{Database, Server, ServerBuilder};

pub struct Backend {
    pub server: Server,
    pub api: Api,
    pub sms: SmsInbox,
    /// Kept for a restart on the same data.
    pub db: Database,
}

impl Backend {
    /// A backend with the test defaults.
    pub async fn start() -> Backend {
        Backend::start_with(|server| server).await
    }

    /// A backend whose server `configure` sets up on top of the test
    /// defaults (short timeouts, a push webhook, ...).
    pub async fn start_with(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Backend {
        let db = Database::for_test().await.unwrap();
        let sms = SmsInbox::start().await.unwrap();
        let server = configure(Server::with_sms(&db, &sms))
            .start()
            .await
            .unwrap();
        Backend {
            api: Api::new(&server),
            server,
            sms,
            db,
        }
    }

    /// `phone` signed in from its device `phone`, as most tests' people are.
    pub async fn user(&self, phone: &str) -> SignedIn {
        self.api.sign_in(&self.sms, phone, "phone").await.unwrap()
    }

    /// The backend after a clean stop and a start on the same data (with
    /// the test defaults).
    pub async fn restart(self) -> Backend {
        let server = self.server.restart(&self.db, &self.sms).await.unwrap();
        Backend {
            api: Api::new(&server),
            server,
            ..self
        }
    }
}
