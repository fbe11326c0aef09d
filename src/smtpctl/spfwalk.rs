//! spfwalk.c: `smtpctl spf walk`, the addresses and networks that the SPF
//! records of the domains read on the standard input let send mail, one a
//! line, for a pf table or a smtpd table of senders (OpenSMTPD 7.8.0p1
//! spfwalk.c).
//!
//! As in C, the queries run side by side in one event loop through asr,
//! each with a `Target` that says what its answer is for. Unlike C, each
//! domain read is walked in the order RFC 7208's check_host() evaluates
//! it: the terms of a record as written, an included record in place of
//! its include, redirect= last. That order is what lets a walk stop where
//! a checker gives up, at the eleventh term that queries DNS (RFC 7208
//! 4.6.4), so an include or redirect holds its walk until its record is
//! there; a, mx and exists resolve in the background. Answers are shared
//! by all walks (C asked for each token once), and a line is printed once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use crate::dns::asr::{asr_make_fqdn, Asr, AsrQuery, AsrResult, HOST_NOT_FOUND, NO_DATA};
use crate::dns::event_asr::{event_asr_run, AsrOwner, EventAsr};
use crate::dns::res_send_async::res_query_async;
use crate::dns::unpack_dns::{
    dname_from_fqdn, print_dname, DnsRr, Rdata, Unpack, C_IN, FORMERR, NOTIMP, REFUSED, SERVFAIL,
    T_A, T_AAAA, T_MX, T_TXT,
};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::util::log::strerror;
use crate::util::to::inet_net_pton_ipv4;

/// RFC 7208 4.6.4: the terms that query DNS (include, a, mx, ptr, exists,
/// redirect) one evaluation may reach.
pub const SPF_MAX_LOOKUPS: usize = 10;
/// RFC 7208 4.6.4: the exchangers of an mx mechanism that are resolved.
pub const SPF_MAX_MX: usize = 10;
/// Queries in flight at once; the others wait their turn. C starts them
/// all, and runs out of descriptors on a long list.
const SPFWALK_MAX_QUERIES: usize = 64;
/// inet_net_pton(3)'s buffer for AF_INET6: INET6_ADDRSTRLEN + "/128".
const SPFWALK_IP6_MAX: usize = 46 + 5;

/// What a target does with the records of an answer, given the name
/// asked for.
type Dispatch = fn(&mut Spfwalk, &mut EventBase<Spfwalk>, &str, &[DnsRr], &Target);

/// struct target: what a query's answer is for.
#[derive(Clone)]
struct Target {
    dispatch: Dispatch,
    cidr4: Option<u8>,
    cidr6: Option<u8>,
    /// The walk (the line read) the query serves.
    walk: usize,
}

/// A query: its type, and the name as asked (lower case, no final dot).
type Key = (u16, String);

/// A query asked once for every walk.
enum Lookup {
    /// Running or waiting for its turn: the targets waiting for it.
    Running(Vec<Target>),
    /// The answer's records (none when the lookup failed).
    Done(Rc<Vec<DnsRr>>),
}

/// A record being walked.
struct Frame {
    /// Where it was found: what `a` and `mx` without a domain resolve.
    domain: String,
    terms: Vec<String>,
    next: usize,
}

/// One domain read: RFC 7208's evaluation of its record, as far as it
/// names addresses.
struct Walk {
    domain: String,
    /// The terms that queried DNS so far (SPF_MAX_LOOKUPS).
    lookups: usize,
    /// The record walked, under the records that include it.
    stack: Vec<Frame>,
}

/// The state of `spf walk` (C's globals).
pub struct Spfwalk {
    event_asr: EventAsr<Spfwalk>,
    walks: Vec<Walk>,
    lookups: HashMap<Key, Lookup>,
    /// Queries in flight, by event_asr_run's argument.
    queries: HashMap<u64, Key>,
    next_query: u64,
    /// Queries waiting for one in flight to end (SPFWALK_MAX_QUERIES).
    queued: VecDeque<Key>,
    /// Targets whose answer is already there, served from the loop so
    /// that a walk never runs inside itself.
    ready: VecDeque<(Key, Target)>,
    ready_ev: Option<EventId>,
    /// The lines printed (C's dict `seen` held the tokens walked).
    seen: HashSet<String>,
    out: BufWriter<io::Stdout>,
    write_error: Option<io::Error>,
    /// A lookup failed for another reason than the name's absence: the
    /// output may lack addresses.
    failed: bool,
}

