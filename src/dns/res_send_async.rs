//! res_send_async.c: one DNS query sent to the name servers in turn, over
//! UDP with TCP when the answer is truncated (libasr res_send_async.c).
//!
//! Where asr takes the first datagram that arrives and gives the server
//! up when that datagram is not a valid answer, this query keeps
//! listening until its deadline: an answer with the wrong id or question,
//! or from another address or port, is dropped and the real answer is
//! still taken. Each attempt uses a new socket, so a new random source
//! port, and a random id.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::asr::{
    asr_make_fqdn, AsrCond, AsrCtx, AsrResult, Async, ResOptions, EDNS0_PAYLOAD, HOST_NOT_FOUND,
    NETDB_SUCCESS, NO_DATA, NO_RECOVERY, TRY_AGAIN,
};
use super::unpack_dns::{
    dname_from_fqdn, print_dname, Dname, DnsHeader, Pack, Unpack, AD_MASK, MAXPACKETSZ, NOERROR,
    NXDOMAIN, OPCODE_MASK, PACKETSZ, QR_MASK, RCODE_MASK, RD_MASK, SERVFAIL, TC_MASK, Z_MASK,
};
use crate::util::log::TRACE_LOOKUP;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    NextNs,
    UdpSend,
    UdpRecv,
    TcpWrite,
    TcpRead,
    Packet,
    Halt,
}

/// A query in flight (asr_query's `dns` part).
pub struct ResSend {
    ctx: Rc<AsrCtx>,
    state: State,
    reqid: u16,
    class: u16,
    qtype: u16,
    dname: Dname,
    obuf: Vec<u8>,
    /// The answer; over TCP, with its two-byte length in front while it
    /// is being read.
    ibuf: Vec<u8>,
    rcode: u16,
    ancount: u16,
    /// The server in use, from 1 (0 before the first).
    nsidx: usize,
    nsloop: u32,
    timeout: Duration,
    deadline: Instant,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    tcp_connected: bool,
    /// Bytes of the length-prefixed query written over TCP.
    datalen: usize,
    /// Why the last server failed: reported if every one does.
    errno: i32,
    /// Answers dropped as forged or broken.
    pub dropped: usize,
}

/// What reading from a server gave.
enum Recv {
    Packet,
    Truncated,
    Wait,
    Failed(i32),
}

