//! Byte-vector tests for the DNS codec: every message is written out by
//! hand, offsets in the comments.

use super::*;

/// "example.com." in wire form, the name most messages here use.
const EXAMPLE_COM: &[u8] = b"\x07example\x03com\x00";

fn dname(fqdn: &str) -> Dname {
    dname_from_fqdn(fqdn).expect("test name is valid")
}

/// A wire name made of labels of these lengths, all 'a'.
fn long_name(lens: &[usize]) -> Vec<u8> {
    let mut v = Vec::new();
    for &n in lens {
        v.push(n as u8);
        v.extend(std::iter::repeat(b'a').take(n));
    }
    v.push(0);
    v
}

/// Twelve bytes of header that the RR and name tests put first, so that
/// compression pointers have somewhere to point.
const HEADER: [u8; 12] = [
    0x12, 0x34, // id
    0x81, 0x80, // QR RD RA, NOERROR
    0x00, 0x01, // qdcount
    0x00, 0x01, // ancount
    0x00, 0x00, // nscount
    0x00, 0x00, // arcount
];

/// One RR at offset 0 of `msg`, which must hold nothing else.
fn rr_alone(msg: &[u8]) -> DnsRr {
    let mut p = Unpack::new(msg);
    let rr = p.unpack_rr().expect("rr parses");
    assert_eq!(p.remaining(), 0, "rr used the whole message");
    rr
}

fn rr_error(msg: &[u8]) -> &'static str {
    let mut p = Unpack::new(msg);
    let e = p.unpack_rr().expect_err("rr is refused");
    assert_eq!(p.err, Some(e));
    e
}

fn round_trip(rr: &DnsRr) {
    let mut p = Pack::new();
    p.pack_rr(rr);
    assert_eq!(p.err, None);
    assert_eq!(&rr_alone(&p.buf), rr);
}

// --- header and question

#[test]
fn header_fields_are_read_in_network_order() {
    let mut p = Unpack::new(&[
        0xbe, 0xef, // id
        0x85, 0x83, // QR, AA, RD, RA, NXDOMAIN
        0x00, 0x01, // qdcount
        0x00, 0x02, // ancount
        0x01, 0x03, // nscount 259
        0xff, 0xff, // arcount
    ]);
    let h = p.unpack_header().unwrap();
    assert_eq!(
        h,
        DnsHeader {
            id: 0xbeef,
            flags: 0x8583,
            qdcount: 1,
            ancount: 2,
            nscount: 259,
            arcount: 65535,
        }
    );
    assert_eq!(h.flags & RCODE_MASK, NXDOMAIN);
    assert_ne!(h.flags & QR_MASK, 0);
    assert_ne!(h.flags & AA_MASK, 0);
    assert_eq!(h.flags & TC_MASK, 0);
    assert_eq!(h.flags & OPCODE_MASK, 0);
    assert_eq!(p.offset, HFIXEDSZ);
    assert_eq!(p.remaining(), 0);
}

#[test]
fn short_header_is_too_short_and_consumes_nothing() {
    let mut p = Unpack::new(&HEADER[..11]);
    assert_eq!(p.unpack_header(), Err("too short"));
    assert_eq!(p.offset, 0);
}

#[test]
fn query_is_read() {
    let msg = [
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // name
        0x00, 0x0f, // MX
        0x00, 0x01, // IN
        0xaa, // a byte of whatever follows
    ];
    let mut p = Unpack::new(&msg);
    let q = p.unpack_query().unwrap();
    assert_eq!(q.q_dname, dname("example.com."));
    assert_eq!((q.q_type, q.q_class), (T_MX, C_IN));
    assert_eq!(p.remaining(), 1);
}

#[test]
fn query_without_class_is_too_short() {
    let mut p = Unpack::new(b"\x00\x00\x0f\x00");
    assert_eq!(p.unpack_query(), Err("too short"));
}

// --- each kind of RDATA

