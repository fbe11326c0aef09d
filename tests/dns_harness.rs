//! The DNS harness of tests/common/dns.rs, checked with queries built and
//! answers decoded here, by hand (no dig, and not the harness's own
//! codec): nsd answers the zones of tests/dns/ as they say, and each
//! hostile peer does what it claims. nsd is a declared dependency
//! (mk/deps.sh): without it these tests fail, they do not skip.
#![allow(clippy::disallowed_methods)]

// tests/common re-exports things (unix_sockets, TCP_LISTEN) only the
// daemon tests use.
#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::dns::{resolv_conf, Nsd, Relay, Silent, Slow, Spoof, Truncator, POISON_V4, POISON_V6};

const A: u16 = 1;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const PTR: u16 = 12;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;

const NOERROR: u8 = 0;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;

/// How long an answer that should come may take.
const WAIT: Duration = Duration::from_secs(3);
/// How long the tests listen for an answer that should not come.
const QUIET: Duration = Duration::from_millis(300);

/// A query with `id`, RD clear, one question, no EDNS (so UDP answers are
/// at most 512 bytes).
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// An answer, as far as these tests look at it.
#[derive(Debug)]
struct Answer {
    id: u16,
    qr: bool,
    aa: bool,
    tc: bool,
    rcode: u8,
    qname: String,
    qtype: u16,
    /// The answer section, each record as `OWNER TYPE DATA`.
    answers: Vec<String>,
    /// The rdata of the answer section's records, as sent.
    rdata: Vec<(u16, Vec<u8>)>,
}

impl Answer {
    /// The addresses of the A and AAAA records of the answer section.
    fn addrs(&self) -> Vec<IpAddr> {
        self.rdata
            .iter()
            .filter_map(|(t, d)| addr_of(*t, d))
            .collect()
    }
}

/// The address in the rdata of an A or AAAA record.
fn addr_of(rtype: u16, data: &[u8]) -> Option<IpAddr> {
    match rtype {
        A => <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
        AAAA => <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
        _ => None,
    }
}

fn be16(m: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([m[at], m[at + 1]])
}

/// The name at `*pos` (dotted, with the final dot), moving `*pos` past it.
fn name_at(m: &[u8], pos: &mut usize) -> String {
    let mut out = String::new();
    let mut p = *pos;
    let mut jumped = false;
    for _ in 0..128 {
        let len = usize::from(m[p]);
        if len == 0 {
            if !jumped {
                *pos = p + 1;
            }
            return if out.is_empty() { ".".into() } else { out };
        }
        if len & 0xc0 == 0xc0 {
            if !jumped {
                *pos = p + 2;
                jumped = true;
            }
            p = (len & 0x3f) << 8 | usize::from(m[p + 1]);
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&m[p + 1..p + 1 + len]));
        out.push('.');
        p += 1 + len;
    }
    panic!("a compression loop in {m:?}");
}

fn type_name(t: u16) -> String {
    match t {
        A => "A".into(),
        CNAME => "CNAME".into(),
        SOA => "SOA".into(),
        PTR => "PTR".into(),
        MX => "MX".into(),
        TXT => "TXT".into(),
        AAAA => "AAAA".into(),
        t => format!("TYPE{t}"),
    }
}

