//! to.c: conversions between text and the structures of smtpd.h
//! (OpenSMTPD to.c 1.50). Only what the configuration needs so far; the
//! rest arrives with the processes that use it.

use std::net::SocketAddr;

use crate::sys::net::if_indextoname;
use crate::util::util::valid_domainpart;

pub const RELAY_TLS_OPPORTUNISTIC: i32 = 0;
pub const RELAY_TLS_STARTTLS: i32 = 1;
pub const RELAY_TLS_SMTPS: i32 = 2;
pub const RELAY_TLS_NO: i32 = 3;

pub const RELAY_AUTH: u16 = 0x08;
pub const RELAY_LMTP: u16 = 0x80;

/// struct relayhost: where `relay host` sends mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relayhost {
    pub flags: u16,
    pub tls: i32,
    pub hostname: String,
    pub port: u16,
    pub authlabel: String,
}

/// sockaddr_to_text(): the numeric host, with `%interface` for scoped
/// IPv6 addresses as getnameinfo(3) writes it.
pub fn sockaddr_to_text(sa: &SocketAddr) -> String {
    match sa {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) if a.scope_id() != 0 => match if_indextoname(a.scope_id()) {
            Some(ifname) => format!("{}%{ifname}", a.ip()),
            None => format!("{}%{}", a.ip(), a.scope_id()),
        },
        SocketAddr::V6(a) => a.ip().to_string(),
    }
}

/// sa_to_text(): `local` for the Unix socket, the dotted quad for IPv4,
/// the bracketed form for IPv6.
pub fn sa_to_text(sa: Option<&SocketAddr>) -> String {
    match sa {
        None => "local".to_string(),
        Some(a @ SocketAddr::V4(_)) => sockaddr_to_text(a),
        Some(a @ SocketAddr::V6(_)) => format!("[{}]", sockaddr_to_text(a)),
    }
}

/// duration_to_text(): `1d2h3m4s` (units that are zero left out), `0s`
/// for nothing; as the `delay=` of the logs shows it.
pub fn duration_to_text(t: i64) -> String {
    if t == 0 {
        return "0s".into();
    }
    let mut dst = String::new();
    if t < 0 {
        dst.push('-');
    }
    let t = t.unsigned_abs();
    let (d, h, m, s) = (t / 86400, t / 3600 % 24, t / 60 % 60, t % 60);
    for (v, unit) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if v != 0 {
            dst += &format!("{v}{unit}");
        }
    }
    dst
}

/// text_to_relayhost(): parses `[proto://[label@]]host[:port]`.
pub fn text_to_relayhost(s: &str) -> Option<Relayhost> {
    // (schema, tls, flags, default port); smtp:// is the default.
    const SCHEMAS: [(&str, i32, u16, u16); 5] = [
        ("smtp://", RELAY_TLS_OPPORTUNISTIC, 0, 25),
        ("smtp+tls://", RELAY_TLS_STARTTLS, 0, 25),
        ("smtp+notls://", RELAY_TLS_NO, 0, 25),
        // LMTP has no default port: one must be given.
        ("lmtp://", RELAY_TLS_NO, RELAY_LMTP, 0),
        ("smtps://", RELAY_TLS_SMTPS, 0, 465),
    ];
    if s.len() >= 1024 {
        return None;
    }
    let schema = SCHEMAS
        .iter()
        .find(|(name, ..)| s.len() >= name.len() && s[..name.len()].eq_ignore_ascii_case(name));
    let (rest, (_, tls, flags, port)) = match schema {
        Some(sc) => (&s[sc.0.len()..], *sc),
        // An unknown schema is an error, no schema means smtp://.
        None if s.contains("://") => return None,
        None => (s, SCHEMAS[0]),
    };
    let mut relay = Relayhost {
        flags,
        tls,
        port,
        ..Default::default()
    };
    let mut p = rest;
    if let Some(at) = p.find('@') {
        relay.authlabel = p[..at].to_string();
        p = &p[at + 1..];
    }
    let len = if p.starts_with('[') {
        p.find(']')? + 1
    } else {
        p.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(p.len())
    };
    if len > crate::defines::HOST_NAME_MAX {
        return None;
    }
    relay.hostname = p[..len].to_string();
    let after = &p[len..];
    if let Some(port) = after.strip_prefix(':') {
        // strtonum(3) with bounds 1 and IPPORT_HILASTAUTO.
        relay.port = port.parse::<u16>().ok().filter(|&p| p >= 1)?;
    }
    if !valid_domainpart(&relay.hostname) {
        return None;
    }
    if relay.flags & RELAY_LMTP != 0 && relay.port == 0 {
        return None;
    }
    if !relay.authlabel.is_empty() {
        // Credentials only travel over TLS.
        if relay.tls != RELAY_TLS_STARTTLS && relay.tls != RELAY_TLS_SMTPS {
            return None;
        }
        relay.flags |= RELAY_AUTH;
    }
    Some(relay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayhost_forms() {
        let r = text_to_relayhost("smtp+tls://bob@smtp.example.com:587").unwrap();
        assert_eq!(
            (r.tls, r.port, r.authlabel.as_str()),
            (RELAY_TLS_STARTTLS, 587, "bob")
        );
        assert_eq!(r.flags & RELAY_AUTH, RELAY_AUTH);
        let r = text_to_relayhost("mx.example.org").unwrap();
        assert_eq!((r.tls, r.port), (RELAY_TLS_OPPORTUNISTIC, 25));
        assert_eq!(text_to_relayhost("smtps://[192.0.2.1]").unwrap().port, 465);
        assert!(text_to_relayhost("lmtp://localhost").is_none());
        assert!(text_to_relayhost("lmtp://localhost:24").is_some());
        assert!(text_to_relayhost("bob@mx.example.org").is_none());
        assert!(text_to_relayhost("ftp://mx.example.org").is_none());
        assert!(text_to_relayhost("mx.example.org:0").is_none());
    }

    #[test]
    fn addresses_as_text() {
        let a: SocketAddr = "192.0.2.1:25".parse().unwrap();
        assert_eq!(sa_to_text(Some(&a)), "192.0.2.1");
        let a: SocketAddr = "[::1]:25".parse().unwrap();
        assert_eq!(sa_to_text(Some(&a)), "[::1]");
        assert_eq!(sa_to_text(None), "local");
    }

    #[test]
    fn durations_as_the_logs_show_them() {
        assert_eq!(duration_to_text(0), "0s");
        assert_eq!(duration_to_text(4 * 3600), "4h");
        assert_eq!(duration_to_text(86400 + 61), "1d1m1s");
        assert_eq!(duration_to_text(-5), "-5s");
    }
}
