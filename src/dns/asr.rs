//! asr.c: the resolver's configuration, which every query shares, and the
//! small helpers of asr_utils.c (libasr as OpenSMTPD-portable 7.8 bundles
//! it).
//!
//! A resolver reads resolv.conf(5) as asr does: `nameserver` (five at
//! most), `domain`, `search` (ten domains at most, the last line wins),
//! `lookup` (OpenBSD's order of `bind` and `file`), `family`, and
//! `options` `tcp`, `edns0`, `ndots:N`, `trust-ad`. Three things are
//! added, each documented in smtpd(8):
//! - `options timeout:N` and `attempts:N`, as glibc's resolver reads them
//!   on Linux, where resolv.conf files carry them;
//! - `nameserver [ADDRESS]:PORT`, the bracketed form of OpenBSD's
//!   resolv.conf, to reach a server on another port;
//! - the `ASR_CONFIG` environment variable, naming another file to read
//!   instead of /etc/resolv.conf (ignored in set-id programs).
//!
//! The file is checked for changes every 15 seconds, as asr does; a query
//! keeps the configuration it started with.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bitflags::bitflags;

use super::unpack_dns::{Dname, DnsRr, Rdata, Unpack, T_CNAME};

pub const ASR_MAXNS: usize = 5;
pub const ASR_MAXDB: usize = 3;
pub const ASR_MAXDOM: usize = 10;

/// What a resolver without a resolv.conf does: the hosts file only.
const DEFAULT_CONF: &str = "lookup file\n";
/// The lookup order when resolv.conf has no `lookup` line.
const DEFAULT_LOOKUP: &str = "lookup bind file";
/// How often the configuration file is checked for changes.
const RELOAD_DELAY: Duration = Duration::from_secs(15);
/// The largest configuration file read, as asr's buffer.
const CONF_MAX: usize = 4095;

pub const PATH_RESCONF: &str = "/etc/resolv.conf";
pub const PATH_HOSTS: &str = "/etc/hosts";

/// The UDP payload size offered with `options edns0`. asr offers 65535,
/// which invites fragmented answers; 1232 bytes fit any IPv6 path without
/// fragmentation (the 2020 DNS flag day's value), and larger answers come
/// over TCP.
pub const EDNS0_PAYLOAD: u16 = 1232;

/// CNAME records followed, across answers, before a lookup gives up.
pub const MAX_CNAME_CHAIN: usize = 16;

/// h_errno values (netdb.h), which results carry as C's do.
pub const NETDB_INTERNAL: i32 = -1;
pub const NETDB_SUCCESS: i32 = 0;
pub const HOST_NOT_FOUND: i32 = 1;
pub const TRY_AGAIN: i32 = 2;
pub const NO_RECOVERY: i32 = 3;
pub const NO_DATA: i32 = 4;

bitflags! {
    /// The resolver options of resolv.h that asr honours.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ResOptions: u32 {
        const RES_USEVC = 0x0000_0008;
        const RES_RECURSE = 0x0000_0040;
        const RES_DEFNAMES = 0x0000_0080;
        const RES_DNSRCH = 0x0000_0200;
        const RES_NOALIASES = 0x0000_1000;
        const RES_USE_EDNS0 = 0x0000_2000;
        const RES_TRUSTAD = 0x0000_4000;
    }
}

/// A lookup database (`lookup` in resolv.conf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsrDb {
    /// The hosts file (asr's 'f').
    File,
    /// The name servers (asr's 'b', for bind).
    Dns,
}

/// struct asr_ctx: one resolver configuration, shared by the queries
/// started under it.
#[derive(Clone, Debug)]
pub struct AsrCtx {
    pub ac_options: ResOptions,
    pub ac_ndots: usize,
    pub ac_domain: Option<String>,
    /// Search domains, each a fully qualified name with its final dot.
    pub ac_dom: Vec<String>,
    pub ac_db: Vec<AsrDb>,
    /// Address families in the order getaddrinfo asks for them.
    pub ac_family: Vec<i32>,
    pub ac_ns: Vec<SocketAddr>,
    /// Seconds to wait for the first answer of the first server.
    pub ac_nstimeout: u32,
    /// Rounds over the name servers.
    pub ac_nsretries: u32,
    /// The hosts file: /etc/hosts, another in tests.
    pub ac_hosts: PathBuf,
}

