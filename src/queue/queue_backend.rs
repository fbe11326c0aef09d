//! queue_backend.c: the spool and the queue backends (OpenSMTPD
//! queue_backend.c 1.69).
//!
//! queue_init() sets up the spool directories with OpenSMTPD's owners and
//! modes (the parent, and the queue process before its chroot);
//! queue_open() then gives the queue process its [`QueueBackend`]: the
//! backend chosen by `-B queue=` (`fs`, `ram` or `null`; C's function
//! pointers become the [`QueueApi`] trait), the envelope cache, and what
//! envelope_validate() checks against. The queue_* functions are C's,
//! with the backend as first argument.
//!
//! Where we differ from OpenSMTPD 7.8, on purpose:
//! - queue_message_commit() takes a batch: the messages whose commit
//!   requests came in one turn of the event loop, made durable together
//!   (see queue_fs.rs) before any of them is acknowledged;
//! - an envelope whose text cannot be read is moved to `corrupt/`
//!   (queue_envelope_corrupt) instead of being left where the next start
//!   trips on it again; OpenSMTPD 6.4 and before did this for the whole
//!   message, 6.5 dropped it. An envelope whose dispatcher is gone stays
//!   queued, as in 7.8, with 7.8's warning.
//! - queue compression and encryption are not there yet: their places
//!   are marked, and queue_open() refuses the flags until they are.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::config::QueueFlags;
use crate::defines::{HOST_NAME_MAX, LINE_MAX};
use crate::pathnames::{path_spool, SMTPD_QUEUE_USER};
use crate::queue::envelope::{
    envelope_dump_buffer, envelope_load_buffer, evpid_to_msgid, msgid_to_evpid, Envelope,
    EnvelopeError, SMTPD_ENVELOPE_VERSION,
};
use crate::queue::queue_fs::{queue_fs_init, QueueFs};
use crate::queue::queue_null::QueueNull;
use crate::queue::queue_ram::QueueRam;
use crate::sys::process::{getgrnam, getpwnam};
use crate::sys::unistd::arc4random;
use crate::util::log::TRACE_QUEUE;
use crate::util::stat_backend::stat_note;
use crate::util::util::{ckdir, mvpurge, time_now};

pub const PATH_OFFLINE: &str = "/offline";
pub const PATH_PURGE: &str = "/purge";
pub const PATH_TEMPORARY: &str = "/temporary";
pub const PATH_QUEUE: &str = "/queue";
pub const PATH_INCOMING: &str = "/incoming";

/// The uid of a message's submitter when it was no local user (the
/// IMSG_SMTP_MESSAGE_CREATE of a network session).
pub const NO_OWNER: u32 = u32::MAX;

/// sc_queue_evpcache_size: how many envelopes the queue process keeps
/// in memory (queue() sets it).
pub const QUEUE_EVPCACHE_SIZE: usize = 1024;

/// What a backend's walk gives back each time it is called.
pub enum BackendWalk {
    /// Nothing more (C's -1).
    Done,
    /// An entry that could not be read (C's 0).
    Skip,
    /// An envelope's id and the bytes of its file.
    Loaded(u64, Vec<u8>),
}

/// The handlers a backend registers with queue_api_on_*() in C. The
/// message data arrives through a file of the spool's temporary/ that the
/// dispatcher writes (queue_message_fd_rw); commit takes it from there.
/// Errors are logged by the backend, as in C; results say only whether
/// the operation happened.
/// A backend's commit of a batch, run away from the queue's loop.
pub type Committer = Box<dyn FnMut(&[(u32, PathBuf)]) -> Vec<bool> + Send>;

pub trait QueueApi {
    fn close(&mut self) -> bool {
        true
    }
    fn message_create(&mut self) -> Option<u32>;
    /// Commits each `(msgid, path of its data)` of the batch; one result
    /// for each, in order.
    fn message_commit(&mut self, batch: &[(u32, PathBuf)]) -> Vec<bool>;
    /// message_commit() in a form another thread can own, for a backend
    /// whose commits wait for the disk, so that the queue's loop goes on
    /// meanwhile; None when commits cost nothing.
    fn message_committer(&self) -> Option<Committer> {
        None
    }
    fn message_delete(&mut self, msgid: u32) -> bool;
    fn message_fd_r(&mut self, msgid: u32) -> Option<File>;
    /// Sets the whole message aside, where no walk finds it.
    fn message_corrupt(&mut self, msgid: u32) -> bool;
    /// Puts back what was set aside for the message.
    fn message_uncorrupt(&mut self, msgid: u32) -> bool;
    fn envelope_create(&mut self, msgid: u32, buf: &[u8]) -> Option<u64>;
    fn envelope_delete(&mut self, evpid: u64) -> bool;
    fn envelope_update(&mut self, evpid: u64, buf: &[u8]) -> bool;
    /// The bytes of the envelope, however wrong they may be; an error
    /// when it is not there or cannot be read now.
    fn envelope_load(&mut self, evpid: u64) -> io::Result<Vec<u8>>;
    /// Sets one envelope aside (and the message's data with it).
    fn envelope_corrupt(&mut self, evpid: u64) -> bool;
    /// The next envelope of the whole queue, for the walk at start.
    fn envelope_walk(&mut self) -> BackendWalk;
    /// The ids of a message's envelopes.
    fn message_walk(&mut self, msgid: u32) -> io::Result<Vec<u64>>;
    /// Records which local user submitted the message being received,
    /// so that they may list and remove it (not in C). A backend that
    /// cannot keep it says no, and the message has no owner.
    fn message_set_owner(&mut self, _msgid: u32, _uid: u32) -> bool {
        false
    }
    /// The local user who submitted a committed message, if one did.
    fn message_owner(&mut self, _msgid: u32) -> Option<u32> {
        None
    }
    /// The committed messages `uid` submitted, from `from` on, in order,
    /// at most `n`.
    fn message_owned(&mut self, _uid: u32, _from: u32, _n: usize) -> Vec<u32> {
        Vec::new()
    }
}

/// The queue process's view of the spool: C's `backend` and the
/// handler pointers, the envelope cache, and the configuration that
/// queue_backend.c reads from `env`.
pub struct QueueBackend {
    backend: Box<dyn QueueApi>,
    /// The spool's root: `/` once chrooted into it.
    spool: PathBuf,
    flags: QueueFlags,
    evpcache: EvpCache,
    /// The dispatchers of the configuration; None: not checked.
    dispatchers: Option<BTreeSet<String>>,
}

/// What queue_envelope_walk() and queue_message_walk() give back.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueWalk {
    /// The walk is over (C's -1).
    Done,
    /// An entry that is not a valid envelope, logged (C's 0).
    Skip,
    /// A valid envelope (C's 1).
    Envelope(Box<Envelope>),
}

