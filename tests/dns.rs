//! The resolver against a real name server: nsd on loopback serving the
//! zones of tests/dns/ (see tests/common/dns.rs), and hostile peers in
//! front of it. Each test writes its own resolv.conf and reads it as lka
//! does; the last test runs lka's own loop in a child and asks it through
//! imsg, as the dispatcher will.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::dns::{resolv_conf, Nsd, Relay, Silent, Slow, Spoof, Truncator, POISON_V4, POISON_V6};
use common::TestDir;
use smtpd::dns::asr::AddrInfo;
use smtpd::dns::asr::{
    asr_run, asr_run_sync, Asr, AsrCtx, AsrQuery, AsrResult, Async, HOST_NOT_FOUND, NETDB_SUCCESS,
    NO_DATA, NO_RECOVERY, TRY_AGAIN,
};
use smtpd::dns::dns::{DNS_ENONAME, DNS_ENOTFOUND, DNS_NULLMX, DNS_OK, DNS_RETRY};
use smtpd::dns::event_asr::{event_asr_run, AsrOwner, EventAsr};
use smtpd::dns::getaddrinfo_async::{
    getaddrinfo_async, AddrInfoHints, AI_CANONNAME, EAI_AGAIN, EAI_FAIL, EAI_NODATA, EAI_NONAME,
};
use smtpd::dns::getnameinfo_async::{getnameinfo_async, NI_NAMEREQD};
use smtpd::dns::res_send_async::res_query_async;
use smtpd::dns::resolver::{
    resolver_dispatch_result, resolver_getaddrinfo, resolver_getnameinfo, resolver_res_query,
    Resolver, ResolverOwner,
};
use smtpd::dns::unpack_dns::{Rdata, Unpack, C_IN, NXDOMAIN, REFUSED, SERVFAIL, T_A, T_MX, T_TXT};
use smtpd::io::event::{EvFlags, EventBase};
use smtpd::ipc::imsg::Imsg;
use smtpd::ipc::mproc::{
    m_add_id, m_add_string, m_close, m_create, m_end, m_get_id, m_get_int, m_get_sockaddr,
    m_get_string, m_msg, mproc_enable, mproc_init, ImsgType, ProcType,
};
use smtpd::lka::lka::{lka_loop, Lka};

/// A resolver configured on `ns` with `extra` lines, read from a file as
/// lka reads /etc/resolv.conf. Only the name servers are asked: the
/// machine's /etc/hosts stays out of the results.
fn resolver(dir: &TestDir, ns: &[SocketAddr], extra: &str) -> Rc<AsrCtx> {
    let path = resolv_conf(&dir.path, ns, &format!("lookup bind\n{extra}"));
    Asr::from_file(&path).asr_use_resolver(Instant::now())
}

fn stream(family: i32) -> AddrInfoHints {
    AddrInfoHints {
        ai_family: family,
        ai_socktype: libc::SOCK_STREAM,
        ..Default::default()
    }
}

fn gai(name: &str, hints: AddrInfoHints, ctx: Rc<AsrCtx>) -> AsrResult {
    asr_run_sync(AsrQuery::GetAddrInfo(getaddrinfo_async(
        Some(name),
        None,
        Some(&hints),
        ctx,
    )))
}

