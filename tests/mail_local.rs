//! mail.local(8) run as built, as root, delivering into the real spool
//! /var/mail for the test user smtpdtest2 (mk/testusers.sh). Other test
//! files deliver to smtpdtest1: these touch only smtpdtest2's mailbox and
//! lock file, one test at a time (SPOOL), each starting without them and
//! leaving none.
#![allow(clippy::disallowed_methods)]

// tests/common re-exports things only the daemon tests use.
#[allow(unused_imports)]
mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use common::mbox::{ctime_utc, mbox_split, now};
use common::{assert_exit, poll_until, skip_unless_root, user};

const MAIL_LOCAL: &str = env!("CARGO_BIN_EXE_mail-local");

const USER: &str = "smtpdtest2";
const MBOX: &str = "/var/mail/smtpdtest2";
const LOCK: &str = "/var/mail/smtpdtest2.lock";
/// A second name for the mailbox, in the spool: a hard link cannot leave
/// its file system.
const LINK: &str = "/var/mail/.smtpdtest2.link";

const EX_USAGE: i32 = 64;
const EX_NOUSER: i32 = 67;
const EX_OSERR: i32 = 71;

/// One test at a time in smtpdtest2's corner of the spool.
static SPOOL: Mutex<()> = Mutex::new(());

/// smtpdtest2's mailbox and lock file, held for one test: removed at
/// the start and at the end. Nothing but these tests delivers there, so
/// nothing is saved: a mailbox put back would carry the leftovers of a
/// killed run into every later one.
struct Spool {
    _guard: MutexGuard<'static, ()>,
    uid: u32,
    gid: u32,
}

impl Spool {
    /// None (after a note) when not root: mail.local runs as root.
    fn take(test: &str) -> Option<Spool> {
        if skip_unless_root(test) {
            return None;
        }
        // A test that failed holding the lock poisons it; the spool is
        // reset below anyway.
        let guard = SPOOL.lock().unwrap_or_else(|e| e.into_inner());
        let (uid, gid) = user(USER);
        spool_clear().unwrap();
        Some(Spool {
            _guard: guard,
            uid,
            gid,
        })
    }

