//! The request/reply conformance cases: [`Bus::respond`] and [`Requester`] on the backend under
//! test, with request and reply topics unique to each run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bento_application::{
    Bus, BusError, Context, HandlerError, Requester, Subscription, SubscriptionSpec, wire,
};
use bento_codec::Json;
use bento_domain::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

use crate::cases::unique;
use crate::{Backend, Case, Collector};

/// The request both cases send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Unique per request.
    pub id: String,
    /// The number to square.
    pub n: u64,
}

impl DomainEvent for Question {
    const EVENT_TYPE: &'static str = "bento.conformance.question";
    const AGGREGATE_TYPE: &'static str = "question";
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

/// The reply: which question it answers, and the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The id of the question answered.
    pub asked: String,
    /// The question's number, squared.
    pub square: u64,
}

impl DomainEvent for Answer {
    const EVENT_TYPE: &'static str = "bento.conformance.answer";
    const AGGREGATE_TYPE: &'static str = "question";
    fn aggregate_id(&self) -> String {
        self.asked.clone()
    }
}

fn question(id: impl Into<String>, n: u64) -> Question {
    Question { id: id.into(), n }
}

fn answer_to(question: &Question) -> Answer {
    Answer {
        asked: question.id.clone(),
        square: question.n * question.n,
    }
}

/// The bus of `backend` for `case`, or `None` (said out loud) if the backend cannot run it.
async fn bus(backend: &dyn Backend, case: Case) -> Option<Bus<Json>> {
    if let Some(reason) = backend.unsupported(case) {
        println!("conformance case {case:?} not supported by this backend: {reason}");
        return None;
    }
    Some(Bus::new(backend.bus().await, Json))
}

async fn ready(backend: &dyn Backend) {
    let settle = backend.settle_time();
    if !settle.is_zero() {
        tokio::time::sleep(settle).await;
    }
}

async fn start_requester(bus: &Bus<Json>, reply_topic: &str) -> Requester<Json> {
    Requester::start(bus, reply_topic)
        .await
        .unwrap_or_else(|e| panic!("starting a requester on `{reply_topic}` failed: {e}"))
}

/// Answers every [`Question`] on `topic`.
async fn responder(bus: &Bus<Json>, topic: &str) -> Subscription {
    bus.respond::<Question, Answer, _, _>(
        SubscriptionSpec::topic(topic, unique("responder")).concurrency(4),
        |question: Question, _ctx: Context| async move { Ok::<_, HandlerError>(answer_to(&question)) },
    )
    .await
    .unwrap_or_else(|e| panic!("starting the responder on `{topic}` failed: {e}"))
}

async fn shutdown(subscription: Subscription, what: &str) {
    subscription
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutting down {what} failed: {e}"));
}

/// A request gets its own reply, correlated with it: one at a time, and many at once from two
/// requesters sharing one reply topic (each requester's subscription is its own, so neither
/// takes the other's replies). On the wire, every reply carries `bento-request-id` naming its
/// request, is caused by it and belongs to its conversation.
pub async fn request_reply(backend: &dyn Backend) {
    let Some(bus) = bus(backend, Case::RequestReply).await else {
        return;
    };
    let patience = backend.patience();
    let requests = unique("requests");
    let replies = unique("replies");
    let message_bus = bus.message_bus().as_ref();
    let (seen_requests, watch_requests) = Collector::subscribe(
        message_bus,
        SubscriptionSpec::topic(&requests, unique("request-watch")),
    )
    .await;
    let (seen_replies, watch_replies) = Collector::subscribe(
        message_bus,
        SubscriptionSpec::topic(&replies, unique("reply-watch")),
    )
    .await;
    let responding = responder(&bus, &requests).await;
    let first = start_requester(&bus, &replies).await;
    let second = start_requester(&bus, &replies).await;
    assert_ne!(
        first.subscription_name(),
        second.subscription_name(),
        "two requesters got the same subscription"
    );
    ready(backend).await;

    let alone = question("alone", 7);
    let answer: Answer = first
        .request_to(&requests, &alone, patience)
        .await
        .unwrap_or_else(|e| panic!("request {alone:?} failed: {e}"));
    assert_eq!(answer, answer_to(&alone));

    // Both requesters at once, several requests each, on the shared reply topic.
    let asked: Vec<(&Requester<Json>, Question)> = (1..=5u64)
        .flat_map(|n| {
            [
                (&first, question(format!("first-{n}"), n)),
                (&second, question(format!("second-{n}"), 10 + n)),
            ]
        })
        .collect();
    let requests_topic = requests.as_str();
    let answers = futures::future::join_all(asked.iter().map(|(requester, question)| async move {
        let answer = requester
            .request_to::<Question, Answer>(requests_topic, question, patience)
            .await;
        (question, answer)
    }))
    .await;
    for (question, answer) in answers {
        match answer {
            Ok(answer) => assert_eq!(answer, answer_to(question), "wrong reply to {question:?}"),
            Err(error) => panic!("request {question:?} failed: {error}"),
        }
    }

    let total = 1 + asked.len();
    let request_envelopes = seen_requests.wait_for(total, patience).await;
    let reply_envelopes = seen_replies.wait_for(total, patience).await;
    check_correlation(&request_envelopes, &reply_envelopes, &replies, total);

    shutdown(responding, "the responder").await;
    for requester in [first, second] {
        requester
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutting down a requester failed: {e}"));
    }
    shutdown(watch_requests, "the request watcher").await;
    shutdown(watch_replies, "the reply watcher").await;
}

