//! table.c: creating and checking tables, their lookups on parsed
//! configurations, and the match helpers.

use super::*;

#[test]
fn inline_list_then_check_use() {
    let mut t = table_create("static", "t", None).unwrap();
    assert!(table_add(&mut t, "Example.ORG", None));
    assert_eq!(t.t_type, TableType::T_LIST);
    // A list cannot take a value afterwards.
    assert!(!table_add(&mut t, "k", Some("v")));
    assert!(table_check_use(
        &t,
        TableType::T_DYNAMIC | TableType::T_LIST,
        TableService::K_DOMAIN
    ));
    assert!(!table_check_use(
        &t,
        TableType::T_DYNAMIC | TableType::T_HASH,
        TableService::K_ALIAS
    ));
    // Keys are stored lowercased, as lookups lowercase theirs.
    assert_eq!(t.static_entries(), [("example.org".to_string(), None)]);
}

#[test]
fn file_is_static_and_unknown_backends_are_refused() {
    assert_eq!(table_backend_lookup("file").unwrap().name, "static");
    assert!(table_create("nosuchbackend", "t", None).is_err());
    let t = table_create("getpwnam", "t", None).unwrap();
    assert_eq!(t.t_type, TableType::T_DYNAMIC);
    assert_eq!(t.t_services, TableService::K_USERINFO);
}

#[test]
fn service_names() {
    assert_eq!(
        table_service_name(TableService::K_MAILADDRMAP),
        "mailaddrmap"
    );
    assert_eq!(table_service_name(TableService::empty()), "none");
}

// ---- lookups -----------------------------------------------------------

/// Enough for a configuration to load.
const MIN: &str = "action a mbox\nmatch for local action a\n";

fn config(tables: &str, files: &[(&str, &str)]) -> Smtpd {
    table_test_config(&format!("{tables}{MIN}"), files)
}

fn lookup(c: &Smtpd, t: &str, kind: TableService, key: &str) -> io::Result<Option<Lookup>> {
    table_lookup(c, c.table_find(t).unwrap(), kind, key)
}

fn matches(c: &Smtpd, t: &str, kind: TableService, key: &str) -> io::Result<bool> {
    table_match(c, c.table_find(t).unwrap(), kind, key)
}

use TableService as K;

#[test]
fn aliases_become_expansions_and_bad_lines_are_errors() {
    let files = [(
        "aliases",
        "root: alice, |/usr/bin/vacation, bob@example.org\nbad: a b\nempty: \"\n",
    )];
    let c = config("table aliases file:$DIR/aliases\n", &files);
    let Some(Lookup::Expand(e)) = lookup(&c, "aliases", K::K_ALIAS, "ROOT").unwrap() else {
        panic!("no expansion");
    };
    assert_eq!(
        crate::lka::expand::expand_to_text(&e, 1024).unwrap(),
        "alice, /usr/bin/vacation, bob@example.org"
    );
    assert!(lookup(&c, "aliases", K::K_ALIAS, "bad").is_err());
    assert!(lookup(&c, "aliases", K::K_ALIAS, "empty").is_err());
    assert!(lookup(&c, "aliases", K::K_ALIAS, "nobody")
        .unwrap()
        .is_none());
    assert!(matches(&c, "aliases", K::K_ALIAS, "root").unwrap());
    assert!(!matches(&c, "aliases", K::K_ALIAS, "nobody").unwrap());
}

#[test]
fn credentials_are_user_password_or_a_password_for_the_key() {
    let files = [(
        "creds",
        "bob bob@example.org:secret\n\
         alice $2b$10$hIJ4QfMcp.90nJwKqGbKM.MybArjHOTpEtoTV\n\
         nouser :secret\nnopass bob:\nshort ab\n",
    )];
    let c = config("table creds file:$DIR/creds\n", &files);
    let creds = |k: &str| match lookup(&c, "creds", K::K_CREDENTIALS, k) {
        Ok(Some(Lookup::Creds(cr))) => Ok((cr.username, cr.password)),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        creds("Bob").unwrap(),
        ("bob@example.org".into(), "secret".into())
    );
    assert_eq!(
        creds("alice").unwrap(),
        (
            "alice".into(),
            "$2b$10$hIJ4QfMcp.90nJwKqGbKM.MybArjHOTpEtoTV".into()
        )
    );
    for bad in ["nouser", "nopass", "short"] {
        assert!(creds(bad).is_err(), "{bad}");
    }
}

