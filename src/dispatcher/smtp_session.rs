//! smtp_session.c: one incoming SMTP session, from the client's address
//! lookups to the commit of each message (OpenSMTPD smtp_session.c
//! 1.443).
//!
//! Two things differ from OpenSMTPD, on purpose (smtpd.8 says so):
//! - PIPELINING (RFC 2920) is advertised and honoured once the client
//!   said EHLO: buffered commands are taken one after the other, each
//!   answered in turn. Before EHLO, or after HELO, more input than one
//!   line is refused as OpenSMTPD refuses it ("Pipelining not supported").
//! - Message data is cut into lines at CRLF only, and ends only at
//!   <CRLF>.<CRLF>. A bare CR or LF anywhere in it fails the transaction
//!   at its real end ("550 5.5.2 Message contains a bare CR or LF"), so
//!   that no sequence can make this server and another disagree on where
//!   a message ends (SMTP smuggling). OpenSMTPD cuts data at LF and takes
//!   <LF>.<LF> as the end.
//!
//! Filters, reports, STARTTLS and AUTH come with their issues: a listener
//! that asks for them is refused when smtpd starts, so the session never
//! needs them; the places where they plug in say so.

use std::io::{BufWriter, Write};
use std::time::Duration;

use bitflags::bitflags;

use super::dispatcher::Dispatcher;
use crate::config::config::{env, Listener, ListenerFlags};
use crate::defines::{LINE_MAX, MAX_HOPS_COUNT, SMTPD_NAME, SMTPD_SESSION_TIMEOUT};
use crate::dns::getaddrinfo_async::{AddrInfoHints, EAI_NODATA, EAI_NONAME};
use crate::dns::getnameinfo_async::{NI_NAMEREQD, NI_NUMERICSERV};
use crate::dns::resolver::{resolver_getaddrinfo, resolver_getnameinfo};
use crate::io::event::EventBase;
use crate::io::ioev::{io_free, io_rekey, io_set_fd, Io, IoEvent, Stream, IO_IN};
use crate::ipc::imsg::{imsg_get_fd, Imsg};
use crate::ipc::mproc::{
    m_add_envelope, m_add_id, m_add_mailaddr, m_add_msgid, m_add_sockaddr, m_add_string, m_add_u32,
    m_close, m_create, m_end, m_get_evpid, m_get_id, m_get_int, m_get_msgid, m_get_string, m_msg,
    ImsgType, Mproc, ProcType,
};
use crate::queue::envelope::{
    msgid_to_evpid, DsnNotify, DsnRet, Envelope, EnvelopeFlags, PeerAddr, DSN_ENVID_LEN,
    DSN_ORCPT_LEN,
};
use crate::smtpd::imsg_to_str;
use crate::util::esc::*;
use crate::util::log::{TRACE_IO, TRACE_SMTP};
use crate::util::mailaddr::Mailaddr;
use crate::util::rfc5322::{Rfc5322, Rfc5322Error, Rfc5322Parser};
use crate::util::to::text_to_mailaddr;
use crate::util::to::{sa_to_text, time_to_text};
use crate::util::util::{
    generate_uid, strnvis, valid_atom, valid_domainpart, valid_localpart, valid_xtext,
};

/// SMTP_LINE_MAX: the longest line a client may send.
pub const SMTP_LINE_MAX: usize = 65535;
/// APPEND_DOMAIN_BUFFER_SIZE: the longest address the header rewriting
/// handles.
const APPEND_DOMAIN_BUFFER_SIZE: usize = SMTP_LINE_MAX;

/// enum smtp_state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpState {
    New,
    Connected,
    Tls,
    Helo,
    AuthInit,
    AuthUsername,
    AuthPassword,
    AuthFinalize,
    Body,
    Quit,
}

/// smtp_strstate().
pub fn smtp_strstate(state: SmtpState) -> &'static str {
    match state {
        SmtpState::New => "STATE_NEW",
        SmtpState::Connected => "STATE_CONNECTED",
        SmtpState::Tls => "STATE_TLS",
        SmtpState::Helo => "STATE_HELO",
        SmtpState::AuthInit => "STATE_AUTH_INIT",
        SmtpState::AuthUsername => "STATE_AUTH_USERNAME",
        SmtpState::AuthPassword => "STATE_AUTH_PASSWORD",
        SmtpState::AuthFinalize => "STATE_AUTH_FINALIZE",
        SmtpState::Body => "STATE_BODY",
        SmtpState::Quit => "STATE_QUIT",
    }
}

bitflags! {
    /// enum session_flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct SessionFlags: u32 {
        const SF_EHLO = 0x0001;
        const SF_8BITMIME = 0x0002;
        const SF_SECURE = 0x0004;
        const SF_AUTHENTICATED = 0x0008;
        const SF_BOUNCE = 0x0010;
        const SF_VERIFIED = 0x0020;
        const SF_BADINPUT = 0x0080;
    }
}

/// Why a transaction fails (TX_ERROR_*).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxError {
    #[default]
    Ok,
    Envelope,
    Size,
    Io,
    Loop,
    Malformed,
    Resources,
    Internal,
    /// A bare CR or LF in the data (ours: SMTP smuggling).
    BareNewline,
}

/// enum smtp_command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpCommand {
    Helo,
    Ehlo,
    Starttls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Rset,
    Quit,
    Help,
    Wiz,
    Noop,
    Commit,
}

/// The command table (C's commands[]): name, check and proceed.
type Check = fn(&mut SmtpSession, Option<&str>) -> bool;

const COMMANDS: &[(SmtpCommand, &str, Check)] = &[
    (SmtpCommand::Helo, "HELO", smtp_check_helo),
    (SmtpCommand::Ehlo, "EHLO", smtp_check_ehlo),
    (SmtpCommand::Starttls, "STARTTLS", smtp_check_starttls),
    (SmtpCommand::Auth, "AUTH", smtp_check_auth),
    (SmtpCommand::MailFrom, "MAIL FROM", smtp_check_mail_from),
    (SmtpCommand::RcptTo, "RCPT TO", smtp_check_rcpt_to),
    (SmtpCommand::Data, "DATA", smtp_check_data),
    (SmtpCommand::Rset, "RSET", smtp_check_rset),
    (SmtpCommand::Quit, "QUIT", smtp_check_noparam),
    (SmtpCommand::Noop, "NOOP", smtp_check_noop),
    (SmtpCommand::Help, "HELP", smtp_check_noparam),
    (SmtpCommand::Wiz, "WIZ", smtp_check_noparam),
    (SmtpCommand::Commit, ".", smtp_check_noparam),
];

/// struct smtp_rcpt: a recipient accepted in the transaction.
#[derive(Clone, Debug)]
pub struct SmtpRcpt {
    pub evpid: u64,
    pub maddr: Mailaddr,
    pub destcount: usize,
}

/// struct smtp_tx: the transaction from MAIL FROM to the end of data.
pub struct SmtpTx {
    pub msgid: u32,
    pub evp: Envelope,
    pub rcptcount: usize,
    pub destcount: usize,
    pub rcpts: Vec<SmtpRcpt>,
    pub time: i64,
    pub error: TxError,
    pub datain: usize,
    pub odatalen: usize,
    pub ofile: Option<BufWriter<std::fs::File>>,
    pub parser: Rfc5322Parser,
    pub rcvcount: usize,
    pub has_date: bool,
    pub has_message_id: bool,
    pub junk: bool,
    /// The session's part in rewriting headers.
    hc: HeaderCtx,
}

/// struct smtp_session.
pub struct SmtpSession {
    pub id: u64,
    pub io: Io,
    pub listener: &'static Listener,
    pub ss: PeerAddr,
    pub rdns: String,
    pub smtpname: String,
    pub fcrdns: i32,
    pub flags: SessionFlags,
    pub state: SmtpState,
    pub banner_sent: bool,
    pub helo: String,
    /// The last command line, as sent (for the failed-command log line).
    pub cmd: Vec<u8>,
    pub username: String,
    pub mailcount: usize,
    pub tx: Option<SmtpTx>,
    pub last_cmd: Option<SmtpCommand>,
    pub junk: bool,
    /// Waiting for another process's answer: input is not read meanwhile.
    pub waiting: bool,
    /// smtp_free() was called: the session ends when its handler returns.
    pub freed: Option<&'static str>,
    /// The uid of the local user who submitted through sendmail: the
    /// owner of its messages, who may list and remove them.
    pub owner: Option<u32>,
}

/// ADVERTISE_TLS().
fn advertise_tls(s: &SmtpSession) -> bool {
    s.listener.flags.contains(ListenerFlags::F_STARTTLS)
        && !s.flags.contains(SessionFlags::SF_SECURE)
}

/// ADVERTISE_AUTH().
fn advertise_auth(s: &SmtpSession) -> bool {
    s.listener.flags.contains(ListenerFlags::F_AUTH)
        && s.flags.contains(SessionFlags::SF_SECURE)
        && !s.flags.contains(SessionFlags::SF_AUTHENTICATED)
}

/// ADVERTISE_EXT_DSN().
fn advertise_ext_dsn(s: &SmtpSession) -> bool {
    s.listener.flags.contains(ListenerFlags::F_EXT_DSN)
}

/// ss_to_text() of the session's peer.
fn ss_to_text(ss: &PeerAddr) -> String {
    match ss {
        PeerAddr::Inet(a) => sa_to_text(Some(a)),
        PeerAddr::Local | PeerAddr::Unspec => sa_to_text(None),
    }
}

