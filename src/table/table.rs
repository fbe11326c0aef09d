//! table.c: tables, the lookup abstraction behind every list and mapping
//! of smtpd.conf (OpenSMTPD table.c 1.54): the model, what the
//! configuration needs (creating, configuring, filling and type checking
//! tables), and the lookups: table_match, table_lookup and table_fetch
//! over the backends' hooks, the parsing of what they return into
//! `Lookup` (C's union lookup), and the key comparisons of the static
//! and db backends.
//!
//! Tables belong to the configuration, which is read-only once loaded.
//! What changes at run time lives in the process's `TableState`.
//!
//! A lookup answers as C's -1 / 0 / 1: `Err` when it could not be made
//! (callers tempfail), `Ok(None)` / `Ok(false)` when the key is not
//! there, `Ok(Some(..))` / `Ok(true)` when it is.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, RwLock};

use bitflags::bitflags;

use crate::config::config::Smtpd;
use crate::defines::{HOST_NAME_MAX, LINE_MAX};
use crate::lka::expand::{expand_line, Expand};
use crate::pathnames::path_libexec;
use crate::sys::net::if_nametoindex;
use crate::sys::regex::Regex;
use crate::util::log::{strerror, TRACE_LOOKUP};
use crate::util::mailaddr::{mailaddr_line, Mailaddr};
use crate::util::to::{text_to_mailaddr, text_to_netaddr, text_to_userinfo, Netaddr};
use crate::util::util::{hostname_match, mailaddr_match, strtonum};

use super::{table_db, table_getpwnam, table_proc, table_static};

bitflags! {
    /// enum table_type: where a table's content comes from and its shape.
    /// An empty set is T_NONE (a static table with nothing in it yet).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TableType: u32 {
        /// Backed by something outside the configuration.
        const T_DYNAMIC = 0x01;
        /// A list of keys.
        const T_LIST = 0x02;
        /// Keys with values.
        const T_HASH = 0x04;
    }
}

bitflags! {
    /// enum table_service: what a lookup asks for (smtpd-api.h).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TableService: u32 {
        const K_ALIAS = 0x001;
        const K_DOMAIN = 0x002;
        const K_CREDENTIALS = 0x004;
        const K_NETADDR = 0x008;
        const K_USERINFO = 0x010;
        const K_SOURCE = 0x020;
        const K_MAILADDR = 0x040;
        const K_ADDRNAME = 0x080;
        const K_MAILADDRMAP = 0x100;
        const K_RELAYHOST = 0x200;
        const K_STRING = 0x400;
        const K_REGEX = 0x800;
        const K_AUTH = 0x1000;
        const K_ANY = 0xffff;
    }
}

/// A backend's check of a table's source.
pub type TableConfigFn = fn(&mut Table) -> Result<(), String>;
/// A backend's insertion of one inline entry.
pub type TableAddFn = fn(&mut Table, &str, Option<&str>) -> bool;
/// Reloads the table's source for `smtpctl update table`; false when the
/// new source cannot be read, the old content then staying in use.
pub type TableUpdateFn = fn(&Table) -> bool;
/// A backend's lookup of a lowercased key: `Ok(Some(value))` when found,
/// `Ok(None)` when not. `want_value` is false for a match (C's NULL
/// `dst`), and the value is then unused. `conf` is the configuration C
/// reads from its global.
pub type TableLookupFn = fn(
    conf: &Smtpd,
    t: &Table,
    kind: TableService,
    key: &str,
    want_value: bool,
) -> io::Result<Option<String>>;
/// A backend's fetch of its next entry (the tables that hand out their
/// entries in turn, such as `relay src` addresses).
pub type TableFetchFn =
    fn(st: &mut TableState, t: &Table, kind: TableService) -> io::Result<Option<String>>;

/// struct table_backend, with the hooks so far ported (dump, open and
/// close arrive with the proc backend).
#[derive(Debug)]
pub struct TableBackend {
    pub name: &'static str,
    pub services: TableService,
    /// Checks and loads the table's source; the error says why not.
    pub config: Option<TableConfigFn>,
    /// Adds one entry to a table declared inline.
    pub add: Option<TableAddFn>,
    pub update: Option<TableUpdateFn>,
    pub lookup: Option<TableLookupFn>,
    pub fetch: Option<TableFetchFn>,
}

