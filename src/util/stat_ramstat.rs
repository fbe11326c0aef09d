//! stat_ramstat.c: the counters in control's memory (OpenSMTPD
//! stat_ramstat.c 1.11), in key order as C's red-black tree keeps them.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::stat_backend::StatValue;
use crate::util::log::TRACE_STAT;

#[derive(Debug, Default)]
pub struct Ramstat {
    stats: BTreeMap<String, StatValue>,
}

impl Ramstat {
    /// ramstat_init(): `uptime` is there from the start, as C sets it for
    /// `smtpctl show stats`.
    pub fn init(uptime: i64) -> Ramstat {
        log_trace!(TRACE_STAT, "ramstat: init");
        let mut r = Ramstat::default();
        r.set("uptime", StatValue::timestamp(uptime));
        r
    }

    /// ramstat_increment(). Counters wrap as C's size_t does.
    pub fn increment(&mut self, name: &str, val: usize) {
        log_trace!(TRACE_STAT, "ramstat: increment: {name}");
        let e = self.stats.entry(name.to_string()).or_default();
        e.a = (e.a as usize).wrapping_add(val) as i64;
    }

    /// ramstat_decrement().
    pub fn decrement(&mut self, name: &str, val: usize) {
        log_trace!(TRACE_STAT, "ramstat: decrement: {name}");
        let e = self.stats.entry(name.to_string()).or_default();
        e.a = (e.a as usize).wrapping_sub(val) as i64;
    }

    /// ramstat_set().
    pub fn set(&mut self, name: &str, val: StatValue) {
        log_trace!(TRACE_STAT, "ramstat: set: {name}");
        self.stats.insert(name.to_string(), val);
    }

    /// ramstat_iter(): the first entry, or the first after `after`.
    pub fn iter(&self, after: Option<&str>) -> Option<(&str, StatValue)> {
        log_trace!(TRACE_STAT, "ramstat: iter");
        let mut range = match after {
            None => self.stats.range::<str, _>(..),
            Some(k) => self
                .stats
                .range::<str, _>((Bound::Excluded(k), Bound::Unbounded)),
        };
        range.next().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_go_up_and_down_and_iterate_in_key_order() {
        let mut r = Ramstat::init(1000);
        r.increment("smtp.session", 2);
        r.decrement("smtp.session", 1);
        r.increment("mda.user", 1);
        r.decrement("queue.x", 1);
        let mut keys = Vec::new();
        let mut cur: Option<String> = None;
        while let Some((k, v)) = r.iter(cur.as_deref()) {
            keys.push((k.to_string(), v.a));
            cur = Some(k.to_string());
        }
        assert_eq!(
            keys,
            [
                ("mda.user".to_string(), 1),
                ("queue.x".to_string(), -1),
                ("smtp.session".to_string(), 1),
                ("uptime".to_string(), 1000)
            ]
        );
    }
}
