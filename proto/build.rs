//! Compiles `proto/ferry/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates the prost messages and tonic services, plus a descriptor set for reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ferry/v1/ferry.proto"];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ferry_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // An upload chunk's data stays a slice of the buffer it was received in (no copy).
        .bytes(".ferry.v1.UploadChunk.data")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
