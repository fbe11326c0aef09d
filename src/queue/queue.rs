//! queue.c: the process that owns the spool (OpenSMTPD queue.c 1.196).
//!
//! The receiving side: messages created, their data file handed to the
//! dispatcher, envelopes stored as lka expands recipients, commits and
//! rollbacks; the walk of the spool at start that gives the scheduler
//! every envelope already queued; and the delivery side: the scheduler's
//! orders carried out (deliver, expire, remove, warn), the results of
//! deliveries recorded, and bounces made (queue_bounce) and sent
//! (bounce.rs). The control commands come with smtpctl.
//!
//! Commits are durable before they are acknowledged (OpenSMTPD's are not,
//! see queue_fs.rs), and batched: the commits that arrive in one turn of
//! the event loop are made durable together at the start of the next.
//! With the fs backend a thread of its own waits for the disk, so that
//! the loop goes on serving the other sessions meanwhile; the commits
//! that arrive then make the next batch, one batch on the disk at a time.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use super::envelope::{
    envelope_set_errormsg, envelope_set_esc_class, envelope_set_esc_code, evpid_to_msgid,
    BounceType, DeliveryBounce, DeliveryType, DsnNotify, Envelope, EnvelopeFlags,
};
use super::queue_backend::{
    queue_envelope_create, queue_envelope_delete, queue_envelope_load, queue_envelope_update,
    queue_envelope_walk, queue_message_commit, queue_message_commit_begin,
    queue_message_commit_end, queue_message_committer, queue_message_create, queue_message_delete,
    queue_message_fd_r, queue_message_fd_rw, queue_message_owned, queue_message_owner,
    queue_message_set_owner, queue_message_walk, queue_open, CommitBatch, Committer, MessageWalk,
    QueueBackend, QueueWalk, NO_OWNER,
};
use crate::config::config::{config_peer, env, QueueFlags};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{
    m_add_envelope, m_add_evpid, m_add_id, m_add_int, m_add_msgid, m_add_time, m_add_u32, m_close,
    m_compose, m_create, m_end, m_forward, m_get_envelope, m_get_evpid, m_get_id, m_get_int,
    m_get_msgid, m_get_string, m_get_time, m_get_u32, m_msg, ImsgType, ProcType,
};
use crate::pathnames::{path_spool, SMTPD_QUEUE_USER, SMTPD_USER};
use crate::scheduler::scheduler::BounceReqMsg;
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;
use crate::util::esc::{
    ESC_DELIVERY_TIME_EXPIRED, ESC_ROUTING_LOOP_DETECTED, ESC_STATUS_OK, ESC_STATUS_PERMFAIL,
    ESC_STATUS_TEMPFAIL,
};
use crate::util::stat_backend::stat_increment;
use crate::util::to::duration_to_text;
use crate::util::util::time_now;

/// A bounce envelope's ttl: a week, as OpenSMTPD's queue_bounce().
const BOUNCE_TTL: i64 = 3600 * 24 * 7;
/// MTA_EXT_DSN: the relay that took the message offered DSN.
const MTA_EXT_DSN: i32 = 0x400;

/// A commit waiting for the batch: who asked, their request, the message.
struct PendingCommit {
    from: ProcType,
    reqid: u64,
    msgid: u32,
}

/// The thread that runs the backend's commits: batches go to it, and
/// come back with their results and a byte on `done` for the loop.
struct CommitThread {
    jobs: Sender<CommitBatch>,
    results: Receiver<(CommitBatch, Vec<bool>)>,
    done: File,
    /// The batch on the disk now, if any: who is waiting for it.
    busy: Option<Vec<PendingCommit>>,
    /// Rollbacks of messages of that batch, for when it is done.
    rollbacks: Vec<u32>,
}