    /// Creates the mailbox with `content`, owned by the user, mode 0600.
    fn mailbox(&self, content: &[u8]) {
        fs::write(MBOX, content).unwrap();
        std::os::unix::fs::chown(MBOX, Some(self.uid), Some(self.gid)).unwrap();
        fs::set_permissions(MBOX, fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Not a panic: this may run while a failed test unwinds.
        if let Err(e) = spool_clear() {
            eprintln!("warning: {e} left in the spool");
        }
    }
}

/// Removes what a test may have left in the spool: the mailbox (a
/// directory in one test), the lock file, a second link to the mailbox.
/// Says what it could not remove.
fn spool_clear() -> Result<(), String> {
    for path in [MBOX, LOCK, LINK] {
        let r = match fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => fs::remove_dir(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => continue,
        };
        r.map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// mail.local's command line, with a known environment: TZ=UTC0 for the
/// From_ line's date, no LOGNAME or terminal to pick a sender from.
fn mail_local(args: &[&str]) -> Command {
    let mut cmd = Command::new(MAIL_LOCAL);
    cmd.args(args)
        .env_clear()
        .env("TZ", "UTC0")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn spawn(mut cmd: Command, message: &[u8]) -> Child {
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // mail.local reads everything before it delivers: the write cannot
    // block on a full pipe for long, and an early exit is its status's
    // business.
    let _ = stdin.write_all(message);
    child
}

fn feed(cmd: Command, message: &[u8]) -> Output {
    spawn(cmd, message).wait_with_output().unwrap()
}

/// Delivers `message` from `from` to smtpdtest2.
fn deliver(from: &str, message: &[u8]) -> Output {
    feed(mail_local(&["-f", from, USER]), message)
}

/// The mailbox holds one message, `body` (its empty line included).
#[track_caller]
fn assert_one_message(body: &[u8]) {
    let mbox = fs::read(MBOX).unwrap();
    let messages = mbox_split(&mbox);
    assert_eq!(messages.len(), 1, "{}", String::from_utf8_lossy(&mbox));
    assert_eq!(
        String::from_utf8_lossy(&messages[0].1),
        String::from_utf8_lossy(body)
    );
    assert_eq!(messages[0].1, body);
}

#[track_caller]
fn assert_no_lock_file() {
    assert!(fs::symlink_metadata(LOCK).is_err(), "{LOCK} left behind");
}

/// A delivery that waited for a lock: once it is released, `child` ends
/// well, having written the message "late".
#[track_caller]
fn assert_delivered_late(child: Child) {
    let out = finish(child, Duration::from_secs(10));
    assert_exit(&out, 0);
    assert_one_message(b"late\n\n");
    assert_no_lock_file();
}

/// The last line mail.local wrote on its standard error.
fn last_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last().unwrap_or_default().to_string()
}

/// Whether `child` is still running after `wait`.
fn still_waiting(child: &mut Child, wait: Duration) -> bool {
    std::thread::sleep(wait);
    child.try_wait().unwrap().is_none()
}

/// Waits up to `timeout` for `child` to end; its output.
fn finish(mut child: Child, timeout: Duration) -> Output {
    let ended = poll_until(timeout, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "mail.local still running after {timeout:?}");
    out
}

/// Delivers a message that must be refused with EX_OSERR, the mailbox
/// named with the reason `why` in the last line of standard error.
#[track_caller]
fn assert_refused(why: &str) {
    let out = deliver("alice@example.org", b"Subject: x\n\nx\n");
    assert_exit(&out, EX_OSERR);
    assert_eq!(last_error(&out), format!("mail.local: {MBOX}: {why}"));
}

#[track_caller]
fn assert_from_line(line: &str, sender: &str, t0: u64, t1: u64) {
    assert!(
        (t0..=t1).any(|t| line == format!("From {sender} {}", ctime_utc(t))),
        "From_ line {line:?}, sender {sender}, between {t0} and {t1}"
    );
}

#[test]
fn from_line_and_from_quoting_are_byte_for_byte_those_of_mail_local_c() {
    let Some(_spool) = Spool::take("from_line_and_from_quoting") else {
        return;
    };
    let message = b"From me\nSubject: quoting\n\n\
From the start of a paragraph\nFrom inside a paragraph\n\
\nFrom again\n>From already quoted\nFromage\n\r\nFrom after a CR line\n\
last line without a newline";
    let t0 = now();
    assert_exit(&deliver("alice@example.org", message), 0);
    let t1 = now();
    let mbox = fs::read(MBOX).unwrap();
    let messages = mbox_split(&mbox);
    assert_eq!(messages.len(), 1, "{}", String::from_utf8_lossy(&mbox));
    assert_from_line(&messages[0].0, "alice@example.org", t0, t1);
    // As mail.local.c: '>' before "From " on the first line and after an
    // empty one only; a line that is "\r" is not empty.
    assert_eq!(
        String::from_utf8_lossy(&messages[0].1),
        ">From me\nSubject: quoting\n\n\
>From the start of a paragraph\nFrom inside a paragraph\n\
\n>From again\n>From already quoted\nFromage\n\r\nFrom after a CR line\n\
last line without a newline\n\n"
    );
}

#[test]
fn two_messages_are_appended_in_order_each_with_its_empty_line() {
    let Some(_spool) = Spool::take("two_messages_in_order") else {
        return;
    };
    let t0 = now();
    assert_exit(&deliver("alice@example.org", b"Subject: one\n\nfirst\n"), 0);
    let t1 = now();
    // The null sender, as smtpd names it.
    assert_exit(&deliver("MAILER-DAEMON", b"Subject: two\n\nsecond"), 0);
    let t2 = now();
    let mbox = fs::read(MBOX).unwrap();
    let messages = mbox_split(&mbox);
    assert_eq!(messages.len(), 2, "{}", String::from_utf8_lossy(&mbox));
    assert_from_line(&messages[0].0, "alice@example.org", t0, t1);
    assert_from_line(&messages[1].0, "MAILER-DAEMON", t1, t2);
    assert_eq!(messages[0].1, b"Subject: one\n\nfirst\n\n");
    assert_eq!(messages[1].1, b"Subject: two\n\nsecond\n\n");
}

#[test]
fn eight_bit_bytes_nul_and_cr_are_kept() {
    let Some(_spool) = Spool::take("eight_bit_bytes") else {
        return;
    };
    let mut message = b"Subject: caf\xc3\xa9\n\n".to_vec();
    message.extend((0u8..=255).filter(|&c| c != b'\n'));
    message.extend(b"\n\0nul first\r\n\xff\xfe\x80\n");
    assert_exit(&deliver("alice@example.org", &message), 0);
    let mut expected = message.clone();
    expected.push(b'\n');
    assert_one_message(&expected);
}

#[test]
fn a_new_mailbox_is_0600_and_belongs_to_the_user() {
    let Some(spool) = Spool::take("new_mailbox_mode") else {
        return;
    };
    assert_exit(&deliver("alice@example.org", b"Subject: x\n\nx\n"), 0);
    let md = fs::symlink_metadata(MBOX).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!((md.uid(), md.gid()), (spool.uid, spool.gid));
    // The lock file went with the delivery.
    assert_no_lock_file();
}

#[test]
fn an_existing_mailbox_keeps_its_mode_and_content() {
    let Some(spool) = Spool::take("existing_mailbox") else {
        return;
    };
    spool.mailbox(b"From old Thu Jan  1 00:00:00 1970\nold\n\n");
    fs::set_permissions(MBOX, fs::Permissions::from_mode(0o640)).unwrap();
    assert_exit(&deliver("alice@example.org", b"new\n"), 0);
    let mbox = fs::read(MBOX).unwrap();
    assert!(mbox.starts_with(b"From old Thu Jan  1 00:00:00 1970\nold\n\nFrom alice@example.org "));
    assert!(mbox.ends_with(b"\nnew\n\n"));
    assert_eq!(fs::metadata(MBOX).unwrap().mode() & 0o7777, 0o640);
}

#[test]
fn a_symlinked_mailbox_is_refused_and_its_target_left_alone() {
    let Some(spool) = Spool::take("symlinked_mailbox") else {
        return;
    };
    let target = std::env::temp_dir().join(format!("smtpd-mail-local-{}", std::process::id()));
    fs::write(&target, b"precious\n").unwrap();
    std::os::unix::fs::chown(&target, Some(spool.uid), Some(spool.gid)).unwrap();
    std::os::unix::fs::symlink(&target, MBOX).unwrap();
    assert_refused("linked or special file");
    assert_eq!(fs::read(&target).unwrap(), b"precious\n");
    assert!(fs::symlink_metadata(MBOX).unwrap().is_symlink());

    // A dangling link does not get its target created either.
    fs::remove_file(&target).unwrap();
    assert_refused("linked or special file");
    assert!(!target.exists(), "{} was created", target.display());
    assert_no_lock_file();
}

#[test]
fn a_hard_linked_mailbox_is_refused() {
    let Some(spool) = Spool::take("hard_linked_mailbox") else {
        return;
    };
    spool.mailbox(b"mine\n");
    fs::hard_link(MBOX, LINK).unwrap();
    assert_refused("linked or special file");
    assert_eq!(fs::read(MBOX).unwrap(), b"mine\n");
}

#[test]
fn a_mailbox_that_is_not_a_regular_file_is_refused() {
    let Some(_spool) = Spool::take("special_mailbox") else {
        return;
    };
    fs::create_dir(MBOX).unwrap();
    assert_refused("linked or special file");
}

#[test]
fn a_mailbox_owned_by_another_user_is_refused() {
    let Some(spool) = Spool::take("foreign_mailbox") else {
        return;
    };
    spool.mailbox(b"");
    std::os::unix::fs::chown(MBOX, Some(0), Some(0)).unwrap();
    assert_refused(&format!(
        "owned by uid 0, not by {USER} (uid {})",
        spool.uid
    ));
    assert_eq!(fs::read(MBOX).unwrap(), b"");
}

#[test]
fn a_held_lock_file_makes_it_wait_then_deliver() {
    let Some(_spool) = Spool::take("held_lock_file") else {
        return;
    };
    fs::write(LOCK, b"").unwrap();
    let mut child = spawn(mail_local(&["-f", "alice@example.org", USER]), b"late\n");
    // It tries at 0 s and 1 s, then sleeps 2 s.
    assert!(still_waiting(&mut child, Duration::from_millis(1500)));
    assert!(
        fs::symlink_metadata(MBOX).is_err(),
        "delivered under a lock"
    );
    fs::remove_file(LOCK).unwrap();
    assert_delivered_late(child);
}

#[test]
fn a_held_flock_makes_it_wait_then_deliver() {
    let Some(spool) = Spool::take("held_flock") else {
        return;
    };
    spool.mailbox(b"");
    let holder = File::open(MBOX).unwrap();
    smtpd::sys::mailbox::flock_exclusive(&holder).unwrap();
    let mut child = spawn(mail_local(&["-f", "alice@example.org", USER]), b"late\n");
    assert!(still_waiting(&mut child, Duration::from_millis(1000)));
    assert_eq!(fs::read(MBOX).unwrap(), b"", "written under a flock");
    // It waits holding the lock file, as C does with O_EXLOCK.
    assert!(
        fs::symlink_metadata(LOCK).is_ok(),
        "no {LOCK} while waiting"
    );
    drop(holder);
    assert_delivered_late(child);
}

#[test]
fn without_the_lock_file_option_a_held_lock_file_is_ignored() {
    let Some(_spool) = Spool::take("option_l") else {
        return;
    };
    fs::write(LOCK, b"someone else's").unwrap();
    let child = spawn(mail_local(&["-L", "-f", "alice@example.org", USER]), b"x\n");
    let out = finish(child, Duration::from_secs(5));
    assert_exit(&out, 0);
    assert_one_message(b"x\n\n");
    // Not ours: left as it was.
    assert_eq!(fs::read(LOCK).unwrap(), b"someone else's");
}

#[test]
fn a_stale_lock_file_is_removed_and_the_message_delivered() {
    let Some(_spool) = Spool::take("stale_lock_file") else {
        return;
    };
    let lock = File::create(LOCK).unwrap();
    lock.set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    drop(lock);
    // No wait for a lock nobody touched for ten minutes: without the
    // rule, the lock would hold it for 17 minutes.
    let child = spawn(mail_local(&["-f", "alice@example.org", USER]), b"x\n");
    let out = finish(child, Duration::from_secs(5));
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("removed stale lock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_message(b"x\n\n");
    assert_no_lock_file();
}

#[test]
fn an_unknown_user_is_refused_with_ex_nouser() {
    let Some(_spool) = Spool::take("unknown_user") else {
        return;
    };
    let name = "smtpd-no-such-user";
    let out = feed(mail_local(&["-f", "alice@example.org", name]), b"x\n");
    assert_exit(&out, EX_NOUSER);
    assert_eq!(
        last_error(&out),
        format!("mail.local: unknown name: {name}")
    );
    assert!(fs::symlink_metadata(format!("/var/mail/{name}")).is_err());
    assert!(fs::symlink_metadata(format!("/var/mail/{name}.lock")).is_err());
}

#[test]
fn each_user_gets_a_copy_and_the_last_failure_is_the_status() {
    let Some(_spool) = Spool::take("several_users") else {
        return;
    };
    let args = ["-f", "alice@example.org", USER, "smtpd-no-such-user", USER];
    let out = feed(mail_local(&args), b"twice\n");
    assert_exit(&out, EX_NOUSER);
    let messages = mbox_split(&fs::read(MBOX).unwrap());
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|(_, body)| body == b"twice\n\n"));
}

#[test]
fn usage_errors_exit_ex_usage() {
    let Some(_spool) = Spool::take("usage_errors") else {
        return;
    };
    for args in [
        &[][..],
        &["-f", "alice@example.org"][..],
        &["-f", "a", "-r", "b", USER][..],
        &["-x", USER][..],
        &["-f"][..],
    ] {
        let out = feed(mail_local(args), b"x\n");
        assert_exit(&out, EX_USAGE);
        assert!(fs::symlink_metadata(MBOX).is_err(), "{args:?} delivered");
    }
}

#[test]
fn a_failed_write_leaves_the_mailbox_as_it_was() {
    let Some(spool) = Spool::take("failed_write") else {
        return;
    };
    // 100 KiB already there, a 60 KiB message, and a file size limit of
    // 128 KiB (256 blocks of 512 bytes, ulimit -f's unit in POSIX sh):
    // the temporary copy fits, the mailbox takes 28 KiB then EFBIG.
    let before: Vec<u8> = (0..100 * 1024).map(|i| b"abcdefghi\n"[i % 10]).collect();
    spool.mailbox(&before);
    let message: Vec<u8> = (0..60 * 1024)
        .map(|i| b"0123456789ABCDE\n"[i % 16])
        .collect();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -f 256 && exec \"$0\" \"$@\""])
        .arg(MAIL_LOCAL)
        .args(["-f", "alice@example.org", USER])
        .env_clear()
        .env("TZ", "UTC0")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = feed(cmd, &message);
    assert_exit(&out, EX_OSERR);
    assert_eq!(
        last_error(&out),
        format!("mail.local: {MBOX}: File too large")
    );
    let after = fs::read(MBOX).unwrap();
    assert!(
        after == before,
        "{} bytes, not {}",
        after.len(),
        before.len()
    );
    assert_no_lock_file();
}

