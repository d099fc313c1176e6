//! The databases Bento's tables live in, and every statement it runs on them.
//!
//! The statements are written once, in [`impl_database!`], and compiled for each sqlx driver:
//! SQLite, PostgreSQL, and sqlx's `Any` (which picks one of the two from the URL at run time,
//! so that a service switches database by configuration). Where the two dialects differ the
//! statement asks [`Dialect`].

use futures::future::BoxFuture;

use crate::row::{NewRow, PendingRow};

/// Rows per multi-row `INSERT`: far below both databases' limits on bound parameters.
const INSERT_CHUNK: usize = 500;

/// The advisory-lock class of the per-ordering-key locks a committing unit of work takes on
/// PostgreSQL ("bnto"); the relay's own lock uses [`RELAY_LOCK_CLASS`], so that the two can
/// never meet.
const KEY_LOCK_CLASS: i32 = 1_651_405_935;
/// The advisory-lock class of the relay's leadership lock on PostgreSQL ("bnrl").
pub(crate) const RELAY_LOCK_CLASS: i32 = 1_651_405_420;

/// The SQL dialect behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite: one writer at a time, so commit order is `seq` order by construction.
    Sqlite,
    /// PostgreSQL: concurrent writers; per ordering key, advisory locks make commit order
    /// `seq` order.
    Postgres,
}

impl Dialect {
    /// The dialect a database URL names, if Bento supports it.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// The database's own name: "SQLite" or "PostgreSQL".
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }

    fn of_backend_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("PostgreSQL") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// A sqlx driver Bento's outbox and inbox run on. Implemented for `sqlx::Sqlite`,
/// `sqlx::Postgres` and `sqlx::Any` (behind the features of the same names); the methods are
/// Bento's own statements and not meant to be called from outside.
pub trait OutboxDatabase: sqlx::Database + sealed::Sealed {
    #[doc(hidden)]
    fn dialect(conn: &Self::Connection) -> Dialect;

    #[doc(hidden)]
    fn setup_connection(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    #[doc(hidden)]
    fn migrate(pool: &sqlx::Pool<Self>) -> BoxFuture<'_, Result<(), sqlx::migrate::MigrateError>>;

    /// `notify`: wake relays in other processes at commit (PostgreSQL's `NOTIFY`).
    #[doc(hidden)]
    fn insert_rows<'c>(
        conn: &'c mut Self::Connection,
        rows: &'c [NewRow],
        notify: bool,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;

    #[doc(hidden)]
    fn fetch_pending(
        conn: &mut Self::Connection,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<PendingRow>, sqlx::Error>>;

    #[doc(hidden)]
    fn mark_published<'c>(
        conn: &'c mut Self::Connection,
        seqs: &'c [i64],
        at: i64,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    #[doc(hidden)]
    fn delete_published_before(
        conn: &mut Self::Connection,
        cutoff: i64,
    ) -> BoxFuture<'_, Result<u64, sqlx::Error>>;

    #[doc(hidden)]
    fn pending_stats(
        conn: &mut Self::Connection,
    ) -> BoxFuture<'_, Result<(i64, Option<i64>), sqlx::Error>>;

    #[doc(hidden)]
    fn try_relay_lock(conn: &mut Self::Connection) -> BoxFuture<'_, Result<bool, sqlx::Error>>;

    #[doc(hidden)]
    fn try_lease<'c>(
        conn: &'c mut Self::Connection,
        name: &'c str,
        holder: &'c str,
        now: i64,
        ttl_ms: i64,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    #[doc(hidden)]
    fn release_lease<'c>(
        conn: &'c mut Self::Connection,
        name: &'c str,
        holder: &'c str,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;

    #[doc(hidden)]
    fn claim_message<'c>(
        conn: &'c mut Self::Connection,
        subscription: &'c str,
        message_id: &'c str,
        now: i64,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    #[doc(hidden)]
    fn delete_handled_before(
        conn: &mut Self::Connection,
        cutoff: i64,
    ) -> BoxFuture<'_, Result<u64, sqlx::Error>>;

    #[doc(hidden)]
    fn ping(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>>;
}

mod sealed {
    pub trait Sealed {}
}

/// Bento's migrations for `dialect`, recorded in `_bento_migrations` so that they never mix
/// with the service's own sqlx migrations in `_sqlx_migrations`.
fn migrator(dialect: Dialect) -> sqlx::migrate::Migrator {
    let mut migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator.dangerous_set_table_name("_bento_migrations");
    migrator
}

/// `$first, $first+1, ...`: numbered placeholders, which both SQLite and PostgreSQL read (and
/// which sqlx's `Any` passes through unchanged, unlike its query builder's `?`).
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A multi-row insert of `rows` outbox rows (six values each), built from numbers only.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(row * 6 + 1, 6)))
        .collect();
    format!(
        "INSERT INTO bento_outbox \
         (message_id, event_type, ordering_key, headers, payload, created_at) VALUES {}",
        values.join(", ")
    )
}

