//! queue_fs.c: the `fs` queue backend, OpenSMTPD's spool on disk
//! (OpenSMTPD queue_fs.c 1.23).
//!
//! The layout, under the spool root (`/` for the chrooted queue process),
//! is OpenSMTPD's, so that either daemon can run on the other's spool:
//! ```text
//! temporary/MSGID           the data of a message being received
//!                           (queue_backend.rs: queue_message_fd_rw)
//! incoming/MSGID/           a message being received: its envelopes,
//! incoming/MSGID/EVPID        one file each, named by 16 hex digits,
//! incoming/MSGID/message      and its data, moved in at commit
//! incoming/envelope.tmp     the new text of an envelope being updated
//! queue/XX/MSGID/           a committed message, XX the top byte of
//! queue/XX/MSGID/message      MSGID (%02x), MSGID %08x, EVPID %016x
//! queue/XX/MSGID/EVPID
//! corrupt/MSGID/            envelopes set aside (and a hard link to
//!                           their message's data), as OpenSMTPD 6.4 had
//! ```
//! Files are 0600 and directories 0700, owned by the queue user that the
//! process runs as.
//!
//! Where we differ from OpenSMTPD 7.8, on purpose: durability. OpenSMTPD
//! fsyncs nothing but the temporary file of an envelope update, so mail
//! it has acknowledged can vanish in a crash. Here a commit returns only
//! once the message's data, its envelopes and every directory entry
//! leading to them are on disk, and an update is atomic and durable.
//! The fsyncs of directories are shared by all the messages of a commit
//! batch, and a batch's fsyncs are waited for together (sync_all_parallel),
//! in the queue's commit thread (queue.rs). A deletion is not synced: a crash may bring back an envelope
//! already delivered, and so deliver it twice, never lose it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions, ReadDir};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::queue::envelope::{evpid_to_msgid, ENVELOPE_SIZE};
use crate::queue::queue_backend::{
    queue_generate_evpid, queue_generate_msgid, BackendWalk, Committer, QueueApi, PATH_INCOMING,
    PATH_PURGE, PATH_QUEUE,
};
use crate::sys::fsync::{fsync_dir, sync_all_parallel, sync_file_range_write};
use crate::util::util::{ckdir, mvpurge, rmtree};

const PATH_CORRUPT: &str = "corrupt";
const PATH_EVPTMP: &str = "incoming/envelope.tmp";
const PATH_MESSAGE: &str = "message";

/// The `fs` backend's state: C's `evpcount` tree and `startup` time, and
/// the walk's handle.
pub struct QueueFs {
    root: PathBuf,
    /// When the backend was opened: the walk leaves newer envelopes out.
    startup: SystemTime,
    /// The envelopes known to exist, by message, so that the message
    /// goes when its last envelope does. C counts them; a set cannot
    /// count one twice when `smtpctl discover` walks a message again.
    evpcount: HashMap<u32, HashSet<u64>>,
    walk: QwalkState,
}

enum QwalkState {
    NotStarted,
    Running(Qwalk),
    Done,
}

/// struct qwalk: fts(3)'s role, a depth-first walk of queue/ that keeps
/// one open directory per level.
struct Qwalk {
    /// queue/, queue/XX, queue/XX/MSGID, as deep as the walk is.
    levels: Vec<(ReadDir, PathBuf)>,
}

impl QueueFs {
    /// queue_fs_init()'s in-memory half; the directories are queue_init's.
    pub fn new(root: &Path) -> QueueFs {
        QueueFs {
            root: root.to_path_buf(),
            startup: SystemTime::now(),
            evpcount: HashMap::new(),
            walk: QwalkState::NotStarted,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn track(&mut self, evpid: u64) {
        self.evpcount
            .entry(evpid_to_msgid(evpid))
            .or_default()
            .insert(evpid);
    }

    /// Forgets an envelope; whether none of its message is known now.
    fn untrack(&mut self, evpid: u64) -> bool {
        let msgid = evpid_to_msgid(evpid);
        let Some(set) = self.evpcount.get_mut(&msgid) else {
            return true;
        };
        set.remove(&evpid);
        if set.is_empty() {
            self.evpcount.remove(&msgid);
            return true;
        }
        false
    }
}

fn mkdir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)
}