/// Python's mailbox.mbox reading `path`: per message, "F" and its From_
/// line, "H" and each header's name and raw value, "B" and the body, in
/// hex where bytes.
const PY_READ_MBOX: &str = r#"
import mailbox, sys
for msg in mailbox.mbox(sys.argv[1], create=False):
    print("F", msg.get_from())
    for name, value in msg.raw_items():
        print("H", name.encode("ascii", "surrogateescape").hex(),
              value.encode("ascii", "surrogateescape").hex())
    print("B", msg.get_payload(decode=True).hex())
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn python_mailbox_reads_back_every_header_and_body_byte() {
    let Some(_spool) = Spool::take("python_mailbox") else {
        return;
    };
    let first = b"From: Alice <alice@example.org>\nTo: smtpdtest2@localhost\n\
Subject: caf\xc3\xa9 \xff\nX-Folded: one\n\ttwo\n\n\
body \xe9\x80\n\nFrom a new paragraph\n>From quoted\n\0nul\r\n.\n";
    let second = b"Subject: second\n\nFrom the start\nlast";
    let t0 = now();
    assert_exit(&deliver("alice@example.org", first), 0);
    assert_exit(&deliver("bob@example.org", second), 0);
    let t1 = now();

    let out = Command::new("python3")
        .args(["-c", PY_READ_MBOX, MBOX])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut froms = Vec::new();
    let mut headers = Vec::new();
    let mut bodies = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (tag, rest) = line.split_once(' ').unwrap();
        match tag {
            "F" => {
                froms.push(format!("From {rest}\n"));
                headers.push(Vec::new());
            }
            "H" => {
                let (name, value) = rest.split_once(' ').unwrap();
                headers
                    .last_mut()
                    .unwrap()
                    .push((unhex(name), unhex(value)));
            }
            "B" => bodies.push(unhex(rest)),
            _ => panic!("python3 said {line:?}"),
        }
    }
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_from_line(&froms[0], "alice@example.org", t0, t1);
    assert_from_line(&froms[1], "bob@example.org", t0, t1);
    let h = |name: &str, value: &[u8]| (name.as_bytes().to_vec(), value.to_vec());
    assert_eq!(
        headers[0],
        [
            h("From", b"Alice <alice@example.org>"),
            h("To", b"smtpdtest2@localhost"),
            h("Subject", b"caf\xc3\xa9 \xff"),
            h("X-Folded", b"one\n\ttwo"),
        ]
    );
    assert_eq!(headers[1], [h("Subject", b"second")]);
    // The reader drops the empty line that ends each message; the quoting
    // stays, as mbox readers of this (mboxo) kind leave it.
    assert_eq!(
        bodies[0],
        b"body \xe9\x80\n\n>From a new paragraph\n>From quoted\n\0nul\r\n.\n"
    );
    // Quoted: the body's first line follows the empty line of the header.
    assert_eq!(bodies[1], b">From the start\nlast\n");
}
