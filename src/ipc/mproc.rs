//! mproc.c: the channels between smtpd's processes and the typed messages
//! they carry (OpenSMTPD mproc.c 1.47), with smtpd.h's `enum imsg_type`
//! and `enum smtp_proc_type`.
//!
//! An `Mproc` is one end of a channel to a peer: its imsg buffer, the
//! message being built (`m_create`, `m_add_*`, `m_close`), and its
//! registration in the event loop. Fields are encoded as OpenSMTPD encodes
//! them: native-endian scalars of the C sizes, strings tagged with `s` and
//! NUL-terminated (a lone NUL for a null string), data and socket
//! addresses prefixed with their size_t length.
//!
//! Reading is checked: `Msg` returns an error for a message that is too
//! short, a string that does not end, bytes left over. Trusted peers go
//! through the `m_get_*` functions, for which any such error is a broken
//! invariant and fatal, naming the process and the imsg type (m_error);
//! the control process reads its clients with `Msg`'s methods and drops a
//! client that sends garbage, so that no client can stop the daemon.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::imsg::*;
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::smtpd::{imsg_to_str, proc_name, smtpd_process};
use crate::sys::socket::{sockaddr_bytes, sockaddr_from_bytes};
use crate::util::log::TRACE_MPROC;

macro_rules! imsg_types {
    ($($name:ident = $v:literal,)*) => {
        /// enum imsg_type: every message smtpd's processes exchange.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum ImsgType { $($name = $v,)* }

        impl ImsgType {
            pub fn from_u32(v: u32) -> Option<ImsgType> {
                match v {
                    $($v => Some(ImsgType::$name),)*
                    _ => None,
                }
            }

            /// The C name, for traces and fatal messages.
            pub fn name(self) -> &'static str {
                match self { $(ImsgType::$name => stringify!($name),)* }
            }
        }
    };
}

