//! Helpers shared by every process.

pub mod getopt;
pub mod limit;
#[macro_use]
pub mod log;
pub mod mailaddr;
pub mod to;
#[allow(clippy::module_inception)]
pub mod util;
