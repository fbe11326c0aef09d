//! The only place for `unsafe`: thin, safe wrappers over the system calls
//! and C library functions that OpenSMTPD calls and Rust's std lacks.
//!
//! Every wrapper carries the whole contract of the call it wraps: `-1`
//! becomes an `io::Error`, C strings are checked for interior NULs before
//! they cross, and results come back as owned Rust values. Platform
//! differences (`cfg(target_os = ...)`) live here and nowhere else, so that
//! the code above reads the same on OpenBSD and Linux.
#![allow(unsafe_code)]

pub mod auth;
pub mod crypt;
pub mod db;
pub mod event;
pub mod fsync;
pub mod mailbox;
pub mod net;
pub mod pledge;
pub mod process;
pub mod proctitle;
pub mod regex;
pub mod socket;
pub mod syslog;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod unistd;

use std::ffi::CString;
use std::io;

/// Turns a Rust string into a C string, refusing interior NUL bytes with
/// `EINVAL` rather than silently truncating at them.
pub(crate) fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}