/// The peer as the greeting and the Received: header show it: IPv4 in
/// brackets, IPv6 as ss_to_text already brackets it.
fn ss_bracketed(ss: &PeerAddr) -> String {
    match ss {
        PeerAddr::Inet(a) if a.is_ipv6() => ss_to_text(ss),
        _ => format!("[{}]", ss_to_text(ss)),
    }
}

/// header_append_domain_buffer(): qualifies an address of a To, Cc or
/// From header without a domain with `domain`, unless it cannot be read.
fn header_append_domain_buffer(buffer: &mut Vec<u8>, domain: &[u8]) {
    let (mut escape, mut quote, mut comment, mut bracket) = (false, false, 0, 0);
    let (mut has_domain, mut has_bracket, mut has_group) = (false, false, false);
    let (mut pos_bracket, mut pos_component) = (0usize, 0usize);
    for (i, &c) in buffer.iter().enumerate() {
        if c == b'(' && !escape && !quote {
            comment += 1;
        }
        if c == b'"' && !escape && comment == 0 {
            quote = !quote;
        }
        if c == b')' && !escape && !quote && comment > 0 {
            comment -= 1;
        }
        escape = c == b'\\' && !escape && comment == 0 && !quote;
        if c == b'<' && !escape && comment == 0 && !quote && bracket == 0 {
            bracket += 1;
            has_bracket = true;
        }
        if c == b'>' && !escape && comment == 0 && !quote && bracket > 0 {
            bracket -= 1;
            pos_bracket = i;
        }
        if c == b'@' && !escape && comment == 0 && !quote {
            has_domain = true;
        }
        if c == b':' && !escape && comment == 0 && !quote {
            has_group = true;
        }
        // The insertion point: not in a comment, not on white space.
        if comment == 0 && c != b')' && !c.is_ascii_whitespace() {
            pos_component = i;
        }
    }
    if escape || quote || comment > 0 || bracket > 0 || has_domain || has_group {
        return;
    }
    let pos_insert = if has_bracket {
        let mut p = pos_bracket.saturating_sub(1);
        while p > 0 && buffer[p].is_ascii_whitespace() {
            p -= 1;
        }
        if buffer.get(p) == Some(&b'<') {
            return;
        }
        p + 1
    } else {
        match buffer.get(pos_component) {
            None => return,
            Some(c) if c.is_ascii_whitespace() => return,
            _ => pos_component + 1,
        }
    };
    if buffer.len() + domain.len() + 1 >= APPEND_DOMAIN_BUFFER_SIZE {
        return;
    }
    let mut at = vec![b'@'];
    at.extend_from_slice(domain);
    buffer.splice(pos_insert..pos_insert, at);
}

/// header_address_rewrite_buffer(): replaces the address of a From
/// header with `address` (senders ... masquerade).
fn header_address_rewrite_buffer(buffer: &mut Vec<u8>, address: &[u8]) {
    let (mut escape, mut quote, mut comment, mut bracket) = (false, false, 0, 0);
    let (mut has_bracket, mut has_group) = (false, false);
    let (mut pos_bracket_beg, mut pos_bracket_end, mut pos_component_end) = (0, 0, 0usize);
    for (i, &c) in buffer.iter().enumerate() {
        if c == b'(' && !escape && !quote {
            comment += 1;
        }
        if c == b'"' && !escape && comment == 0 {
            quote = !quote;
        }
        if c == b')' && !escape && !quote && comment > 0 {
            comment -= 1;
        }
        escape = c == b'\\' && !escape && comment == 0 && !quote;
        if c == b'<' && !escape && comment == 0 && !quote && bracket == 0 {
            bracket += 1;
            has_bracket = true;
            pos_bracket_beg = i + 1;
        }
        if c == b'>' && !escape && comment == 0 && !quote && bracket > 0 {
            bracket -= 1;
            pos_bracket_end = i;
        }
        if c == b':' && !escape && comment == 0 && !quote {
            has_group = true;
        }
        if comment == 0 && c != b')' && !c.is_ascii_whitespace() {
            pos_component_end = i;
        }
    }
    if escape || quote || comment > 0 || bracket > 0 || has_group {
        return;
    }
    let (beg, end) = if has_bracket {
        (pos_bracket_beg, pos_bracket_end)
    } else if pos_component_end == 0 {
        (0, 0)
    } else {
        let mut beg = pos_component_end;
        while beg > 0 && buffer[beg] != b')' && !buffer[beg].is_ascii_whitespace() {
            beg -= 1;
        }
        if buffer[beg] == b')' || buffer[beg].is_ascii_whitespace() {
            beg += 1;
        }
        (beg, pos_component_end + 1)
    };
    if buffer.len() - (end - beg) + address.len() >= APPEND_DOMAIN_BUFFER_SIZE {
        return;
    }
    buffer.splice(beg..end, address.iter().copied());
}

/// smtp_session(): a new session on `stream` for `listener`. A local
/// enqueue session comes with its host name ("localhost" for bounces)
/// and is trusted as authenticated; others get theirs from rDNS.
pub fn smtp_session(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    listener: &'static Listener,
    stream: Stream,
    ss: PeerAddr,
    hostname: Option<&str>,
) -> u64 {
    let id = generate_uid();
    let mut io = Io::new();
    smtp_io_setup(&mut io);
    io_set_fd(base, &mut io, stream, id);
    smtp_session_start(d, base, listener, io, id, ss, hostname);
    id
}

/// The timeout and mode of a session's io, set before it is registered
/// (the registration takes the timeout).
fn smtp_io_setup(io: &mut Io) {
    io.set_timeout(Some(Duration::from_secs(SMTPD_SESSION_TIMEOUT as u64)));
    if !io.is_writing() {
        io.set_write();
    }
}

/// smtp_session() on a connection whose io another reader had (the
/// PROXY header's): what it buffered stays for the session.
pub fn smtp_session_with_io(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    listener: &'static Listener,
    mut io: Io,
    ss: PeerAddr,
) {
    let id = generate_uid();
    smtp_io_setup(&mut io);
    io_rekey(base, &mut io, id);
    smtp_session_start(d, base, listener, io, id, ss, None);
}

fn smtp_session_start(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    listener: &'static Listener,
    io: Io,
    id: u64,
    ss: PeerAddr,
    hostname: Option<&str>,
) {
    let s = SmtpSession {
        id,
        io,
        listener,
        ss,
        rdns: String::new(),
        smtpname: listener.hostname.clone(),
        fcrdns: 0,
        flags: SessionFlags::empty(),
        state: SmtpState::New,
        banner_sent: false,
        helo: String::new(),
        cmd: Vec::new(),
        username: String::new(),
        mailcount: 0,
        tx: None,
        last_cmd: None,
        junk: false,
        waiting: false,
        freed: None,
        owner: None,
    };
    log_trace!(
        TRACE_SMTP,
        "smtp: {id:016x}: connected to listener {} [hostname={}, port={}, tag={}]",
        listener.address(),
        listener.hostname,
        listener.port,
        listener.tag.as_deref().unwrap_or("")
    );
    let peer = s.ss;
    d.smtp.sessions.insert(id, s);
    match hostname {
        Some(h) => {
            with_session(d, base, id, |d, base, s| {
                s.flags |= SessionFlags::SF_AUTHENTICATED;
                // A bit of a hack, as C says: bounces are enqueued as
                // localhost.
                if h == "localhost" {
                    s.flags |= SessionFlags::SF_BOUNCE;
                }
                s.rdns = h.to_string();
                s.fcrdns = 1;
                smtp_lookup_servername(d, base, s);
            });
        }
        None => {
            let PeerAddr::Inet(sa) = peer else {
                fatalx!("smtp_session: a network session without an address");
            };
            resolver_getnameinfo(
                d,
                &sa,
                NI_NAMEREQD | NI_NUMERICSERV,
                smtp_getnameinfo_cb,
                id,
            );
        }
    }
}

/// Runs `f` on the session `id`, taken out of the table meanwhile so that
/// `f` may use the rest of the dispatcher; then puts it back, or ends it
/// if `f` freed it.
pub fn with_session(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    id: u64,
    f: impl FnOnce(&mut Dispatcher, &mut EventBase<Dispatcher>, &mut SmtpSession),
) {
    let Some(mut s) = d.smtp.sessions.remove(&id) else {
        return;
    };
    f(d, base, &mut s);
    if s.freed.is_some() {
        smtp_free_final(d, base, s);
    } else {
        d.smtp.sessions.insert(id, s);
    }
}

/// smtp_getnameinfo_cb(): the client's name, then its addresses to
/// check the name against (FCrDNS).
fn smtp_getnameinfo_cb(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    id: u64,
    gaierrno: i32,
    _errno: i32,
    host: Option<&str>,
    _serv: Option<&str>,
) {
    let host = host.map(String::from);
    with_session(d, base, id, |d, base, s| {
        let host = match (gaierrno, host) {
            (0, Some(h)) => h,
            _ => {
                s.rdns = "<unknown>".into();
                if gaierrno == EAI_NODATA || gaierrno == EAI_NONAME {
                    s.fcrdns = 0;
                } else {
                    log_warnx!(
                        "getnameinfo: {}: {}",
                        ss_to_text(&s.ss),
                        crate::sys::net::gai_strerror(gaierrno)
                    );
                    s.fcrdns = -1;
                }
                return smtp_lookup_servername(d, base, s);
            }
        };
        s.rdns = host.clone();
        let family = match s.ss {
            PeerAddr::Inet(a) if a.is_ipv6() => libc::AF_INET6,
            _ => libc::AF_INET,
        };
        let hints = AddrInfoHints {
            ai_family: family,
            ai_socktype: libc::SOCK_STREAM,
            ..Default::default()
        };
        resolver_getaddrinfo(
            d,
            Some(&host),
            None,
            Some(&hints),
            smtp_getaddrinfo_cb,
            s.id,
        );
    });
}

