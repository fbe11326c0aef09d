//! smtp.c: the dispatcher's SMTP server: its listening sockets, taking
//! connections, local enqueue sessions, and the limit on sessions
//! (OpenSMTPD smtp.c 1.176).

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::dispatcher::Dispatcher;
use super::smtp_session::{smtp_session, smtp_session_imsg, SmtpSession};
use crate::config::config::{env, Listener, ListenerFlags};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::io::ioev::Stream;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{m_compose, ImsgType, Mproc, ProcType};
use crate::queue::envelope::PeerAddr;
use crate::smtpd::imsg_to_str;
use crate::sys::socket::{getdtablecount, getdtablesize};
use crate::util::stat_backend::{stat_decrement, stat_increment};

/// SMTPD_BACKLOG: listen(2)'s queue of connections not yet accepted.
/// OpenSMTPD's 5 overflows as soon as a few clients reconnect together
/// (they do: one batched commit answers them all at once), and each
/// connection the kernel drops costs its client a SYN retransmission,
/// one second or more. 128 is OpenBSD's SOMAXCONN; the kernel caps it.
const SMTPD_BACKLOG: i32 = 128;
/// SMTP_FD_RESERVE: descriptors kept free for everything but sessions.
const SMTP_FD_RESERVE: usize = 5;

/// A listening socket and its listener.
struct SmtpListener {
    conf: &'static Listener,
    sock: TcpListener,
    ev: Option<EventId>,
}

/// The SMTP server's state in the dispatcher (smtp.c's statics).
#[derive(Default)]
pub struct Smtp {
    listeners: Vec<SmtpListener>,
    pub sessions: HashMap<u64, SmtpSession>,
    /// Sessions open (C's `sessions`).
    nsessions: usize,
    maxsessions: usize,
    /// SMTPD_SMTP_PAUSED: smtpctl pause smtp, or -P smtp.
    paused: bool,
    /// SMTPD_SMTP_DISABLED: out of descriptors or at the session limit.
    disabled: bool,
}

/// smtp_imsg(): the dispatcher's SMTP messages.
pub fn smtp_imsg(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, p: u64, imsg: Imsg) {
    use ImsgType::*;
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(
            IMSG_SMTP_CHECK_SENDER
            | IMSG_SMTP_EXPAND_RCPT
            | IMSG_SMTP_LOOKUP_HELO
            | IMSG_SMTP_MESSAGE_COMMIT
            | IMSG_SMTP_MESSAGE_CREATE
            | IMSG_SMTP_MESSAGE_OPEN
            | IMSG_QUEUE_ENVELOPE_SUBMIT
            | IMSG_QUEUE_ENVELOPE_COMMIT,
        ) => smtp_session_imsg(d, base, imsg),
        Some(IMSG_QUEUE_SMTP_SESSION) => {
            // A bounce: the daemon's own, which only root lists.
            let fd = smtp_enqueue(d, base, 0);
            if let Some(p) = d.mproc_key(p) {
                m_compose(p, IMSG_QUEUE_SMTP_SESSION, 0, 0, fd, &imsg.data);
            }
        }
        Some(IMSG_CTL_SMTP_SESSION) => {
            // The uid of the user asking, which control learnt from the
            // socket, owns what the session queues.
            let Ok(euid) = <[u8; 4]>::try_from(imsg.data.as_slice()) else {
                fatalx!(
                    "smtp_imsg: IMSG_CTL_SMTP_SESSION: bad size {}",
                    imsg.data.len()
                );
            };
            let fd = smtp_enqueue(d, base, u32::from_ne_bytes(euid));
            let peerid = imsg.hdr.peerid;
            if let Some(p) = d.mproc_key(p) {
                m_compose(p, IMSG_CTL_SMTP_SESSION, peerid, 0, fd, &[]);
            }
        }
        Some(IMSG_CTL_PAUSE_SMTP) => {
            log_debug!("debug: smtp: pausing listening sockets");
            smtp_pause(d, base);
            d.smtp.paused = true;
        }
        Some(IMSG_CTL_RESUME_SMTP) => {
            log_debug!("debug: smtp: resuming listening sockets");
            d.smtp.paused = false;
            smtp_resume(d, base);
        }
        _ => fatalx!("smtp_imsg: unexpected {} imsg", imsg_to_str(imsg.hdr.type_)),
    }
}