pub struct Queue {
    pub(super) peers: Peers,
    pub(super) backend: QueueBackend,
    commits: Vec<PendingCommit>,
    commit_ev: Option<EventId>,
    committer: Option<CommitThread>,
    /// The message of the last envelope the start-up walk sent.
    walk_msgid: u32,
    /// The bounces being written (bounce.rs).
    pub(super) bounce: super::bounce::Bounce,
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
            queue_rollback(s, msgid);
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
        Some(IMSG_SCHED_ENVELOPE_REMOVE) => queue_imsg_envelope_remove(s, m_get_evpid_only(&imsg)),
        Some(IMSG_SCHED_ENVELOPE_EXPIRE) => queue_imsg_envelope_expire(s, m_get_evpid_only(&imsg)),
        Some(IMSG_SCHED_ENVELOPE_BOUNCE) => queue_imsg_envelope_bounce(s, &imsg),
        Some(IMSG_SCHED_ENVELOPE_DELIVER) => {
            queue_imsg_envelope_deliver(s, m_get_evpid_only(&imsg), IMSG_QUEUE_DELIVER)
        }
        Some(IMSG_SCHED_ENVELOPE_TRANSFER) => {
            queue_imsg_envelope_deliver(s, m_get_evpid_only(&imsg), IMSG_QUEUE_TRANSFER)
        }
        Some(IMSG_SCHED_ENVELOPE_INJECT) => {
            super::bounce::bounce_add(s, base, m_get_evpid_only(&imsg))
        }
        Some(IMSG_QUEUE_SMTP_SESSION) => {
            super::bounce::bounce_fd(s, base, crate::ipc::imsg::imsg_get_fd(&mut imsg))
        }
        Some(t @ (IMSG_MDA_OPEN_MESSAGE | IMSG_MTA_OPEN_MESSAGE)) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            let fd: Option<OwnedFd> = queue_message_fd_r(&mut s.backend, msgid).map(Into::into);
            let p = s.peers.p(from);
            m_create(p, t, 0, 0, fd);
            m_add_id(p, reqid);
            m_close(p);
        }
        Some(t @ (IMSG_MDA_DELIVERY_OK | IMSG_MTA_DELIVERY_OK)) => {
            let mut m = m_msg(&imsg);
            let evpid = m_get_evpid(&mut m);
            let mta_ext = if t == IMSG_MTA_DELIVERY_OK {
                m_get_int(&mut m)
            } else {
                0
            };
            m_end(&m);
            queue_imsg_delivery_ok(s, evpid, t == IMSG_MTA_DELIVERY_OK, mta_ext);
        }
        Some(IMSG_MDA_DELIVERY_TEMPFAIL | IMSG_MTA_DELIVERY_TEMPFAIL) => {
            let mut m = m_msg(&imsg);
            let evpid = m_get_evpid(&mut m);
            let reason = m_get_string(&mut m).unwrap_or_default().to_string();
            let code = m_get_int(&mut m);
            m_end(&m);
            queue_imsg_delivery_tempfail(s, evpid, &reason, code);
        }
        Some(IMSG_MDA_DELIVERY_PERMFAIL | IMSG_MTA_DELIVERY_PERMFAIL) => {
            let mut m = m_msg(&imsg);
            let evpid = m_get_evpid(&mut m);
            let reason = m_get_string(&mut m).unwrap_or_default().to_string();
            let code = m_get_int(&mut m);
            m_end(&m);
            queue_imsg_delivery_permfail(s, evpid, &reason, code);
        }
        Some(IMSG_MDA_DELIVERY_LOOP | IMSG_MTA_DELIVERY_LOOP) => {
            queue_imsg_delivery_loop(s, m_get_evpid_only(&imsg))
        }
        Some(IMSG_MDA_DELIVERY_HOLD | IMSG_MTA_DELIVERY_HOLD) => {
            imsg.hdr.type_ = IMSG_QUEUE_HOLDQ_HOLD as u32;
            m_forward(s.peers.p(ProcType::PROC_SCHEDULER), &mut imsg);
        }
        Some(IMSG_CTL_LIST_ENVELOPES) if from == ProcType::PROC_SCHEDULER => {
            queue_imsg_list_envelopes(s, &mut imsg)
        }
        Some(t @ (IMSG_CTL_LIST_MESSAGES | IMSG_CTL_LIST_ENVELOPES | IMSG_CTL_REMOVE)) => {
            queue_imsg_ctl_user(s, t, &mut imsg)
        }
        // The scheduler's answer to a request queue_imsg_ctl_user passed.
        Some(IMSG_CTL_OK | IMSG_CTL_FAIL) => {
            m_forward(s.peers.p(ProcType::PROC_CONTROL), &mut imsg)
        }
        Some(IMSG_CTL_DISCOVER_EVPID) => queue_imsg_discover_evpid(s, &imsg),
        Some(IMSG_CTL_DISCOVER_MSGID) => queue_msgid_walk(s, &imsg),
        Some(
            IMSG_CTL_PAUSE_MDA | IMSG_CTL_PAUSE_MTA | IMSG_CTL_RESUME_MDA | IMSG_CTL_RESUME_MTA,
        ) => {
            m_forward(s.peers.p(ProcType::PROC_SCHEDULER), &mut imsg);
        }
        Some(IMSG_MTA_SCHEDULE) => {
            imsg.hdr.type_ = IMSG_QUEUE_ENVELOPE_SCHEDULE as u32;
            m_forward(s.peers.p(ProcType::PROC_SCHEDULER), &mut imsg);
        }
        Some(t @ (IMSG_MDA_HOLDQ_RELEASE | IMSG_MTA_HOLDQ_RELEASE)) => {
            let mut m = m_msg(&imsg);
            let holdq = m_get_id(&mut m);
            let v = m_get_int(&mut m);
            m_end(&m);
            let type_ = if t == IMSG_MTA_HOLDQ_RELEASE {
                DeliveryType::Mta
            } else {
                DeliveryType::Mda
            };
            let p = s.peers.p(ProcType::PROC_SCHEDULER);
            m_create(p, IMSG_QUEUE_HOLDQ_RELEASE, 0, 0, None);
            m_add_int(p, type_ as i32);
            m_add_id(p, holdq);
            m_add_int(p, v);
            m_close(p);
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
    let owner = m_get_u32(&mut m);
    m_end(&m);
    let msgid = queue_message_create(&mut s.backend);
    // Root sees every message anyway: only other users' are recorded.
    if let Some(msgid) = msgid.filter(|_| owner != NO_OWNER && owner != 0) {
        queue_message_set_owner(&mut s.backend, msgid, owner);
    }
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
/// together, by the commit thread if there is one (and if it is busy,
/// once it is done), then queue_commit_reply().
fn queue_commit_batch(
    s: &mut Queue,
    _base: &mut EventBase<Queue>,
    _fd: std::os::fd::RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    if s.commits.is_empty() {
        return;
    }
    let msgids: Vec<u32> = s.commits.iter().map(|c| c.msgid).collect();
    match s.committer.as_mut() {
        Some(t) if t.busy.is_some() => {}
        Some(t) => {
            let b = queue_message_commit_begin(&s.backend, &msgids);
            if t.jobs.send(b).is_err() {
                fatalx!("queue: the commit thread is gone");
            }
            t.busy = Some(std::mem::take(&mut s.commits));
        }
        None => {
            let batch = std::mem::take(&mut s.commits);
            let results = queue_message_commit(&mut s.backend, &msgids);
            queue_commit_reply(s, &batch, results);
        }
    }
}

/// The commit thread is done with its batch: replies, and the next
/// batch if commits arrived meanwhile.
fn queue_commit_done(
    s: &mut Queue,
    base: &mut EventBase<Queue>,
    fd: std::os::fd::RawFd,
    ev: EvFlags,
    arg: u64,
) {
    let Some(t) = s.committer.as_mut() else {
        return;
    };
    let mut buf = [0u8; 16];
    let _ = (&t.done).read(&mut buf);
    let Ok((b, results)) = t.results.try_recv() else {
        return;
    };
    let batch = t.busy.take().unwrap_or_default();
    let rollbacks = std::mem::take(&mut t.rollbacks);
    let results = queue_message_commit_end(&s.backend, b, results);
    queue_commit_reply(s, &batch, results);
    for msgid in rollbacks {
        queue_rollback(s, msgid);
    }
    queue_commit_batch(s, base, fd, ev, arg);
}

/// Starts the commit thread for a backend that has a Committer, and
/// registers its wake-up pipe with the loop.
fn queue_commit_thread(
    backend: &QueueBackend,
    base: &mut EventBase<Queue>,
) -> Option<CommitThread> {
    let committer = queue_message_committer(backend)?;
    let (rd, wr) = match crate::sys::event::pipe_nonblock() {
        Ok(p) => p,
        Err(e) => fatal!(e, "queue: pipe"),
    };
    let (jobs, jobs_rx) = channel();
    let (results_tx, results) = channel();
    let spawned = std::thread::Builder::new()
        .name("commit".into())
        .spawn(move || queue_commit_run(committer, jobs_rx, results_tx, File::from(wr)));
    if let Err(e) = spawned {
        fatal!(e, "queue: commit thread");
    }
    let done = File::from(rd);
    let ev = base.event_set(done.as_raw_fd(), EvFlags::EV_READ, queue_commit_done, 0);
    if let Err(e) = base.event_add(ev, None) {
        fatal!(e, "queue: event_add");
    }
    Some(CommitThread {
        jobs,
        results,
        done,
        busy: None,
        rollbacks: Vec::new(),
    })
}

/// The commit thread's life: a batch in, its results out, a byte to
/// wake the loop; until the loop hangs up.
fn queue_commit_run(
    mut committer: Committer,
    jobs: Receiver<CommitBatch>,
    results: Sender<(CommitBatch, Vec<bool>)>,
    mut wake: File,
) {
    while let Ok(b) = jobs.recv() {
        let r = committer(&b.batch);
        if results.send((b, r)).is_err() {
            return;
        }
        // The pipe holds at most one byte a batch, one batch at a time.
        let _ = wake.write(&[1]);
    }
}

/// Each commit of a batch acknowledged (IMSG_SMTP_MESSAGE_COMMIT), and
/// given to the scheduler when it went well.
fn queue_commit_reply(s: &mut Queue, batch: &[PendingCommit], results: Vec<bool>) {
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

/// A message rolled back: deleted, and the scheduler told. One that the
/// commit thread holds waits until it is done with it, as if it had
/// come just after the commit, so the two never race on its files.
fn queue_rollback(s: &mut Queue, msgid: u32) {
    if let Some(t) = s.committer.as_mut() {
        if t.busy.iter().flatten().any(|c| c.msgid == msgid) {
            t.rollbacks.push(msgid);
            return;
        }
    }
    queue_message_delete(&mut s.backend, msgid);
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, ImsgType::IMSG_QUEUE_MESSAGE_ROLLBACK, 0, 0, None);
    m_add_msgid(p, msgid);
    m_close(p);
}

/// The envelope id of a message that holds only that.
fn m_get_evpid_only(imsg: &Imsg) -> u64 {
    let mut m = m_msg(imsg);
    let evpid = m_get_evpid(&mut m);
    m_end(&m);
    evpid
}

/// The scheduler forgets an envelope the queue cannot load: one it had
/// handed out (`inflight`) or one it still holds.
fn queue_scheduler_remove(s: &mut Queue, evpid: u64, inflight: bool) {
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, ImsgType::IMSG_QUEUE_ENVELOPE_REMOVE, 0, 0, None);
    m_add_evpid(p, evpid);
    m_add_u32(p, u32::from(inflight));
    m_close(p);
}

