//! ruleset.c: each criterion alone and negated, rule order, reject rules
//! and lookup errors, on configurations parsed from text.

use std::net::SocketAddr;

use super::*;
use crate::queue::envelope::PeerAddr;
use crate::table::table::table_test_config;
use crate::util::mailaddr::Mailaddr;

/// A message from 192.0.2.99 (no reverse DNS) for alice@example.org.
fn evp() -> Envelope {
    Envelope {
        ss: PeerAddr::Inet("192.0.2.99:40000".parse().unwrap()),
        hostname: "<unknown>".into(),
        helo: "client.example.net".into(),
        sender: Mailaddr::new("bob", "example.com"),
        rcpt: Mailaddr::new("alice", "example.org"),
        dest: Mailaddr::new("alice", "example.org"),
        ..Default::default()
    }
}

fn from(addr: &str) -> Envelope {
    let ss = match addr {
        "local" => PeerAddr::Local,
        a => PeerAddr::Inet(SocketAddr::new(a.parse().unwrap(), 25)),
    };
    Envelope { ss, ..evp() }
}

fn conf(rules: &str) -> Smtpd {
    conf_with(rules, &[])
}

fn conf_with(rules: &str, files: &[(&str, &str)]) -> Smtpd {
    table_test_config(&format!("action a mbox\naction b mbox\n{rules}"), files)
}

/// The action of the rule `evp` falls under: its name, `reject`,
/// `none` or `tempfail`.
fn action(c: &Smtpd, evp: &Envelope) -> String {
    match ruleset_match_conf(c, evp) {
        Ok(Some((_, r))) if r.reject => "reject".into(),
        Ok(Some((_, r))) => r.dispatcher.clone().unwrap(),
        Ok(None) => "none".into(),
        Err(Tempfail) => "tempfail".into(),
    }
}

/// Whether `evp` matches the single rule `criteria`, and whether it
/// matches the same rule with `neg` negated.
fn one(criteria: &str, neg: &str, evp: &Envelope) -> (bool, bool) {
    let yes = |rule: &str| {
        let c = conf(&format!("match {rule} action a\n"));
        match ruleset_match_conf(&c, evp) {
            Ok(m) => m.is_some(),
            Err(Tempfail) => panic!("{rule}: tempfail"),
        }
    };
    (
        yes(criteria),
        yes(&criteria.replacen(neg, &format!("!{neg}"), 1)),
    )
}

#[test]
fn from_any_matches_every_source() {
    assert_eq!(one("from any for any", "from", &evp()), (true, false));
    assert_eq!(
        one("from any for any", "from", &from("local")),
        (true, false)
    );
}

#[test]
fn from_local_is_the_socket_and_this_hosts_addresses() {
    for local in ["local", "127.0.0.1", "::1", "192.0.2.10"] {
        assert_eq!(
            one("from local for any", "from", &from(local)),
            (true, false),
            "{local}"
        );
    }
    assert_eq!(
        one("from local for any", "from", &from("192.0.2.99")),
        (false, true)
    );
    // No rule at all defaults to from local for local.
    let c = conf("match action a\n");
    let local = Envelope {
        dest: Mailaddr::new("root", "mx.example.org"),
        ..from("local")
    };
    assert_eq!(action(&c, &local), "a");
    assert_eq!(
        action(
            &c,
            &Envelope {
                ss: evp().ss,
                ..local
            }
        ),
        "none"
    );
}

#[test]
fn from_socket_is_the_unix_socket_only() {
    assert_eq!(
        one("from socket for any", "from", &from("local")),
        (true, false)
    );
    assert_eq!(
        one("from socket for any", "from", &from("127.0.0.1")),
        (false, true)
    );
}

#[test]
fn from_src_matches_networks() {
    let rule = "from src { 192.0.2.0/25, \"2001:db8::/32\" } for any";
    assert_eq!(one(rule, "from", &from("192.0.2.99")), (true, false));
    assert_eq!(one(rule, "from", &from("192.0.2.200")), (false, true));
    assert_eq!(one(rule, "from", &from("2001:db8::5")), (true, false));
    assert_eq!(one(rule, "from", &from("local")), (false, true));
    let rule = "from src regex \"^192\\.0\\.2\\.9\" for any";
    assert_eq!(one(rule, "from", &from("192.0.2.99")), (true, false));
    assert_eq!(one(rule, "from", &from("192.0.2.1")), (false, true));
}

#[test]
fn from_rdns_without_a_table_asks_for_a_name() {
    let named = Envelope {
        hostname: "mail.example.net".into(),
        ..evp()
    };
    assert_eq!(one("from rdns for any", "from", &named), (true, false));
    assert_eq!(one("from rdns for any", "from", &evp()), (false, true));
}