fn is_errno(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// An envelope's file name: 16 lowercase or uppercase hex digits, as
/// strtoull reads them (without its blanks, sign and 0x).
fn fsqueue_evpid_from_name(name: &str) -> Option<u64> {
    if name.len() != 16 || !name.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// queue_fs_message_create(): a new message directory in incoming/,
/// under an id no message in queue/ has.
fn queue_fs_message_create(fs: &mut QueueFs) -> Option<u32> {
    if !fsqueue_check_space() {
        return None;
    }
    loop {
        let msgid = queue_generate_msgid();
        // Prevent a collision later, when moving it to queue/.
        match std::fs::symlink_metadata(fsqueue_message_path(fs, msgid)) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // An unexpected error: fail for now.
            Err(_) => return None,
        }
        match mkdir(&fsqueue_message_incoming_path(fs, msgid)) {
            Ok(()) => return Some(msgid),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if is_errno(&e, libc::ENOSPC) => return None,
            Err(e) => {
                log_warn!(e, "warn: queue-fs: mkdir");
                return None;
            }
        }
    }
}

/// queue_fs_message_commit(): moves each message of the batch from
/// incoming/ into queue/XX/, durably: when it says yes, the message is
/// on disk whatever happens next. In passes, so that the messages share
/// the cost of getting there:
/// 1. each message's data moved into its directory, and the writeback
///    of its data and envelope files started, without waiting;
/// 2. each of those files fsynced, then the message's directory: the
///    first fsync commits the file system's journal for the whole batch
///    (ext4, xfs), so that the others mostly find their work done;
/// 3. each directory renamed into its bucket queue/XX/ (made if need be);
/// 4. once for the batch: incoming/, every bucket touched, and queue/ if
///    a bucket was made, fsynced.
///
/// A message's files and directory must be on disk before its rename
/// is: were the rename there first, a crash would leave in queue/ a
/// message that nobody acknowledged with data that is not all there, and
/// it would be delivered so. Until then it sits in incoming/, which the
/// next start purges.
fn queue_fs_message_commit(fs: &QueueFs, batch: &[(u32, PathBuf)]) -> Vec<bool> {
    let mut ok = vec![false; batch.len()];
    let prepared: Vec<(usize, Vec<File>)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, (msgid, path))| Some((i, fsqueue_message_prepare(fs, *msgid, path)?)))
        .collect();
    let mut buckets: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    let mut new_bucket = false;
    for i in fsqueue_message_sync(prepared) {
        let msgid = batch[i].0;
        if let Some(created) = fsqueue_message_enqueue(fs, msgid) {
            new_bucket |= created;
            buckets
                .entry(fsqueue_bucket_path(fs, msgid))
                .or_default()
                .push(i);
        }
    }
    if buckets.is_empty() {
        return ok;
    }
    // incoming/ lost the messages' entries: without this a crash could
    // bring them back there as well (a directory with two names), which
    // the next start would purge together with what it holds. queue/
    // gained a bucket: without this the bucket, and every message in it,
    // could vanish. And each bucket gained its messages' entries.
    let mut dirs = vec![fs.path(&PATH_INCOMING[1..])];
    if new_bucket {
        dirs.push(fs.path(&PATH_QUEUE[1..]));
    }
    let shared = dirs.len();
    dirs.extend(buckets.keys().cloned());
    let synced = fsync_dirs(&dirs);
    if let Some((dir, e)) = dirs
        .iter()
        .zip(&synced)
        .take(shared)
        .find_map(|(d, r)| Some((d, r.as_ref().err()?)))
    {
        log_warn!(e, "warn: queue-fs: fsync: {}", dir.display());
        return ok;
    }
    for ((bucket, members), r) in buckets.into_iter().zip(&synced[shared..]) {
        match r {
            Ok(()) => {
                for i in members {
                    ok[i] = true;
                }
            }
            Err(e) => log_warn!(e, "warn: queue-fs: fsync: {}", bucket.display()),
        }
    }
    ok
}

