//! getaddrinfo without name servers: arguments, numeric hosts,
//! localhost, the hosts file, services. Lookups through real name
//! servers are in tests/dns.rs.

use super::*;
use crate::dns::asr::{asr_run_sync, AsrQuery, MAX_CNAME_CHAIN};
use std::path::PathBuf;

struct Hosts(PathBuf);

impl Hosts {
    fn new(name: &str, text: &str) -> Hosts {
        let p = std::env::temp_dir().join(format!("smtpd-gai-{name}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        Hosts(p)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A resolver on the hosts file alone (no server is ever asked).
fn file_ctx(hosts: &Hosts) -> Rc<AsrCtx> {
    let mut ac = AsrCtx::from_string("lookup file\n");
    ac.ac_hosts = hosts.0.clone();
    Rc::new(ac)
}

fn run(host: Option<&str>, serv: Option<&str>, hints: AddrInfoHints, ctx: Rc<AsrCtx>) -> AsrResult {
    asr_run_sync(AsrQuery::GetAddrInfo(getaddrinfo_async(
        host,
        serv,
        Some(&hints),
        ctx,
    )))
}

fn stream() -> AddrInfoHints {
    AddrInfoHints {
        ai_socktype: libc::SOCK_STREAM,
        ..Default::default()
    }
}

fn addrs(ar: &AsrResult) -> Vec<SocketAddr> {
    ar.ar_addrinfo.iter().map(|ai| ai.ai_addr).collect()
}

#[test]
fn bad_arguments_are_refused() {
    let h = Hosts::new("args", "");
    let ctx = || file_ctx(&h);
    assert_eq!(run(None, None, stream(), ctx()).ar_gai_errno, EAI_NONAME);
    assert_eq!(
        run(Some(""), None, stream(), ctx()).ar_gai_errno,
        EAI_NODATA
    );
    let flags = AddrInfoHints {
        ai_flags: 0x4000_0000,
        ..stream()
    };
    assert_eq!(
        run(Some("x"), None, flags, ctx()).ar_gai_errno,
        EAI_BADFLAGS
    );
    let fam = AddrInfoHints {
        ai_family: libc::AF_UNIX,
        ..stream()
    };
    assert_eq!(run(Some("x"), None, fam, ctx()).ar_gai_errno, EAI_FAMILY);
    let st = AddrInfoHints {
        ai_socktype: 99,
        ..Default::default()
    };
    assert_eq!(run(Some("x"), None, st, ctx()).ar_gai_errno, EAI_SOCKTYPE);
    assert_eq!(
        run(Some("x"), Some("99999"), stream(), ctx()).ar_gai_errno,
        EAI_SERVICE
    );
    assert_eq!(
        run(Some("x"), Some("no-such-service"), stream(), ctx()).ar_gai_errno,
        EAI_SERVICE
    );
    let numserv = AddrInfoHints {
        ai_flags: AI_NUMERICSERV,
        ..stream()
    };
    assert_eq!(
        run(Some("x"), Some("smtp"), numserv, ctx()).ar_gai_errno,
        EAI_SERVICE
    );
    // Bytes no host name has never reach a server.
    assert_eq!(
        run(Some("a b"), None, stream(), ctx()).ar_gai_errno,
        EAI_FAIL
    );
}

#[test]
fn numeric_hosts_need_no_lookup() {
    let h = Hosts::new("numeric", "");
    let ar = run(Some("192.0.2.7"), Some("25"), stream(), file_ctx(&h));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(addrs(&ar), [sa("192.0.2.7:25")]);
    let ar = run(Some("2001:db8::7"), Some("smtp"), stream(), file_ctx(&h));
    assert_eq!(addrs(&ar), [sa("[2001:db8::7]:25")]);
    let numeric = AddrInfoHints {
        ai_flags: AI_NUMERICHOST,
        ..stream()
    };
    let ar = run(Some("mx.example"), None, numeric, file_ctx(&h));
    assert_eq!(ar.ar_gai_errno, EAI_NONAME);
    // A family given excludes the other one's addresses.
    let v6 = AddrInfoHints {
        ai_family: libc::AF_INET6,
        ..stream()
    };
    assert_eq!(
        run(Some("192.0.2.7"), None, v6, file_ctx(&h)).ar_gai_errno,
        EAI_NONAME
    );
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn localhost_is_loopback_without_asking_anyone() {
    // The hosts file says otherwise; RFC 6761 wins.
    let h = Hosts::new("localhost", "192.0.2.9 localhost\n");
    let ar = run(Some("localhost"), None, stream(), file_ctx(&h));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(addrs(&ar), [sa("[::1]:0"), sa("127.0.0.1:0")]);
    let passive = AddrInfoHints {
        ai_flags: AI_PASSIVE,
        ..stream()
    };
    let ar = run(None, Some("2525"), passive, file_ctx(&h));
    assert_eq!(addrs(&ar), [sa("[::]:2525"), sa("0.0.0.0:2525")]);
}

#[test]
fn the_hosts_file_in_the_families_order() {
    let h = Hosts::new(
        "file",
        "192.0.2.1 mx.example mx\n2001:db8::1 mx.example\n192.0.2.2 other.example\n192.0.2.3 MX.EXAMPLE\n",
    );
    let canon = AddrInfoHints {
        ai_flags: AI_CANONNAME,
        ..stream()
    };
    let ar = run(Some("mx.example"), None, canon, file_ctx(&h));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(
        addrs(&ar),
        [sa("[2001:db8::1]:0"), sa("192.0.2.1:0"), sa("192.0.2.3:0")]
    );
    assert_eq!(
        ar.ar_addrinfo[0].ai_canonname.as_deref(),
        Some("mx.example")
    );
    assert_eq!(
        ar.ar_addrinfo[2].ai_canonname.as_deref(),
        Some("MX.EXAMPLE")
    );
    let ar = run(Some("mx"), None, stream(), file_ctx(&h));
    assert_eq!(addrs(&ar), [sa("192.0.2.1:0")]);
    assert_eq!(ar.ar_addrinfo[0].ai_canonname, None);
    // Unknown: the name is not known (asr would say "no data").
    let ar = run(Some("nowhere.example"), None, stream(), file_ctx(&h));
    assert_eq!(ar.ar_gai_errno, EAI_NONAME);
    assert!(ar.ar_addrinfo.is_empty());
}

#[test]
fn one_entry_per_socket_type_unless_asked() {
    let h = Hosts::new("types", "");
    let ar = run(
        Some("192.0.2.1"),
        Some("53"),
        AddrInfoHints::default(),
        file_ctx(&h),
    );
    let kinds: Vec<(i32, i32)> = ar
        .ar_addrinfo
        .iter()
        .map(|ai| (ai.ai_socktype, ai.ai_protocol))
        .collect();
    assert_eq!(
        kinds,
        [
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
            (libc::SOCK_STREAM, libc::IPPROTO_TCP)
        ]
    );
}

/// A name server on 127.0.0.1 that answers an alias alone, as a server
/// authoritative for the alias but not for its target does: `alias.`
/// is a CNAME to `target.`, which has an address; `ping.` and `pong.`
/// alias each other across answers. It stops after `n` queries.
#[allow(clippy::disallowed_methods)] // the server is a peer, not the code under test
fn alias_server(n: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    use crate::dns::unpack_dns::{DnsHeader, DnsRr, Pack, Rdata, Unpack, QR_MASK, T_CNAME};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut served = 0;
        while served < n {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            served += 1;
            let mut p = Unpack::new(&buf[..len]);
            let h = p.unpack_header().unwrap();
            let q = p.unpack_query().unwrap();
            let name = crate::dns::unpack_dns::print_dname(&q.q_dname);
            let dn = |s: &str| crate::dns::unpack_dns::dname_from_fqdn(s).unwrap();
            let rr = |rr_type, rr| DnsRr {
                rr_dname: q.q_dname.clone(),
                rr_type,
                rr_class: C_IN,
                rr_ttl: 5,
                rr,
            };
            let answer = match (name.as_str(), q.q_type) {
                ("alias.", _) => Some(rr(T_CNAME, Rdata::Cname(dn("target.")))),
                ("target.", T_A) => Some(rr(T_A, Rdata::A([192, 0, 2, 40].into()))),
                ("ping.", _) => Some(rr(T_CNAME, Rdata::Cname(dn("pong.")))),
                ("pong.", _) => Some(rr(T_CNAME, Rdata::Cname(dn("ping.")))),
                _ => None,
            };
            let mut out = Pack::new();
            out.pack_header(&DnsHeader {
                id: h.id,
                flags: QR_MASK | (h.flags & crate::dns::unpack_dns::RD_MASK),
                qdcount: 1,
                ancount: u16::from(answer.is_some()),
                ..Default::default()
            });
            out.pack_query(q.q_type, q.q_class, &q.q_dname);
            if let Some(a) = &answer {
                out.pack_rr(a);
            }
            sock.send_to(&out.buf, from).unwrap();
        }
        served
    });
    (addr, h)
}

fn dns_ctx(ns: SocketAddr) -> Rc<AsrCtx> {
    Rc::new(AsrCtx::from_string(&format!(
        "nameserver [{}]:{}\nlookup bind\nfamily inet4\noptions timeout:2 attempts:1\n",
        ns.ip(),
        ns.port()
    )))
}

#[test]
fn an_answer_that_stops_at_an_alias_is_followed_by_a_query_for_its_target() {
    let (ns, server) = alias_server(2);
    let canon = AddrInfoHints {
        ai_flags: AI_CANONNAME,
        ..stream()
    };
    let ar = run(Some("alias."), None, canon, dns_ctx(ns));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(addrs(&ar), [sa("192.0.2.40:0")]);
    assert_eq!(ar.ar_addrinfo[0].ai_canonname.as_deref(), Some("target"));
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn aliases_that_loop_across_answers_end_in_failure() {
    // Each answer holds one alias; the loop shows only across queries,
    // and the chain limit ends it.
    let (ns, server) = alias_server(MAX_CNAME_CHAIN + 1);
    let ar = run(Some("ping."), None, stream(), dns_ctx(ns));
    assert_eq!(ar.ar_gai_errno, EAI_FAIL);
    assert_eq!(server.join().unwrap(), MAX_CNAME_CHAIN + 1);
}
