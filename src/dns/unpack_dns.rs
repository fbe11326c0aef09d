//! unpack_dns.c: reading and writing DNS messages (OpenSMTPD unpack_dns.c 1.3, and libasr's asr_utils.c pack/unpack).
//!
//! [`Unpack`] walks a received message (header, questions, resource
//! records) the way OpenSMTPD's dns.c reads MX answers; [`Pack`] builds
//! queries the way libasr does (header, question, EDNS0 OPT record) and,
//! for test servers and the fuzz round trip, any resource record. Names
//! are kept in uncompressed wire form ([`Dname`]); [`print_dname`] turns
//! them into text and [`dname_from_fqdn`] turns text into them.
//!
//! Where this is stricter than the C, on purpose, because the input comes
//! from the network:
//! - a name is at most 255 bytes in wire form (RFC 1035 2.3.4), where the
//!   C allows MAXDNAME (1025);
//! - labels of the reserved types 0x40 and 0x80 are refused (libasr
//!   checks label lengths; unpack_dns.c does not);
//! - dname_expand never reads past the message (unpack_dns.c's may read
//!   one byte past it when a label ends the buffer; libasr's does not);
//! - TXT RDATA is split into its character-strings, which must exactly
//!   fill RDLENGTH (the C keeps TXT as opaque bytes);
//! - print_dname escapes bytes that would make the text ambiguous.

use std::net::{Ipv4Addr, Ipv6Addr};

// RR types and class (arpa/nameser.h).
pub const T_A: u16 = 1;
pub const T_NS: u16 = 2;
pub const T_CNAME: u16 = 5;
pub const T_SOA: u16 = 6;
pub const T_PTR: u16 = 12;
pub const T_MX: u16 = 15;
pub const T_TXT: u16 = 16;
pub const T_AAAA: u16 = 28;
pub const T_OPT: u16 = 41;
pub const C_IN: u16 = 1;

// Response codes (RFC 1035 4.1.1).
pub const NOERROR: u16 = 0;
pub const FORMERR: u16 = 1;
pub const SERVFAIL: u16 = 2;
pub const NXDOMAIN: u16 = 3;
pub const NOTIMP: u16 = 4;
pub const REFUSED: u16 = 5;

// Header flags (asr_private.h).
pub const QR_MASK: u16 = 0x1 << 15;
pub const OPCODE_MASK: u16 = 0xf << 11;
pub const AA_MASK: u16 = 0x1 << 10;
pub const TC_MASK: u16 = 0x1 << 9;
pub const RD_MASK: u16 = 0x1 << 8;
pub const RA_MASK: u16 = 0x1 << 7;
pub const Z_MASK: u16 = 0x1 << 6;
pub const AD_MASK: u16 = 0x1 << 5;
pub const CD_MASK: u16 = 0x1 << 4;
pub const RCODE_MASK: u16 = 0xf;

pub const HFIXEDSZ: usize = 12;
pub const PACKETSZ: usize = 512;
/// The largest message DNS can carry (TCP's length prefix is 16 bits).
/// libasr's own MAXPACKETSZ is its 4096-byte receive buffer.
pub const MAXPACKETSZ: usize = 65535;
/// Longest domain name in wire form (RFC 1035 2.3.4), labels 1..=63 bytes.
pub const MAXDNAME_WIRE: usize = 255;
pub const MAXLABEL: usize = 63;

/// DNS_MESSAGEEXTFLAG_DO: "DNSSEC OK", the top bit of the flags half of
/// the OPT record's TTL (RFC 3225 3).
const DNS_MESSAGEEXTFLAG_DO: u16 = 0x8000;

// Errors, as the C spells them where it has them.
const ERR_TOO_SHORT: &str = "too short";
const ERR_BAD_DLEN: &str = "bad dlen";
const ERR_BAD_DNAME: &str = "bad domain name";
const ERR_DNAME_TOO_LONG: &str = "domain name too long";
const ERR_DNAME_TRUNCATED: &str = "truncated domain name";
const ERR_BAD_POINTER: &str = "bad compression pointer";
const ERR_LABEL_TYPE: &str = "reserved label type";
const ERR_RDATA_TOO_LONG: &str = "rdata too long";
const ERR_TXT_TOO_LONG: &str = "txt string too long";
const ERR_RDATA_TYPE: &str = "rdata does not match type";

/// A domain name in uncompressed wire form: length-prefixed labels, ending with the zero-length root label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dname(pub Vec<u8>);

