//! sendmail end to end: the build's smtpctl run as sendmail (through
//! symbolic links named sendmail and send-mail, with the test's socket
//! and spool in its environment, or as a set-group-ID copy installed as
//! smtpctl is) by a shell script, by Debian's bsd-mailx and as cron runs
//! it, submitting to a real daemon (as root, private spool) that delivers
//! to maildirs of the test users smtpdtest1 and smtpdtest2
//! (mk/testusers.sh); and the offline queue: mail sent while the daemon
//! is down waits in SPOOL/offline, is enqueued when it starts, and what
//! was planted there instead is refused.
//!
//! The daemon's offline enqueuer runs the smtpctl compiled in (an
//! installed one) with the compiled-in socket, whatever the daemon's
//! environment says, and a set-group-ID sendmail ignores the environment:
//! those runs happen in a mount namespace of their own where the test's
//! directories are mounted over the compiled-in paths
//! (smtpd::sys::testing::mount_ns_pre_exec).
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    deliveries, field, group, poll_until, skip_unless_test_users, smtpd_bin, user, wait_deliveries,
    Daemon, TestDir,
};
use smtpd::pathnames::{PATH_SMTPCTL, PATH_SPOOL, SMTPD_QUEUE_USER, SMTPD_SOCKET};

const SMTPCTL: &str = env!("CARGO_BIN_EXE_smtpctl");
const MAILDIR: &str = env!("CARGO_BIN_EXE_mail-maildir");

/// Every local recipient's mail lands in boxes/USER, a maildir.
const CONF: &str = "listen on 127.0.0.1 port @PORT@\n\
    action \"md\" maildir \"@DIR@/boxes/%{user.username}\"\n\
    match from local for local action \"md\"\n";

const EX_SOFTWARE: i32 = 70;
const EX_TEMPFAIL: i32 = 75;

/// Whether the compiled-in paths the namespace runs mount over exist.
fn can_mount(test: &str) -> bool {
    for p in [PATH_SPOOL, parent(PATH_SMTPCTL), parent(SMTPD_SOCKET)] {
        if !Path::new(p).is_dir() {
            eprintln!("note: {test}: skipped, {p} is not a directory to mount over");
            return false;
        }
    }
    true
}

fn parent(p: &str) -> &str {
    Path::new(p).parent().and_then(Path::to_str).unwrap_or("/")
}

/// The mail name sendmail qualifies addresses with, as it finds it.
fn host() -> String {
    smtpd::util::util::getmailname().expect("getmailname")
}

fn chown(p: &Path, owner: &str, grp: Option<u32>) {
    let (uid, gid) = user(owner);
    std::os::unix::fs::lchown(p, Some(uid), Some(grp.unwrap_or(gid))).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A test directory with what every test needs: mail.maildir, the users'
/// maildirs, bin/sendmail and bin/send-mail (links to the build's
/// smtpctl, or to a copy when the build tree is closed to the users), and
/// sbin/smtpctl, a copy installed as OpenSMTPD's is (root, set-group-ID
/// to the queue's group) with sbin/sendmail a link to it.
fn site(tag: &str) -> TestDir {
    let dir = TestDir::new(tag);
    let lib = dir.path.join("libexec");
    fs::create_dir(&lib).unwrap();
    chmod(&lib, 0o755);
    fs::copy(MAILDIR, lib.join("mail.maildir")).unwrap();
    chmod(&lib.join("mail.maildir"), 0o755);

    let boxes = dir.path.join("boxes");
    fs::create_dir(&boxes).unwrap();
    chmod(&boxes, 0o755);
    for u in ["smtpdtest1", "smtpdtest2"] {
        let b = boxes.join(u);
        fs::create_dir(&b).unwrap();
        chmod(&b, 0o700);
        chown(&b, u, None);
    }

    let bin = dir.path.join("bin");
    fs::create_dir(&bin).unwrap();
    chmod(&bin, 0o755);
    let (uid, gid) = user("smtpdtest2");
    let target = if common::accessible_by(Path::new(SMTPCTL), uid, gid, 5) {
        PathBuf::from(SMTPCTL)
    } else {
        let copy = bin.join("smtpctl");
        fs::copy(SMTPCTL, &copy).unwrap();
        chmod(&copy, 0o755);
        copy
    };
    for name in ["sendmail", "send-mail", "mailq"] {
        std::os::unix::fs::symlink(&target, bin.join(name)).unwrap();
    }

    let sbin = dir.path.join("sbin");
    fs::create_dir(&sbin).unwrap();
    chmod(&sbin, 0o755);
    let smtpctl = sbin.join(Path::new(PATH_SMTPCTL).file_name().unwrap());
    fs::copy(SMTPCTL, &smtpctl).unwrap();
    chown(&smtpctl, "root", Some(group(SMTPD_QUEUE_USER)));
    chmod(&smtpctl, 0o2755);
    std::os::unix::fs::symlink(smtpctl.file_name().unwrap(), sbin.join("sendmail")).unwrap();
    dir
}

/// The daemon on the test's directory. With `ns`, in a mount namespace
/// where sbin/ is where smtpctl is installed and run/ where the control
/// socket is, so that its offline enqueuer runs the build's smtpctl and
/// reaches this daemon.
fn start(dir: &TestDir, ns: bool) -> Daemon {
    let conf = CONF
        .replace("@PORT@", &dir.port.to_string())
        .replace("@DIR@", &dir.path.display().to_string());
    fs::write(dir.conf(), conf).unwrap();
    let lib = dir.path.join("libexec");
    let binds = [
        (dir.path.join("sbin"), PathBuf::from(parent(PATH_SMTPCTL))),
        (dir.path.join("run"), PathBuf::from(parent(SMTPD_SOCKET))),
    ];
    let mut d = Daemon::start_with(dir, &smtpd_bin(), &dir.foreground_args(), |cmd| {
        cmd.env("SMTPD_LIBEXEC", &lib);
        if ns {
            smtpd::sys::testing::mount_ns_pre_exec(cmd, &binds, None).unwrap();
        }
    });
    d.wait_ready(Duration::from_secs(10));
    assert!(
        poll_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", dir.port)).is_ok()
        }),
        "the listener does not accept:\n{}",
        d.stderr()
    );
    d
}

