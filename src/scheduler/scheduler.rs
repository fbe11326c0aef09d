//! scheduler.c: the process that decides when each envelope is tried,
//! retried, warned about and expired (OpenSMTPD scheduler.c 1.62).
//!
//! The queue tells it about envelopes (submitted, committed, discovered
//! at start-up, delivered, tempfailed, held); a timer asks the backend
//! for the envelopes whose turn has come and hands them to the queue.
//! smtpctl's listings, schedule, remove, pause and resume come through
//! control (pause and resume of mda and mta through the queue).
//!
//! The statistics C keeps here (stat_increment, stat_decrement) wait for
//! stat_backend.c.

use std::time::{Duration, Instant};

use super::scheduler_backend::{
    scheduler_backend_lookup, scheduler_info_conf, Batch, Sched, SchedulerBackend, SchedulerInfo,
};
use crate::config::config::{config_peer, env, Smtpd};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{
    m_add_evpid, m_add_int, m_add_time, m_close, m_compose, m_create, m_end, m_get_evpid, m_get_id,
    m_get_int, m_get_msgid, m_get_u32, m_msg, ImsgType, ProcType,
};
use crate::pathnames::{PATH_CHROOT, SMTPD_USER};
use crate::queue::envelope::{BounceType, DeliveryBounce, DeliveryType, DsnRet, Envelope};
use crate::smtpd::{
    child_imsg_common, child_privdrop, imsg_to_str, Peers, SMTPD_MDA_PAUSED, SMTPD_MTA_PAUSED,
};
use crate::sys::process::exit_now;
use crate::util::log::TRACE_SCHEDULER;
use crate::util::stat_backend::{stat_decrement, stat_increment};
use crate::util::to::duration_to_text;
use crate::util::util::time_now;

pub struct Scheduler {
    peers: Peers,
    backend: Box<dyn SchedulerBackend>,
    /// scheduler_timeout's timer (C's `ev`).
    ev: EventId,
    /// Envelopes handed to the queue and not accounted for yet.
    ninflight: usize,
    /// env->sc_flags, which `smtpctl pause mda|mta` changes: the
    /// configuration is read-only here, so the process keeps its copy.
    sc_flags: u32,
    /// The configuration (env()).
    conf: &'static Smtpd,
}

crate::impl_mproc_owner!(Scheduler, scheduler_imsg);

/// sizeof(struct bounce_req_msg) on LP64.
pub const BOUNCE_REQ_MSG_SIZE: usize = 48;

/// struct bounce_req_msg: a delay warning to send (IMSG_SCHED_ENVELOPE_BOUNCE),
/// exchanged raw as in OpenSMTPD. Its C layout: evpid u64, timestamp
/// time_t, then struct delivery_bounce: type (enum, int), 4 bytes of
/// padding, delay and ttl (time_t), dsn_ret (enum, int, 0 for none),
/// mta_without_dsn (int).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BounceReqMsg {
    pub evpid: u64,
    /// The warning's time: the envelope's lastbounce once sent.
    pub timestamp: i64,
    pub bounce: DeliveryBounce,
}

impl BounceReqMsg {
    /// The C struct's bytes.
    pub fn to_bytes(&self) -> [u8; BOUNCE_REQ_MSG_SIZE] {
        let mut b = [0u8; BOUNCE_REQ_MSG_SIZE];
        let type_: i32 = match self.bounce.type_ {
            BounceType::Failed => 0,
            BounceType::Delayed => 1,
            BounceType::Delivered => 2,
        };
        let dsn_ret: i32 = self.bounce.dsn_ret.map_or(0, |r| r as i32);
        b[0..8].copy_from_slice(&self.evpid.to_ne_bytes());
        b[8..16].copy_from_slice(&self.timestamp.to_ne_bytes());
        b[16..20].copy_from_slice(&type_.to_ne_bytes());
        b[24..32].copy_from_slice(&self.bounce.delay.to_ne_bytes());
        b[32..40].copy_from_slice(&self.bounce.ttl.to_ne_bytes());
        b[40..44].copy_from_slice(&dsn_ret.to_ne_bytes());
        b[44..48].copy_from_slice(&i32::from(self.bounce.mta_without_dsn).to_ne_bytes());
        b
    }

