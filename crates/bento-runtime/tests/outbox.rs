//! `[outbox]` and `[inbox]` from configuration, on the in-memory bus and a SQLite file.

#![cfg(feature = "sqlite")]

use std::time::Duration;

use bento_runtime::prelude::*;
use bento_runtime::sqlx::InboxTransaction;
use bento_runtime::{Config, InboxConfig, OutboxConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Placed {
    id: String,
}

impl DomainEvent for Placed {
    const EVENT_TYPE: &'static str = "runtime-outbox.placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

async fn handled(bento: &Bento) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM handled")
        .fetch_one(bento.inbox().expect("an inbox").pool())
        .await
        .expect("counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_outbox_and_inbox_carry_an_event_from_commit_to_one_effect()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.outbox = Some(OutboxConfig {
        database_url: format!("sqlite://{}", dir.path().join("service.db").display()),
        poll_interval_ms: 100,
        ..OutboxConfig::default()
    });
    config.inbox = Some(InboxConfig::default());
    let bento = Bento::from_config(config).await?;
    let outbox = bento.outbox()?;
    sqlx::query("CREATE TABLE handled (id TEXT NOT NULL)")
        .execute(outbox.pool())
        .await?;

    let handle = async |event: Placed, ctx: Context| -> Result<(), HandlerError> {
        let transaction = InboxTransaction::<sqlx::Any>::of(&ctx)?;
        let mut conn = transaction.lock().await?;
        sqlx::query("INSERT INTO handled (id) VALUES ($1)")
            .bind(event.id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    };
    let _subscription = bento
        .bus()
        .subscribe_with(
            SubscriptionSpec::named("record").layer(bento.inbox()?.layer()),
            handle,
        )
        .await?;

    let mut work = outbox.begin().await?;
    work.record(Placed { id: "o-1".into() });
    let ids = work.commit().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handled(&bento).await < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handled(&bento).await, 1);
    assert!(
        bento
            .inbox()?
            .contains("record", &ids[0].to_string())
            .await?
    );
    // The relay counts a row after marking it published, which may come after the handler
    // already ran: wait for the count rather than read it at once (a loaded machine).
    while bento.relay_stats().map(|s| s.published) != Some(1)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bento.relay_stats().map(|s| s.published), Some(1));
    let metrics = bento.metrics().ok_or("metrics are on by default")?;
    let expected = [
        "bento_outbox_published_total 1",
        "bento_outbox_depth 0",
        "bento_outbox_oldest_age_seconds 0",
        "bento_outbox_relay_leader 1",
        "bento_outbox_publish_failures_total 0",
    ];
    // Wait for every line, not the first alone: the metrics task reads the depth before the
    // relay's count, so one refresh can show the count of 1 with a depth of 1 still.
    let mut text = String::new();
    while tokio::time::Instant::now() < deadline + Duration::from_secs(5) {
        text = metrics.encode()?;
        if expected.iter().all(|line| text.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in expected {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    assert!(text.contains("bento_outbox_relay_lag_seconds "), "{text}");
    bento.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_inbox_without_a_database_names_the_key() {
    let mut config = Config::default();
    config.inbox = Some(InboxConfig::default());
    let error = Bento::from_config(config)
        .await
        .err()
        .map(|e| e.to_string());
    let error = error.unwrap_or_default();
    assert!(error.contains("inbox.database_url"), "{error}");
}

#[tokio::test]
async fn a_bad_database_url_names_the_key() {
    let mut config = Config::default();
    config.outbox = Some(OutboxConfig {
        database_url: "orders.db".into(),
        ..OutboxConfig::default()
    });
    let error = Bento::from_config(config)
        .await
        .err()
        .map(|e| e.to_string());
    let error = error.unwrap_or_default();
    assert!(error.contains("outbox.database_url"), "{error}");
}