/// The state of one queue_message_walk(), C's `done` and `data`: one for
/// each walk, so that several may run at once.
#[derive(Debug)]
pub struct MessageWalk {
    pub msgid: u32,
    done: bool,
    evpids: Option<VecDeque<u64>>,
}

impl MessageWalk {
    pub fn new(msgid: u32) -> MessageWalk {
        MessageWalk {
            msgid,
            done: false,
            evpids: None,
        }
    }
}

/// queue_message_path(): where the dispatcher writes a message's data
/// before commit, temporary/ under the spool.
fn queue_message_path(q: &QueueBackend, msgid: u32) -> PathBuf {
    q.spool
        .join(format!("{}/{msgid:08x}", &PATH_TEMPORARY[1..]))
}

/// queue_init(): for the server (`server` set), the spool root (0711
/// root), offline (0770 root:_smtpq, where sendmail leaves mail while the
/// daemon is down), purge and temporary (0700 _smtpq); then the
/// backend's own setup: the fs backend's directories (queue_fs_init);
/// ram and null need none.
pub fn queue_init(name: &str, server: bool) -> bool {
    let pwq = match getpwnam(SMTPD_QUEUE_USER) {
        Ok(Some(pw)) => pw,
        _ => fatalx!("unknown user {SMTPD_QUEUE_USER}"),
    };
    let gid = match getgrnam(SMTPD_QUEUE_USER) {
        Ok(Some(g)) => g,
        _ => fatalx!("unknown group {SMTPD_QUEUE_USER}"),
    };
    if !matches!(name, "fs" | "ram" | "null") {
        // C falls back to queue_proc, an external backend.
        fatalx!("queue backend \"{name}\" is not supported yet");
    }
    let spool = path_spool();
    if server {
        if !ckdir(&spool, 0o711, 0, 0, true) {
            fatalx!("error in spool directory setup");
        }
        if !ckdir(&format!("{spool}{PATH_OFFLINE}"), 0o770, 0, gid, true) {
            fatalx!("error in offline directory setup");
        }
        if !ckdir(&format!("{spool}{PATH_PURGE}"), 0o700, pwq.uid, 0, true) {
            fatalx!("error in purge directory setup");
        }
        let _ = mvpurge(
            &format!("{spool}{PATH_TEMPORARY}"),
            &format!("{spool}{PATH_PURGE}"),
        );
        if !ckdir(&format!("{spool}{PATH_TEMPORARY}"), 0o700, pwq.uid, 0, true) {
            fatalx!("error in purge directory setup");
        }
    }
    let r = if name == "fs" {
        queue_fs_init(&spool, pwq.uid, server)
    } else {
        true
    };
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_init({}) -> {}",
        i32::from(server),
        i32::from(r)
    );
    r
}

/// queue_open(): the backend `name` over the spool at `spool` (`/` in
/// the queue process, chrooted there after queue_init), C's
/// backend->init() less the directories. `flags` are the configuration's
/// queue flags, with QUEUE_EVPCACHE for the queue process as queue()
/// sets it; `dispatchers`, the configuration's dispatcher names, are
/// what envelope_validate() accepts (None: any).
pub fn queue_open(
    name: &str,
    spool: &Path,
    flags: QueueFlags,
    dispatchers: Option<BTreeSet<String>>,
) -> Result<QueueBackend, String> {
    // Compression and encryption would change every file's bytes: better
    // to refuse to start than to write a spool the configuration did not
    // ask for.
    if flags.contains(QueueFlags::QUEUE_COMPRESSION) {
        return Err("queue compression is not supported yet".into());
    }
    if flags.contains(QueueFlags::QUEUE_ENCRYPTION) {
        return Err("queue encryption is not supported yet".into());
    }
    let backend: Box<dyn QueueApi> = match name {
        "fs" => Box::new(QueueFs::new(spool)),
        "ram" => Box::new(QueueRam::new(spool)),
        "null" => Box::new(QueueNull),
        _ => return Err(format!("queue backend \"{name}\" is not supported yet")),
    };
    let evpcache_size = if flags.contains(QueueFlags::QUEUE_EVPCACHE) {
        QUEUE_EVPCACHE_SIZE
    } else {
        0
    };
    Ok(QueueBackend {
        backend,
        spool: spool.to_path_buf(),
        flags,
        evpcache: EvpCache::new(evpcache_size),
        dispatchers,
    })
}

/// queue_close().
pub fn queue_close(q: &mut QueueBackend) -> bool {
    q.backend.close()
}

/// queue_message_create(): a new message, in incoming/ for fs.
pub fn queue_message_create(q: &mut QueueBackend) -> Option<u32> {
    let r = q.backend.message_create();
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_message_create() -> {} ({:08x})",
        i32::from(r.is_some()),
        r.unwrap_or(0)
    );
    r
}

/// The owner of a message being received: see QueueApi::message_set_owner.
pub fn queue_message_set_owner(q: &mut QueueBackend, msgid: u32, uid: u32) -> bool {
    q.backend.message_set_owner(msgid, uid)
}

/// The local user who submitted a committed message, if one did.
pub fn queue_message_owner(q: &mut QueueBackend, msgid: u32) -> Option<u32> {
    q.backend.message_owner(msgid)
}

/// The committed messages of `uid`, from `from` on, at most `n`.
pub fn queue_message_owned(q: &mut QueueBackend, uid: u32, from: u32, n: usize) -> Vec<u32> {
    q.backend.message_owned(uid, from, n)
}

/// queue_message_delete(): the message, its data file if it was never
/// committed, and its envelopes in the cache (on rollback).
pub fn queue_message_delete(q: &mut QueueBackend, msgid: u32) -> bool {
    let r = q.backend.message_delete(msgid);
    let _ = std::fs::remove_file(queue_message_path(q, msgid));
    q.evpcache.del_message(msgid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_message_delete({msgid:08x}) -> {}",
        i32::from(r)
    );
    r
}

/// queue_message_commit(): commits a batch of messages, each with the
/// data the dispatcher wrote to its temporary file, and says for each
/// whether it is now queued, durably for fs. OpenSMTPD commits one
/// message per call; the batch lets the fs backend share the directory
/// fsyncs between the messages of one turn of the event loop.
pub fn queue_message_commit(q: &mut QueueBackend, msgids: &[u32]) -> Vec<bool> {
    let b = queue_message_commit_begin(q, msgids);
    let results = q.backend.message_commit(&b.batch);
    queue_message_commit_end(q, b, results)
}

