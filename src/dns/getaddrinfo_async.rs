//! getaddrinfo_async.c: names to addresses, from the hosts file and the
//! name servers (libasr getaddrinfo_async.c).
//!
//! Two things differ from asr, both so that a caller can tell a name that
//! does not exist from a lookup that could not be made:
//! - the result says why nothing was found: EAI_NONAME when the name does
//!   not exist, EAI_NODATA when it has no address of the families asked,
//!   EAI_AGAIN (with ar_errno ETIMEDOUT when no server answered, 0 for a
//!   server failure) when the answer may come later, EAI_FAIL when the
//!   servers refused or the aliases loop. asr says EAI_NODATA for all;
//! - a CNAME chain is followed from the name asked, through later
//!   queries when an answer stops at an alias, at most MAX_CNAME_CHAIN
//!   aliases; only addresses of the chain's end are taken. When no server
//!   answers at all, the other families and domains are not tried: they
//!   would only wait as long again.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use super::asr::{
    asr_follow_cname, asr_hnok, asr_is_localhost, asr_parse_namedb, asr_sockaddr_from_str,
    asr_strdname, hnok_lenient, AddrInfo, AsrCtx, AsrDb, AsrResult, Async, ChainError,
    NETDB_SUCCESS, NO_DATA, NO_RECOVERY, TRY_AGAIN,
};
use super::res_search_async::{DomIter, IterDomain};
use super::res_send_async::{res_query_async, res_send_async_run, ResSend};
use super::unpack_dns::{Rdata, C_IN, T_A, T_AAAA};

pub use libc::{
    AI_ADDRCONFIG, AI_CANONNAME, AI_NUMERICHOST, AI_NUMERICSERV, AI_PASSIVE, EAI_AGAIN,
    EAI_BADFLAGS, EAI_FAIL, EAI_FAMILY, EAI_MEMORY, EAI_NODATA, EAI_NONAME, EAI_OVERFLOW,
    EAI_SERVICE, EAI_SOCKTYPE, EAI_SYSTEM,
};

/// The flags this getaddrinfo knows (AI_FQDN, OpenBSD's, is not offered:
/// smtpd does not use it).
const AI_MASK: i32 = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_NUMERICSERV | AI_ADDRCONFIG;

/// The hints of getaddrinfo(3); all zero asks for anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrInfoHints {
    pub ai_flags: i32,
    pub ai_family: i32,
    pub ai_socktype: i32,
    pub ai_protocol: i32,
}

/// struct match: the socket types an address is returned for.
struct Match {
    family: i32,
    socktype: i32,
    protocol: i32,
}

const MATCHES: [Match; 6] = [
    Match {
        family: libc::AF_INET,
        socktype: libc::SOCK_DGRAM,
        protocol: libc::IPPROTO_UDP,
    },
    Match {
        family: libc::AF_INET,
        socktype: libc::SOCK_STREAM,
        protocol: libc::IPPROTO_TCP,
    },
    Match {
        family: libc::AF_INET,
        socktype: libc::SOCK_RAW,
        protocol: 0,
    },
    Match {
        family: libc::AF_INET6,
        socktype: libc::SOCK_DGRAM,
        protocol: libc::IPPROTO_UDP,
    },
    Match {
        family: libc::AF_INET6,
        socktype: libc::SOCK_STREAM,
        protocol: libc::IPPROTO_TCP,
    },
    Match {
        family: libc::AF_INET6,
        socktype: libc::SOCK_RAW,
        protocol: 0,
    },
];

fn match_family(a: i32, m: &Match) -> bool {
    a == m.family || a == libc::AF_UNSPEC
}

fn match_proto(a: i32, m: &Match) -> bool {
    a == m.protocol || a == 0 || m.protocol == 0
}

/// Raw sockets only when asked for by name.
fn match_socktype(a: i32, m: &Match) -> bool {
    a == m.socktype || (a == 0 && m.socktype != libc::SOCK_RAW)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    NextDb,
    NextFamily,
    NextDomain,
    SameDb,
    Subquery,
    NotFound,
    Halt,
}

/// Why the name servers gave nothing, accumulated over the queries.
#[derive(Clone, Copy, Debug, Default)]
struct Misses {
    again: bool,
    again_errno: i32,
    fail: bool,
    nodata: bool,
}

