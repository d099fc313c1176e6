//! Shipping events: Protobuf, generated at build time from `proto/shipping.proto`.

#[allow(missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/bento.examples.shipping.rs"));
}
pub use generated::OrderShipped;

use bento_codec::ProtobufCodec;
use bento_domain::DomainEvent;

impl DomainEvent for OrderShipped {
    const EVENT_TYPE: &'static str = "shipping.order-shipped";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// The serialized `FileDescriptorSet` of `proto/shipping.proto`.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shipping.fds.bin"));

/// The Protobuf codec for [`OrderShipped`], with its descriptor for schema registries.
pub fn order_shipped_codec() -> ProtobufCodec<OrderShipped> {
    ProtobufCodec::new().with_descriptor(
        DESCRIPTORS,
        "bento.examples.shipping.OrderShipped",
        "shipping.proto",
    )
}
