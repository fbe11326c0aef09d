//! Messaging between smtpd processes: OpenBSD's imsg framing (`imsg`).

pub mod imsg;
pub mod mproc;
