//! expand.c: the aliases(5) forms expand_line() accepts and refuses, and
//! how the tree tells destinations apart.

use super::*;

fn line(s: &str, do_includes: bool) -> Option<Expand> {
    let mut e = Expand::default();
    expand_line(&mut e, s, do_includes).then_some(e)
}

/// The nodes of `s` as `type:value`, in tree order.
fn nodes(s: &str) -> Vec<String> {
    let e = line(s, true).unwrap_or_else(|| panic!("{s:?} refused"));
    e.iter()
        .map(|xn| format!("{:?}:{}", xn.type_, expandnode_to_text(xn).unwrap()))
        .collect()
}

fn username(u: &str) -> ExpandNode {
    ExpandNode::new(ExpandType::Username, ExpandU::Text(u.into()))
}

fn address(u: &str, d: &str) -> ExpandNode {
    ExpandNode::new(ExpandType::Address, ExpandU::Mailaddr(Mailaddr::new(u, d)))
}

#[test]
fn every_form_of_an_alias_line_in_tree_order() {
    assert_eq!(
        nodes(
            "error:550 no such user, bob@example.org, :include:/etc/mail/list, \
             \"|/usr/bin/vacation bob\", /var/mail/archive, alice"
        ),
        [
            "Username:alice",
            "Filename:/var/mail/archive",
            "Filter:/usr/bin/vacation bob",
            "Include:/etc/mail/list",
            "Address:bob@example.org",
            "Error:550 no such user",
        ]
    );
}

#[test]
fn includes_are_skipped_unless_asked_for() {
    let e = line("alice, include:/etc/mail/list, :INCLUDE:/x", false).unwrap();
    assert_eq!(e.nb_nodes, 1);
    assert_eq!(e.iter().next().unwrap().user(), "alice");
    assert_eq!(nodes("INCLUDE:/etc/mail/list"), ["Include:/etc/mail/list"]);
}

#[test]
fn commands_plain_or_quoted_keep_their_commas_in_quotes() {
    assert_eq!(nodes("|/bin/cat"), ["Filter:/bin/cat"]);
    assert_eq!(
        nodes("\"|/usr/bin/x -a, -b\""),
        ["Filter:/usr/bin/x -a, -b"]
    );
    // Single quotes protect commas but do not make a command.
    assert!(line("'|/usr/bin/x -a, -b'", true).is_none());
    // Without quotes the comma splits and "-b" is a user name.
    assert_eq!(
        nodes("|/usr/bin/x -a, -b"),
        ["Username:-b", "Filter:/usr/bin/x -a"]
    );
}

#[test]
fn backslashes_escape_the_next_character_and_are_dropped() {
    assert_eq!(nodes("/tmp/a\\,b"), ["Filename:/tmp/a,b"]);
    assert!(line("alice\\", true).is_none());
}

#[test]
fn open_quotes_and_overlong_lines_are_refused() {
    assert!(line("\"|/bin/cat", true).is_none());
    assert!(line("'alice", true).is_none());
    assert!(line(&format!("/{}", "x".repeat(crate::defines::LINE_MAX)), true).is_none());
}

#[test]
fn empty_items_are_skipped() {
    assert_eq!(
        nodes(" alice,, , bob ,"),
        ["Username:alice", "Username:bob"]
    );
    assert_eq!(line("", true).unwrap().nb_nodes, 0);
}

#[test]
fn errors_need_a_4xx_or_5xx_code_and_a_message() {
    assert_eq!(nodes(":ERROR:450 try later"), ["Error:450 try later"]);
    for bad in [
        "error:550",
        "error:650 no",
        "error:550 -no",
        "error:55x no",
        "error:550-no",
    ] {
        assert!(line(bad, true).is_none(), "{bad:?}");
    }
}

#[test]
fn includes_and_files_must_be_absolute() {
    assert!(line(":include:etc/list", true).is_none());
    assert!(line(":include: /etc/list", true).is_none());
    assert!(line("mail/archive", true).is_none());
}

#[test]
fn addresses_and_user_names() {
    assert_eq!(nodes("a@b"), ["Address:a@b"]);
    assert_eq!(
        nodes("first.last+tag!#$%*/?|^{}`~&=_-@mail-1.example.org"),
        ["Address:first.last+tag!#$%*/?|^{}`~&=_-@mail-1.example.org"]
    );
    // A quote opens a quoted part for the splitter, even in an address.
    assert!(line("o'brien@example.org", true).is_none());
    assert_eq!(
        nodes("o'b'rien@example.org"),
        ["Address:o'b'rien@example.org"]
    );
    assert_eq!(nodes("Bob_2.x-y+z"), ["Username:Bob_2.x-y+z"]);
    for bad in [
        "@example.org",
        "bob@",
        "b b@example.org",
        "b\"b@example.org",
        "bob!x",
    ] {
        assert!(line(bad, true).is_none(), "{bad:?}");
    }
    assert!(line(&"u".repeat(256), true).is_none());
    assert_eq!(line(&"u".repeat(255), true).unwrap().nb_nodes, 1);
}