/// Decodes the header, the question and the answer section of `m`.
fn decode(m: &[u8]) -> Answer {
    assert!(m.len() >= 12, "a short message: {m:?}");
    let flags = be16(m, 2);
    assert_eq!(be16(m, 4), 1, "QDCOUNT of {m:?}");
    let mut pos = 12;
    let qname = name_at(m, &mut pos);
    let qtype = be16(m, pos);
    pos += 4;
    let mut answers = Vec::new();
    let mut rdata = Vec::new();
    for _ in 0..be16(m, 6) {
        let owner = name_at(m, &mut pos);
        let rtype = be16(m, pos);
        let len = usize::from(be16(m, pos + 8));
        pos += 10;
        let data = &m[pos..pos + len];
        let shown = match rtype {
            A | AAAA => match addr_of(rtype, data) {
                Some(ip) => ip.to_string(),
                None => format!("{data:?}"),
            },
            CNAME | PTR => name_at(m, &mut pos.clone()),
            MX => format!("{} {}", be16(m, pos), name_at(m, &mut (pos + 2))),
            TXT => {
                let mut strings = Vec::new();
                let mut i = 0;
                while i < data.len() {
                    let n = usize::from(data[i]);
                    strings.push(format!(
                        "\"{}\"",
                        String::from_utf8_lossy(&data[i + 1..i + 1 + n])
                    ));
                    i += 1 + n;
                }
                strings.join(" ")
            }
            _ => format!("{data:?}"),
        };
        answers.push(format!("{owner} {} {shown}", type_name(rtype)));
        rdata.push((rtype, data.to_vec()));
        pos += len;
    }
    Answer {
        id: be16(m, 0),
        qr: flags & 0x8000 != 0,
        aa: flags & 0x0400 != 0,
        tc: flags & 0x0200 != 0,
        rcode: (flags & 0xf) as u8,
        qname,
        qtype,
        answers,
        rdata,
    }
}

fn local_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    }
}

/// Sends `msg` to `server` over UDP and returns the answer.
fn udp(server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind(local_for(server)).unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.send(msg).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) => panic!("no UDP answer from {server}: {e}"),
    }
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// Sends `msg` to `server` over TCP and returns the answer.
fn tcp(server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&server, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&framed(msg)).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).unwrap();
    answer
}

fn ask_udp(server: SocketAddr, name: &str, qtype: u16) -> Answer {
    let a = decode(&udp(server, &query(0x4242, name, qtype)));
    assert_eq!(a.id, 0x4242);
    a
}

