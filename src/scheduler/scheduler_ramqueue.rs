//! scheduler_ramqueue.c: the in-memory scheduler, smtpd's default backend
//! (OpenSMTPD scheduler_ramqueue.c 1.49).
//!
//! Envelopes live in one map by id, committed or not; a queue
//! (`RqQueue`) holds messages as sets of envelope ids and C's TAILQs as
//! `Evplist`s of ids. Each envelope records the list that holds it and
//! its place there (C's TAILQ_ENTRY), so that it is unlinked from wherever
//! it is. C's q_priotree and q_pending hold the same envelopes in the same
//! order (sorted_insert keeps the list in tree order), so one ordered set
//! is both here. C's `currtime`, time(NULL) at the start of each call,
//! is the `now` each call takes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bitflags::bitflags;

use super::scheduler_backend::{Batch, Evpstate, Sched, SchedulerBackend, SchedulerInfo};
use crate::queue::envelope::{evpid_to_msgid, DeliveryType, EnvelopeFlags};
use crate::util::log::{tracing, TRACE_SCHEDULER};
use crate::util::stat_backend::stat_note;
use crate::util::to::duration_to_text;

/// Retry steps: an envelope is tried at creation + base * step², the
/// first such time after now.
const BACKOFF_TRANSFER: i64 = 400;
const BACKOFF_DELIVERY: i64 = 10;
const BACKOFF_OVERFLOW: i64 = 3;

/// A hold queue takes this many envelopes; more are retried later.
const HOLDQ_MAXSIZE: usize = 1000;

/// At most this many pending envelopes are scheduled per call.
const SCHEDULEMAX: usize = 1024;

/// RQ_EVPSTATE_*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RqEvpstate {
    Pending,
    Scheduled,
    Inflight,
    Held,
}

bitflags! {
    /// RQ_ENVELOPE_*.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct RqFlags: u8 {
        const RQ_ENVELOPE_EXPIRED = 0x01;
        const RQ_ENVELOPE_REMOVED = 0x02;
        const RQ_ENVELOPE_SUSPEND = 0x04;
        const RQ_ENVELOPE_UPDATE = 0x08;
        const RQ_ENVELOPE_OVERFLOW = 0x10;
    }
}

/// The lists an envelope can be on: those of struct rq_queue, and its
/// hold queue (struct rq_holdq, found by type and `holdq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RqList {
    /// q_pending and q_priotree; the place is the envelope's sort key.
    Pending,
    Inflight,
    Mta,
    Mda,
    Bounce,
    Update,
    Expired,
    Removed,
    Holdq,
}

/// TAILQ_HEAD(evplist, rq_envelope): envelope ids in order. Places grow
/// towards the tail and shrink towards the head.
#[derive(Debug, Default)]
struct Evplist {
    q: BTreeMap<i64, u64>,
    head: i64,
    tail: i64,
}

impl Evplist {
    fn insert_tail(&mut self, evpid: u64) -> i64 {
        self.tail += 1;
        self.q.insert(self.tail, evpid);
        self.tail
    }

    fn insert_head(&mut self, evpid: u64) -> i64 {
        let place = self.head;
        self.head -= 1;
        self.q.insert(place, evpid);
        place
    }

    fn remove(&mut self, place: i64) {
        self.q.remove(&place);
    }

    fn first(&self) -> Option<u64> {
        self.q.values().next().copied()
    }

    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    fn len(&self) -> usize {
        self.q.len()
    }
}

/// struct rq_message.
#[derive(Debug)]
struct RqMessage {
    msgid: u32,
    envelopes: BTreeSet<u64>,
}

/// struct rq_envelope.
#[derive(Clone, Copy, Debug)]
struct RqEnvelope {
    /// The list holding it and its place there; None when on no list
    /// (suspended, or between two lists).
    entry: Option<(RqList, i64)>,
    evpid: u64,
    holdq: u64,
    type_: DeliveryType,
    state: RqEvpstate,
    flags: RqFlags,
    ctime: i64,
    sched: i64,
    expire: i64,
    t_inflight: i64,
    t_scheduled: i64,
}

/// struct rq_holdq (its count is the list's length).
#[derive(Debug, Default)]
struct RqHoldq {
    q: Evplist,
}

