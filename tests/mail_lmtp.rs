//! mail.lmtp(8) against a real LMTP server: a private dovecot (Debian's
//! dovecot-lmtpd, mk/deps.sh) that each test starts with its own
//! configuration, listening on 127.0.0.1 and on a unix socket, with its
//! users in a passwd-file and their mail in maildirs, all in the test's
//! directory. mail.lmtp refuses to run as root, so it runs as nobody.
//! Without dovecot, or without root, the tests say they are skipped.
#![allow(clippy::disallowed_methods)]

// Shared with the daemon tests, which use re-exports this file does not.
#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::dovecot::Dovecot;
use common::{skip_unless_root, TestDir};

/// nobody: who mail.lmtp runs as, and who owns the maildirs.
const NOBODY: u32 = 65534;
const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;

const MESSAGE: &str = "From: sender@example.org\n\
                       Subject: lmtp test\n\
                       \n\
                       .a line that starts with a dot\n\
                       ..and one with two\n\
                       .\n\
                       last line\n";

struct Run {
    code: i32,
    stderr: String,
}

/// Runs a helper as `uid` (mail.lmtp and mail.mda refuse root) with
/// `input` on its standard input.
fn run(bin: &str, uid: u32, args: &[&str], env: &[(&str, &str)], input: &str) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("SENDER")
        .env_remove("RECIPIENT")
        .env_remove("USER")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if uid != smtpd::sys::unistd::geteuid() {
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn().expect("spawn helper");
    // A helper that exits early may not read it all.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    let out = child.wait_with_output().expect("wait helper");
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lmtp(args: &[&str], env: &[(&str, &str)]) -> Run {
    run(env!("CARGO_BIN_EXE_mail-lmtp"), NOBODY, args, env, MESSAGE)
}

/// What dovecot stored: the message as sent, dots unstuffed, after the
/// headers dovecot adds.
fn assert_message(stored: &str) {
    assert!(
        stored.ends_with(MESSAGE),
        "stored message differs:\n{stored}"
    );
}

#[test]
fn one_recipient_delivered_and_one_refused_in_the_same_transaction() {
    let dir = TestDir::new("lmtp-refused");
    let Some(dovecot) = Dovecot::start(
        "one_recipient_delivered_and_one_refused_in_the_same_transaction",
        &dir.path,
    ) else {
        return;
    };
    let r = lmtp(
        &[
            "-d",
            &dovecot.inet(),
            "-f",
            "sender@example.org",
            "alice@example.org",
            "nobody-here@example.org",
        ],
        &[],
    );
    // C's words and status for a 5xx reply; the accepted recipient still
    // has the message (C would have given up before DATA).
    assert_eq!(r.code, EX_UNAVAILABLE, "stderr: {}", r.stderr);
    assert!(
        r.stderr
            .starts_with("mail.lmtp: LMTP server error: 550 5.1.1 <nobody-here@example.org>"),
        "stderr: {}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {}", r.stderr);
    let got = dovecot.delivered("alice");
    assert_eq!(got.len(), 1);
    assert_message(&got[0]);
}

#[test]
fn a_refused_only_recipient_gets_no_data_and_exits_unavailable() {
    let dir = TestDir::new("lmtp-none");
    let Some(dovecot) = Dovecot::start(
        "a_refused_only_recipient_gets_no_data_and_exits_unavailable",
        &dir.path,
    ) else {
        return;
    };
    let r = lmtp(
        &[
            "-d",
            &dovecot.inet(),
            "-f",
            "s@example.org",
            "nobody-here@example.org",
        ],
        &[],
    );
    assert_eq!(r.code, EX_UNAVAILABLE, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("LMTP server error: 550"), "{}", r.stderr);
    assert!(dovecot.delivered("alice").is_empty());
}

#[test]
fn delivers_over_tcp_in_brackets_with_the_user_from_the_environment() {
    let dir = TestDir::new("lmtp-tcp");
    let Some(dovecot) = Dovecot::start(
        "delivers_over_tcp_in_brackets_with_the_user_from_the_environment",
        &dir.path,
    ) else {
        return;
    };
    // smtpd runs `mail.lmtp -d DEST -u` with SENDER and USER set.
    let dest = format!("[127.0.0.1]:{}", dovecot.port);
    let r = lmtp(
        &["-d", &dest, "-u"],
        &[("SENDER", "sender@example.org"), ("USER", "alice")],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    let got = dovecot.delivered("alice");
    assert_eq!(got.len(), 1);
    assert_message(&got[0]);
    assert!(
        got[0].contains("Return-Path: <sender@example.org>"),
        "{}",
        got[0]
    );
}

#[test]
fn delivers_over_the_unix_socket_to_the_recipient_from_the_environment() {
    let dir = TestDir::new("lmtp-unix");
    let Some(dovecot) = Dovecot::start(
        "delivers_over_the_unix_socket_to_the_recipient_from_the_environment",
        &dir.path,
    ) else {
        return;
    };
    let sock = dovecot.socket();
    let r = lmtp(
        &[
            "-d",
            sock.to_str().expect("utf-8"),
            "-f",
            "s@example.org",
            "-r",
        ],
        &[("RECIPIENT", "alice@example.org")],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let got = dovecot.delivered("alice");
    assert_eq!(got.len(), 1);
    assert_message(&got[0]);
}

/// A scripted server for the replies dovecot will not give: `rcpt` is the
/// reply to every RCPT.
fn scripted_server(rcpt: &'static str) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut rd = BufReader::new(c.try_clone().expect("clone"));
        let mut seen = Vec::new();
        c.write_all(b"220 scripted LMTP\r\n").expect("banner");
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line).unwrap_or(0) == 0 {
                return seen;
            }
            seen.push(line.trim_end().to_string());
            let reply = match &line[..4] {
                "LHLO" => "250-scripted\r\n250 8BITMIME\r\n",
                "RCPT" => rcpt,
                "QUIT" => "221 bye\r\n",
                _ => "250 ok\r\n",
            };
            c.write_all(reply.as_bytes()).expect("reply");
        }
    });
    (port, h)
}