#[test]
fn each_service_parses_its_values() {
    let files = [(
        "map",
        "dom relay.example.net\n\
         net 10.0.0.0/8\n\
         joe 1000:100:/home/virtual/joe\n\
         src [IPv6:2001:db8::1]\n\
         addr bob@example.org\n\
         senders bob@example.org, @example.net\n\
         relay smtp+tls://mx.example.net:587\n\
         127.0.0.1 localhost\n\
         [::1] localhost6\n",
    )];
    let c = config("table map file:$DIR/map\n", &files);
    let l = |kind, key| lookup(&c, "map", kind, key).unwrap().unwrap();
    assert!(matches!(l(K::K_DOMAIN, "dom"), Lookup::Domain(d) if d.name == "relay.example.net"));
    let Lookup::Netaddr(n) = l(K::K_NETADDR, "net") else {
        panic!()
    };
    assert_eq!((n.ss.to_string(), n.bits), ("10.0.0.0".into(), 8));
    assert_eq!(
        match l(K::K_USERINFO, "joe") {
            Lookup::Userinfo(u) => u,
            other => panic!("{other:?}"),
        },
        Userinfo {
            username: "joe".into(),
            directory: "/home/virtual/joe".into(),
            uid: 1000,
            gid: 100,
        }
    );
    assert!(
        matches!(l(K::K_SOURCE, "src"), Lookup::Source(s) if s.addr == "[2001:db8::1]:0".parse().unwrap())
    );
    assert!(
        matches!(l(K::K_MAILADDR, "addr"), Lookup::Mailaddr(m) if m == Mailaddr::new("bob", "example.org"))
    );
    assert!(matches!(
        l(K::K_MAILADDRMAP, "senders"),
        Lookup::Maddrmap(v) if v == [Mailaddr::new("bob", "example.org"), Mailaddr::new("", "example.net")]
    ));
    assert!(
        matches!(l(K::K_RELAYHOST, "relay"), Lookup::Relayhost(r) if r == "smtp+tls://mx.example.net:587")
    );
    let Lookup::Addrname(a) = l(K::K_ADDRNAME, "127.0.0.1") else {
        panic!()
    };
    assert_eq!(
        (a.addr, a.name.as_str()),
        ("127.0.0.1:0".parse().unwrap(), "localhost")
    );
    let Lookup::Addrname(a) = l(K::K_ADDRNAME, "[::1]") else {
        panic!()
    };
    assert_eq!(
        (a.addr, a.name.as_str()),
        ("[::1]:0".parse().unwrap(), "localhost6")
    );
}

#[test]
fn values_that_do_not_parse_are_lookup_errors() {
    let files = [(
        "map",
        &*format!(
            "dom {}\nnet nope\njoe 1000:/home/joe\nsrc 300.1.1.1\nsenders a@b, \"c\nnotaddr 1.2.3.4 x\n",
            "d".repeat(256)
        ),
    )];
    let c = config("table map file:$DIR/map\n", &files);
    for (kind, key) in [
        (K::K_DOMAIN, "dom"),
        (K::K_NETADDR, "net"),
        (K::K_USERINFO, "joe"),
        (K::K_SOURCE, "src"),
        (K::K_MAILADDRMAP, "senders"),
        // The key of an addrname must be an address.
        (K::K_ADDRNAME, "notaddr"),
        // String, regex and auth only match.
        (K::K_STRING, "dom"),
        (K::K_REGEX, "dom"),
    ] {
        let e = lookup(&c, "map", kind, key).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{kind:?} {key}");
    }
    assert!(matches(&c, "map", K::K_STRING, "dom").unwrap());
}

#[test]
fn list_entries_match_but_have_no_value() {
    let c = config("table l { example.org }\n", &[]);
    assert!(matches(&c, "l", K::K_DOMAIN, "EXAMPLE.org").unwrap());
    let e = lookup(&c, "l", K::K_DOMAIN, "example.org").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn keys_too_long_and_backends_without_lookups_are_errors() {
    let c = config("table l { example.org }\n", &[]);
    let e = matches(&c, "l", K::K_DOMAIN, &"a".repeat(1024)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert!(!matches(&c, "l", K::K_DOMAIN, &"a".repeat(1023)).unwrap());

    // The proc backend has no lookup yet: ENOTSUP, as C for a backend
    // without a lookup hook.
    let t = table_create("proc", "d", Some("/nonexistent")).unwrap();
    let e = table_match(&c, &t, K::K_DOMAIN, "example.org").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTSUP));
    let mut st = TableState::default();
    let e = table_fetch(&mut st, &t, K::K_SOURCE).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTSUP));
}