/// Marks `rows` rows published: `$1` is the time, the rest their `seq` values.
fn mark_sql(rows: usize) -> String {
    format!(
        "UPDATE bento_outbox SET published_at = $1 WHERE seq IN ({})",
        placeholders(2, rows)
    )
}

macro_rules! impl_database {
    ($db:ty, $dialect:expr) => {
        impl sealed::Sealed for $db {}

        impl OutboxDatabase for $db {
            fn dialect(conn: &Self::Connection) -> Dialect {
                let dialect: fn(&Self::Connection) -> Dialect = $dialect;
                dialect(conn)
            }

            fn setup_connection(
                conn: &mut Self::Connection,
            ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    if Self::dialect(conn) == Dialect::Sqlite {
                        // WAL lets the relay read while a unit of work writes; `FULL` makes a
                        // commit durable before it returns (a committed event is never lost);
                        // writers queue for the single write lock instead of failing at once.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 30000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            }

            fn migrate(
                pool: &sqlx::Pool<Self>,
            ) -> BoxFuture<'_, Result<(), sqlx::migrate::MigrateError>> {
                Box::pin(async move {
                    let dialect = {
                        let conn = pool.acquire().await?;
                        Self::dialect(&conn)
                    };
                    migrator(dialect).run(pool).await
                })
            }

            fn insert_rows<'c>(
                conn: &'c mut Self::Connection,
                rows: &'c [NewRow],
                notify: bool,
            ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    if Self::dialect(conn) == Dialect::Postgres {
                        // Per ordering key, a unit of work takes its rows' `seq` values only
                        // once every earlier unit of work with that key has committed, so
                        // `seq` order is commit order and no later row becomes visible before
                        // an earlier one. Locks are taken in a fixed order (no deadlock) and
                        // last, just before the commit, so they are held for microseconds.
                        let mut keys: Vec<&str> = rows
                            .iter()
                            .filter_map(|r| r.ordering_key.as_deref())
                            .collect();
                        keys.sort_unstable();
                        keys.dedup();
                        for key in keys {
                            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                                .bind(KEY_LOCK_CLASS)
                                .bind(key.to_string())
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    for chunk in rows.chunks(INSERT_CHUNK) {
                        let sql = insert_sql(chunk.len());
                        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                        for row in chunk {
                            insert = insert
                                .bind(row.message_id.clone())
                                .bind(row.event_type.clone())
                                .bind(row.ordering_key.clone())
                                .bind(row.headers.clone())
                                .bind(row.payload.clone())
                                .bind(row.created_at);
                        }
                        insert.execute(&mut *conn).await?;
                    }
                    if notify && Self::dialect(conn) == Dialect::Postgres {
                        // Delivered at commit, to relays in every process.
                        sqlx::query("SELECT pg_notify('bento_outbox', '')")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            }

            fn fetch_pending(
                conn: &mut Self::Connection,
                limit: i64,
            ) -> BoxFuture<'_, Result<Vec<PendingRow>, sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let rows = sqlx::query(
                        "SELECT seq, headers, payload, created_at FROM bento_outbox \
                         WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                    )
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(PendingRow {
                                seq: row.try_get("seq")?,
                                headers: row.try_get("headers")?,
                                payload: row.try_get("payload")?,
                                created_at: row.try_get("created_at")?,
                            })
                        })
                        .collect()
                })
            }

            fn mark_published<'c>(
                conn: &'c mut Self::Connection,
                seqs: &'c [i64],
                at: i64,
            ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let mut marked = 0;
                    // Exactly the rows published: a row that became visible meanwhile with a
                    // `seq` inside this range must stay pending.
                    for chunk in seqs.chunks(INSERT_CHUNK) {
                        let mut update = sqlx::query(sqlx::AssertSqlSafe(mark_sql(chunk.len())))
                            .persistent(false);
                        update = update.bind(at);
                        for seq in chunk {
                            update = update.bind(*seq);
                        }
                        marked += update.execute(&mut *conn).await?.rows_affected();
                    }
                    Ok(marked)
                })
            }

            fn delete_published_before(
                conn: &mut Self::Connection,
                cutoff: i64,
            ) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM bento_outbox \
                         WHERE published_at > 0 AND published_at < $1",
                    )
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            }

            fn pending_stats(
                conn: &mut Self::Connection,
            ) -> BoxFuture<'_, Result<(i64, Option<i64>), sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest \
                         FROM bento_outbox WHERE published_at IS NULL",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok((row.try_get("depth")?, row.try_get("oldest")?))
                })
            }

            fn try_relay_lock(
                conn: &mut Self::Connection,
            ) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let row = sqlx::query(
                        "SELECT pg_try_advisory_lock($1, hashtext(current_schema())) AS locked",
                    )
                    .bind(RELAY_LOCK_CLASS)
                    .fetch_one(&mut *conn)
                    .await?;
                    row.try_get("locked")
                })
            }

            fn try_lease<'c>(
                conn: &'c mut Self::Connection,
                name: &'c str,
                holder: &'c str,
                now: i64,
                ttl_ms: i64,
            ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query(
                        "INSERT INTO bento_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE \
                         SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE bento_leases.holder = excluded.holder \
                            OR bento_leases.expires_at < $4",
                    )
                    .bind(name.to_string())
                    .bind(holder.to_string())
                    .bind(now + ttl_ms)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn release_lease<'c>(
                conn: &'c mut Self::Connection,
                name: &'c str,
                holder: &'c str,
            ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query("DELETE FROM bento_leases WHERE name = $1 AND holder = $2")
                        .bind(name.to_string())
                        .bind(holder.to_string())
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }

            fn claim_message<'c>(
                conn: &'c mut Self::Connection,
                subscription: &'c str,
                message_id: &'c str,
                now: i64,
            ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query(
                        "INSERT INTO bento_inbox (subscription, message_id, handled_at) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(subscription.to_string())
                    .bind(message_id.to_string())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn delete_handled_before(
                conn: &mut Self::Connection,
                cutoff: i64,
            ) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query("DELETE FROM bento_inbox WHERE handled_at < $1")
                        .bind(cutoff)
                        .execute(&mut *conn)
                        .await?;
                    Ok(done.rows_affected())
                })
            }

            fn ping(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query("SELECT 1").execute(&mut *conn).await?;
                    Ok(())
                })
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl_database!(sqlx::Sqlite, |_| Dialect::Sqlite);
#[cfg(feature = "postgres")]
impl_database!(sqlx::Postgres, |_| Dialect::Postgres);
impl_database!(sqlx::Any, |conn| Dialect::of_backend_name(
    conn.backend_name()
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_placeholders() {
        assert!(
            insert_sql(2).ends_with("VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)")
        );
        assert_eq!(
            mark_sql(3),
            "UPDATE bento_outbox SET published_at = $1 WHERE seq IN ($2, $3, $4)"
        );
    }

    #[test]
    fn urls_name_their_dialect() {
        assert_eq!(Dialect::of_url("sqlite://orders.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("postgres://a@b/c"), Some(Dialect::Postgres));
        assert_eq!(
            Dialect::of_url("postgresql://a@b/c"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::of_url("mysql://a@b/c"), None);
        assert_eq!(Dialect::of_url("orders.db"), None);
    }
}
