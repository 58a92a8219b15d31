//! The rules of what a Ferry request may hold, written once for the CLI (which reports them
//! with their place in a job file) and the controller (which checks every request again, as if
//! no CLI existed): the limits (`limits`), the pure checks built on them (`check`), the
//! rule of each text field of a job (`fields`), the dependency cycles of a task graph
//! (`graph`), what a task gets for what it leaves out (`defaults`) and an sql task's formats
//! and compressions (`sql`), a pipeline's name and typed parameters (`pipeline`), and byte
//! sizes with units (`units`: the one parser of every binary's flags and configs), and the
//! `:name` parameters of an sql query (`query`: the agent binds them, the others check them),
//! and a watermark set by hand checked against the stored one's type (`watermark`), and a
//! pipeline's schedule: when it fires, under its daylight-saving policies (`schedule`).
//!
//! No I/O, no gRPC: plain strings and numbers in, a problem's words out.

pub mod check;
pub mod defaults;
pub mod fields;
pub mod graph;
pub mod limits;
pub mod pipeline;
pub mod query;
pub mod schedule;
pub mod sql;
pub mod units;
pub mod watermark;