/// struct rq_queue: the committed queue, or a message being inserted.
#[derive(Debug, Default)]
struct RqQueue {
    evpcount: usize,
    messages: BTreeMap<u32, RqMessage>,
    /// (min(sched, expire), evpid): rq_envelope_cmp's order.
    q_pending: BTreeSet<(i64, u64)>,
    q_inflight: Evplist,
    q_mta: Evplist,
    q_mda: Evplist,
    q_bounce: Evplist,
    q_update: Evplist,
    q_expired: Evplist,
    q_removed: Evplist,
}

impl RqQueue {
    fn list(&mut self, l: RqList) -> &mut Evplist {
        match l {
            RqList::Inflight => &mut self.q_inflight,
            RqList::Mta => &mut self.q_mta,
            RqList::Mda => &mut self.q_mda,
            RqList::Bounce => &mut self.q_bounce,
            RqList::Update => &mut self.q_update,
            RqList::Expired => &mut self.q_expired,
            RqList::Removed => &mut self.q_removed,
            RqList::Pending | RqList::Holdq => fatalx!("rq_queue: {l:?} is not a list"),
        }
    }
}

/// The hold queues by delivery type (D_MDA, D_MTA, D_BOUNCE), then by id.
type Holdqs = [BTreeMap<u64, RqHoldq>; 3];

/// The ramqueue backend: C's file-level state.
#[derive(Debug, Default)]
pub struct SchedulerRam {
    /// Every envelope, of committed messages and of messages being
    /// inserted.
    envelopes: HashMap<u64, RqEnvelope>,
    ramqueue: RqQueue,
    /// Messages being inserted, by message id, until commit or rollback.
    updates: BTreeMap<u32, RqQueue>,
    holdqs: Holdqs,
}

/// scheduler_backoff().
fn scheduler_backoff(t0: i64, base: i64, step: u32) -> i64 {
    let step = i64::from(step);
    t0 + base * step * step
}

/// scheduler_next(): the first backoff step from `step` on that falls
/// after `currtime`.
fn scheduler_next(t0: i64, base: i64, mut step: u32, currtime: i64) -> i64 {
    loop {
        let t = scheduler_backoff(t0, base, step);
        if t > currtime {
            return t;
        }
        step += 1;
    }
}

impl SchedulerRam {
    pub fn new() -> SchedulerRam {
        SchedulerRam::default()
    }
}

impl SchedulerBackend for SchedulerRam {
    /// scheduler_ram_init().
    fn init(&mut self, _arg: &str) -> bool {
        *self = SchedulerRam::default();
        true
    }

    /// scheduler_ram_insert().
    fn insert(&mut self, si: &mut SchedulerInfo, _now: i64) -> bool {
        let msgid = evpid_to_msgid(si.evpid);

        let update = self.updates.entry(msgid).or_insert_with(|| {
            stat_note("scheduler.ramqueue.update", 1);
            RqQueue::default()
        });
        let message = update.messages.entry(msgid).or_insert_with(|| {
            stat_note("scheduler.ramqueue.message", 1);
            RqMessage {
                msgid,
                envelopes: BTreeSet::new(),
            }
        });
        if !message.envelopes.insert(si.evpid) || self.envelopes.contains_key(&si.evpid) {
            fatalx!("tree_xset: evp:{:016x} already queued", si.evpid);
        }
        let base = if si.type_ == DeliveryType::Mta {
            BACKOFF_TRANSFER
        } else {
            BACKOFF_DELIVERY
        };
        let mut envelope = RqEnvelope {
            entry: None,
            evpid: si.evpid,
            holdq: 0,
            type_: si.type_,
            state: RqEvpstate::Pending,
            flags: RqFlags::empty(),
            ctime: si.creation,
            sched: scheduler_backoff(si.creation, base, u32::from(si.retry)),
            expire: si.creation + si.ttl,
            t_inflight: 0,
            t_scheduled: 0,
        };
        update.evpcount += 1;
        stat_note("scheduler.ramqueue.envelope", 1);
        // C appends to the update's q_pending; the order there does not
        // matter, since commit sorts every envelope into the queue.
        sorted_insert(update, &mut envelope);
        si.nexttry = envelope.sched;
        self.envelopes.insert(si.evpid, envelope);
        true
    }

