//! config.c and the configuration model of smtpd.h: `struct smtpd` and
//! what hangs off it (listeners, dispatchers, rules, filters, pki, ca,
//! limits), with OpenSMTPD 7.8's defaults (OpenSMTPD config.c 1.58).
//!
//! The model is built once by the parser and read-only afterwards; every
//! process re-executes smtpd and parses the file itself, as OpenSMTPD does.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bitflags::bitflags;

use crate::defines::*;
use crate::pathnames::path_libexec;
use crate::sys::net::{self, Family};
use crate::table::table::{table_add, table_create, Table};
use crate::util::limit::MtaLimits;
use crate::util::to::sa_to_text;
use crate::util::util::getmailname;

bitflags! {
    /// Listener flags (smtpd.h F_*).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct ListenerFlags: u16 {
        const F_STARTTLS = 0x01;
        const F_SMTPS = 0x02;
        const F_SSL = 0x03;
        const F_AUTH = 0x08;
        const F_STARTTLS_REQUIRE = 0x20;
        const F_AUTH_REQUIRE = 0x40;
        const F_MASK_SOURCE = 0x100;
        const F_TLS_VERIFY = 0x200;
        const F_EXT_DSN = 0x400;
        const F_RECEIVEDAUTH = 0x800;
        const F_MASQUERADE = 0x1000;
        const F_FILTERED = 0x2000;
        const F_PROXY = 0x4000;
    }
}

bitflags! {
    /// sc_queue_flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct QueueFlags: u32 {
        const QUEUE_COMPRESSION = 0x01;
        const QUEUE_ENCRYPTION = 0x02;
        const QUEUE_EVPCACHE = 0x04;
    }
}

bitflags! {
    /// enum filter_subsystem: which sides of the server a filter serves.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct FilterSubsystem: u32 {
        const FILTER_SUBSYSTEM_SMTP_IN = 1 << 0;
        const FILTER_SUBSYSTEM_SMTP_OUT = 1 << 1;
    }
}

pub const SMTPD_OPT_VERBOSE: u32 = 0x01;
pub const SMTPD_OPT_NOACTION: u32 = 0x02;

/// struct listener. One `listen on` statement may give several, one per
/// address; `ifx`, `family` and `origin` record the statement so that the
/// configuration can be printed back as it was written.
#[derive(Clone, Debug, Default)]
pub struct Listener {
    pub flags: ListenerFlags,
    /// None for the local socket listener.
    pub ss: Option<SocketAddr>,
    pub port: u16,
    pub filter_name: Option<String>,
    pub pki: Vec<String>,
    pub ca_name: Option<String>,
    pub tag: Option<String>,
    pub authtable: Option<String>,
    pub hostname: String,
    pub hostnametable: Option<String>,
    pub sendertable: Option<String>,
    /// Bound to a loopback address, or the local socket.
    pub local: bool,
    pub tls_protocols: Option<String>,
    pub tls_ciphers: Option<String>,

    pub ifx: String,
    pub family: Family,
    pub origin: usize,
}

impl Listener {
    /// The address as the logs show it (ss_to_text).
    pub fn address(&self) -> String {
        sa_to_text(self.ss.as_ref())
    }
}

/// struct pki: a certificate and key for TLS, by name (a host name or `*`).
#[derive(Clone, Debug, Default)]
pub struct Pki {
    pub pki_name: String,
    pub pki_cert_file: Option<String>,
    pub pki_key_file: Option<String>,
    /// 0 none, 1 auto, 2 legacy.
    pub pki_dhe: i32,
    /// The certificate chain, loaded by load_pki_tree().
    pub pki_cert: Vec<u8>,
    /// The private key, loaded by load_pki_keys() in the processes that
    /// need it.
    pub pki_key: crate::io::ssl::Secret,
}

pub const PKI_DHE_NAMES: [&str; 3] = ["none", "auto", "legacy"];

