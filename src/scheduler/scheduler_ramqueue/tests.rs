//! The ramqueue driven through its backend interface, with explicit
//! times.

use super::*;

const MDA: DeliveryType = DeliveryType::Mda;
const MTA: DeliveryType = DeliveryType::Mta;
const BOUNCE: DeliveryType = DeliveryType::Bounce;

const S_REMOVE: Sched = Sched::SCHED_REMOVE;
const S_EXPIRE: Sched = Sched::SCHED_EXPIRE;
const S_UPDATE: Sched = Sched::SCHED_UPDATE;
const S_BOUNCE: Sched = Sched::SCHED_BOUNCE;
const S_MDA: Sched = Sched::SCHED_MDA;
const S_MTA: Sched = Sched::SCHED_MTA;

const DAY: i64 = 86400;
const PENDING: EnvelopeFlags = EnvelopeFlags::EF_PENDING;
const INFLIGHT: EnvelopeFlags = EnvelopeFlags::EF_INFLIGHT;
const SUSPEND: EnvelopeFlags = EnvelopeFlags::EF_SUSPEND;
const HOLD: EnvelopeFlags = EnvelopeFlags::EF_HOLD;

fn evpid(msgid: u32, n: u32) -> u64 {
    (u64::from(msgid) << 32) | u64::from(n)
}

fn info(evpid: u64, type_: DeliveryType, creation: i64, ttl: i64, retry: u16) -> SchedulerInfo {
    SchedulerInfo {
        evpid,
        type_,
        retry,
        creation,
        ttl,
        ..SchedulerInfo::default()
    }
}

fn ramqueue() -> SchedulerRam {
    let mut rq = SchedulerRam::new();
    assert!(rq.init("ramqueue"));
    rq
}

/// Inserts envelopes (id, type, creation), with a ttl of four days, and
/// commits their messages, at `now`.
fn queue(rq: &mut SchedulerRam, evps: &[(u64, DeliveryType, i64)], now: i64) {
    let mut msgids = BTreeSet::new();
    for &(id, t, creation) in evps {
        let mut si = info(id, t, creation, 4 * DAY, 0);
        assert!(rq.insert(&mut si, now));
        msgids.insert(evpid_to_msgid(id));
    }
    for msgid in msgids {
        rq.commit(msgid, now);
    }
}

/// Every list entry is the place its envelope records, and the other
/// way round; held envelopes are on their hold queue.
fn check(rq: &SchedulerRam) {
    let mut seen = 0;
    let queues = std::iter::once(&rq.ramqueue).chain(rq.updates.values());
    for q in queues {
        for &(key, id) in &q.q_pending {
            assert_eq!(rq.envelopes[&id].entry, Some((RqList::Pending, key)));
            seen += 1;
        }
        for (l, list) in [
            (RqList::Inflight, &q.q_inflight),
            (RqList::Mta, &q.q_mta),
            (RqList::Mda, &q.q_mda),
            (RqList::Bounce, &q.q_bounce),
            (RqList::Update, &q.q_update),
            (RqList::Expired, &q.q_expired),
            (RqList::Removed, &q.q_removed),
        ] {
            for (&place, id) in &list.q {
                assert_eq!(rq.envelopes[id].entry, Some((l, place)), "{id:016x}");
                seen += 1;
            }
        }
    }
    for (t, hqs) in rq.holdqs.iter().enumerate() {
        for (&holdq, hq) in hqs {
            assert!(!hq.q.is_empty());
            for (&place, id) in &hq.q.q {
                let e = &rq.envelopes[id];
                assert_eq!(e.entry, Some((RqList::Holdq, place)));
                assert_eq!((e.type_ as usize, e.holdq), (t, holdq));
                assert_eq!(e.state, RqEvpstate::Held);
                seen += 1;
            }
        }
    }
    let linked = rq.envelopes.values().filter(|e| e.entry.is_some()).count();
    assert_eq!(seen, linked);
    let queued: usize = rq
        .ramqueue
        .messages
        .values()
        .map(|m| m.envelopes.len())
        .sum();
    assert_eq!(queued, rq.ramqueue.evpcount);
}