#[test]
fn keys_match_per_service_first_in_key_order() {
    let c = config(
        "table doms { \"*.example.org\" = wild, \"mx.example.org\" = exact, example.net = net }\n\
         table nets { 192.168.0.0/16, \"[2001:db8::/32]\", \"local\" }\n\
         table addrs { \"@example.org\" = \"dom\", \"bob\" = usr, \"alice+x@example.net\" = full }\n\
         table res { \"^[A-Z]+$\", \"(?i)^mx[0-9]\\.\" }\n\
         table strs { \"*.example.org\" }\n",
        &[],
    );
    let val = |t: &str, kind, key| match lookup(&c, t, kind, key).unwrap() {
        Some(Lookup::Domain(d)) => Some(d.name),
        Some(Lookup::Mailaddr(m)) => Some(m.user),
        None => None,
        Some(other) => panic!("{other:?}"),
    };
    // "*.example.org" sorts before "mx.example.org" and wins.
    assert_eq!(
        val("doms", K::K_DOMAIN, "mx.example.org").as_deref(),
        Some("wild")
    );
    assert_eq!(
        val("doms", K::K_DOMAIN, "Example.NET").as_deref(),
        Some("net")
    );
    assert_eq!(val("doms", K::K_DOMAIN, "example.org"), None);
    assert_eq!(val("doms", K::K_DOMAIN, "a.b.example.org"), None);

    let m = |t: &str, kind, key| matches(&c, t, kind, key).unwrap();
    assert!(m("nets", K::K_NETADDR, "192.168.4.5"));
    assert!(!m("nets", K::K_NETADDR, "192.169.0.1"));
    assert!(m("nets", K::K_NETADDR, "[2001:DB8::25]"));
    assert!(!m("nets", K::K_NETADDR, "[2001:db9::25]"));
    assert!(m("nets", K::K_NETADDR, "LOCAL"));

    assert!(m("addrs", K::K_MAILADDR, "carol+tag@example.org"));
    assert!(m("addrs", K::K_MAILADDR, "bob+tag@anywhere.example"));
    assert!(m("addrs", K::K_MAILADDR, "Alice+X@example.net"));
    assert!(!m("addrs", K::K_MAILADDR, "alice@example.net"));
    assert!(!m("addrs", K::K_MAILADDR, "carol@example.net"));

    // Table keys are lowercased when loaded, regular expressions too:
    // "^[A-Z]+$" is stored as "^[a-z]+$", and lookup keys are lowercased.
    assert_eq!(
        c.table_find("res")
            .unwrap()
            .static_entries()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        ["(?i)^mx[0-9]\\.", "^[a-z]+$"]
    );
    assert!(m("res", K::K_REGEX, "ABC"));
    assert!(!m("res", K::K_REGEX, "ab1"));
    assert!(m("res", K::K_REGEX, "MX1.example.org"));

    // Strings compare whole: no wildcard.
    assert!(m("strs", K::K_STRING, "*.example.org"));
    assert!(!m("strs", K::K_STRING, "a.example.org"));
}

#[test]
fn the_sub_address_delimiter_comes_from_the_configuration() {
    let c = config(
        "smtp sub-addr-delim \"-\"\ntable addrs { bob@example.org }\n",
        &[],
    );
    assert!(matches(&c, "addrs", K::K_MAILADDR, "bob-lists@example.org").unwrap());
    assert!(!matches(&c, "addrs", K::K_MAILADDR, "bob+lists@example.org").unwrap());
}