/// smtp_getaddrinfo_cb(): FCrDNS holds when one of the name's addresses
/// is the client's.
fn smtp_getaddrinfo_cb(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    id: u64,
    gaierrno: i32,
    _errno: i32,
    ai: Vec<crate::dns::asr::AddrInfo>,
) {
    with_session(d, base, id, |d, base, s| {
        if gaierrno != 0 {
            if gaierrno == EAI_NODATA || gaierrno == EAI_NONAME {
                s.fcrdns = 0;
            } else {
                log_warnx!(
                    "getaddrinfo: {}: {}",
                    s.rdns,
                    crate::sys::net::gai_strerror(gaierrno)
                );
                s.fcrdns = -1;
            }
        } else {
            let rev = ss_to_text(&s.ss);
            if ai.iter().any(|a| sa_to_text(Some(&a.ai_addr)) == rev) {
                s.fcrdns = 1;
            }
        }
        smtp_lookup_servername(d, base, s);
    });
}

fn p_lka(d: &mut Dispatcher) -> &mut Mproc {
    d.peers.p(ProcType::PROC_LKA)
}

fn p_queue(d: &mut Dispatcher) -> &mut Mproc {
    d.peers.p(ProcType::PROC_QUEUE)
}

/// tree_xset() of the C waits: a session waits for one answer at a time.
fn wait_set(s: &mut SmtpSession) {
    if s.waiting {
        fatalx!("smtp: session {:016x} already waiting", s.id);
    }
    s.waiting = true;
    s.io.pause(IO_IN);
}

/// tree_xpop(): the answer came; an unexpected one is a broken invariant.
fn wait_pop(d: &mut Dispatcher, id: u64, what: &str) -> SmtpSession {
    match d.smtp.sessions.remove(&id) {
        Some(mut s) if s.waiting => {
            s.waiting = false;
            s.io.resume(IO_IN);
            s
        }
        _ => fatalx!("smtp_session_imsg: {what}: no session {id:016x} waiting"),
    }
}

/// smtp_session_imsg(): an answer from lka or the queue.
pub fn smtp_session_imsg(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, mut imsg: Imsg) {
    let fd = imsg_get_fd(&mut imsg);
    let t = ImsgType::from_u32(imsg.hdr.type_);
    let mut m = m_msg(&imsg);
    let reqid = m_get_id(&mut m);
    // The envelope submissions of a recipient come one by one; the
    // session goes on waiting for their commit.
    if t == Some(ImsgType::IMSG_QUEUE_ENVELOPE_SUBMIT) {
        let success = m_get_int(&mut m);
        let evpid = (success != 0).then(|| m_get_evpid(&mut m));
        m_end(&m);
        let Some(s) = d.smtp.sessions.get_mut(&reqid).filter(|s| s.waiting) else {
            fatalx!("smtp_session_imsg: envelope submit: no session {reqid:016x} waiting");
        };
        if let Some(tx) = s.tx.as_mut() {
            match evpid {
                Some(evpid) => {
                    tx.evp.id = evpid;
                    tx.destcount += 1;
                }
                None => tx.error = TxError::Envelope,
            }
        }
        return;
    }
    let mut s = wait_pop(d, reqid, &imsg_to_str(imsg.hdr.type_));
    match t {
        Some(ImsgType::IMSG_SMTP_CHECK_SENDER) => {
            let status = m_get_int(&mut m);
            m_end(&m);
            smtp_check_sender_done(d, &mut s, status);
        }
        Some(ImsgType::IMSG_SMTP_EXPAND_RCPT) => {
            let _status = m_get_int(&mut m);
            let line = m_get_string(&mut m).unwrap_or("").to_string();
            m_end(&m);
            let rcpt = s.tx.as_ref().map(|tx| rcpt_text(&tx.evp.rcpt));
            smtp_reply(&mut s, &format!("{line}: <{}>", rcpt.unwrap_or_default()));
        }
        Some(ImsgType::IMSG_SMTP_LOOKUP_HELO) => {
            let status = m_get_int(&mut m);
            if status == LKA_OK {
                s.smtpname = m_get_string(&mut m).unwrap_or("").to_string();
            }
            m_end(&m);
            smtp_connected(d, base, &mut s);
        }
        Some(ImsgType::IMSG_SMTP_MESSAGE_CREATE) => {
            let success = m_get_int(&mut m);
            let msgid = (success != 0).then(|| m_get_msgid(&mut m));
            m_end(&m);
            smtp_message_created(&mut s, msgid);
        }
        Some(ImsgType::IMSG_SMTP_MESSAGE_OPEN) => {
            let success = m_get_int(&mut m);
            m_end(&m);
            smtp_message_opened(&mut s, success != 0, fd);
        }
        Some(ImsgType::IMSG_QUEUE_ENVELOPE_COMMIT) => {
            let success = m_get_int(&mut m);
            m_end(&m);
            if success == 0 {
                fatalx!("commit evp failed: not supposed to happen");
            }
            smtp_envelopes_committed(&mut s);
        }
        Some(ImsgType::IMSG_SMTP_MESSAGE_COMMIT) => {
            let success = m_get_int(&mut m);
            m_end(&m);
            smtp_message_committed(&mut s, success != 0);
        }
        _ => fatalx!(
            "smtp_session_imsg: unexpected {}",
            imsg_to_str(imsg.hdr.type_)
        ),
    }
    if s.freed.is_some() {
        return smtp_free_final(d, base, s);
    }
    d.smtp.sessions.insert(reqid, s);
    smtp_resume_input(d, base, reqid);
}

/// LKA_OK ... LKA_PERMFAIL (enum lka_resp_status).
pub const LKA_OK: i32 = 0;
pub const LKA_TEMPFAIL: i32 = 1;
pub const LKA_PERMFAIL: i32 = 2;

/// IMSG_SMTP_CHECK_SENDER's answer.
fn smtp_check_sender_done(d: &mut Dispatcher, s: &mut SmtpSession, status: i32) {
    match status {
        LKA_OK => smtp_tx_create_message(d, s),
        LKA_PERMFAIL => {
            s.tx = None;
            smtp_reply(s, "530 Sender rejected");
        }
        _ => {
            s.tx = None;
            smtp_reply(
                s,
                &format!(
                    "421 {} Temporary Error",
                    esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
                ),
            );
        }
    }
}

/// IMSG_SMTP_MESSAGE_CREATE's answer: the message id, or a failure.
fn smtp_message_created(s: &mut SmtpSession, msgid: Option<u32>) {
    match (msgid, s.tx.as_mut()) {
        (Some(msgid), Some(tx)) => {
            tx.msgid = msgid;
            tx.evp.id = msgid_to_evpid(msgid);
            tx.rcptcount = 0;
            smtp_reply(
                s,
                &format!("250 {} Ok", esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS)),
            );
        }
        _ => {
            smtp_reply(
                s,
                &format!(
                    "421 {} Temporary Error",
                    esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
                ),
            );
            s.tx = None;
            smtp_enter_state(s, SmtpState::Quit);
        }
    }
}

/// IMSG_SMTP_MESSAGE_OPEN's answer: the message file, to write to.
fn smtp_message_opened(s: &mut SmtpSession, success: bool, fd: Option<std::os::fd::OwnedFd>) {
    let Some(fd) = fd.filter(|_| success) else {
        smtp_reply(
            s,
            &format!(
                "421 {} Temporary Error",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
            ),
        );
        smtp_enter_state(s, SmtpState::Quit);
        return;
    };
    log_debug!("smtp: {:016x}: fd {} from queue", s.id, {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    });
    if let Some(tx) = s.tx.as_mut() {
        tx.ofile = Some(BufWriter::new(std::fs::File::from(fd)));
    }
    // Data filters plug in here (smtp_filter_data_begin).
    smtp_message_begin(s);
}

/// IMSG_QUEUE_ENVELOPE_COMMIT's answer: the recipient is accepted, or
/// an envelope failed and the transaction cannot go on.
fn smtp_envelopes_committed(s: &mut SmtpSession) {
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    if tx.error != TxError::Ok {
        // An envelope failed: the last RCPT alone cannot be cancelled,
        // so the whole transaction and the connection go.
        smtp_reply(
            s,
            &format!(
                "421 {} Temporary failure",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
            ),
        );
        smtp_enter_state(s, SmtpState::Quit);
        return;
    }
    tx.rcpts.push(SmtpRcpt {
        evpid: tx.evp.id,
        destcount: tx.destcount,
        maddr: tx.evp.rcpt.clone(),
    });
    tx.destcount = 0;
    tx.rcptcount += 1;
    smtp_reply(
        s,
        &format!(
            "250 {} {}: Recipient ok",
            esc_code(ESC_STATUS_OK, ESC_DESTINATION_ADDRESS_VALID),
            esc_description(ESC_DESTINATION_ADDRESS_VALID)
        ),
    );
}

