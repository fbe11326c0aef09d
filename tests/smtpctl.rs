//! smtpctl against a running daemon: its output for each command, what
//! the commands do to the daemon, who may run them, and the control
//! socket facing clients that do not speak its protocol.
#![allow(clippy::disallowed_methods)]

#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::smtp::{code, queue_is_empty, queued, send_message, start_with_args, Client};
use common::{poll_until, skip_unless_root, user, Daemon, TestDir};
use smtpd::ipc::mproc::ImsgType;

const SMTPCTL: &str = env!("CARGO_BIN_EXE_smtpctl");
const IMSG_VERSION: u32 = 16;
const IMSG_CTL_OK: u32 = ImsgType::IMSG_CTL_OK as u32;
const IMSG_CTL_FAIL: u32 = ImsgType::IMSG_CTL_FAIL as u32;
const IMSG_CTL_PAUSE_MDA: u32 = ImsgType::IMSG_CTL_PAUSE_MDA as u32;

/// smtpctl with `args`, talking to the daemon of `dir`; as `uid` if given.
fn smtpctl(dir: &TestDir, args: &[&str], uid: Option<u32>) -> Output {
    let mut cmd = Command::new(smtpctl_for(dir, uid));
    cmd.args(args)
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("run smtpctl")
}

/// The smtpctl binary as `uid` can run it: for another user, a copy in
/// the test's directory (the build tree may be closed to them).
fn smtpctl_for(dir: &TestDir, uid: Option<u32>) -> std::path::PathBuf {
    if uid.is_none() {
        return SMTPCTL.into();
    }
    let copy = dir.path.join("smtpctl");
    if !copy.exists() {
        fs::copy(SMTPCTL, &copy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    }
    copy
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn start(dir: &TestDir, extra: &[&str]) -> Daemon {
    start_with_args(dir, None, extra)
}

/// One message from `from` to root, queued (250), in a session of its own.
fn queue_one(dir: &TestDir, from: &str, subject: &str, body: &str) {
    let mut c = Client::connect(dir.port);
    c.reply();
    c.cmd("EHLO client.test");
    let data = format!("Subject: {subject}\r\n\r\n{body}\r\n");
    assert_eq!(
        code(&send_message(&mut c, from, "root@localhost", &data)),
        "250"
    );
    assert_eq!(code(&c.cmd("QUIT")), "221");
}

#[test]
fn show_status_and_pause_resume_say_what_opensmtpd_says() {
    if skip_unless_root("show_status_and_pause_resume_say_what_opensmtpd_says") {
        return;
    }
    let dir = TestDir::new("ctl-pause");
    let d = start(&dir, &[]);
    let status = |want: &str| {
        let o = smtpctl(&dir, &["show", "status"], None);
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(out(&o), want);
    };
    // The MTA does not exist yet: it shows paused and stays so.
    status("MDA running\nMTA paused\nSMTP running\n");
    for (args, want, ok) in [
        (&["pause", "mda"][..], "command succeeded\n", true),
        (&["pause", "mda"], "command failed\n", false),
        (&["pause", "smtp"], "command succeeded\n", true),
        (&["resume", "mta"], "command failed\n", false),
    ] {
        let o = smtpctl(&dir, args, None);
        assert_eq!(out(&o), want, "{args:?}: {}", err(&o));
        assert_eq!(o.status.success(), ok, "{args:?}");
    }
    status("MDA paused\nMTA paused\nSMTP paused\n");
    // Paused, the listener greets nobody; resumed, it does again.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", dir.port))
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut b = [0u8; 16];
                !matches!(s.read(&mut b), Ok(n) if n > 0)
            })
            .unwrap_or(true),
        "a paused listener greeted a client"
    );
    let o = smtpctl(&dir, &["resume", "smtp"], None);
    assert_eq!(out(&o), "command succeeded\n");
    assert!(poll_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", dir.port)).is_ok()
    }));
    let o = smtpctl(&dir, &["resume", "mda"], None);
    assert_eq!(out(&o), "command succeeded\n");
    status("MDA running\nMTA paused\nSMTP running\n");
    let log = d.stderr();
    for line in [
        "info: mda paused",
        "info: smtp paused",
        "info: smtp resumed",
        "info: mda resumed",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
}

#[test]
fn a_paused_mda_holds_mail_until_resumed() {
    if skip_unless_root("a_paused_mda_holds_mail_until_resumed") {
        return;
    }
    let dir = TestDir::new("ctl-mda");
    // Mail to root is refused at delivery (mbox only): the attempt is
    // what shows, in the log.
    let d = start(&dir, &["-P", "mda"]);
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(out(&o), "MDA paused\nMTA paused\nSMTP running\n");
    queue_one(&dir, "a@example.org", "held", "x");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!d.stderr().contains("mda delivery"), "{}", d.stderr());
    assert_eq!(queued(&dir.spool()).len(), 1);
    let o = smtpctl(&dir, &["resume", "mda"], None);
    assert_eq!(out(&o), "command succeeded\n");
    assert!(
        poll_until(Duration::from_secs(10), || d
            .stderr()
            .contains("mda delivery")),
        "{}",
        d.stderr()
    );
}