/// The run-time state of the tables of one process, which C keeps behind
/// each table's t_handle: so far the fetch cursors of static tables.
/// This is where the proc tables' connections will live. (What `smtpctl
/// update table` reloads is behind the static table's own handle: only
/// lka looks tables up, and it alone ever reloads one.)
#[derive(Clone, Debug, Default)]
pub struct TableState {
    /// Table name -> the key table_fetch returned last.
    pub(crate) fetch_cursors: HashMap<String, String>,
}

/// Backend-private state (C's `t_handle`). A static table's entries are
/// shared and locked, as `smtpctl update table` replaces them in a
/// configuration that is otherwise read-only; each process is single-
/// threaded, so the lock is never contended.
#[derive(Clone, Debug, Default)]
pub enum TableHandle {
    #[default]
    None,
    Static(Arc<RwLock<table_static::TableStaticPriv>>),
}

/// struct table.
#[derive(Clone, Debug)]
pub struct Table {
    pub t_name: String,
    pub t_type: TableType,
    pub t_config: String,
    pub t_services: TableService,
    pub t_backend: &'static TableBackend,
    pub t_handle: TableHandle,
}

static BACKENDS: [&TableBackend; 4] = [
    &table_static::TABLE_BACKEND_STATIC,
    &table_db::TABLE_BACKEND_DB,
    &table_getpwnam::TABLE_BACKEND_GETPWNAM,
    &table_proc::TABLE_BACKEND_PROC,
];

/// The backend names a configuration may use, for suggestions.
pub const BACKEND_NAMES: [&str; 5] = ["static", "file", "db", "getpwnam", "proc"];

/// table_backend_lookup(): `file` is another name for `static`.
pub fn table_backend_lookup(backend: &str) -> Option<&'static TableBackend> {
    let backend = if backend == "file" { "static" } else { backend };
    BACKENDS.iter().copied().find(|b| b.name == backend)
}

/// table_service_name().
pub fn table_service_name(s: TableService) -> &'static str {
    const NAMES: [(TableService, &str); 13] = [
        (TableService::K_ALIAS, "alias"),
        (TableService::K_DOMAIN, "domain"),
        (TableService::K_CREDENTIALS, "credentials"),
        (TableService::K_NETADDR, "netaddr"),
        (TableService::K_USERINFO, "userinfo"),
        (TableService::K_SOURCE, "source"),
        (TableService::K_MAILADDR, "mailaddr"),
        (TableService::K_ADDRNAME, "addrname"),
        (TableService::K_MAILADDRMAP, "mailaddrmap"),
        (TableService::K_RELAYHOST, "relayhost"),
        (TableService::K_STRING, "string"),
        (TableService::K_REGEX, "regex"),
        (TableService::K_AUTH, "auth"),
    ];
    if s.is_empty() {
        return "none";
    }
    NAMES
        .iter()
        .find(|(k, _)| *k == s)
        .map_or("???", |(_, n)| n)
}

/// table_find(): the table called `name`.
pub fn table_find<'a>(conf: &'a Smtpd, name: &str) -> Option<&'a Table> {
    conf.table_find(name)
}

/// table_match(): whether `key` is in `table` for `kind`.
pub fn table_match(conf: &Smtpd, table: &Table, kind: TableService, key: &str) -> io::Result<bool> {
    Ok(table_lookup_value(conf, table, kind, key, false)?.is_some())
}

/// table_lookup(): the value of `key` in `table`, parsed for `kind`. A
/// value that does not parse is an error.
pub fn table_lookup(
    conf: &Smtpd,
    table: &Table,
    kind: TableService,
    key: &str,
) -> io::Result<Option<Lookup>> {
    match table_lookup_value(conf, table, kind, key, true)? {
        None => Ok(None),
        Some((lkey, buf)) => table_parse_lookup(kind, Some(&lkey), &buf).map(Some),
    }
}