/// A getaddrinfo in progress (asr_query's `ai` part).
pub struct GetAddrInfo {
    ctx: Rc<AsrCtx>,
    state: State,
    hostname: Option<String>,
    servname: Option<String>,
    hints: AddrInfoHints,
    port_tcp: i32,
    port_udp: i32,
    no_inet: bool,
    no_inet6: bool,
    /// The database in use, from 1.
    db_idx: usize,
    family_idx: usize,
    dom: DomIter,
    fqdn: Option<String>,
    /// The end of a CNAME chain an answer stopped at, asked next.
    chain: Option<String>,
    cname_hops: usize,
    subq: Option<Box<ResSend>>,
    ai: Vec<AddrInfo>,
    misses: Misses,
}

/// getaddrinfo_async(): the addresses of `hostname` and the port of
/// `servname`; at least one of them must be given.
pub fn getaddrinfo_async(
    hostname: Option<&str>,
    servname: Option<&str>,
    hints: Option<&AddrInfoHints>,
    ctx: Rc<AsrCtx>,
) -> Box<GetAddrInfo> {
    let hints = hints.copied().unwrap_or(AddrInfoHints {
        ai_flags: AI_ADDRCONFIG,
        ..Default::default()
    });
    Box::new(GetAddrInfo {
        ctx,
        state: State::Init,
        hostname: hostname.map(String::from),
        servname: servname.map(String::from),
        hints,
        port_tcp: 0,
        port_udp: 0,
        no_inet: false,
        no_inet6: false,
        db_idx: 0,
        family_idx: 0,
        dom: DomIter::new(),
        fqdn: None,
        chain: None,
        cname_hops: 0,
        subq: None,
        ai: Vec::new(),
        misses: Misses::default(),
    })
}

/// getaddrinfo_async_run(): the state machine.
pub fn getaddrinfo_async_run(q: &mut GetAddrInfo, ar: &mut AsrResult, now: Instant) -> Async {
    loop {
        match q.state {
            State::Init => state_init(q, ar),
            State::NextDb => {
                if q.db_idx >= q.ctx.ac_db.len() {
                    q.state = State::NotFound;
                } else {
                    q.db_idx += 1;
                    q.family_idx = 0;
                    q.chain = None;
                    q.state = State::SameDb;
                }
            }
            State::NextFamily => {
                q.family_idx += 1;
                q.chain = None;
                if q.hints.ai_family != libc::AF_UNSPEC || as_family(q) == -1 {
                    // The family was given, or all were tried with this
                    // database.
                    if q.ai.is_empty() {
                        q.state = State::NextDomain;
                    } else {
                        ar.ar_gai_errno = 0;
                        q.state = State::Halt;
                    }
                } else {
                    q.state = State::SameDb;
                }
            }
            State::NextDomain => state_next_domain(q, ar),
            State::SameDb => state_same_db(q, ar),
            State::Subquery => {
                let Some(sub) = q.subq.as_mut() else {
                    q.state = State::NextFamily;
                    continue;
                };
                *ar = AsrResult::default();
                if res_send_async_run(sub, ar, now) == Async::Cond {
                    return Async::Cond;
                }
                let sub = q.subq.take();
                subquery_done(q, ar, sub.as_deref());
            }
            State::NotFound => {
                let m = q.misses;
                ar.ar_gai_errno = if m.again {
                    ar.ar_errno = m.again_errno;
                    EAI_AGAIN
                } else if m.fail {
                    EAI_FAIL
                } else if m.nodata {
                    EAI_NODATA
                } else {
                    EAI_NONAME
                };
                q.state = State::Halt;
            }
            State::Halt => {
                if ar.ar_gai_errno == 0 {
                    ar.ar_count = q.ai.len();
                    ar.ar_addrinfo = std::mem::take(&mut q.ai);
                } else {
                    ar.ar_count = 0;
                    ar.ar_addrinfo.clear();
                }
                return Async::Done;
            }
        }
    }
}

fn halt(q: &mut GetAddrInfo, ar: &mut AsrResult, gai: i32) {
    ar.ar_gai_errno = gai;
    q.state = State::Halt;
}

/// AS_DB(): the database in use.
fn as_db(q: &GetAddrInfo) -> Option<AsrDb> {
    q.db_idx
        .checked_sub(1)
        .and_then(|i| q.ctx.ac_db.get(i))
        .copied()
}

