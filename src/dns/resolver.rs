//! resolver.c: name lookups for the processes that may not do them
//! (OpenSMTPD resolver.c 1.7).
//!
//! The dispatcher, chrooted, asks lka: the `resolver_*` calls send a
//! request with a random id and keep its callback; lka runs the lookup
//! with its own resolver (`resolver_dispatch_request`) and answers; the
//! answer finds its callback again (`resolver_dispatch_result`).
//!
//! Two differences from C, both about answers that do not fit: an
//! IMSG_RES_QUERY answer whose packet is larger than an imsg can carry is
//! sent as a failure (NETDB_INTERNAL, EMSGSIZE) where C would die on it,
//! and a failed query sends an empty packet where C would send a length
//! of -1 and die.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::asr::{AddrInfo, AsrResult, NETDB_INTERNAL};
use super::event_asr::{event_asr_run, AsrOwner};
use super::getaddrinfo_async::{getaddrinfo_async, AddrInfoHints};
use super::getnameinfo_async::getnameinfo_async;
use super::res_send_async::res_query_async;
use crate::io::event::EventBase;
use crate::ipc::imsg::{Imsg, MAX_IMSGSIZE};
use crate::ipc::mproc::{
    m_add_data, m_add_int, m_add_sockaddr, m_add_string, m_close, m_create, m_end, m_get_data,
    m_get_int, m_get_sockaddr, m_get_string, m_msg, ImsgType, Mproc, MprocOwner, ProcType,
};
use crate::smtpd::imsg_to_str;

/// The process that resolves for the others.
const P_RESOLVER: ProcType = ProcType::PROC_LKA;

/// A getaddrinfo answer: the state, the loop, the argument, the
/// getaddrinfo error, errno, and the addresses.
pub type AiCb<S> = fn(&mut S, &mut EventBase<S>, u64, i32, i32, Vec<AddrInfo>);
/// A getnameinfo answer: the argument, the error, errno, host and service.
pub type NiCb<S> = fn(&mut S, &mut EventBase<S>, u64, i32, i32, Option<&str>, Option<&str>);
/// A res_query answer: the argument, h_errno, the rcode, the number of
/// answers, and the packet.
pub type ResCb<S> = fn(&mut S, &mut EventBase<S>, u64, i32, i32, i32, &[u8]);

enum Cb<S> {
    Ai(AiCb<S>),
    Ni(NiCb<S>),
    Res(ResCb<S>),
}

/// struct request: a lookup sent to lka.
struct Request<S> {
    cb: Cb<S>,
    arg: u64,
    ai: Vec<AddrInfo>,
}

/// The requests a process has sent to lka (C's reqtree).
pub struct Resolver<S> {
    reqs: HashMap<u32, Request<S>>,
}

impl<S> Default for Resolver<S> {
    fn default() -> Self {
        Resolver {
            reqs: HashMap::new(),
        }
    }
}

impl<S> Resolver<S> {
    /// Requests waiting for their answer.
    pub fn pending(&self) -> usize {
        self.reqs.len()
    }
}

/// A process that asks lka for lookups.
pub trait ResolverOwner: MprocOwner {
    fn resolver(&mut self) -> &mut Resolver<Self>;
}

fn p_resolver<S: ResolverOwner>(s: &mut S) -> &mut Mproc {
    match s.mproc(P_RESOLVER as u64) {
        Some(p) => p,
        None => fatalx!("resolver: no channel to lka"),
    }
}

/// A fresh request id, never 0, not in use.
fn request_new<S: ResolverOwner>(s: &mut S, cb: Cb<S>, arg: u64) -> u32 {
    let reqs = &mut s.resolver().reqs;
    let id = loop {
        let id = crate::sys::unistd::arc4random();
        if id != 0 && !reqs.contains_key(&id) {
            break id;
        }
    };
    reqs.insert(
        id,
        Request {
            cb,
            arg,
            ai: Vec::new(),
        },
    );
    id
}

/// resolver_getaddrinfo().
pub fn resolver_getaddrinfo<S: ResolverOwner>(
    s: &mut S,
    hostname: Option<&str>,
    servname: Option<&str>,
    hints: Option<&AddrInfoHints>,
    cb: AiCb<S>,
    arg: u64,
) {
    let id = request_new(s, Cb::Ai(cb), arg);
    let h = hints.copied().unwrap_or_default();
    let p = p_resolver(s);
    m_create(p, ImsgType::IMSG_GETADDRINFO, id, 0, None);
    m_add_int(p, h.ai_flags);
    m_add_int(p, h.ai_family);
    m_add_int(p, h.ai_socktype);
    m_add_int(p, h.ai_protocol);
    m_add_string(p, hostname);
    m_add_string(p, servname);
    m_close(p);
}

