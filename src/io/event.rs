//! The event loop: libevent's role in OpenSMTPD, on poll(2).
//!
//! One loop per process, single-threaded. It watches descriptors, runs
//! timers from a heap, and turns signals into ordinary events through a
//! self-pipe. Handlers are plain functions that receive the process state
//! and the loop, so a handler can add and remove events while it runs.
//!
//! Unlike libevent, the write interest of a descriptor can be asked of
//! the state on each turn (`event_set_dynamic`): a process queues bytes in
//! its buffers and the loop notices, so nothing but the loop touches a
//! descriptor's registration (DESIGN.md: no hidden I/O).
//!
//! Registered descriptor events persist until deleted (libevent's
//! EV_PERSIST); an optional timeout fires EV_TIMEOUT when the descriptor
//! has been idle that long, and is re-armed by activity. Timers fire once.
//! The loop returns when nothing is registered or `event_loopexit` is
//! called; an idle loop sleeps in poll(2) until the next timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use bitflags::bitflags;

use crate::sys::event as sys;

bitflags! {
    /// What happened, or what an event waits for (libevent's values).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EvFlags: u16 {
        const EV_TIMEOUT = 0x01;
        const EV_READ = 0x02;
        const EV_WRITE = 0x04;
        const EV_SIGNAL = 0x08;
    }
}

/// An event's handler: the process state, the loop, the descriptor (or
/// signal number, -1 for timers), what happened, and the argument given
/// at registration (C's `void *arg`: a session id, a peer index...).
pub type EventCb<S> = fn(&mut S, &mut EventBase<S>, RawFd, EvFlags, u64);

/// Asks the state what a descriptor waits for now.
pub type InterestFn<S> = fn(&S, u64) -> EvFlags;

/// A registration in the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId(usize);

enum Interest<S> {
    Fixed(EvFlags),
    Dynamic(InterestFn<S>),
}

enum Kind<S> {
    Fd { fd: RawFd, interest: Interest<S> },
    Timer,
    Signal(libc::c_int),
}

struct Entry<S> {
    kind: Kind<S>,
    cb: EventCb<S>,
    arg: u64,
    added: bool,
    /// For descriptors: the idle timeout.
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Bumped on each add and delete, so that stale heap entries and
    /// readiness gathered before a handler ran are recognised.
    generation: u64,
}

/// The loop and everything registered in it (libevent's event_base).
pub struct EventBase<S> {
    entries: Vec<Option<Entry<S>>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// The signal self-pipe, created with the first signal event.
    sigpipe: Option<(OwnedFd, OwnedFd)>,
    exit: bool,
    now: Instant,
    /// Run after the handlers of each turn (event_set_turn_end).
    turn_end: Option<fn(&mut S)>,
}

impl<S> Default for EventBase<S> {
    fn default() -> Self {
        EventBase::new()
    }
}

impl<S> EventBase<S> {
    /// event_init().
    pub fn new() -> Self {
        EventBase {
            entries: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            sigpipe: None,
            exit: false,
            now: Instant::now(),
            turn_end: None,
        }
    }

    /// Has `f` run at the end of each turn of the loop, once its
    /// handlers are done: for work they leave to be sent in one go (the
    /// counters of stat_note). libevent has no such hook.
    pub fn event_set_turn_end(&mut self, f: fn(&mut S)) {
        self.turn_end = Some(f);
    }

