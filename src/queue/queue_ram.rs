//! queue_ram.c: the `ram` queue backend, the queue in memory (OpenSMTPD
//! queue_ram.c 1.11). Nothing survives a restart, so there is nothing to
//! walk at start. The message data still passes through the spool's
//! temporary/: the dispatcher writes it there, and commit reads it in.
//!
//! Where we differ from OpenSMTPD 7.8: a message walk (`smtpctl
//! discover`) lists the message's envelopes, where C has no handler and
//! would crash; deleting a message frees its envelopes, where C pops
//! from the wrong tree; envelopes set aside are kept, not dropped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use crate::queue::envelope::evpid_to_msgid;
use crate::queue::queue_backend::{
    queue_generate_evpid, queue_generate_msgid, BackendWalk, QueueApi, PATH_TEMPORARY,
};
use crate::util::stat_backend::stat_note;

/// struct qr_message: the data and the envelopes of one message.
#[derive(Default)]
struct QrMessage {
    buf: Vec<u8>,
    envelopes: BTreeMap<u64, Vec<u8>>,
    /// The local user who submitted it (not in C).
    owner: Option<u32>,
}

/// The `ram` backend's state: C's `messages` tree, and what was set
/// aside.
pub struct QueueRam {
    root: PathBuf,
    messages: HashMap<u32, QrMessage>,
    corrupt: HashMap<u32, QrMessage>,
}

impl QueueRam {
    /// queue_ram_init().
    pub fn new(root: &Path) -> QueueRam {
        QueueRam {
            root: root.to_path_buf(),
            messages: HashMap::new(),
            corrupt: HashMap::new(),
        }
    }
}

/// get_message().
fn get_message(qr: &mut QueueRam, msgid: u32) -> Option<&mut QrMessage> {
    let msg = qr.messages.get_mut(&msgid);
    if msg.is_none() {
        log_warnx!("warn: queue-ram: message not found");
    }
    msg
}

/// queue_ram_message_create().
fn queue_ram_message_create(qr: &mut QueueRam) -> Option<u32> {
    let msgid = loop {
        let msgid = queue_generate_msgid();
        if !qr.messages.contains_key(&msgid) {
            break msgid;
        }
    };
    qr.messages.insert(msgid, QrMessage::default());
    Some(msgid)
}

/// queue_ram_message_commit(): each message's data read into memory.
fn queue_ram_message_commit(qr: &mut QueueRam, batch: &[(u32, PathBuf)]) -> Vec<bool> {
    batch
        .iter()
        .map(|(msgid, path)| {
            let Some(msg) = qr.messages.get_mut(msgid) else {
                log_warnx!("warn: queue-ram: msgid not found");
                return false;
            };
            match std::fs::read(path) {
                Ok(buf) => {
                    stat_note("queue.ram.message.size", buf.len() as i64);
                    msg.buf = buf;
                    true
                }
                Err(e) => {
                    log_warn!(e, "warn: queue-ram: fopen: {}", path.display());
                    false
                }
            }
        })
        .collect()
}

/// queue_ram_message_delete().
fn queue_ram_message_delete(qr: &mut QueueRam, msgid: u32) -> bool {
    let Some(msg) = qr.messages.remove(&msgid) else {
        log_warnx!("warn: queue-ram: not found");
        return false;
    };
    let envelopes: usize = msg.envelopes.values().map(Vec::len).sum();
    stat_note("queue.ram.envelope.size", -(envelopes as i64));
    stat_note("queue.ram.message.size", -(msg.buf.len() as i64));
    true
}

/// queue_ram_message_fd_r(): the data in a temporary file (mktmpfile:
/// unlinked at once, so that it goes when the descriptor does).
fn queue_ram_message_fd_r(qr: &mut QueueRam, msgid: u32) -> Option<File> {
    let Some(msg) = qr.messages.get(&msgid) else {
        log_warnx!("warn: queue-ram: not found");
        return None;
    };
    let mut f = match mktmpfile(&qr.root) {
        Ok(f) => f,
        Err(e) => {
            log_warn!(e, "warn: queue-ram: mktmpfile");
            return None;
        }
    };
    if let Err(e) = f.write_all(&msg.buf).and_then(|()| f.rewind()) {
        log_warn!(e, "warn: queue-ram: write");
        return None;
    }
    Some(f)
}

