//! Profiles, set over HTTP or published over MQTT: rate limited per user,
//! checked by the protocol's rules, stored, and published retained.

use std::sync::Arc;

use switchboard_protocol::payload::{Profile, MAX_PAYLOAD_BYTES};
use switchboard_protocol::profile::{parse_profile, validate_profile, ProfileInput};
use switchboard_protocol::{ErrorCode, Id, Topic};

use super::Edges;
use crate::batched::Batched;
use crate::limits::PROFILE_CHANGES_PER_MINUTE;
use crate::refused::Refused;

pub struct ProfileService {
    /// Stored profiles, read together for subscribers asking at once.
    stored: Batched<Id, Profile>,
    edges: Edges,
}

impl ProfileService {
    pub fn new(edges: Edges) -> Arc<Self> {
        let stored = Batched::new(edges.store.clone(), |store, ids| async move {
            store.get_profiles(&ids).await
        });
        Arc::new(ProfileService { stored, edges })
    }

    /// Spends one of `owner`'s profile changes this minute, counted over
    /// every node.
    async fn admit(&self, owner: &Id) -> Result<(), Refused> {
        let key = format!("profile:{owner}");
        let now = self.edges.now_ms();
        let spent = (self
            .edges
            .store
            .spend(&key, now, PROFILE_CHANGES_PER_MINUTE)
            .await)
            .map_err(|e| Refused::internal("counting profile changes", e))?;
        match spent {
            true => Ok(()),
            false => Err(Refused::new(
                ErrorCode::RateLimited,
                "too many profile changes; try again in a minute",
            )),
        }
    }

    /// `owner`'s stored profile, if it set one.
    pub async fn current(&self, owner: &Id) -> anyhow::Result<Option<Profile>> {
        self.stored.get(owner.clone()).await
    }

    /// A profile its owner published on `users/<me>/info`: stored in its
    /// canonical form (normalized, stamped with the server's time), which
    /// the broker sends on, retained, in place of what was published.
    pub async fn published(&self, owner: &Id, payload: &[u8]) -> Result<Profile, Refused> {
        self.admit(owner).await?;
        let profile = parse_profile(payload, owner, self.edges.now_ms())?;
        self.edges
            .store
            .put_profile(&profile)
            .await
            .map_err(|e| Refused::internal("storing a profile published over MQTT", e))?;
        Ok(profile)
    }

    /// A profile set through HTTP: stored, then published retained.
    pub async fn set(&self, owner: &Id, input: ProfileInput) -> Result<Profile, Refused> {
        self.admit(owner).await?;
        let profile = validate_profile(input, owner, self.edges.now_ms())?;
        let payload = serde_json::to_vec(&profile).expect("profile serializes");
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Refused::new(
                ErrorCode::PayloadTooLarge,
                "profile larger than 4 KiB",
            ));
        }
        let store = &self.edges.store;
        store
            .put_profile(&profile)
            .await
            .map_err(|e| Refused::internal("storing a profile", e))?;
        self.edges
            .publish
            .publish(&Topic::UserInfo(owner.clone()), payload, true)
            .await
            .map_err(|e| Refused::internal("publishing a profile", e))?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;
    use crate::services::test_edges;
    use switchboard_protocol::acl::PrincipalKind;

    const USER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// The service, and a registered user to own profiles.
    async fn service(edges: Edges) -> (Arc<ProfileService>, Id) {
        let owner: Id = USER.parse().unwrap();
        edges
            .store
            .ensure_user(&owner, PrincipalKind::User)
            .await
            .unwrap();
        (ProfileService::new(edges), owner)
    }

    #[tokio::test]
    async fn a_published_profile_is_stored_as_the_server_stamps_it() {
        let (edges, clock, mut sent) = test_edges().await;
        let store = edges.store.clone();
        let (profiles, owner) = service(edges).await;
        let sent_at = r#"{"nickname":"  Ala ","updatedAt":1}"#;
        let profile = profiles
            .published(&owner, sent_at.as_bytes())
            .await
            .unwrap();
        assert_eq!(profile.nickname.as_deref(), Some("Ala"));
        assert_eq!(profile.updated_at, clock.now_ms(), "the server's time");
        assert_eq!(store.get_profile(&owner).await.unwrap(), Some(profile));
        assert!(
            sent.try_recv().is_err(),
            "the broker sends it on, not the service"
        );
        let bad = profiles
            .published(&owner, br#"{"nickname":""}"#)
            .await
            .map(|_| ());
        assert_eq!(bad, Ok(()), "an empty nickname clears it");
        let refused = profiles
            .published(&owner, br#"{"email":"nope"}"#)
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        assert!(
            refused.message.starts_with("email must be"),
            "{}",
            refused.message
        );
    }

    #[tokio::test]
    async fn a_profile_set_over_http_is_stored_then_published_retained() {
        let (edges, _clock, mut sent) = test_edges().await;
        let (profiles, owner) = service(edges).await;
        let input = ProfileInput {
            nickname: Some("Ola".into()),
            ..ProfileInput::default()
        };
        let profile = profiles.set(&owner, input).await.unwrap();
        let (topic, payload, retain) = sent.recv().await.unwrap();
        assert_eq!((topic, retain), (Topic::UserInfo(owner), true));
        assert_eq!(
            serde_json::from_slice::<Profile>(&payload).unwrap(),
            profile
        );
    }
}