#[test]
fn log_verbose_and_brief_switch_the_debug_lines() {
    if skip_unless_root("log_verbose_and_brief_switch_the_debug_lines") {
        return;
    }
    let dir = TestDir::new("ctl-log");
    let d = start(&dir, &[]);
    let debug_lines = || {
        d.stderr()
            .lines()
            .filter(|l| l.starts_with("debug:"))
            .count()
    };
    let quiet = debug_lines();
    let o = smtpctl(&dir, &["log", "verbose"], None);
    assert_eq!(out(&o), "command succeeded\n");
    let _ = std::net::TcpStream::connect(("127.0.0.1", dir.port));
    assert!(
        poll_until(Duration::from_secs(5), || debug_lines() > quiet),
        "{}",
        d.stderr()
    );
    let o = smtpctl(&dir, &["log", "brief"], None);
    assert_eq!(out(&o), "command succeeded\n");
    std::thread::sleep(Duration::from_millis(300));
    let verbose = debug_lines();
    let _ = std::net::TcpStream::connect(("127.0.0.1", dir.port));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(debug_lines(), verbose, "{}", d.stderr());
    for (args, ok) in [
        (&["trace", "expand"][..], true),
        (&["untrace", "expand"], true),
        (&["profile", "queue"], true),
        (&["unprofile", "queue"], true),
    ] {
        let o = smtpctl(&dir, args, None);
        assert_eq!(o.status.success(), ok, "{args:?}: {}", err(&o));
        assert_eq!(out(&o), "command succeeded\n");
    }
    let o = smtpctl(&dir, &["trace", "nonsense"], None);
    assert!(!o.status.success());
    assert_eq!(err(&o), "smtpctl: invalid trace keyword: nonsense\n");
}

#[test]
fn unknown_missing_and_unready_commands_say_so() {
    if skip_unless_root("unknown_missing_and_unready_commands_say_so") {
        return;
    }
    let dir = TestDir::new("ctl-bad");
    let o = smtpctl(&dir, &["show", "status"], None);
    assert!(!o.status.success());
    assert_eq!(err(&o), "smtpctl: smtpd doesn't seem to be running\n");
    let _d = start(&dir, &[]);
    // parser.c's answers, and its exit status (main returns -1).
    let o = smtpctl(&dir, &["frobnicate"], None);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        err(&o).starts_with("possibilities are:\ndiscover\npause\nresume\nshow\n"),
        "{}",
        err(&o)
    );
    let o = smtpctl(&dir, &["log", "brief", "now"], None);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(err(&o), "invalid command\n");
    let o = smtpctl(&dir, &["schedule", "123"], None);
    assert_eq!(
        err(&o),
        "possibilities are:\nschedule <msgid>\nschedule <evpid>\nschedule all\n"
    );
    // Abbreviations, as parser.c takes them.
    let o = smtpctl(&dir, &["sh", "statu"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with("MDA running"), "{}", out(&o));
    // An argument that is not UTF-8: said, not a panic.
    let o = Command::new(SMTPCTL)
        .arg("show")
        .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"qu\xffeue"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "smtpctl: argument 2 is not valid UTF-8: qu\u{fffd}eue\n"
    );
    // The relaying agent's commands wait for it.
    let o = smtpctl(&dir, &["show", "hosts"], None);
    assert!(!o.status.success());
    assert!(err(&o).contains("not implemented yet"), "{}", err(&o));
}

/// An imsg header: type, length (with the payload), peerid, pid.
fn imsg(t: u32, peerid: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&t.to_ne_bytes());
    b.extend_from_slice(&(16 + data.len() as u32).to_ne_bytes());
    b.extend_from_slice(&peerid.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(data);
    b
}

/// The type and peerid of the next reply on `s`.
fn reply(s: &mut UnixStream) -> Option<(u32, u32)> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut h = [0u8; 16];
    s.read_exact(&mut h).ok()?;
    let word = |i: usize| u32::from_ne_bytes(h[i..i + 4].try_into().unwrap());
    Some((word(0), word(8)))
}

/// `python3 -c script SOCKET`, run as `uid`: a raw client of the socket.
fn python_client(dir: &TestDir, script: &str, uid: u32) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(dir.socket()).uid(uid).gid(uid);
    cmd
}

