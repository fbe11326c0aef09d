//! The scheduler process driven through its handlers, with real channels
//! to a queue and a control end.

use super::*;
use crate::config::config::{
    config_default_with, Dispatcher, DispatcherAgent, DispatcherLocal, DispatcherRemote,
    LocalMethod,
};
use crate::ipc::imsg::{
    imsg_get, imsgbuf_flush, imsgbuf_read, ImsgHdr, ReadResult, IMSG_HEADER_SIZE,
};
use crate::ipc::mproc::{m_get_time, mproc_init, Mproc};
use crate::queue::envelope::evpid_to_msgid;
use crate::sys::socket::socketpair;
use ImsgType::*;
use ProcType::{PROC_CONTROL, PROC_QUEUE};

struct Fixture {
    s: Scheduler,
    base: EventBase<Scheduler>,
    /// The queue's and control's ends of the channels.
    queue: Mproc,
    control: Mproc,
}

fn evpid(msgid: u32, n: u32) -> u64 {
    (u64::from(msgid) << 32) | u64::from(n)
}

fn fixture_with(backend_name: &str, f: impl FnOnce(&mut Smtpd)) -> Fixture {
    let mut conf = config_default_with("mx.example.org", &[]);
    conf.sc_dispatchers.insert(
        "local".into(),
        Dispatcher {
            u: DispatcherAgent::Local(DispatcherLocal::new(LocalMethod::Mbox)),
            ttl: 0,
        },
    );
    conf.sc_dispatchers.insert(
        "relay".into(),
        Dispatcher {
            u: DispatcherAgent::Remote(DispatcherRemote::default()),
            ttl: 0,
        },
    );
    f(&mut conf);
    let conf: &'static Smtpd = Box::leak(Box::new(conf));

    let mut peers = Peers::default();
    let mut far = |proc: ProcType, name: &str| {
        let (a, b) = socketpair().unwrap();
        peers.set(proc, mproc_init(a, proc, name, 0));
        mproc_init(b, ProcType::PROC_SCHEDULER, "scheduler", 0)
    };
    let queue = far(PROC_QUEUE, "queue");
    let control = far(PROC_CONTROL, "control");

    let mut base = EventBase::new();
    let ev = base.evtimer_set(scheduler_timeout, 0);
    let mut backend = scheduler_backend_lookup(backend_name).unwrap();
    assert!(backend.init(backend_name));
    Fixture {
        s: Scheduler {
            peers,
            backend,
            ev,
            ninflight: 0,
            sc_flags: conf.sc_flags,
            conf,
        },
        base,
        queue,
        control,
    }
}

fn fixture() -> Fixture {
    fixture_with("ramqueue", |_| {})
}

fn envelope(id: u64, dispatcher: &str, creation: i64) -> Envelope {
    Envelope {
        id,
        dispatcher: dispatcher.into(),
        type_: if dispatcher == "relay" {
            DeliveryType::Mta
        } else {
            DeliveryType::Mda
        },
        creation,
        ..Envelope::default()
    }
}

fn drain(p: &mut Mproc) -> Vec<Imsg> {
    let mut v = Vec::new();
    loop {
        while let Some(m) = imsg_get(&mut p.imsgbuf).unwrap() {
            v.push(m);
        }
        match imsgbuf_read(&mut p.imsgbuf).unwrap() {
            ReadResult::Data(_) => {}
            _ => return v,
        }
    }
}

impl Fixture {
    fn imsg(&mut self, from: ProcType, t: ImsgType, peerid: u32, data: &[u8]) {
        let imsg = Imsg {
            hdr: ImsgHdr {
                type_: t as u32,
                len: (IMSG_HEADER_SIZE + data.len()) as u32,
                peerid,
                pid: 0,
            },
            data: data.to_vec(),
            fd: None,
        };
        scheduler_imsg(&mut self.s, &mut self.base, from, Some(imsg));
    }

    /// Submits and commits one message's envelopes.
    fn queue_message(&mut self, evps: &[Envelope]) {
        let now = time_now();
        for evp in evps {
            scheduler_imsg_envelope_submit(&mut self.s, evp, now);
        }
        let msgid = evpid_to_msgid(evps[0].id);
        self.imsg(
            PROC_QUEUE,
            IMSG_QUEUE_MESSAGE_COMMIT,
            0,
            &msgid.to_ne_bytes(),
        );
    }

    /// The timer fires.
    fn timeout(&mut self) {
        self.base.event_del(self.s.ev);
        scheduler_timeout(&mut self.s, &mut self.base, -1, EvFlags::empty(), 0);
    }

