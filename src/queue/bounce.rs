//! bounce.c: delivery status notifications, sent to the sender through an
//! SMTP session with our own server (OpenSMTPD bounce.c 1.90).
//!
//! The queue turns its bounce envelopes (D_BOUNCE) into pending bounce
//! messages, one per original message, server name and kind of report,
//! each held a second for more envelopes to join. Then it asks the
//! dispatcher for a local SMTP session (IMSG_QUEUE_SMTP_SESSION), speaks
//! SMTP on the socket it gets (EHLO, MAIL FROM:<>, RCPT TO the sender,
//! DATA: the notice, the RFC 3464 report, the original message or its
//! headers; QUIT) and tells the scheduler how each envelope fared.
//!
//! Where we differ from OpenSMTPD 7.8, on purpose (PORTING.md):
//! - every copied line that starts with '.' is dot-stuffed; C stuffs only
//!   the lines that are exactly ".", so our server took the dot off the
//!   others;
//! - a report whose bounce type is "failed" is worded as a failure even
//!   when its class is temporary (C words it as a delay: loop bounces in
//!   spools OpenSMTPD wrote), and its status is then 5.x.x;
//! - the delivery-status part carries Original-Envelope-Id,
//!   Original-Recipient and Diagnostic-Code, which RFC 3461 and 3464 ask
//!   for and C leaves out;
//! - a message larger than BOUNCE_HIWAT is returned in one part (C writes
//!   the part's header again and closes the multipart every 64 KiB);
//! - a bounce envelope without a return path is dropped without a session
//!   (C's session ends in the same failure, at RCPT);
//! - a session the dispatcher refuses is asked for again a second later
//!   (C asks again at once, and the two processes loop while SMTP is
//!   paused).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::envelope::{
    envelope_set_errormsg, evpid_to_msgid, BounceType, DeliveryBounce, DeliveryType, DsnRet,
    Envelope,
};
use super::queue::{queue_scheduler_ack, Queue};
use super::queue_backend::{
    queue_envelope_delete, queue_envelope_load, queue_envelope_update, queue_message_fd_r,
};
use crate::defines::LINE_MAX;
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::io::ioev::{io_free, io_set_fd, io_strevent, Io, IoEvent, IoOwner, Stream};
use crate::ipc::mproc::{m_add_envelope, m_close, m_compose, m_create, ImsgType, ProcType};
use crate::util::esc::{esc_code, ESC_STATUS_OK, ESC_STATUS_PERMFAIL, ESC_STATUS_TEMPFAIL};
use crate::util::log::{TRACE_BOUNCE, TRACE_IO};
use crate::util::mailaddr::Mailaddr;
use crate::util::stat_backend::stat_note;
use crate::util::to::time_to_text;
use crate::util::util::{generate_uid, parse_smtp_response, time_now};

/// At most this many bounce sessions at once.
const BOUNCE_MAXRUN: usize = 2;
/// The message is copied while less than this is queued for the socket.
const BOUNCE_HIWAT: usize = 65535;
/// A session idle this long fails (C: io_set_timeout(s->io, 30000)).
const BOUNCE_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused session is asked for again after this long.
const BOUNCE_RETRY: i64 = 1;

/// The session's state (BOUNCE_EHLO ... BOUNCE_CLOSE): what the next
/// reply answers, or what comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BounceState {
    Ehlo,
    Mail,
    Rcpt,
    Data,
    DataNotice,
    DataMessage,
    DataEnd,
    Quit,
    Close,
}

/// struct bounce_envelope: one recipient's line in the report.
#[derive(Debug)]
struct BounceEnvelope {
    id: u64,
    dest: Mailaddr,
    report: String,
    esc_class: u8,
    esc_code: u8,
    /// ORCPT, for Original-Recipient.
    orcpt: String,
    /// The last error, for Diagnostic-Code.
    errorline: String,
}

/// struct bounce_message: the report for one message, to one sender.
#[derive(Debug)]
struct BounceMessage {
    msgid: u32,
    bounce: DeliveryBounce,
    smtpname: String,
    to: String,
    timeout: i64,
    /// ENVID, for Original-Envelope-Id: one per message, as MAIL FROM.
    envid: String,
    envelopes: Vec<BounceEnvelope>,
}

/// struct bounce_session.
struct BounceSession {
    id: u64,
    smtpname: String,
    msg: Option<BounceMessage>,
    msgfp: Option<BufReader<File>>,
    state: BounceState,
    io: Io,
    boundary: u64,
}

/// What bounce_message_cmp() compares: the message, the server name and
/// the whole delivery_bounce.
type BounceKey = (u32, String, u8, i64, i64, u8, bool);

/// The bounce state of the queue process: bounce.c's globals.
#[derive(Default)]
pub struct Bounce {
    /// C's `messages` tree: the pending message of each key, by its
    /// number in `pending`.
    messages: BTreeMap<BounceKey, u64>,
    /// C's `pending` list, oldest first: each message under the number
    /// it was last queued with.
    pending: BTreeMap<u64, BounceMessage>,
    seq: u64,
    sessions: HashMap<u64, BounceSession>,
    /// Messages not yet reported on, pending or in a session.
    nmessage: usize,
    /// Sessions asked for or open.
    running: usize,
    timer: Option<EventId>,
}

/// The sessions are the queue's only connections besides imsg.
impl IoOwner for Queue {
    fn io(&mut self, key: u64) -> Option<&mut Io> {
        self.bounce.sessions.get_mut(&key).map(|s| &mut s.io)
    }

    fn io_ref(&self, key: u64) -> Option<&Io> {
        self.bounce.sessions.get(&key).map(|s| &s.io)
    }