/// What table_lookup() and table_match() share in C, where a match is a
/// lookup without a destination: the key lowercased, the backend asked,
/// the answer traced. Returns the lowercased key and the raw value.
fn table_lookup_value(
    conf: &Smtpd,
    table: &Table,
    kind: TableService,
    key: &str,
    lk: bool,
) -> io::Result<Option<(String, String)>> {
    let r = match table.t_backend.lookup {
        None => Err(io::Error::from_raw_os_error(libc::ENOTSUP)),
        // C's lowercase() into a 1024-byte buffer.
        Some(_) if key.len() >= 1024 => {
            log_warnx!("warn: lookup key too long: {key}");
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        Some(lookup) => {
            let lkey = key.to_ascii_lowercase();
            lookup(conf, table, kind, &lkey, lk).map(|v| v.map(|v| (lkey, v)))
        }
    };
    let what = if lk { "lookup" } else { "match" };
    let (backend, name, service) = (
        table.t_backend.name,
        &table.t_name,
        table_service_name(kind),
    );
    match &r {
        Ok(Some((_, buf))) if lk => log_trace!(
            TRACE_LOOKUP,
            "lookup: {what} \"{key}\" as {service} in table {backend}:{name} -> \"{buf}\""
        ),
        Ok(Some(_)) => log_trace!(
            TRACE_LOOKUP,
            "lookup: {what} \"{key}\" as {service} in table {backend}:{name} -> true"
        ),
        Ok(None) => log_trace!(
            TRACE_LOOKUP,
            "lookup: {what} \"{key}\" as {service} in table {backend}:{name} -> {}",
            if lk { "none" } else { "false" }
        ),
        Err(e) => log_trace!(
            TRACE_LOOKUP,
            "lookup: {what} \"{key}\" as {service} in table {backend}:{name} -> error: {}",
            strerror(e)
        ),
    }
    r
}

/// table_fetch(): the table's next entry, parsed for `kind`; tables
/// hand out their entries in turn, starting over after the last.
pub fn table_fetch(
    st: &mut TableState,
    table: &Table,
    kind: TableService,
) -> io::Result<Option<Lookup>> {
    let r = match table.t_backend.fetch {
        None => Err(io::Error::from_raw_os_error(libc::ENOTSUP)),
        Some(fetch) => fetch(st, table, kind),
    };
    let (backend, name, service) = (
        table.t_backend.name,
        &table.t_name,
        table_service_name(kind),
    );
    match r {
        Ok(Some(buf)) => {
            log_trace!(
                TRACE_LOOKUP,
                "lookup: fetch {service} from table {backend}:{name} -> \"{buf}\""
            );
            table_parse_lookup(kind, None, &buf).map(Some)
        }
        Ok(None) => {
            log_trace!(
                TRACE_LOOKUP,
                "lookup: fetch {service} from table {backend}:{name} -> none"
            );
            Ok(None)
        }
        Err(e) => {
            log_trace!(
                TRACE_LOOKUP,
                "lookup: fetch {service} from table {backend}:{name} -> error: {}",
                strerror(&e)
            );
            Err(e)
        }
    }
}

/// table_create(): a table of `backend` configured by `config`. A backend
/// name that is not built in selects the proc backend when the program
/// `table-NAME` exists in the libexec directory, with `NAME:config` as its
/// configuration. The caller names the table and registers it.
pub fn table_create(backend: &str, name: &str, config: Option<&str>) -> Result<Table, String> {
    let (tb, config) = match table_backend_lookup(backend) {
        Some(tb) => (tb, config.map(str::to_string)),
        None => {
            let path = format!("{}/table-{backend}", path_libexec());
            if std::fs::metadata(&path).is_err() {
                return Err(format!("table backend \"{backend}\" does not exist (no built-in backend and no {path})"));
            }
            let conf = match config {
                Some(c) => format!("{backend}:{c}"),
                None => backend.to_string(),
            };
            (&table_proc::TABLE_BACKEND_PROC, Some(conf))
        }
    };
    let config = config.unwrap_or_default();
    if config.len() >= crate::defines::PATH_MAX {
        return Err(format!("table config \"{config}\" too large"));
    }
    if name.len() >= crate::defines::LINE_MAX {
        return Err("table name too long".into());
    }
    let t_type = if tb.name == "static" {
        TableType::empty()
    } else {
        TableType::T_DYNAMIC
    };
    Ok(Table {
        t_name: name.to_string(),
        t_type,
        t_config: config,
        t_services: tb.services,
        t_backend: tb,
        t_handle: TableHandle::None,
    })
}

/// table_config(): lets the backend check (and for static files, load) the
/// table's source.
pub fn table_config(t: &mut Table) -> Result<(), String> {
    match t.t_backend.config {
        Some(config) => config(t),
        None => Ok(()),
    }
}

/// table_add(): adds one entry to a table declared inline; false when the
/// backend takes no entries or the entry does not fit the table's shape.
pub fn table_add(t: &mut Table, key: &str, val: Option<&str>) -> bool {
    match t.t_backend.add {
        Some(add) => add(t, key, val),
        None => false,
    }
}

/// table_update(): reloads the table's source; a backend without an
/// update hook has nothing to reload.
pub fn table_update(t: &Table) -> bool {
    match t.t_backend.update {
        Some(update) => update(t),
        None => true,
    }
}

/// table_check_type().
pub fn table_check_type(t: &Table, mask: TableType) -> bool {
    t.t_type.intersects(mask)
}

/// table_check_service().
pub fn table_check_service(t: &Table, mask: TableService) -> bool {
    t.t_services.intersects(mask)
}

/// table_check_use(): whether `t` has one of the shapes in `tmask` and
/// offers one of the services in `smask`.
pub fn table_check_use(t: &Table, tmask: TableType, smask: TableService) -> bool {
    table_check_type(t, tmask) && table_check_service(t, smask)
}

impl Table {
    /// The entries of a static table, in key order (none for others).
    pub fn static_entries(&self) -> Vec<(String, Option<String>)> {
        match &self.t_handle {
            TableHandle::Static(priv_) => table_static::table_static_priv(priv_)
                .dict
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            TableHandle::None => Vec::new(),
        }
    }

    /// Whether the table was declared inline (a `{ ... }` list or a lone
    /// string) rather than by a `table` statement.
    pub fn is_anonymous(&self) -> bool {
        self.t_name.starts_with("<dynamic:")
    }
}

/// struct userinfo, the K_USERINFO lookup result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Userinfo {
    pub username: String,
    pub directory: String,
    pub uid: u32,
    pub gid: u32,
}