#[test]
fn only_root_may_administer_whatever_the_client() {
    if skip_unless_root("only_root_may_administer_whatever_the_client") {
        return;
    }
    let dir = TestDir::new("ctl-perm");
    let _d = start(&dir, &[]);
    let (nobody, _) = user("nobody");
    let o = smtpctl(&dir, &["pause", "mda"], Some(nobody));
    assert!(!o.status.success());
    assert_eq!(err(&o), "smtpctl: need root privileges\n");
    // A client of its own, as nobody, sending the request itself.
    let py = format!(
        "import socket, struct, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect(sys.argv[1])\n\
         s.sendall(struct.pack('=IIII', {IMSG_CTL_PAUSE_MDA}, 16, {IMSG_VERSION}, 0))\n\
         h = s.recv(16)\n\
         print(*struct.unpack('=IIII', h)[::2])\n"
    );
    let o = python_client(&dir, &py, nobody).output().unwrap();
    assert_eq!(out(&o), format!("{IMSG_CTL_FAIL} 0\n"), "{}", err(&o));
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(out(&o), "MDA running\nMTA paused\nSMTP running\n");
}

#[test]
fn hostile_clients_are_dropped_and_the_daemon_serves_on() {
    if skip_unless_root("hostile_clients_are_dropped_and_the_daemon_serves_on") {
        return;
    }
    let dir = TestDir::new("ctl-hostile");
    let d = start(&dir, &[]);
    let sock = dir.socket();
    // Another version of smtpctl: told so, not obeyed.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&imsg(IMSG_CTL_PAUSE_MDA, 15, &[])).unwrap();
    assert_eq!(reply(&mut s), Some((IMSG_CTL_FAIL, IMSG_VERSION)));
    // A client that never reads, holding a request's answer.
    let idle = UnixStream::connect(&sock).unwrap();
    let mut idle2 = idle.try_clone().unwrap();
    idle2
        .write_all(&imsg(IMSG_CTL_OK, IMSG_VERSION, &[]))
        .unwrap();
    // Garbage, a length under the header's, one over 16384, a header cut
    // short: each client is dropped.
    let mut bad_len = imsg(IMSG_CTL_PAUSE_MDA, IMSG_VERSION, &[]);
    bad_len[4..8].copy_from_slice(&8u32.to_ne_bytes());
    let mut huge = imsg(IMSG_CTL_PAUSE_MDA, IMSG_VERSION, &[]);
    huge[4..8].copy_from_slice(&20000u32.to_ne_bytes());
    for junk in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        bad_len,
        huge,
        imsg(IMSG_CTL_PAUSE_MDA, IMSG_VERSION, &[])[..10].to_vec(),
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = s.read_to_end(&mut rest);
        assert!(r.is_ok(), "{junk:?}: the daemon kept the connection: {r:?}");
    }
    // The daemon and its other clients go on.
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(
        out(&o),
        "MDA running\nMTA paused\nSMTP running\n",
        "{}",
        err(&o)
    );
    let mut c = Client::connect(dir.port);
    assert_eq!(code(&c.reply()[0]), "220");
    drop(idle);
    assert!(!d.stderr().contains("fatal"), "{}", d.stderr());
}

/// `show queue` lines, split into their fields.
fn show_queue(dir: &TestDir, args: &[&str]) -> Vec<Vec<String>> {
    let mut a = vec!["show", "queue"];
    a.extend_from_slice(args);
    queue_lines(&smtpctl(dir, &a, None))
}