fn all(rq: &mut SchedulerRam, now: i64) -> Batch {
    check(rq);
    let b = rq.batch(Sched::all(), 100, now);
    check(rq);
    b
}

fn got(v: &[(Sched, u64)]) -> Batch {
    Batch::Envelopes(v.to_vec())
}

fn state(evpid: u64, flags: EnvelopeFlags, time: i64) -> Evpstate {
    Evpstate {
        evpid,
        flags,
        retry: 0,
        time,
    }
}

fn tempfail(rq: &mut SchedulerRam, evpid: u64, type_: DeliveryType, retry: u16, now: i64) -> i64 {
    let mut si = info(evpid, type_, 0, 4 * DAY, retry);
    assert!(rq.update(&mut si, now));
    si.nexttry
}

#[test]
fn backoff_is_creation_plus_base_times_step_squared_first_after_now() {
    // (t0, base, step, now, next)
    let table: &[(i64, i64, u32, i64, i64)] = &[
        (0, BACKOFF_TRANSFER, 0, 0, 400),
        (0, BACKOFF_TRANSFER, 1, 5, 400),
        (0, BACKOFF_TRANSFER, 1, 400, 1600),
        (0, BACKOFF_TRANSFER, 2, 401, 1600),
        (0, BACKOFF_TRANSFER, 2, 2000, 3600),
        (0, BACKOFF_DELIVERY, 1, 0, 10),
        (0, BACKOFF_DELIVERY, 3, 95, 160),
        (1000, BACKOFF_OVERFLOW, 0, 1000, 1003),
        (1000, BACKOFF_OVERFLOW, 0, 1010, 1012),
        (50, BACKOFF_DELIVERY, 5, 0, 300),
    ];
    for &(t0, base, step, now, next) in table {
        assert_eq!(
            scheduler_next(t0, base, step, now),
            next,
            "scheduler_next({t0}, {base}, {step}) at {now}"
        );
    }
    assert_eq!(scheduler_backoff(100, BACKOFF_TRANSFER, 3), 3700);
}

#[test]
fn insert_waits_for_commit_then_everything_due_is_handed_out() {
    let mut rq = ramqueue();
    let (a, b) = (evpid(1, 1), evpid(1, 2));
    let mut si = info(a, MDA, 1000, 4 * DAY, 0);
    assert!(rq.insert(&mut si, 1000));
    assert_eq!(si.nexttry, 1000);
    let mut si = info(b, MTA, 1000, 4 * DAY, 0);
    assert!(rq.insert(&mut si, 1000));

    assert!(!rq.query(1));
    assert!(rq.messages(0, 10).is_empty());
    assert_eq!(all(&mut rq, 1000), Batch::Wait(None));

    assert_eq!(rq.commit(1, 1000), 2);
    assert!(rq.query(1));
    assert!(rq.query(a));
    assert!(!rq.query(2));
    assert_eq!(rq.messages(0, 10), [1]);
    // Committing schedules what is due: pending, since 1000.
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [state(a, PENDING, 1000), state(b, PENDING, 1000)]
    );
    assert_eq!(all(&mut rq, 1000), got(&[(S_MDA, a), (S_MTA, b)]));
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [state(a, INFLIGHT, 1000), state(b, INFLIGHT, 1000)]
    );
    assert_eq!(all(&mut rq, 1001), Batch::Wait(None));
}

#[test]
fn messages_are_committed_one_by_one() {
    let mut rq = ramqueue();
    let mut si = info(evpid(1, 1), MDA, 0, DAY, 0);
    rq.insert(&mut si, 0);
    let mut si = info(evpid(2, 1), MDA, 0, DAY, 0);
    rq.insert(&mut si, 0);
    let mut si = info(evpid(2, 2), MDA, 0, DAY, 0);
    rq.insert(&mut si, 0);
    assert_eq!(rq.commit(2, 0), 2);
    assert!(!rq.query(1));
    assert_eq!(
        all(&mut rq, 0),
        got(&[(S_MDA, evpid(2, 1)), (S_MDA, evpid(2, 2))])
    );
    assert_eq!(rq.commit(1, 0), 1);
    assert_eq!(all(&mut rq, 0), got(&[(S_MDA, evpid(1, 1))]));
}

