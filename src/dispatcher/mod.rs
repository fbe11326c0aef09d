//! The dispatcher process: the SMTP server, the MTA and the MDA driver.

#[allow(clippy::module_inception)]
pub mod dispatcher;
pub mod mda;
pub mod mda_mbox;
pub mod mda_unpriv;
pub mod mda_variables;
pub mod proxy;
pub mod smtp;
pub mod smtp_session;