    /// scheduler_ram_commit().
    fn commit(&mut self, msgid: u32, now: i64) -> usize {
        let Some(mut update) = self.updates.remove(&msgid) else {
            fatalx!("tree_xpop: msg:{msgid:08x} not found")
        };
        let r = update.evpcount;

        if tracing() & TRACE_SCHEDULER != 0 {
            rq_queue_dump(&update, &self.envelopes, "update to commit", now);
        }
        rq_queue_merge(&mut self.ramqueue, &mut update, &mut self.envelopes);
        if tracing() & TRACE_SCHEDULER != 0 {
            rq_queue_dump(&self.ramqueue, &self.envelopes, "resulting queue", now);
        }
        rq_queue_schedule(
            &mut self.ramqueue,
            &mut self.holdqs,
            &mut self.envelopes,
            now,
        );
        stat_note("scheduler.ramqueue.update", -1);
        r
    }

    /// scheduler_ram_rollback().
    fn rollback(&mut self, msgid: u32, _now: i64) -> usize {
        let Some(mut update) = self.updates.remove(&msgid) else {
            return 0;
        };
        let r = update.evpcount;
        while let Some(&(key, evpid)) = update.q_pending.first() {
            update.q_pending.remove(&(key, evpid));
            rq_envelope_delete(&mut update, &mut self.envelopes, evpid);
        }
        stat_note("scheduler.ramqueue.update", -1);
        r
    }