#[test]
fn fetches_go_round_the_keys() {
    let c = config(
        "table srcs { 192.0.2.2, 192.0.2.1, \"[::1]\" }\ntable empty file:$DIR/empty\n",
        &[("empty", "")],
    );
    let t = c.table_find("srcs").unwrap();
    let mut st = TableState::default();
    let mut got = Vec::new();
    for _ in 0..4 {
        match table_fetch(&mut st, t, K::K_SOURCE).unwrap() {
            Some(Lookup::Source(s)) => got.push(s.addr.ip().to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, ["192.0.2.1", "192.0.2.2", "::1", "192.0.2.1"]);
    // Each table has its own turn.
    let empty = c.table_find("empty").unwrap();
    assert!(table_fetch(&mut st, empty, K::K_SOURCE).unwrap().is_none());
    // A value that needs its key cannot be fetched.
    assert!(table_fetch(&mut st, t, K::K_ADDRNAME).is_err());
}

#[test]
fn getpwnam_serves_userinfo_of_lowercased_names() {
    let c = config("", &[]);
    let t = c.table_find("<getpwnam>").unwrap();
    let Some(Lookup::Userinfo(u)) = table_lookup(&c, t, K::K_USERINFO, "ROOT").unwrap() else {
        panic!("no root");
    };
    let pw = crate::sys::process::getpwnam("root").unwrap().unwrap();
    assert_eq!(
        (u.username.as_str(), u.uid, u.gid, u.directory.as_str()),
        ("root", 0, pw.gid, pw.dir.as_str())
    );
    assert!(table_lookup(&c, t, K::K_USERINFO, "nosuchuser-smtpd-test")
        .unwrap()
        .is_none());
    assert!(table_match(&c, t, K::K_USERINFO, "root").unwrap());
    assert!(table_match(&c, t, K::K_STRING, "root").is_err());
}

// ---- match helpers -----------------------------------------------------

#[test]
fn domains_match_with_wildcards() {
    assert!(table_domain_match("mx.example.org", "*.example.org"));
    assert!(table_domain_match("MX.Example.Org", "mx.example.org"));
    assert!(!table_domain_match("example.org", "*.example.org"));
    assert!(!table_domain_match("mx.example.org", "example.org"));
}

#[test]
fn netaddrs_match_masks_of_the_same_family() {
    let m = table_netaddr_match;
    assert!(m("local", "local"));
    assert!(m("192.0.2.1", "192.0.2.1"));
    assert!(m("192.0.2.77", "192.0.2.0/24"));
    assert!(m("192.0.2.77", "192.0.2"));
    assert!(!m("192.0.3.77", "192.0.2.0/24"));
    assert!(m("10.15.255.255", "10.0.0.0/12"));
    assert!(!m("10.16.0.0", "10.0.0.0/12"));
    assert!(m("203.0.113.9", "0.0.0.0/0"));
    assert!(!m("[::1]", "0.0.0.0/0"));
    assert!(m("[::ffff:1]", "::/0"));
    assert!(m("[2001:db8:0:7::1]", "2001:db8::/61"));
    assert!(!m("[2001:db8:0:8::1]", "2001:db8::/61"));
    assert!(m("[2001:db8::1]", "[IPv6:2001:db8::1]"));
    assert!(!m("[2001:db8::2]", "[2001:db8::1]"));
    assert!(!m("192.0.2.1", "[::ffff:192.0.2.1]"));
    assert!(!m("", "0.0.0.0/0"));
    assert!(!m("mx.example.org", "0.0.0.0/0"));
    assert!(m("mx.example.org", "MX.example.org"));
}

#[test]
fn mailaddrs_match_users_domains_or_both() {
    let m = |a, b| table_mailaddr_match(a, b, '+');
    assert!(m("bob+x@example.org", "bob@example.org"));
    assert!(m("bob@example.org", "@example.org"));
    assert!(m("bob@mx.example.org", "bob@*.example.org"));
    assert!(!m("bob@example.org", "bob@*.example.org"));
    assert!(m("bob@example.org", "bob"));
    assert!(m("bob@example.org", "bob@"));
    assert!(m("@", "@"));
    assert!(m("anyone@anywhere", "@"));
    assert!(!m("bob@example.org", "alice@example.org"));
    assert!(!m(&"u".repeat(300), "@"));
}

#[test]
fn regexes_are_extended_unanchored_and_optionally_caseless() {
    assert!(table_regex_match("mail.example.org", "example\\.org$"));
    assert!(table_regex_match("abc", "b"));
    assert!(!table_regex_match("ABC", "^abc$"));
    assert!(table_regex_match("ABC", "(?i)^abc$"));
    assert!(table_regex_match("aaa", "^a{3}$"));
    assert!(!table_regex_match("abc", "("));
}

#[test]
fn sockaddrs_parse_as_the_source_and_addrname_tables_write_them() {
    let p = |s| parse_sockaddr(s);
    assert_eq!(p("192.0.2.1"), Some("192.0.2.1:0".parse().unwrap()));
    assert_eq!(p("[2001:db8::1]"), Some("[2001:db8::1]:0".parse().unwrap()));
    assert_eq!(
        p("ipv6:2001:db8::1"),
        Some("[2001:db8::1]:0".parse().unwrap())
    );
    assert_eq!(p("[IPv6:::1]junk"), Some("[::1]:0".parse().unwrap()));
    let SocketAddr::V6(a) = p("fe80::1%7").unwrap() else {
        panic!()
    };
    assert_eq!(a.scope_id(), 7);
    let SocketAddr::V6(a) = p("2001:db8::1%12").unwrap() else {
        panic!()
    };
    assert_eq!(a.scope_id(), 12);
    assert_eq!(p("2001:db8::1%eth0"), None);
    for bad in ["", "nope", "192.0.2", "010.0.0.1", "[::g]"] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
}
