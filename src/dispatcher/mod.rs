//! The dispatcher process: the SMTP server, the MTA and the MDA driver.

#[allow(clippy::module_inception)]
pub mod dispatcher;
