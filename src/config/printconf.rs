//! The configuration printed back as smtpd.conf (`smtpd -n -v`), in the
//! manner of bgpd's and pf's printconf.c; OpenSMTPD has no equivalent.
//!
//! The output is canonical: macros and includes are expanded, defaults
//! left out, everything declared before it is used, and parsing the output
//! prints the same output again.

use std::fmt::Write;

use super::config::*;
use super::lex::{allowed_in_string, lookup};
use crate::defines::*;
use crate::sys::net::Family;
use crate::table::table::Table;
use crate::util::limit::{MtaLimits, MTA_LIMIT_KEYWORDS};

/// A string as a quoted smtpd.conf string that reads back the same.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut after_backslash = false;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            // After a backslash, a bare space would read as an escaped one.
            ' ' | '\t' if after_backslash => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        after_backslash = c == '\\';
    }
    out.push('"');
    out
}

/// A string as a bare word when the lexer reads it back as the same
/// string, quoted otherwise.
pub fn word(s: &str) -> String {
    // A word starting with digits is a number unless a character other
    // than those that end numbers follows them (parse.y yylex).
    let after_digits = s
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .chars()
        .next();
    let bare = match s.chars().next() {
        Some(c) if c.is_ascii_digit() => after_digits.is_some_and(|c| c != '/'),
        Some(c) => c.is_ascii_alphabetic() || c == '_' || c == ':',
        None => false,
    } && s.chars().all(|c| allowed_in_string(c as i32))
        && lookup(s).is_none();
    if bare {
        // Outside quotes a backslash takes the next character literally.
        s.replace('\\', "\\\\")
    } else {
        quote(s)
    }
}

/// A delay in the largest unit that divides it.
pub fn delay(secs: i64) -> String {
    for (unit, f) in [('d', 86400), ('h', 3600), ('m', 60)] {
        if secs % f == 0 {
            return format!("{}{unit}", secs / f);
        }
    }
    format!("{secs}s")
}

/// A table as a `<name>` reference, or its content for inline tables.
fn table_ref(conf: &Smtpd, name: &str) -> String {
    match conf.table_find(name) {
        Some(t) if t.is_anonymous() => table_inline(t),
        _ => format!("<{}>", word(name)),
    }
}

fn table_inline(t: &Table) -> String {
    let entries = t.static_entries();
    if let [(k, None)] = &entries[..] {
        return word(k);
    }
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{} = {}", word(k), word(v)),
            None => word(k),
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

fn filter_ref(conf: &Smtpd, name: &str) -> String {
    match conf.sc_filters_dict.get(name) {
        Some(FilterConfig {
            filter_type: FilterType::Chain(chain),
            ..
        }) if name.starts_with("<dynchain:") => {
            let items: Vec<String> = chain.iter().map(|f| word(f)).collect();
            format!("{{ {} }}", items.join(", "))
        }
        _ => word(name),
    }
}

/// Appends `key value` pairs of a limit statement that differ from the
/// defaults.
fn limits_line(out: &mut String, head: &str, pairs: &[(&str, usize, usize)]) {
    let changed: Vec<String> = pairs
        .iter()
        .filter(|(_, v, d)| v != d)
        .map(|(k, v, _)| format!("{k} {}", *v as i64))
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "{head} {}", changed.join(" "));
    }
}

fn mta_limits_diff(l: &MtaLimits, base: &MtaLimits) -> Vec<String> {
    let mut out = Vec::new();
    match l.family {
        Family::Inet4 => out.push("inet4".to_string()),
        Family::Inet6 => out.push("inet6".to_string()),
        // Nothing resets the family once set; see print_globals.
        Family::Unspec => {}
    }
    for k in MTA_LIMIT_KEYWORDS {
        if l.get(k) != base.get(k) {
            out.push(format!("{k} {}", l.get(k).unwrap_or(0)));
        }
    }
    out
}

