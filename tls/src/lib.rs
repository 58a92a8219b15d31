//! How Ferry's connections are secured, on rustls with the ring provider (decision 0007): the
//! TLS settings of the controller's port and of its clients, read from PEM files and checked
//! when loaded (`settings`); the system's CAs, read once per process; the HTTPS connector for
//! object-store URLs (`https`) and the presigned GET the agent and the CLI share
//! (`presigned`); and how a failed connection is told (`errors`). The wire format is
//! `ferry-proto`'s, which builds no TLS.

pub mod errors;
pub mod https;
pub mod presigned;
pub mod settings;

pub use errors::{error_chain, is_certificate_error};
pub use settings::{client_config, pair, server_config, ClientTls, ServerTls, TlsFileError};