/// resolver_getnameinfo().
pub fn resolver_getnameinfo<S: ResolverOwner>(
    s: &mut S,
    sa: &SocketAddr,
    flags: i32,
    cb: NiCb<S>,
    arg: u64,
) {
    let id = request_new(s, Cb::Ni(cb), arg);
    let p = p_resolver(s);
    m_create(p, ImsgType::IMSG_GETNAMEINFO, id, 0, None);
    m_add_sockaddr(p, sa);
    m_add_int(p, flags);
    m_close(p);
}

/// resolver_res_query().
pub fn resolver_res_query<S: ResolverOwner>(
    s: &mut S,
    dname: &str,
    class: i32,
    type_: i32,
    cb: ResCb<S>,
    arg: u64,
) {
    let id = request_new(s, Cb::Res(cb), arg);
    let p = p_resolver(s);
    m_create(p, ImsgType::IMSG_RES_QUERY, id, 0, None);
    m_add_string(p, Some(dname));
    m_add_int(p, class);
    m_add_int(p, type_);
    m_close(p);
}

/// The callback argument of a request served in lka: who asked, and the
/// request's id (C's struct session).
fn session_arg(from: ProcType, reqid: u32) -> u64 {
    ((from as u64) << 32) | u64::from(reqid)
}

fn session_of(arg: u64) -> (u64, u32) {
    (arg >> 32, arg as u32)
}

/// resolver_dispatch_request(): in lka, a lookup asked by `from`.
pub fn resolver_dispatch_request<S: AsrOwner + MprocOwner>(
    s: &mut S,
    base: &mut EventBase<S>,
    from: ProcType,
    imsg: &Imsg,
) {
    let reqid = imsg.hdr.peerid;
    let arg = session_arg(from, reqid);
    let mut m = m_msg(imsg);
    let now = base.now();
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_GETADDRINFO) => {
            let hints = AddrInfoHints {
                ai_flags: m_get_int(&mut m),
                ai_family: m_get_int(&mut m),
                ai_socktype: m_get_int(&mut m),
                ai_protocol: m_get_int(&mut m),
            };
            let hostname = m_get_string(&mut m);
            let servname = m_get_string(&mut m);
            m_end(&m);
            let ctx = s.event_asr().asr.asr_use_resolver(now);
            let q = getaddrinfo_async(hostname, servname, Some(&hints), ctx);
            let q = super::asr::AsrQuery::GetAddrInfo(q);
            event_asr_run(s, base, q, resolver_getaddrinfo_cb, arg);
        }
        Some(ImsgType::IMSG_GETNAMEINFO) => {
            let sa = m_get_sockaddr(&mut m);
            let flags = m_get_int(&mut m);
            m_end(&m);
            let ctx = s.event_asr().asr.asr_use_resolver(now);
            let q = getnameinfo_async(sa, flags, true, true, ctx);
            let q = super::asr::AsrQuery::GetNameInfo(q);
            event_asr_run(s, base, q, resolver_getnameinfo_cb, arg);
        }
        Some(ImsgType::IMSG_RES_QUERY) => {
            let dname = m_get_string(&mut m).unwrap_or("");
            let class = m_get_int(&mut m);
            let type_ = m_get_int(&mut m);
            m_end(&m);
            let ctx = s.event_asr().asr.asr_use_resolver(now);
            match res_query_async(dname, class as u16, type_ as u16, ctx) {
                Ok(q) => {
                    let q = super::asr::AsrQuery::Send(q);
                    event_asr_run(s, base, q, resolver_res_query_cb, arg);
                }
                Err(errno) => {
                    let ar = AsrResult {
                        ar_h_errno: NETDB_INTERNAL,
                        ar_errno: errno,
                        ..Default::default()
                    };
                    resolver_res_query_cb(s, base, ar, arg);
                }
            }
        }
        _ => fatalx!("resolver_dispatch_request: {}", imsg_to_str(imsg.hdr.type_)),
    }
}

/// The channel to the process that asked; gone only if that process is,
/// and then the answer has no one to go to.
fn session_proc<S: MprocOwner>(s: &mut S, arg: u64) -> Option<(&mut Mproc, u32)> {
    let (key, reqid) = session_of(arg);
    s.mproc(key).map(|p| (p, reqid))
}

/// resolver_getaddrinfo_cb(): one message per address, then the end.
fn resolver_getaddrinfo_cb<S: AsrOwner + MprocOwner>(
    s: &mut S,
    _base: &mut EventBase<S>,
    ar: AsrResult,
    arg: u64,
) {
    let Some((p, reqid)) = session_proc(s, arg) else {
        return;
    };
    for ai in &ar.ar_addrinfo {
        m_create(p, ImsgType::IMSG_GETADDRINFO, reqid, 0, None);
        m_add_int(p, ai.ai_flags);
        m_add_int(p, ai.ai_family);
        m_add_int(p, ai.ai_socktype);
        m_add_int(p, ai.ai_protocol);
        m_add_sockaddr(p, &ai.ai_addr);
        m_add_string(p, ai.ai_canonname.as_deref());
        m_close(p);
    }
    m_create(p, ImsgType::IMSG_GETADDRINFO_END, reqid, 0, None);
    m_add_int(p, ar.ar_gai_errno);
    m_add_int(p, ar.ar_errno);
    m_close(p);
}

