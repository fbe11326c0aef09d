//! The SMTP server end to end: a real daemon (as root, with a private
//! spool) and a client on a loopback socket. The dialogue corpus is in
//! regress/smtp; here what needs the spool or the daemon's insides: a
//! message is on disk, in OpenSMTPD's layout, when 250 comes, and only
//! then; the log lines; pipelining and smuggling as the daemon sees them;
//! and messages surviving SIGKILL of the whole tree.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::Read;
use std::net::TcpStream;

use std::time::{Duration, Instant};

use common::smtp::{
    code, queued, send_message, sigkill_tree, start_with_args, stream_messages, Client, Outcome,
};
use common::{poll_until, skip_unless_root, TestDir};

/// These tests look at what the daemon received: local delivery is
/// paused, so that every message stays in the spool.
const HOLD: &[&str] = &["-P", "mda"];

#[test]
fn a_message_is_in_the_queue_when_250_comes() {
    if skip_unless_root("a_message_is_in_the_queue_when_250_comes") {
        return;
    }
    let dir = TestDir::new("smtp-one");
    let d = start_with_args(&dir, None, HOLD);
    let mut c = Client::connect(dir.port);
    let banner = c.reply().remove(0);
    assert!(
        banner.starts_with("220 ") && banner.ends_with("ESMTP OpenSMTPD"),
        "{banner}"
    );
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    let r = send_message(
        &mut c,
        "sender@example.org",
        "root@localhost",
        "Subject: hello\r\nBcc: hidden@example.org\r\n\r\nbody line\r\n..dot\r\n",
    );
    assert!(
        r.starts_with("250 2.0.0 ") && r.ends_with("Message accepted for delivery"),
        "{r}"
    );
    let msgid = r.split(' ').nth(2).unwrap().to_string();
    // The 250 came: the message is committed, with its envelope.
    let q = queued(&dir.spool());
    assert_eq!(q.len(), 1, "{q:?}");
    let (path, files) = &q[0];
    assert!(path.ends_with(&msgid), "{path:?}");
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&"message".to_string()));
    let message = fs::read_to_string(path.join("message")).unwrap();
    assert!(
        message.starts_with("Received: from client.example (localhost [127.0.0.1])\n\tby "),
        "{message}"
    );
    assert!(
        message.contains(&format!("with ESMTP id {msgid}\n\tfor <root@localhost>;\n")),
        "{message}"
    );
    assert!(message.contains("Subject: hello\n"));
    assert!(!message.contains("Bcc"), "{message}");
    assert!(message.ends_with("\nbody line\n.dot\n"), "{message}");
    let evp = files.iter().find(|f| *f != "message").unwrap();
    let envelope = fs::read_to_string(path.join(evp)).unwrap();
    assert!(envelope.starts_with("version: 3\n"), "{envelope}");
    assert!(
        envelope.contains("sender: sender@example.org\n"),
        "{envelope}"
    );
    assert!(envelope.contains("rcpt: root@localhost\n"), "{envelope}");
    assert!(envelope.contains("helo: client.example\n"), "{envelope}");
    assert_eq!(code(&c.cmd("QUIT")), "221");
    // The log lines, in OpenSMTPD's words.
    assert!(poll_until(Duration::from_secs(5), || d
        .stderr()
        .contains("smtp disconnected reason=quit")));
    let log = d.stderr();
    for want in [
        "smtp connected address=127.0.0.1 host=localhost",
        &format!("smtp message msgid={msgid} size="),
        "nrcpt=1 proto=ESMTP",
        " from=<sender@example.org> to=<root@localhost>",
    ] {
        assert!(log.contains(want), "no {want:?} in:\n{log}");
    }
}

#[test]
fn pipelined_commands_are_answered_in_order_after_ehlo() {
    if skip_unless_root("pipelined_commands_are_answered_in_order_after_ehlo") {
        return;
    }
    let dir = TestDir::new("smtp-pipe");
    let _d = start_with_args(&dir, None, HOLD);
    let mut c = Client::connect(dir.port);
    c.reply();
    let ehlo = {
        c.send(b"EHLO client.example\r\n");
        c.reply()
    };
    assert!(ehlo.iter().any(|l| l == "250-PIPELINING"), "{ehlo:?}");
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<root@localhost>\r\nRCPT TO:<nobody-here@localhost>\r\nDATA\r\n");
    let replies: Vec<String> = (0..4).map(|_| c.reply().remove(0)).collect();
    assert_eq!(code(&replies[0]), "250", "{replies:?}");
    assert_eq!(code(&replies[1]), "250", "{replies:?}");
    assert!(replies[2].starts_with("5"), "{replies:?}");
    assert_eq!(code(&replies[3]), "354", "{replies:?}");
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    assert_eq!(code(&c.reply()[0]), "250");
    assert_eq!(code(&c.reply()[0]), "221");
}

