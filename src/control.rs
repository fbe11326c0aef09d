//! control.c: the control socket, through which smtpctl talks to the
//! daemon (OpenSMTPD control.c 1.133).
//!
//! The socket is created as root before the chroot, world-writable as in
//! OpenSMTPD (it refuses to start a second daemon); each client is a
//! channel of its own, whose peer's uid decides what it may do: the
//! administrative commands are root's, and other users may list and
//! remove the mail they submitted (not in C). A client that sends what
//! cannot be read, holds too many connections or reads none of its
//! answers is dropped, never the daemon.
//!
//! Every request of smtpctl but the MTA's, which are answered
//! IMSG_CTL_FAIL, and logged, until the MTA exists; local SMTP sessions
//! for the enqueuer; the counters (`show stats`, `monitor`).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

use crate::config::config::config_peer;
use crate::config::config::env;
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::{imsgbuf_allow_fdpass, imsgbuf_queuelen, Imsg};
use crate::ipc::mproc::*;
use crate::pathnames::{smtpd_socket, PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{
    child_imsg_common, child_privdrop, imsg_dispatch, imsg_to_str, Peers, SMTPD_MDA_PAUSED,
    SMTPD_MTA_PAUSED, SMTPD_SMTP_PAUSED,
};
use crate::sys::process::{exit_now, umask};
use crate::sys::socket::{getdtablecount, getdtablecount_init, getdtablesize, getpeereid};
use crate::util::log::{log_getverbose, log_trace_verbose, profiling, set_profiling, tracing};
use crate::util::stat_backend::{StatKv, StatValue};
use crate::util::stat_ramstat::Ramstat;
use crate::util::util::time_now;

/// Keys of client channels start here; below are the peer processes. A
/// client's id, which requests carry to other processes as their peerid,
/// is its key less this.
const CLIENT_KEY_BASE: u64 = 1 << 32;

/// IMSG_VERSION of smtpd.h: a request carries it as its peerid, so that
/// an smtpctl of another version is told, not misunderstood.
pub const IMSG_VERSION: u32 = 16;

/// Descriptors kept free: below this many, no client is accepted.
const CONTROL_FD_RESERVE: usize = 5;
/// Clients one uid may have at once: the socket is world-writable, and
/// one local user must not take every descriptor of the process.
const CONTROL_MAXCONN_PER_CLIENT: usize = 32;
/// Answers a client may leave unread, beyond what the socket holds, when
/// it asks again: smtpctl reads each answer before its next request, so
/// only a client that asks and never reads gets there, and it would
/// have control's memory grow without end (C's does).
const CONTROL_MAX_UNREAD: usize = 64;

/// The control process's state.
pub struct Control {
    peers: Peers,
    listener: UnixListener,
    ev_listen: Option<EventId>,
    /// Connected smtpctl clients, by key.
    ctl_conns: BTreeMap<u64, CtlConn>,
    next_key: u64,
    /// The counters (stat_ramstat.c) and their digest for `monitor`.
    stats: Ramstat,
    digest: StatDigest,
    /// The pauses smtpctl has set (C's env->sc_flags, which is read-only
    /// here). The MTA starts paused: it does not exist yet, and the
    /// scheduler holds what it would relay.
    sc_flags: u32,
}

/// struct stat_digest: what `smtpctl monitor` shows, kept up to date
/// from the counters as they change (control_digest_update).
#[derive(Debug, Default)]
struct StatDigest {
    startup: i64,
    clt_connect: usize,
    clt_disconnect: usize,
    evp_enqueued: usize,
    evp_dequeued: usize,
    evp_expired: usize,
    evp_removed: usize,
    evp_bounce: usize,
    dlv_ok: usize,
    dlv_permfail: usize,
    dlv_tempfail: usize,
    dlv_loop: usize,
}

impl StatDigest {
    /// The C struct's bytes, `timestamp` being now.
    fn to_bytes(&self, timestamp: i64) -> Vec<u8> {
        let mut b = Vec::with_capacity(104);
        b.extend_from_slice(&self.startup.to_ne_bytes());
        b.extend_from_slice(&timestamp.to_ne_bytes());
        for v in [
            self.clt_connect,
            self.clt_disconnect,
            self.evp_enqueued,
            self.evp_dequeued,
            self.evp_expired,
            self.evp_removed,
            self.evp_bounce,
            self.dlv_ok,
            self.dlv_permfail,
            self.dlv_tempfail,
            self.dlv_loop,
        ] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// control_digest_update().
    fn update(&mut self, key: &str, value: usize, incr: bool) {
        let p = match (key, incr) {
            ("smtp.session", true) => &mut self.clt_connect,
            ("smtp.session", false) => &mut self.clt_disconnect,
            ("scheduler.envelope", true) => &mut self.evp_enqueued,
            ("scheduler.envelope", false) => &mut self.evp_dequeued,
            ("scheduler.envelope.expired", _) => &mut self.evp_expired,
            ("scheduler.envelope.removed", _) => &mut self.evp_removed,
            ("scheduler.delivery.ok", _) => &mut self.dlv_ok,
            ("scheduler.delivery.permfail", _) => &mut self.dlv_permfail,
            ("scheduler.delivery.tempfail", _) => &mut self.dlv_tempfail,
            ("scheduler.delivery.loop", _) => &mut self.dlv_loop,
            ("queue.bounce", _) => &mut self.evp_bounce,
            _ => return,
        };
        // As C: a decrement of a counter other than the two above counts
        // down, and a decrement of those two counts up their other half.
        let down = !incr && !matches!(key, "smtp.session" | "scheduler.envelope");
        *p = if down {
            p.wrapping_sub(value)
        } else {
            p.wrapping_add(value)
        };
    }
}

/// struct ctl_conn: a client, and who it is.
struct CtlConn {
    mproc: Mproc,
    euid: u32,
}

impl MprocOwner for Control {
    fn mproc(&mut self, key: u64) -> Option<&mut Mproc> {
        if key >= CLIENT_KEY_BASE {
            self.ctl_conns.get_mut(&key).map(|c| &mut c.mproc)
        } else {
            self.peers.get(key)
        }
    }

    fn mproc_ref(&self, key: u64) -> Option<&Mproc> {
        if key >= CLIENT_KEY_BASE {
            self.ctl_conns.get(&key).map(|c| &c.mproc)
        } else {
            self.peers.get_ref_key(key)
        }
    }

    fn mproc_imsg(&mut self, base: &mut EventBase<Self>, key: u64, imsg: Option<Imsg>) {
        if key >= CLIENT_KEY_BASE {
            control_dispatch_ext(self, base, key, imsg);
        } else {
            imsg_dispatch(self, base, key, imsg, control_imsg);
        }
    }
}

/// control_imsg(): messages from the other processes: answers to a
/// client's request go back to it, by the peerid it was sent with.
fn control_imsg(
    s: &mut Control,
    _base: &mut EventBase<Control>,
    _from: ProcType,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else { control_shutdown() };
    let Some(mut imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(
            ImsgType::IMSG_CTL_OK
            | ImsgType::IMSG_CTL_FAIL
            | ImsgType::IMSG_CTL_LIST_MESSAGES
            | ImsgType::IMSG_CTL_LIST_ENVELOPES
            | ImsgType::IMSG_CTL_DISCOVER_EVPID
            | ImsgType::IMSG_CTL_DISCOVER_MSGID,
        ) => {
            let Some(c) = s.ctl_conns.get_mut(&control_key(imsg.hdr.peerid)) else {
                return;
            };
            imsg.hdr.peerid = 0;
            m_forward(&mut c.mproc, &mut imsg);
        }
        Some(
            t @ (ImsgType::IMSG_STAT_INCREMENT
            | ImsgType::IMSG_STAT_DECREMENT
            | ImsgType::IMSG_STAT_SET),
        ) => control_stat(s, t, &imsg),
        Some(ImsgType::IMSG_CTL_SMTP_SESSION) => {
            let fd = crate::ipc::imsg::imsg_get_fd(&mut imsg);
            let Some(c) = s.ctl_conns.get_mut(&control_key(imsg.hdr.peerid)) else {
                return;
            };
            m_compose(&mut c.mproc, ImsgType::IMSG_CTL_OK, 0, 0, fd, &[]);
        }
        _ => fatalx!(
            "control_imsg: unexpected {} imsg",
            imsg_to_str(imsg.hdr.type_)
        ),
    }
}

/// IMSG_STAT_INCREMENT, _DECREMENT and _SET from a process.
fn control_stat(s: &mut Control, t: ImsgType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let key = m_get_string(&mut m).unwrap_or_default().to_string();
    let data = m_get_data(&mut m);
    let Some(val) = StatValue::from_bytes(data) else {
        fatalx!("control: {} size mismatch", imsg_to_str(t as u32));
    };
    m_end(&m);
    match t {
        ImsgType::IMSG_STAT_INCREMENT => {
            s.stats.increment(&key, val.a as usize);
            s.digest.update(&key, val.a as usize, true);
        }
        ImsgType::IMSG_STAT_DECREMENT => {
            s.stats.decrement(&key, val.a as usize);
            s.digest.update(&key, val.a as usize, false);
        }
        _ => s.stats.set(&key, val),
    }
}

/// A client's key from its id.
fn control_key(id: u32) -> u64 {
    CLIENT_KEY_BASE + u64::from(id)
}

/// control_create_socket(): binds the control socket, refusing to take
/// over one a running daemon listens on.
pub fn control_create_socket() -> UnixListener {
    let path = smtpd_socket();
    if UnixStream::connect(&path).is_ok() {
        fatalx!("control socket already listening");
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != ErrorKind::NotFound {
            fatal!(e, "control: cannot unlink socket");
        }
    }
    let old = umask(libc::S_IXUSR | libc::S_IXGRP | libc::S_IWOTH | libc::S_IROTH | libc::S_IXOTH);
    let listener = UnixListener::bind(&path);
    umask(old);
    let listener = match listener {
        Ok(l) => l,
        Err(e) => fatal!(e, "control: bind"),
    };
    // Anyone may connect; what each may do is decided per request.
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)) {
        let _ = std::fs::remove_file(&path);
        fatal!(e, "control: chmod");
    }
    if let Err(e) = listener.set_nonblocking(true) {
        fatal!(e, "control: nonblocking");
    }
    listener
}

