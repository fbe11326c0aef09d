//! queue.c: the process that owns the spool (OpenSMTPD queue.c 1.196).
//!
//! So far the receiving side: messages created, their data file handed
//! to the dispatcher, envelopes stored as lka expands recipients, commits
//! and rollbacks; and the walk of the spool at start that gives the
//! scheduler every envelope already queued. Delivery and bounces arrive
//! with the next issue.
//!
//! Commits are durable before they are acknowledged (OpenSMTPD's are not,
//! see queue_fs.rs), and batched: the commits that arrive in one turn of
//! the event loop are made durable together at the start of the next.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use super::envelope::{evpid_to_msgid, Envelope};
use super::queue_backend::{
    queue_envelope_create, queue_envelope_walk, queue_message_commit, queue_message_create,
    queue_message_delete, queue_message_fd_rw, queue_open, QueueBackend, QueueWalk,
};
use crate::config::config::{config_peer, env, QueueFlags};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{
    m_add_envelope, m_add_evpid, m_add_id, m_add_int, m_add_msgid, m_close, m_create, m_end,
    m_get_envelope, m_get_id, m_get_msgid, m_msg, ImsgType, ProcType,
};
use crate::pathnames::{path_spool, SMTPD_QUEUE_USER, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

/// A commit waiting for the batch: who asked, their request, the message.
struct PendingCommit {
    from: ProcType,
    reqid: u64,
    msgid: u32,
}

pub struct Queue {
    peers: Peers,
    backend: QueueBackend,
    commits: Vec<PendingCommit>,
    commit_ev: Option<EventId>,
    /// The message of the last envelope the start-up walk sent.
    walk_msgid: u32,
}

crate::impl_mproc_owner!(Queue, queue_imsg);

/// queue_imsg().
fn queue_imsg(s: &mut Queue, base: &mut EventBase<Queue>, from: ProcType, imsg: Option<Imsg>) {
    use ImsgType::*;
    let Some(imsg) = imsg else { queue_shutdown() };
    let Some(mut imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_SMTP_MESSAGE_CREATE) => queue_imsg_message_create(s, from, &imsg),
        Some(IMSG_SMTP_MESSAGE_ROLLBACK) => {
            let mut m = m_msg(&imsg);
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            queue_message_delete(&mut s.backend, msgid);
            let p = s.peers.p(ProcType::PROC_SCHEDULER);
            m_create(p, IMSG_QUEUE_MESSAGE_ROLLBACK, 0, 0, None);
            m_add_msgid(p, msgid);
            m_close(p);
        }
        Some(IMSG_SMTP_MESSAGE_COMMIT) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            queue_commit_later(s, base, from, reqid, msgid);
        }
        Some(IMSG_SMTP_MESSAGE_OPEN) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            let fd: Option<OwnedFd> = queue_message_fd_rw(&mut s.backend, msgid).map(Into::into);
            let ok = fd.is_some();
            let p = s.peers.p(from);
            m_create(p, IMSG_SMTP_MESSAGE_OPEN, 0, 0, fd);
            m_add_id(p, reqid);
            m_add_int(p, i32::from(ok));
            m_close(p);
        }
        Some(IMSG_LKA_ENVELOPE_SUBMIT) => queue_imsg_envelope_submit(s, &imsg),
        Some(IMSG_LKA_ENVELOPE_COMMIT) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            m_end(&m);
            let p = s.peers.p(ProcType::PROC_DISPATCHER);
            m_create(p, IMSG_QUEUE_ENVELOPE_COMMIT, 0, 0, None);
            m_add_id(p, reqid);
            m_add_int(p, 1);
            m_close(p);
        }
        Some(
            IMSG_SCHED_ENVELOPE_BOUNCE
            | IMSG_SCHED_ENVELOPE_DELIVER
            | IMSG_SCHED_ENVELOPE_EXPIRE
            | IMSG_SCHED_ENVELOPE_INJECT
            | IMSG_SCHED_ENVELOPE_REMOVE
            | IMSG_SCHED_ENVELOPE_TRANSFER,
        ) => {
            // The envelope stays in the spool and in flight in the
            // scheduler until delivery exists: held, never dropped.
            log_warnx!(
                "warn: queue: {} is not implemented yet, the envelope is held",
                imsg_to_str(imsg.hdr.type_)
            );
        }
        _ => {
            let _ = crate::ipc::imsg::imsg_get_fd(&mut imsg);
            fatalx!(
                "queue_imsg: unexpected {} imsg",
                imsg_to_str(imsg.hdr.type_)
            )
        }
    }
}

/// IMSG_SMTP_MESSAGE_CREATE: a new message for a session.
fn queue_imsg_message_create(s: &mut Queue, from: ProcType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    m_end(&m);
    let msgid = queue_message_create(&mut s.backend);
    let p = s.peers.p(from);
    m_create(p, ImsgType::IMSG_SMTP_MESSAGE_CREATE, 0, 0, None);
    m_add_id(p, reqid);
    match msgid {
        Some(msgid) => {
            m_add_int(p, 1);
            m_add_msgid(p, msgid);
        }
        None => m_add_int(p, 0),
    }
    m_close(p);
}