/// IMSG_SMTP_MESSAGE_COMMIT's answer: the message is in the queue, for
/// good (the queue made it durable before answering).
fn smtp_message_committed(s: &mut SmtpSession, success: bool) {
    let Some(tx) = s.tx.take() else {
        return;
    };
    if !success {
        smtp_reply(
            s,
            &format!(
                "421 {} Temporary failure",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
            ),
        );
        smtp_enter_state(s, SmtpState::Quit);
        return;
    }
    smtp_reply(
        s,
        &format!(
            "250 {} {:08x} Message accepted for delivery",
            esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS),
            tx.msgid
        ),
    );
    log_info!(
        "{:016x} smtp message msgid={:08x} size={} nrcpt={} proto={}",
        s.id,
        tx.msgid,
        tx.odatalen,
        tx.rcptcount,
        if s.flags.contains(SessionFlags::SF_EHLO) {
            "ESMTP"
        } else {
            "SMTP"
        }
    );
    for rcpt in &tx.rcpts {
        log_info!(
            "{:016x} smtp envelope evpid={:016x} from=<{}> to=<{}>",
            s.id,
            rcpt.evpid,
            mailaddr_text(&tx.evp.sender),
            mailaddr_text(&rcpt.maddr)
        );
    }
    s.mailcount += 1;
    smtp_enter_state(s, SmtpState::Helo);
}

/// An address as the `smtp envelope` log line writes it: the `@` only
/// after a local part (`<>` for the null sender).
fn mailaddr_text(m: &Mailaddr) -> String {
    let at = if m.user.is_empty() { "" } else { "@" };
    format!("{}{at}{}", m.user, m.domain)
}

/// The recipient as IMSG_SMTP_EXPAND_RCPT's refusal quotes it: nothing
/// without a local part.
fn rcpt_text(m: &Mailaddr) -> String {
    match (m.user.is_empty(), m.domain.is_empty()) {
        (true, _) => String::new(),
        (false, true) => m.user.clone(),
        (false, false) => format!("{}@{}", m.user, m.domain),
    }
}

/// smtp_io(): what happened on the session's connection.
pub fn smtp_io(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, id: u64, evt: IoEvent) {
    with_session(d, base, id, |d, _base, s| {
        log_trace!(TRACE_IO, "smtp: {:016x}: {:?} {}", s.id, evt, s.io.strio());
        match evt {
            IoEvent::TlsReady | IoEvent::Connected => {
                fatalx!("smtp_io: {evt:?} without TLS")
            }
            IoEvent::DataIn => smtp_data_in(d, s),
            IoEvent::LowAt => {
                if s.state == SmtpState::Quit {
                    log_info!("{:016x} smtp disconnected reason=quit", s.id);
                    return smtp_free(s, "done");
                }
                s.io.set_read();
                // Lines already buffered (pipelined) bring no new
                // readiness: take them now.
                smtp_data_in(d, s);
            }
            IoEvent::Timeout => {
                log_info!("{:016x} smtp disconnected reason=timeout", s.id);
                smtp_free(s, "timeout");
            }
            IoEvent::Disconnected => {
                log_info!("{:016x} smtp disconnected reason=disconnect", s.id);
                smtp_free(s, "disconnected");
            }
            IoEvent::Error => {
                log_info!(
                    "{:016x} smtp disconnected reason=\"io-error: {}\"",
                    s.id,
                    s.io.error()
                );
                smtp_free(s, "IO error");
            }
        }
    });
}

/// After an answer from another process: input may be waiting.
fn smtp_resume_input(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, id: u64) {
    with_session(d, base, id, |d, _base, s| {
        if !s.io.is_writing() && s.io.queued() == 0 {
            smtp_data_in(d, s);
        }
    });
}