impl AsrCtx {
    /// asr_ctx_create(): OpenSMTPD-portable's defaults (IPv6 before IPv4,
    /// 5 s, 4 rounds).
    pub fn asr_ctx_create() -> AsrCtx {
        AsrCtx {
            ac_options: ResOptions::RES_RECURSE | ResOptions::RES_DEFNAMES | ResOptions::RES_DNSRCH,
            ac_ndots: 1,
            ac_domain: None,
            ac_dom: Vec::new(),
            ac_db: Vec::new(),
            ac_family: vec![libc::AF_INET6, libc::AF_INET],
            ac_ns: Vec::new(),
            ac_nstimeout: 5,
            ac_nsretries: 4,
            ac_hosts: PathBuf::from(PATH_HOSTS),
        }
    }

    /// asr_resolver_from_string(): a configuration from resolv.conf text,
    /// with the defaults filled in.
    pub fn from_string(s: &str) -> AsrCtx {
        let mut ac = AsrCtx::asr_ctx_create();
        ac.asr_ctx_from_string(s);
        ac
    }

    /// asr_ctx_from_string(): parses `s`, then fills in what it left out
    /// as asr does: the lookup order, a name server on 127.0.0.1, the
    /// domain from the host name, and search domains from the domain.
    pub fn asr_ctx_from_string(&mut self, s: &str) {
        self.asr_ctx_parse(s);
        if self.ac_db.is_empty() {
            self.asr_ctx_parse(DEFAULT_LOOKUP);
        }
        if self.ac_ns.is_empty() {
            self.asr_ctx_parse("nameserver 127.0.0.1");
        }
        if self.ac_domain.is_none() {
            // A host name without a dot lives in the root domain
            // (resolv.conf(5)).
            let host = crate::sys::unistd::gethostname().unwrap_or_default();
            self.ac_domain = Some(host.split_once('.').map_or("", |(_, d)| d).to_string());
        }
        if self.ac_dom.is_empty() {
            self.search_from_domain();
        }
        // Name servers all on this host are trusted to validate: their
        // AD bit is kept.
        if self.ac_ns.iter().all(|ns| ns.ip().is_loopback()) {
            self.ac_options |= ResOptions::RES_TRUSTAD;
        }
    }