impl Dname {
    pub fn root() -> Dname {
        Dname(vec![0])
    }

    /// DNS names compare without regard to ASCII case (RFC 4343).
    pub fn eq_ignore_case(&self, other: &Dname) -> bool {
        // Byte by byte, folding label bytes but never a length byte (65
        // is not 97), so that even a malformed name compares sensibly.
        if self.0.len() != other.0.len() {
            return false;
        }
        let mut next_len = 0;
        for (i, (&x, &y)) in self.0.iter().zip(&other.0).enumerate() {
            if i == next_len {
                if x != y {
                    return false;
                }
                next_len = i + 1 + usize::from(x);
            } else if !x.eq_ignore_ascii_case(&y) {
                return false;
            }
        }
        true
    }

    /// The labels, without the root label.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (&n, tail) = rest.split_first()?;
            if n == 0 {
                return None;
            }
            // The field is public, so a name may be malformed: clamp
            // rather than panic.
            let (label, next) = tail.split_at(usize::from(n).min(tail.len()));
            rest = next;
            Some(label)
        })
    }
}

/// The wire form is well made: labels of 1..=63 bytes, the root label
/// last, 255 bytes at most. Pack checks this because Dname's field is
/// public.
fn dname_is_valid(d: &Dname) -> bool {
    let mut rest: &[u8] = &d.0;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n);
        if n == 0 {
            return tail.is_empty() && d.0.len() <= MAXDNAME_WIRE;
        }
        if n > MAXLABEL || n > tail.len() {
            return false;
        }
        rest = &tail[n..];
    }
    false
}