imsg_types! {
    IMSG_NONE = 0,
    IMSG_CTL_OK = 1,
    IMSG_CTL_FAIL = 2,
    IMSG_CTL_GET_DIGEST = 3,
    IMSG_CTL_GET_STATS = 4,
    IMSG_CTL_LIST_MESSAGES = 5,
    IMSG_CTL_LIST_ENVELOPES = 6,
    IMSG_CTL_MTA_SHOW_HOSTS = 7,
    IMSG_CTL_MTA_SHOW_RELAYS = 8,
    IMSG_CTL_MTA_SHOW_ROUTES = 9,
    IMSG_CTL_MTA_SHOW_HOSTSTATS = 10,
    IMSG_CTL_MTA_BLOCK = 11,
    IMSG_CTL_MTA_UNBLOCK = 12,
    IMSG_CTL_MTA_SHOW_BLOCK = 13,
    IMSG_CTL_PAUSE_EVP = 14,
    IMSG_CTL_PAUSE_MDA = 15,
    IMSG_CTL_PAUSE_MTA = 16,
    IMSG_CTL_PAUSE_SMTP = 17,
    IMSG_CTL_PROFILE = 18,
    IMSG_CTL_PROFILE_DISABLE = 19,
    IMSG_CTL_PROFILE_ENABLE = 20,
    IMSG_CTL_RESUME_EVP = 21,
    IMSG_CTL_RESUME_MDA = 22,
    IMSG_CTL_RESUME_MTA = 23,
    IMSG_CTL_RESUME_SMTP = 24,
    IMSG_CTL_RESUME_ROUTE = 25,
    IMSG_CTL_REMOVE = 26,
    IMSG_CTL_SCHEDULE = 27,
    IMSG_CTL_SHOW_STATUS = 28,
    IMSG_CTL_TRACE_DISABLE = 29,
    IMSG_CTL_TRACE_ENABLE = 30,
    IMSG_CTL_UPDATE_TABLE = 31,
    IMSG_CTL_VERBOSE = 32,
    IMSG_CTL_DISCOVER_EVPID = 33,
    IMSG_CTL_DISCOVER_MSGID = 34,
    IMSG_CTL_SMTP_SESSION = 35,
    IMSG_GETADDRINFO = 36,
    IMSG_GETADDRINFO_END = 37,
    IMSG_GETNAMEINFO = 38,
    IMSG_RES_QUERY = 39,
    IMSG_SETUP_KEY = 40,
    IMSG_SETUP_PEER = 41,
    IMSG_SETUP_DONE = 42,
    IMSG_CONF_START = 43,
    IMSG_CONF_END = 44,
    IMSG_STAT_INCREMENT = 45,
    IMSG_STAT_DECREMENT = 46,
    IMSG_STAT_SET = 47,
    IMSG_LKA_AUTHENTICATE = 48,
    IMSG_LKA_OPEN_FORWARD = 49,
    IMSG_LKA_ENVELOPE_SUBMIT = 50,
    IMSG_LKA_ENVELOPE_COMMIT = 51,
    IMSG_QUEUE_DELIVER = 52,
    IMSG_QUEUE_DELIVERY_OK = 53,
    IMSG_QUEUE_DELIVERY_TEMPFAIL = 54,
    IMSG_QUEUE_DELIVERY_PERMFAIL = 55,
    IMSG_QUEUE_DELIVERY_LOOP = 56,
    IMSG_QUEUE_DISCOVER_EVPID = 57,
    IMSG_QUEUE_DISCOVER_MSGID = 58,
    IMSG_QUEUE_ENVELOPE_ACK = 59,
    IMSG_QUEUE_ENVELOPE_COMMIT = 60,
    IMSG_QUEUE_ENVELOPE_REMOVE = 61,
    IMSG_QUEUE_ENVELOPE_SCHEDULE = 62,
    IMSG_QUEUE_ENVELOPE_SUBMIT = 63,
    IMSG_QUEUE_HOLDQ_HOLD = 64,
    IMSG_QUEUE_HOLDQ_RELEASE = 65,
    IMSG_QUEUE_MESSAGE_COMMIT = 66,
    IMSG_QUEUE_MESSAGE_ROLLBACK = 67,
    IMSG_QUEUE_SMTP_SESSION = 68,
    IMSG_QUEUE_TRANSFER = 69,
    IMSG_MDA_DELIVERY_OK = 70,
    IMSG_MDA_DELIVERY_TEMPFAIL = 71,
    IMSG_MDA_DELIVERY_PERMFAIL = 72,
    IMSG_MDA_DELIVERY_LOOP = 73,
    IMSG_MDA_DELIVERY_HOLD = 74,
    IMSG_MDA_DONE = 75,
    IMSG_MDA_FORK = 76,
    IMSG_MDA_HOLDQ_RELEASE = 77,
    IMSG_MDA_LOOKUP_USERINFO = 78,
    IMSG_MDA_KILL = 79,
    IMSG_MDA_OPEN_MESSAGE = 80,
    IMSG_MTA_DELIVERY_OK = 81,
    IMSG_MTA_DELIVERY_TEMPFAIL = 82,
    IMSG_MTA_DELIVERY_PERMFAIL = 83,
    IMSG_MTA_DELIVERY_LOOP = 84,
    IMSG_MTA_DELIVERY_HOLD = 85,
    IMSG_MTA_DNS_HOST = 86,
    IMSG_MTA_DNS_HOST_END = 87,
    IMSG_MTA_DNS_MX = 88,
    IMSG_MTA_DNS_MX_PREFERENCE = 89,
    IMSG_MTA_HOLDQ_RELEASE = 90,
    IMSG_MTA_LOOKUP_CREDENTIALS = 91,
    IMSG_MTA_LOOKUP_SOURCE = 92,
    IMSG_MTA_LOOKUP_HELO = 93,
    IMSG_MTA_LOOKUP_SMARTHOST = 94,
    IMSG_MTA_OPEN_MESSAGE = 95,
    IMSG_MTA_SCHEDULE = 96,
    IMSG_SCHED_ENVELOPE_BOUNCE = 97,
    IMSG_SCHED_ENVELOPE_DELIVER = 98,
    IMSG_SCHED_ENVELOPE_EXPIRE = 99,
    IMSG_SCHED_ENVELOPE_INJECT = 100,
    IMSG_SCHED_ENVELOPE_REMOVE = 101,
    IMSG_SCHED_ENVELOPE_TRANSFER = 102,
    IMSG_SMTP_AUTHENTICATE = 103,
    IMSG_SMTP_MESSAGE_COMMIT = 104,
    IMSG_SMTP_MESSAGE_CREATE = 105,
    IMSG_SMTP_MESSAGE_ROLLBACK = 106,
    IMSG_SMTP_MESSAGE_OPEN = 107,
    IMSG_SMTP_CHECK_SENDER = 108,
    IMSG_SMTP_EXPAND_RCPT = 109,
    IMSG_SMTP_LOOKUP_HELO = 110,
    IMSG_SMTP_REQ_CONNECT = 111,
    IMSG_SMTP_REQ_HELO = 112,
    IMSG_SMTP_REQ_MAIL = 113,
    IMSG_SMTP_REQ_RCPT = 114,
    IMSG_SMTP_REQ_DATA = 115,
    IMSG_SMTP_REQ_EOM = 116,
    IMSG_SMTP_EVENT_RSET = 117,
    IMSG_SMTP_EVENT_COMMIT = 118,
    IMSG_SMTP_EVENT_ROLLBACK = 119,
    IMSG_SMTP_EVENT_DISCONNECT = 120,
    IMSG_LKA_PROCESSOR_FORK = 121,
    IMSG_LKA_PROCESSOR_ERRFD = 122,
    IMSG_REPORT_SMTP_LINK_CONNECT = 123,
    IMSG_REPORT_SMTP_LINK_DISCONNECT = 124,
    IMSG_REPORT_SMTP_LINK_GREETING = 125,
    IMSG_REPORT_SMTP_LINK_IDENTIFY = 126,
    IMSG_REPORT_SMTP_LINK_TLS = 127,
    IMSG_REPORT_SMTP_LINK_AUTH = 128,
    IMSG_REPORT_SMTP_TX_RESET = 129,
    IMSG_REPORT_SMTP_TX_BEGIN = 130,
    IMSG_REPORT_SMTP_TX_MAIL = 131,
    IMSG_REPORT_SMTP_TX_RCPT = 132,
    IMSG_REPORT_SMTP_TX_ENVELOPE = 133,
    IMSG_REPORT_SMTP_TX_DATA = 134,
    IMSG_REPORT_SMTP_TX_COMMIT = 135,
    IMSG_REPORT_SMTP_TX_ROLLBACK = 136,
    IMSG_REPORT_SMTP_PROTOCOL_CLIENT = 137,
    IMSG_REPORT_SMTP_PROTOCOL_SERVER = 138,
    IMSG_REPORT_SMTP_FILTER_RESPONSE = 139,
    IMSG_REPORT_SMTP_TIMEOUT = 140,
    IMSG_FILTER_SMTP_BEGIN = 141,
    IMSG_FILTER_SMTP_END = 142,
    IMSG_FILTER_SMTP_PROTOCOL = 143,
    IMSG_FILTER_SMTP_DATA_BEGIN = 144,
    IMSG_FILTER_SMTP_DATA_END = 145,
    IMSG_CA_RSA_PRIVENC = 146,
    IMSG_CA_RSA_PRIVDEC = 147,
    IMSG_CA_ECDSA_SIGN = 148,
}