/// Why a packet is not the answer to this query.
enum Invalid {
    Bad(&'static str),
    Truncated,
}

struct Valid {
    rcode: u16,
    ancount: u16,
}

/// res_query_async(): a query for `name` (made fully qualified: no
/// search domains) of `class` and `qtype`. Err(EINVAL) for a name that
/// cannot be a domain name.
pub fn res_query_async(
    name: &str,
    class: u16,
    qtype: u16,
    ctx: Rc<AsrCtx>,
) -> Result<Box<ResSend>, i32> {
    let mut q = Box::new(ResSend {
        ctx,
        state: State::Init,
        reqid: 0,
        class,
        qtype,
        dname: Dname::root(),
        obuf: Vec::new(),
        ibuf: Vec::new(),
        rcode: NOERROR,
        ancount: 0,
        nsidx: 0,
        nsloop: 0,
        timeout: Duration::ZERO,
        deadline: Instant::now(),
        udp: None,
        tcp: None,
        tcp_connected: false,
        datalen: 0,
        errno: libc::ETIMEDOUT,
        dropped: 0,
    });
    setup_query(&mut q, name, None)?;
    Ok(q)
}

impl ResSend {
    /// The name asked for, in wire form.
    pub fn dname(&self) -> &Dname {
        &self.dname
    }
}

/// res_send_async_run(): the state machine.
pub fn res_send_async_run(q: &mut ResSend, ar: &mut AsrResult, now: Instant) -> Async {
    loop {
        match q.state {
            State::Init => {
                if q.ctx.ac_ns.is_empty() {
                    ar.ar_errno = libc::ECONNREFUSED;
                    q.state = State::Halt;
                } else {
                    q.state = State::NextNs;
                }
            }
            State::NextNs => {
                q.udp = None;
                q.tcp = None;
                if iter_ns(q).is_err() {
                    ar.ar_errno = q.errno;
                    q.state = State::Halt;
                } else if q.ctx.ac_options.contains(ResOptions::RES_USEVC)
                    || q.obuf.len() > PACKETSZ
                {
                    q.state = State::TcpWrite;
                } else {
                    q.state = State::UdpSend;
                }
            }
            State::UdpSend => match udp_send(q, now) {
                Ok(()) => {
                    q.state = State::UdpRecv;
                    return cond(q, ar, AsrCond::Read, now);
                }
                Err(e) => failed(q, ar, e),
            },
            State::UdpRecv => match udp_recv(q, now) {
                Recv::Packet => q.state = State::Packet,
                // The same server, over TCP.
                Recv::Truncated => q.state = State::TcpWrite,
                Recv::Wait => return cond(q, ar, AsrCond::Read, now),
                Recv::Failed(e) => failed(q, ar, e),
            },
            State::TcpWrite => match tcp_write(q, now) {
                Ok(true) => q.state = State::TcpRead,
                Ok(false) => return cond(q, ar, AsrCond::Write, now),
                Err(e) => failed(q, ar, e),
            },
            State::TcpRead => match tcp_read(q, now) {
                Recv::Packet => q.state = State::Packet,
                Recv::Wait => return cond(q, ar, AsrCond::Read, now),
                Recv::Truncated => failed(q, ar, libc::EMSGSIZE),
                Recv::Failed(e) => failed(q, ar, e),
            },
            State::Packet => {
                ar.ar_ns = Some(ns(q));
                if !q.ctx.ac_options.contains(ResOptions::RES_TRUSTAD) {
                    clear_ad(&mut q.ibuf);
                }
                ar.ar_data = Some(std::mem::take(&mut q.ibuf));
                ar.ar_errno = 0;
                ar.ar_rcode = q.rcode;
                q.state = State::Halt;
            }
            State::Halt => {
                halt(q, ar);
                return Async::Done;
            }
        }
    }
}

/// ASR_STATE_HALT: the h_errno the result means.
fn halt(q: &ResSend, ar: &mut AsrResult) {
    if ar.ar_errno != 0 {
        ar.ar_h_errno = TRY_AGAIN;
        ar.ar_count = 0;
        ar.ar_data = None;
    } else if q.ancount != 0 {
        ar.ar_h_errno = NETDB_SUCCESS;
        ar.ar_count = usize::from(q.ancount);
    } else {
        ar.ar_count = 0;
        ar.ar_h_errno = match q.rcode {
            NXDOMAIN => HOST_NOT_FOUND,
            SERVFAIL => TRY_AGAIN,
            NOERROR => NO_DATA,
            _ => NO_RECOVERY,
        };
    }
}

/// A server could not be used: try the next one, unless the failure is
/// this process's own (out of descriptors or memory), which the next
/// server would meet as well.
fn failed(q: &mut ResSend, ar: &mut AsrResult, errno: i32) {
    q.udp = None;
    q.tcp = None;
    if matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    ) {
        ar.ar_errno = errno;
        q.state = State::Halt;
    } else {
        q.errno = errno;
        q.state = State::NextNs;
    }
}

/// Fills in the condition to wait for, up to the attempt's deadline.
fn cond(q: &ResSend, ar: &mut AsrResult, what: AsrCond, now: Instant) -> Async {
    ar.ar_cond = what;
    ar.ar_fd = match (&q.udp, &q.tcp) {
        (Some(u), _) => u.as_raw_fd(),
        (None, Some(t)) => t.as_raw_fd(),
        (None, None) => -1,
    };
    ar.ar_timeout = q.deadline.saturating_duration_since(now);
    Async::Cond
}

