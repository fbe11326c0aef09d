//! Build-time paths and users (the PATH_* and SMTPD_* defines of smtpd.h
//! and smtpd-defines.h), set by the Makefile through `SMTPD_BUILD_*`
//! environment variables at compile time, and the run-time overrides that
//! let tests run several daemons side by side from the build tree.

use crate::sys::unistd::issetugid;

macro_rules! build_path {
    ($(#[$m:meta])* $name:ident, $var:literal, $default:expr) => {
        $(#[$m])*
        pub const $name: &str = match option_env!($var) {
            Some(p) => p,
            None => $default,
        };
    };
}

build_path!(
    /// The configuration file smtpd reads when not given `-f`.
    CONF_FILE, "SMTPD_BUILD_CONF_FILE", "/etc/mail/smtpd.conf");
build_path!(
    /// First line: the server name (util.c parse_mailname_file).
    MAILNAME_FILE, "SMTPD_BUILD_MAILNAME_FILE", "/etc/mail/mailname");
build_path!(PATH_SPOOL, "SMTPD_BUILD_PATH_SPOOL", "/var/spool/smtpd");
build_path!(SMTPD_SOCKET, "SMTPD_BUILD_SOCKET", "/var/run/smtpd.sock");
build_path!(
    /// Delivery agents, table and filter backends (`table-NAME`).
    PATH_LIBEXEC, "SMTPD_BUILD_PATH_LIBEXEC", "/usr/local/libexec/smtpd");
build_path!(
    PATH_SMTPCTL,
    "SMTPD_BUILD_PATH_SMTPCTL",
    "/usr/local/sbin/smtpctl"
);
build_path!(PATH_CHROOT, "SMTPD_BUILD_PATH_CHROOT", "/var/empty");
build_path!(SMTPD_USER, "SMTPD_BUILD_USER", "_smtpd");
build_path!(SMTPD_QUEUE_USER, "SMTPD_BUILD_QUEUE_USER", "_smtpq");

/// The environment, unless the process is set-id: smtpctl runs setgid
/// and must never take a path from its caller.
fn env_override(var: &str) -> Option<String> {
    if issetugid() {
        return None;
    }
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// PATH_LIBEXEC, or `$SMTPD_LIBEXEC` for tests.
pub fn path_libexec() -> String {
    env_override("SMTPD_LIBEXEC").unwrap_or_else(|| PATH_LIBEXEC.to_string())
}

/// PATH_SPOOL, or `$SMTPD_SPOOL` for tests.
pub fn path_spool() -> String {
    env_override("SMTPD_SPOOL").unwrap_or_else(|| PATH_SPOOL.to_string())
}

/// SMTPD_SOCKET, or `$SMTPD_SOCKET` for tests.
pub fn smtpd_socket() -> String {
    env_override("SMTPD_SOCKET").unwrap_or_else(|| SMTPD_SOCKET.to_string())
}