#[test]
fn rr_a_in() {
    let rr = rr_alone(&[
        0, // root
        0x00, 0x01, // A
        0x00, 0x01, // IN
        0x00, 0x00, 0x0e, 0x10, // ttl 3600
        0x00, 0x04, // rdlength
        192, 0, 2, 1,
    ]);
    assert_eq!(rr.rr_dname, Dname::root());
    assert_eq!((rr.rr_type, rr.rr_class, rr.rr_ttl), (T_A, C_IN, 3600));
    assert_eq!(rr.rr, Rdata::A(Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn rr_a_of_another_class_is_other() {
    let rr = rr_alone(&[
        0, 0x00, 0x01, // root, A
        0x00, 0x03, // CH
        0, 0, 0, 0, 0x00, 0x02, // ttl 0, rdlength 2: no address check
        0xab, 0xcd,
    ]);
    assert_eq!(rr.rr_class, 3);
    assert_eq!(rr.rr, Rdata::Other(vec![0xab, 0xcd]));
}

#[test]
fn rr_aaaa_in() {
    let rr = rr_alone(&[
        0, 0x00, 0x1c, 0x00, 0x01, // root, AAAA, IN
        0, 0, 0, 60, 0x00, 0x10, // ttl 60, rdlength 16
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    assert_eq!(rr.rr, Rdata::Aaaa("2001:db8::1".parse().unwrap()));
}

#[test]
fn rr_cname_ns_ptr() {
    for (t, make) in [
        (T_CNAME, Rdata::Cname as fn(Dname) -> Rdata),
        (T_NS, Rdata::Ns),
        (T_PTR, Rdata::Ptr),
    ] {
        let mut msg = vec![
            1, b'x', 0, // owner "x."
            0, t as u8, 0, 1, // type, IN
            0, 0, 0, 1, 0, 13, // ttl 1, rdlength 13
        ];
        msg.extend_from_slice(EXAMPLE_COM);
        let rr = rr_alone(&msg);
        assert_eq!(rr.rr_dname, dname("x."));
        assert_eq!(rr.rr, make(dname("example.com.")), "type {t}");
    }
}

#[test]
fn rr_mx() {
    let mut msg = vec![
        0, 0x00, 0x0f, 0x00, 0x01, // root, MX, IN
        0, 0, 0, 0, 0x00, 15, // ttl, rdlength 2 + 13
        0x00, 0x0a, // preference 10
    ];
    msg.extend_from_slice(EXAMPLE_COM);
    assert_eq!(
        rr_alone(&msg).rr,
        Rdata::Mx {
            preference: 10,
            exchange: dname("example.com."),
        }
    );
}

#[test]
fn rr_soa() {
    let mut msg = vec![
        0, 0x00, 0x06, 0x00, 0x01, // root, SOA, IN
        0, 0, 0, 0, 0x00, 40, // ttl, rdlength 13 + 7 + 20
    ];
    msg.extend_from_slice(EXAMPLE_COM); // mname
    msg.extend_from_slice(b"\x05admin\x00"); // rname "admin."
    msg.extend_from_slice(&[
        0x78, 0x5a, 0x12, 0x34, // serial
        0, 0, 0x1c, 0x20, // refresh 7200
        0, 0, 0x0e, 0x10, // retry 3600
        0, 0x12, 0x75, 0x00, // expire 1209600
        0, 0, 0x01, 0x2c, // minimum 300
    ]);
    assert_eq!(
        rr_alone(&msg).rr,
        Rdata::Soa {
            mname: dname("example.com."),
            rname: dname("admin."),
            serial: 0x785a1234,
            refresh: 7200,
            retry: 3600,
            expire: 1209600,
            minimum: 300,
        }
    );
}

#[test]
fn rr_txt_strings() {
    let rr = rr_alone(&[
        0, 0x00, 0x10, 0x00, 0x01, // root, TXT, IN
        0, 0, 0, 0, 0x00, 10, // ttl, rdlength
        3, b'v', b'=', b's', // "v=s"
        0,    // ""
        4, b'p', b'f', b'1', 0xff, // "pf1\xff"
    ]);
    assert_eq!(
        rr.rr,
        Rdata::Txt(vec![b"v=s".to_vec(), vec![], b"pf1\xff".to_vec()])
    );
}

#[test]
fn rr_txt_empty_rdata_has_no_strings() {
    let rr = rr_alone(&[0, 0x00, 0x10, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00]);
    assert_eq!(rr.rr, Rdata::Txt(vec![]));
}

#[test]
fn rr_opt_is_other() {
    let rr = rr_alone(&[
        0, 0x00, 0x29, // root, OPT
        0x04, 0xd0, // payload 1232
        0x00, 0x00, 0x80, 0x00, // DO
        0x00, 0x04, // rdlength
        0x00, 0x0a, 0x00, 0x00, // an empty COOKIE option, kept raw
    ]);
    assert_eq!((rr.rr_type, rr.rr_class, rr.rr_ttl), (T_OPT, 1232, 0x8000));
    assert_eq!(rr.rr, Rdata::Other(vec![0x00, 0x0a, 0x00, 0x00]));
}

// --- RDLENGTH

#[test]
fn mx_whose_rdlength_is_one_more_than_its_content_is_bad_dlen() {
    let mut msg = vec![
        0, 0x00, 0x0f, 0x00, 0x01, // root, MX, IN
        0, 0, 0, 0, 0x00, 16, // ttl, rdlength 16, content is 15
        0x00, 0x0a,
    ];
    msg.extend_from_slice(EXAMPLE_COM);
    msg.push(0); // the byte rdlength claims
    assert_eq!(rr_error(&msg), "bad dlen");
}

#[test]
fn mx_whose_exchange_runs_past_rdlength_is_bad_dlen() {
    let mut msg = vec![
        0, 0x00, 0x0f, 0x00, 0x01, // root, MX, IN
        0, 0, 0, 0, 0x00, 14, // rdlength 14, content is 15
        0x00, 0x0a,
    ];
    msg.extend_from_slice(EXAMPLE_COM);
    assert_eq!(rr_error(&msg), "bad dlen");
}

#[test]
fn a_with_rdlength_3_is_refused() {
    // More bytes follow: the 4-byte address is read, then found longer
    // than rdlength.
    let followed = [
        0, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x03, // root A IN, rdlength 3
        192, 0, 2, // the three bytes
        0, // the start of a next RR
    ];
    assert_eq!(rr_error(&followed), "bad dlen");
    // At the end of the message the address itself is short.
    assert_eq!(rr_error(&followed[..14]), "too short");
}

#[test]
fn a_with_rdlength_5_is_bad_dlen() {
    let msg = [
        0, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x05, // root A IN, rdlength 5
        192, 0, 2, 1, 7,
    ];
    assert_eq!(rr_error(&msg), "bad dlen");
}

#[test]
fn rdlength_past_the_end_is_too_short() {
    let msg = [
        0, 0x00, 0x63, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x05, // type 99, rdlength 5
        1, 2, 3, 4,
    ];
    assert_eq!(rr_error(&msg), "too short");
}

#[test]
fn txt_string_overrunning_rdlength_is_refused() {
    // The string claims 5 bytes; rdlength leaves it 4.
    let msg = [
        0, 0x00, 0x10, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x05, // root TXT IN, rdlength 5
        5, b'a', b'b', b'c', b'd', // string
        b'e', // outside the RDATA
    ];
    assert_eq!(rr_error(&msg), "bad dlen");
}

#[test]
fn txt_rdlength_beyond_its_strings_is_refused() {
    // "abc" is 4 bytes, rdlength says 6: the 2 bytes left do not make a
    // string (the first claims 9 bytes).
    let msg = [
        0, 0x00, 0x10, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x06, // root TXT IN, rdlength 6
        3, b'a', b'b', b'c', // string
        9, 0, // left over
    ];
    assert_eq!(rr_error(&msg), "bad dlen");
}

// --- names and compression

#[test]
fn forward_pointer_is_refused() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&[0xc0, 14]); // 12: pointer to 14
    msg.extend_from_slice(EXAMPLE_COM); // 14
    assert_eq!(dname_expand(&msg, 12), Err("bad compression pointer"));
    // Read from 14 the name itself is fine.
    assert_eq!(dname_expand(&msg, 14), Ok((dname("example.com."), 27)));
}

#[test]
fn pointer_to_itself_is_refused() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&[0xc0, 12]); // 12: pointer to 12
    assert_eq!(dname_expand(&msg, 12), Err("bad compression pointer"));
}

#[test]
fn pointer_into_its_own_labels_is_refused() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&[1, b'a', 0xc0, 12]); // 12: "a", then back to 12
    assert_eq!(dname_expand(&msg, 12), Err("bad compression pointer"));
}

