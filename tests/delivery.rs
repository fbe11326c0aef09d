//! Local delivery end to end: a real daemon (as root, private spool)
//! receives mail from a client on loopback, expands it, schedules it and
//! delivers it through its own helpers (copied into the test's directory,
//! where any user may run them) to maildirs, an LMTP server (a private
//! dovecot), commands, files and pipes. What lands is read back by
//! Python's `mailbox` module, a real mail reader's parser. The users
//! delivered to are smtpdtest1 and smtpdtest2 (mk/testusers.sh).
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use common::dovecot::Dovecot;
use common::smtp::{code, queue_is_empty, sigkill_tree, start_with_env, stream_messages, Client};
use common::{
    deliveries, field, poll_until, skip_unless_test_users, user, wait_deliveries, Daemon, TestDir,
};

/// The helpers smtpd runs, by the name it runs them under.
const HELPERS: [(&str, &str); 5] = [
    ("mail.local", env!("CARGO_BIN_EXE_mail-local")),
    ("mail.maildir", env!("CARGO_BIN_EXE_mail-maildir")),
    ("mail.mboxfile", env!("CARGO_BIN_EXE_mail-mboxfile")),
    ("mail.lmtp", env!("CARGO_BIN_EXE_mail-lmtp")),
    ("mail.mda", env!("CARGO_BIN_EXE_mail-mda")),
];

/// Every test delivers to the test users, whose .forward files one test
/// changes: that one runs alone.
static HOME: RwLock<()> = RwLock::new(());

/// Reads a maildir (`maildir DIR`) or an mbox (`mbox FILE`) with Python's
/// mailbox module and prints each message: `M`, then `H name: value` for
/// each header in order, then `B` and the body's bytes in hex.
const READER: &str = r#"
import mailbox, sys
kind, path = sys.argv[1], sys.argv[2]
box = mailbox.Maildir(path, factory=None, create=False) if kind == "maildir" else mailbox.mbox(path, create=False)
for key in sorted(box.keys(), key=lambda k: box.get_message(k).get("X-Seq", "")):
    msg = box.get_message(key)
    print("M")
    for name, value in msg.items():
        print("H %s: %s" % (name, value))
    payload = msg.get_payload(decode=True)
    print("B " + (payload or b"").hex())
"#;

/// One message as the reader saw it.
#[derive(Debug)]
struct Read {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Read {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_box(kind: &str, path: &Path) -> Vec<Read> {
    let out = Command::new("python3")
        .args(["-c", READER, kind])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python's mailbox refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut msgs: Vec<Read> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line == "M" {
            msgs.push(Read {
                headers: Vec::new(),
                body: Vec::new(),
            });
        } else if let Some(h) = line.strip_prefix("H ") {
            let (n, v) = h.split_once(": ").unwrap_or((h, ""));
            let m = msgs.last_mut().expect("a message");
            m.headers.push((n.to_string(), v.to_string()));
        } else if let Some(hex) = line.strip_prefix("B ") {
            let m = msgs.last_mut().expect("a message");
            m.body = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
        }
    }
    msgs
}