    /// With no `search` line, the domain and its parents that still hold
    /// a dot are searched ("a.b.c" gives "a.b.c." and "b.c.").
    fn search_from_domain(&mut self) {
        let Some(mut d) = self.ac_domain.clone() else {
            return;
        };
        loop {
            self.asr_ctx_add_searchdomain(&d);
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest.to_string(),
                _ => return,
            }
        }
    }

    /// asr_ctx_from_file(): an error when the file cannot be read or is
    /// too long, and the caller keeps what it had.
    pub fn asr_ctx_from_file(&mut self, path: &Path) -> std::io::Result<()> {
        let text = std::fs::read(path)?;
        if text.len() > CONF_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "resolver configuration too long",
            ));
        }
        self.asr_ctx_from_string(&String::from_utf8_lossy(&text));
        Ok(())
    }

    /// asr_ctx_parse(): one line at a time; comments start at '#' or ';'.
    pub fn asr_ctx_parse(&mut self, s: &str) {
        for line in s.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let tok: Vec<&str> = line
                .split([' ', '\t'])
                .filter(|t| !t.is_empty())
                .take(10)
                .collect();
            if !tok.is_empty() {
                self.pass0(&tok);
            }
        }
    }

    /// pass0(): one split line. Malformed lines are ignored, as asr and
    /// every other resolver ignore them.
    fn pass0(&mut self, tok: &[&str]) {
        match tok[0] {
            "nameserver" if tok.len() == 2 && self.ac_ns.len() < ASR_MAXNS => {
                if let Some(sa) = asr_parse_nameserver(tok[1]) {
                    self.ac_ns.push(sa);
                }
            }
            "domain" if tok.len() == 2 && self.ac_domain.is_none() => {
                self.ac_domain = Some(tok[1].to_string());
            }
            "lookup" => self.pass0_lookup(&tok[1..]),
            "search" => {
                // The last search line wins.
                self.ac_dom.clear();
                for d in &tok[1..] {
                    self.asr_ctx_add_searchdomain(d);
                }
            }
            "family" => self.pass0_family(&tok[1..]),
            "options" => {
                for o in &tok[1..] {
                    self.pass0_option(o);
                }
            }
            _ => {}
        }
    }

    fn pass0_lookup(&mut self, dbs: &[&str]) {
        // Each database at most once, or the line is ignored.
        if dbs
            .iter()
            .enumerate()
            .any(|(i, d)| dbs[i + 1..].contains(d))
        {
            return;
        }
        self.ac_db.clear();
        for d in dbs {
            if self.ac_db.len() == ASR_MAXDB {
                break;
            }
            match *d {
                "bind" => self.ac_db.push(AsrDb::Dns),
                "file" => self.ac_db.push(AsrDb::File),
                // "yp" is silently deprecated, as in asr.
                _ => {}
            }
        }
    }

    fn pass0_family(&mut self, fams: &[&str]) {
        if fams.is_empty() || fams.len() > 2 || fams.iter().any(|f| *f != "inet4" && *f != "inet6")
        {
            return;
        }
        self.ac_family = fams
            .iter()
            .map(|f| {
                if *f == "inet4" {
                    libc::AF_INET
                } else {
                    libc::AF_INET6
                }
            })
            .collect();
    }

    fn pass0_option(&mut self, o: &str) {
        let num = |prefix: &str, min: u32, max: u32| {
            o.strip_prefix(prefix)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| (min..=max).contains(v))
        };
        match o {
            "tcp" => self.ac_options |= ResOptions::RES_USEVC,
            "edns0" => self.ac_options |= ResOptions::RES_USE_EDNS0,
            "trust-ad" => self.ac_options |= ResOptions::RES_TRUSTAD,
            _ => {
                if let Some(n) = num("ndots:", 1, 16) {
                    self.ac_ndots = n as usize;
                } else if let Some(n) = num("timeout:", 1, 30) {
                    // glibc's bounds for both.
                    self.ac_nstimeout = n;
                } else if let Some(n) = num("attempts:", 1, 5) {
                    self.ac_nsretries = n;
                }
            }
        }
    }

    /// asr_ctx_add_searchdomain(): the domain as a fully qualified name.
    fn asr_ctx_add_searchdomain(&mut self, domain: &str) {
        if self.ac_dom.len() == ASR_MAXDOM {
            return;
        }
        if let Some(fqdn) = asr_make_fqdn(domain, None) {
            self.ac_dom.push(fqdn);
        }
    }

    /// asr_ctx_envopts(): RES_OPTIONS and LOCALDOMAIN from the
    /// environment (resolv.conf(5)), unless the program is set-id.
    pub fn asr_ctx_envopts(&mut self) {
        if crate::sys::unistd::issetugid() {
            self.ac_options |= ResOptions::RES_NOALIASES;
            return;
        }
        if let Ok(e) = std::env::var("RES_OPTIONS") {
            self.asr_ctx_parse(&format!("options {e}\n"));
        }
        if let Ok(e) = std::env::var("LOCALDOMAIN") {
            self.asr_ctx_parse(&format!("search {e}\n"));
        }
    }
}

/// struct asr: a resolver, the configuration it holds now, and the state
/// of its reload checks. A process has one; each query takes a reference
/// to the configuration of the moment.
pub struct Asr {
    a_path: PathBuf,
    a_mtime: Option<SystemTime>,
    a_rtime: Option<Instant>,
    a_ctx: Rc<AsrCtx>,
}

impl Asr {
    /// _asr_resolver(): reads /etc/resolv.conf, or the file ASR_CONFIG
    /// names when the program is not set-id.
    pub fn new() -> Asr {
        let env = (!crate::sys::unistd::issetugid())
            .then(|| std::env::var_os("ASR_CONFIG"))
            .flatten();
        let path = env.map_or_else(|| PathBuf::from(PATH_RESCONF), PathBuf::from);
        Asr::from_file(&path)
    }

    /// A resolver on the configuration file `path`.
    pub fn from_file(path: &Path) -> Asr {
        let mut asr = Asr {
            a_path: path.to_path_buf(),
            a_mtime: None,
            a_rtime: None,
            a_ctx: Rc::new(AsrCtx::asr_ctx_create()),
        };
        asr.asr_check_reload(Instant::now());
        if asr.a_mtime.is_none() {
            // No file: the hosts file only.
            let mut ac = AsrCtx::from_string(DEFAULT_CONF);
            ac.asr_ctx_envopts();
            asr.a_ctx = Rc::new(ac);
        }
        asr
    }

