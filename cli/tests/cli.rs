//! End-to-end tests of the `ferry` binary against an in-process fake controller: what goes to
//! standard output and error, and the exit codes.

#[path = "cli/fake_controller.rs"]
mod fake_controller;
#[path = "cli/support.rs"]
mod support;

#[path = "cli/failover.rs"]
mod failover;
#[path = "cli/inspect.rs"]
mod inspect;
#[path = "cli/results.rs"]
mod results;
#[path = "cli/submit.rs"]
mod submit;
#[path = "cli/watch.rs"]
mod watch;