/// control(): the process's main.
pub fn control(mut peers: Peers, listener: UnixListener, backend_stat: &str) -> ! {
    if backend_stat != "ram" {
        fatalx!("could not find stat backend \"{backend_stat}\"");
    }
    // Descriptors are counted in /proc/self, out of the chroot's reach.
    getdtablecount_init();
    child_privdrop(
        "control",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_CONTROL,
        false,
    );
    let mut base = EventBase::new();
    use ProcType::*;
    for p in [
        PROC_SCHEDULER,
        PROC_QUEUE,
        PROC_PARENT,
        PROC_LKA,
        PROC_DISPATCHER,
        PROC_CA,
    ] {
        config_peer(&mut base, &mut peers, p);
    }
    let mut s = Control {
        peers,
        listener,
        ev_listen: None,
        ctl_conns: BTreeMap::new(),
        next_key: CLIENT_KEY_BASE,
        sc_flags: env().sc_flags | SMTPD_MTA_PAUSED,
        stats: Ramstat::init(env().sc_uptime),
        digest: StatDigest {
            startup: env().sc_uptime,
            ..StatDigest::default()
        },
    };
    control_listen(&mut s, &mut base);
    if let Err(e) = crate::sys::pledge::pledge("stdio unix recvfd sendfd", None) {
        fatal!(e, "pledge");
    }
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}

