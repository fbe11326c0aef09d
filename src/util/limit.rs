//! limit.c: the MTA's per-destination limits (OpenSMTPD limit.c 1.5).

use crate::sys::net::Family;

/// struct mta_limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtaLimits {
    pub maxconn_per_host: usize,
    pub maxconn_per_route: usize,
    pub maxconn_per_source: usize,
    pub maxconn_per_connector: usize,
    pub maxconn_per_relay: usize,
    pub maxconn_per_domain: usize,

    pub conndelay_host: i64,
    pub conndelay_route: i64,
    pub conndelay_source: i64,
    pub conndelay_connector: i64,
    pub conndelay_relay: i64,
    pub conndelay_domain: i64,

    pub discdelay_route: i64,

    pub max_mail_per_session: usize,
    pub sessdelay_transaction: i64,
    pub sessdelay_keepalive: i64,

    pub max_failures_per_session: usize,

    pub family: Family,

    pub task_hiwat: i64,
    pub task_lowat: i64,
    pub task_release: i64,
}

impl Default for MtaLimits {
    /// limit_mta_set_defaults().
    fn default() -> Self {
        MtaLimits {
            maxconn_per_host: 10,
            maxconn_per_route: 5,
            maxconn_per_source: 100,
            maxconn_per_connector: 20,
            maxconn_per_relay: 100,
            maxconn_per_domain: 100,
            conndelay_host: 0,
            conndelay_route: 5,
            conndelay_source: 0,
            conndelay_connector: 0,
            conndelay_relay: 2,
            conndelay_domain: 0,
            discdelay_route: 3,
            max_mail_per_session: 100,
            sessdelay_transaction: 0,
            sessdelay_keepalive: 10,
            max_failures_per_session: 25,
            family: Family::Unspec,
            task_hiwat: 50,
            task_lowat: 30,
            task_release: 10,
        }
    }
}

/// The keywords of `mta limit`, in limit_mta_set()'s order.
pub const MTA_LIMIT_KEYWORDS: [&str; 20] = [
    "max-conn-per-host",
    "max-conn-per-route",
    "max-conn-per-source",
    "max-conn-per-connector",
    "max-conn-per-relay",
    "max-conn-per-domain",
    "conn-delay-host",
    "conn-delay-route",
    "conn-delay-source",
    "conn-delay-connector",
    "conn-delay-relay",
    "conn-delay-domain",
    "reconn-delay-route",
    "session-mail-max",
    "session-transaction-delay",
    "session-keepalive",
    "max-failures-per-session",
    "task-hiwat",
    "task-lowat",
    "task-release",
];

impl MtaLimits {
    /// The value of one keyword, for printing the configuration back.
    pub fn get(&self, key: &str) -> Option<i64> {
        Some(match key {
            "max-conn-per-host" => self.maxconn_per_host as i64,
            "max-conn-per-route" => self.maxconn_per_route as i64,
            "max-conn-per-source" => self.maxconn_per_source as i64,
            "max-conn-per-connector" => self.maxconn_per_connector as i64,
            "max-conn-per-relay" => self.maxconn_per_relay as i64,
            "max-conn-per-domain" => self.maxconn_per_domain as i64,
            "conn-delay-host" => self.conndelay_host,
            "conn-delay-route" => self.conndelay_route,
            "conn-delay-source" => self.conndelay_source,
            "conn-delay-connector" => self.conndelay_connector,
            "conn-delay-relay" => self.conndelay_relay,
            "conn-delay-domain" => self.conndelay_domain,
            "reconn-delay-route" => self.discdelay_route,
            "session-mail-max" => self.max_mail_per_session as i64,
            "session-transaction-delay" => self.sessdelay_transaction,
            "session-keepalive" => self.sessdelay_keepalive,
            "max-failures-per-session" => self.max_failures_per_session as i64,
            "task-hiwat" => self.task_hiwat,
            "task-lowat" => self.task_lowat,
            "task-release" => self.task_release,
            _ => return None,
        })
    }
}

/// limit_mta_set(): sets one limit; false for an unknown keyword. As in
/// C, a negative count wraps to a huge one (no limit); get() gives the
/// negative number back.
pub fn limit_mta_set(limits: &mut MtaLimits, key: &str, value: i64) -> bool {
    let n = value as usize;
    match key {
        "max-conn-per-host" => limits.maxconn_per_host = n,
        "max-conn-per-route" => limits.maxconn_per_route = n,
        "max-conn-per-source" => limits.maxconn_per_source = n,
        "max-conn-per-connector" => limits.maxconn_per_connector = n,
        "max-conn-per-relay" => limits.maxconn_per_relay = n,
        "max-conn-per-domain" => limits.maxconn_per_domain = n,
        "conn-delay-host" => limits.conndelay_host = value,
        "conn-delay-route" => limits.conndelay_route = value,
        "conn-delay-source" => limits.conndelay_source = value,
        "conn-delay-connector" => limits.conndelay_connector = value,
        "conn-delay-relay" => limits.conndelay_relay = value,
        "conn-delay-domain" => limits.conndelay_domain = value,
        "reconn-delay-route" => limits.discdelay_route = value,
        "session-mail-max" => limits.max_mail_per_session = n,
        "session-transaction-delay" => limits.sessdelay_transaction = value,
        "session-keepalive" => limits.sessdelay_keepalive = value,
        "max-failures-per-session" => limits.max_failures_per_session = n,
        "task-hiwat" => limits.task_hiwat = value,
        "task-lowat" => limits.task_lowat = value,
        "task-release" => limits.task_release = value,
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_sets_and_reads_back() {
        for (i, key) in MTA_LIMIT_KEYWORDS.iter().enumerate() {
            let mut l = MtaLimits::default();
            assert!(limit_mta_set(&mut l, key, 1000 + i as i64));
            assert_eq!(l.get(key), Some(1000 + i as i64), "{key}");
        }
        assert!(!limit_mta_set(&mut MtaLimits::default(), "max-conn", 1));
    }
}
