//! smtpd-defines.h and the limits and defaults of smtpd.h: every default
//! of OpenSMTPD 7.8 as a named constant, in one place.

pub const SMTPD_NAME: &str = "OpenSMTPD";
/// What `smtpd -h` and the logs report: the OpenSMTPD release this port
/// follows, and that it is this port.
pub const SMTPD_VERSION: &str = concat!("7.8.0-rust-", env!("CARGO_PKG_VERSION"));

pub const HOST_NAME_MAX: usize = 255;
pub const LINE_MAX: usize = 2048;
/// PATH_MAX of <limits.h>: 1024 on OpenBSD, 4096 on Linux. Structures
/// that processes exchange raw (struct deliver, struct forward_req) have
/// arrays of this size, as in OpenSMTPD.
pub const PATH_MAX: usize = libc::PATH_MAX as usize;

pub const SMTPD_TABLENAME_SIZE: usize = 64 + 1;
pub const SMTPD_TAG_SIZE: usize = 32 + 1;
pub const SMTPD_MAXLOCALPARTSIZE: usize = 255 + 1;
pub const SMTPD_MAXDOMAINPARTSIZE: usize = 255 + 1;
pub const SMTPD_MAXMAILADDRSIZE: usize = 255 + 1;
pub const SMTPD_VUSERNAME_SIZE: usize = 255 + 1;
pub const SMTPD_SUBADDRESS_SIZE: usize = 255 + 1;

pub const SUBADDRESSING_DELIMITER: &str = "+";

pub const MAX_HOPS_COUNT: usize = 100;
pub const DEFAULT_MAX_BODY_SIZE: usize = 35 * 1024 * 1024;
pub const EXPAND_BUFFER: usize = 1024;
/// _PATH_MAILDIR of <paths.h>: where mbox mailboxes live.
pub const PATH_MAILDIR: &str = "/var/mail";
/// Four days: how long mail may stay queued (`queue ttl`), and SRS's ttl.
pub const SMTPD_QUEUE_EXPIRY: i64 = 4 * 24 * 60 * 60;
pub const SMTPD_SESSION_TIMEOUT: i64 = 300;

/// At most this many `bounce warn-interval` delays.
pub const MAX_BOUNCE_WARN: usize = 4;
/// Report mail delayed for more than four hours (config_default).
pub const DEFAULT_BOUNCE_WARN: i64 = 4 * 3600;

pub const DEFAULT_SESSION_MAX_RCPT: usize = 1000;
pub const DEFAULT_SESSION_MAX_MAILS: usize = 100;

pub const DEFAULT_MTA_MAX_DEFERRED: usize = 100;

pub const DEFAULT_SCHEDULER_MAX_INFLIGHT: usize = 5000;
pub const DEFAULT_SCHEDULER_MAX_SCHEDULE: usize = 10;
pub const DEFAULT_SCHEDULER_MAX_EVP_BATCH_SIZE: usize = 256;
pub const DEFAULT_SCHEDULER_MAX_MSG_BATCH_SIZE: usize = 1024;

pub const DEFAULT_MDA_MAX_SESSION: usize = 50;
pub const DEFAULT_MDA_MAX_USER_SESSION: usize = 7;
pub const DEFAULT_MDA_TASK_HIWAT: usize = 50;
pub const DEFAULT_MDA_TASK_LOWAT: usize = 30;
pub const DEFAULT_MDA_TASK_RELEASE: usize = 10;

/// crypto.c KEY_SIZE: a queue key is 32 bytes (`openssl rand -hex 16`).
pub const QUEUE_KEY_SIZE: usize = 32;
/// parse.y PKI_MAX: certificates a listener may offer by SNI.
pub const PKI_MAX: usize = 32;
