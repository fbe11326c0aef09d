//! The scheduler process (scheduler.c and its backends).

#[allow(clippy::module_inception)]
pub mod scheduler;
