//! scheduler_null.c: the backend that accepts everything and schedules
//! nothing (OpenSMTPD scheduler_null.c 1.11), `-B scheduler=null`.

use super::scheduler_backend::{Batch, Evpstate, Sched, SchedulerBackend, SchedulerInfo};
use crate::queue::envelope::DeliveryType;

pub struct SchedulerNull;

impl SchedulerBackend for SchedulerNull {
    /// scheduler_null_init().
    fn init(&mut self, _arg: &str) -> bool {
        true
    }

    /// scheduler_null_insert().
    fn insert(&mut self, _si: &mut SchedulerInfo, _now: i64) -> bool {
        false
    }

    /// scheduler_null_commit().
    fn commit(&mut self, _msgid: u32, _now: i64) -> usize {
        0
    }

    /// scheduler_null_rollback().
    fn rollback(&mut self, _msgid: u32, _now: i64) -> usize {
        0
    }

    /// scheduler_null_update().
    fn update(&mut self, _si: &mut SchedulerInfo, _now: i64) -> bool {
        false
    }

    /// scheduler_null_delete().
    fn delete(&mut self, _evpid: u64, _now: i64) -> bool {
        false
    }

    /// scheduler_null_hold().
    fn hold(&mut self, _evpid: u64, _holdq: u64, _now: i64) -> bool {
        false
    }

    /// scheduler_null_release().
    fn release(&mut self, _type: DeliveryType, _holdq: u64, _n: i32, _now: i64) -> usize {
        0
    }

    /// scheduler_null_batch(). OpenSMTPD answers a delay of 0, which
    /// re-arms the scheduler's timer at once, forever; we answer "nothing
    /// until something changes" because a process must not spin.
    fn batch(&mut self, _mask: Sched, _count: usize, _now: i64) -> Batch {
        Batch::Wait(None)
    }

    /// scheduler_null_messages().
    fn messages(&self, _from: u32, _size: usize) -> Vec<u32> {
        Vec::new()
    }

    /// scheduler_null_envelopes().
    fn envelopes(&self, _from: u64, _size: usize) -> Vec<Evpstate> {
        Vec::new()
    }

    /// scheduler_null_schedule().
    fn schedule(&mut self, _id: u64, _now: i64) -> usize {
        0
    }

    /// scheduler_null_remove().
    fn remove(&mut self, _id: u64, _now: i64) -> usize {
        0
    }

    /// scheduler_null_suspend().
    fn suspend(&mut self, _id: u64, _now: i64) -> usize {
        0
    }

    /// scheduler_null_resume().
    fn resume(&mut self, _id: u64, _now: i64) -> usize {
        0
    }

    /// C's null backend has no query: a NULL pointer the scheduler would
    /// call on discovery. Nothing is ever queued here.
    fn query(&self, _id: u64) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_accepts_and_never_schedules() {
        let mut b = SchedulerNull;
        assert!(b.init("null"));
        let mut si = SchedulerInfo {
            evpid: 0x0000_0001_0000_0001,
            creation: 100,
            ttl: 1000,
            ..SchedulerInfo::default()
        };
        assert!(!b.insert(&mut si, 100));
        assert_eq!(b.commit(1, 100), 0);
        assert_eq!(b.batch(Sched::all(), 10, 100_000), Batch::Wait(None));
        assert_eq!(b.messages(0, 10), Vec::<u32>::new());
        assert!(b.envelopes(0x0000_0001_0000_0000, 10).is_empty());
        assert_eq!(b.schedule(1, 100), 0);
        assert_eq!(b.remove(1, 100), 0);
        assert_eq!(b.suspend(1, 100), 0);
        assert_eq!(b.resume(1, 100), 0);
        assert!(!b.query(1));
    }
}