    /// scheduler_ram_update().
    fn update(&mut self, si: &mut SchedulerInfo, now: i64) -> bool {
        let rq = &mut self.ramqueue;
        let evp = rq_xget(rq, &mut self.envelopes, si.evpid);

        // It *must* be in flight.
        if evp.state != RqEvpstate::Inflight {
            fatalx!("evp:{:016x} not in-flight", si.evpid);
        }
        rq_unlink(rq, evp);

        // Removed while in flight: remove it now.
        if evp.flags.contains(RqFlags::RQ_ENVELOPE_REMOVED) {
            rq_link_tail(rq, RqList::Removed, evp);
            evp.state = RqEvpstate::Scheduled;
            evp.t_scheduled = now;
            return true;
        }

        let base = if si.type_ == DeliveryType::Mta {
            BACKOFF_TRANSFER
        } else {
            BACKOFF_DELIVERY
        };
        evp.sched = scheduler_next(evp.ctime, base, u32::from(si.retry), now);
        evp.state = RqEvpstate::Pending;
        if !evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
            sorted_insert(rq, evp);
        }
        si.nexttry = evp.sched;
        true
    }

    /// scheduler_ram_delete().
    fn delete(&mut self, evpid: u64, _now: i64) -> bool {
        let rq = &mut self.ramqueue;
        let evp = rq_xget(rq, &mut self.envelopes, evpid);

        if evp.state != RqEvpstate::Inflight {
            fatalx!("evp:{evpid:016x} not in-flight");
        }
        rq_unlink(rq, evp);
        rq_envelope_delete(rq, &mut self.envelopes, evpid);
        true
    }

    /// scheduler_ram_hold().
    fn hold(&mut self, evpid: u64, holdq: u64, _now: i64) -> bool {
        let rq = &mut self.ramqueue;
        let evp = rq_xget(rq, &mut self.envelopes, evpid);

        if evp.state != RqEvpstate::Inflight {
            fatalx!("evp:{evpid:016x} not in-flight");
        }
        rq_unlink(rq, evp);

        // Suspended: just pending, until resumed.
        if evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
            evp.state = RqEvpstate::Pending;
            return false;
        }

        let hq = self.holdqs[evp.type_ as usize]
            .entry(holdq)
            .or_insert_with(|| {
                stat_note("scheduler.ramqueue.holdq", 1);
                RqHoldq::default()
            });

        // The hold queue is full: "tempfail" the envelope.
        if hq.q.len() >= HOLDQ_MAXSIZE {
            evp.state = RqEvpstate::Pending;
            evp.flags |= RqFlags::RQ_ENVELOPE_UPDATE | RqFlags::RQ_ENVELOPE_OVERFLOW;
            sorted_insert(rq, evp);
            stat_note("scheduler.ramqueue.hold-overflow", 1);
            return false;
        }

        evp.state = RqEvpstate::Held;
        evp.holdq = holdq;
        // At the head: release() takes from the head, and the pending
        // queue sorts them again anyway.
        evp.entry = Some((RqList::Holdq, hq.q.insert_head(evpid)));
        stat_note("scheduler.ramqueue.hold", 1);
        true
    }

    /// scheduler_ram_release().
    fn release(&mut self, type_: DeliveryType, holdq: u64, n: i32, _now: i64) -> usize {
        let holdqs = &mut self.holdqs[type_ as usize];
        let Some(hq) = holdqs.get_mut(&holdq) else {
            return 0;
        };
        // -1: all of them, as updates.
        let (n, update) = if n == -1 { (0, true) } else { (n, false) };

        let mut i = 0;
        while n == 0 || i < n {
            let Some(evpid) = hq.q.first() else { break };
            let Some(evp) = self.envelopes.get_mut(&evpid) else {
                fatalx!("release: evp:{evpid:016x} unknown")
            };
            rq_holdq_unlink(hq, evp);
            evp.holdq = 0;

            // Released envelopes are rescheduled at once.
            evp.state = RqEvpstate::Pending;
            if update {
                evp.flags |= RqFlags::RQ_ENVELOPE_UPDATE;
            }
            sorted_insert(&mut self.ramqueue, evp);
            i += 1;
        }
        if hq.q.is_empty() {
            holdqs.remove(&holdq);
            stat_note("scheduler.ramqueue.holdq", -1);
        }
        stat_note("scheduler.ramqueue.hold", -i64::from(i));
        i as usize
    }

    /// scheduler_ram_batch(): takes envelopes off their lists in rounds,
    /// one of each allowed kind per round, in the order REMOVE, EXPIRE,
    /// UPDATE, BOUNCE, MDA, MTA, until `count` or nothing is left.
    fn batch(&mut self, mask: Sched, count: usize, now: i64) -> Batch {
        let rq = &mut self.ramqueue;
        rq_queue_schedule(rq, &mut self.holdqs, &mut self.envelopes, now);
        if tracing() & TRACE_SCHEDULER != 0 {
            rq_queue_dump(rq, &self.envelopes, "scheduler_ram_batch()", now);
        }

        let kinds = [
            (Sched::SCHED_REMOVE, RqList::Removed),
            (Sched::SCHED_EXPIRE, RqList::Expired),
            (Sched::SCHED_UPDATE, RqList::Update),
            (Sched::SCHED_BOUNCE, RqList::Bounce),
            (Sched::SCHED_MDA, RqList::Mda),
            (Sched::SCHED_MTA, RqList::Mta),
        ];
        let mut out = Vec::new();
        let mut n = 0;
        'rounds: loop {
            for (kind, list) in kinds {
                if !mask.contains(kind) {
                    continue;
                }
                let Some(evpid) = rq.list(list).first() else {
                    continue;
                };
                let evp = rq_xget(rq, &mut self.envelopes, evpid);
                rq_unlink(rq, evp);
                out.push((kind, evpid));

                if kind == Sched::SCHED_REMOVE || kind == Sched::SCHED_EXPIRE {
                    rq_envelope_delete(rq, &mut self.envelopes, evpid);
                } else if kind == Sched::SCHED_UPDATE {
                    let t = if evp.flags.contains(RqFlags::RQ_ENVELOPE_OVERFLOW) {
                        BACKOFF_OVERFLOW
                    } else if evp.type_ == DeliveryType::Mta {
                        BACKOFF_TRANSFER
                    } else {
                        BACKOFF_DELIVERY
                    };
                    evp.sched = scheduler_next(evp.ctime, t, 0, now);
                    evp.flags
                        .remove(RqFlags::RQ_ENVELOPE_UPDATE | RqFlags::RQ_ENVELOPE_OVERFLOW);
                    evp.state = RqEvpstate::Pending;
                    if !evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
                        sorted_insert(rq, evp);
                    }
                } else {
                    rq_link_tail(rq, RqList::Inflight, evp);
                    evp.state = RqEvpstate::Inflight;
                    evp.t_inflight = now;
                }
                if out.len() == count {
                    break 'rounds;
                }
            }
            // Nothing seen this round.
            if out.len() == n {
                break;
            }
            n = out.len();
        }

        if !out.is_empty() {
            return Batch::Envelopes(out);
        }
        match rq.q_pending.first() {
            Some(&(_, evpid)) => {
                let evp = &self.envelopes[&evpid];
                let t = evp.sched.min(evp.expire);
                Batch::Wait(Some(if t < now { 0 } else { t - now }))
            }
            None => Batch::Wait(None),
        }
    }

    /// scheduler_ram_messages().
    fn messages(&self, from: u32, size: usize) -> Vec<u32> {
        self.ramqueue
            .messages
            .range(from..)
            .take(size)
            .map(|(&id, _)| id)
            .collect()
    }

    /// scheduler_ram_envelopes().
    fn envelopes(&self, from: u64, size: usize) -> Vec<Evpstate> {
        let Some(msg) = self.ramqueue.messages.get(&evpid_to_msgid(from)) else {
            return Vec::new();
        };
        let mut dst = Vec::new();
        for evpid in msg.envelopes.range(from..) {
            if dst.len() == size {
                break;
            }
            let evp = &self.envelopes[evpid];
            if evp
                .flags
                .intersects(RqFlags::RQ_ENVELOPE_REMOVED | RqFlags::RQ_ENVELOPE_EXPIRED)
            {
                continue;
            }
            let (time, mut flags) = match evp.state {
                RqEvpstate::Pending => (evp.sched, EnvelopeFlags::EF_PENDING),
                RqEvpstate::Scheduled => (evp.t_scheduled, EnvelopeFlags::EF_PENDING),
                RqEvpstate::Inflight => (evp.t_inflight, EnvelopeFlags::EF_INFLIGHT),
                // As scheduled.
                RqEvpstate::Held => (
                    evp.t_scheduled,
                    EnvelopeFlags::EF_PENDING | EnvelopeFlags::EF_HOLD,
                ),
            };
            if evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
                flags |= EnvelopeFlags::EF_SUSPEND;
            }
            dst.push(Evpstate {
                evpid: evp.evpid,
                flags,
                retry: 0,
                time,
            });
        }
        dst
    }

    /// scheduler_ram_schedule().
    fn schedule(&mut self, evpid: u64, now: i64) -> usize {
        let mut r = 0;
        for id in rq_ids(&self.ramqueue, evpid) {
            let evp = rq_xget(&self.ramqueue, &mut self.envelopes, id);
            if evp.state == RqEvpstate::Inflight {
                continue;
            }
            rq_envelope_schedule(&mut self.ramqueue, &mut self.holdqs, evp, now);
            r += 1;
        }
        r
    }

    /// scheduler_ram_remove().
    fn remove(&mut self, evpid: u64, now: i64) -> usize {
        let mut r = 0;
        for id in rq_ids(&self.ramqueue, evpid) {
            let evp = rq_xget(&self.ramqueue, &mut self.envelopes, id);
            if rq_envelope_remove(&mut self.ramqueue, &mut self.holdqs, evp, now) {
                r += 1;
            }
        }
        r
    }

    /// scheduler_ram_suspend().
    fn suspend(&mut self, evpid: u64, _now: i64) -> usize {
        let mut r = 0;
        for id in rq_ids(&self.ramqueue, evpid) {
            let evp = rq_xget(&self.ramqueue, &mut self.envelopes, id);
            if rq_envelope_suspend(&mut self.ramqueue, &mut self.holdqs, evp) {
                r += 1;
            }
        }
        r
    }

    /// scheduler_ram_resume().
    fn resume(&mut self, evpid: u64, _now: i64) -> usize {
        let mut r = 0;
        for id in rq_ids(&self.ramqueue, evpid) {
            let evp = rq_xget(&self.ramqueue, &mut self.envelopes, id);
            if rq_envelope_resume(&mut self.ramqueue, evp) {
                r += 1;
            }
        }
        r
    }

    /// scheduler_ram_query().
    fn query(&self, evpid: u64) -> bool {
        let msgid = if evpid > 0xffff_ffff {
            evpid_to_msgid(evpid)
        } else {
            evpid as u32
        };
        self.ramqueue.messages.contains_key(&msgid)
    }
}