    fn armed(&self) -> bool {
        self.base.event_pending(self.s.ev)
    }

    /// What `proc` was told, but the counters (control's stat messages).
    fn sent_to(&mut self, proc: ProcType) -> Vec<Imsg> {
        imsgbuf_flush(&mut self.s.peers.p(proc).imsgbuf).unwrap();
        let stat = [
            ImsgType::IMSG_STAT_INCREMENT as u32,
            ImsgType::IMSG_STAT_DECREMENT as u32,
            ImsgType::IMSG_STAT_SET as u32,
        ];
        let mut v = match proc {
            PROC_QUEUE => drain(&mut self.queue),
            _ => drain(&mut self.control),
        };
        v.retain(|m| !stat.contains(&m.hdr.type_));
        v
    }

    /// What the queue was told: (type, evpid) for the one-evpid messages.
    fn told_queue(&mut self) -> Vec<(ImsgType, u64)> {
        self.sent_to(PROC_QUEUE)
            .iter()
            .map(|m| {
                let mut r = m_msg(m);
                let evpid = m_get_evpid(&mut r);
                m_end(&r);
                (ImsgType::from_u32(m.hdr.type_).unwrap(), evpid)
            })
            .collect()
    }

    /// What control was answered: (type, peerid).
    fn told_control(&mut self) -> Vec<(ImsgType, u32)> {
        self.sent_to(PROC_CONTROL)
            .iter()
            .map(|m| (ImsgType::from_u32(m.hdr.type_).unwrap(), m.hdr.peerid))
            .collect()
    }
}

#[test]
fn committed_envelopes_go_to_the_queue_by_kind() {
    let mut f = fixture();
    let past = time_now() - 60;
    let (d, t, b) = (evpid(1, 1), evpid(1, 2), evpid(1, 3));
    let mut bounce = envelope(b, "local", past);
    bounce.type_ = DeliveryType::Bounce;
    f.queue_message(&[
        envelope(d, "local", past),
        envelope(t, "relay", past),
        bounce,
    ]);
    assert!(f.armed());
    f.timeout();
    assert_eq!(
        f.told_queue(),
        [
            (IMSG_SCHED_ENVELOPE_INJECT, b),
            (IMSG_SCHED_ENVELOPE_DELIVER, d),
            (IMSG_SCHED_ENVELOPE_TRANSFER, t),
        ]
    );
    assert_eq!(f.s.ninflight, 3);
    // Look again at once; then nothing is pending: sleep.
    assert!(f.armed());
    f.timeout();
    assert!(f.told_queue().is_empty());
    assert!(!f.armed());
}

#[test]
fn rolled_back_envelopes_are_never_scheduled() {
    let mut f = fixture();
    let past = time_now() - 60;
    scheduler_imsg_envelope_submit(&mut f.s, &envelope(evpid(1, 1), "local", past), past);
    f.imsg(
        PROC_QUEUE,
        IMSG_QUEUE_MESSAGE_ROLLBACK,
        0,
        &1u32.to_ne_bytes(),
    );
    f.timeout();
    assert!(f.told_queue().is_empty());
    assert!(!f.s.backend.query(1));
}

#[test]
fn a_future_envelope_sets_the_timer_for_its_time() {
    let mut f = fixture();
    f.queue_message(&[envelope(evpid(1, 1), "relay", time_now() + 3600)]);
    f.timeout();
    assert!(f.told_queue().is_empty());
    assert!(f.armed());
}

#[test]
fn delivery_answers_free_inflight_slots() {
    let mut f = fixture_with("ramqueue", |c| c.sc_scheduler_max_inflight = 2);
    let past = time_now() - 60;
    let (e1, e2, e3, e4) = (evpid(1, 1), evpid(1, 2), evpid(1, 3), evpid(2, 1));
    f.queue_message(&[
        envelope(e1, "local", past),
        envelope(e2, "local", past),
        envelope(e3, "local", past),
    ]);
    // The limit is checked before a batch, not within it.
    f.timeout();
    assert_eq!(f.told_queue().len(), 3);
    assert_eq!(f.s.ninflight, 3);

    f.queue_message(&[envelope(e4, "local", past)]);
    f.timeout();
    assert!(f.told_queue().is_empty());

    f.imsg(PROC_QUEUE, IMSG_QUEUE_DELIVERY_OK, 0, &e1.to_ne_bytes());
    f.imsg(
        PROC_QUEUE,
        IMSG_QUEUE_DELIVERY_PERMFAIL,
        0,
        &e2.to_ne_bytes(),
    );
    assert_eq!(f.s.ninflight, 1);
    assert!(f.armed());
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_DELIVER, e4)]);
    f.imsg(PROC_QUEUE, IMSG_QUEUE_DELIVERY_LOOP, 0, &e3.to_ne_bytes());
    assert!(!f.s.backend.query(1));
    assert!(f.s.backend.query(2));
    assert_eq!(f.s.ninflight, 1);
}