#[test]
fn show_queue_schedule_remove_and_envelope_pauses_act_on_real_envelopes() {
    if skip_unless_root("show_queue_schedule_remove_and_envelope_pauses_act_on_real_envelopes") {
        return;
    }
    let dir = TestDir::new("ctl-queue");
    let d = start(&dir, &["-P", "mda"]);
    let mut c = Client::connect(dir.port);
    c.reply();
    c.cmd("EHLO client.test");
    for i in 0..2 {
        assert_eq!(code(&c.cmd("MAIL FROM:<bob@example.org>")), "250");
        assert_eq!(code(&c.cmd("RCPT TO:<root@localhost>")), "250");
        assert_eq!(code(&c.cmd("RCPT TO:<smtpdtest1@localhost>")), "250");
        assert_eq!(code(&c.cmd("DATA")), "354");
        c.send(format!("Subject: {i}\r\n\r\nx\r\n.\r\n").as_bytes());
        assert_eq!(code(&c.reply()[0]), "250");
    }
    let q = show_queue(&dir, &[]);
    assert_eq!(q.len(), 4, "{q:?}");
    for f in &q {
        // evpid|src|agent|flags|sender|rcpt|dest|creation|expire|lasttry|
        // retry|state|delay|error
        assert_eq!(f.len(), 14, "{f:?}");
        assert_eq!(f[0].len(), 16);
        assert_eq!(&f[1..5], ["inet4", "mda", "", "bob@example.org"]);
        assert_eq!(f[11], "pending");
        assert_eq!(f[9], "0");
    }
    // One message's envelopes.
    let msgid = &q[0][0][..8];
    let one = show_queue(&dir, &[msgid]);
    assert_eq!(one.len(), 2);
    assert!(one.iter().all(|f| f[0].starts_with(msgid)));
    let run = |args: &[&str]| {
        let o = smtpctl(&dir, args, None);
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        out(&o)
    };
    assert_eq!(run(&["pause", "envelope", "all"]), "4 envelopes paused\n");
    assert!(show_queue(&dir, &[]).iter().all(|f| f[3] == "suspend"));
    assert_eq!(run(&["resume", "envelope", msgid]), "2 envelopes resumed\n");
    assert_eq!(
        show_queue(&dir, &[])
            .iter()
            .filter(|f| f[3] == "suspend")
            .count(),
        2
    );
    assert_eq!(run(&["resume", "envelope", "all"]), "2 envelopes resumed\n");
    assert_eq!(run(&["schedule", "all"]), "4 envelopes scheduled\n");
    let evpid = q[0][0].clone();
    assert_eq!(run(&["remove", &evpid]), "1 envelope removed\n");
    assert!(poll_until(Duration::from_secs(5), || show_queue(&dir, &[])
        .len()
        == 3));
    assert!(
        poll_until(Duration::from_secs(5), || d
            .stderr()
            .contains(&format!("Remove for {evpid}: "))),
        "{}",
        d.stderr()
    );
    assert_eq!(run(&["remove", "all"]), "3 envelopes removed\n");
    assert!(poll_until(Duration::from_secs(5), || show_queue(&dir, &[]).is_empty()));
    assert!(poll_until(Duration::from_secs(5), || queue_is_empty(
        &dir.spool()
    )));
}

#[test]
fn show_queue_reads_the_spool_when_the_daemon_is_down() {
    if skip_unless_root("show_queue_reads_the_spool_when_the_daemon_is_down") {
        return;
    }
    let dir = TestDir::new("ctl-offline");
    let d = start(&dir, &["-P", "mda"]);
    queue_one(&dir, "bob@example.org", "s", "x");
    let online = show_queue(&dir, &[]);
    drop(d);
    let offline = show_queue(&dir, &[]);
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0][0], online[0][0]);
    assert_eq!(offline[0][11], "offline");
}

#[test]
fn show_envelope_and_message_print_the_spool_files() {
    if skip_unless_root("show_envelope_and_message_print_the_spool_files") {
        return;
    }
    let dir = TestDir::new("ctl-show");
    let _d = start(&dir, &["-P", "mda"]);
    queue_one(&dir, "bob@example.org", "shown", "body");
    let q = show_queue(&dir, &[]);
    let evpid = q[0][0].clone();
    let (path, _) = &queued(&dir.spool())[0];
    let o = smtpctl(&dir, &["show", "envelope", &evpid], None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(o.stdout, fs::read(path.join(&evpid)).unwrap());
    assert!(out(&o).contains("rcpt: root@localhost\n"), "{}", out(&o));
    for id in [&evpid[..8], &evpid[..]] {
        let o = smtpctl(&dir, &["show", "message", id], None);
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(o.stdout, fs::read(path.join("message")).unwrap());
    }
    let o = smtpctl(&dir, &["show", "envelope", "0123456789abcdef"], None);
    assert!(!o.status.success());
    assert!(err(&o).starts_with("smtpctl: fopen: "), "{}", err(&o));
}

#[test]
fn discover_loads_what_was_put_in_the_spool_by_hand() {
    if skip_unless_root("discover_loads_what_was_put_in_the_spool_by_hand") {
        return;
    }
    // A message queued by one daemon, moved by hand into another's spool.
    let a = TestDir::new("ctl-disc-a");
    let da = start(&a, &["-P", "mda"]);
    queue_one(&a, "bob@example.org", "moved", "x");
    drop(da);
    let (msgdir, files) = queued(&a.spool()).remove(0);
    let evpid = files.iter().find(|f| f.len() == 16).unwrap().clone();
    let msgid = evpid[..8].to_string();

    let b = TestDir::new("ctl-disc-b");
    let _db = start(&b, &["-P", "mda"]);
    assert!(show_queue(&b, &[]).is_empty());
    let bucket = b.spool().join("queue").join(&msgid[..2]);
    fs::create_dir_all(&bucket).unwrap();
    // cp -a keeps the owner (_smtpq) and modes the queue expects.
    let st = Command::new("cp")
        .arg("-a")
        .arg(&msgdir)
        .arg(bucket.join(&msgid))
        .status()
        .unwrap();
    assert!(st.success());
    let o = smtpctl(&b, &["discover", &msgid], None);
    assert_eq!(out(&o), "1 envelope discovered\n", "{}", err(&o));
    let q = show_queue(&b, &[]);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0][0], evpid);
    let o = smtpctl(&b, &["discover", "0123456789abcdef"], None);
    assert_eq!(out(&o), "0 envelopes discovered\n", "{}", err(&o));
}