    fn io_callback(&mut self, base: &mut EventBase<Self>, key: u64, evt: IoEvent) {
        bounce_io(self, base, key, evt);
    }
}

/// bounce_add(): the bounce envelope joins the report of its message.
pub fn bounce_add(s: &mut Queue, base: &mut EventBase<Queue>, evpid: u64) {
    let Some(evp) = queue_envelope_load(&mut s.backend, evpid) else {
        queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_DELIVERY_PERMFAIL, evpid);
        return;
    };
    if evp.type_ != DeliveryType::Bounce {
        fatalx!("bounce: evp:{:016x} is not of type D_BOUNCE!", evp.id);
    }
    // queue_bounce() makes none without a return path; an older spool may
    // hold one, whose session C would see refused at RCPT.
    if evp.sender.user.is_empty() {
        log_warnx!("warn: bounce: no return path for evp:{evpid:016x}");
        queue_scheduler_ack(s, ImsgType::IMSG_QUEUE_DELIVERY_PERMFAIL, evpid);
        queue_envelope_delete(&mut s.backend, evpid);
        return;
    }

    let (type_, esc_class) = bounce_type(&evp);
    // As C: the ttl a delay notice gives is the bounce envelope's (a
    // week), not the one the scheduler's request carried.
    let bounce = DeliveryBounce {
        type_,
        dsn_ret: evp.dsn_ret,
        ttl: evp.ttl,
        ..evp.agent_bounce
    };
    let msgid = evpid_to_msgid(evpid);
    let key = bounce_message_cmp(msgid, &evp.smtpname, &bounce);
    let b = &mut s.bounce;
    let mut msg = match b.messages.remove(&key) {
        Some(seq) => match b.pending.remove(&seq) {
            Some(msg) => msg,
            None => fatalx!("bounce: message {msgid:08x} is not pending"),
        },
        None => {
            b.nmessage += 1;
            log_debug!("debug: bounce: new message {msgid:08x}");
            stat_note("bounce.message", 1);
            BounceMessage {
                msgid,
                bounce,
                smtpname: evp.smtpname.clone(),
                to: format!("{}@{}", evp.sender.user, evp.sender.domain),
                timeout: 0,
                envid: evp.dsn_envid.clone(),
                envelopes: Vec::new(),
            }
        }
    };

    let be = BounceEnvelope {
        id: evpid,
        dest: evp.dest.clone(),
        report: bounce_report(&evp),
        esc_class,
        esc_code: evp.esc_code,
        orcpt: evp.dsn_orcpt.clone(),
        errorline: evp.errorline.clone(),
    };
    log_debug!("debug: bounce: adding report {:16x}: {}", be.id, be.report);
    msg.envelopes.push(be);

    // Each envelope gives the others of its message a second to join.
    msg.timeout = time_now() + 1;
    b.seq += 1;
    b.messages.insert(key, b.seq);
    b.pending.insert(b.seq, msg);
    stat_note("bounce.envelope", 1);
    bounce_drain(s, base);
}

/// The kind of report an envelope's class asks for (bounce_add()), and
/// the class its status is given.
fn bounce_type(evp: &Envelope) -> (BounceType, u8) {
    match evp.esc_class {
        ESC_STATUS_OK => (BounceType::Delivered, evp.esc_class),
        // OpenSMTPD gives a delivery loop a temporary class and type
        // B_FAILED, and words it as a delay; we word a failure as one,
        // with a permanent status, because the message will not be
        // retried (our queue gives loops class 5, but spools written by
        // OpenSMTPD hold such envelopes).
        ESC_STATUS_TEMPFAIL if evp.agent_bounce.type_ == BounceType::Failed => {
            (BounceType::Failed, ESC_STATUS_PERMFAIL)
        }
        ESC_STATUS_TEMPFAIL => (BounceType::Delayed, evp.esc_class),
        _ => (BounceType::Failed, evp.esc_class),
    }
}

/// The recipient's line of the notice: `user@domain: error`, where an
/// internal code (1xx, 6xx) is not shown; at most LINE_MAX - 1 bytes, as
/// C's buffer.
fn bounce_report(evp: &Envelope) -> String {
    let mut line = evp.errorline.as_str();
    let b = line.as_bytes();
    if b.len() > 4 && (b[0] == b'1' || b[0] == b'6') {
        line = line.get(4..).unwrap_or(line);
    }
    let mut report = format!("{}@{}: {}", evp.dest.user, evp.dest.domain, line);
    if report.len() >= LINE_MAX {
        let mut end = LINE_MAX - 1;
        while !report.is_char_boundary(end) {
            end -= 1;
        }
        report.truncate(end);
    }
    report
}

/// bounce_fd(): the dispatcher's answer to IMSG_QUEUE_SMTP_SESSION, a
/// socket to a new local SMTP session, or none.
pub fn bounce_fd(s: &mut Queue, base: &mut EventBase<Queue>, fd: Option<OwnedFd>) {
    log_debug!(
        "debug: bounce: got enqueue socket {}",
        fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    );
    let Some(fd) = fd else {
        log_debug!("debug: bounce: cancelling");
        s.bounce.running = s.bounce.running.saturating_sub(1);
        // OpenSMTPD asks again at once, and while SMTP is paused the two
        // processes ask and refuse in a loop; we ask again in a second.
        bounce_timer(s, base, BOUNCE_RETRY);
        return;
    };
    let Some(smtpname) = s.bounce.pending.values().next().map(|m| m.smtpname.clone()) else {
        log_debug!("debug: bounce: cancelling");
        s.bounce.running = s.bounce.running.saturating_sub(1);
        bounce_drain(s, base);
        return;
    };
    // The dispatcher keeps its end; ours must not block the loop.
    let sock = UnixStream::from(fd);
    if let Err(e) = sock.set_nonblocking(true) {
        log_warn!(e, "warn: bounce: set_nonblocking");
        s.bounce.running = s.bounce.running.saturating_sub(1);
        bounce_drain(s, base);
        return;
    }

    let id = generate_uid();
    let mut io = Io::new();
    io.set_timeout(Some(BOUNCE_SESSION_TIMEOUT));
    io.set_read();
    io_set_fd(base, &mut io, Stream::Unix(sock), id);
    s.bounce.sessions.insert(
        id,
        BounceSession {
            id,
            smtpname,
            msg: None,
            msgfp: None,
            state: BounceState::Ehlo,
            io,
            boundary: generate_uid(),
        },
    );
    log_debug!("debug: bounce: new session {id:016x}");
    stat_note("bounce.session", 1);
}

