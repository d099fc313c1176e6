//! Connecting to the database named in the configuration.

use std::time::Duration;

use sqlx::pool::PoolOptions;

use crate::SqlError;
use crate::database::{Dialect, OutboxDatabase};
use crate::error::redact;

/// How long a caller waits for a free connection before its operation fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool for `url`, typed as `DB` (`sqlx::Any` accepts either dialect), each connection set
/// up for Bento (on SQLite: WAL, synchronous commits, a busy timeout). `key` names the
/// configuration key in errors.
pub(crate) async fn connect<DB: OutboxDatabase>(
    key: &str,
    url: &str,
    max_connections: u32,
) -> Result<(sqlx::Pool<DB>, Dialect), SqlError> {
    let unsupported = || SqlError::UnsupportedUrl {
        key: key.to_string(),
        url: redact(url),
    };
    let dialect = Dialect::of_url(url).ok_or_else(unsupported)?;
    let compiled = match dialect {
        Dialect::Sqlite => cfg!(feature = "sqlite"),
        Dialect::Postgres => cfg!(feature = "postgres"),
    };
    let typed_for_other = match (dialect, DB::NAME) {
        (_, "Any") => false,
        (Dialect::Sqlite, name) => name != "SQLite",
        (Dialect::Postgres, name) => name != "PostgreSQL",
    };
    if !compiled || typed_for_other {
        return Err(unsupported());
    }
    sqlx::any::install_default_drivers();
    let pool = PoolOptions::<DB>::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| DB::setup_connection(conn))
        .connect(&creating_sqlite_files(url, dialect))
        .await
        .map_err(|source| SqlError::Connect {
            url: redact(url),
            source,
        })?;
    Ok((pool, dialect))
}

/// `url`, asking SQLite to create the file when it does not exist yet (an embedded database
/// needs no set-up), unless the URL says otherwise.
fn creating_sqlite_files(url: &str, dialect: Dialect) -> String {
    if dialect != Dialect::Sqlite || url.contains("mode=") || url.contains(":memory:") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_created_unless_the_url_says_otherwise() {
        let sqlite = Dialect::Sqlite;
        assert_eq!(
            creating_sqlite_files("sqlite://a.db", sqlite),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            creating_sqlite_files("sqlite://a.db?cache=shared", sqlite),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            creating_sqlite_files("sqlite://a.db?mode=ro", sqlite),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(
            creating_sqlite_files("postgres://a@b/c", Dialect::Postgres),
            "postgres://a@b/c"
        );
    }
}
