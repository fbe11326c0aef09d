//! proxy.c: the PROXY protocol v2 header that a load balancer sends
//! before the SMTP session on a `proxy-v2` listener, giving the client's
//! real address (OpenSMTPD proxy.c 1.2).
//!
//! The header is read as it arrives, its addresses kept, its extensions
//! (TLVs) read and dropped; then the connection, with whatever the client
//! sent after the header still buffered, becomes an SMTP session.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::time::Duration;

use super::dispatcher::Dispatcher;
use super::smtp_session::smtp_session_with_io;
use crate::config::config::Listener;
use crate::io::event::EventBase;
use crate::io::ioev::{io_free, io_set_fd, Io, IoEvent, Stream};
use crate::queue::envelope::PeerAddr;
use crate::util::to::sa_to_text;
use crate::util::util::generate_uid;

const PROXY_CLOCAL: u8 = 0x0;
const PROXY_CPROXY: u8 = 0x1;
const PROXY_AF_UNSPEC: u8 = 0x0;
const PROXY_AF_INET: u8 = 0x1;
const PROXY_AF_INET6: u8 = 0x2;
const PROXY_AF_UNIX: u8 = 0x3;
const PROXY_TF_UNSPEC: u8 = 0x0;
const PROXY_TF_STREAM: u8 = 0x1;

/// PROXY_SESSION_TIMEOUT.
const PROXY_SESSION_TIMEOUT: Duration = Duration::from_secs(300);

/// The v2 signature that starts every header.
const PV2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// sizeof(struct proxy_hdr_v2): signature, version and command, family,
/// length.
const HDR_LEN: usize = 16;
/// The address blocks of each family (struct proxy_addr_*).
const ADDR_IPV4: usize = 12;
const ADDR_IPV6: usize = 36;
const ADDR_UNIX: usize = 216;

/// struct proxy_session: a connection whose header is being read.
pub struct ProxySession {
    id: u64,
    listener: &'static Listener,
    pub io: Io,
    /// The address the connection came from (the load balancer's).
    ss: SocketAddr,
    hdr: Vec<u8>,
    addr: Vec<u8>,
    addr_total: usize,
    /// Bytes of the header still to read after the fixed part.
    left: usize,
}

/// proxy_session(): starts reading a header on a new connection.
pub fn proxy_session(
    d: &mut Dispatcher,
    base: &mut EventBase<Dispatcher>,
    listener: &'static Listener,
    stream: TcpStream,
    ss: SocketAddr,
) {
    if let Err(e) = stream.set_nonblocking(true) {
        log_warn!(e, "warn: proxy: accept");
        return;
    }
    let id = generate_uid();
    let mut s = ProxySession {
        id,
        listener,
        io: Io::new(),
        ss,
        hdr: Vec::with_capacity(HDR_LEN),
        addr: Vec::new(),
        addr_total: 0,
        left: 0,
    };
    s.io.set_timeout(Some(PROXY_SESSION_TIMEOUT));
    s.io.set_read();
    io_set_fd(base, &mut s.io, Stream::Tcp(stream), id);
    log_info!(
        "{id:016x} smtp event=proxy address={}",
        sa_to_text(Some(&ss))
    );
    d.proxies.insert(id, s);
}

/// What reading the header gave.
enum Step {
    More,
    Done(PeerAddr),
    Error(&'static str, &'static str),
}

/// proxy_io(): what happened on a connection whose header is awaited.
pub fn proxy_io(d: &mut Dispatcher, base: &mut EventBase<Dispatcher>, id: u64, evt: IoEvent) {
    let Some(mut s) = d.proxies.remove(&id) else {
        return;
    };
    let step = match evt {
        IoEvent::DataIn => proxy_read(&mut s),
        IoEvent::Timeout => Step::Error("timeout", ""),
        IoEvent::Disconnected => Step::Error("disconnected", ""),
        IoEvent::Error => Step::Error("IO error", "io"),
        _ => fatalx!("proxy_io()"),
    };
    match step {
        Step::More => {
            d.proxies.insert(id, s);
        }
        Step::Done(peer) => {
            super::smtp::smtp_count_session(d, &peer);
            smtp_session_with_io(d, base, s.listener, s.io, peer);
        }
        Step::Error(reason, extra) => {
            let extra = if extra == "io" {
                s.io.error().to_string()
            } else {
                extra.into()
            };
            proxy_error(base, s, reason, &extra);
        }
    }
}

