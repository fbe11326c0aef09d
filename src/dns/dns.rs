//! dns.c: the MTA's lookups, served by lka: the mail exchangers of a
//! domain and their addresses, a host's addresses, and the preference of
//! a host among a domain's exchangers (OpenSMTPD dns.c 1.91).
//!
//! The addresses of a session's hosts are kept until its last lookup is
//! done, then sent sorted by preference (and, within one preference, in
//! the order of the answer): C sends each as its lookup ends, in no
//! order, and the MTA sorts them. Only MX records of the domain, or of
//! the end of its CNAME chain, count.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::asr::{
    asr_follow_cname, asr_sockaddr_from_str, AsrQuery, AsrResult, NO_DATA, NO_RECOVERY,
};
use super::event_asr::{event_asr_run, AsrOwner};
use super::getaddrinfo_async::{getaddrinfo_async, AddrInfoHints, AI_ADDRCONFIG};
use super::res_send_async::res_query_async;
use super::unpack_dns::{dname_from_fqdn, print_dname, Rdata, C_IN, NXDOMAIN, T_MX};
use crate::io::event::EventBase;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{
    m_add_id, m_add_int, m_add_sockaddr, m_add_string, m_close, m_create, m_end, m_get_id,
    m_get_string, m_msg, ImsgType, MprocOwner, ProcType,
};
use crate::smtpd::imsg_to_str;
use crate::util::to::sockaddr_to_text;

/// enum dns_error: what the MTA is told.
pub const DNS_OK: i32 = 0;
pub const DNS_RETRY: i32 = 1;
pub const DNS_EINVAL: i32 = 2;
pub const DNS_ENONAME: i32 = 3;
pub const DNS_ENOTFOUND: i32 = 4;
/// RFC 7505: the domain accepts no mail.
pub const DNS_NULLMX: i32 = 5;

/// struct dns_session: one request of the MTA.
struct DnsSession {
    p: ProcType,
    reqid: u64,
    name: String,
    /// Addresses found: (preference, the host's rank in the answer,
    /// host, address).
    found: Vec<(i32, usize, String, SocketAddr)>,
    refcount: usize,
}

/// struct dns_lookup: the address lookup of one host of a session.
struct DnsLookup {
    session: u64,
    host: String,
    preference: i32,
    rank: usize,
}

/// The sessions and lookups in flight in lka.
#[derive(Default)]
pub struct Dns {
    sessions: HashMap<u64, DnsSession>,
    lookups: HashMap<u64, DnsLookup>,
    next: u64,
}

impl Dns {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Sessions not answered yet.
    pub fn pending(&self) -> usize {
        self.sessions.len()
    }
}

/// A process that serves the MTA's lookups (lka).
pub trait DnsOwner: AsrOwner + MprocOwner {
    fn dns(&mut self) -> &mut Dns;
}

/// domainname_is_addr(): an address literal, `[192.0.2.1]` or
/// `[IPv6:2001:db8::1]`, as a domain.
fn domainname_is_addr(s: &str) -> Option<SocketAddr> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (family, addr) = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => (libc::AF_INET6, &inner[5..]),
        _ => (libc::AF_UNSPEC, inner),
    };
    asr_sockaddr_from_str(family, addr)
}

/// dns_imsg(): a request from the MTA.
pub fn dns_imsg<S: DnsOwner>(s: &mut S, base: &mut EventBase<S>, from: ProcType, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let type_ = ImsgType::from_u32(imsg.hdr.type_);
    let (name, domain) = match type_ {
        Some(ImsgType::IMSG_MTA_DNS_HOST) | Some(ImsgType::IMSG_MTA_DNS_MX) => {
            (m_get_string(&mut m).unwrap_or(""), None)
        }
        Some(ImsgType::IMSG_MTA_DNS_MX_PREFERENCE) => {
            let domain = m_get_string(&mut m).unwrap_or("");
            (m_get_string(&mut m).unwrap_or(""), Some(domain))
        }
        _ => fatalx!("dns_imsg: bad dns request {}", imsg_to_str(imsg.hdr.type_)),
    };
    m_end(&m);
    let sid = s.dns().id();
    s.dns().sessions.insert(
        sid,
        DnsSession {
            p: from,
            reqid,
            name: name.to_string(),
            found: Vec::new(),
            refcount: 0,
        },
    );
    match (type_, domain) {
        (Some(ImsgType::IMSG_MTA_DNS_HOST), _) => dns_lookup_host(s, base, sid, name, -1, 0),
        (Some(ImsgType::IMSG_MTA_DNS_MX), _) => dns_query_mx(s, base, sid, name),
        (_, Some(domain)) => dns_query_mx_preference(s, base, sid, domain),
        _ => {}
    }
}