#[test]
fn rollback_drops_the_inserted_envelopes() {
    let mut rq = ramqueue();
    for n in 1..=2 {
        let mut si = info(evpid(1, n), MTA, 0, DAY, 0);
        rq.insert(&mut si, 0);
    }
    assert_eq!(rq.rollback(1, 0), 2);
    assert_eq!(rq.rollback(1, 0), 0);
    assert!(!rq.query(1));
    assert_eq!(all(&mut rq, 0), Batch::Wait(None));
    // The ids are free again.
    let mut si = info(evpid(1, 1), MTA, 0, DAY, 0);
    rq.insert(&mut si, 0);
    assert_eq!(rq.commit(1, 0), 1);
    assert_eq!(all(&mut rq, 0), got(&[(S_MTA, evpid(1, 1))]));
}

#[test]
fn envelopes_are_handed_out_by_due_time_then_id_and_the_queue_says_when_to_come_back() {
    let mut rq = ramqueue();
    let (t1, t2, d1, b1) = (evpid(1, 1), evpid(2, 1), evpid(3, 1), evpid(3, 2));
    queue(
        &mut rq,
        &[
            (t1, MTA, 3000),
            (t2, MTA, 2000),
            (d1, MDA, 2000),
            (b1, BOUNCE, 2500),
        ],
        1000,
    );
    assert_eq!(all(&mut rq, 1000), Batch::Wait(Some(1000)));
    assert_eq!(all(&mut rq, 1999), Batch::Wait(Some(1)));
    assert_eq!(all(&mut rq, 2000), got(&[(S_MDA, d1), (S_MTA, t2)]));
    assert_eq!(all(&mut rq, 2000), Batch::Wait(Some(500)));
    assert_eq!(all(&mut rq, 2600), got(&[(S_BOUNCE, b1)]));
    assert_eq!(all(&mut rq, 2600), Batch::Wait(Some(400)));
    assert_eq!(all(&mut rq, 3000), got(&[(S_MTA, t1)]));
    assert_eq!(all(&mut rq, 3000), Batch::Wait(None));
}

#[test]
fn the_wait_is_for_the_earlier_of_next_try_and_expiry() {
    let mut rq = ramqueue();
    let e = evpid(1, 1);
    let mut si = info(e, MTA, 500, 100, 0);
    rq.insert(&mut si, 0);
    rq.commit(1, 0);
    // Due at 500, but it expires at 600: the wait is to 500.
    assert_eq!(all(&mut rq, 0), Batch::Wait(Some(500)));
    let mut si = info(e, MTA, 500, 100, 0);
    assert_eq!(all(&mut rq, 500), got(&[(S_MTA, e)]));
    si.retry = 1;
    assert!(rq.update(&mut si, 510));
    // Next try at 900, after the expiry at 600.
    assert_eq!(si.nexttry, 900);
    assert_eq!(all(&mut rq, 510), Batch::Wait(Some(90)));
}

/// Three relays, two local deliveries and a bounce, due from 90 to 100.
fn six(rq: &mut SchedulerRam) -> [u64; 6] {
    let ids = [
        evpid(1, 1),
        evpid(1, 2),
        evpid(1, 3),
        evpid(2, 1),
        evpid(2, 2),
        evpid(3, 1),
    ];
    let [t1, t2, t3, d1, d2, b1] = ids;
    queue(
        rq,
        &[
            (t1, MTA, 100),
            (t2, MTA, 90),
            (t3, MTA, 95),
            (d1, MDA, 100),
            (d2, MDA, 100),
            (b1, BOUNCE, 100),
        ],
        0,
    );
    ids
}

#[test]
fn batches_take_one_of_each_kind_per_round_by_due_time() {
    let mut rq = ramqueue();
    let [t1, t2, t3, d1, d2, b1] = six(&mut rq);
    // Round one: bounce, mda, mta; round two: mda, mta; round three: mta.
    // Relays by due time: t2 (90), t3 (95), t1 (100).
    assert_eq!(
        all(&mut rq, 100),
        got(&[
            (S_BOUNCE, b1),
            (S_MDA, d1),
            (S_MTA, t2),
            (S_MDA, d2),
            (S_MTA, t3),
            (S_MTA, t1),
        ])
    );
}