    /// A resolver on a configuration given as text (tests, and
    /// asr_resolver_from_string's users); never reloaded.
    pub fn from_ctx(ac: AsrCtx) -> Asr {
        Asr {
            a_path: PathBuf::new(),
            a_mtime: None,
            a_rtime: Some(Instant::now()),
            a_ctx: Rc::new(ac),
        }
    }

    /// _asr_use_resolver(): the configuration for a new query, reloaded
    /// first when the file changed.
    pub fn asr_use_resolver(&mut self, now: Instant) -> Rc<AsrCtx> {
        if !self.a_path.as_os_str().is_empty() {
            self.asr_check_reload(now);
        }
        Rc::clone(&self.a_ctx)
    }

    /// asr_check_reload(): at most every RELOAD_DELAY, re-reads the file
    /// if its modification time changed. A file that cannot be read
    /// leaves the configuration as it was.
    fn asr_check_reload(&mut self, now: Instant) {
        if self
            .a_rtime
            .is_some_and(|t| now.saturating_duration_since(t) < RELOAD_DELAY)
        {
            return;
        }
        self.a_rtime = Some(now);
        let Ok(mtime) = std::fs::metadata(&self.a_path).and_then(|m| m.modified()) else {
            return;
        };
        if self.a_mtime == Some(mtime) {
            return;
        }
        self.a_mtime = Some(mtime);
        let mut ac = AsrCtx::asr_ctx_create();
        if ac.asr_ctx_from_file(&self.a_path).is_err() {
            return;
        }
        ac.asr_ctx_envopts();
        self.a_ctx = Rc::new(ac);
    }
}

impl Default for Asr {
    fn default() -> Self {
        Asr::new()
    }
}

/// _asr_make_fqdn(): `name` completed with `domain` (itself fully
/// qualified; the root when None) unless it already ends with a dot.
/// None when the domain is not fully qualified or the result is too long.
pub fn asr_make_fqdn(name: &str, domain: Option<&str>) -> Option<String> {
    let domain = domain.unwrap_or(".");
    if !domain.ends_with('.') {
        return None;
    }
    let fqdn = if name.is_empty() {
        domain.to_string()
    } else if name.ends_with('.') {
        name.to_string()
    } else {
        let d = domain.strip_prefix('.').unwrap_or(domain);
        format!("{name}.{d}")
    };
    (fqdn.len() < super::unpack_dns::MAXDNAME_WIRE).then_some(fqdn)
}

/// asr_parse_nameserver(): an address, on port 53, or `[address]:port`.
pub fn asr_parse_nameserver(s: &str) -> Option<SocketAddr> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (host, tail) = rest.split_once(']')?;
            let port = match tail {
                "" => 53,
                _ => tail
                    .strip_prefix(':')?
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)?,
            };
            (host, port)
        }
        None => (s, 53),
    };
    let mut sa = asr_sockaddr_from_str(libc::AF_UNSPEC, host)?;
    sa.set_port(port);
    Some(sa)
}

/// _asr_sockaddr_from_str(): a numeric address of `family` (AF_UNSPEC:
/// either), IPv6 with an optional `%scope` (interface name or number).
pub fn asr_sockaddr_from_str(family: i32, s: &str) -> Option<SocketAddr> {
    if family != libc::AF_INET6 {
        if let Ok(a) = s.parse::<std::net::Ipv4Addr>() {
            return Some(SocketAddr::new(IpAddr::V4(a), 0));
        }
        if family == libc::AF_INET {
            return None;
        }
    }
    let (addr, scope) = match s.split_once('%') {
        Some((a, sc)) => (a, Some(sc)),
        None => (s, None),
    };
    let a: Ipv6Addr = addr.parse().ok()?;
    let scope_id = match scope {
        None => 0,
        Some(sc) => scope_from_str(&a, sc)?,
    };
    Some(SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope_id)))
}