/// bounce_timeout(): the first pending message is due.
fn bounce_timeout(s: &mut Queue, base: &mut EventBase<Queue>, _fd: RawFd, _ev: EvFlags, _arg: u64) {
    log_debug!("debug: bounce: timeout");
    bounce_drain(s, base);
}

/// Arms the timer, unless it is armed already.
fn bounce_timer(s: &mut Queue, base: &mut EventBase<Queue>, secs: i64) {
    let ev = *s
        .bounce
        .timer
        .get_or_insert_with(|| base.evtimer_set(bounce_timeout, 0));
    if !base.event_pending(ev) {
        log_debug!("debug: bounce: setting timer");
        if let Err(e) = base.evtimer_add(ev, Duration::from_secs(secs.max(0) as u64)) {
            fatal!(e, "bounce: evtimer_add");
        }
    }
}

/// bounce_drain(): asks for as many sessions as the due messages need,
/// within BOUNCE_MAXRUN; or waits for the first pending message.
fn bounce_drain(s: &mut Queue, base: &mut EventBase<Queue>) {
    log_debug!(
        "debug: bounce: drain: nmessage={} running={}",
        s.bounce.nmessage,
        s.bounce.running
    );
    loop {
        let b = &s.bounce;
        if b.running >= BOUNCE_MAXRUN {
            log_debug!("debug: bounce: max session reached");
            return;
        }
        if b.nmessage == 0 {
            log_debug!("debug: bounce: no more messages");
            return;
        }
        if b.running >= b.nmessage {
            log_debug!("debug: bounce: enough sessions running");
            return;
        }
        let Some(msg) = b.pending.values().next() else {
            log_debug!("debug: bounce: no more pending messages");
            return;
        };
        let t = time_now();
        if msg.timeout > t {
            log_debug!("debug: bounce: next message not ready yet");
            let wait = msg.timeout - t;
            bounce_timer(s, base, wait);
            return;
        }
        log_debug!("debug: bounce: requesting new enqueue socket...");
        let p = s.peers.p(ProcType::PROC_DISPATCHER);
        m_compose(p, ImsgType::IMSG_QUEUE_SMTP_SESSION, 0, 0, None, &[]);
        s.bounce.running += 1;
    }
}

/// bounce_send(): one command line.
fn bounce_send(s: &mut BounceSession, args: fmt::Arguments) {
    let line = args.to_string();
    log_trace!(TRACE_BOUNCE, "bounce: {:016x}: >>> {}", s.id, line);
    s.io.print(&line);
    s.io.print("\r\n");
}

