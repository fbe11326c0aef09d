//! The parser driven directly: configurations in, model and diagnostics
//! out. The regress corpus (regress/config) covers messages and the
//! canonical dump end to end; these check the model the daemons will use.

use super::*;
use crate::config::printconf::print_config;
use crate::sys::net::IfAddr;

/// A scratch directory removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        // Tests run in parallel threads: each directory is its own.
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("smtpd-parse-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn base() -> Smtpd {
    let lo = [IfAddr {
        name: "lo".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
    }];
    config_default_with("mx.example.org", &lo)
}

/// Parses `src` (with `$DIR` replaced by a scratch directory holding
/// `files`), returning the model and the diagnostics.
fn parse_with(
    src: &str,
    files: &[(&str, &str)],
    symtab: Symtab,
) -> (Smtpd, Result<(), ConfigErrors>, Vec<String>) {
    let dir = Dir::new(&format!("{:x}", fxhash(src)));
    let d = dir.0.to_str().unwrap().to_string();
    for (name, content) in files {
        dir.file(name, &content.replace("$DIR", &d));
    }
    let path = dir.file("smtpd.conf", &src.replace("$DIR", &d));
    let mut conf = base();
    let (r, diags) = parse_config_diags(&mut conf, &path, symtab);
    let diags = diags
        .into_iter()
        .map(|x| x.text.replace(&format!("{d}/"), ""))
        .collect();
    (conf, r, diags)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn parse(src: &str) -> Smtpd {
    let (conf, r, diags) = parse_with(src, &[], Symtab::default());
    assert_eq!(r, Ok(()), "{diags:?}");
    conf
}

fn errors(src: &str) -> Vec<String> {
    let (_, r, diags) = parse_with(src, &[], Symtab::default());
    assert!(r.is_err(), "expected errors for {src:?}");
    diags
}

const MIN: &str = "action a mbox\nmatch for local action a\n";

#[test]
fn a_match_without_from_or_for_is_local_to_local() {
    let c = parse(MIN);
    let r = &c.sc_rules[0];
    assert_eq!(
        (r.flag_from, r.table_from.as_deref()),
        (1, Some("<localhost>"))
    );
    assert_eq!(
        (r.flag_for, r.table_for.as_deref()),
        (1, Some("<localnames>"))
    );
    assert_eq!(r.dispatcher.as_deref(), Some("a"));
}

#[test]
fn from_auth_puts_the_negation_on_auth_as_parse_y_does() {
    let c = parse("action a mbox\nmatch !from auth for any action a\n");
    let r = &c.sc_rules[0];
    assert_eq!(
        (r.flag_from, r.table_from.as_deref()),
        (1, Some("<anyhost>"))
    );
    assert_eq!(r.flag_smtp_auth, -1);
    let c = parse("table t { a@b }\naction a mbox\nmatch from mail-from regex \"@example\\\\.org$\" for rcpt-to <t> action a\n");
    let r = &c.sc_rules[0];
    assert!(r.flag_smtp_mail_from_regex && r.flag_smtp_rcpt_to == 1);
    assert_eq!(
        (r.table_from.as_deref(), r.table_for.as_deref()),
        (Some("<anyhost>"), Some("<anydestination>"))
    );
}

#[test]
fn match_criteria_and_negations() {
    let c = parse(
        "table tags { t1 }\naction a mbox\n\
         match !from src { 10.0.0.0/8, 192.168.0.0/16 } for domain regex \"^ex\" tag <tags> !tls \
         helo mx.example.org !mail-from \"@spam.example\" rcpt-to { a@b } action a\n\
         match from rdns for any reject\nmatch from socket !for local reject\n",
    );
    let r = &c.sc_rules[0];
    assert_eq!(r.flag_from, -1);
    assert!(r.table_from.as_deref().unwrap().starts_with("<dynamic:"));
    assert!(r.flag_for_regex);
    assert_eq!((r.flag_tag, r.table_tag.as_deref()), (1, Some("tags")));
    assert_eq!(r.flag_smtp_starttls, -1);
    assert_eq!(
        (r.flag_smtp_helo, r.flag_smtp_mail_from, r.flag_smtp_rcpt_to),
        (1, -1, 1)
    );
    assert!(
        c.sc_rules[1].flag_from_rdns && c.sc_rules[1].reject && c.sc_rules[1].table_from.is_none()
    );
    assert!(c.sc_rules[2].flag_from_socket);
    assert_eq!(c.sc_rules[2].flag_for, -1);
}

#[test]
fn listener_ports_and_flags_follow_create_if_listener() {
    use ListenerFlags as F;
    let files = [("cert", "x"), ("key", "x")];
    let src = "pki mx.example.org cert \"$DIR/cert\" key \"$DIR/key\"\n\
               listen on 127.0.0.1 smtps pki MX.example.org\n\
               listen on 127.0.0.1 tls-require verify pki mx.example.org auth-optional port 587 tag SUB\n\
               listen on 127.0.0.1 no-dsn mask-src received-auth proxy-v2\n\
               listen on socket tag LOCAL\n"
        .to_string()
        + MIN;
    let (c, r, d) = parse_with(&src, &files, Symtab::default());
    assert_eq!(r, Ok(()), "{d:?}");
    let l = &c.sc_listeners;
    assert_eq!((l[0].port, l[0].flags), (465, F::F_SMTPS | F::F_EXT_DSN));
    assert_eq!(l[0].pki, ["mx.example.org"]);
    assert_eq!(l[1].port, 587);
    assert_eq!(
        l[1].flags,
        F::F_STARTTLS | F::F_STARTTLS_REQUIRE | F::F_TLS_VERIFY | F::F_AUTH | F::F_EXT_DSN
    );
    assert_eq!(l[1].tag.as_deref(), Some("SUB"));
    assert_eq!(
        (l[2].port, l[2].flags),
        (25, F::F_MASK_SOURCE | F::F_RECEIVEDAUTH | F::F_PROXY)
    );
    assert!(l.iter().all(|l| l.local && l.hostname == "mx.example.org"));
    let s = c.sc_sock_listener.as_ref().unwrap();
    assert_eq!(
        (s.tag.as_deref(), s.local, s.ss),
        (Some("LOCAL"), true, None)
    );
}

#[test]
fn a_default_socket_listener_exists() {
    let c = parse(MIN);
    let s = c.sc_sock_listener.unwrap();
    assert!(s.flags.contains(ListenerFlags::F_EXT_DSN) && s.local);
}

#[test]
fn local_actions() {
    let c = parse(
        &("table aliases { root = alice }\ntable users { alice = \"1000:1000:/home/alice\" }\n\
         mda wrapper w \"/usr/bin/wrap %{mda}\"\n\
         action m maildir \"~/Mail\" junk virtual <aliases> userbase <users> user vmail wrapper w ttl 2h\n\
         action l lmtp \"/var/run/dovecot/lmtp\" rcpt-to alias <aliases>\n\
         action f forward-only\n"
            .to_string()
            + "match for local action m\n"),
    );
    let m = &c.sc_dispatchers["m"];
    assert_eq!(m.ttl, 7200);
    let DispatcherAgent::Local(m) = &m.u else {
        panic!()
    };
    assert_eq!(
        m.method,
        LocalMethod::Maildir {
            path: Some("~/Mail".into()),
            junk: true
        }
    );
    assert_eq!(
        (
            m.table_virtual.as_deref(),
            m.table_userbase.as_deref(),
            m.user.as_deref(),
            m.mda_wrapper.as_deref()
        ),
        (Some("aliases"), Some("users"), Some("vmail"), Some("w"))
    );
    let DispatcherAgent::Local(f) = &c.sc_dispatchers["f"].u else {
        panic!()
    };
    assert_eq!(f.table_userbase.as_deref(), Some(DEFAULT_USERBASE));
    assert!(f.forward_only());
}

#[test]
fn relay_actions() {
    let c = parse(
        &("table secrets { bob = \"bob:secret\" }\nsrs key \"k\"\n\
         action r relay host \"smtp+tls://bob@smtp.example.com:587\" auth <secrets> tls no-verify \
         helo out.example.org mail-from \"bounces@example.org\" src { 192.0.2.1, 192.0.2.2 } srs\n\
         action b relay backup mx mx1.example.org\n\
         action d relay domain { example.com = \"smtps://mx.example.net\" }\n"
            .to_string()
            + "match from any for any action r\n"),
    );
    let DispatcherAgent::Remote(r) = &c.sc_dispatchers["r"].u else {
        panic!()
    };
    assert!(r.tls_required && !r.tls_verify && r.srs && !r.smarthost_domain);
    assert_eq!(r.auth.as_deref(), Some("secrets"));
    assert_eq!(r.helo.as_deref(), Some("out.example.org"));
    let DispatcherAgent::Remote(b) = &c.sc_dispatchers["b"].u else {
        panic!()
    };
    assert!(b.backup && b.backupmx.as_deref() == Some("mx1.example.org"));
    let DispatcherAgent::Remote(d) = &c.sc_dispatchers["d"].u else {
        panic!()
    };
    assert!(d.smarthost_domain);
}

#[test]
fn filters_phases_and_chains() {
    let c = parse(
        &("filter f1 phase auth match !auth disconnect \"421 bye\"\n\
         filter f2 phase rcpt-to match rcpt-to regex { \"^spam\" } reject \"550 no\"\n\
         filter dkim proc-exec \"filter-dkimsign -d example.org\" user _dkim group _dkim\n\
         filter both chain { f1, f2,\n dkim }\n\
         listen on socket filter both\nlisten on 127.0.0.1 filter { f1, dkim }\n"
            .to_string()
            + MIN),
    );
    let FilterType::Builtin(b) = &c.sc_filters_dict["f1"].filter_type else {
        panic!()
    };
    assert_eq!(
        (b.phase, b.negate, &b.check),
        (FilterPhase::Auth, true, &FilterCheck::Auth)
    );
    assert_eq!(b.decision, FilterDecision::Disconnect("421 bye".into()));
    assert_eq!(
        c.sc_filters_dict["dkim"].filter_type,
        FilterType::Proc("dkim".into())
    );
    assert_eq!(
        c.sc_filter_processes_dict["dkim"].user.as_deref(),
        Some("_dkim")
    );
    // Inline chains pass the subsystem on to their members at once.
    assert!(c.sc_filters_dict["dkim"]
        .filter_subsystem
        .contains(FilterSubsystem::FILTER_SUBSYSTEM_SMTP_IN));
    let dynchain = c.sc_listeners[0].filter_name.clone().unwrap();
    assert_eq!(dynchain, "<dynchain:00000001>");
    assert!(c.sc_listeners[0].flags.contains(ListenerFlags::F_FILTERED));
}

#[test]
fn file_tables_take_their_shape_from_the_first_entry() {
    let files = [
        ("aliases", "# comment\nroot: alice\npostmaster:\troot\n"),
        ("list", "example.org\nexample.net\n"),
        ("forced", "# @list\na b\n"),
        ("empty", ""),
    ];
    let src =
        "table aliases file:$DIR/aliases\ntable list \"$DIR/list\"\ntable forced file:$DIR/forced\n\
               table empty \"file:$DIR/empty\"\n"
            .to_string() + MIN;
    let (c, r, d) = parse_with(&src, &files, Symtab::default());
    assert_eq!(r, Ok(()), "{d:?}");
    let ty = |n: &str| c.sc_tables_dict[n].t_type;
    assert_eq!(ty("aliases"), T::T_HASH);
    assert_eq!(ty("list"), T::T_LIST);
    assert_eq!(ty("forced"), T::T_LIST);
    assert_eq!(ty("empty"), T::T_HASH);
    let e = c.sc_tables_dict["aliases"].static_entries();
    let e: Vec<_> = e.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    assert_eq!(e, [("postmaster", Some("root")), ("root", Some("alice"))]);
}

#[test]
fn a_list_cannot_serve_aliases() {
    let files = [("list", "a\nb\n")];
    let (_, r, d) = parse_with(
        "table l file:$DIR/list\naction a mbox alias <l>\n",
        &files,
        Symtab::default(),
    );
    assert!(r.is_err());
    assert_eq!(
        d[0],
        "smtpd.conf:2: table \"l\" may not be used for alias lookups: it is a list, and alias lookups need key-value pairs"
    );
}

#[test]
fn command_line_macros_override_the_file() {
    let mut st = Symtab::default();
    st.cmdline_symset("port=2525");
    let (c, r, d) = parse_with("port = \"25\"\nlisten on 127.0.0.1 port $port\n", &[], st);
    assert!(r.is_err(), "no rules");
    assert_eq!(c.sc_listeners[0].port, 2525, "{d:?}");
}

#[test]
fn includes_nest_and_loops_are_refused() {
    let files = [
        ("inc.conf", "action a mbox\n"),
        ("loop1.conf", "include \"$DIR/loop2.conf\"\n"),
        ("loop2.conf", "include \"$DIR/loop1.conf\"\n"),
    ];
    let (c, r, d) = parse_with(
        "include \"$DIR/inc.conf\"\nmatch for local action a\n",
        &files,
        Symtab::default(),
    );
    assert_eq!(r, Ok(()), "{d:?}");
    assert!(c.sc_dispatchers.contains_key("a"));
    let (_, r, d) = parse_with("include \"$DIR/loop1.conf\"\n", &files, Symtab::default());
    assert!(r.is_err());
    assert!(
        d[0].starts_with("loop2.conf:1: failed to include file: include loop:"),
        "{d:?}"
    );
}

#[test]
fn every_error_is_reported_with_its_line() {
    let d = errors("listen on 127.0.0.1 port 0\naction a mbox\nmatch for local action b\nqueue ttl 4\nsmtp limit max-rcpt x\n");
    assert_eq!(
        d,
        [
            "smtpd.conf:1: invalid port: 0",
            "smtpd.conf:3: unknown action \"b\"; did you mean \"a\"?",
            "smtpd.conf:4: \"queue ttl\" expects a delay such as 4d, found 4 without a unit (s, m, h or d)",
            "smtpd.conf:5: \"smtp limit max-rcpt\" expects a number, found \"x\"",
        ]
    );
}

#[test]
fn recovery_skips_a_broken_brace_block_but_not_the_next_statement() {
    let d =
        errors("table t { a,\ntable u { b }\naction a mbox alias <u>\nmatch for local action a\n");
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[0], "smtpd.conf:2: '{' opened on line 1 is not closed before this statement",
        "{d:?}"
    );
    // u is declared after the broken line, and used as a list for
    // aliases: that error proves line 2 was parsed after recovery.
    assert!(
        d[1].starts_with("smtpd.conf:3: table \"u\" may not be used for alias lookups"),
        "{d:?}"
    );
}