/// enum smtp_proc_type.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProcType {
    PROC_PARENT = 0,
    PROC_LKA,
    PROC_QUEUE,
    PROC_CONTROL,
    PROC_SCHEDULER,
    PROC_DISPATCHER,
    PROC_CA,
    PROC_PROCESSOR,
    PROC_CLIENT,
}

impl ProcType {
    pub fn from_u32(v: u32) -> Option<ProcType> {
        use ProcType::*;
        [
            PROC_PARENT,
            PROC_LKA,
            PROC_QUEUE,
            PROC_CONTROL,
            PROC_SCHEDULER,
            PROC_DISPATCHER,
            PROC_CA,
            PROC_PROCESSOR,
            PROC_CLIENT,
        ]
        .into_iter()
        .find(|p| *p as u32 == v)
    }
}

/// A process that owns channels: how the event loop finds the channel an
/// event is for (by the key given to mproc_enable) and whom to hand its
/// messages to (C's `p->handler`).
pub trait MprocOwner: Sized {
    fn mproc(&mut self, key: u64) -> Option<&mut Mproc>;
    fn mproc_ref(&self, key: u64) -> Option<&Mproc>;
    /// One message from the channel `key`; None when the peer is gone.
    fn mproc_imsg(&mut self, base: &mut EventBase<Self>, key: u64, imsg: Option<Imsg>);
}

/// struct mproc: one end of a channel to a peer process (or a control
/// client).
pub struct Mproc {
    pub pid: u32,
    pub name: String,
    pub proc: ProcType,
    pub imsgbuf: Imsgbuf,
    m_buf: Vec<u8>,
    m_type: u32,
    m_peerid: u32,
    m_pid: u32,
    m_fd: Option<OwnedFd>,
    pub enable: bool,
    ev: Option<EventId>,
    /// Retries a read deferred for lack of descriptors.
    ev_starved: Option<EventId>,
}

impl fmt::Debug for Mproc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mproc")
            .field("name", &self.name)
            .field("proc", &self.proc)
            .field("pid", &self.pid)
            .field("fd", &self.imsgbuf.as_raw_fd())
            .finish()
    }
}

/// How long a read deferred for lack of descriptors waits before it is
/// tried again.
const STARVED_RETRY: Duration = Duration::from_millis(100);

/// mproc_init(): a channel over `fd` (fd passing allowed except with
/// control clients).
pub fn mproc_init(fd: OwnedFd, proc: ProcType, name: &str, pid: u32) -> Mproc {
    let mut imsgbuf = match imsgbuf_init(fd) {
        Ok(b) => b,
        Err(e) => fatal!(e, "mproc_init: imsgbuf_init"),
    };
    if proc != ProcType::PROC_CLIENT {
        imsgbuf_allow_fdpass(&mut imsgbuf);
    }
    Mproc {
        pid,
        name: name.to_string(),
        proc,
        imsgbuf,
        m_buf: Vec::with_capacity(128),
        m_type: 0,
        m_peerid: 0,
        m_pid: 0,
        m_fd: None,
        enable: false,
        ev: None,
        ev_starved: None,
    }
}

/// mproc_clear(): leaves the event loop and closes the channel.
pub fn mproc_clear<S>(base: &mut EventBase<S>, mut p: Mproc) {
    log_debug!(
        "debug: clearing p={}, fd={}, pid={}",
        p.name,
        p.imsgbuf.as_raw_fd(),
        p.pid
    );
    for ev in [p.ev.take(), p.ev_starved.take()].into_iter().flatten() {
        base.event_free(ev);
    }
    imsgbuf_clear(&mut p.imsgbuf);
}

