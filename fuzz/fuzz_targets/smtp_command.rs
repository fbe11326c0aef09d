//! Fuzzes the SMTP command line as a client sends it: the input is a
//! stream of lines, cut as the session cuts them (at LF, a final CR
//! dropped, a NUL ending the line), split into command and arguments
//! by smtp_command_parse(), and HELO/EHLO, MAIL FROM and RCPT TO taken
//! by the very functions the session calls. Nothing may panic; every
//! reply goes out as one well-formed SMTP reply line; and whatever a command
//! leaves in the envelope dumps to the spool's text form and loads back
//! the same, with no CR, LF or NUL in any field (CVE-2020-8794 class).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::dispatcher::smtp_session::{
    smtp_command_parse, smtp_reply_line, smtp_tx_mail_from_parse, smtp_tx_rcpt_to_parse,
    SmtpCommand,
};
use smtpd::queue::envelope::{envelope_dump_buffer, envelope_load_buffer, Envelope};
use smtpd::util::util::{valid_domainpart, valid_smtp_response};

/// A refusal goes out as one reply line with a code the session may
/// send.
fn check_reply(reply: &str) {
    let line = smtp_reply_line(reply);
    assert!(valid_smtp_response(&line), "{reply:?}");
    assert!(!line.contains(|c: char| c.is_ascii_control()), "{reply:?}");
}

/// The envelope as the queue would store it, read back.
fn check_envelope(evp: &Envelope) {
    let text = envelope_dump_buffer(evp).unwrap_or_else(|e| panic!("{e}: {evp:?}"));
    assert!(!text.contains(['\r', '\0']));
    let back = envelope_load_buffer(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.sender, evp.sender, "{text}");
    assert_eq!(back.rcpt, evp.rcpt, "{text}");
    assert_eq!(back.helo, evp.helo, "{text}");
    assert_eq!(back.dsn_envid, evp.dsn_envid, "{text}");
    assert_eq!(back.dsn_orcpt, evp.dsn_orcpt, "{text}");
    assert_eq!(back.dsn_notify, evp.dsn_notify, "{text}");
}

fuzz_target!(|data: &[u8]| {
    let mut evp = Envelope {
        dispatcher: "local".into(),
        smtpname: "mx.example.org".into(),
        ..Default::default()
    };
    for raw in data.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
        let line = String::from_utf8_lossy(raw);
        let (cmd, _verb, args) = smtp_command_parse(&line);
        let args = args.unwrap_or("");
        for dsn in [true, false] {
            let mut e = evp.clone();
            match cmd {
                Some(SmtpCommand::Helo | SmtpCommand::Ehlo) => {
                    if valid_domainpart(args) {
                        e.helo = args.to_string();
                        check_envelope(&e);
                    }
                }
                Some(SmtpCommand::MailFrom) => {
                    match smtp_tx_mail_from_parse(&mut e, args, dsn, "mx.example.org") {
                        Ok(_) => check_envelope(&e),
                        Err(reply) => check_reply(&reply),
                    }
                }
                Some(SmtpCommand::RcptTo) => {
                    match smtp_tx_rcpt_to_parse(&mut e, args, dsn, "mx.example.org") {
                        Ok(()) => check_envelope(&e),
                        Err(reply) => check_reply(&reply),
                    }
                }
                _ => {}
            }
            // What one command accepted, the next builds on, as in a
            // session: HELO, then MAIL, then RCPTs.
            if dsn {
                evp = e;
            }
        }
    }
});
