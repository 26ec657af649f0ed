//! Profiles: stored, and read back (over HTTP, and by a subscriber of
//! `users/<id>/info`).

use std::collections::HashMap;

use anyhow::Result;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchboard_protocol::payload::Profile;
use switchboard_protocol::Id;

use super::{typed, Store};

fn profile(row: &AnyRow) -> Result<Profile> {
    Ok(Profile {
        id: typed(row.get(0))?,
        nickname: row.get(1),
        photo_url: row.get(2),
        email: row.get(3),
        alt_phone: row.get(4),
        updated_at: row.get(5),
    })
}

const COLUMNS: &str = "user_id, nickname, photo_url, email, alt_phone, updated_at";

impl Store {
    /// Stores a profile unless a newer one is already stored (two updates
    /// racing keep the later).
    pub async fn put_profile(&self, p: &Profile) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO profiles ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE SET nickname = $2, photo_url = $3, email = $4,
                 alt_phone = $5, updated_at = $6
             WHERE profiles.updated_at <= $6"
        ))
        .bind(p.id.as_str())
        .bind(p.nickname.as_deref())
        .bind(p.photo_url.as_deref())
        .bind(p.email.as_deref())
        .bind(p.alt_phone.as_deref())
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_profile(&self, id: &Id) -> Result<Option<Profile>> {
        Ok(self
            .get_profiles(std::slice::from_ref(id))
            .await?
            .remove(id))
    }

    /// The stored profiles of those of `ids` who have one.
    pub async fn get_profiles(&self, ids: &[Id]) -> Result<HashMap<Id, Profile>> {
        let select = format!("SELECT {COLUMNS} FROM profiles WHERE user_id IN");
        let rows = self.rows_in(&select, ids).await?;
        rows.iter()
            .map(|row| profile(row).map(|p| (p.id.clone(), p)))
            .collect()
    }
}