/// A batch of commits between queue_message_commit_begin() and _end():
/// `batch` is the backend's part, for message_commit() or a Committer.
pub struct CommitBatch {
    msgids: Vec<u32>,
    filtered: Vec<bool>,
    pub batch: Vec<(u32, PathBuf)>,
}

/// queue_message_commit()'s first half, on the queue's loop: the data
/// files through the filters, and what the backend is to commit.
pub fn queue_message_commit_begin(q: &QueueBackend, msgids: &[u32]) -> CommitBatch {
    let mut batch = Vec::with_capacity(msgids.len());
    let mut filtered = Vec::with_capacity(msgids.len());
    for &msgid in msgids {
        let msgpath = queue_message_path(q, msgid);
        // Compression, then encryption, rewrite the data file in place
        // here (compress_file, crypto_encrypt_file); queue_open refuses
        // both flags until they exist.
        let ok = queue_message_commit_filters(q, &msgpath);
        filtered.push(ok);
        if ok {
            batch.push((msgid, msgpath));
        }
    }
    CommitBatch {
        msgids: msgids.to_vec(),
        filtered,
        batch,
    }
}

/// queue_message_commit()'s second half, on the queue's loop once the
/// backend is done: one result for each message of the batch.
pub fn queue_message_commit_end(q: &QueueBackend, b: CommitBatch, results: Vec<bool>) -> Vec<bool> {
    let mut results = results.into_iter();
    let mut out = Vec::with_capacity(b.msgids.len());
    for (&msgid, filtered) in b.msgids.iter().zip(b.filtered) {
        let r = filtered && results.next().unwrap_or(false);
        // In case it is not done by the backend.
        let _ = std::fs::remove_file(queue_message_path(q, msgid));
        log_trace!(
            TRACE_QUEUE,
            "queue-backend: queue_message_commit({msgid:08x}) -> {}",
            i32::from(r)
        );
        out.push(r);
    }
    out
}

/// The backend's Committer, if its commits are worth a thread.
pub fn queue_message_committer(q: &QueueBackend) -> Option<Committer> {
    q.backend.message_committer()
}

/// The seam for queue compression and encryption at commit: a no-op
/// until they exist (queue_open refuses the flags meanwhile).
fn queue_message_commit_filters(q: &QueueBackend, _msgpath: &Path) -> bool {
    debug_assert!(!q
        .flags
        .intersects(QueueFlags::QUEUE_COMPRESSION | QueueFlags::QUEUE_ENCRYPTION));
    true
}

/// queue_message_corrupt(): sets a whole message aside (fs: into
/// corrupt/), out of the queue's walks, until queue_message_uncorrupt().
/// OpenSMTPD 6.4's; nothing calls it on its own here, see
/// queue_envelope_corrupt.
pub fn queue_message_corrupt(q: &mut QueueBackend, msgid: u32) -> bool {
    let r = q.backend.message_corrupt(msgid);
    q.evpcache.del_message(msgid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_message_corrupt({msgid:08x}) -> {}",
        i32::from(r)
    );
    r
}

/// queue_message_uncorrupt(): puts back what was set aside for the
/// message; the caller then discovers it (queue_message_walk) for the
/// scheduler.
pub fn queue_message_uncorrupt(q: &mut QueueBackend, msgid: u32) -> bool {
    q.backend.message_uncorrupt(msgid)
}

/// queue_message_fd_r(): the message's data, for delivery.
pub fn queue_message_fd_r(q: &mut QueueBackend, msgid: u32) -> Option<File> {
    let fdin = q.backend.message_fd_r(msgid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_message_fd_r({msgid:08x}) -> {}",
        fdin.as_ref().map_or(-1, |f| f.as_raw_fd())
    );
    // Decryption, then decompression, into temporary files go here
    // (crypto_decrypt_file, uncompress_file); see queue_open.
    fdin
}

/// queue_message_fd_rw(): the file the dispatcher writes the message's
/// data to, temporary/MSGID, new and private to the queue user.
pub fn queue_message_fd_rw(q: &mut QueueBackend, msgid: u32) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(queue_message_path(q, msgid))
        .ok()
}

/// queue_envelope_dump_buffer(): the text form, then compression and
/// encryption (compress_chunk, crypto_encrypt_buffer) when they exist.
fn queue_envelope_dump_buffer(ep: &Envelope) -> Result<Vec<u8>, EnvelopeError> {
    envelope_dump_buffer(ep).map(String::into_bytes)
}

/// queue_envelope_load_buffer(): decryption and decompression
/// (crypto_decrypt_buffer, uncompress_chunk) when they exist, then the
/// text form.
fn queue_envelope_load_buffer(evpbuf: &[u8]) -> Result<Envelope, EnvelopeError> {
    envelope_load_buffer(evpbuf)
}

/// The envelope cache (evpcache_tree and evpcache_list): the most
/// recently stored envelopes, the oldest dropped first.
struct EvpCache {
    size: usize,
    /// evpid -> (envelope, its tick in `order`).
    tree: HashMap<u64, (Envelope, u64)>,
    /// tick -> evpid, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl EvpCache {
    fn new(size: usize) -> EvpCache {
        EvpCache {
            size,
            tree: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.size > 0
    }

    /// queue_envelope_cache_add(): the oldest make room. C's add is
    /// fatal for an envelope already there; here it replaces it.
    fn add(&mut self, e: &Envelope) {
        if !self.enabled() {
            return;
        }
        if self.remove(e.id) {
            stat_note("queue.evpcache.size", -1);
        }
        while self.tree.len() >= self.size {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.tree.remove(&oldest);
            stat_note("queue.evpcache.size", -1);
        }
        self.tick += 1;
        self.order.insert(self.tick, e.id);
        self.tree.insert(e.id, (e.clone(), self.tick));
        stat_note("queue.evpcache.size", 1);
    }

    /// queue_envelope_cache_update(): the new version, the most recent.
    fn update(&mut self, e: &Envelope) {
        if !self.enabled() {
            return;
        }
        let key = if self.tree.contains_key(&e.id) {
            "queue.evpcache.update.hit"
        } else {
            "queue.evpcache.update.missed"
        };
        self.add(e);
        stat_note(key, 1);
    }

    /// The cached envelope, counted as a hit.
    fn get(&self, evpid: u64) -> Option<&Envelope> {
        let e = self.tree.get(&evpid).map(|(e, _)| e);
        if e.is_some() {
            stat_note("queue.evpcache.load.hit", 1);
        }
        e
    }

    /// Drops an envelope; whether it was there.
    fn remove(&mut self, evpid: u64) -> bool {
        match self.tree.remove(&evpid) {
            Some((_, tick)) => {
                self.order.remove(&tick);
                true
            }
            None => false,
        }
    }

    /// queue_envelope_cache_del().
    fn del(&mut self, evpid: u64) {
        if self.remove(evpid) {
            stat_note("queue.evpcache.size", -1);
        }
    }

    fn del_message(&mut self, msgid: u32) {
        let gone: Vec<u64> = self
            .tree
            .keys()
            .copied()
            .filter(|&evpid| evpid_to_msgid(evpid) == msgid)
            .collect();
        for evpid in gone {
            self.del(evpid);
        }
    }
}

/// queue_envelope_create(): stores a new envelope for the message of
/// `ep.id`, and gives it its id and creation time.
pub fn queue_envelope_create(q: &mut QueueBackend, ep: &mut Envelope) -> bool {
    ep.creation = time_now();
    ep.version = SMTPD_ENVELOPE_VERSION;
    let evpbuf = match queue_envelope_dump_buffer(ep) {
        Ok(b) => b,
        Err(e) => {
            e.log();
            ep.creation = 0;
            ep.id = 0;
            return false;
        }
    };
    let evpid = ep.id;
    let msgid = evpid_to_msgid(evpid);
    let r = q.backend.envelope_create(msgid, &evpbuf);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_create({evpid:016x}, {}) -> {} ({:016x})",
        evpbuf.len(),
        i32::from(r.is_some()),
        r.unwrap_or(0)
    );
    match r {
        Some(id) => {
            ep.id = id;
            q.evpcache.add(ep);
            true
        }
        None => {
            ep.creation = 0;
            ep.id = 0;
            false
        }
    }
}