/// The IO_DATAIN half of smtp_io(): every complete line buffered, data
/// lines and commands, as long as the session is not waiting for another
/// process and has nothing left to write.
fn smtp_data_in(d: &mut Dispatcher, s: &mut SmtpSession) {
    loop {
        if s.waiting || s.freed.is_some() || s.io.is_writing() || s.state == SmtpState::Quit {
            return;
        }
        let body = s.state == SmtpState::Body;
        let line = if body {
            s.io.iobuf.getline_crlf()
        } else {
            s.io.getline()
        };
        // C measures a line with its CR, which getline_crlf() took off.
        let overlong = match &line {
            None => s.io.datalen() >= SMTP_LINE_MAX,
            Some(l) => l.len() + usize::from(body) >= SMTP_LINE_MAX,
        };
        if overlong {
            s.flags |= SessionFlags::SF_BADINPUT;
            smtp_reply(
                s,
                &format!(
                    "500 {} Line too long",
                    esc_code(ESC_STATUS_PERMFAIL, ESC_OTHER_STATUS)
                ),
            );
            smtp_enter_state(s, SmtpState::Quit);
            s.io.set_write();
            return;
        }
        let Some(mut line) = line else {
            return;
        };
        if body {
            if smtp_body_line(s, line) {
                smtp_end_of_data(d, s);
            }
            continue;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if smtp_refuse_pipelining(s) {
            return;
        }
        s.io.set_write();
        // C reads the command as a string: it ends at a NUL byte.
        if let Some(nul) = line.iter().position(|&b| b == 0) {
            line.truncate(nul);
        }
        if line.len() >= LINE_MAX {
            s.flags |= SessionFlags::SF_BADINPUT;
            smtp_reply(
                s,
                &format!(
                    "500 {} Command line too long",
                    esc_code(ESC_STATUS_PERMFAIL, ESC_OTHER_STATUS)
                ),
            );
            smtp_enter_state(s, SmtpState::Quit);
            return;
        }
        // Bytes that are not UTF-8 become U+FFFD, which no check accepts,
        // as C's checks refuse 8-bit bytes.
        let text = String::from_utf8_lossy(&line).into_owned();
        s.cmd = line;
        smtp_command(d, s, &text);
    }
}

/// The pipelining check of smtp_io(): more input than the line just taken
/// before the client said EHLO is refused, as OpenSMTPD refuses all
/// pipelining; true when the session ends for it.
fn smtp_refuse_pipelining(s: &mut SmtpSession) -> bool {
    if s.io.datalen() == 0 || s.flags.contains(SessionFlags::SF_EHLO) {
        return false;
    }
    s.flags |= SessionFlags::SF_BADINPUT;
    smtp_reply(
        s,
        &format!(
            "500 {} {}: Pipelining not supported",
            esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
            esc_description(ESC_INVALID_COMMAND)
        ),
    );
    smtp_enter_state(s, SmtpState::Quit);
    s.io.set_write();
    true
}

/// The end of the data: the commit phase (filters plug in here).
fn smtp_end_of_data(d: &mut Dispatcher, s: &mut SmtpSession) {
    if smtp_refuse_pipelining(s) {
        return;
    }
    s.io.set_write();
    smtp_message_end(d, s);
}

/// One line of message data (the STATE_BODY half of smtp_io): true at
/// the end of the data.
fn smtp_body_line(s: &mut SmtpSession, mut line: Vec<u8>) -> bool {
    let Some(tx) = s.tx.as_mut() else {
        return true;
    };
    // Only a line that is exactly "." ends the data: ".<NUL>x" is data
    // here, where C, reading a string, would end the message on it.
    let eom = line == b".";
    if !eom {
        // C keeps a data line as a string: a NUL ends it.
        if let Some(nul) = line.iter().position(|&b| b == 0) {
            line.truncate(nul);
        }
        tx.datain += line.len() + 1;
        if tx.datain > env().sc_maxsize {
            tx.error = TxError::Size;
        }
        if line.contains(&b'\n') || line.contains(&b'\r') {
            if tx.error == TxError::Ok {
                log_info!(
                    "{:016x} smtp bare-newline msgid={:08x}: a bare CR or LF in the data",
                    s.id,
                    tx.msgid
                );
            }
            tx.error = TxError::BareNewline;
        }
    }
    smtp_tx_dataline(tx, if eom { None } else { Some(&line) })
}

/// The session's part in rewriting headers: the name to qualify
/// addresses with, whether From is masqueraded, whether Date and
/// Message-ID are added.
struct HeaderCtx {
    hostname: String,
    masquerade: bool,
    add_date_msgid: bool,
}

/// The command of a line, its name as sent and its arguments (after the
/// space, or after the colon of MAIL FROM: and RCPT TO:, blanks
/// skipped), as smtp_command() splits it. COMMIT is internal: a client
/// that sends it gets no command.
pub fn smtp_command_parse(line: &str) -> (Option<SmtpCommand>, &str, Option<&str>) {
    // MAIL FROM and RCPT TO hold a space in the command's name.
    let lower = line.to_ascii_lowercase();
    let split = if lower.starts_with("mail from:") || lower.starts_with("rcpt to:") {
        line.find(':')
    } else {
        line.find(' ')
    };
    let (verb, args) = match split {
        Some(i) => {
            let rest = line[i + 1..].trim_start_matches(|c: char| c.is_ascii_whitespace());
            (&line[..i], Some(rest))
        }
        None => (line, None),
    };
    let cmd = COMMANDS
        .iter()
        .find(|(_, name, _)| name.eq_ignore_ascii_case(verb))
        .map(|(c, _, _)| *c)
        .filter(|c| *c != SmtpCommand::Commit);
    (cmd, verb, args)
}

/// smtp_command(): one command line.
fn smtp_command(d: &mut Dispatcher, s: &mut SmtpSession, line: &str) {
    log_trace!(TRACE_SMTP, "smtp: {:016x}: <<< {line}", s.id);
    let (cmd, verb, args) = smtp_command_parse(line);
    s.last_cmd = cmd;
    let Some((cmd, check)) = cmd
        .and_then(|c| COMMANDS.iter().find(|(k, _, _)| *k == c))
        .map(|&(c, _, check)| (c, check))
    else {
        return smtp_reply(
            s,
            &format!(
                "500 {} {}: Command unrecognized",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
    };
    if !check(s, args) {
        return;
    }
    // smtp_filter_phase(): with no filter the command proceeds at once.
    match cmd {
        SmtpCommand::Helo => smtp_proceed_helo(s, args.unwrap_or("")),
        SmtpCommand::Ehlo => smtp_proceed_ehlo(s, args.unwrap_or("")),
        SmtpCommand::MailFrom => smtp_proceed_mail_from(d, s, args.unwrap_or("")),
        SmtpCommand::RcptTo => smtp_tx_rcpt_to(d, s, args.unwrap_or("")),
        SmtpCommand::Data => smtp_tx_open_message(d, s),
        SmtpCommand::Rset => smtp_proceed_rset(d, s),
        SmtpCommand::Quit => smtp_proceed_quit(s),
        SmtpCommand::Noop => smtp_proceed_noop(s),
        SmtpCommand::Help => smtp_proceed_help(s),
        SmtpCommand::Wiz => smtp_proceed_wiz(s),
        // Their checks refuse them: no listener offers STARTTLS or AUTH
        // until the TLS issue (smtpd refuses such listeners at start).
        SmtpCommand::Starttls | SmtpCommand::Auth | SmtpCommand::Commit => {
            fatalx!("smtp_command: {verb} accepted without TLS")
        }
    }
}

fn reply_not_allowed(s: &mut SmtpSession) {
    smtp_reply(
        s,
        &format!(
            "503 {} {}: Command not allowed at this point.",
            esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
            esc_description(ESC_INVALID_COMMAND)
        ),
    );
}

/// smtp_check_rset().
fn smtp_check_rset(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if !smtp_check_noparam(s, args) {
        return false;
    }
    if s.helo.is_empty() {
        reply_not_allowed(s);
        return false;
    }
    true
}

/// smtp_check_helo() and smtp_check_ehlo(): the banner was sent, no
/// greeting yet, and a valid domain.
fn smtp_check_greeting(s: &mut SmtpSession, args: Option<&str>, verb: &str) -> bool {
    if !s.banner_sent {
        reply_not_allowed(s);
        return false;
    }
    if !s.helo.is_empty() {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: Already identified",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    let Some(args) = args else {
        smtp_reply(
            s,
            &format!(
                "501 {} {}: {verb} requires domain name",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    };
    if !valid_domainpart(args) {
        smtp_reply(
            s,
            &format!(
                "501 {} {}: Invalid domain name",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ),
        );
        return false;
    }
    true
}

fn smtp_check_helo(s: &mut SmtpSession, args: Option<&str>) -> bool {
    smtp_check_greeting(s, args, "HELO")
}

fn smtp_check_ehlo(s: &mut SmtpSession, args: Option<&str>) -> bool {
    smtp_check_greeting(s, args, "EHLO")
}

/// smtp_check_auth().
fn smtp_check_auth(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if s.helo.is_empty() || s.tx.is_some() {
        reply_not_allowed(s);
        return false;
    }
    if s.flags.contains(SessionFlags::SF_AUTHENTICATED) {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: Already authenticated",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if !advertise_auth(s) {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: Command not supported",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if args.is_none() {
        smtp_reply(
            s,
            &format!(
                "501 {} {}: No parameters given",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ),
        );
        return false;
    }
    true
}

/// smtp_check_starttls().
fn smtp_check_starttls(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if s.helo.is_empty() || s.tx.is_some() {
        reply_not_allowed(s);
        return false;
    }
    if !s.listener.flags.contains(ListenerFlags::F_STARTTLS) {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: Command not supported",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if s.flags.contains(SessionFlags::SF_SECURE) {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: Channel already secured",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if args.is_some() {
        smtp_reply(
            s,
            &format!(
                "501 {} {}: No parameters allowed",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ),
        );
        return false;
    }
    true
}

/// smtp_check_mail_from().
fn smtp_check_mail_from(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if s.helo.is_empty() || s.tx.is_some() {
        reply_not_allowed(s);
        return false;
    }
    if s.listener.flags.contains(ListenerFlags::F_STARTTLS_REQUIRE)
        && !s.flags.contains(SessionFlags::SF_SECURE)
    {
        smtp_reply(
            s,
            &format!(
                "530 {} {}: Must issue a STARTTLS command first",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if s.listener.flags.contains(ListenerFlags::F_AUTH_REQUIRE)
        && !s.flags.contains(SessionFlags::SF_AUTHENTICATED)
    {
        smtp_reply(
            s,
            &format!(
                "530 {} {}: Must issue an AUTH command first",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
                esc_description(ESC_INVALID_COMMAND)
            ),
        );
        return false;
    }
    if s.mailcount >= env().sc_session_max_mails {
        // Too many messages pretends to be too many recipients, as C.
        smtp_reply(
            s,
            &format!(
                "452 {} {}: Too many messages sent",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_TOO_MANY_RECIPIENTS),
                esc_description(ESC_TOO_MANY_RECIPIENTS)
            ),
        );
        return false;
    }
    if smtp_mailaddr(args.unwrap_or(""), true, &s.smtpname).is_none() {
        smtp_reply(
            s,
            &format!(
                "553 {} Sender address syntax error",
                esc_code(ESC_STATUS_PERMFAIL, ESC_OTHER_ADDRESS_STATUS)
            ),
        );
        return false;
    }
    true
}

/// smtp_check_rcpt_to().
fn smtp_check_rcpt_to(s: &mut SmtpSession, args: Option<&str>) -> bool {
    let Some(tx) = s.tx.as_ref() else {
        reply_not_allowed(s);
        return false;
    };
    if tx.rcptcount >= env().sc_session_max_rcpt {
        smtp_reply(
            s,
            &format!(
                "451 {} {}: Too many recipients",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_TOO_MANY_RECIPIENTS),
                esc_description(ESC_TOO_MANY_RECIPIENTS)
            ),
        );
        return false;
    }
    if smtp_mailaddr(args.unwrap_or(""), false, &s.smtpname).is_none() {
        smtp_reply(
            s,
            &format!(
                "501 {} Recipient address syntax error",
                esc_code(
                    ESC_STATUS_PERMFAIL,
                    ESC_BAD_DESTINATION_MAILBOX_ADDRESS_SYNTAX
                )
            ),
        );
        return false;
    }
    true
}

/// smtp_check_data().
fn smtp_check_data(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if !smtp_check_noparam(s, args) {
        return false;
    }
    let Some(tx) = s.tx.as_ref() else {
        reply_not_allowed(s);
        return false;
    };
    if tx.rcptcount == 0 {
        smtp_reply(
            s,
            &format!(
                "503 {} {}: No recipient specified",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ),
        );
        return false;
    }
    true
}

/// smtp_check_noop(): NOOP takes any argument.
fn smtp_check_noop(_s: &mut SmtpSession, _args: Option<&str>) -> bool {
    true
}

/// smtp_check_noparam().
fn smtp_check_noparam(s: &mut SmtpSession, args: Option<&str>) -> bool {
    if args.is_some() {
        smtp_reply(
            s,
            &format!(
                "500 {} {}: command does not accept arguments.",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ),
        );
        return false;
    }
    true
}

/// smtp_proceed_rset().
fn smtp_proceed_rset(d: &mut Dispatcher, s: &mut SmtpSession) {
    smtp_reply(
        s,
        &format!(
            "250 {} Reset state",
            esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS)
        ),
    );
    if let Some(tx) = s.tx.take() {
        if tx.msgid != 0 {
            smtp_tx_rollback(d, &tx);
        }
    }
}

/// smtp_proceed_helo().
fn smtp_proceed_helo(s: &mut SmtpSession, args: &str) {
    s.helo = args.to_string();
    s.flags &= SessionFlags::SF_SECURE | SessionFlags::SF_AUTHENTICATED | SessionFlags::SF_VERIFIED;
    smtp_enter_state(s, SmtpState::Helo);
    let reply = format!(
        "250 {} Hello {} {}, pleased to meet you",
        s.smtpname,
        s.helo,
        ss_bracketed(&s.ss)
    );
    smtp_reply(s, &reply);
}

/// smtp_proceed_ehlo(): the greeting and the extensions, PIPELINING
/// among them.
fn smtp_proceed_ehlo(s: &mut SmtpSession, args: &str) {
    s.helo = args.to_string();
    s.flags &= SessionFlags::SF_SECURE | SessionFlags::SF_AUTHENTICATED | SessionFlags::SF_VERIFIED;
    s.flags |= SessionFlags::SF_EHLO | SessionFlags::SF_8BITMIME;
    smtp_enter_state(s, SmtpState::Helo);
    let first = format!(
        "250-{} Hello {} {}, pleased to meet you",
        s.smtpname,
        s.helo,
        ss_bracketed(&s.ss)
    );
    smtp_reply(s, &first);
    smtp_reply(s, "250-8BITMIME");
    smtp_reply(s, "250-ENHANCEDSTATUSCODES");
    smtp_reply(s, &format!("250-SIZE {}", env().sc_maxsize));
    if advertise_ext_dsn(s) {
        smtp_reply(s, "250-DSN");
    }
    if advertise_tls(s) {
        smtp_reply(s, "250-STARTTLS");
    }
    if advertise_auth(s) {
        smtp_reply(s, "250-AUTH PLAIN LOGIN");
    }
    smtp_reply(s, "250-PIPELINING");
    smtp_reply(s, "250 HELP");
}

/// smtp_proceed_mail_from().
fn smtp_proceed_mail_from(d: &mut Dispatcher, s: &mut SmtpSession, args: &str) {
    smtp_tx(s);
    smtp_tx_mail_from(d, s, args);
}

/// smtp_proceed_quit().
fn smtp_proceed_quit(s: &mut SmtpSession) {
    smtp_reply(
        s,
        &format!("221 {} Bye", esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS)),
    );
    smtp_enter_state(s, SmtpState::Quit);
}

/// smtp_proceed_noop().
fn smtp_proceed_noop(s: &mut SmtpSession) {
    smtp_reply(
        s,
        &format!("250 {} Ok", esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS)),
    );
}

/// smtp_proceed_help().
fn smtp_proceed_help(s: &mut SmtpSession) {
    let code = esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS);
    smtp_reply(s, &format!("214-{code} This is {SMTPD_NAME}"));
    smtp_reply(
        s,
        &format!(
            "214-{code} To report bugs in the implementation, please contact bugs@openbsd.org"
        ),
    );
    smtp_reply(s, &format!("214-{code} with full details"));
    smtp_reply(s, &format!("214 {code} End of HELP info"));
}

/// smtp_proceed_wiz().
fn smtp_proceed_wiz(s: &mut SmtpSession) {
    smtp_reply(
        s,
        &format!(
            "500 {} {}: this feature is not supported yet ;-)",
            esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND),
            esc_description(ESC_INVALID_COMMAND)
        ),
    );
}

/// smtp_lookup_servername(): the name the listener's hostnames table
/// gives for this address, if it has one.
fn smtp_lookup_servername(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    s: &mut SmtpSession,
) {
    if let Some(table) = s.listener.hostnametable.as_deref() {
        let Some(sa) = s.listener.ss else {
            return smtp_connected(d, base, s);
        };
        let p = p_lka(d);
        m_create(p, ImsgType::IMSG_SMTP_LOOKUP_HELO, 0, 0, None);
        m_add_id(p, s.id);
        m_add_string(p, Some(table));
        m_add_sockaddr(p, &sa);
        m_close(p);
        wait_set(s);
        return;
    }
    smtp_connected(d, base, s);
}

/// smtp_connected(): the session is known; log it and greet.
fn smtp_connected(_d: &mut Dispatcher, _base: &mut EventBase<Dispatcher>, s: &mut SmtpSession) {
    smtp_enter_state(s, SmtpState::Connected);
    log_info!(
        "{:016x} smtp connected address={} host={}",
        s.id,
        ss_to_text(&s.ss),
        s.rdns
    );
    // Filters start here (smtp_filter_begin, FILTER_CONNECT); without
    // them the session proceeds (smtp_proceed_connected). SMTPS comes
    // with TLS.
    smtp_send_banner(s);
}

/// smtp_send_banner().
fn smtp_send_banner(s: &mut SmtpSession) {
    let banner = format!("220 {} ESMTP {SMTPD_NAME}", s.smtpname);
    smtp_reply(s, &banner);
    s.banner_sent = true;
}

/// smtp_enter_state(): the only writer of the state.
pub fn smtp_enter_state(s: &mut SmtpSession, newstate: SmtpState) {
    log_trace!(
        TRACE_SMTP,
        "smtp: {:016x}: {} -> {}",
        s.id,
        smtp_strstate(s.state),
        smtp_strstate(newstate)
    );
    s.state = newstate;
}

/// smtp_reply(): queues a reply line and logs a failed command as
/// OpenSMTPD does, byte for byte.
/// The reply as it goes out: it may echo the client's bytes (an
/// unsupported option), but no control character goes back, so that it
/// stays one line (C sends a CR as it came).
pub fn smtp_reply_line(buf: &str) -> std::borrow::Cow<'_, str> {
    if buf.chars().any(|c| c.is_ascii_control()) {
        buf.chars()
            .map(|c| if c.is_ascii_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        buf.into()
    }
}

fn smtp_reply(s: &mut SmtpSession, buf: &str) {
    if buf.len() < 4 {
        fatalx!("smtp_reply: response too short");
    }
    let buf = &*smtp_reply_line(buf);
    log_trace!(TRACE_SMTP, "smtp: {:016x}: >>> {buf}", s.id);
    if matches!(buf.as_bytes()[0], b'4' | b'5') {
        smtp_log_failure(s, buf);
    }
    s.io.print(buf);
    s.io.print("\r\n");
}

/// The failure lines of smtp_reply().
fn smtp_log_failure(s: &SmtpSession, buf: &str) {
    if s.flags.contains(SessionFlags::SF_BADINPUT) {
        log_info!("{:016x} smtp bad-input result=\"{buf}\"", s.id);
        return;
    }
    let command = match s.state {
        SmtpState::AuthInit => "AUTH PLAIN (...)".to_string(),
        SmtpState::AuthUsername => "AUTH LOGIN (username)".to_string(),
        SmtpState::AuthPassword => "AUTH LOGIN (password)".to_string(),
        _ => strnvis(&s.cmd, false),
    };
    log_info!(
        "{:016x} smtp failed-command command=\"{command}\" result=\"{buf}\"",
        s.id
    );
}

/// smtp_free(): ends the session once its handler returns (C frees it
/// at once; here the session is out of the table while it runs).
fn smtp_free(s: &mut SmtpSession, reason: &'static str) {
    s.freed = Some(reason);
}

/// The rest of smtp_free(): roll back an open transaction, close the
/// connection, count the session out.
fn smtp_free_final(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, mut s: SmtpSession) {
    if let Some(tx) = s.tx.take() {
        if tx.msgid != 0 {
            smtp_tx_rollback(d, &tx);
        }
    }
    log_trace!(
        TRACE_SMTP,
        "smtp: {:016x}: freed ({})",
        s.id,
        s.freed.unwrap_or("")
    );
    io_free(base, s.io);
    super::smtp::smtp_collect(d, base);
}

/// smtp_mailaddr(): the address between angle brackets at the start of
/// `line` and what follows it; a local part alone gets `domain`; the
/// null address only for MAIL FROM; a source route (`@a,@b:user@c`) is
/// dropped.
pub fn smtp_mailaddr(line: &str, mailfrom: bool, domain: &str) -> Option<(Mailaddr, String)> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    let inner = &rest[..end];
    let args = rest[end + 1..].trim_start_matches(' ').to_string();
    let mut maddr = text_to_mailaddr(inner)?;
    if let Some(p) = maddr.user.find(':') {
        maddr.user = maddr.user[p + 1..].to_string();
    }
    if mailfrom && maddr.user.is_empty() && maddr.domain.is_empty() {
        return Some((maddr, args));
    }
    if maddr.user.is_empty() || !valid_localpart(&maddr.user) {
        return None;
    }
    if maddr.domain.is_empty() {
        maddr.domain = domain.to_string();
    }
    if !valid_domainpart(&maddr.domain) {
        return None;
    }
    Some((maddr, args))
}

/// smtp_tx(): a new transaction, its envelope filled from the session.
fn smtp_tx(s: &mut SmtpSession) {
    let mut evp = Envelope {
        ss: s.ss,
        tag: s.listener.tag.clone().unwrap_or_default(),
        smtpname: s.smtpname.clone(),
        hostname: s.rdns.clone(),
        helo: s.helo.clone(),
        username: s.username.clone(),
        ..Default::default()
    };
    if s.flags.contains(SessionFlags::SF_BOUNCE) {
        evp.flags |= EnvelopeFlags::EF_BOUNCE;
    }
    if s.flags.contains(SessionFlags::SF_AUTHENTICATED) {
        evp.flags |= EnvelopeFlags::EF_AUTHENTICATED;
    }
    s.tx = Some(SmtpTx {
        msgid: 0,
        evp,
        rcptcount: 0,
        destcount: 0,
        rcpts: Vec::new(),
        time: 0,
        error: TxError::Ok,
        datain: 0,
        odatalen: 0,
        ofile: None,
        parser: Rfc5322Parser::new(),
        rcvcount: 0,
        has_date: false,
        has_message_id: false,
        junk: false,
        hc: HeaderCtx {
            hostname: s.listener.hostname.clone(),
            masquerade: s.flags.contains(SessionFlags::SF_AUTHENTICATED)
                && s.listener.sendertable.is_some()
                && s.listener.flags.contains(ListenerFlags::F_MASQUERADE),
            add_date_msgid: s.listener.local || s.listener.port == 587,
        },
    });
}

/// A MAIL FROM parameter: Ok(true) for BODY=7BIT; Err(reply) ends the
/// transaction.
fn smtp_mail_option(evp: &mut Envelope, opt: &str, dsn: bool) -> Result<bool, String> {
    let upper = opt.to_ascii_uppercase();
    if upper.starts_with("AUTH=") {
        log_debug!("debug: smtp: AUTH in MAIL FROM command");
    } else if upper.starts_with("SIZE=") {
        log_debug!("debug: smtp: SIZE in MAIL FROM command");
    } else if upper == "BODY=7BIT" {
        return Ok(true);
    } else if upper == "BODY=8BITMIME" {
    } else if dsn && upper.starts_with("RET=") {
        match &upper[4..] {
            "HDRS" => evp.dsn_ret = Some(DsnRet::Hdrs),
            "FULL" => evp.dsn_ret = Some(DsnRet::Full),
            _ => {}
        }
    } else if dsn && upper.starts_with("ENVID=") {
        let envid = &opt[6..];
        if envid.len() > DSN_ENVID_LEN {
            return Err(format!(
                "503 {} {}: option too large, truncated: {envid}",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ));
        }
        // RFC 3461 makes ENVID xtext; OpenSMTPD stores whatever came,
        // CR included, in the envelope (the CVE-2020-8794 class).
        if !valid_xtext(envid) {
            return Err(format!(
                "501 {} {}: ENVID is not xtext",
                esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
                esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
            ));
        }
        evp.dsn_envid = envid.to_string();
    } else {
        return Err(format!(
            "503 {} {}: Unsupported option {opt}",
            esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND_ARGUMENTS),
            esc_description(ESC_INVALID_COMMAND_ARGUMENTS)
        ));
    }
    Ok(false)
}

/// The sender and the parameters of a MAIL FROM line, into `evp`, as
/// smtp_tx_mail_from() takes them: Ok(true) when BODY=7BIT asks for
/// 7-bit, Err(reply) refuses the command. It needs no session, so the
/// command-line fuzz target runs exactly this.
pub fn smtp_tx_mail_from_parse(
    evp: &mut Envelope,
    line: &str,
    dsn: bool,
    smtpname: &str,
) -> Result<bool, String> {
    let Some((sender, args)) = smtp_mailaddr(line, true, smtpname) else {
        return Err(format!(
            "553 {} Sender address syntax error",
            esc_code(ESC_STATUS_PERMFAIL, ESC_OTHER_ADDRESS_STATUS)
        ));
    };
    evp.sender = sender;
    let mut body7bit = false;
    for opt in args.split(' ').filter(|o| !o.is_empty()) {
        body7bit |= smtp_mail_option(evp, opt, dsn)?;
    }
    Ok(body7bit)
}

/// smtp_tx_mail_from(): the sender and its parameters; then, for an
/// authenticated session of a listener with a senders table, lka checks
/// the sender; otherwise the message is created.
fn smtp_tx_mail_from(d: &mut Dispatcher, s: &mut SmtpSession, line: &str) {
    let dsn = advertise_ext_dsn(s);
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    match smtp_tx_mail_from_parse(&mut tx.evp, line, dsn, &s.smtpname) {
        // As C does, for the rest of the session (C says: "XXX only for
        // this transaction").
        Ok(true) => s.flags.remove(SessionFlags::SF_8BITMIME),
        Ok(false) => {}
        Err(reply) => {
            s.tx = None;
            return smtp_reply(s, &reply);
        }
    }
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    if s.flags.contains(SessionFlags::SF_AUTHENTICATED) {
        if let Some(table) = s.listener.sendertable.as_deref() {
            let sender = tx.evp.sender.clone();
            let p = p_lka(d);
            m_create(p, ImsgType::IMSG_SMTP_CHECK_SENDER, 0, 0, None);
            m_add_id(p, s.id);
            m_add_string(p, Some(table));
            m_add_string(p, Some(&s.username));
            m_add_mailaddr(p, &sender);
            m_close(p);
            return wait_set(s);
        }
    }
    smtp_tx_create_message(d, s);
}

/// smtp_tx_create_message(): asks the queue for a message.
fn smtp_tx_create_message(d: &mut Dispatcher, s: &mut SmtpSession) {
    let p = p_queue(d);
    m_create(p, ImsgType::IMSG_SMTP_MESSAGE_CREATE, 0, 0, None);
    m_add_id(p, s.id);
    // Not in C: who submitted it, if a local user (NO_OWNER otherwise).
    m_add_u32(p, s.owner.unwrap_or(crate::queue::queue_backend::NO_OWNER));
    m_close(p);
    wait_set(s);
}

/// A RCPT TO parameter: Err(reply) refuses the recipient.
fn smtp_rcpt_option(evp: &mut Envelope, opt: &str, dsn: bool) -> Result<(), String> {
    let upper = opt.to_ascii_uppercase();
    if dsn && upper.starts_with("NOTIFY=") {
        for p in upper[7..].split(',') {
            evp.dsn_notify |= match p {
                "SUCCESS" => DsnNotify::DSN_SUCCESS,
                "FAILURE" => DsnNotify::DSN_FAILURE,
                "DELAY" => DsnNotify::DSN_DELAY,
                "NEVER" => DsnNotify::DSN_NEVER,
                _ => DsnNotify::empty(),
            };
        }
        let n = evp.dsn_notify;
        if n.contains(DsnNotify::DSN_NEVER)
            && n.intersects(DsnNotify::DSN_SUCCESS | DsnNotify::DSN_FAILURE | DsnNotify::DSN_DELAY)
        {
            return Err("553 NOTIFY option NEVER cannot be combined with other options".into());
        }
    } else if dsn && upper.starts_with("ORCPT=") {
        let orcpt = &opt[6..];
        // addr-type;xtext. C checks only the xtext: a CR in the type
        // would reach the envelope (the CVE-2020-8794 class). An empty
        // type is harmless and C takes it, so it passes.
        let ok = orcpt
            .split_once(';')
            .is_some_and(|(t, x)| (t.is_empty() || valid_atom(t)) && valid_xtext(x))
            && orcpt.len() <= DSN_ORCPT_LEN;
        if !ok {
            return Err("553 ORCPT address syntax error".into());
        }
        evp.dsn_orcpt = orcpt.to_string();
    } else {
        return Err(format!("503 Unsupported option {opt}"));
    }
    Ok(())
}

/// The recipient and the parameters of a RCPT TO line, into `evp`, as
/// smtp_tx_rcpt_to() takes them; Err(reply) refuses the recipient. Like
/// smtp_tx_mail_from_parse(), for the session and the fuzz target.
pub fn smtp_tx_rcpt_to_parse(
    evp: &mut Envelope,
    line: &str,
    dsn: bool,
    smtpname: &str,
) -> Result<(), String> {
    let Some((rcpt, args)) = smtp_mailaddr(line, false, smtpname) else {
        return Err(format!(
            "501 {} Recipient address syntax error",
            esc_code(
                ESC_STATUS_PERMFAIL,
                ESC_BAD_DESTINATION_MAILBOX_ADDRESS_SYNTAX
            )
        ));
    };
    evp.rcpt = rcpt;
    // NOTIFY and ORCPT belong to this recipient; OpenSMTPD carries them
    // over to the next RCPT, even from a refused one.
    evp.dsn_notify = DsnNotify::empty();
    evp.dsn_orcpt = String::new();
    for opt in args.split(' ').filter(|o| !o.is_empty()) {
        smtp_rcpt_option(evp, opt, dsn)?;
    }
    Ok(())
}

/// smtp_tx_rcpt_to(): the recipient and its parameters, then lka expands
/// it and the queue stores its envelopes.
fn smtp_tx_rcpt_to(d: &mut Dispatcher, s: &mut SmtpSession, line: &str) {
    let dsn = advertise_ext_dsn(s);
    let max = env().sc_session_max_rcpt;
    let smtpname = s.smtpname.clone();
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    if tx.rcptcount >= max {
        return smtp_reply(
            s,
            &format!(
                "451 {} {}: Too many recipients",
                esc_code(ESC_STATUS_TEMPFAIL, ESC_TOO_MANY_RECIPIENTS),
                esc_description(ESC_TOO_MANY_RECIPIENTS)
            ),
        );
    }
    if let Err(reply) = smtp_tx_rcpt_to_parse(&mut tx.evp, line, dsn, &smtpname) {
        return smtp_reply(s, &reply);
    }
    let evp = tx.evp.clone();
    let p = p_lka(d);
    m_create(p, ImsgType::IMSG_SMTP_EXPAND_RCPT, 0, 0, None);
    m_add_id(p, s.id);
    m_add_envelope(p, &evp);
    m_close(p);
    wait_set(s);
}

/// smtp_tx_open_message(): asks the queue for the message file.
fn smtp_tx_open_message(d: &mut Dispatcher, s: &mut SmtpSession) {
    let Some(msgid) = s.tx.as_ref().map(|tx| tx.msgid) else {
        return;
    };
    let p = p_queue(d);
    m_create(p, ImsgType::IMSG_SMTP_MESSAGE_OPEN, 0, 0, None);
    m_add_id(p, s.id);
    m_add_msgid(p, msgid);
    m_close(p);
    wait_set(s);
}

/// smtp_tx_commit(): asks the queue to commit the message.
fn smtp_tx_commit(d: &mut Dispatcher, s: &mut SmtpSession) {
    let Some(msgid) = s.tx.as_ref().map(|tx| tx.msgid) else {
        return;
    };
    let p = p_queue(d);
    m_create(p, ImsgType::IMSG_SMTP_MESSAGE_COMMIT, 0, 0, None);
    m_add_id(p, s.id);
    m_add_msgid(p, msgid);
    m_close(p);
    wait_set(s);
}

/// smtp_tx_rollback(): the queue forgets the message.
fn smtp_tx_rollback(d: &mut Dispatcher, tx: &SmtpTx) {
    let p = p_queue(d);
    m_create(p, ImsgType::IMSG_SMTP_MESSAGE_ROLLBACK, 0, 0, None);
    m_add_msgid(p, tx.msgid);
    m_close(p);
}

/// smtp_message_printf(): appends to the message file; the first error
/// fails the transaction.
fn smtp_message_write(tx: &mut SmtpTx, data: &[u8]) {
    if tx.error != TxError::Ok {
        return;
    }
    let Some(f) = tx.ofile.as_mut() else {
        return;
    };
    match f.write_all(data) {
        Ok(()) => tx.odatalen += data.len(),
        Err(e) => {
            log_warn!(e, "smtp-in: message write");
            tx.error = TxError::Io;
        }
    }
}

/// smtp_tx_dataline(): one line of data through the header reader into
/// the message file; None is the end of data. True at the end.
fn smtp_tx_dataline(tx: &mut SmtpTx, line: Option<&[u8]>) -> bool {
    log_trace!(
        TRACE_SMTP,
        "<<< [MSG] {}",
        line.map_or("[EOM]".into(), String::from_utf8_lossy)
    );
    let line = match line {
        None if tx.error != TxError::Ok => return true,
        None => None,
        // Data lines are ignored once the transaction has failed.
        Some(_) if tx.error != TxError::Ok => return false,
        // Dot-stuffing.
        Some(l) => Some(l.strip_prefix(b".").unwrap_or(l)),
    };
    if tx.parser.push(line).is_err() {
        log_warnx!("failed to push dataline");
        tx.error = TxError::Internal;
        return false;
    }
    loop {
        let r = match tx.parser.next_result() {
            Ok(r) => r,
            Err(Rfc5322Error::TooLong | Rfc5322Error::Invalid | Rfc5322Error::NoMessage) => {
                tx.error = TxError::Malformed;
                return false;
            }
            Err(Rfc5322Error::Already) => {
                tx.error = TxError::Internal;
                return false;
            }
        };
        match r {
            Rfc5322::None => return false,
            Rfc5322::HeaderStart { hdr, value } => {
                if !smtp_header_start(tx, hdr, value) {
                    return false;
                }
            }
            Rfc5322::HeaderCont { hdr, value } => {
                if !is_hdr(&hdr, &["Bcc", "To", "Cc", "From"]) {
                    let mut l = value;
                    l.push(b'\n');
                    smtp_message_write(tx, &l);
                }
            }
            Rfc5322::HeaderEnd { hdr, value } => {
                if is_hdr(&hdr, &["To", "Cc", "From"]) {
                    header_domain_append_callback(tx, &hdr, &value.unwrap_or_default());
                }
            }
            Rfc5322::EndOfHeaders => smtp_end_of_headers(tx),
            Rfc5322::BodyStart(v) | Rfc5322::Body(v) => {
                let mut l = v;
                l.push(b'\n');
                smtp_message_write(tx, &l);
            }
            Rfc5322::EndOfMessage => return true,
        }
    }
}

fn is_hdr(hdr: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(hdr))
}