/// The daemon started, then stopped: the spool is set up, nothing
/// answers on the socket.
fn start_and_stop(dir: &TestDir) {
    let mut d = start(dir, false);
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(10)).is_some(),
        "still running after SIGTERM:\n{}",
        d.stderr()
    );
}

fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// bin/NAME with `args` and `stdin`, as `as_user` if given, with the
/// test's socket and spool in its environment.
fn sendmail(
    dir: &TestDir,
    name: &str,
    args: &[&str],
    stdin: &[u8],
    as_user: Option<&str>,
) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(dir.path.join("bin").join(name));
    cmd.args(args)
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool())
        .current_dir(&dir.path);
    if let Some(u) = as_user {
        let (uid, gid) = user(u);
        cmd.uid(uid).gid(gid);
    }
    run(cmd, stdin)
}

/// sbin/sendmail, the set-group-ID copy, as `as_user`, in a mount
/// namespace where the test's spool and run/ are the compiled-in ones
/// (the environment counts for nothing in a set-id program), and `more`.
fn sendmail_setgid_cmd(
    dir: &TestDir,
    args: &[&str],
    as_user: &str,
    more: &[(PathBuf, PathBuf)],
) -> Command {
    let mut cmd = Command::new(dir.path.join("sbin/sendmail"));
    cmd.args(args)
        // Ignored: set-id.
        .env("SMTPD_SPOOL", "/nonexistent")
        .current_dir("/");
    let mut binds = vec![
        (dir.spool(), PathBuf::from(PATH_SPOOL)),
        (dir.path.join("run"), PathBuf::from(parent(SMTPD_SOCKET))),
    ];
    binds.extend_from_slice(more);
    smtpd::sys::testing::mount_ns_pre_exec(&mut cmd, &binds, Some(user(as_user))).unwrap();
    cmd
}

fn sendmail_setgid(
    dir: &TestDir,
    args: &[&str],
    stdin: &[u8],
    as_user: &str,
    more: &[(PathBuf, PathBuf)],
) -> Output {
    run(sendmail_setgid_cmd(dir, args, as_user, more), stdin)
}

/// The real, effective, saved and file system group ids of a process.
fn gids(pid: u32) -> Option<Vec<u32>> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Gid:"))?;
    Some(
        line[4..]
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect(),
    )
}

#[track_caller]
fn assert_status(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One delivered message: its header fields (unfolded) and body.
#[derive(Debug)]
struct Mail {
    fields: Vec<(String, String)>,
    body: String,
}

impl Mail {
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> &str {
        match self.all(name)[..] {
            [v] => v,
            ref vs => panic!("{name}: {vs:?} in {self:?}"),
        }
    }
}

fn parse_mail(raw: &str) -> Mail {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().expect("a field before its continuation");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.to_string(), v.trim().to_string()));
        }
    }
    Mail {
        fields,
        body: body.to_string(),
    }
}