/// struct ca: a CA bundle, by name.
#[derive(Clone, Debug, Default)]
pub struct Ca {
    pub ca_name: String,
    pub ca_cert_file: Option<String>,
    /// The bundle, loaded by load_pki_tree().
    pub ca_cert: Vec<u8>,
}

/// How a local action delivers. OpenSMTPD turns most of these into a
/// command line at parse time; we keep the method and build the command
/// when it is needed (see `DispatcherLocal::command`), so that the libexec
/// directory can be moved for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalMethod {
    Mbox,
    Maildir { path: Option<String>, junk: bool },
    Lmtp { destination: String, rcpt_to: bool },
    Mda(String),
    ForwardOnly,
    ExpandOnly,
}

/// struct dispatcher_local.
#[derive(Clone, Debug)]
pub struct DispatcherLocal {
    pub method: LocalMethod,
    pub mda_wrapper: Option<String>,
    pub table_alias: Option<String>,
    pub table_virtual: Option<String>,
    /// `<getpwnam>` unless `userbase` names another table.
    pub table_userbase: Option<String>,
    pub user: Option<String>,
}

/// The userbase of a local action that names none.
pub const DEFAULT_USERBASE: &str = "<getpwnam>";

impl DispatcherLocal {
    pub fn new(method: LocalMethod) -> Self {
        DispatcherLocal {
            method,
            mda_wrapper: None,
            table_alias: None,
            table_virtual: None,
            table_userbase: None,
            user: None,
        }
    }

    pub fn is_mbox(&self) -> bool {
        self.method == LocalMethod::Mbox
    }

    pub fn forward_only(&self) -> bool {
        self.method == LocalMethod::ForwardOnly
    }

    pub fn expand_only(&self) -> bool {
        self.method == LocalMethod::ExpandOnly
    }

    /// The delivery command, as parse.y writes it into
    /// `dispatcher_local.command` (None for mbox and the expansion-only
    /// methods, which mda.c handles itself).
    pub fn command(&self) -> Option<String> {
        let libexec = path_libexec();
        Some(match &self.method {
            LocalMethod::Mbox | LocalMethod::ForwardOnly | LocalMethod::ExpandOnly => return None,
            LocalMethod::Maildir { path, junk } => {
                let j = if *junk { " -j" } else { "" };
                match path {
                    None => format!("{libexec}/mail.maildir{j}"),
                    Some(p) => match p.strip_prefix("~/") {
                        Some(rel) => {
                            format!("{libexec}/mail.maildir{j} \"%{{user.directory}}/{rel}\"")
                        }
                        None => format!("{libexec}/mail.maildir{j} \"{p}\""),
                    },
                }
            }
            LocalMethod::Lmtp {
                destination,
                rcpt_to,
            } => {
                let flag = if *rcpt_to { "-r" } else { "-u" };
                format!("{libexec}/mail.lmtp -d {destination} {flag}")
            }
            LocalMethod::Mda(cmd) => format!("{libexec}/mail.mda \"{cmd}\""),
        })
    }
}

/// struct dispatcher_remote.
#[derive(Clone, Debug, Default)]
pub struct DispatcherRemote {
    pub helo: Option<String>,
    pub helo_source: Option<String>,
    pub source: Option<String>,
    pub ca: Option<String>,
    pub pki: Option<String>,
    pub mail_from: Option<String>,
    pub smarthost: Option<String>,
    pub smarthost_domain: bool,
    pub auth: Option<String>,
    pub tls_required: bool,
    pub tls_verify: bool,
    pub tls_protocols: Option<String>,
    pub tls_ciphers: Option<String>,
    pub backup: bool,
    pub backupmx: Option<String>,
    pub filtername: Option<String>,
    pub srs: bool,
}

/// union dispatcher_agent, with enum dispatcher_type as its tag.
#[derive(Clone, Debug)]
pub enum DispatcherAgent {
    Local(DispatcherLocal),
    Remote(DispatcherRemote),
    Bounce,
}

/// struct dispatcher: what an `action` does with the envelopes it gets.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    pub u: DispatcherAgent,
    /// Seconds; 0 means the queue's ttl.
    pub ttl: i64,
}

