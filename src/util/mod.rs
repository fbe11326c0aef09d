//! Helpers shared by every process.

pub mod esc;
pub mod getopt;
pub mod limit;
#[macro_use]
pub mod log;
pub mod mailaddr;
pub mod rfc5322;
pub mod stat_backend;
pub mod stat_ramstat;
pub mod to;
#[allow(clippy::module_inception)]
pub mod util;