/// queue_envelope_delete().
pub fn queue_envelope_delete(q: &mut QueueBackend, evpid: u64) -> bool {
    q.evpcache.del(evpid);
    let r = q.backend.envelope_delete(evpid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_delete({evpid:016x}) -> {}",
        i32::from(r)
    );
    r
}

/// queue_envelope_load(): the envelope, from the cache or the backend;
/// None when it is gone or not valid (then logged, and set aside if its
/// text is broken).
pub fn queue_envelope_load(q: &mut QueueBackend, evpid: u64) -> Option<Envelope> {
    if let Some(cached) = q.evpcache.get(evpid) {
        return Some(cached.clone());
    }
    let evpbuf = q.backend.envelope_load(evpid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_load({evpid:016x}) -> {}",
        evpbuf.as_ref().map_or(0, Vec::len)
    );
    let ep = queue_envelope_check(q, evpid, &evpbuf.ok()?)?;
    if q.evpcache.enabled() {
        q.evpcache.add(&ep);
        stat_note("queue.evpcache.load.missed", 1);
    }
    Some(ep)
}

/// queue_envelope_update(): rewrites the envelope (fs: atomically and
/// durably).
pub fn queue_envelope_update(q: &mut QueueBackend, ep: &Envelope) -> bool {
    let evpbuf = match queue_envelope_dump_buffer(ep) {
        Ok(b) => b,
        Err(e) => {
            e.log();
            return false;
        }
    };
    let r = q.backend.envelope_update(ep.id, &evpbuf);
    if r {
        q.evpcache.update(ep);
    }
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_update({:016x}) -> {}",
        ep.id,
        i32::from(r)
    );
    r
}

/// queue_message_walk(): the next envelope of one message, for
/// `smtpctl discover`. Not cached: discovering may walk envelopes the
/// scheduler already has.
pub fn queue_message_walk(q: &mut QueueBackend, w: &mut MessageWalk) -> QueueWalk {
    if w.done {
        return QueueWalk::Done;
    }
    if w.evpids.is_none() {
        match q.backend.message_walk(w.msgid) {
            Ok(list) => w.evpids = Some(list.into()),
            Err(_) => {
                w.done = true;
                return QueueWalk::Done;
            }
        }
    }
    let Some(evpid) = w.evpids.as_mut().and_then(VecDeque::pop_front) else {
        w.done = true;
        return QueueWalk::Done;
    };
    let evpbuf = q.backend.envelope_load(evpid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_message_walk() -> {} ({evpid:016x})",
        evpbuf.as_ref().map_or(0, Vec::len)
    );
    match evpbuf.ok().and_then(|b| queue_envelope_check(q, evpid, &b)) {
        Some(ep) => QueueWalk::Envelope(Box::new(ep)),
        None => QueueWalk::Skip,
    }
}

/// queue_envelope_walk(): the next envelope of the queue, for the
/// scheduler at start. Envelopes created since the backend was opened
/// are not walked: the scheduler learnt of them when they were.
pub fn queue_envelope_walk(q: &mut QueueBackend) -> QueueWalk {
    let r = q.backend.envelope_walk();
    let (evpid, evpbuf) = match r {
        BackendWalk::Done => {
            log_trace!(TRACE_QUEUE, "queue-backend: queue_envelope_walk() -> -1");
            return QueueWalk::Done;
        }
        BackendWalk::Skip => {
            log_trace!(TRACE_QUEUE, "queue-backend: queue_envelope_walk() -> 0");
            return QueueWalk::Skip;
        }
        BackendWalk::Loaded(evpid, evpbuf) => (evpid, evpbuf),
    };
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_walk() -> {} ({evpid:016x})",
        evpbuf.len()
    );
    match queue_envelope_check(q, evpid, &evpbuf) {
        Some(ep) => {
            q.evpcache.add(&ep);
            QueueWalk::Envelope(Box::new(ep))
        }
        None => QueueWalk::Skip,
    }
}

/// The common end of queue_envelope_load and the walks: the text read
/// into an envelope and validated as C does, with C's warnings. An
/// envelope whose text is broken is set aside (queue_envelope_corrupt);
/// one whose dispatcher is gone from the configuration stays queued.
fn queue_envelope_check(q: &mut QueueBackend, evpid: u64, evpbuf: &[u8]) -> Option<Envelope> {
    // OpenSMTPD skips an empty file without a word; an empty envelope
    // is a broken one (a crash before its data reached the disk).
    if evpbuf.is_empty() {
        log_warnx!("warn: invalid envelope {evpid:016x}: empty file");
        queue_envelope_corrupt(q, evpid);
        return None;
    }
    let mut ep = match queue_envelope_load_buffer(evpbuf) {
        Ok(ep) => ep,
        Err(e) => {
            e.log();
            queue_envelope_corrupt(q, evpid);
            return None;
        }
    };
    match envelope_validate(&ep, q.dispatchers.as_ref()) {
        Ok(()) => {
            ep.id = evpid;
            Some(ep)
        }
        Err(e) => {
            log_warnx!("warn: invalid envelope {evpid:016x}: {e}");
            if e != "unknown dispatcher" {
                queue_envelope_corrupt(q, evpid);
            }
            None
        }
    }
}