/// struct rule. Flags are C's: 0 unset, 1 match, -1 negated match.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    pub reject: bool,

    pub flag_tag: i8,
    pub flag_from: i8,
    pub flag_for: i8,
    pub flag_from_rdns: bool,
    pub flag_from_socket: bool,

    pub flag_tag_regex: bool,
    pub flag_from_regex: bool,
    pub flag_for_regex: bool,

    pub flag_smtp_helo: i8,
    pub flag_smtp_starttls: i8,
    pub flag_smtp_auth: i8,
    pub flag_smtp_mail_from: i8,
    pub flag_smtp_rcpt_to: i8,

    pub flag_smtp_helo_regex: bool,
    pub flag_smtp_auth_regex: bool,
    pub flag_smtp_mail_from_regex: bool,
    pub flag_smtp_rcpt_to_regex: bool,

    pub table_tag: Option<String>,
    pub table_from: Option<String>,
    pub table_for: Option<String>,

    pub table_smtp_helo: Option<String>,
    pub table_smtp_auth: Option<String>,
    pub table_smtp_mail_from: Option<String>,
    pub table_smtp_rcpt_to: Option<String>,

    pub dispatcher: Option<String>,
}

/// enum filter_phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPhase {
    Connect,
    Helo,
    Ehlo,
    Starttls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    DataLine,
    Rset,
    Quit,
    Noop,
    Help,
    Wiz,
    Commit,
}

impl FilterPhase {
    /// The phase's name as smtpd.conf and the filter protocol spell it.
    pub fn name(self) -> &'static str {
        match self {
            FilterPhase::Connect => "connect",
            FilterPhase::Helo => "helo",
            FilterPhase::Ehlo => "ehlo",
            FilterPhase::Starttls => "starttls",
            FilterPhase::Auth => "auth",
            FilterPhase::MailFrom => "mail-from",
            FilterPhase::RcptTo => "rcpt-to",
            FilterPhase::Data => "data",
            FilterPhase::DataLine => "data-line",
            FilterPhase::Rset => "rset",
            FilterPhase::Quit => "quit",
            FilterPhase::Noop => "noop",
            FilterPhase::Help => "help",
            FilterPhase::Wiz => "wiz",
            FilterPhase::Commit => "commit",
        }
    }
}

/// What a builtin filter checks a table against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterCheckOn {
    Rdns,
    Src,
    Helo,
    Auth,
    MailFrom,
    RcptTo,
}

impl FilterCheckOn {
    pub fn name(self) -> &'static str {
        match self {
            FilterCheckOn::Rdns => "rdns",
            FilterCheckOn::Src => "src",
            FilterCheckOn::Helo => "helo",
            FilterCheckOn::Auth => "auth",
            FilterCheckOn::MailFrom => "mail-from",
            FilterCheckOn::RcptTo => "rcpt-to",
        }
    }
}

/// The one condition of a builtin filter (the `not_*`/`*_table` pairs of
/// struct filter_config: parse.y accepts exactly one per filter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterCheck {
    Fcrdns,
    Rdns,
    Auth,
    Table {
        on: FilterCheckOn,
        regex: bool,
        table: String,
    },
}

/// What a builtin filter decides when its condition holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterDecision {
    Reject(String),
    Disconnect(String),
    Rewrite(String),
    Report(String),
    Junk,
    Bypass,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterBuiltin {
    pub phase: FilterPhase,
    pub negate: bool,
    pub check: FilterCheck,
    pub decision: FilterDecision,
}

/// enum filter_type, with what each kind carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterType {
    Builtin(FilterBuiltin),
    /// Backed by the named entry of `sc_filter_processes_dict`.
    Proc(String),
    /// Filters run in order; chains never nest.
    Chain(Vec<String>),
}

/// struct filter_config.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    pub name: String,
    pub filter_subsystem: FilterSubsystem,
    pub filter_type: FilterType,
}