#[test]
fn pipelining_before_ehlo_is_refused_as_opensmtpd_does() {
    if skip_unless_root("pipelining_before_ehlo_is_refused_as_opensmtpd_does") {
        return;
    }
    let dir = TestDir::new("smtp-early");
    let _d = start_with_args(&dir, None, HOLD);
    let mut c = Client::connect(dir.port);
    c.reply();
    c.send(b"HELO client.example\r\nMAIL FROM:<a@example.org>\r\n");
    let r = c.reply().remove(0);
    assert_eq!(r, "500 5.5.1 Invalid command: Pipelining not supported");
    let mut rest = String::new();
    let _ = c.r.read_to_string(&mut rest);
    assert_eq!(rest, "", "the session should be closed");
}

#[test]
fn a_bare_lf_terminator_does_not_end_the_data() {
    if skip_unless_root("a_bare_lf_terminator_does_not_end_the_data") {
        return;
    }
    let dir = TestDir::new("smtp-smuggle");
    let _d = start_with_args(&dir, None, HOLD);
    let mut c = Client::connect(dir.port);
    c.reply();
    c.cmd("EHLO client.example");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@example.org>")), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<root@localhost>")), "250");
    assert_eq!(code(&c.cmd("DATA")), "354");
    // The smuggled transaction is data, and the message is refused.
    c.send(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<admin@example.org>\r\nRCPT TO:<root@localhost>\r\nDATA\r\nevil\r\n.\r\n");
    let r = c.reply().remove(0);
    assert_eq!(r, "550 5.5.2 Message contains a bare CR or LF");
    assert_eq!(code(&c.cmd("NOOP")), "250");
    assert!(
        queued(&dir.spool()).is_empty(),
        "{:?}",
        queued(&dir.spool())
    );
}