#[test]
fn two_pointer_loop_is_refused() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&[
        0xc0, 14, // 12: to 14
        0xc0, 12, // 14: to 12
    ]);
    // From 14 the first jump (to 12) is backward and allowed; the second
    // (to 14) is not below 12.
    assert_eq!(dname_expand(&msg, 14), Err("bad compression pointer"));
    assert_eq!(dname_expand(&msg, 12), Err("bad compression pointer"));
}

#[test]
fn loop_entered_from_a_later_pointer_is_refused() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&[
        0xc0, 14, // 12: to 14
        0xc0, 12, // 14: to 12
        0xc0, 14, // 16: into the loop
    ]);
    // 16 -> 14 and 14 -> 12 both go down; 12 -> 14 does not go below 12.
    // Were only the first offset the bound, this would spin forever.
    assert_eq!(dname_expand(&msg, 16), Err("bad compression pointer"));
}

#[test]
fn backward_pointer_chain_is_followed() {
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(EXAMPLE_COM); // 12..25
    msg.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 12]); // 25..31: www -> 12
    msg.extend_from_slice(&[4, b'm', b'a', b'i', b'l', 0xc0, 25]); // 31..38: mail -> 25
    msg.push(0xee); // 38: whatever comes next
    assert_eq!(
        dname_expand(&msg, 31),
        Ok((dname("mail.www.example.com."), 38))
    );
    assert_eq!(dname_expand(&msg, 25), Ok((dname("www.example.com."), 31)));
    // The same through the cursor.
    let mut p = Unpack::new(&msg);
    p.offset = 31;
    let q = p.unpack_query();
    assert_eq!(q, Err("too short")); // type and class are missing
    assert_eq!(p.offset, 38); // but the name was read
}