/// resolver_getnameinfo_cb().
fn resolver_getnameinfo_cb<S: AsrOwner + MprocOwner>(
    s: &mut S,
    _base: &mut EventBase<S>,
    ar: AsrResult,
    arg: u64,
) {
    let Some((p, reqid)) = session_proc(s, arg) else {
        return;
    };
    let ok = ar.ar_gai_errno == 0;
    m_create(p, ImsgType::IMSG_GETNAMEINFO, reqid, 0, None);
    m_add_int(p, ar.ar_gai_errno);
    m_add_int(p, ar.ar_errno);
    m_add_string(p, ar.ar_host.as_deref().filter(|_| ok));
    m_add_string(p, ar.ar_serv.as_deref().filter(|_| ok));
    m_close(p);
}

/// The room an answer packet has in an IMSG_RES_QUERY message: the
/// header, four ints and the data's length go first.
const RES_QUERY_ROOM: usize = MAX_IMSGSIZE - 16 - 4 * 4 - 8;

/// resolver_res_query_cb().
fn resolver_res_query_cb<S: AsrOwner + MprocOwner>(
    s: &mut S,
    _base: &mut EventBase<S>,
    mut ar: AsrResult,
    arg: u64,
) {
    let Some((p, reqid)) = session_proc(s, arg) else {
        return;
    };
    if ar
        .ar_data
        .as_ref()
        .is_some_and(|d| d.len() > RES_QUERY_ROOM)
    {
        ar = AsrResult {
            ar_h_errno: NETDB_INTERNAL,
            ar_errno: libc::EMSGSIZE,
            ..Default::default()
        };
    }
    m_create(p, ImsgType::IMSG_RES_QUERY, reqid, 0, None);
    m_add_int(p, ar.ar_h_errno);
    m_add_int(p, ar.ar_errno);
    m_add_int(p, i32::from(ar.ar_rcode));
    m_add_int(p, ar.ar_count as i32);
    m_add_data(p, ar.ar_data.as_deref().unwrap_or_default());
    m_close(p);
}

/// resolver_dispatch_result(): an answer from lka, for a request of this
/// process.
pub fn resolver_dispatch_result<S: ResolverOwner>(s: &mut S, base: &mut EventBase<S>, imsg: &Imsg) {
    let id = imsg.hdr.peerid;
    let mut m = m_msg(imsg);
    let type_ = ImsgType::from_u32(imsg.hdr.type_);
    if type_ == Some(ImsgType::IMSG_GETADDRINFO) {
        let (flags, family, socktype, protocol) = (
            m_get_int(&mut m),
            m_get_int(&mut m),
            m_get_int(&mut m),
            m_get_int(&mut m),
        );
        let addr = m_get_sockaddr(&mut m);
        let canonname = m_get_string(&mut m).map(String::from);
        m_end(&m);
        let Some(req) = s.resolver().reqs.get_mut(&id) else {
            fatalx!("resolver_dispatch_result: unknown request {id:08x}");
        };
        req.ai.push(AddrInfo {
            ai_flags: flags,
            ai_family: family,
            ai_socktype: socktype,
            ai_protocol: protocol,
            ai_addr: addr,
            ai_canonname: canonname,
        });
        return;
    }
    let Some(req) = s.resolver().reqs.remove(&id) else {
        fatalx!("resolver_dispatch_result: unknown request {id:08x}");
    };
    match (type_, req.cb) {
        (Some(ImsgType::IMSG_GETADDRINFO_END), Cb::Ai(cb)) => {
            let (gai, errno) = (m_get_int(&mut m), m_get_int(&mut m));
            m_end(&m);
            cb(s, base, req.arg, gai, errno, req.ai);
        }
        (Some(ImsgType::IMSG_GETNAMEINFO), Cb::Ni(cb)) => {
            let (gai, errno) = (m_get_int(&mut m), m_get_int(&mut m));
            let host = m_get_string(&mut m);
            let serv = m_get_string(&mut m);
            m_end(&m);
            cb(s, base, req.arg, gai, errno, host, serv);
        }
        (Some(ImsgType::IMSG_RES_QUERY), Cb::Res(cb)) => {
            let (herrno, _errno) = (m_get_int(&mut m), m_get_int(&mut m));
            let (rcode, count) = (m_get_int(&mut m), m_get_int(&mut m));
            let data = m_get_data(&mut m);
            m_end(&m);
            cb(s, base, req.arg, herrno, rcode, count, data);
        }
        _ => fatalx!(
            "resolver_dispatch_result: {} does not answer request {id:08x}",
            imsg_to_str(imsg.hdr.type_)
        ),
    }
}