impl AsrOwner for Spfwalk {
    fn event_asr(&mut self) -> &mut EventAsr<Self> {
        &mut self.event_asr
    }
}

fn warnx(args: std::fmt::Arguments) {
    eprintln!("smtpctl: {args}");
}

fn errx(args: std::fmt::Arguments) -> ! {
    warnx(args);
    std::process::exit(1)
}

/// spfwalk(): reads the domains, one a line, then walks them all in one
/// event loop. The exit status is 1 when a lookup failed (a server
/// failure or no answer, not a name that does not exist): what was
/// printed may then be short of addresses.
pub fn spfwalk() -> i32 {
    super::encrypt::droppriv();
    let mut s = Spfwalk {
        event_asr: EventAsr::new(Asr::new()),
        walks: Vec::new(),
        lookups: HashMap::new(),
        queries: HashMap::new(),
        next_query: 0,
        queued: VecDeque::new(),
        ready: VecDeque::new(),
        ready_ev: None,
        seen: HashSet::new(),
        out: BufWriter::new(io::stdout()),
        write_error: None,
        failed: false,
    };
    let mut base = EventBase::new();
    s.ready_ev = Some(base.evtimer_set(spfwalk_ready, 0));

    for line in io::stdin().lock().split(b'\n') {
        let line = match line {
            Ok(line) => line,
            Err(e) => errx(format_args!("stdin: {}", strerror(&e))),
        };
        let line = String::from_utf8_lossy(&line);
        let domain = line.trim();
        if domain.is_empty() {
            continue;
        }
        let walk = s.walks.len();
        s.walks.push(Walk {
            domain: domain.to_string(),
            lookups: 0,
            stack: Vec::new(),
        });
        let tgt = Target {
            dispatch: dispatch_txt,
            cidr4: None,
            cidr6: None,
            walk,
        };
        lookup_record(&mut s, &mut base, T_TXT, domain, tgt);
    }

    if let Err(e) = crate::sys::pledge::pledge("dns stdio", None) {
        errx(format_args!("pledge: {}", strerror(&e)));
    }
    if let Err(e) = base.event_dispatch(&mut s) {
        errx(format_args!("event_dispatch: {}", strerror(&e)));
    }
    let flushed = match s.write_error.take() {
        Some(e) => Err(e),
        None => s.out.flush(),
    };
    if let Err(e) = flushed {
        errx(format_args!("stdout: {}", strerror(&e)));
    }
    i32::from(s.failed)
}

/// lookup_record(): asks for the records of `qtype` at `name` for `tgt`.
/// False when no answer will come: the name holds macros, which only a
/// check at connection time can expand, or is no domain name.
fn lookup_record(
    s: &mut Spfwalk,
    base: &mut EventBase<Spfwalk>,
    qtype: u16,
    name: &str,
    tgt: Target,
) -> bool {
    if name.contains('%') {
        warnx(format_args!(
            "lookup_record: {} contains macros and can't be resolved",
            spfwalk_vis(name)
        ));
        return false;
    }
    let key = (qtype, spfwalk_name(name));
    // res_query_async()'s own checks, so that it cannot fail later. C
    // exits when it does.
    if key.1.is_empty()
        || asr_make_fqdn(&key.1, None)
            .and_then(|f| dname_from_fqdn(&f))
            .is_none()
    {
        warnx(format_args!("{}: invalid domain name", spfwalk_vis(name)));
        return false;
    }
    match s.lookups.get_mut(&key) {
        Some(Lookup::Running(waiting)) => waiting.push(tgt),
        Some(Lookup::Done(_)) => {
            s.ready.push_back((key, tgt));
            spfwalk_ready_add(s, base);
        }
        None => {
            s.lookups.insert(key.clone(), Lookup::Running(vec![tgt]));
            spfwalk_query(s, base, key);
        }
    }
    true
}

