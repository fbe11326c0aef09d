//! scheduler_backend.c: what every scheduler backend offers, the choice of
//! one by name (`-B scheduler=`), and scheduler_info(), what the scheduler
//! keeps of an envelope (OpenSMTPD scheduler_backend.c 1.18, with
//! smtpd.h's `struct scheduler_backend` and smtpd-api.h's
//! `struct scheduler_info`, `struct evpstate` and `SCHED_*`).
//!
//! Backends never read the clock: every call that C makes after
//! `currtime = time(NULL)` takes `now`, the scheduler's time in seconds
//! since the epoch, so that tests can drive them.

use bitflags::bitflags;

use super::scheduler_null::SchedulerNull;
use super::scheduler_ramqueue::SchedulerRam;
use crate::config::config::{env, DispatcherAgent, Smtpd};
use crate::queue::envelope::{DeliveryType, Envelope, EnvelopeFlags};

bitflags! {
    /// SCHED_*: as a mask, what a batch may hand out; as one bit, what
    /// a batch handed out for one envelope.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Sched: u32 {
        /// Removed (smtpctl remove): the queue deletes it.
        const SCHED_REMOVE = 0x01;
        /// Past its ttl: the queue bounces and deletes it.
        const SCHED_EXPIRE = 0x02;
        /// Rescheduled inside the backend; nothing to send.
        const SCHED_UPDATE = 0x04;
        /// A bounce to generate (IMSG_SCHED_ENVELOPE_INJECT).
        const SCHED_BOUNCE = 0x08;
        /// A local delivery (IMSG_SCHED_ENVELOPE_DELIVER).
        const SCHED_MDA = 0x10;
        /// A relay (IMSG_SCHED_ENVELOPE_TRANSFER).
        const SCHED_MTA = 0x20;
    }
}

/// struct scheduler_info: what a backend is told about an envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerInfo {
    pub evpid: u64,
    pub type_: DeliveryType,
    /// How many times delivery was tried and tempfailed.
    pub retry: u16,
    pub creation: i64,
    /// Seconds after `creation` at which the envelope expires.
    pub ttl: i64,
    pub lasttry: i64,
    pub lastbounce: i64,
    /// Set by insert and update: when the backend will try it next.
    pub nexttry: i64,
}

/// struct evpstate: an envelope's run state, as `smtpctl show queue`
/// lists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evpstate {
    pub evpid: u64,
    /// EF_PENDING, EF_INFLIGHT, EF_SUSPEND, EF_HOLD.
    pub flags: EnvelopeFlags,
    /// Always 0: no backend fills it in.
    pub retry: u16,
    /// When it is due (pending), was scheduled, or left (inflight).
    pub time: i64,
}

/// What batch() found: C's return value with `*count` and `*delay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    /// C's 1: what to do with which envelope, in the order handed out.
    Envelopes(Vec<(Sched, u64)>),
    /// C's 0: nothing now; ask again after this many seconds, or (C's
    /// delay -1) only when something changes.
    Wait(Option<i64>),
}

/// struct scheduler_backend. Counts and booleans are C's return values;
/// `id` arguments are an envelope id, or a message id when they fit in 32
/// bits (smtpctl's `schedule`, `remove`, `pause` and `resume` take both).
pub trait SchedulerBackend {
    /// Starts from an empty queue; `arg` is the backend's name.
    fn init(&mut self, arg: &str) -> bool;

    /// An envelope of a message being received or discovered at start-up;
    /// it waits for commit() or rollback() of its message. Sets
    /// `si.nexttry`.
    fn insert(&mut self, si: &mut SchedulerInfo, now: i64) -> bool;
    /// The message's inserted envelopes join the queue; returns how many.
    fn commit(&mut self, msgid: u32, now: i64) -> usize;
    /// The message's inserted envelopes are dropped; returns how many.
    fn rollback(&mut self, msgid: u32, now: i64) -> usize;

    /// An envelope in flight was tempfailed: it is retried later (its
    /// retry count is in `si`). Sets `si.nexttry`.
    fn update(&mut self, si: &mut SchedulerInfo, now: i64) -> bool;
    /// An envelope in flight is done with (delivered, failed, looped).
    fn delete(&mut self, evpid: u64, now: i64) -> bool;
    /// An envelope in flight waits in hold queue `holdq` for a release;
    /// false when it could not be held and was rescheduled instead.
    fn hold(&mut self, evpid: u64, holdq: u64, now: i64) -> bool;
    /// Releases `n` envelopes of a hold queue (0: all; -1: all, as
    /// updates, so that they are rescheduled rather than tried at once).
    fn release(&mut self, type_: DeliveryType, holdq: u64, n: i32, now: i64) -> usize;

    /// At most `count` envelopes whose turn has come, of the kinds `mask`
    /// allows, taken off the queue.
    fn batch(&mut self, mask: Sched, count: usize, now: i64) -> Batch;