#[test]
fn pointer_cut_by_the_end_of_message_is_truncated() {
    let mut msg = HEADER.to_vec();
    msg.push(0xc0); // 12: half a pointer
    assert_eq!(dname_expand(&msg, 12), Err("truncated domain name"));
}

#[test]
fn names_cut_by_the_end_of_message_are_truncated() {
    // A label longer than what is left.
    assert_eq!(dname_expand(b"\x05abc", 0), Err("truncated domain name"));
    // No root label: unpack_dns.c would read one byte past the buffer.
    assert_eq!(dname_expand(b"\x03abc", 0), Err("truncated domain name"));
    // Nothing at all, and an offset beyond the message.
    assert_eq!(dname_expand(b"", 0), Err("truncated domain name"));
    assert_eq!(dname_expand(b"\x00", 5), Err("truncated domain name"));
}

#[test]
fn root_name_is_one_byte() {
    assert_eq!(dname_expand(b"\x00\xff", 0), Ok((Dname::root(), 1)));
}

#[test]
fn name_of_255_bytes_is_accepted_and_256_refused() {
    let n255 = long_name(&[63, 63, 63, 61]);
    assert_eq!(n255.len(), 255);
    assert_eq!(dname_expand(&n255, 0), Ok((Dname(n255.clone()), 255)));
    let n256 = long_name(&[63, 63, 63, 62]);
    assert_eq!(n256.len(), 256);
    assert_eq!(dname_expand(&n256, 0), Err("domain name too long"));
}

#[test]
fn name_over_255_bytes_through_pointers_is_refused() {
    // 12: two 63-byte labels, then the root (129 bytes);
    // 141: two 63-byte labels (128 bytes), then a pointer to 12: 257 bytes.
    let mut msg = HEADER.to_vec();
    msg.extend_from_slice(&long_name(&[63, 63]));
    let second = msg.len();
    let mut tail = long_name(&[63, 63]);
    tail.pop();
    msg.extend_from_slice(&tail);
    msg.extend_from_slice(&[0xc0, 12]);
    assert_eq!(dname_expand(&msg, 12).map(|(d, _)| d.0.len()), Ok(129));
    assert_eq!(second, 141);
    assert_eq!(dname_expand(&msg, second), Err("domain name too long"));
}