/// The header bytes buffered so far, in three parts: the fixed header,
/// the addresses, the extensions (dropped).
fn proxy_read(s: &mut ProxySession) -> Step {
    if s.hdr.len() < HDR_LEN {
        let take = (HDR_LEN - s.hdr.len()).min(s.io.datalen());
        s.hdr.extend_from_slice(&s.io.iobuf.data()[..take]);
        s.io.iobuf.drop_front(take);
        if s.hdr.len() < HDR_LEN {
            return Step::More;
        }
        if let Err(why) = proxy_header_validate(s) {
            return Step::Error("protocol error", why);
        }
    }
    if s.addr.len() < s.addr_total {
        let take = (s.addr_total - s.addr.len()).min(s.io.datalen());
        s.addr.extend_from_slice(&s.io.iobuf.data()[..take]);
        s.io.iobuf.drop_front(take);
        s.left -= take;
        if s.addr.len() < s.addr_total {
            return Step::More;
        }
    }
    if s.left > 0 {
        // The extensions (TLVs) are not used: drop them.
        let take = s.left.min(s.io.datalen());
        s.io.iobuf.drop_front(take);
        s.left -= take;
        if s.left > 0 {
            return Step::More;
        }
    }
    match s.hdr[12] & 0xf {
        // A local connection (the balancer's health check): its own
        // address stands.
        PROXY_CLOCAL => Step::Done(PeerAddr::Inet(s.ss)),
        PROXY_CPROXY => proxy_translate_ss(s),
        _ => Step::Error("protocol error", "unknown command"),
    }
}

/// proxy_header_validate(): signature, version, a family we know, and a
/// length that holds its addresses.
fn proxy_header_validate(s: &mut ProxySession) -> Result<(), &'static str> {
    let h = &s.hdr;
    if h[..12] != PV2_SIGNATURE {
        return Err("invalid signature");
    }
    if h[12] >> 4 != 2 {
        return Err("invalid version");
    }
    s.addr_total = match h[13] {
        f if f == (PROXY_AF_UNSPEC << 4 | PROXY_TF_UNSPEC) => 0,
        f if f == (PROXY_AF_INET << 4 | PROXY_TF_STREAM) => ADDR_IPV4,
        f if f == (PROXY_AF_INET6 << 4 | PROXY_TF_STREAM) => ADDR_IPV6,
        f if f == (PROXY_AF_UNIX << 4 | PROXY_TF_STREAM) => ADDR_UNIX,
        _ => return Err("unsupported address family"),
    };
    // The 16-bit length cannot exceed what C's check allows.
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    if len < s.addr_total {
        return Err("address info too short");
    }
    s.left = len;
    Ok(())
}

/// proxy_translate_ss(): the client's address from the header.
fn proxy_translate_ss(s: &ProxySession) -> Step {
    let a = &s.addr;
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    match s.hdr[13] {
        f if f == (PROXY_AF_INET << 4 | PROXY_TF_STREAM) => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Step::Done(PeerAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
                ip,
                port(8),
            ))))
        }
        f if f == (PROXY_AF_INET6 << 4 | PROXY_TF_STREAM) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            let sa = SocketAddrV6::new(Ipv6Addr::from(o), port(32), 0, 0);
            Step::Done(PeerAddr::Inet(SocketAddr::V6(sa)))
        }
        f if f == (PROXY_AF_UNIX << 4 | PROXY_TF_STREAM) => Step::Done(PeerAddr::Local),
        _ => Step::Error(
            "address translation",
            "UNSPEC family not supported for PROXYing",
        ),
    }
}