/// RFC5322_HEADER_START: Bcc goes, To/Cc/From are gathered for
/// rewriting, Received headers are counted (loops), Date and Message-ID
/// noted. False when the transaction failed.
fn smtp_header_start(tx: &mut SmtpTx, hdr: Vec<u8>, value: Vec<u8>) -> bool {
    if is_hdr(&hdr, &["Bcc"]) {
        return true;
    }
    if is_hdr(&hdr, &["To", "Cc", "From"]) {
        if tx.parser.unfold_header().is_err() {
            tx.error = TxError::Internal;
            return false;
        }
        return true;
    }
    if is_hdr(&hdr, &["Received"]) {
        tx.rcvcount += 1;
        if tx.rcvcount >= MAX_HOPS_COUNT {
            log_warnx!("warn: loop detected");
            tx.error = TxError::Loop;
            return false;
        }
    } else if !tx.has_date && is_hdr(&hdr, &["Date"]) {
        tx.has_date = true;
    } else if !tx.has_message_id && is_hdr(&hdr, &["Message-Id"]) {
        tx.has_message_id = true;
    }
    let mut l = hdr;
    l.push(b':');
    l.extend_from_slice(&value);
    l.push(b'\n');
    smtp_message_write(tx, &l);
    true
}

/// RFC5322_END_OF_HEADERS: local and submission-port messages get the
/// Date and Message-ID they lack.
fn smtp_end_of_headers(tx: &mut SmtpTx) {
    if !tx.hc.add_date_msgid {
        return;
    }
    if !tx.has_date {
        let date = format!("Date: {}\n", time_to_text(tx.time));
        smtp_message_write(tx, date.as_bytes());
    }
    if !tx.has_message_id {
        let id = format!("Message-ID: <{:016x}@{}>\n", generate_uid(), tx.hc.hostname);
        smtp_message_write(tx, id.as_bytes());
    }
}