#[test]
fn refused_combinations() {
    for (src, msg) in [
        ("listen on 127.0.0.1 auth", "auth requires tls/smtps"),
        (
            "action a relay backup host \"mx.example.org\"",
            "backup and host are mutually exclusive",
        ),
        (
            "table x { a = b }\naction a mbox alias <x> virtual <x>",
            "alias and virtual may not be used together",
        ),
        (
            "action a mbox user bob",
            "user may not be specified for mbox delivery",
        ),
        (
            "action a relay auth { a = b }",
            "auth may not be specified without host",
        ),
        ("action a relay srs", "an srs key is required"),
        (
            "filter f phase commit match rdns junk",
            "\"junk\" is not possible at the commit phase",
        ),
        (
            "filter f phase connect match helo x reject \"550 no\"",
            "\"helo\" cannot be matched at the connect phase",
        ),
        (
            "action a mbox ttl 1d alias { a = b }",
            "\"alias\" must come before \"ttl\"",
        ),
        (
            "listen on 127.0.0.1 tls smtps",
            "TLS mode already specified",
        ),
    ] {
        let d = errors(&format!("{src}\n{MIN}"));
        assert!(d[0].contains(msg), "{src}: {d:?}");
    }
}

#[test]
fn mta_domain_limits_copy_the_default_at_creation() {
    let c = parse(&format!(
        "mta limit max-conn-per-host 3\nmta limit for domain example.org inet4 session-mail-max 7\n\
         mta limit max-conn-per-host 9\n{MIN}"
    ));
    let d = &c.sc_limits_dict["example.org"];
    assert_eq!(
        (d.maxconn_per_host, d.max_mail_per_session, d.family),
        (3, 7, Family::Inet4)
    );
    assert_eq!(c.sc_limits_dict["default"].maxconn_per_host, 9);
}