#[test]
fn batches_stop_at_count_and_the_rest_comes_next_time() {
    let mut rq = ramqueue();
    let [t1, t2, t3, d1, d2, b1] = six(&mut rq);
    assert_eq!(
        rq.batch(Sched::all(), 4, 100),
        got(&[(S_BOUNCE, b1), (S_MDA, d1), (S_MTA, t2), (S_MDA, d2)])
    );
    assert_eq!(
        rq.batch(Sched::all(), 4, 100),
        got(&[(S_MTA, t3), (S_MTA, t1)])
    );
}

#[test]
fn a_kind_left_out_of_the_mask_waits_scheduled_without_a_timer() {
    let mut rq = ramqueue();
    let (t1, d1) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(t1, MTA, 0), (d1, MDA, 0)], 0);
    // MTA paused.
    let mask = S_UPDATE | S_EXPIRE | S_REMOVE | S_BOUNCE | S_MDA;
    assert_eq!(rq.batch(mask, 10, 0), got(&[(S_MDA, d1)]));
    // The relay is scheduled, not pending: nothing to wait for.
    assert_eq!(rq.batch(mask, 10, 0), Batch::Wait(None));
    assert_eq!(rq.envelopes(t1, 1), [state(t1, PENDING, 0)]);
    assert_eq!(rq.batch(Sched::all(), 10, 50), got(&[(S_MTA, t1)]));
}

#[test]
fn at_most_schedulemax_pending_envelopes_are_scheduled_per_call() {
    let mut rq = ramqueue();
    let total = SCHEDULEMAX as u32 + 76;
    let evps: Vec<_> = (1..=total).map(|n| (evpid(1, n), MDA, 50)).collect();
    queue(&mut rq, &evps, 0);

    // Only updates allowed (max inflight reached): 1024 scheduled, the
    // rest still pending and overdue, so come back at once.
    assert_eq!(rq.batch(S_UPDATE, 5000, 60), Batch::Wait(Some(0)));
    // Each call schedules up to 1024 more: here the 76 left.
    let Batch::Envelopes(first) = rq.batch(Sched::all(), 5000, 60) else {
        panic!("nothing scheduled");
    };
    assert_eq!(first.len(), total as usize);

    let mut rq = ramqueue();
    queue(&mut rq, &evps, 0);
    let Batch::Envelopes(first) = rq.batch(Sched::all(), 5000, 60) else {
        panic!("nothing scheduled");
    };
    assert_eq!(first.len(), SCHEDULEMAX);
    assert_eq!(first[0], (S_MDA, evpid(1, 1)));
    assert_eq!(
        first[SCHEDULEMAX - 1],
        (S_MDA, evpid(1, SCHEDULEMAX as u32))
    );
    let Batch::Envelopes(rest) = rq.batch(Sched::all(), 5000, 60) else {
        panic!("nothing scheduled");
    };
    assert_eq!(rest.len(), 76);
    assert_eq!(rest[0], (S_MDA, evpid(1, SCHEDULEMAX as u32 + 1)));
}

#[test]
fn tempfails_are_retried_on_the_backoff_schedule() {
    let mut rq = ramqueue();
    let (t, d) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(t, MTA, 0), (d, MDA, 0)], 0);
    assert_eq!(all(&mut rq, 0), got(&[(S_MDA, d), (S_MTA, t)]));

    // (evpid, type, retry, now, nexttry)
    let steps: &[(u64, DeliveryType, u16, i64, i64)] = &[(t, MTA, 1, 5, 400), (d, MDA, 1, 5, 10)];
    for &(id, ty, retry, now, next) in steps {
        assert_eq!(tempfail(&mut rq, id, ty, retry, now), next);
    }
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [state(t, PENDING, 400), state(d, PENDING, 10)]
    );
    assert_eq!(all(&mut rq, 5), Batch::Wait(Some(5)));
    assert_eq!(all(&mut rq, 10), got(&[(S_MDA, d)]));
    assert_eq!(all(&mut rq, 10), Batch::Wait(Some(390)));
    assert_eq!(all(&mut rq, 400), got(&[(S_MTA, t)]));

    // Retry two: creation + 1600, unless that has passed already.
    assert_eq!(tempfail(&mut rq, d, MDA, 2, 11), 40);
    assert_eq!(tempfail(&mut rq, t, MTA, 2, 2000), 3600);
    assert_eq!(all(&mut rq, 2000), got(&[(S_MDA, d)]));
    assert_eq!(tempfail(&mut rq, d, MDA, 3, 2001), 2250);
}