#[test]
fn show_stats_and_monitor_count_real_traffic() {
    if skip_unless_root("show_stats_and_monitor_count_real_traffic") {
        return;
    }
    let dir = TestDir::new("ctl-stats");
    let _d = start(&dir, &["-P", "mda"]);
    // monitor, started before the traffic, prints a line a second.
    let mut monitor = Command::new(SMTPCTL)
        .arg("monitor")
        .env("SMTPD_SOCKET", dir.socket())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The start's own probe of the listener counts as a session too.
    let before: usize = {
        let o = smtpctl(&dir, &["show", "stats"], None);
        out(&o)
            .lines()
            .find_map(|l| l.strip_prefix("smtp.session.inet4="))
            .map_or(0, |v| v.parse().unwrap())
    };
    for _ in 0..2 {
        queue_one(&dir, "bob@example.org", "s", "x");
    }
    let stats = || -> std::collections::BTreeMap<String, String> {
        let o = smtpctl(&dir, &["show", "stats"], None);
        assert!(o.status.success(), "{}", err(&o));
        out(&o)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(
        poll_until(Duration::from_secs(5), || {
            let s = stats();
            s.get("smtp.session.inet4") == Some(&(before + 2).to_string())
                && s.get("smtp.session").map(String::as_str) == Some("0")
                && s.get("scheduler.envelope").map(String::as_str) == Some("2")
                // The backends' counters, sent at the end of a turn.
                && s.get("scheduler.ramqueue.envelope").map(String::as_str) == Some("2")
                && s.get("scheduler.ramqueue.message").map(String::as_str) == Some("2")
                && s.get("scheduler.ramqueue.update").map(String::as_str) == Some("0")
                && s.get("queue.evpcache.size").map(String::as_str) == Some("2")
        }),
        "{:?}",
        stats()
    );
    // Listing loads both envelopes, from the cache.
    assert_eq!(show_queue(&dir, &[]).len(), 2);
    assert!(
        poll_until(Duration::from_secs(5), || {
            stats().get("queue.evpcache.load.hit").map(String::as_str) == Some("2")
        }),
        "{:?}",
        stats()
    );
    let s = stats();
    assert!(s["uptime"].parse::<i64>().is_ok(), "{s:?}");
    assert!(s.contains_key("uptime.human"), "{s:?}");
    // This very client, and monitor.
    assert_eq!(s["control.session"], "2", "{s:?}");
    // Keys in order, as C's tree keeps them.
    let o = smtpctl(&dir, &["show", "stats"], None);
    let keys: Vec<String> = out(&o)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .filter(|k| !k.starts_with("uptime"))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    std::thread::sleep(Duration::from_millis(1500));
    let _ = monitor.kill();
    let o = monitor.wait_with_output().unwrap();
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        lines[0].starts_with("--- client ---  -- envelope --"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("curr conn disc  curr  enq  deq"),
        "{text}"
    );
    // Over the lines after the first, the sessions and envelopes add up.
    let sum = |col: usize| -> usize {
        lines[3..]
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .nth(col)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(sum(1), 2, "connections: {text}");
    assert_eq!(sum(4), 2, "envelopes enqueued: {text}");
}

#[test]
fn a_client_passing_descriptors_is_dropped_and_the_daemon_serves_on() {
    if skip_unless_root("a_client_passing_descriptors_is_dropped_and_the_daemon_serves_on") {
        return;
    }
    let dir = TestDir::new("ctl-fdpass");
    let d = start(&dir, &[]);
    // A request with a descriptor attached (SCM_RIGHTS), by a real client.
    let py = format!(
        "import socket, struct, sys, os\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect(sys.argv[1])\n\
         fd = os.open('/dev/null', os.O_RDONLY)\n\
         msg = struct.pack('=IIII', {IMSG_CTL_PAUSE_MDA}, 16, {IMSG_VERSION}, 0)\n\
         s.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('i', fd))])\n\
         s.settimeout(5)\n\
         try:\n\
         \x20   print(len(s.recv(16)))\n\
         except OSError as e:\n\
         \x20   print('error', e)\n"
    );
    let o = Command::new("python3")
        .args(["-c", &py])
        .arg(dir.socket())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    // Dropped (an end of file), or answered without effect; never obeyed.
    let got = out(&o);
    assert!(got == "0\n" || got == "16\n", "{got}");
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(
        out(&o),
        "MDA running\nMTA paused\nSMTP running\n",
        "{}",
        err(&o)
    );
    assert!(!d.stderr().contains("fatal"), "{}", d.stderr());
}

#[test]
fn one_user_may_hold_only_32_control_connections() {
    if skip_unless_root("one_user_may_hold_only_32_control_connections") {
        return;
    }
    let dir = TestDir::new("ctl-count");
    let d = start(&dir, &[]);
    let (nobody, _) = user("nobody");
    // 40 clients at once, as nobody: each asks something it may not have
    // and prints what comes back, a refusal or the end of the stream.
    let py = format!(
        "import socket, struct, sys\n\
         socks = []\n\
         for i in range(40):\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   s.connect(sys.argv[1])\n\
         \x20   socks.append(s)\n\
         for s in socks:\n\
         \x20   s.settimeout(5)\n\
         \x20   try:\n\
         \x20       s.sendall(struct.pack('=IIII', {IMSG_CTL_PAUSE_MDA}, 16, {IMSG_VERSION}, 0))\n\
         \x20       h = s.recv(16)\n\
         \x20   except OSError:\n\
         \x20       h = b''\n\
         \x20   print(struct.unpack('=IIII', h)[0] if len(h) == 16 else 'closed')\n\
         sys.stdout.flush()\n\
         sys.stdin.read()\n"
    );
    let mut held = python_client(&dir, &py, nobody)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut r = std::io::BufReader::new(held.stdout.take().unwrap());
    for _ in 0..40 {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut r, &mut l).unwrap();
        lines.push(l.trim().to_string());
    }
    let refused = lines
        .iter()
        .filter(|l| **l == IMSG_CTL_FAIL.to_string())
        .count();
    let closed = lines.iter().filter(|l| *l == "closed").count();
    assert_eq!((refused, closed), (32, 8), "{lines:?}");
    // Root is another user: still served while nobody holds 32.
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(
        out(&o),
        "MDA running\nMTA paused\nSMTP running\n",
        "{}",
        err(&o)
    );
    assert!(
        d.stderr().contains(&format!(
            "too many connections to control socket from user with uid {nobody}"
        )),
        "{}",
        d.stderr()
    );
    // Once they are gone, nobody may connect again.
    drop(held.stdin.take());
    held.wait().unwrap();
    let py1 = format!(
        "import socket, struct, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect(sys.argv[1])\n\
         s.sendall(struct.pack('=IIII', {IMSG_CTL_PAUSE_MDA}, 16, {IMSG_VERSION}, 0))\n\
         print(struct.unpack('=IIII', s.recv(16))[0])\n"
    );
    let o = python_client(&dir, &py1, nobody).output().unwrap();
    assert_eq!(out(&o), format!("{IMSG_CTL_FAIL}\n"), "{}", err(&o));
}

/// Whether RCPT TO:<rcpt> is taken, in a new session.
fn rcpt_taken(dir: &TestDir, rcpt: &str) -> bool {
    let mut c = Client::connect(dir.port);
    c.reply();
    c.cmd("EHLO client.test");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@client.test>")), "250");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    c.cmd("QUIT");
    match code(&r) {
        "250" => true,
        "550" => false,
        _ => panic!("RCPT TO:<{rcpt}>: {r}"),
    }
}

#[test]
fn update_table_reloads_a_file_table_and_keeps_it_when_the_file_is_bad() {
    if skip_unless_root("update_table_reloads_a_file_table_and_keeps_it_when_the_file_is_bad") {
        return;
    }
    let dir = TestDir::new("ctl-update");
    let rcpts = dir.path.join("rcpts");
    fs::write(&rcpts, "root@example.org\n").unwrap();
    let aliases = dir.path.join("aliases");
    fs::write(&aliases, "postmaster: root\n").unwrap();
    let conf = format!(
        "table rcpts file:{}\n\
         table aliases file:{}\n\
         listen on 127.0.0.1 port @PORT@\n\
         action \"local\" mbox alias <aliases>\n\
         match from any for domain \"example.org\" rcpt-to <rcpts> action \"local\"\n\
         match from any for local action \"local\"\n",
        rcpts.display(),
        aliases.display()
    );
    let d = start_with_args(&dir, Some(&conf), &["-P", "mda"]);
    assert!(rcpt_taken(&dir, "root@example.org"));
    assert!(!rcpt_taken(&dir, "nobody@example.org"));
    // Users that exist, so that only the table decides.
    // The file alone changes nothing: the table is in memory.
    fs::write(&rcpts, "root@example.org\nnobody@example.org\n").unwrap();
    assert!(!rcpt_taken(&dir, "nobody@example.org"));
    let o = smtpctl(&dir, &["update", "table", "rcpts"], None);
    assert_eq!(out(&o), "command succeeded\n", "{}", err(&o));
    assert!(o.status.success());
    assert!(rcpt_taken(&dir, "nobody@example.org"));
    assert!(d
        .stderr()
        .contains("info: Table \"rcpts\" successfully updated"));
    // A table that does not exist.
    let o = smtpctl(&dir, &["update", "table", "nosuch"], None);
    assert_eq!(out(&o), "command failed\n");
    assert!(!o.status.success());
    assert!(d.stderr().contains("Lookup table not found: \"nosuch\""));
    // Aliases too: a new alias is known after the update.
    assert!(!rcpt_taken(&dir, "webmaster@localhost"));
    fs::write(&aliases, "postmaster: root\nwebmaster: root\n").unwrap();
    let o = smtpctl(&dir, &["update", "table", "aliases"], None);
    assert_eq!(out(&o), "command succeeded\n", "{}", err(&o));
    assert!(rcpt_taken(&dir, "webmaster@localhost"));
    // A mapping with a key and no value: refused, the table as it was.
    fs::write(&aliases, "postmaster: root\nhostmaster: root\nbroken\n").unwrap();
    let o = smtpctl(&dir, &["update", "table", "aliases"], None);
    assert_eq!(out(&o), "command failed\n");
    assert!(d
        .stderr()
        .contains(&format!("{}:3: invalid map entry", aliases.display())));
    assert!(d
        .stderr()
        .contains("info: Failed to update table \"aliases\""));
    assert!(rcpt_taken(&dir, "webmaster@localhost"));
    assert!(!rcpt_taken(&dir, "hostmaster@localhost"));
    // newaliases has a running smtpd reload its aliases table.
    fs::write(&aliases, "postmaster: root\nhostmaster: root\n").unwrap();
    let newaliases = dir.path.join("newaliases");
    std::os::unix::fs::symlink(SMTPCTL, &newaliases).unwrap();
    let o = Command::new(&newaliases)
        .arg("-f")
        .arg(dir.conf())
        .env("SMTPD_SOCKET", dir.socket())
        .output()
        .unwrap();
    assert_eq!(
        out(&o),
        format!("{}: 2 aliases\n", aliases.display()),
        "{}",
        err(&o)
    );
    assert!(rcpt_taken(&dir, "hostmaster@localhost"));
    // Only root.
    let (nobody, _) = user("nobody");
    let o = smtpctl(&dir, &["update", "table", "rcpts"], Some(nobody));
    assert_eq!(err(&o), "smtpctl: need root privileges\n");
}

/// `smtpctl args` run as the user `name`, through the copy anyone can run.
fn smtpctl_as(dir: &TestDir, name: &str, args: &[&str]) -> Output {
    let (uid, gid) = user(name);
    let mut cmd = Command::new(smtpctl_for(dir, Some(uid)));
    cmd.args(args)
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool())
        .uid(uid)
        .gid(gid);
    cmd.output().expect("run smtpctl")
}