/// struct credentials, the K_CREDENTIALS lookup result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// struct destination, the K_DOMAIN lookup result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
}

/// struct source, the K_SOURCE lookup result (port 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub addr: SocketAddr,
}

/// struct addrname, the K_ADDRNAME lookup result: the key's address and
/// the name it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addrname {
    pub addr: SocketAddr,
    pub name: String,
}

/// union lookup: what a lookup returns, by service. K_STRING, K_REGEX
/// and K_AUTH only match: a lookup of them is an error, as in C.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// K_ALIAS.
    Expand(Expand),
    /// K_CREDENTIALS.
    Creds(Credentials),
    /// K_NETADDR.
    Netaddr(Netaddr),
    /// K_SOURCE.
    Source(Source),
    /// K_DOMAIN.
    Domain(Destination),
    /// K_USERINFO.
    Userinfo(Userinfo),
    /// K_MAILADDR.
    Mailaddr(Mailaddr),
    /// K_ADDRNAME.
    Addrname(Addrname),
    /// K_MAILADDRMAP (struct maddrmap).
    Maddrmap(Vec<Mailaddr>),
    /// K_RELAYHOST.
    Relayhost(String),
}

// In the *_match() functions, s1 comes from the session and s2 from the
// table.

/// table_domain_match(): hostname_match(), `*` wildcards included.
pub fn table_domain_match(s1: &str, s2: &str) -> bool {
    hostname_match(s1, s2)
}

/// table_mailaddr_match(): both sides as addresses (`user`, `@domain`,
/// `user@domain`, an empty one matching anything), compared by
/// mailaddr_match() with the sub-address delimiter `delim`.
pub fn table_mailaddr_match(s1: &str, s2: &str, delim: char) -> bool {
    let Some(m1) = text_to_mailaddr(s1) else {
        return false;
    };
    let Some(m2) = text_to_mailaddr(s2) else {
        return false;
    };
    mailaddr_match(&m1, &m2, delim)
}