/// AS_FAMILY(): the family in use from the resolver's list, -1 past it.
fn as_family(q: &GetAddrInfo) -> i32 {
    q.ctx.ac_family.get(q.family_idx).copied().unwrap_or(-1)
}

/// The family to ask for now: the one given, or the list's.
fn current_family(q: &GetAddrInfo) -> i32 {
    if q.hints.ai_family == libc::AF_UNSPEC {
        as_family(q)
    } else {
        q.hints.ai_family
    }
}

/// iter_family(): the families to try, in order; -1 when done.
fn iter_family(q: &mut GetAddrInfo, first: bool) -> i32 {
    if first {
        q.family_idx = 0;
        return current_family(q);
    }
    if q.hints.ai_family != libc::AF_UNSPEC {
        return -1;
    }
    q.family_idx += 1;
    as_family(q)
}

/// ASR_STATE_INIT: checks the arguments, answers what needs no lookup
/// (no host name, localhost, numeric addresses).
fn state_init(q: &mut GetAddrInfo, ar: &mut AsrResult) {
    if let Some(gai) = check_args(q, ar) {
        return halt(q, ar, gai);
    }
    ar.ar_gai_errno = 0;
    let numeric = q.hints.ai_flags & AI_NUMERICHOST != 0;
    let host = q.hostname.clone();
    let is_localhost = !numeric && host.as_deref().is_some_and(asr_is_localhost);
    if host.is_none() || is_localhost {
        return local_addresses(q, ar, is_localhost);
    }
    let host = host.unwrap_or_default();
    let mut family = iter_family(q, true);
    while family != -1 {
        if let Some(sa) = asr_sockaddr_from_str(family, &host) {
            addrinfo_add(q, sa, None);
            return halt(q, ar, 0);
        }
        family = iter_family(q, false);
    }
    if numeric {
        return halt(q, ar, EAI_NONAME);
    }
    // No strange bytes go to the name servers.
    if !hnok_lenient(&host) {
        return halt(q, ar, EAI_FAIL);
    }
    q.state = State::NextDb;
}

/// The argument checks of ASR_STATE_INIT, and the ports; Some(error)
/// when the call cannot be answered.
fn check_args(q: &mut GetAddrInfo, ar: &mut AsrResult) -> Option<i32> {
    if q.hostname.is_none() && q.servname.is_none() {
        return Some(EAI_NONAME);
    }
    if q.hostname.as_deref() == Some("") {
        return Some(EAI_NODATA);
    }
    let h = q.hints;
    if h.ai_flags & !AI_MASK != 0 {
        return Some(EAI_BADFLAGS);
    }
    if ![libc::AF_UNSPEC, libc::AF_INET, libc::AF_INET6].contains(&h.ai_family) {
        return Some(EAI_FAMILY);
    }
    if ![0, libc::SOCK_DGRAM, libc::SOCK_STREAM, libc::SOCK_RAW].contains(&h.ai_socktype) {
        return Some(EAI_SOCKTYPE);
    }
    let serv = q.servname.clone();
    if h.ai_socktype == libc::SOCK_RAW && get_port(serv.as_deref(), "raw", true) != 0 {
        return Some(EAI_SERVICE);
    }
    if h.ai_flags & AI_ADDRCONFIG != 0 {
        if let Err(e) = addrconfig_setup(q) {
            ar.ar_errno = e.raw_os_error().unwrap_or(libc::EIO);
            return Some(EAI_SYSTEM);
        }
    }
    let valid = MATCHES.iter().any(|m| {
        match_family(h.ai_family, m)
            && match_socktype(h.ai_socktype, m)
            && match_proto(h.ai_protocol, m)
    });
    if !valid {
        return Some(EAI_SOCKTYPE);
    }
    let numserv = h.ai_flags & AI_NUMERICSERV != 0;
    if h.ai_protocol == 0 || h.ai_protocol == libc::IPPROTO_UDP {
        q.port_udp = get_port(serv.as_deref(), "udp", numserv);
    }
    if h.ai_protocol == 0 || h.ai_protocol == libc::IPPROTO_TCP {
        q.port_tcp = get_port(serv.as_deref(), "tcp", numserv);
    }
    let (t, u) = (q.port_tcp, q.port_udp);
    if t == -2 || u == -2 || (t == -1 && u == -1) || (h.ai_protocol != 0 && (u == -1 || t == -1)) {
        return Some(EAI_SERVICE);
    }
    None
}