/// Sends the query for `key`, or queues it while SPFWALK_MAX_QUERIES are
/// in flight.
fn spfwalk_query(s: &mut Spfwalk, base: &mut EventBase<Spfwalk>, key: Key) {
    if s.queries.len() >= SPFWALK_MAX_QUERIES {
        s.queued.push_back(key);
        return;
    }
    let ctx = s.event_asr.asr.asr_use_resolver(base.now());
    match res_query_async(&key.1, C_IN, key.0, ctx) {
        Ok(q) => {
            let id = s.next_query;
            s.next_query += 1;
            s.queries.insert(id, key);
            event_asr_run(s, base, AsrQuery::Send(q), dispatch_record, id);
        }
        // lookup_record() checked the name: an answer without records,
        // from the loop.
        Err(_) => {
            let waiting = match s.lookups.insert(key.clone(), Lookup::Done(Rc::default())) {
                Some(Lookup::Running(waiting)) => waiting,
                _ => Vec::new(),
            };
            for tgt in waiting {
                s.ready.push_back((key.clone(), tgt));
            }
            spfwalk_ready_add(s, base);
        }
    }
}

/// dispatch_record(): the answer to a query, for every target waiting.
/// Best effort, as in C: a name that does not exist, or has no records
/// of the type, gives nothing. Other failures are reported.
fn dispatch_record(s: &mut Spfwalk, base: &mut EventBase<Spfwalk>, ar: AsrResult, id: u64) {
    let Some(key) = s.queries.remove(&id) else {
        return;
    };
    let mut rrs = Vec::new();
    if ar.ar_h_errno != 0 && ar.ar_h_errno != NO_DATA {
        if ar.ar_h_errno != HOST_NOT_FOUND {
            warnx(format_args!(
                "{}: {} lookup failed: {}",
                spfwalk_vis(&key.1),
                spfwalk_type(key.0),
                spfwalk_strerror(&ar)
            ));
            s.failed = true;
        }
    } else if let Some(data) = &ar.ar_data {
        let mut p = Unpack::new(data);
        if let Ok(h) = p.unpack_header() {
            if p.unpack_query().is_ok() {
                // A broken record ends the answer: what came before
                // stands.
                for _ in 0..h.ancount {
                    match p.unpack_rr() {
                        Ok(rr) => rrs.push(rr),
                        Err(_) => break,
                    }
                }
            }
        }
    }
    while s.queries.len() < SPFWALK_MAX_QUERIES {
        let Some(next) = s.queued.pop_front() else {
            break;
        };
        spfwalk_query(s, base, next);
    }
    let rrs = Rc::new(rrs);
    let waiting = match s.lookups.insert(key.clone(), Lookup::Done(Rc::clone(&rrs))) {
        Some(Lookup::Running(waiting)) => waiting,
        _ => Vec::new(),
    };
    for tgt in waiting {
        (tgt.dispatch)(s, base, &key.1, &rrs, &tgt);
    }
}

/// The ready queue's timer: targets whose answer was already there.
fn spfwalk_ready(
    s: &mut Spfwalk,
    base: &mut EventBase<Spfwalk>,
    _fd: RawFd,
    _what: EvFlags,
    _arg: u64,
) {
    while let Some((key, tgt)) = s.ready.pop_front() {
        let Some(Lookup::Done(rrs)) = s.lookups.get(&key) else {
            continue;
        };
        let rrs = Rc::clone(rrs);
        (tgt.dispatch)(s, base, &key.1, &rrs, &tgt);
    }
}

fn spfwalk_ready_add(s: &mut Spfwalk, base: &mut EventBase<Spfwalk>) {
    let Some(ev) = s.ready_ev else {
        return;
    };
    if !base.event_pending(ev) {
        if let Err(e) = base.evtimer_add(ev, Duration::ZERO) {
            errx(format_args!("evtimer_add: {}", strerror(&e)));
        }
    }
}

/// dispatch_txt(): the SPF record of `name`, walked in place of the term
/// that asked for it. A name with several SPF records has none (RFC 7208
/// 4.5 makes it a permanent error); C walked them all.
fn dispatch_txt(
    s: &mut Spfwalk,
    base: &mut EventBase<Spfwalk>,
    name: &str,
    rrs: &[DnsRr],
    tgt: &Target,
) {
    let records: Vec<String> = rrs
        .iter()
        .filter_map(|rr| match &rr.rr {
            Rdata::Txt(strings) if rr.rr_type == T_TXT => Some(parse_txt(strings)),
            _ => None,
        })
        .filter(|txt| spfwalk_is_spf(txt))
        .collect();
    match records.as_slice() {
        [] => {}
        [record] => s.walks[tgt.walk].stack.push(Frame {
            domain: name.to_string(),
            terms: spfwalk_terms(record),
            next: 0,
        }),
        more => warnx(format_args!(
            "{}: {} SPF records, none walked",
            spfwalk_vis(name),
            more.len()
        )),
    }
    spfwalk_next(s, base, tgt.walk);
}

