//! Each codec through Bento's `Codecs` layer next to the bare library call doing the same work,
//! on a realistic event of 20 fields. Goal: the layer costs at most 1.1x the bare call.
//!
//! `cargo bench -p bento-codec --bench codecs`

use apache_avro::AvroSchema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use bento_codec::{AvroCodec, Codec, Codecs, Format, ProtobufCodec};
use bento_domain::DomainEvent;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema, prost::Message)]
struct OrderPlaced {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(string, tag = "2")]
    customer_id: String,
    #[prost(string, tag = "3")]
    email: String,
    #[prost(string, tag = "4")]
    currency: String,
    #[prost(int64, tag = "5")]
    total_cents: i64,
    #[prost(int64, tag = "6")]
    tax_cents: i64,
    #[prost(int64, tag = "7")]
    shipping_cents: i64,
    #[prost(int32, tag = "8")]
    item_count: i32,
    #[prost(string, tag = "9")]
    street: String,
    #[prost(string, tag = "10")]
    city: String,
    #[prost(string, tag = "11")]
    postcode: String,
    #[prost(string, tag = "12")]
    country: String,
    #[prost(bool, tag = "13")]
    gift: bool,
    #[prost(bool, tag = "14")]
    express: bool,
    #[prost(string, tag = "15")]
    coupon: String,
    #[prost(string, tag = "16")]
    channel: String,
    #[prost(int64, tag = "17")]
    placed_at_ms: i64,
    #[prost(double, tag = "18")]
    risk_score: f64,
    #[prost(string, tag = "19")]
    sales_rep: String,
    #[prost(string, tag = "20")]
    note: String,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "bench.order-placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order_id: "01a21f7b-95b7-70ed-a228-d9cd3339736a".into(),
        customer_id: "cust-000042".into(),
        email: "ada.lovelace@example.com".into(),
        currency: "EUR".into(),
        total_cents: 12_999,
        tax_cents: 2_080,
        shipping_cents: 490,
        item_count: 3,
        street: "12 Analytical Engine Road".into(),
        city: "London".into(),
        postcode: "NW1 2DB".into(),
        country: "GB".into(),
        gift: false,
        express: true,
        coupon: "WINTER25".into(),
        channel: "web".into(),
        placed_at_ms: 1_795_000_000_000,
        risk_score: 0.07,
        sales_rep: "grace".into(),
        note: "leave at the door".into(),
    }
}

fn bench(c: &mut Criterion) {
    let event = order();
    let mut group = c.benchmark_group("codecs");

    // JSON
    let json = Codecs::new(Format::Json);
    let json_bytes = serde_json::to_vec(&event).unwrap_or_default();
    group.bench_function("json/encode/bare", |b| {
        b.iter(|| serde_json::to_vec(black_box(&event)))
    });
    group.bench_function("json/encode/bento", |b| {
        b.iter(|| json.encode(black_box(&event)))
    });
    group.bench_function("json/decode/bare", |b| {
        b.iter(|| serde_json::from_slice::<OrderPlaced>(black_box(&json_bytes)))
    });
    group.bench_function("json/decode/bento", |b| {
        b.iter(|| json.decode::<OrderPlaced>("application/json", black_box(&json_bytes)))
    });

    // Avro
    let avro = Codecs::new(Format::Avro);
    match AvroCodec::<OrderPlaced>::derived() {
        Ok(codec) => {
            avro.register(codec);
        }
        Err(error) => panic!("avro codec: {error}"),
    }
    let schema = OrderPlaced::get_schema();
    let writer = GenericDatumWriter::builder(&schema).build();
    let reader = GenericDatumReader::builder(&schema).build();
    let (Ok(writer), Ok(reader)) = (writer, reader) else {
        panic!("avro writer/reader")
    };
    let avro_bytes = writer.write_ser_to_vec(&event).unwrap_or_default();
    group.bench_function("avro/encode/bare", |b| {
        b.iter(|| writer.write_ser_to_vec(black_box(&event)))
    });
    group.bench_function("avro/encode/bento", |b| {
        b.iter(|| avro.encode(black_box(&event)))
    });
    group.bench_function("avro/decode/bare", |b| {
        b.iter(|| {
            reader.read_deser::<OrderPlaced>(&mut std::io::Cursor::new(black_box(&avro_bytes[..])))
        })
    });
    group.bench_function("avro/decode/bento", |b| {
        b.iter(|| avro.decode::<OrderPlaced>("application/avro", black_box(&avro_bytes)))
    });

    // Protobuf
    let protobuf = Codecs::new(Format::Protobuf);
    protobuf.register(ProtobufCodec::<OrderPlaced>::new());
    let proto_bytes = prost::Message::encode_to_vec(&event);
    group.bench_function("protobuf/encode/bare", |b| {
        b.iter(|| prost::Message::encode_to_vec(black_box(&event)))
    });
    group.bench_function("protobuf/encode/bento", |b| {
        b.iter(|| protobuf.encode(black_box(&event)))
    });
    group.bench_function("protobuf/decode/bare", |b| {
        b.iter(|| <OrderPlaced as prost::Message>::decode(black_box(&proto_bytes[..])))
    });
    group.bench_function("protobuf/decode/bento", |b| {
        b.iter(|| protobuf.decode::<OrderPlaced>("application/x-protobuf", black_box(&proto_bytes)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