fn ask_tcp(server: SocketAddr, name: &str, qtype: u16) -> Answer {
    let a = decode(&tcp(server, &query(0x2424, name, qtype)));
    assert_eq!(a.id, 0x2424);
    a
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn nsd_answers_mx3_on_both_addresses_over_udp_and_tcp() {
    let t0 = Instant::now();
    let nsd = Nsd::start();
    eprintln!("note: nsd answered {:?} after its start", t0.elapsed());
    assert!(nsd.addr.ip().is_loopback() && nsd.addr6.ip().is_loopback());
    assert_eq!(nsd.addr.port(), nsd.addr6.port());
    let want = strings(&[
        "mx3.smtpd.test. MX 30 mx-c.smtpd.test.",
        "mx3.smtpd.test. MX 10 mx-a.smtpd.test.",
        "mx3.smtpd.test. MX 20 mx-b.smtpd.test.",
    ]);
    for server in [nsd.addr, nsd.addr6] {
        for a in [
            ask_udp(server, "mx3.smtpd.test", MX),
            ask_tcp(server, "mx3.smtpd.test", MX),
        ] {
            assert!(a.qr && a.aa && !a.tc, "{a:?}");
            assert_eq!(a.rcode, NOERROR);
            assert_eq!((a.qname.as_str(), a.qtype), ("mx3.smtpd.test.", MX));
            assert_eq!(a.answers, want, "from {server}");
        }
    }
    assert!(nsd.log().contains("nsd started"), "{}", nsd.log());
}

#[test]
fn the_zones_answer_as_tests_dns_says() {
    let nsd = Nsd::start();
    let mut long = Vec::new();
    for i in 0..19 {
        long.push(format!(
            "long{i}.smtpd.test. CNAME long{}.smtpd.test.",
            i + 1
        ));
    }
    long.push("long19.smtpd.test. A 127.0.0.21".to_string());
    let chain = |last: &str| {
        strings(&[
            "c1.smtpd.test. CNAME c2.smtpd.test.",
            "c2.smtpd.test. CNAME c3.smtpd.test.",
            "c3.smtpd.test. CNAME host.smtpd.test.",
            last,
        ])
    };
    let ip6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";
    let cases: Vec<(&str, u16, u8, Vec<String>)> = vec![
        (
            "mx-a.smtpd.test",
            A,
            NOERROR,
            strings(&["mx-a.smtpd.test. A 127.0.0.11"]),
        ),
        (
            "mx-a.smtpd.test",
            AAAA,
            NOERROR,
            strings(&["mx-a.smtpd.test. AAAA ::1"]),
        ),
        (
            "mx-b.smtpd.test",
            A,
            NOERROR,
            strings(&["mx-b.smtpd.test. A 127.0.0.12"]),
        ),
        ("mx-b.smtpd.test", AAAA, NOERROR, vec![]),
        (
            "mx-c.smtpd.test",
            A,
            NOERROR,
            strings(&["mx-c.smtpd.test. A 127.0.0.13"]),
        ),
        (
            "nomx.smtpd.test",
            A,
            NOERROR,
            strings(&["nomx.smtpd.test. A 127.0.0.10"]),
        ),
        ("nomx.smtpd.test", MX, NOERROR, vec![]),
        (
            "nullmx.smtpd.test",
            MX,
            NOERROR,
            strings(&["nullmx.smtpd.test. MX 0 ."]),
        ),
        ("onlytxt.smtpd.test", A, NOERROR, vec![]),
        ("onlytxt.smtpd.test", AAAA, NOERROR, vec![]),
        ("onlytxt.smtpd.test", MX, NOERROR, vec![]),
        (
            "onlytxt.smtpd.test",
            TXT,
            NOERROR,
            strings(&["onlytxt.smtpd.test. TXT \"nothing but text\""]),
        ),
        (
            "c1.smtpd.test",
            A,
            NOERROR,
            chain("host.smtpd.test. A 127.0.0.20"),
        ),
        (
            "c1.smtpd.test",
            AAAA,
            NOERROR,
            chain("host.smtpd.test. AAAA ::1"),
        ),
        (
            "host.smtpd.test",
            A,
            NOERROR,
            strings(&["host.smtpd.test. A 127.0.0.20"]),
        ),
        (
            "mxcname.smtpd.test",
            MX,
            NOERROR,
            strings(&["mxcname.smtpd.test. MX 10 c1.smtpd.test."]),
        ),
        (
            "loop1.smtpd.test",
            A,
            NOERROR,
            strings(&[
                "loop1.smtpd.test. CNAME loop2.smtpd.test.",
                "loop2.smtpd.test. CNAME loop1.smtpd.test.",
            ]),
        ),
        ("long0.smtpd.test", A, NOERROR, long),
        (
            "mixed.smtpd.test",
            A,
            NOERROR,
            strings(&[
                "mixed.smtpd.test. A 127.0.0.31",
                "mixed.smtpd.test. A 127.0.0.32",
                "mixed.smtpd.test. A 127.0.0.33",
            ]),
        ),
        (
            "mixed.smtpd.test",
            AAAA,
            NOERROR,
            strings(&["mixed.smtpd.test. AAAA ::1", "mixed.smtpd.test. AAAA ::2"]),
        ),
        ("nosuch.smtpd.test", A, NXDOMAIN, vec![]),
        (
            "10.0.0.127.in-addr.arpa",
            PTR,
            NOERROR,
            strings(&["10.0.0.127.in-addr.arpa. PTR nomx.smtpd.test."]),
        ),
        (
            "11.0.0.127.in-addr.arpa",
            PTR,
            NOERROR,
            strings(&["11.0.0.127.in-addr.arpa. PTR mx-a.smtpd.test."]),
        ),
        (
            "66.0.0.127.in-addr.arpa",
            PTR,
            NOERROR,
            strings(&["66.0.0.127.in-addr.arpa. PTR bad_name!.smtpd.test."]),
        ),
        (
            "67.0.0.127.in-addr.arpa",
            PTR,
            NOERROR,
            strings(&[
                "67.0.0.127.in-addr.arpa. PTR two-a.smtpd.test.",
                "67.0.0.127.in-addr.arpa. PTR two-b.smtpd.test.",
            ]),
        ),
        ("99.0.0.127.in-addr.arpa", PTR, NXDOMAIN, vec![]),
        (
            ip6,
            PTR,
            NOERROR,
            vec![format!("{ip6} PTR ip6-localhost.smtpd.test.")],
        ),
        ("www.broken.test", A, SERVFAIL, vec![]),
        ("outside.example", A, REFUSED, vec![]),
    ];
    for (name, qtype, rcode, want) in cases {
        let a = ask_udp(nsd.addr, name, qtype);
        let what = format!("{name} {}: {a:?}", type_name(qtype));
        assert!(a.qr && !a.tc, "{what}");
        assert_eq!(a.rcode, rcode, "{what}");
        assert_eq!(a.answers, want, "{what}");
    }
}

#[test]
fn bigtxt_is_truncated_over_udp_and_whole_over_tcp() {
    let nsd = Nsd::start();
    let a = ask_udp(nsd.addr, "bigtxt.smtpd.test", TXT);
    assert!(a.tc && a.aa, "{a:?}");
    assert_eq!(a.rcode, NOERROR);
    let a = ask_tcp(nsd.addr, "bigtxt.smtpd.test", TXT);
    assert!(!a.tc, "{a:?}");
    assert_eq!(a.rdata.len(), 1);
    let (t, data) = &a.rdata[0];
    assert_eq!(*t, TXT);
    // Twelve strings of 250 bytes: "aaa...", "bbb...", ... "lll...".
    assert_eq!(data.len(), 12 * 251);
    for (i, s) in data.chunks(251).enumerate() {
        assert_eq!(s[0], 250);
        assert!(s[1..].iter().all(|&c| c == b'a' + i as u8), "string {i}");
    }
}

#[test]
fn broken_test_is_servfail_and_a_name_outside_the_zones_is_refused() {
    let nsd = Nsd::start();
    for (name, qtype) in [("broken.test", SOA), ("www.broken.test", A)] {
        for a in [
            ask_udp(nsd.addr, name, qtype),
            ask_tcp(nsd.addr6, name, qtype),
        ] {
            assert_eq!(a.rcode, SERVFAIL, "{a:?}");
            assert!(a.answers.is_empty());
        }
    }
    assert_eq!(ask_udp(nsd.addr, "mail.example.org", MX).rcode, REFUSED);
    // The zone that failed to load is in the log, as the reason.
    assert!(nsd.log().contains("broken.test.zone"), "{}", nsd.log());
}

#[test]
fn nsd_leaves_no_process_and_no_directory() {
    let nsd = Nsd::start();
    let pid = nsd.pid() as i32;
    let dir = nsd.dir().to_path_buf();
    let addr = nsd.addr;
    assert!(dir.join("nsd.conf").exists());
    assert!(in_group(pid) >= 2, "nsd forks its servers into its group");
    drop(nsd);
    assert_eq!(in_group(pid), 0, "processes of nsd's group are left");
    assert!(!dir.exists(), "{} is left", dir.display());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(QUIET)).unwrap();
    sock.send_to(&query(1, "smtpd.test", SOA), addr).unwrap();
    assert!(sock.recv(&mut [0u8; 512]).is_err(), "still answered");
}