/// queue_envelope_corrupt(): sets aside an envelope whose text is
/// broken, with a hard link to its message's data (fs: corrupt/MSGID/),
/// where queue_message_uncorrupt() finds it. No C twin: OpenSMTPD 6.4
/// moved the whole message, so that the other envelopes of a message
/// the scheduler was already delivering vanished under it.
pub fn queue_envelope_corrupt(q: &mut QueueBackend, evpid: u64) -> bool {
    q.evpcache.del(evpid);
    let r = q.backend.envelope_corrupt(evpid);
    log_trace!(
        TRACE_QUEUE,
        "queue-backend: queue_envelope_corrupt({evpid:016x}) -> {}",
        i32::from(r)
    );
    r
}

/// queue_generate_msgid(): a random message id, never 0.
pub fn queue_generate_msgid() -> u32 {
    loop {
        let msgid = arc4random();
        if msgid != 0 {
            return msgid;
        }
    }
}

/// queue_generate_evpid(): a random envelope id of the message, whose
/// low half is never 0 (that is msgid_to_evpid's).
pub fn queue_generate_evpid(msgid: u32) -> u64 {
    loop {
        let rnd = arc4random();
        if rnd != 0 {
            return msgid_to_evpid(msgid) | u64::from(rnd);
        }
    }
}