/// The envelopes an id of smtpctl's names, as schedule, remove, suspend
/// and resume walk them: the envelope if queued, or every envelope of the
/// message, in id order.
fn rq_ids(rq: &RqQueue, evpid: u64) -> Vec<u64> {
    if evpid > 0xffff_ffff {
        let known = rq
            .messages
            .get(&evpid_to_msgid(evpid))
            .is_some_and(|m| m.envelopes.contains(&evpid));
        return if known { vec![evpid] } else { Vec::new() };
    }
    match rq.messages.get(&(evpid as u32)) {
        Some(msg) => msg.envelopes.iter().copied().collect(),
        None => Vec::new(),
    }
}

/// tree_xget() of the envelope's message, then of the envelope: it must
/// be queued.
fn rq_xget<'a>(
    rq: &RqQueue,
    envelopes: &'a mut HashMap<u64, RqEnvelope>,
    evpid: u64,
) -> &'a mut RqEnvelope {
    let queued = rq
        .messages
        .get(&evpid_to_msgid(evpid))
        .is_some_and(|m| m.envelopes.contains(&evpid));
    match envelopes.get_mut(&evpid) {
        Some(evp) if queued => evp,
        _ => fatalx!("tree_xget: evp:{evpid:016x} not queued"),
    }
}