/// Live (not zombie) processes of process group `pgid`.
fn in_group(pgid: i32) -> usize {
    let mut n = 0;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(i) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
        if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
            n += 1;
        }
    }
    n
}

/// Receives one datagram on `sock` (or panics): the answer and its source.
fn recv_from(sock: &UdpSocket) -> (Answer, SocketAddr) {
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => (decode(&buf[..n]), from),
        Err(e) => panic!("no datagram: {e}"),
    }
}

/// Asserts that nothing more comes on `sock` for QUIET.
fn assert_quiet(sock: &UdpSocket) {
    sock.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0u8; 1024];
    if let Ok((n, from)) = sock.recv_from(&mut buf) {
        panic!("unexpected datagram from {from}: {:?}", decode(&buf[..n]));
    }
}

#[test]
fn relay_sends_each_forgery_in_order_then_the_real_answer() {
    let nsd = Nsd::start();
    let relay = Relay::start(
        nsd.addr,
        vec![
            Spoof::WrongId,
            Spoof::WrongQuestion,
            Spoof::WrongSourcePort,
            Spoof::WrongSourceAddr,
            Spoof::NotResponse,
        ],
    );
    assert_eq!(relay.addr.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
    // Unconnected: the client sees every datagram, whatever its source.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client
        .send_to(&query(0x1234, "nomx.smtpd.test", A), relay.addr)
        .unwrap();
    let poison = vec![IpAddr::from(POISON_V4)];
    let name = "nomx.smtpd.test.";

    let (a, from) = recv_from(&client);
    assert_eq!(from, relay.addr, "WrongId");
    assert_eq!(a.id, 0x1235, "WrongId");
    assert!(
        a.qr && a.qname == name && a.addrs() == poison,
        "WrongId: {a:?}"
    );

    let (a, from) = recv_from(&client);
    assert_eq!(from, relay.addr, "WrongQuestion");
    assert!(
        a.id == 0x1234 && a.qr && a.addrs() == poison,
        "WrongQuestion: {a:?}"
    );
    assert!(
        !a.qname.eq_ignore_ascii_case(name) && a.qname.len() == name.len(),
        "WrongQuestion: {a:?}"
    );
    assert_eq!(a.qtype, A);

    let (a, from) = recv_from(&client);
    assert_eq!(from.ip(), relay.addr.ip(), "WrongSourcePort");
    assert_ne!(from.port(), relay.addr.port(), "WrongSourcePort");
    assert!(
        a.id == 0x1234 && a.qr && a.qname == name,
        "WrongSourcePort: {a:?}"
    );
    assert_eq!(a.addrs(), poison, "WrongSourcePort");

    let (a, from) = recv_from(&client);
    assert_eq!(
        from,
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), relay.addr.port())),
        "WrongSourceAddr"
    );
    assert!(
        a.id == 0x1234 && a.qr && a.qname == name,
        "WrongSourceAddr: {a:?}"
    );
    assert_eq!(a.addrs(), poison, "WrongSourceAddr");

    let (a, from) = recv_from(&client);
    assert_eq!(from, relay.addr, "NotResponse");
    assert!(!a.qr, "NotResponse: {a:?}");
    assert!(
        a.id == 0x1234 && a.qname == name && a.addrs() == poison,
        "NotResponse: {a:?}"
    );

    let (a, from) = recv_from(&client);
    assert_eq!(from, relay.addr, "the real answer");
    assert!(
        a.id == 0x1234 && a.qr && a.aa && a.qname == name,
        "real: {a:?}"
    );
    assert_eq!(a.addrs(), vec![IpAddr::from([127, 0, 0, 10])]);

    assert_quiet(&client);
    assert_eq!(relay.queries(), 1);
}