#[test]
fn an_address_with_a_bad_domain_becomes_its_user_as_in_opensmtpd() {
    assert_eq!(nodes("bob@[192.0.2.1]"), ["Username:bob"]);
    assert_eq!(nodes("bob@exa_mple.org"), ["Username:bob"]);
    assert_eq!(nodes("bob@a@b"), ["Username:bob"]);
}

#[test]
fn duplicates_are_dropped_but_case_counts() {
    let e = line("alice, alice, Alice, bob@x.org, bob@x.org", true).unwrap();
    assert_eq!(e.nb_nodes, 3);
    assert_eq!(expand_to_text(&e, 1024).unwrap(), "Alice, alice, bob@x.org");
    assert_eq!(expand_to_text(&e, 23), None);
    assert!(expand_to_text(&e, 24).is_some());
}

#[test]
fn partial_lines_keep_what_came_before_a_bad_item() {
    let mut e = Expand::default();
    assert!(!expand_line(&mut e, "alice, bad item, bob", true));
    assert_eq!(e.nb_nodes, 1);
}

#[test]
fn nodes_take_the_rule_parent_and_depth_of_the_expand() {
    let mut e = Expand::with_queue();
    e.rule = Some(3);
    let root = expand_insert(&mut e, address("bob", "example.org")).unwrap();
    e.parent = Some(root);
    let user = expand_insert(&mut e, username("bob")).unwrap();
    let n = e.node(user).unwrap();
    assert_eq!(
        (n.rule, n.parent, n.depth, n.sameuser),
        (Some(3), Some(root), 1, false)
    );

    // A user forwarding to itself.
    e.parent = Some(user);
    let same = expand_insert(&mut e, username("bob")).unwrap();
    let n = e.node(same).unwrap();
    assert!(n.sameuser);
    assert_eq!(n.depth, 2);
    assert_eq!(
        e.queue
            .as_ref()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [root, user, same]
    );
    assert_eq!(expand_lookup(&e, &username("nobody")), None);
}

#[test]
fn one_destination_per_recipient_address() {
    let mut e = Expand::default();
    let a = expand_insert(&mut e, address("a", "example.org")).unwrap();
    let b = expand_insert(&mut e, address("b", "example.org")).unwrap();

    // The same user under two recipients: two destinations.
    e.parent = Some(a);
    let ua = expand_insert(&mut e, username("carol")).unwrap();
    e.parent = Some(b);
    let ub = expand_insert(&mut e, username("carol")).unwrap();
    assert_ne!(ua, ub);

    // Under one recipient, reached through two users: one.
    e.parent = Some(a);
    let alice = expand_insert(&mut e, username("alice")).unwrap();
    e.parent = Some(alice);
    assert_eq!(expand_insert(&mut e, username("carol")), None);

    // Files and commands are told apart by the user they run as.
    let file = ExpandNode::new(ExpandType::Filename, ExpandU::Text("/tmp/f".into()));
    e.parent = Some(alice);
    assert!(expand_insert(&mut e, file.clone()).is_some());
    e.parent = Some(ua);
    assert!(expand_insert(&mut e, file.clone()).is_some());
    e.parent = Some(ua);
    assert_eq!(expand_insert(&mut e, file.clone()), None);
    e.parent = Some(a);
    assert!(expand_insert(&mut e, file).is_some(), "no user above");
    assert_eq!(e.nb_nodes, 8);
}

#[test]
fn clearing_empties_the_tree_and_the_queue() {
    let mut e = Expand::with_queue();
    e.rule = Some(0);
    let root = expand_insert(&mut e, address("a", "b")).unwrap();
    e.parent = Some(root);
    expand_insert(&mut e, username("c"));
    expand_clear(&mut e);
    assert_eq!(e.iter().count(), 0);
    assert!(e.queue.as_ref().unwrap().is_empty());
    assert_eq!((e.nb_nodes, e.rule, e.parent), (2, Some(0), None));
}

#[test]
fn the_union_seen_as_a_user_or_an_address() {
    assert_eq!(address("a", "b").user(), "a");
    assert_eq!(username("bob").mailaddr(), Mailaddr::new("bob", ""));
    assert_eq!(
        expandnode_info(&username("bob")).unwrap(),
        "username:bob[parent=none, rule=none]"
    );
    assert_eq!(
        expandnode_info(&ExpandNode::new(
            ExpandType::Invalid,
            ExpandU::Text("x".into())
        )),
        None
    );
}
