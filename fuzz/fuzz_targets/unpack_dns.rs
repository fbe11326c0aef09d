//! Fuzzes the DNS message codec: any input is read without a panic,
//! stopping at the first error as the resolver does; every RR read packs
//! and reads back to itself; every name prints, and a name of plain
//! host-name labels parses back from its printed form; the resolver's
//! CNAME-chain walk over the answers ends, and keeps only records of the
//! name it ends on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::dns::asr::{asr_follow_cname, MAX_CNAME_CHAIN};
use smtpd::dns::unpack_dns::{
    dname_from_fqdn, print_dname, Dname, DnsRr, Pack, Rdata, Unpack, T_A, T_CNAME, T_MX, T_PTR,
};

/// asr_follow_cname() on the whole message, from the question's name.
fn check_chain(data: &[u8], qname: &Dname) {
    for qtype in [T_A, T_MX, T_PTR, T_CNAME] {
        if let Ok(c) = asr_follow_cname(data, qname, qtype, 0) {
            assert!(c.aliases <= MAX_CNAME_CHAIN);
            assert!(c
                .records
                .iter()
                .all(|rr| rr.rr_type == qtype && rr.rr_dname.eq_ignore_case(&c.target)));
        }
    }
}

/// print_dname must not panic, and where the text has nothing to escape
/// it must be what dname_from_fqdn reads back.
fn check_dname(d: &Dname) {
    let text = print_dname(d);
    let plain = d
        .labels()
        .flatten()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if plain {
        assert_eq!(dname_from_fqdn(&text).as_ref(), Some(d), "{text}");
    }
}

fn check_rr(rr: &DnsRr) {
    check_dname(&rr.rr_dname);
    match &rr.rr {
        Rdata::Cname(d) | Rdata::Ns(d) | Rdata::Ptr(d) => check_dname(d),
        Rdata::Mx { exchange, .. } => check_dname(exchange),
        Rdata::Soa { mname, rname, .. } => {
            check_dname(mname);
            check_dname(rname);
        }
        _ => {}
    }
    let mut p = Pack::new();
    p.pack_rr(rr);
    assert_eq!(p.err, None, "{rr:?}");
    let mut u = Unpack::new(&p.buf);
    assert_eq!(u.unpack_rr().as_ref(), Ok(rr));
    assert_eq!(u.remaining(), 0);
}

fuzz_target!(|data: &[u8]| {
    let mut p = Unpack::new(data);
    let Ok(h) = p.unpack_header() else {
        return;
    };
        for i in 0..h.qdcount {
        match p.unpack_query() {
            Ok(q) => {
                check_dname(&q.q_dname);
                if i == 0 {
                    check_chain(data, &q.q_dname);
                }
            }
            Err(_) => return,
        }
    }
    let rrs = u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount);
    for _ in 0..rrs {
        match p.unpack_rr() {
            Ok(rr) => check_rr(&rr),
            Err(_) => return,
        }
    }
});
