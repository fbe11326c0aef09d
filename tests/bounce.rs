//! Bounces end to end: a real daemon (as root, private spool) and mail
//! that has expired when it is committed: the action's ttl is a second,
//! and the client waits two between RCPT (which dates the envelope) and
//! the end of the data. (The scheduler judges expiry only while an
//! envelope waits for its next try: with the MDA paused by -P mda, an
//! envelope that was on time at commit would wait for ever.) The queue
//! writes the report through an SMTP session with the daemon itself, and
//! the report waits in the spool, -P mda holding it, for the test to
//! read. Python's email package judges the MIME structure.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::smtp::{code, queued, start_with_args, Client};
use common::{poll_until, skip_unless_root, Daemon, TestDir};

/// Mail for example.org expires after a second; what comes back to a
/// local sender (the bounce) stays.
const CONF: &str = "listen on 127.0.0.1 port @PORT@\n\
                    action \"short\" mbox ttl 1s\n\
                    action \"keep\" mbox\n\
                    match from any for domain \"example.org\" action \"short\"\n\
                    match from any for local action \"keep\"\n";

const SENDER: &str = "smtpdtest1@localhost";
const RCPT: &str = "smtpdtest2@example.org";

/// How long the bounce may take: its second of grouping, the
/// scheduler's and the session's turns.
const WAIT: Duration = Duration::from_secs(10);

/// Between RCPT and the end of the data: the envelope's ttl is over.
const EXPIRE: Duration = Duration::from_millis(2100);

fn start(dir: &TestDir) -> Daemon {
    // The recipients must exist: mk/testusers.sh makes them.
    common::user("smtpdtest1");
    common::user("smtpdtest2");
    start_with_args(dir, Some(CONF), &["-v", "-P", "mda"])
}

/// A transaction with ESMTP parameters, up to the end of the data.
fn begin(c: &mut Client, mail: &str, rcpt: &str, body: &str) {
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:{mail}"))), "250");
    assert_eq!(code(&c.cmd(&format!("RCPT TO:{rcpt}"))), "250");
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(body.as_bytes());
}

/// The end of the data; the message's id.
fn end(c: &mut Client) -> String {
    c.send(b".\r\n");
    let r = c.reply().remove(0);
    assert_eq!(code(&r), "250", "{r}");
    r.split(' ').nth(2).unwrap().to_string()
}

/// One transaction that has expired when it is committed.
fn send_expired(c: &mut Client, mail: &str, rcpt: &str, body: &str) -> String {
    begin(c, mail, rcpt, body);
    std::thread::sleep(EXPIRE);
    end(c)
}

fn client(dir: &TestDir) -> Client {
    let mut c = Client::connect(dir.port);
    c.reply();
    c.send(b"EHLO client.example\r\n");
    let ehlo = c.reply();
    assert!(ehlo.iter().any(|l| l.ends_with("DSN")), "{ehlo:?}");
    c
}

/// The queued messages whose envelope has the null sender (bounces):
/// their directory and envelope text.
fn bounces(spool: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (path, files) in queued(spool) {
        for f in files.iter().filter(|f| *f != "message") {
            let Ok(evp) = fs::read_to_string(path.join(f)) else {
                continue;
            };
            if evp.contains("\nsender: @\n") && files.iter().any(|f| f == "message") {
                out.push((path.clone(), evp));
            }
        }
    }
    out
}

fn is_queued(spool: &Path, msgid: &str) -> bool {
    queued(spool).iter().any(|(p, _)| p.ends_with(msgid))
}

/// The bounce for `to`, once it is queued, and the original message
/// `msgid` gone (its bounce envelope deleted after the 250).
fn wait_bounce(d: &Daemon, dir: &TestDir, msgid: &str, to: &str) -> (PathBuf, String) {
    let mut found = None;
    let ok = poll_until(WAIT, || {
        found = bounces(&dir.spool())
            .into_iter()
            .find(|(_, evp)| evp.contains(&format!("\nrcpt: {to}\n")));
        found.is_some() && !is_queued(&dir.spool(), msgid)
    });
    assert!(
        ok,
        "no bounce to {to} for {msgid} ({found:?}):\n{}",
        d.stderr()
    );
    found.unwrap()
}