/// bounce_duration(): a delay in its largest whole unit.
fn bounce_duration(d: i64) -> String {
    let (n, unit) = if d < 60 {
        (d, "second")
    } else if d < 3600 {
        (d / 60, "minute")
    } else if d < 3600 * 24 {
        (d / 3600, "hour")
    } else {
        (d / (3600 * 24), "day")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

const NOTICE_INTRO: &str =
    "    Hi!\r\n\r\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\r\n";

const NOTICE_ERROR: &str = "    An error has occurred while attempting to deliver a message for\r\n    the following list of recipients:\r\n\r\n";

fn notice_warning(delay: &str) -> String {
    format!(
        "    A message is delayed for more than {delay} for the following\r\n    list of recipients:\r\n\r\n"
    )
}

fn notice_warning2(ttl: &str) -> String {
    format!(
        "    Please note that this is only a temporary failure report.\r\n    The message is kept in the queue for up to {ttl}.\r\n    You DO NOT NEED to re-send the message to these recipients.\r\n\r\n"
    )
}

const NOTICE_SUCCESS: &str =
    "    Your message was successfully delivered to these recipients.\r\n\r\n";

const NOTICE_RELAY: &str = "    Your message was relayed to these recipients.\r\n\r\n";

/// bounce_next_message(): the next due message for this session's server
/// name, its data file opened; false when there is none.
fn bounce_next_message(q: &mut Queue, s: &mut BounceSession) -> bool {
    loop {
        let now = time_now();
        let seq = q
            .bounce
            .pending
            .iter()
            .find(|(_, m)| m.timeout <= now && m.smtpname == s.smtpname)
            .map(|(&seq, _)| seq);
        let Some(msg) = seq.and_then(|seq| q.bounce.pending.remove(&seq)) else {
            return false;
        };
        q.bounce
            .messages
            .remove(&bounce_message_cmp(msg.msgid, &msg.smtpname, &msg.bounce));
        match queue_message_fd_r(&mut q.backend, msg.msgid) {
            None => {
                bounce_delivery(
                    q,
                    msg,
                    ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL,
                    "Could not open message fd",
                );
            }
            Some(f) => {
                s.msgfp = Some(BufReader::new(f));
                s.msg = Some(msg);
                return true;
            }
        }
    }
}

/// The header and body of the notice, its report, and the header of the
/// part that returns the message (BOUNCE_DATA_NOTICE), at time `now`.
fn bounce_notice(msg: &BounceMessage, smtpname: &str, boundary: u64, now: i64) -> String {
    let action = action_str(&msg.bounce);
    let mut o = String::new();
    let _ = write!(
        o,
        "Subject: Delivery status notification: {action}\r\n\
         From: Mailer Daemon <MAILER-DAEMON@{smtpname}>\r\n\
         To: {}\r\n\
         Date: {}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed;boundary=\"{boundary:16}/{smtpname}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n",
        msg.to,
        time_to_text(now)
    );
    bounce_part(
        &mut o,
        boundary,
        smtpname,
        "Notification",
        "text/plain; charset=us-ascii",
    );
    o.push_str(NOTICE_INTRO);
    o.push_str("\r\n");
    match msg.bounce.type_ {
        BounceType::Failed => o.push_str(NOTICE_ERROR),
        BounceType::Delayed => o.push_str(&notice_warning(&bounce_duration(msg.bounce.delay))),
        BounceType::Delivered if msg.bounce.mta_without_dsn => o.push_str(NOTICE_RELAY),
        BounceType::Delivered => o.push_str(NOTICE_SUCCESS),
    }
    for evp in &msg.envelopes {
        o.push_str(&evp.report);
        o.push_str("\r\n");
    }
    o.push_str("\r\n");
    if msg.bounce.type_ == BounceType::Delayed {
        o.push_str(&notice_warning2(&bounce_duration(msg.bounce.ttl)));
    }
    o.push_str("    Below is a copy of the original message:\r\n\r\n");

    bounce_part(
        &mut o,
        boundary,
        smtpname,
        "Delivery Report",
        "message/delivery-status",
    );
    // RFC 3461, 4.4: the ENVID comes back in the report; OpenSMTPD 7.8
    // drops it, we keep it because the sender matches reports with it.
    if !msg.envid.is_empty() {
        let _ = write!(
            o,
            "Original-Envelope-Id: {}\r\n",
            bounce_xtext_decode(&msg.envid)
        );
    }
    let _ = write!(o, "Reporting-MTA: dns; {smtpname}\r\n\r\n");
    for evp in &msg.envelopes {
        // RFC 3461, 4.2: so is ORCPT, which 7.8 drops as well.
        if let Some((kind, addr)) = evp.orcpt.split_once(';') {
            if !kind.is_empty() {
                let _ = write!(
                    o,
                    "Original-Recipient: {kind};{}\r\n",
                    bounce_xtext_decode(addr)
                );
            }
        }
        let _ = write!(
            o,
            "Final-Recipient: rfc822; {}@{}\r\n\
             Action: {action}\r\n\
             Status: {}\r\n",
            evp.dest.user,
            evp.dest.domain,
            esc_code(evp.esc_class, evp.esc_code)
        );
        // The server's reply, when the error is one (7.8 gives none).
        if bounce_is_reply(&evp.errorline) {
            let _ = write!(o, "Diagnostic-Code: smtp; {}\r\n", evp.errorline);
        }
        o.push_str("\r\n");
    }

    // C writes this header each time it copies BOUNCE_HIWAT more bytes of
    // the message, closing the multipart after each; here once.
    bounce_part(
        &mut o,
        boundary,
        smtpname,
        "Message headers",
        "text/rfc822-headers",
    );
    o
}

/// The boundary and header of a part of the report.
fn bounce_part(o: &mut String, boundary: u64, smtpname: &str, description: &str, type_: &str) {
    // C prints the boundary with "%16" PRIu64: padded with spaces.
    let _ = write!(
        o,
        "--{boundary:16}/{smtpname}\r\n\
         Content-Description: {description}\r\n\
         Content-Type: {type_}\r\n\
         \r\n"
    );
}

/// Whether an error line is an SMTP reply: a 2xx to 5xx code alone or
/// followed by a space.
fn bounce_is_reply(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && (b.len() == 3 || b[3] == b' ')
}

/// RFC 3461's xtext decoded (`+2B` is `+`), as reports carry ENVID and
/// ORCPT; left as it is when decoding would give anything but printable
/// ASCII, which a header must not hold.
fn bounce_xtext_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'+' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(c) => {
                    i += 2;
                    c
                }
                None => return s.to_string(),
            }
        } else {
            b[i]
        };
        if !(b' '..=b'~').contains(&c) {
            return s.to_string();
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// Whether the message is returned whole: only for a failure, when
/// RET=FULL was asked (RFC 3461, 4.3); else its headers.
fn bounce_headers_only(b: &DeliveryBounce) -> bool {
    b.type_ != BounceType::Failed || b.dsn_ret != Some(DsnRet::Full)
}

/// One line of the message, dot-stuffed and ended with CRLF.
fn bounce_message_line(io: &mut Io, line: &[u8]) {
    // OpenSMTPD stuffs only a line that is exactly "."; RFC 5321, 4.5.2
    // stuffs every line that starts with a dot, or the server takes the
    // dot off ".signature" and the sender gets "signature" back.
    if line.first() == Some(&b'.') {
        io.write(b".");
    }
    io.write(line);
    io.write(b"\r\n");
}

/// The BOUNCE_DATA_MESSAGE copy: the message's lines until BOUNCE_HIWAT
/// bytes are queued; true when it is all there (at the end of the
/// headers if only they go back).
fn bounce_message_copy(fp: &mut impl BufRead, io: &mut Io, headers_only: bool) -> io::Result<bool> {
    let mut line = Vec::new();
    while io.queued() < BOUNCE_HIWAT {
        line.clear();
        if fp.read_until(b'\n', &mut line)? == 0 {
            return Ok(true);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // Spool files end lines with LF; a CR before it would go out as
        // CR CR LF, which our server refuses.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() && headers_only {
            return Ok(true);
        }
        bounce_message_line(io, &line);
    }
    Ok(false)
}

/// bounce_next(): the session's next step after a good reply (or once
/// the socket drained, while the message is copied). Err when the
/// session must end now.
fn bounce_next(q: &mut Queue, s: &mut BounceSession) -> Result<(), ()> {
    match s.state {
        BounceState::Ehlo => {
            let name = s.smtpname.clone();
            bounce_send(s, format_args!("EHLO {name}"));
            s.state = BounceState::Mail;
        }
        BounceState::Mail | BounceState::DataEnd => {
            log_debug!("debug: bounce: {:016x}: getting next message...", s.id);
            if !bounce_next_message(q, s) {
                log_debug!("debug: bounce: {:016x}: no more messages", s.id);
                bounce_send(s, format_args!("QUIT"));
                s.state = BounceState::Close;
                return Ok(());
            }
            log_debug!(
                "debug: bounce: {:016x}: found message {:08x}",
                s.id,
                bounce_msg(s).msgid
            );
            bounce_send(s, format_args!("MAIL FROM: <>"));
            s.state = BounceState::Rcpt;
        }
        BounceState::Rcpt => {
            let to = bounce_msg(s).to.clone();
            bounce_send(s, format_args!("RCPT TO: <{to}>"));
            s.state = BounceState::Data;
        }
        BounceState::Data => {
            bounce_send(s, format_args!("DATA"));
            s.state = BounceState::DataNotice;
        }
        BounceState::DataNotice => {
            let notice = bounce_notice(bounce_msg(s), &s.smtpname, s.boundary, time_now());
            s.io.print(&notice);
            log_trace!(
                TRACE_BOUNCE,
                "bounce: {:016x}: >>> [... {} bytes ...]",
                s.id,
                s.io.queued()
            );
            s.state = BounceState::DataMessage;
        }
        BounceState::DataMessage => {
            let headers_only = bounce_headers_only(&bounce_msg(s).bounce);
            let Some(fp) = s.msgfp.as_mut() else {
                fatalx!("bounce: {:016x}: no message file", s.id)
            };
            let n = s.io.queued();
            match bounce_message_copy(fp, &mut s.io, headers_only) {
                Err(_) => {
                    s.msgfp = None;
                    if let Some(msg) = s.msg.take() {
                        bounce_delivery(
                            q,
                            msg,
                            ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL,
                            "Error reading message",
                        );
                    }
                    return Err(());
                }
                Ok(done) => {
                    log_trace!(
                        TRACE_BOUNCE,
                        "bounce: {:016x}: >>> [... {} bytes ...]",
                        s.id,
                        s.io.queued().saturating_sub(n)
                    );
                    if done {
                        s.msgfp = None;
                        let close = format!("\r\n--{:16}/{}--\r\n", s.boundary, s.smtpname);
                        s.io.print(&close);
                        bounce_send(s, format_args!("."));
                        s.state = BounceState::DataEnd;
                    }
                }
            }
        }
        BounceState::Quit => {
            bounce_send(s, format_args!("QUIT"));
            s.state = BounceState::Close;
        }
        BounceState::Close => fatalx!("bounce: bad state"),
    }
    Ok(())
}

/// The session's message, which every state from RCPT to the copy has.
fn bounce_msg(s: &BounceSession) -> &BounceMessage {
    match s.msg.as_ref() {
        Some(msg) => msg,
        None => fatalx!("bounce: {:016x}: no message in {:?}", s.id, s.state),
    }
}

/// bounce_delivery(): every envelope of the message fared as `delivery`
/// (IMSG_QUEUE_DELIVERY_OK, _TEMPFAIL, _PERMFAIL); the scheduler learns
/// it, the envelope is kept with the error for a retry or deleted.
fn bounce_delivery(q: &mut Queue, msg: BounceMessage, delivery: ImsgType, status: &str) {
    let n = msg.envelopes.len();
    for be in &msg.envelopes {
        if delivery == ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL {
            let Some(mut evp) = queue_envelope_load(&mut q.backend, be.id) else {
                fatalx!("could not reload envelope!")
            };
            evp.retry = evp.retry.wrapping_add(1);
            evp.lasttry = msg.timeout;
            envelope_set_errormsg(&mut evp, format_args!("{status}"));
            let _ = queue_envelope_update(&mut q.backend, &evp);
            let p = q.peers.p(ProcType::PROC_SCHEDULER);
            m_create(p, delivery, 0, 0, None);
            m_add_envelope(p, &evp);
            m_close(p);
        } else {
            queue_scheduler_ack(q, delivery, be.id);
            queue_envelope_delete(&mut q.backend, be.id);
        }
    }
    let f = match delivery {
        ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL => Some("TempFail"),
        ImsgType::IMSG_QUEUE_DELIVERY_PERMFAIL => Some("PermFail"),
        _ => None,
    };
    if let Some(f) = f {
        log_warnx!(
            "warn: {f} injecting failure report on message {:08x} to <{}> for {n} envelope{}: {status}",
            msg.msgid,
            msg.to,
            if n > 1 { "s" } else { "" }
        );
    }
    q.bounce.nmessage = q.bounce.nmessage.saturating_sub(1);
    stat_note("bounce.message", -1);
    stat_note("bounce.envelope", -(n as i64));
}

/// bounce_status(): the session's message fared as the reply `status`
/// says (2xx delivered, 5xx failed, anything else to retry).
fn bounce_status(q: &mut Queue, s: &mut BounceSession, status: &str) {
    // Nothing to report outside a transaction.
    let Some(msg) = s.msg.take() else {
        return;
    };
    let delivery = match status.as_bytes().first() {
        Some(b'2') => ImsgType::IMSG_QUEUE_DELIVERY_OK,
        Some(b'5' | b'6') => ImsgType::IMSG_QUEUE_DELIVERY_PERMFAIL,
        _ => ImsgType::IMSG_QUEUE_DELIVERY_TEMPFAIL,
    };
    bounce_delivery(q, msg, delivery, status);
    s.msgfp = None;
}

/// bounce_free(): the session is over; another may start.
fn bounce_free(q: &mut Queue, base: &mut EventBase<Queue>, s: BounceSession) {
    log_debug!("debug: bounce: {:016x}: deleting session", s.id);
    io_free(base, s.io);
    q.bounce.running = q.bounce.running.saturating_sub(1);
    stat_note("bounce.session", -1);
    bounce_drain(q, base);
}

/// bounce_io(): what happened on a session's socket.
fn bounce_io(q: &mut Queue, base: &mut EventBase<Queue>, id: u64, evt: IoEvent) {
    let Some(mut s) = q.bounce.sessions.remove(&id) else {
        return;
    };
    log_trace!(
        TRACE_IO,
        "bounce: {id:016x}: {} {}",
        io_strevent(evt),
        s.io.strio()
    );
    let keep = match evt {
        IoEvent::DataIn => bounce_io_datain(q, &mut s),
        IoEvent::LowAt => {
            if s.state == BounceState::DataMessage && bounce_next(q, &mut s).is_err() {
                false
            } else {
                if s.io.queued() == 0 {
                    s.io.set_read();
                }
                true
            }
        }
        _ => {
            // C prints the event's number: IoEvent keeps C's order.
            let status = format!("442 i/o error {}", evt as i32);
            bounce_status(q, &mut s, &status);
            false
        }
    };
    if keep {
        q.bounce.sessions.insert(id, s);
    } else {
        bounce_free(q, base, s);
    }
}

/// IO_DATAIN: the server's replies, line by line; false when the session
/// must end.
fn bounce_io_datain(q: &mut Queue, s: &mut BounceSession) -> bool {
    loop {
        let Some(mut line) = s.io.getline() else {
            if s.io.datalen() >= LINE_MAX {
                bounce_status(q, s, "Input too long");
                return false;
            }
            return true;
        };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        log_trace!(TRACE_BOUNCE, "bounce: {:016x}: <<< {}", s.id, text);
        match parse_smtp_response(&line) {
            Err(error) => {
                bounce_status(q, s, &format!("Bad response: {error}"));
                return false;
            }
            Ok((_, true)) => continue,
            Ok((_, false)) => {}
        }
        if s.state == BounceState::Close {
            return false;
        }
        if line[0] != b'2' && line[0] != b'3' {
            bounce_status(q, s, &text);
            s.state = BounceState::Quit;
        } else if s.state == BounceState::DataEnd {
            // The message is accepted.
            bounce_status(q, s, &text);
        }
        if bounce_next(q, s).is_err() {
            return false;
        }
        s.io.set_write();
        return true;
    }
}

/// bounce_message_cmp(): the key of a pending message.
fn bounce_message_cmp(msgid: u32, smtpname: &str, b: &DeliveryBounce) -> BounceKey {
    (
        msgid,
        smtpname.to_string(),
        b.type_ as u8,
        b.delay,
        b.ttl,
        b.dsn_ret.map_or(0, |r| r as u8),
        b.mta_without_dsn,
    )
}

/// action_str(): the Action of the report, and the Subject's last word.
fn action_str(b: &DeliveryBounce) -> &'static str {
    match b.type_ {
        BounceType::Failed => "failed",
        BounceType::Delayed => "delayed",
        BounceType::Delivered if b.mta_without_dsn => "relayed",
        BounceType::Delivered => "delivered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::esc::{ESC_DELIVERY_TIME_EXPIRED, ESC_ROUTING_LOOP_DETECTED};

    fn addr(user: &str, domain: &str) -> Mailaddr {
        Mailaddr {
            user: user.into(),
            domain: domain.into(),
        }
    }

    fn envelope(class: u8, code: u8, errorline: &str) -> BounceEnvelope {
        BounceEnvelope {
            id: 0x1234_5678_0000_0001,
            dest: addr("bob", "example.org"),
            report: format!("bob@example.org: {errorline}"),
            esc_class: class,
            esc_code: code,
            orcpt: String::new(),
            errorline: errorline.into(),
        }
    }

    fn message(type_: BounceType, envelopes: Vec<BounceEnvelope>) -> BounceMessage {
        BounceMessage {
            msgid: 0x1234_5678,
            bounce: DeliveryBounce {
                type_,
                ..DeliveryBounce::default()
            },
            smtpname: "mx.example.net".into(),
            to: "alice@example.net".into(),
            timeout: 0,
            envid: String::new(),
            envelopes,
        }
    }

    /// The copy of `data` as bounce_next() sends it, in calls of at most
    /// BOUNCE_HIWAT bytes: how many calls, and the bytes.
    fn copy(data: &[u8], headers_only: bool) -> (usize, Vec<u8>) {
        let mut fp = BufReader::new(data);
        let mut out = Vec::new();
        for calls in 1.. {
            let mut io = Io::new();
            let done = bounce_message_copy(&mut fp, &mut io, headers_only).unwrap();
            out.extend_from_slice(io.iobuf.outq());
            if done {
                return (calls, out);
            }
        }
        unreachable!()
    }

    #[test]
    fn durations_are_worded_in_their_largest_unit() {
        for (d, want) in [
            (0, "0 seconds"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "1 minute"),
            (119, "1 minute"),
            (3599, "59 minutes"),
            (3600, "1 hour"),
            (4 * 3600, "4 hours"),
            (86399, "23 hours"),
            (86400, "1 day"),
            (7 * 86400, "7 days"),
        ] {
            assert_eq!(bounce_duration(d), want, "{d}");
        }
    }

    #[test]
    fn a_failure_report_is_byte_for_byte_opensmtpds() {
        let evp = envelope(5, ESC_DELIVERY_TIME_EXPIRED, "Envelope expired");
        let msg = message(BounceType::Failed, vec![evp]);
        let now = 1_700_000_000;
        let b = "12345678901234567890/mx.example.net";
        let want = format!(
            "Subject: Delivery status notification: failed\r\n\
             From: Mailer Daemon <MAILER-DAEMON@mx.example.net>\r\n\
             To: alice@example.net\r\n\
             Date: {}\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed;boundary=\"{b}\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --{b}\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n    Hi!\r\n\
             \r\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\r\n\
             \r\n    An error has occurred while attempting to deliver a message for\r\n    \
             the following list of recipients:\r\n\
             \r\n\
             bob@example.org: Envelope expired\r\n\
             \r\n    Below is a copy of the original message:\r\n\
             \r\n\
             --{b}\r\n\
             Content-Description: Delivery Report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.net\r\n\
             \r\n\
             Final-Recipient: rfc822; bob@example.org\r\n\
             Action: failed\r\n\
             Status: 5.4.7\r\n\
             \r\n\
             --{b}\r\n\
             Content-Description: Message headers\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n",
            time_to_text(now)
        );
        let got = bounce_notice(&msg, "mx.example.net", 12345678901234567890, now);
        assert_eq!(got, want);
    }

    #[test]
    fn a_short_boundary_is_padded_with_spaces_as_c_prints_it() {
        let msg = message(BounceType::Failed, vec![]);
        let got = bounce_notice(&msg, "mx", 42, 1_700_000_000);
        assert!(
            got.contains("boundary=\"              42/mx\"\r\n"),
            "{got}"
        );
        assert!(got.contains("\r\n--              42/mx\r\n"), "{got}");
    }

    #[test]
    fn a_delay_report_names_the_delay_and_the_ttl() {
        let mut msg = message(BounceType::Delayed, vec![envelope(4, 41, "421 try later")]);
        msg.bounce.delay = 4 * 3600;
        msg.bounce.ttl = 7 * 86400;
        let got = bounce_notice(&msg, "mx.example.net", 1, 1_700_000_000);
        assert!(got.starts_with("Subject: Delivery status notification: delayed\r\n"));
        assert!(got.contains(
            "    A message is delayed for more than 4 hours for the following\r\n    \
             list of recipients:\r\n\r\nbob@example.org: 421 try later\r\n\r\n    \
             Please note that this is only a temporary failure report.\r\n    \
             The message is kept in the queue for up to 7 days.\r\n    \
             You DO NOT NEED to re-send the message to these recipients.\r\n\r\n    \
             Below is a copy"
        ));
        assert!(got.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(!got.contains("An error has occurred"));
    }

    #[test]
    fn a_success_report_says_delivered_or_relayed() {
        let mut msg = message(BounceType::Delivered, vec![envelope(2, 0, "")]);
        let got = bounce_notice(&msg, "mx", 1, 1_700_000_000);
        assert!(got.starts_with("Subject: Delivery status notification: delivered\r\n"));
        assert!(got
            .contains("    Your message was successfully delivered to these recipients.\r\n\r\n"));
        assert!(got.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        msg.bounce.mta_without_dsn = true;
        let got = bounce_notice(&msg, "mx", 1, 1_700_000_000);
        assert!(got.starts_with("Subject: Delivery status notification: relayed\r\n"));
        assert!(got.contains("    Your message was relayed to these recipients.\r\n\r\n"));
        assert!(got.contains("Action: relayed\r\n"));
    }

    fn bounce_envelope(class: u8, type_: BounceType) -> Envelope {
        Envelope {
            type_: DeliveryType::Bounce,
            esc_class: class,
            agent_bounce: DeliveryBounce {
                type_,
                ..DeliveryBounce::default()
            },
            ..Envelope::default()
        }
    }

    #[test]
    fn a_delivery_loop_is_reported_as_failed_never_as_a_delay() {
        use BounceType::*;
        // As our queue writes it, and as OpenSMTPD 7.8 did (class 4).
        for class in [ESC_STATUS_PERMFAIL, ESC_STATUS_TEMPFAIL] {
            let (type_, class) = bounce_type(&bounce_envelope(class, Failed));
            assert_eq!((type_, class), (Failed, ESC_STATUS_PERMFAIL));
            let mut evp = envelope(class, ESC_ROUTING_LOOP_DETECTED, "Loop detected");
            evp.esc_class = class;
            let got = bounce_notice(&message(type_, vec![evp]), "mx", 1, 1_700_000_000);
            assert!(got.starts_with("Subject: Delivery status notification: failed\r\n"));
            assert!(got.contains("An error has occurred"));
            assert!(got.contains("Action: failed\r\nStatus: 5.4.6\r\n"), "{got}");
            assert!(!got.contains("delayed"), "{got}");
        }
        // The other kinds follow the class, as in C.
        let cases = [
            (ESC_STATUS_TEMPFAIL, Delayed, Delayed),
            (ESC_STATUS_OK, Delivered, Delivered),
            (ESC_STATUS_PERMFAIL, Failed, Failed),
        ];
        for (class, asked, want) in cases {
            assert_eq!(bounce_type(&bounce_envelope(class, asked)), (want, class));
        }
    }

    #[test]
    fn the_report_returns_envid_orcpt_and_the_servers_reply() {
        let mut evp = envelope(5, 11, "550 5.1.1 <bob@example.org>: no such user");
        evp.orcpt = "rfc822;b+2Bob@example.org".into();
        let mut msg = message(
            BounceType::Failed,
            vec![evp, envelope(5, 47, "Envelope expired")],
        );
        msg.envid = "QQ+2B314".into();
        let got = bounce_notice(&msg, "mx", 1, 1_700_000_000);
        assert!(
            got.contains(
                "Content-Type: message/delivery-status\r\n\r\n\
             Original-Envelope-Id: QQ+314\r\n\
             Reporting-MTA: dns; mx\r\n\r\n\
             Original-Recipient: rfc822;b+ob@example.org\r\n\
             Final-Recipient: rfc822; bob@example.org\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: no such user\r\n\r\n\
             Final-Recipient: rfc822; bob@example.org\r\n\
             Action: failed\r\n\
             Status: 5.4.7\r\n\r\n--"
            ),
            "{got}"
        );
    }

    #[test]
    fn xtext_is_decoded_only_into_printable_ascii() {
        assert_eq!(bounce_xtext_decode("abc"), "abc");
        assert_eq!(bounce_xtext_decode("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(bounce_xtext_decode("a+20b"), "a b");
        // A line break must not become a header line.
        assert_eq!(bounce_xtext_decode("a+0D+0AX: y"), "a+0D+0AX: y");
        assert_eq!(bounce_xtext_decode("a+C3+A9"), "a+C3+A9");
        assert_eq!(bounce_xtext_decode("a+2"), "a+2");
    }

    #[test]
    fn report_lines_hide_internal_codes_only() {
        let mut evp = Envelope {
            dest: addr("bob", "example.org"),
            errorline: "600 internal failure".into(),
            ..Envelope::default()
        };
        assert_eq!(bounce_report(&evp), "bob@example.org: internal failure");
        evp.errorline = "100 x".into();
        assert_eq!(bounce_report(&evp), "bob@example.org: x");
        evp.errorline = "550 5.1.1 unknown".into();
        assert_eq!(bounce_report(&evp), "bob@example.org: 550 5.1.1 unknown");
        evp.errorline = "6000".into();
        assert_eq!(bounce_report(&evp), "bob@example.org: 6000");
        evp.errorline = "é".repeat(LINE_MAX);
        let r = bounce_report(&evp);
        assert!(r.len() < LINE_MAX && r.ends_with('é'), "{}", r.len());
    }

    #[test]
    fn diagnostic_codes_are_only_for_smtp_replies() {
        assert!(bounce_is_reply("550 5.1.1 no"));
        assert!(bounce_is_reply("421"));
        assert!(!bounce_is_reply("Envelope expired"));
        assert!(!bounce_is_reply("600 internal"));
        assert!(!bounce_is_reply("5500 x"));
    }

    #[test]
    fn every_line_that_starts_with_a_dot_is_stuffed() {
        let data = b"Subject: x\n\n.\n.signature\n..two\nnot.first\n";
        let (_, out) = copy(data, false);
        assert_eq!(
            out,
            b"Subject: x\r\n\r\n..\r\n..signature\r\n...two\r\nnot.first\r\n"
        );
    }

    #[test]
    fn only_a_failure_with_ret_full_returns_the_whole_message() {
        let mut b = DeliveryBounce::default();
        for (type_, ret, headers_only) in [
            (BounceType::Failed, Some(DsnRet::Full), false),
            (BounceType::Failed, Some(DsnRet::Hdrs), true),
            (BounceType::Failed, None, true),
            (BounceType::Delayed, Some(DsnRet::Full), true),
            (BounceType::Delivered, Some(DsnRet::Full), true),
        ] {
            b.type_ = type_;
            b.dsn_ret = ret;
            assert_eq!(bounce_headers_only(&b), headers_only, "{type_:?} {ret:?}");
        }
    }

    #[test]
    fn headers_only_stops_at_the_end_of_the_headers() {
        let data = b"Received: from x\n\tby y\nSubject: hi\n\nbody\n\nmore\n";
        let (calls, out) = copy(data, true);
        assert_eq!(calls, 1);
        assert_eq!(out, b"Received: from x\r\n\tby y\r\nSubject: hi\r\n");
        let (_, out) = copy(data, false);
        assert_eq!(
            out,
            b"Received: from x\r\n\tby y\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n"
        );
    }

    #[test]
    fn everything_sent_ends_its_lines_with_crlf() {
        let mut msg = message(BounceType::Delayed, vec![envelope(4, 0, "x")]);
        msg.envid = "e".into();
        let mut sent = bounce_notice(&msg, "mx", 1, 1_700_000_000).into_bytes();
        sent.extend(copy(b"A: b\r\n\nline\nlast without LF", false).1);
        for (i, &c) in sent.iter().enumerate() {
            if c == b'\n' {
                assert_eq!(sent[i - 1], b'\r', "bare LF at {i}");
            }
            if c == b'\r' {
                assert_eq!(sent.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        assert!(sent.ends_with(b"\r\nline\r\nlast without LF\r\n"));
    }

    #[test]
    fn a_large_message_is_copied_in_steps_within_one_part() {
        let line = format!("{}\n", "x".repeat(999));
        let data = format!("Subject: big\n\n{}", line.repeat(200));
        let (calls, out) = copy(data.as_bytes(), false);
        assert!(calls >= 3, "{calls}");
        let want = data.replace('\n', "\r\n");
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