    /// From the C struct's bytes; None for a wrong size or an enum value
    /// out of range.
    pub fn from_bytes(b: &[u8]) -> Option<BounceReqMsg> {
        if b.len() != BOUNCE_REQ_MSG_SIZE {
            return None;
        }
        let i32_at = |o: usize| i32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let i64_at = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let type_ = match i32_at(16) {
            0 => BounceType::Failed,
            1 => BounceType::Delayed,
            2 => BounceType::Delivered,
            _ => return None,
        };
        let dsn_ret = match i32_at(40) {
            0 => None,
            1 => Some(DsnRet::Full),
            2 => Some(DsnRet::Hdrs),
            _ => return None,
        };
        Some(BounceReqMsg {
            evpid: i64_at(0) as u64,
            timestamp: i64_at(8),
            bounce: DeliveryBounce {
                type_,
                delay: i64_at(24),
                ttl: i64_at(32),
                dsn_ret,
                mta_without_dsn: i32_at(44) != 0,
            },
        })
    }
}

/// time(NULL) as of this turn of the loop: the wall clock, less how long
/// the turn has been running, so that the backend sees one time a turn.
fn scheduler_time(base: &EventBase<Scheduler>) -> i64 {
    let behind = Instant::now().saturating_duration_since(base.now());
    time_now() - behind.as_secs() as i64
}