/// A message to root submitted with sendmail by the user `name`.
fn sendmail_as(dir: &TestDir, name: &str, subject: &str) {
    let sendmail = dir.path.join("sendmail");
    if !sendmail.exists() {
        std::os::unix::fs::symlink(smtpctl_for(dir, Some(0)), &sendmail).unwrap();
    }
    let (uid, gid) = user(name);
    let mut child = Command::new(&sendmail)
        .arg("root")
        .env("SMTPD_SOCKET", dir.socket())
        .env("SMTPD_SPOOL", dir.spool())
        .current_dir(&dir.path)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {subject}\n\nfrom {name}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "sendmail as {name}: {}", err(&o));
}

/// The `show queue` lines of `o`, split into their fields.
fn queue_lines(o: &Output) -> Vec<Vec<String>> {
    assert!(o.status.success(), "{}", err(o));
    out(o)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn a_user_sees_and_removes_only_the_mail_they_submitted() {
    if skip_unless_root("a_user_sees_and_removes_only_the_mail_they_submitted") {
        return;
    }
    let dir = TestDir::new("ctl-owner");
    let _d = start(&dir, &["-P", "mda"]);
    sendmail_as(&dir, "smtpdtest1", "one");
    sendmail_as(&dir, "smtpdtest1", "two");
    sendmail_as(&dir, "smtpdtest2", "three");
    queue_one(&dir, "bob@example.org", "network", "x");
    let all = show_queue(&dir, &[]);
    assert_eq!(all.len(), 4, "{all:?}");
    let evpid_of = |who: &str| -> Vec<String> {
        let mut v: Vec<String> = all
            .iter()
            .filter(|l| l[4].starts_with(&format!("{who}@")))
            .map(|l| l[0].clone())
            .collect();
        v.sort();
        v
    };
    let (mine, theirs, network) = (
        evpid_of("smtpdtest1"),
        evpid_of("smtpdtest2"),
        evpid_of("bob"),
    );
    assert_eq!(
        (mine.len(), theirs.len(), network.len()),
        (2, 1, 1),
        "{all:?}"
    );
    // The owner is recorded beside the message, for its submitter only.
    let (uid1, _) = user("smtpdtest1");
    let owner = |evpid: &str| {
        let msgid = &evpid[..8];
        fs::read_to_string(
            dir.spool()
                .join("queue")
                .join(&msgid[..2])
                .join(msgid)
                .join("owner"),
        )
        .ok()
    };
    assert_eq!(owner(&mine[0]), Some(format!("{uid1}\n")));
    assert_eq!(owner(&network[0]), None);
    // smtpdtest1 lists its two messages, and nothing else, however asked.
    let listed = queue_lines(&smtpctl_as(&dir, "smtpdtest1", &["show", "queue"]));
    let mut ids: Vec<String> = listed.iter().map(|l| l[0].clone()).collect();
    ids.sort();
    assert_eq!(ids, mine);
    for other in [&theirs[0], &network[0]] {
        let o = smtpctl_as(&dir, "smtpdtest1", &["show", "queue", &other[..8]]);
        assert_eq!(queue_lines(&o), Vec::<Vec<String>>::new());
        // Removal of another's message, by message or envelope id.
        for id in [&other[..8], other.as_str()] {
            let o = smtpctl_as(&dir, "smtpdtest1", &["remove", id]);
            assert_eq!(out(&o), "0 envelope removed\n", "{}", err(&o));
        }
    }
    // What stays root's: the administrative commands.
    let o = smtpctl_as(&dir, "smtpdtest1", &["pause", "mda"]);
    assert_eq!(err(&o), "smtpctl: need root privileges\n");
    // smtpdtest1 removes one of its messages, then all it has left.
    let o = smtpctl_as(&dir, "smtpdtest1", &["remove", &mine[0][..8]]);
    assert_eq!(out(&o), "1 envelope removed\n", "{}", err(&o));
    let o = smtpctl_as(&dir, "smtpdtest1", &["remove", "all"]);
    assert_eq!(out(&o), "1 envelope removed\n", "{}", err(&o));
    assert!(poll_until(Duration::from_secs(5), || show_queue(&dir, &[])
        .len()
        == 2));
    let left: Vec<String> = show_queue(&dir, &[]).iter().map(|l| l[0].clone()).collect();
    assert!(
        left.contains(&theirs[0]) && left.contains(&network[0]),
        "{left:?}"
    );
    let o = smtpctl_as(&dir, "smtpdtest1", &["show", "queue"]);
    assert_eq!(queue_lines(&o), Vec::<Vec<String>>::new());
    // smtpdtest2 still sees its own.
    let o = smtpctl_as(&dir, "smtpdtest2", &["show", "queue"]);
    let listed = queue_lines(&o);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0][0], theirs[0]);
}

