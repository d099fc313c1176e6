//! What can go wrong between Bento and its database.

/// An outbox or inbox operation that failed. Each variant names what Bento was doing, and
/// keeps the database's own error as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The URL names no database Bento supports (or one whose cargo feature is off).
    #[error(
        "`{key}` = `{url}` names no supported database: use `sqlite://path/to/file.db` \
         (feature `sqlite`) or `postgres://user@host:port/database` (feature `postgres`)"
    )]
    UnsupportedUrl {
        /// The configuration key the URL came from.
        key: String,
        /// The URL, without its password.
        url: String,
    },
    /// Connecting failed.
    #[error("connecting to `{url}` failed: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Bento's tables could not be created or brought up to date.
    #[error("applying Bento's migrations (table `_bento_migrations`) failed: {source}")]
    Migrate {
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// Bento's tables are missing: migrations were not applied and `migrate` is off.
    #[error(
        "Bento's table `{table}` does not exist: run the migrations (`migrate = true`, \
         or `Outbox::migrate`) before using it: {source}"
    )]
    MissingTable {
        /// The table that was looked for.
        table: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("{operation} failed: {source}")]
    Database {
        /// What Bento was doing, e.g. "inserting 3 outbox rows".
        operation: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A stored row could not be turned back into an envelope.
    #[error("outbox row {seq} is unreadable: {reason}")]
    CorruptRow {
        /// The row.
        seq: i64,
        /// What is wrong with it.
        reason: String,
    },
}

impl SqlError {
    pub(crate) fn database(operation: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let operation = operation.into();
        move |source| Self::Database { operation, source }
    }
}

/// `url` with its password replaced, fit for an error message or a log line.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact("postgres://app@db/orders"),
            "postgres://app@db/orders"
        );
        assert_eq!(redact("sqlite://orders.db"), "sqlite://orders.db");
    }
}
