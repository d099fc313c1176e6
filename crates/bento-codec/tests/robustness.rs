//! Every decoder returns an error, never panics, on arbitrary and on mutated input.
//!
//! `cargo test -p bento-codec --test robustness` runs a short pass (256 cases per property);
//! `PROPTEST_CASES=100000 cargo test --release -p bento-codec --test robustness` a long one.

use apache_avro::AvroSchema;
use bento_codec::{AvroCodec, Codec, Codecs, Format, ProtobufCodec};
use bento_domain::DomainEvent;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema, prost::Message)]
struct Sample {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(int64, tag = "2")]
    amount: i64,
    #[prost(string, repeated, tag = "3")]
    tags: Vec<String>,
    #[prost(bytes = "vec", tag = "4")]
    blob: Vec<u8>,
    #[prost(double, tag = "5")]
    ratio: f64,
}

impl DomainEvent for Sample {
    const EVENT_TYPE: &'static str = "robustness.sample";
    const AGGREGATE_TYPE: &'static str = "sample";
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

fn codecs() -> Codecs {
    let codecs = Codecs::new(Format::Json);
    match AvroCodec::<Sample>::derived() {
        Ok(avro) => {
            codecs.register(avro);
        }
        Err(error) => panic!("avro codec: {error}"),
    }
    codecs
}

const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "application/avro",
    "application/x-protobuf",
];

fn sample() -> impl Strategy<Value = Sample> {
    (
        ".{0,20}",
        any::<i64>(),
        prop::collection::vec(".{0,8}", 0..4),
        prop::collection::vec(any::<u8>(), 0..16),
        -1e6f64..1e6,
    )
        .prop_map(|(id, amount, tags, blob, ratio)| Sample {
            id,
            amount,
            tags,
            blob,
            ratio,
        })
}

fn decode_all(codecs: &Codecs, proto: &Codecs, bytes: &[u8]) {
    for content_type in CONTENT_TYPES {
        // Only the absence of a panic matters here; errors are expected.
        let _ = codecs.decode::<Sample>(content_type, bytes);
        let _ = proto.decode::<Sample>(content_type, bytes);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let proto = Codecs::new(Format::Protobuf);
        proto.register(ProtobufCodec::<Sample>::new());
        decode_all(&codecs(), &proto, &bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic(event in sample(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let avro = Codecs::new(Format::Avro);
        match AvroCodec::<Sample>::derived() {
            Ok(codec) => { avro.register(codec); }
            Err(error) => panic!("avro codec: {error}"),
        }
        let proto = Codecs::new(Format::Protobuf);
        proto.register(ProtobufCodec::<Sample>::new());
        for codecs in [&Codecs::default(), &avro, &proto] {
            let encoded = codecs.encode(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Untouched, it round trips.
            let back = codecs.decode::<Sample>(&encoded.content_type, &encoded.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &event);
            let mut bytes = encoded.payload.to_vec();
            if !bytes.is_empty() {
                for (index, value) in &flips {
                    let at = index.index(bytes.len());
                    bytes[at] ^= value | 1;
                }
                let truncated = &bytes[..cut.index(bytes.len())];
                decode_all(&avro, &proto, &bytes);
                decode_all(&avro, &proto, truncated);
            }
        }
    }
}