/// fsync(2)s each directory of `dirs`, all at once; how each went.
fn fsync_dirs(dirs: &[PathBuf]) -> Vec<io::Result<()>> {
    let mut opened = Vec::new();
    let mut results: Vec<Option<io::Result<()>>> = Vec::new();
    for d in dirs {
        match File::open(d) {
            Ok(f) => {
                opened.push(f);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let mut synced = sync_all_parallel(&opened).into_iter();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| synced.next().unwrap_or(Ok(()))))
        .collect()
}

/// The first pass of a commit for one message: C's rename of the data
/// into the message's directory, then its files opened, data and
/// envelopes (written without a sync when they were created), and their
/// writeback started, and the directory opened. No C twin.
fn fsqueue_message_prepare(fs: &QueueFs, msgid: u32, path: &Path) -> Option<Vec<File>> {
    let dir = fsqueue_message_incoming_path(fs, msgid);
    // Before-first, move the message content in the incoming directory.
    if std::fs::rename(path, dir.join(PATH_MESSAGE)).is_err() {
        return None;
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            log_warn!(e, "warn: queue-fs: opendir: {}", dir.display());
            return None;
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name != PATH_MESSAGE
            && name != PATH_OWNER
            && fsqueue_evpid_from_name(&name.to_string_lossy()).is_none()
        {
            continue;
        }
        // The data was written by the dispatcher through a descriptor
        // the queue no longer holds: an fsync through any descriptor of
        // the file flushes it.
        match File::open(entry.path()) {
            Ok(f) => {
                // Only a hint: the fsync of the next pass says if it
                // worked.
                let _ = sync_file_range_write(&f);
                files.push(f);
            }
            Err(e) => {
                log_warn!(e, "warn: queue-fs: open: {}", entry.path().display());
                return None;
            }
        }
    }
    // Last, the directory, whose entries name them.
    match File::open(&dir) {
        Ok(d) => files.push(d),
        Err(e) => {
            log_warn!(e, "warn: queue-fs: open: {}", dir.display());
            return None;
        }
    }
    Some(files)
}

/// The second pass of a commit, for the whole batch: each message's
/// files, then its directory's entries for them, on disk, all flushed
/// together. The batch's indexes of the messages now durable. No C twin.
fn fsqueue_message_sync(prepared: Vec<(usize, Vec<File>)>) -> Vec<usize> {
    // Each message's files, its directory last.
    let mut owner = Vec::new();
    let mut files = Vec::new();
    for (i, fl) in prepared {
        owner.extend(std::iter::repeat(i).take(fl.len()));
        files.extend(fl);
    }
    let mut failed = BTreeSet::new();
    for (r, i) in sync_all_parallel(&files).into_iter().zip(&owner) {
        if let Err(e) = r {
            log_warn!(e, "warn: queue-fs: fsync");
            failed.insert(*i);
        }
    }
    owner.dedup();
    owner.retain(|i| !failed.contains(i));
    owner
}

/// The third pass of a commit, C's renames: incoming/MSGID to
/// queue/XX/MSGID, making the bucket when it is missing. Whether a
/// bucket was made, or None.
fn fsqueue_message_enqueue(fs: &QueueFs, msgid: u32) -> Option<bool> {
    let incomingdir = fsqueue_message_incoming_path(fs, msgid);
    let msgdir = fsqueue_message_path(fs, msgid);
    // First attempt to rename.
    match std::fs::rename(&incomingdir, &msgdir) {
        Ok(()) => return Some(false),
        Err(e) if is_errno(&e, libc::ENOSPC) => return None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            log_warn!(e, "warn: queue-fs: rename");
            return None;
        }
    }
    // Create the bucket.
    let created = match mkdir(&fsqueue_bucket_path(fs, msgid)) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if is_errno(&e, libc::ENOSPC) => return None,
        Err(e) => {
            log_warn!(e, "warn: queue-fs: mkdir");
            return None;
        }
    };
    match std::fs::rename(&incomingdir, &msgdir) {
        Ok(()) => Some(created),
        Err(e) if is_errno(&e, libc::ENOSPC) => None,
        Err(e) => {
            log_warn!(e, "warn: queue-fs: rename");
            None
        }
    }
}

/// queue_fs_message_fd_r(): the committed message's data.
fn queue_fs_message_fd_r(fs: &QueueFs, msgid: u32) -> Option<File> {
    let path = fsqueue_message_path(fs, msgid).join(PATH_MESSAGE);
    match File::open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            log_warn!(e, "warn: queue-fs: open");
            None
        }
    }
}

/// queue_fs_message_delete(): the message's directory, in incoming/ if
/// it is still there, else in queue/.
fn queue_fs_message_delete(fs: &mut QueueFs, msgid: u32) -> bool {
    let mut path = fsqueue_message_incoming_path(fs, msgid);
    if std::fs::symlink_metadata(&path).is_err() {
        path = fsqueue_message_path(fs, msgid);
    }
    if std::fs::symlink_metadata(&path).is_ok() && !rmtree(&path, false) {
        log_warnx!("warn: queue-fs: rmtree: {}", path.display());
    }
    fs.evpcount.remove(&msgid);
    true
}