/// The envelope of a delivery result, or None once the scheduler has
/// been told to forget it.
fn queue_delivery_envelope(s: &mut Queue, evpid: u64, what: &str) -> Option<Envelope> {
    let evp = queue_envelope_load(&mut s.backend, evpid);
    if evp.is_none() {
        log_warnx!("queue: {what}: failed to load envelope");
        queue_scheduler_remove(s, evpid, true);
    }
    evp
}

/// Tells the scheduler what became of an envelope, by its id.
pub(super) fn queue_scheduler_ack(s: &mut Queue, t: ImsgType, evpid: u64) {
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, t, 0, 0, None);
    m_add_evpid(p, evpid);
    m_close(p);
}

/// IMSG_SCHED_ENVELOPE_REMOVE: `smtpctl remove`.
fn queue_imsg_envelope_remove(s: &mut Queue, evpid: u64) {
    queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_ENVELOPE_ACK, evpid);
    // Already removed by the scheduler.
    let Some(evp) = queue_envelope_load(&mut s.backend, evpid) else {
        return;
    };
    queue_log(&evp, "Remove", "Removed by administrator");
    queue_envelope_delete(&mut s.backend, evpid);
}

/// IMSG_SCHED_ENVELOPE_EXPIRE: the envelope outlived its ttl; its
/// sender learns it failed.
fn queue_imsg_envelope_expire(s: &mut Queue, evpid: u64) {
    queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_ENVELOPE_ACK, evpid);
    let Some(mut evp) = queue_envelope_load(&mut s.backend, evpid) else {
        return;
    };
    envelope_set_errormsg(&mut evp, format_args!("Envelope expired"));
    envelope_set_esc_class(&mut evp, ESC_STATUS_PERMFAIL);
    envelope_set_esc_code(&mut evp, ESC_DELIVERY_TIME_EXPIRED);
    let bounce = DeliveryBounce {
        type_: BounceType::Failed,
        ..DeliveryBounce::default()
    };
    queue_bounce(s, &evp, &bounce);
    queue_log(&evp, "Expire", "Envelope expired");
    queue_envelope_delete(&mut s.backend, evpid);
}