/// smtp_postfork() and smtp_setup_listeners(): the listening sockets,
/// bound while the dispatcher is still root (port 25 needs it). An
/// address family the system lacks is skipped with a warning, as C does.
pub fn smtp_postfork() -> Smtp {
    let mut smtp = Smtp::default();
    for l in &env().sc_listeners {
        let Some(sa) = l.ss else {
            continue;
        };
        let fd = match crate::sys::socket::tcp_bind(&sa) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                log_warn!(e, "smtpd: socket");
                continue;
            }
            Err(e) => fatal!(e, "smtpd: bind {}", l.address()),
        };
        smtp.listeners.push(SmtpListener {
            conf: l,
            sock: TcpListener::from(fd),
            ev: None,
        });
    }
    smtp
}

/// smtp_configure() and smtp_setup_events(): listen, and accept unless
/// paused (-P smtp); then the session limit from the descriptors left.
pub fn smtp_configure(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    for (i, l) in d.smtp.listeners.iter_mut().enumerate() {
        log_debug!(
            "debug: smtp: listen on {} port {} flags 0x{:01x}",
            l.conf.address(),
            l.conf.port,
            l.conf.flags.bits()
        );
        if let Err(e) = l.sock.set_nonblocking(true) {
            fatal!(e, "smtp: listener");
        }
        if let Err(e) = crate::sys::socket::listen(l.sock.as_fd(), SMTPD_BACKLOG) {
            fatal!(e, "listen");
        }
        l.ev = Some(base.event_set(l.sock.as_raw_fd(), EvFlags::EV_READ, smtp_accept, i as u64));
    }
    if env().sc_flags & crate::smtpd::SMTPD_SMTP_PAUSED != 0 {
        d.smtp.paused = true;
    } else {
        smtp_add_events(d, base);
    }
    let left = getdtablesize()
        .unwrap_or(0)
        .saturating_sub(getdtablecount().unwrap_or(0));
    d.smtp.maxsessions = (left / 2).saturating_sub(SMTP_FD_RESERVE);
    log_debug!(
        "debug: smtp: will accept at most {} clients",
        d.smtp.maxsessions
    );
}

fn smtp_add_events(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    for l in &d.smtp.listeners {
        if let Some(ev) = l.ev {
            if let Err(e) = base.event_add(ev, None) {
                fatal!(e, "smtp: event_add");
            }
        }
    }
}

/// smtp_pause(): stop accepting.
fn smtp_pause(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    if d.smtp.paused || d.smtp.disabled {
        return;
    }
    for l in &d.smtp.listeners {
        if let Some(ev) = l.ev {
            base.event_del(ev);
        }
    }
}

/// smtp_resume(): accept again.
fn smtp_resume(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    if d.smtp.paused || d.smtp.disabled {
        return;
    }
    smtp_add_events(d, base);
}

/// smtp_enqueue(): a session on a socket pair for a local submission
/// (sendmail through smtpctl); the other end goes to who asked.
fn smtp_enqueue(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    euid: u32,
) -> Option<OwnedFd> {
    // Requests already in flight may still come after a pause: the
    // local listener is no socket that can be paused.
    if d.smtp.paused {
        return None;
    }
    let listener = env().sc_sock_listener.as_ref()?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().ok()?;
    ours.set_nonblocking(true).ok()?;
    let hostname = env().sc_hostname.clone();
    let id = smtp_session(
        d,
        base,
        listener,
        Stream::Unix(ours),
        PeerAddr::Local,
        Some(&hostname),
    );
    if let Some(s) = d.smtp.sessions.get_mut(&id) {
        s.owner = Some(euid);
    }
    d.smtp.nsessions += 1;
    smtp_stat_session(d, &PeerAddr::Local);
    Some(theirs.into())
}