/// IMSG_MTA_DNS_MX: an address literal answers itself; otherwise the
/// domain's MX records.
fn dns_query_mx<S: DnsOwner>(s: &mut S, base: &mut EventBase<S>, sid: u64, domain: &str) {
    if let Some(sa) = domainname_is_addr(domain) {
        if let Some(sess) = s.dns().sessions.get_mut(&sid) {
            sess.found.push((-1, 0, sockaddr_to_text(&sa), sa));
        }
        return dns_end(s, sid, DNS_OK);
    }
    let ctx = s.event_asr().asr.asr_use_resolver(base.now());
    match res_query_async(domain, C_IN, T_MX, ctx) {
        Ok(q) => {
            event_asr_run(s, base, AsrQuery::Send(q), dns_dispatch_mx, sid);
        }
        Err(errno) => {
            log_warn!(
                std::io::Error::from_raw_os_error(errno),
                "warn: res_query_async: {domain}"
            );
            dns_end(s, sid, DNS_EINVAL);
        }
    }
}

/// IMSG_MTA_DNS_MX_PREFERENCE: the domain's MX records, searched for the
/// session's host.
fn dns_query_mx_preference<S: DnsOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    sid: u64,
    domain: &str,
) {
    let ctx = s.event_asr().asr.asr_use_resolver(base.now());
    match res_query_async(domain, C_IN, T_MX, ctx) {
        Ok(q) => {
            event_asr_run(s, base, AsrQuery::Send(q), dns_dispatch_mx_preference, sid);
        }
        Err(_) => dns_reply_preference(s, sid, DNS_ENOTFOUND, 0),
    }
}

/// One address of a host for the MTA.
fn dns_reply_host<S: DnsOwner>(
    s: &mut S,
    from: ProcType,
    reqid: u64,
    host: &str,
    sa: &SocketAddr,
    pref: i32,
) {
    let Some(p) = s.mproc(from as u64) else {
        return;
    };
    m_create(p, ImsgType::IMSG_MTA_DNS_HOST, 0, 0, None);
    m_add_id(p, reqid);
    m_add_string(p, Some(host));
    m_add_sockaddr(p, sa);
    m_add_int(p, pref);
    m_close(p);
}

/// The end of a host or MX request, which ends the session: the
/// addresses found, then the end.
fn dns_end<S: DnsOwner>(s: &mut S, sid: u64, error: i32) {
    let Some(mut sess) = s.dns().sessions.remove(&sid) else {
        return;
    };
    sess.found.sort_by_key(|(pref, rank, _, _)| (*pref, *rank));
    for (pref, _, host, sa) in &sess.found {
        dns_reply_host(s, sess.p, sess.reqid, host, sa, *pref);
    }
    let Some(p) = s.mproc(sess.p as u64) else {
        return;
    };
    m_create(p, ImsgType::IMSG_MTA_DNS_HOST_END, 0, 0, None);
    m_add_id(p, sess.reqid);
    m_add_int(p, error);
    m_close(p);
}

/// The answer to a preference request, which ends the session.
fn dns_reply_preference<S: DnsOwner>(s: &mut S, sid: u64, error: i32, preference: i32) {
    let Some(sess) = s.dns().sessions.remove(&sid) else {
        return;
    };
    let Some(p) = s.mproc(sess.p as u64) else {
        return;
    };
    m_create(p, ImsgType::IMSG_MTA_DNS_MX_PREFERENCE, 0, 0, None);
    m_add_id(p, sess.reqid);
    m_add_int(p, error);
    if error == DNS_OK {
        m_add_int(p, preference);
    }
    m_close(p);
}

/// dns_dispatch_host(): the addresses of one host of the session; the
/// session ends with its last host.
fn dns_dispatch_host<S: DnsOwner>(s: &mut S, _base: &mut EventBase<S>, ar: AsrResult, lid: u64) {
    let Some(lookup) = s.dns().lookups.remove(&lid) else {
        return;
    };
    let Some(sess) = s.dns().sessions.get_mut(&lookup.session) else {
        return;
    };
    for ai in &ar.ar_addrinfo {
        let host = lookup.host.clone();
        sess.found
            .push((lookup.preference, lookup.rank, host, ai.ai_addr));
    }
    sess.refcount -= 1;
    if sess.refcount == 0 {
        let error = if !sess.found.is_empty() {
            DNS_OK
        } else {
            DNS_ENOTFOUND
        };
        dns_end(s, lookup.session, error);
    }
}

/// The exchangers of an MX answer for `domain`, sorted by preference, and
/// whether a null MX was among them; Err(()) when the aliases loop.
fn mx_from_packet(pkt: &[u8], domain: &str) -> Result<(Vec<(u16, String)>, bool), ()> {
    let qname = super::asr::asr_make_fqdn(domain, None)
        .and_then(|f| dname_from_fqdn(&f))
        .ok_or(())?;
    let chain = asr_follow_cname(pkt, &qname, T_MX, 0).map_err(|_| ())?;
    let mut mx = Vec::new();
    let mut nullmx = false;
    for rr in chain.records {
        let Rdata::Mx {
            preference,
            exchange,
        } = rr.rr
        else {
            continue;
        };
        let name = print_dname(&exchange);
        let name = name.strip_suffix('.').unwrap_or(&name).to_string();
        // RFC 7505's "0 .", and localhost, which no domain can mean.
        if (preference == 0 && name.is_empty()) || name.eq_ignore_ascii_case("localhost") {
            nullmx = true;
            continue;
        }
        mx.push((preference, name));
    }
    mx.sort_by_key(|(p, _)| *p);
    Ok((mx, nullmx))
}