/// mproc_enable(): starts reading from the channel; `key` is how the
/// owner finds it again.
pub fn mproc_enable<S: MprocOwner>(base: &mut EventBase<S>, p: &mut Mproc, key: u64) {
    if !p.enable {
        log_trace!(
            TRACE_MPROC,
            "mproc: {} -> {}: enabled",
            proc_name(smtpd_process()),
            proc_name(p.proc)
        );
        p.enable = true;
    }
    if p.ev.is_none() {
        let ev = base.event_set_dynamic(
            p.imsgbuf.as_raw_fd(),
            mproc_interest::<S>,
            mproc_dispatch::<S>,
            key,
        );
        if let Err(e) = base.event_add(ev, None) {
            fatal!(e, "mproc_enable: event_add");
        }
        p.ev = Some(ev);
    }
}

/// mproc_disable(): stops reading (queued messages are still written).
pub fn mproc_disable(p: &mut Mproc) {
    if p.enable {
        log_trace!(
            TRACE_MPROC,
            "mproc: {} -> {}: disabled",
            proc_name(smtpd_process()),
            proc_name(p.proc)
        );
        p.enable = false;
    }
}

/// mproc_event_add()'s choice of events: read when enabled and not short
/// of descriptors, write while something is queued.
fn mproc_interest<S: MprocOwner>(s: &S, key: u64) -> EvFlags {
    let Some(p) = s.mproc_ref(key) else {
        return EvFlags::empty();
    };
    let mut events = EvFlags::empty();
    if p.enable && !imsgbuf_fd_starved(&p.imsgbuf) {
        events |= EvFlags::EV_READ;
    }
    if imsgbuf_queuelen(&p.imsgbuf) > 0 {
        events |= EvFlags::EV_WRITE;
    }
    events
}

/// The peer is gone, or sent what cannot be read: a control client is
/// dropped with a warning, anything else is fatal.
fn mproc_broken<S: MprocOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    key: u64,
    what: &str,
    e: &ImsgError,
) {
    let (proc, name) = match s.mproc_ref(key) {
        Some(p) => (p.proc, p.name.clone()),
        None => return,
    };
    if smtpd_process() == ProcType::PROC_CONTROL && proc == ProcType::PROC_CLIENT {
        log_warnx!("warn: client sent invalid imsg over control socket");
        s.mproc_imsg(base, key, None);
        return;
    }
    log_warnx!(
        "warn: {} -> {}: {what}: {e}",
        proc_name(smtpd_process()),
        name
    );
    fatalx!("exiting");
}

fn mproc_closed<S: MprocOwner>(s: &mut S, base: &mut EventBase<S>, key: u64) {
    if let Some(p) = s.mproc_ref(key) {
        log_debug!(
            "debug: {} -> {}: pipe closed",
            proc_name(smtpd_process()),
            p.name
        );
    }
    s.mproc_imsg(base, key, None);
}

/// mproc_dispatch(): reads, writes, then hands every complete message to
/// the owner.
fn mproc_dispatch<S: MprocOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    _fd: RawFd,
    event: EvFlags,
    key: u64,
) {
    if event.contains(EvFlags::EV_READ) {
        let Some(p) = s.mproc(key) else { return };
        match imsgbuf_read(&mut p.imsgbuf) {
            Err(e) => return mproc_broken(s, base, key, "imsgbuf_read", &e),
            Ok(ReadResult::Closed | ReadResult::ClosedMidMessage { .. }) => {
                return mproc_closed(s, base, key)
            }
            Ok(ReadResult::WouldBlock) if imsgbuf_fd_starved(&p.imsgbuf) => {
                let ev = *p
                    .ev_starved
                    .get_or_insert_with(|| base.evtimer_set(mproc_starved::<S>, key));
                if let Err(e) = base.evtimer_add(ev, STARVED_RETRY) {
                    fatal!(e, "mproc_dispatch: evtimer_add");
                }
            }
            Ok(_) => {}
        }
    }
    if event.contains(EvFlags::EV_WRITE) {
        let Some(p) = s.mproc(key) else { return };
        if imsgbuf_write(&mut p.imsgbuf).is_err() {
            return mproc_closed(s, base, key);
        }
    }
    loop {
        let Some(p) = s.mproc(key) else { return };
        match imsg_get(&mut p.imsgbuf) {
            Err(e) => return mproc_broken(s, base, key, "error in imsg_get", &e),
            Ok(None) => return,
            Ok(Some(imsg)) => s.mproc_imsg(base, key, Some(imsg)),
        }
    }
}

/// The retry of a read deferred for lack of descriptors.
fn mproc_starved<S: MprocOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    fd: RawFd,
    _event: EvFlags,
    key: u64,
) {
    mproc_dispatch(s, base, fd, EvFlags::EV_READ, key);
}

fn trace_send(p: &Mproc, type_: u32, len: usize, how: &str) {
    let t = ImsgType::from_u32(type_);
    if t != Some(ImsgType::IMSG_STAT_DECREMENT) && t != Some(ImsgType::IMSG_STAT_INCREMENT) {
        log_trace!(
            TRACE_MPROC,
            "mproc: {} -> {} : {} {}{how}",
            proc_name(smtpd_process()),
            proc_name(p.proc),
            len,
            imsg_to_str(type_)
        );
    }
}