    /// The time at which the current turn of the loop started: handlers
    /// read the clock through this, once per turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn alloc(&mut self, kind: Kind<S>, cb: EventCb<S>, arg: u64) -> EventId {
        let e = Entry {
            kind,
            cb,
            arg,
            added: false,
            timeout: None,
            deadline: None,
            generation: 0,
        };
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(e);
                EventId(i)
            }
            None => {
                self.entries.push(Some(e));
                EventId(self.entries.len() - 1)
            }
        }
    }

    fn entry(&mut self, id: EventId) -> &mut Entry<S> {
        match self.entries.get_mut(id.0).and_then(Option::as_mut) {
            Some(e) => e,
            None => fatalx!("event: unknown event {}", id.0),
        }
    }

    /// event_set() for a descriptor that waits for fixed `what`
    /// (EV_READ and/or EV_WRITE).
    pub fn event_set(&mut self, fd: RawFd, what: EvFlags, cb: EventCb<S>, arg: u64) -> EventId {
        self.alloc(
            Kind::Fd {
                fd,
                interest: Interest::Fixed(what),
            },
            cb,
            arg,
        )
    }

    /// event_set() for a descriptor whose interest the state decides on
    /// each turn.
    pub fn event_set_dynamic(
        &mut self,
        fd: RawFd,
        interest: InterestFn<S>,
        cb: EventCb<S>,
        arg: u64,
    ) -> EventId {
        self.alloc(
            Kind::Fd {
                fd,
                interest: Interest::Dynamic(interest),
            },
            cb,
            arg,
        )
    }

    /// evtimer_set().
    pub fn evtimer_set(&mut self, cb: EventCb<S>, arg: u64) -> EventId {
        self.alloc(Kind::Timer, cb, arg)
    }

    /// signal_set(): the handler runs from the loop, not in signal
    /// context.
    pub fn signal_set(&mut self, signo: libc::c_int, cb: EventCb<S>, arg: u64) -> EventId {
        self.alloc(Kind::Signal(signo), cb, arg)
    }

    /// event_add(): starts watching. For descriptors, `timeout` is an idle
    /// timeout; for timers it is the delay (required).
    pub fn event_add(&mut self, id: EventId, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        if let Kind::Signal(signo) = self.entry(id).kind {
            if self.sigpipe.is_none() {
                self.sigpipe = Some(sys::pipe_nonblock()?);
            }
            let (_, wr) = self.sigpipe.as_ref().expect("created above");
            sys::signal_to_pipe(signo, wr)?;
        }
        let e = self.entry(id);
        if matches!(e.kind, Kind::Timer) && timeout.is_none() {
            fatalx!("event_add: a timer needs a delay");
        }
        e.added = true;
        e.generation += 1;
        e.timeout = timeout;
        e.deadline = timeout.map(|t| now + t);
        let (generation, deadline) = (e.generation, e.deadline);
        if let Some(d) = deadline {
            self.timers.push(Reverse((d, generation, id.0)));
        }
        Ok(())
    }

    /// evtimer_add().
    pub fn evtimer_add(&mut self, id: EventId, delay: Duration) -> io::Result<()> {
        self.event_add(id, Some(delay))
    }

    /// event_del(): stops watching; the registration stays for a later
    /// event_add.
    pub fn event_del(&mut self, id: EventId) {
        let e = self.entry(id);
        e.added = false;
        e.generation += 1;
        e.deadline = None;
        if let Kind::Signal(signo) = e.kind {
            let _ = sys::signal_default(signo);
        }
    }

    /// event_del() and forget the registration.
    pub fn event_free(&mut self, id: EventId) {
        self.event_del(id);
        self.entries[id.0] = None;
        self.free.push(id.0);
    }

    /// event_pending(): whether the event is added.
    pub fn event_pending(&self, id: EventId) -> bool {
        self.entries
            .get(id.0)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.added)
    }

    /// event_loopexit(): the loop returns after the current turn.
    pub fn event_loopexit(&mut self) {
        self.exit = true;
    }

    fn anything_added(&self) -> bool {
        self.entries.iter().flatten().any(|e| e.added)
    }

    /// The earliest live timer deadline, dropping stale heap entries.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((d, generation, i))) = self.timers.peek().copied() {
            match self.entries.get(i).and_then(Option::as_ref) {
                Some(e) if e.added && e.generation == generation && e.deadline == Some(d) => {
                    return Some(d)
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// The pollfd set for this turn: every added descriptor that waits for
    /// something, then the signal pipe.
    fn pollfds(&self, state: &S) -> (Vec<sys::pollfd>, Vec<(usize, u64)>) {
        let mut fds = Vec::new();
        let mut who = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(e) = e.as_ref().filter(|e| e.added) else {
                continue;
            };
            let Kind::Fd { fd, interest } = &e.kind else {
                continue;
            };
            let what = match interest {
                Interest::Fixed(w) => *w,
                Interest::Dynamic(f) => f(state, e.arg),
            };
            let mut events = 0;
            if what.contains(EvFlags::EV_READ) {
                events |= sys::POLLIN;
            }
            if what.contains(EvFlags::EV_WRITE) {
                events |= sys::POLLOUT;
            }
            if events != 0 {
                fds.push(sys::pollfd {
                    fd: *fd,
                    events,
                    revents: 0,
                });
                who.push((i, e.generation));
            }
        }
        if let Some((rd, _)) = &self.sigpipe {
            fds.push(sys::pollfd {
                fd: rd.as_raw_fd(),
                events: sys::POLLIN,
                revents: 0,
            });
        }
        (fds, who)
    }

    /// Runs one handler if its registration is still the one the event
    /// was gathered for.
    fn fire(&mut self, state: &mut S, i: usize, generation: u64, what: EvFlags) {
        let Some(e) = self.entries.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !e.added || e.generation != generation {
            return;
        }
        let (cb, arg) = (e.cb, e.arg);
        let fd = match e.kind {
            Kind::Fd { fd, .. } => {
                // Activity re-arms an idle timeout.
                if let Some(t) = e.timeout.filter(|_| !what.contains(EvFlags::EV_TIMEOUT)) {
                    e.deadline = Some(self.now + t);
                    e.generation += 1;
                    let g = e.generation;
                    self.timers.push(Reverse((self.now + t, g, i)));
                }
                fd
            }
            Kind::Timer => {
                e.added = false;
                e.generation += 1;
                -1
            }
            Kind::Signal(signo) => signo,
        };
        if what.contains(EvFlags::EV_TIMEOUT) {
            if let Some(e) = self.entries.get_mut(i).and_then(Option::as_mut) {
                e.deadline = None;
            }
        }
        cb(state, self, fd, what, arg);
    }

    fn dispatch_signals(&mut self, state: &mut S) -> io::Result<()> {
        let Some((rd, _)) = &self.sigpipe else {
            return Ok(());
        };
        let rd = rd.as_raw_fd();
        let mut buf = [0u8; 64];
        loop {
            let n = sys::read_nonblock(rd, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            for &signo in &buf[..n] {
                let targets: Vec<(usize, u64)> = self
                    .entries
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| {
                        let e = e.as_ref()?;
                        matches!(e.kind, Kind::Signal(s) if s == libc::c_int::from(signo) && e.added)
                            .then_some((i, e.generation))
                    })
                    .collect();
                for (i, generation) in targets {
                    self.fire(state, i, generation, EvFlags::EV_SIGNAL);
                }
            }
        }
    }

    fn dispatch_timers(&mut self, state: &mut S) {
        while let Some(d) = self.next_deadline() {
            if d > self.now {
                return;
            }
            let Some(Reverse((_, generation, i))) = self.timers.pop() else {
                return;
            };
            self.fire(state, i, generation, EvFlags::EV_TIMEOUT);
        }
    }

    /// event_dispatch(): runs the loop until nothing is registered or
    /// event_loopexit() is called. Errors are poll(2)'s, which a daemon
    /// treats as fatal.
    pub fn event_dispatch(&mut self, state: &mut S) -> io::Result<()> {
        self.exit = false;
        while !self.exit && self.anything_added() {
            self.event_loop_once(state)?;
        }
        Ok(())
    }

    /// One turn: wait for readiness or the next timer, then run the
    /// handlers of what happened: signals, descriptors, then timers.
    pub fn event_loop_once(&mut self, state: &mut S) -> io::Result<()> {
        let (mut fds, who) = self.pollfds(state);
        let timeout = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        sys::poll(&mut fds, timeout)?;
        self.now = Instant::now();
        if self.sigpipe.is_some() && fds.last().is_some_and(|p| p.revents != 0) {
            self.dispatch_signals(state)?;
        }
        for (pfd, &(i, generation)) in fds.iter().zip(&who) {
            let mut what = EvFlags::empty();
            if pfd.revents & (sys::POLLIN | sys::POLLHUP | sys::POLLERR | sys::POLLNVAL) != 0 {
                what |= EvFlags::EV_READ;
            }
            if pfd.revents & (sys::POLLOUT | sys::POLLERR | sys::POLLNVAL) != 0 {
                what |= EvFlags::EV_WRITE;
            }
            if !what.is_empty() {
                self.fire(state, i, generation, what);
            }
        }
        self.dispatch_timers(state);
        if let Some(f) = self.turn_end {
            f(state);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[derive(Default)]
    struct Log {
        seen: Vec<(u64, EvFlags)>,
        reads: usize,
        stop_after: usize,
        pending_write: bool,
    }

    fn record(s: &mut Log, base: &mut EventBase<Log>, _fd: RawFd, what: EvFlags, arg: u64) {
        s.seen.push((arg, what));
        if s.stop_after != 0 && s.seen.len() >= s.stop_after {
            base.event_loopexit();
        }
    }

    #[test]
    fn timers_fire_in_deadline_order() {
        let mut base = EventBase::new();
        let mut log = Log::default();
        for (arg, ms) in [(3u64, 30u64), (1, 10), (2, 20), (0, 1)] {
            let t = base.evtimer_set(record, arg);
            base.evtimer_add(t, Duration::from_millis(ms)).unwrap();
        }
        let start = Instant::now();
        base.event_dispatch(&mut log).unwrap();
        let order: Vec<u64> = log.seen.iter().map(|(a, _)| *a).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(log.seen.iter().all(|(_, w)| *w == EvFlags::EV_TIMEOUT));
    }

    #[test]
    fn a_deleted_timer_does_not_fire() {
        let mut base = EventBase::new();
        let mut log = Log::default();
        let t = base.evtimer_set(record, 7);
        base.evtimer_add(t, Duration::from_millis(5)).unwrap();
        let keep = base.evtimer_set(record, 8);
        base.evtimer_add(keep, Duration::from_millis(10)).unwrap();
        base.event_del(t);
        base.event_dispatch(&mut log).unwrap();
        assert_eq!(log.seen, [(8, EvFlags::EV_TIMEOUT)]);
    }

    fn reader(s: &mut Log, base: &mut EventBase<Log>, fd: RawFd, what: EvFlags, arg: u64) {
        let mut buf = [0u8; 16];
        let n = sys::read_nonblock(fd, &mut buf).unwrap();
        s.reads += n;
        record(s, base, fd, what, arg);
    }

    #[test]
    fn a_thousand_descriptors() {
        assert!(
            crate::sys::unistd::nofile_to_max().unwrap() > 2100,
            "this test needs 2000 descriptors"
        );
        let mut base = EventBase::new();
        let mut log = Log {
            stop_after: 1000,
            ..Default::default()
        };
        let mut pairs = Vec::new();
        for i in 0..1000u64 {
            let (a, b) = UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            let id = base.event_set(b.as_raw_fd(), EvFlags::EV_READ, reader, i);
            base.event_add(id, None).unwrap();
            pairs.push((a, b));
        }
        for (a, _) in pairs.iter_mut().rev() {
            a.write_all(b"x").unwrap();
        }
        base.event_dispatch(&mut log).unwrap();
        assert_eq!(log.reads, 1000);
        let mut args: Vec<u64> = log.seen.iter().map(|(a, _)| *a).collect();
        args.sort_unstable();
        assert_eq!(args, (0..1000).collect::<Vec<_>>());
    }

    fn on_signal(s: &mut Log, base: &mut EventBase<Log>, fd: RawFd, what: EvFlags, arg: u64) {
        assert_eq!(fd, libc::SIGUSR1);
        record(s, base, fd, what, arg);
        base.event_loopexit();
    }

    #[test]
    fn signals_arrive_as_events() {
        let mut base = EventBase::new();
        let mut log = Log::default();
        let s = base.signal_set(libc::SIGUSR1, on_signal, 42);
        base.event_add(s, None).unwrap();
        sys::raise(libc::SIGUSR1).unwrap();
        base.event_dispatch(&mut log).unwrap();
        base.event_del(s);
        assert_eq!(log.seen, [(42, EvFlags::EV_SIGNAL)]);
    }

    fn wants(s: &Log, _arg: u64) -> EvFlags {
        if s.pending_write {
            EvFlags::EV_READ | EvFlags::EV_WRITE
        } else {
            EvFlags::EV_READ
        }
    }

    fn writer(s: &mut Log, base: &mut EventBase<Log>, fd: RawFd, what: EvFlags, arg: u64) {
        if what.contains(EvFlags::EV_WRITE) {
            s.pending_write = false;
            record(s, base, fd, what, arg);
            base.event_loopexit();
        }
    }

    fn queue_write(s: &mut Log, _base: &mut EventBase<Log>, _fd: RawFd, _what: EvFlags, _arg: u64) {
        s.pending_write = true;
    }

    #[test]
    fn dynamic_interest_follows_the_state() {
        let mut base = EventBase::new();
        let mut log = Log::default();
        let (a, _b) = UnixStream::pair().unwrap();
        let id = base.event_set_dynamic(a.as_raw_fd(), wants, writer, 1);
        base.event_add(id, None).unwrap();
        // Nothing to write: the socket is writable but not watched for it.
        let t = base.evtimer_set(queue_write, 0);
        base.evtimer_add(t, Duration::from_millis(20)).unwrap();
        let start = Instant::now();
        base.event_dispatch(&mut log).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(log.seen, [(1, EvFlags::EV_WRITE)]);
    }

    #[test]
    fn an_idle_descriptor_times_out_and_activity_rearms() {
        let mut base = EventBase::new();
        let mut log = Log {
            stop_after: 2,
            ..Default::default()
        };
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let id = base.event_set(b.as_raw_fd(), EvFlags::EV_READ, reader, 5);
        base.event_add(id, Some(Duration::from_millis(50))).unwrap();
        a.write_all(b"x").unwrap();
        let start = Instant::now();
        base.event_dispatch(&mut log).unwrap();
        assert_eq!(log.seen, [(5, EvFlags::EV_READ), (5, EvFlags::EV_TIMEOUT)]);
        assert!(start.elapsed() >= Duration::from_millis(50));
        let mut rest = Vec::new();
        let _ = a.set_nonblocking(true);
        let _ = a.read_to_end(&mut rest);
    }

    #[test]
    fn an_idle_loop_does_not_spin() {
        let mut base = EventBase::new();
        let mut log = Log::default();
        let (_a, b) = UnixStream::pair().unwrap();
        let id = base.event_set(b.as_raw_fd(), EvFlags::EV_READ, record, 0);
        base.event_add(id, None).unwrap();
        let t = base.evtimer_set(record, 1);
        base.evtimer_add(t, Duration::from_millis(300)).unwrap();
        let cpu = sys::cpu_time();
        base.event_loop_once(&mut log).unwrap();
        let used = sys::cpu_time() - cpu;
        assert_eq!(log.seen, [(1, EvFlags::EV_TIMEOUT)]);
        // 300 ms of waiting may cost scheduler noise, not a busy loop.
        assert!(used < Duration::from_millis(30), "{used:?}");
    }
}
