//! The wire contracts of hosted-learners, generated from `proto/hosted/v1`.
//!
//! Nothing else in the workspace hand-writes a wire type: services, tools and tests
//! use the types re-exported here, and name NATS subjects, streams and headers only
//! through the constants of [`subjects`] and [`headers`].

pub mod headers;
pub mod subjects;

/// Package `hosted.v1`: messages, clients and servers.
#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations
)]
pub mod v1 {
    tonic::include_proto!("hosted.v1");
}

/// The encoded `FileDescriptorSet` of every contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hosted_descriptor.bin"));

pub use prost;
pub use prost_types;