/// header_domain_append_callback(): a To, Cc or From header written back
/// with every address qualified (and From masqueraded when asked).
fn header_domain_append_callback(tx: &mut SmtpTx, hdr: &[u8], val: &[u8]) {
    let mut out = hdr.to_vec();
    out.push(b':');
    let sender = mailaddr_text(&tx.evp.sender);
    let from = is_hdr(hdr, &["From"]);
    let (hostname, masquerade) = (tx.hc.hostname.clone(), tx.hc.masquerade);
    let rewrite = |buffer: &mut Vec<u8>| {
        header_append_domain_buffer(buffer, hostname.as_bytes());
        if masquerade && from {
            header_address_rewrite_buffer(buffer, sender.as_bytes());
        }
    };
    let (mut escape, mut quote, mut comment) = (false, false, 0);
    let mut buffer: Vec<u8> = Vec::new();
    // An address too long to rewrite is copied as it is.
    let mut skip = false;
    for line in val.split(|&b| b == b'\n') {
        for &c in line {
            if c == b'(' && !escape && !quote {
                comment += 1;
            }
            if c == b'"' && !escape && comment == 0 {
                quote = !quote;
            }
            if c == b')' && !escape && !quote && comment > 0 {
                comment -= 1;
            }
            escape = c == b'\\' && !escape && comment == 0;
            if c == b',' && !escape && !quote && comment == 0 {
                if !skip {
                    rewrite(&mut buffer);
                }
                out.extend_from_slice(&buffer);
                out.push(b',');
                buffer.clear();
                skip = false;
            } else if skip {
                out.push(c);
            } else {
                buffer.push(c);
                if buffer.len() == APPEND_DOMAIN_BUFFER_SIZE - 1 {
                    out.append(&mut buffer);
                    skip = true;
                }
            }
        }
        if skip {
            out.push(b'\n');
        } else {
            buffer.push(b'\n');
        }
    }
    if !buffer.is_empty() {
        rewrite(&mut buffer);
        out.extend_from_slice(&buffer);
    }
    smtp_message_write(tx, &out);
}