/// The helpers copied into `dir/libexec`, which smtpd is told to use.
fn libexec(dir: &TestDir) -> PathBuf {
    let lib = dir.path.join("libexec");
    fs::create_dir_all(&lib).unwrap();
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o755)).unwrap();
    for (name, bin) in HELPERS {
        fs::copy(bin, lib.join(name)).unwrap();
        fs::set_permissions(lib.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // As mk/install.sh installs it: set-group-ID to /var/mail's group,
    // to lock mailboxes there as the recipient.
    use std::os::unix::fs::MetadataExt;
    let spool_gid = fs::metadata("/var/mail").map_or(0, |m| m.gid());
    if spool_gid != 0 {
        let local = lib.join("mail.local");
        std::os::unix::fs::chown(&local, Some(0), Some(spool_gid)).unwrap();
        fs::set_permissions(&local, fs::Permissions::from_mode(0o2755)).unwrap();
    }
    lib
}

/// A directory `name` in the test's directory, owned by `owner`.
fn owned_dir(dir: &TestDir, name: &str, owner: &str) -> PathBuf {
    let p = dir.path.join(name);
    fs::create_dir_all(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = user(owner);
    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    p
}

/// smtpd delivering with the copied helpers; `conf` has @PORT@ and @DIR@
/// (the test's directory) replaced.
fn start(dir: &TestDir, conf: &str, extra: &[&str]) -> Daemon {
    let lib = libexec(dir);
    let conf = conf.replace("@DIR@", &dir.path.display().to_string());
    start_with_env(dir, Some(&conf), extra, &[("SMTPD_LIBEXEC", &lib)])
}

/// Whether the test can run (root, and the test users exist), and if so
/// its turn with the users' homes.
fn can_run(test: &str) -> Option<RwLockReadGuard<'static, ()>> {
    if skip_unless_test_users(test) {
        return None;
    }
    Some(HOME.read().unwrap_or_else(|e| e.into_inner()))
}

/// Sends one message to `d`; `data` has CRLF line ends and no final dot.
fn send(d: &Daemon, port: u16, from: &str, rcpts: &[&str], data: &[u8]) -> String {
    let mut c = Client::connect(port);
    assert_eq!(code(&c.reply()[0]), "220");
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{from}>"))), "250");
    for r in rcpts {
        let reply = c.cmd(&format!("RCPT TO:<{r}>"));
        assert_eq!(
            code(&reply),
            "250",
            "RCPT TO:<{r}>: {reply}\n{}",
            d.stderr()
        );
    }
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(data);
    c.send(b".\r\n");
    let reply = c.reply().remove(0);
    assert_eq!(code(&reply), "250", "end of data: {reply}");
    c.cmd("QUIT");
    reply
}

/// The subjects of what `user` got in the test's maildirs, sorted.
fn subjects(dir: &TestDir, user: &str) -> Vec<String> {
    let mut v: Vec<String> = read_box("maildir", &dir.path.join("boxes").join(user))
        .iter()
        .filter_map(|m| m.header("Subject").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The files of a maildir's new/.
fn maildir_new(maildir: &Path) -> Vec<PathBuf> {
    fs::read_dir(maildir.join("new"))
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn maildir_delivery_keeps_every_header_and_byte_as_a_reader_sees_them() {
    let Some(_turn) = can_run("maildir_delivery_keeps_every_header_and_byte_as_a_reader_sees_them")
    else {
        return;
    };
    let dir = TestDir::new("dlv-maildir");
    let boxes = owned_dir(&dir, "boxes", "smtpdtest1");
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
         match from any for local action \"md\"\n",
        &[],
    );
    // 8-bit text (UTF-8 and Latin-1 bytes), a dot-stuffed line, a From_
    // line, a line of 900 bytes, and trailing blanks.
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice("Grüße aus Köln: ½ € ✓\r\n".as_bytes());
    body.extend_from_slice(b"latin-1 bytes: \xe9t\xe9 \xff\xfe\r\n");
    body.extend_from_slice(b".a line that started with a dot\r\n");
    body.extend_from_slice(b"From the start of a line\r\n");
    body.extend(std::iter::repeat(b'x').take(900));
    body.extend_from_slice(b"\r\n  trailing blanks  \r\n\r\nlast\r\n");
    let mut data = b"From: Bob <bob@example.org>\r\n\
        To: smtpdtest1@localhost\r\n\
        Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\
        Message-ID: <maildir-1@example.org>\r\n\
        Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        X-Folded: first\r\n\tsecond\r\n\
        \r\n"
        .to_vec();
    // On the wire a leading dot is doubled.
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        &data,
    );
    let lines = wait_deliveries(&d, 1, Duration::from_secs(20));
    let l = &lines[0];
    assert_eq!(field(l, "result"), "Ok", "{l}");
    assert_eq!(field(l, "stat"), "Delivered");
    assert_eq!(field(l, "from"), "<bob@example.org>");
    assert_eq!(field(l, "to"), "<smtpdtest1@localhost>");
    assert_eq!(field(l, "rcpt"), "<smtpdtest1@localhost>");
    assert_eq!(field(l, "user"), "smtpdtest1");
    assert!(field(l, "delay").ends_with('s'), "{l}");

    let maildir = boxes.join("smtpdtest1");
    let files = maildir_new(&maildir);
    assert_eq!(files.len(), 1, "{files:?}");
    let msgs = read_box("maildir", &maildir);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Return-Path",
            "Delivered-To",
            "Received",
            "From",
            "To",
            "Subject",
            "Message-ID",
            "Date",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
            "X-Folded"
        ]
    );
    assert_eq!(m.header("Return-Path"), Some("<bob@example.org>"));
    assert_eq!(m.header("Delivered-To"), Some("smtpdtest1@localhost"));
    assert_eq!(m.header("Message-ID"), Some("<maildir-1@example.org>"));
    // The store has LF line ends; the body is otherwise byte for byte.
    let expected: Vec<u8> = body
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|l| {
            let l = l.strip_suffix(b"\r\n").unwrap_or(l);
            l.iter().copied().chain(std::iter::once(b'\n'))
        })
        .collect();
    assert_eq!(m.body, expected);
    // Owned by the user, readable by no one else.
    let meta = fs::metadata(&files[0]).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), user("smtpdtest1").0);
    assert_eq!(meta.mode() & 0o077, 0, "{:o}", meta.mode());
    // Delivered, so gone from the queue.
    assert!(
        poll_until(Duration::from_secs(5), || queue_is_empty(&dir.spool())),
        "{:?}",
        common::smtp::queued(&dir.spool())
    );
}

