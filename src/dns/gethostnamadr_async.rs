//! gethostnamadr_async.c: the host name of an address, from the hosts
//! file and PTR records (libasr gethostnamadr_async.c). Only the
//! by-address half is here: smtpd looks names up with getaddrinfo.
//!
//! A PTR name is taken only if it is a valid host name (res_hnok), and
//! only from the records owned by the address's name or the end of its
//! CNAME chain (RFC 2317 delegations), so a server cannot hand us
//! arbitrary bytes or another name's records.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use super::asr::{
    asr_addr_as_fqdn, asr_follow_cname, asr_hnok, asr_parse_namedb, asr_sockaddr_from_str,
    asr_strdname, AsrCtx, AsrDb, AsrResult, Async, Hostent, HOST_NOT_FOUND, NETDB_INTERNAL,
    NETDB_SUCCESS, NO_RECOVERY,
};
use super::res_send_async::{res_query_async, res_send_async_run, ResSend};
use super::unpack_dns::{Rdata, C_IN, T_PTR};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NextDb,
    Subquery,
    NotFound,
    Halt,
}

/// A gethostbyaddr in progress (asr_query's `hostnamadr` part).
pub struct GetHostByAddr {
    ctx: Rc<AsrCtx>,
    state: State,
    addr: IpAddr,
    db_idx: usize,
    subq: Option<Box<ResSend>>,
    /// Why the name servers gave nothing, kept while the next database
    /// is tried.
    subq_h_errno: i32,
    subq_errno: i32,
}

/// gethostbyaddr_async().
pub fn gethostbyaddr_async(addr: IpAddr, ctx: Rc<AsrCtx>) -> Box<GetHostByAddr> {
    Box::new(GetHostByAddr {
        ctx,
        state: State::NextDb,
        addr,
        db_idx: 0,
        subq: None,
        subq_h_errno: 0,
        subq_errno: 0,
    })
}

/// gethostnamadr_async_run(): the state machine.
pub fn gethostnamadr_async_run(q: &mut GetHostByAddr, ar: &mut AsrResult, now: Instant) -> Async {
    loop {
        match q.state {
            State::NextDb => next_db(q, ar),
            State::Subquery => {
                let Some(sub) = q.subq.as_mut() else {
                    q.state = State::NextDb;
                    continue;
                };
                *ar = AsrResult::default();
                if res_send_async_run(sub, ar, now) == Async::Cond {
                    return Async::Cond;
                }
                q.subq = None;
                subquery_done(q, ar);
            }
            State::NotFound => {
                ar.ar_errno = q.subq_errno;
                ar.ar_h_errno = if q.subq_h_errno != 0 {
                    q.subq_h_errno
                } else {
                    HOST_NOT_FOUND
                };
                q.state = State::Halt;
            }
            State::Halt => {
                if ar.ar_h_errno != NETDB_SUCCESS {
                    ar.ar_hostent = None;
                } else {
                    ar.ar_errno = 0;
                }
                return Async::Done;
            }
        }
    }
}

/// ASR_STATE_NEXT_DB: a PTR query, or the hosts file.
fn next_db(q: &mut GetHostByAddr, ar: &mut AsrResult) {
    if q.db_idx >= q.ctx.ac_db.len() {
        q.state = State::NotFound;
        return;
    }
    q.db_idx += 1;
    match q.ctx.ac_db[q.db_idx - 1] {
        AsrDb::Dns => {
            let name = asr_addr_as_fqdn(&q.addr);
            match res_query_async(&name, C_IN, T_PTR, Rc::clone(&q.ctx)) {
                Ok(sub) => {
                    q.subq = Some(sub);
                    q.state = State::Subquery;
                }
                Err(e) => {
                    ar.ar_errno = e;
                    ar.ar_h_errno = NETDB_INTERNAL;
                    q.state = State::Halt;
                }
            }
        }
        AsrDb::File => {
            if let Some(h) = hostent_file_match(&q.ctx, &q.addr) {
                ar.ar_hostent = Some(h);
                ar.ar_h_errno = NETDB_SUCCESS;
                q.state = State::Halt;
            }
        }
    }
}

/// ASR_STATE_SUBQUERY once done: a host name, or the next database.
fn subquery_done(q: &mut GetHostByAddr, ar: &mut AsrResult) {
    if ar.ar_count == 0 {
        q.subq_h_errno = ar.ar_h_errno;
        q.subq_errno = ar.ar_errno;
        q.state = State::NextDb;
        return;
    }
    let pkt = ar.ar_data.take().unwrap_or_default();
    let qname = super::unpack_dns::dname_from_fqdn(&asr_addr_as_fqdn(&q.addr));
    let h = qname.and_then(|n| hostent_from_packet(&pkt, &n, q.addr));
    match h {
        Some(Ok(h)) => {
            ar.ar_hostent = Some(h);
            ar.ar_h_errno = NETDB_SUCCESS;
            q.state = State::Halt;
        }
        Some(Err(())) => {
            q.subq_h_errno = NO_RECOVERY;
            q.state = State::NextDb;
        }
        // No valid host name in the answer: ignored, as asr does.
        None => q.state = State::NextDb,
    }
}

/// hostent_from_packet() for PTR answers: None when no record gives a
/// valid host name, Some(Err) when the aliases loop.
fn hostent_from_packet(
    pkt: &[u8],
    qname: &super::unpack_dns::Dname,
    addr: IpAddr,
) -> Option<Result<Hostent, ()>> {
    let chain = match asr_follow_cname(pkt, qname, T_PTR, 0) {
        Ok(c) => c,
        Err(_) => return Some(Err(())),
    };
    let mut names = chain.records.iter().filter_map(|rr| match &rr.rr {
        Rdata::Ptr(p) => Some(asr_strdname(p)).filter(|n| asr_hnok(n)),
        _ => None,
    });
    let h_name = names.next()?;
    Some(Ok(Hostent {
        h_name,
        h_aliases: names.collect(),
        h_addr_list: vec![addr],
    }))
}

/// hostent_file_match() by address: the first hosts line for it.
fn hostent_file_match(ac: &AsrCtx, addr: &IpAddr) -> Option<Hostent> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    asr_parse_namedb(&ac.ac_hosts)
        .into_iter()
        .filter(|tok| tok.len() >= 2)
        .find(|tok| asr_sockaddr_from_str(family, &tok[0]).is_some_and(|sa| sa.ip() == *addr))
        .map(|tok| Hostent {
            h_name: tok[1].clone(),
            h_aliases: tok[2..].to_vec(),
            h_addr_list: vec![*addr],
        })
}
