//! Profiles and presence: this account's profile, who may see it, following
//! other users, and finding contacts by phone number.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_protocol::{payload, Topic};

use super::{parse_id, Session};
use crate::error::SdkError;
use crate::link::Request;
use crate::types::{ContactMatch, Profile, ProfileUpdate, Visibility};

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    pub async fn my_profile(&self) -> Result<Profile, SdkError> {
        let p: payload::Profile = self.auth.call(Method::GET, "/v1/me/profile", None).await?;
        Ok(p.into())
    }

    /// Replaces this account's profile; contacts watching it see the change.
    pub async fn set_profile(&self, update: ProfileUpdate) -> Result<Profile, SdkError> {
        let body = json!({
            "nickname": update.nickname,
            "photoUrl": update.photo_url,
            "email": update.email,
            "altPhone": update.alt_phone,
        });
        let p: payload::Profile = self
            .auth
            .call(Method::PUT, "/v1/me/profile", Some(&body))
            .await?;
        Ok(p.into())
    }

    /// Another user's profile; `UnknownUser` if there is none or it is not
    /// shared with this account.
    pub async fn profile_of(&self, user_id: String) -> Result<Profile, SdkError> {
        let id = parse_id(&user_id)?;
        match self
            .auth
            .call::<payload::Profile>(Method::GET, &format!("/v1/users/{id}/profile"), None)
            .await
        {
            Ok(p) => Ok(p.into()),
            Err(SdkError::Refused { code, .. }) if code == "not_found" => {
                Err(SdkError::UnknownUser { id: user_id })
            }
            Err(e) => Err(e),
        }
    }

    /// Follows a user's profile and presence: `Event::Profile` and
    /// `Event::Presence` now (if it has them) and on every change, across
    /// reconnects.
    pub async fn watch(&self, user_id: String) -> Result<(), SdkError> {
        let id = parse_id(&user_id)?;
        for topic in [Topic::UserInfo(id.clone()), Topic::UserPresence(id)] {
            if !self.subscribe(topic.to_string()).await? {
                return Err(SdkError::UnknownUser { id: user_id });
            }
        }
        Ok(())
    }

    pub async fn unwatch(&self, user_id: String) -> Result<(), SdkError> {
        let id = parse_id(&user_id)?;
        self.send(Request::Unsubscribe(
            Topic::UserInfo(id.clone()).to_string(),
        ))?;
        self.send(Request::Unsubscribe(Topic::UserPresence(id).to_string()))
    }

    /// The users who may see this account (under `contacts` visibility).
    pub async fn set_contacts(&self, user_ids: Vec<String>) -> Result<(), SdkError> {
        for id in &user_ids {
            parse_id(id)?;
        }
        let _: Value = self
            .auth
            .call(
                Method::PUT,
                "/v1/me/contacts",
                Some(&json!({ "userIds": user_ids })),
            )
            .await?;
        Ok(())
    }

    pub async fn set_visibility(&self, visibility: Visibility) -> Result<(), SdkError> {
        let name = match visibility {
            Visibility::Everyone => "everyone",
            Visibility::Contacts => "contacts",
        };
        let _: Value = self
            .auth
            .call(
                Method::PUT,
                "/v1/me/visibility",
                Some(&json!({ "visibility": name })),
            )
            .await?;
        Ok(())
    }

    /// Which of these numbers belong to registered users (rate limited).
    pub async fn discover(&self, phones: Vec<String>) -> Result<Vec<ContactMatch>, SdkError> {
        #[derive(Deserialize)]
        struct Matches {
            matches: Vec<ContactMatch>,
        }
        let m: Matches = self
            .auth
            .call(
                Method::POST,
                "/v1/contacts/discover",
                Some(&json!({ "phones": phones })),
            )
            .await?;
        Ok(m.matches)
    }
}
