//! The queue process and its backends.

#[allow(clippy::module_inception)]
pub mod queue;
pub mod queue_backend;
