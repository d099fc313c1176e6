//! `PulsarAdmin` against the real broker (`cargo xtask dev-env up pulsar`; admin API at
//! `BENTO_TEST_PULSAR_ADMIN_URL`, default `http://127.0.0.1:8080`). Every test makes its own
//! tenant (or topic) with a unique name and removes it at the end.

mod common;

use std::error::Error;
use std::time::{Duration, Instant};

use bento_pulsar::admin::{
    AdminError, Position, PulsarAdmin, ResetTo, Retention, SchemaCompatibility, SchemaUpload,
};
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, SubType, TokioExecutor};

type TestResult = Result<(), Box<dyn Error>>;

/// The admin client on the test broker; fails the test, saying how to start the broker, if the
/// admin API does not answer.
async fn admin() -> PulsarAdmin {
    common::share_broker();
    let url = common::admin_url();
    let admin = PulsarAdmin::from_url(&url)
        .unwrap_or_else(|e| panic!("BENTO_TEST_PULSAR_ADMIN_URL `{url}` is unusable: {e}"));
    if let Err(error) = admin.clusters().await {
        panic!(
            "the Pulsar admin API at {url} does not answer ({error}). These tests need a real \
             broker: start one with `cargo xtask dev-env up pulsar`, or set \
             BENTO_TEST_PULSAR_ADMIN_URL."
        );
    }
    admin
}

/// A tenant and namespace of this test, removed (with everything in them) by `cleanup`.
async fn scratch(admin: &PulsarAdmin, what: &str) -> Result<(String, String), AdminError> {
    let tenant = common::unique(what);
    admin.create_tenant(&tenant, &[]).await?;
    let namespace = format!("{tenant}/ns");
    admin.create_namespace(&namespace).await?;
    Ok((tenant, namespace))
}

async fn cleanup(admin: &PulsarAdmin, tenant: &str) -> Result<(), AdminError> {
    // The broker may refuse forced namespace deletion: topics go one by one.
    for namespace in admin.namespaces(tenant).await? {
        for topic in admin.topics(&namespace).await? {
            admin.delete_topic(&topic, true).await?;
        }
        admin.delete_namespace(&namespace, false).await?;
    }
    admin.delete_tenant(tenant).await
}

async fn publish(topic: &str, payloads: &[String]) -> Result<(), Box<dyn Error>> {
    let client = common::raw_client().await;
    let mut producer = client.producer().with_topic(topic).build().await?;
    for payload in payloads {
        producer
            .send_non_blocking(payload.as_bytes().to_vec())
            .await?
            .await?;
    }
    producer.close().await?;
    Ok(())
}

async fn consume(
    topic: &str,
    subscription: &str,
    count: usize,
) -> Result<Vec<String>, Box<dyn Error>> {
    let client = common::raw_client().await;
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Latest))
        .build()
        .await?;
    let mut got = Vec::new();
    while got.len() < count {
        let message = tokio::time::timeout(common::PATIENCE, consumer.next())
            .await
            .map_err(|_| {
                format!(
                    "only {} of {count} messages within {:?}",
                    got.len(),
                    common::PATIENCE
                )
            })?
            .ok_or("the consumer ended")??;
        got.push(String::from_utf8(message.payload.data.clone())?);
        consumer.ack(&message).await?;
    }
    consumer.close().await?;
    Ok(got)
}

