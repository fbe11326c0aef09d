//! mda.c: the dispatcher's local delivery driver (OpenSMTPD mda.c 1.147).
//!
//! Envelopes the queue hands over are grouped by user (name and
//! userbase); lka looks each new user up; sessions start within the
//! limits per user and in all; each reads its message from the queue,
//! checks it for a loop, has the parent fork the agent (forkmda), and
//! writes it to the agent's pipe with the delivery headers in front.
//! The agent's end decides the result the queue and the log get.
//!
//! `struct deliver` of smtpd.h is what the dispatcher sends the parent
//! with IMSG_MDA_FORK, as one m_add_data blob in the C struct's layout,
//! which the parent checks with `sz == sizeof(deliver)`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::dispatcher::Dispatcher;
use crate::config::config::{env, DispatcherAgent, DispatcherLocal, DEFAULT_USERBASE};
use crate::io::event::EventBase;
use crate::io::ioev::{io_free, io_set_fd, io_strevent, Io, IoEvent, Stream, IO_OUT};
use crate::ipc::imsg::{imsg_get_fd, Imsg};
use crate::ipc::mproc::{
    m_add_data, m_add_evpid, m_add_id, m_add_int, m_add_msgid, m_add_string, m_close, m_create,
    m_end, m_get_data, m_get_envelope, m_get_id, m_get_int, m_get_string, m_msg, ImsgType,
    ProcType,
};
use crate::lka::lka_session::{LKA_OK, LKA_TEMPFAIL};
use crate::queue::envelope::{evpid_to_msgid, Envelope};
use crate::smtpd::{imsg_to_str, MDA_OK, MDA_PERMFAIL, MDA_TEMPFAIL};
use crate::sys::socket::set_nonblocking;
use crate::util::esc::{
    ESC_DESTINATION_MAILBOX_HAS_MOVED, ESC_OTHER_ADDRESS_STATUS, ESC_OTHER_MAIL_SYSTEM_STATUS,
};
use crate::util::log::TRACE_IO;
use crate::util::stat_backend::{stat_decrement, stat_increment};
use crate::util::to::{duration_to_text, text_to_mailaddr};
use crate::util::util::{generate_uid, strnvis, time_now};

use crate::defines::{
    EXPAND_BUFFER, LINE_MAX, PATH_MAX, SMTPD_SUBADDRESS_SIZE, SMTPD_VUSERNAME_SIZE,
};
use crate::table::table::Userinfo;
use crate::util::mailaddr::{cstr_get, cstr_put, LayoutError, Mailaddr, MAILADDR_SIZE};

/// struct deliver: one local delivery, as the parent forks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deliver {
    /// The name of the action.
    pub dispatcher: String,
    pub sender: Mailaddr,
    pub rcpt: Mailaddr,
    pub dest: Mailaddr,
    pub mda_subaddress: String,
    /// A `|command` from a .forward file or an alias, run instead of the
    /// action's own command.
    pub mda_exec: String,
    pub userinfo: Userinfo,
}

const fn align_up(off: usize, align: usize) -> usize {
    off.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

// struct userinfo { char username[256]; char directory[PATH_MAX];
// uid_t uid; gid_t gid; }: uid_t and gid_t are 4-byte integers on Linux
// and OpenBSD, and PATH_MAX (a multiple of 4) is 4096 on Linux, 1024 on
// OpenBSD:
//                 Linux           OpenBSD
//   username      0 ..  256       0 ..  256
//   directory   256 .. 4352     256 .. 1280
//   uid        4352 .. 4356    1280 .. 1284
//   gid        4356 .. 4360    1284 .. 1288
// sizeof 4360 (OpenBSD 1288), a multiple of the alignment 4: no padding.
const UI_USERNAME: usize = 0;
const UI_DIRECTORY: usize = UI_USERNAME + SMTPD_VUSERNAME_SIZE;
const UI_UID: usize = align_up(UI_DIRECTORY + PATH_MAX, align_of::<libc::uid_t>());
const UI_GID: usize = align_up(UI_UID + size_of::<libc::uid_t>(), align_of::<libc::gid_t>());
const USERINFO_ALIGN: usize = max(align_of::<libc::uid_t>(), align_of::<libc::gid_t>());
/// sizeof(struct userinfo).
pub const USERINFO_SIZE: usize = align_up(UI_GID + size_of::<libc::gid_t>(), USERINFO_ALIGN);

// struct deliver { char dispatcher[EXPAND_BUFFER]; struct mailaddr sender,
// rcpt, dest; char mda_subaddress[256]; char mda_exec[LINE_MAX];
// struct userinfo userinfo; }, every member but userinfo byte-aligned:
//   dispatcher        0 .. 1024
//   sender         1024 .. 1536   (struct mailaddr: 256 + 256)
//   rcpt           1536 .. 2048
//   dest           2048 .. 2560
//   mda_subaddress 2560 .. 2816
//   mda_exec       2816 .. 4864   (LINE_MAX 2048)
//   userinfo       4864 .. 9224   (OpenBSD 4864 .. 6152; 4864 is a
//                                  multiple of 4: no padding before it)
// sizeof(struct deliver) = 9224 on Linux, 6152 on OpenBSD, a multiple of
// its alignment 4: no padding at the end either.
const D_DISPATCHER: usize = 0;
const D_SENDER: usize = D_DISPATCHER + EXPAND_BUFFER;
const D_RCPT: usize = D_SENDER + MAILADDR_SIZE;
const D_DEST: usize = D_RCPT + MAILADDR_SIZE;
const D_SUBADDRESS: usize = D_DEST + MAILADDR_SIZE;
const D_EXEC: usize = D_SUBADDRESS + SMTPD_SUBADDRESS_SIZE;
const D_USERINFO: usize = align_up(D_EXEC + LINE_MAX, USERINFO_ALIGN);
/// sizeof(struct deliver): 9224 bytes on Linux, 6152 on OpenBSD.
pub const DELIVER_SIZE: usize = align_up(D_USERINFO + USERINFO_SIZE, USERINFO_ALIGN);

impl Deliver {
    /// The bytes of the C struct, NUL-padded, for m_add_data. A string
    /// longer than its array is refused, never cut.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        let mut b = vec![0u8; DELIVER_SIZE];
        cstr_put(
            &mut b[D_DISPATCHER..D_SENDER],
            &self.dispatcher,
            "dispatcher",
        )?;
        self.sender
            .encode_into(&mut b[D_SENDER..D_RCPT], "sender")?;
        self.rcpt.encode_into(&mut b[D_RCPT..D_DEST], "rcpt")?;
        self.dest
            .encode_into(&mut b[D_DEST..D_SUBADDRESS], "dest")?;
        cstr_put(
            &mut b[D_SUBADDRESS..D_EXEC],
            &self.mda_subaddress,
            "mda_subaddress",
        )?;
        cstr_put(
            &mut b[D_EXEC..D_EXEC + LINE_MAX],
            &self.mda_exec,
            "mda_exec",
        )?;
        userinfo_encode(
            &self.userinfo,
            &mut b[D_USERINFO..D_USERINFO + USERINFO_SIZE],
        )?;
        Ok(b)
    }

    /// The struct from the blob of IMSG_MDA_FORK, which must be exactly
    /// sizeof(struct deliver) with every array NUL-terminated and UTF-8.
    pub fn from_bytes(b: &[u8]) -> Result<Deliver, LayoutError> {
        if b.len() != DELIVER_SIZE {
            return Err(LayoutError::Size {
                what: "deliver",
                len: b.len(),
                size: DELIVER_SIZE,
            });
        }
        Ok(Deliver {
            dispatcher: cstr_get(&b[D_DISPATCHER..D_SENDER], "dispatcher")?,
            sender: Mailaddr::decode_from(&b[D_SENDER..D_RCPT], "sender")?,
            rcpt: Mailaddr::decode_from(&b[D_RCPT..D_DEST], "rcpt")?,
            dest: Mailaddr::decode_from(&b[D_DEST..D_SUBADDRESS], "dest")?,
            mda_subaddress: cstr_get(&b[D_SUBADDRESS..D_EXEC], "mda_subaddress")?,
            mda_exec: cstr_get(&b[D_EXEC..D_EXEC + LINE_MAX], "mda_exec")?,
            userinfo: userinfo_decode(&b[D_USERINFO..D_USERINFO + USERINFO_SIZE])?,
        })
    }
}