#[test]
fn relay_poisons_aaaa_keeps_other_records_and_can_drop_the_real_answer() {
    let nsd = Nsd::start();
    let relay = Relay::start_with(nsd.addr, vec![Spoof::WrongId, Spoof::WrongId], true);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client
        .send_to(&query(7, "c1.smtpd.test", AAAA), relay.addr)
        .unwrap();
    for _ in 0..2 {
        let (a, _) = recv_from(&client);
        assert_eq!(a.id, 8);
        assert_eq!(
            a.answers,
            strings(&[
                "c1.smtpd.test. CNAME c2.smtpd.test.",
                "c2.smtpd.test. CNAME c3.smtpd.test.",
                "c3.smtpd.test. CNAME host.smtpd.test.",
                &format!("host.smtpd.test. AAAA {POISON_V6}"),
            ])
        );
    }
    assert_quiet(&client);
    client
        .send_to(&query(9, "nomx.smtpd.test", MX), relay.addr)
        .unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    for _ in 0..2 {
        let (a, _) = recv_from(&client);
        assert!(
            a.id == 10 && a.rcode == NOERROR && a.answers.is_empty(),
            "{a:?}"
        );
    }
    assert_quiet(&client);
    assert_eq!(relay.queries(), 2);
}

#[test]
fn silent_counts_and_never_answers() {
    let silent = Silent::start();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for id in 1..=3 {
        client
            .send_to(&query(id, "nomx.smtpd.test", A), silent.addr)
            .unwrap();
    }
    assert_quiet(&client);
    assert!(
        poll_until(WAIT, || silent.queries() == 3),
        "{}",
        silent.queries()
    );

    let mut s = TcpStream::connect_timeout(&silent.addr, WAIT).unwrap();
    s.write_all(&framed(&query(4, "nomx.smtpd.test", A)))
        .unwrap();
    s.set_read_timeout(Some(QUIET)).unwrap();
    match s.read(&mut [0u8; 512]) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the silent server did something over TCP: {other:?}"),
    }
    assert!(
        poll_until(WAIT, || silent.queries() == 4),
        "{}",
        silent.queries()
    );
    assert_eq!(silent.tcp_connections(), 1);
}