#[test]
fn paused_mda_or_mta_holds_back_that_kind_until_resumed() {
    let mut f = fixture();
    let past = time_now() - 60;
    let (d, t) = (evpid(1, 1), evpid(1, 2));
    f.queue_message(&[envelope(d, "local", past), envelope(t, "relay", past)]);
    f.imsg(PROC_QUEUE, IMSG_CTL_PAUSE_MDA, 0, &[]);
    f.imsg(PROC_QUEUE, IMSG_CTL_PAUSE_MTA, 0, &[]);
    f.timeout();
    assert!(f.told_queue().is_empty());
    assert!(!f.armed());

    f.imsg(PROC_QUEUE, IMSG_CTL_RESUME_MTA, 0, &[]);
    assert!(f.armed());
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, t)]);
    f.imsg(PROC_QUEUE, IMSG_CTL_RESUME_MDA, 0, &[]);
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_DELIVER, d)]);
}

#[test]
fn dash_p_mda_starts_with_local_delivery_paused() {
    let mut f = fixture_with("ramqueue", |c| c.sc_flags |= SMTPD_MDA_PAUSED);
    let past = time_now() - 60;
    f.queue_message(&[envelope(evpid(1, 1), "local", past)]);
    f.timeout();
    assert!(f.told_queue().is_empty());
}

#[test]
fn tempfails_past_a_bounce_warn_delay_ask_for_one_warning() {
    let mut f = fixture_with("ramqueue", |c| {
        c.sc_ttl = 4 * 86400;
        c.sc_bounce_warn = [3600, 7200, 0, 0];
    });
    let now = time_now();
    let c = now - 5000;
    let e = evpid(1, 1);
    let mut evp = envelope(e, "relay", c);
    f.queue_message(std::slice::from_ref(&evp));
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, e)]);

    // Next try at c + 400 * 4² = c + 6400: past the 1h warning.
    evp.retry = 1;
    scheduler_imsg_delivery_tempfail(&mut f.s, &evp, now);
    assert_eq!(f.s.ninflight, 0);
    let sent = f.sent_to(PROC_QUEUE);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].hdr.type_, IMSG_SCHED_ENVELOPE_BOUNCE as u32);
    assert_eq!(
        BounceReqMsg::from_bytes(&sent[0].data),
        Some(BounceReqMsg {
            evpid: e,
            timestamp: c + 3600,
            bounce: DeliveryBounce {
                type_: BounceType::Delayed,
                delay: 3600,
                ttl: 4 * 86400,
                dsn_ret: None,
                mta_without_dsn: false,
            },
        })
    );

    // Warned at c + 3600 already, and c + 6400 is before the 2h one.
    f.imsg(PROC_CONTROL, IMSG_CTL_SCHEDULE, 1, &e.to_ne_bytes());
    f.timeout();
    f.sent_to(PROC_CONTROL);
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, e)]);
    evp.retry = 2;
    evp.lastbounce = c + 3600;
    scheduler_imsg_delivery_tempfail(&mut f.s, &evp, now);
    assert!(f.sent_to(PROC_QUEUE).is_empty());

    // Retry 5: c + 10000, past the 2h warning.
    f.imsg(PROC_CONTROL, IMSG_CTL_SCHEDULE, 1, &e.to_ne_bytes());
    f.timeout();
    f.sent_to(PROC_CONTROL);
    assert_eq!(f.told_queue().len(), 1);
    evp.retry = 5;
    scheduler_imsg_delivery_tempfail(&mut f.s, &evp, now);
    let sent = f.sent_to(PROC_QUEUE);
    let req = BounceReqMsg::from_bytes(&sent[0].data).unwrap();
    assert_eq!((req.timestamp, req.bounce.delay), (c + 7200, 7200));
}