/// struct userinfo's bytes into `ui` (USERINFO_SIZE long): what lka
/// answers IMSG_MDA_LOOKUP_USERINFO with, and the tail of a deliver.
pub fn userinfo_encode(u: &Userinfo, ui: &mut [u8]) -> Result<(), LayoutError> {
    cstr_put(
        &mut ui[UI_USERNAME..UI_DIRECTORY],
        &u.username,
        "userinfo.username",
    )?;
    cstr_put(
        &mut ui[UI_DIRECTORY..UI_DIRECTORY + PATH_MAX],
        &u.directory,
        "userinfo.directory",
    )?;
    let uid: libc::uid_t = u.uid;
    let gid: libc::gid_t = u.gid;
    ui[UI_UID..UI_UID + size_of::<libc::uid_t>()].copy_from_slice(&uid.to_ne_bytes());
    ui[UI_GID..UI_GID + size_of::<libc::gid_t>()].copy_from_slice(&gid.to_ne_bytes());
    Ok(())
}

/// struct userinfo from its bytes, which must be exactly USERINFO_SIZE.
pub fn userinfo_decode(ui: &[u8]) -> Result<Userinfo, LayoutError> {
    if ui.len() != USERINFO_SIZE {
        return Err(LayoutError::Size {
            what: "userinfo",
            len: ui.len(),
            size: USERINFO_SIZE,
        });
    }
    let mut uid = [0u8; size_of::<libc::uid_t>()];
    uid.copy_from_slice(&ui[UI_UID..UI_UID + size_of::<libc::uid_t>()]);
    let mut gid = [0u8; size_of::<libc::gid_t>()];
    gid.copy_from_slice(&ui[UI_GID..UI_GID + size_of::<libc::gid_t>()]);
    Ok(Userinfo {
        username: cstr_get(&ui[UI_USERNAME..UI_DIRECTORY], "userinfo.username")?,
        directory: cstr_get(
            &ui[UI_DIRECTORY..UI_DIRECTORY + PATH_MAX],
            "userinfo.directory",
        )?,
        uid: libc::uid_t::from_ne_bytes(uid),
        gid: libc::gid_t::from_ne_bytes(gid),
    })
}

/// How much message data waits in a session's output at most (MDA_HIWAT).
const MDA_HIWAT: usize = 65536;

// The states of a user (USER_*).
const USER_WAITINFO: u8 = 0x01;
const USER_RUNNABLE: u8 = 0x02;
const USER_ONHOLD: u8 = 0x04;
const USER_HOLDQ: u8 = 0x08;

/// struct mda_envelope: what a delivery needs of its envelope.
#[derive(Debug)]
struct MdaEnvelope {
    /// The id of its user, which the log line leads with.
    session_id: u64,
    id: u64,
    creation: i64,
    /// `user@domain`, or empty for the null sender.
    sender: String,
    rcpt: String,
    dest: String,
    user: String,
    dispatcher: String,
    mda_subaddress: Option<String>,
    mda_exec: Option<String>,
}

/// struct mda_user: the envelopes of one user of one userbase, and its
/// deliveries running.
#[derive(Debug)]
struct MdaUser {
    id: u64,
    name: String,
    usertable: String,
    envelopes: VecDeque<MdaEnvelope>,
    flags: u8,
    running: usize,
    userinfo: Userinfo,
}