/// Walks the terms of `walk` until one waits for an included record or
/// none is left.
fn spfwalk_next(s: &mut Spfwalk, base: &mut EventBase<Spfwalk>, walk: usize) {
    loop {
        let w = &mut s.walks[walk];
        let Some(f) = w.stack.last_mut() else {
            return;
        };
        let Some(token) = f.terms.get(f.next).cloned() else {
            w.stack.pop();
            continue;
        };
        f.next += 1;
        let domain = f.domain.clone();
        if spfwalk_term(s, base, walk, &domain, &token) {
            return;
        }
    }
}

/// What one term of `domain`'s record gives (the body of C's loop over
/// the tokens in dispatch_txt()). True when the walk now waits for the
/// record of an include or redirect.
fn spfwalk_term(
    s: &mut Spfwalk,
    base: &mut EventBase<Spfwalk>,
    walk: usize,
    domain: &str,
    token: &str,
) -> bool {
    let token = token.strip_suffix('.').unwrap_or(token);
    // As C: what fails or softfails is left out, neutral counts as pass.
    let (skip, term) = match token.as_bytes().first() {
        Some(b'-' | b'~') => (true, &token[1..]),
        Some(b'+' | b'?') => (false, &token[1..]),
        _ => (false, token),
    };
    let end = term.find([':', '/', '=']).unwrap_or(term.len());
    let (name, arg) = term.split_at(end);
    let name = name.to_ascii_lowercase();
    let sep = arg.as_bytes().first().copied();
    match (name.as_str(), sep) {
        ("ip4", Some(b':')) => {
            if !skip && inet_net_pton_ipv4(&arg[1..]).is_some() {
                spfwalk_print(s, &arg[1..]);
            }
            return false;
        }
        ("ip6", Some(b':')) => {
            if !skip && spfwalk_inet6(&arg[1..]) {
                spfwalk_print(s, &arg[1..]);
            }
            return false;
        }
        ("a" | "mx", None | Some(b':' | b'/'))
        | ("ptr", None | Some(b':'))
        | ("exists" | "include", Some(b':'))
        | ("redirect", Some(b'=')) => {}
        _ => return false,
    }

    // RFC 7208 4.6.4: a check that reaches this term fails, so nothing
    // after it can pass.
    let w = &mut s.walks[walk];
    if w.lookups == SPF_MAX_LOOKUPS {
        warnx(format_args!(
            "{}: more than {SPF_MAX_LOOKUPS} DNS lookups, stopped at {}",
            spfwalk_vis(&w.domain),
            spfwalk_vis(token)
        ));
        w.stack.clear();
        return false;
    }
    w.lookups += 1;
    if skip {
        return false;
    }

    let mut tgt = Target {
        dispatch: dispatch_txt,
        cidr4: None,
        cidr6: None,
        walk,
    };
    match name.as_str() {
        "a" | "mx" => {
            let Some((host, cidr4, cidr6)) = parse_target(arg.strip_prefix(':').unwrap_or(arg))
            else {
                return false;
            };
            let host = match (sep, host) {
                (Some(b':'), "") => return false,
                (Some(b':'), host) => host,
                _ => domain,
            };
            tgt.cidr4 = cidr4;
            tgt.cidr6 = cidr6;
            if name == "a" {
                tgt.dispatch = dispatch_a;
                lookup_record(s, base, T_A, host, tgt.clone());
                tgt.dispatch = dispatch_aaaa;
                lookup_record(s, base, T_AAAA, host, tgt);
            } else {
                tgt.dispatch = dispatch_mx;
                lookup_record(s, base, T_MX, host, tgt);
            }
            false
        }
        // As C: the addresses of the name, whatever they mean.
        "exists" => {
            tgt.dispatch = dispatch_a;
            lookup_record(s, base, T_A, &arg[1..], tgt);
            false
        }
        "include" | "redirect" => {
            // C saw each token once, loops included; here a record
            // already being walked is not walked again inside itself.
            let target = spfwalk_name(&arg[1..]);
            let w = &s.walks[walk];
            if w.stack.iter().any(|f| f.domain == target) {
                warnx(format_args!(
                    "{}: {} loops, not followed",
                    spfwalk_vis(&w.domain),
                    spfwalk_vis(token)
                ));
                return false;
            }
            lookup_record(s, base, T_TXT, &arg[1..], tgt)
        }
        // ptr: no address to list.
        _ => false,
    }
}