fn ips(ar: &AsrResult) -> Vec<IpAddr> {
    ar.ar_addrinfo.iter().map(|ai| ai.ai_addr.ip()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn query(name: &str, qtype: u16, ctx: Rc<AsrCtx>) -> AsrResult {
    asr_run_sync(AsrQuery::Send(
        res_query_async(name, C_IN, qtype, ctx).unwrap(),
    ))
}

fn ptr(addr: &str, flags: i32, ctx: Rc<AsrCtx>) -> AsrResult {
    let sa = SocketAddr::new(ip(addr), 25);
    asr_run_sync(AsrQuery::GetNameInfo(getnameinfo_async(
        sa, flags, true, true, ctx,
    )))
}

/// The records of the answer section.
fn answers(ar: &AsrResult) -> Vec<Rdata> {
    let pkt = ar.ar_data.as_deref().expect("an answer packet");
    let mut p = Unpack::new(pkt);
    let h = p.unpack_header().unwrap();
    p.unpack_query().unwrap();
    (0..h.ancount).map(|_| p.unpack_rr().unwrap().rr).collect()
}

#[test]
fn addresses_of_both_families_in_the_resolvers_order() {
    let nsd = Nsd::start();
    let dir = TestDir::new("dns-addr");
    let ctx = resolver(&dir, &[nsd.addr], "");
    let ar = gai("mixed.smtpd.test", stream(libc::AF_UNSPEC), Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(
        ips(&ar),
        [
            ip("::1"),
            ip("::2"),
            ip("127.0.0.31"),
            ip("127.0.0.32"),
            ip("127.0.0.33")
        ]
    );
    let ar = gai("mixed.smtpd.test", stream(libc::AF_INET), Rc::clone(&ctx));
    assert_eq!(ips(&ar).len(), 3);
    // The search list completes a short name.
    let ctx = resolver(&dir, &[nsd.addr6], "search smtpd.test\nfamily inet4\n");
    let ar = gai("nomx", stream(libc::AF_UNSPEC), ctx);
    assert_eq!(ips(&ar), [ip("127.0.0.10")]);
}

#[test]
fn nxdomain_nodata_servfail_refused_and_timeout_differ() {
    let nsd = Nsd::start();
    let silent = Silent::start();
    let dir = TestDir::new("dns-errors");
    let ctx = resolver(&dir, &[nsd.addr], "");
    let any = stream(libc::AF_UNSPEC);

    let ar = gai("nosuch.smtpd.test", any, Rc::clone(&ctx));
    assert_eq!((ar.ar_gai_errno, ar.ar_errno), (EAI_NONAME, 0));
    let ar = query("nosuch.smtpd.test", T_A, Rc::clone(&ctx));
    assert_eq!((ar.ar_h_errno, ar.ar_rcode), (HOST_NOT_FOUND, NXDOMAIN));

    let ar = gai("onlytxt.smtpd.test", any, Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, EAI_NODATA);
    let ar = query("onlytxt.smtpd.test", T_MX, Rc::clone(&ctx));
    assert_eq!((ar.ar_h_errno, ar.ar_count), (NO_DATA, 0));

    let ar = gai("www.broken.test", any, Rc::clone(&ctx));
    assert_eq!((ar.ar_gai_errno, ar.ar_errno), (EAI_AGAIN, 0));
    let ar = query("broken.test", T_MX, Rc::clone(&ctx));
    assert_eq!((ar.ar_h_errno, ar.ar_rcode), (TRY_AGAIN, SERVFAIL));

    let ar = gai("outside.example", any, Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, EAI_FAIL);
    let ar = query("outside.example", T_MX, Rc::clone(&ctx));
    assert_eq!((ar.ar_h_errno, ar.ar_rcode), (NO_RECOVERY, REFUSED));

    let ctx = resolver(&dir, &[silent.addr], "options timeout:1 attempts:1\n");
    let t = Instant::now();
    let ar = gai("mixed.smtpd.test", any, Rc::clone(&ctx));
    assert_eq!((ar.ar_gai_errno, ar.ar_errno), (EAI_AGAIN, libc::ETIMEDOUT));
    // One wait, not one per family: the second would only time out too.
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(silent.queries(), 1);
    let ar = query("mixed.smtpd.test", T_A, ctx);
    assert_eq!((ar.ar_h_errno, ar.ar_errno), (TRY_AGAIN, libc::ETIMEDOUT));
}

#[test]
fn a_silent_server_is_left_for_the_next() {
    let nsd = Nsd::start();
    let silent = Silent::start();
    let slow = Slow::start(nsd.addr, Duration::from_secs(3));
    let dir = TestDir::new("dns-retry");
    let ctx = resolver(
        &dir,
        &[silent.addr, slow.addr, nsd.addr],
        "options timeout:1 attempts:2\n",
    );
    let t = Instant::now();
    let ar = gai("nomx.smtpd.test", stream(libc::AF_INET), ctx);
    let waited = t.elapsed();
    assert_eq!(ips(&ar), [ip("127.0.0.10")]);
    // A second for each server that did not answer in time.
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!((silent.queries(), slow.queries()), (1, 1));
}

#[test]
fn forged_answers_are_dropped_and_the_real_one_taken() {
    let nsd = Nsd::start();
    let spoofs = vec![
        Spoof::WrongId,
        Spoof::WrongQuestion,
        Spoof::WrongSourcePort,
        Spoof::WrongSourceAddr,
        Spoof::NotResponse,
    ];
    let relay = Relay::start(nsd.addr, spoofs);
    let dir = TestDir::new("dns-spoof");
    let ctx = resolver(&dir, &[relay.addr], "options timeout:2 attempts:1\n");
    let ar = gai("mixed.smtpd.test", stream(libc::AF_UNSPEC), Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, 0);
    let got = ips(&ar);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(!got.contains(&IpAddr::V4(POISON_V4)) && !got.contains(&IpAddr::V6(POISON_V6)));

    // The query itself says what it dropped: the three forgeries that
    // reached its socket (the kernel keeps the other two from a
    // connected socket).
    let mut q = AsrQuery::Send(res_query_async("mixed.smtpd.test", C_IN, T_A, ctx).unwrap());
    let ar = run_to_end(&mut q);
    let AsrQuery::Send(send) = &q else {
        unreachable!()
    };
    assert_eq!(send.dropped, 3);
    assert_eq!(ar.ar_h_errno, NETDB_SUCCESS);
    assert_eq!(ar.ar_ns, Some(relay.addr));
}

#[test]
fn only_forgeries_is_no_answer() {
    let nsd = Nsd::start();
    let relay = Relay::start_with(nsd.addr, vec![Spoof::WrongId, Spoof::WrongQuestion], true);
    let dir = TestDir::new("dns-forged-only");
    let ctx = resolver(&dir, &[relay.addr], "options timeout:1 attempts:1\n");
    let ar = gai("mixed.smtpd.test", stream(libc::AF_INET), ctx);
    assert_eq!((ar.ar_gai_errno, ar.ar_errno), (EAI_AGAIN, libc::ETIMEDOUT));
    assert!(ar.ar_addrinfo.is_empty());
}

/// asr_run_sync() keeps the query; this keeps it for the test to look at.
fn run_to_end(q: &mut AsrQuery) -> AsrResult {
    let mut ar = AsrResult::default();
    while asr_run(q, &mut ar, Instant::now()) == Async::Cond {
        let fd = ar.ar_fd;
        let mut pfd = [libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        }];
        let _ = smtpd::sys::event::poll(&mut pfd, Some(ar.ar_timeout));
    }
    ar
}

#[test]
fn cname_chains_are_followed_loops_and_long_chains_refused() {
    let nsd = Nsd::start();
    let dir = TestDir::new("dns-cname");
    let ctx = resolver(&dir, &[nsd.addr], "options edns0\n");
    let canon = AddrInfoHints {
        ai_flags: AI_CANONNAME,
        ..stream(libc::AF_UNSPEC)
    };
    let ar = gai("c1.smtpd.test", canon, Rc::clone(&ctx));
    assert_eq!(ips(&ar), [ip("::1"), ip("127.0.0.20")]);
    assert!(ar
        .ar_addrinfo
        .iter()
        .all(|ai| ai.ai_canonname.as_deref() == Some("host.smtpd.test")));

    let ar = gai("loop1.smtpd.test", canon, Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, EAI_FAIL);
    let ar = gai("long0.smtpd.test", canon, ctx);
    assert_eq!(ar.ar_gai_errno, EAI_FAIL);
}

#[test]
fn a_large_answer_comes_over_tcp() {
    let nsd = Nsd::start();
    let trunc = Truncator::start(nsd.addr);
    let dir = TestDir::new("dns-tcp");
    for (ns, extra) in [
        (nsd.addr, ""),
        (nsd.addr, "options edns0\n"),
        (trunc.addr, ""),
    ] {
        let ctx = resolver(&dir, &[ns], extra);
        let ar = query("bigtxt.smtpd.test", T_TXT, ctx);
        assert_eq!(ar.ar_h_errno, NETDB_SUCCESS, "{extra}");
        let records = answers(&ar);
        let [Rdata::Txt(strings)] = records.as_slice() else {
            panic!("not one TXT record");
        };
        assert_eq!(strings.len(), 12);
        assert_eq!(strings.iter().map(Vec::len).sum::<usize>(), 3000);
        assert!(strings[11].iter().all(|b| *b == b'l'));
    }
    // The truncating server was asked over UDP, then over TCP.
    assert_eq!((trunc.udp_queries(), trunc.tcp_queries()), (1, 1));
    // Small answers come over TCP too when the server truncates them.
    let ctx = resolver(&dir, &[trunc.addr], "");
    let ar = gai("mixed.smtpd.test", stream(libc::AF_INET), ctx);
    assert_eq!(ips(&ar).len(), 3);
}

#[test]
fn mx_records_come_with_their_preference() {
    let nsd = Nsd::start();
    let dir = TestDir::new("dns-mx");
    let ctx = resolver(&dir, &[nsd.addr], "");
    let ar = query("mx3.smtpd.test", T_MX, ctx);
    assert_eq!((ar.ar_h_errno, ar.ar_count), (NETDB_SUCCESS, 3));
    let mut prefs: Vec<u16> = answers(&ar)
        .iter()
        .map(|r| match r {
            Rdata::Mx { preference, .. } => *preference,
            other => panic!("{other:?}"),
        })
        .collect();
    prefs.sort_unstable();
    assert_eq!(prefs, [10, 20, 30]);
}

#[test]
fn reverse_lookups() {
    let nsd = Nsd::start();
    let dir = TestDir::new("dns-ptr");
    let ctx = resolver(&dir, &[nsd.addr], "");
    let ar = ptr("127.0.0.10", NI_NAMEREQD, Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, 0);
    assert_eq!(ar.ar_host.as_deref(), Some("nomx.smtpd.test"));
    assert_eq!(ar.ar_serv.as_deref(), Some("smtp"));
    let ar = ptr("::1", NI_NAMEREQD, Rc::clone(&ctx));
    assert_eq!(ar.ar_host.as_deref(), Some("ip6-localhost.smtpd.test"));
    let ar = ptr("127.0.0.67", NI_NAMEREQD, Rc::clone(&ctx));
    let h = ar.ar_host.unwrap_or_default();
    assert!(h == "two-a.smtpd.test" || h == "two-b.smtpd.test", "{h}");
    // A PTR that is not a host name is no name at all.
    let ar = ptr("127.0.0.66", NI_NAMEREQD, Rc::clone(&ctx));
    assert_eq!((ar.ar_gai_errno, ar.ar_host), (EAI_NONAME, None));
    let ar = ptr("127.0.0.99", NI_NAMEREQD, Rc::clone(&ctx));
    assert_eq!(ar.ar_gai_errno, EAI_NONAME);
    // Without NI_NAMEREQD, the address stands in for the name.
    let ar = ptr("127.0.0.99", 0, Rc::clone(&ctx));
    assert_eq!(
        (ar.ar_gai_errno, ar.ar_host.as_deref()),
        (0, Some("127.0.0.99"))
    );
    // No server: a temporary failure, not "no name".
    let silent = Silent::start();
    let ctx = resolver(&dir, &[silent.addr], "options timeout:1 attempts:1\n");
    let ar = ptr("127.0.0.10", NI_NAMEREQD, ctx);
    assert_eq!((ar.ar_gai_errno, ar.ar_errno), (EAI_AGAIN, libc::ETIMEDOUT));
}

/// A process state that runs many lookups in one loop and watches how
/// late its ticker fires.
struct Many {
    asr: EventAsr<Many>,
    total: usize,
    done: usize,
    ok: usize,
    tick_due: Instant,
    max_stall: Duration,
}

impl AsrOwner for Many {
    fn event_asr(&mut self) -> &mut EventAsr<Many> {
        &mut self.asr
    }
}

const TICK: Duration = Duration::from_millis(2);

fn many_tick(s: &mut Many, base: &mut EventBase<Many>, _fd: RawFd, _ev: EvFlags, _arg: u64) {
    let now = Instant::now();
    s.max_stall = s.max_stall.max(now.saturating_duration_since(s.tick_due));
    s.tick_due = now + TICK;
    if s.done < s.total {
        let t = base.evtimer_set(many_tick, 0);
        base.evtimer_add(t, TICK).unwrap();
    }
}

fn many_done(s: &mut Many, base: &mut EventBase<Many>, ar: AsrResult, arg: u64) {
    s.done += 1;

    let want: &[&str] = match arg % 3 {
        0 => &["127.0.0.10"],
        1 => &["127.0.0.20"],
        _ => &["127.0.0.31", "127.0.0.32", "127.0.0.33"],
    };
    let got: Vec<String> = ar
        .ar_addrinfo
        .iter()
        .map(|ai| ai.ai_addr.ip().to_string())
        .collect();
    if ar.ar_gai_errno == 0 && got == want {
        s.ok += 1;
    }
    if s.done == s.total {
        base.event_loopexit();
    }
}

/// Runs `n` lookups at once in one loop, through a server that answers
/// `delay` late when there is one; returns the time they took, the
/// loop's longest stall, and how many found the right addresses.
fn many_lookups(n: usize, delay: Option<Duration>) -> (Duration, Duration, usize) {
    smtpd::sys::unistd::nofile_to_max().unwrap();
    let nsd = Nsd::start();
    let slow = delay.map(|d| Slow::start(nsd.addr, d));
    let ns = slow.as_ref().map_or(nsd.addr, |s| s.addr);
    let dir = TestDir::new("dns-many");
    // A burst of a thousand datagrams can overflow a server's receive
    // buffer on loopback too: the few lost are asked again after a
    // second rather than five.
    let path = resolv_conf(
        &dir.path,
        &[ns],
        "lookup bind\nfamily inet4\noptions timeout:1\n",
    );
    let mut s = Many {
        asr: EventAsr::new(Asr::from_file(&path)),
        total: n,
        done: 0,
        ok: 0,
        tick_due: Instant::now() + TICK,
        max_stall: Duration::ZERO,
    };
    let mut base = EventBase::new();
    let t = base.evtimer_set(many_tick, 0);
    base.evtimer_add(t, TICK).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let name = ["nomx.smtpd.test", "c1.smtpd.test", "mixed.smtpd.test"][i % 3];
        let ctx = s.asr.asr.asr_use_resolver(start);
        let q = getaddrinfo_async(Some(name), None, Some(&stream(libc::AF_UNSPEC)), ctx);
        event_asr_run(
            &mut s,
            &mut base,
            AsrQuery::GetAddrInfo(q),
            many_done,
            i as u64,
        );
    }
    assert_eq!(s.asr.pending(), n);
    base.event_dispatch(&mut s).unwrap();
    let took = start.elapsed();

    assert_eq!(s.done, n);
    assert_eq!(s.asr.pending(), 0);
    (took, s.max_stall, s.ok)
}

#[test]
fn a_thousand_lookups_in_one_loop() {
    // Every answer comes 600 ms late: a loop that waited on any lookup
    // would stall that long at least.
    let delay = Duration::from_millis(600);
    let (took, stall, ok) = many_lookups(1000, Some(delay));
    eprintln!("1000 lookups, answers {delay:?} late: {took:?}, longest loop stall {stall:?}");
    assert_eq!(ok, 1000);
    assert!(took >= delay, "{took:?}");
    assert!(stall < delay, "the loop stalled {stall:?}");
}

#[test]
#[ignore = "a benchmark: make bench runs it"]
fn bench_concurrent_lookups() {
    for (n, delay) in [
        (1000, None),
        (10000, None),
        (1000, Some(Duration::from_millis(200))),
    ] {
        let (took, stall, ok) = many_lookups(n, delay);
        assert_eq!(ok, n);
        let late = delay.map_or(String::new(), |d| {
            format!(", answers {} ms late", d.as_millis())
        });
        println!(
            "  {n:>5} concurrent lookups{late}: {:8.1} ms, {:6.0} lookups/s, longest loop stall {:6.2} ms",
            took.as_secs_f64() * 1000.0,
            n as f64 / took.as_secs_f64(),
            stall.as_secs_f64() * 1000.0
        );
    }
}

/// The dispatcher's side of the conversation: the real resolver.c client
/// and the MTA's raw dns.c requests, over a socket pair to a forked lka.
struct Client {
    peers: smtpd::smtpd::Peers,
    resolver: Resolver<Client>,
    waiting: usize,
    log: Vec<String>,
}

smtpd::impl_mproc_owner!(Client, client_imsg);

impl ResolverOwner for Client {
    fn resolver(&mut self) -> &mut Resolver<Client> {
        &mut self.resolver
    }
}

fn client_answered(s: &mut Client, base: &mut EventBase<Client>, line: String) {
    s.log.push(line);
    s.waiting -= 1;
    if s.waiting == 0 {
        base.event_loopexit();
    }
}

fn client_imsg(s: &mut Client, base: &mut EventBase<Client>, _from: ProcType, imsg: Option<Imsg>) {
    use ImsgType::*;
    let imsg = imsg.expect("lka went away");
    let mut m = m_msg(&imsg);
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_GETADDRINFO | IMSG_GETADDRINFO_END | IMSG_GETNAMEINFO | IMSG_RES_QUERY) => {
            resolver_dispatch_result(s, base, &imsg)
        }
        Some(IMSG_MTA_DNS_HOST) => {
            let id = m_get_id(&mut m);
            let host = m_get_string(&mut m).unwrap_or("").to_string();
            let sa = m_get_sockaddr(&mut m);
            let pref = m_get_int(&mut m);
            m_end(&m);
            s.log.push(format!("{id} host {host} {} {pref}", sa.ip()));
        }
        Some(IMSG_MTA_DNS_HOST_END) => {
            let id = m_get_id(&mut m);
            let err = m_get_int(&mut m);
            m_end(&m);
            client_answered(s, base, format!("{id} end {err}"));
        }
        Some(IMSG_MTA_DNS_MX_PREFERENCE) => {
            let id = m_get_id(&mut m);
            let err = m_get_int(&mut m);
            let pref = if err == DNS_OK { m_get_int(&mut m) } else { -1 };
            m_end(&m);
            client_answered(s, base, format!("{id} preference {err} {pref}"));
        }
        _ => panic!("unexpected {}", imsg.hdr.type_),
    }
}