/// m_forward(): passes a received message on, header and all.
pub fn m_forward(p: &mut Mproc, imsg: &mut Imsg) {
    let fd = imsg_get_fd(imsg);
    if let Err(e) = imsg_compose(
        &mut p.imsgbuf,
        imsg.hdr.type_,
        imsg.hdr.peerid,
        imsg.hdr.pid,
        fd,
        &imsg.data,
    ) {
        fatalx!("m_forward: imsg_compose: {e}");
    }
    trace_send(p, imsg.hdr.type_, imsg.data.len(), " (forward)");
}

/// m_compose(): queues one message.
pub fn m_compose(
    p: &mut Mproc,
    type_: ImsgType,
    peerid: u32,
    pid: u32,
    fd: Option<OwnedFd>,
    data: &[u8],
) {
    if let Err(e) = imsg_compose(&mut p.imsgbuf, type_ as u32, peerid, pid, fd, data) {
        fatalx!("m_compose: imsg_compose: {e}");
    }
    trace_send(p, type_ as u32, data.len(), "");
}

/// m_create(): starts a message built field by field.
pub fn m_create(p: &mut Mproc, type_: ImsgType, peerid: u32, pid: u32, fd: Option<OwnedFd>) {
    p.m_buf.clear();
    p.m_type = type_ as u32;
    p.m_peerid = peerid;
    p.m_pid = pid;
    p.m_fd = fd;
}

/// m_add(): appends raw bytes; a message beyond MAX_IMSGSIZE is a bug in
/// the caller, and fatal as in OpenSMTPD.
pub fn m_add(p: &mut Mproc, data: &[u8]) {
    if p.m_buf.len() + data.len() + IMSG_HEADER_SIZE > MAX_IMSGSIZE {
        log_warnx!("warn: message too large");
        fatalx!("m_add: {} message too large", imsg_to_str(p.m_type));
    }
    p.m_buf.extend_from_slice(data);
}

/// m_close(): queues the message built since m_create.
pub fn m_close(p: &mut Mproc) {
    let buf = std::mem::take(&mut p.m_buf);
    if let Err(e) = imsg_compose(
        &mut p.imsgbuf,
        p.m_type,
        p.m_peerid,
        p.m_pid,
        p.m_fd.take(),
        &buf,
    ) {
        fatalx!("imsg_compose: {e}");
    }
    trace_send(p, p.m_type, buf.len(), "");
    p.m_buf = buf;
    p.m_buf.clear();
}

/// m_flush(): m_close, then writes everything queued before returning
/// (for the few places that cannot wait for the loop).
pub fn m_flush(p: &mut Mproc) {
    let buf = std::mem::take(&mut p.m_buf);
    if let Err(e) = imsg_compose(
        &mut p.imsgbuf,
        p.m_type,
        p.m_peerid,
        p.m_pid,
        p.m_fd.take(),
        &buf,
    ) {
        fatalx!("imsg_compose: {e}");
    }
    trace_send(p, p.m_type, buf.len(), " (flush)");
    p.m_buf = buf;
    p.m_buf.clear();
    if let Err(e) = imsgbuf_flush(&mut p.imsgbuf) {
        fatalx!("imsgbuf_flush: {e}");
    }
}

pub fn m_add_int(p: &mut Mproc, v: i32) {
    m_add(p, &v.to_ne_bytes());
}

pub fn m_add_u32(p: &mut Mproc, v: u32) {
    m_add(p, &v.to_ne_bytes());
}

/// A size_t.
pub fn m_add_size(p: &mut Mproc, v: usize) {
    m_add(p, &v.to_ne_bytes());
}

/// A time_t.
pub fn m_add_time(p: &mut Mproc, v: i64) {
    m_add(p, &v.to_ne_bytes());
}

/// A struct timeval: seconds as time_t, microseconds as suseconds_t.
pub fn m_add_timeval(p: &mut Mproc, d: Duration) {
    let sec = d.as_secs() as libc::time_t;
    let usec = d.subsec_micros() as libc::suseconds_t;
    m_add(p, &sec.to_ne_bytes());
    m_add(p, &usec.to_ne_bytes());
}

/// A string, or the null string.
pub fn m_add_string(p: &mut Mproc, v: Option<&str>) {
    match v {
        Some(s) => {
            m_add(p, b"s");
            m_add(p, s.as_bytes());
            m_add(p, b"\0");
        }
        None => m_add(p, b"\0"),
    }
}

/// Bytes with their size_t length.
pub fn m_add_data(p: &mut Mproc, v: &[u8]) {
    m_add_size(p, v.len());
    m_add(p, v);
}

pub fn m_add_id(p: &mut Mproc, v: u64) {
    m_add(p, &v.to_ne_bytes());
}

pub fn m_add_evpid(p: &mut Mproc, v: u64) {
    m_add(p, &v.to_ne_bytes());
}

pub fn m_add_msgid(p: &mut Mproc, v: u32) {
    m_add(p, &v.to_ne_bytes());
}

/// A socket address, as the C library lays it out, with its length.
pub fn m_add_sockaddr(p: &mut Mproc, sa: &SocketAddr) {
    m_add_data(p, &sockaddr_bytes(sa));
}