/// IMSG_SCHED_ENVELOPE_BOUNCE: a delay warning is due.
fn queue_imsg_envelope_bounce(s: &mut Queue, imsg: &Imsg) {
    let Some(req) = BounceReqMsg::from_bytes(&imsg.data) else {
        fatalx!(
            "queue_imsg: {} of {} bytes",
            imsg_to_str(imsg.hdr.type_),
            imsg.data.len()
        )
    };
    let Some(mut evp) = queue_envelope_load(&mut s.backend, req.evpid) else {
        log_warnx!("queue: bounce: failed to load envelope");
        queue_scheduler_remove(s, req.evpid, false);
        return;
    };
    queue_bounce(s, &evp, &req.bounce);
    evp.lastbounce = req.timestamp;
    if !queue_envelope_update(&mut s.backend, &evp) {
        log_warnx!("warn: could not update envelope {:016x}", req.evpid);
    }
}

/// IMSG_SCHED_ENVELOPE_DELIVER and _TRANSFER: the envelope goes to the
/// MDA (IMSG_QUEUE_DELIVER) or the MTA (IMSG_QUEUE_TRANSFER).
fn queue_imsg_envelope_deliver(s: &mut Queue, evpid: u64, to: ImsgType) {
    let what = if to == ImsgType::IMSG_QUEUE_DELIVER {
        "deliver"
    } else {
        "transfer"
    };
    let Some(mut evp) = queue_delivery_envelope(s, evpid, what) else {
        return;
    };
    evp.lasttry = time_now();
    let p = s.peers.p(ProcType::PROC_DISPATCHER);
    m_create(p, to, 0, 0, None);
    m_add_envelope(p, &evp);
    m_close(p);
}

