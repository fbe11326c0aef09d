//! to.c: conversions between text and the structures of smtpd.h
//! (OpenSMTPD to.c 1.50): addresses, networks, relay URLs, user entries,
//! the right-hand sides of aliases (text_to_expandnode), rules for traces.
//! time_to_text, text_to_evpid, text_to_msgid, text_to_credentials and
//! tls_to_text arrive with the processes that use them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::config::Rule;
use crate::defines::{
    EXPAND_BUFFER, LINE_MAX, PATH_MAX, SMTPD_MAXDOMAINPARTSIZE, SMTPD_MAXLOCALPARTSIZE,
    SMTPD_VUSERNAME_SIZE,
};
use crate::lka::expand::{ExpandNode, ExpandType, ExpandU};
use crate::queue::envelope::PeerAddr;
use crate::sys::net::if_indextoname;
use crate::table::table::Userinfo;
use crate::util::mailaddr::Mailaddr;
use crate::util::util::{strtonum, valid_domainpart};

/// NI_MAXHOST of <netdb.h>: the buffer text_to_netaddr copies into.
const NI_MAXHOST: usize = 1025;

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

/// text_to_mailaddr(): splits `email` at its last `@`; without one it is
/// all user, with nothing before it all domain. Nothing is checked but
/// the lengths (C's buffers).
pub fn text_to_mailaddr(email: &str) -> Option<Mailaddr> {
    if email.len() >= LINE_MAX {
        return None;
    }
    let (user, domain) = match email.rfind('@') {
        None => (email, ""),
        Some(at) => (&email[..at], &email[at + 1..]),
    };
    if user.len() >= SMTPD_MAXLOCALPARTSIZE || domain.len() >= SMTPD_MAXDOMAINPARTSIZE {
        return None;
    }
    Some(Mailaddr::new(user, domain))
}

/// mailaddr_to_text(): `user@domain` (`@` for the null sender); None
/// when it would not fit C's LINE_MAX buffer.
pub fn mailaddr_to_text(maddr: &Mailaddr) -> Option<String> {
    let text = format!("{}@{}", maddr.user, maddr.domain);
    (text.len() < LINE_MAX).then_some(text)
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

/// ss_to_text(): sa_to_text() of a session's peer; nothing for an
/// address of no family (an envelope made inside smtpd).
pub fn ss_to_text(ss: &PeerAddr) -> String {
    match ss {
        PeerAddr::Unspec => String::new(),
        PeerAddr::Local => sa_to_text(None),
        PeerAddr::Inet(a) => sa_to_text(Some(a)),
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

/// struct netaddr: a network, an address and how many of its leading
/// bits count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Netaddr {
    pub ss: IpAddr,
    pub bits: u32,
}

/// text_to_netaddr(): `a.b.c.d[/bits]` (inet_net_pton(3)'s IPv4 forms,
/// shortened networks and hexadecimal included), or an IPv6 address with
/// an optional `/bits`, bare or in brackets, either optionally after
/// `IPv6:`.
pub fn text_to_netaddr(s: &str) -> Option<Netaddr> {
    let s = to_skip_prefix(s, "IPv6:").unwrap_or(s);
    if let Some((addr, bits)) = inet_net_pton_ipv4(s) {
        return Some(Netaddr {
            ss: IpAddr::V4(Ipv4Addr::from(addr)),
            bits,
        });
    }
    let buf = match s.strip_prefix('[') {
        None => {
            if s.len() >= NI_MAXHOST {
                return None;
            }
            s
        }
        Some(rest) => {
            let rest = to_skip_prefix(rest, "IPv6:").unwrap_or(rest);
            if rest.len() >= NI_MAXHOST {
                return None;
            }
            rest.strip_suffix(']')?
        }
    };
    // glibc's inet_net_pton(3) has no IPv6: OpenSMTPD falls back on its
    // own parser there, which keeps the whole address.
    let (addr, bits) = broken_inet_net_pton_ipv6(buf)?;
    Some(Netaddr {
        ss: IpAddr::V6(addr),
        bits,
    })
}

/// `s` without `prefix`, compared as strncasecmp(3) does.
fn to_skip_prefix<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &s[prefix.len()..])
}