/// queue_fs_message_corrupt() of OpenSMTPD 6.4: the whole message into
/// corrupt/MSGID, merged with what is there already.
fn queue_fs_message_corrupt(fs: &mut QueueFs, msgid: u32) -> bool {
    let rootdir = fsqueue_message_path(fs, msgid);
    let corruptdir = fsqueue_message_corrupt_path(fs, msgid);
    if let Err(e) = mkdir(&fs.path(PATH_CORRUPT)) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            log_warn!(e, "warn: queue-fs: mkdir");
            return false;
        }
    }
    let moved = match std::fs::rename(&rootdir, &corruptdir) {
        Ok(()) => true,
        // corrupt/MSGID is there already (ENOTEMPTY, EEXIST): merge.
        Err(_) if corruptdir.is_dir() => fsqueue_move_envelopes(&rootdir, &corruptdir, true),
        Err(e) => {
            log_warn!(e, "warn: queue-fs: rename");
            false
        }
    };
    if moved {
        if std::fs::symlink_metadata(&rootdir).is_ok() {
            rmtree(&rootdir, false);
        }
        fs.evpcount.remove(&msgid);
        log_warnx!(
            "warn: queue-fs: message {msgid:08x} moved to {}",
            corruptdir.display()
        );
    }
    moved
}

/// queue_fs_message_uncorrupt() of OpenSMTPD 6.4: corrupt/MSGID back to
/// queue/XX/MSGID, merged with what is there already.
fn queue_fs_message_uncorrupt(fs: &mut QueueFs, msgid: u32) -> bool {
    let corruptdir = fsqueue_message_corrupt_path(fs, msgid);
    let queuedir = fsqueue_message_path(fs, msgid);
    if !corruptdir.is_dir() {
        log_warnx!("warn: queue-fs: stat {} failed", corruptdir.display());
        return false;
    }
    if let Err(e) = mkdir(&fsqueue_bucket_path(fs, msgid)) {
        if is_errno(&e, libc::ENOSPC) {
            return false;
        }
        if e.kind() != io::ErrorKind::AlreadyExists {
            log_warn!(e, "warn: queue-fs: mkdir");
            return false;
        }
    }
    if std::fs::symlink_metadata(&queuedir).is_err() {
        if let Err(e) = std::fs::rename(&corruptdir, &queuedir) {
            log_warn!(e, "warn: queue-fs: rename");
            return false;
        }
        return true;
    }
    if !fsqueue_move_envelopes(&corruptdir, &queuedir, false) {
        return false;
    }
    rmtree(&corruptdir, false);
    true
}

/// Moves the envelopes of directory `from` into `to`, and the data too
/// when `to` has none (a hard link when `keep_data`, so that `from` keeps
/// it). No C twin.
fn fsqueue_move_envelopes(from: &Path, to: &Path, keep_data: bool) -> bool {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) => {
            log_warn!(e, "warn: queue-fs: opendir: {}", from.display());
            return false;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let target = to.join(&name);
        let r = if name == PATH_MESSAGE {
            if std::fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            if keep_data {
                std::fs::hard_link(entry.path(), &target)
            } else {
                std::fs::rename(entry.path(), &target)
            }
        } else if fsqueue_evpid_from_name(&name.to_string_lossy()).is_some() {
            std::fs::rename(entry.path(), &target)
        } else {
            continue;
        };
        if let Err(e) = r {
            log_warn!(e, "warn: queue-fs: rename: {}", entry.path().display());
            return false;
        }
    }
    true
}

/// Sets one envelope aside into corrupt/MSGID/, with a hard link to its
/// message's data, and lets the message go if that was its last
/// envelope. No C twin (see queue_backend.rs: queue_envelope_corrupt).
fn queue_fs_envelope_corrupt(fs: &mut QueueFs, evpid: u64) -> bool {
    let msgid = evpid_to_msgid(evpid);
    let corruptdir = fsqueue_message_corrupt_path(fs, msgid);
    for dir in [fs.path(PATH_CORRUPT), corruptdir.clone()] {
        if let Err(e) = mkdir(&dir) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                log_warn!(e, "warn: queue-fs: mkdir: {}", dir.display());
                return false;
            }
        }
    }
    let data = fsqueue_message_path(fs, msgid).join(PATH_MESSAGE);
    if let Err(e) = std::fs::hard_link(&data, corruptdir.join(PATH_MESSAGE)) {
        if !matches!(
            e.kind(),
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
        ) {
            log_warn!(e, "warn: queue-fs: link: {}", data.display());
            return false;
        }
    }
    let path = fsqueue_envelope_path(fs, evpid);
    if let Err(e) = std::fs::rename(&path, corruptdir.join(format!("{evpid:016x}"))) {
        log_warn!(e, "warn: queue-fs: rename: {}", path.display());
        return false;
    }
    log_warnx!(
        "warn: queue-fs: envelope {evpid:016x} moved to {}",
        corruptdir.display()
    );
    if fs.untrack(evpid) && !fsqueue_message_has_envelopes(fs, msgid) {
        queue_fs_message_delete(fs, msgid);
    }
    true
}