/// sorted_insert(): into the pending queue, in rq_envelope_cmp's order.
fn sorted_insert(rq: &mut RqQueue, evp: &mut RqEnvelope) {
    rq_unlink(rq, evp);
    let key = rq_envelope_key(evp);
    rq.q_pending.insert((key, evp.evpid));
    evp.entry = Some((RqList::Pending, key));
}

/// TAILQ_INSERT_TAIL(): where C would link an envelope that is already on
/// a list (rq_envelope_resume after rq_envelope_schedule or
/// rq_envelope_remove of a suspended envelope), corrupting both lists,
/// it moves here.
fn rq_link_tail(rq: &mut RqQueue, l: RqList, evp: &mut RqEnvelope) {
    rq_unlink(rq, evp);
    evp.entry = Some((l, rq.list(l).insert_tail(evp.evpid)));
}

/// TAILQ_REMOVE() (and SPLAY_REMOVE for the pending queue) from whatever
/// list of `rq` holds the envelope. C's rq_envelope_schedule removes an
/// envelope "from q_pending" whatever list it is on, which unlinks it
/// from its real list unless it is that list's last; here it always is.
fn rq_unlink(rq: &mut RqQueue, evp: &mut RqEnvelope) {
    match evp.entry.take() {
        None => {}
        Some((RqList::Pending, key)) => {
            rq.q_pending.remove(&(key, evp.evpid));
        }
        Some((RqList::Holdq, _)) => {
            fatalx!("evp:{:016x} is held, not queued", evp.evpid)
        }
        Some((l, place)) => rq.list(l).remove(place),
    }
}

/// Takes a held envelope off its hold queue (the TAILQ_REMOVE and count
/// that C repeats wherever it unholds).
fn rq_holdq_unlink(hq: &mut RqHoldq, evp: &mut RqEnvelope) {
    if let Some((RqList::Holdq, place)) = evp.entry.take() {
        hq.q.remove(place);
    }
}

/// Takes a held envelope off its hold queue, dropping the queue when it
/// empties; the hold queue must exist (tree_xget).
fn rq_holdq_remove(holdqs: &mut Holdqs, evp: &mut RqEnvelope) {
    let hqs = &mut holdqs[evp.type_ as usize];
    let Some(hq) = hqs.get_mut(&evp.holdq) else {
        fatalx!("tree_xget: holdq {:016x} not found", evp.holdq)
    };
    rq_holdq_unlink(hq, evp);
    if hq.q.is_empty() {
        hqs.remove(&evp.holdq);
        // C forgets this one: its holdq counter only grows here.
        stat_note("scheduler.ramqueue.holdq", -1);
    }
    evp.holdq = 0;
    stat_note("scheduler.ramqueue.hold", -1);
}

/// rq_queue_merge(): a committed message's envelopes join the queue.
fn rq_queue_merge(
    rq: &mut RqQueue,
    update: &mut RqQueue,
    envelopes: &mut HashMap<u64, RqEnvelope>,
) {
    for (id, message) in std::mem::take(&mut update.messages) {
        match rq.messages.get_mut(&id) {
            // The message is new: reuse the structure.
            None => {
                rq.messages.insert(id, message);
            }
            Some(tomessage) => {
                for evpid in message.envelopes {
                    if !tomessage.envelopes.insert(evpid) {
                        fatalx!("tree_merge: duplicate");
                    }
                }
                stat_note("scheduler.ramqueue.message", -1);
            }
        }
    }

    // Sorted insert in the pending queue.
    while let Some(&(key, evpid)) = update.q_pending.first() {
        update.q_pending.remove(&(key, evpid));
        let Some(evp) = envelopes.get_mut(&evpid) else {
            fatalx!("rq_queue_merge: evp:{evpid:016x} unknown")
        };
        evp.entry = None;
        sorted_insert(rq, evp);
    }
    rq.evpcount += update.evpcount;
}