/// struct filter_proc: a filter program and how to run it.
#[derive(Clone, Debug, Default)]
pub struct FilterProc {
    pub command: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub chroot: Option<String>,
}

/// struct smtpd: the whole configuration.
#[derive(Clone, Debug)]
pub struct Smtpd {
    pub sc_conffile: String,
    pub sc_maxsize: usize,
    pub sc_opts: u32,
    /// SMTPD_*_PAUSED from `-P`.
    pub sc_flags: u32,
    pub sc_queue_flags: QueueFlags,
    pub sc_queue_key: Option<String>,

    pub sc_session_max_rcpt: usize,
    pub sc_session_max_mails: usize,

    pub sc_mda_wrappers: BTreeMap<String, String>,
    pub sc_mda_max_session: usize,
    pub sc_mda_max_user_session: usize,
    pub sc_mda_task_hiwat: usize,
    pub sc_mda_task_lowat: usize,
    pub sc_mda_task_release: usize,

    pub sc_mta_max_deferred: usize,

    pub sc_scheduler_max_inflight: usize,
    pub sc_scheduler_max_evp_batch_size: usize,
    pub sc_scheduler_max_msg_batch_size: usize,
    pub sc_scheduler_max_schedule: usize,

    pub sc_filter_processes_dict: BTreeMap<String, FilterProc>,

    pub sc_ttl: i64,
    /// Unused slots are 0.
    pub sc_bounce_warn: [i64; MAX_BOUNCE_WARN],
    pub sc_hostname: String,

    /// The local socket listener (`listen on socket`, or a default one).
    pub sc_sock_listener: Option<Listener>,
    pub sc_listeners: Vec<Listener>,
    pub sc_rules: Vec<Rule>,

    pub sc_filters_dict: BTreeMap<String, FilterConfig>,
    pub sc_dispatchers: BTreeMap<String, Dispatcher>,
    pub sc_dispatcher_bounce: Dispatcher,

    pub sc_ca_dict: BTreeMap<String, Ca>,
    pub sc_pki_dict: BTreeMap<String, Pki>,

    pub sc_tables_dict: BTreeMap<String, Table>,
    pub sc_limits_dict: BTreeMap<String, MtaLimits>,

    pub sc_tls_ciphers: Option<String>,
    pub sc_subaddressing_delim: char,

    pub sc_srs_key: Option<String>,
    pub sc_srs_key_backup: Option<String>,
    /// Days.
    pub sc_srs_ttl: i64,

    pub sc_admd: Option<String>,

    /// When the daemon started.
    pub sc_uptime: i64,
}

impl Smtpd {
    pub fn table_find(&self, name: &str) -> Option<&Table> {
        self.sc_tables_dict.get(name)
    }
}

/// The configuration of this process (C's global `env`), set once when
/// it is loaded and read-only afterwards.
static ENV: std::sync::OnceLock<Smtpd> = std::sync::OnceLock::new();

/// Installs the configuration; a second call is a bug.
pub fn set_env(conf: Smtpd) {
    if ENV.set(conf).is_err() {
        fatalx!("set_env: configuration already loaded");
    }
}

/// The configuration (C's `env`).
pub fn env() -> &'static Smtpd {
    match ENV.get() {
        Some(c) => c,
        None => fatalx!("env: configuration not loaded"),
    }
}

/// config_default(): a configuration with nothing declared yet: OpenSMTPD's
/// defaults and the internal tables `<localhost>`, `<anyhost>`,
/// `<localnames>`, `<anydestination>` and `<getpwnam>`.
pub fn config_default() -> Result<Smtpd, String> {
    let hostname = getmailname()?;
    let ifaddrs =
        net::getifaddrs().map_err(|e| format!("getifaddrs: {}", crate::util::log::strerror(&e)))?;
    Ok(config_default_with(&hostname, &ifaddrs))
}

