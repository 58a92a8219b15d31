//! Named parameters (`:day`) in a query, found by `ferry_jobspec::query` (the tokenizer the
//! CLI and the controller check jobs with) and rewritten to the driver's placeholders.
//! Values are bound, never spliced.

pub use ferry_jobspec::query::{parse, Dialect, Parsed};