/// queue_fs_envelope_create(): a new envelope file for the message, in
/// incoming/ while it is being received, else (a bounce of a queued
/// message) in queue/, synced there since no commit will do it.
fn queue_fs_envelope_create(fs: &mut QueueFs, msgid: u32, buf: &[u8]) -> Option<u64> {
    if msgid == 0 {
        log_warnx!("warn: queue-fs: msgid=0, evpid={:016x}", 0);
        return None;
    }
    let queued = std::fs::symlink_metadata(fsqueue_message_incoming_path(fs, msgid)).is_err();
    for _ in 0..20 {
        let evpid = queue_generate_evpid(msgid);
        let path = if queued {
            fsqueue_envelope_path(fs, evpid)
        } else {
            fsqueue_envelope_incoming_path(fs, evpid)
        };
        match fsqueue_envelope_dump(fs, &path, buf, false, queued) {
            Ok(()) => {}
            // That id is taken: draw another. (C unlinks the file it
            // could not create, which is the other envelope's.)
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
        if queued {
            // Its name, in the message's directory.
            if let Some(dir) = path.parent() {
                if let Err(e) = fsync_dir(dir) {
                    log_warn!(e, "warn: queue-fs: fsync: {}", dir.display());
                    let _ = std::fs::remove_file(&path);
                    return None;
                }
            }
        }
        fs.track(evpid);
        return Some(evpid);
    }
    log_warnx!("warn: queue-fs: could not allocate evpid");
    None
}

/// queue_fs_envelope_load(): the bytes of a queued envelope's file, at
/// most ENVELOPE_SIZE of them (that many means too large).
fn queue_fs_envelope_load(fs: &mut QueueFs, evpid: u64) -> io::Result<Vec<u8>> {
    let pathname = fsqueue_envelope_path(fs, evpid);
    let fp = File::open(&pathname).map_err(|e| {
        if !is_errno(&e, libc::ENOENT) && !is_errno(&e, libc::ENFILE) {
            log_warn!(e, "warn: queue-fs: fopen");
        }
        e
    })?;
    let mut buf = Vec::with_capacity(1024);
    if let Err(e) = fp.take(ENVELOPE_SIZE as u64).read_to_end(&mut buf) {
        log_warn!(e, "warn: queue-fs: fread");
        return Err(e);
    }
    if buf.len() == ENVELOPE_SIZE {
        log_warnx!("warn: queue-fs: too large");
    }
    if !buf.is_empty() {
        fs.track(evpid);
    }
    Ok(buf)
}

/// queue_fs_envelope_update(): the new text written to
/// incoming/envelope.tmp and synced, renamed over the envelope (so that
/// a crash leaves the old text or the new, never a mix), and the rename
/// synced (C stops before this: the update is atomic, not durable).
fn queue_fs_envelope_update(fs: &mut QueueFs, evpid: u64, buf: &[u8]) -> bool {
    let dest = fsqueue_envelope_path(fs, evpid);
    if fsqueue_envelope_dump(fs, &dest, buf, true, true).is_err() {
        return false;
    }
    // incoming/ is not synced for the temporary name it lost: a crash
    // may bring back envelope.tmp there, and incoming/ is purged at start.
    if let Some(dir) = dest.parent() {
        if let Err(e) = fsync_dir(dir) {
            log_warn!(e, "warn: queue-fs: fsync: {}", dir.display());
            return false;
        }
    }
    true
}

/// queue_fs_envelope_delete(): the envelope's file, and the message with
/// its last envelope.
fn queue_fs_envelope_delete(fs: &mut QueueFs, evpid: u64) -> bool {
    let pathname = fsqueue_envelope_path(fs, evpid);
    if let Err(e) = std::fs::remove_file(pathname) {
        if e.kind() != io::ErrorKind::NotFound {
            return false;
        }
    }
    let msgid = evpid_to_msgid(evpid);
    // The set may be empty while the walk at start has not reached the
    // message's other envelopes yet: the directory says whether any are
    // left. (C's count would delete them unseen.)
    if fs.untrack(evpid) && !fsqueue_message_has_envelopes(fs, msgid) {
        queue_fs_message_delete(fs, msgid);
    }
    true
}

/// Whether the queued message's directory still holds an envelope.
fn fsqueue_message_has_envelopes(fs: &QueueFs, msgid: u32) -> bool {
    fsqueue_dir_has_envelopes(&fsqueue_message_path(fs, msgid))
}

fn fsqueue_dir_has_envelopes(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| fsqueue_evpid_from_name(&e.file_name().to_string_lossy()).is_some())
}