/// Python's reading of a message: its defects and content types, each
/// part's headers or report fields as `partN.Name=value` lines and its
/// text in DIR/partN.
fn parse_mime(message: &Path, out: &Path) -> String {
    const SCRIPT: &str = r#"
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.compat32)
print('type=' + m.get_content_type())
print('defects=%d' % len(m.defects))
for k in ('Subject', 'From', 'To', 'MIME-Version'):
    print('%s=%s' % (k, m[k]))
for i, p in enumerate(m.get_payload()):
    print('part%d.type=%s' % (i, p.get_content_type()))
    print('part%d.defects=%d' % (i, len(p.defects)))
    if p.get_content_type() == 'message/delivery-status':
        for j, b in enumerate(p.get_payload()):
            for k, v in b.items():
                print('part%d.block%d.%s=%s' % (i, j, k, v))
    else:
        open('%s/part%d' % (sys.argv[2], i), 'w').write(p.get_payload())
"#;
    let o = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(message)
        .arg(out)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn assert_has(summary: &str, lines: &[&str]) {
    for l in lines {
        assert!(summary.lines().any(|s| s == *l), "no {l:?} in:\n{summary}");
    }
}

#[test]
fn an_expired_message_comes_back_to_its_sender_as_a_dsn_with_its_headers() {
    if skip_unless_root("an_expired_message_comes_back_to_its_sender_as_a_dsn_with_its_headers") {
        return;
    }
    let dir = TestDir::new("bounce-hdrs");
    let d = start(&dir);
    let mut c = client(&dir);
    let msgid = send_expired(
        &mut c,
        &format!("<{SENDER}> RET=HDRS ENVID=env+2Bid.1"),
        &format!("<{RCPT}> ORCPT=rfc822;orig+2Bx@example.org"),
        "Subject: to expire\r\n\r\nfirst body line\r\n..dotted\r\n",
    );
    let (path, evp) = wait_bounce(&d, &dir, &msgid, SENDER);
    // MAIL FROM:<>, to the original sender.
    assert!(evp.contains("\nsender: @\n"), "{evp}");
    assert!(evp.contains(&format!("\nrcpt: {SENDER}\n")), "{evp}");

    let s = parse_mime(&path.join("message"), &dir.path);
    assert_has(
        &s,
        &[
            "type=multipart/mixed",
            "defects=0",
            "Subject=Delivery status notification: failed",
            &format!("To={SENDER}"),
            "MIME-Version=1.0",
            "part0.type=text/plain",
            "part0.defects=0",
            "part1.type=message/delivery-status",
            "part1.defects=0",
            "part1.block0.Original-Envelope-Id=env+id.1",
            "part1.block1.Original-Recipient=rfc822;orig+x@example.org",
            &format!("part1.block1.Final-Recipient=rfc822; {RCPT}"),
            "part1.block1.Action=failed",
            "part1.block1.Status=5.4.7",
            "part2.type=text/rfc822-headers",
            "part2.defects=0",
        ],
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("From=Mailer Daemon <MAILER-DAEMON@")),
        "{s}"
    );
    assert!(s.contains("part1.block0.Reporting-MTA=dns; "), "{s}");
    let notice = fs::read_to_string(dir.path.join("part0")).unwrap();
    assert!(
        notice.contains("An error has occurred while attempting to deliver"),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("{RCPT}: Envelope expired\n")),
        "{notice}"
    );
    // RET=HDRS: the headers, not the body.
    let returned = fs::read_to_string(dir.path.join("part2")).unwrap();
    assert!(returned.contains("\nSubject: to expire\n"), "{returned}");
    assert!(
        returned.contains(&format!("with ESMTP id {msgid}")),
        "{returned}"
    );
    assert!(!returned.contains("first body line"), "{returned}");
    assert!(!returned.contains("dotted"), "{returned}");
    // The session's end, in bounce.c's words.
    assert!(
        poll_until(Duration::from_secs(5), || d
            .stderr()
            .contains("deleting session")),
        "{}",
        d.stderr()
    );
    // bounce.c's counters went up and back down.
    let stats = || {
        let o = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
            .args(["show", "stats"])
            .env("SMTPD_SOCKET", dir.socket())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let want = [
        "bounce.envelope=0",
        "bounce.message=0",
        "bounce.session=0",
        "queue.bounce=1",
    ];
    assert!(
        poll_until(Duration::from_secs(5), || {
            let s = stats();
            want.iter().all(|w| s.lines().any(|l| l == *w))
        }),
        "{}",
        stats()
    );
}

