//! log.c: logging to syslog, or to stderr when running in the foreground
//! (OpenSMTPD log.c 1.20), plus the trace and profile masks of smtpd.h.
//!
//! The C globals (`debug`, `verbose`, `log_procname`, `tracing`,
//! `profiling`) are atomics here: they are written once at start-up and by
//! `smtpctl log`/`trace` requests, and read everywhere.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::sys::syslog;

pub use crate::sys::syslog::{
    LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_MAIL, LOG_NOTICE, LOG_WARNING,
};

pub const TRACE_DEBUG: u32 = 0x0001;
pub const TRACE_IMSG: u32 = 0x0002;
pub const TRACE_IO: u32 = 0x0004;
pub const TRACE_SMTP: u32 = 0x0008;
pub const TRACE_FILTERS: u32 = 0x0010;
pub const TRACE_MTA: u32 = 0x0020;
pub const TRACE_BOUNCE: u32 = 0x0040;
pub const TRACE_SCHEDULER: u32 = 0x0080;
pub const TRACE_LOOKUP: u32 = 0x0100;
pub const TRACE_STAT: u32 = 0x0200;
pub const TRACE_RULES: u32 = 0x0400;
pub const TRACE_MPROC: u32 = 0x0800;
pub const TRACE_EXPAND: u32 = 0x1000;
pub const TRACE_TABLES: u32 = 0x2000;
pub const TRACE_QUEUE: u32 = 0x4000;

pub const PROFILE_TOSTAT: u32 = 0x0001;
pub const PROFILE_IMSG: u32 = 0x0002;
pub const PROFILE_QUEUE: u32 = 0x0004;

static DEBUG: AtomicI32 = AtomicI32::new(1);
static VERBOSE: AtomicI32 = AtomicI32::new(1);
static TRACING: AtomicU32 = AtomicU32::new(0);
static PROFILING: AtomicU32 = AtomicU32::new(0);
static PROCNAME: Mutex<String> = Mutex::new(String::new());

/// Chooses stderr (`n_debug` non-zero) or syslog under `progname` with
/// `facility`.
pub fn log_init(n_debug: i32, facility: libc::c_int, progname: &str) {
    DEBUG.store(n_debug, Ordering::Relaxed);
    VERBOSE.store(n_debug, Ordering::Relaxed);
    log_procinit(progname);
    if n_debug == 0 {
        syslog::openlog(progname, syslog::LOG_PID | syslog::LOG_NDELAY, facility);
    }
}

pub fn log_procinit(procname: &str) {
    if let Ok(mut p) = PROCNAME.lock() {
        procname.clone_into(&mut p);
    }
}

pub fn log_procname() -> String {
    PROCNAME.lock().map(|p| p.clone()).unwrap_or_default()
}

pub fn log_setverbose(v: i32) {
    VERBOSE.store(v, Ordering::Relaxed);
}

pub fn log_getverbose() -> i32 {
    VERBOSE.load(Ordering::Relaxed)
}

/// log_trace_verbose() of util.c: sets the trace mask; `-v` means
/// debug-level messages, otherwise foreground runs log at level 1.
pub fn log_trace_verbose(v: u32, foreground_log: bool) {
    TRACING.store(v, Ordering::Relaxed);
    log_setverbose(if v & TRACE_DEBUG != 0 {
        2
    } else {
        i32::from(foreground_log)
    });
}

pub fn tracing() -> u32 {
    TRACING.load(Ordering::Relaxed)
}

pub fn set_profiling(v: u32) {
    PROFILING.store(v, Ordering::Relaxed);
}

pub fn profiling() -> u32 {
    PROFILING.load(Ordering::Relaxed)
}

/// Writes one line at priority `pri`: to stderr in debug mode, to syslog
/// otherwise.
pub fn vlog(pri: libc::c_int, args: fmt::Arguments) {
    if DEBUG.load(Ordering::Relaxed) != 0 {
        // One write(2) a line: stderr is unbuffered, and the processes
        // share it, so a line written in pieces could be cut by another.
        let mut line = args.to_string();
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    } else {
        syslog::syslog(pri, &args.to_string());
    }
}

pub fn logit(pri: libc::c_int, args: fmt::Arguments) {
    vlog(pri, args);
}

/// log_warn: the message followed by the current errno's text.
pub fn log_warn(err: &std::io::Error, args: fmt::Arguments) {
    vlog(LOG_ERR, format_args!("{args}: {}", strerror(err)));
}

pub fn log_warnx(args: fmt::Arguments) {
    vlog(LOG_ERR, args);
}

pub fn log_info(args: fmt::Arguments) {
    vlog(LOG_INFO, args);
}

pub fn log_debug(args: fmt::Arguments) {
    if VERBOSE.load(Ordering::Relaxed) > 1 {
        vlog(LOG_DEBUG, args);
    }
}

pub fn log_trace(mask: u32, args: fmt::Arguments) {
    if TRACING.load(Ordering::Relaxed) & mask != 0 {
        vlog(LOG_DEBUG, args);
    }
}

/// An errno's text without Rust's " (os error N)" suffix, as strerror(3)
/// prints it: log parsers see the same words as with OpenSMTPD.
pub fn strerror(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// fatal/fatalx: logs at LOG_CRIT prefixed with the process name, then
/// exits 1. `err` is the errno fatal() appends.
pub fn vfatalc(err: Option<&std::io::Error>, args: Option<fmt::Arguments>) -> ! {
    let name = log_procname();
    match (err, args) {
        (Some(e), Some(a)) => logit(LOG_CRIT, format_args!("{name}: {a}: {}", strerror(e))),
        (Some(e), None) => logit(LOG_CRIT, format_args!("{name}: {}", strerror(e))),
        (None, Some(a)) => logit(LOG_CRIT, format_args!("{name}: {a}")),
        (None, None) => logit(LOG_CRIT, format_args!("{name}")),
    }
    std::process::exit(1);
}

#[macro_export]
macro_rules! log_warn {
    ($err:expr, $($arg:tt)*) => { $crate::util::log::log_warn(&$err, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! log_warnx {
    ($($arg:tt)*) => { $crate::util::log::log_warnx(format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::util::log::log_info(format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::util::log::log_debug(format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! log_trace {
    ($mask:expr, $($arg:tt)*) => { $crate::util::log::log_trace($mask, format_args!($($arg)*)) };
}
/// `fatal!(err, "...")`: log with the error's text appended, exit 1.
#[macro_export]
macro_rules! fatal {
    ($err:expr, $($arg:tt)*) => { $crate::util::log::vfatalc(Some(&$err), Some(format_args!($($arg)*))) };
}
/// `fatalx!("...")`: log, exit 1.
#[macro_export]
macro_rules! fatalx {
    ($($arg:tt)*) => { $crate::util::log::vfatalc(None, Some(format_args!($($arg)*))) };
}