#[test]
fn discovered_envelopes_keep_their_retry_step_without_catching_up() {
    let mut rq = ramqueue();
    let e = evpid(1, 1);
    // Retry 3 of a relay: creation + 400 * 9, in the past at 100000.
    let mut si = info(e, MTA, 0, 4 * DAY, 3);
    rq.insert(&mut si, 100_000);
    assert_eq!(si.nexttry, 3600);
    rq.commit(1, 100_000);
    assert_eq!(all(&mut rq, 100_000), got(&[(S_MTA, e)]));
}

#[test]
fn envelopes_expire_at_their_ttl() {
    let mut rq = ramqueue();
    let e = evpid(1, 1);
    let mut si = info(e, MTA, 0, 1000, 0);
    rq.insert(&mut si, 0);
    rq.commit(1, 0);
    assert_eq!(all(&mut rq, 0), got(&[(S_MTA, e)]));
    assert_eq!(tempfail(&mut rq, e, MTA, 1, 10), 400);
    assert_eq!(all(&mut rq, 400), got(&[(S_MTA, e)]));
    // Next try at 1600, after the expiry at 1000.
    assert_eq!(tempfail(&mut rq, e, MTA, 2, 410), 1600);
    assert_eq!(all(&mut rq, 410), Batch::Wait(Some(590)));

    // Expired but not handed out (mask without EXPIRE): no longer listed.
    assert_eq!(rq.batch(S_UPDATE, 10, 1000), Batch::Wait(None));
    assert!(rq.envelopes(evpid(1, 0), 10).is_empty());
    assert!(rq.query(1));
    assert_eq!(rq.remove(e, 1000), 0);
    assert_eq!(rq.suspend(e, 1000), 1);
    assert_eq!(rq.resume(e, 1000), 1);

    assert_eq!(all(&mut rq, 1001), got(&[(S_EXPIRE, e)]));
    assert!(!rq.query(1));
    assert!(rq.messages(0, 10).is_empty());
}

#[test]
fn held_envelopes_wait_for_release_last_held_first() {
    let mut rq = ramqueue();
    let (e1, e2, e3) = (evpid(1, 1), evpid(1, 2), evpid(1, 3));
    queue(&mut rq, &[(e1, MTA, 0), (e2, MTA, 0), (e3, MTA, 0)], 0);
    assert_eq!(
        all(&mut rq, 0),
        got(&[(S_MTA, e1), (S_MTA, e2), (S_MTA, e3)])
    );
    for (e, now) in [(e1, 1), (e2, 2), (e3, 3)] {
        assert!(rq.hold(e, 7, now));
    }
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [
            state(e1, PENDING | HOLD, 0),
            state(e2, PENDING | HOLD, 0),
            state(e3, PENDING | HOLD, 0)
        ]
    );
    assert_eq!(all(&mut rq, 10), Batch::Wait(None));

    assert_eq!(rq.release(MDA, 7, 0, 20), 0);
    assert_eq!(rq.release(MTA, 8, 0, 20), 0);
    assert_eq!(rq.release(MTA, 7, 1, 20), 1);
    assert_eq!(all(&mut rq, 20), got(&[(S_MTA, e3)]));

    // -1: the rest, rescheduled as updates at the next step.
    assert_eq!(rq.release(MTA, 7, -1, 30), 2);
    assert_eq!(all(&mut rq, 30), got(&[(S_UPDATE, e1), (S_UPDATE, e2)]));
    assert_eq!(
        rq.envelopes(e1, 2),
        [state(e1, PENDING, 400), state(e2, PENDING, 400)]
    );
    assert_eq!(rq.release(MTA, 7, 0, 30), 0);
    assert_eq!(all(&mut rq, 400), got(&[(S_MTA, e1), (S_MTA, e2)]));
}