/// The messages in boxes/USER/new, by Subject.
fn mailbox(dir: &TestDir, u: &str) -> Vec<Mail> {
    let new = dir.path.join("boxes").join(u).join("new");
    let mut mails: Vec<Mail> = fs::read_dir(new)
        .map(|d| {
            d.flatten()
                .map(|e| parse_mail(&String::from_utf8_lossy(&fs::read(e.path()).unwrap())))
                .collect()
        })
        .unwrap_or_default();
    mails.sort_by(|a, b| a.all("Subject").cmp(&b.all("Subject")));
    mails
}

/// Waits for `n` delivery lines; returns them sorted.
fn wait_sorted(d: &Daemon, n: usize) -> Vec<String> {
    let mut lines = wait_deliveries(d, n, Duration::from_secs(20));
    lines.sort();
    lines
}

/// The full name sendmail puts in From: for `u` (its gecos up to a comma).
fn fullname(u: &str) -> String {
    let pw = smtpd::sys::process::getpwnam(u).unwrap().unwrap();
    pw.gecos.split(',').next().unwrap_or("").to_string()
}

#[test]
fn a_script_piping_into_sendmail_t_reaches_to_cc_and_bcc_without_the_bcc_field() {
    if skip_unless_test_users(
        "a_script_piping_into_sendmail_t_reaches_to_cc_and_bcc_without_the_bcc_field",
    ) {
        return;
    }
    let dir = site("sm-t");
    let d = start(&dir, false);
    let h = host();
    let script = "printf '%s\\n' 'Subject: from a script' 'To: smtpdtest1' \
        \"Cc: Second <smtpdtest2@$2>\" 'Bcc: Hidden <smtpdtest2+blind>,' '  smtpdtest1+blind2' \
        '' 'body line' | \"$1\" -t";
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh"])
        .arg(dir.path.join("bin/sendmail"))
        .arg(&h)
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool());
    let o = run(cmd, b"");
    assert_status(&o, 0);

    let lines = wait_sorted(&d, 4);
    let mut to: Vec<String> = lines.iter().map(|l| field(l, "to").to_string()).collect();
    let mut want: Vec<String> = [
        "smtpdtest1",
        "smtpdtest2",
        "smtpdtest1+blind2",
        "smtpdtest2+blind",
    ]
    .iter()
    .map(|u| format!("<{u}@{h}>"))
    .collect();
    to.sort();
    want.sort();
    assert_eq!(to, want, "{lines:?}");
    let one = mailbox(&dir, "smtpdtest1");
    let two = mailbox(&dir, "smtpdtest2");
    assert_eq!((one.len(), two.len()), (2, 2), "{one:?} {two:?}");
    for m in one.iter().chain(&two) {
        assert!(m.all("Bcc").is_empty(), "{m:?}");
        let header: Vec<&(String, String)> = m
            .fields
            .iter()
            .filter(|(n, _)| n != "Delivered-To")
            .collect();
        assert!(
            !format!("{header:?}").contains("blind") && !format!("{header:?}").contains("Hidden"),
            "{m:?}"
        );
        assert_eq!(m.one("To"), format!("smtpdtest1@{h}"));
        assert_eq!(m.one("Cc"), format!("Second <smtpdtest2@{h}>"));
        assert_eq!(m.body, "body line\n");
    }
}

#[test]
fn bsd_mailx_sends_through_sendmail() {
    if skip_unless_test_users("bsd_mailx_sends_through_sendmail") {
        return;
    }
    let mailx = Path::new("/usr/bin/bsd-mailx");
    if !mailx.exists() {
        eprintln!("note: bsd_mailx_sends_through_sendmail: skipped, no {} (mk/deps.sh installs bsd-mailx)", mailx.display());
        return;
    }
    let dir = site("sm-mailx");
    let d = start(&dir, false);
    let h = host();
    let home = dir.path.join("home");
    fs::create_dir(&home).unwrap();
    chown(&home, "smtpdtest2", None);
    let mailrc = dir.path.join("mailrc");
    fs::write(
        &mailrc,
        format!("set sendmail={}\n", dir.path.join("bin/sendmail").display()),
    )
    .unwrap();
    chmod(&mailrc, 0o644);

    use std::os::unix::process::CommandExt;
    let (uid, gid) = user("smtpdtest2");
    let mut cmd = Command::new(mailx);
    cmd.args(["-s", "from mailx", "smtpdtest1"])
        .env("MAILRC", &mailrc)
        .env("HOME", &home)
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool())
        .current_dir(&home)
        .uid(uid)
        .gid(gid);
    let o = run(cmd, b"written with mail(1)\n.\nstill there\n");
    assert_status(&o, 0);

    let lines = wait_sorted(&d, 1);
    assert_eq!(field(&lines[0], "from"), format!("<smtpdtest2@{h}>"));
    assert_eq!(field(&lines[0], "to"), format!("<smtpdtest1@{h}>"));
    let got = mailbox(&dir, "smtpdtest1");
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.one("Subject"), "from mailx");
    assert_eq!(
        m.one("From"),
        format!("{} <smtpdtest2@{h}>", fullname("smtpdtest2"))
    );
    assert_eq!(m.body, "written with mail(1)\n.\nstill there\n");
    // Nothing was saved as undeliverable.
    assert!(!home.join("dead.letter").exists());
}

