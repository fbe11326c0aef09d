//! getnameinfo_async.c: the host and service names of a socket address
//! (libasr getnameinfo_async.c).
//!
//! With NI_NAMEREQD, asr reports every failure as EAI_NONAME, so a
//! client whose reverse lookup timed out looks like a client without
//! one. Here the reason is kept: EAI_NONAME (no such name), EAI_NODATA
//! (no PTR record), EAI_AGAIN with ar_errno ETIMEDOUT (no server
//! answered) or 0 (a server failed), EAI_FAIL (refused, or aliases that
//! loop).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::asr::{AsrCtx, AsrResult, Async, NETDB_INTERNAL, NO_DATA, NO_RECOVERY, TRY_AGAIN};
use super::gethostnamadr_async::{gethostbyaddr_async, gethostnamadr_async_run, GetHostByAddr};

use libc::{EAI_AGAIN, EAI_FAIL, EAI_NODATA, EAI_NONAME, EAI_SYSTEM};
pub use libc::{NI_DGRAM, NI_NAMEREQD, NI_NOFQDN, NI_NUMERICHOST, NI_NUMERICSERV};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    Subquery,
    Halt,
}

/// A getnameinfo in progress (asr_query's `ni` part).
pub struct GetNameInfo {
    ctx: Rc<AsrCtx>,
    state: State,
    sa: SocketAddr,
    flags: i32,
    want_host: bool,
    want_serv: bool,
    serv: Option<String>,
    subq: Option<Box<GetHostByAddr>>,
}

/// getnameinfo_async(): `want_host` and `want_serv` stand for C's
/// non-empty result buffers; the names come back in ar_host and ar_serv.
pub fn getnameinfo_async(
    sa: SocketAddr,
    flags: i32,
    want_host: bool,
    want_serv: bool,
    ctx: Rc<AsrCtx>,
) -> Box<GetNameInfo> {
    Box::new(GetNameInfo {
        ctx,
        state: State::Init,
        sa,
        flags,
        want_host,
        want_serv,
        serv: None,
        subq: None,
    })
}

/// getnameinfo_async_run(): the state machine.
pub fn getnameinfo_async_run(q: &mut GetNameInfo, ar: &mut AsrResult, now: Instant) -> Async {
    loop {
        match q.state {
            State::Init => {
                // The service name first, as C does.
                q.state = State::Halt;
                ar.ar_gai_errno = 0;
                if q.want_serv {
                    q.serv = Some(servname(q));
                }
                if !q.want_host {
                    continue;
                }
                if q.flags & NI_NUMERICHOST != 0 {
                    ar.ar_host = Some(numerichost(&q.sa));
                    continue;
                }
                q.subq = Some(gethostbyaddr_async(q.sa.ip(), Rc::clone(&q.ctx)));
                q.state = State::Subquery;
            }
            State::Subquery => {
                let Some(sub) = q.subq.as_mut() else {
                    q.state = State::Halt;
                    continue;
                };
                *ar = AsrResult::default();
                if gethostnamadr_async_run(sub, ar, now) == Async::Cond {
                    return Async::Cond;
                }
                q.subq = None;
                subquery_done(q, ar);
                q.state = State::Halt;
            }
            State::Halt => {
                ar.ar_serv = q.serv.take();
                return Async::Done;
            }
        }
    }
}

/// The answer of the by-address lookup: its name, the address in
/// numbers when a name is not required, or why there is none.
fn subquery_done(q: &GetNameInfo, ar: &mut AsrResult) {
    if let Some(h) = ar.ar_hostent.take() {
        ar.ar_host = Some(h.h_name);
        ar.ar_gai_errno = 0;
        return;
    }
    if q.flags & NI_NAMEREQD == 0 {
        ar.ar_host = Some(numerichost(&q.sa));
        ar.ar_gai_errno = 0;
        ar.ar_errno = 0;
        return;
    }
    ar.ar_gai_errno = match ar.ar_h_errno {
        TRY_AGAIN => EAI_AGAIN,
        NO_RECOVERY => EAI_FAIL,
        NO_DATA => EAI_NODATA,
        NETDB_INTERNAL => EAI_SYSTEM,
        // HOST_NOT_FOUND, and a PTR that is not a host name.
        _ => EAI_NONAME,
    };
}

/// _servname(): the service's name from the services database unless
/// NI_NUMERICSERV, else the port number.
fn servname(q: &GetNameInfo) -> String {
    let port = q.sa.port();
    if q.flags & NI_NUMERICSERV == 0 {
        let proto = if q.flags & NI_DGRAM != 0 {
            "udp"
        } else {
            "tcp"
        };
        if let Some(name) = crate::sys::net::getservbyport(port, proto) {
            return name;
        }
    }
    port.to_string()
}

/// _numerichost(): the address in numbers, with the zone of a scoped
/// IPv6 address.
fn numerichost(sa: &SocketAddr) -> String {
    crate::util::to::sockaddr_to_text(sa)
}
