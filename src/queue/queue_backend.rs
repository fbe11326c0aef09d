//! queue_backend.c: the spool and the queue backends (OpenSMTPD
//! queue_backend.c 1.69).
//!
//! So far queue_init(): the spool directories with OpenSMTPD's owners and
//! modes, set up when the queue process starts, and the `fs` backend's
//! own directories (queue_fs_init). Messages and envelopes arrive with
//! the receiving side.

use crate::pathnames::{path_spool, SMTPD_QUEUE_USER};
use crate::sys::process::{getgrnam, getpwnam};
use crate::util::util::{ckdir, mvpurge};

pub const PATH_OFFLINE: &str = "/offline";
pub const PATH_PURGE: &str = "/purge";
pub const PATH_TEMPORARY: &str = "/temporary";
pub const PATH_QUEUE: &str = "/queue";
pub const PATH_INCOMING: &str = "/incoming";

/// queue_init(): for the server (`server` set), the spool root (0711
/// root), offline (0770 root:_smtpq, where sendmail leaves mail while the
/// daemon is down), purge and temporary (0700 _smtpq); then the
/// backend's own setup.
pub fn queue_init(name: &str, server: bool) -> bool {
    let pwq = match getpwnam(SMTPD_QUEUE_USER) {
        Ok(Some(pw)) => pw,
        _ => fatalx!("unknown user {SMTPD_QUEUE_USER}"),
    };
    let gid = match getgrnam(SMTPD_QUEUE_USER) {
        Ok(Some(g)) => g,
        _ => fatalx!("unknown group {SMTPD_QUEUE_USER}"),
    };
    if name != "fs" {
        // queue_null, queue_ram and queue_proc come with the queue.
        fatalx!("queue backend \"{name}\" is not supported yet");
    }
    let spool = path_spool();
    if server {
        if !ckdir(&spool, 0o711, 0, 0, true) {
            fatalx!("error in spool directory setup");
        }
        if !ckdir(&format!("{spool}{PATH_OFFLINE}"), 0o770, 0, gid, true) {
            fatalx!("error in offline directory setup");
        }
        if !ckdir(&format!("{spool}{PATH_PURGE}"), 0o700, pwq.uid, 0, true) {
            fatalx!("error in purge directory setup");
        }
        let _ = mvpurge(
            &format!("{spool}{PATH_TEMPORARY}"),
            &format!("{spool}{PATH_PURGE}"),
        );
        if !ckdir(&format!("{spool}{PATH_TEMPORARY}"), 0o700, pwq.uid, 0, true) {
            fatalx!("error in purge directory setup");
        }
    }
    let r = queue_fs_init(&spool, pwq.uid, server);
    log_trace!(
        crate::util::log::TRACE_QUEUE,
        "queue-backend: queue_init({}) -> {}",
        i32::from(server),
        i32::from(r)
    );
    r
}

/// queue_fs_init() of queue_fs.c: incoming/ (emptied into purge/ at each
/// start: messages there were never acknowledged) and queue/.
fn queue_fs_init(spool: &str, uid: u32, server: bool) -> bool {
    if server {
        let _ = mvpurge(
            &format!("{spool}{PATH_INCOMING}"),
            &format!("{spool}{PATH_PURGE}"),
        );
    }
    let mut ok = true;
    for dir in [PATH_QUEUE, PATH_INCOMING] {
        if !ckdir(&format!("{spool}{dir}"), 0o700, uid, 0, server) {
            ok = false;
        }
    }
    ok
}