#[test]
fn from_rdns_tables_compare_names_whole_and_never_match_without_one() {
    let named = Envelope {
        hostname: "MAIL.example.net".into(),
        ..evp()
    };
    let rule = "from rdns { mail.example.net } for any";
    assert_eq!(one(rule, "from", &named), (true, false));
    // Without a reverse name, neither the rule nor its negation match.
    assert_eq!(one(rule, "from", &evp()), (false, false));
    // Looked up as netaddr, as in C: wildcards do not work here.
    let rule = "from rdns { \"*.example.net\" } for any";
    assert_eq!(one(rule, "from", &named), (false, true));
    let rule = "from rdns regex \"\\.example\\.net$\" for any";
    assert_eq!(one(rule, "from", &named), (true, false));
}

#[test]
fn internal_envelopes_come_from_local() {
    let internal = Envelope {
        flags: EnvelopeFlags::EF_INTERNAL,
        ..evp()
    };
    assert_eq!(one("from any for any", "from", &internal), (true, false));
    assert_eq!(one("from local for any", "from", &internal), (true, false));
    assert_eq!(
        one("from src { 192.0.2.0/24 } for any", "from", &internal),
        (false, true)
    );
    // Rules with no source table never apply to them, negated or not.
    assert_eq!(
        one("from socket for any", "from", &internal),
        (false, false)
    );
    assert_eq!(one("from rdns for any", "from", &internal), (false, false));
}

#[test]
fn for_matches_the_destination_domain() {
    let to = |d: &str| Envelope {
        dest: Mailaddr::new("alice", d),
        ..evp()
    };
    let rule = "from any for domain { example.org, \"*.example.net\" }";
    assert_eq!(one(rule, "for", &to("EXAMPLE.org")), (true, false));
    assert_eq!(one(rule, "for", &to("mx.example.net")), (true, false));
    assert_eq!(one(rule, "for", &to("example.net")), (false, true));
    let rule = "from any for domain regex \"^ex.*org$\"";
    assert_eq!(one(rule, "for", &to("example.org")), (true, false));
    assert_eq!(one(rule, "for", &to("mx.example.org")), (false, true));
    for local in ["localhost", "mx.example.org", "127.0.0.1"] {
        assert_eq!(
            one("from any for local", "for", &to(local)),
            (true, false),
            "{local}"
        );
    }
    assert_eq!(
        one("from any for local", "for", &to("example.org")),
        (false, true)
    );
    assert_eq!(
        one("from any for any", "for", &to("example.org")),
        (true, false)
    );
}

#[test]
fn for_rcpt_to_matches_the_recipient() {
    let to = |u: &str| Envelope {
        dest: Mailaddr::new(u, "example.org"),
        ..evp()
    };
    // The negation goes before `for` and lands on rcpt-to.
    let rule = "from any for rcpt-to { alice@example.org }";
    assert_eq!(one(rule, "for", &to("alice+news")), (true, false));
    assert_eq!(one(rule, "for", &to("bob")), (false, true));
}

#[test]
fn tags_match_whole_strings_or_regexes() {
    let tagged = |t: &str| Envelope {
        tag: t.into(),
        ..evp()
    };
    assert_eq!(
        one("from any for any tag t1", "tag", &tagged("T1")),
        (true, false)
    );
    assert_eq!(
        one("from any for any tag t1", "tag", &tagged("t12")),
        (false, true)
    );
    assert_eq!(
        one("from any for any tag t1", "tag", &tagged("")),
        (false, true)
    );
    let rule = "from any for any tag regex \"^t[0-9]+$\"";
    assert_eq!(one(rule, "tag", &tagged("t12")), (true, false));
}

#[test]
fn helo_matches_domains() {
    let rule = "from any for any helo \"*.example.net\"";
    assert_eq!(one(rule, "helo", &evp()), (true, false));
    let rule = "from any for any helo { example.net }";
    assert_eq!(one(rule, "helo", &evp()), (false, true));
    let rule = "from any for any helo regex \"^client\\.\"";
    assert_eq!(one(rule, "helo", &evp()), (true, false));
}

