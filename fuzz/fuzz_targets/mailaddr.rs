//! Fuzzes the mail address parsers: smtp_mailaddr() (the address of a
//! MAIL FROM or RCPT TO line), text_to_mailaddr() (addresses in the
//! spool and in tables) and mailaddr_line() (lists in tables). Nothing
//! may panic. An address smtp_mailaddr() accepts is valid by the rules
//! it claims (an atom-dotted local part, a host name or an address
//! literal), holds no CR, LF, NUL or space, fits the C struct mailaddr
//! that crosses the process boundary, and survives the trip through
//! the text form the spool uses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::dispatcher::smtp_session::smtp_mailaddr;
use smtpd::util::mailaddr::{mailaddr_line, Mailaddr};
use smtpd::util::to::{mailaddr_to_text, text_to_mailaddr};
use smtpd::util::util::{valid_domainpart, valid_localpart};

fn check_layout(m: &Mailaddr) {
    let bytes = m.to_bytes().unwrap_or_else(|e| panic!("{e}: {m:?}"));
    assert_eq!(&Mailaddr::from_bytes(&bytes).unwrap(), m);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mailfrom in [true, false] {
        let Some((m, _args)) = smtp_mailaddr(text, mailfrom, "mx.example.org") else {
            continue;
        };
        let null_sender = mailfrom && m.user.is_empty() && m.domain.is_empty();
        if !null_sender {
            assert!(valid_localpart(&m.user), "{m:?}");
            assert!(valid_domainpart(&m.domain), "{m:?}");
        }
        for part in [&m.user, &m.domain] {
            assert!(!part.contains(['\r', '\n', '\0', ' ']), "{m:?}");
        }
        check_layout(&m);
        let line = mailaddr_to_text(&m).expect("an accepted address fits a line");
        assert_eq!(text_to_mailaddr(&line).as_ref(), Some(&m), "{line}");
    }
    if let Some(m) = text_to_mailaddr(text) {
        // What a table or the spool holds may be anything that fits.
        let _ = m.to_bytes();
    }
    let mut list = Vec::new();
    if mailaddr_line(&mut list, text) {
        for m in &list {
            let _ = m.to_bytes();
        }
    }
});
