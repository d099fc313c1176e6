//! Behaviour of the in-memory bus beyond the conformance suite: subscription kinds, backlog,
//! retention, idempotent handling and request/reply.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bento_application::{
    Bus, BusError, Context, HandlerError, Idempotent, Inbox, MessageBus, PublishOptions, Requester,
    SubscriptionKind, SubscriptionSpec,
};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_memory::{MemoryBus, MemoryConfig};
use bento_testkit::Collector;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    key: String,
    n: u32,
}

impl DomainEvent for Noted {
    const EVENT_TYPE: &'static str = "memory.noted";
    const AGGREGATE_TYPE: &'static str = "note";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

const PATIENCE: Duration = Duration::from_secs(5);

fn bus() -> (MemoryBus, Bus<Json>) {
    let memory = MemoryBus::new(MemoryConfig {
        retain_per_topic: 100,
        ..MemoryConfig::default()
    });
    let bus = Bus::new(Arc::new(memory.clone()), Json);
    (memory, bus)
}

/// These tests run several consumers of one subscription on purpose: they compete.
fn spec(name: &str, kind: SubscriptionKind) -> SubscriptionSpec {
    SubscriptionSpec::event_type(Noted::EVENT_TYPE, name)
        .kind(kind)
        .competing()
}

async fn publish_many(bus: &Bus<Json>, keys: &[&str], per_key: u32) {
    for n in 0..per_key {
        for key in keys {
            bus.publish(&Noted {
                key: (*key).into(),
                n,
            })
            .await
            .expect("publish");
        }
    }
}

#[tokio::test]
async fn exclusive_refuses_a_second_consumer() {
    let (_, bus) = bus();
    let first = bus
        .subscribe_envelopes(
            spec("solo", SubscriptionKind::Exclusive),
            Collector::new().handler(),
        )
        .await
        .expect("first consumer");
    let second = bus
        .subscribe_envelopes(
            spec("solo", SubscriptionKind::Exclusive),
            Collector::new().handler(),
        )
        .await;
    let error = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("exclusive") && error.contains("solo"),
        "{error}"
    );
    first.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_subscription_keeps_its_kind() {
    let (_, bus) = bus();
    let _shared = bus
        .subscribe_envelopes(
            spec("kinds", SubscriptionKind::Shared),
            Collector::new().handler(),
        )
        .await
        .expect("shared");
    let other = bus
        .subscribe_envelopes(
            spec("kinds", SubscriptionKind::Failover),
            Collector::new().handler(),
        )
        .await;
    assert!(matches!(other, Err(BusError::Subscribe { .. })));
}

#[tokio::test]
async fn failover_has_one_active_consumer_and_a_standby_that_takes_over() {
    let (_, bus) = bus();
    let (active, standby) = (Collector::new(), Collector::new());
    let active_sub = bus
        .subscribe_envelopes(spec("fo", SubscriptionKind::Failover), active.handler())
        .await
        .expect("active");
    let standby_sub = bus
        .subscribe_envelopes(spec("fo", SubscriptionKind::Failover), standby.handler())
        .await
        .expect("standby");
    publish_many(&bus, &["a", "b", "c"], 5).await;
    active.wait_for(15, PATIENCE).await;
    assert!(
        standby.is_empty(),
        "the standby gets nothing while the active consumer lives"
    );

    active_sub.shutdown().await.expect("shutdown");
    publish_many(&bus, &["a"], 3).await;
    standby.wait_for(3, PATIENCE).await;
    standby_sub.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn key_shared_sends_each_key_to_one_consumer() {
    let (_, bus) = bus();
    let (one, two) = (Collector::new(), Collector::new());
    let sub_one = bus
        .subscribe_envelopes(spec("ks", SubscriptionKind::KeyShared), one.handler())
        .await
        .expect("one");
    let sub_two = bus
        .subscribe_envelopes(spec("ks", SubscriptionKind::KeyShared), two.handler())
        .await
        .expect("two");
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    publish_many(&bus, &key_refs, 5).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while one.len() + two.len() < 100 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let owners = |c: &Collector| -> HashSet<String> {
        c.seen()
            .iter()
            .filter_map(|m| m.envelope.ordering_key.clone())
            .collect()
    };
    let (keys_one, keys_two) = (owners(&one), owners(&two));
    assert_eq!(
        keys_one.len() + keys_two.len(),
        20,
        "every key is owned by exactly one consumer"
    );
    assert!(keys_one.is_disjoint(&keys_two));
    assert!(
        !keys_one.is_empty() && !keys_two.is_empty(),
        "both consumers own keys"
    );
    sub_one.shutdown().await.expect("shutdown");
    sub_two.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn messages_wait_for_a_consumer_of_an_existing_subscription() {
    let (_, bus) = bus();
    let first = Collector::new();
    let sub = bus
        .subscribe_envelopes(spec("durable", SubscriptionKind::Shared), first.handler())
        .await
        .expect("subscribe");
    sub.shutdown().await.expect("shutdown");
    publish_many(&bus, &["k"], 4).await;
    let later = Collector::new();
    let sub = bus
        .subscribe_envelopes(spec("durable", SubscriptionKind::Shared), later.handler())
        .await
        .expect("resubscribe");
    later.wait_for(4, PATIENCE).await;
    sub.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn topics_retain_what_was_published_and_close_refuses_more() {
    let (memory, bus) = bus();
    publish_many(&bus, &["k"], 3).await;
    let retained = memory.published(Noted::EVENT_TYPE);
    let ns: Vec<u32> = retained
        .iter()
        .map(|e| {
            serde_json::from_slice::<Noted>(&e.payload)
                .map(|n| n.n)
                .unwrap_or(u32::MAX)
        })
        .collect();
    assert_eq!(ns, vec![0, 1, 2]);
    memory.close().await.expect("close");
    let refused = bus
        .publish(&Noted {
            key: "k".into(),
            n: 9,
        })
        .await;
    assert!(matches!(refused, Err(BusError::Closed)));
}

#[tokio::test]
async fn idempotent_handler_runs_a_redelivered_message_once() {
    let (_, bus) = bus();
    let calls: Arc<std::sync::Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let calls = calls.clone();
        move |event: Noted, _ctx: Context| {
            if let Ok(mut calls) = calls.lock() {
                *calls
                    .entry(format!("{}-{}", event.key, event.n))
                    .or_default() += 1;
            }
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let inbox = Inbox::with_capacity(1000);
    let done = Collector::new();
    let sub = bus
        .subscribe_with(
            spec("once", SubscriptionKind::Shared),
            Idempotent::new(handler, inbox.clone()),
        )
        .await
        .expect("subscribe");
    let audit = bus
        .subscribe_envelopes(spec("audit", SubscriptionKind::Shared), done.handler())
        .await
        .expect("audit");
    let envelope = bus
        .envelope(&Noted {
            key: "pay".into(),
            n: 1,
        })
        .expect("encode");
    // The same message three times: a producer resend and a replay.
    for _ in 0..3 {
        bus.message_bus()
            .publish(envelope.clone(), PublishOptions::default())
            .await
            .expect("publish");
    }
    bus.publish(&Noted {
        key: "pay".into(),
        n: 2,
    })
    .await
    .expect("publish");
    done.wait_for(4, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls.get("pay-1"), Some(&1), "the duplicate ran once");
    assert_eq!(calls.get("pay-2"), Some(&1));
    assert!(inbox.contains(&envelope.id));
    sub.shutdown().await.expect("shutdown");
    audit.shutdown().await.expect("shutdown");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GetQuote {
    sku: String,
}

impl DomainEvent for GetQuote {
    const EVENT_TYPE: &'static str = "memory.get-quote";
    const AGGREGATE_TYPE: &'static str = "quote";
    fn aggregate_id(&self) -> String {
        self.sku.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    sku: String,
    cents: u64,
}

impl DomainEvent for Quote {
    const EVENT_TYPE: &'static str = "memory.quote";
    const AGGREGATE_TYPE: &'static str = "quote";
    fn aggregate_id(&self) -> String {
        self.sku.clone()
    }
}

#[tokio::test]
async fn request_reply_answers_and_times_out_clearly() {
    let (_, bus) = bus();
    let pricing = bus
        .respond::<GetQuote, Quote, _, _>(
            SubscriptionSpec::event_type(GetQuote::EVENT_TYPE, "pricing"),
            |q: GetQuote, _ctx: Context| async move {
                let cents = q.sku.len() as u64 * 100;
                Ok(Quote { sku: q.sku, cents })
            },
        )
        .await
        .expect("responder");
    let requester = Requester::start(&bus, "memory.replies.test")
        .await
        .expect("requester");
    let quote: Quote = requester
        .request(&GetQuote { sku: "abc".into() }, PATIENCE)
        .await
        .expect("reply");
    assert_eq!(
        quote,
        Quote {
            sku: "abc".into(),
            cents: 300
        }
    );
    pricing.shutdown().await.expect("shutdown");

    let unanswered = requester
        .request::<GetQuote, Quote>(&GetQuote { sku: "x".into() }, Duration::from_millis(200))
        .await;
    let error = unanswered.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("timed out") && error.contains("memory.get-quote"),
        "{error}"
    );
    requester.shutdown().await.expect("shutdown");
}