#[test]
fn ctl_requests_are_answered_ok_or_fail_with_the_client_id() {
    let mut f = fixture();
    let future = time_now() + 3600;
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    f.queue_message(&[envelope(e1, "relay", future), envelope(e2, "relay", future)]);

    f.imsg(PROC_CONTROL, IMSG_CTL_SCHEDULE, 42, &e1.to_ne_bytes());
    f.imsg(
        PROC_CONTROL,
        IMSG_CTL_SCHEDULE,
        43,
        &evpid(1, 9).to_ne_bytes(),
    );
    f.imsg(PROC_CONTROL, IMSG_CTL_PAUSE_EVP, 44, &e2.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_PAUSE_EVP, 45, &e2.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_RESUME_EVP, 46, &1u64.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_REMOVE, 47, &1u64.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_REMOVE, 48, &2u64.to_ne_bytes());
    // A client's short request is refused, not fatal.
    f.imsg(PROC_CONTROL, IMSG_CTL_REMOVE, 49, &[1, 0, 0]);
    assert_eq!(
        f.told_control(),
        [
            (IMSG_CTL_OK, 42),
            (IMSG_CTL_FAIL, 43),
            (IMSG_CTL_OK, 44),
            (IMSG_CTL_FAIL, 45),
            (IMSG_CTL_OK, 46),
            (IMSG_CTL_OK, 47),
            (IMSG_CTL_FAIL, 48),
            (IMSG_CTL_FAIL, 49),
        ]
    );
    f.timeout();
    assert_eq!(
        f.told_queue(),
        [
            (IMSG_SCHED_ENVELOPE_REMOVE, e1),
            (IMSG_SCHED_ENVELOPE_REMOVE, e2),
        ]
    );
    assert_eq!(f.s.ninflight, 2);
    f.imsg(PROC_QUEUE, IMSG_QUEUE_ENVELOPE_ACK, 0, &e1.to_ne_bytes());
    f.imsg(PROC_QUEUE, IMSG_QUEUE_ENVELOPE_ACK, 0, &e2.to_ne_bytes());
    assert_eq!(f.s.ninflight, 0);
}

#[test]
fn listings_answer_pages_of_messages_and_envelopes() {
    let mut f = fixture_with("ramqueue", |c| {
        c.sc_scheduler_max_msg_batch_size = 2;
        c.sc_scheduler_max_evp_batch_size = 2;
    });
    let future = time_now() + 3600;
    for msgid in [5, 3, 9] {
        f.queue_message(&[
            envelope(evpid(msgid, 1), "relay", future),
            envelope(evpid(msgid, 2), "relay", future),
            envelope(evpid(msgid, 3), "relay", future),
        ]);
    }
    f.imsg(PROC_CONTROL, IMSG_CTL_LIST_MESSAGES, 7, &0u32.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_LIST_MESSAGES, 8, &6u32.to_ne_bytes());
    f.imsg(PROC_CONTROL, IMSG_CTL_LIST_MESSAGES, 9, &[]);
    let got: Vec<_> = f
        .sent_to(PROC_CONTROL)
        .iter()
        .map(|m| (m.hdr.type_, m.hdr.peerid, m.data.clone()))
        .collect();
    let ids = |v: &[u32]| v.iter().flat_map(|i| i.to_ne_bytes()).collect::<Vec<u8>>();
    let list = IMSG_CTL_LIST_MESSAGES as u32;
    assert_eq!(
        got,
        [
            (list, 7, ids(&[3, 5])),
            (list, 8, ids(&[9])),
            (list, 9, Vec::new()),
        ]
    );

    f.imsg(
        PROC_CONTROL,
        IMSG_CTL_PAUSE_EVP,
        1,
        &evpid(5, 3).to_ne_bytes(),
    );
    f.told_control();
    f.imsg(
        PROC_CONTROL,
        IMSG_CTL_LIST_ENVELOPES,
        11,
        &evpid(5, 2).to_ne_bytes(),
    );
    let sent = f.sent_to(PROC_QUEUE);
    assert_eq!(sent.len(), 3);
    let mut rows = Vec::new();
    for m in &sent[..2] {
        assert_eq!(
            (m.hdr.type_, m.hdr.peerid),
            (IMSG_CTL_LIST_ENVELOPES as u32, 11)
        );
        let mut r = m_msg(m);
        rows.push((m_get_evpid(&mut r), m_get_int(&mut r), m_get_time(&mut r)));
        m_end(&r);
    }
    assert_eq!(
        rows,
        [
            (evpid(5, 2), 0x10, future),
            (evpid(5, 3), 0x10 | 0x40, future)
        ]
    );
    assert_eq!(
        (sent[2].hdr.type_, sent[2].hdr.peerid, sent[2].data.len()),
        (IMSG_CTL_LIST_ENVELOPES as u32, 11, 0)
    );
}