#[test]
fn lmtp_delivers_one_recipient_and_fails_the_other_of_one_transaction() {
    let Some(_turn) = can_run("lmtp_delivers_one_recipient_and_fails_the_other_of_one_transaction")
    else {
        return;
    };
    let dir = TestDir::new("dlv-lmtp");
    let dcdir = dir.path.join("dovecot-home");
    fs::create_dir(&dcdir).unwrap();
    let Some(dc) = Dovecot::start("lmtp_delivers_one_recipient", &dcdir) else {
        return;
    };
    // Both recipients are accepted here and delivered as nobody; dovecot
    // knows alice only.
    let conf = format!(
        "listen on 127.0.0.1 port @PORT@\n\
         table vusers {{ \"alice@lmtp.test\" = \"nobody\", \"bob@lmtp.test\" = \"nobody\" }}\n\
         action \"lmtp\" lmtp \"{}\" rcpt-to virtual <vusers>\n\
         match from any for domain \"lmtp.test\" action \"lmtp\"\n",
        dc.inet()
    );
    let d = start(&dir, &conf, &[]);
    let data = b"From: sender@example.org\r\n\
        Subject: two recipients\r\n\
        Message-ID: <lmtp-1@example.org>\r\n\
        \r\n\
        ..dotted line\r\n\
        body\r\n";
    send(
        &d,
        dir.port,
        "sender@example.org",
        &["alice@lmtp.test", "bob@lmtp.test"],
        data,
    );
    let lines = wait_deliveries(&d, 2, Duration::from_secs(20));
    let alice = lines
        .iter()
        .find(|l| l.contains("rcpt=<alice@lmtp.test>"))
        .expect("alice's line");
    let bob = lines
        .iter()
        .find(|l| l.contains("rcpt=<bob@lmtp.test>"))
        .expect("bob's line");
    assert_eq!(field(alice, "result"), "Ok", "{alice}");
    assert_eq!(field(bob, "result"), "PermFail", "{bob}");
    assert_eq!(field(bob, "user"), "nobody");
    // The refusal dovecot gave is what the log says.
    assert!(field(bob, "stat").starts_with("Error ("), "{bob}");
    let got = dc.delivered("alice");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("Message-ID: <lmtp-1@example.org>"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("Delivered-To: alice@lmtp.test"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("\n.dotted line\n"), "{}", got[0]);
    assert!(dc.delivered("bob").is_empty());
}

#[test]
fn mda_commands_get_every_variable_expanded() {
    let Some(_turn) = can_run("mda_commands_get_every_variable_expanded") else {
        return;
    };
    let dir = TestDir::new("dlv-mda");
    let out = owned_dir(&dir, "out", "smtpdtest1");
    let script = dir.path.join("record.sh");
    fs::write(
        &script,
        "#!/bin/sh\n\
         out=\"$1\"; shift\n\
         for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$out/vars\"\n\
         cat > \"$out/message\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let vars = [
        "sender",
        "sender.user",
        "sender.domain",
        "rcpt",
        "rcpt.user",
        "rcpt.domain",
        "dest",
        "dest.user",
        "dest.domain",
        "user.username",
        "user.directory",
        "mbox.from",
        "rcpt.user:uppercase",
        "sender.domain:lowercase",
        "rcpt.user:strip",
        "rcpt.domain[0]",
        "rcpt.domain[-4:]",
        "sender.user[1:2]:uppercase",
    ];
    let args: Vec<String> = vars.iter().map(|v| format!("%{{{v}}}")).collect();
    let conf = format!(
        "listen on 127.0.0.1 port @PORT@\n\
         action \"cmd\" mda \"@DIR@/record.sh @DIR@/out {}\"\n\
         match from any for local action \"cmd\"\n",
        args.join(" ")
    );
    let d = start(&dir, &conf, &[]);
    let data = b"Subject: variables\r\n\r\nhello\r\n";
    send(
        &d,
        dir.port,
        "Bob.Smith@Example.ORG",
        &["smtpdtest1+box@localhost"],
        data,
    );
    let lines = wait_deliveries(&d, 1, Duration::from_secs(20));
    assert_eq!(field(&lines[0], "result"), "Ok", "{}", lines[0]);
    let got = fs::read_to_string(out.join("vars")).unwrap();
    let got: Vec<&str> = got.lines().collect();
    let home = smtpd::sys::process::getpwnam("smtpdtest1")
        .unwrap()
        .unwrap()
        .dir;
    let expected = [
        "Bob.Smith@Example.ORG",
        "Bob.Smith",
        "Example.ORG",
        "smtpdtest1+box@localhost",
        "smtpdtest1+box",
        "localhost",
        // dest is the address the expansion stopped at: with its tag.
        "smtpdtest1+box@localhost",
        "smtpdtest1+box",
        "localhost",
        "smtpdtest1",
        &home,
        "Bob.Smith@Example.ORG",
        "SMTPDTEST1+BOX",
        "example.org",
        "smtpdtest1",
        "l",
        "host",
        "OB",
    ];
    for (i, v) in vars.iter().enumerate() {
        assert_eq!(got.get(i).copied(), Some(expected[i]), "%{{{v}}}: {got:?}");
    }
    let msg = fs::read_to_string(out.join("message")).unwrap();
    assert!(
        msg.starts_with(
            "Return-Path: <Bob.Smith@Example.ORG>\nDelivered-To: smtpdtest1+box@localhost\n"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("\nhello\n"), "{msg}");
}

#[test]
fn aliases_expand_to_users_files_pipes_and_includes() {
    let Some(_turn) = can_run("aliases_expand_to_users_files_pipes_and_includes") else {
        return;
    };
    let dir = TestDir::new("dlv-alias");
    owned_dir(&dir, "boxes", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest1", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    // Files and pipes named by aliases run as the unprivileged user.
    let sink = owned_dir(&dir, "sink", smtpd::pathnames::SMTPD_USER);
    let pipe = dir.path.join("pipe.sh");
    fs::write(
        &pipe,
        format!("#!/bin/sh\ncat > {}/piped\n", sink.display()),
    )
    .unwrap();
    fs::set_permissions(&pipe, fs::Permissions::from_mode(0o755)).unwrap();
    let incl = dir.path.join("include.list");
    fs::write(&incl, "# the list\nsmtpdtest2\n").unwrap();
    fs::write(
        dir.path.join("aliases"),
        format!(
            "team: smtpdtest1, smtpdtest2\n\
             tofile: {}/file.mbox\n\
             topipe: \"|{}\"\n\
             list: :include:{}\n",
            sink.display(),
            pipe.display(),
            incl.display()
        ),
    )
    .unwrap();
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         table aliases file:@DIR@/aliases\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\" alias <aliases>\n\
         match from any for local action \"md\"\n",
        &[],
    );
    let data = |id: &str| {
        format!("Subject: {id}\r\nMessage-ID: <{id}@example.org>\r\n\r\nbody of {id}\r\n")
    };
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["team@localhost"],
        data("team").as_bytes(),
    );
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["tofile@localhost"],
        data("tofile").as_bytes(),
    );
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["topipe@localhost"],
        data("topipe").as_bytes(),
    );
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["list@localhost"],
        data("list").as_bytes(),
    );
    let lines = wait_deliveries(&d, 5, Duration::from_secs(30));
    for l in &lines {
        assert_eq!(field(l, "result"), "Ok", "{l}");
    }
    assert_eq!(subjects(&dir, "smtpdtest1"), ["team"]);
    assert_eq!(subjects(&dir, "smtpdtest2"), ["list", "team"]);
    let file = read_box("mbox", &sink.join("file.mbox"));
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].header("Subject"), Some("tofile"));
    assert_eq!(file[0].body, b"body of tofile\n");
    let piped = fs::read_to_string(sink.join("piped")).unwrap();
    assert!(
        piped.contains("Delivered-To: topipe@localhost\n"),
        "{piped}"
    );
    assert!(piped.ends_with("\nbody of topipe\n"), "{piped}");
    let to_file = lines
        .iter()
        .find(|l| l.contains("rcpt=<tofile@localhost>"))
        .unwrap();
    assert_eq!(field(to_file, "user"), smtpd::pathnames::SMTPD_USER);
}