#[test]
fn auth_needs_an_authenticated_session_and_a_listed_user() {
    let user = |u: &str| Envelope {
        flags: EnvelopeFlags::EF_AUTHENTICATED,
        username: u.into(),
        ..evp()
    };
    assert_eq!(one("from any for any auth", "auth", &evp()), (false, true));
    assert_eq!(
        one("from any for any auth", "auth", &user("bob")),
        (true, false)
    );
    let rule = "from any for any auth { bob }";
    assert_eq!(one(rule, "auth", &user("BOB")), (true, false));
    assert_eq!(one(rule, "auth", &user("alice")), (false, true));
    assert_eq!(one(rule, "auth", &evp()), (false, true));
    // A user name with an @ is looked up as an address.
    let rule = "from any for any auth { \"@example.com\" }";
    assert_eq!(one(rule, "auth", &user("bob@example.com")), (true, false));
    assert_eq!(one(rule, "auth", &user("bob@example.org")), (false, true));
    let rule = "from any for any auth regex \"^b\"";
    assert_eq!(one(rule, "auth", &user("bob")), (true, false));
    // `from auth` matches any source and puts the criterion on auth.
    assert_eq!(
        one("from auth for any", "from", &user("bob")),
        (true, false)
    );
    assert_eq!(
        one("from auth { bob } for any", "from", &user("alice")),
        (false, true)
    );
}

#[test]
fn tls_matches_sessions_under_tls() {
    let secure = Envelope {
        flags: EF_SECURE,
        ..evp()
    };
    assert_eq!(one("from any for any tls", "tls", &secure), (true, false));
    assert_eq!(one("from any for any tls", "tls", &evp()), (false, true));
}

#[test]
fn mail_from_matches_the_sender() {
    let rule = "from any for any mail-from { \"@example.com\" }";
    assert_eq!(one(rule, "mail-from", &evp()), (true, false));
    let rule = "from any for any mail-from { alice@example.com }";
    assert_eq!(one(rule, "mail-from", &evp()), (false, true));
    let rule = "from mail-from regex \"^bob@\" for any";
    assert_eq!(one(rule, "from", &evp()), (true, false));
    // The null sender is "@", which only the catch-all matches.
    let bounce = Envelope {
        sender: Mailaddr::default(),
        ..evp()
    };
    let rule = "from any for any mail-from { \"@\" }";
    assert_eq!(one(rule, "mail-from", &bounce), (true, false));
    let rule = "from any for any mail-from { \"@example.com\" }";
    assert_eq!(one(rule, "mail-from", &bounce), (false, true));
}

#[test]
fn rcpt_to_matches_the_recipient() {
    let rule = "from any for any rcpt-to { alice }";
    assert_eq!(one(rule, "rcpt-to", &evp()), (true, false));
    let rule = "from any for any rcpt-to regex \"@example\\.net$\"";
    assert_eq!(one(rule, "rcpt-to", &evp()), (false, true));
}

#[test]
fn the_first_matching_rule_wins_and_reject_rules_are_returned() {
    let c = conf(
        "match from src { 192.0.2.66 } for any reject\n\
         match from any for domain { example.org } action a\n\
         match from any for any action b\n",
    );
    assert_eq!(action(&c, &evp()), "a");
    let other = Envelope {
        dest: Mailaddr::new("x", "example.net"),
        ..evp()
    };
    assert_eq!(action(&c, &other), "b");
    assert_eq!(action(&c, &from("192.0.2.66")), "reject");
    let (i, _) = ruleset_match_conf(&c, &other).unwrap().unwrap();
    assert_eq!(i, 2);
    let c = conf("match from local for local action a\n");
    assert!(matches!(ruleset_match_conf(&c, &evp()), Ok(None)));
}

#[test]
fn a_lookup_error_tempfails_when_the_rule_gets_to_it() {
    use crate::sys::db::{Db, DbOpen, DbType};
    // A database there when the configuration is loaded and gone when
    // the rules look into it: every lookup fails.
    let conf_gone = |rules: &str| {
        let dir = crate::sys::testing::TempDir::new("ruleset-db");
        let path = dir.path("d.db");
        Db::open(&path, DbOpen::Truncate { mode: 0o600 }, DbType::Hash)
            .unwrap()
            .close()
            .unwrap();
        conf(&format!("table d db:{path}\n{rules}"))
    };
    let c = conf_gone(
        "match from socket for domain <d> action a\n\
         match from any for domain <d> action a\n\
         match from any for any action b\n",
    );
    // Rule 1 fails on `from` before its table is asked.
    assert_eq!(action(&c, &from("local")), "tempfail");
    assert_eq!(action(&c, &evp()), "tempfail");
    let c = conf_gone(
        "match from any for any action b\n\
         match from any for domain <d> action a\n",
    );
    assert_eq!(action(&c, &evp()), "b");
}

#[test]
fn overlong_keys_and_missing_tables_tempfail() {
    let c = conf("match from any for any tag t1 action a\n");
    let long = Envelope {
        tag: "t".repeat(1024),
        ..evp()
    };
    assert_eq!(action(&c, &long), "tempfail");

    let mut c = conf("match from any for any action a\n");
    c.sc_rules[0].flag_smtp_helo = 1;
    c.sc_rules[0].table_smtp_helo = Some("nosuchtable".into());
    assert_eq!(action(&c, &evp()), "tempfail");
}