fn print_globals(out: &mut String, c: &Smtpd) {
    if let Some(a) = &c.sc_admd {
        let _ = writeln!(out, "admd {}", quote(a));
    }
    if c.sc_bounce_warn != [DEFAULT_BOUNCE_WARN, 0, 0, 0] {
        let d: Vec<String> = c
            .sc_bounce_warn
            .iter()
            .filter(|&&d| d != 0)
            .map(|&d| delay(d))
            .collect();
        if !d.is_empty() {
            let _ = writeln!(out, "bounce warn-interval {}", d.join(", "));
        }
    }
    if c.sc_queue_flags.contains(QueueFlags::QUEUE_COMPRESSION) {
        out.push_str("queue compression\n");
    }
    if c.sc_queue_flags.contains(QueueFlags::QUEUE_ENCRYPTION) {
        match &c.sc_queue_key {
            Some(k) => {
                let _ = writeln!(out, "queue encryption {}", quote(k));
            }
            None => out.push_str("queue encryption\n"),
        }
    }
    if c.sc_ttl != SMTPD_QUEUE_EXPIRY {
        let _ = writeln!(out, "queue ttl {}", delay(c.sc_ttl));
    }
    if let Some(ciphers) = &c.sc_tls_ciphers {
        let _ = writeln!(out, "smtp ciphers {}", quote(ciphers));
    }
    limits_line(
        out,
        "smtp limit",
        &[
            (
                "max-mails",
                c.sc_session_max_mails,
                DEFAULT_SESSION_MAX_MAILS,
            ),
            ("max-rcpt", c.sc_session_max_rcpt, DEFAULT_SESSION_MAX_RCPT),
        ],
    );
    if c.sc_maxsize != DEFAULT_MAX_BODY_SIZE {
        let _ = writeln!(out, "smtp max-message-size {}", c.sc_maxsize);
    }
    if c.sc_subaddressing_delim != '+' {
        let _ = writeln!(
            out,
            "smtp sub-addr-delim {}",
            quote(&c.sc_subaddressing_delim.to_string())
        );
    }
    if let Some(k) = &c.sc_srs_key {
        let _ = writeln!(out, "srs key {}", quote(k));
    }
    if let Some(k) = &c.sc_srs_key_backup {
        let _ = writeln!(out, "srs key backup {}", quote(k));
    }
    if c.sc_srs_ttl != SMTPD_QUEUE_EXPIRY / 86400 {
        let _ = writeln!(out, "srs ttl {}d", c.sc_srs_ttl);
    }
    if c.sc_mta_max_deferred != DEFAULT_MTA_MAX_DEFERRED {
        let _ = writeln!(out, "mta max-deferred {}", c.sc_mta_max_deferred as i64);
    }
    // Domains copy the default limits as they stand when first named, and
    // a family cannot be unset: the domains come first, each saying how it
    // differs from the built-in limits, then the default.
    let builtin = MtaLimits::default();
    for (domain, l) in c.sc_limits_dict.iter().filter(|(k, _)| *k != "default") {
        let mut line = format!("mta limit for domain {}", word(domain));
        for d in mta_limits_diff(l, &builtin) {
            line.push(' ');
            line.push_str(&d);
        }
        let _ = writeln!(out, "{line}");
    }
    let diff = mta_limits_diff(&c.sc_limits_dict["default"], &builtin);
    if !diff.is_empty() {
        let _ = writeln!(out, "mta limit {}", diff.join(" "));
    }
    limits_line(
        out,
        "mda limit",
        &[
            ("max-session", c.sc_mda_max_session, DEFAULT_MDA_MAX_SESSION),
            (
                "max-session-per-user",
                c.sc_mda_max_user_session,
                DEFAULT_MDA_MAX_USER_SESSION,
            ),
            ("task-hiwat", c.sc_mda_task_hiwat, DEFAULT_MDA_TASK_HIWAT),
            ("task-lowat", c.sc_mda_task_lowat, DEFAULT_MDA_TASK_LOWAT),
            (
                "task-release",
                c.sc_mda_task_release,
                DEFAULT_MDA_TASK_RELEASE,
            ),
        ],
    );
    limits_line(
        out,
        "scheduler limit",
        &[
            (
                "max-inflight",
                c.sc_scheduler_max_inflight,
                DEFAULT_SCHEDULER_MAX_INFLIGHT,
            ),
            (
                "max-evp-batch-size",
                c.sc_scheduler_max_evp_batch_size,
                DEFAULT_SCHEDULER_MAX_EVP_BATCH_SIZE,
            ),
            (
                "max-msg-batch-size",
                c.sc_scheduler_max_msg_batch_size,
                DEFAULT_SCHEDULER_MAX_MSG_BATCH_SIZE,
            ),
            (
                "max-schedule",
                c.sc_scheduler_max_schedule,
                DEFAULT_SCHEDULER_MAX_SCHEDULE,
            ),
        ],
    );
}