fn client_ai(
    s: &mut Client,
    base: &mut EventBase<Client>,
    arg: u64,
    gai: i32,
    errno: i32,
    ai: Vec<AddrInfo>,
) {
    let addrs: Vec<String> = ai.iter().map(|a| a.ai_addr.to_string()).collect();
    client_answered(
        s,
        base,
        format!("{arg} gai {gai} {errno} {}", addrs.join(" ")),
    );
}

fn client_ni(
    s: &mut Client,
    base: &mut EventBase<Client>,
    arg: u64,
    gai: i32,
    errno: i32,
    host: Option<&str>,
    serv: Option<&str>,
) {
    client_answered(
        s,
        base,
        format!("{arg} gni {gai} {errno} {host:?} {serv:?}"),
    );
}

fn client_res(
    s: &mut Client,
    base: &mut EventBase<Client>,
    arg: u64,
    herrno: i32,
    rcode: i32,
    count: i32,
    data: &[u8],
) {
    client_answered(
        s,
        base,
        format!("{arg} res {herrno} {rcode} {count} {}", !data.is_empty()),
    );
}

fn mta_request(s: &mut Client, t: ImsgType, id: u64, args: &[&str]) {
    let p = s.peers.p(ProcType::PROC_LKA);
    m_create(p, t, 0, 0, None);
    m_add_id(p, id);
    for a in args {
        m_add_string(p, Some(a));
    }
    m_close(p);
    s.waiting += 1;
}