#[test]
fn a_full_hold_queue_reschedules_as_an_overflow() {
    let mut rq = ramqueue();
    let total = HOLDQ_MAXSIZE as u32 + 1;
    let evps: Vec<_> = (1..=total).map(|n| (evpid(1, n), MDA, 0)).collect();
    queue(&mut rq, &evps, 0);
    let Batch::Envelopes(v) = rq.batch(Sched::all(), 5000, 0) else {
        panic!("nothing scheduled");
    };
    assert_eq!(v.len(), total as usize);
    for n in 1..total {
        assert!(rq.hold(evpid(1, n), 1, 5));
    }
    let last = evpid(1, total);
    assert!(!rq.hold(last, 1, 5));
    // Overflows retry on a 3 s step: 0 + 3 * 2² is the first after 10.
    assert_eq!(all(&mut rq, 10), got(&[(S_UPDATE, last)]));
    assert_eq!(rq.envelopes(last, 1), [state(last, PENDING, 12)]);
    assert_eq!(all(&mut rq, 12), got(&[(S_MDA, last)]));
    assert_eq!(rq.release(MDA, 1, 0, 20), HOLDQ_MAXSIZE);
}

#[test]
fn suspended_envelopes_are_not_scheduled_until_resumed() {
    let mut rq = ramqueue();
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(e1, MDA, 0), (e2, MDA, 0)], 0);
    assert_eq!(rq.suspend(e1, 1), 1);
    assert_eq!(rq.suspend(e1, 1), 0);
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [state(e1, PENDING | SUSPEND, 0), state(e2, PENDING, 0)]
    );
    assert_eq!(all(&mut rq, 1), got(&[(S_MDA, e2)]));
    assert_eq!(rq.resume(e1, 2), 1);
    assert_eq!(rq.resume(e1, 2), 0);
    assert_eq!(all(&mut rq, 2), got(&[(S_MDA, e1)]));

    // In flight: only marked. A tempfail leaves it out of the queue.
    assert_eq!(rq.suspend(1, 3), 2);
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [
            state(e1, INFLIGHT | SUSPEND, 2),
            state(e2, INFLIGHT | SUSPEND, 1)
        ]
    );
    assert_eq!(tempfail(&mut rq, e1, MDA, 1, 5), 10);
    assert!(rq.delete(e2, 5));
    assert_eq!(all(&mut rq, 100), Batch::Wait(None));
    assert_eq!(rq.envelopes(e1, 1), [state(e1, PENDING | SUSPEND, 10)]);
    assert_eq!(rq.resume(1, 100), 1);
    assert_eq!(all(&mut rq, 100), got(&[(S_MDA, e1)]));
}

#[test]
fn suspending_a_future_envelope_or_a_held_one() {
    let mut rq = ramqueue();
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(e1, MTA, 500), (e2, MTA, 0)], 0);
    assert_eq!(rq.suspend(e1, 0), 1);
    assert_eq!(all(&mut rq, 0), got(&[(S_MTA, e2)]));
    // Nothing pending left to wait for.
    assert_eq!(all(&mut rq, 0), Batch::Wait(None));
    assert_eq!(rq.resume(e1, 0), 1);
    assert_eq!(all(&mut rq, 0), Batch::Wait(Some(500)));

    // A held envelope leaves its hold queue when suspended.
    assert!(rq.hold(e2, 3, 1));
    assert_eq!(rq.suspend(e2, 2), 1);
    assert_eq!(rq.release(MTA, 3, 0, 2), 0);
    assert_eq!(rq.envelopes(e2, 1), [state(e2, PENDING | SUSPEND, 0)]);
    assert_eq!(rq.resume(e2, 3), 1);
    assert_eq!(all(&mut rq, 3), got(&[(S_MTA, e2)]));

    // A suspended envelope in flight is not held, just left pending.
    assert_eq!(rq.suspend(e2, 4), 1);
    assert!(!rq.hold(e2, 3, 4));
    assert_eq!(rq.release(MTA, 3, 0, 4), 0);
    assert_eq!(all(&mut rq, 4), Batch::Wait(Some(496)));
    assert_eq!(rq.resume(e2, 5), 1);
    assert_eq!(all(&mut rq, 5), got(&[(S_MTA, e2)]));
}

