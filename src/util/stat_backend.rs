//! stat_backend.c: the counters every process keeps in control (OpenSMTPD
//! stat_backend.c 1.11), and the structs of smtpd.h that carry them.
//!
//! A process changes a counter by sending control IMSG_STAT_INCREMENT,
//! _DECREMENT or _SET with the key and a struct stat_value; C reaches
//! control through its global p_control, here the caller passes its
//! channel to control.

use std::cell::RefCell;

use crate::ipc::mproc::{m_add_data, m_add_string, m_close, m_create, ImsgType, Mproc};

/// enum stat_type.
pub const STAT_COUNTER: i32 = 0;
pub const STAT_TIMESTAMP: i32 = 1;
pub const STAT_TIMEVAL: i32 = 2;
pub const STAT_TIMESPEC: i32 = 3;

/// sizeof(struct stat_value) on LP64: the enum, 4 bytes of padding, the
/// union of size_t, time_t, struct timeval and struct timespec.
pub const STAT_VALUE_SIZE: usize = 24;
/// STAT_KEY_SIZE.
pub const STAT_KEY_SIZE: usize = 1024;
/// sizeof(struct stat_kv): the iterator (a pointer), the key, the value.
pub const STAT_KV_SIZE: usize = 8 + STAT_KEY_SIZE + STAT_VALUE_SIZE;

/// struct stat_value: `a` is the counter, the timestamp, or the seconds
/// of a timeval or timespec; `b` their microseconds or nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatValue {
    pub type_: i32,
    pub a: i64,
    pub b: i64,
}

impl StatValue {
    /// stat_counter().
    pub fn counter(n: usize) -> StatValue {
        StatValue {
            type_: STAT_COUNTER,
            a: n as i64,
            b: 0,
        }
    }

    /// stat_timestamp().
    pub fn timestamp(t: i64) -> StatValue {
        StatValue {
            type_: STAT_TIMESTAMP,
            a: t,
            b: 0,
        }
    }

    pub fn to_bytes(self) -> [u8; STAT_VALUE_SIZE] {
        let mut b = [0u8; STAT_VALUE_SIZE];
        b[0..4].copy_from_slice(&self.type_.to_ne_bytes());
        b[8..16].copy_from_slice(&self.a.to_ne_bytes());
        b[16..24].copy_from_slice(&self.b.to_ne_bytes());
        b
    }

    /// None for a blob of the wrong size.
    pub fn from_bytes(b: &[u8]) -> Option<StatValue> {
        if b.len() != STAT_VALUE_SIZE {
            return None;
        }
        let i64_at = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or_default());
        Some(StatValue {
            type_: i32::from_ne_bytes(b[0..4].try_into().unwrap_or_default()),
            a: i64_at(8),
            b: i64_at(16),
        })
    }
}

/// struct stat_kv, as smtpctl and control exchange it for `show stats`:
/// `iter` is C's opaque cursor, here only whether there is an entry (the
/// key is the cursor: the next entry is the first after it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatKv {
    pub iter: bool,
    pub key: String,
    pub val: StatValue,
}

impl StatKv {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; STAT_KV_SIZE];
        b[0..8].copy_from_slice(&u64::from(self.iter).to_ne_bytes());
        let k = self.key.as_bytes();
        let n = k.len().min(STAT_KEY_SIZE - 1);
        b[8..8 + n].copy_from_slice(&k[..n]);
        b[8 + STAT_KEY_SIZE..].copy_from_slice(&self.val.to_bytes());
        b
    }

    /// None for a blob of the wrong size or a key that is not text.
    pub fn from_bytes(b: &[u8]) -> Option<StatKv> {
        if b.len() != STAT_KV_SIZE {
            return None;
        }
        let key = &b[8..8 + STAT_KEY_SIZE];
        let end = key.iter().position(|&c| c == 0)?;
        Some(StatKv {
            iter: b[0..8].iter().any(|&c| c != 0),
            key: std::str::from_utf8(&key[..end]).ok()?.to_string(),
            val: StatValue::from_bytes(&b[8 + STAT_KEY_SIZE..])?,
        })
    }
}

fn stat_send(p: &mut Mproc, t: ImsgType, key: &str, value: StatValue) {
    m_create(p, t, 0, 0, None);
    m_add_string(p, Some(key));
    m_add_data(p, &value.to_bytes());
    m_close(p);
}

/// stat_increment(): `p` is the caller's channel to control.
pub fn stat_increment(p: &mut Mproc, key: &str, count: usize) {
    if count != 0 {
        stat_send(
            p,
            ImsgType::IMSG_STAT_INCREMENT,
            key,
            StatValue::counter(count),
        );
    }
}

thread_local! {
    /// Counter changes made where the channel to control is out of reach
    /// (a queue or scheduler backend, the evpcache), by key: the process
    /// sends them at the end of each turn of its loop (stat_flush).
    static STAT_PENDING: RefCell<Vec<(&'static str, i64)>> = const { RefCell::new(Vec::new()) };
}

/// stat_increment() or stat_decrement() (by `delta`'s sign) for code
/// that cannot reach control itself; stat_flush sends it.
pub fn stat_note(key: &'static str, delta: i64) {
    STAT_PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(k, _)| *k == key) {
            Some((_, d)) => *d += delta,
            None => p.push((key, delta)),
        }
    });
}

/// Sends control what stat_note gathered since the last call, one
/// message a key with the sum of its changes.
pub fn stat_flush(p: &mut Mproc) {
    let pending = STAT_PENDING.with(|s| std::mem::take(&mut *s.borrow_mut()));
    for (key, delta) in pending {
        if delta >= 0 {
            stat_increment(p, key, delta as usize);
        } else {
            stat_decrement(p, key, delta.unsigned_abs() as usize);
        }
    }
}

/// stat_decrement().
pub fn stat_decrement(p: &mut Mproc, key: &str, count: usize) {
    if count != 0 {
        stat_send(
            p,
            ImsgType::IMSG_STAT_DECREMENT,
            key,
            StatValue::counter(count),
        );
    }
}

/// stat_set().
pub fn stat_set(p: &mut Mproc, key: &str, value: StatValue) {
    stat_send(p, ImsgType::IMSG_STAT_SET, key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_pairs_round_trip_through_their_c_layout() {
        let v = StatValue {
            type_: STAT_TIMEVAL,
            a: 1_700_000_000,
            b: 250_000,
        };
        let b = v.to_bytes();
        assert_eq!(&b[0..4], &STAT_TIMEVAL.to_ne_bytes());
        assert_eq!(&b[4..8], &[0; 4]);
        assert_eq!(StatValue::from_bytes(&b), Some(v));
        assert_eq!(StatValue::from_bytes(&b[..20]), None);
        let kv = StatKv {
            iter: true,
            key: "smtp.session".into(),
            val: StatValue::counter(3),
        };
        let b = kv.to_bytes();
        assert_eq!(b.len(), 1056);
        assert_eq!(StatKv::from_bytes(&b), Some(kv));
        let mut bad = b.clone();
        bad[8..8 + STAT_KEY_SIZE].fill(b'x');
        assert_eq!(StatKv::from_bytes(&bad), None, "an unterminated key");
    }
}