#[test]
fn virtual_catch_all_and_sub_addresses_reach_the_user() {
    let Some(_turn) = can_run("virtual_catch_all_and_sub_addresses_reach_the_user") else {
        return;
    };
    let dir = TestDir::new("dlv-virtual");
    owned_dir(&dir, "boxes", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest1", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         table vdom { \"postmaster@virt.test\" = \"smtpdtest2\", \"@virt.test\" = \"smtpdtest1\" }\n\
         action \"v\" maildir \"@DIR@/boxes/%{user.username}\" virtual <vdom>\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
         match from any for domain \"virt.test\" action \"v\"\n\
         match from any for local action \"md\"\n",
        &[],
    );
    let msg = |s: &str| format!("Subject: {s}\r\n\r\n{s}\r\n");
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["anyone@virt.test"],
        msg("catch-all").as_bytes(),
    );
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["postmaster@virt.test"],
        msg("exact").as_bytes(),
    );
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1+lists@localhost"],
        msg("tagged").as_bytes(),
    );
    let lines = wait_deliveries(&d, 3, Duration::from_secs(30));
    let by_rcpt = |r: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("rcpt=<{r}>")))
            .unwrap_or_else(|| panic!("no line for {r}: {lines:?}"))
            .clone()
    };
    assert_eq!(field(&by_rcpt("anyone@virt.test"), "user"), "smtpdtest1");
    assert_eq!(
        field(&by_rcpt("postmaster@virt.test"), "user"),
        "smtpdtest2"
    );
    let tagged = by_rcpt("smtpdtest1+lists@localhost");
    assert_eq!(field(&tagged, "user"), "smtpdtest1");
    assert_eq!(field(&tagged, "to"), "<smtpdtest1+lists@localhost>");
    for l in &lines {
        assert_eq!(field(l, "result"), "Ok", "{l}");
    }
    assert_eq!(subjects(&dir, "smtpdtest1"), ["catch-all", "tagged"]);
    let s2 = read_box("maildir", &dir.path.join("boxes/smtpdtest2"));
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].header("Subject"), Some("exact"));
}