#[test]
fn accepted_messages_survive_sigkill_of_the_whole_tree() {
    if skip_unless_root("accepted_messages_survive_sigkill_of_the_whole_tree") {
        return;
    }
    let dir = TestDir::new("smtp-crash");
    let mut all = Outcome::default();
    for round in 0..4 {
        let d = start_with_args(&dir, None, HOLD);
        let port = dir.port;
        let first = round * 100_000;
        let client = std::thread::spawn(move || {
            let stop = Instant::now() + Duration::from_secs(3);
            stream_messages(port, stop, first, "a@example.org", "root@localhost")
        });
        // Kill the tree at a moment of its own: 200 ms to 1.5 s in.
        let wait = 200 + u64::from(smtpd::sys::unistd::arc4random_uniform(1300));
        std::thread::sleep(Duration::from_millis(wait));
        sigkill_tree(d);
        let o = client.join().unwrap();
        eprintln!(
            "round {round}: {} accepted, {} in doubt, {} failed",
            o.accepted.len(),
            o.in_doubt.len(),
            o.failed.len()
        );
        all.accepted.extend(o.accepted);
        all.in_doubt.extend(o.in_doubt);
        all.failed.extend(o.failed);
    }
    // A daemon started on that spool keeps every message it acknowledged,
    // intact; a message whose data never ended is not there.
    let _d = start_with_args(&dir, None, HOLD);
    let q = queued(&dir.spool());
    let mut found = std::collections::HashMap::new();
    for (path, files) in &q {
        let id = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(files.len() >= 2, "{id}: {files:?}");
        let m = fs::read_to_string(path.join("message")).unwrap();
        let n: usize = m
            .split("Subject: n")
            .nth(1)
            .and_then(|r| r.split('\n').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{id}: not one of ours:\n{m}"));
        assert!(
            m.ends_with(&format!("\nmessage {n}\n")),
            "{id}: truncated:\n{m}"
        );
        found.insert(n, id);
    }
    for (n, id) in &all.accepted {
        assert_eq!(
            found.get(n),
            Some(id),
            "acknowledged message {n} ({id}) is not in the queue"
        );
    }
    for n in &all.failed {
        assert!(
            !found.contains_key(n),
            "message {n} was never completed, yet it is queued"
        );
    }
    for n in found.keys() {
        assert!(
            all.accepted.iter().any(|(a, _)| a == n) || all.in_doubt.contains(n),
            "message {n} is queued but was never sent whole"
        );
    }
    assert!(!all.accepted.is_empty(), "no message went through");
}

#[test]
fn smtp_paused_at_start_greets_nobody() {
    if skip_unless_root("smtp_paused_at_start_greets_nobody") {
        return;
    }
    let dir = TestDir::new("smtp-paused");
    // The listener is bound (the kernel completes the connection) but
    // not served: no banner comes, as with OpenSMTPD's -P smtp.
    let d = start_with_args(&dir, None, &["-P", "mda", "-P", "smtp"]);
    let mut s = TcpStream::connect(("127.0.0.1", dir.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("a paused listener answered: {other:?}\n{}", d.stderr()),
    }
    assert!(!d.stderr().contains("smtp connected"), "{}", d.stderr());
}

/// A PROXY protocol v2 header for a TCP/IPv4 client (PROXY command).
fn proxy_v2_header(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn a_proxy_v2_listener_takes_the_client_address_from_the_header() {
    if skip_unless_root("a_proxy_v2_listener_takes_the_client_address_from_the_header") {
        return;
    }
    let dir = TestDir::new("smtp-proxy");
    let d = start_with_args(
        &dir,
        Some(
            "listen on 127.0.0.1 port @PORT@ proxy-v2\n\
             action \"local\" mbox\n\
             match from any for local action \"local\"\n",
        ),
        HOLD,
    );
    // The balancer's header first; the client's words may follow in the
    // same write, and must not be lost.
    let mut c = Client::connect(dir.port);
    let mut first = proxy_v2_header([192, 0, 2, 7], [127, 0, 0, 1], 4242, 25);
    first.extend_from_slice(b"EHLO client.example\r\n");
    c.send(&first);
    assert_eq!(code(&c.reply()[0]), "220");
    let ehlo = c.reply();
    assert!(
        ehlo[0].contains("Hello client.example [192.0.2.7]"),
        "{ehlo:?}"
    );
    assert_eq!(code(&c.cmd("QUIT")), "221");
    assert!(poll_until(Duration::from_secs(5), || d
        .stderr()
        .contains("smtp connected address=192.0.2.7 host=")));

    // A header that is not one: the connection ends, and says why.
    let mut bad = Client::connect(dir.port);
    let mut h = proxy_v2_header([192, 0, 2, 8], [127, 0, 0, 1], 1, 25);
    h[12] = 0x31; // version 3
    bad.send(&h);
    let mut buf = [0u8; 16];
    let n = bad.r.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "got {:?}", &buf[..n]);
    assert!(
        poll_until(Duration::from_secs(5), || d
            .stderr()
            .contains("event=closed")),
        "{}",
        d.stderr()
    );
    assert!(!d.stderr().contains("192.0.2.8"), "{}", d.stderr());
}

#[test]
fn the_ram_queue_accepts_and_writes_nothing_to_the_spool() {
    if skip_unless_root("the_ram_queue_accepts_and_writes_nothing_to_the_spool") {
        return;
    }
    let dir = TestDir::new("smtp-ram");
    let d = start_with_args(&dir, None, &["-P", "mda", "-B", "queue=ram"]);
    let mut c = Client::connect(dir.port);
    c.reply();
    assert_eq!(code(&c.cmd("EHLO client.example")), "250");
    let r = send_message(
        &mut c,
        "sender@example.org",
        "root@localhost",
        "Subject: ram\r\n\r\nkept in memory\r\n",
    );
    assert!(r.starts_with("250 2.0.0 "), "{r}\n{}", d.stderr());
    assert!(
        queued(&dir.spool()).is_empty(),
        "{:?}",
        queued(&dir.spool())
    );
    assert!(poll_until(Duration::from_secs(5), || d
        .stderr()
        .contains("smtp envelope evpid=")));
}
