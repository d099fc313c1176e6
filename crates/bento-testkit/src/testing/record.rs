//! The recorder as a handler layer and a publish layer.

use bento_application::layer::{BoxHandler, Layer};
use bento_application::{
    BoxPublisher, BusError, Context, EnvelopeHandler, Outcome, Publication, Publisher,
};
use futures::future::BoxFuture;

use super::{Delivery, Recorder, Settled};

impl Layer<BoxHandler> for Recorder {
    type Service = RecordDeliveries;

    fn layer(&self, inner: BoxHandler) -> RecordDeliveries {
        RecordDeliveries {
            inner,
            recorder: self.clone(),
        }
    }
}

impl Layer<BoxPublisher> for Recorder {
    type Service = RecordPublishes;

    fn layer(&self, inner: BoxPublisher) -> RecordPublishes {
        RecordPublishes {
            inner,
            recorder: self.clone(),
        }
    }
}

/// A handler stack whose settled deliveries a [`Recorder`] records.
pub struct RecordDeliveries {
    inner: BoxHandler,
    recorder: Recorder,
}

impl EnvelopeHandler for RecordDeliveries {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let subscription = ctx.subscription().to_owned();
        let topic = ctx.topic().to_owned();
        let attempt = ctx.attempt();
        let envelope = ctx.envelope().clone();
        let handling = self.inner.handle(ctx);
        let recorder = self.recorder.clone();
        Box::pin(async move {
            let outcome = handling.await;
            let settled = match &outcome {
                Outcome::Ack => Settled::Consumed,
                Outcome::Retry { error, after } => Settled::Retried {
                    after: *after,
                    error: error.to_string(),
                },
                Outcome::DeadLetter { failure, error } => Settled::DeadLettered {
                    failure: failure.as_str(),
                    error: error.to_string(),
                },
                other => Settled::DeadLettered {
                    failure: other.as_str(),
                    error: format!("{other:?}"),
                },
            };
            recorder.record_delivery(Delivery {
                subscription,
                topic,
                attempt,
                envelope,
                settled,
            });
            outcome
        })
    }
}

/// A publisher whose successful publishes a [`Recorder`] records.
pub struct RecordPublishes {
    inner: BoxPublisher,
    recorder: Recorder,
}

impl Publisher for RecordPublishes {
    fn publish(&self, publication: Publication) -> BoxFuture<'static, Result<(), BusError>> {
        let envelopes = publication.envelopes.clone();
        self.recorder.record_publishing(&envelopes);
        let publishing = self.inner.publish(publication);
        let recorder = self.recorder.clone();
        Box::pin(async move {
            publishing.await?;
            recorder.record_published(&envelopes);
            Ok(())
        })
    }
}
