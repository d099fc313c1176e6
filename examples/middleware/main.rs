//! Middleware: behaviour added around handlers as layers. A tenant allow-list written here, in
//! a few lines, sits on one subscription; an outcome log sits on every subscription of the
//! service; the subscription's retry policy and timeout come from its spec. The handler asks
//! for its own retry delay when the payment provider is busy. An observer tallies how the
//! subscription's deliveries ended, from outside its whole stack.
//!
//! `cargo run --example middleware` (memory); `BENTO_MESSAGING__BACKEND=pulsar` or `kafka` to
//! run it on a broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bento_runtime::prelude::*;
use bento_runtime::testing::{Expect, Recorder};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// An order, placed by one of the platform's tenants.
#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    cents: u64,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "examples.order-placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// Dead-letters messages of tenants this service does not serve, without calling the handler.
#[derive(Clone)]
struct TenantAllowList {
    tenants: Arc<BTreeSet<String>>,
}

impl TenantAllowList {
    fn new(tenants: &[&str]) -> Self {
        Self {
            tenants: Arc::new(tenants.iter().map(|t| t.to_string()).collect()),
        }
    }
}

/// The handler a [`TenantAllowList`] wraps.
struct AllowTenants<S> {
    inner: S,
    tenants: Arc<BTreeSet<String>>,
}

impl<S> Layer<S> for TenantAllowList {
    type Service = AllowTenants<S>;

    fn layer(&self, inner: S) -> AllowTenants<S> {
        AllowTenants {
            inner,
            tenants: self.tenants.clone(),
        }
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for AllowTenants<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        match ctx.tenant() {
            Some(tenant) if self.tenants.contains(tenant) => self.inner.handle(ctx),
            tenant => {
                let error = HandlerError::permanent(format!(
                    "tenant `{}` is not served here",
                    tenant.unwrap_or("(none)")
                ));
                Box::pin(std::future::ready(Outcome::dead_letter(error)))
            }
        }
    }
}

/// Every outcome of every delivery, per message id, in order: what a service-wide layer sees.
#[derive(Clone, Default)]
struct OutcomeLog {
    seen: Arc<Mutex<BTreeMap<MessageId, Trail>>>,
}

/// What became of one message so far.
#[derive(Clone, Default)]
struct Trail {
    lines: Vec<String>,
}

/// The handler an [`OutcomeLog`] wraps.
struct LogOutcomes<S> {
    inner: S,
    log: OutcomeLog,
}

impl<S> Layer<S> for OutcomeLog {
    type Service = LogOutcomes<S>;

    fn layer(&self, inner: S) -> LogOutcomes<S> {
        LogOutcomes {
            inner,
            log: self.clone(),
        }
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for LogOutcomes<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let (id, attempt) = (ctx.message_id(), ctx.attempt());
        let seen = self.log.seen.clone();
        Box::pin(self.inner.handle(ctx).map(move |outcome| {
            let line = match &outcome {
                Outcome::Ack => format!("attempt {attempt}: ack"),
                Outcome::Retry { error, after } => {
                    let when =
                        after.map_or("at once".to_owned(), |after| format!("after {after:?}"));
                    format!("attempt {attempt}: retry {when} ({})", error.message())
                }
                Outcome::DeadLetter { failure, error } => {
                    format!(
                        "attempt {attempt}: dead letter, {failure} ({})",
                        error.message()
                    )
                }
                other => format!("attempt {attempt}: {}", other.as_str()),
            };
            if let Ok(mut seen) = seen.lock() {
                seen.entry(id).or_default().lines.push(line);
            }
            outcome
        }))
    }
}

