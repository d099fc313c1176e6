"""Bento and the official Kafka Python client (confluent-kafka) on one real broker.

    kafka_interop.py consume <bootstrap> <topic> <count>   read <count> records from the start
    kafka_interop.py produce <bootstrap> <topic>           write one record with Bento's headers

Prints one JSON document on stdout; exits non-zero on failure.
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def consume(bootstrap, topic, count):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "python-interop-" + uuid.uuid4().hex,
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
        headers = {name: value.decode("utf-8") for name, value in (message.headers() or [])}
        records.append({
            "key": message.key().decode("utf-8") if message.key() is not None else None,
            "value": json.loads(message.value().decode("utf-8")),
            "headers": headers,
        })
    consumer.close()
    return records


def produce(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    message_id = str(uuid.uuid4())
    headers = [
        ("bento-message-id", message_id),
        ("bento-event-type", "users.user-created"),
        ("bento-event-version", "1"),
        ("bento-occurred-at", "2026-11-27T10:00:00.123456Z"),
        ("bento-aggregate-type", "user"),
        ("bento-aggregate-id", "py-user-1"),
        ("bento-ordering-key", "py-user-1"),
        ("bento-correlation-id", "py-correlation"),
        ("bento-tenant", "acme"),
        ("content-type", "application/json"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]
    value = json.dumps({"user_id": "py-user-1", "email": "grace@example.com"}).encode("utf-8")
    producer.produce(topic, key=b"py-user-1", value=value, headers=headers)
    if producer.flush(30) != 0:
        raise RuntimeError("record not delivered")
    return {"message_id": message_id}


def main():
    mode, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "consume":
        print(json.dumps(consume(bootstrap, topic, int(sys.argv[4]))))
    elif mode == "produce":
        print(json.dumps(produce(bootstrap, topic)))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