/// An envelope, as its text form with its id before it (m_add_envelope).
/// An envelope that cannot be written (a CR or LF in a field) never gets
/// here: every field is checked where it enters.
pub fn m_add_envelope(p: &mut Mproc, evp: &crate::queue::envelope::Envelope) {
    match crate::queue::envelope::envelope_dump_buffer(evp) {
        Ok(text) => {
            m_add_evpid(p, evp.id);
            m_add_string(p, Some(&text));
        }
        Err(e) => fatalx!("m_add_envelope: {e}"),
    }
}

/// A struct mailaddr, raw, as C sends it. A mail address that does not
/// fit its C layout never reaches here: the SMTP checks refuse it first.
pub fn m_add_mailaddr(p: &mut Mproc, maddr: &crate::util::mailaddr::Mailaddr) {
    match maddr.to_bytes() {
        Ok(b) => m_add(p, &b),
        Err(e) => fatalx!("m_add_mailaddr: {e}"),
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgError {
    TooShort,
    Unterminated,
    NotAtEnd,
    NotUtf8,
    BadSockaddr,
    BadEnvelope,
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MsgError::TooShort => "msg too short",
            MsgError::Unterminated => "unterminated string",
            MsgError::NotAtEnd => "not at msg end",
            MsgError::NotUtf8 => "string is not UTF-8",
            MsgError::BadSockaddr => "bad sockaddr",
            MsgError::BadEnvelope => "bad envelope",
        })
    }
}

/// struct msg: a reader over one message's payload.
pub struct Msg<'a> {
    data: &'a [u8],
    pos: usize,
    type_: u32,
}

/// m_msg(): starts reading `imsg`.
pub fn m_msg(imsg: &Imsg) -> Msg<'_> {
    Msg {
        data: &imsg.data,
        pos: 0,
        type_: imsg.hdr.type_,
    }
}

impl<'a> Msg<'a> {
    fn get(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        if self.data.len() - self.pos < n {
            return Err(MsgError::TooShort);
        }
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn get_array<const N: usize>(&mut self) -> Result<[u8; N], MsgError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.get(N)?);
        Ok(a)
    }

    pub fn get_int(&mut self) -> Result<i32, MsgError> {
        self.get_array().map(i32::from_ne_bytes)
    }

    pub fn get_u32(&mut self) -> Result<u32, MsgError> {
        self.get_array().map(u32::from_ne_bytes)
    }

    pub fn get_size(&mut self) -> Result<usize, MsgError> {
        self.get_array().map(usize::from_ne_bytes)
    }

    pub fn get_time(&mut self) -> Result<i64, MsgError> {
        self.get_array().map(i64::from_ne_bytes)
    }

    pub fn get_timeval(&mut self) -> Result<Duration, MsgError> {
        let sec = libc::time_t::from_ne_bytes(self.get_array()?);
        let usec = libc::suseconds_t::from_ne_bytes(self.get_array()?);
        Ok(Duration::from_secs(sec.max(0) as u64) + Duration::from_micros(usec.max(0) as u64))
    }

    pub fn get_id(&mut self) -> Result<u64, MsgError> {
        self.get_array().map(u64::from_ne_bytes)
    }

    pub fn get_evpid(&mut self) -> Result<u64, MsgError> {
        self.get_id()
    }

    pub fn get_msgid(&mut self) -> Result<u32, MsgError> {
        self.get_u32()
    }

    /// A string, or None for the null string.
    pub fn get_string(&mut self) -> Result<Option<&'a str>, MsgError> {
        match self.get(1)?[0] {
            0 => Ok(None),
            _ => {
                let rest = &self.data[self.pos..];
                if rest.is_empty() {
                    return Err(MsgError::TooShort);
                }
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(MsgError::Unterminated)?;
                self.pos += end + 1;
                std::str::from_utf8(&rest[..end])
                    .map(Some)
                    .map_err(|_| MsgError::NotUtf8)
            }
        }
    }

    /// Bytes with their length.
    pub fn get_data(&mut self) -> Result<&'a [u8], MsgError> {
        let n = self.get_size()?;
        if n > MAX_IMSGSIZE {
            return Err(MsgError::TooShort);
        }
        self.get(n)
    }

    pub fn get_sockaddr(&mut self) -> Result<SocketAddr, MsgError> {
        sockaddr_from_bytes(self.get_data()?).ok_or(MsgError::BadSockaddr)
    }

    /// m_get_envelope(): the envelope's text, loaded, with its id.
    pub fn get_envelope(&mut self) -> Result<crate::queue::envelope::Envelope, MsgError> {
        let evpid = self.get_evpid()?;
        let text = self.get_string()?.ok_or(MsgError::TooShort)?;
        let mut evp = crate::queue::envelope::envelope_load_buffer(text.as_bytes())
            .map_err(|_| MsgError::BadEnvelope)?;
        evp.id = evpid;
        Ok(evp)
    }

    pub fn get_mailaddr(&mut self) -> Result<crate::util::mailaddr::Mailaddr, MsgError> {
        let b = self.get(crate::util::mailaddr::MAILADDR_SIZE)?;
        crate::util::mailaddr::Mailaddr::from_bytes(b).map_err(|_| MsgError::NotUtf8)
    }

    /// m_is_eom().
    pub fn is_eom(&self) -> bool {
        self.pos == self.data.len()
    }

    /// m_end(): the message must have been read to its last byte.
    pub fn end(&self) -> Result<(), MsgError> {
        if self.is_eom() {
            Ok(())
        } else {
            Err(MsgError::NotAtEnd)
        }
    }

    /// The imsg type being read, for messages.
    pub fn type_(&self) -> u32 {
        self.type_
    }
}