#[test]
fn a_message_that_was_delivered_here_before_is_a_loop_and_not_delivered() {
    let Some(_turn) =
        can_run("a_message_that_was_delivered_here_before_is_a_loop_and_not_delivered")
    else {
        return;
    };
    let dir = TestDir::new("dlv-loop");
    let boxes = owned_dir(&dir, "boxes", "smtpdtest1");
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
         match from any for local action \"md\"\n",
        &[],
    );
    let data = b"Delivered-To: smtpdtest1@localhost\r\n\
        Subject: been here\r\n\
        \r\n\
        looping\r\n";
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        data,
    );
    let lines = wait_deliveries(&d, 1, Duration::from_secs(20));
    assert_eq!(field(&lines[0], "result"), "PermFail", "{}", lines[0]);
    assert_eq!(field(&lines[0], "stat"), "Loop detected");
    assert!(maildir_new(&boxes.join("smtpdtest1")).is_empty());
}

#[test]
fn a_temporary_failure_is_retried_on_the_schedule() {
    let Some(_turn) = can_run("a_temporary_failure_is_retried_on_the_schedule") else {
        return;
    };
    let dir = TestDir::new("dlv-retry");
    let out = owned_dir(&dir, "out", "smtpdtest1");
    // Fails the first time (EX_TEMPFAIL), keeps the message the second.
    let script = dir.path.join("flaky.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ ! -e {o}/tried ]; then date +%s > {o}/tried; echo 'mailbox busy' >&2; exit 75; fi\n\
             date +%s > {o}/delivered\n\
             cat > {o}/message\n",
            o = out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         action \"cmd\" mda \"@DIR@/flaky.sh\"\n\
         match from any for local action \"cmd\"\n",
        &[],
    );
    let t0 = Instant::now();
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        b"Subject: retry\r\n\r\nx\r\n",
    );
    let lines = wait_deliveries(&d, 1, Duration::from_secs(20));
    assert_eq!(field(&lines[0], "result"), "TempFail", "{}", lines[0]);
    assert_eq!(
        field(&lines[0], "stat"),
        "Error (temporary failure: \"mailbox busy\")"
    );
    // The first retry is 10 s after the message came (OpenSMTPD's
    // backoff for local delivery: 10 s times the square of the try).
    let lines = wait_deliveries(&d, 2, Duration::from_secs(30));
    let waited = t0.elapsed();
    assert_eq!(field(&lines[1], "result"), "Ok", "{}", lines[1]);
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "retried after {waited:?}"
    );
    let tried: i64 = fs::read_to_string(out.join("tried"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let delivered: i64 = fs::read_to_string(out.join("delivered"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (9..=12).contains(&(delivered - tried)),
        "{tried} {delivered}"
    );
}

#[test]
fn a_forward_file_in_an_unsafe_home_is_refused_and_mail_still_delivered() {
    // Alone: the other tests take turns to read.
    if can_run("a_forward_file_in_an_unsafe_home_is_refused_and_mail_still_delivered").is_none() {
        return;
    }
    let _alone = HOME.write().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("dlv-forward");
    owned_dir(&dir, "boxes", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest1", "smtpdtest1");
    owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    let home = PathBuf::from(
        smtpd::sys::process::getpwnam("smtpdtest1")
            .unwrap()
            .unwrap()
            .dir,
    );
    let forward = home.join(".forward");
    let (uid, gid) = user("smtpdtest1");
    fs::write(&forward, "smtpdtest2\n").unwrap();
    std::os::unix::fs::chown(&forward, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&forward, fs::Permissions::from_mode(0o644)).unwrap();
    let mode = fs::metadata(&home).unwrap().permissions().mode();
    // Restored however the test ends.
    struct Restore(PathBuf, PathBuf, u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.1);
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(self.2));
        }
    }
    let _restore = Restore(home.clone(), forward.clone(), mode);
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
         match from any for local action \"md\"\n",
        &[],
    );
    // A safe home: the .forward is followed.
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        b"Subject: safe\r\n\r\nx\r\n",
    );
    // World-writable, then sticky and world-writable: refused.
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).unwrap();
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        b"Subject: writable\r\n\r\nx\r\n",
    );
    fs::set_permissions(&home, fs::Permissions::from_mode(0o1777)).unwrap();
    send(
        &d,
        dir.port,
        "bob@example.org",
        &["smtpdtest1@localhost"],
        b"Subject: sticky\r\n\r\nx\r\n",
    );
    let lines = wait_deliveries(&d, 3, Duration::from_secs(30));
    for l in &lines {
        assert_eq!(field(l, "result"), "Ok", "{l}");
    }
    assert_eq!(subjects(&dir, "smtpdtest2"), ["safe"]);
    assert_eq!(subjects(&dir, "smtpdtest1"), ["sticky", "writable"]);
    let log = d.stderr();
    let home = home.display();
    for refusal in [
        format!("warn: smtpd: {home}/.forward: insecure file"),
        format!("warn: smtpd: parent_forward_open: {home} is sticky"),
    ] {
        assert!(log.contains(&refusal), "no \"{refusal}\" in:\n{log}");
    }
}

