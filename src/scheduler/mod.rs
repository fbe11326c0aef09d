//! The scheduler process (scheduler.c) and its backends.

#[allow(clippy::module_inception)]
pub mod scheduler;
pub mod scheduler_backend;
pub mod scheduler_null;
pub mod scheduler_ramqueue;
