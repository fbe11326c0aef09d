use super::*;
use crate::dns::unpack_dns::{DnsHeader, Pack, C_IN, QR_MASK, T_A, T_MX};
use std::net::Ipv4Addr;

fn ctx(conf: &str) -> AsrCtx {
    AsrCtx::from_string(conf)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn nameservers_at_most_five_on_port_53_or_the_bracketed_port() {
    let ac = ctx("nameserver 192.0.2.1\n\
                  nameserver [192.0.2.2]:5353\n\
                  nameserver ::1\n\
                  nameserver [2001:db8::1]:53000\n\
                  nameserver not-an-address\n\
                  nameserver 192.0.2.3 extra\n\
                  nameserver [192.0.2.4]:0\n\
                  nameserver 192.0.2.5\n\
                  nameserver 192.0.2.6\n");
    assert_eq!(
        ac.ac_ns,
        [
            sa("192.0.2.1:53"),
            sa("192.0.2.2:5353"),
            sa("[::1]:53"),
            sa("[2001:db8::1]:53000"),
            sa("192.0.2.5:53"),
        ]
    );
}

#[test]
fn a_numeric_ipv6_zone_is_kept() {
    let Some(SocketAddr::V6(a)) = asr_parse_nameserver("fe80::1%7") else {
        panic!("not parsed");
    };
    assert_eq!(a.scope_id(), 7);
    assert_eq!(asr_parse_nameserver("fe80::1%no-such-interface"), None);
}

#[test]
fn what_resolv_conf_leaves_out_is_filled_in() {
    let ac = ctx("domain example.org\n");
    assert_eq!(ac.ac_ns, [sa("127.0.0.1:53")]);
    assert_eq!(ac.ac_db, [AsrDb::Dns, AsrDb::File]);
    assert_eq!(ac.ac_dom, ["example.org."]);
    assert_eq!(ac.ac_ndots, 1);
    assert_eq!((ac.ac_nstimeout, ac.ac_nsretries), (5, 4));
    assert_eq!(ac.ac_family, [libc::AF_INET6, libc::AF_INET]);
    // Only loopback servers: their AD bit is trusted.
    assert!(ac.ac_options.contains(ResOptions::RES_TRUSTAD));
    let ac = ctx("nameserver 192.0.2.1\nnameserver 127.0.0.1\n");
    assert!(!ac.ac_options.contains(ResOptions::RES_TRUSTAD));
}

#[test]
fn the_domain_gives_the_search_list_down_to_two_labels() {
    let ac = ctx("domain mx.corp.example.org\n");
    assert_eq!(
        ac.ac_dom,
        ["mx.corp.example.org.", "corp.example.org.", "example.org."]
    );
}

#[test]
fn the_last_search_line_wins_with_nine_domains_at_most() {
    // asr reads ten words of a line: the keyword and nine domains.
    let many: Vec<String> = (0..12).map(|i| format!("d{i}.example")).collect();
    let ac = ctx(&format!(
        "search a.example b.example\nsearch {}\n",
        many.join(" ")
    ));
    assert_eq!(ac.ac_dom.len(), 9);
    assert_eq!(ac.ac_dom[0], "d0.example.");
    assert_eq!(ac.ac_dom[8], "d8.example.");
}

#[test]
fn lookup_orders_the_databases_and_refuses_repeats() {
    assert_eq!(ctx("lookup file bind\n").ac_db, [AsrDb::File, AsrDb::Dns]);
    assert_eq!(ctx("lookup file yp\n").ac_db, [AsrDb::File]);
    // A repeated database: the line is ignored, the default applies.
    assert_eq!(ctx("lookup file file\n").ac_db, [AsrDb::Dns, AsrDb::File]);
}

#[test]
fn family_sets_the_order_of_address_families() {
    assert_eq!(ctx("family inet4\n").ac_family, [libc::AF_INET]);
    assert_eq!(
        ctx("family inet4 inet6\n").ac_family,
        [libc::AF_INET, libc::AF_INET6]
    );
    assert_eq!(
        ctx("family inet4 ipx\n").ac_family,
        [libc::AF_INET6, libc::AF_INET]
    );
}

#[test]
fn options_within_their_bounds() {
    let ac = ctx("options ndots:3 timeout:2 attempts:3 edns0 tcp\n");
    assert_eq!(ac.ac_ndots, 3);
    assert_eq!((ac.ac_nstimeout, ac.ac_nsretries), (2, 3));
    assert!(ac.ac_options.contains(ResOptions::RES_USE_EDNS0));
    assert!(ac.ac_options.contains(ResOptions::RES_USEVC));
    let ac = ctx("options ndots:17 timeout:0 attempts:6 rotate\n");
    assert_eq!(ac.ac_ndots, 1);
    assert_eq!((ac.ac_nstimeout, ac.ac_nsretries), (5, 4));
}

#[test]
fn comments_start_with_hash_or_semicolon() {
    let ac = ctx("# nameserver 192.0.2.9\nnameserver 192.0.2.1 ; the office\n");
    assert_eq!(ac.ac_ns, [sa("192.0.2.1:53")]);
}

#[test]
fn fqdn_completion() {
    assert_eq!(
        asr_make_fqdn("mx", Some("example.org.")).as_deref(),
        Some("mx.example.org.")
    );
    assert_eq!(
        asr_make_fqdn("mx", Some(".example.org.")).as_deref(),
        Some("mx.example.org.")
    );
    assert_eq!(
        asr_make_fqdn("mx.", Some("example.org.")).as_deref(),
        Some("mx.")
    );
    assert_eq!(asr_make_fqdn("mx", None).as_deref(), Some("mx."));
    assert_eq!(
        asr_make_fqdn("", Some("example.org.")).as_deref(),
        Some("example.org.")
    );
    assert_eq!(asr_make_fqdn("mx", Some("example.org")), None);
    assert_eq!(asr_make_fqdn(&"a".repeat(254), None), None);
}

#[test]
fn reverse_names() {
    assert_eq!(
        asr_addr_as_fqdn(&"192.0.2.10".parse().unwrap()),
        "10.2.0.192.in-addr.arpa."
    );
    let v6 = asr_addr_as_fqdn(&"2001:db8::1".parse().unwrap());
    assert_eq!(
        v6,
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    );
}

#[test]
fn host_name_checks() {
    for ok in [
        "mx.example.org",
        "mx-1.example.org.",
        "a_b.example",
        "0.example",
    ] {
        assert!(asr_hnok(ok), "{ok}");
        assert!(hnok_lenient(ok), "{ok}");
    }
    for bad in [
        "-mx.example",
        "mx-.example",
        "",
        ".",
        "mx ex",
        "mx\n.org",
        "_a.example",
        "bad_name!.example",
        "esc\\.aped.example",
    ] {
        assert!(!asr_hnok(bad), "{bad:?}");
    }
    assert!(hnok_lenient("_a.example"));
    assert!(!hnok_lenient(".example"));
    assert!(!hnok_lenient("a..example"));
    assert!(!hnok_lenient("a b"));
}

#[test]
fn localhost_names() {
    for l in ["localhost", "LOCALHOST.", "mx.localhost", "mx.localhost."] {
        assert!(asr_is_localhost(l), "{l}");
    }
    for n in ["localhost.example", "mylocalhost", "localhostx"] {
        assert!(!asr_is_localhost(n), "{n}");
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("smtpd-asr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn hosts_lines_split_without_comments() {
    let dir = Scratch::new("hosts");
    let p = dir.0.join("hosts");
    std::fs::write(
        &p,
        "# a comment\n127.0.0.1\tlocalhost\n\n192.0.2.1 mx mx.example # the MX\n",
    )
    .unwrap();
    assert_eq!(
        asr_parse_namedb(&p),
        [
            vec!["127.0.0.1", "localhost"],
            vec!["192.0.2.1", "mx", "mx.example"]
        ]
    );
    assert!(asr_parse_namedb(&dir.0.join("missing")).is_empty());
}

#[test]
fn the_configuration_file_is_reloaded_when_it_changes() {
    let dir = Scratch::new("reload");
    let p = dir.0.join("resolv.conf");
    std::fs::write(&p, "nameserver 192.0.2.1\n").unwrap();
    let mut asr = Asr::from_file(&p);
    let t0 = Instant::now();
    assert_eq!(asr.asr_use_resolver(t0).ac_ns, [sa("192.0.2.1:53")]);
    std::fs::write(&p, "nameserver 192.0.2.2\n").unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(later)
        .unwrap();
    // Not checked again within 15 seconds.
    assert_eq!(
        asr.asr_use_resolver(t0 + Duration::from_secs(5)).ac_ns,
        [sa("192.0.2.1:53")]
    );
    assert_eq!(
        asr.asr_use_resolver(t0 + Duration::from_secs(16)).ac_ns,
        [sa("192.0.2.2:53")]
    );
    // A file that goes away leaves the configuration as it was.
    std::fs::remove_file(&p).unwrap();
    assert_eq!(
        asr.asr_use_resolver(t0 + Duration::from_secs(40)).ac_ns,
        [sa("192.0.2.2:53")]
    );
}

#[test]
fn without_a_file_only_the_hosts_file_is_used() {
    let dir = Scratch::new("nofile");
    let mut asr = Asr::from_file(&dir.0.join("resolv.conf"));
    assert_eq!(asr.asr_use_resolver(Instant::now()).ac_db, [AsrDb::File]);
}

#[test]
fn an_overlong_file_is_refused() {
    let dir = Scratch::new("long");
    let p = dir.0.join("resolv.conf");
    std::fs::write(&p, format!("nameserver 192.0.2.1\n#{}\n", "x".repeat(5000))).unwrap();
    let mut ac = AsrCtx::asr_ctx_create();
    assert!(ac.asr_ctx_from_file(&p).is_err());
}

#[test]
fn asr_config_names_the_file() {
    if !crate::sys::testing::run_alone(module_path!(), "asr_config_names_the_file") {
        return;
    }
    let dir = Scratch::new("env");
    let p = dir.0.join("resolv.conf");
    std::fs::write(&p, "nameserver [127.0.0.1]:5300\noptions timeout:1\n").unwrap();
    // This test runs alone in its process: nothing else reads the
    // environment meanwhile.
    std::env::set_var("ASR_CONFIG", &p);
    std::env::set_var("RES_OPTIONS", "attempts:2");
    let mut asr = Asr::new();
    let ac = asr.asr_use_resolver(Instant::now());
    assert_eq!(ac.ac_ns, [sa("127.0.0.1:5300")]);
    assert_eq!((ac.ac_nstimeout, ac.ac_nsretries), (1, 2));
}

/// An answer packet for `qname` with the given records.
fn answer(qname: &str, qtype: u16, rrs: &[DnsRr]) -> Vec<u8> {
    let mut p = Pack::new();
    p.pack_header(&DnsHeader {
        id: 1,
        flags: QR_MASK,
        qdcount: 1,
        ancount: rrs.len() as u16,
        ..Default::default()
    });
    p.pack_query(qtype, C_IN, &dn(qname));
    for rr in rrs {
        p.pack_rr(rr);
    }
    assert!(p.err.is_none());
    p.buf
}

fn dn(s: &str) -> Dname {
    crate::dns::unpack_dns::dname_from_fqdn(s).unwrap()
}

fn rr(owner: &str, rr_type: u16, rr: Rdata) -> DnsRr {
    DnsRr {
        rr_dname: dn(owner),
        rr_type,
        rr_class: C_IN,
        rr_ttl: 60,
        rr,
    }
}

fn a(owner: &str, ip: [u8; 4]) -> DnsRr {
    rr(owner, T_A, Rdata::A(Ipv4Addr::from(ip)))
}

fn cname(owner: &str, target: &str) -> DnsRr {
    rr(owner, T_CNAME, Rdata::Cname(dn(target)))
}

#[test]
fn the_chain_is_followed_and_only_its_end_counts() {
    let pkt = answer(
        "www.example.",
        T_A,
        &[
            cname("www.example.", "web.example."),
            a("other.example.", [192, 0, 2, 66]),
            cname("WEB.example.", "host.example."),
            a("host.example.", [192, 0, 2, 1]),
        ],
    );
    let c = asr_follow_cname(&pkt, &dn("www.example."), T_A, 0).unwrap();
    assert_eq!(c.target, dn("host.example."));
    assert_eq!(c.aliases, 2);
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.records[0].rr, Rdata::A(Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn a_chain_that_stops_at_an_alias_says_where() {
    let pkt = answer(
        "www.example.",
        T_A,
        &[cname("www.example.", "elsewhere.test.")],
    );
    let c = asr_follow_cname(&pkt, &dn("www.example."), T_A, 0).unwrap();
    assert_eq!(c.target, dn("elsewhere.test."));
    assert!(c.records.is_empty());
}

#[test]
fn loops_and_long_chains_are_refused() {
    let pkt = answer(
        "a.example.",
        T_MX,
        &[
            cname("a.example.", "b.example."),
            cname("b.example.", "a.example."),
        ],
    );
    assert_eq!(
        asr_follow_cname(&pkt, &dn("a.example."), T_MX, 0).err(),
        Some(ChainError::Loop)
    );
    let rrs: Vec<DnsRr> = (0..20)
        .map(|i| cname(&format!("l{i}.example."), &format!("l{}.example.", i + 1)))
        .collect();
    let pkt = answer("l0.example.", T_A, &rrs);
    assert_eq!(
        asr_follow_cname(&pkt, &dn("l0.example."), T_A, 0).err(),
        Some(ChainError::TooLong)
    );
    // Aliases followed in earlier answers count too.
    let pkt = answer("a.example.", T_A, &[cname("a.example.", "b.example.")]);
    assert!(asr_follow_cname(&pkt, &dn("a.example."), T_A, MAX_CNAME_CHAIN - 1).is_ok());
    assert_eq!(
        asr_follow_cname(&pkt, &dn("a.example."), T_A, MAX_CNAME_CHAIN).err(),
        Some(ChainError::TooLong)
    );
}