fn print_tls(out: &mut String, c: &Smtpd) {
    for (name, cmd) in &c.sc_mda_wrappers {
        let _ = writeln!(out, "mda wrapper {} {}", word(name), quote(cmd));
    }
    for ca in c.sc_ca_dict.values() {
        if let Some(f) = &ca.ca_cert_file {
            let _ = writeln!(out, "ca {} cert {}", word(&ca.ca_name), quote(f));
        }
    }
    for pki in c.sc_pki_dict.values() {
        let mut line = format!("pki {}", word(&pki.pki_name));
        if let Some(f) = &pki.pki_cert_file {
            let _ = write!(line, " cert {}", quote(f));
        }
        if let Some(f) = &pki.pki_key_file {
            let _ = write!(line, " key {}", quote(f));
        }
        if pki.pki_dhe != 0 {
            let _ = write!(line, " dhe {}", PKI_DHE_NAMES[pki.pki_dhe as usize]);
        }
        let _ = writeln!(out, "{line}");
    }
}

fn print_tables(out: &mut String, c: &Smtpd) {
    for t in c
        .sc_tables_dict
        .values()
        .filter(|t| !is_internal_table(&t.t_name))
    {
        let spec = match t.t_backend.name {
            "static" if t.t_config.is_empty() => {
                let _ = writeln!(out, "table {} {}", word(&t.t_name), table_braces(t));
                continue;
            }
            "static" => format!("file:{}", t.t_config),
            "db" => format!("db:{}", t.t_config),
            "getpwnam" => "getpwnam".to_string(),
            // `proc:/path` (the proc backend named) keeps its prefix; a
            // `NAME:config` table served by table-NAME needs none.
            _ if t.t_config.starts_with('/') => format!("proc:{}", t.t_config),
            _ => t.t_config.clone(),
        };
        let _ = writeln!(out, "table {} {}", word(&t.t_name), word(&spec));
    }
}