#[test]
fn a_cron_style_call_by_a_user_sends_as_that_user() {
    if skip_unless_test_users("a_cron_style_call_by_a_user_sends_as_that_user") {
        return;
    }
    let dir = site("sm-cron");
    let d = start(&dir, false);
    let h = host();
    // Debian's cron, then the plainest call there is.
    let o = sendmail(
        &dir,
        "sendmail",
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "smtpdtest1"],
        format!("Subject: Cron <smtpdtest2@{h}> date\nX-Cron-Env: <SHELL=/bin/sh>\n\nThu Jan  1 00:00:00 UTC 1970\n").as_bytes(),
        Some("smtpdtest2"),
    );
    assert_status(&o, 0);
    let o = sendmail(
        &dir,
        "sendmail",
        &["-oi", "smtpdtest1"],
        b"Subject: plain\n\nbody\n",
        Some("smtpdtest2"),
    );
    assert_status(&o, 0);

    let lines = wait_sorted(&d, 2);
    for l in &lines {
        assert_eq!(field(l, "from"), format!("<smtpdtest2@{h}>"), "{l}");
        assert_eq!(field(l, "to"), format!("<smtpdtest1@{h}>"), "{l}");
        assert_eq!(field(l, "user"), "smtpdtest1", "{l}");
    }
    let got = mailbox(&dir, "smtpdtest1");
    assert_eq!(got.len(), 2, "{got:?}");
    let (cron, plain) = (&got[0], &got[1]);
    assert_eq!(cron.one("From"), format!("CronDaemon <smtpdtest2@{h}>"));
    assert_eq!(cron.one("Return-Path"), format!("<smtpdtest2@{h}>"));
    assert_eq!(cron.one("X-Cron-Env"), "<SHELL=/bin/sh>");
    assert_eq!(
        plain.one("From"),
        format!("{} <smtpdtest2@{h}>", fullname("smtpdtest2"))
    );
    assert_eq!(plain.one("Return-Path"), format!("<smtpdtest2@{h}>"));
    assert_eq!(plain.body, "body\n");
}

#[test]
fn missing_date_message_id_and_from_are_added_present_ones_kept_and_dots_survive() {
    if skip_unless_test_users(
        "missing_date_message_id_and_from_are_added_present_ones_kept_and_dots_survive",
    ) {
        return;
    }
    let dir = site("sm-head");
    let d = start(&dir, false);
    let h = host();
    let o = sendmail(
        &dir,
        "sendmail",
        &["smtpdtest1"],
        b"Subject: a bare one\r\n\r\n.\r\n..two dots\r\n.leading dot\r\nend\r\n",
        Some("smtpdtest2"),
    );
    assert_status(&o, 0);
    let o = sendmail(
        &dir,
        "sendmail",
        &["smtpdtest1"],
        b"From: Someone Else <someone@example.org>\n\
          Date: Mon, 2 Jan 2023 03:04:05 +0000\n\
          Message-Id: <fixed-1@example.org>\n\
          Subject: b complete one\n\
          \n\
          .\n",
        Some("smtpdtest2"),
    );
    assert_status(&o, 0);

    let lines = wait_sorted(&d, 2);
    // Without -f, the From field is the envelope sender (OpenSMTPD's
    // choice, not Sendmail's).
    let mut from: Vec<String> = lines.iter().map(|l| field(l, "from").to_string()).collect();
    let mut want = vec![
        "<someone@example.org>".to_string(),
        format!("<smtpdtest2@{h}>"),
    ];
    from.sort();
    want.sort();
    assert_eq!(from, want);

    let got = mailbox(&dir, "smtpdtest1");
    assert_eq!(got.len(), 2, "{got:?}");
    let (bare, full) = (&got[0], &got[1]);
    assert_eq!(
        bare.one("From"),
        format!("{} <smtpdtest2@{h}>", fullname("smtpdtest2"))
    );
    assert!(bare.one("Date").contains(':'), "{bare:?}");
    assert!(bare.one("Message-ID").starts_with('<'), "{bare:?}");
    assert_eq!(bare.body, ".\n..two dots\n.leading dot\nend\n");

    assert_eq!(full.one("From"), "Someone Else <someone@example.org>");
    assert_eq!(full.one("Date"), "Mon, 2 Jan 2023 03:04:05 +0000");
    assert_eq!(full.one("Message-Id"), "<fixed-1@example.org>");
    assert_eq!(full.body, ".\n");
}