/// inet_net_pton(3) for AF_INET, as the BSD libc and glibc have it:
/// dotted decimal octets (1 to 4) or a `0x` string of nibbles, then an
/// optional `/bits`. Without `/bits` the width comes from the network's
/// class, widened to the octets given. The address is zero-filled.
pub(crate) fn inet_net_pton_ipv4(src: &str) -> Option<([u8; 4], u32)> {
    let s = src.as_bytes();
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut dst = [0u8; 4];
    let mut n = 0usize;
    let mut i = 0usize;
    let mut ch = at(i);
    i += 1;
    if ch == b'0' && (at(i) == b'x' || at(i) == b'X') && at(i + 1).is_ascii_hexdigit() {
        i += 1;
        let (mut tmp, mut dirty) = (0u8, 0);
        loop {
            ch = at(i);
            i += 1;
            if !ch.is_ascii_hexdigit() {
                break;
            }
            // A hex digit's value: to_digit cannot fail here.
            let v = char::from(ch).to_digit(16).unwrap_or(0) as u8;
            tmp = if dirty == 0 { v } else { (tmp << 4) | v };
            dirty += 1;
            if dirty == 2 {
                *dst.get_mut(n)? = tmp;
                n += 1;
                dirty = 0;
            }
        }
        if dirty != 0 {
            *dst.get_mut(n)? = tmp << 4;
            n += 1;
        }
    } else if ch.is_ascii_digit() {
        loop {
            let mut tmp = 0u32;
            loop {
                tmp = tmp * 10 + u32::from(ch - b'0');
                if tmp > 255 {
                    return None;
                }
                ch = at(i);
                i += 1;
                if !ch.is_ascii_digit() {
                    break;
                }
            }
            *dst.get_mut(n)? = tmp as u8;
            n += 1;
            if ch == 0 || ch == b'/' {
                break;
            }
            if ch != b'.' {
                return None;
            }
            ch = at(i);
            i += 1;
            if !ch.is_ascii_digit() {
                return None;
            }
        }
    } else {
        return None;
    }

    let mut bits: Option<u32> = None;
    if ch == b'/' && at(i).is_ascii_digit() && n > 0 {
        ch = at(i);
        i += 1;
        let mut b = 0u32;
        loop {
            b = b * 10 + u32::from(ch - b'0');
            if b > 32 {
                return None;
            }
            ch = at(i);
            i += 1;
            if !ch.is_ascii_digit() {
                break;
            }
        }
        if ch != 0 {
            return None;
        }
        bits = Some(b);
    }
    if ch != 0 || n == 0 {
        return None;
    }
    let bits = bits.unwrap_or_else(|| {
        let class = match dst[0] {
            240.. => 32,
            224.. => 4,
            192.. => 24,
            128.. => 16,
            _ => 8,
        };
        class.max(n as u32 * 8)
    });
    Some((dst, bits))
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

/// rule_to_text(): a rule as the rule traces show it.
pub fn rule_to_text(r: &Rule) -> String {
    let t = |name: &Option<String>| name.clone().unwrap_or_default();
    let neg = |flag: i8| if flag < 0 { " !" } else { "" };
    let mut buf = String::from("match");
    if r.flag_tag != 0 {
        buf += &format!("{} tag {}", neg(r.flag_tag), t(&r.table_tag));
    }
    if r.flag_from != 0 {
        buf += neg(r.flag_from);
        if r.flag_from_socket {
            buf += " from socket";
        } else if r.flag_from_rdns {
            buf += " from rdns";
            if let Some(table) = &r.table_from {
                buf += &format!(" {table}");
            }
        } else {
            match r.table_from.as_deref() {
                Some("<anyhost>") => buf += " from any",
                Some("<localhost>") => buf += " from local",
                other => buf += &format!(" from src {}", other.unwrap_or_default()),
            }
        }
    }
    if r.flag_for != 0 {
        buf += neg(r.flag_for);
        match r.table_for.as_deref() {
            Some("<anydestination>") => buf += " for any",
            Some("<localnames>") => buf += " for local",
            other => buf += &format!(" for domain {}", other.unwrap_or_default()),
        }
    }
    if r.flag_smtp_helo != 0 {
        buf += &format!("{} helo {}", neg(r.flag_smtp_helo), t(&r.table_smtp_helo));
    }
    if r.flag_smtp_auth != 0 {
        buf += &format!("{} auth", neg(r.flag_smtp_auth));
        if let Some(table) = &r.table_smtp_auth {
            buf += &format!(" {table}");
        }
    }
    if r.flag_smtp_starttls != 0 {
        buf += &format!("{} tls", neg(r.flag_smtp_starttls));
    }
    if r.flag_smtp_mail_from != 0 {
        buf += &format!(
            "{} mail-from {}",
            neg(r.flag_smtp_mail_from),
            t(&r.table_smtp_mail_from)
        );
    }
    if r.flag_smtp_rcpt_to != 0 {
        buf += &format!(
            "{} rcpt-to {}",
            neg(r.flag_smtp_rcpt_to),
            t(&r.table_smtp_rcpt_to)
        );
    }
    buf += " action ";
    if r.reject {
        buf += "reject";
    } else {
        buf += &t(&r.dispatcher);
    }
    buf
}

/// text_to_userinfo(): `username:uid:gid:directory`, the directory being
/// the rest of the line.
pub fn text_to_userinfo(s: &str) -> Option<Userinfo> {
    let mut fields = s.splitn(4, ':');
    let username = fields.next()?;
    let uid = fields.next()?;
    let gid = fields.next()?;
    let directory = fields.next()?;
    if username.len() >= SMTPD_VUSERNAME_SIZE || directory.len() >= PATH_MAX {
        return None;
    }
    Some(Userinfo {
        username: username.to_string(),
        directory: directory.to_string(),
        uid: strtonum(uid, 0, i64::from(u32::MAX))? as u32,
        gid: strtonum(gid, 0, i64::from(u32::MAX))? as u32,
    })
}

/// text_to_expandnode(): one item of an aliases(5) right-hand side, tried
/// as an error, an include, a command, a file, an address, a user name,
/// in that order.
pub fn text_to_expandnode(s: &str) -> Option<ExpandNode> {
    if let Some(xn) = alias_is_error(s)
        .or_else(|| alias_is_include(s))
        .or_else(|| alias_is_filter(s))
        .or_else(|| alias_is_filename(s))
    {
        return Some(xn);
    }
    // OpenSMTPD's alias_is_address() cuts the caller's buffer at the `@`
    // before it checks the characters: when it refuses the address, the
    // user name check sees only the part before the `@`, so that
    // `bob@[192.0.2.1]` or `bob@exa_mple.org` become the local user bob.
    // Kept for compatibility with existing alias files.
    match alias_is_address(s) {
        Ok(xn) => Some(xn),
        Err(Some(user)) => alias_is_username(user),
        Err(None) => alias_is_username(s),
    }
}

/// expandnode_to_text(): the node's value (`user@domain` for an
/// address); None for an invalid node.
pub fn expandnode_to_text(expandnode: &ExpandNode) -> Option<String> {
    match (&expandnode.type_, &expandnode.u) {
        (ExpandType::Invalid, _) => None,
        (_, ExpandU::Mailaddr(m)) => mailaddr_to_text(m),
        (_, ExpandU::Text(t)) => Some(t.clone()),
    }
}

/// alias_is_filter(): `|command`, or `"|command"`.
fn alias_is_filter(line: &str) -> Option<ExpandNode> {
    let quoted = line.starts_with('"');
    let rest = line[usize::from(quoted)..].strip_prefix('|')?;
    if rest.len() >= EXPAND_BUFFER {
        return None;
    }
    let command = if quoted {
        rest.strip_suffix('"')?
    } else {
        rest
    };
    Some(ExpandNode::new(
        ExpandType::Filter,
        ExpandU::Text(command.to_string()),
    ))
}

/// alias_is_username(): letters, digits, `_ . - +`.
fn alias_is_username(line: &str) -> Option<ExpandNode> {
    if line.len() >= SMTPD_MAXLOCALPARTSIZE {
        return None;
    }
    if !line
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_.-+".contains(&c))
    {
        return None;
    }
    Some(ExpandNode::new(
        ExpandType::Username,
        ExpandU::Text(line.to_string()),
    ))
}

/// alias_is_address(): `user@domain`, the user of letters, digits and
/// `!#$%*/?|^{}`~&'+-=_.`, the domain of letters, digits, `-` and `.`;
/// both are cut to their C buffers. When refused after the `@` was found
/// (see text_to_expandnode), the error carries the part before it.
fn alias_is_address(line: &str) -> Result<ExpandNode, Option<&str>> {
    if line.len() < 3 {
        return Err(None);
    }
    let Some(at) = line.find('@') else {
        return Err(None);
    };
    if at == 0 || at == line.len() - 1 {
        return Err(None);
    }
    let (user, domain) = (&line[..at], &line[at + 1..]);
    const ALLOWED: &[u8] = b"!#$%*/?|^{}`~&'+-=_.";
    let user_ok = user
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || ALLOWED.contains(&c));
    let domain_ok = domain
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    if !user_ok || !domain_ok {
        return Err(Some(user));
    }
    // Both are ASCII here: cutting at a byte count keeps them whole.
    let cut = |s: &str, size: usize| s[..s.len().min(size - 1)].to_string();
    Ok(ExpandNode::new(
        ExpandType::Address,
        ExpandU::Mailaddr(Mailaddr {
            user: cut(user, SMTPD_MAXLOCALPARTSIZE),
            domain: cut(domain, SMTPD_MAXDOMAINPARTSIZE),
        }),
    ))
}

