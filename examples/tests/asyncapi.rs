//! The quickstart, codecs and orders examples print their AsyncAPI document with `--asyncapi`,
//! on each backend compiled in, without a broker (the configured one points at a closed port),
//! and the official AsyncAPI parser accepts every document.

mod common;

use std::process::Command;

use bento_testkit::asyncapi::validate;
use serde_json::Value;

use common::example;

/// Backends compiled into the examples, each with a broker address nothing listens on.
fn backends() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let mut backends = vec![("memory", vec![])];
    if cfg!(feature = "pulsar") {
        backends.push((
            "pulsar",
            vec![
                (
                    "BENTO_MESSAGING__PULSAR__SERVICE_URL",
                    "pulsar://127.0.0.1:1",
                ),
                ("BENTO_MESSAGING__PULSAR__ADMIN_URL", "http://127.0.0.1:1"),
            ],
        ));
    }
    if cfg!(feature = "kafka") {
        backends.push((
            "kafka",
            vec![("BENTO_MESSAGING__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")],
        ));
    }
    backends
}

/// The document `name` prints with `--asyncapi` on `backend`, validated.
fn document(name: &str, backend: &str, env: &[(&str, &str)]) -> Value {
    let mut command = Command::new(example(name));
    command
        .arg("--asyncapi")
        .env("BENTO_MESSAGING__BACKEND", backend)
        .env_remove("BENTO_CONFIG")
        .env_remove("BENTO_ASYNCAPI");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {name} example: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} --asyncapi on {backend} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{name} on {backend} printed no JSON document ({e}):\n{stdout}")
    });
    let report = validate(&document).unwrap_or_else(|e| panic!("cannot validate: {e}"));
    assert!(
        report.valid,
        "{name} on {backend}: the AsyncAPI parser rejected the document: {:#?}\n{stdout}",
        report.errors
    );
    assert_eq!(document["info"]["title"], name);
    match backend {
        "pulsar" => assert_eq!(document["servers"]["pulsar"]["host"], "127.0.0.1:1"),
        "kafka" => assert_eq!(document["servers"]["kafka"]["host"], "127.0.0.1:1"),
        _ => assert!(document.get("servers").is_none()),
    }
    document
}

/// The address of channel `id` of `document`.
fn address<'d>(document: &'d Value, id: &str) -> &'d str {
    document["channels"][id]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no channel `{id}`: {document:#}"))
}

fn topic(backend: &str, name: &str) -> String {
    match backend {
        "pulsar" => format!("persistent://public/default/{name}"),
        _ => name.to_owned(),
    }
}

#[test]
fn quickstart() {
    for (backend, env) in backends() {
        let document = document("quickstart", backend, &env);
        assert_eq!(
            address(&document, "users.user-created"),
            topic(backend, "users.user-created")
        );
        assert_eq!(
            address(&document, "quickstart.crm-sync.dlq"),
            topic(backend, "quickstart.crm-sync.dlq")
        );
        let operations = &document["operations"];
        assert_eq!(operations["send.users.user-created"]["action"], "send");
        for subscription in [
            "quickstart.welcome-email",
            "quickstart.audit-log",
            "quickstart.crm-sync",
        ] {
            assert_eq!(
                operations[format!("receive.{subscription}")]["messages"][0]["$ref"],
                "#/channels/users.user-created/messages/users.user-created",
                "{subscription} on {backend}"
            );
        }
        // The inspector reads the CRM sync's dead letters.
        assert_eq!(
            operations["receive.quickstart.dlq-inspector"]["messages"][0]["$ref"],
            "#/channels/quickstart.crm-sync.dlq/messages/users.user-created.dead-letter"
        );
        let message = &document["components"]["messages"]["users.user-created"];
        assert_eq!(message["contentType"], "application/json");
        assert_eq!(
            document["components"]["schemas"]["UserCreated"]["required"],
            serde_json::json!(["user_id", "email", "name"])
        );
    }
}

#[test]
fn codecs() {
    for (backend, env) in backends() {
        let document = document("codecs", backend, &env);
        let messages = &document["components"]["messages"];
        let user = &messages["users.user-created"];
        assert_eq!(user["contentType"], "application/avro");
        assert_eq!(
            user["payload"]["schemaFormat"],
            "application/vnd.apache.avro;version=1.9.0"
        );
        let shipped = &messages["shipping.order-shipped"];
        assert_eq!(shipped["contentType"], "application/x-protobuf");
        let proto = shipped["payload"]["schema"].as_str().unwrap_or_default();
        assert!(
            proto.contains("package bento.examples.shipping;")
                && proto.contains("repeated string parcel_ids = 3;"),
            "{proto}"
        );
        assert!(document["operations"]["receive.codecs-example.shipments"].is_object());
        assert!(document["operations"]["send.shipping.order-shipped"].is_object());
    }
}

/// The orders example needs its `sqlite` feature (a default one).
#[cfg(feature = "sqlite")]
#[test]
fn orders() {
    for (backend, env) in backends() {
        let document = document("orders", backend, &env);
        assert_eq!(
            address(&document, "orders.order-placed"),
            topic(backend, "orders.order-placed")
        );
        assert_eq!(
            document["operations"]["receive.orders-demo.shipping"]["action"],
            "receive"
        );
        assert_eq!(
            document["operations"]["send.orders.order-placed"]["messages"][0]["$ref"],
            "#/channels/orders.order-placed/messages/orders.order-placed"
        );
    }
}
