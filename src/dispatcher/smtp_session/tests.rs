//! The session's pure parts: address parsing and header rewriting. The
//! dialogue itself is tested end to end (regress/smtp, tests/smtp.rs).

use super::*;

fn maddr(user: &str, domain: &str) -> Mailaddr {
    Mailaddr {
        user: user.into(),
        domain: domain.into(),
    }
}

#[test]
fn addresses_between_brackets_with_their_parameters() {
    let (m, args) = smtp_mailaddr("<a@example.org> SIZE=10 BODY=8BITMIME", true, "mx").unwrap();
    assert_eq!(m, maddr("a", "example.org"));
    assert_eq!(args, "SIZE=10 BODY=8BITMIME");
    // A local part alone gets the server's name.
    let (m, _) = smtp_mailaddr("<postmaster>", false, "mx.example.org").unwrap();
    assert_eq!(m, maddr("postmaster", "mx.example.org"));
    // The null sender, for MAIL FROM only.
    assert_eq!(smtp_mailaddr("<>", true, "mx").unwrap().0, maddr("", ""));
    assert!(smtp_mailaddr("<>", false, "mx").is_none());
    // A source route is dropped (RFC 5321 4.1.1.3).
    let (m, _) = smtp_mailaddr("<@a.example,@b.example:u@c.example>", false, "mx").unwrap();
    assert_eq!(m, maddr("u", "c.example"));
}

#[test]
fn addresses_smtpd_refuses() {
    for bad in [
        "a@example.org",
        "<a@example.org",
        "<;sleep 66;>",
        "<;sleep 66;@example.org>",
        "<a b@example.org>",
        "<\"a b\"@example.org>",
        "<a..b@example.org>",
        "<a@-example.org>",
        "<a@example.org.>",
        "<@example.org>",
        "<a@[300.1.1.1]>",
    ] {
        assert!(smtp_mailaddr(bad, true, "mx").is_none(), "{bad}");
    }
    // Address literals are domains.
    assert!(smtp_mailaddr("<a@[127.0.0.1]>", false, "mx").is_some());
    assert!(smtp_mailaddr("<a@[IPv6:::1]>", false, "mx").is_some());
}

fn append(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    header_append_domain_buffer(&mut b, b"mx.example.org");
    String::from_utf8(b).unwrap()
}

#[test]
fn unqualified_header_addresses_get_the_domain() {
    assert_eq!(append(" alice"), " alice@mx.example.org");
    assert_eq!(append(" Alice <alice>"), " Alice <alice@mx.example.org>");
    assert_eq!(
        append(" alice (the boss)"),
        " alice@mx.example.org (the boss)"
    );
    // Already qualified, a group, an empty address, or unreadable:
    // left alone.
    assert_eq!(append(" alice@example.com"), " alice@example.com");
    assert_eq!(append(" team: a, b;"), " team: a, b;");
    assert_eq!(append(" <>"), " <>");
    assert_eq!(append(" \"unterminated"), " \"unterminated");
    assert_eq!(append(" "), " ");
}

fn rewrite(s: &str, to: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    header_address_rewrite_buffer(&mut b, to.as_bytes());
    String::from_utf8(b).unwrap()
}

#[test]
fn masquerading_replaces_the_address_only() {
    assert_eq!(
        rewrite(" Alice <alice@old.example>", "a@new.example"),
        " Alice <a@new.example>"
    );
    assert_eq!(
        rewrite(" alice@old.example", "a@new.example"),
        " a@new.example"
    );
    assert_eq!(
        rewrite(" team: a@x, b@y;", "a@new.example"),
        " team: a@x, b@y;"
    );
}

#[test]
fn log_forms_of_addresses() {
    assert_eq!(mailaddr_text(&maddr("", "")), "");
    assert_eq!(mailaddr_text(&maddr("a", "b")), "a@b");
    assert_eq!(mailaddr_text(&maddr("a", "")), "a@");
    assert_eq!(rcpt_text(&maddr("a", "")), "a");
    assert_eq!(rcpt_text(&maddr("", "b")), "");
}