/// alias_is_filename(): an absolute path.
fn alias_is_filename(line: &str) -> Option<ExpandNode> {
    if !line.starts_with('/') || line.len() >= EXPAND_BUFFER {
        return None;
    }
    Some(ExpandNode::new(
        ExpandType::Filename,
        ExpandU::Text(line.to_string()),
    ))
}

/// alias_is_include(): `:include:/path` or `include:/path`, any case.
fn alias_is_include(line: &str) -> Option<ExpandNode> {
    let path = to_skip_prefix(line, ":include:").or_else(|| to_skip_prefix(line, "include:"))?;
    let mut xn = alias_is_filename(path)?;
    xn.type_ = ExpandType::Include;
    Some(xn)
}

/// alias_is_error(): `:error:` or `error:` (any case), then a 4xx or 5xx
/// code, a space and a message starting with a letter or digit.
fn alias_is_error(line: &str) -> Option<ExpandNode> {
    let buffer = to_skip_prefix(line, ":error:").or_else(|| to_skip_prefix(line, "error:"))?;
    if buffer.len() >= EXPAND_BUFFER || buffer.len() < 5 {
        return None;
    }
    let b = buffer.as_bytes();
    if b[3] != b' '
        || !b[4].is_ascii_alphanumeric()
        || (b[0] != b'4' && b[0] != b'5')
        || !b[1].is_ascii_digit()
        || !b[2].is_ascii_digit()
    {
        return None;
    }
    Some(ExpandNode::new(
        ExpandType::Error,
        ExpandU::Text(buffer.to_string()),
    ))
}