/// The tables config_default() creates and the anonymous ones of inline
/// values, which are not printed as `table` statements.
fn is_internal_table(name: &str) -> bool {
    [
        "<localhost>",
        "<anyhost>",
        "<localnames>",
        "<anydestination>",
        "<getpwnam>",
    ]
    .contains(&name)
        || name
            .strip_prefix("<dynamic:")
            .and_then(|r| r.strip_suffix('>'))
            .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// A named static table's content, always in braces.
fn table_braces(t: &Table) -> String {
    let items: Vec<String> = t
        .static_entries()
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{} = {}", word(k), word(v)),
            None => word(k),
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Whether proc `name` exists only for the proc-exec filter of that name.
fn is_proc_exec(c: &Smtpd, name: &str) -> bool {
    let users: Vec<&str> = c
        .sc_filters_dict
        .values()
        .filter(|f| f.filter_type == FilterType::Proc(name.to_string()))
        .map(|f| f.name.as_str())
        .collect();
    users == [name]
}

fn proc_params(p: &FilterProc) -> String {
    let mut s = String::new();
    for (k, v) in [
        ("user", &p.user),
        ("group", &p.group),
        ("chroot", &p.chroot),
    ] {
        if let Some(v) = v {
            let _ = write!(s, " {k} {}", quote(v));
        }
    }
    s
}

fn filter_check(c: &Smtpd, b: &FilterBuiltin) -> String {
    let neg = if b.negate { "!" } else { "" };
    match &b.check {
        FilterCheck::Fcrdns => format!("{neg}fcrdns"),
        FilterCheck::Rdns => format!("{neg}rdns"),
        FilterCheck::Auth => format!("{neg}auth"),
        FilterCheck::Table {
            on,
            regex: r,
            table,
        } => {
            format!("{neg}{} {}{}", on.name(), regex(*r), table_ref(c, table))
        }
    }
}

fn filter_decision(d: &FilterDecision) -> String {
    match d {
        FilterDecision::Reject(m) => format!("reject {}", quote(m)),
        FilterDecision::Disconnect(m) => format!("disconnect {}", quote(m)),
        FilterDecision::Rewrite(m) => format!("rewrite {}", quote(m)),
        FilterDecision::Report(m) => format!("report {}", quote(m)),
        FilterDecision::Junk => "junk".into(),
        FilterDecision::Bypass => "bypass".into(),
    }
}

fn print_filters(out: &mut String, c: &Smtpd) {
    for (name, p) in &c.sc_filter_processes_dict {
        if !is_proc_exec(c, name) {
            let _ = writeln!(
                out,
                "proc {} {}{}",
                word(name),
                quote(&p.command),
                proc_params(p)
            );
        }
    }
    let named = c
        .sc_filters_dict
        .values()
        .filter(|f| !f.name.starts_with("<dynchain:"));
    let (chains, others): (Vec<&FilterConfig>, Vec<&FilterConfig>) =
        named.partition(|f| matches!(f.filter_type, FilterType::Chain(_)));
    for f in others.into_iter().chain(chains) {
        let name = word(&f.name);
        let _ = match &f.filter_type {
            FilterType::Proc(p) if is_proc_exec(c, p) => {
                let proc = &c.sc_filter_processes_dict[p];
                writeln!(
                    out,
                    "filter {name} proc-exec {}{}",
                    quote(&proc.command),
                    proc_params(proc)
                )
            }
            FilterType::Proc(p) => writeln!(out, "filter {name} proc {}", word(p)),
            FilterType::Builtin(b) => writeln!(
                out,
                "filter {name} phase {} match {} {}",
                b.phase.name(),
                filter_check(c, b),
                filter_decision(&b.decision)
            ),
            FilterType::Chain(chain) => {
                let items: Vec<String> = chain.iter().map(|f| word(f)).collect();
                writeln!(out, "filter {name} chain {{ {} }}", items.join(", "))
            }
        };
    }
}

fn listener_options(c: &Smtpd, l: &Listener) -> String {
    use ListenerFlags as F;
    let mut s = String::new();
    match l.family {
        Family::Inet4 => s.push_str(" inet4"),
        Family::Inet6 => s.push_str(" inet6"),
        Family::Unspec => {}
    }
    let _ = write!(s, " port {}", l.port);
    let verify = if l.flags.contains(F::F_TLS_VERIFY) {
        " verify"
    } else {
        ""
    };
    if l.flags.contains(F::F_SMTPS) {
        let _ = write!(s, " smtps{verify}");
    } else if l.flags.contains(F::F_STARTTLS_REQUIRE) {
        let _ = write!(s, " tls-require{verify}");
    } else if l.flags.contains(F::F_STARTTLS) {
        s.push_str(" tls");
    }
    for p in &l.pki {
        let _ = write!(s, " pki {}", word(p));
    }
    if let Some(ca) = &l.ca_name {
        let _ = write!(s, " ca {}", word(ca));
    }
    if let Some(v) = &l.tls_ciphers {
        let _ = write!(s, " ciphers {}", quote(v));
    }
    if let Some(v) = &l.tls_protocols {
        let _ = write!(s, " protocols {}", quote(v));
    }
    if l.flags.contains(F::F_AUTH) {
        s.push_str(if l.flags.contains(F::F_AUTH_REQUIRE) {
            " auth"
        } else {
            " auth-optional"
        });
        if let Some(t) = &l.authtable {
            let _ = write!(s, " {}", table_ref(c, t));
        }
    }
    if l.hostname != c.sc_hostname {
        let _ = write!(s, " hostname {}", word(&l.hostname));
    }
    if let Some(t) = &l.hostnametable {
        let _ = write!(s, " hostnames {}", table_ref(c, t));
    }
    if l.flags.contains(F::F_PROXY) {
        s.push_str(" proxy-v2");
    }
    if l.flags.contains(F::F_RECEIVEDAUTH) {
        s.push_str(" received-auth");
    }
    if let Some(t) = &l.sendertable {
        let _ = write!(s, " senders {}", table_ref(c, t));
        if l.flags.contains(F::F_MASQUERADE) {
            s.push_str(" masquerade");
        }
    }
    s
}

/// The options both kinds of listener take.
fn listener_common(c: &Smtpd, l: &Listener) -> String {
    let mut s = String::new();
    if l.flags.contains(ListenerFlags::F_MASK_SOURCE) {
        s.push_str(" mask-src");
    }
    if !l.flags.contains(ListenerFlags::F_EXT_DSN) {
        s.push_str(" no-dsn");
    }
    if let Some(t) = &l.tag {
        let _ = write!(s, " tag {}", word(t));
    }
    if let Some(f) = &l.filter_name {
        let _ = write!(s, " filter {}", filter_ref(c, f));
    }
    s
}

fn print_listeners(out: &mut String, c: &Smtpd) {
    if let Some(l) = &c.sc_sock_listener {
        let _ = writeln!(out, "listen on socket{}", listener_common(c, l));
    }
    let mut last = None;
    for l in &c.sc_listeners {
        if last == Some(l.origin) {
            continue;
        }
        last = Some(l.origin);
        let _ = writeln!(
            out,
            "listen on {}{}{}",
            word(&l.ifx),
            listener_options(c, l),
            listener_common(c, l)
        );
    }
}

fn print_local(c: &Smtpd, d: &DispatcherLocal) -> String {
    let mut s = match &d.method {
        LocalMethod::Mbox => "mbox".to_string(),
        LocalMethod::Maildir { path, junk } => {
            let mut m = "maildir".to_string();
            if let Some(p) = path {
                let _ = write!(m, " {}", quote(p));
            }
            if *junk {
                m.push_str(" junk");
            }
            m
        }
        LocalMethod::Lmtp {
            destination,
            rcpt_to,
        } => {
            format!(
                "lmtp {}{}",
                quote(destination),
                if *rcpt_to { " rcpt-to" } else { "" }
            )
        }
        LocalMethod::Mda(cmd) => format!("mda {}", quote(cmd)),
        LocalMethod::ForwardOnly => "forward-only".to_string(),
        LocalMethod::ExpandOnly => "expand-only".to_string(),
    };
    if let Some(t) = &d.table_alias {
        let _ = write!(s, " alias {}", table_ref(c, t));
    }
    if let Some(t) = &d.table_virtual {
        let _ = write!(s, " virtual {}", table_ref(c, t));
    }
    if let Some(t) = d
        .table_userbase
        .as_deref()
        .filter(|t| *t != DEFAULT_USERBASE)
    {
        let _ = write!(s, " userbase {}", table_ref(c, t));
    }
    if let Some(u) = &d.user {
        let _ = write!(s, " user {}", word(u));
    }
    if let Some(w) = &d.mda_wrapper {
        let _ = write!(s, " wrapper {}", word(w));
    }
    s
}

fn print_remote(c: &Smtpd, r: &DispatcherRemote) -> String {
    let mut s = "relay".to_string();
    if r.backup {
        s.push_str(" backup");
        if let Some(mx) = &r.backupmx {
            let _ = write!(s, " mx {}", word(mx));
        }
    }
    if let Some(h) = &r.helo {
        let _ = write!(s, " helo {}", word(h));
    }
    if let Some(t) = &r.helo_source {
        let _ = write!(s, " helo-src {}", table_ref(c, t));
    }
    if let Some(t) = &r.smarthost {
        let kw = if r.smarthost_domain { "domain" } else { "host" };
        let _ = write!(s, " {kw} {}", table_ref(c, t));
    }
    if r.tls_required {
        s.push_str(if r.tls_verify {
            " tls"
        } else {
            " tls no-verify"
        });
    }
    if let Some(t) = &r.auth {
        let _ = write!(s, " auth {}", table_ref(c, t));
    }
    for (kw, v) in [("pki", &r.pki), ("ca", &r.ca)] {
        if let Some(v) = v {
            let _ = write!(s, " {kw} {}", word(v));
        }
    }
    for (kw, v) in [
        ("ciphers", &r.tls_ciphers),
        ("protocols", &r.tls_protocols),
        ("mail-from", &r.mail_from),
    ] {
        if let Some(v) = v {
            let _ = write!(s, " {kw} {}", quote(v));
        }
    }
    if let Some(t) = &r.source {
        let _ = write!(s, " src {}", table_ref(c, t));
    }
    if let Some(f) = &r.filtername {
        let _ = write!(s, " filter {}", filter_ref(c, f));
    }
    if r.srs {
        s.push_str(" srs");
    }
    s
}

fn print_actions(out: &mut String, c: &Smtpd) {
    for (name, d) in &c.sc_dispatchers {
        let body = match &d.u {
            DispatcherAgent::Local(l) => print_local(c, l),
            DispatcherAgent::Remote(r) => print_remote(c, r),
            DispatcherAgent::Bounce => continue,
        };
        let ttl = if d.ttl != 0 {
            format!(" ttl {}", delay(d.ttl))
        } else {
            String::new()
        };
        let _ = writeln!(out, "action {} {body}{ttl}", word(name));
    }
}

fn neg(flag: i8) -> &'static str {
    if flag < 0 {
        "!"
    } else {
        ""
    }
}

fn regex(r: bool) -> &'static str {
    if r {
        "regex "
    } else {
        ""
    }
}

