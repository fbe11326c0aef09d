//! syslog(3), for the daemons' log lines.

use std::ffi::CString;

pub use libc::{
    LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_MAIL, LOG_NDELAY, LOG_NOTICE, LOG_PERROR, LOG_PID,
    LOG_WARNING,
};

/// Opens the connection to syslogd under `ident`. The C library keeps the
/// pointer, so the string is leaked on purpose: it must outlive the
/// process's logging, and this is called once per process.
pub fn openlog(ident: &str, option: libc::c_int, facility: libc::c_int) {
    let ident = CString::new(ident.replace('\0', "")).unwrap_or_default();
    let ident: &'static CString = Box::leak(Box::new(ident));
    // SAFETY: ident is NUL-terminated and lives for the rest of the process.
    unsafe { libc::openlog(ident.as_ptr(), option, facility) };
}

/// Sends one message at priority `pri`. The message goes through a `%s`
/// format so that `%` in it is never interpreted.
pub fn syslog(pri: libc::c_int, msg: &str) {
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: the format is a literal "%s" and msg is NUL-terminated.
    unsafe { libc::syslog(pri, c"%s".as_ptr(), msg.as_ptr()) };
}