#[test]
fn a_4xx_recipient_reply_exits_tempfail_without_data() {
    if skip_unless_root("a_4xx_recipient_reply_exits_tempfail_without_data") {
        return;
    }
    let (port, server) = scripted_server("452 4.2.2 mailbox full\r\n");
    let dest = format!("127.0.0.1:{port}");
    let r = lmtp(&["-d", &dest, "-f", "s@example.org", "alice"], &[]);
    assert_eq!(r.code, EX_TEMPFAIL, "stderr: {}", r.stderr);
    assert_eq!(
        r.stderr,
        "mail.lmtp: LMTP server error: 452 4.2.2 mailbox full\n"
    );
    let seen = server.join().expect("server");
    assert!(!seen.iter().any(|l| l == "DATA"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
}

#[test]
fn refuses_to_run_as_root() {
    if skip_unless_root("refuses_to_run_as_root") {
        return;
    }
    let r = run(
        env!("CARGO_BIN_EXE_mail-lmtp"),
        0,
        &["-f", "s", "alice"],
        &[],
        "",
    );
    assert_eq!(r.code, EX_TEMPFAIL);
    assert_eq!(r.stderr, "mail.lmtp: may not be executed as root\n");
}

#[test]
fn without_a_sender_or_recipient_it_tempfails_as_c() {
    if skip_unless_root("without_a_sender_or_recipient_it_tempfails_as_c") {
        return;
    }
    let r = lmtp(&["alice"], &[]);
    assert_eq!(r.code, EX_TEMPFAIL);
    assert_eq!(r.stderr, "mail.lmtp: sender must be specified with -f\n");
    let r = lmtp(&["-f", "s"], &[]);
    assert_eq!(r.code, EX_TEMPFAIL);
    assert_eq!(r.stderr, "mail.lmtp: no recipient was specified\n");
}

// mail.mda(8).

fn mda(args: &[&str], input: &str) -> Run {
    run(env!("CARGO_BIN_EXE_mail-mda"), NOBODY, args, &[], input)
}

#[test]
fn mda_runs_the_command_with_the_message_on_stdin() {
    if skip_unless_root("mda_runs_the_command_with_the_message_on_stdin") {
        return;
    }
    let dir = TestDir::new("mda-stdin");
    let out = dir.path.join("out");
    fs::create_dir(&out).expect("mkdir");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).expect("chmod");
    let file = out.join("message");
    let r = mda(&[&format!("cat > {}", file.display())], MESSAGE);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(fs::read_to_string(&file).expect("read"), MESSAGE);
}

#[test]
fn mda_exits_with_the_status_of_the_command() {
    if skip_unless_root("mda_exits_with_the_status_of_the_command") {
        return;
    }
    for code in [0, 1, 67, 75, 127] {
        let r = mda(&[&format!("cat >/dev/null; exit {code}")], MESSAGE);
        assert_eq!(r.code, code, "stderr: {}", r.stderr);
    }
    // The shell's own status for a command it cannot find.
    let r = mda(&["/nonexistent/deliver"], MESSAGE);
    assert_eq!(r.code, 127, "stderr: {}", r.stderr);
}

#[test]
fn mda_tempfails_when_the_command_is_killed() {
    if skip_unless_root("mda_tempfails_when_the_command_is_killed") {
        return;
    }
    let r = mda(&["kill -9 $$"], MESSAGE);
    assert_eq!(r.code, EX_TEMPFAIL);
    assert_eq!(r.stderr, "mail.mda: command terminated by signal 9\n");
}

#[test]
fn mda_wants_exactly_one_command_and_no_root() {
    if skip_unless_root("mda_wants_exactly_one_command_and_no_root") {
        return;
    }
    let r = mda(&[], "");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "mail.mda: command required\n")
    );
    let r = mda(&["true", "false"], "");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "mail.mda: only one command is supported\n")
    );
    let r = run(env!("CARGO_BIN_EXE_mail-mda"), 0, &["true"], &[], "");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "mail.mda: may not be executed as root\n")
    );
}