#[test]
fn lines_smtp_cannot_carry_as_they_are_go_quoted_printable_and_decode_back() {
    if skip_unless_test_users(
        "lines_smtp_cannot_carry_as_they_are_go_quoted_printable_and_decode_back",
    ) {
        return;
    }
    let dir = site("sm-qp");
    let d = start(&dir, false);
    // A line longer than SMTP allows, with 8-bit text, '=' and blanks;
    // then a progress meter as cron mails it, whose carriage returns
    // smtpd refuses on the wire.
    let mut long: Vec<u8> = "Grüße, = signs and a tab\t\n".as_bytes().to_vec();
    long.extend(std::iter::repeat(b'x').take(1500));
    long.extend_from_slice(b" \xe9t\xe9\n.dot at the start\n");
    let progress = b"fetching\n10%\r50%\r100%\ndone \r\r\n".to_vec();
    for (subject, text) in [("a long", &long), ("b progress", &progress)] {
        let mut input = format!("Subject: {subject}\n\n").into_bytes();
        input.extend_from_slice(text);
        let o = sendmail(&dir, "sendmail", &["smtpdtest1"], &input, None);
        assert_status(&o, 0);
    }
    wait_sorted(&d, 2);

    let new = dir.path.join("boxes/smtpdtest1/new");
    let mut decoded = Vec::new();
    for f in fs::read_dir(&new).unwrap().flatten() {
        let raw = fs::read(f.path()).unwrap();
        assert!(
            raw.split(|&b| b == b'\n').all(|l| l.len() <= 998),
            "a line too long for SMTP"
        );
        // Python's email package, a real MIME reader, decodes the body.
        let out = Command::new("python3")
            .args([
                "-c",
                "import email, sys\n\
                 m = email.message_from_binary_file(open(sys.argv[1], 'rb'))\n\
                 assert m['Content-Transfer-Encoding'] == 'quoted-printable', m['Content-Transfer-Encoding']\n\
                 assert m.get_content_charset() == 'unknown-8bit', m.get_content_charset()\n\
                 sys.stdout.buffer.write(m['Subject'].encode() + b'|' + m.get_payload(decode=True))",
            ])
            .arg(f.path())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        decoded.push(out.stdout);
    }
    decoded.sort();
    let want: Vec<Vec<u8>> = [(&b"a long|"[..], &long), (b"b progress|", &progress)]
        .iter()
        .map(|(s, t)| [*s, &t[..]].concat())
        .collect();
    // The last line's CR CR LF reads as a CR that the line holds.
    let mut want = want;
    let n = want[1].len();
    want[1].splice(n - 3.., b"\r\n".iter().copied());
    assert_eq!(
        decoded
            .iter()
            .map(|d| String::from_utf8_lossy(d))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|d| String::from_utf8_lossy(d))
            .collect::<Vec<_>>()
    );
    assert_eq!(decoded, want);
}

