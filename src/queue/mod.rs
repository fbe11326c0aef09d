//! The queue process and its backends.

pub mod bounce;
pub mod envelope;
#[allow(clippy::module_inception)]
pub mod queue;
pub mod queue_backend;
pub mod queue_fs;
pub mod queue_null;
pub mod queue_ram;