/// An IPv6 zone: an interface name for link-local addresses, else (or
/// failing that) a number.
fn scope_from_str(a: &Ipv6Addr, sc: &str) -> Option<u32> {
    let seg = a.segments()[0];
    let linklocal = seg & 0xffc0 == 0xfe80 || seg & 0xff0f == 0xff02 || seg & 0xff0f == 0xff01;
    if linklocal {
        if let Some(i) = crate::sys::net::if_nametoindex(sc) {
            return Some(i);
        }
    }
    sc.parse().ok()
}

/// _asr_addr_as_fqdn(): the reverse-lookup name of an address.
pub fn asr_addr_as_fqdn(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(73);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// hnok_lenient(): whether a name given to getaddrinfo may be looked up:
/// letters, digits, '-', '_' and '.', not starting with '.' or '-', no
/// empty label inside.
pub fn hnok_lenient(dn: &str) -> bool {
    let b = dn.as_bytes();
    if matches!(b.first(), Some(b'.' | b'-')) || dn.contains("..") {
        return false;
    }
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// Whether a name from the DNS (as asr_strdname gives it) is a host name
/// (res_hnok), so that a hostile PTR record cannot put arbitrary bytes in
/// our logs; the root, which asr would hand out as an empty name, is not.
pub fn asr_hnok(dn: &str) -> bool {
    !dn.is_empty() && dn != "." && crate::util::util::res_hnok(dn)
}

/// _asr_is_localhost(): "localhost" and names in ".localhost." (RFC 6761
/// 6.3), which never go to the name servers.
pub fn asr_is_localhost(hn: &str) -> bool {
    let h = hn.to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h);
    h == "localhost" || h.ends_with(".localhost")
}

/// _asr_parse_namedb_line() over a whole hosts file: the lines split
/// into tokens, comments dropped. An unreadable file reads as empty, as
/// asr moves on to the next database.
pub fn asr_parse_namedb(path: &Path) -> Vec<Vec<String>> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let tok: Vec<String> = line
                .split([' ', '\t'])
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            (!tok.is_empty()).then_some(tok)
        })
        .collect()
}

/// The DNS name in text, without the final dot, as asr hands names out
/// (_asr_strdname() then the dot removed).
pub fn asr_strdname(d: &Dname) -> String {
    let s = super::unpack_dns::print_dname(d);
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => s,
    }
}

/// Why an answer's CNAME chain could not be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A name came back twice: the records loop.
    Loop,
    /// More than MAX_CNAME_CHAIN aliases.
    TooLong,
}

/// What an answer section says about `qname`: the end of its CNAME chain
/// and the records of the asked type owned by that end. asr takes every
/// record of the asked type in the answer, whoever owns it; following
/// the chain keeps a server from slipping in records for other names.
/// `hops` counts aliases already followed in earlier answers.
pub struct AnswerChain {
    pub target: Dname,
    pub records: Vec<DnsRr>,
    pub aliases: usize,
}

/// asr_follow_cname(): walks the answer section of `pkt` (a packet that
/// validated) from `qname`.
pub fn asr_follow_cname(
    pkt: &[u8],
    qname: &Dname,
    qtype: u16,
    hops: usize,
) -> Result<AnswerChain, ChainError> {
    let mut p = Unpack::new(pkt);
    let Ok(h) = p.unpack_header() else {
        return Ok(AnswerChain {
            target: qname.clone(),
            records: Vec::new(),
            aliases: 0,
        });
    };
    for _ in 0..h.qdcount {
        let _ = p.unpack_query();
    }
    let answers: Vec<DnsRr> = (0..h.ancount).filter_map(|_| p.unpack_rr().ok()).collect();
    let mut target = qname.clone();
    let mut seen = vec![qname.clone()];
    let mut aliases = 0;
    loop {
        let alias = answers.iter().find_map(|rr| match &rr.rr {
            Rdata::Cname(c) if rr.rr_type == T_CNAME && rr.rr_dname.eq_ignore_case(&target) => {
                Some(c.clone())
            }
            _ => None,
        });
        let Some(next) = alias.filter(|_| qtype != T_CNAME) else {
            break;
        };
        if seen.iter().any(|s| s.eq_ignore_case(&next)) {
            return Err(ChainError::Loop);
        }
        aliases += 1;
        if hops + aliases > MAX_CNAME_CHAIN {
            return Err(ChainError::TooLong);
        }
        seen.push(next.clone());
        target = next;
    }
    let records = answers
        .into_iter()
        .filter(|rr| rr.rr_type == qtype && rr.rr_dname.eq_ignore_case(&target))
        .collect();
    Ok(AnswerChain {
        target,
        records,
        aliases,
    })
}