/// control_shutdown().
fn control_shutdown() -> ! {
    log_debug!("debug: control agent exiting");
    exit_now(0)
}

/// control_listen(): starts accepting clients.
fn control_listen(s: &mut Control, base: &mut EventBase<Control>) {
    let ev = base.event_set(s.listener.as_raw_fd(), EvFlags::EV_READ, control_accept, 0);
    if let Err(e) = base.event_add(ev, None) {
        fatal!(e, "control_listen: event_add");
    }
    s.ev_listen = Some(ev);
}

/// control_accept(): one client, as a channel of its own, with the uid
/// of the process that connected. Out of descriptors, accepting stops
/// until a client leaves.
fn control_accept(
    s: &mut Control,
    base: &mut EventBase<Control>,
    _fd: RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    if control_fds_left() < CONTROL_FD_RESERVE {
        return control_pause_accept(s, base);
    }
    let stream = match s.listener.accept() {
        Ok((stream, _)) => stream,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENFILE | libc::EMFILE)) => {
            return control_pause_accept(s, base);
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => return,
        Err(e) => {
            log_warn!(e, "warn: control_accept: accept");
            return;
        }
    };
    let euid = match getpeereid(stream.as_fd()) {
        Ok((uid, _)) => uid,
        Err(e) => {
            log_warn!(e, "warn: control_accept: getpeereid");
            return;
        }
    };
    // C keeps these counts in a tree; the clients are few enough to count.
    if s.ctl_conns.values().filter(|c| c.euid == euid).count() >= CONTROL_MAXCONN_PER_CLIENT {
        log_warnx!("warn: too many connections to control socket from user with uid {euid}");
        return;
    }
    let key = control_next_key(s);
    let mut mproc = mproc_init(OwnedFd::from(stream), ProcType::PROC_CLIENT, "client", 0);
    mproc_enable(base, &mut mproc, key);
    s.ctl_conns.insert(key, CtlConn { mproc, euid });
    s.stats.increment("control.session", 1);
}