#[test]
fn label_of_64_bytes_is_refused() {
    // A length byte of 64 is 0b01_000000: the reserved 0x40 type.
    let name = long_name(&[64]);
    assert_eq!(dname_expand(&name, 0), Err("reserved label type"));
    let name = long_name(&[63]);
    assert!(dname_expand(&name, 0).is_ok());
}

#[test]
fn reserved_label_types_are_refused() {
    assert_eq!(dname_expand(b"\x41a\x00", 0), Err("reserved label type"));
    assert_eq!(dname_expand(b"\x80\x00", 0), Err("reserved label type"));
    // After a good label too.
    assert_eq!(
        dname_expand(b"\x01a\xbf\x00", 0),
        Err("reserved label type")
    );
}

#[test]
fn bad_name_in_rr_owner_sets_err() {
    let mut p = Unpack::new(b"\x80\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00");
    assert_eq!(p.unpack_rr(), Err("reserved label type"));
    assert_eq!(p.err, Some("reserved label type"));
}

// --- the sticky error

#[test]
fn first_error_sticks() {
    let msg = [
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, // header, one question
        0xc0, 0x20, // 12: a forward pointer
        0x00, 0x01, 0x00, 0x01,
    ];
    let mut p = Unpack::new(&msg);
    assert!(p.unpack_header().is_ok());
    assert_eq!(p.unpack_query(), Err("bad compression pointer"));
    // A later failure of another kind does not replace it...
    assert_eq!(p.unpack_rr(), Err("bad compression pointer"));
    // ...and even a read that would work fails now.
    p.offset = 0;
    assert_eq!(p.unpack_header(), Err("bad compression pointer"));
    assert_eq!(p.offset, 0);
    assert_eq!(p.err, Some("bad compression pointer"));
}

#[test]
fn bogus_offset_does_not_panic() {
    let mut p = Unpack::new(&HEADER);
    p.offset = usize::MAX;
    assert_eq!(p.remaining(), 0);
    assert_eq!(p.unpack_header(), Err("too short"));
    let mut p = Unpack::new(&HEADER);
    p.offset = 100;
    assert_eq!(p.unpack_rr(), Err("truncated domain name"));
}

// --- the realistic answer

#[test]
fn mx_answer_for_example_com() {
    let msg: [u8; 69] = [
        // 0: header
        0xbe, 0xef, // id
        0x81, 0x80, // QR RD RA, NOERROR
        0x00, 0x01, 0x00, 0x02, // qdcount 1, ancount 2
        0x00, 0x00, 0x00, 0x00, // nscount 0, arcount 0
        // 12: question "example.com." MX IN
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
        0x00, 0x0f, 0x00, 0x01, //
        // 29: answer "example.com." (-> 12) MX IN 3600 10 mx1.example.com.
        0xc0, 0x0c, 0x00, 0x0f, 0x00, 0x01, //
        0x00, 0x00, 0x0e, 0x10, // ttl 3600
        0x00, 0x08, // rdlength
        0x00, 0x0a, 3, b'm', b'x', b'1', 0xc0, 0x0c, //
        // 49: answer "example.com." (-> 12) MX IN 3600 20 mx2.example.com.
        0xc0, 0x0c, 0x00, 0x0f, 0x00, 0x01, //
        0x00, 0x00, 0x0e, 0x10, //
        0x00, 0x08, //
        0x00, 0x14, 3, b'm', b'x', b'2', 0xc0, 0x0c,
    ];
    let mut p = Unpack::new(&msg);
    let h = p.unpack_header().unwrap();
    assert_eq!((h.id, h.qdcount, h.ancount), (0xbeef, 1, 2));
    assert_eq!(h.flags & RCODE_MASK, NOERROR);
    let q = p.unpack_query().unwrap();
    assert_eq!(q.q_dname, dname("example.com."));
    assert_eq!(p.offset, 29);
    let mut mxs = Vec::new();
    for _ in 0..h.ancount {
        let rr = p.unpack_rr().unwrap();
        assert!(rr.rr_dname.eq_ignore_case(&q.q_dname));
        assert_eq!((rr.rr_type, rr.rr_class, rr.rr_ttl), (T_MX, C_IN, 3600));
        let Rdata::Mx {
            preference,
            exchange,
        } = rr.rr
        else {
            panic!("not an MX: {rr:?}");
        };
        mxs.push((preference, print_dname(&exchange)));
    }
    assert_eq!(
        mxs,
        [
            (10, "mx1.example.com.".to_string()),
            (20, "mx2.example.com.".to_string())
        ]
    );
    assert_eq!(p.remaining(), 0);
    assert_eq!(p.err, None);
}