/// A queued message directory without envelopes is what a crash leaves
/// between the deletion of a message's last envelope and that of the
/// message: nothing will ever refer to it again, so the walk removes it
/// (OpenSMTPD leaves it for ever). A committed message always has an
/// envelope until then, as commit moves it in with its envelopes.
fn fsqueue_qwalk_orphan(dir: &Path) {
    if fsqueue_dir_has_envelopes(dir) {
        return;
    }
    log_info!(
        "info: queue-fs: removing message without envelopes {}",
        dir.display()
    );
    if !rmtree(dir, false) {
        log_warnx!("warn: queue-fs: rmtree: {}", dir.display());
    }
}

/// queue_fs_message_walk(): the envelopes of a queued message: the
/// regular files of its directory named by 16 hex digits starting with
/// its id.
fn queue_fs_message_walk(fs: &QueueFs, msgid: u32) -> io::Result<Vec<u64>> {
    let path = fsqueue_message_path(fs, msgid);
    let dir = std::fs::read_dir(&path).map_err(|e| {
        log_warn!(e, "warn: queue_fs: opendir: {}", path.display());
        e
    })?;
    let msgid_str = format!("{msgid:08x}");
    let mut evpids = Vec::new();
    for dp in dir.flatten() {
        if !dp.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = dp.file_name();
        let name = name.to_string_lossy();
        // Ignore files other than envelopes.
        if name.len() != 16 || !name.starts_with(&msgid_str) {
            continue;
        }
        match fsqueue_evpid_from_name(&name) {
            Some(evpid) => evpids.push(evpid),
            None => log_debug!("debug: fsqueue: bogus file {name}"),
        }
    }
    Ok(evpids)
}

/// queue_fs_envelope_walk(): the next envelope of queue/, with its bytes.
fn queue_fs_envelope_walk(fs: &mut QueueFs) -> BackendWalk {
    if matches!(fs.walk, QwalkState::NotStarted) {
        fs.walk = QwalkState::Running(fsqueue_qwalk_new(fs));
    }
    loop {
        let QwalkState::Running(q) = &mut fs.walk else {
            return BackendWalk::Done;
        };
        let Some(evpid) = fsqueue_qwalk(q, fs.startup) else {
            // fsqueue_qwalk_close(): dropping the handles closes them.
            fs.walk = QwalkState::Done;
            return BackendWalk::Done;
        };
        // Known already: created since the start (file times are coarser
        // than the clock `startup` was read from, so the mtime test alone
        // lets some through), or loaded, by a discover say.
        if fs
            .evpcount
            .get(&evpid_to_msgid(evpid))
            .is_some_and(|set| set.contains(&evpid))
        {
            continue;
        }
        return match queue_fs_envelope_load(fs, evpid) {
            Ok(buf) => BackendWalk::Loaded(evpid, buf),
            Err(_) => BackendWalk::Skip,
        };
    }
}

/// fsqueue_check_space(): OpenSMTPD refuses new messages below 5% of free
/// space or inodes, on OpenBSD only (statfs). Not here yet: it needs
/// statvfs(2) in src/sys; until then, as OpenSMTPD on Linux, always yes.
fn fsqueue_check_space() -> bool {
    true
}

/// fsqueue_envelope_path(): queue/XX/MSGID/EVPID.
fn fsqueue_envelope_path(fs: &QueueFs, evpid: u64) -> PathBuf {
    fsqueue_message_path(fs, evpid_to_msgid(evpid)).join(format!("{evpid:016x}"))
}

/// fsqueue_envelope_incoming_path(): incoming/MSGID/EVPID.
fn fsqueue_envelope_incoming_path(fs: &QueueFs, evpid: u64) -> PathBuf {
    fsqueue_message_incoming_path(fs, evpid_to_msgid(evpid)).join(format!("{evpid:016x}"))
}