/// IMSG_MDA_DELIVERY_OK and IMSG_MTA_DELIVERY_OK: delivered; a success
/// DSN if the sender asked for one and no MTA peer took that over.
fn queue_imsg_delivery_ok(s: &mut Queue, evpid: u64, mta: bool, mta_ext: i32) {
    let Some(mut evp) = queue_envelope_load(&mut s.backend, evpid) else {
        log_warnx!("queue: dsn: failed to load envelope");
        return;
    };
    if evp.dsn_notify.contains(DsnNotify::DSN_SUCCESS) {
        let mut bounce = DeliveryBounce {
            type_: BounceType::Delivered,
            dsn_ret: evp.dsn_ret,
            ..DeliveryBounce::default()
        };
        envelope_set_esc_class(&mut evp, ESC_STATUS_OK);
        if !mta {
            queue_bounce(s, &evp, &bounce);
        } else if mta_ext & MTA_EXT_DSN == 0 {
            bounce.mta_without_dsn = true;
            queue_bounce(s, &evp, &bounce);
        }
    }
    queue_envelope_delete(&mut s.backend, evpid);
    queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_DELIVERY_OK, evpid);
}

/// IMSG_MDA_DELIVERY_TEMPFAIL and IMSG_MTA_DELIVERY_TEMPFAIL: the error
/// is recorded and the scheduler plans the next try.
fn queue_imsg_delivery_tempfail(s: &mut Queue, evpid: u64, reason: &str, code: i32) {
    let Some(mut evp) = queue_delivery_envelope(s, evpid, "tempfail") else {
        return;
    };
    envelope_set_errormsg(&mut evp, format_args!("{reason}"));
    envelope_set_esc_class(&mut evp, ESC_STATUS_TEMPFAIL);
    envelope_set_esc_code(&mut evp, code as u8);
    evp.retry = evp.retry.wrapping_add(1);
    if !queue_envelope_update(&mut s.backend, &evp) {
        log_warnx!("warn: could not update envelope {evpid:016x}");
    }
    let p = s.peers.p(ProcType::PROC_SCHEDULER);
    m_create(p, ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL, 0, 0, None);
    m_add_envelope(p, &evp);
    m_close(p);
}

