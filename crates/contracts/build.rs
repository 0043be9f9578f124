//! Compiles `proto/` with a pure-Rust protobuf compiler, so that building needs no `protoc`.

use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "hosted/v1/common.proto",
        "hosted/v1/intake.proto",
        "hosted/v1/entitlement.proto",
        "hosted/v1/cards.proto",
        "hosted/v1/directory.proto",
        "hosted/v1/events.proto",
    ];
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile(files, [&proto_root])?;
    let descriptor_path = PathBuf::from(env::var("OUT_DIR")?).join("hosted_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
