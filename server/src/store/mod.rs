//! The database, through sqlx's `Any` driver so one set of queries and one
//! set of portable migrations serve SQLite (default) and PostgreSQL. Queries
//! use `$n` placeholders, which both accept; a list of keys or rows is one
//! JSON array parameter (`strings_at`, `arrays_at`). Times are milliseconds.

mod accounts;
mod calls;
mod limits;
mod pairing;
mod presence;
mod profiles;
mod robots;
mod social;

pub use accounts::{OtpCheck, RefreshOutcome, SendAllowance, OTP_TTL_MINUTES};
pub use calls::{LockedCalls, Parties, PushToken};
pub use presence::{Change, Merged};
pub use social::{List, Visibility};

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::any::{install_default_drivers, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::AnyPool;
use switchboard_protocol::{Id, Invalid};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
}

impl Store {
    /// Connects (creating a SQLite file if needed) without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            // WAL lets readers work while a write is in progress; the mode is
            // kept in the file, so setting it once on first open suffices.
            // Creating the file here also lets the pool open it read-write.
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            use sqlx::ConnectOptions;
            opts.connect()
                .await
                .with_context(|| format!("opening SQLite database {}", redact(url)))?;
        }
        let pool = AnyPoolOptions::new()
            // In WAL mode NORMAL loses no committed data when the process
            // dies (only on power loss), and spares an fsync per write.
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            // SQLite allows one writer at a time; more connections only queue.
            .max_connections(if sqlite { 4 } else { 16 })
            // A SQLite connection is a file that cannot drop: a ping before
            // each query would only double its round trips to sqlx's
            // worker thread (the largest CPU cost of a connect storm).
            .test_before_acquire(!sqlite)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to database {}", redact(url)))?;
        Ok(Store { pool, sqlite })
    }

    /// A transaction that may write. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), waiting for another writer to finish: one
    /// that read first and wrote later could otherwise fail at once with
    /// "database is locked" when another connection wrote in between.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = if self.sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying migrations")?;
        Ok(())
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The rows `select` (a query ending in `IN`) finds for `ids`.
    async fn rows_in(&self, select: &str, ids: &[Id]) -> Result<Vec<AnyRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{select} (SELECT value FROM {})", self.strings_at(1));
        let ids: Vec<&str> = ids.iter().map(Id::as_str).collect();
        Ok(sqlx::query(&sql)
            .bind(json_list(&ids))
            .fetch_all(&self.pool)
            .await?)
    }

    /// A table of the strings in the JSON array bound at `$n`, one row
    /// each, in a column `value`. A list of any length is then one
    /// statement, kept prepared and bound once: a list of `$n` placeholders
    /// was a statement per length, and SQLite finds each `$n` of a
    /// statement by walking its list of names, in parsing and in binding.
    fn strings_at(&self, n: usize) -> String {
        if self.sqlite {
            format!("json_each(${n})")
        } else {
            format!("json_array_elements_text(${n}::json)")
        }
    }

    /// As `strings_at`, for a JSON array of arrays: a row's items are
    /// `value ->> 0`, `value ->> 1`, ... (text, or NULL for `null`).
    fn arrays_at(&self, n: usize) -> String {
        if self.sqlite {
            format!("json_each(${n})")
        } else {
            format!("json_array_elements(${n}::json)")
        }
    }

    /// Versions of the applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }
}

/// A value read back from the database in its type. A malformed one is an
/// error, never skipped or taken for a default: only this server writes
/// these columns, so it means the data is not what the server thinks.
fn typed<T: FromStr<Err = Invalid>>(stored: String) -> Result<T> {
    stored
        .parse()
        .with_context(|| format!("malformed value {stored:?} in the database"))
}

/// `items` as a JSON array, for `strings_at` or `arrays_at`.
fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("a list of plain values is JSON")
}

/// Rows of two ids, typed as `typed` does.
fn id_pairs(rows: Vec<(String, String)>) -> Result<Vec<(Id, Id)>> {
    rows.into_iter()
        .map(|(a, b)| Ok((typed(a)?, typed(b)?)))
        .collect()
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://sb:hunter2@db:5432/sb"),
            "postgres://sb:***@db:5432/sb"
        );
        assert_eq!(redact("postgres://db/sb"), "postgres://db/sb");
        assert_eq!(redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    /// A migrated SQLite store in a fresh directory.
    pub async fn temp_store() -> Store {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Ids read back are typed: a malformed one is an error where it is
    /// read, never a row skipped.
    #[tokio::test]
    async fn a_malformed_id_in_the_database_is_an_error() {
        use switchboard_protocol::acl::PrincipalKind;
        let store = temp_store().await;
        let user: Id = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        assert!(store.load_graph().await.is_ok());
        for sql in [
            "INSERT INTO users (id, kind, created_at) VALUES ('Not-An-Id', 'robot', 0)",
            "INSERT INTO ownership (robot_id, user_id, paired_at)
             VALUES ('Not-An-Id', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 0)",
        ] {
            sqlx::query(sql).execute(&store.pool).await.unwrap();
        }
        let err = store.load_graph().await.err().expect("an error");
        assert!(format!("{err:#}").contains("\"Not-An-Id\""), "{err:#}");
        assert!(store.load_robots().await.is_err());
        assert!(store.robots_of(&user).await.is_err());
    }

    #[tokio::test]
    async fn migrations_apply_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // Applying twice is a no-op, as at every restart.
        store.migrate().await.unwrap();
        assert_eq!(
            store.applied_migrations().await.unwrap().len(),
            MIGRATOR.iter().count()
        );
        assert!(store.ping().await);
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