/// fsqueue_envelope_dump(): writes an envelope file, new (O_EXCL, 0600):
/// at `dest`, or (`do_atomic`) at incoming/envelope.tmp then renamed to
/// `dest`; synced before it gets its name when `do_sync`. A file that
/// could not be written whole is removed.
fn fsqueue_envelope_dump(
    fs: &QueueFs,
    dest: &Path,
    evpbuf: &[u8],
    do_atomic: bool,
    do_sync: bool,
) -> io::Result<()> {
    let tmp;
    let path = if do_atomic {
        tmp = fs.path(PATH_EVPTMP);
        &tmp
    } else {
        dest
    };
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut fp = match open() {
        // A temporary file left by an update that failed to remove it.
        Err(e) if do_atomic && e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(path);
            open()
        }
        r => r,
    }
    .map_err(|e| {
        if do_atomic || e.kind() != io::ErrorKind::AlreadyExists {
            log_warn!(e, "warn: queue-fs: open");
        }
        e
    })?;
    let written = fp
        .write_all(evpbuf)
        .map_err(|e| {
            log_warn!(e, "warn: queue-fs: short write");
            e
        })
        .and_then(|()| {
            if do_sync {
                fp.sync_all().map_err(|e| {
                    log_warn!(e, "warn: queue-fs: fsync");
                    e
                })
            } else {
                Ok(())
            }
        })
        .and_then(|()| {
            drop(fp);
            if do_atomic {
                std::fs::rename(path, dest).map_err(|e| {
                    log_warn!(e, "warn: queue-fs: rename");
                    e
                })
            } else {
                Ok(())
            }
        });
    if written.is_err() {
        if let Err(e) = std::fs::remove_file(path) {
            log_warn!(e, "warn: queue-fs: unlink");
        }
    }
    written
}

/// fsqueue_message_path(): queue/XX/MSGID.
fn fsqueue_message_path(fs: &QueueFs, msgid: u32) -> PathBuf {
    fsqueue_bucket_path(fs, msgid).join(format!("{msgid:08x}"))
}

/// The bucket of a message, queue/XX: XX its top byte.
fn fsqueue_bucket_path(fs: &QueueFs, msgid: u32) -> PathBuf {
    fs.path(&format!("{}/{:02x}", &PATH_QUEUE[1..], msgid >> 24))
}

/// fsqueue_message_corrupt_path() of OpenSMTPD 6.4: corrupt/MSGID.
fn fsqueue_message_corrupt_path(fs: &QueueFs, msgid: u32) -> PathBuf {
    fs.path(&format!("{PATH_CORRUPT}/{msgid:08x}"))
}

/// fsqueue_message_incoming_path(): incoming/MSGID.
fn fsqueue_message_incoming_path(fs: &QueueFs, msgid: u32) -> PathBuf {
    fs.path(&format!("{}/{msgid:08x}", &PATH_INCOMING[1..]))
}

/// The file of a message's directory that holds the uid of the local
/// user who submitted it (not in C). OpenSMTPD's walks pass over any
/// name that is not 16 hex digits, so it still reads a spool with them.
const PATH_OWNER: &str = "owner";

/// Writes the owner file of a message still in incoming/; commit makes
/// it durable with the rest of the message.
fn fsqueue_message_set_owner(fs: &QueueFs, msgid: u32, uid: u32) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = fsqueue_message_incoming_path(fs, msgid).join(PATH_OWNER);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{uid}\n").as_bytes()));
    if let Err(e) = &r {
        log_warn!(e, "warn: queue-fs: {}", path.display());
    }
    r.is_ok()
}

/// The uid in a message directory's owner file, if it has one.
fn fsqueue_read_owner(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(PATH_OWNER)).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

/// The queued messages whose owner is `uid`, from `from` on, in order,
/// at most `n`: a walk of every bucket, as the listing of one user is
/// rare and the queue holds no index of owners.
fn fsqueue_message_owned(fs: &QueueFs, uid: u32, from: u32, n: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(buckets) = std::fs::read_dir(fs.path(&PATH_QUEUE[1..])) else {
        return ids;
    };
    for bucket in buckets.flatten() {
        let Ok(messages) = std::fs::read_dir(bucket.path()) else {
            continue;
        };
        for msg in messages.flatten() {
            let name = msg.file_name();
            let Some(msgid) = name
                .to_str()
                .filter(|n| n.len() == 8)
                .and_then(|n| u32::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            if msgid >= from && fsqueue_read_owner(&msg.path()) == Some(uid) {
                ids.push(msgid);
            }
        }
    }
    ids.sort_unstable();
    ids.truncate(n);
    ids
}

/// fsqueue_qwalk_new(): a walk of queue/. A queue/ that cannot be read
/// is fatal, as fts_open failing is in C.
fn fsqueue_qwalk_new(fs: &QueueFs) -> Qwalk {
    let path = fs.path(&PATH_QUEUE[1..]);
    match std::fs::read_dir(&path) {
        Ok(dir) => Qwalk {
            levels: vec![(dir, path)],
        },
        Err(e) => fatal!(e, "fsqueue_qwalk_new: fts_open: {}", path.display()),
    }
}

/// fsqueue_qwalk(): the next envelope id in queue/XX/MSGID/, where XX has
/// two characters and MSGID eight; files modified since `startup` are
/// left out, and anything else that does not fit is logged and skipped.
/// Symbolic links are not followed.
fn fsqueue_qwalk(q: &mut Qwalk, startup: SystemTime) -> Option<u64> {
    loop {
        let depth = q.levels.len();
        let (dir, _) = q.levels.last_mut()?;
        let entry = match dir.next() {
            None => {
                if let Some((_, path)) = q.levels.pop() {
                    if depth == 3 {
                        fsqueue_qwalk_orphan(&path);
                    }
                }
                continue;
            }
            Some(Err(_)) => continue,
            Some(Ok(entry)) => entry,
        };
        let Ok(ftype) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        let namelen = entry.file_name().len();
        if ftype.is_dir() {
            // Only buckets and message directories are walked into.
            if depth > 2 {
                continue;
            }
            if (depth == 1 && namelen != 2) || (depth == 2 && namelen != 8) {
                log_debug!("debug: fsqueue: bogus directory {}", path.display());
                continue;
            }
            // A directory that cannot be read is passed over (FTS_DNR).
            if let Ok(sub) = std::fs::read_dir(&path) {
                q.levels.push((sub, path));
            }
            continue;
        }
        if !ftype.is_file() || depth != 3 || namelen != 16 {
            continue;
        }
        let fresh = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|mtime| mtime > startup);
        if fresh {
            continue;
        }
        match fsqueue_evpid_from_name(&entry.file_name().to_string_lossy()) {
            Some(evpid) => return Some(evpid),
            None => log_debug!("debug: fsqueue: bogus file {}", path.display()),
        }
    }
}