/// A resolved header: every field in host order. The C keeps `id` in
/// wire order; we convert it like the others, in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsHeader {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub q_dname: Dname,
    pub q_type: u16,
    pub q_class: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdata {
    Cname(Dname),
    Mx {
        preference: u16,
        exchange: Dname,
    },
    Ns(Dname),
    Ptr(Dname),
    Soa {
        mname: Dname,
        rname: Dname,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// Only for class IN, as the C: other classes fall to Other.
    A(Ipv4Addr),
    /// Only for class IN, as the C: other classes fall to Other.
    Aaaa(Ipv6Addr),
    /// TXT: the character-strings, each 0..=255 bytes, which must exactly fill RDLENGTH (C treats TXT as opaque; we check it).
    Txt(Vec<Vec<u8>>),
    /// Raw RDATA of any other type (OPT included).
    Other(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRr {
    pub rr_dname: Dname,
    pub rr_type: u16,
    pub rr_class: u16,
    pub rr_ttl: u32,
    pub rr: Rdata,
}

/// struct unpack: a cursor over a whole message; the first error sticks (p.err), as in C, and every later call fails.
pub struct Unpack<'a> {
    buf: &'a [u8],
    pub offset: usize,
    pub err: Option<&'static str>,
}

impl<'a> Unpack<'a> {
    /// unpack_init
    pub fn new(buf: &'a [u8]) -> Self {
        Unpack {
            buf,
            offset: 0,
            err: None,
        }
    }

    pub fn unpack_header(&mut self) -> Result<DnsHeader, &'static str> {
        // All twelve bytes or nothing, as the C's single unpack_data.
        let b: [u8; HFIXEDSZ] = self.unpack_array()?;
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Ok(DnsHeader {
            id: word(0),
            flags: word(2),
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }

    pub fn unpack_query(&mut self) -> Result<DnsQuery, &'static str> {
        let q_dname = self.unpack_dname()?;
        let q_type = self.unpack_u16()?;
        let q_class = self.unpack_u16()?;
        Ok(DnsQuery {
            q_dname,
            q_type,
            q_class,
        })
    }

    /// Reads one RR; names inside RDATA (CNAME, MX, NS, PTR, SOA) may be compressed; checks that what was read
    /// used exactly RDLENGTH bytes ("bad dlen") and that RDLENGTH fits ("too short").
    pub fn unpack_rr(&mut self) -> Result<DnsRr, &'static str> {
        let rr_dname = self.unpack_dname()?;
        let rr_type = self.unpack_u16()?;
        let rr_class = self.unpack_u16()?;
        let rr_ttl = self.unpack_u32()?;
        let rdlen = usize::from(self.unpack_u16()?);
        if self.remaining() < rdlen {
            return Err(self.fail(ERR_TOO_SHORT));
        }
        let save_offset = self.offset;
        let rr = self.unpack_rdata(rr_type, rr_class, rdlen)?;
        // Names in RDATA are read against the whole message (they may
        // point anywhere before them), so only now do we know whether the
        // advertised RDLENGTH was really what the RDATA used.
        if self.offset - save_offset != rdlen {
            return Err(self.fail(ERR_BAD_DLEN));
        }
        Ok(DnsRr {
            rr_dname,
            rr_type,
            rr_class,
            rr_ttl,
            rr,
        })
    }

    /// unpack_rr's switch on the type.
    fn unpack_rdata(
        &mut self,
        rr_type: u16,
        rr_class: u16,
        rdlen: usize,
    ) -> Result<Rdata, &'static str> {
        let rdata = match (rr_type, rr_class) {
            (T_CNAME, _) => Rdata::Cname(self.unpack_dname()?),
            (T_MX, _) => {
                let preference = self.unpack_u16()?;
                let exchange = self.unpack_dname()?;
                Rdata::Mx {
                    preference,
                    exchange,
                }
            }
            (T_NS, _) => Rdata::Ns(self.unpack_dname()?),
            (T_PTR, _) => Rdata::Ptr(self.unpack_dname()?),
            (T_SOA, _) => self.unpack_soa()?,
            (T_A, C_IN) => Rdata::A(Ipv4Addr::from(self.unpack_array::<4>()?)),
            (T_AAAA, C_IN) => Rdata::Aaaa(Ipv6Addr::from(self.unpack_array::<16>()?)),
            (T_TXT, _) => {
                let data = self.unpack_data(rdlen)?;
                match unpack_txt(data) {
                    Ok(strings) => Rdata::Txt(strings),
                    Err(e) => return Err(self.fail(e)),
                }
            }
            _ => Rdata::Other(self.unpack_data(rdlen)?.to_vec()),
        };
        Ok(rdata)
    }

    fn unpack_soa(&mut self) -> Result<Rdata, &'static str> {
        Ok(Rdata::Soa {
            mname: self.unpack_dname()?,
            rname: self.unpack_dname()?,
            serial: self.unpack_u32()?,
            refresh: self.unpack_u32()?,
            retry: self.unpack_u32()?,
            expire: self.unpack_u32()?,
            minimum: self.unpack_u32()?,
        })
    }

    /// What is left of the message after the cursor.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.offset)
    }

    /// Records the first error only, and hands back the sticky one.
    fn fail(&mut self, e: &'static str) -> &'static str {
        self.err.get_or_insert(e)
    }

    fn unpack_data(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if let Some(e) = self.err {
            return Err(e);
        }
        // `offset` is public: get() keeps a bogus one from panicking.
        let end = self.offset.checked_add(len);
        match end.and_then(|end| self.buf.get(self.offset..end)) {
            Some(data) => {
                self.offset += len;
                Ok(data)
            }
            None => Err(self.fail(ERR_TOO_SHORT)),
        }
    }

    fn unpack_array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.unpack_data(N)?);
        Ok(a)
    }

    fn unpack_u16(&mut self) -> Result<u16, &'static str> {
        self.unpack_array().map(u16::from_be_bytes)
    }

    fn unpack_u32(&mut self) -> Result<u32, &'static str> {
        self.unpack_array().map(u32::from_be_bytes)
    }

    fn unpack_dname(&mut self) -> Result<Dname, &'static str> {
        if let Some(e) = self.err {
            return Err(e);
        }
        match dname_expand(self.buf, self.offset) {
            Ok((dname, next)) => {
                self.offset = next;
                Ok(dname)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// TXT RDATA (RFC 1035 3.3.14): one length byte, then that many bytes, as
/// many times as fit exactly.
fn unpack_txt(mut rdata: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut strings = Vec::new();
    while let Some((&n, rest)) = rdata.split_first() {
        let n = usize::from(n);
        if n > rest.len() {
            return Err(ERR_BAD_DLEN);
        }
        strings.push(rest[..n].to_vec());
        rdata = &rest[n..];
    }
    Ok(strings)
}

/// dname_expand(): reads the possibly compressed name at `offset` of the whole message `data`; returns the name and
/// the offset just past it in the original (uncompressed) position. Errors: truncated, a pointer that does not point
/// strictly before the start of the labels being read (this is what forbids pointer loops, as the C does), reserved label
/// types 0x40/0x80, a name over 255 bytes.
pub fn dname_expand(data: &[u8], offset: usize) -> Result<(Dname, usize), &'static str> {
    let mut name = Vec::new();
    let mut pos = offset;
    // Start of the run of labels being read: every pointer must go below
    // it, so each jump lands strictly lower and the walk ends.
    let mut start = offset;
    // Just past the first pointer: where the name ends in the message.
    let mut end = None;
    loop {
        let n = *data.get(pos).ok_or(ERR_DNAME_TRUNCATED)?;
        match n & 0xc0 {
            0xc0 => {
                let low = *data.get(pos + 1).ok_or(ERR_DNAME_TRUNCATED)?;
                let ptr = usize::from(u16::from_be_bytes([n & 0x3f, low]));
                if ptr >= start {
                    return Err(ERR_BAD_POINTER);
                }
                end.get_or_insert(pos + 2);
                pos = ptr;
                start = ptr;
            }
            // RFC 1035 4.1.4 reserves 10 and 01 "for future use"; RFC 6891
            // retired the one extended type that was defined.
            0x40 | 0x80 => return Err(ERR_LABEL_TYPE),
            _ if n == 0 => {
                name.push(0);
                return Ok((Dname(name), end.unwrap_or(pos + 1)));
            }
            _ => {
                let len = usize::from(n);
                let label = data
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(ERR_DNAME_TRUNCATED)?;
                // Counting the root label still to come.
                if name.len() + 1 + len + 1 > MAXDNAME_WIRE {
                    return Err(ERR_DNAME_TOO_LONG);
                }
                name.push(n);
                name.extend_from_slice(label);
                pos += 1 + len;
            }
        }
    }
}

/// print_dname(): presentation form with the trailing dot ("mx.example.com.", root is "."); bytes that are not
/// printable ASCII, and '.' and '\\' inside a label, are escaped as in RFC 1035 master files (\DDD and \. \\), so the
/// text is never ambiguous.
///
/// OpenSMTPD's print_dname copies label bytes raw, so the one label "a.b"
/// prints like two labels, and control bytes reach the logs. Here space
/// counts as unprintable too (\032), so a name is always one word.
pub fn print_dname(d: &Dname) -> String {
    let mut s = String::with_capacity(d.0.len());
    for label in d.labels() {
        for &c in label {
            print_dname_byte(&mut s, c);
        }
        s.push('.');
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

fn print_dname_byte(s: &mut String, c: u8) {
    match c {
        b'.' | b'\\' => {
            s.push('\\');
            s.push(char::from(c));
        }
        b'!'..=b'~' => s.push(char::from(c)),
        _ => {
            s.push('\\');
            for digit in [c / 100, c / 10 % 10, c % 10] {
                s.push(char::from(b'0' + digit));
            }
        }
    }
}

/// _asr_dname_from_fqdn(): "a.example." (must end with '.', "." is the root) -> wire form; None for an empty label,
/// a label over 63 bytes, a name over 255 bytes, or a missing final dot. No escape processing (asr does none).
///
/// The C takes "" as the root; here "" lacks its final dot like any other
/// relative name.
pub fn dname_from_fqdn(fqdn: &str) -> Option<Dname> {
    if fqdn == "." {
        return Some(Dname::root());
    }
    let body = fqdn.strip_suffix('.')?;
    let mut wire = Vec::with_capacity(fqdn.len() + 1);
    for label in body.split('.') {
        if label.is_empty() || label.len() > MAXLABEL {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    (wire.len() <= MAXDNAME_WIRE).then_some(Dname(wire))
}

/// struct asr_pack: builds a message in a Vec, uncompressed. The first error sticks.
pub struct Pack {
    pub buf: Vec<u8>,
    pub err: Option<&'static str>,
}

impl Default for Pack {
    fn default() -> Self {
        Pack::new()
    }
}

impl Pack {
    pub fn new() -> Self {
        Pack {
            buf: Vec::with_capacity(PACKETSZ),
            err: None,
        }
    }

    /// _asr_pack_header
    pub fn pack_header(&mut self, h: &DnsHeader) {
        for v in [h.id, h.flags, h.qdcount, h.ancount, h.nscount, h.arcount] {
            self.pack_u16(v);
        }
    }

    /// _asr_pack_query: the question, in the C's argument order.
    pub fn pack_query(&mut self, q_type: u16, q_class: u16, dname: &Dname) {
        self.pack_dname(dname);
        self.pack_u16(q_type);
        self.pack_u16(q_class);
    }

    /// An OPT pseudo-RR (RFC 6891): root owner, TYPE 41, CLASS = the UDP payload size, TTL 0 but the DO bit when asked, no options.
    pub fn pack_edns0(&mut self, payload: u16, dnssec_do: bool) {
        self.pack_dname(&Dname::root());
        self.pack_u16(T_OPT);
        self.pack_u16(payload);
        // The TTL: extended RCODE and version 0, then the flags.
        self.pack_u16(0);
        self.pack_u16(if dnssec_do { DNS_MESSAGEEXTFLAG_DO } else { 0 });
        self.pack_u16(0);
    }

    /// Any RR, uncompressed (servers in tests and the fuzz round trip use it). Errors if RDATA would exceed 65535 bytes
    /// or a TXT string exceeds 255 bytes.
    ///
    /// Also refused: a malformed name, and a typed Rdata that does not
    /// match rr_type (A and AAAA also need class IN), since unpack_rr
    /// could not read it back as written. Other goes with any type, which
    /// is how a test server sends a malformed record.
    pub fn pack_rr(&mut self, rr: &DnsRr) {
        if !rdata_matches_type(rr) {
            return self.fail(ERR_RDATA_TYPE);
        }
        let rdata = match pack_rdata(&rr.rr) {
            Ok(rdata) => rdata,
            Err(e) => return self.fail(e),
        };
        let Ok(rdlen) = u16::try_from(rdata.len()) else {
            return self.fail(ERR_RDATA_TOO_LONG);
        };
        self.pack_dname(&rr.rr_dname);
        self.pack_u16(rr.rr_type);
        self.pack_u16(rr.rr_class);
        self.pack_u32(rr.rr_ttl);
        self.pack_u16(rdlen);
        self.pack_data(&rdata);
    }

    fn fail(&mut self, e: &'static str) {
        self.err.get_or_insert(e);
    }

    fn pack_data(&mut self, data: &[u8]) {
        if self.err.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    fn pack_u16(&mut self, v: u16) {
        self.pack_data(&v.to_be_bytes());
    }

    fn pack_u32(&mut self, v: u32) {
        self.pack_data(&v.to_be_bytes());
    }

    /// No compression, as the C ("would be nice to have here").
    fn pack_dname(&mut self, d: &Dname) {
        if dname_is_valid(d) {
            self.pack_data(&d.0);
        } else {
            self.fail(ERR_BAD_DNAME);
        }
    }
}

/// Whether unpack_rr would read `rr.rr` back for this type and class.
fn rdata_matches_type(rr: &DnsRr) -> bool {
    let want = match rr.rr {
        Rdata::Cname(_) => T_CNAME,
        Rdata::Mx { .. } => T_MX,
        Rdata::Ns(_) => T_NS,
        Rdata::Ptr(_) => T_PTR,
        Rdata::Soa { .. } => T_SOA,
        Rdata::A(_) => return rr.rr_type == T_A && rr.rr_class == C_IN,
        Rdata::Aaaa(_) => return rr.rr_type == T_AAAA && rr.rr_class == C_IN,
        Rdata::Txt(_) => T_TXT,
        Rdata::Other(_) => return true,
    };
    rr.rr_type == want
}

/// The RDATA alone, so that RDLENGTH can go before it.
fn pack_rdata(rdata: &Rdata) -> Result<Vec<u8>, &'static str> {
    let mut p = Pack {
        buf: Vec::new(),
        err: None,
    };
    match rdata {
        Rdata::Cname(d) | Rdata::Ns(d) | Rdata::Ptr(d) => p.pack_dname(d),
        Rdata::Mx {
            preference,
            exchange,
        } => {
            p.pack_u16(*preference);
            p.pack_dname(exchange);
        }
        Rdata::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => {
            p.pack_dname(mname);
            p.pack_dname(rname);
            for v in [serial, refresh, retry, expire, minimum] {
                p.pack_u32(*v);
            }
        }
        Rdata::A(a) => p.pack_data(&a.octets()),
        Rdata::Aaaa(a) => p.pack_data(&a.octets()),
        Rdata::Txt(strings) => {
            for s in strings {
                let Ok(n) = u8::try_from(s.len()) else {
                    return Err(ERR_TXT_TOO_LONG);
                };
                p.pack_data(&[n]);
                p.pack_data(s);
            }
        }
        Rdata::Other(data) => p.pack_data(data),
    }
    match p.err {
        Some(e) => Err(e),
        None => Ok(p.buf),
    }
}

#[cfg(test)]
mod tests;