/// dispatch_mx(): the addresses of the exchangers of `name`, the first
/// SPF_MAX_MX by preference.
fn dispatch_mx(
    s: &mut Spfwalk,
    base: &mut EventBase<Spfwalk>,
    name: &str,
    rrs: &[DnsRr],
    tgt: &Target,
) {
    let mut mx: Vec<(u16, String)> = rrs
        .iter()
        .filter_map(|rr| match &rr.rr {
            Rdata::Mx {
                preference,
                exchange,
            } if rr.rr_type == T_MX => Some((*preference, print_dname(exchange))),
            _ => None,
        })
        .collect();
    mx.sort_by_key(|&(preference, _)| preference);
    if mx.len() > SPF_MAX_MX {
        warnx(format_args!(
            "{}: more than {SPF_MAX_MX} MX records, only the first {SPF_MAX_MX} walked",
            spfwalk_vis(name)
        ));
        mx.truncate(SPF_MAX_MX);
    }
    for (_, exchange) in mx {
        let host = exchange.strip_suffix('.').unwrap_or(&exchange);
        // RFC 7505's null MX: no exchanger.
        if host.is_empty() {
            continue;
        }
        let mut ltgt = tgt.clone();
        ltgt.dispatch = dispatch_a;
        lookup_record(s, base, T_A, host, ltgt.clone());
        ltgt.dispatch = dispatch_aaaa;
        lookup_record(s, base, T_AAAA, host, ltgt);
    }
}

/// dispatch_a(): each IPv4 address of the answer.
fn dispatch_a(
    s: &mut Spfwalk,
    _base: &mut EventBase<Spfwalk>,
    _name: &str,
    rrs: &[DnsRr],
    tgt: &Target,
) {
    for rr in rrs {
        if let Rdata::A(addr) = &rr.rr {
            print_ip4(s, addr, tgt.cidr4);
        }
    }
}

/// dispatch_aaaa(): each IPv6 address of the answer.
fn dispatch_aaaa(
    s: &mut Spfwalk,
    _base: &mut EventBase<Spfwalk>,
    _name: &str,
    rrs: &[DnsRr],
    tgt: &Target,
) {
    for rr in rrs {
        if let Rdata::Aaaa(addr) = &rr.rr {
            print_ip6(s, addr, tgt.cidr6);
        }
    }
}

/// An address as dispatch_a() prints it: with the mechanism's prefix
/// length when it has one.
fn print_ip4(s: &mut Spfwalk, addr: &Ipv4Addr, cidr: Option<u8>) {
    match cidr {
        Some(bits) => spfwalk_print(s, &format!("{addr}/{bits}")),
        None => spfwalk_print(s, &addr.to_string()),
    }
}

/// An address as dispatch_aaaa() prints it.
fn print_ip6(s: &mut Spfwalk, addr: &Ipv6Addr, cidr: Option<u8>) {
    match cidr {
        Some(bits) => spfwalk_print(s, &format!("{addr}/{bits}")),
        None => spfwalk_print(s, &addr.to_string()),
    }
}

/// A line of output, unless it was printed already.
fn spfwalk_print(s: &mut Spfwalk, line: &str) {
    if !s.seen.insert(line.to_string()) || s.write_error.is_some() {
        return;
    }
    if let Err(e) = writeln!(s.out, "{line}") {
        s.write_error = Some(e);
    }
}

/// parse_txt(): a TXT record's strings, joined without separator (RFC
/// 7208 3.3).
fn parse_txt(strings: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&strings.concat()).into_owned()
}