/// envelope_validate(): what an envelope read back must have, C's
/// reasons as its words.
fn envelope_validate(
    ep: &Envelope,
    dispatchers: Option<&BTreeSet<String>>,
) -> Result<(), &'static str> {
    if ep.version != SMTPD_ENVELOPE_VERSION {
        return Err("version mismatch");
    }
    if ep.helo.len() > HOST_NAME_MAX {
        return Err("invalid helo");
    }
    if ep.helo.is_empty() {
        return Err("empty helo");
    }
    if ep.hostname.len() > HOST_NAME_MAX {
        return Err("invalid hostname");
    }
    if ep.hostname.is_empty() {
        return Err("empty hostname");
    }
    if ep.errorline.len() >= LINE_MAX {
        return Err("invalid error line");
    }
    if dispatchers.is_some_and(|d| !d.contains(&ep.dispatcher)) {
        return Err("unknown dispatcher");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::envelope::{DeliveryType, PeerAddr};
    use crate::util::mailaddr::Mailaddr;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    /// A private spool with the directories queue_init makes, removed
    /// when the test ends.
    struct Spool(PathBuf);

    impl Spool {
        fn new(tag: &str) -> Spool {
            let dir = std::env::temp_dir().join(format!(
                "smtpd-queue-{tag}-{}-{:08x}",
                std::process::id(),
                arc4random()
            ));
            for sub in ["", "temporary", "incoming", "queue", "purge"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            Spool(dir)
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }
    }

    impl Drop for Spool {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dispatchers() -> Option<BTreeSet<String>> {
        Some(["relay".to_string(), "local".to_string()].into())
    }

    fn open(name: &str, spool: &Spool) -> QueueBackend {
        queue_open(name, &spool.0, QueueFlags::QUEUE_EVPCACHE, dispatchers()).unwrap()
    }

    fn sample(msgid: u32, rcpt: &str) -> Envelope {
        Envelope {
            id: msgid_to_evpid(msgid),
            dispatcher: "relay".into(),
            type_: DeliveryType::Mta,
            smtpname: "mx.example.org".into(),
            helo: "client.example.net".into(),
            hostname: "client.example.net".into(),
            ss: PeerAddr::Inet("192.0.2.1:0".parse().unwrap()),
            sender: Mailaddr::new("alice", "example.net"),
            rcpt: Mailaddr::new(rcpt, "example.org"),
            dest: Mailaddr::new(rcpt, "example.org"),
            ttl: 345600,
            ..Default::default()
        }
    }

    /// What the dispatcher and lka do for one message: create it, write
    /// its data through the descriptor the queue hands out, and submit
    /// one envelope for each recipient.
    fn receive(q: &mut QueueBackend, body: &str, rcpts: &[&str]) -> (u32, Vec<Envelope>) {
        let msgid = queue_message_create(q).unwrap();
        if let Some(mut f) = queue_message_fd_rw(q, msgid) {
            f.write_all(body.as_bytes()).unwrap();
        }
        let mut evps = Vec::new();
        for rcpt in rcpts {
            let mut ep = sample(msgid, rcpt);
            assert!(queue_envelope_create(q, &mut ep));
            assert_eq!(evpid_to_msgid(ep.id), msgid);
            assert_ne!(ep.id, msgid_to_evpid(msgid));
            assert!(ep.creation > 0);
            evps.push(ep);
        }
        (msgid, evps)
    }

    fn read_all(mut f: File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    fn walk_all(q: &mut QueueBackend) -> Vec<Envelope> {
        let mut found = Vec::new();
        loop {
            match queue_envelope_walk(q) {
                QueueWalk::Done => return found,
                QueueWalk::Skip => {}
                QueueWalk::Envelope(ep) => found.push(*ep),
            }
        }
    }

    fn message_walk_all(q: &mut QueueBackend, msgid: u32) -> Vec<u64> {
        let mut w = MessageWalk::new(msgid);
        let mut found = Vec::new();
        loop {
            match queue_message_walk(q, &mut w) {
                QueueWalk::Done => break,
                QueueWalk::Skip => {}
                QueueWalk::Envelope(ep) => found.push(ep.id),
            }
        }
        assert_eq!(queue_message_walk(q, &mut w), QueueWalk::Done);
        found.sort_unstable();
        found
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn fs_and_ram_store_messages_and_envelopes_through_one_api() {
        for name in ["fs", "ram"] {
            let spool = Spool::new(name);
            let mut q = open(name, &spool);
            let (msgid, evps) = receive(&mut q, "Subject: hi\n\nbody\n", &["bob", "carol"]);
            assert_eq!(queue_message_commit(&mut q, &[msgid]), [true], "{name}");
            assert!(!queue_message_path(&q, msgid).exists());

            // The data, for delivery.
            let f = queue_message_fd_r(&mut q, msgid).unwrap();
            assert_eq!(read_all(f), "Subject: hi\n\nbody\n");

            // Load (from the cache, then from the backend).
            for ep in &evps {
                assert_eq!(queue_envelope_load(&mut q, ep.id).as_ref(), Some(ep));
                q.evpcache.del(ep.id);
                assert_eq!(queue_envelope_load(&mut q, ep.id).as_ref(), Some(ep));
            }
            let mut ids: Vec<u64> = evps.iter().map(|e| e.id).collect();
            ids.sort_unstable();
            assert_eq!(message_walk_all(&mut q, msgid), ids);

            // Update.
            let mut up = evps[0].clone();
            up.retry = 3;
            up.lasttry = 1_700_000_000;
            crate::queue::envelope::envelope_set_errormsg(&mut up, format_args!("421 try again"));
            assert!(queue_envelope_update(&mut q, &up));
            q.evpcache.del(up.id);
            assert_eq!(queue_envelope_load(&mut q, up.id), Some(up.clone()));

            // Delete: the message goes with its last envelope.
            assert!(queue_envelope_delete(&mut q, evps[0].id));
            assert_eq!(queue_envelope_load(&mut q, evps[0].id), None);
            assert!(queue_message_fd_r(&mut q, msgid).is_some());
            assert!(queue_envelope_delete(&mut q, evps[1].id));
            assert!(queue_message_fd_r(&mut q, msgid).is_none(), "{name}");
            assert!(queue_close(&mut q));
        }
    }

    #[test]
    fn null_accepts_everything_and_keeps_nothing() {
        let spool = Spool::new("null");
        let mut q = open("null", &spool);
        let (msgid, evps) = receive(&mut q, "body\n", &["bob"]);
        assert_eq!(queue_message_commit(&mut q, &[msgid]), [true]);
        assert!(queue_message_fd_r(&mut q, msgid).is_none());
        assert_eq!(queue_envelope_load(&mut q, evps[0].id + 1), None);
        assert!(queue_envelope_update(&mut q, &evps[0]));
        assert!(queue_envelope_delete(&mut q, evps[0].id));
        assert_eq!(queue_envelope_walk(&mut q), QueueWalk::Done);
        // Its data file did not stay behind either.
        assert!(!queue_message_path(&q, msgid).exists());
    }

    #[test]
    fn fs_keeps_opensmtpds_layout_names_and_modes() {
        let spool = Spool::new("layout");
        let mut q = open("fs", &spool);
        let (msgid, evps) = receive(&mut q, "data\n", &["bob"]);
        let evpid = evps[0].id;
        let temp = spool.path(&format!("temporary/{msgid:08x}"));
        let incoming = spool.path(&format!("incoming/{msgid:08x}"));
        assert_eq!(mode(&temp), 0o600);
        assert_eq!(mode(&incoming), 0o700);
        let evpfile = incoming.join(format!("{evpid:016x}"));
        assert_eq!(mode(&evpfile), 0o600);
        assert_eq!(
            std::fs::read_to_string(&evpfile).unwrap(),
            envelope_dump_buffer(&evps[0]).unwrap()
        );

        assert_eq!(queue_message_commit(&mut q, &[msgid]), [true]);
        let bucket = spool.path(&format!("queue/{:02x}", msgid >> 24));
        let msgdir = bucket.join(format!("{msgid:08x}"));
        assert_eq!(mode(&bucket), 0o700);
        assert_eq!(mode(&msgdir), 0o700);
        assert_eq!(
            std::fs::read_to_string(msgdir.join("message")).unwrap(),
            "data\n"
        );
        assert!(msgdir.join(format!("{evpid:016x}")).is_file());
        assert!(!incoming.exists() && !temp.exists());

        // A bounce of the queued message goes straight into queue/.
        let mut bounce = evps[0].clone();
        bounce.type_ = DeliveryType::Bounce;
        assert!(queue_envelope_create(&mut q, &mut bounce));
        assert!(msgdir.join(format!("{:016x}", bounce.id)).is_file());
        assert!(!incoming.exists());

        // An update leaves no temporary file behind.
        bounce.retry = 1;
        assert!(queue_envelope_update(&mut q, &bounce));
        assert!(!spool.path("incoming/envelope.tmp").exists());
    }

    #[test]
    fn fs_commit_batch_answers_for_each_message() {
        let spool = Spool::new("batch");
        let mut q = open("fs", &spool);
        let a = receive(&mut q, "a\n", &["a"]).0;
        let b = receive(&mut q, "b\n", &["b1", "b2"]).0;
        // Never created, or whose data never came.
        let bogus = 0x0102_0304;
        let c = queue_message_create(&mut q).unwrap();
        let d = receive(&mut q, "d\n", &["d"]).0;
        assert_eq!(
            queue_message_commit(&mut q, &[a, b, bogus, c, d]),
            [true, true, false, false, true]
        );
        for (msgid, body) in [(a, "a\n"), (b, "b\n"), (d, "d\n")] {
            let f = queue_message_fd_r(&mut q, msgid).unwrap();
            assert_eq!(read_all(f), body);
        }
        assert_eq!(message_walk_all(&mut q, b).len(), 2);
        // The dispatcher rolls back what failed.
        assert!(queue_message_delete(&mut q, c));
        assert!(!spool.path(&format!("incoming/{c:08x}")).exists());
        assert!(queue_message_commit(&mut q, &[]).is_empty());
    }

    #[test]
    fn rollback_removes_the_incoming_message_and_its_data() {
        for name in ["fs", "ram"] {
            let spool = Spool::new(name);
            let mut q = open(name, &spool);
            let (msgid, evps) = receive(&mut q, "x\n", &["bob"]);
            assert!(queue_message_delete(&mut q, msgid));
            assert!(!queue_message_path(&q, msgid).exists());
            assert_eq!(queue_envelope_load(&mut q, evps[0].id), None, "{name}");
            assert!(!spool.path(&format!("incoming/{msgid:08x}")).exists());
        }
    }

    #[test]
    fn the_walk_at_start_finds_every_committed_envelope() {
        let spool = Spool::new("walk");
        let mut q = open("fs", &spool);
        let mut all = Vec::new();
        let mut msgids = Vec::new();
        for i in 0..20 {
            let (msgid, evps) = receive(&mut q, "x\n", &["a", "b", "c"][..1 + i % 3]);
            msgids.push(msgid);
            all.extend(evps);
        }
        assert!(queue_message_commit(&mut q, &msgids).iter().all(|&ok| ok));
        // Not committed: not walked.
        receive(&mut q, "y\n", &["z"]);
        // Things that are not envelopes.
        let msgdir = spool.path(&format!("queue/{:02x}/{:08x}", msgids[0] >> 24, msgids[0]));
        std::fs::write(msgdir.join("0123456789abcdeg"), "x").unwrap();
        std::fs::write(msgdir.join("short"), "x").unwrap();
        std::fs::create_dir_all(spool.path("queue/abc/01234567")).unwrap();
        std::fs::create_dir_all(spool.path("queue/ab/0123")).unwrap();
        std::fs::write(spool.path("queue/ab/0123456789abcdef"), "x").unwrap();

        // A restart: everything written before it is walked.
        let mut q = open("fs", &spool);
        let mut found = walk_all(&mut q);
        assert_eq!(queue_envelope_walk(&mut q), QueueWalk::Done);
        found.sort_by_key(|e| e.id);
        all.sort_by_key(|e| e.id);
        assert_eq!(found, all);

        // An envelope made after the start is not walked again.
        let mut q = open("fs", &spool);
        let mut late = sample(msgids[0], "late");
        assert!(queue_envelope_create(&mut q, &mut late));
        assert!(walk_all(&mut q).iter().all(|e| e.id != late.id));
    }

    #[test]
    fn the_walk_removes_a_message_left_without_envelopes_by_a_crash() {
        let spool = Spool::new("orphan");
        let mut q = open("fs", &spool);
        let (kept, _) = receive(&mut q, "kept\n", &["a"]);
        let (orphan, evps) = receive(&mut q, "orphan\n", &["b"]);
        assert!(queue_message_commit(&mut q, &[kept, orphan])
            .iter()
            .all(|&ok| ok));
        let dir = |msgid: u32| spool.path(&format!("queue/{:02x}/{msgid:08x}", msgid >> 24));
        // The crash came between the envelope's unlink and the message's.
        std::fs::remove_file(dir(orphan).join(format!("{:016x}", evps[0].id))).unwrap();
        let mut q = open("fs", &spool);
        let found = walk_all(&mut q);
        assert_eq!(found.len(), 1);
        assert!(dir(kept).join("message").exists());
        assert!(!dir(orphan).exists());
    }

    /// A message directory as OpenSMTPD 7.8 leaves it, one envelope a
    /// text it wrote (see envelope.rs for how they were captured).
    fn opensmtpd_message(spool: &Spool, msgid: u32, texts: &[(u64, &str)]) -> PathBuf {
        let dir = spool.path(&format!("queue/{:02x}/{msgid:08x}", msgid >> 24));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("message"), "Subject: 7.8\n\nhello\n").unwrap();
        for (evpid, text) in texts {
            std::fs::write(dir.join(format!("{evpid:016x}")), text).unwrap();
        }
        dir
    }

    const OPENSMTPD_78_MTA: &str = "version: 3\ndispatcher: relay\ntype: mta\n\
        smtpname: vm\nhelo: client.helo.test\nhostname: localhost\n\
        sockaddr: 127.0.0.1\nsender: alice@sender.test\nrcpt: bob@remote.test\n\
        dest: bob@remote.test\nctime: 1795662638\nlast-try: 0\nlast-bounce: 0\n\
        ttl: 0\nretry: 0\ndsn-notify: 3\ndsn-ret: HDRS\ndsn-envid: envid-42\n\
        dsn-orcpt: rfc822;bob@orig.test\n";

    #[test]
    fn a_spool_of_opensmtpd_7_8_is_walked_and_delivered_from() {
        let spool = Spool::new("ref78");
        let msgid = 0xe707_3dd5;
        let evpid = 0xe707_3dd5_3c2e_ab6c;
        opensmtpd_message(&spool, msgid, &[(evpid, OPENSMTPD_78_MTA)]);
        let mut q = open("fs", &spool);
        let found = walk_all(&mut q);
        assert_eq!(found.len(), 1);
        let ep = &found[0];
        assert_eq!(ep.id, evpid);
        assert_eq!(ep.rcpt, Mailaddr::new("bob", "remote.test"));
        assert_eq!(ep.dsn_envid, "envid-42");
        let f = queue_message_fd_r(&mut q, msgid).unwrap();
        assert_eq!(read_all(f), "Subject: 7.8\n\nhello\n");
        // Delivered: its directory goes.
        assert!(queue_envelope_delete(&mut q, evpid));
        assert!(!spool.path(&format!("queue/e7/{msgid:08x}")).exists());
    }

    #[test]
    fn a_broken_envelope_is_set_aside_never_deleted() {
        let spool = Spool::new("corrupt");
        let msgid = 0x4242_0001;
        let good = 0x4242_0001_0000_0001;
        let broken = 0x4242_0001_0000_0002;
        let empty = 0x4242_0001_0000_0003;
        let dir = opensmtpd_message(
            &spool,
            msgid,
            &[
                (good, OPENSMTPD_78_MTA),
                (broken, "version: 3\nhelo: x\ncolour: blue\n"),
                (empty, ""),
            ],
        );
        let mut q = open("fs", &spool);
        let found = walk_all(&mut q);
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), [good]);
        let corrupt = spool.path(&format!("corrupt/{msgid:08x}"));
        for evpid in [broken, empty] {
            assert!(!dir.join(format!("{evpid:016x}")).exists());
            assert!(corrupt.join(format!("{evpid:016x}")).is_file());
        }
        assert_eq!(
            std::fs::read_to_string(corrupt.join(format!("{broken:016x}"))).unwrap(),
            "version: 3\nhelo: x\ncolour: blue\n"
        );
        // The data stays with both.
        assert!(dir.join("message").is_file());
        assert!(corrupt.join("message").is_file());

        // Once the good one is delivered, the data is still set aside.
        assert!(queue_envelope_delete(&mut q, good));
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_to_string(corrupt.join("message")).unwrap(),
            "Subject: 7.8\n\nhello\n"
        );

        // Put back (by an administrator who fixed it), found again.
        std::fs::write(corrupt.join(format!("{broken:016x}")), OPENSMTPD_78_MTA).unwrap();
        std::fs::remove_file(corrupt.join(format!("{empty:016x}"))).unwrap();
        assert!(queue_message_uncorrupt(&mut q, msgid));
        assert!(!corrupt.exists());
        assert_eq!(message_walk_all(&mut q, msgid), [broken]);
        let f = queue_message_fd_r(&mut q, msgid).unwrap();
        assert_eq!(read_all(f), "Subject: 7.8\n\nhello\n");
    }

    #[test]
    fn a_whole_message_can_be_set_aside_and_put_back() {
        for name in ["fs", "ram"] {
            let spool = Spool::new(name);
            let mut q = open(name, &spool);
            let (msgid, evps) = receive(&mut q, "x\n", &["a", "b"]);
            assert_eq!(queue_message_commit(&mut q, &[msgid]), [true]);
            assert!(queue_message_corrupt(&mut q, msgid));
            assert_eq!(queue_envelope_load(&mut q, evps[0].id), None, "{name}");
            assert!(queue_message_uncorrupt(&mut q, msgid));
            assert_eq!(message_walk_all(&mut q, msgid).len(), 2, "{name}");
            assert!(queue_message_fd_r(&mut q, msgid).is_some());
        }
    }

    #[test]
    fn an_envelope_whose_dispatcher_is_gone_stays_queued() {
        let spool = Spool::new("dispatcher");
        let msgid = 0x4343_0001;
        let evpid = 0x4343_0001_0000_0001;
        let text = OPENSMTPD_78_MTA.replace("dispatcher: relay", "dispatcher: gone");
        let dir = opensmtpd_message(&spool, msgid, &[(evpid, &text)]);
        let mut q = open("fs", &spool);
        assert!(walk_all(&mut q).is_empty());
        assert!(dir.join(format!("{evpid:016x}")).is_file());
        assert!(!spool.path("corrupt").exists());
        // Without a list to check against, it loads.
        let mut q = queue_open("fs", &spool.0, QueueFlags::empty(), None).unwrap();
        assert_eq!(
            queue_envelope_load(&mut q, evpid).unwrap().dispatcher,
            "gone"
        );
    }

    #[test]
    fn deleting_the_first_envelope_walked_keeps_the_others() {
        // C's count would reach 0 here and delete the message with the
        // envelopes the walk has not reached yet.
        let spool = Spool::new("race");
        let msgid = 0x4444_0001;
        let (a, b) = (0x4444_0001_0000_0001, 0x4444_0001_0000_0002);
        let text = OPENSMTPD_78_MTA;
        opensmtpd_message(&spool, msgid, &[(a, text), (b, text)]);
        let mut q = open("fs", &spool);
        let QueueWalk::Envelope(first) = queue_envelope_walk(&mut q) else {
            panic!("no envelope walked");
        };
        assert!(queue_envelope_delete(&mut q, first.id));
        let rest = walk_all(&mut q);
        assert_eq!(rest.len(), 1);
        assert!(queue_message_fd_r(&mut q, msgid).is_some());
        assert!(queue_envelope_delete(&mut q, rest[0].id));
        assert!(queue_message_fd_r(&mut q, msgid).is_none());
    }

    #[test]
    fn a_stale_update_file_does_not_block_updates() {
        let spool = Spool::new("stale");
        let mut q = open("fs", &spool);
        let (msgid, mut evps) = receive(&mut q, "x\n", &["a"]);
        assert_eq!(queue_message_commit(&mut q, &[msgid]), [true]);
        std::fs::write(spool.path("incoming/envelope.tmp"), "stale").unwrap();
        evps[0].retry = 9;
        assert!(queue_envelope_update(&mut q, &evps[0]));
        q.evpcache.del(evps[0].id);
        assert_eq!(queue_envelope_load(&mut q, evps[0].id).unwrap().retry, 9);
    }

    #[test]
    fn an_envelope_that_cannot_be_dumped_is_not_stored() {
        let spool = Spool::new("dump");
        let mut q = open("fs", &spool);
        let msgid = queue_message_create(&mut q).unwrap();
        let mut ep = sample(msgid, "bob");
        ep.helo = "evil\r\nrcpt: x@y".into();
        assert!(!queue_envelope_create(&mut q, &mut ep));
        assert_eq!((ep.id, ep.creation), (0, 0));
        let dir = spool.path(&format!("incoming/{msgid:08x}"));
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    }

    #[test]
    fn the_cache_keeps_the_most_recent_envelopes() {
        let mut c = EvpCache::new(2);
        let e = |id| Envelope {
            id,
            ..Default::default()
        };
        c.update(&e(1));
        c.update(&e(2));
        c.update(&e(1));
        c.update(&e(3));
        assert!(c.get(1).is_some() && c.get(3).is_some() && c.get(2).is_none());
        c.del_message(0);
        assert!(c.get(1).is_none());
        assert!(!EvpCache::new(0).enabled());
    }

    #[test]
    fn generated_ids_are_never_zero() {
        for _ in 0..1000 {
            let msgid = queue_generate_msgid();
            assert_ne!(msgid, 0);
            let evpid = queue_generate_evpid(msgid);
            assert_eq!(evpid_to_msgid(evpid), msgid);
            assert_ne!(evpid as u32, 0);
        }
    }

    #[test]
    fn queue_open_refuses_what_it_cannot_do() {
        let spool = Spool::new("open");
        for flags in [QueueFlags::QUEUE_COMPRESSION, QueueFlags::QUEUE_ENCRYPTION] {
            assert!(queue_open("fs", &spool.0, flags, None).is_err());
        }
        assert!(queue_open("proc", &spool.0, QueueFlags::empty(), None).is_err());
    }

    /// Commit timings, one batch against one commit per message, the
    /// median of 7 rounds each (2 recipients, 4 kB of data a message):
    /// `cargo test --release --lib bench_commit -- --ignored --nocapture`.
    /// SMTPD_BENCH_DIR picks another file system than the temporary one.
    #[test]
    #[ignore]
    fn bench_commit_batch_against_one_by_one() {
        let base = std::env::var_os("SMTPD_BENCH_DIR").map(PathBuf::from);
        let body = "x".repeat(4000) + "\n";
        for n in [1, 10, 100] {
            let mut times = [Vec::new(), Vec::new()];
            for round in 0..14 {
                let batched = round % 2 == 0;
                let spool = match &base {
                    Some(b) => {
                        let s = Spool(b.join(format!("bench-{}", arc4random())));
                        for sub in ["temporary", "incoming", "queue"] {
                            std::fs::create_dir_all(s.path(sub)).unwrap();
                        }
                        s
                    }
                    None => Spool::new("bench"),
                };
                let mut q = open("fs", &spool);
                let msgids: Vec<u32> = (0..n)
                    .map(|_| receive(&mut q, &body, &["a", "b"]).0)
                    .collect();
                let t0 = std::time::Instant::now();
                if batched {
                    assert!(queue_message_commit(&mut q, &msgids).iter().all(|&ok| ok));
                } else {
                    for &m in &msgids {
                        assert_eq!(queue_message_commit(&mut q, &[m]), [true]);
                    }
                }
                times[usize::from(batched)].push(t0.elapsed().as_secs_f64() * 1e3);
            }
            for (batched, t) in times.iter_mut().enumerate().rev() {
                t.sort_by(f64::total_cmp);
                eprintln!(
                    "commit {n:>3} messages {}: median {:>7.2} ms ({:.2} ms/message), min {:.2} ms",
                    if batched == 1 {
                        "as one batch"
                    } else {
                        "one by one  "
                    },
                    t[t.len() / 2],
                    t[t.len() / 2] / n as f64,
                    t[0]
                );
            }
        }
    }
}