/// rq_queue_schedule(): moves the pending envelopes whose time has come
/// to their delivery list (at most SCHEDULEMAX of them), or to the
/// expired list.
fn rq_queue_schedule(
    rq: &mut RqQueue,
    holdqs: &mut Holdqs,
    envelopes: &mut HashMap<u64, RqEnvelope>,
    currtime: i64,
) {
    let mut n = 0;
    while let Some(&(_, evpid)) = rq.q_pending.first() {
        let Some(evp) = envelopes.get_mut(&evpid) else {
            fatalx!("rq_queue_schedule: evp:{evpid:016x} unknown")
        };
        if evp.sched > currtime && evp.expire > currtime {
            break;
        }
        if n == SCHEDULEMAX {
            break;
        }
        if evp.state != RqEvpstate::Pending {
            fatalx!("evp:{:016x} flags=0x{:x}", evp.evpid, evp.flags.bits());
        }
        if evp.expire <= currtime {
            rq_link_tail(rq, RqList::Expired, evp);
            evp.state = RqEvpstate::Scheduled;
            evp.flags |= RqFlags::RQ_ENVELOPE_EXPIRED;
            evp.t_scheduled = currtime;
            continue;
        }
        rq_envelope_schedule(rq, holdqs, evp, currtime);
        n += 1;
    }
}

/// rq_envelope_list(): the list an envelope belongs on in its state;
/// None when held.
fn rq_envelope_list(evp: &RqEnvelope) -> Option<RqList> {
    match evp.state {
        RqEvpstate::Pending => Some(RqList::Pending),
        RqEvpstate::Scheduled => Some(if evp.flags.contains(RqFlags::RQ_ENVELOPE_EXPIRED) {
            RqList::Expired
        } else if evp.flags.contains(RqFlags::RQ_ENVELOPE_REMOVED) {
            RqList::Removed
        } else if evp.flags.contains(RqFlags::RQ_ENVELOPE_UPDATE) {
            RqList::Update
        } else {
            rq_delivery_list(evp.type_)
        }),
        RqEvpstate::Inflight => Some(RqList::Inflight),
        RqEvpstate::Held => None,
    }
}

/// The list of envelopes ready for a kind of delivery.
fn rq_delivery_list(type_: DeliveryType) -> RqList {
    match type_ {
        DeliveryType::Mta => RqList::Mta,
        DeliveryType::Mda => RqList::Mda,
        DeliveryType::Bounce => RqList::Bounce,
    }
}

/// rq_envelope_schedule(): due now, on the list of its kind of delivery
/// (or the update list).
fn rq_envelope_schedule(
    rq: &mut RqQueue,
    holdqs: &mut Holdqs,
    evp: &mut RqEnvelope,
    currtime: i64,
) {
    let mut q = rq_delivery_list(evp.type_);
    if evp.flags.contains(RqFlags::RQ_ENVELOPE_UPDATE) {
        q = RqList::Update;
    }

    if evp.state == RqEvpstate::Held {
        rq_holdq_remove(holdqs, evp);
    } else if !evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
        rq_unlink(rq, evp);
    }

    rq_link_tail(rq, q, evp);
    evp.state = RqEvpstate::Scheduled;
    evp.t_scheduled = currtime;
}

/// rq_envelope_remove(): an envelope in flight is marked, to be removed
/// when it comes back; any other goes to the removed list.
fn rq_envelope_remove(
    rq: &mut RqQueue,
    holdqs: &mut Holdqs,
    evp: &mut RqEnvelope,
    currtime: i64,
) -> bool {
    if evp
        .flags
        .intersects(RqFlags::RQ_ENVELOPE_REMOVED | RqFlags::RQ_ENVELOPE_EXPIRED)
    {
        return false;
    }
    if evp.state == RqEvpstate::Inflight {
        evp.flags |= RqFlags::RQ_ENVELOPE_REMOVED;
        return true;
    }

    if evp.state == RqEvpstate::Held {
        rq_holdq_remove(holdqs, evp);
    } else if !evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
        rq_unlink(rq, evp);
    }

    rq_link_tail(rq, RqList::Removed, evp);
    evp.state = RqEvpstate::Scheduled;
    evp.flags |= RqFlags::RQ_ENVELOPE_REMOVED;
    evp.t_scheduled = currtime;
    true
}