fn ns(q: &ResSend) -> SocketAddr {
    q.ctx.ac_ns[q.nsidx - 1]
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// setup_query(): the query packet for `name` completed with `dom`.
fn setup_query(q: &mut ResSend, name: &str, dom: Option<&str>) -> Result<(), i32> {
    let fqdn = asr_make_fqdn(name, dom).ok_or(libc::EINVAL)?;
    let dname = dname_from_fqdn(&fqdn).ok_or(libc::EINVAL)?;
    let mut h = DnsHeader {
        id: crate::sys::unistd::arc4random() as u16,
        qdcount: 1,
        ..Default::default()
    };
    let opts = q.ctx.ac_options;
    if opts.contains(ResOptions::RES_RECURSE) {
        h.flags |= RD_MASK;
    }
    // Asks the server to say whether it validated (RFC 6840 5.7).
    if opts.contains(ResOptions::RES_TRUSTAD) {
        h.flags |= AD_MASK;
    }
    let edns0 = opts.contains(ResOptions::RES_USE_EDNS0);
    if edns0 {
        h.arcount = 1;
    }
    let mut p = Pack::new();
    p.pack_header(&h);
    p.pack_query(q.qtype, q.class, &dname);
    if edns0 {
        p.pack_edns0(EDNS0_PAYLOAD, false);
    }
    if p.err.is_some() {
        return Err(libc::EINVAL);
    }
    q.reqid = h.id;
    q.dname = dname;
    q.obuf = p.buf;
    Ok(())
}

/// udp_send(): a new socket to the current server, and the query on it.
fn udp_send(q: &mut ResSend, now: Instant) -> Result<(), i32> {
    let fd = crate::sys::socket::dns_connect(&ns(q), false).map_err(|e| errno_of(&e))?;
    let sock = UdpSocket::from(fd);
    sock.send(&q.obuf).map_err(|e| errno_of(&e))?;
    q.deadline = now + q.timeout;
    q.udp = Some(sock);
    Ok(())
}

/// udp_recv(): every datagram waiting, until one is the answer. The
/// socket is kept only while there is more to wait for.
fn udp_recv(q: &mut ResSend, now: Instant) -> Recv {
    let Some(sock) = q.udp.take() else {
        return Recv::Failed(libc::EBADF);
    };
    let r = udp_recv_from(q, &sock, now);
    if matches!(r, Recv::Wait) {
        q.udp = Some(sock);
    }
    r
}

fn udp_recv_from(q: &mut ResSend, sock: &UdpSocket, now: Instant) -> Recv {
    let mut buf = vec![0u8; MAXPACKETSZ];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                // A connected socket gets only the server's datagrams;
                // this is a second check, not the only one.
                if from != ns(q) {
                    dropped(q, from, "wrong source");
                    continue;
                }
                match validate_packet(q, &buf[..n], true) {
                    Ok(v) => {
                        buf.truncate(n);
                        accept(q, v, buf);
                        return Recv::Packet;
                    }
                    Err(Invalid::Truncated) => return Recv::Truncated,
                    Err(Invalid::Bad(why)) => dropped(q, from, why),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if now >= q.deadline {
                    Recv::Failed(libc::ETIMEDOUT)
                } else {
                    Recv::Wait
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // ECONNREFUSED: the port is closed (an ICMP error came back).
            Err(e) => return Recv::Failed(errno_of(&e)),
        }
    }
}

fn dropped(q: &mut ResSend, from: SocketAddr, why: &str) {
    q.dropped += 1;
    log_trace!(
        TRACE_LOOKUP,
        "lookup: dns: dropped an answer from {from} for {}: {why}",
        print_dname(&q.dname)
    );
}

fn accept(q: &mut ResSend, v: Valid, pkt: Vec<u8>) {
    q.rcode = v.rcode;
    q.ancount = v.ancount;
    q.ibuf = pkt;
}

/// tcp_write(): connects to the current server first, then writes the
/// length-prefixed query. Ok(true) once it is all written.
fn tcp_write(q: &mut ResSend, now: Instant) -> Result<bool, i32> {
    if q.tcp.is_none() {
        let fd = crate::sys::socket::dns_connect(&ns(q), true).map_err(|e| errno_of(&e))?;
        q.tcp = Some(TcpStream::from(fd));
        q.tcp_connected = false;
        q.datalen = 0;
        // One deadline for the whole exchange: a server that trickles
        // bytes cannot hold the query longer than a silent one.
        q.deadline = now + q.timeout;
        return Ok(false);
    }
    if now >= q.deadline {
        return Err(libc::ETIMEDOUT);
    }
    let Some(s) = q.tcp.as_mut() else {
        return Err(libc::EBADF);
    };
    if !q.tcp_connected {
        if let Some(e) = s.take_error().map_err(|e| errno_of(&e))? {
            return Err(errno_of(&e));
        }
        q.tcp_connected = true;
    }
    let len = u16::try_from(q.obuf.len()).map_err(|_| libc::EMSGSIZE)?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&q.obuf);
    while q.datalen < out.len() {
        match s.write(&out[q.datalen..]) {
            Ok(0) => return Err(libc::EPIPE),
            Ok(n) => q.datalen += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(errno_of(&e)),
        }
    }
    q.ibuf.clear();
    Ok(true)
}