#[test]
fn globals() {
    let c = parse(&format!(
        "bounce warn-interval 1h, 6h, 2d\nqueue ttl 5d\nqueue compression\nsmtp max-message-size 10M\n\
         smtp sub-addr-delim \"-\"\nsrs ttl 2d\nadmd \"mx.example.org\"\n{MIN}"
    ));
    assert_eq!(c.sc_bounce_warn, [3600, 6 * 3600, 2 * 86400, 0]);
    assert_eq!(
        (
            c.sc_ttl,
            c.sc_maxsize,
            c.sc_subaddressing_delim,
            c.sc_srs_ttl
        ),
        (5 * 86400, 10 << 20, '-', 2)
    );
    assert!(c.sc_queue_flags.contains(QueueFlags::QUEUE_COMPRESSION));
}

#[test]
fn the_dump_reads_back_as_itself() {
    let src = "table aliases { root = alice }\ntable \"my list\" { \"a b\", c }\n\
               filter f phase mail-from match !mail-from regex { \"^x\" } reject \"550 no\"\n\
               filter c chain { f }\nproc p \"/usr/bin/filter\" user nobody\nfilter fp proc p\n\
               listen on 127.0.0.1 port 2525 tag T hostname \"in.example.org\" filter { f, fp }\n\
               listen on socket mask-src\n\
               action \"local mail\" maildir \"~/Maildir\" junk alias <aliases> ttl 30m\n\
               action out relay host smtps://mx.example.net tls\n\
               match !from src { 10.0.0.0/8 } for domain <\"my list\"> action \"local mail\"\n\
               match from local for any !tls action out\n\
               mta limit for domain example.net max-conn-per-host 2\n";
    let c = parse(src);
    let dump = print_config(&c);
    let (c2, r, d) = parse_with(&dump, &[], Symtab::default());
    assert_eq!(r, Ok(()), "{dump}\n{d:?}");
    assert_eq!(print_config(&c2), dump);
    assert!(
        dump.contains("action \"local mail\" maildir \"~/Maildir\" junk alias <aliases> ttl 30m\n"),
        "{dump}"
    );
    assert!(
        dump.contains(
            "listen on 127.0.0.1 port 2525 hostname in.example.org tag T filter { f, fp }\n"
        ),
        "{dump}"
    );
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let mut garbage = String::new();
    for i in 0..2000u32 {
        garbage.push(char::from_u32(0x21 + (i.wrapping_mul(2654435761) % 90)).unwrap());
        if i % 37 == 0 {
            garbage.push('\n');
        }
    }
    let nested = format!("table t {}\n", "{".repeat(10_000));
    let long = format!("listen on {}\n", "a".repeat(1 << 20));
    for src in [
        garbage.as_str(),
        nested.as_str(),
        long.as_str(),
        "\"unterminated\n",
        "\u{1}\u{2}$\n",
    ] {
        let d = errors(src);
        assert!(d[0].starts_with("smtpd.conf:"), "{d:?}");
    }
}