/// table_netaddr_match(): equal strings (without case: how `local`
/// matches the Unix socket), or the session's address inside the table's
/// network, of the same family.
pub fn table_netaddr_match(s1: &str, s2: &str) -> bool {
    if s1.eq_ignore_ascii_case(s2) {
        return true;
    }
    let Some(n1) = text_to_netaddr(s1) else {
        return false;
    };
    let Some(n2) = text_to_netaddr(s2) else {
        return false;
    };
    if n1.ss.is_ipv4() != n2.ss.is_ipv4() {
        return false;
    }
    table_match_mask(&n1.ss, &n2)
}

/// table_match_mask(): whether `ss` is in `ssmask` (its `bits` leading
/// bits equal); table_inet4_match and table_inet6_match in one.
fn table_match_mask(ss: &IpAddr, ssmask: &Netaddr) -> bool {
    let prefix = |a: &[u8], b: &[u8], bits: u32| {
        let full = (bits / 8) as usize;
        let rest = bits % 8;
        if a[..full.min(a.len())] != b[..full.min(b.len())] {
            return false;
        }
        if rest == 0 || full >= a.len() {
            return true;
        }
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    };
    match (ss, &ssmask.ss) {
        (IpAddr::V4(a), IpAddr::V4(b)) => prefix(&a.octets(), &b.octets(), ssmask.bits.min(32)),
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix(&a.octets(), &b.octets(), ssmask.bits.min(128)),
        _ => false,
    }
}

/// table_regex_match(): `pattern` as a POSIX extended regular expression,
/// unanchored, without case when it starts with `(?i)`. A pattern that
/// does not compile matches nothing.
pub fn table_regex_match(string: &str, pattern: &str) -> bool {
    let (pattern, icase) = match pattern.strip_prefix("(?i)") {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    match Regex::new(pattern, icase) {
        Ok(re) => re.is_match(string),
        Err(_) => false,
    }
}

/// An error for a value that does not parse as its service says (C
/// returns -1 without setting errno).
fn table_invalid_value(kind: TableService, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid {} value: {what}", table_service_name(kind)),
    )
}

/// table_parse_lookup(): a backend's answer `line` for `key` as `service`
/// wants it. A fetch has no key: the services whose value needs one
/// (credentials without a user, userinfo, addrname) are errors then.
fn table_parse_lookup(service: TableService, key: Option<&str>, line: &str) -> io::Result<Lookup> {
    let len = line.len();
    let needs_key = || table_invalid_value(service, "no key");
    match service {
        TableService::K_ALIAS => {
            let mut expand = Expand::default();
            if !expand_line(&mut expand, line, true) {
                return Err(table_invalid_value(service, line));
            }
            Ok(Lookup::Expand(expand))
        }
        TableService::K_DOMAIN => {
            if len > HOST_NAME_MAX {
                return Err(table_invalid_value(service, line));
            }
            Ok(Lookup::Domain(Destination {
                name: line.to_string(),
            }))
        }
        TableService::K_CREDENTIALS => {
            // Credentials are user:password; a password alone is the
            // key's. Too short, or too big for an SMTP line: refused.
            if !(3..LINE_MAX).contains(&len) {
                return Err(table_invalid_value(service, "length"));
            }
            let Some(p) = line.find(':') else {
                return Ok(Lookup::Creds(Credentials {
                    username: key.ok_or_else(needs_key)?.to_string(),
                    password: line.to_string(),
                }));
            };
            if p == 0 || p == len - 1 {
                return Err(table_invalid_value(service, "empty user or password"));
            }
            Ok(Lookup::Creds(Credentials {
                username: line[..p].to_string(),
                password: line[p + 1..].to_string(),
            }))
        }
        TableService::K_NETADDR => text_to_netaddr(line)
            .map(Lookup::Netaddr)
            .ok_or_else(|| table_invalid_value(service, line)),
        TableService::K_USERINFO => {
            let buffer = format!("{}:{line}", key.ok_or_else(needs_key)?);
            if buffer.len() >= LINE_MAX {
                return Err(table_invalid_value(service, line));
            }
            text_to_userinfo(&buffer)
                .map(Lookup::Userinfo)
                .ok_or_else(|| table_invalid_value(service, line))
        }
        TableService::K_SOURCE => parse_sockaddr(line)
            .map(|addr| Lookup::Source(Source { addr }))
            .ok_or_else(|| table_invalid_value(service, line)),
        TableService::K_MAILADDR => text_to_mailaddr(line)
            .map(Lookup::Mailaddr)
            .ok_or_else(|| table_invalid_value(service, line)),
        TableService::K_MAILADDRMAP => {
            let mut maddrmap = Vec::new();
            if !mailaddr_line(&mut maddrmap, line) {
                return Err(table_invalid_value(service, line));
            }
            Ok(Lookup::Maddrmap(maddrmap))
        }
        TableService::K_ADDRNAME => {
            let addr = parse_sockaddr(key.ok_or_else(needs_key)?)
                .ok_or_else(|| table_invalid_value(service, "key"))?;
            if len > HOST_NAME_MAX {
                return Err(table_invalid_value(service, line));
            }
            Ok(Lookup::Addrname(Addrname {
                addr,
                name: line.to_string(),
            }))
        }
        TableService::K_RELAYHOST => {
            if len >= LINE_MAX {
                return Err(table_invalid_value(service, line));
            }
            Ok(Lookup::Relayhost(line.to_string()))
        }
        _ => Err(table_invalid_value(service, "the service has no value")),
    }
}