/// struct mda_session: one delivery, from the message file to the pipe
/// of the agent the parent forked.
#[derive(Debug)]
struct MdaSession {
    user: u64,
    evp: MdaEnvelope,
    io: Option<Io>,
    datafp: Option<BufReader<File>>,
}

/// mda.c's trees and run queue: the dispatcher's local deliveries.
#[derive(Debug, Default)]
pub struct Mda {
    sessions: HashMap<u64, MdaSession>,
    users: HashMap<u64, MdaUser>,
    runnable: VecDeque<u64>,
}

impl Mda {
    /// The io of a delivery session, for the dispatcher's IoOwner.
    pub fn io(&mut self, key: u64) -> Option<&mut Io> {
        self.sessions.get_mut(&key)?.io.as_mut()
    }

    pub fn io_ref(&self, key: u64) -> Option<&Io> {
        self.sessions.get(&key)?.io.as_ref()
    }

    pub fn has_session(&self, key: u64) -> bool {
        self.sessions.contains_key(&key)
    }
}

/// mda_imsg().
pub fn mda_imsg(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, mut imsg: Imsg) {
    use ImsgType::*;
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_MDA_LOOKUP_USERINFO) => mda_imsg_lookup_userinfo(d, &imsg),
        Some(IMSG_QUEUE_DELIVER) => {
            let mut m = m_msg(&imsg);
            let evp = m_get_envelope(&mut m);
            m_end(&m);
            mda_imsg_deliver(d, &evp);
        }
        Some(IMSG_MDA_OPEN_MESSAGE) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            m_end(&m);
            let fd = imsg_get_fd(&mut imsg);
            mda_imsg_open_message(d, base, reqid, fd);
        }
        Some(IMSG_MDA_FORK) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            m_end(&m);
            let fd = imsg_get_fd(&mut imsg);
            mda_imsg_fork(d, base, reqid, fd);
        }
        Some(IMSG_MDA_DONE) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let status = m_get_int(&mut m);
            let sysexit = m_get_int(&mut m);
            let parent_error = m_get_string(&mut m).unwrap_or_default().to_string();
            m_end(&m);
            let fd = imsg_get_fd(&mut imsg);
            mda_imsg_done(d, base, reqid, (status, sysexit), &parent_error, fd);
        }
        _ => fatalx!("mda_imsg: unexpected {} imsg", imsg_to_str(imsg.hdr.type_)),
    }
}

/// IMSG_MDA_LOOKUP_USERINFO: lka's answer about a new user.
fn mda_imsg_lookup_userinfo(d: &mut Dispatcher, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let status = m_get_int(&mut m);
    let data = (status == LKA_OK).then(|| m_get_data(&mut m).to_vec());
    m_end(&m);
    if !d.mda.users.contains_key(&reqid) {
        fatalx!("mda: no user {reqid:016x}");
    }
    match (status, data) {
        (LKA_TEMPFAIL, _) => mda_fail(
            d,
            reqid,
            false,
            "Temporary failure in user lookup",
            ESC_OTHER_ADDRESS_STATUS,
        ),
        (LKA_OK, Some(data)) => {
            let ui = match userinfo_decode(&data) {
                Ok(ui) => ui,
                Err(e) => fatalx!("mda: userinfo size mismatch: {e}"),
            };
            if let Some(u) = d.mda.users.get_mut(&reqid) {
                u.userinfo = ui;
                u.flags &= !USER_WAITINFO;
                u.flags |= USER_RUNNABLE;
            }
            d.mda.runnable.push_back(reqid);
            mda_drain(d);
        }
        _ => mda_fail(
            d,
            reqid,
            true,
            "Permanent failure in user lookup",
            ESC_DESTINATION_MAILBOX_HAS_MOVED,
        ),
    }
}

/// IMSG_QUEUE_DELIVER: an envelope to deliver, queued on its user, or
/// sent back to wait on the scheduler's hold queue when the user has
/// too many.
fn mda_imsg_deliver(d: &mut Dispatcher, evp: &Envelope) {
    let uid = mda_user(d, evp);
    let conf = env();
    let Some(u) = d.mda.users.get_mut(&uid) else {
        return;
    };
    if u.envelopes.len() >= conf.sc_mda_task_hiwat && u.flags & USER_ONHOLD == 0 {
        log_debug!(
            "debug: mda: hiwat reached for user \"{}\": holding envelopes",
            mda_user_to_text(u)
        );
        u.flags |= USER_ONHOLD;
    }
    if u.flags & USER_ONHOLD != 0 {
        u.flags |= USER_HOLDQ;
        let p = d.peers.p(ProcType::PROC_QUEUE);
        m_create(p, ImsgType::IMSG_MDA_DELIVERY_HOLD, 0, 0, None);
        m_add_evpid(p, evp.id);
        m_add_id(p, uid);
        m_close(p);
        return;
    }
    u.envelopes.push_back(mda_envelope(uid, evp));
    let p = d.peers.p(ProcType::PROC_CONTROL);
    stat_increment(p, "mda.envelope", 1);
    stat_increment(p, "mda.pending", 1);
    let Some(u) = d.mda.users.get_mut(&uid) else {
        return;
    };
    if u.flags & (USER_RUNNABLE | USER_WAITINFO) == 0 {
        u.flags |= USER_RUNNABLE;
        d.mda.runnable.push_back(uid);
    }
    mda_drain(d);
}