#[test]
fn removed_envelopes_go_back_to_the_queue_for_deletion() {
    let mut rq = ramqueue();
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(e1, MTA, 1000), (e2, MTA, 0)], 0);
    assert_eq!(all(&mut rq, 0), got(&[(S_MTA, e2)]));

    assert_eq!(rq.remove(e1, 1), 1);
    assert_eq!(rq.remove(e1, 1), 0);
    // In flight: marked, no longer listed.
    assert_eq!(rq.remove(e2, 1), 1);
    assert!(rq.envelopes(evpid(1, 0), 10).is_empty());
    assert_eq!(all(&mut rq, 2), got(&[(S_REMOVE, e1)]));
    assert_eq!(all(&mut rq, 2), Batch::Wait(None));
    // It comes back tempfailed: removed now.
    let mut si = info(e2, MTA, 0, DAY, 1);
    assert!(rq.update(&mut si, 3));
    assert_eq!(all(&mut rq, 3), got(&[(S_REMOVE, e2)]));
    assert!(!rq.query(1));
    assert_eq!(rq.remove(1, 4), 0);
}

#[test]
fn removing_a_message_counts_its_envelopes_held_ones_included() {
    let mut rq = ramqueue();
    let (e1, e2, e3) = (evpid(2, 1), evpid(2, 2), evpid(2, 3));
    queue(&mut rq, &[(e1, MDA, 0), (e2, MDA, 0), (e3, MDA, 100)], 0);
    assert_eq!(
        rq.batch(Sched::all(), 2, 0),
        got(&[(S_MDA, e1), (S_MDA, e2)])
    );
    assert!(rq.hold(e2, 5, 1));
    assert_eq!(rq.remove(2, 2), 3);
    assert_eq!(rq.release(MDA, 5, 0, 2), 0);
    assert_eq!(all(&mut rq, 2), got(&[(S_REMOVE, e2), (S_REMOVE, e3)]));
    assert!(rq.delete(e1, 3));
    assert!(!rq.query(2));
}

#[test]
fn resuming_a_removed_suspended_envelope_hands_it_out_once() {
    // C links such an envelope on q_removed twice.
    let mut rq = ramqueue();
    let e = evpid(1, 1);
    queue(&mut rq, &[(e, MTA, 100)], 0);
    assert_eq!(rq.suspend(e, 1), 1);
    assert_eq!(rq.remove(e, 2), 1);
    assert_eq!(rq.resume(e, 3), 1);
    assert_eq!(all(&mut rq, 4), got(&[(S_REMOVE, e)]));
    assert_eq!(all(&mut rq, 4), Batch::Wait(None));
}

#[test]
fn schedule_makes_envelopes_due_now() {
    let mut rq = ramqueue();
    let (e1, e2, e3) = (evpid(1, 1), evpid(1, 2), evpid(1, 3));
    queue(
        &mut rq,
        &[(e1, MTA, 5000), (e2, MDA, 6000), (e3, MDA, 0)],
        0,
    );
    assert_eq!(all(&mut rq, 0), got(&[(S_MDA, e3)]));

    assert_eq!(rq.schedule(e1, 10), 1);
    assert_eq!(rq.envelopes(e1, 1), [state(e1, PENDING, 10)]);
    assert_eq!(all(&mut rq, 10), got(&[(S_MTA, e1)]));
    // The message: only what is not in flight.
    assert_eq!(rq.schedule(1, 20), 1);
    assert_eq!(all(&mut rq, 20), got(&[(S_MDA, e2)]));
    assert_eq!(rq.schedule(e1, 20), 0);
    assert_eq!(rq.schedule(evpid(1, 9), 20), 0);
    assert_eq!(rq.schedule(2, 20), 0);

    // A held envelope leaves its hold queue.
    assert!(rq.hold(e1, 9, 30));
    assert_eq!(rq.schedule(e1, 31), 1);
    assert_eq!(rq.release(MTA, 9, 0, 31), 0);
    assert_eq!(all(&mut rq, 31), got(&[(S_MTA, e1)]));
}