// --- print_dname, dname_from_fqdn, Dname

#[test]
fn print_dname_plain_and_root() {
    assert_eq!(print_dname(&Dname::root()), ".");
    assert_eq!(
        print_dname(&dname("Mx-1.example.com.")),
        "Mx-1.example.com."
    );
}

#[test]
fn print_dname_escapes_what_would_be_ambiguous() {
    let d = Dname(b"\x03a.b\x03c\\d\x04e f\x00\x04\x00\x7f\xffA\x00".to_vec());
    assert_eq!(
        print_dname(&d),
        "a\\.b.c\\\\d.e\\032f\\000.\\000\\127\\255A."
    );
}

#[test]
fn print_dname_of_malformed_names_does_not_panic() {
    assert_eq!(print_dname(&Dname(vec![])), ".");
    assert_eq!(print_dname(&Dname(vec![5, b'a'])), "a.");
    assert_eq!(print_dname(&Dname(vec![1, b'a'])), "a.");
}

#[test]
fn dname_from_fqdn_accepts_fqdns() {
    assert_eq!(dname_from_fqdn("."), Some(Dname::root()));
    assert_eq!(
        dname_from_fqdn("example.com."),
        Some(Dname(EXAMPLE_COM.to_vec()))
    );
    // No escape processing: the backslash is a byte of the label.
    assert_eq!(
        dname_from_fqdn("a\\b."),
        Some(Dname(b"\x03a\\b\x00".to_vec()))
    );
    let l63 = "a".repeat(63);
    assert_eq!(
        dname_from_fqdn(&format!("{l63}.")).map(|d| d.0.len()),
        Some(65)
    );
}

#[test]
fn dname_from_fqdn_refuses_the_malformed() {
    for bad in ["", "example.com", "..", ".com.", "a..b.", "com..", "a. "] {
        assert_eq!(dname_from_fqdn(bad), None, "{bad:?}");
    }
    assert_eq!(dname_from_fqdn(&format!("{}.", "a".repeat(64))), None);
}

#[test]
fn dname_from_fqdn_length_limit_is_255_wire_bytes() {
    let l = "a".repeat(63);
    // 254 characters of text make 255 bytes of wire.
    let ok = format!("{l}.{l}.{l}.{}.", "a".repeat(61));
    assert_eq!(ok.len(), 254);
    assert_eq!(dname_from_fqdn(&ok).map(|d| d.0.len()), Some(255));
    let long = format!("{l}.{l}.{l}.{}.", "a".repeat(62));
    assert_eq!(dname_from_fqdn(&long), None);
}

#[test]
fn print_then_from_fqdn_gives_the_name_back() {
    for fqdn in [".", "a.", "mx_1.Example-2.COM."] {
        assert_eq!(print_dname(&dname(fqdn)), fqdn);
    }
}

#[test]
fn dname_labels_and_case() {
    let d = dname("Mail.Example.COM.");
    let labels: Vec<&[u8]> = d.labels().collect();
    assert_eq!(labels, [&b"Mail"[..], b"Example", b"COM"]);
    assert_eq!(Dname::root().labels().count(), 0);
    assert!(d.eq_ignore_case(&dname("mail.example.com.")));
    assert!(!d.eq_ignore_case(&dname("mail.example.org.")));
    assert!(!d.eq_ignore_case(&dname("mail.example.com.au.")));
    assert!(!d.eq_ignore_case(&dname("example.com.")));
    assert_ne!(d, dname("mail.example.com."));
    // Folding must not make 'a' (97) of a length byte equal 'A' (65).
    assert!(!Dname(vec![65, 0]).eq_ignore_case(&Dname(vec![97, 0])));
}

// --- pack