/// IMSG_MDA_OPEN_MESSAGE: the message file of a session. Unless the
/// message has been delivered to this address before (a loop), the
/// delivery headers are queued and the parent asked for an agent.
fn mda_imsg_open_message(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    reqid: u64,
    fd: Option<OwnedFd>,
) {
    let Some(s) = d.mda.sessions.get_mut(&reqid) else {
        fatalx!("mda: no session {reqid:016x}");
    };
    let Some(fd) = fd else {
        log_debug!("debug: mda: cannot get message fd");
        return mda_session_tempfail(d, base, reqid, "Cannot get message fd");
    };
    log_debug!(
        "debug: mda: got message fd {} for session {reqid:016x} evpid {:016x}",
        fd.as_raw_fd(),
        s.evp.id
    );
    let mut datafp = BufReader::new(File::from(fd));
    if mda_check_loop(&mut datafp, &s.evp) {
        log_debug!("debug: mda: loop detected");
        let id = s.evp.id;
        mda_queue_loop(d, id);
        mda_log(&d.mda.sessions[&reqid].evp, "PermFail", "Loop detected");
        return mda_done(d, base, reqid);
    }
    let e = &s.evp;
    // The agent reads the message as the queue stores it: LF line ends.
    let header = if e.sender.is_empty() {
        format!("Delivered-To: {}\n", e.rcpt)
    } else {
        format!("Return-Path: <{}>\nDelivered-To: {}\n", e.sender, e.rcpt)
    };
    let io = s.io.get_or_insert_with(Io::new);
    io.print(&header);
    s.datafp = Some(datafp);
    let deliver = Deliver {
        dispatcher: e.dispatcher.clone(),
        sender: text_to_mailaddr(&e.sender).unwrap_or_default(),
        rcpt: text_to_mailaddr(&e.rcpt).unwrap_or_default(),
        dest: text_to_mailaddr(&e.dest).unwrap_or_default(),
        mda_subaddress: e.mda_subaddress.clone().unwrap_or_default(),
        mda_exec: e.mda_exec.clone().unwrap_or_default(),
        userinfo: d.mda.users[&s.user].userinfo.clone(),
    };
    let bytes = match deliver.to_bytes() {
        Ok(b) => b,
        Err(err) => {
            let why = format!("Cannot deliver: {err}");
            return mda_session_tempfail(d, base, reqid, &why);
        }
    };
    log_debug!(
        "debug: mda: querying mda fd for session {reqid:016x} evpid {:016x}",
        e.id
    );
    let p = d.peers.p(ProcType::PROC_PARENT);
    m_create(p, ImsgType::IMSG_MDA_FORK, 0, 0, None);
    m_add_id(p, reqid);
    m_add_data(p, &bytes);
    m_close(p);
}

/// A session that cannot go on: its envelope is tried again later.
fn mda_session_tempfail(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, key: u64, why: &str) {
    let id = d.mda.sessions[&key].evp.id;
    mda_queue_tempfail(d, id, why, ESC_OTHER_MAIL_SYSTEM_STATUS);
    mda_log(&d.mda.sessions[&key].evp, "TempFail", why);
    mda_done(d, base, key)
}

/// IMSG_MDA_FORK: the pipe to the agent's stdin; writing starts.
fn mda_imsg_fork(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    reqid: u64,
    fd: Option<OwnedFd>,
) {
    let Some(s) = d.mda.sessions.get_mut(&reqid) else {
        fatalx!("mda: no session {reqid:016x}");
    };
    let Some(fd) = fd else {
        log_warnx!("warn: mda: fail to retrieve mda fd");
        return mda_session_tempfail(d, base, reqid, "Cannot get mda fd");
    };
    log_debug!(
        "debug: mda: got mda fd {} for session {reqid:016x} evpid {:016x}",
        fd.as_raw_fd(),
        s.evp.id
    );
    if let Err(e) = set_nonblocking(fd.as_fd(), true) {
        fatal!(e, "mda: set_nonblocking");
    }
    let io = s.io.get_or_insert_with(Io::new);
    io_set_fd(base, io, Stream::Pipe(File::from(fd)), reqid);
    io.set_write();
}

/// IMSG_MDA_DONE: the agent has exited (or never started); the result
/// goes to the queue and the log. The agent's last line of output, if
/// any, says more than the parent can.
fn mda_imsg_done(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    reqid: u64,
    (mut status, sysexit): (i32, i32),
    parent_error: &str,
    fd: Option<OwnedFd>,
) {
    let Some(s) = d.mda.sessions.get(&reqid) else {
        fatalx!("mda: no session {reqid:016x}");
    };
    let out = fd.and_then(mda_getlastline).unwrap_or_default();
    let mut error = String::new();
    if status == MDA_OK {
        if s.datafp.is_some() || s.io.as_ref().is_some_and(|io| io.queued() > 0) {
            error = "mda exited prematurely".to_string();
            status = MDA_TEMPFAIL;
        }
    } else if !out.is_empty() {
        error = out;
    } else {
        error = parent_error.to_string();
    }
    let syserror = mda_sysexit_to_str(sysexit);
    let buf = format!(
        "Error ({}{}{})",
        syserror.unwrap_or(""),
        if syserror.is_some() { ": " } else { "" },
        error
    );
    let id = s.evp.id;
    match status {
        MDA_TEMPFAIL => {
            mda_queue_tempfail(d, id, &error, ESC_OTHER_MAIL_SYSTEM_STATUS);
            mda_log(&d.mda.sessions[&reqid].evp, "TempFail", &buf);
        }
        MDA_PERMFAIL => {
            mda_queue_permfail(d, id, &error, ESC_OTHER_MAIL_SYSTEM_STATUS);
            mda_log(&d.mda.sessions[&reqid].evp, "PermFail", &buf);
        }
        _ => {
            mda_queue_ok(d, id);
            mda_log(&d.mda.sessions[&reqid].evp, "Ok", "Delivered");
        }
    }
    mda_done(d, base, reqid);
}

/// mda_io(): the agent's pipe drained below its mark, or failed. On a
/// failure the session waits for the agent's end, which says what
/// became of the delivery.
pub fn mda_io(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, key: u64, evt: IoEvent) {
    let Some(s) = d.mda.sessions.get_mut(&key) else {
        return;
    };
    if let Some(io) = s.io.as_ref() {
        log_trace!(
            TRACE_IO,
            "mda: {key:016x}: {} {}",
            io_strevent(evt),
            io.strio()
        );
    }
    match evt {
        IoEvent::LowAt => mda_io_lowat(d, base, key),
        _ => {
            match evt {
                IoEvent::Timeout => log_debug!("debug: mda: timeout on session {key:016x}"),
                IoEvent::Error => log_debug!(
                    "debug: mda: io error on session {key:016x}: {}",
                    s.io.as_ref().map_or("", |io| io.error())
                ),
                IoEvent::Disconnected => {
                    log_debug!("debug: mda: io disconnected on session {key:016x}")
                }
                _ => log_debug!("debug: mda: unexpected event on session {key:016x}"),
            }
            if let Some(io) = s.io.as_mut() {
                io.pause(IO_OUT);
            }
        }
    }
}