/// parse_target(): `domain[/cidr4][//cidr6]` (RFC 7208 5.6's
/// dual-cidr-length), the domain possibly empty; C's `domain/cidr4/cidr6`
/// is taken too. None when a prefix length is not one.
fn parse_target(spec: &str) -> Option<(&str, Option<u8>, Option<u8>)> {
    let Some((domain, lengths)) = spec.split_once('/') else {
        return Some((spec, None, None));
    };
    let (m4, m6) = match lengths.split_once('/') {
        None => (lengths, None),
        // C split at the next '/' only, so that "/24//64" gave it an
        // empty IPv6 length, and the mechanism was dropped.
        Some((m4, m6)) => (m4, Some(m6.strip_prefix('/').unwrap_or(m6))),
    };
    let bits = |s: &str, max: u8| -> Option<u8> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse::<u8>().ok().filter(|&b| b <= max)
    };
    let cidr4 = match m4 {
        "" => None,
        m4 => Some(bits(m4, 32)?),
    };
    let cidr6 = match m6 {
        None => None,
        Some(m6) => Some(bits(m6, 128)?),
    };
    Some((domain, cidr4, cidr6))
}

/// Whether a TXT record is an SPF record: "v=spf1", alone or followed by
/// a space, in any case (RFC 7208 4.5). C wanted the space.
fn spfwalk_is_spf(txt: &str) -> bool {
    let b = txt.as_bytes();
    b.len() >= 6 && b[..6].eq_ignore_ascii_case(b"v=spf1") && (b.len() == 6 || b[6] == b' ')
}

/// The terms of a record in the order a check walks them: mechanisms as
/// written, then the first redirect=, which comes into play only when no
/// mechanism matched, and so never after `all` (RFC 7208 6.1). C followed
/// every redirect.
fn spfwalk_terms(record: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut redirect = None;
    let mut all = false;
    for token in record.split(' ') {
        if token.is_empty() || token.eq_ignore_ascii_case("v=spf1") {
            continue;
        }
        let t = token.strip_suffix('.').unwrap_or(token);
        let t = t.strip_prefix(['+', '-', '~', '?']).unwrap_or(t);
        if t.eq_ignore_ascii_case("all") {
            all = true;
        }
        if t.len() >= 9 && t.as_bytes()[..9].eq_ignore_ascii_case(b"redirect=") {
            redirect.get_or_insert(token);
            continue;
        }
        terms.push(token.to_string());
    }
    if let Some(redirect) = redirect.filter(|_| !all) {
        terms.push(redirect.to_string());
    }
    terms
}

/// inet_net_pton(AF_INET6) as OpenSMTPD's openbsd-compat has it: an
/// address, then maybe a prefix length up to 128.
fn spfwalk_inet6(s: &str) -> bool {
    if s.len() >= SPFWALK_IP6_MAX {
        return false;
    }
    let (addr, bits) = match s.split_once('/') {
        None => (s, None),
        Some((addr, bits)) => (addr, Some(bits)),
    };
    let bits_ok = bits.map_or(true, |b| {
        !b.is_empty()
            && b.bytes().all(|c| c.is_ascii_digit())
            && b.parse::<u8>().is_ok_and(|b| b <= 128)
    });
    bits_ok && addr.parse::<Ipv6Addr>().is_ok()
}

/// A name as the cache and the loop check know it: lower case, without
/// its final dot.
fn spfwalk_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A name from the network, fit for a message: C's '?' for each
/// character isprint(3) refuses.
fn spfwalk_vis(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn spfwalk_type(qtype: u16) -> &'static str {
    match qtype {
        T_A => "A",
        T_AAAA => "AAAA",
        T_MX => "MX",
        T_TXT => "TXT",
        _ => "DNS",
    }
}

