//! `create_namespaces`: the bus creates a missing tenant and namespace through the admin API,
//! for the configured tenant and for the envelope's tenant, against the real broker.

mod common;

use bento_application::{BusError, MessageBus, PublishOptions, SubscriptionSpec};
use bento_domain::Envelope;
use bento_pulsar::PulsarAdmin;
use bento_testkit::Collector;
use common::{PATIENCE, unique};

/// A tenant name no other test uses; removed again by [`remove`].
fn fresh_tenant(what: &str) -> String {
    unique(what)
}

async fn namespaces(admin: &PulsarAdmin, tenant: &str) -> Vec<String> {
    match admin.namespaces(tenant).await {
        Ok(namespaces) => namespaces,
        Err(error) if error.is_not_found() => Vec::new(),
        Err(error) => panic!("listing the namespaces of {tenant}: {error}"),
    }
}

/// Deletes `tenant`, its namespaces and their topics (the dev-env broker refuses forced
/// namespace deletion, so topics go first).
async fn remove(admin: &PulsarAdmin, tenant: &str) {
    for namespace in namespaces(admin, tenant).await {
        let topics = admin
            .topics(&namespace)
            .await
            .unwrap_or_else(|e| panic!("listing the topics of {namespace}: {e}"));
        for topic in topics {
            admin
                .delete_topic(&topic, true)
                .await
                .unwrap_or_else(|e| panic!("deleting {topic}: {e}"));
        }
        admin
            .delete_namespace(&namespace, false)
            .await
            .unwrap_or_else(|e| panic!("deleting {namespace}: {e}"));
    }
    admin
        .delete_tenant(tenant)
        .await
        .unwrap_or_else(|e| panic!("deleting {tenant}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tenants_and_namespaces_are_created_on_first_use() {
    let admin = PulsarAdmin::new(&common::config()).expect("admin client");
    let (configured, from_envelope) = (fresh_tenant("made"), fresh_tenant("enveloped"));
    let mut config = common::config();
    config.tenant = configured.clone();
    config.namespace = "events".into();
    config.tenant_from_envelope = true;
    config.create_namespaces = true;
    let bus = common::bus_with(config).await;
    assert!(namespaces(&admin, &configured).await.is_empty());

    // Subscribing creates the configured tenant and namespace.
    let topic = unique("created");
    let (seen, sub) =
        Collector::subscribe(&bus, SubscriptionSpec::topic(&topic, unique("reader"))).await;
    assert_eq!(
        namespaces(&admin, &configured).await,
        vec![format!("{configured}/events")]
    );
    let envelope = Envelope::new("ns.created", 1, "text/plain", &b"hello"[..]);
    let id = envelope.id;
    bus.publish(envelope, PublishOptions::default().to_topic(&topic))
        .await
        .expect("publish");
    assert_eq!(seen.wait_for(1, PATIENCE).await[0].envelope.id, id);

    // Publishing with the envelope's tenant creates that tenant's namespace too.
    let elsewhere = Envelope::new("ns.created", 1, "text/plain", &b"there"[..])
        .with_tenant(from_envelope.clone());
    bus.publish(elsewhere, PublishOptions::default().to_topic(&topic))
        .await
        .expect("publish into the envelope's tenant");
    assert_eq!(
        namespaces(&admin, &from_envelope).await,
        vec![format!("{from_envelope}/events")]
    );
    let topics = admin
        .topics(&format!("{from_envelope}/events"))
        .await
        .expect("topics");
    assert_eq!(
        topics,
        vec![format!("persistent://{from_envelope}/events/{topic}")]
    );

    sub.shutdown().await.expect("shutdown");
    bus.close().await.expect("close");
    remove(&admin, &configured).await;
    remove(&admin, &from_envelope).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_a_missing_namespace_is_an_error_naming_the_topic() {
    let admin = PulsarAdmin::new(&common::config()).expect("admin client");
    let tenant = fresh_tenant("absent");
    let mut config = common::config();
    config.tenant = tenant.clone();
    config.connect_timeout_ms = 5_000;
    let bus = common::bus_with(config).await;
    let topic = unique("nowhere");
    let envelope = Envelope::new("ns.absent", 1, "text/plain", &b"lost?"[..]);
    let error = bus
        .publish(envelope, PublishOptions::default().to_topic(&topic))
        .await
        .expect_err("publishing into a tenant that does not exist");
    let text = error.to_string();
    assert!(
        matches!(error, BusError::Publish { .. })
            && text.contains(&tenant)
            && text.contains(&topic),
        "{text}"
    );
    assert!(
        namespaces(&admin, &tenant).await.is_empty(),
        "nothing was created"
    );
    bus.close().await.expect("close");
}

/// In a namespace with topic auto-creation off, a subscription whose dead-letter topic does not
/// exist fails when it starts, naming the topic, instead of at its first poison message; once
/// the topic exists it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_is_an_error_at_subscribe() {
    common::share_broker();
    let admin = PulsarAdmin::new(&common::config()).expect("admin client");
    let namespace = format!("public/{}", unique("no-autocreate"));
    admin
        .create_namespace(&namespace)
        .await
        .unwrap_or_else(|e| panic!("creating {namespace}: {e}"));
    let (status, body) = common::admin(
        "POST",
        &format!("/admin/v2/namespaces/{namespace}/autoTopicCreation"),
        Some(r#"{"allowAutoTopicCreation": false}"#.into()),
    )
    .await;
    assert!(
        status < 300,
        "turning topic auto-creation off: {status} {body}"
    );
    let topic = format!("persistent://{namespace}/{}", unique("events"));
    let subscription = unique("sub");
    let dead_letters = format!("persistent://{namespace}/{}", unique("dlq"));
    for existing in [
        topic.clone(),
        bento_pulsar::retry_topic(&topic, &subscription),
    ] {
        admin
            .create_topic(&existing, 0)
            .await
            .unwrap_or_else(|e| panic!("creating {existing}: {e}"));
    }
    let bus = common::bus().await;
    let spec = SubscriptionSpec::topic(&topic, &subscription)
        .dead_letter(bento_application::DeadLetterPolicy::to_topic(&dead_letters));
    let refused = bus
        .subscribe(
            spec.clone(),
            std::sync::Arc::new(Collector::new().handler()),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("subscribed although `{dead_letters}` does not exist"));
    let text = refused.to_string();
    assert!(
        matches!(refused, BusError::Subscribe { .. }) && text.contains(&dead_letters),
        "the error names the dead-letter topic: {text}"
    );

    admin
        .create_topic(&dead_letters, 0)
        .await
        .unwrap_or_else(|e| panic!("creating {dead_letters}: {e}"));
    let sub = bus
        .subscribe(spec, std::sync::Arc::new(Collector::new().handler()))
        .await
        .expect("subscribes once the topic exists");
    sub.shutdown().await.expect("shutdown");
    bus.close().await.expect("close");
    for topic in admin.topics(&namespace).await.unwrap_or_default() {
        let _ = admin.delete_topic(&topic, true).await;
    }
    let _ = admin.delete_namespace(&namespace, true).await;
}