/// IO_LOWAT: more of the message, up to MDA_HIWAT queued; at its end
/// and once all is written, the pipe is closed.
fn mda_io_lowat(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, key: u64) {
    let Some(s) = d.mda.sessions.get_mut(&key) else {
        return;
    };
    loop {
        let Some(datafp) = s.datafp.as_mut() else {
            log_debug!(
                "debug: mda: all data sent for session {key:016x} evpid {:016x}",
                s.evp.id
            );
            if let Some(io) = s.io.take() {
                io_free(base, io);
            }
            // The parent lets go of its copy of the pipe: only now does
            // the agent see the end of the message (smtpd.rs, Child).
            let p = d.peers.p(ProcType::PROC_PARENT);
            m_create(p, ImsgType::IMSG_MDA_DONE, 0, 0, None);
            m_add_id(p, key);
            m_close(p);
            return;
        };
        let Some(io) = s.io.as_mut() else {
            return;
        };
        let mut eof = false;
        while io.queued() < MDA_HIWAT {
            match datafp.fill_buf() {
                Ok([]) => {
                    eof = true;
                    break;
                }
                Ok(buf) => {
                    let n = buf.len().min(MDA_HIWAT - io.queued());
                    io.write(&buf[..n]);
                    datafp.consume(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    log_debug!("debug: mda: ferror on session {key:016x}");
                    io.pause(IO_OUT);
                    let p = d.peers.p(ProcType::PROC_PARENT);
                    m_create(p, ImsgType::IMSG_MDA_KILL, 0, 0, None);
                    m_add_id(p, key);
                    m_add_string(p, Some("Error reading body"));
                    m_close(p);
                    return;
                }
            }
        }
        if !eof {
            return;
        }
        log_debug!(
            "debug: mda: end-of-file for session {key:016x} evpid {:016x}",
            s.evp.id
        );
        s.datafp = None;
        if io.queued() > 0 {
            return;
        }
    }
}

/// mda_check_loop(): whether the message's header already has a
/// Delivered-To: for this address. The file is read again from its
/// start afterwards.
fn mda_check_loop(fp: &mut BufReader<File>, e: &MdaEnvelope) -> bool {
    let mut ret = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match fp.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.contains(&b':') && !line.first().is_some_and(|c| c.is_ascii_whitespace()) {
            break;
        }
        if line.len() >= 14
            && line[..14].eq_ignore_ascii_case(b"Delivered-To: ")
            && line[14..].eq_ignore_ascii_case(e.dest.as_bytes())
        {
            ret = true;
            break;
        }
    }
    if let Err(err) = fp.seek(SeekFrom::Start(0)) {
        log_warn!(err, "warn: mda: fseek");
    }
    ret
}

/// mda_getlastline(): the agent's last line of output, quoted and made
/// safe for the log, or None if it wrote nothing.
fn mda_getlastline(fd: OwnedFd) -> Option<String> {
    let mut f = File::from(fd);
    if let Err(e) = f.seek(SeekFrom::Start(0)) {
        log_warn!(e, "warn: mda: lseek");
        return None;
    }
    let mut last = None;
    for line in BufReader::new(f).split(b'\n') {
        match line {
            Ok(l) => last = Some(l),
            Err(_) => break,
        }
    }
    let last = last?;
    // C's buffer: 256 bytes with the quotes and the NUL.
    let mut vis = strnvis(&last, false);
    if vis.len() > 253 {
        let mut cut = 253;
        while !vis.is_char_boundary(cut) {
            cut -= 1;
        }
        vis.truncate(cut);
    }
    Some(format!("\"{vis}\""))
}

/// mda_fail(): every envelope of a user whose lookup failed, then the
/// user.
fn mda_fail(d: &mut Dispatcher, uid: u64, permfail: bool, error: &str, code: u8) {
    let envelopes = d
        .mda
        .users
        .get_mut(&uid)
        .map(|u| std::mem::take(&mut u.envelopes))
        .unwrap_or_default();
    stat_decrement(
        d.peers.p(ProcType::PROC_CONTROL),
        "mda.envelope",
        envelopes.len(),
    );
    for e in envelopes {
        if permfail {
            mda_log(&e, "PermFail", error);
            mda_queue_permfail(d, e.id, error, code);
        } else {
            mda_log(&e, "TempFail", error);
            mda_queue_tempfail(d, e.id, error, code);
        }
    }
    mda_user_free(d, uid);
}