/// The key of a new client: the next one no client holds.
fn control_next_key(s: &mut Control) -> u64 {
    loop {
        let key = s.next_key;
        s.next_key = if key - CLIENT_KEY_BASE >= u64::from(u32::MAX) {
            CLIENT_KEY_BASE
        } else {
            key + 1
        };
        if !s.ctl_conns.contains_key(&key) {
            return key;
        }
    }
}

/// Descriptors the process may still open.
fn control_fds_left() -> usize {
    getdtablesize()
        .unwrap_or(0)
        .saturating_sub(getdtablecount().unwrap_or(usize::MAX / 2))
}

fn control_pause_accept(s: &mut Control, base: &mut EventBase<Control>) {
    log_warnx!("warn: ctl client limit hit, disabling new connections");
    if let Some(ev) = s.ev_listen {
        base.event_del(ev);
    }
}

/// control_close(): forgets a client, and accepts again if descriptors
/// had run out.
fn control_close(s: &mut Control, base: &mut EventBase<Control>, key: u64) {
    let Some(c) = s.ctl_conns.remove(&key) else {
        return;
    };
    mproc_clear(base, c.mproc);
    s.stats.decrement("control.session", 1);
    if control_fds_left() < CONTROL_FD_RESERVE {
        return;
    }
    if let Some(ev) = s.ev_listen {
        if !base.event_pending(ev) {
            log_warnx!("warn: re-enabling ctl connections");
            if let Err(e) = base.event_add(ev, None) {
                fatal!(e, "control_close: event_add");
            }
        }
    }
}

/// What a request gets: the answer to send the client now, if any.
enum Answer {
    Ok,
    Fail,
    /// A reply of this type with this payload.
    Data(ImsgType, Vec<u8>),
    /// Answered later, by the process the request went to.
    Later,
}

/// control_dispatch_ext(): a request from a client. None means the client
/// left, or sent what cannot be read: it is dropped.
fn control_dispatch_ext(
    s: &mut Control,
    base: &mut EventBase<Control>,
    key: u64,
    imsg: Option<Imsg>,
) {
    let Some(mut imsg) = imsg else {
        control_close(s, base, key);
        return;
    };
    let Some((euid, unread)) = s
        .ctl_conns
        .get(&key)
        .map(|c| (c.euid, imsgbuf_queuelen(&c.mproc.imsgbuf)))
    else {
        return;
    };
    if unread > CONTROL_MAX_UNREAD {
        log_warnx!("warn: control: a client of uid {euid} reads no answers: dropped");
        control_close(s, base, key);
        return;
    }
    if imsg.hdr.peerid != IMSG_VERSION {
        if let Some(c) = s.ctl_conns.get_mut(&key) {
            m_compose(
                &mut c.mproc,
                ImsgType::IMSG_CTL_FAIL,
                IMSG_VERSION,
                0,
                None,
                &[],
            );
        }
        return;
    }
    let id = (key - CLIENT_KEY_BASE) as u32;
    let answer = match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CTL_SMTP_SESSION) => {
            // The session's socket goes back over this channel, which
            // passes descriptors only from now on, as in C.
            if let Some(c) = s.ctl_conns.get_mut(&key) {
                imsgbuf_allow_fdpass(&mut c.mproc.imsgbuf);
            }
            control_smtp_session(s, id, euid)
        }
        // The administrative commands are root's (C's "badcred"); other
        // users may list and remove their own mail.
        t if euid != 0 => control_user(s, t, id, euid, &mut imsg),
        Some(t) => control_admin(s, t, id, &mut imsg),
        None => Answer::Fail,
    };
    let Some(c) = s.ctl_conns.get_mut(&key) else {
        return;
    };
    match answer {
        Answer::Ok => m_compose(&mut c.mproc, ImsgType::IMSG_CTL_OK, 0, 0, None, &[]),
        Answer::Fail => m_compose(&mut c.mproc, ImsgType::IMSG_CTL_FAIL, 0, 0, None, &[]),
        Answer::Data(t, data) => m_compose(&mut c.mproc, t, 0, 0, None, &data),
        Answer::Later => {}
    }
}