/// parse_sockaddr() for PF_UNSPEC: an IPv4 address, else an IPv6 one,
/// optionally in brackets, after `IPv6:`, and with a `%scope` (an
/// interface name for link-local and node-local addresses, or a number).
/// The port is 0.
pub fn parse_sockaddr(s: &str) -> Option<SocketAddr> {
    if let Ok(ina) = s.parse::<Ipv4Addr>() {
        return Some(SocketAddr::V4(SocketAddrV4::new(ina, 0)));
    }
    let mut s = s.strip_prefix('[').unwrap_or(s);
    if s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"ipv6:") {
        s = &s[5..];
    }
    // NI_MAXHOST.
    if s.len() >= 1025 {
        return None;
    }
    let addr = s.split(']').next().unwrap_or(s);
    let (addr, scope) = match addr.split_once('%') {
        Some((a, cp)) => (a, Some(cp)),
        None => (addr, None),
    };
    let in6a: Ipv6Addr = addr.parse().ok()?;
    let Some(cp) = scope else {
        return Some(SocketAddr::V6(SocketAddrV6::new(in6a, 0, 0, 0)));
    };
    let o = in6a.octets();
    let linklocal = o[0] == 0xfe && o[1] & 0xc0 == 0x80;
    let mc_linklocal = o[0] == 0xff && o[1] & 0x0f == 0x02;
    let mc_nodelocal = o[0] == 0xff && o[1] & 0x0f == 0x01;
    if linklocal || mc_linklocal || mc_nodelocal {
        if let Some(index) = if_nametoindex(cp).filter(|&i| i != 0) {
            return Some(SocketAddr::V6(SocketAddrV6::new(in6a, 0, 0, index)));
        }
    }
    let scope_id = strtonum(cp, 0, i64::from(u32::MAX))? as u32;
    Some(SocketAddr::V6(SocketAddrV6::new(in6a, 0, 0, scope_id)))
}

/// A configuration parsed from `src` for tests, as the daemon would load
/// it on mx.example.org (127.0.0.1, ::1 and 192.0.2.10), `$DIR` in `src`
/// being a scratch directory holding `files`. The directory is removed
/// once parsed: file tables are loaded by then.
#[cfg(test)]
pub(crate) fn table_test_config(src: &str, files: &[(&str, &str)]) -> Smtpd {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "smtpd-table-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let ifaddrs: Vec<crate::sys::net::IfAddr> = ["127.0.0.1:0", "[::1]:0", "192.0.2.10:0"]
        .iter()
        .map(|a| crate::sys::net::IfAddr {
            name: "lo".into(),
            addr: a.parse().unwrap(),
        })
        .collect();
    let mut conf = crate::config::config::config_default_with("mx.example.org", &ifaddrs);
    let src = src.replace("$DIR", d);
    let (r, diags) = crate::config::parse::parse_config_buffer(
        &mut conf,
        "test.conf",
        src.as_bytes(),
        Default::default(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(r.is_ok(), "{diags:?}");
    conf
}

#[cfg(test)]
mod tests;