/// queue_fs_init(): for the server, incoming/ emptied into purge/ (its
/// messages were never acknowledged); then queue/ and incoming/, 0700
/// owned by the queue user, made when the server starts and checked.
pub fn queue_fs_init(spool: &str, uid: u32, server: bool) -> bool {
    if server {
        let _ = mvpurge(
            &format!("{spool}{PATH_INCOMING}"),
            &format!("{spool}{PATH_PURGE}"),
        );
    }
    let mut ok = true;
    for dir in [PATH_QUEUE, PATH_INCOMING] {
        if !ckdir(&format!("{spool}{dir}"), 0o700, uid, 0, server) {
            ok = false;
        }
    }
    ok
}

impl QueueApi for QueueFs {
    fn message_create(&mut self) -> Option<u32> {
        queue_fs_message_create(self)
    }
    fn message_commit(&mut self, batch: &[(u32, PathBuf)]) -> Vec<bool> {
        queue_fs_message_commit(self, batch)
    }
    fn message_committer(&self) -> Option<Committer> {
        // The commit reads nothing of the queue's state but the root.
        let fs = QueueFs::new(&self.root);
        Some(Box::new(move |batch| queue_fs_message_commit(&fs, batch)))
    }
    fn message_delete(&mut self, msgid: u32) -> bool {
        queue_fs_message_delete(self, msgid)
    }
    fn message_fd_r(&mut self, msgid: u32) -> Option<File> {
        queue_fs_message_fd_r(self, msgid)
    }
    fn message_corrupt(&mut self, msgid: u32) -> bool {
        queue_fs_message_corrupt(self, msgid)
    }
    fn message_uncorrupt(&mut self, msgid: u32) -> bool {
        queue_fs_message_uncorrupt(self, msgid)
    }
    fn envelope_create(&mut self, msgid: u32, buf: &[u8]) -> Option<u64> {
        queue_fs_envelope_create(self, msgid, buf)
    }
    fn envelope_delete(&mut self, evpid: u64) -> bool {
        queue_fs_envelope_delete(self, evpid)
    }
    fn envelope_update(&mut self, evpid: u64, buf: &[u8]) -> bool {
        queue_fs_envelope_update(self, evpid, buf)
    }
    fn envelope_load(&mut self, evpid: u64) -> io::Result<Vec<u8>> {
        queue_fs_envelope_load(self, evpid)
    }
    fn envelope_corrupt(&mut self, evpid: u64) -> bool {
        queue_fs_envelope_corrupt(self, evpid)
    }
    fn envelope_walk(&mut self) -> BackendWalk {
        queue_fs_envelope_walk(self)
    }
    fn message_walk(&mut self, msgid: u32) -> io::Result<Vec<u64>> {
        queue_fs_message_walk(self, msgid)
    }
    fn message_set_owner(&mut self, msgid: u32, uid: u32) -> bool {
        fsqueue_message_set_owner(self, msgid, uid)
    }
    fn message_owner(&mut self, msgid: u32) -> Option<u32> {
        fsqueue_read_owner(&fsqueue_message_path(self, msgid))
    }
    fn message_owned(&mut self, uid: u32, from: u32, n: usize) -> Vec<u32> {
        fsqueue_message_owned(self, uid, from, n)
    }
}