/// IMSG_MDA_DELIVERY_PERMFAIL and IMSG_MTA_DELIVERY_PERMFAIL: bounced.
fn queue_imsg_delivery_permfail(s: &mut Queue, evpid: u64, reason: &str, code: i32) {
    let Some(mut evp) = queue_delivery_envelope(s, evpid, "permfail") else {
        return;
    };
    envelope_set_errormsg(&mut evp, format_args!("{reason}"));
    envelope_set_esc_class(&mut evp, ESC_STATUS_PERMFAIL);
    envelope_set_esc_code(&mut evp, code as u8);
    queue_bounce_failed(s, &evp);
    queue_envelope_delete(&mut s.backend, evpid);
    queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_DELIVERY_PERMFAIL, evpid);
}

/// IMSG_MDA_DELIVERY_LOOP and IMSG_MTA_DELIVERY_LOOP: the message came
/// back to a recipient it had been delivered to. C bounces it with a
/// temporary status, which bounce.c words as a delay; it failed for
/// good, so it is bounced as failed (smtpd.8).
fn queue_imsg_delivery_loop(s: &mut Queue, evpid: u64) {
    let Some(mut evp) = queue_delivery_envelope(s, evpid, "loop") else {
        return;
    };
    envelope_set_errormsg(&mut evp, format_args!("Loop detected"));
    envelope_set_esc_class(&mut evp, ESC_STATUS_PERMFAIL);
    envelope_set_esc_code(&mut evp, ESC_ROUTING_LOOP_DETECTED);
    queue_bounce_failed(s, &evp);
    queue_envelope_delete(&mut s.backend, evp.id);
    queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_DELIVERY_LOOP, evp.id);
}

fn queue_bounce_failed(s: &mut Queue, evp: &Envelope) {
    let bounce = DeliveryBounce {
        type_: BounceType::Failed,
        ..DeliveryBounce::default()
    };
    queue_bounce(s, evp, &bounce);
}

/// A request of a user other than root, from control (not in C, where
/// they are root's alone): the listing of the messages that user
/// submitted, and the listing or removal of the envelopes of one of
/// them. Control has put the user's uid after the request. The queue
/// answers the first itself, from the owner files, and passes the
/// others on to the scheduler only for the user's own messages; the
/// scheduler then answers as it does root.
fn queue_imsg_ctl_user(s: &mut Queue, t: ImsgType, imsg: &mut Imsg) {
    let peerid = imsg.hdr.peerid;
    let p_control = ProcType::PROC_CONTROL;
    if t == ImsgType::IMSG_CTL_LIST_MESSAGES {
        let (from, uid) = match imsg.data[..] {
            [a, b, c, d, e, f, g, h] => (
                u32::from_ne_bytes([a, b, c, d]),
                u32::from_ne_bytes([e, f, g, h]),
            ),
            _ => fatalx!("queue_imsg: IMSG_CTL_LIST_MESSAGES: bad size"),
        };
        let n = env().sc_scheduler_max_msg_batch_size;
        let msgids = queue_message_owned(&mut s.backend, uid, from, n);
        let data: Vec<u8> = msgids.iter().flat_map(|id| id.to_ne_bytes()).collect();
        m_compose(s.peers.p(p_control), t, peerid, 0, None, &data);
        return;
    }
    let Ok(b) = <[u8; 12]>::try_from(imsg.data.as_slice()) else {
        fatalx!("queue_imsg: {}: bad size", imsg_to_str(t as u32));
    };
    let id = u64::from_ne_bytes(b[..8].try_into().unwrap_or_default());
    let uid = u32::from_ne_bytes(b[8..].try_into().unwrap_or_default());
    let msgid = if id > 0xffff_ffff {
        evpid_to_msgid(id)
    } else {
        id as u32
    };
    if msgid != 0 && queue_message_owner(&mut s.backend, msgid) == Some(uid) {
        imsg.data.truncate(8);
        m_forward(s.peers.p(ProcType::PROC_SCHEDULER), imsg);
        return;
    }
    // Not theirs: an empty page ends a listing; a removal fails.
    let answer = if t == ImsgType::IMSG_CTL_REMOVE {
        ImsgType::IMSG_CTL_FAIL
    } else {
        t
    };
    m_compose(s.peers.p(p_control), answer, peerid, 0, None, &[]);
}