    /// Up to `size` message ids from `from` on, in order.
    fn messages(&self, from: u32, size: usize) -> Vec<u32>;
    /// Up to `size` envelopes of `from`'s message, from `from` on.
    fn envelopes(&self, from: u64, size: usize) -> Vec<Evpstate>;
    /// Makes envelopes due now; returns how many.
    fn schedule(&mut self, id: u64, now: i64) -> usize;
    /// Removes envelopes; returns how many.
    fn remove(&mut self, id: u64, now: i64) -> usize;
    /// Stops scheduling envelopes until resumed; returns how many.
    fn suspend(&mut self, id: u64, now: i64) -> usize;
    /// Undoes suspend(); returns how many.
    fn resume(&mut self, id: u64, now: i64) -> usize;
    /// Whether the message is queued (committed).
    fn query(&self, id: u64) -> bool;
}

/// scheduler_backend_lookup(): `-B scheduler=NAME`. C takes any other
/// name for a proc backend (an external program); those are not here
/// yet, and None lets the caller say so.
pub fn scheduler_backend_lookup(name: &str) -> Option<Box<dyn SchedulerBackend>> {
    match name {
        "null" => Some(Box::new(SchedulerNull)),
        "ramqueue" => Some(Box::new(SchedulerRam::new())),
        _ => None,
    }
}

/// scheduler_info(), with the configuration (env).
pub fn scheduler_info(sched: &mut SchedulerInfo, evp: &Envelope) {
    scheduler_info_conf(env(), sched, evp)
}

/// scheduler_info() with the configuration given: the delivery type
/// comes from the envelope's dispatcher (bounces have their own), the
/// ttl from the dispatcher or else the queue's.
pub fn scheduler_info_conf(conf: &Smtpd, sched: &mut SchedulerInfo, evp: &Envelope) {
    let disp = if evp.type_ == DeliveryType::Bounce {
        &conf.sc_dispatcher_bounce
    } else {
        // dict_xget(): the queue loads no envelope whose dispatcher is
        // unknown (queue_envelope_load), so this is an invariant.
        match conf.sc_dispatchers.get(&evp.dispatcher) {
            Some(d) => d,
            None => fatalx!("dict_xget: key {} not found", evp.dispatcher),
        }
    };
    sched.type_ = match disp.u {
        DispatcherAgent::Local(_) => DeliveryType::Mda,
        DispatcherAgent::Remote(_) => DeliveryType::Mta,
        DispatcherAgent::Bounce => DeliveryType::Bounce,
    };
    sched.ttl = if disp.ttl != 0 { disp.ttl } else { conf.sc_ttl };

    sched.evpid = evp.id;
    sched.creation = evp.creation;
    sched.retry = evp.retry;
    sched.lasttry = evp.lasttry;
    sched.lastbounce = evp.lastbounce;
    sched.nexttry = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::config::{config_default_with, Dispatcher, DispatcherRemote};

    #[test]
    fn lookup_knows_ramqueue_and_null_and_leaves_proc_to_the_caller() {
        assert!(scheduler_backend_lookup("ramqueue").is_some());
        assert!(scheduler_backend_lookup("null").is_some());
        assert!(scheduler_backend_lookup("proc:/usr/local/bin/sched").is_none());
        assert!(scheduler_backend_lookup("").is_none());
    }

    #[test]
    fn info_takes_type_and_ttl_from_the_dispatcher() {
        let mut conf = config_default_with("mx.example.org", &[]);
        conf.sc_ttl = 4 * 86400;
        conf.sc_dispatchers.insert(
            "relay".into(),
            Dispatcher {
                u: DispatcherAgent::Remote(DispatcherRemote::default()),
                ttl: 3600,
            },
        );
        conf.sc_dispatchers.insert(
            "slow".into(),
            Dispatcher {
                u: DispatcherAgent::Remote(DispatcherRemote::default()),
                ttl: 0,
            },
        );
        let evp = Envelope {
            dispatcher: "relay".into(),
            id: 0x1234_5678_0000_0001,
            type_: DeliveryType::Mta,
            retry: 3,
            creation: 1000,
            lasttry: 1500,
            lastbounce: 1200,
            nexttry: 99,
            ..Envelope::default()
        };
        let mut si = SchedulerInfo {
            nexttry: 7,
            ..SchedulerInfo::default()
        };
        scheduler_info_conf(&conf, &mut si, &evp);
        assert_eq!(
            si,
            SchedulerInfo {
                evpid: 0x1234_5678_0000_0001,
                type_: DeliveryType::Mta,
                retry: 3,
                creation: 1000,
                ttl: 3600,
                lasttry: 1500,
                lastbounce: 1200,
                nexttry: 0,
            }
        );

        let evp = Envelope {
            dispatcher: "slow".into(),
            ..evp
        };
        scheduler_info_conf(&conf, &mut si, &evp);
        assert_eq!(si.ttl, 4 * 86400);

        // Bounces use the bounce dispatcher whatever their action says.
        let evp = Envelope {
            type_: DeliveryType::Bounce,
            dispatcher: "nonexistent".into(),
            ..evp
        };
        scheduler_info_conf(&conf, &mut si, &evp);
        assert_eq!((si.type_, si.ttl), (DeliveryType::Bounce, 4 * 86400));
    }
}