/// Why a lookup failed: the system's error, or the server's answer.
fn spfwalk_strerror(ar: &AsrResult) -> String {
    if ar.ar_errno != 0 {
        return strerror(&io::Error::from_raw_os_error(ar.ar_errno));
    }
    match ar.ar_rcode {
        FORMERR => "FORMERR".into(),
        SERVFAIL => "SERVFAIL".into(),
        NOTIMP => "NOTIMP".into(),
        REFUSED => "REFUSED".into(),
        rcode => format!("rcode {rcode}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_keep_their_order_and_put_redirect_last() {
        assert_eq!(
            spfwalk_terms("v=spf1 redirect=r.example  a  include:i.example ip4:192.0.2.1"),
            [
                "a",
                "include:i.example",
                "ip4:192.0.2.1",
                "redirect=r.example"
            ]
        );
    }

    #[test]
    fn redirect_after_all_is_never_reached() {
        assert_eq!(
            spfwalk_terms("v=spf1 ip4:192.0.2.1 redirect=r.example ~all"),
            ["ip4:192.0.2.1", "~all"]
        );
        assert_eq!(spfwalk_terms("V=SPF1 -ALL. Redirect=r.example"), ["-ALL."]);
    }

    #[test]
    fn only_the_first_redirect_counts() {
        assert_eq!(
            spfwalk_terms("v=spf1 redirect=a.example redirect=b.example"),
            ["redirect=a.example"]
        );
    }

    #[test]
    fn an_spf_record_starts_with_its_version_in_any_case() {
        assert!(spfwalk_is_spf("v=spf1 -all"));
        assert!(spfwalk_is_spf("V=SpF1 a"));
        assert!(spfwalk_is_spf("v=spf1"));
        assert!(!spfwalk_is_spf("v=spf10 a"));
        assert!(!spfwalk_is_spf("v=spf"));
        assert!(!spfwalk_is_spf(" v=spf1 a"));
        assert!(!spfwalk_is_spf("google-site-verification=x"));
    }

    #[test]
    fn txt_strings_are_joined_without_a_space() {
        let strings = [b"v=spf1 ip4:192.0.2.1".to_vec(), b"20 -all".to_vec()];
        assert_eq!(parse_txt(&strings), "v=spf1 ip4:192.0.2.120 -all");
        assert_eq!(parse_txt(&[]), "");
    }

    #[test]
    fn targets_take_rfc_and_c_prefix_lengths() {
        assert_eq!(parse_target("h.example"), Some(("h.example", None, None)));
        assert_eq!(
            parse_target("h.example/24"),
            Some(("h.example", Some(24), None))
        );
        assert_eq!(
            parse_target("h.example//64"),
            Some(("h.example", None, Some(64)))
        );
        assert_eq!(
            parse_target("h.example/24//64"),
            Some(("h.example", Some(24), Some(64)))
        );
        // C's form.
        assert_eq!(
            parse_target("h.example/24/64"),
            Some(("h.example", Some(24), Some(64)))
        );
        assert_eq!(parse_target("/0//128"), Some(("", Some(0), Some(128))));
        assert_eq!(parse_target(""), Some(("", None, None)));
        // A trailing slash gives no length, as in C.
        assert_eq!(parse_target("h.example/"), Some(("h.example", None, None)));
    }

    #[test]
    fn targets_with_bad_prefix_lengths_are_dropped() {
        for spec in [
            "h.example/33",
            "h.example//129",
            "h.example/24//",
            "h.example/x",
            "h.example/-1",
            "h.example/+24",
            "h.example/24//64//",
            "h.example/999999999999",
        ] {
            assert_eq!(parse_target(spec), None, "{spec}");
        }
    }

    #[test]
    fn ip6_networks_are_checked_as_inet_net_pton_does() {
        for ok in [
            "2001:db8::1",
            "2001:db8::/32",
            "::/0",
            "::ffff:192.0.2.1",
            "2001:DB8::/128",
        ] {
            assert!(spfwalk_inet6(ok), "{ok}");
        }
        for bad in [
            "2001:db8::/129",
            "2001:db8::/",
            "2001:db8:::1",
            "192.0.2.1",
            "fe80::1%eth0",
            "2001:db8::/x",
            "",
        ] {
            assert!(!spfwalk_inet6(bad), "{bad}");
        }
        assert!(!spfwalk_inet6(&format!("{}::1", "0:".repeat(20))));
    }

    #[test]
    fn ip4_networks_are_checked_as_inet_net_pton_does() {
        for ok in [
            "192.0.2.1",
            "192.0.2.0/24",
            "10/8",
            "0x0a000000/8",
            "192.0.2.1/32",
        ] {
            assert!(inet_net_pton_ipv4(ok).is_some(), "{ok}");
        }
        for bad in [
            "192.0.2.256",
            "192.0.2.1/33",
            "192.0.2.1/",
            "1.2.3.4.5",
            "a.b.c.d",
            "",
        ] {
            assert!(inet_net_pton_ipv4(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_are_compared_without_case_or_final_dot() {
        assert_eq!(spfwalk_name("Example.COM."), "example.com");
        assert_eq!(spfwalk_name("example.com"), "example.com");
    }

    #[test]
    fn unprintable_characters_are_shown_as_question_marks() {
        assert_eq!(spfwalk_vis("a\tb%{i}\u{e9}"), "a?b%{i}?");
    }
}