/// No host name, or localhost (RFC 6761 6.3): the loopback addresses, or
/// the wildcard ones for a passive socket, never a query.
fn local_addresses(q: &mut GetAddrInfo, ar: &mut AsrResult, is_localhost: bool) {
    let passive = q.hints.ai_flags & AI_PASSIVE != 0 && !is_localhost;
    let mut family = iter_family(q, true);
    while family != -1 {
        let ip: IpAddr = match (family == libc::AF_INET, passive) {
            (true, true) => [0u8, 0, 0, 0].into(),
            (true, false) => [127u8, 0, 0, 1].into(),
            (false, true) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            (false, false) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        addrinfo_add(q, SocketAddr::new(ip, 0), Some("localhost."));
        family = iter_family(q, false);
    }
    let gai = if q.ai.is_empty() { EAI_NODATA } else { 0 };
    halt(q, ar, gai);
}

/// ASR_STATE_NEXT_DOMAIN: the next name of the search list (name
/// servers only).
fn state_next_domain(q: &mut GetAddrInfo, ar: &mut AsrResult) {
    if as_db(q) != Some(AsrDb::Dns) {
        q.state = State::NextDb;
        return;
    }
    q.family_idx = 0;
    q.fqdn = None;
    let host = q.hostname.clone().unwrap_or_default();
    match q.dom.asr_iter_domain(&q.ctx, &host) {
        IterDomain::Done => q.state = State::NextDb,
        IterDomain::Error => halt(q, ar, EAI_FAIL),
        IterDomain::Name(f) => {
            q.fqdn = Some(f);
            q.state = State::SameDb;
        }
    }
}

/// ASR_STATE_SAME_DB: asks the database in use for the current family.
fn state_same_db(q: &mut GetAddrInfo, ar: &mut AsrResult) {
    match as_db(q) {
        Some(AsrDb::Dns) => {
            let Some(fqdn) = q.fqdn.clone() else {
                // First use of the name servers: start the search list.
                q.dom = DomIter::new();
                q.state = State::NextDomain;
                return;
            };
            let family = current_family(q);
            if (family == libc::AF_INET && q.no_inet) || (family == libc::AF_INET6 && q.no_inet6) {
                q.state = State::NextFamily;
                return;
            }
            let qtype = if family == libc::AF_INET6 {
                T_AAAA
            } else {
                T_A
            };
            let name = q.chain.clone().unwrap_or(fqdn);
            match res_query_async(&name, C_IN, qtype, Rc::clone(&q.ctx)) {
                Ok(sub) => {
                    q.subq = Some(sub);
                    q.state = State::Subquery;
                }
                Err(_) => halt(q, ar, EAI_FAIL),
            }
        }
        Some(AsrDb::File) => {
            let family = current_family(q);
            addrinfo_from_file(q, family);
            q.state = State::NextFamily;
        }
        None => q.state = State::NextDb,
    }
}

/// ASR_STATE_SUBQUERY, once the query is done: what it found, or why it
/// found nothing.
fn subquery_done(q: &mut GetAddrInfo, ar: &AsrResult, sub: Option<&ResSend>) {
    q.state = State::NextFamily;
    match ar.ar_h_errno {
        NETDB_SUCCESS => {}
        TRY_AGAIN => {
            q.misses.again = true;
            q.misses.again_errno = ar.ar_errno;
            if ar.ar_errno != 0 {
                // No server could be reached: asking again for another
                // family or domain would only wait as long again.
                q.state = State::NextDb;
            }
            return;
        }
        NO_DATA => {
            q.misses.nodata = true;
            return;
        }
        NO_RECOVERY => {
            q.misses.fail = true;
            return;
        }
        // HOST_NOT_FOUND, and anything else: the name is not there.
        _ => return,
    }
    let (Some(pkt), Some(sub)) = (ar.ar_data.as_deref(), sub) else {
        return;
    };
    addrinfo_from_pkt(q, pkt, sub);
}

/// get_port(): the port of `servname` for `proto`: 0 without one, -1
/// when the service is unknown for that protocol, -2 when invalid (out of
/// range, or a name where only numbers are allowed).
fn get_port(servname: Option<&str>, proto: &str, numonly: bool) -> i32 {
    let Some(s) = servname else {
        return 0;
    };
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i64>() {
            Ok(p) if (0..=65535).contains(&p) => p as i32,
            _ => -2,
        };
    }
    if numonly {
        return -2;
    }
    crate::sys::net::getservbyname(s, proto).map_or(-1, i32::from)
}