/// m_error(): a message from a trusted peer that cannot be read is a
/// broken invariant: name the process and the imsg type, and exit.
pub fn m_error(m: &Msg, e: MsgError) -> ! {
    fatalx!(
        "{}: {}: {e}",
        proc_name(smtpd_process()),
        imsg_to_str(m.type_)
    )
}

macro_rules! m_getters {
    ($($name:ident => $method:ident -> $t:ty,)*) => {
        $(
            /// The trusted-peer form of the reader: fatal on error.
            pub fn $name<'a>(m: &mut Msg<'a>) -> $t {
                match m.$method() {
                    Ok(v) => v,
                    Err(e) => m_error(m, e),
                }
            }
        )*
    };
}

m_getters! {
    m_get_int => get_int -> i32,
    m_get_u32 => get_u32 -> u32,
    m_get_size => get_size -> usize,
    m_get_time => get_time -> i64,
    m_get_timeval => get_timeval -> Duration,
    m_get_id => get_id -> u64,
    m_get_evpid => get_evpid -> u64,
    m_get_msgid => get_msgid -> u32,
    m_get_string => get_string -> Option<&'a str>,
    m_get_data => get_data -> &'a [u8],
        m_get_sockaddr => get_sockaddr -> SocketAddr,
        m_get_mailaddr => get_mailaddr -> crate::util::mailaddr::Mailaddr,
    m_get_envelope => get_envelope -> crate::queue::envelope::Envelope,
}

