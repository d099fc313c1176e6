//! Generates the Protobuf event types of the examples from `proto/*.proto` with prost-build.
//! The `.proto` files are parsed by protox (pure Rust), so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/shipping.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for brokers' schema registries (Pulsar's PROTOBUF_NATIVE schema).
    std::fs::write(
        out_dir.join("shipping.fds.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    prost_build::Config::new()
        // Bento events are serde types too (DomainEvent), so JSON stays available.
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