/// broken_inet_net_pton_ipv6(): an IPv6 address and an optional `/bits`
/// (0 to 128, default 128).
fn broken_inet_net_pton_ipv6(src: &str) -> Option<(Ipv6Addr, u32)> {
    // sizeof("xxxx:xxxx:xxxx:xxxx:xxxx:xxxx:255:255:255:255/128")
    if src.len() >= 51 {
        return None;
    }
    let (addr, sep) = match src.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (src, None),
    };
    let addr: Ipv6Addr = addr.parse().ok()?;
    let bits = match sep {
        None => 128,
        Some(b) => strtonum(b, 0, 128)? as u32,
    };
    Some((addr, bits))
}

/// The English names dates are written with, whatever the locale.
const DAY: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTH: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// time_to_text(): the local time as RFC 5322 dates write it, with the
/// zone's name in a comment: `Thu, 26 Nov 2026 03:04:31 +0100 (CET)`.
/// Built by hand, as C does, so that no locale changes a word.
pub fn time_to_text(when: i64) -> String {
    let Some(lt) = crate::sys::unistd::localtime(when).filter(|_| when != 0) else {
        fatalx!("time_to_text: localtime");
    };
    let off = lt.gmtoff;
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {}{:02}{:02} ({})",
        DAY[lt.wday.rem_euclid(7) as usize],
        lt.mday,
        MONTH[lt.mon.rem_euclid(12) as usize],
        lt.year + 1900,
        lt.hour,
        lt.min,
        lt.sec,
        if off >= 0 { '+' } else { '-' },
        (off / 3600).abs(),
        (off % 3600).abs() / 60,
        lt.zone
    )
}

