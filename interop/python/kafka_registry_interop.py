"""Bento and confluent-kafka's schema registry serializers on one real broker and registry.

    kafka_registry_interop.py consume <bootstrap> <registry> <topic> <format> <count> [descriptors]
        read <count> records from the start with the registry's deserializer of <format>
        (avro, json, protobuf); prints each value as JSON with the schema id of its framing
    kafka_registry_interop.py produce <bootstrap> <registry> <topic> <format> <value-json> [descriptors]
        write one record with the serializer of <format>, using the subject's latest schema
        (the one Bento registered; for protobuf the serializer registers its message type's),
        and Bento's headers

For protobuf, <descriptors> is a file holding the serialized FileDescriptorSet of the message
(bento.examples.shipping.OrderShipped). Prints one JSON document on stdout; exits non-zero on
failure.
"""

import json
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

EVENT_TYPES = {
    "avro": ("accounts.account-opened", "application/avro"),
    "json": ("users.user-registered", "application/json"),
    "protobuf": ("shipping.order-shipped", "application/x-protobuf"),
}

PROTO_MESSAGE = "bento.examples.shipping.OrderShipped"


def proto_class(descriptors_path):
    from google.protobuf import descriptor_pb2, message_factory

    files = descriptor_pb2.FileDescriptorSet()
    with open(descriptors_path, "rb") as handle:
        files.ParseFromString(handle.read())
    classes = message_factory.GetMessages(list(files.file))
    return classes[PROTO_MESSAGE]


def deserializer(fmt, client, descriptors):
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        return AvroDeserializer(client), lambda value: value
    if fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        return JSONDeserializer(None, schema_registry_client=client), lambda value: value
    if fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf.json_format import MessageToDict

        message_type = proto_class(descriptors)
        return (
            ProtobufDeserializer(message_type, {"use.deprecated.format": False}),
            lambda value: MessageToDict(value, preserving_proto_field_name=True),
        )
    raise SystemExit("unknown format " + fmt)


def serializer(fmt, client, topic, descriptors):
    conf = {"auto.register.schemas": False, "use.latest.version": True}
    if fmt == "protobuf":
        # The Protobuf serializer takes a subject's latest schema as a serialized
        # FileDescriptorProto (`?format=serialized`), which Apicurio Registry 2.4 does not
        # serve (it answers with the .proto text): it registers the schema of its own message
        # type instead, as Confluent's serializers do by default.
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        from google.protobuf.json_format import ParseDict

        message_type = proto_class(descriptors)
        conf = {"auto.register.schemas": True, "use.deprecated.format": False}
        return (
            ProtobufSerializer(message_type, client, conf=conf),
            lambda value: ParseDict(value, message_type()),
        )
    subject = topic + "-value"
    latest = client.get_latest_version(subject).schema.schema_str
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer

        return AvroSerializer(client, latest, conf=conf), lambda value: value
    if fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        return JSONSerializer(latest, client, conf=conf), lambda value: value
    raise SystemExit("unknown format " + fmt)


def consume(bootstrap, registry, topic, fmt, count, descriptors):
    client = SchemaRegistryClient({"url": registry})
    read, to_json = deserializer(fmt, client, descriptors)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "python-registry-interop-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    records = []
    deadline = time.time() + 30
    while len(records) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise RuntimeError(str(message.error()))
        raw = message.value()
        magic, schema_id = struct.unpack(">bI", raw[:5])
        context = SerializationContext(topic, MessageField.VALUE, message.headers())
        records.append({
            "magic": magic,
            "schema_id": schema_id,
            "value": to_json(read(raw, context)),
        })
    consumer.close()
    return records


def produce(bootstrap, registry, topic, fmt, value, descriptors):
    client = SchemaRegistryClient({"url": registry})
    write, from_json = serializer(fmt, client, topic, descriptors)
    event_type, content_type = EVENT_TYPES[fmt]
    message_id = str(uuid.uuid4())
    headers = [
        ("bento-message-id", message_id),
        ("bento-event-type", event_type),
        ("bento-event-version", "1"),
        ("bento-occurred-at", "2026-11-27T10:00:00Z"),
        ("bento-aggregate-type", "python"),
        ("bento-aggregate-id", "py-1"),
        ("content-type", content_type),
    ]
    context = SerializationContext(topic, MessageField.VALUE, headers)
    payload = write(from_json(value), context)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"py-1", value=payload, headers=headers)
    if producer.flush(30) != 0:
        raise RuntimeError("record not delivered")
    magic, schema_id = struct.unpack(">bI", payload[:5])
    return {"message_id": message_id, "magic": magic, "schema_id": schema_id}


def main():
    mode, bootstrap, registry, topic, fmt = sys.argv[1:6]
    rest = sys.argv[6:]
    if mode == "consume":
        descriptors = rest[1] if len(rest) > 1 else None
        print(json.dumps(consume(bootstrap, registry, topic, fmt, int(rest[0]), descriptors)))
    elif mode == "produce":
        descriptors = rest[1] if len(rest) > 1 else None
        print(json.dumps(produce(bootstrap, registry, topic, fmt, json.loads(rest[0]), descriptors)))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