impl OutcomeLog {
    fn lines(&self, id: &MessageId) -> Vec<String> {
        self.seen
            .lock()
            .map(|seen| {
                seen.get(id)
                    .map(|trail| trail.lines.clone())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

/// How the deliveries of a subscription ended, per message: an observer, called by the
/// dispatcher before the stack and with the outcome it settles (it wraps nothing, so it adds
/// no future per delivery).
#[derive(Clone, Default)]
struct Tally {
    ended: Arc<Mutex<BTreeMap<MessageId, Vec<&'static str>>>>,
}

impl DeliveryObserver for Tally {
    fn started(&self, _ctx: &Context) -> Observation {
        Observation::marked(0)
    }

    fn finished(&self, envelope: &Envelope, _observation: Observation, outcome: Option<&Outcome>) {
        let ended = outcome.map_or("abandoned", Outcome::as_str);
        if let Ok(mut tally) = self.ended.lock() {
            tally.entry(envelope.id).or_default().push(ended);
        }
    }
}

impl Tally {
    /// How the deliveries of `messages` ended, counted by outcome.
    fn counts<'a>(
        &self,
        messages: impl Iterator<Item = &'a MessageId>,
    ) -> BTreeMap<&'static str, u32> {
        let mut counts = BTreeMap::new();
        if let Ok(tally) = self.ended.lock() {
            for ended in messages.filter_map(|id| tally.get(id)).flatten() {
                *counts.entry(*ended).or_default() += 1;
            }
        }
        counts
    }
}

/// Charges an order; the payment provider is busy for large orders on their first attempt,
/// and says when to come back.
async fn charge(event: OrderPlaced, ctx: Context) -> Result<(), HandlerError> {
    if event.cents > 10_000 && ctx.attempt() == 1 {
        return Err(HandlerError::retry_after(
            Duration::from_millis(300),
            "payment provider busy",
        ));
    }
    Ok(())
}

async fn place(bus: &Bus, tenant: &str, order: OrderPlaced) -> Result<MessageId, BusError> {
    let mut envelope = bus.envelope(&order)?;
    envelope.tenant = Some(tenant.to_owned());
    let id = envelope.id;
    bus.publish_envelopes(vec![envelope], PublishOptions::default())
        .await?;
    Ok(id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = OutcomeLog::default();
    let bento = Bento::from_env().await?;
    // Tells `main` when every order was settled (outside the log, so the log is complete by
    // then), counting only this run's messages.
    let recorder = Recorder::with_codecs(bento.bus().codec().clone())
        .patience(Duration::from_secs(30))
        .only_own_messages();
    let bento = bento
        .layer(recorder.clone())
        .publish_layer(recorder.clone())
        .layer(log.clone());
    let bus = bento.bus();
    println!(
        "Bento middleware on the `{}` backend",
        bus.message_bus().backend()
    );
    let run = uuid::Uuid::now_v7().simple().to_string();
    let tally = Tally::default();
    let billing = bus
        .subscribe_with(
            SubscriptionSpec::named("middleware-example.billing")
                .layer(TenantAllowList::new(&["acme", "globex"]))
                .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
                .timeout(Duration::from_secs(5))
                .observe(tally.clone())
                .dead_letter(DeadLetterPolicy::to_topic(format!(
                    "examples.order-placed-dlq-{run}"
                ))),
            charge,
        )
        .await?;
    // Brokers need a moment after subscribing before new messages reach the subscription.
    if bus.message_bus().backend() != "memory" {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let orders = [("acme", 2_500), ("globex", 25_000), ("initech", 900)];
    let mut placed = Vec::new();
    for (n, (tenant, cents)) in orders.into_iter().enumerate() {
        let order_id = format!("{run}-{n}");
        let id = place(&bus, tenant, OrderPlaced { order_id, cents }).await?;
        placed.push((tenant, cents, id));
    }
    let billing_name = "middleware-example.billing";
    recorder
        .wait_for(Expect::consumed::<OrderPlaced>(2).by(billing_name))
        .await?;
    recorder
        .wait_for(Expect::dead_lettered(1).by(billing_name))
        .await?;
    for (tenant, cents, id) in &placed {
        println!("order of {tenant} ({cents} cents):");
        for line in log.lines(id) {
            println!("  {line}");
        }
    }
    // The observer hears of a delivery just after the layers inside it do: a moment for the
    // last one.
    let mut ended = tally.counts(placed.iter().map(|(_, _, id)| id));
    for _ in 0..100 {
        if ended.values().sum::<u32>() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        ended = tally.counts(placed.iter().map(|(_, _, id)| id));
    }
    println!("billing's deliveries, as its observer saw them end: {ended:?}");
    billing.shutdown().await?;
    bento.shutdown().await?;
    Ok(())
}