fn lka_child(fd: std::os::fd::OwnedFd, resolv: &std::path::Path) -> ! {
    let mut peers = smtpd::smtpd::Peers::default();
    peers.set(
        ProcType::PROC_DISPATCHER,
        mproc_init(fd, ProcType::PROC_DISPATCHER, "dispatcher", 0),
    );
    let mut base = EventBase::new();
    let key = ProcType::PROC_DISPATCHER as u64;
    mproc_enable(&mut base, peers.p(ProcType::PROC_DISPATCHER), key);
    lka_loop(Lka::new(peers, Asr::from_file(resolv)), base)
}

#[test]
fn lka_answers_the_dispatcher_through_imsg() {
    if !smtpd::sys::testing::run_alone(module_path!(), "lka_answers_the_dispatcher_through_imsg") {
        return;
    }
    let v4 = smtpd::sys::net::getifaddrs()
        .unwrap()
        .iter()
        .any(|i| i.addr.is_ipv4() && !i.addr.ip().is_loopback());
    assert!(
        v4,
        "this test needs an IPv4 address besides loopback: the MTA's lookups \
         use AI_ADDRCONFIG, which asks for IPv4 addresses only then"
    );
    let nsd = Nsd::start();
    let dir = TestDir::new("dns-lka");
    // No address configuration question: the MTA's lookups use
    // AI_ADDRCONFIG, and this machine may have no IPv6 but ::1.
    let resolv = resolv_conf(&dir.path, &[nsd.addr], "lookup bind\nfamily inet4\n");
    let (ours, theirs) = smtpd::sys::socket::socketpair().unwrap();
    let pid = match smtpd::sys::process::fork().unwrap() {
        smtpd::sys::process::Fork::Child => {
            drop(ours);
            lka_child(theirs, &resolv)
        }
        smtpd::sys::process::Fork::Parent(pid) => pid,
    };
    drop(theirs);
    let mut base = EventBase::new();
    let mut s = Client {
        peers: smtpd::smtpd::Peers::default(),
        resolver: Resolver::default(),
        waiting: 0,
        log: Vec::new(),
    };
    s.peers.set(
        ProcType::PROC_LKA,
        mproc_init(ours, ProcType::PROC_LKA, "lka", pid as u32),
    );
    mproc_enable(
        &mut base,
        s.peers.p(ProcType::PROC_LKA),
        ProcType::PROC_LKA as u64,
    );

    let hints = stream(libc::AF_INET);
    resolver_getaddrinfo(
        &mut s,
        Some("mixed.smtpd.test"),
        Some("25"),
        Some(&hints),
        client_ai,
        1,
    );
    resolver_getaddrinfo(
        &mut s,
        Some("nosuch.smtpd.test"),
        None,
        Some(&hints),
        client_ai,
        2,
    );
    let sa: SocketAddr = "127.0.0.11:25".parse().unwrap();
    resolver_getnameinfo(&mut s, &sa, NI_NAMEREQD, client_ni, 3);
    resolver_res_query(&mut s, "mx3.smtpd.test", 1, 15, client_res, 4);
    resolver_res_query(&mut s, "nosuch.smtpd.test", 1, 15, client_res, 5);
    s.waiting += 5;
    mta_request(&mut s, ImsgType::IMSG_MTA_DNS_MX, 10, &["mx3.smtpd.test"]);
    mta_request(&mut s, ImsgType::IMSG_MTA_DNS_MX, 11, &["nomx.smtpd.test"]);
    mta_request(
        &mut s,
        ImsgType::IMSG_MTA_DNS_MX,
        12,
        &["nullmx.smtpd.test"],
    );
    mta_request(
        &mut s,
        ImsgType::IMSG_MTA_DNS_MX,
        13,
        &["nosuch.smtpd.test"],
    );
    mta_request(&mut s, ImsgType::IMSG_MTA_DNS_MX, 14, &["broken.test"]);
    mta_request(&mut s, ImsgType::IMSG_MTA_DNS_MX, 15, &["[127.0.0.5]"]);
    mta_request(&mut s, ImsgType::IMSG_MTA_DNS_HOST, 16, &["c1.smtpd.test"]);
    mta_request(
        &mut s,
        ImsgType::IMSG_MTA_DNS_MX_PREFERENCE,
        17,
        &["mx3.smtpd.test", "mx-b.smtpd.test"],
    );
    mta_request(
        &mut s,
        ImsgType::IMSG_MTA_DNS_MX_PREFERENCE,
        18,
        &["mx3.smtpd.test", "elsewhere.test"],
    );
    base.event_dispatch(&mut s).unwrap();
    assert_eq!(s.resolver.pending(), 0);

    let mut log = s.log.clone();
    // Answers to different requests may cross; each request's own lines
    // keep their order.
    log.sort_by_key(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap());
    let expect = [
        "1 gai 0 0 127.0.0.31:25 127.0.0.32:25 127.0.0.33:25",
        &format!("2 gai {EAI_NONAME} 0 "),
        "3 gni 0 0 Some(\"mx-a.smtpd.test\") Some(\"smtp\")",
        &format!("4 res {NETDB_SUCCESS} 0 3 true"),
        &format!("5 res {HOST_NOT_FOUND} {NXDOMAIN} 0 true"),
        // Sorted by preference, each exchanger then its addresses.
        "10 host mx-a.smtpd.test 127.0.0.11 10",
        "10 host mx-b.smtpd.test 127.0.0.12 20",
        "10 host mx-c.smtpd.test 127.0.0.13 30",
        &format!("10 end {DNS_OK}"),
        "11 host nomx.smtpd.test 127.0.0.10 0",
        &format!("11 end {DNS_OK}"),
        &format!("12 end {DNS_NULLMX}"),
        &format!("13 end {DNS_ENONAME}"),
        &format!("14 end {DNS_RETRY}"),
        "15 host 127.0.0.5 127.0.0.5 -1",
        &format!("15 end {DNS_OK}"),
        "16 host c1.smtpd.test 127.0.0.20 -1",
        &format!("16 end {DNS_OK}"),
        &format!("17 preference {DNS_OK} 20"),
        &format!("18 preference {DNS_ENOTFOUND} -1"),
    ];
    assert_eq!(log, expect);

    // Closing the channel ends lka, cleanly.
    drop(s);
    let status = smtpd::sys::process::waitpid(pid).unwrap();
    assert_eq!(status, smtpd::sys::process::WaitStatus::Exited(0));
}