#[test]
fn held_envelopes_go_out_again_when_released() {
    let mut f = fixture();
    let past = time_now() - 60;
    let e = evpid(1, 1);
    f.queue_message(&[envelope(e, "relay", past)]);
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, e)]);

    let mut hold = e.to_ne_bytes().to_vec();
    hold.extend_from_slice(&77u64.to_ne_bytes());
    f.imsg(PROC_QUEUE, IMSG_QUEUE_HOLDQ_HOLD, 0, &hold);
    assert_eq!(f.s.ninflight, 0);
    f.timeout();
    assert!(f.told_queue().is_empty());

    let mut release = 1i32.to_ne_bytes().to_vec();
    release.extend_from_slice(&77u64.to_ne_bytes());
    release.extend_from_slice(&0i32.to_ne_bytes());
    f.imsg(PROC_QUEUE, IMSG_QUEUE_HOLDQ_RELEASE, 0, &release);
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, e)]);
}

#[test]
fn the_queue_can_remove_an_envelope_in_flight_or_not() {
    let mut f = fixture();
    let past = time_now() - 60;
    let (e1, e2) = (evpid(1, 1), evpid(1, 2));
    f.queue_message(&[envelope(e1, "relay", past)]);
    f.timeout();
    f.told_queue();
    // It could not load an envelope it was handed.
    let mut remove = e1.to_ne_bytes().to_vec();
    remove.extend_from_slice(&1u32.to_ne_bytes());
    f.imsg(PROC_QUEUE, IMSG_QUEUE_ENVELOPE_REMOVE, 0, &remove);
    assert_eq!(f.s.ninflight, 0);
    assert!(!f.s.backend.query(1));

    f.queue_message(&[envelope(e2, "relay", time_now() + 3600)]);
    let mut remove = e2.to_ne_bytes().to_vec();
    remove.extend_from_slice(&0u32.to_ne_bytes());
    f.imsg(PROC_QUEUE, IMSG_QUEUE_ENVELOPE_REMOVE, 0, &remove);
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_REMOVE, e2)]);
}

#[test]
fn discovery_commits_a_message_once() {
    let mut f = fixture();
    let past = time_now() - 60;
    let e = evpid(1, 1);
    scheduler_imsg_discover_evpid(&mut f.s, &envelope(e, "local", past), past);
    f.imsg(
        PROC_QUEUE,
        IMSG_QUEUE_DISCOVER_MSGID,
        0,
        &1u32.to_ne_bytes(),
    );
    assert!(f.s.backend.query(1));
    // Already queued: both are ignored.
    scheduler_imsg_discover_evpid(&mut f.s, &envelope(e, "local", past), past);
    f.imsg(
        PROC_QUEUE,
        IMSG_QUEUE_DISCOVER_MSGID,
        0,
        &1u32.to_ne_bytes(),
    );
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_DELIVER, e)]);
}

#[test]
fn the_mta_can_ask_for_an_envelope_now() {
    let mut f = fixture();
    let e = evpid(1, 1);
    f.queue_message(&[envelope(e, "relay", time_now() + 3600)]);
    f.imsg(
        PROC_QUEUE,
        IMSG_QUEUE_ENVELOPE_SCHEDULE,
        0,
        &e.to_ne_bytes(),
    );
    assert!(f.armed());
    f.timeout();
    assert_eq!(f.told_queue(), [(IMSG_SCHED_ENVELOPE_TRANSFER, e)]);
}

#[test]
fn the_null_backend_leaves_the_timer_asleep() {
    let mut f = fixture_with("null", |_| {});
    f.queue_message(&[envelope(evpid(1, 1), "local", time_now() - 60)]);
    f.timeout();
    assert!(f.told_queue().is_empty());
    assert!(!f.armed());
}

#[test]
fn bounce_requests_have_c_layout() {
    let req = BounceReqMsg {
        evpid: 0x0102_0304_0506_0708,
        timestamp: 1_700_000_000,
        bounce: DeliveryBounce {
            type_: BounceType::Delayed,
            delay: 14400,
            ttl: 345_600,
            dsn_ret: Some(DsnRet::Hdrs),
            mta_without_dsn: true,
        },
    };
    let b = req.to_bytes();
    let mut want = Vec::new();
    want.extend_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
    want.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
    want.extend_from_slice(&1i32.to_ne_bytes());
    want.extend_from_slice(&[0; 4]);
    want.extend_from_slice(&14400i64.to_ne_bytes());
    want.extend_from_slice(&345_600i64.to_ne_bytes());
    want.extend_from_slice(&2i32.to_ne_bytes());
    want.extend_from_slice(&1i32.to_ne_bytes());
    assert_eq!(b.to_vec(), want);
    assert_eq!(BounceReqMsg::from_bytes(&b), Some(req));
    assert_eq!(BounceReqMsg::from_bytes(&b[..47]), None);
    let mut bad = b;
    bad[16] = 3;
    assert_eq!(BounceReqMsg::from_bytes(&bad), None);
}