#[test]
fn ret_full_returns_the_whole_message_with_its_dot_lines_intact() {
    if skip_unless_root("ret_full_returns_the_whole_message_with_its_dot_lines_intact") {
        return;
    }
    let dir = TestDir::new("bounce-full");
    let d = start(&dir);
    let mut c = client(&dir);
    // Stored as ".", ".dotted" and "..two": each must come back so.
    let msgid = send_expired(
        &mut c,
        &format!("<{SENDER}> RET=FULL"),
        &format!("<{RCPT}>"),
        "Subject: whole\r\n\r\nfirst body line\r\n..\r\n..dotted\r\n...two\r\nlast\r\n",
    );
    let (path, _) = wait_bounce(&d, &dir, &msgid, SENDER);
    let s = parse_mime(&path.join("message"), &dir.path);
    assert_has(
        &s,
        &[
            "type=multipart/mixed",
            "defects=0",
            "part1.block1.Action=failed",
            "part1.block1.Status=5.4.7",
            "part2.type=text/rfc822-headers",
        ],
    );
    // No ENVID, no ORCPT: no fields for them.
    assert!(!s.contains("Original-Envelope-Id"), "{s}");
    assert!(!s.contains("Original-Recipient"), "{s}");
    let returned = fs::read_to_string(dir.path.join("part2")).unwrap();
    assert!(returned.contains("\nSubject: whole\n"), "{returned}");
    assert!(
        returned.ends_with("\n\nfirst body line\n.\n.dotted\n..two\nlast\n"),
        "{returned:?}"
    );
}

#[test]
fn no_bounce_goes_to_the_null_sender_nor_against_notify_never() {
    if skip_unless_root("no_bounce_goes_to_the_null_sender_nor_against_notify_never") {
        return;
    }
    let dir = TestDir::new("bounce-none");
    let d = start(&dir);
    let body = "Subject: no bounce\r\n\r\nbody\r\n";
    let mut c = [client(&dir), client(&dir), client(&dir)];
    begin(&mut c[0], "<>", &format!("<{RCPT}>"), body);
    begin(
        &mut c[1],
        &format!("<{SENDER}>"),
        &format!("<{RCPT}> NOTIFY=NEVER"),
        body,
    );
    // The control: this one bounces, to another sender.
    let other = "smtpdtest2@localhost";
    begin(&mut c[2], &format!("<{other}>"), &format!("<{RCPT}>"), body);
    std::thread::sleep(EXPIRE);
    let [null, never, control] = c.each_mut().map(end);
    wait_bounce(&d, &dir, &control, other);
    // All three expired together; a bounce of the other two would have
    // come with the control's, give it two seconds more.
    assert!(poll_until(WAIT, || !is_queued(&dir.spool(), &null)
        && !is_queued(&dir.spool(), &never)));
    std::thread::sleep(Duration::from_secs(2));
    let b = bounces(&dir.spool());
    assert_eq!(b.len(), 1, "{b:?}\n{}", d.stderr());
    assert!(b[0].1.contains(&format!("\nrcpt: {other}\n")), "{b:?}");
    let log = d.stderr();
    assert!(log.contains("warn: queue: no return path!"), "{log}");
    assert_eq!(log.matches("bounce: new message").count(), 1, "{log}");
}