/// IMSG_CTL_SMTP_SESSION: the enqueuer asks for a local SMTP session; the
/// dispatcher opens it and its socket comes back through control_imsg.
fn control_smtp_session(s: &mut Control, id: u32, euid: u32) -> Answer {
    if s.sc_flags & SMTPD_SMTP_PAUSED != 0 {
        return Answer::Fail;
    }
    let p = s.peers.p(ProcType::PROC_DISPATCHER);
    m_compose(
        p,
        ImsgType::IMSG_CTL_SMTP_SESSION,
        id,
        0,
        None,
        &euid.to_ne_bytes(),
    );
    Answer::Later
}

/// The request of a user other than root (not in C, which refuses them
/// all): the listing of the messages they submitted, and the listing
/// and removal of those messages' envelopes. They go to the queue with
/// the user's uid after them; it knows who submitted what, passes on to
/// the scheduler what concerns the user's own mail and answers the rest.
fn control_user(
    s: &mut Control,
    t: Option<ImsgType>,
    id: u32,
    euid: u32,
    imsg: &mut Imsg,
) -> Answer {
    use ImsgType::*;
    let want = match t {
        Some(IMSG_CTL_LIST_MESSAGES) => 4,
        Some(IMSG_CTL_LIST_ENVELOPES | IMSG_CTL_REMOVE) => 8,
        _ => return Answer::Fail,
    };
    if imsg.data.len() != want {
        return Answer::Fail;
    }
    imsg.data.extend_from_slice(&euid.to_ne_bytes());
    imsg.hdr.peerid = id;
    m_forward(s.peers.p(ProcType::PROC_QUEUE), imsg);
    Answer::Later
}