#[test]
fn slow_answers_with_the_real_answer_after_its_delay() {
    let nsd = Nsd::start();
    let delay = Duration::from_millis(600);
    let slow = Slow::start(nsd.addr, delay);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let t0 = Instant::now();
    client
        .send_to(&query(1, "nomx.smtpd.test", A), slow.addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A second query while the first waits: it is not held up behind it.
    client
        .send_to(&query(2, "mx-b.smtpd.test", A), slow.addr)
        .unwrap();
    let (a, from) = recv_from(&client);
    let first = t0.elapsed();
    assert_eq!(from, slow.addr);
    assert_eq!(a.id, 1);
    assert_eq!(a.addrs(), vec![IpAddr::from([127, 0, 0, 10])]);
    assert!(first >= delay, "answered after {first:?}");
    let (a, _) = recv_from(&client);
    let second = t0.elapsed();
    assert_eq!(a.id, 2);
    assert_eq!(a.addrs(), vec![IpAddr::from([127, 0, 0, 12])]);
    assert!(second >= delay + Duration::from_millis(200), "{second:?}");
    assert!(
        second < first + delay,
        "the second waited for the first: {second:?}"
    );
    assert_eq!(slow.queries(), 2);
}

#[test]
fn truncator_truncates_udp_and_relays_tcp() {
    let nsd = Nsd::start();
    let t = Truncator::start(nsd.addr);
    let a = ask_udp(t.addr, "nomx.smtpd.test", A);
    assert!(a.qr && a.tc, "{a:?}");
    assert_eq!(
        (a.rcode, a.qname.as_str(), a.qtype),
        (NOERROR, "nomx.smtpd.test.", A)
    );
    assert!(a.answers.is_empty());
    assert_eq!((t.udp_queries(), t.tcp_queries()), (1, 0));

    let a = ask_tcp(t.addr, "nomx.smtpd.test", A);
    assert!(!a.tc, "{a:?}");
    assert_eq!(a.answers, strings(&["nomx.smtpd.test. A 127.0.0.10"]));
    let a = ask_tcp(t.addr, "bigtxt.smtpd.test", TXT);
    assert_eq!(a.rdata[0].1.len(), 12 * 251);
    assert_eq!((t.udp_queries(), t.tcp_queries()), (1, 2));
}

#[test]
fn resolv_conf_lists_the_servers_bracketed_then_the_rest() {
    let dir = std::env::temp_dir().join(format!("smtpd-dns-resolv-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    let path = resolv_conf(
        &dir,
        &[
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ],
        "options timeout:1 attempts:2\nsearch smtpd.test\n",
    );
    let text = fs::read_to_string(&path).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(path, Path::new(&dir).join("resolv.conf"));
    assert_eq!(
        text,
        "nameserver [127.0.0.1]:5353\n\
         nameserver [::1]:53\n\
         options timeout:1 attempts:2\n\
         search smtpd.test\n"
    );
}
