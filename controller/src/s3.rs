//! An S3-compatible object-store client for artifacts: where (`location`), how to sign
//! (`sigv4`, header signing and presigned URLs) and the operations (`client`).
//!
//! `http://` and `https://` endpoints over HTTP/1.1, through the connector the agent's and the
//! CLI's presigned transfers use too (`ferry_tls::https`: the system's CAs and
//! `AWS_CA_BUNDLE`'s). Used by `artifacts::object`. Why our own client:
//! `docs/decisions/0002-own-s3-client.md`.

pub mod client;
pub mod location;
pub mod sigv4;
mod time;
mod xml;

#[cfg(test)]
pub(crate) mod moto;
#[cfg(test)]
mod moto_tests;

pub use client::{ListedObject, ObjectMeta, S3Client, S3Error, MAX_PART_NUMBER};
pub use location::{Credentials, Endpoint, S3Config, S3ConfigError, S3Location, S3Options};
pub use sigv4::Signer;