/// A root client's request.
fn control_admin(s: &mut Control, t: ImsgType, id: u32, imsg: &mut Imsg) -> Answer {
    use ImsgType::*;
    match t {
        IMSG_CTL_VERBOSE => {
            let Some(v) = control_int(imsg) else {
                return Answer::Fail;
            };
            log_trace_verbose(v, log_getverbose() != 0);
            control_broadcast_verbose(s, IMSG_CTL_VERBOSE, v);
            Answer::Ok
        }
        IMSG_CTL_TRACE_ENABLE | IMSG_CTL_TRACE_DISABLE => {
            let Some(v) = control_int(imsg) else {
                return Answer::Fail;
            };
            let t = if imsg.hdr.type_ == IMSG_CTL_TRACE_ENABLE as u32 {
                tracing() | v
            } else {
                tracing() & !v
            };
            log_trace_verbose(t, log_getverbose() != 0);
            control_broadcast_verbose(s, IMSG_CTL_VERBOSE, t);
            Answer::Ok
        }
        IMSG_CTL_PROFILE_ENABLE | IMSG_CTL_PROFILE_DISABLE => {
            let Some(v) = control_int(imsg) else {
                return Answer::Fail;
            };
            let p = if imsg.hdr.type_ == IMSG_CTL_PROFILE_ENABLE as u32 {
                profiling() | v
            } else {
                profiling() & !v
            };
            set_profiling(p);
            control_broadcast_verbose(s, IMSG_CTL_PROFILE, p);
            Answer::Ok
        }
        IMSG_CTL_PAUSE_MDA | IMSG_CTL_PAUSE_SMTP => control_pause(s, t, true),
        IMSG_CTL_RESUME_MDA | IMSG_CTL_RESUME_SMTP => control_pause(s, t, false),
        // Nothing relays yet: the MTA stays paused (PAUSE_MTA finds it
        // so, as C answers a second pause).
        IMSG_CTL_PAUSE_MTA | IMSG_CTL_RESUME_MTA => {
            log_warnx!("warn: control: the mta is not implemented yet, it stays paused");
            Answer::Fail
        }
        IMSG_CTL_GET_DIGEST => Answer::Data(IMSG_CTL_GET_DIGEST, s.digest.to_bytes(time_now())),
        IMSG_CTL_GET_STATS => {
            let Some(kv) = StatKv::from_bytes(&imsg.data) else {
                return Answer::Fail;
            };
            let after = kv.iter.then_some(kv.key.as_str());
            let next = match s.stats.iter(after) {
                Some((key, val)) => StatKv {
                    iter: true,
                    key: key.to_string(),
                    val,
                },
                None => StatKv::default(),
            };
            Answer::Data(IMSG_CTL_GET_STATS, next.to_bytes())
        }
        IMSG_CTL_SHOW_STATUS => {
            Answer::Data(IMSG_CTL_SHOW_STATUS, s.sc_flags.to_ne_bytes().to_vec())
        }
        // To the queue, which answers how many it found.
        IMSG_CTL_DISCOVER_EVPID | IMSG_CTL_DISCOVER_MSGID => {
            let want = if t == IMSG_CTL_DISCOVER_EVPID { 8 } else { 4 };
            if imsg.data.len() != want {
                return Answer::Fail;
            }
            imsg.hdr.peerid = id;
            m_forward(s.peers.p(ProcType::PROC_QUEUE), imsg);
            Answer::Later
        }
        // To lka, which reloads the table and answers this client.
        IMSG_CTL_UPDATE_TABLE => {
            // A C string shorter than LINE_MAX, or no request at all.
            let nul = imsg.data.iter().position(|&b| b == 0);
            if !matches!(nul, Some(n) if n < crate::defines::LINE_MAX) {
                return Answer::Fail;
            }
            imsg.hdr.peerid = id;
            m_forward(s.peers.p(ProcType::PROC_LKA), imsg);
            Answer::Later
        }
        // To the scheduler, which answers this client (its peerid).
        IMSG_CTL_LIST_MESSAGES
        | IMSG_CTL_LIST_ENVELOPES
        | IMSG_CTL_SCHEDULE
        | IMSG_CTL_REMOVE
        | IMSG_CTL_PAUSE_EVP
        | IMSG_CTL_RESUME_EVP => {
            imsg.hdr.peerid = id;
            m_forward(s.peers.p(ProcType::PROC_SCHEDULER), imsg);
            Answer::Later
        }
        _ => {
            log_warnx!(
                "warn: control: {} requested, but it is not implemented yet",
                imsg_to_str(imsg.hdr.type_)
            );
            Answer::Fail
        }
    }
}

/// The int a request carries, which must be all of it.
fn control_int(imsg: &Imsg) -> Option<u32> {
    let b: [u8; 4] = imsg.data.as_slice().try_into().ok()?;
    Some(i32::from_ne_bytes(b) as u32)
}

/// control_broadcast_verbose(): a new trace or profile mask for every
/// process.
fn control_broadcast_verbose(s: &mut Control, t: ImsgType, v: u32) {
    use ProcType::*;
    for proc in [
        PROC_LKA,
        PROC_DISPATCHER,
        PROC_QUEUE,
        PROC_CA,
        PROC_SCHEDULER,
        PROC_PARENT,
    ] {
        let p = s.peers.p(proc);
        m_create(p, t, 0, 0, None);
        m_add_int(p, v as i32);
        m_close(p);
    }
}

/// IMSG_CTL_PAUSE_* and IMSG_CTL_RESUME_* of the MDA and of SMTP: refused
/// when already so; the MDA's go to the scheduler through the queue, as
/// in C, SMTP's to the dispatcher.
fn control_pause(s: &mut Control, t: ImsgType, pause: bool) -> Answer {
    let (flag, what, to) = match t {
        ImsgType::IMSG_CTL_PAUSE_MDA | ImsgType::IMSG_CTL_RESUME_MDA => {
            (SMTPD_MDA_PAUSED, "mda", ProcType::PROC_QUEUE)
        }
        _ => (SMTPD_SMTP_PAUSED, "smtp", ProcType::PROC_DISPATCHER),
    };
    if (s.sc_flags & flag != 0) == pause {
        return Answer::Fail;
    }
    if pause {
        log_info!("info: {what} paused");
        s.sc_flags |= flag;
    } else {
        log_info!("info: {what} resumed");
        s.sc_flags &= !flag;
    }
    m_compose(s.peers.p(to), t, 0, 0, None, &[]);
    Answer::Ok
}
