//! The queue process and its backends.

pub mod envelope;
#[allow(clippy::module_inception)]
pub mod queue;
pub mod queue_backend;