/// Waits until `subscription`'s backlog on `topic` is `expected` (acknowledgements and cursor
/// moves reach the stats a moment later); returns the last backlog seen.
async fn backlog_becomes(
    admin: &PulsarAdmin,
    topic: &str,
    subscription: &str,
    expected: i64,
) -> Result<i64, AdminError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = admin.topic_stats(topic).await?;
        let backlog = stats
            .subscriptions
            .get(subscription)
            .map_or(-1, |s| s.msg_backlog);
        if backlog == expected || Instant::now() > deadline {
            return Ok(backlog);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tenants_namespaces_topics_and_policies() -> TestResult {
    let admin = admin().await;
    let (tenant, namespace) = scratch(&admin, "admin-tenant").await?;

    assert!(admin.tenants().await?.contains(&tenant));
    let info = admin.tenant(&tenant).await?;
    assert_eq!(
        info.allowed_clusters,
        admin.clusters().await?,
        "all clusters by default"
    );
    assert_eq!(admin.namespaces(&tenant).await?, vec![namespace.clone()]);

    // A second create is refused with 409 and the broker's words.
    let again = admin
        .create_tenant(&tenant, &[])
        .await
        .err()
        .ok_or("creating the tenant twice succeeded")?;
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(again.message().contains("already exist"), "{again}");
    let shown = again.to_string();
    assert!(
        shown.contains(&format!("PUT /admin/v2/tenants/{tenant}")),
        "{shown}"
    );
    assert!(shown.contains("409"), "{shown}");

    // Policies: not set on a new namespace, then set and read back.
    let fresh = admin.namespace_policies(&namespace).await?;
    assert_eq!(fresh.retention, None);
    assert_eq!(fresh.message_ttl_seconds, None);
    admin.set_deduplication(&namespace, true).await?;
    let retention = Retention {
        time_minutes: 60,
        size_mb: 100,
    };
    admin.set_retention(&namespace, retention).await?;
    admin.set_message_ttl(&namespace, 3600).await?;
    admin
        .set_schema_compatibility(&namespace, &SchemaCompatibility::BackwardTransitive)
        .await?;
    let policies = admin.namespace_policies(&namespace).await?;
    assert_eq!(policies.deduplication, Some(true));
    assert_eq!(policies.retention, Some(retention));
    assert_eq!(policies.message_ttl_seconds, Some(3600));
    assert_eq!(
        policies.schema_compatibility,
        SchemaCompatibility::BackwardTransitive
    );
    admin.set_deduplication(&namespace, false).await?;
    assert_eq!(admin.deduplication(&namespace).await?, Some(false));

    // Topics: plain and partitioned; partitions are not listed on their own.
    let plain = format!("persistent://{namespace}/plain");
    let partitioned = format!("persistent://{namespace}/parted");
    admin.create_topic(&plain, 0).await?;
    admin
        .create_topic(&format!("{namespace}/parted"), 3)
        .await?;
    assert_eq!(
        admin.topics(&namespace).await?,
        vec![partitioned.clone(), plain.clone()]
    );
    assert_eq!(
        admin.partitioned_topics(&namespace).await?,
        vec![partitioned.clone()]
    );
    assert_eq!(admin.partitions(&partitioned).await?, 3);
    assert_eq!(admin.partitions(&plain).await?, 0);
    let twice = admin.create_topic(&plain, 0).await.err();
    assert_eq!(
        twice.as_ref().and_then(AdminError::status),
        Some(409),
        "{twice:?}"
    );
    assert_eq!(admin.topic_stats(&partitioned).await?.partitions, 3);

    // A non-empty namespace or tenant cannot go: 409 with the broker's reason.
    let busy = admin.delete_namespace(&namespace, false).await.err();
    assert_eq!(
        busy.as_ref().and_then(AdminError::status),
        Some(409),
        "{busy:?}"
    );
    let busy = admin.delete_tenant(&tenant).await.err();
    assert!(
        busy.as_ref()
            .is_some_and(|e| e.is_conflict() && e.message().contains("namespaces")),
        "{busy:?}"
    );

    admin.delete_topic(&partitioned, false).await?;
    admin.delete_topic(&plain, false).await?;
    assert!(admin.topics(&namespace).await?.is_empty());
    let gone = admin.delete_topic(&plain, false).await.err();
    assert!(
        gone.as_ref().is_some_and(AdminError::is_not_found),
        "{gone:?}"
    );
    admin.delete_namespace(&namespace, false).await?;
    admin.delete_tenant(&tenant).await?;
    assert!(!admin.tenants().await?.contains(&tenant));
    Ok(())
}

#[tokio::test]
async fn stats_show_the_backlog_and_a_reset_replays() -> TestResult {
    let admin = admin().await;
    let (tenant, namespace) = scratch(&admin, "admin-reset").await?;
    // Acknowledged messages must be kept for a reset to bring them back.
    admin
        .set_retention(
            &namespace,
            Retention {
                time_minutes: 60,
                size_mb: 64,
            },
        )
        .await?;
    let topic = format!("persistent://{namespace}/orders");
    admin.create_topic(&topic, 0).await?;
    admin
        .create_subscription(&topic, "audit", Position::Latest)
        .await?;

    let payloads: Vec<String> = (0..5).map(|i| format!("order-{i}")).collect();
    publish(&topic, &payloads).await?;
    let stats = admin.topic_stats(&topic).await?;
    assert_eq!(stats.subscriptions["audit"].msg_backlog, 5, "{stats:?}");
    assert!(stats.msg_in_counter >= 5, "{stats:?}");
    assert!(stats.storage_size > 0, "{stats:?}");

    assert_eq!(consume(&topic, "audit", 5).await?, payloads);
    assert_eq!(backlog_becomes(&admin, &topic, "audit", 0).await?, 0);

    // To a time after the last message: nothing comes back.
    admin
        .reset_cursor(
            &topic,
            "audit",
            ResetTo::Time(chrono::Utc::now() + chrono::Duration::seconds(5)),
        )
        .await?;
    assert_eq!(backlog_becomes(&admin, &topic, "audit", 0).await?, 0);
    // To the earliest: the same five again, in order.
    admin
        .reset_cursor(&topic, "audit", ResetTo::Earliest)
        .await?;
    assert_eq!(backlog_becomes(&admin, &topic, "audit", 5).await?, 5);
    assert_eq!(consume(&topic, "audit", 5).await?, payloads);

    // With the consumer still connected: the broker disconnects it, it reconnects, and the
    // same messages come again.
    let client = common::raw_client().await;
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription("audit")
        .with_subscription_type(SubType::Exclusive)
        .build()
        .await?;
    admin
        .reset_cursor(&topic, "audit", ResetTo::Earliest)
        .await?;
    let mut again = Vec::new();
    while again.len() < payloads.len() {
        let message = tokio::time::timeout(common::PATIENCE, consumer.next())
            .await
            .map_err(|_| format!("after a reset with a live consumer, only {again:?}"))?
            .ok_or("the consumer ended")??;
        again.push(String::from_utf8(message.payload.data.clone())?);
        consumer.ack(&message).await?;
    }
    assert_eq!(again, payloads);
    consumer.close().await?;

    // A subscription that does not exist: 404 naming it.
    let missing = admin
        .reset_cursor(&topic, "nobody", ResetTo::Earliest)
        .await
        .err()
        .ok_or("resetting a missing subscription succeeded")?;
    assert_eq!(missing.status(), Some(404), "{missing}");
    assert!(missing.message().contains("nobody"), "{missing}");

    cleanup(&admin, &tenant).await?;
    Ok(())
}

#[tokio::test]
async fn subscriptions_start_where_asked_and_skip() -> TestResult {
    let admin = admin().await;
    let (tenant, namespace) = scratch(&admin, "admin-skip").await?;
    let topic = format!("{namespace}/events");
    admin.create_topic(&topic, 0).await?;
    let payloads: Vec<String> = (0..5).map(|i| format!("event-{i}")).collect();
    // Published before the subscriptions exist: only one created at the earliest sees them.
    publish(&format!("persistent://{topic}"), &payloads).await?;

    admin
        .create_subscription(&topic, "from-start", Position::Earliest)
        .await?;
    admin
        .create_subscription(&topic, "from-now", Position::Latest)
        .await?;
    assert_eq!(
        admin.subscriptions(&topic).await?,
        vec!["from-now".to_string(), "from-start".to_string()]
    );
    let stats = admin.topic_stats(&topic).await?;
    assert_eq!(stats.subscriptions["from-start"].msg_backlog, 5);
    assert_eq!(stats.subscriptions["from-now"].msg_backlog, 0);

    admin.skip(&topic, "from-start", 2).await?;
    assert_eq!(backlog_becomes(&admin, &topic, "from-start", 3).await?, 3);
    assert_eq!(
        consume(&format!("persistent://{topic}"), "from-start", 1).await?,
        vec!["event-2"]
    );
    admin.skip_all(&topic, "from-start").await?;
    assert_eq!(backlog_becomes(&admin, &topic, "from-start", 0).await?, 0);

    let twice = admin
        .create_subscription(&topic, "from-now", Position::Latest)
        .await
        .err();
    assert!(
        twice.as_ref().is_some_and(AdminError::is_conflict),
        "{twice:?}"
    );
    admin.delete_subscription(&topic, "from-now", false).await?;
    assert_eq!(
        admin.subscriptions(&topic).await?,
        vec!["from-start".to_string()]
    );
    let gone = admin
        .delete_subscription(&topic, "from-now", false)
        .await
        .err();
    assert!(
        gone.as_ref().is_some_and(AdminError::is_not_found),
        "{gone:?}"
    );

    cleanup(&admin, &tenant).await?;
    Ok(())
}

#[tokio::test]
async fn schemas_and_their_errors() -> TestResult {
    let admin = admin().await;
    let (tenant, namespace) = scratch(&admin, "admin-schema").await?;
    let topic = format!("persistent://{namespace}/users");
    admin.create_topic(&topic, 0).await?;

    let error = admin
        .schema(&topic)
        .await
        .err()
        .ok_or("a topic without a schema returned one")?;
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(error.message(), "Schema not found");
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("GET /admin/v2/schemas/{namespace}/users/schema"))
            && shown.contains("HTTP 404: Schema not found"),
        "{shown}"
    );
    assert!(admin.schema_versions(&topic).await?.is_empty());

    let definition =
        |fields: &str| format!(r#"{{"type":"record","name":"User","fields":[{fields}]}}"#);
    let upload = |fields: &str| SchemaUpload {
        kind: "JSON".into(),
        schema: definition(fields),
        properties: [("owner".to_string(), "users".to_string())].into(),
    };
    admin
        .upload_schema(&topic, &upload(r#"{"name":"id","type":"string"}"#))
        .await?;
    admin
        .upload_schema(
            &topic,
            &upload(r#"{"name":"id","type":"string"},{"name":"email","type":["null","string"],"default":null}"#),
        )
        .await?;
    let latest = admin.schema(&topic).await?;
    assert_eq!((latest.version, latest.kind.as_str()), (1, "JSON"));
    assert!(latest.data.contains("email"), "{latest:?}");
    let versions = admin.schema_versions(&topic).await?;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(
        versions[0].properties.get("owner").map(String::as_str),
        Some("users")
    );
    let first = admin.schema_version(&topic, 0).await?;
    assert!(!first.data.contains("email"), "{first:?}");
    let missing = admin.schema_version(&topic, 7).await.err();
    assert!(
        missing.as_ref().is_some_and(AdminError::is_not_found),
        "{missing:?}"
    );

    cleanup(&admin, &tenant).await?;
    Ok(())
}

#[tokio::test]
async fn missing_things_and_an_unreachable_api_are_reported_clearly() -> TestResult {
    let admin = admin().await;
    let topic = format!(
        "persistent://public/default/{}",
        common::unique("never-created")
    );
    let error = admin
        .topic_stats(&topic)
        .await
        .err()
        .ok_or("stats of a missing topic")?;
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(error.message().contains("not found"), "{error}");

    let error = admin
        .namespaces("no-such-tenant-for-bento")
        .await
        .err()
        .ok_or("namespaces of a missing tenant")?;
    assert_eq!(error.status(), Some(404), "{error}");

    // Nothing listens on port 1: a connection error naming the URL, fast.
    let nowhere = PulsarAdmin::from_url("http://127.0.0.1:1")?;
    let started = Instant::now();
    let error = nowhere.tenants().await.err().ok_or("port 1 answered")?;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(error.status(), None);
    let shown = error.to_string();
    assert!(
        shown.contains("http://127.0.0.1:1/admin/v2/tenants") && shown.contains("GET"),
        "{shown}"
    );
    Ok(())
}