#[test]
fn a_client_that_asks_and_never_reads_is_dropped() {
    if skip_unless_root("a_client_that_asks_and_never_reads_is_dropped") {
        return;
    }
    let dir = TestDir::new("ctl-unread");
    let d = start(&dir, &[]);
    let (nobody, _) = user("nobody");
    // 60000 requests in a row, none of the answers read while sending;
    // then what comes back is counted until the end of the stream.
    let py = format!(
        "import socket, struct, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect(sys.argv[1])\n\
         req = struct.pack('=IIII', {IMSG_CTL_PAUSE_MDA}, 16, {IMSG_VERSION}, 0)\n\
         try:\n\
         \x20   s.sendall(req * 60000)\n\
         except OSError:\n\
         \x20   pass\n\
         n = 0\n\
         s.settimeout(10)\n\
         try:\n\
         \x20   while True:\n\
         \x20       b = s.recv(65536)\n\
         \x20       if not b:\n\
         \x20           break\n\
         \x20       n += len(b)\n\
         except OSError:\n\
         \x20   pass\n\
         print(n // 16)\n"
    );
    let o = python_client(&dir, &py, nobody).output().unwrap();
    let answers: usize = out(&o)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", err(&o)));
    assert!(
        answers < 60000,
        "all {answers} answers came: the client was kept"
    );
    assert!(
        d.stderr().contains(&format!(
            "a client of uid {nobody} reads no answers: dropped"
        )),
        "{}",
        d.stderr()
    );
    let o = smtpctl(&dir, &["show", "status"], None);
    assert_eq!(
        out(&o),
        "MDA running\nMTA paused\nSMTP running\n",
        "{}",
        err(&o)
    );
}