/// dns_dispatch_mx(): the domain's exchangers, each then looked up; the
/// domain itself when it has none (the implicit MX of RFC 5321 5.1).
fn dns_dispatch_mx<S: DnsOwner>(s: &mut S, base: &mut EventBase<S>, ar: AsrResult, sid: u64) {
    if ar.ar_h_errno != 0 && ar.ar_h_errno != NO_DATA {
        let error = if ar.ar_rcode == NXDOMAIN {
            DNS_ENONAME
        } else if ar.ar_h_errno == NO_RECOVERY {
            DNS_EINVAL
        } else {
            DNS_RETRY
        };
        return dns_end(s, sid, error);
    }
    let Some(domain) = s.dns().sessions.get(&sid).map(|d| d.name.clone()) else {
        return;
    };
    let (mx, nullmx) = match mx_from_packet(ar.ar_data.as_deref().unwrap_or_default(), &domain) {
        Ok(found) => found,
        // Aliases that loop: a recursive server would have said SERVFAIL.
        Err(()) => return dns_end(s, sid, DNS_RETRY),
    };
    if mx.is_empty() && nullmx {
        return dns_end(s, sid, DNS_NULLMX);
    }
    if mx.is_empty() {
        return dns_lookup_host(s, base, sid, &domain, 0, 0);
    }
    for (rank, (preference, host)) in mx.into_iter().enumerate() {
        dns_lookup_host(s, base, sid, &host, i32::from(preference), rank);
    }
}

/// dns_dispatch_mx_preference(): the preference of the session's host
/// among the domain's exchangers.
fn dns_dispatch_mx_preference<S: DnsOwner>(
    s: &mut S,
    _base: &mut EventBase<S>,
    ar: AsrResult,
    sid: u64,
) {
    if ar.ar_h_errno != 0 {
        let error = if ar.ar_rcode == NXDOMAIN {
            DNS_ENONAME
        } else if ar.ar_h_errno == NO_RECOVERY || ar.ar_h_errno == NO_DATA {
            DNS_EINVAL
        } else {
            DNS_RETRY
        };
        return dns_reply_preference(s, sid, error, 0);
    }
    let Some(host) = s.dns().sessions.get(&sid).map(|d| d.name.clone()) else {
        return;
    };
    // The question is the domain's; the packet says which it was.
    let domain = question_name(ar.ar_data.as_deref().unwrap_or_default());
    let found = mx_from_packet(ar.ar_data.as_deref().unwrap_or_default(), &domain)
        .ok()
        .and_then(|(mx, _)| mx.into_iter().find(|(_, h)| h.eq_ignore_ascii_case(&host)));
    match found {
        Some((preference, _)) => dns_reply_preference(s, sid, DNS_OK, i32::from(preference)),
        None => dns_reply_preference(s, sid, DNS_ENOTFOUND, 0),
    }
}

/// The name a validated answer packet was for, fully qualified.
fn question_name(pkt: &[u8]) -> String {
    let mut p = super::unpack_dns::Unpack::new(pkt);
    let _ = p.unpack_header();
    p.unpack_query()
        .map(|q| print_dname(&q.q_dname))
        .unwrap_or_default()
}

/// dns_lookup_host(): the addresses of `host` (an address literal in
/// brackets is taken as the address), as one more lookup of the session.
fn dns_lookup_host<S: DnsOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    sid: u64,
    host: &str,
    preference: i32,
    rank: usize,
) {
    let lid = s.dns().id();
    if let Some(sess) = s.dns().sessions.get_mut(&sid) {
        sess.refcount += 1;
    }
    s.dns().lookups.insert(
        lid,
        DnsLookup {
            session: sid,
            host: host.to_string(),
            preference,
            rank,
        },
    );
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            let rest = match rest.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("IPv6:") => &rest[5..],
                _ => rest,
            };
            rest.split(']').next().unwrap_or(rest)
        }
        None => host,
    };
    let hints = AddrInfoHints {
        ai_flags: AI_ADDRCONFIG,
        ai_family: libc::AF_UNSPEC,
        ai_socktype: libc::SOCK_STREAM,
        ai_protocol: 0,
    };
    let ctx = s.event_asr().asr.asr_use_resolver(base.now());
    let q = getaddrinfo_async(Some(name), None, Some(&hints), ctx);
    event_asr_run(s, base, AsrQuery::GetAddrInfo(q), dns_dispatch_host, lid);
}