/// mda_drain(): sessions for the runnable users, in turn, within the
/// limits per user and in all.
fn mda_drain(d: &mut Dispatcher) {
    let conf = env();
    while let Some(uid) = d.mda.runnable.pop_front() {
        let Some(u) = d.mda.users.get_mut(&uid) else {
            continue;
        };
        if u.envelopes.is_empty() && u.running == 0 {
            log_debug!("debug: mda: all done for user \"{}\"", mda_user_to_text(u));
            mda_user_free(d, uid);
            continue;
        }
        if u.envelopes.is_empty() {
            log_debug!(
                "debug: mda: no more envelope for \"{}\"",
                mda_user_to_text(u)
            );
            u.flags &= !USER_RUNNABLE;
            continue;
        }
        if u.running >= conf.sc_mda_max_user_session {
            log_debug!(
                "debug: mda: maximum number of session reached for user \"{}\"",
                mda_user_to_text(u)
            );
            u.flags &= !USER_RUNNABLE;
            continue;
        }
        if d.mda.sessions.len() >= conf.sc_mda_max_session {
            log_debug!("debug: mda: maximum number of session reached");
            d.mda.runnable.push_front(uid);
            return;
        }
        mda_session(d, uid);
        let Some(u) = d.mda.users.get_mut(&uid) else {
            continue;
        };
        if u.envelopes.len() == conf.sc_mda_task_lowat {
            if u.flags & USER_ONHOLD != 0 {
                log_debug!(
                    "debug: mda: down to lowat for user \"{}\": releasing",
                    mda_user_to_text(u)
                );
                u.flags &= !USER_ONHOLD;
            }
            if u.flags & USER_HOLDQ != 0 {
                let p = d.peers.p(ProcType::PROC_QUEUE);
                m_create(p, ImsgType::IMSG_MDA_HOLDQ_RELEASE, 0, 0, None);
                m_add_id(p, uid);
                m_add_int(p, conf.sc_mda_task_release as i32);
                m_close(p);
            }
        }
        // The user goes back to the end of the run queue.
        d.mda.runnable.push_back(uid);
    }
}

/// mda_done(): a session is over; its user may run again.
fn mda_done(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, key: u64) {
    log_debug!("debug: mda: session {key:016x} done");
    let Some(s) = d.mda.sessions.remove(&key) else {
        fatalx!("mda: no session {key:016x}");
    };
    if let Some(u) = d.mda.users.get_mut(&s.user) {
        u.running = u.running.saturating_sub(1);
        if u.flags & USER_RUNNABLE == 0 {
            log_debug!("debug: mda: user \"{}\" becomes runnable", u.name);
            d.mda.runnable.push_back(s.user);
            u.flags |= USER_RUNNABLE;
        }
    }
    if let Some(io) = s.io {
        io_free(base, io);
    }
    let p = d.peers.p(ProcType::PROC_CONTROL);
    stat_decrement(p, "mda.envelope", 1);
    stat_decrement(p, "mda.running", 1);
    mda_drain(d);
}

/// mda_log(): the delivery line log parsers read.
fn mda_log(evp: &MdaEnvelope, prefix: &str, status: &str) {
    log_info!(
        "{:016x} mda delivery evpid={:016x} from=<{}> to=<{}> rcpt=<{}> user={} delay={} result={} stat={}",
        evp.session_id,
        evp.id,
        evp.sender,
        evp.dest,
        evp.rcpt,
        evp.user,
        duration_to_text(time_now() - evp.creation),
        prefix,
        status
    );
}

fn mda_queue_ok(d: &mut Dispatcher, evpid: u64) {
    let p = d.peers.p(ProcType::PROC_QUEUE);
    m_create(p, ImsgType::IMSG_MDA_DELIVERY_OK, 0, 0, None);
    m_add_evpid(p, evpid);
    m_close(p);
}

fn mda_queue_fail(d: &mut Dispatcher, t: ImsgType, evpid: u64, reason: &str, code: u8) {
    let p = d.peers.p(ProcType::PROC_QUEUE);
    m_create(p, t, 0, 0, None);
    m_add_evpid(p, evpid);
    m_add_string(p, Some(reason));
    m_add_int(p, i32::from(code));
    m_close(p);
}

fn mda_queue_tempfail(d: &mut Dispatcher, evpid: u64, reason: &str, code: u8) {
    mda_queue_fail(d, ImsgType::IMSG_MDA_DELIVERY_TEMPFAIL, evpid, reason, code);
}

fn mda_queue_permfail(d: &mut Dispatcher, evpid: u64, reason: &str, code: u8) {
    mda_queue_fail(d, ImsgType::IMSG_MDA_DELIVERY_PERMFAIL, evpid, reason, code);
}

fn mda_queue_loop(d: &mut Dispatcher, evpid: u64) {
    let p = d.peers.p(ProcType::PROC_QUEUE);
    m_create(p, ImsgType::IMSG_MDA_DELIVERY_LOOP, 0, 0, None);
    m_add_evpid(p, evpid);
    m_close(p);
}

/// mda_user(): the user of an envelope, by name and userbase; a new one
/// is looked up by lka first.
fn mda_user(d: &mut Dispatcher, evp: &Envelope) -> u64 {
    let conf = env();
    let usertable = match conf.sc_dispatchers.get(&evp.dispatcher).map(|dsp| &dsp.u) {
        Some(DispatcherAgent::Local(local)) => local
            .table_userbase
            .clone()
            .unwrap_or_else(|| DEFAULT_USERBASE.to_string()),
        _ => fatalx!("mda: no local dispatcher {}", evp.dispatcher),
    };
    if let Some(u) = d
        .mda
        .users
        .values()
        .find(|u| u.name == evp.mda_user && u.usertable == usertable)
    {
        return u.id;
    }
    let u = MdaUser {
        id: generate_uid(),
        name: evp.mda_user.clone(),
        usertable,
        envelopes: VecDeque::new(),
        flags: USER_WAITINFO,
        running: 0,
        userinfo: Userinfo::default(),
    };
    let p = d.peers.p(ProcType::PROC_LKA);
    m_create(p, ImsgType::IMSG_MDA_LOOKUP_USERINFO, 0, 0, None);
    m_add_id(p, u.id);
    m_add_string(p, Some(&u.usertable));
    m_add_string(p, Some(&evp.mda_user));
    m_close(p);
    if let Some(DispatcherAgent::Local(DispatcherLocal {
        user: Some(user), ..
    })) = conf.sc_dispatchers.get(&evp.dispatcher).map(|dsp| &dsp.u)
    {
        log_debug!(
            "mda: new user {:016x} for \"{}\" delivering as \"{user}\"",
            u.id,
            mda_user_to_text(&u)
        );
    } else {
        log_debug!(
            "mda: new user {:016x} for \"{}\"",
            u.id,
            mda_user_to_text(&u)
        );
    }
    let id = u.id;
    d.mda.users.insert(id, u);
    stat_increment(d.peers.p(ProcType::PROC_CONTROL), "mda.user", 1);
    id
}