#[test]
fn usage_errors_and_their_exit_codes() {
    if skip_unless_test_users("usage_errors_and_their_exit_codes") {
        return;
    }
    let dir = site("sm-usage");
    let _d = start(&dir, false);
    let check = |args: &[&str], stdin: &[u8], code: i32, err: &str| {
        let o = sendmail(&dir, "sendmail", args, stdin, Some("smtpdtest2"));
        assert_status(&o, code);
        assert_eq!(String::from_utf8_lossy(&o.stderr), err, "{args:?}");
    };
    check(
        &[],
        b"Subject: x\n\ny\n",
        EX_SOFTWARE,
        "sendmail: no recipients\n",
    );
    check(
        &["-Q", "smtpdtest1"],
        b"",
        1,
        "sendmail: unknown option -- Q\nusage: sendmail [-tv] [-f from] [-F name] to ...\n",
    );
    check(
        &["-f"],
        b"",
        1,
        "sendmail: option requires an argument -- f\nusage: sendmail [-tv] [-f from] [-F name] to ...\n",
    );
    check(
        &["-f", "<unclosed", "smtpdtest1"],
        b"x\n",
        1,
        "sendmail: leading < but no trailing >\n",
    );
    check(&["-q"], b"", EX_SOFTWARE, "");
    check(
        &["-t"],
        b"To: \"unclosed\n\nx\n",
        1,
        "sendmail: syntax error in address\n",
    );
    // Nothing of it reached the daemon.
    assert!(deliveries(&_d).is_empty());

    // mailq is show queue: for another user, of their own mail (none).
    let o = sendmail(&dir, "mailq", &[], b"", None);
    assert_status(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    let o = sendmail(&dir, "mailq", &[], b"", Some("smtpdtest2"));
    assert_status(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

#[test]
fn verbose_shows_the_dialogue_with_the_dsn_parameters() {
    if skip_unless_test_users("verbose_shows_the_dialogue_with_the_dsn_parameters") {
        return;
    }
    let dir = site("sm-verbose");
    let d = start(&dir, false);
    let h = host();
    let o = sendmail(
        &dir,
        "send-mail",
        &[
            "-v",
            "-N",
            "SUCCESS,FAILURE",
            "-R",
            "HDRS",
            "-V",
            "id-1",
            "smtpdtest1",
        ],
        b"Subject: verbose\n\nx\n",
        Some("smtpdtest2"),
    );
    assert_status(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout);
    // The commands as sent, CRLF and all (lines() takes both off).
    assert!(out.contains(">>> DATA\r\n"), "{out}");
    let sent: Vec<&str> = out.lines().filter(|l| l.starts_with(">>> ")).collect();
    assert_eq!(
        sent,
        [
            ">>> EHLO localhost".to_string(),
            format!(">>> MAIL FROM:<smtpdtest2@{h}> RET=HDRS ENVID=id-1"),
            format!(">>> RCPT TO:<smtpdtest1@{h}> NOTIFY=SUCCESS,FAILURE"),
            ">>> DATA".to_string(),
            ">>> .".to_string(),
            ">>> QUIT".to_string(),
        ]
    );
    assert!(out.starts_with("<<< 220 "), "{out}");
    assert!(out.contains("<<< 250 2.0.0 "), "{out}");
    assert!(out.ends_with("<<< 221 2.0.0 Bye\n"), "{out}");
    let lines = wait_sorted(&d, 1);
    assert_eq!(field(&lines[0], "from"), format!("<smtpdtest2@{h}>"));
}

#[test]
fn with_the_daemon_down_mail_waits_offline_and_goes_when_it_starts() {
    if skip_unless_test_users("with_the_daemon_down_mail_waits_offline_and_goes_when_it_starts")
        || !can_mount("with_the_daemon_down_mail_waits_offline_and_goes_when_it_starts")
    {
        return;
    }
    let dir = site("sm-offline");
    start_and_stop(&dir);
    let h = host();
    let msg = b"Subject: written offline\nTo: smtpdtest1\nBcc: smtpdtest2\n\nwaited\n";
    let offline = dir.spool().join("offline");
    let mut cmd = sendmail_setgid_cmd(&dir, &["-oi", "-t"], "smtpdtest2", &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // While it waits for the message, its offline file made, sendmail
    // has no group but the user's left, not even as the saved one.
    let made = poll_until(Duration::from_secs(10), || {
        fs::read_dir(&offline).is_ok_and(|mut d| d.next().is_some())
    });
    let gid = user("smtpdtest2").1;
    let dropped = poll_until(Duration::from_secs(5), || {
        gids(child.id()) == Some(vec![gid; 4])
    });
    let now = gids(child.id());
    child.stdin.take().unwrap().write_all(msg).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        made,
        "no offline file: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(dropped, "group ids while reading the message: {now:?}");
    assert_status(&o, EX_TEMPFAIL);

    let files: Vec<PathBuf> = fs::read_dir(&offline)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let f = &files[0];
    let name = f.file_name().unwrap().to_str().unwrap();
    let (time, rand) = name.split_once('.').unwrap();
    assert!(
        // mkstemp(3) filled the template in (its letters may include X).
        time.parse::<u64>().is_ok()
            && rand.len() == 10
            && rand != "XXXXXXXXXX"
            && rand.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{name}"
    );
    let meta = fs::symlink_metadata(f).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.uid(), user("smtpdtest2").0, "owned by the sender");
    // The group the set-group-ID program had: the daemon's scan takes
    // only files of the directory's group.
    assert_eq!(meta.gid(), group(SMTPD_QUEUE_USER));
    assert_eq!(meta.mode() & 0o7777, 0o600);
    let mut expect = b"-oi|-t\n".to_vec();
    expect.extend_from_slice(msg);
    assert_eq!(fs::read(f).unwrap(), expect);

    let d = start(&dir, true);
    let lines = wait_sorted(&d, 2);
    for l in &lines {
        assert_eq!(field(l, "from"), format!("<smtpdtest2@{h}>"), "{l}");
    }
    assert!(
        poll_until(Duration::from_secs(10), || !f.exists()),
        "the offline file stays:\n{}",
        d.stderr()
    );
    // The Bcc recipient got it too, and nobody its Bcc field.
    let one = mailbox(&dir, "smtpdtest1");
    let two = mailbox(&dir, "smtpdtest2");
    assert_eq!((one.len(), two.len()), (1, 1), "{one:?} {two:?}");
    for m in [&one[0], &two[0]] {
        assert_eq!(m.one("Subject"), "written offline");
        assert!(m.all("Bcc").is_empty(), "{m:?}");
        assert_eq!(
            m.one("From"),
            format!("{} <smtpdtest2@{h}>", fullname("smtpdtest2"))
        );
        assert_eq!(m.body, "waited\n");
    }
}

#[test]
fn a_daemon_starting_while_sendmail_reads_the_message_takes_it_online() {
    if skip_unless_test_users("a_daemon_starting_while_sendmail_reads_the_message_takes_it_online")
        || !can_mount("a_daemon_starting_while_sendmail_reads_the_message_takes_it_online")
    {
        return;
    }
    let dir = site("sm-offline-race");
    start_and_stop(&dir);
    let offline = dir.spool().join("offline");
    let mut cmd = sendmail_setgid_cmd(&dir, &["-oi", "smtpdtest1"], "smtpdtest2", &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The daemon is down: sendmail made its offline file, empty while it
    // reads the message.
    assert!(poll_until(Duration::from_secs(10), || {
        fs::read_dir(&offline).is_ok_and(|mut d| d.next().is_some())
    }));
    // The daemon starts meanwhile; its scan removes the empty file.
    let d = start(&dir, true);
    assert!(
        poll_until(Duration::from_secs(10), || {
            fs::read_dir(&offline).is_ok_and(|mut d| d.next().is_none())
        }),
        "the empty offline file stays:\n{}",
        d.stderr()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: raced\n\nbody\n")
        .unwrap();
    // sendmail sees its file gone and submits to the daemon instead.
    let o = child.wait_with_output().unwrap();
    assert_status(&o, 0);
    let lines = wait_sorted(&d, 1);
    assert_eq!(field(&lines[0], "from"), format!("<smtpdtest2@{}>", host()));
    let one = mailbox(&dir, "smtpdtest1");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0].body, "body\n");
}

/// Whether a process waits for the flock(2) of the file whose inode is
/// `ino` (a `->` line of /proc/locks).
fn flock_waited_for(ino: u64) -> bool {
    fs::read_to_string("/proc/locks").is_ok_and(|l| {
        l.lines()
            .any(|l| l.contains("->") && l.contains(&format!(":{ino} ")))
    })
}

#[test]
fn the_offline_enqueuer_waits_for_a_half_written_file() {
    if skip_unless_test_users("the_offline_enqueuer_waits_for_a_half_written_file")
        || !can_mount("the_offline_enqueuer_waits_for_a_half_written_file")
    {
        return;
    }
    let dir = site("sm-offline-lock");
    start_and_stop(&dir);
    // An offline file as sendmail writes it, caught halfway: locked, the
    // message's end still to come.
    let path = dir.spool().join("offline").join("1.halfway");
    fs::write(&path, "smtpdtest1\nSubject: halfway\n\nfirst line\n").unwrap();
    chown(&path, "smtpdtest2", Some(group(SMTPD_QUEUE_USER)));
    chmod(&path, 0o600);
    let mut writer = fs::OpenOptions::new().append(true).open(&path).unwrap();
    smtpd::sys::mailbox::flock_exclusive(&writer).unwrap();
    let ino = writer.metadata().unwrap().ino();
    // The daemon's scan finds it, and its enqueuer waits for the lock.
    let d = start(&dir, true);
    assert!(
        poll_until(Duration::from_secs(10), || flock_waited_for(ino)),
        "nobody waits for the offline file:\n{}\n{}",
        d.stderr(),
        fs::read_to_string("/proc/locks").unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(deliveries(&d).is_empty(), "{}", d.stderr());
    writer.write_all(b"last line\n").unwrap();
    writer.sync_all().unwrap();
    drop(writer);
    // Then the whole message goes.
    let lines = wait_sorted(&d, 1);
    assert_eq!(field(&lines[0], "from"), format!("<smtpdtest2@{}>", host()));
    let one = mailbox(&dir, "smtpdtest1");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0].one("Subject"), "halfway");
    assert_eq!(one[0].body, "first line\nlast line\n");
    assert!(
        poll_until(Duration::from_secs(10), || !path.exists()),
        "the offline file stays:\n{}",
        d.stderr()
    );
}

#[test]
fn the_offline_queue_refuses_links_fifos_and_files_not_made_by_sendmail() {
    if skip_unless_test_users(
        "the_offline_queue_refuses_links_fifos_and_files_not_made_by_sendmail",
    ) || !can_mount("the_offline_queue_refuses_links_fifos_and_files_not_made_by_sendmail")
    {
        return;
    }
    let dir = site("sm-planted");
    start_and_stop(&dir);
    let h = host();
    let queue_gid = group(SMTPD_QUEUE_USER);
    let offline = dir.spool().join("offline");
    let elsewhere = dir.path.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let plant = |p: &Path, subject: &str, owner: &str, grp: Option<u32>| {
        fs::write(p, format!("smtpdtest1\nSubject: {subject}\n\nplanted\n")).unwrap();
        chown(p, owner, grp);
        chmod(p, 0o600);
    };
    // As sendmail leaves one: it goes, which shows the refusals below
    // are refusals.
    plant(
        &offline.join("1.good"),
        "good",
        "smtpdtest2",
        Some(queue_gid),
    );
    // A symbolic link to a well-formed file.
    plant(
        &elsewhere.join("target"),
        "via a symbolic link",
        "smtpdtest2",
        Some(queue_gid),
    );
    std::os::unix::fs::symlink(elsewhere.join("target"), offline.join("2.symlink")).unwrap();
    // A hard link: one of two names of a well-formed file.
    plant(
        &offline.join("3.hardlink"),
        "via a hard link",
        "smtpdtest2",
        Some(queue_gid),
    );
    fs::hard_link(offline.join("3.hardlink"), elsewhere.join("other-name")).unwrap();
    // A FIFO, which would block a reader.
    let fifo = offline.join("4.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    chown(&fifo, "smtpdtest2", Some(queue_gid));
    chmod(&fifo, 0o600);
    // Someone else's file, not made through sendmail (not of the queue's
    // group).
    plant(
        &offline.join("5.foreign"),
        "someone else's",
        "smtpdtest1",
        None,
    );

    let mut d = start(&dir, true);
    let lines = wait_sorted(&d, 1);
    assert_eq!(field(&lines[0], "from"), format!("<smtpdtest2@{h}>"));
    assert!(
        poll_until(Duration::from_secs(10), || d
            .stderr()
            .contains("is hard-link")),
        "no refusal of the hard link:\n{}",
        d.stderr()
    );
    // Time for anything else to arrive.
    std::thread::sleep(Duration::from_secs(2));
    let got = mailbox(&dir, "smtpdtest1");
    let subjects: Vec<&str> = got.iter().map(|m| m.one("Subject")).collect();
    assert_eq!(subjects, ["good"], "{}", d.stderr());
    assert_eq!(deliveries(&d).len(), 1);
    assert!(!offline.join("1.good").exists());
    for left in ["2.symlink", "3.hardlink", "4.fifo", "5.foreign"] {
        assert!(
            fs::symlink_metadata(offline.join(left)).is_ok(),
            "{left} is gone"
        );
    }
    assert!(d.try_wait().is_none(), "the daemon exited:\n{}", d.stderr());
    d.wait_ready(Duration::from_secs(5));
}

#[test]
fn a_refused_recipient_leaves_a_dead_letter_the_sender_owns_without_the_queue_group() {
    if skip_unless_test_users(
        "a_refused_recipient_leaves_a_dead_letter_the_sender_owns_without_the_queue_group",
    ) || !can_mount(
        "a_refused_recipient_leaves_a_dead_letter_the_sender_owns_without_the_queue_group",
    ) {
        return;
    }
    let dir = site("sm-dead");
    let d = start(&dir, false);
    let h = host();
    let pw = smtpd::sys::process::getpwnam("smtpdtest2")
        .unwrap()
        .unwrap();
    let home = dir.path.join("home");
    fs::create_dir(&home).unwrap();
    chown(&home, "smtpdtest2", None);
    let o = sendmail_setgid(
        &dir,
        &["smtpdtest1", "nobody@example.org"],
        b"Subject: undeliverable\n\nkept\n",
        "smtpdtest2",
        &[(home.clone(), PathBuf::from(&pw.dir))],
    );
    assert_status(&o, EX_SOFTWARE);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("sendmail: command failed: 550 "), "{err}");

    let dead = home.join("dead.letter");
    let meta = fs::metadata(&dead).expect("dead.letter");
    assert_eq!(meta.uid(), pw.uid);
    // sendmail gave up the queue's group before writing anything.
    assert_eq!(meta.gid(), pw.gid);
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = fs::read_to_string(&dead).unwrap();
    let m = parse_mail(&text);
    assert_eq!(
        m.one("From"),
        format!("{} <smtpdtest2@{h}>", fullname("smtpdtest2"))
    );
    assert_eq!(m.one("Subject"), "undeliverable");
    assert_eq!(m.body, "kept\n\n");
    // The transaction was abandoned: nothing was delivered.
    std::thread::sleep(Duration::from_secs(1));
    assert!(deliveries(&d).is_empty(), "{:?}", deliveries(&d));
}