/// IMSG_CTL_LIST_ENVELOPES from the scheduler: an envelope of smtpctl's
/// listing, loaded and passed on to control with its state; the empty
/// message that ends a page goes on as it is.
fn queue_imsg_list_envelopes(s: &mut Queue, imsg: &mut Imsg) {
    if imsg.data.is_empty() {
        m_forward(s.peers.p(ProcType::PROC_CONTROL), imsg);
        return;
    }
    let mut m = m_msg(imsg);
    let evpid = m_get_evpid(&mut m);
    let flags = m_get_int(&mut m);
    let nexttry = m_get_time(&mut m);
    m_end(&m);
    // The envelope is gone: dropped from the listing.
    let Some(mut evp) = queue_envelope_load(&mut s.backend, evpid) else {
        return;
    };
    // Not exactly right but close, as C says: the last try is recorded
    // on the envelope only when it fails.
    if flags as u32 & EnvelopeFlags::EF_INFLIGHT.bits() != 0 {
        evp.lasttry = nexttry;
    }
    let p = s.peers.p(ProcType::PROC_CONTROL);
    m_create(
        p,
        ImsgType::IMSG_CTL_LIST_ENVELOPES,
        imsg.hdr.peerid,
        0,
        None,
    );
    m_add_int(p, flags);
    m_add_time(p, nexttry);
    m_add_envelope(p, &evp);
    m_close(p);
}

/// IMSG_CTL_DISCOVER_EVPID: `smtpctl discover`, an envelope put in the
/// spool by hand given to the scheduler; control learns how many.
fn queue_imsg_discover_evpid(s: &mut Queue, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let evpid = m_get_evpid(&mut m);
    m_end(&m);
    let n: usize = match queue_envelope_load(&mut s.backend, evpid) {
        None => {
            log_warnx!("queue: discover: failed to load envelope {evpid:016x}");
            0
        }
        Some(evp) => {
            let p = s.peers.p(ProcType::PROC_SCHEDULER);
            m_create(p, ImsgType::IMSG_QUEUE_DISCOVER_EVPID, 0, 0, None);
            m_add_envelope(p, &evp);
            m_close(p);
            let p = s.peers.p(ProcType::PROC_SCHEDULER);
            m_create(p, ImsgType::IMSG_QUEUE_DISCOVER_MSGID, 0, 0, None);
            m_add_msgid(p, evpid_to_msgid(evpid));
            m_close(p);
            1
        }
    };
    let p = s.peers.p(ProcType::PROC_CONTROL);
    m_compose(
        p,
        ImsgType::IMSG_CTL_DISCOVER_EVPID,
        imsg.hdr.peerid,
        0,
        None,
        &n.to_ne_bytes(),
    );
}