/// mda_user_free(): the user goes; envelopes it held on the scheduler's
/// hold queue are released.
fn mda_user_free(d: &mut Dispatcher, uid: u64) {
    let Some(u) = d.mda.users.remove(&uid) else {
        return;
    };
    d.mda.runnable.retain(|&id| id != uid);
    stat_decrement(d.peers.p(ProcType::PROC_CONTROL), "mda.user", 1);
    if u.flags & USER_HOLDQ != 0 {
        let p = d.peers.p(ProcType::PROC_QUEUE);
        m_create(p, ImsgType::IMSG_MDA_HOLDQ_RELEASE, 0, 0, None);
        m_add_id(p, uid);
        m_add_int(p, 0);
        m_close(p);
    }
}

fn mda_user_to_text(u: &MdaUser) -> String {
    format!("{}:{}", u.usertable, u.name)
}

/// mda_envelope(): what the delivery keeps of an envelope.
fn mda_envelope(session_id: u64, evp: &Envelope) -> MdaEnvelope {
    let sender = if !evp.sender.user.is_empty() && !evp.sender.domain.is_empty() {
        format!("{}@{}", evp.sender.user, evp.sender.domain)
    } else {
        String::new()
    };
    MdaEnvelope {
        session_id,
        id: evp.id,
        creation: evp.creation,
        sender,
        rcpt: format!("{}@{}", evp.rcpt.user, evp.rcpt.domain),
        dest: format!("{}@{}", evp.dest.user, evp.dest.domain),
        user: if evp.mda_user.is_empty() {
            evp.dest.user.clone()
        } else {
            evp.mda_user.clone()
        },
        dispatcher: evp.dispatcher.clone(),
        mda_subaddress: (!evp.mda_subaddress.is_empty()).then(|| evp.mda_subaddress.clone()),
        mda_exec: (!evp.mda_exec.is_empty()).then(|| evp.mda_exec.clone()),
    }
}

/// mda_session(): a delivery of the user's first envelope starts with
/// its message file, asked of the queue.
fn mda_session(d: &mut Dispatcher, uid: u64) {
    let Some(u) = d.mda.users.get_mut(&uid) else {
        return;
    };
    let Some(evp) = u.envelopes.pop_front() else {
        return;
    };
    u.running += 1;
    let id = generate_uid();
    log_debug!(
        "debug: mda: new session {id:016x} for user \"{}\" evpid {:016x}",
        mda_user_to_text(u),
        evp.id
    );
    let msgid = evpid_to_msgid(evp.id);
    let p = d.peers.p(ProcType::PROC_CONTROL);
    stat_decrement(p, "mda.pending", 1);
    stat_increment(p, "mda.running", 1);
    d.mda.sessions.insert(
        id,
        MdaSession {
            user: uid,
            evp,
            io: Some(Io::new()),
            datafp: None,
        },
    );
    let p = d.peers.p(ProcType::PROC_QUEUE);
    m_create(p, ImsgType::IMSG_MDA_OPEN_MESSAGE, 0, 0, None);
    m_add_id(p, id);
    m_add_msgid(p, msgid);
    m_close(p);
}

