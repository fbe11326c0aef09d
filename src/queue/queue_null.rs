//! queue_null.c: the `null` queue backend, which accepts everything and
//! keeps nothing (OpenSMTPD queue_null.c 1.10), for benchmarks of the
//! rest of the daemon.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::queue::queue_backend::{
    queue_generate_evpid, queue_generate_msgid, BackendWalk, QueueApi,
};

pub struct QueueNull;

impl QueueApi for QueueNull {
    /// queue_null_message_create().
    fn message_create(&mut self) -> Option<u32> {
        Some(queue_generate_msgid())
    }
    /// queue_null_message_commit().
    fn message_commit(&mut self, batch: &[(u32, PathBuf)]) -> Vec<bool> {
        vec![true; batch.len()]
    }
    /// queue_null_message_delete().
    fn message_delete(&mut self, _msgid: u32) -> bool {
        true
    }
    /// queue_null_message_fd_r().
    fn message_fd_r(&mut self, _msgid: u32) -> Option<File> {
        None
    }
    fn message_corrupt(&mut self, _msgid: u32) -> bool {
        true
    }
    fn message_uncorrupt(&mut self, _msgid: u32) -> bool {
        false
    }
    /// queue_null_envelope_create().
    fn envelope_create(&mut self, msgid: u32, _buf: &[u8]) -> Option<u64> {
        Some(queue_generate_evpid(msgid))
    }
    /// queue_null_envelope_delete().
    fn envelope_delete(&mut self, _evpid: u64) -> bool {
        true
    }
    /// queue_null_envelope_update().
    fn envelope_update(&mut self, _evpid: u64, _buf: &[u8]) -> bool {
        true
    }
    /// queue_null_envelope_load().
    fn envelope_load(&mut self, _evpid: u64) -> io::Result<Vec<u8>> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn envelope_corrupt(&mut self, _evpid: u64) -> bool {
        true
    }
    /// queue_null_envelope_walk().
    fn envelope_walk(&mut self) -> BackendWalk {
        BackendWalk::Done
    }
    fn message_walk(&mut self, _msgid: u32) -> io::Result<Vec<u64>> {
        Ok(Vec::new())
    }
}