/// m_end() for trusted peers.
pub fn m_end(m: &Msg) {
    if let Err(e) = m.end() {
        m_error(m, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::socketpair;

    fn pair() -> (Mproc, Mproc) {
        let (a, b) = socketpair().unwrap();
        (
            mproc_init(a, ProcType::PROC_QUEUE, "queue", 0),
            mproc_init(b, ProcType::PROC_LKA, "lka", 0),
        )
    }

    fn recv(p: &mut Mproc) -> Imsg {
        for _ in 0..1000 {
            if let Some(m) = imsg_get(&mut p.imsgbuf).unwrap() {
                return m;
            }
            let _ = imsgbuf_read(&mut p.imsgbuf).unwrap();
        }
        panic!("no message");
    }

    #[test]
    fn every_field_type_round_trips() {
        let (mut a, mut b) = pair();
        let sa: SocketAddr = "[2001:db8::25]:587".parse().unwrap();
        m_create(&mut a, ImsgType::IMSG_LKA_AUTHENTICATE, 7, 0, None);
        m_add_int(&mut a, -3);
        m_add_u32(&mut a, 0xdead_beef);
        m_add_size(&mut a, 1 << 40);
        m_add_time(&mut a, 1_700_000_000);
        m_add_timeval(&mut a, Duration::new(5, 250_000_000));
        m_add_id(&mut a, u64::MAX - 1);
        m_add_evpid(&mut a, 0x0123_4567_89ab_cdef);
        m_add_msgid(&mut a, 0x89ab_cdef);
        m_add_string(&mut a, Some("user@example.org"));
        m_add_string(&mut a, None);
        m_add_string(&mut a, Some(""));
        m_add_data(&mut a, b"\x00\x01\x02");
        m_add_data(&mut a, b"");
        m_add_sockaddr(&mut a, &sa);
        m_close(&mut a);
        imsgbuf_flush(&mut a.imsgbuf).unwrap();

        let imsg = recv(&mut b);
        assert_eq!(
            (imsg.hdr.type_, imsg.hdr.peerid),
            (ImsgType::IMSG_LKA_AUTHENTICATE as u32, 7)
        );
        let mut m = m_msg(&imsg);
        assert_eq!(m_get_int(&mut m), -3);
        assert_eq!(m_get_u32(&mut m), 0xdead_beef);
        assert_eq!(m_get_size(&mut m), 1 << 40);
        assert_eq!(m_get_time(&mut m), 1_700_000_000);
        assert_eq!(m_get_timeval(&mut m), Duration::new(5, 250_000_000));
        assert_eq!(m_get_id(&mut m), u64::MAX - 1);
        assert_eq!(m_get_evpid(&mut m), 0x0123_4567_89ab_cdef);
        assert_eq!(m_get_msgid(&mut m), 0x89ab_cdef);
        assert_eq!(m_get_string(&mut m), Some("user@example.org"));
        assert_eq!(m_get_string(&mut m), None);
        assert_eq!(m_get_string(&mut m), Some(""));
        assert_eq!(m_get_data(&mut m), b"\x00\x01\x02");
        assert_eq!(m_get_data(&mut m), b"");
        assert_eq!(m_get_sockaddr(&mut m), sa);
        m_end(&m);
    }

    #[test]
    fn strings_are_tagged_and_nul_terminated_as_in_c() {
        let (mut a, _b) = pair();
        m_create(&mut a, ImsgType::IMSG_NONE, 0, 0, None);
        m_add_string(&mut a, Some("ab"));
        m_add_string(&mut a, None);
        m_add_int(&mut a, 1);
        let mut expected = b"sab\0\0".to_vec();
        expected.extend_from_slice(&1i32.to_ne_bytes());
        assert_eq!(a.m_buf, expected);
    }

    fn imsg_with(data: &[u8]) -> Imsg {
        Imsg {
            hdr: ImsgHdr {
                type_: ImsgType::IMSG_CTL_VERBOSE as u32,
                len: (IMSG_HEADER_SIZE + data.len()) as u32,
                peerid: 0,
                pid: 0,
            },
            data: data.to_vec(),
            fd: None,
        }
    }

    #[test]
    fn short_unterminated_and_overlong_messages_are_errors() {
        let imsg = imsg_with(&[1, 2]);
        assert_eq!(m_msg(&imsg).get_int(), Err(MsgError::TooShort));
        let imsg = imsg_with(b"sabc");
        assert_eq!(m_msg(&imsg).get_string(), Err(MsgError::Unterminated));
        let imsg = imsg_with(b"s");
        assert_eq!(m_msg(&imsg).get_string(), Err(MsgError::TooShort));
        let imsg = imsg_with(&[0, 0, 0, 0, 9]);
        let mut m = m_msg(&imsg);
        assert_eq!(m.get_int(), Ok(0));
        assert_eq!(m.end(), Err(MsgError::NotAtEnd));
        // A length beyond the payload.
        let mut bytes = 100usize.to_ne_bytes().to_vec();
        bytes.extend_from_slice(b"xy");
        let imsg = imsg_with(&bytes);
        assert_eq!(m_msg(&imsg).get_data(), Err(MsgError::TooShort));
    }

    #[test]
    fn imsg_names_match_the_c_enum() {
        assert_eq!(ImsgType::IMSG_SETUP_PEER as u32, 41);
        assert_eq!(ImsgType::from_u32(148), Some(ImsgType::IMSG_CA_ECDSA_SIGN));
        assert_eq!(ImsgType::from_u32(149), None);
        assert_eq!(imsg_to_str(44), "IMSG_CONF_END");
        assert_eq!(imsg_to_str(999), "IMSG_??? (999)");
    }

    /// A process with one peer, driven by the event loop.
    struct Owner {
        peer: Option<Mproc>,
        got: Vec<Option<u32>>,
    }

    impl MprocOwner for Owner {
        fn mproc(&mut self, _key: u64) -> Option<&mut Mproc> {
            self.peer.as_mut()
        }
        fn mproc_ref(&self, _key: u64) -> Option<&Mproc> {
            self.peer.as_ref()
        }
        fn mproc_imsg(&mut self, base: &mut EventBase<Self>, _key: u64, imsg: Option<Imsg>) {
            self.got.push(imsg.as_ref().map(|i| i.hdr.type_));
            match imsg {
                // Peer gone: leave the loop, as a process would exit.
                None => {
                    if let Some(p) = self.peer.take() {
                        mproc_clear(base, p);
                    }
                }
                // Answer a verbose request with an OK, through the loop.
                Some(i) if i.hdr.type_ == ImsgType::IMSG_CTL_VERBOSE as u32 => {
                    let p = self.peer.as_mut().unwrap();
                    m_compose(p, ImsgType::IMSG_CTL_OK, 0, 0, None, &[]);
                }
                Some(_) => {}
            }
        }
    }

    #[test]
    fn the_loop_delivers_messages_writes_replies_and_reports_a_closed_peer() {
        let (a, mut far) = pair();
        let mut base: EventBase<Owner> = EventBase::new();
        let mut owner = Owner {
            peer: Some(a),
            got: Vec::new(),
        };
        let mut p = owner.peer.take().unwrap();
        mproc_enable(&mut base, &mut p, 1);
        owner.peer = Some(p);

        m_compose(
            &mut far,
            ImsgType::IMSG_CTL_VERBOSE,
            0,
            0,
            None,
            &2i32.to_ne_bytes(),
        );
        m_compose(&mut far, ImsgType::IMSG_CONF_START, 0, 0, None, &[]);
        imsgbuf_flush(&mut far.imsgbuf).unwrap();
        while owner.got.len() < 2 {
            base.event_loop_once(&mut owner).unwrap();
        }
        // The reply goes out on a later turn, when the loop sees it queued.
        while imsgbuf_queuelen(&owner.peer.as_ref().unwrap().imsgbuf) > 0 {
            base.event_loop_once(&mut owner).unwrap();
        }
        assert_eq!(recv(&mut far).hdr.type_, ImsgType::IMSG_CTL_OK as u32);

        drop(far);
        base.event_dispatch(&mut owner).unwrap();
        assert_eq!(
            owner.got,
            [
                Some(ImsgType::IMSG_CTL_VERBOSE as u32),
                Some(ImsgType::IMSG_CONF_START as u32),
                None
            ]
        );
        assert!(owner.peer.is_none());
    }
}
