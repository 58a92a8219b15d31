//! The rules of what a Ferry request may hold, written once for the CLI (which reports them
//! with their place in a job file) and the controller (which checks every request again, as if
//! no CLI existed): the limits (`limits`), the pure checks built on them (`check`) and the
//! dependency cycles of a task graph (`graph`).
//!
//! No I/O, no gRPC: plain strings and numbers in, a problem's words out.

pub mod check;
pub mod graph;
pub mod limits;