/// tcp_read(): the answer's length, then the answer.
fn tcp_read(q: &mut ResSend, now: Instant) -> Recv {
    let Some(s) = q.tcp.as_mut() else {
        return Recv::Failed(libc::EBADF);
    };
    loop {
        let want = match q.ibuf.len() {
            n if n < 2 => 2,
            _ => 2 + usize::from(u16::from_be_bytes([q.ibuf[0], q.ibuf[1]])),
        };
        if q.ibuf.len() == want && want > 2 {
            break;
        }
        let have = q.ibuf.len();
        q.ibuf.resize(want, 0);
        match s.read(&mut q.ibuf[have..]) {
            Ok(0) => {
                q.ibuf.truncate(have);
                return Recv::Failed(libc::ECONNRESET);
            }
            Ok(n) => q.ibuf.truncate(have + n),
            Err(e) => {
                q.ibuf.truncate(have);
                match e.kind() {
                    io::ErrorKind::WouldBlock if now >= q.deadline => {
                        return Recv::Failed(libc::ETIMEDOUT)
                    }
                    io::ErrorKind::WouldBlock => return Recv::Wait,
                    io::ErrorKind::Interrupted => {}
                    _ => return Recv::Failed(errno_of(&e)),
                }
            }
        }
    }
    q.tcp = None;
    let pkt = q.ibuf.split_off(2);
    // Over TCP there is nothing more to ask for: a truncated answer is
    // taken as it is.
    match validate_packet(q, &pkt, false) {
        Ok(v) => {
            accept(q, v, pkt);
            Recv::Packet
        }
        Err(Invalid::Truncated) => Recv::Truncated,
        Err(Invalid::Bad(_)) => Recv::Failed(libc::EINVAL),
    }
}

/// validate_packet(): whether `pkt` is the answer to this query: the
/// same id and question, a response to a standard query, and well formed
/// to its last byte.
fn validate_packet(q: &ResSend, pkt: &[u8], udp: bool) -> Result<Valid, Invalid> {
    let mut p = Unpack::new(pkt);
    let h = p.unpack_header().map_err(Invalid::Bad)?;
    if h.id != q.reqid {
        return Err(Invalid::Bad("wrong id"));
    }
    if h.qdcount != 1 {
        return Err(Invalid::Bad("not one question"));
    }
    if h.flags & Z_MASK != 0 || h.flags & OPCODE_MASK != 0 || h.flags & QR_MASK == 0 {
        return Err(Invalid::Bad("not a response to a query"));
    }
    let qq = p.unpack_query().map_err(Invalid::Bad)?;
    if qq.q_type != q.qtype || qq.q_class != q.class || !qq.q_dname.eq_ignore_case(&q.dname) {
        return Err(Invalid::Bad("wrong question"));
    }
    if udp && h.flags & TC_MASK != 0 {
        return Err(Invalid::Truncated);
    }
    let count = u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount);
    for _ in 0..count {
        p.unpack_rr().map_err(Invalid::Bad)?;
    }
    if p.remaining() != 0 {
        return Err(Invalid::Bad("trailing garbage"));
    }
    Ok(Valid {
        rcode: h.flags & RCODE_MASK,
        ancount: h.ancount,
    })
}

/// clear_ad(): a server we do not trust to validate cannot vouch for
/// the data.
fn clear_ad(pkt: &mut [u8]) {
    if pkt.len() >= 4 {
        let flags = u16::from_be_bytes([pkt[2], pkt[3]]) & !AD_MASK;
        pkt[2..4].copy_from_slice(&flags.to_be_bytes());
    }
}

/// iter_ns(): the next server, round after round; the wait doubles each
/// round and is shared among the servers (at least a second).
fn iter_ns(q: &mut ResSend) -> Result<(), ()> {
    let nscount = q.ctx.ac_ns.len();
    loop {
        if q.nsloop >= q.ctx.ac_nsretries {
            return Err(());
        }
        q.nsidx += 1;
        if q.nsidx <= nscount {
            break;
        }
        q.nsidx = 0;
        q.nsloop += 1;
    }
    let mut ms = (1000 * u64::from(q.ctx.ac_nstimeout)) << q.nsloop;
    if q.nsloop > 0 {
        ms /= nscount as u64;
    }
    q.timeout = Duration::from_millis(ms.max(1000));
    Ok(())
}