/// addrinfo_add(): one entry per socket type and protocol that the hints
/// allow for the address `sa`.
fn addrinfo_add(q: &mut GetAddrInfo, sa: SocketAddr, cname: Option<&str>) {
    let family = if sa.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let h = q.hints;
    for m in MATCHES.iter() {
        if m.family != family || !match_socktype(h.ai_socktype, m) || !match_proto(h.ai_protocol, m)
        {
            continue;
        }
        let proto = if h.ai_protocol != 0 {
            h.ai_protocol
        } else {
            m.protocol
        };
        let port = match proto {
            libc::IPPROTO_TCP => q.port_tcp,
            libc::IPPROTO_UDP => q.port_udp,
            _ => 0,
        };
        // A service that this protocol does not have.
        if port == -1 {
            continue;
        }
        let mut addr = sa;
        addr.set_port(port as u16);
        q.ai.push(AddrInfo {
            ai_flags: h.ai_flags,
            ai_family: family,
            ai_socktype: m.socktype,
            ai_protocol: proto,
            ai_addr: addr,
            ai_canonname: cname
                .filter(|_| h.ai_flags & AI_CANONNAME != 0)
                .map(String::from),
        });
    }
}

/// addrinfo_from_file(): the hosts file's addresses of `family` for the
/// name; the canonical name is the line's first name.
fn addrinfo_from_file(q: &mut GetAddrInfo, family: i32) {
    let host = q.hostname.clone().unwrap_or_default();
    for tok in asr_parse_namedb(&q.ctx.ac_hosts) {
        let names = &tok[1..];
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
            continue;
        }
        let Some(sa) = asr_sockaddr_from_str(family, &tok[0]) else {
            continue;
        };
        let cname = tok.get(1).cloned();
        addrinfo_add(q, sa, cname.as_deref());
    }
}

/// addrinfo_from_pkt(): the addresses the answer gives for the end of
/// the name's CNAME chain; when the answer stops at an alias, that alias
/// is asked next.
fn addrinfo_from_pkt(q: &mut GetAddrInfo, pkt: &[u8], sub: &ResSend) {
    let qtype = if current_family(q) == libc::AF_INET6 {
        T_AAAA
    } else {
        T_A
    };
    let chain = match asr_follow_cname(pkt, sub.dname(), qtype, q.cname_hops) {
        Ok(c) => c,
        Err(ChainError::Loop | ChainError::TooLong) => {
            q.misses.fail = true;
            return;
        }
    };
    if chain.records.is_empty() {
        if chain.aliases > 0 {
            q.cname_hops += chain.aliases;
            q.chain = Some(asr_strdname(&chain.target));
            q.state = State::SameDb;
        } else {
            q.misses.nodata = true;
        }
        return;
    }
    let target = asr_strdname(&chain.target);
    let cname = asr_hnok(&target).then_some(target);
    for rr in &chain.records {
        let ip: IpAddr = match rr.rr {
            Rdata::A(a) => a.into(),
            Rdata::Aaaa(a) => a.into(),
            _ => continue,
        };
        addrinfo_add(q, SocketAddr::new(ip, 0), cname.as_deref());
    }
}

/// addrconfig_setup(): AI_ADDRCONFIG asks only for the families this
/// host has an address of, loopback and link-local addresses aside.
fn addrconfig_setup(q: &mut GetAddrInfo) -> std::io::Result<()> {
    q.no_inet = true;
    q.no_inet6 = true;
    for ifa in crate::sys::net::getifaddrs()? {
        match ifa.addr.ip() {
            IpAddr::V4(a) if !a.is_loopback() => q.no_inet = false,
            IpAddr::V6(a) if !a.is_loopback() && a.segments()[0] & 0xffc0 != 0xfe80 => {
                q.no_inet6 = false
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