/// config_default() for a given server name and interface list, so that
/// tests can build a configuration without depending on the machine.
pub fn config_default_with(hostname: &str, ifaddrs: &[net::IfAddr]) -> Smtpd {
    let mut limits = BTreeMap::new();
    limits.insert("default".to_string(), MtaLimits::default());
    let mut conf = Smtpd {
        sc_conffile: String::new(),
        sc_maxsize: DEFAULT_MAX_BODY_SIZE,
        sc_opts: 0,
        sc_flags: 0,
        sc_queue_flags: QueueFlags::empty(),
        sc_queue_key: None,
        sc_session_max_rcpt: DEFAULT_SESSION_MAX_RCPT,
        sc_session_max_mails: DEFAULT_SESSION_MAX_MAILS,
        sc_mda_wrappers: BTreeMap::new(),
        sc_mda_max_session: DEFAULT_MDA_MAX_SESSION,
        sc_mda_max_user_session: DEFAULT_MDA_MAX_USER_SESSION,
        sc_mda_task_hiwat: DEFAULT_MDA_TASK_HIWAT,
        sc_mda_task_lowat: DEFAULT_MDA_TASK_LOWAT,
        sc_mda_task_release: DEFAULT_MDA_TASK_RELEASE,
        sc_mta_max_deferred: DEFAULT_MTA_MAX_DEFERRED,
        sc_scheduler_max_inflight: DEFAULT_SCHEDULER_MAX_INFLIGHT,
        sc_scheduler_max_evp_batch_size: DEFAULT_SCHEDULER_MAX_EVP_BATCH_SIZE,
        sc_scheduler_max_msg_batch_size: DEFAULT_SCHEDULER_MAX_MSG_BATCH_SIZE,
        sc_scheduler_max_schedule: DEFAULT_SCHEDULER_MAX_SCHEDULE,
        sc_filter_processes_dict: BTreeMap::new(),
        sc_ttl: SMTPD_QUEUE_EXPIRY,
        sc_bounce_warn: [DEFAULT_BOUNCE_WARN, 0, 0, 0],
        sc_hostname: hostname.to_string(),
        sc_sock_listener: None,
        sc_listeners: Vec::new(),
        sc_rules: Vec::new(),
        sc_filters_dict: BTreeMap::new(),
        sc_dispatchers: BTreeMap::new(),
        sc_dispatcher_bounce: Dispatcher {
            u: DispatcherAgent::Bounce,
            ttl: 0,
        },
        sc_ca_dict: BTreeMap::new(),
        sc_pki_dict: BTreeMap::new(),
        sc_tables_dict: BTreeMap::new(),
        sc_limits_dict: limits,
        sc_tls_ciphers: None,
        sc_subaddressing_delim: '+',
        sc_srs_key: None,
        sc_srs_key_backup: None,
        sc_srs_ttl: SMTPD_QUEUE_EXPIRY / 86400,
        sc_admd: None,
        sc_uptime: 0,
    };

    set_local(&mut conf, hostname, ifaddrs);

    let mut t = internal_table("<anydestination>");
    table_add(&mut t, "*", None);
    // The short host name is a local destination as well.
    let short = &hostname[..hostname.find('.').unwrap_or(hostname.len())];
    if short != hostname {
        table_add(&mut t, short, None);
    }
    register(&mut conf, t);

    let t =
        table_create("getpwnam", DEFAULT_USERBASE, None).expect("the getpwnam backend is built in");
    register(&mut conf, t);
    conf
}

fn internal_table(name: &str) -> Table {
    table_create("static", name, None).expect("the static backend is built in")
}

fn register(conf: &mut Smtpd, t: Table) {
    conf.sc_tables_dict.insert(t.t_name.clone(), t);
}

/// set_local(): `<localnames>`, the names this host receives mail for.
fn set_local(conf: &mut Smtpd, hostname: &str, ifaddrs: &[net::IfAddr]) {
    let mut t = internal_table("<localnames>");
    table_add(&mut t, "localhost", None);
    table_add(&mut t, hostname, None);
    set_localaddrs(conf, &mut t, ifaddrs);
    register(conf, t);
}