/// queue_msgid_walk(): IMSG_CTL_DISCOVER_MSGID, every envelope of a
/// message put in the spool by hand. In one go: C walks one envelope a
/// turn of its loop, from a timer.
fn queue_msgid_walk(s: &mut Queue, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let msgid = m_get_msgid(&mut m);
    m_end(&m);
    let mut w = MessageWalk::new(msgid);
    let mut n: usize = 0;
    loop {
        match queue_message_walk(&mut s.backend, &mut w) {
            QueueWalk::Done => break,
            QueueWalk::Skip => {}
            QueueWalk::Envelope(evp) => {
                let p = s.peers.p(ProcType::PROC_SCHEDULER);
                m_create(p, ImsgType::IMSG_QUEUE_DISCOVER_EVPID, 0, 0, None);
                m_add_envelope(p, &evp);
                m_close(p);
                n += 1;
            }
        }
    }
    if n > 0 {
        let p = s.peers.p(ProcType::PROC_SCHEDULER);
        m_create(p, ImsgType::IMSG_QUEUE_DISCOVER_MSGID, 0, 0, None);
        m_add_msgid(p, msgid);
        m_close(p);
    }
    let p = s.peers.p(ProcType::PROC_CONTROL);
    m_compose(
        p,
        ImsgType::IMSG_CTL_DISCOVER_MSGID,
        imsg.hdr.peerid,
        0,
        None,
        &n.to_ne_bytes(),
    );
}

/// queue_bounce(): a bounce envelope for `e`, in the same message,
/// unless the sender asked for none, `e` is a bounce itself, or there
/// is no one to send it to. It is on disk before `e` goes.
fn queue_bounce(s: &mut Queue, e: &Envelope, d: &DeliveryBounce) {
    if e.dsn_notify.contains(DsnNotify::DSN_NEVER) {
        return;
    }
    let mut b = e.clone();
    b.type_ = DeliveryType::Bounce;
    b.agent_bounce = *d;
    b.retry = 0;
    b.lasttry = 0;
    b.creation = time_now();
    b.ttl = BOUNCE_TTL;
    if b.id == 0 {
        log_warnx!("warn: queue_bounce: evpid=0");
    }
    if evpid_to_msgid(b.id) == 0 {
        log_warnx!("warn: queue_bounce: msgid=0, evpid={:016x}", b.id);
    }
    if e.type_ == DeliveryType::Bounce {
        log_warnx!("warn: queue: double bounce!");
    } else if e.sender.user.is_empty() {
        log_warnx!("warn: queue: no return path!");
    } else if !queue_envelope_create(&mut s.backend, &mut b) {
        log_warnx!("warn: queue: cannot bounce!");
    } else {
        log_debug!(
            "debug: queue: bouncing evp:{:016x} as evp:{:016x}",
            e.id,
            b.id
        );
        queue_scheduler_submit(s, &b);
        queue_scheduler_commit(s, evpid_to_msgid(b.id));
        stat_increment(s.peers.p(ProcType::PROC_CONTROL), "queue.bounce", 1);
    }
}

/// queue_log(): the line of an envelope removed or expired.
fn queue_log(e: &Envelope, prefix: &str, status: &str) {
    let rcpt = if e.rcpt.user != e.dest.user || e.rcpt.domain != e.dest.domain {
        format!("{}@{}", e.rcpt.user, e.rcpt.domain)
    } else {
        "-".to_string()
    };
    log_info!(
        "{}: {} for {:016x}: from=<{}@{}>, to=<{}@{}>, rcpt=<{}>, delay={}, stat={}",
        if e.type_ == DeliveryType::Mda {
            "delivery"
        } else {
            "relay"
        },
        prefix,
        e.id,
        e.sender.user,
        e.sender.domain,
        e.dest.user,
        e.dest.domain,
        rcpt,
        duration_to_text(time_now() - e.creation),
        status
    );
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
    // The counters of the backend, the evpcache and the bounces.
    base.event_set_turn_end(|s: &mut Queue| {
        crate::util::stat_backend::stat_flush(s.peers.p(ProcType::PROC_CONTROL))
    });
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
    let committer = queue_commit_thread(&backend, &mut base);
    let mut s = Queue {
        peers,
        backend,
        commits: Vec::new(),
        commit_ev: None,
        committer,
        walk_msgid: 0,
        bounce: super::bounce::Bounce::default(),
    };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
