//! event_asr_run(): asr queries driven by a process's event loop (the
//! libevent function of OpenBSD's lib/libevent/event.c that OpenSMTPD
//! calls).
//!
//! Each query in flight has one registration in the loop, for the
//! descriptor and condition it waits on, with its timeout; when it fires
//! the query runs again, and once done its callback gets the result. A
//! process keeps its queries in an `EventAsr`, next to its resolver
//! configuration. Nothing blocks: any number of queries wait side by side
//! in the one poll(2).

use std::os::fd::RawFd;
use std::time::Duration;

use super::asr::{asr_run, Asr, AsrCond, AsrQuery, AsrResult, Async};
use crate::io::event::{EvFlags, EventBase, EventId};

/// What runs when a query is done: the state, the loop, the result, and
/// the argument given to event_asr_run().
pub type AsrCb<S> = fn(&mut S, &mut EventBase<S>, AsrResult, u64);

/// A process state that runs asr queries.
pub trait AsrOwner: Sized {
    fn event_asr(&mut self) -> &mut EventAsr<Self>;
}

struct Running<S> {
    q: Option<AsrQuery>,
    cb: AsrCb<S>,
    arg: u64,
    ev: Option<EventId>,
}

/// The resolver of a process and its queries in flight (C's struct
/// event_asr, one per query, gathered here).
pub struct EventAsr<S> {
    pub asr: Asr,
    running: Vec<Option<Running<S>>>,
    free: Vec<usize>,
}

impl<S: AsrOwner> EventAsr<S> {
    pub fn new(asr: Asr) -> Self {
        EventAsr {
            asr,
            running: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Queries in flight.
    pub fn pending(&self) -> usize {
        self.running.len() - self.free.len()
    }
}

/// event_asr_run(): starts `q`; `cb` gets its result with `arg`. As in
/// libevent, the query first runs from the loop (a timer that fires at
/// once), never inside this call, so a caller can start several queries
/// and count them before any callback runs.
pub fn event_asr_run<S: AsrOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    q: AsrQuery,
    cb: AsrCb<S>,
    arg: u64,
) {
    let ea = s.event_asr();
    let run = Running {
        q: Some(q),
        cb,
        arg,
        ev: None,
    };
    let slot = match ea.free.pop() {
        Some(i) => {
            ea.running[i] = Some(run);
            i
        }
        None => {
            ea.running.push(Some(run));
            ea.running.len() - 1
        }
    };
    let ev = base.evtimer_set(event_asr_dispatch, slot as u64);
    if let Err(e) = base.evtimer_add(ev, Duration::ZERO) {
        fatal!(e, "event_asr_run: evtimer_add");
    }
    if let Some(Some(r)) = s.event_asr().running.get_mut(slot) {
        r.ev = Some(ev);
    }
}

fn take_running<S: AsrOwner>(s: &mut S, slot: usize) -> Option<Running<S>> {
    let ea = s.event_asr();
    let r = ea.running.get_mut(slot)?.take()?;
    ea.free.push(slot);
    Some(r)
}

/// event_asr_dispatch(): the query's descriptor is ready, or its time is
/// up: run it again, then wait on its new condition or hand over the
/// result.
fn event_asr_dispatch<S: AsrOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    _fd: RawFd,
    _what: EvFlags,
    slot: u64,
) {
    let slot = slot as usize;
    let Some(Some(r)) = s.event_asr().running.get_mut(slot) else {
        return;
    };
    let (Some(mut q), Some(ev)) = (r.q.take(), r.ev.take()) else {
        return;
    };
    base.event_free(ev);
    let mut ar = AsrResult::default();
    if asr_run(&mut q, &mut ar, base.now()) == Async::Cond {
        let what = match ar.ar_cond {
            AsrCond::Read => EvFlags::EV_READ,
            AsrCond::Write => EvFlags::EV_WRITE,
        };
        let ev = base.event_set(ar.ar_fd, what, event_asr_dispatch, slot as u64);
        if let Err(e) = base.event_add(ev, Some(ar.ar_timeout)) {
            fatal!(e, "event_asr_dispatch: event_add");
        }
        if let Some(Some(r)) = s.event_asr().running.get_mut(slot) {
            r.q = Some(q);
            r.ev = Some(ev);
        }
        return;
    }
    if let Some(r) = take_running(s, slot) {
        (r.cb)(s, base, ar, r.arg);
    }
}
