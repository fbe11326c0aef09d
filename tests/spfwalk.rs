//! `smtpctl spf walk` against nsd serving tests/dns/spf.test.zone (see
//! tests/common/dns.rs): the built smtpctl reads domains on its standard
//! input, with ASR_CONFIG naming a resolv.conf that points at nsd, and
//! what it prints is compared, sorted, with what the zone says. Lookups
//! run side by side, so only the order of the lines may vary; each line
//! must come once.
//!
//! The cases where OpenSMTPD 7.8 prints something else on purpose are
//! marked "C:" with what it prints.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dns::{resolv_conf, Nsd};
use common::TestDir;

const SMTPCTL: &str = env!("CARGO_BIN_EXE_smtpctl");
/// How long one walk may take: a few dozen queries to loopback.
const WALK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run of `smtpctl spf walk` gave.
#[derive(Debug)]
struct Walked {
    /// The lines of the standard output, sorted.
    lines: Vec<String>,
    stderr: String,
    status: i32,
}

/// `smtpctl spf walk` with `input` on its standard input, asking `nsd`.
fn walk(nsd: &Nsd, input: &str) -> Walked {
    let dir = TestDir::new("spfwalk");
    let conf = resolv_conf(&dir.path, &[nsd.addr], "lookup bind\n");
    let mut child = Command::new(SMTPCTL)
        .args(["spf", "walk"])
        .env("ASR_CONFIG", &conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smtpctl");
    // Small enough for the pipe: no writer thread is needed.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the domains");
    let deadline = Instant::now() + WALK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for smtpctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smtpctl spf walk took more than {WALK_TIMEOUT:?} on {input:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    let mut seen = HashSet::new();
    for l in &lines {
        assert!(seen.insert(l), "{l} printed twice for {input:?}:\n{out}");
    }
    lines.sort();
    Walked {
        lines,
        stderr,
        status: status.code().expect("smtpctl exited"),
    }
}

/// The walk of `domain` alone prints `want` (in any order), says `err`
/// on its standard error, and exits 0.
fn check(nsd: &Nsd, domain: &str, want: &[&str], err: &str) {
    let w = walk(nsd, &format!("{domain}\n"));
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(w.lines, want, "{domain}: {w:?}");
    assert_eq!(w.stderr, err, "{domain}");
    assert_eq!(w.status, 0, "{domain}: {w:?}");
}

#[test]
fn ip4_and_ip6_networks_are_printed_as_written() {
    let nsd = Nsd::start();
    check(
        &nsd,
        "ip.spf.test",
        &[
            "192.0.2.1",
            "198.51.100.0/24",
            "2001:db8::1",
            "2001:db8:1::/48",
        ],
        "",
    );
    // Fail and softfail are left out, pass and neutral kept; a final dot
    // goes.
    check(
        &nsd,
        "qual.spf.test",
        &["192.0.2.2", "192.0.2.3", "192.0.2.6"],
        "",
    );
    check(&nsd, "badip.spf.test", &[], "");
}

#[test]
fn a_and_mx_give_the_addresses_they_resolve_to_with_their_prefix_lengths() {
    let nsd = Nsd::start();
    check(
        &nsd,
        "a.spf.test",
        &[
            // a
            "192.0.2.10",
            "2001:db8::10",
            // a:host.spf.test and a:host.spf.test//112
            "192.0.2.20",
            "2001:db8::20",
            "2001:db8::20/112",
            // a:host2.spf.test/28
            "192.0.2.21/28",
            "192.0.2.22/28",
            "2001:db8::22",
            // a:host3.spf.test/25/120, C's form
            "192.0.2.23/25",
            "2001:db8::23/120",
        ],
        "",
    );
    check(
        &nsd,
        "mx.spf.test",
        &[
            // mx: mx1 and mx2
            "192.0.2.30",
            "2001:db8::30",
            "192.0.2.31",
            // mx:mxother.spf.test: host
            "192.0.2.20",
            "2001:db8::20",
            // mx:mx3.spf.test//96: host3
            "192.0.2.23",
            "2001:db8::23/96",
        ],
        "",
    );
    // C: nothing, as it drops a and mx with a length but no domain, and
    // RFC 7208's /cidr4//cidr6.
    check(
        &nsd,
        "acidr.spf.test",
        &[
            // a/24//64
            "192.0.2.11/24",
            "2001:db8::11/64",
            // a:host2.spf.test/30//126
            "192.0.2.21/30",
            "192.0.2.22/30",
            "2001:db8::22/126",
            // mx/26: host3
            "192.0.2.23/26",
            "2001:db8::23",
            // mx:mx3.spf.test/27//96: host3
            "192.0.2.23/27",
            "2001:db8::23/96",
        ],
        "",
    );
    // As C: exists gives the addresses of its name.
    check(&nsd, "exists.spf.test", &["192.0.2.21", "192.0.2.22"], "");
}

#[test]
fn include_and_redirect_are_followed_whatever_the_case_and_strings() {
    let nsd = Nsd::start();
    let inc2 = ["192.0.2.52", "2001:db8:52::/64"];
    check(
        &nsd,
        "inc.spf.test",
        &["192.0.2.50", "192.0.2.51", inc2[0], inc2[1]],
        "",
    );
    check(&nsd, "redir.spf.test", &inc2, "");
    // C: inc1's addresses too; but with `all` a check never gets to
    // redirect.
    check(&nsd, "redirall.spf.test", &["192.0.2.53"], "");
    check(
        &nsd,
        "upper.spf.test",
        &[
            "192.0.2.130",
            inc2[0],
            inc2[1],
            "192.0.2.20",
            "2001:db8::20",
        ],
        "",
    );
    // "ip4:192.0.2.1" "20 ..." is ip4:192.0.2.120.
    check(&nsd, "split.spf.test", &["192.0.2.120", "192.0.2.121"], "");
}

#[test]
fn include_loops_are_reported_and_not_followed() {
    let nsd = Nsd::start();
    check(
        &nsd,
        "loop1.spf.test",
        &["192.0.2.60", "192.0.2.61"],
        "smtpctl: loop1.spf.test: include:LOOP1.spf.test loops, not followed\n",
    );
    check(
        &nsd,
        "self.spf.test",
        &["192.0.2.62"],
        "smtpctl: self.spf.test: redirect=self.spf.test loops, not followed\n",
    );
}

#[test]
fn a_domain_without_exactly_one_spf_record_gives_nothing() {
    let nsd = Nsd::start();
    check(&nsd, "nospf.spf.test", &[], "");
    check(&nsd, "missing.spf.test", &[], "");
    check(&nsd, "incmissing.spf.test", &["192.0.2.70"], "");
    // C: 192.0.2.80 and 192.0.2.81, silently.
    let two = "smtpctl: two.spf.test: 2 SPF records, none walked\n";
    check(&nsd, "two.spf.test", &[], two);
    check(&nsd, "inctwo.spf.test", &["192.0.2.82"], two);
}

#[test]
fn the_eleventh_dns_lookup_ends_the_walk() {
    let nsd = Nsd::start();
    let m: Vec<String> = (101..=110).map(|i| format!("192.0.2.{i}")).collect();
    let m: Vec<&str> = m.iter().map(String::as_str).collect();
    // C: 192.0.2.111 and 192.0.2.91 too.
    let mut want = m.clone();
    want.push("192.0.2.90");
    check(
        &nsd,
        "many.spf.test",
        &want,
        "smtpctl: many.spf.test: more than 10 DNS lookups, stopped at include:m11.spf.test\n",
    );
    // The lookups of the included record count. C: host's addresses and
    // 192.0.2.95 too.
    let mut want = m[..9].to_vec();
    want.push("192.0.2.96");
    check(
        &nsd,
        "nest.spf.test",
        &want,
        "smtpctl: nest.spf.test: more than 10 DNS lookups, stopped at a:host.spf.test\n",
    );
    let mut want = m[..8].to_vec();
    want.extend(["192.0.2.20", "2001:db8::20", "192.0.2.97"]);
    check(&nsd, "ten.spf.test", &want, "");
    // C: x11's 192.0.2.181 too.
    let x: Vec<String> = (171..=180).map(|i| format!("192.0.2.{i}")).collect();
    let x: Vec<&str> = x.iter().map(String::as_str).collect();
    check(
        &nsd,
        "mxmany.spf.test",
        &x,
        "smtpctl: mxmany.spf.test: more than 10 MX records, only the first 10 walked\n",
    );
}

#[test]
fn macros_are_reported_as_c_does_and_the_rest_is_walked() {
    let nsd = Nsd::start();
    check(
        &nsd,
        "macro.spf.test",
        &["192.0.2.140"],
        "smtpctl: lookup_record: %{i}.spf.test contains macros and can't be resolved\n\
         smtpctl: lookup_record: %{d}.x.spf.test contains macros and can't be resolved\n",
    );
}

#[test]
fn a_failed_lookup_is_reported_and_makes_the_exit_status_1() {
    let nsd = Nsd::start();
    let w = walk(&nsd, "servfail.spf.test\n");
    assert_eq!(w.lines, ["192.0.2.160"], "{w:?}");
    assert_eq!(
        w.stderr, "smtpctl: x.broken.test: TXT lookup failed: SERVFAIL\n",
        "{w:?}"
    );
    assert_eq!(w.status, 1, "{w:?}");
    // nsd refuses names outside its zones.
    let w = walk(&nsd, "spf.example\n");
    assert_eq!(w.lines, Vec::<String>::new(), "{w:?}");
    assert_eq!(
        w.stderr, "smtpctl: spf.example: TXT lookup failed: REFUSED\n",
        "{w:?}"
    );
    assert_eq!(w.status, 1, "{w:?}");
}

#[test]
fn several_domains_walk_in_one_run_each_line_once() {
    let nsd = Nsd::start();
    // Blank lines and spaces around names are skipped; names are case
    // blind; a domain read twice changes nothing. C resolves the bare `mx`
    // of only one of mx and mxmany, as it followed each token once.
    let w = walk(
        &nsd,
        "mx.spf.test\n\n  MXMANY.spf.test.  \ninc.spf.test\nredir.spf.test\ninc.spf.test\n",
    );
    let mut want: Vec<String> = [
        "192.0.2.30",
        "2001:db8::30",
        "192.0.2.31",
        "192.0.2.20",
        "2001:db8::20",
        "192.0.2.23",
        "2001:db8::23/96",
        "192.0.2.50",
        "192.0.2.51",
        "192.0.2.52",
        "2001:db8:52::/64",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((171..=180).map(|i| format!("192.0.2.{i}")))
    .collect();
    want.sort();
    assert_eq!(w.lines, want, "{w:?}");
    assert_eq!(
        w.stderr,
        "smtpctl: mxmany.spf.test: more than 10 MX records, only the first 10 walked\n"
    );
    assert_eq!(w.status, 0);
    // More names than queries in flight at once (64): the rest wait their
    // turn. C started them all, one socket each.
    let mut input = String::new();
    for i in 1..=200 {
        input.push_str(&format!("nx{i}.spf.test\n"));
    }
    for i in 1..=11 {
        input.push_str(&format!("m{i}.spf.test\n"));
    }
    let w = walk(&nsd, &input);
    let want: Vec<String> = (101..=111).map(|i| format!("192.0.2.{i}")).collect();
    assert_eq!(w.lines, want, "{w:?}");
    assert!(w.stderr.is_empty() && w.status == 0, "{w:?}");
    // Nothing to read, nothing to print.
    let w = walk(&nsd, "");
    assert!(
        w.lines.is_empty() && w.stderr.is_empty() && w.status == 0,
        "{w:?}"
    );
}