#[test]
fn accepted_mail_is_delivered_after_sigkill_of_the_whole_tree() {
    let Some(_turn) = can_run("accepted_mail_is_delivered_after_sigkill_of_the_whole_tree") else {
        return;
    };
    let dir = TestDir::new("dlv-crash");
    owned_dir(&dir, "boxes", "smtpdtest1");
    let maildir = owned_dir(&dir, "boxes/smtpdtest1", "smtpdtest1");
    let conf = "listen on 127.0.0.1 port @PORT@\n\
                action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
                match from any for local action \"md\"\n";
    let (mut accepted, mut in_doubt, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let d = start(&dir, conf, &[]);
        let port = dir.port;
        let first = round * 100_000;
        let stop = Instant::now() + Duration::from_secs(3);
        let client = std::thread::spawn(move || {
            stream_messages(port, stop, first, "bob@example.org", "smtpdtest1@localhost")
        });
        // Kill the tree, deliveries and all, at a moment of its own.
        let wait = 500 + u64::from(smtpd::sys::unistd::arc4random_uniform(2000));
        std::thread::sleep(Duration::from_millis(wait));
        sigkill_tree(d);
        let o = client.join().unwrap();
        accepted.extend(o.accepted.into_iter().map(|(n, _)| n));
        in_doubt.extend(o.in_doubt);
        failed.extend(o.failed);
    }
    // A daemon on that spool delivers whatever is left.
    let d = start(&dir, conf, &[]);
    let drained = poll_until(Duration::from_secs(90), || queue_is_empty(&dir.spool()));
    assert!(drained, "the queue never emptied:\n{}", d.stderr());
    let mut count: std::collections::HashMap<usize, usize> = Default::default();
    for m in read_box("maildir", &maildir) {
        let subject = m.header("Subject").unwrap_or_default();
        let n: usize = subject
            .strip_prefix('n')
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not one of ours: {m:?}"));
        assert_eq!(
            m.body,
            format!("message {n}\n").as_bytes(),
            "{n}: truncated"
        );
        *count.entry(n).or_default() += 1;
    }
    for n in &accepted {
        assert!(
            count.contains_key(n),
            "acknowledged message {n} was never delivered"
        );
    }
    for n in &failed {
        assert!(
            !count.contains_key(n),
            "message {n} was never sent whole, yet delivered"
        );
    }
    for n in count.keys() {
        assert!(
            accepted.contains(n) || in_doubt.contains(n),
            "message {n} delivered but never sent"
        );
    }
    let twice = count.values().filter(|&&c| c > 1).count();
    eprintln!(
        "{} acknowledged, {} in doubt ({} of them delivered), {} failed; \
         {} delivered, {twice} of them more than once",
        accepted.len(),
        in_doubt.len(),
        in_doubt.iter().filter(|n| count.contains_key(n)).count(),
        failed.len(),
        count.len()
    );
    assert!(!accepted.is_empty(), "no message went through");
}

/// /var/mail/smtpdtest1 for one test: removed before and after.
struct Mailbox(PathBuf);