/// mktmpfile() of util.c: a new file in temporary/, already unlinked.
fn mktmpfile(root: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        let path = root.join(format!(
            "{}/smtpd.{:08x}",
            &PATH_TEMPORARY[1..],
            crate::util::util::random_u32()
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// queue_ram_envelope_create().
fn queue_ram_envelope_create(qr: &mut QueueRam, msgid: u32, buf: &[u8]) -> Option<u64> {
    let msg = get_message(qr, msgid)?;
    let evpid = loop {
        let evpid = queue_generate_evpid(msgid);
        if !msg.envelopes.contains_key(&evpid) {
            break evpid;
        }
    };
    msg.envelopes.insert(evpid, buf.to_vec());
    stat_note("queue.ram.envelope.size", buf.len() as i64);
    Some(evpid)
}

/// queue_ram_envelope_delete(): the message goes with its last envelope.
fn queue_ram_envelope_delete(qr: &mut QueueRam, evpid: u64) -> bool {
    let msgid = evpid_to_msgid(evpid);
    let Some(msg) = get_message(qr, msgid) else {
        return false;
    };
    let Some(evp) = msg.envelopes.remove(&evpid) else {
        log_warnx!("warn: queue-ram: not found");
        return false;
    };
    stat_note("queue.ram.envelope.size", -(evp.len() as i64));
    if msg.envelopes.is_empty() {
        stat_note("queue.ram.message.size", -(msg.buf.len() as i64));
        qr.messages.remove(&msgid);
    }
    true
}

/// queue_ram_envelope_update().
fn queue_ram_envelope_update(qr: &mut QueueRam, evpid: u64, buf: &[u8]) -> bool {
    let Some(msg) = get_message(qr, evpid_to_msgid(evpid)) else {
        return false;
    };
    match msg.envelopes.get_mut(&evpid) {
        Some(evp) => {
            // C takes off the new length, not the old one.
            stat_note(
                "queue.ram.envelope.size",
                buf.len() as i64 - evp.len() as i64,
            );
            *evp = buf.to_vec();
            true
        }
        None => {
            log_warnx!("warn: queue-ram: not found");
            false
        }
    }
}

/// queue_ram_envelope_load().
fn queue_ram_envelope_load(qr: &mut QueueRam, evpid: u64) -> io::Result<Vec<u8>> {
    let not_found = || io::Error::from(io::ErrorKind::NotFound);
    let msg = get_message(qr, evpid_to_msgid(evpid)).ok_or_else(not_found)?;
    match msg.envelopes.get(&evpid) {
        Some(evp) => Ok(evp.clone()),
        None => {
            log_warnx!("warn: queue-ram: not found");
            Err(not_found())
        }
    }
}

/// Sets an envelope aside, with a copy of its message's data.
fn queue_ram_envelope_corrupt(qr: &mut QueueRam, evpid: u64) -> bool {
    let msgid = evpid_to_msgid(evpid);
    let Some(msg) = qr.messages.get_mut(&msgid) else {
        return false;
    };
    let Some(evp) = msg.envelopes.remove(&evpid) else {
        return false;
    };
    let data = if msg.envelopes.is_empty() {
        qr.messages
            .remove(&msgid)
            .map(|m| m.buf)
            .unwrap_or_default()
    } else {
        msg.buf.clone()
    };
    let set_aside = qr.corrupt.entry(msgid).or_default();
    set_aside.buf = data;
    set_aside.envelopes.insert(evpid, evp);
    true
}

fn queue_ram_message_corrupt(qr: &mut QueueRam, msgid: u32) -> bool {
    let Some(msg) = qr.messages.remove(&msgid) else {
        return false;
    };
    let set_aside = qr.corrupt.entry(msgid).or_default();
    set_aside.buf = msg.buf;
    set_aside.envelopes.extend(msg.envelopes);
    true
}

fn queue_ram_message_uncorrupt(qr: &mut QueueRam, msgid: u32) -> bool {
    let Some(set_aside) = qr.corrupt.remove(&msgid) else {
        return false;
    };
    let msg = qr.messages.entry(msgid).or_default();
    if msg.buf.is_empty() {
        msg.buf = set_aside.buf;
    }
    msg.envelopes.extend(set_aside.envelopes);
    true
}

/// queue_ram_message_walk(): no C twin (see the top).
fn queue_ram_message_walk(qr: &mut QueueRam, msgid: u32) -> io::Result<Vec<u64>> {
    match get_message(qr, msgid) {
        Some(msg) => Ok(msg.envelopes.keys().copied().collect()),
        None => Err(io::ErrorKind::NotFound.into()),
    }
}

impl QueueApi for QueueRam {
    fn message_create(&mut self) -> Option<u32> {
        queue_ram_message_create(self)
    }
    fn message_commit(&mut self, batch: &[(u32, PathBuf)]) -> Vec<bool> {
        queue_ram_message_commit(self, batch)
    }
    fn message_delete(&mut self, msgid: u32) -> bool {
        queue_ram_message_delete(self, msgid)
    }
    fn message_fd_r(&mut self, msgid: u32) -> Option<File> {
        queue_ram_message_fd_r(self, msgid)
    }
    fn message_corrupt(&mut self, msgid: u32) -> bool {
        queue_ram_message_corrupt(self, msgid)
    }
    fn message_uncorrupt(&mut self, msgid: u32) -> bool {
        queue_ram_message_uncorrupt(self, msgid)
    }
    fn envelope_create(&mut self, msgid: u32, buf: &[u8]) -> Option<u64> {
        queue_ram_envelope_create(self, msgid, buf)
    }
    fn envelope_delete(&mut self, evpid: u64) -> bool {
        queue_ram_envelope_delete(self, evpid)
    }
    fn envelope_update(&mut self, evpid: u64, buf: &[u8]) -> bool {
        queue_ram_envelope_update(self, evpid, buf)
    }
    fn envelope_load(&mut self, evpid: u64) -> io::Result<Vec<u8>> {
        queue_ram_envelope_load(self, evpid)
    }
    fn envelope_corrupt(&mut self, evpid: u64) -> bool {
        queue_ram_envelope_corrupt(self, evpid)
    }
    /// queue_ram_envelope_walk(): nothing survives a restart.
    fn envelope_walk(&mut self) -> BackendWalk {
        BackendWalk::Done
    }
    fn message_walk(&mut self, msgid: u32) -> io::Result<Vec<u64>> {
        queue_ram_message_walk(self, msgid)
    }
    fn message_set_owner(&mut self, msgid: u32, uid: u32) -> bool {
        match self.messages.get_mut(&msgid) {
            Some(msg) => {
                msg.owner = Some(uid);
                true
            }
            None => false,
        }
    }
    fn message_owner(&mut self, msgid: u32) -> Option<u32> {
        self.messages.get(&msgid).and_then(|m| m.owner)
    }
    fn message_owned(&mut self, uid: u32, from: u32, n: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .messages
            .iter()
            .filter(|(id, m)| **id >= from && m.owner == Some(uid) && !m.envelopes.is_empty())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.truncate(n);
        ids
    }
}