/// scheduler_imsg().
fn scheduler_imsg(
    s: &mut Scheduler,
    base: &mut EventBase<Scheduler>,
    from: ProcType,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else {
        scheduler_shutdown()
    };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    let now = scheduler_time(base);
    use ImsgType::*;
    let Some(t) = ImsgType::from_u32(imsg.hdr.type_) else {
        fatalx!(
            "scheduler_imsg: unexpected {} imsg",
            imsg_to_str(imsg.hdr.type_)
        )
    };
    let mut m = m_msg(&imsg);
    match t {
        IMSG_QUEUE_ENVELOPE_SUBMIT => {
            let evp = crate::ipc::mproc::m_get_envelope(&mut m);
            m_end(&m);
            scheduler_imsg_envelope_submit(s, &evp, now);
        }
        IMSG_QUEUE_MESSAGE_COMMIT => {
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            log_trace!(TRACE_SCHEDULER, "scheduler: committing msg:{msgid:08x}");
            let n = s.backend.commit(msgid, now) as i64;
            scheduler_stat(s, "scheduler.envelope.incoming", -n);
            scheduler_stat(s, "scheduler.envelope", n);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_DISCOVER_EVPID => {
            let evp = crate::ipc::mproc::m_get_envelope(&mut m);
            m_end(&m);
            scheduler_imsg_discover_evpid(s, &evp, now);
        }
        IMSG_QUEUE_DISCOVER_MSGID => {
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            if s.backend.query(u64::from(msgid)) {
                log_debug!("debug: scheduler: msgid:{msgid:08x} already scheduled");
                return;
            }
            log_trace!(TRACE_SCHEDULER, "scheduler: committing msg:{msgid:08x}");
            let n = s.backend.commit(msgid, now) as i64;
            scheduler_stat(s, "scheduler.envelope.incoming", -n);
            scheduler_stat(s, "scheduler.envelope", n);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_MESSAGE_ROLLBACK => {
            let msgid = m_get_msgid(&mut m);
            m_end(&m);
            log_trace!(TRACE_SCHEDULER, "scheduler: aborting msg:{msgid:08x}");
            let n = s.backend.rollback(msgid, now) as i64;
            scheduler_stat(s, "scheduler.envelope.incoming", -n);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_ENVELOPE_REMOVE => {
            let evpid = m_get_evpid(&mut m);
            let inflight = m_get_u32(&mut m);
            m_end(&m);
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: queue requested removal of evp:{evpid:016x}"
            );
            scheduler_stat(s, "scheduler.envelope", -1);
            if inflight == 0 {
                s.backend.remove(evpid, now);
            } else {
                s.backend.delete(evpid, now);
                scheduler_inflight_done(s);
            }
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_ENVELOPE_ACK => {
            let evpid = m_get_evpid(&mut m);
            m_end(&m);
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: queue ack removal of evp:{evpid:016x}"
            );
            scheduler_inflight_done(s);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_DELIVERY_OK | IMSG_QUEUE_DELIVERY_PERMFAIL | IMSG_QUEUE_DELIVERY_LOOP => {
            let evpid = m_get_evpid(&mut m);
            m_end(&m);
            let why = match t {
                IMSG_QUEUE_DELIVERY_OK => "ok",
                IMSG_QUEUE_DELIVERY_PERMFAIL => "fail",
                _ => "loop",
            };
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: deleting evp:{evpid:016x} ({why})"
            );
            let key = match t {
                IMSG_QUEUE_DELIVERY_OK => "scheduler.delivery.ok",
                IMSG_QUEUE_DELIVERY_PERMFAIL => "scheduler.delivery.permfail",
                _ => "scheduler.delivery.loop",
            };
            scheduler_stat(s, key, 1);
            scheduler_stat(s, "scheduler.envelope", -1);
            s.backend.delete(evpid, now);
            scheduler_inflight_done(s);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_DELIVERY_TEMPFAIL => {
            let evp = crate::ipc::mproc::m_get_envelope(&mut m);
            m_end(&m);
            scheduler_imsg_delivery_tempfail(s, &evp, now);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_HOLDQ_HOLD => {
            let evpid = m_get_evpid(&mut m);
            let holdq = m_get_id(&mut m);
            m_end(&m);
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: holding evp:{evpid:016x} on {holdq:016x}"
            );
            s.backend.hold(evpid, holdq, now);
            scheduler_inflight_done(s);
            scheduler_reset_events(s, base);
        }
        IMSG_QUEUE_HOLDQ_RELEASE => {
            let type_ = m_get_int(&mut m);
            let holdq = m_get_id(&mut m);
            let r = m_get_int(&mut m);
            m_end(&m);
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: releasing {r} on holdq ({type_}, {holdq:016x})"
            );
            s.backend
                .release(scheduler_delivery_type(type_), holdq, r, now);
            scheduler_reset_events(s, base);
        }
        IMSG_CTL_PAUSE_MDA | IMSG_CTL_PAUSE_MTA => {
            let (flag, what) = if t == IMSG_CTL_PAUSE_MDA {
                (SMTPD_MDA_PAUSED, "mda")
            } else {
                (SMTPD_MTA_PAUSED, "mta")
            };
            log_trace!(TRACE_SCHEDULER, "scheduler: pausing {what}");
            s.sc_flags |= flag;
        }
        IMSG_CTL_RESUME_MDA | IMSG_CTL_RESUME_MTA => {
            let (flag, what) = if t == IMSG_CTL_RESUME_MDA {
                (SMTPD_MDA_PAUSED, "mda")
            } else {
                (SMTPD_MTA_PAUSED, "mta")
            };
            log_trace!(TRACE_SCHEDULER, "scheduler: resuming {what}");
            s.sc_flags &= !flag;
            scheduler_reset_events(s, base);
        }
        IMSG_CTL_LIST_MESSAGES => scheduler_imsg_list_messages(s, from, &imsg),
        IMSG_CTL_LIST_ENVELOPES => scheduler_imsg_list_envelopes(s, &imsg),
        IMSG_CTL_SCHEDULE | IMSG_CTL_REMOVE | IMSG_CTL_PAUSE_EVP | IMSG_CTL_RESUME_EVP => {
            scheduler_imsg_ctl_evp(s, base, from, t, &imsg, now)
        }
        IMSG_QUEUE_ENVELOPE_SCHEDULE => {
            let id = m_get_evpid(&mut m);
            m_end(&m);
            s.backend.schedule(id, now);
            scheduler_reset_events(s, base);
        }
        _ => fatalx!("scheduler_imsg: unexpected {} imsg", imsg_to_str(t as u32)),
    }
}

/// IMSG_QUEUE_ENVELOPE_SUBMIT: an envelope of a message being received.
fn scheduler_imsg_envelope_submit(s: &mut Scheduler, evp: &Envelope, now: i64) {
    log_trace!(TRACE_SCHEDULER, "scheduler: inserting evp:{:016x}", evp.id);
    let mut si = SchedulerInfo::default();
    scheduler_info_conf(s.conf, &mut si, evp);
    scheduler_stat(s, "scheduler.envelope.incoming", 1);
    s.backend.insert(&mut si, now);
}

/// IMSG_QUEUE_DISCOVER_EVPID: an envelope found in the spool at
/// start-up (or by `smtpctl discover`), unless already queued.
fn scheduler_imsg_discover_evpid(s: &mut Scheduler, evp: &Envelope, now: i64) {
    if s.backend.query(evp.id) {
        log_debug!("debug: scheduler: evp:{:016x} already scheduled", evp.id);
        return;
    }
    log_trace!(
        TRACE_SCHEDULER,
        "scheduler: discovering evp:{:016x}",
        evp.id
    );
    let mut si = SchedulerInfo::default();
    scheduler_info_conf(s.conf, &mut si, evp);
    scheduler_stat(s, "scheduler.envelope.incoming", 1);
    s.backend.insert(&mut si, now);
}

/// IMSG_QUEUE_DELIVERY_TEMPFAIL: the envelope is retried later; if its
/// next try falls after a bounce-warn delay not yet warned about, the
/// queue sends the sender a delay notice.
fn scheduler_imsg_delivery_tempfail(s: &mut Scheduler, evp: &Envelope, now: i64) {
    log_trace!(TRACE_SCHEDULER, "scheduler: updating evp:{:016x}", evp.id);
    scheduler_stat(s, "scheduler.delivery.tempfail", 1);
    let mut si = SchedulerInfo::default();
    scheduler_info_conf(s.conf, &mut si, evp);
    s.backend.update(&mut si, now);
    scheduler_inflight_done(s);

    for &warn in s.conf.sc_bounce_warn.iter().take_while(|&&w| w != 0) {
        let timestamp = si.creation + warn;
        if si.nexttry >= timestamp && si.lastbounce < timestamp {
            let req = BounceReqMsg {
                evpid: evp.id,
                timestamp,
                bounce: DeliveryBounce {
                    type_: BounceType::Delayed,
                    delay: warn,
                    ttl: si.ttl,
                    // C leaves these two uninitialised.
                    dsn_ret: None,
                    mta_without_dsn: false,
                },
            };
            m_compose(
                s.peers.p(ProcType::PROC_QUEUE),
                ImsgType::IMSG_SCHED_ENVELOPE_BOUNCE,
                0,
                0,
                None,
                &req.to_bytes(),
            );
            break;
        }
    }
}

/// IMSG_CTL_LIST_MESSAGES: a page of message ids from the one asked for
/// on, straight back to control.
fn scheduler_imsg_list_messages(s: &mut Scheduler, from: ProcType, imsg: &Imsg) {
    let msgids = match scheduler_ctl_arg::<4>(imsg) {
        Some(b) => s.backend.messages(
            u32::from_ne_bytes(b),
            s.conf.sc_scheduler_max_msg_batch_size,
        ),
        // An empty page ends smtpctl's listing.
        None => Vec::new(),
    };
    let data: Vec<u8> = msgids.iter().flat_map(|id| id.to_ne_bytes()).collect();
    m_compose(
        s.peers.p(from),
        ImsgType::IMSG_CTL_LIST_MESSAGES,
        imsg.hdr.peerid,
        0,
        None,
        &data,
    );
}

/// IMSG_CTL_LIST_ENVELOPES: a page of one message's envelopes from the
/// one asked for on, through the queue, which adds each envelope and
/// passes it on to control; an empty message ends the page.
fn scheduler_imsg_list_envelopes(s: &mut Scheduler, imsg: &Imsg) {
    let states = match scheduler_ctl_arg::<8>(imsg) {
        Some(b) => s.backend.envelopes(
            u64::from_ne_bytes(b),
            s.conf.sc_scheduler_max_evp_batch_size,
        ),
        None => Vec::new(),
    };
    let p_queue = s.peers.p(ProcType::PROC_QUEUE);
    for st in states {
        m_create(
            p_queue,
            ImsgType::IMSG_CTL_LIST_ENVELOPES,
            imsg.hdr.peerid,
            0,
            None,
        );
        m_add_evpid(p_queue, st.evpid);
        m_add_int(p_queue, st.flags.bits() as i32);
        m_add_time(p_queue, st.time);
        m_close(p_queue);
    }
    m_compose(
        p_queue,
        ImsgType::IMSG_CTL_LIST_ENVELOPES,
        imsg.hdr.peerid,
        0,
        None,
        &[],
    );
}

/// IMSG_CTL_SCHEDULE, IMSG_CTL_REMOVE, IMSG_CTL_PAUSE_EVP and
/// IMSG_CTL_RESUME_EVP: on an envelope, or on every envelope of a
/// message; IMSG_CTL_OK if any was concerned.
fn scheduler_imsg_ctl_evp(
    s: &mut Scheduler,
    base: &mut EventBase<Scheduler>,
    from: ProcType,
    t: ImsgType,
    imsg: &Imsg,
    now: i64,
) {
    let r = match scheduler_ctl_arg::<8>(imsg) {
        Some(b) => {
            let id = u64::from_ne_bytes(b);
            let what = match t {
                ImsgType::IMSG_CTL_SCHEDULE => "scheduling",
                ImsgType::IMSG_CTL_REMOVE => "removing",
                ImsgType::IMSG_CTL_PAUSE_EVP => "suspending",
                _ => "resuming",
            };
            if id <= 0xffff_ffff {
                log_debug!("debug: scheduler: {what} msg:{id:08x}");
            } else {
                log_debug!("debug: scheduler: {what} evp:{id:016x}");
            }
            let r = match t {
                ImsgType::IMSG_CTL_SCHEDULE => s.backend.schedule(id, now),
                ImsgType::IMSG_CTL_REMOVE => s.backend.remove(id, now),
                ImsgType::IMSG_CTL_PAUSE_EVP => s.backend.suspend(id, now),
                _ => s.backend.resume(id, now),
            };
            scheduler_reset_events(s, base);
            r
        }
        None => 0,
    };
    let answer = if r != 0 {
        ImsgType::IMSG_CTL_OK
    } else {
        ImsgType::IMSG_CTL_FAIL
    };
    m_compose(s.peers.p(from), answer, imsg.hdr.peerid, 0, None, &[]);
}

/// The id at the start of a request smtpctl sent through control (C reads
/// it in place: `*(uint64_t *)imsg->data`). Control passes the client's
/// bytes on unchecked, so a short request is the client's fault, and must
/// not stop the daemon: it is refused.
fn scheduler_ctl_arg<const N: usize>(imsg: &Imsg) -> Option<[u8; N]> {
    let arg = imsg.data.get(..N).and_then(|b| b.try_into().ok());
    if arg.is_none() {
        log_warnx!(
            "warn: scheduler: {} request too short",
            imsg_to_str(imsg.hdr.type_)
        );
    }
    arg
}

/// The delivery type of IMSG_QUEUE_HOLDQ_RELEASE (enum delivery_type).
fn scheduler_delivery_type(v: i32) -> DeliveryType {
    match v {
        0 => DeliveryType::Mda,
        1 => DeliveryType::Mta,
        2 => DeliveryType::Bounce,
        _ => fatalx!("scheduler: bad delivery type {v}"),
    }
}

/// One envelope handed out is accounted for (`ninflight -= 1`).
fn scheduler_inflight_done(s: &mut Scheduler) {
    // C's size_t would wrap and stop all scheduling; a stray answer from
    // the queue should not.
    s.ninflight = s.ninflight.saturating_sub(1);
    scheduler_stat(s, "scheduler.envelope.inflight", -1);
}

/// stat_increment() or stat_decrement() of a counter in control.
fn scheduler_stat(s: &mut Scheduler, key: &str, delta: i64) {
    let p = s.peers.p(ProcType::PROC_CONTROL);
    if delta >= 0 {
        stat_increment(p, key, delta as usize);
    } else {
        stat_decrement(p, key, delta.unsigned_abs() as usize);
    }
}

/// scheduler_shutdown().
fn scheduler_shutdown() -> ! {
    log_debug!("debug: scheduler agent exiting");
    exit_now(0)
}

/// scheduler_reset_events(): run scheduler_timeout on the next turn.
fn scheduler_reset_events(s: &mut Scheduler, base: &mut EventBase<Scheduler>) {
    base.event_del(s.ev);
    if let Err(e) = base.evtimer_add(s.ev, Duration::ZERO) {
        fatal!(e, "scheduler_reset_events: evtimer_add");
    }
}

/// scheduler(): the process's main. `backend_scheduler` is `-B
/// scheduler=`'s name.
pub fn scheduler(mut peers: Peers, backend_scheduler: &str) -> ! {
    let Some(mut backend) = scheduler_backend_lookup(backend_scheduler) else {
        fatalx!(
            "cannot find scheduler backend \"{backend_scheduler}\": \
             only \"ramqueue\" and \"null\" exist, external (proc) backends are not supported"
        )
    };
    // Before the chroot, as in C.
    backend.init(backend_scheduler);
    child_privdrop(
        "scheduler",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_SCHEDULER,
        false,
    );
    let mut base = EventBase::new();
    // The counters of the backend (scheduler.ramqueue.*).
    base.event_set_turn_end(|s: &mut Scheduler| {
        crate::util::stat_backend::stat_flush(s.peers.p(ProcType::PROC_CONTROL))
    });
    for p in [ProcType::PROC_CONTROL, ProcType::PROC_QUEUE] {
        config_peer(&mut base, &mut peers, p);
    }
    let ev = base.evtimer_set(scheduler_timeout, 0);
    let conf = env();
    let mut s = Scheduler {
        peers,
        backend,
        ev,
        ninflight: 0,
        // Nothing relays yet (the MTA is a later issue): the scheduler
        // holds every relayed envelope as if the MTA were paused.
        sc_flags: conf.sc_flags | SMTPD_MTA_PAUSED,
        conf,
    };
    scheduler_reset_events(&mut s, &mut base);

    if let Err(e) = crate::sys::pledge::pledge("stdio", None) {
        fatal!(e, "pledge");
    }
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}

/// scheduler_timeout(): hands the queue what the backend finds ready,
/// and sets the timer for the next look.
fn scheduler_timeout(
    s: &mut Scheduler,
    base: &mut EventBase<Scheduler>,
    _fd: i32,
    _event: EvFlags,
    _arg: u64,
) {
    let now = scheduler_time(base);
    let mut mask = Sched::SCHED_UPDATE;

    if s.ninflight < s.conf.sc_scheduler_max_inflight {
        mask |= Sched::SCHED_EXPIRE | Sched::SCHED_REMOVE | Sched::SCHED_BOUNCE;
        if s.sc_flags & SMTPD_MDA_PAUSED == 0 {
            mask |= Sched::SCHED_MDA;
        }
        if s.sc_flags & SMTPD_MTA_PAUSED == 0 {
            mask |= Sched::SCHED_MTA;
        }
    }

    let count = s.conf.sc_scheduler_max_schedule;
    log_trace!(
        TRACE_SCHEDULER,
        "scheduler: getting batch: mask=0x{:x}, count={count}",
        mask.bits()
    );

    let batch = match s.backend.batch(mask, count, now) {
        Batch::Wait(delay) => {
            log_trace!(
                TRACE_SCHEDULER,
                "scheduler: got r=0, delay={}, count={count}",
                delay.unwrap_or(-1)
            );
            match delay {
                None => log_trace!(TRACE_SCHEDULER, "scheduler: sleeping"),
                Some(d) => {
                    log_trace!(
                        TRACE_SCHEDULER,
                        "scheduler: waiting for {}",
                        duration_to_text(d)
                    );
                    let d = Duration::from_secs(d.max(0) as u64);
                    if let Err(e) = base.evtimer_add(s.ev, d) {
                        fatal!(e, "scheduler_timeout: evtimer_add");
                    }
                }
            }
            return;
        }
        Batch::Envelopes(batch) => batch,
    };
    log_trace!(
        TRACE_SCHEDULER,
        "scheduler: got r=1, delay=0, count={}",
        batch.len()
    );

    let mut d_inflight = 0;
    let (mut d_removed, mut d_expired, mut d_updated) = (0, 0, 0);
    let p_queue = s.peers.p(ProcType::PROC_QUEUE);
    for (kind, evpid) in batch {
        let (imsg, what) = match kind {
            Sched::SCHED_REMOVE => {
                d_removed += 1;
                (ImsgType::IMSG_SCHED_ENVELOPE_REMOVE, "removed")
            }
            Sched::SCHED_EXPIRE => {
                d_expired += 1;
                (ImsgType::IMSG_SCHED_ENVELOPE_EXPIRE, "expired")
            }
            Sched::SCHED_UPDATE => {
                log_debug!("debug: scheduler: evp:{evpid:016x} scheduled (update)");
                d_updated += 1;
                continue;
            }
            Sched::SCHED_BOUNCE => (ImsgType::IMSG_SCHED_ENVELOPE_INJECT, "scheduled (bounce)"),
            Sched::SCHED_MDA => (ImsgType::IMSG_SCHED_ENVELOPE_DELIVER, "scheduled (mda)"),
            Sched::SCHED_MTA => (ImsgType::IMSG_SCHED_ENVELOPE_TRANSFER, "scheduled (mta)"),
            _ => fatalx!("scheduler: bad batch type 0x{:x}", kind.bits()),
        };
        log_debug!("debug: scheduler: evp:{evpid:016x} {what}");
        m_create(p_queue, imsg, 0, 0, None);
        m_add_evpid(p_queue, evpid);
        m_close(p_queue);
        d_inflight += 1;
    }
    s.ninflight += d_inflight;
    scheduler_stat(s, "scheduler.envelope", -(d_removed + d_expired));
    scheduler_stat(s, "scheduler.envelope.inflight", d_inflight as i64);
    scheduler_stat(s, "scheduler.envelope.expired", d_expired);
    scheduler_stat(s, "scheduler.envelope.removed", d_removed);
    scheduler_stat(s, "scheduler.envelope.updated", d_updated);

    if let Err(e) = base.evtimer_add(s.ev, Duration::ZERO) {
        fatal!(e, "scheduler_timeout: evtimer_add");
    }
}

#[cfg(test)]
mod tests;