impl Mailbox {
    fn take(user: &str) -> Mailbox {
        let p = PathBuf::from("/var/mail").join(user);
        let _ = fs::remove_file(&p);
        Mailbox(p)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn mbox_delivery_through_mail_local_is_read_back_whole() {
    let Some(_turn) = can_run("mbox_delivery_through_mail_local_is_read_back_whole") else {
        return;
    };
    let mbox = Mailbox::take("smtpdtest1");
    let dir = TestDir::new("dlv-mbox");
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         action \"mb\" mbox\n\
         match from any for local action \"mb\"\n",
        &[],
    );
    let body: &[u8] = b"caf\xc3\xa9 cr\xc3\xa8me \xe9t\xe9\r\n\
        \r\n\
        From here on, a line mail.local quotes\r\n\
        ..two dots on the wire, one in the box\r\n\
        last\r\n";
    for i in 1..=2 {
        let mut data = format!(
            "From: Bob <bob@example.org>\r\nSubject: mbox {i}\r\nX-Seq: {i}\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        )
        .into_bytes();
        data.extend_from_slice(body);
        send(
            &d,
            dir.port,
            "bob@example.org",
            &["smtpdtest1@localhost"],
            &data,
        );
    }
    let lines = wait_deliveries(&d, 2, Duration::from_secs(20));
    for l in &lines {
        assert_eq!(field(l, "result"), "Ok", "{l}");
    }
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(&mbox.0).unwrap();
    assert_eq!(meta.uid(), user("smtpdtest1").0);
    assert_eq!(meta.mode() & 0o777, 0o600);
    let raw = fs::read(&mbox.0).unwrap();
    assert!(
        raw.starts_with(b"From bob@example.org "),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let msgs = read_box("mbox", &mbox.0);
    assert_eq!(msgs.len(), 2, "{}", String::from_utf8_lossy(&raw));
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            m.header("Subject"),
            Some(format!("mbox {}", i + 1).as_str())
        );
        assert_eq!(m.header("Return-Path"), Some("<bob@example.org>"));
        assert_eq!(m.header("Delivered-To"), Some("smtpdtest1@localhost"));
        // LF line ends, one dot less, the From_ quoted (the empty line
        // that ends each message in the file is the reader's).
        assert_eq!(
            m.body,
            b"caf\xc3\xa9 cr\xc3\xa8me \xe9t\xe9\n\n>From here on, a line mail.local quotes\n\
              .two dots on the wire, one in the box\nlast\n"
        );
    }
}

/// A sender's maildir in the test's directory, and a recipient domain
/// whose deliveries fail as the command says.
fn failing_conf(command: &str, extra: &str) -> String {
    format!(
        "listen on 127.0.0.1 port @PORT@\n{extra}\
         action \"md\" maildir \"@DIR@/boxes/%{{user.username}}\"\n\
         table vfail {{ \"@fail.test\" = \"smtpdtest1\" }}\n\
         action \"fail\" mda \"/bin/sh -c '{command}'\" virtual <vfail>\n\
         match from any for domain \"fail.test\" action \"fail\"\n\
         match from any for local action \"md\"\n"
    )
}

/// The reports in the sender's maildir, read by Python's email package:
/// for each, its Subject, and the Action and Status of its
/// message/delivery-status part; any defect the parser found fails.
fn reports(maildir: &Path) -> Vec<(String, String, String)> {
    if !maildir.join("cur").is_dir() {
        return Vec::new();
    }
    const DSN: &str = r#"
import mailbox, sys, email.policy
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in sorted(box.keys()):
    msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    defects = list(msg.defects) + [d for p in msg.walk() for d in p.defects]
    assert not defects, defects
    action = status = ""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in part.get_payload():
                action = block.get("Action", action)
                status = block.get("Status", status)
    print("%s|%s|%s" % (msg["Subject"], action, status))
"#;
    let out = Command::new("python3")
        .args(["-c", DSN])
        .arg(maildir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '|').map(str::to_string);
            (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_failing_delivery_warns_at_the_interval_then_bounces_at_expiry() {
    let Some(_turn) = can_run("a_failing_delivery_warns_at_the_interval_then_bounces_at_expiry")
    else {
        return;
    };
    let dir = TestDir::new("dlv-expire");
    owned_dir(&dir, "boxes", "smtpdtest2");
    let sender_box = owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    let conf = failing_conf(
        "echo mailbox busy >&2; exit 75",
        "queue ttl 6s\nbounce warn-interval 2s\n",
    );
    let d = start(&dir, &conf, &[]);
    send(
        &d,
        dir.port,
        "smtpdtest2@localhost",
        &["someone@fail.test"],
        b"Subject: doomed\r\n\r\nwill not make it\r\n",
    );
    let ok = poll_until(Duration::from_secs(30), || reports(&sender_box).len() >= 2);
    let got = reports(&sender_box);
    assert!(ok, "{got:?}\n{}", d.stderr());
    let mut got = got;
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got.len(), 2, "{got:?}");
    let (delayed, failed) = (&got[0], &got[1]);
    assert_eq!(delayed.1, "delayed", "{got:?}");
    assert!(delayed.2.starts_with("4."), "{got:?}");
    assert!(
        delayed.0.contains("Delivery status notification"),
        "{got:?}"
    );
    assert_eq!(failed.1, "failed", "{got:?}");
    assert_eq!(failed.2, "5.4.7", "{got:?}");
    let log = d.stderr();
    assert!(
        log.contains("stat=Envelope expired"),
        "no expiry logged:\n{log}"
    );
    // The original went at expiry, the reports once delivered.
    assert!(
        poll_until(Duration::from_secs(10), || queue_is_empty(&dir.spool())),
        "{:?}",
        common::smtp::queued(&dir.spool())
    );
}

#[test]
fn a_permanent_failure_bounces_once_and_a_bounce_never_bounces() {
    let Some(_turn) = can_run("a_permanent_failure_bounces_once_and_a_bounce_never_bounces") else {
        return;
    };
    let dir = TestDir::new("dlv-permfail");
    owned_dir(&dir, "boxes", "smtpdtest2");
    let sender_box = owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    let conf = failing_conf("echo no such mailbox >&2; exit 67", "");
    let d = start(&dir, &conf, &[]);
    // To a local sender: one report. From a sender whose own mail fails:
    // the report to it fails too, and goes nowhere.
    send(
        &d,
        dir.port,
        "smtpdtest2@localhost",
        &["nobody-here@fail.test"],
        b"Subject: unknown user\r\n\r\nhello?\r\n",
    );
    send(
        &d,
        dir.port,
        "bouncer@fail.test",
        &["nobody-here@fail.test"],
        b"Subject: double\r\n\r\nhello?\r\n",
    );
    let ok = poll_until(Duration::from_secs(20), || {
        !reports(&sender_box).is_empty()
            && deliveries(&d)
                .iter()
                .filter(|l| l.contains("result=PermFail"))
                .count()
                >= 3
    });
    let got = reports(&sender_box);
    assert!(ok, "{got:?}\n{}", d.stderr());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "failed");
    // The MDA's failures are "other mail system status" (5.3.0), as C's.
    assert_eq!(got[0].2, "5.3.0", "{got:?}");
    let lines = deliveries(&d);
    let fails: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("result=PermFail"))
        .collect();
    assert!(
        fails[0].contains("stat=Error (user unknown: \"no such mailbox\")"),
        "{fails:?}"
    );
    // The report to bouncer@fail.test failed in turn; nothing reports
    // on a report.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        deliveries(&d)
            .iter()
            .filter(|l| l.contains("result=PermFail"))
            .count(),
        3,
        "{:?}",
        deliveries(&d)
    );
    assert!(
        queue_is_empty(&dir.spool()),
        "{:?}",
        common::smtp::queued(&dir.spool())
    );
}