/// rq_envelope_suspend(): off every list until resumed (a held envelope
/// leaves its hold queue and becomes pending); one in flight is only
/// marked.
fn rq_envelope_suspend(rq: &mut RqQueue, holdqs: &mut Holdqs, evp: &mut RqEnvelope) -> bool {
    if evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
        return false;
    }

    if evp.state == RqEvpstate::Held {
        rq_holdq_remove(holdqs, evp);
        evp.state = RqEvpstate::Pending;
    } else if evp.state != RqEvpstate::Inflight {
        rq_unlink(rq, evp);
    }

    evp.flags |= RqFlags::RQ_ENVELOPE_SUSPEND;
    true
}

/// rq_envelope_resume(): back on the list of its state.
fn rq_envelope_resume(rq: &mut RqQueue, evp: &mut RqEnvelope) -> bool {
    if !evp.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
        return false;
    }

    if evp.state != RqEvpstate::Inflight {
        match rq_envelope_list(evp) {
            Some(RqList::Pending) => sorted_insert(rq, evp),
            Some(l) => rq_link_tail(rq, l, evp),
            // Suspending unholds.
            None => fatalx!("evp:{:016x} held while suspended", evp.evpid),
        }
    }

    evp.flags.remove(RqFlags::RQ_ENVELOPE_SUSPEND);
    true
}

/// rq_envelope_delete(): forgets an envelope (already on no list), and
/// its message with its last envelope.
fn rq_envelope_delete(rq: &mut RqQueue, envelopes: &mut HashMap<u64, RqEnvelope>, evpid: u64) {
    let msgid = evpid_to_msgid(evpid);
    let Some(message) = rq.messages.get_mut(&msgid) else {
        fatalx!("tree_xpop: msg:{msgid:08x} not found")
    };
    if !message.envelopes.remove(&evpid) {
        fatalx!("tree_xpop: evp:{evpid:016x} not found");
    }
    if message.envelopes.is_empty() {
        rq.messages.remove(&msgid);
        stat_note("scheduler.ramqueue.message", -1);
    }
    envelopes.remove(&evpid);
    rq.evpcount -= 1;
    stat_note("scheduler.ramqueue.envelope", -1);
}

/// rq_envelope_to_text(): one envelope, for rq_queue_dump.
fn rq_envelope_to_text(e: &RqEnvelope, currtime: i64) -> String {
    let mut buf = format!("evp:{:016x} [", e.evpid);
    buf += match e.type_ {
        DeliveryType::Bounce => "bounce",
        DeliveryType::Mda => "mda",
        DeliveryType::Mta => "mta",
    };
    buf += &format!(",expire={}", duration_to_text(e.expire - currtime));
    buf += &match e.state {
        RqEvpstate::Pending => format!(",pending={}", duration_to_text(e.sched - currtime)),
        RqEvpstate::Scheduled => {
            format!(",scheduled={}", duration_to_text(currtime - e.t_scheduled))
        }
        RqEvpstate::Inflight => {
            format!(",inflight={}", duration_to_text(currtime - e.t_inflight))
        }
        // C prints the time in flight here too.
        RqEvpstate::Held => format!(",held={}", duration_to_text(currtime - e.t_inflight)),
    };
    if e.flags.contains(RqFlags::RQ_ENVELOPE_REMOVED) {
        buf += ",removed";
    }
    if e.flags.contains(RqFlags::RQ_ENVELOPE_EXPIRED) {
        buf += ",expired";
    }
    if e.flags.contains(RqFlags::RQ_ENVELOPE_SUSPEND) {
        buf += ",suspended";
    }
    buf += "]";
    buf
}

/// rq_queue_dump(): every message and envelope, for -T scheduler.
fn rq_queue_dump(rq: &RqQueue, envelopes: &HashMap<u64, RqEnvelope>, name: &str, currtime: i64) {
    log_debug!("debug: /--- ramqueue: {name}");
    for message in rq.messages.values() {
        log_debug!("debug: | msg:{:08x}", message.msgid);
        for evpid in &message.envelopes {
            if let Some(e) = envelopes.get(evpid) {
                log_debug!("debug: |   {}", rq_envelope_to_text(e, currtime));
            }
        }
    }
    log_debug!("debug: \\---");
}

/// rq_envelope_cmp() as a sort key: by the earlier of the next try and
/// the expiry, then by id.
fn rq_envelope_key(e: &RqEnvelope) -> i64 {
    e.sched.min(e.expire)
}

#[cfg(test)]
mod tests;