/// IMSG_LKA_ENVELOPE_SUBMIT: one envelope of a recipient, stored; the
/// dispatcher learns its id, the scheduler holds it until the commit.
fn queue_imsg_envelope_submit(s: &mut Queue, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let mut evp = m_get_envelope(&mut m);
    m_end(&m);
    if evp.id == 0 {
        log_warnx!("warn: imsg_queue_submit_envelope: evpid=0");
    }
    if evpid_to_msgid(evp.id) == 0 {
        log_warnx!(
            "warn: imsg_queue_submit_envelope: msgid=0, evpid={:016x}",
            evp.id
        );
    }
    let ok = queue_envelope_create(&mut s.backend, &mut evp);
    let p = s.peers.p(ProcType::PROC_DISPATCHER);
    m_create(p, ImsgType::IMSG_QUEUE_ENVELOPE_SUBMIT, 0, 0, None);
    m_add_id(p, reqid);
    if ok {
        m_add_int(p, 1);
        m_add_evpid(p, evp.id);
    } else {
        m_add_int(p, 0);
    }
    m_close(p);
    if ok {
        queue_scheduler_submit(s, &evp);
    }
}

fn queue_scheduler_submit(s: &mut Queue, evp: &Envelope) {
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, ImsgType::IMSG_QUEUE_ENVELOPE_SUBMIT, 0, 0, None);
    m_add_envelope(p, evp);
    m_close(p);
}

fn queue_scheduler_commit(s: &mut Queue, msgid: u32) {
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, ImsgType::IMSG_QUEUE_MESSAGE_COMMIT, 0, 0, None);
    m_add_msgid(p, msgid);
    m_close(p);
}

/// Queues a commit for the batch of this turn of the loop.
fn queue_commit_later(
    s: &mut Queue,
    base: &mut EventBase<Queue>,
    from: ProcType,
    reqid: u64,
    msgid: u32,
) {
    s.commits.push(PendingCommit { from, reqid, msgid });
    let ev = *s
        .commit_ev
        .get_or_insert_with(|| base.evtimer_set(queue_commit_batch, 0));
    if !base.event_pending(ev) {
        if let Err(e) = base.evtimer_add(ev, Duration::ZERO) {
            fatal!(e, "queue: evtimer_add");
        }
    }
}

/// The batch: every commit asked for since the last one, made durable
/// together, then each acknowledged (IMSG_SMTP_MESSAGE_COMMIT) and given
/// to the scheduler.
fn queue_commit_batch(
    s: &mut Queue,
    _base: &mut EventBase<Queue>,
    _fd: std::os::fd::RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    let batch = std::mem::take(&mut s.commits);
    let msgids: Vec<u32> = batch.iter().map(|c| c.msgid).collect();
    let results = queue_message_commit(&mut s.backend, &msgids);
    for (c, ok) in batch.iter().zip(results) {
        let p = s.peers.p(c.from);
        m_create(p, ImsgType::IMSG_SMTP_MESSAGE_COMMIT, 0, 0, None);
        m_add_id(p, c.reqid);
        m_add_int(p, i32::from(ok));
        m_close(p);
        if ok {
            queue_scheduler_commit(s, c.msgid);
        }
    }
}

/// queue_shutdown().
fn queue_shutdown() -> ! {
    log_debug!("debug: queue agent exiting");
    exit_now(0)
}

/// queue_timeout(): the start-up walk, one envelope per turn of the
/// loop so that the queue answers meanwhile: each envelope goes to the
/// scheduler, each message's commit after its last envelope.
fn queue_timeout(
    s: &mut Queue,
    base: &mut EventBase<Queue>,
    _fd: std::os::fd::RawFd,
    _ev: EvFlags,
    arg: u64,
) {
    match queue_envelope_walk(&mut s.backend) {
        QueueWalk::Done => {
            if s.walk_msgid != 0 {
                let msgid = s.walk_msgid;
                queue_scheduler_commit(s, msgid);
            }
            log_debug!("debug: queue: done loading queue into scheduler");
            return;
        }
        QueueWalk::Skip => {}
        QueueWalk::Envelope(evp) => {
            let msgid = evpid_to_msgid(evp.id);
            if s.walk_msgid != 0 && msgid != s.walk_msgid {
                let last = s.walk_msgid;
                queue_scheduler_commit(s, last);
            }
            s.walk_msgid = msgid;
            queue_scheduler_submit(s, &evp);
        }
    }
    let ev = base.evtimer_set(queue_timeout, arg);
    if let Err(e) = base.evtimer_add(ev, Duration::from_micros(10)) {
        fatal!(e, "queue: evtimer_add");
    }
}

/// queue(): the process's main.
pub fn queue(mut peers: Peers, backend: &str) -> ! {
    let spool = path_spool();
    child_privdrop(
        "queue",
        &[SMTPD_QUEUE_USER, SMTPD_USER],
        Some(&spool),
        ProcType::PROC_QUEUE,
        false,
    );
    let conf = env();
    let flags = conf.sc_queue_flags | QueueFlags::QUEUE_EVPCACHE;
    let dispatchers: BTreeSet<String> = conf.sc_dispatchers.keys().cloned().collect();
    let backend = match queue_open(backend, Path::new("/"), flags, Some(dispatchers)) {
        Ok(b) => b,
        Err(e) => fatalx!("queue: {e}"),
    };
    let mut base = EventBase::new();
    use ProcType::*;
    for p in [
        PROC_PARENT,
        PROC_CONTROL,
        PROC_LKA,
        PROC_SCHEDULER,
        PROC_DISPATCHER,
    ] {
        config_peer(&mut base, &mut peers, p);
    }
    // The queue loading task.
    let ev = base.evtimer_set(queue_timeout, 0);
    if let Err(e) = base.evtimer_add(ev, Duration::from_micros(10)) {
        fatal!(e, "queue: evtimer_add");
    }
    if let Err(e) = crate::sys::pledge::pledge("stdio rpath wpath cpath flock recvfd sendfd", None)
    {
        fatal!(e, "pledge");
    }
    let mut s = Queue {
        peers,
        backend,
        commits: Vec::new(),
        commit_ev: None,
        walk_msgid: 0,
    };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