#[test]
fn scheduling_twice_or_scheduling_a_suspended_envelope() {
    let mut rq = ramqueue();
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    queue(&mut rq, &[(e1, MTA, 0), (e2, MTA, 0)], 0);
    // Already scheduled: to the back of the list.
    assert_eq!(rq.schedule(e1, 1), 1);
    assert_eq!(all(&mut rq, 1), got(&[(S_MTA, e2), (S_MTA, e1)]));

    // Scheduling overrides a suspension (as in C), which resume then
    // lifts without handing it out twice.
    let e3 = evpid(2, 1);
    queue(&mut rq, &[(e3, MDA, 500)], 2);
    assert_eq!(rq.suspend(e3, 2), 1);
    assert_eq!(rq.schedule(e3, 3), 1);
    assert_eq!(rq.envelopes(e3, 1), [state(e3, PENDING | SUSPEND, 3)]);
    assert_eq!(rq.resume(e3, 4), 1);
    assert_eq!(all(&mut rq, 5), got(&[(S_MDA, e3)]));
    assert_eq!(all(&mut rq, 5), Batch::Wait(None));
}

#[test]
fn listings_page_through_messages_and_envelopes() {
    let mut rq = ramqueue();
    queue(
        &mut rq,
        &[
            (evpid(3, 1), MDA, 0),
            (evpid(1, 1), MTA, 900),
            (evpid(1, 2), MTA, 0),
            (evpid(1, 3), MDA, 0),
            (evpid(7, 1), MDA, 0),
        ],
        0,
    );
    assert_eq!(rq.messages(0, 10), [1, 3, 7]);
    assert_eq!(rq.messages(2, 10), [3, 7]);
    assert_eq!(rq.messages(3, 10), [3, 7]);
    assert_eq!(rq.messages(0, 2), [1, 3]);
    assert!(rq.messages(8, 10).is_empty());

    assert_eq!(rq.batch(S_MDA, 1, 50), got(&[(S_MDA, evpid(1, 3))]));
    assert_eq!(
        rq.envelopes(evpid(1, 0), 10),
        [
            state(evpid(1, 1), PENDING, 900),
            state(evpid(1, 2), PENDING, 0),
            state(evpid(1, 3), INFLIGHT, 50),
        ]
    );
    assert_eq!(
        rq.envelopes(evpid(1, 2), 10),
        [
            state(evpid(1, 2), PENDING, 0),
            state(evpid(1, 3), INFLIGHT, 50)
        ]
    );
    assert_eq!(
        rq.envelopes(evpid(1, 0), 1),
        [state(evpid(1, 1), PENDING, 900)]
    );
    assert!(rq.envelopes(evpid(1, 4), 10).is_empty());
    assert!(rq.envelopes(evpid(9, 0), 10).is_empty());
}

#[test]
fn the_dump_shows_each_envelope_as_c_does() {
    let e = RqEnvelope {
        entry: None,
        evpid: 0x0123_4567_89ab_cdef,
        holdq: 0,
        type_: MTA,
        state: RqEvpstate::Pending,
        flags: RqFlags::RQ_ENVELOPE_SUSPEND,
        ctime: 0,
        sched: 1400,
        expire: 4 * DAY,
        t_inflight: 0,
        t_scheduled: 0,
    };
    assert_eq!(
        rq_envelope_to_text(&e, 1000),
        "evp:0123456789abcdef [mta,expire=3d23h43m20s,pending=6m40s,suspended]"
    );
    let e = RqEnvelope {
        type_: BOUNCE,
        state: RqEvpstate::Scheduled,
        flags: RqFlags::RQ_ENVELOPE_REMOVED,
        t_scheduled: 990,
        expire: 1000,
        ..e
    };
    assert_eq!(
        rq_envelope_to_text(&e, 1000),
        "evp:0123456789abcdef [bounce,expire=0s,scheduled=10s,removed]"
    );
}
