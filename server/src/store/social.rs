//! Contacts, blocks and visibility: who may see whom.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::Row;
use switchboard_protocol::acl::PrincipalKind;
use switchboard_protocol::Id;

use super::{id_pairs, typed, Store};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Everyone,
    Contacts,
}

impl Visibility {
    /// As stored; anything but `everyone` is the default, `contacts`.
    fn parse(stored: &str) -> Visibility {
        if stored == "everyone" {
            Visibility::Everyone
        } else {
            Visibility::Contacts
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Everyone => "everyone",
            Visibility::Contacts => "contacts",
        }
    }
}

/// What the in-memory graph is built from: everyone's visibility, and
/// `(owner, listed)` pairs of contacts and of blocks.
pub struct GraphRows {
    pub visibility: HashMap<Id, Visibility>,
    pub contacts: Vec<(Id, Id)>,
    pub blocks: Vec<(Id, Id)>,
}

/// Some users' rows of the graph: their accounts, their lists (as owner),
/// and, for robots, their owners as `(robot, owner)`.
pub struct UserEdges {
    pub accounts: HashMap<Id, (PrincipalKind, Visibility)>,
    pub contacts: Vec<(Id, Id)>,
    pub blocks: Vec<(Id, Id)>,
    pub owners: Vec<(Id, Id)>,
}

/// Which list of a user's a statement is about.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Contacts,
    Blocked,
}

impl List {
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            List::Contacts => ("contacts", "contact"),
            List::Blocked => ("blocks", "blocked"),
        }
    }
}

impl Store {
    /// Replaces a user's whole list in one transaction.
    pub async fn replace_list(&self, owner: &Id, list: List, ids: &[Id]) -> Result<()> {
        let (table, column) = list.table_and_column();
        let mut tx = self.begin().await?;
        sqlx::query(&format!("DELETE FROM {table} WHERE owner = $1"))
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?;
        for id in ids {
            sqlx::query(&format!(
                "INSERT INTO {table} (owner, {column}) VALUES ($1, $2)"
            ))
            .bind(owner.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_visibility(&self, user: &Id, v: Visibility) -> Result<()> {
        sqlx::query("UPDATE users SET visibility = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(v.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The kind and visibility of those of `ids` who have an account.
    pub async fn accounts(&self, ids: &[Id]) -> Result<HashMap<Id, (PrincipalKind, Visibility)>> {
        let select = "SELECT id, kind, visibility FROM users WHERE id IN";
        let rows = self.rows_in(select, ids).await?;
        rows.iter()
            .map(|row| {
                let account = (typed(row.get(1))?, Visibility::parse(row.get(2)));
                Ok((typed(row.get(0))?, account))
            })
            .collect()
    }

    /// `users`' rows of the graph, read again after another node changed
    /// them.
    pub async fn edges_of(&self, users: &[Id]) -> Result<UserEdges> {
        let pairs = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<(Id, Id)>> {
            id_pairs(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        };
        let contacts = "SELECT owner, contact FROM contacts WHERE owner IN";
        let blocks = "SELECT owner, blocked FROM blocks WHERE owner IN";
        let owners = "SELECT robot_id, user_id FROM ownership WHERE robot_id IN";
        Ok(UserEdges {
            accounts: self.accounts(users).await?,
            contacts: pairs(self.rows_in(contacts, users).await?)?,
            blocks: pairs(self.rows_in(blocks, users).await?)?,
            owners: pairs(self.rows_in(owners, users).await?)?,
        })
    }

    /// Everyone's visibility, contacts and blocks, to build the in-memory
    /// graph the topic rules consult.
    pub async fn load_graph(&self) -> Result<GraphRows> {
        let visibility = sqlx::query_as::<_, (String, String)>("SELECT id, visibility FROM users")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id, v)| Ok((typed(id)?, Visibility::parse(&v))))
            .collect::<Result<_>>()?;
        let contacts = sqlx::query_as("SELECT owner, contact FROM contacts")
            .fetch_all(&self.pool)
            .await?;
        let blocks = sqlx::query_as("SELECT owner, blocked FROM blocks")
            .fetch_all(&self.pool)
            .await?;
        Ok(GraphRows {
            visibility,
            contacts: id_pairs(contacts)?,
            blocks: id_pairs(blocks)?,
        })
    }
}