/// Every request names the reply topic; every reply answers exactly one request (by
/// `bento-request-id`), is caused by it and carries its correlation id.
fn check_correlation(
    requests: &[crate::Collected],
    replies: &[crate::Collected],
    reply_topic: &str,
    total: usize,
) {
    assert_eq!(requests.len(), total, "requests on the request topic");
    assert_eq!(replies.len(), total, "replies on the reply topic");
    let by_id: BTreeMap<String, &Envelope> = requests
        .iter()
        .map(|c| (c.envelope.id.to_string(), &c.envelope))
        .collect();
    for request in by_id.values() {
        assert_eq!(request.event_type, Question::EVENT_TYPE, "{request:?}");
        assert_eq!(
            request.headers.get(wire::REPLY_TO).map(String::as_str),
            Some(reply_topic),
            "a request without the reply topic: {request:?}"
        );
    }
    let mut answered = BTreeSet::new();
    for reply in replies.iter().map(|c| &c.envelope) {
        assert_eq!(reply.event_type, Answer::EVENT_TYPE, "{reply:?}");
        let request_id = reply
            .headers
            .get(wire::REQUEST_ID)
            .unwrap_or_else(|| panic!("a reply without {}: {reply:?}", wire::REQUEST_ID));
        let request = by_id
            .get(request_id)
            .unwrap_or_else(|| panic!("a reply to an unknown request {request_id}: {reply:?}"));
        assert_eq!(
            reply.causation_id.as_deref(),
            Some(request_id.as_str()),
            "a reply not caused by its request: {reply:?}"
        );
        assert_eq!(
            reply.correlation_id(),
            request.correlation_id(),
            "a reply outside its request's conversation: {reply:?}"
        );
        let asked: Question = serde_json::from_slice(&request.payload)
            .unwrap_or_else(|e| panic!("a request payload is not a Question ({e}): {request:?}"));
        let answer: Answer = serde_json::from_slice(&reply.payload)
            .unwrap_or_else(|e| panic!("a reply payload is not an Answer ({e}): {reply:?}"));
        assert_eq!(answer, answer_to(&asked), "reply {reply:?} to {request:?}");
        assert!(
            answered.insert(request_id.clone()),
            "request {request_id} answered twice"
        );
    }
    assert_eq!(answered.len(), total, "requests answered");
}

/// A request nobody answers fails with [`BusError::Timeout`] after the timeout, naming the
/// request and reply types and the reply topic; the requester then still works, and the late
/// answer to the timed-out request is not taken for the next one's.
pub async fn request_without_responder_times_out(backend: &dyn Backend) {
    let Some(bus) = bus(backend, Case::RequestTimeout).await else {
        return;
    };
    let patience = backend.patience();
    let requests = unique("requests");
    let replies = unique("replies");
    let requester = start_requester(&bus, &replies).await;
    ready(backend).await;

    let timeout = Duration::from_millis(800);
    let unanswered = question("unanswered", 2);
    let started = Instant::now();
    let error = match requester
        .request_to::<Question, Answer>(&requests, &unanswered, timeout)
        .await
    {
        Ok(answer) => panic!("nobody responds, yet {unanswered:?} got {answer:?}"),
        Err(error) => error,
    };
    let waited = started.elapsed();
    match &error {
        BusError::Timeout { operation, after } => {
            assert_eq!(*after, timeout, "{error}");
            for part in [Question::EVENT_TYPE, Answer::EVENT_TYPE, replies.as_str()] {
                assert!(operation.contains(part), "`{part}` missing from: {error}");
            }
        }
        other => panic!("expected BusError::Timeout, got {other:?}"),
    }
    assert!(
        waited >= timeout && waited < timeout + patience,
        "gave up after {waited:?}, the timeout was {timeout:?}"
    );

    // A responder appears; a new request gets its own answer even if the responder also
    // answers the timed-out one.
    let responding = responder(&bus, &requests).await;
    ready(backend).await;
    let next = question("next", 9);
    let answer: Answer = requester
        .request_to(&requests, &next, patience)
        .await
        .unwrap_or_else(|e| panic!("request {next:?} after a timeout failed: {e}"));
    assert_eq!(answer, answer_to(&next));

    shutdown(responding, "the responder").await;
    requester
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutting down the requester failed: {e}"));
}
