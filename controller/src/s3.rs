//! An S3-compatible object-store client for artifacts: where (`location`), how to sign
//! (`sigv4`, header signing and presigned URLs) and the operations (`client`).
//!
//! Self-contained: plain `http://` endpoints over HTTP/1.1 (moto, MinIO on a private network);
//! `https://` is refused with a clear error until TLS is added. Used by `artifacts::object`.

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
