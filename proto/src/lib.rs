//! The `ferry.v1` wire format: generated protobuf messages and tonic services shared by the
//! controller, the agent and the CLI, the descriptor set, and how a `WatchJob` stream's events
//! make the job (`watch`). No other logic lives here; how a connection is secured is
//! `ferry-tls`'s, so the wire format alone builds no TLS.

pub mod watch;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ferry.v1");
}

/// Encoded `FileDescriptorSet` of `ferry.v1`, served by the controller's reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));
