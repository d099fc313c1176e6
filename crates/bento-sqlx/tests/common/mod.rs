//! Databases for the tests: a fresh SQLite file, or a fresh database on the dev-env's
//! PostgreSQL server (`cargo xtask dev-env up postgres`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bento_application::Bus;
use bento_application::domain::DomainEvent;
use bento_codec::Json;
use bento_memory::MemoryBus;
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

/// The server's URL: `BENTO_TEST_POSTGRES_URL`, else the dev-env default.
pub fn postgres_url() -> String {
    std::env::var("BENTO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://bento@127.0.0.1:5433/bento".to_string())
}

/// A database of its own for one test.
pub struct TestDb {
    /// Where it is.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path: PathBuf = dir.path().join("bento.db");
        Self {
            url: format!("sqlite://{}", path.display()),
            _dir: Some(dir),
        }
    }

    /// A new database on the PostgreSQL server. Panics, saying how to start one, when the
    /// server does not answer: these tests never pass without it.
    pub async fn postgres() -> Self {
        let base = postgres_url();
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {base} does not answer ({e}): start it with `cargo xtask dev-env \
                 up postgres`, or run everything with `cargo xtask test`; set \
                 BENTO_TEST_POSTGRES_URL to use another server"
            )
        });
        let name = format!("bento_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        let (prefix, _) = base.rsplit_once('/').expect("a database in the URL");
        Self {
            url: format!("{prefix}/{name}"),
            _dir: None,
        }
    }
}

/// An event with an ordering key and a number, to check order and completeness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub key: String,
    pub n: u64,
}

impl DomainEvent for Placed {
    const EVENT_TYPE: &'static str = "outbox-test.placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

/// The in-memory bus (a product backend of its own) behind a typed bus.
pub fn memory_bus() -> Bus<Json> {
    Bus::new(Arc::new(MemoryBus::default()), Json)
}

/// Polls `check` until it holds or `patience` runs out; returns whether it held.
pub async fn eventually(patience: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