#[test]
fn query_with_edns0_is_packed_exactly() {
    let mut p = Pack::new();
    p.pack_header(&DnsHeader {
        id: 0xbeef,
        flags: RD_MASK,
        qdcount: 1,
        arcount: 1,
        ..DnsHeader::default()
    });
    p.pack_query(T_MX, C_IN, &dname("example.com."));
    p.pack_edns0(1232, true);
    assert_eq!(p.err, None);
    let mut want = vec![
        0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, // header
    ];
    want.extend_from_slice(EXAMPLE_COM);
    want.extend_from_slice(&[0x00, 0x0f, 0x00, 0x01]); // MX IN
    want.extend_from_slice(&[
        0x00, // root
        0x00, 0x29, // OPT
        0x04, 0xd0, // payload 1232
        0x00, 0x00, 0x80, 0x00, // TTL: rcode 0, version 0, DO
        0x00, 0x00, // no options
    ]);
    assert_eq!(p.buf, want);

    // And it reads back.
    let mut u = Unpack::new(&p.buf);
    let h = u.unpack_header().unwrap();
    assert_eq!(
        (h.id, h.flags, h.qdcount, h.arcount),
        (0xbeef, RD_MASK, 1, 1)
    );
    let q = u.unpack_query().unwrap();
    assert_eq!((q.q_type, q.q_class), (T_MX, C_IN));
    let opt = u.unpack_rr().unwrap();
    assert_eq!(
        opt,
        DnsRr {
            rr_dname: Dname::root(),
            rr_type: T_OPT,
            rr_class: 1232,
            rr_ttl: 0x8000,
            rr: Rdata::Other(vec![]),
        }
    );
    assert_eq!(u.remaining(), 0);
}