/// proxy_error(): logs why and closes the connection.
fn proxy_error(base: &mut EventBase<Dispatcher>, s: ProxySession, reason: &str, extra: &str) {
    let addr = sa_to_text(Some(&s.ss));
    if extra.is_empty() {
        log_info!(
            "proxy {:016x} event=closed address={addr} reason=\"{reason}\"",
            s.id
        );
    } else {
        log_info!(
            "proxy {:016x} event=closed address={addr} reason=\"{reason} ({extra})\"",
            s.id
        );
    }
    io_free(base, s.io);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(bytes: &[u8]) -> (ProxySession, Step) {
        static L: std::sync::OnceLock<Listener> = std::sync::OnceLock::new();
        let mut s = ProxySession {
            id: 1,
            listener: L.get_or_init(Listener::default),
            io: Io::new(),
            ss: "192.0.2.1:4000".parse().unwrap(),
            hdr: Vec::new(),
            addr: Vec::new(),
            addr_total: 0,
            left: 0,
        };
        let mut step = Step::More;
        // One byte at a time: the header may arrive in any pieces.
        for b in bytes {
            s.io.iobuf
                .read_with(1, |buf| {
                    buf[0] = *b;
                    Ok(1)
                })
                .unwrap();
            step = proxy_read(&mut s);
            if !matches!(step, Step::More) {
                break;
            }
        }
        (s, step)
    }

    fn header(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = PV2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn an_ipv4_client_behind_the_balancer() {
        let mut body = vec![203, 0, 113, 7, 192, 0, 2, 25];
        body.extend_from_slice(&4321u16.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        // An extension (TLV) to skip.
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        let mut bytes = header(PROXY_CPROXY, 0x11, &body);
        bytes.extend_from_slice(b"EHLO x\r\n");
        let (mut s, step) = session(&bytes);
        let Step::Done(PeerAddr::Inet(a)) = step else {
            panic!("not done");
        };
        assert_eq!(a, "203.0.113.7:4321".parse().unwrap());
        // What came after the header is left for the SMTP session.
        s.io.iobuf
            .read_with(100, |buf| {
                let rest = &bytes[bytes.len() - 8..];
                buf[..8].copy_from_slice(rest);
                Ok(8)
            })
            .unwrap();
        assert_eq!(s.io.getline().as_deref(), Some(&b"EHLO x\r"[..]));
    }

    #[test]
    fn an_ipv6_client_and_a_local_check() {
        let mut body = [0u8; ADDR_IPV6].to_vec();
        body[15] = 1;
        body[32..34].copy_from_slice(&1234u16.to_be_bytes());
        let (_, step) = session(&header(PROXY_CPROXY, 0x21, &body));
        assert!(
            matches!(step, Step::Done(PeerAddr::Inet(a)) if a == "[::1]:1234".parse().unwrap())
        );
        let (_, step) = session(&header(PROXY_CLOCAL, 0x00, &[]));
        assert!(
            matches!(step, Step::Done(PeerAddr::Inet(a)) if a == "192.0.2.1:4000".parse().unwrap())
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut bad = header(PROXY_CPROXY, 0x11, &[0; 12]);
        bad[0] = b'P';
        assert!(matches!(
            session(&bad).1,
            Step::Error(_, "invalid signature")
        ));
        let mut v1 = header(PROXY_CPROXY, 0x11, &[0; 12]);
        v1[12] = 0x11;
        assert!(matches!(session(&v1).1, Step::Error(_, "invalid version")));
        let udp = header(PROXY_CPROXY, 0x12, &[0; 12]);
        assert!(matches!(
            session(&udp).1,
            Step::Error(_, "unsupported address family")
        ));
        let short = header(PROXY_CPROXY, 0x11, &[0; 4]);
        assert!(matches!(
            session(&short).1,
            Step::Error(_, "address info too short")
        ));
        let unspec = header(PROXY_CPROXY, 0x00, &[]);
        assert!(matches!(
            session(&unspec).1,
            Step::Error("address translation", _)
        ));
        let mut cmd = header(PROXY_CPROXY, 0x11, &[0; 12]);
        cmd[12] = 0x25;
        assert!(matches!(session(&cmd).1, Step::Error(_, "unknown command")));
    }
}
