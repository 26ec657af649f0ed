//! Bodies of the HTTP API that the server writes and its clients (the SDK,
//! the end-to-end tests) read, defined once so neither side can drift.
//!
//! Their comments are `//`, not `///`: the OpenAPI document would take a
//! doc comment on a type as its description.

use serde::{Deserialize, Serialize};

// What `POST /v1/auth/verify` and `POST /v1/auth/robot` answer: the id of
// the user or of the robot, never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    // Left out when unset, never `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub robot_id: Option<String>,
    #[serde(flatten)]
    pub tokens: TokenPair,
    pub mqtt: MqttAccess,
}

// What `POST /v1/auth/refresh` answers, and part of a sign-in's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    // Seconds the access token lives.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttAccess {
    /// `mqtt://host:port`
    pub tcp: String,
    /// `ws://host:port/mqtt`
    pub ws: String,
    /// The client id to connect with.
    pub client_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sign_in_names_one_account_and_reads_back() {
        let user = SignedIn {
            user_id: Some("36940d0ece18aebf69d0ef6825534e24".into()),
            robot_id: None,
            tokens: TokenPair {
                access_token: "a".into(),
                refresh_token: "r".into(),
                expires_in: 900,
            },
            mqtt: MqttAccess {
                tcp: "mqtt://h:1883".into(),
                ws: "ws://h:8083/mqtt".into(),
                client_id: "36940d0ece18aebf69d0ef6825534e24:phone".into(),
            },
        };
        let wire = json!({
            "userId": "36940d0ece18aebf69d0ef6825534e24",
            "accessToken": "a",
            "refreshToken": "r",
            "expiresIn": 900,
            "mqtt": {
                "tcp": "mqtt://h:1883",
                "ws": "ws://h:8083/mqtt",
                "clientId": "36940d0ece18aebf69d0ef6825534e24:phone"
            }
        });
        assert_eq!(serde_json::to_value(&user).unwrap(), wire);
        assert_eq!(serde_json::from_value::<SignedIn>(wire).unwrap(), user);
    }
}