/// mda_sysexit_to_str(): sysexits(3) in words.
fn mda_sysexit_to_str(sysexit: i32) -> Option<&'static str> {
    Some(match sysexit {
        64 => "command line usage error",
        65 => "data format error",
        66 => "cannot open input",
        67 => "user unknown",
        68 => "host name unknown",
        69 => "service unavailable",
        70 => "internal software error",
        71 => "system resource problem",
        72 => "critical OS file missing",
        73 => "can't create user output file",
        74 => "input/output error",
        75 => "temporary failure",
        76 => "remote error in protocol",
        77 => "permission denied",
        78 => "local configuration error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defines::{SMTPD_MAXDOMAINPARTSIZE, SMTPD_MAXLOCALPARTSIZE};
    use std::ptr::addr_of;

    // The structs of smtpd.h as a C compiler lays them out.
    #[repr(C)]
    struct CMailaddr {
        user: [libc::c_char; SMTPD_MAXLOCALPARTSIZE],
        domain: [libc::c_char; SMTPD_MAXDOMAINPARTSIZE],
    }

    #[repr(C)]
    struct CUserinfo {
        username: [libc::c_char; SMTPD_VUSERNAME_SIZE],
        directory: [libc::c_char; PATH_MAX],
        uid: libc::uid_t,
        gid: libc::gid_t,
    }

    #[repr(C)]
    struct CDeliver {
        dispatcher: [libc::c_char; EXPAND_BUFFER],
        sender: CMailaddr,
        rcpt: CMailaddr,
        dest: CMailaddr,
        mda_subaddress: [libc::c_char; SMTPD_SUBADDRESS_SIZE],
        mda_exec: [libc::c_char; LINE_MAX],
        userinfo: CUserinfo,
    }

    fn c_mailaddr() -> CMailaddr {
        CMailaddr {
            user: [0; SMTPD_MAXLOCALPARTSIZE],
            domain: [0; SMTPD_MAXDOMAINPARTSIZE],
        }
    }

    fn sample() -> Deliver {
        Deliver {
            dispatcher: "local_mail".into(),
            sender: Mailaddr::new("alice", "example.com"),
            rcpt: Mailaddr::new("bob+lists", "example.org"),
            dest: Mailaddr::new("bob", "example.org"),
            mda_subaddress: "lists".into(),
            mda_exec: "/usr/bin/procmail -d bob".into(),
            userinfo: Userinfo {
                username: "bob".into(),
                directory: "/home/bob".into(),
                uid: 1001,
                gid: 0x0102_0304,
            },
        }
    }

    #[test]
    fn size_and_offsets_are_those_of_the_c_struct() {
        assert_eq!(USERINFO_SIZE, 256 + PATH_MAX + 8);
        assert_eq!(DELIVER_SIZE, 4864 + USERINFO_SIZE);
        #[cfg(target_os = "linux")]
        assert_eq!(DELIVER_SIZE, 9224);
        #[cfg(target_os = "openbsd")]
        assert_eq!(DELIVER_SIZE, 6152);
        assert_eq!(USERINFO_SIZE, size_of::<CUserinfo>());
        assert_eq!(DELIVER_SIZE, size_of::<CDeliver>());
        let c = CDeliver {
            dispatcher: [0; EXPAND_BUFFER],
            sender: c_mailaddr(),
            rcpt: c_mailaddr(),
            dest: c_mailaddr(),
            mda_subaddress: [0; SMTPD_SUBADDRESS_SIZE],
            mda_exec: [0; LINE_MAX],
            userinfo: CUserinfo {
                username: [0; SMTPD_VUSERNAME_SIZE],
                directory: [0; PATH_MAX],
                uid: 0,
                gid: 0,
            },
        };
        let base = addr_of!(c) as usize;
        let off = |p: usize| p - base;
        assert_eq!(off(addr_of!(c.sender) as usize), D_SENDER);
        assert_eq!(off(addr_of!(c.rcpt) as usize), D_RCPT);
        assert_eq!(off(addr_of!(c.dest) as usize), D_DEST);
        assert_eq!(off(addr_of!(c.mda_subaddress) as usize), D_SUBADDRESS);
        assert_eq!(off(addr_of!(c.mda_exec) as usize), D_EXEC);
        assert_eq!(off(addr_of!(c.userinfo) as usize), D_USERINFO);
        assert_eq!(
            off(addr_of!(c.userinfo.directory) as usize),
            D_USERINFO + UI_DIRECTORY
        );
        assert_eq!(off(addr_of!(c.userinfo.uid) as usize), D_USERINFO + UI_UID);
        assert_eq!(off(addr_of!(c.userinfo.gid) as usize), D_USERINFO + UI_GID);
    }

    #[test]
    fn round_trips_through_bytes() {
        let d = sample();
        let b = d.to_bytes().unwrap();
        assert_eq!(b.len(), DELIVER_SIZE);
        assert_eq!(Deliver::from_bytes(&b).unwrap(), d);
        assert_eq!(
            Deliver::from_bytes(&Deliver::default().to_bytes().unwrap()).unwrap(),
            Deliver::default()
        );
    }

    #[test]
    fn fields_sit_at_their_c_offsets_nul_padded_and_ids_native() {
        let b = sample().to_bytes().unwrap();
        assert_eq!(&b[..11], b"local_mail\0");
        assert!(b[11..1024].iter().all(|&x| x == 0));
        assert_eq!(&b[1024..1030], b"alice\0");
        assert_eq!(&b[1280..1292], b"example.com\0");
        assert_eq!(&b[1536..1546], b"bob+lists\0");
        assert_eq!(&b[2048..2052], b"bob\0");
        assert_eq!(&b[2560..2566], b"lists\0");
        assert_eq!(&b[2816..2841], b"/usr/bin/procmail -d bob\0");
        assert_eq!(&b[4864..4868], b"bob\0");
        assert_eq!(&b[5120..5130], b"/home/bob\0");
        assert!(b[5130..5120 + PATH_MAX].iter().all(|&x| x == 0));
        let uid = 5120 + PATH_MAX;
        assert_eq!(&b[uid..uid + 4], &1001u32.to_ne_bytes());
        assert_eq!(&b[uid + 4..uid + 8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(uid + 8, DELIVER_SIZE);
    }

    #[test]
    fn too_long_strings_are_refused_not_cut() {
        let mut d = sample();
        d.mda_exec = "x".repeat(LINE_MAX - 1);
        assert!(d.to_bytes().is_ok());
        d.mda_exec.push('x');
        assert_eq!(
            d.to_bytes().unwrap_err(),
            LayoutError::TooLong {
                field: "mda_exec".into(),
                len: LINE_MAX,
                size: LINE_MAX
            }
        );
        let mut d = sample();
        d.userinfo.directory = "/".repeat(PATH_MAX);
        assert_eq!(
            d.to_bytes().unwrap_err().to_string(),
            format!(
                "userinfo.directory: {PATH_MAX} bytes do not fit in char[{PATH_MAX}] (at most {})",
                PATH_MAX - 1
            )
        );
        let mut d = sample();
        d.dest.domain = "d".repeat(256);
        assert!(matches!(
            d.to_bytes(),
            Err(LayoutError::TooLong { field, .. }) if field == "dest.domain"
        ));
        let mut d = sample();
        d.dispatcher = "a\0b".into();
        assert!(matches!(d.to_bytes(), Err(LayoutError::Nul { .. })));
    }

    #[test]
    fn blobs_of_the_wrong_size_are_refused() {
        for len in [0, DELIVER_SIZE - 1, DELIVER_SIZE + 1] {
            assert_eq!(
                Deliver::from_bytes(&vec![0; len]).unwrap_err().to_string(),
                format!("struct deliver: {len} bytes, expected {DELIVER_SIZE}")
            );
        }
    }

    #[test]
    fn unterminated_or_non_utf8_arrays_are_refused() {
        let mut b = sample().to_bytes().unwrap();
        b[2560..2816].fill(b'a');
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err(),
            LayoutError::Unterminated {
                field: "mda_subaddress".into()
            }
        );
        let mut b = sample().to_bytes().unwrap();
        b[4864] = 0xc3; // a lone UTF-8 lead byte
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err(),
            LayoutError::NotUtf8 {
                field: "userinfo.username".into()
            }
        );
        let mut b = sample().to_bytes().unwrap();
        b[1536..1792].fill(b'r');
        assert_eq!(
            Deliver::from_bytes(&b).unwrap_err().to_string(),
            "rcpt.user: not NUL-terminated"
        );
    }
}