/// One criterion with a table: ` [!]kw [regex ]<table>`.
fn criterion(c: &Smtpd, flag: i8, kw: &str, is_regex: bool, table: &Option<String>) -> String {
    match table {
        Some(t) if flag != 0 => {
            format!(" {}{kw} {}{}", neg(flag), regex(is_regex), table_ref(c, t))
        }
        None if flag != 0 => format!(" {}{kw}", neg(flag)),
        _ => String::new(),
    }
}

fn print_rule(c: &Smtpd, r: &Rule) -> String {
    let mut s = "match".to_string();
    let from = match (
        r.flag_from_socket,
        r.flag_from_rdns,
        r.table_from.as_deref(),
    ) {
        (true, _, _) => "socket".to_string(),
        (_, true, None) => "rdns".to_string(),
        (_, true, Some(t)) => format!("rdns {}{}", regex(r.flag_from_regex), table_ref(c, t)),
        (_, _, Some("<localhost>")) | (_, _, None) => "local".to_string(),
        (_, _, Some("<anyhost>")) => "any".to_string(),
        (_, _, Some(t)) => format!("src {}{}", regex(r.flag_from_regex), table_ref(c, t)),
    };
    let _ = write!(s, " {}from {from}", neg(r.flag_from));
    let for_ = match r.table_for.as_deref() {
        Some("<localnames>") | None => "local".to_string(),
        Some("<anydestination>") => "any".to_string(),
        Some(t) => format!("domain {}{}", regex(r.flag_for_regex), table_ref(c, t)),
    };
    let _ = write!(s, " {}for {for_}", neg(r.flag_for));
    s += &criterion(c, r.flag_tag, "tag", r.flag_tag_regex, &r.table_tag);
    s += &criterion(
        c,
        r.flag_smtp_helo,
        "helo",
        r.flag_smtp_helo_regex,
        &r.table_smtp_helo,
    );
    s += &criterion(c, r.flag_smtp_starttls, "tls", false, &None);
    s += &criterion(
        c,
        r.flag_smtp_auth,
        "auth",
        r.flag_smtp_auth_regex,
        &r.table_smtp_auth,
    );
    s += &criterion(
        c,
        r.flag_smtp_mail_from,
        "mail-from",
        r.flag_smtp_mail_from_regex,
        &r.table_smtp_mail_from,
    );
    s += &criterion(
        c,
        r.flag_smtp_rcpt_to,
        "rcpt-to",
        r.flag_smtp_rcpt_to_regex,
        &r.table_smtp_rcpt_to,
    );
    match &r.dispatcher {
        Some(d) if !r.reject => {
            let _ = write!(s, " action {}", word(d));
        }
        _ => s.push_str(" reject"),
    }
    s
}

