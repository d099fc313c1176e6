#!/usr/bin/env python3
"""Drives the official Pulsar Python client (pulsar-client) against topics Bento reads and writes.

Used by crates/bento-pulsar/tests/interop.rs. Every command prints one JSON document on stdout.

  consume --topic T --subscription S --count N [--schema none|avro|json] [--timeout SECONDS]
      Reads N messages from the start of T; prints a list of
      {"properties", "key", "event_timestamp", "payload" (none: text) | "value" (avro/json: fields)}.
  produce --topic T [--schema none|avro|json] [--properties JSON] [--key K]
          [--payload TEXT | --value JSON] [--event-timestamp MILLIS]
      Sends one message; prints {"message_id": "..."}.
"""

import argparse
import json
import os
import logging
import sys

import pulsar
from pulsar.schema import AvroSchema, Integer, JsonSchema, Record, String


class AccountOpened(Record):
    """The record Bento's tests publish (field names and types as in the Rust struct)."""

    account_id = String(required=True)
    owner = String(required=True)
    credit = Integer(required=True)


FIELDS = ("account_id", "owner", "credit")


def schema_of(name):
    if name == "avro":
        return AvroSchema(AccountOpened)
    if name == "json":
        return JsonSchema(AccountOpened)
    return pulsar.schema.BytesSchema()


def consume(client, args):
    consumer = client.subscribe(
        args.topic,
        args.subscription,
        schema=schema_of(args.schema),
        initial_position=pulsar.InitialPosition.Earliest,
        consumer_type=pulsar.ConsumerType.Shared,
    )
    out = []
    try:
        while len(out) < args.count:
            message = consumer.receive(timeout_millis=int(args.timeout * 1000))
            item = {
                "properties": dict(message.properties()),
                "key": message.partition_key() or None,
                "event_timestamp": message.event_timestamp(),
            }
            if args.schema == "none":
                item["payload"] = message.data().decode("utf-8", errors="replace")
            else:
                value = message.value()
                item["value"] = {name: getattr(value, name) for name in FIELDS}
            out.append(item)
            consumer.acknowledge(message)
    finally:
        consumer.close()
    return out


def produce(client, args):
    producer = client.create_producer(args.topic, schema=schema_of(args.schema))
    try:
        kwargs = {"properties": json.loads(args.properties)}
        if args.key:
            kwargs["partition_key"] = args.key
        if args.event_timestamp:
            kwargs["event_timestamp"] = int(args.event_timestamp)
        if args.schema == "none":
            content = (args.payload or "").encode("utf-8")
        else:
            content = AccountOpened(**json.loads(args.value))
        message_id = producer.send(content, **kwargs)
        producer.flush()
    finally:
        producer.close()
    return {"message_id": str(message_id)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="pulsar://127.0.0.1:6650")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("consume")
    c.add_argument("--topic", required=True)
    c.add_argument("--subscription", required=True)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--schema", choices=["none", "avro", "json"], default="none")
    c.add_argument("--timeout", type=float, default=30.0)
    p = commands.add_parser("produce")
    p.add_argument("--topic", required=True)
    p.add_argument("--schema", choices=["none", "avro", "json"], default="none")
    p.add_argument("--properties", default="{}")
    p.add_argument("--key")
    p.add_argument("--payload")
    p.add_argument("--value")
    p.add_argument("--event-timestamp")
    args = parser.parse_args()
    # The client's own log goes to stderr, so stdout carries only the result.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    client = pulsar.Client(
        args.url, operation_timeout_seconds=30, logger=logging.getLogger("pulsar")
    )
    try:
        result = consume(client, args) if args.command == "consume" else produce(client, args)
    finally:
        client.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    # The C++ client can abort while the interpreter tears it down ("terminate called without
    # an active exception") after everything succeeded; the result is out, so leave now.
    os._exit(0)


if __name__ == "__main__":
    main()