/// smtp_accept(): a connection on a listening socket.
fn smtp_accept(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    _fd: RawFd,
    _ev: EvFlags,
    idx: u64,
) {
    if d.smtp.paused {
        fatalx!("smtp_session: unexpected client");
    }
    if !smtp_can_accept(&d.smtp) {
        log_warnx!("warn: Disabling incoming SMTP connections: Client limit reached");
        return smtp_disable(d, base);
    }
    let Some(l) = d.smtp.listeners.get(idx as usize) else {
        return;
    };
    let conf = l.conf;
    let (stream, peer) = match l.sock.accept() {
        Ok(c) => c,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENFILE | libc::EMFILE)) => {
            log_warn!(e, "warn: Disabling incoming SMTP connections");
            return smtp_disable(d, base);
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EWOULDBLOCK | libc::ECONNABORTED)
            ) =>
        {
            return
        }
        Err(e) => fatal!(e, "smtp_accept"),
    };
    if conf.flags.contains(ListenerFlags::F_PROXY) {
        // The PROXY protocol header comes before the session (proxy.c).
        return super::proxy::proxy_session(d, base, conf, stream, peer);
    }
    smtp_accepted(d, base, conf, stream, PeerAddr::Inet(peer));
}

fn smtp_disable(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    smtp_pause(d, base);
    d.smtp.disabled = true;
}

/// smtp_can_accept(): below the session limit, with descriptors to spare.
fn smtp_can_accept(smtp: &Smtp) -> bool {
    if smtp.nsessions + 1 == smtp.maxsessions {
        return false;
    }
    let left = getdtablesize()
        .unwrap_or(0)
        .saturating_sub(getdtablecount().unwrap_or(usize::MAX / 2));
    left.saturating_sub(SMTP_FD_RESERVE) >= 2
}

/// smtp_collect(): a session ended; accept again if the limits had
/// stopped us.
pub fn smtp_collect(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>) {
    d.smtp.nsessions = d.smtp.nsessions.saturating_sub(1);
    stat_decrement(d.peers.p(ProcType::PROC_CONTROL), "smtp.session", 1);
    if !smtp_can_accept(&d.smtp) {
        return;
    }
    if d.smtp.disabled {
        log_warnx!("warn: smtp: fd exhaustion over, re-enabling incoming connections");
        d.smtp.disabled = false;
        smtp_resume(d, base);
    }
}

/// A session begins (the `sessions++` of smtp_accepted()).
pub fn smtp_count_session(d: &mut Dispatcher, peer: &PeerAddr) {
    d.smtp.nsessions += 1;
    smtp_stat_session(d, peer);
}

/// The counters of a new session, by the kind of its client.
fn smtp_stat_session(d: &mut Dispatcher, peer: &PeerAddr) {
    let p = d.peers.p(ProcType::PROC_CONTROL);
    stat_increment(p, "smtp.session", 1);
    match peer {
        PeerAddr::Local => stat_increment(p, "smtp.session.local", 1),
        PeerAddr::Inet(a) if a.is_ipv4() => stat_increment(p, "smtp.session.inet4", 1),
        PeerAddr::Inet(_) => stat_increment(p, "smtp.session.inet6", 1),
        PeerAddr::Unspec => {}
    }
}

/// smtp_accepted(): a session for a new client.
pub fn smtp_accepted(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    listener: &'static Listener,
    stream: std::net::TcpStream,
    peer: PeerAddr,
) {
    if let Err(e) = stream.set_nonblocking(true) {
        log_warn!(e, "warn: Failed to create SMTP session");
        return;
    }
    d.smtp.nsessions += 1;
    smtp_stat_session(d, &peer);
    smtp_session(d, base, listener, Stream::Tcp(stream), peer, None);
}

impl Dispatcher {
    fn mproc_key(&mut self, key: u64) -> Option<&mut Mproc> {
        crate::ipc::mproc::MprocOwner::mproc(self, key)
    }
}