#[test]
fn edns0_without_do() {
    let mut p = Pack::new();
    p.pack_edns0(4096, false);
    assert_eq!(p.buf, [0, 0x00, 0x29, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn every_rdata_kind_round_trips() {
    let rr = |rr_type, rr_class, rr| DnsRr {
        rr_dname: dname("host.example.com."),
        rr_type,
        rr_class,
        rr_ttl: 0xdeadbeef,
        rr,
    };
    for r in [
        rr(T_CNAME, C_IN, Rdata::Cname(dname("alias.example."))),
        rr(
            T_MX,
            C_IN,
            Rdata::Mx {
                preference: 65535,
                exchange: Dname::root(),
            },
        ),
        rr(T_NS, 3, Rdata::Ns(dname("ns.example."))),
        rr(T_PTR, C_IN, Rdata::Ptr(dname("1.2.0.192.in-addr.arpa."))),
        rr(
            T_SOA,
            C_IN,
            Rdata::Soa {
                mname: dname("ns.example."),
                rname: dname("hostmaster.example."),
                serial: 1,
                refresh: 2,
                retry: 3,
                expire: 4,
                minimum: 0xffffffff,
            },
        ),
        rr(T_A, C_IN, Rdata::A(Ipv4Addr::new(198, 51, 100, 7))),
        rr(T_AAAA, C_IN, Rdata::Aaaa("2001:db8::25".parse().unwrap())),
        rr(
            T_TXT,
            C_IN,
            Rdata::Txt(vec![vec![b'x'; 255], vec![], b"v=spf1 -all".to_vec()]),
        ),
        rr(T_TXT, C_IN, Rdata::Txt(vec![])),
        rr(T_A, 3, Rdata::Other(vec![1, 2, 3, 4])),
        rr(T_OPT, 512, Rdata::Other(vec![])),
        rr(99, C_IN, Rdata::Other(vec![0; 300])),
    ] {
        round_trip(&r);
    }
}

#[test]
fn pack_rr_writes_uncompressed_wire_form() {
    let mut p = Pack::new();
    p.pack_rr(&DnsRr {
        rr_dname: dname("a."),
        rr_type: T_MX,
        rr_class: C_IN,
        rr_ttl: 300,
        rr: Rdata::Mx {
            preference: 5,
            exchange: dname("mx.a."),
        },
    });
    assert_eq!(
        p.buf,
        [
            1, b'a', 0, // owner
            0, 15, 0, 1, // MX IN
            0, 0, 1, 44, // ttl 300
            0, 8, // rdlength
            0, 5, 2, b'm', b'x', 1, b'a', 0,
        ]
    );
}

#[test]
fn pack_rr_refuses_what_cannot_be_read_back() {
    let base = DnsRr {
        rr_dname: Dname::root(),
        rr_type: T_TXT,
        rr_class: C_IN,
        rr_ttl: 0,
        rr: Rdata::Txt(vec![vec![0; 256]]),
    };
    let refused = |rr: &DnsRr| {
        let mut p = Pack::new();
        p.pack_rr(rr);
        assert!(p.buf.is_empty(), "nothing written for {rr:?}");
        p.err.expect("an error")
    };
    assert_eq!(refused(&base), "txt string too long");
    let big = DnsRr {
        rr_type: 99,
        rr: Rdata::Other(vec![0; 65536]),
        ..base.clone()
    };
    assert_eq!(refused(&big), "rdata too long");
    let many = DnsRr {
        rr: Rdata::Txt(vec![vec![0; 255]; 257]),
        ..base.clone()
    };
    assert_eq!(refused(&many), "rdata too long");
    let a_as_mx = DnsRr {
        rr_type: T_MX,
        rr: Rdata::A(Ipv4Addr::LOCALHOST),
        ..base.clone()
    };
    assert_eq!(refused(&a_as_mx), "rdata does not match type");
    let a_in_ch = DnsRr {
        rr_type: T_A,
        rr_class: 3,
        rr: Rdata::A(Ipv4Addr::LOCALHOST),
        ..base.clone()
    };
    assert_eq!(refused(&a_in_ch), "rdata does not match type");
    let bad_owner = DnsRr {
        rr_dname: Dname(vec![1, b'a']),
        rr: Rdata::Txt(vec![]),
        ..base.clone()
    };
    assert_eq!(refused(&bad_owner), "bad domain name");
    let bad_cname = DnsRr {
        rr_type: T_CNAME,
        rr: Rdata::Cname(Dname(vec![0, 0])),
        ..base.clone()
    };
    assert_eq!(refused(&bad_cname), "bad domain name");
}

#[test]
fn pack_error_sticks() {
    let mut p = Pack::new();
    p.pack_query(T_A, C_IN, &Dname(vec![64, 0]));
    assert_eq!(p.err, Some("bad domain name"));
    p.pack_header(&DnsHeader::default());
    p.pack_rr(&DnsRr {
        rr_dname: Dname::root(),
        rr_type: T_TXT,
        rr_class: C_IN,
        rr_ttl: 0,
        rr: Rdata::Txt(vec![vec![0; 300]]),
    });
    assert_eq!(p.err, Some("bad domain name"));
    assert!(p.buf.is_empty());
}

#[test]
fn pack_query_packs_type_then_class() {
    let mut p = Pack::default();
    p.pack_query(T_AAAA, 3, &Dname::root());
    assert_eq!(p.buf, [0, 0x00, 0x1c, 0x00, 0x03]);
}

#[test]
fn fuzz_seeds_are_whole_valid_messages() {
    let seeds: [(&str, &[u8]); 5] = [
        (
            "mx-answer",
            include_bytes!("../../../fuzz/seeds/unpack_dns/mx-answer.bin"),
        ),
        (
            "query-edns0",
            include_bytes!("../../../fuzz/seeds/unpack_dns/query-edns0.bin"),
        ),
        (
            "nxdomain-soa",
            include_bytes!("../../../fuzz/seeds/unpack_dns/nxdomain-soa.bin"),
        ),
        (
            "mixed",
            include_bytes!("../../../fuzz/seeds/unpack_dns/mixed.bin"),
        ),
        (
            "ns-chain",
            include_bytes!("../../../fuzz/seeds/unpack_dns/ns-chain.bin"),
        ),
    ];
    for (name, msg) in seeds {
        let mut p = Unpack::new(msg);
        let h = p.unpack_header().unwrap();
        for _ in 0..h.qdcount {
            p.unpack_query().unwrap();
        }
        for _ in 0..h.ancount + h.nscount + h.arcount {
            let rr = p.unpack_rr().unwrap();
            assert!(
                !matches!(rr.rr, Rdata::Other(_)) || rr.rr_type == T_OPT,
                "{name}: {rr:?}"
            );
        }
        assert_eq!(p.remaining(), 0, "{name}");
    }
}