#[test]
fn a_user_gone_after_acceptance_gets_the_mail_bounced() {
    let Some(_turn) = can_run("a_user_gone_after_acceptance_gets_the_mail_bounced") else {
        return;
    };
    let dir = TestDir::new("dlv-gone");
    owned_dir(&dir, "boxes", "smtpdtest2");
    let sender_box = owned_dir(&dir, "boxes/smtpdtest2", "smtpdtest2");
    let (uid, gid) = user("smtpdtest1");
    let users = dir.path.join("users");
    fs::write(
        &users,
        format!("leaving {uid}:{gid}:{}\n", dir.path.join("boxes").display()),
    )
    .unwrap();
    let conf = "listen on 127.0.0.1 port @PORT@\n\
                table users file:@DIR@/users\n\
                action \"ub\" maildir \"@DIR@/boxes/%{user.username}\" userbase <users>\n\
                action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
                match from any for domain \"ub.test\" action \"ub\"\n\
                match from any for local action \"md\"\n";
    // Accepted while the user exists; delivered once it is gone.
    let d = start(&dir, conf, &["-P", "mda"]);
    send(
        &d,
        dir.port,
        "smtpdtest2@localhost",
        &["leaving@ub.test"],
        b"Subject: too late\r\n\r\nbye\r\n",
    );
    drop(d);
    fs::write(&users, "").unwrap();
    let d = start(&dir, conf, &[]);
    let lines = wait_deliveries(&d, 2, Duration::from_secs(20));
    let gone = lines
        .iter()
        .find(|l| l.contains("rcpt=<leaving@ub.test>"))
        .unwrap();
    assert_eq!(field(gone, "result"), "PermFail", "{gone}");
    assert_eq!(field(gone, "stat"), "Permanent failure in user lookup");
    let got = reports(&sender_box);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "failed");
    assert_eq!(got[0].2, "5.1.6", "{got:?}");
}

#[test]
fn alias_loops_and_chains_too_deep_are_refused_and_the_session_goes_on() {
    let Some(_turn) =
        can_run("alias_loops_and_chains_too_deep_are_refused_and_the_session_goes_on")
    else {
        return;
    };
    let dir = TestDir::new("dlv-aliasloop");
    owned_dir(&dir, "boxes", "smtpdtest1");
    // loop1 -> loop2 -> loop1; deep0 -> deep1 -> ... -> deep11 -> smtpdtest1,
    // deeper than OpenSMTPD's EXPAND_DEPTH (10); short0 -> short1 -> user.
    let mut aliases = String::from("loop1: loop2\nloop2: loop1\n");
    for i in 0..11 {
        aliases.push_str(&format!("deep{i}: deep{}\n", i + 1));
    }
    aliases.push_str("deep11: smtpdtest1\nshort0: short1\nshort1: smtpdtest1\n");
    fs::write(dir.path.join("aliases"), aliases).unwrap();
    let d = start(
        &dir,
        "listen on 127.0.0.1 port @PORT@\n\
         table aliases file:@DIR@/aliases\n\
         action \"md\" maildir \"@DIR@/boxes/%{user.username}\" alias <aliases>\n\
         match from any for local action \"md\"\n",
        &[],
    );
    let mut c = Client::connect(dir.port);
    assert_eq!(code(&c.reply()[0]), "220");
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    assert_eq!(code(&c.cmd("MAIL FROM:<bob@example.org>")), "250");
    for rcpt in ["loop1@localhost", "deep0@localhost"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("524 5.2.4 "), "{rcpt}: {r}\n{}", d.stderr());
    }
    let r = c.cmd("RCPT TO:<short0@localhost>");
    assert_eq!(code(&r), "250", "{r}");
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(b"Subject: chain\r\n\r\nthrough two aliases\r\n.\r\n");
    assert_eq!(code(&c.reply()[0]), "250");
    let lines = wait_deliveries(&d, 1, Duration::from_secs(20));
    assert_eq!(field(&lines[0], "result"), "Ok", "{}", lines[0]);
    assert_eq!(field(&lines[0], "rcpt"), "<short0@localhost>");
    assert_eq!(field(&lines[0], "user"), "smtpdtest1");
}