/// set_localaddrs(): `<anyhost>` (everything) and `<localhost>` (the local
/// socket and every address of this host), whose addresses are local
/// names as well.
fn set_localaddrs(conf: &mut Smtpd, localnames: &mut Table, ifaddrs: &[net::IfAddr]) {
    let mut any = internal_table("<anyhost>");
    for a in ["local", "0.0.0.0/0", "::/0"] {
        table_add(&mut any, a, None);
    }
    register(conf, any);

    let mut t = internal_table("<localhost>");
    table_add(&mut t, "local", None);
    for ifa in ifaddrs {
        let text = sa_to_text(Some(&ifa.addr));
        table_add(&mut t, &text, None);
        table_add(localnames, &text, None);
    }
    register(conf, t);
}

/// config_process(): names this process (its title in ps, its smtpd
/// type) and raises its descriptor limit to the maximum.
pub fn config_process(proc: crate::ipc::mproc::ProcType) {
    crate::smtpd::set_smtpd_process(proc);
    crate::sys::proctitle::setproctitle(crate::smtpd::proc_title(proc));
    if let Err(e) = crate::sys::unistd::nofile_to_max() {
        fatal!(e, "fdlimit: setrlimit");
    }
}

/// config_peer(): starts reading the channel to `proc`.
pub fn config_peer<S: crate::ipc::mproc::MprocOwner>(
    base: &mut crate::io::event::EventBase<S>,
    peers: &mut crate::smtpd::Peers,
    proc: crate::ipc::mproc::ProcType,
) {
    if proc == crate::smtpd::smtpd_process() {
        fatalx!("config_peers: cannot peer with oneself");
    }
    crate::ipc::mproc::mproc_enable(base, peers.p(proc), proc as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Vec<net::IfAddr> {
        vec![
            net::IfAddr {
                name: "lo".into(),
                addr: "127.0.0.1:0".parse().unwrap(),
            },
            net::IfAddr {
                name: "lo".into(),
                addr: "[::1]:0".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn defaults_are_opensmtpds() {
        let c = config_default_with("mx.example.org", &lo());
        assert_eq!(c.sc_maxsize, 35 * 1024 * 1024);
        assert_eq!(c.sc_ttl, 4 * 86400);
        assert_eq!(c.sc_bounce_warn, [4 * 3600, 0, 0, 0]);
        assert_eq!((c.sc_session_max_rcpt, c.sc_session_max_mails), (1000, 100));
        assert_eq!(c.sc_subaddressing_delim, '+');
        assert_eq!(c.sc_limits_dict["default"], MtaLimits::default());
    }

    #[test]
    fn internal_tables() {
        let c = config_default_with("mx.example.org", &lo());
        let keys = |n: &str| {
            c.sc_tables_dict[n]
                .static_entries()
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("<localhost>"), ["127.0.0.1", "[::1]", "local"]);
        assert_eq!(
            keys("<localnames>"),
            ["127.0.0.1", "[::1]", "localhost", "mx.example.org"]
        );
        assert_eq!(keys("<anydestination>"), ["*", "mx"]);
        assert_eq!(keys("<anyhost>"), ["0.0.0.0/0", "::/0", "local"]);
        assert!(c.sc_tables_dict.contains_key("<getpwnam>"));
    }

    #[test]
    fn local_commands_as_parse_y_builds_them() {
        let libexec = path_libexec();
        let d = DispatcherLocal::new(LocalMethod::Maildir {
            path: Some("~/Mail".into()),
            junk: true,
        });
        assert_eq!(
            d.command().unwrap(),
            format!("{libexec}/mail.maildir -j \"%{{user.directory}}/Mail\"")
        );
        let d = DispatcherLocal::new(LocalMethod::Lmtp {
            destination: "/var/run/lmtp.sock".into(),
            rcpt_to: false,
        });
        assert_eq!(
            d.command().unwrap(),
            format!("{libexec}/mail.lmtp -d /var/run/lmtp.sock -u")
        );
        assert!(DispatcherLocal::new(LocalMethod::Mbox).command().is_none());
    }
}