/// What a query waits for before it can go on (ASR_WANT_READ,
/// ASR_WANT_WRITE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AsrCond {
    #[default]
    Read,
    Write,
}

/// What asr_run() returns: wait for `ar_cond` on `ar_fd` at most
/// `ar_timeout` then run again (ASYNC_COND), or the result is there
/// (ASYNC_DONE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Async {
    Cond,
    Done,
}

/// struct addrinfo, as getaddrinfo_async returns a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    pub ai_flags: i32,
    pub ai_family: i32,
    pub ai_socktype: i32,
    pub ai_protocol: i32,
    pub ai_addr: SocketAddr,
    pub ai_canonname: Option<String>,
}

/// struct hostent, as gethostbyaddr_async returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hostent {
    pub h_name: String,
    pub h_aliases: Vec<String>,
    pub h_addr_list: Vec<IpAddr>,
}

/// struct asr_result: what a query left when it ran, either the condition
/// to wait for or its result. One type serves every kind of query, as in
/// C; each kind fills its own fields.
#[derive(Clone, Debug, Default)]
pub struct AsrResult {
    pub ar_cond: AsrCond,
    pub ar_fd: std::os::fd::RawFd,
    pub ar_timeout: Duration,
    /// The system error, when there is one (ETIMEDOUT when no server
    /// answered in time, ECONNREFUSED when they refused, ...).
    pub ar_errno: i32,
    pub ar_h_errno: i32,
    pub ar_gai_errno: i32,
    pub ar_rcode: u16,
    pub ar_count: usize,
    /// The answer packet (C's ar_data/ar_datalen; None for -1).
    pub ar_data: Option<Vec<u8>>,
    /// The server that answered.
    pub ar_ns: Option<SocketAddr>,
    pub ar_addrinfo: Vec<AddrInfo>,
    pub ar_hostent: Option<Hostent>,
    /// getnameinfo's results (C writes them into the caller's buffers).
    pub ar_host: Option<String>,
    pub ar_serv: Option<String>,
}

/// struct asr_query: a query in progress, of one of the kinds smtpd uses.
pub enum AsrQuery {
    Send(Box<super::res_send_async::ResSend>),
    GetAddrInfo(Box<super::getaddrinfo_async::GetAddrInfo>),
    GetHostByAddr(Box<super::gethostnamadr_async::GetHostByAddr>),
    GetNameInfo(Box<super::getnameinfo_async::GetNameInfo>),
}

/// asr_run(): runs the query as far as it goes without waiting. `now` is
/// the time of the event loop's turn.
pub fn asr_run(q: &mut AsrQuery, ar: &mut AsrResult, now: Instant) -> Async {
    *ar = AsrResult::default();
    match q {
        AsrQuery::Send(s) => super::res_send_async::res_send_async_run(s, ar, now),
        AsrQuery::GetAddrInfo(s) => super::getaddrinfo_async::getaddrinfo_async_run(s, ar, now),
        AsrQuery::GetHostByAddr(s) => {
            super::gethostnamadr_async::gethostnamadr_async_run(s, ar, now)
        }
        AsrQuery::GetNameInfo(s) => super::getnameinfo_async::getnameinfo_async_run(s, ar, now),
    }
}

/// asr_run_sync(): runs a query to its end, waiting in poll(2) on each
/// condition. For programs without an event loop and for tests; a daemon
/// process never calls it.
pub fn asr_run_sync(mut q: AsrQuery) -> AsrResult {
    let mut ar = AsrResult::default();
    while asr_run(&mut q, &mut ar, Instant::now()) == Async::Cond {
        let events = match ar.ar_cond {
            AsrCond::Read => crate::sys::event::POLLIN,
            AsrCond::Write => crate::sys::event::POLLOUT,
        };
        let mut fds = [crate::sys::event::pollfd {
            fd: ar.ar_fd,
            events,
            revents: 0,
        }];
        // An error here (EINTR) just runs the query again early; it
        // looks at its own deadlines.
        let _ = crate::sys::event::poll(&mut fds, Some(ar.ar_timeout));
    }
    ar
}

#[cfg(test)]
mod tests;