/// smtp_message_begin(): the 354 reply, then the Received: header.
fn smtp_message_begin(s: &mut SmtpSession) {
    log_debug!("smtp: {:016x}: message begin", s.id);
    smtp_reply(s, "354 Enter mail, end with \".\" on a line by itself");
    let mut r = String::new();
    if s.junk || s.tx.as_ref().is_some_and(|tx| tx.junk) {
        r.push_str("X-Spam: Yes\n");
    }
    r.push_str("Received: ");
    if !s.listener.flags.contains(ListenerFlags::F_MASK_SOURCE) {
        r.push_str(&format!(
            "from {} ({} {})",
            s.helo,
            s.rdns,
            ss_bracketed(&s.ss)
        ));
    }
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    r.push_str(&format!(
        "\n\tby {} ({SMTPD_NAME}) with {}SMTP{}{} id {:08x}",
        s.smtpname,
        if s.flags.contains(SessionFlags::SF_EHLO) {
            "E"
        } else {
            ""
        },
        if s.flags.contains(SessionFlags::SF_SECURE) {
            "S"
        } else {
            ""
        },
        if s.flags.contains(SessionFlags::SF_AUTHENTICATED) {
            "A"
        } else {
            ""
        },
        tx.msgid
    ));
    // The TLS part of the header comes with TLS.
    if tx.rcptcount == 1 {
        if let Some(rcpt) = tx.rcpts.first() {
            r.push_str(&format!(
                "\n\tfor <{}@{}>",
                rcpt.maddr.user, rcpt.maddr.domain
            ));
        }
    }
    tx.time = crate::util::util::time_now();
    r.push_str(&format!(";\n\t{}\n", time_to_text(tx.time)));
    smtp_message_write(tx, r.as_bytes());
    smtp_enter_state(s, SmtpState::Body);
}

/// smtp_message_end(): the end of data: commit, or say why not.
fn smtp_message_end(d: &mut Dispatcher, s: &mut SmtpSession) {
    let Some(tx) = s.tx.as_mut() else {
        return;
    };
    log_debug!("debug: {:016x}: end of message, error={:?}", s.id, tx.error);
    // fclose(): what is still buffered goes to the file now.
    if let Some(mut f) = tx.ofile.take() {
        if let Err(e) = f.flush() {
            if tx.error == TxError::Ok {
                log_warn!(e, "smtp-in: message flush");
                tx.error = TxError::Io;
            }
        }
    }
    let reply = match tx.error {
        TxError::Ok => return smtp_tx_commit(d, s),
        TxError::Size => format!(
            "554 {} {}: Transaction failed, message too big",
            esc_code(ESC_STATUS_PERMFAIL, ESC_MESSAGE_TOO_BIG_FOR_SYSTEM),
            esc_description(ESC_MESSAGE_TOO_BIG_FOR_SYSTEM)
        ),
        TxError::Loop => format!(
            "500 {} {}: Loop detected",
            esc_code(ESC_STATUS_PERMFAIL, ESC_ROUTING_LOOP_DETECTED),
            esc_description(ESC_ROUTING_LOOP_DETECTED)
        ),
        TxError::Malformed => format!(
            "550 {} {}: Message is not RFC 2822 compliant",
            esc_code(
                ESC_STATUS_PERMFAIL,
                ESC_DELIVERY_NOT_AUTHORIZED_MESSAGE_REFUSED
            ),
            esc_description(ESC_DELIVERY_NOT_AUTHORIZED_MESSAGE_REFUSED)
        ),
        TxError::BareNewline => format!(
            "550 {} Message contains a bare CR or LF",
            esc_code(ESC_STATUS_PERMFAIL, ESC_SYNTAX_ERROR)
        ),
        TxError::Io | TxError::Resources => format!(
            "421 {} Temporary Error",
            esc_code(ESC_STATUS_TEMPFAIL, ESC_OTHER_MAIL_SYSTEM_STATUS)
        ),
        TxError::Envelope | TxError::Internal => "421 Internal server error".to_string(),
    };
    smtp_reply(s, &reply);
    if let Some(tx) = s.tx.take() {
        smtp_tx_rollback(d, &tx);
    }
    smtp_enter_state(s, SmtpState::Helo);
}

#[cfg(test)]
mod tests;