/// print_config(): the whole configuration as smtpd.conf text.
pub fn print_config(c: &Smtpd) -> String {
    let mut out = String::new();
    print_globals(&mut out, c);
    print_tls(&mut out, c);
    print_tables(&mut out, c);
    print_filters(&mut out, c);
    print_listeners(&mut out, c);
    print_actions(&mut out, c);
    for r in &c.sc_rules {
        out.push_str(&print_rule(c, r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(word("aliases"), "aliases");
        assert_eq!(word("file:/etc/mail/aliases"), "file:/etc/mail/aliases");
        assert_eq!(word("local"), "\"local\"");
        assert_eq!(word("25"), "\"25\"");
        assert_eq!(word("192.0.2.1"), "192.0.2.1");
        assert_eq!(word("10/8"), "\"10/8\"");
        assert_eq!(word("/path"), "\"/path\"");
        assert_eq!(word("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("a\\ b"), "\"a\\\\ b\"");
        // A value ending in a backslash can only be a bare word.
        assert_eq!(word("a\\"), "a\\\\");
    }

    #[test]
    fn delays_use_the_largest_unit() {
        assert_eq!(delay(345600), "4d");
        assert_eq!(delay(7200), "2h");
        assert_eq!(delay(90), "90s");
        assert_eq!(delay(300), "5m");
    }
}