/// ctime(3): `Thu Nov 24 18:22:48 1986\n` in local time, the date of the
/// mbox From_ line that mail.local and mail.mboxfile write.
pub fn ctime(when: i64) -> String {
    let Some(tm) = crate::sys::unistd::localtime(when) else {
        // Where ctime(3) returns NULL; no clock reads that far.
        return "??? ??? ?? ??:??:?? ????\n".to_string();
    };
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}\n",
        DAY[tm.wday.rem_euclid(7) as usize],
        MONTH[tm.mon.rem_euclid(12) as usize],
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        i64::from(tm.year) + 1900
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_has_the_shape_and_width_of_ctime3() {
        // The zone is the machine's: only a date far from any month's end
        // gives the same day everywhere.
        let t = ctime(1_700_000_000);
        assert_eq!(t.len(), 25, "{t:?}");
        assert!(
            t.starts_with("Tue Nov 14 ") || t.starts_with("Wed Nov 15 "),
            "{t:?}"
        );
        assert!(t.ends_with(" 2023\n"), "{t:?}");
        // A day of one digit is padded to two columns with a space.
        assert!(ctime(1_700_000_000 - 10 * 86400).contains(" Nov  "));
    }

    #[test]
    fn dates_read_as_rfc5322_dates() {
        let t = time_to_text(1_700_000_000);
        // The zone is the machine's; the shape is fixed.
        let shape = t.split(' ').collect::<Vec<_>>();
        assert_eq!(shape.len(), 7, "{t}");
        assert!(shape[0].ends_with(',') && shape[0].len() == 4, "{t}");
        assert!(
            shape[5].len() == 5 && (shape[5].starts_with('+') || shape[5].starts_with('-')),
            "{t}"
        );
        assert!(shape[6].starts_with('(') && shape[6].ends_with(')'), "{t}");
    }

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
    fn mail_addresses_split_at_the_last_at() {
        assert_eq!(
            text_to_mailaddr("a@b@example.org"),
            Some(Mailaddr::new("a@b", "example.org"))
        );
        assert_eq!(
            text_to_mailaddr("@example.org"),
            Some(Mailaddr::new("", "example.org"))
        );
        assert_eq!(text_to_mailaddr("bob"), Some(Mailaddr::new("bob", "")));
        assert_eq!(text_to_mailaddr("bob@"), Some(Mailaddr::new("bob", "")));
        assert_eq!(text_to_mailaddr("@"), Some(Mailaddr::default()));
        assert_eq!(text_to_mailaddr(&"u".repeat(256)), None);
        assert!(text_to_mailaddr(&"u".repeat(255)).is_some());
        assert_eq!(text_to_mailaddr(&format!("u@{}", "d".repeat(256))), None);
        assert_eq!(
            mailaddr_to_text(&Mailaddr::new("bob", "example.org")).as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(mailaddr_to_text(&Mailaddr::default()).as_deref(), Some("@"));
        assert_eq!(
            mailaddr_to_text(&Mailaddr::new(&"u".repeat(LINE_MAX), "")),
            None
        );
    }

    #[test]
    fn ipv4_networks_as_inet_net_pton_reads_them() {
        let v4 = |s: &str| {
            text_to_netaddr(s).map(|n| match n.ss {
                IpAddr::V4(a) => (a.to_string(), n.bits),
                IpAddr::V6(_) => panic!("{s} read as IPv6"),
            })
        };
        let n = |a: &str, b: u32| Some((a.to_string(), b));
        assert_eq!(v4("192.168.1.0/24"), n("192.168.1.0", 24));
        assert_eq!(v4("192.168.1.1"), n("192.168.1.1", 32));
        assert_eq!(v4("0.0.0.0/0"), n("0.0.0.0", 0));
        // Classful widths, widened to the octets given.
        assert_eq!(v4("10"), n("10.0.0.0", 8));
        assert_eq!(v4("10.1"), n("10.1.0.0", 16));
        assert_eq!(v4("172.16"), n("172.16.0.0", 16));
        assert_eq!(v4("192.168.1"), n("192.168.1.0", 24));
        assert_eq!(v4("224.1"), n("224.1.0.0", 16));
        assert_eq!(v4("240"), n("240.0.0.0", 32));
        assert_eq!(v4("10/8"), n("10.0.0.0", 8));
        assert_eq!(v4("0x0a"), n("10.0.0.0", 8));
        assert_eq!(v4("0xC0A801"), n("192.168.1.0", 24));
        assert_eq!(v4("0xa"), n("160.0.0.0", 16));
        assert_eq!(v4("IPv6:192.0.2.1"), n("192.0.2.1", 32));
        for bad in [
            "",
            "local",
            "256.0.0.0",
            "1.2.3.4.5",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1..2",
            "1.2.",
            "1.2.3.4/24x",
            "1.2.3.4 ",
            "0x",
        ] {
            assert_eq!(text_to_netaddr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_networks_bare_or_bracketed() {
        let v6 = |s: &str| text_to_netaddr(s).map(|n| (n.ss.to_string(), n.bits));
        let n = |a: &str, b: u32| Some((a.to_string(), b));
        assert_eq!(v6("[::1]"), n("::1", 128));
        assert_eq!(v6("::1"), n("::1", 128));
        assert_eq!(v6("[IPv6:2001:db8::1]"), n("2001:db8::1", 128));
        assert_eq!(v6("ipv6:2001:db8::/32"), n("2001:db8::", 32));
        assert_eq!(v6("[2001:db8::/32]"), n("2001:db8::", 32));
        assert_eq!(v6("::/0"), n("::", 0));
        for bad in [
            "[::1",
            "[2001:db8::]/32",
            "2001:db8::/129",
            "[]",
            "[",
            "::1/x",
            "fe80::1%1",
        ] {
            assert_eq!(text_to_netaddr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn userinfo_fields() {
        assert_eq!(
            text_to_userinfo("joe:1000:100:/home/virtual/joe"),
            Some(Userinfo {
                username: "joe".into(),
                directory: "/home/virtual/joe".into(),
                uid: 1000,
                gid: 100,
            })
        );
        assert_eq!(text_to_userinfo("joe:1:2:/a:b").unwrap().directory, "/a:b");
        assert_eq!(text_to_userinfo("joe:1:2:").unwrap().directory, "");
        for bad in [
            "joe:1:2",
            "joe:x:2:/",
            "joe:1:-2:/",
            "joe::2:/",
            "joe:4294967296:2:/",
        ] {
            assert_eq!(text_to_userinfo(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rules_as_traces_show_them() {
        let r = Rule {
            flag_from: -1,
            table_from: Some("<localhost>".into()),
            flag_for: 1,
            table_for: Some("<dynamic:3>".into()),
            flag_tag: 1,
            table_tag: Some("tags".into()),
            flag_smtp_auth: 1,
            flag_smtp_starttls: -1,
            flag_smtp_mail_from: 1,
            table_smtp_mail_from: Some("senders".into()),
            dispatcher: Some("local".into()),
            ..Default::default()
        };
        assert_eq!(
            rule_to_text(&r),
            "match tag tags ! from local for domain <dynamic:3> auth ! tls \
             mail-from senders action local"
        );
        let r = Rule {
            flag_from: 1,
            flag_from_rdns: true,
            flag_for: 1,
            table_for: Some("<anydestination>".into()),
            reject: true,
            ..Default::default()
        };
        assert_eq!(rule_to_text(&r), "match from rdns for any action reject");
        let r = Rule {
            flag_from: 1,
            flag_from_socket: true,
            flag_for: -1,
            table_for: Some("<localnames>".into()),
            dispatcher: Some("d".into()),
            ..Default::default()
        };
        assert_eq!(rule_to_text(&r), "match from socket ! for local action d");
    }

    #[test]
    fn peers_as_text() {
        assert_eq!(ss_to_text(&PeerAddr::Local), "local");
        assert_eq!(ss_to_text(&PeerAddr::Unspec), "");
        assert_eq!(
            ss_to_text(&PeerAddr::Inet("[2001:db8::1]:25".parse().unwrap())),
            "[2001:db8::1]"
        );
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
