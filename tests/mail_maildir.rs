//! The delivery helpers mail.maildir(8) and mail.mboxfile(8), run as built
//! on real directories under the system's temporary directory. Both refuse
//! to run as root: when the tests are root, the helpers run as `nobody`,
//! in directories given to it.
#![allow(clippy::disallowed_methods)]

// tests/common re-exports things only the daemon tests use.
#[allow(unused_imports)]
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::assert_exit;
use common::mbox::{ctime_utc, mbox_split, now};
use smtpd::sys::process::getpwnam;
use smtpd::sys::unistd::geteuid;

const EX_TEMPFAIL: i32 = 75;

const MAIL_MAILDIR: &str = env!("CARGO_BIN_EXE_mail-maildir");
const MAIL_MBOXFILE: &str = env!("CARGO_BIN_EXE_mail-mboxfile");

/// The user the helpers run as when the tests are root.
fn delivery_user() -> Option<(u32, u32)> {
    if geteuid() != 0 {
        return None;
    }
    let pw = getpwnam("nobody").ok().flatten();
    Some(pw.map_or((65534, 65534), |pw| (pw.uid, pw.gid)))
}

/// A fresh directory the delivery user may write in, removed at drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smtpd-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        if let Some((uid, gid)) = delivery_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A helper's command line, as the delivery user, with a known
/// environment (HOME and TZ set, EXTENSION unset).
fn helper(bin: &str, args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("TZ", "UTC0")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = delivery_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Runs `cmd` with `message` on its standard input.
fn feed(mut cmd: Command, message: &[u8]) -> Output {
    let mut child = cmd.spawn().unwrap();
    feed_child(&mut child, message);
    child.wait_with_output().unwrap()
}

fn feed_child(child: &mut Child, message: &[u8]) {
    let mut stdin = child.stdin.take().unwrap();
    // A helper that exits early closes the pipe: that is its exit code's
    // business, not a test failure.
    let _ = stdin.write_all(message);
}

fn maildir(args: &[&str], home: &Path, message: &[u8]) -> Output {
    feed(helper(MAIL_MAILDIR, args, home), message)
}

fn mboxfile(args: &[&str], home: &Path, message: &[u8]) -> Output {
    feed(helper(MAIL_MBOXFILE, args, home), message)
}

/// The names of the files in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The one message in `maildir`/new, read back.
#[track_caller]
fn only_message(maildir: &Path) -> Vec<u8> {
    let new = entries(&maildir.join("new"));
    assert_eq!(new.len(), 1, "new/ of {}: {new:?}", maildir.display());
    fs::read(maildir.join("new").join(&new[0])).unwrap()
}

#[track_caller]
fn assert_is_maildir(dir: &Path) {
    for sub in ["cur", "tmp", "new"] {
        let md = fs::metadata(dir.join(sub)).unwrap();
        assert!(md.is_dir(), "{sub} of {}", dir.display());
        assert_eq!(md.mode() & 0o777, 0o700, "{sub} of {}", dir.display());
    }
    assert_eq!(fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
    assert_eq!(entries(&dir.join("tmp")), Vec::<String>::new());
}

/// A message with 8-bit bytes, a CR, a NUL and a line starting "From ".
const MESSAGE: &[u8] = b"From: alice@example.org\nSubject: caf\xc3\xa9\n\n\
From the start\r\nnul \0 inside\n.dot\n\xff\xfe\n";

#[test]
fn maildir_delivery_creates_a_fresh_maildir_and_keeps_every_byte() {
    let t = TempDir::new("maildir-fresh");
    let md = t.path().join("deep/Maildir");
    let out = maildir(&[md.to_str().unwrap()], t.path(), MESSAGE);
    assert_exit(&out, 0);
    assert_is_maildir(&md);
    assert_eq!(only_message(&md), MESSAGE);
    assert_eq!(entries(&md.join("cur")), Vec::<String>::new());

    // time.random.host, as OpenSMTPD names them.
    let name = &entries(&md.join("new"))[0];
    let parts: Vec<&str> = name.splitn(3, '.').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert!(parts[0].bytes().all(|c| c.is_ascii_digit()), "{name}");
    assert!(parts[1].len() == 8 && u32::from_str_radix(parts[1], 16).is_ok());
    assert!(!parts[2].is_empty() && !parts[2].contains('/'), "{name}");
    let file = fs::metadata(md.join("new").join(name)).unwrap();
    assert_eq!(file.mode() & 0o777, 0o600);
}

#[test]
fn maildir_delivery_adds_to_an_existing_maildir() {
    let t = TempDir::new("maildir-existing");
    let md = t.path().join("Maildir");
    assert_exit(&maildir(&[md.to_str().unwrap()], t.path(), b"one\n"), 0);
    fs::write(md.join("cur").join("old:2,S"), b"seen\n").unwrap();
    assert_exit(&maildir(&[md.to_str().unwrap()], t.path(), b"two\n"), 0);
    assert_exit(&maildir(&[md.to_str().unwrap()], t.path(), b"three"), 0);

    let new = entries(&md.join("new"));
    assert_eq!(new.len(), 3, "{new:?}");
    let mut bodies: Vec<Vec<u8>> = new
        .iter()
        .map(|n| fs::read(md.join("new").join(n)).unwrap())
        .collect();
    bodies.sort();
    // As C does, a last line without its newline gets one.
    assert_eq!(bodies, [&b"one\n"[..], b"three\n", b"two\n"]);
    assert_eq!(entries(&md.join("cur")), ["old:2,S"]);
    assert_is_maildir(&md);
}

#[test]
fn maildir_without_a_path_delivers_to_home_maildir() {
    let t = TempDir::new("maildir-home");
    assert_exit(&maildir(&[], t.path(), b"hello\n"), 0);
    assert_eq!(only_message(&t.path().join("Maildir")), b"hello\n");
}

#[test]
fn maildir_j_puts_spam_in_the_junk_folder() {
    let t = TempDir::new("maildir-junk");
    let md = t.path().join("Maildir");
    let arg = md.to_str().unwrap();
    let spam = b"Subject: buy\nX-Spam: Yes\n\nbody\n";
    assert_exit(&maildir(&["-j", arg], t.path(), spam), 0);
    assert_is_maildir(&md.join(".Junk"));
    assert_eq!(only_message(&md.join(".Junk")), spam);
    assert_eq!(entries(&md.join("new")), Vec::<String>::new());

    let flagged = b"X-Spam-Flag: YES\nSubject: buy\n\nbody\n";
    assert_exit(&maildir(&["-j", arg], t.path(), flagged), 0);
    assert_eq!(entries(&md.join(".Junk/new")).len(), 2);
    assert_eq!(entries(&md.join("new")), Vec::<String>::new());
}

#[test]
fn maildir_j_leaves_ham_and_body_mentions_in_the_inbox() {
    let t = TempDir::new("maildir-ham");
    let md = t.path().join("Maildir");
    let arg = md.to_str().unwrap();
    // The header ends at the first empty line: this X-Spam is body text.
    let ham = b"Subject: hi\n\nX-Spam: yes\n";
    assert_exit(&maildir(&["-j", arg], t.path(), ham), 0);
    assert_eq!(only_message(&md), ham);
    // As in C, -j makes the junk folder even for a message that is not.
    assert_is_maildir(&md.join(".Junk"));
    assert_eq!(entries(&md.join(".Junk/new")), Vec::<String>::new());
}

#[test]
fn maildir_without_j_ignores_the_spam_header() {
    let t = TempDir::new("maildir-nojunk");
    let md = t.path().join("Maildir");
    let spam = b"X-Spam: yes\n\nbody\n";
    assert_exit(&maildir(&[md.to_str().unwrap()], t.path(), spam), 0);
    assert_eq!(only_message(&md), spam);
    assert!(!md.join(".Junk").exists());
}

#[test]
fn maildir_extension_picks_an_existing_folder_only() {
    let t = TempDir::new("maildir-ext");
    let md = t.path().join("Maildir");
    let arg = md.to_str().unwrap();
    assert_exit(&maildir(&[arg], t.path(), b"first\n"), 0);
    fs::create_dir(md.join(".lists:x")).unwrap();
    if let Some((uid, gid)) = delivery_user() {
        std::os::unix::fs::chown(md.join(".lists:x"), Some(uid), Some(gid)).unwrap();
    }

    // '/' is one of the characters that become ':'.
    let mut cmd = helper(MAIL_MAILDIR, &[arg], t.path());
    cmd.env("EXTENSION", "lists/x");
    assert_exit(&feed(cmd, b"to the folder\n"), 0);
    assert_is_maildir(&md.join(".lists:x"));
    assert_eq!(only_message(&md.join(".lists:x")), b"to the folder\n");

    let mut cmd = helper(MAIL_MAILDIR, &[arg], t.path());
    cmd.env("EXTENSION", "nosuchfolder");
    assert_exit(&feed(cmd, b"to the inbox\n"), 0);
    assert!(!md.join(".nosuchfolder").exists());
    assert_eq!(entries(&md.join("new")).len(), 2);

    // "." would name the maildir's parent: the inbox gets it.
    let mut cmd = helper(MAIL_MAILDIR, &[arg], t.path());
    cmd.env("EXTENSION", ".");
    assert_exit(&feed(cmd, b"dot\n"), 0);
    assert_eq!(entries(&md.join("new")).len(), 3);
    assert!(!t.path().join("new").exists());
}

#[test]
fn maildir_in_an_unwritable_directory_is_a_temporary_failure() {
    let t = TempDir::new("maildir-unwritable");
    let locked = t.path().join("locked");
    fs::create_dir(&locked).unwrap();
    // Root's 0555 directory is closed to the delivery user either way.
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let md = locked.join("Maildir");
    let out = maildir(&[md.to_str().unwrap()], t.path(), b"lost?\n");
    assert_exit(&out, EX_TEMPFAIL);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mail.maildir: "));
    assert!(!md.exists());

    // A file where a directory should be.
    let file = t.path().join("file");
    fs::write(&file, b"").unwrap();
    let md = file.join("Maildir");
    assert_exit(
        &maildir(&[md.to_str().unwrap()], t.path(), b"x\n"),
        EX_TEMPFAIL,
    );

    // A maildir whose tmp/ is not writable: nothing left behind in new/.
    let md = t.path().join("Maildir");
    assert_exit(&maildir(&[md.to_str().unwrap()], t.path(), b"one\n"), 0);
    fs::set_permissions(md.join("tmp"), fs::Permissions::from_mode(0o500)).unwrap();
    if delivery_user().is_some() {
        std::os::unix::fs::chown(md.join("tmp"), Some(0), Some(0)).unwrap();
    }
    assert_exit(
        &maildir(&[md.to_str().unwrap()], t.path(), b"two\n"),
        EX_TEMPFAIL,
    );
    assert_eq!(entries(&md.join("new")).len(), 1);
    fs::set_permissions(md.join("tmp"), fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn maildir_usage_errors_exit_1() {
    let t = TempDir::new("maildir-usage");
    let a = t.path().join("a");
    let b = t.path().join("b");
    let out = maildir(
        &[a.to_str().unwrap(), b.to_str().unwrap()],
        t.path(),
        b"x\n",
    );
    assert_exit(&out, 1);
    assert!(!a.exists() && !b.exists());
    // OpenSMTPD's mkdirs wants an absolute path (EINVAL, exit 1).
    assert_exit(&maildir(&["relative/Maildir"], t.path(), b"x\n"), 1);
}

#[test]
fn helpers_refuse_to_run_as_root() {
    if geteuid() != 0 {
        eprintln!("note: helpers_refuse_to_run_as_root: skipped, not root");
        return;
    }
    let t = TempDir::new("root");
    for bin in [MAIL_MAILDIR, MAIL_MBOXFILE] {
        let target = t.path().join("target");
        let mut cmd = helper(bin, &[target.to_str().unwrap()], t.path());
        cmd.uid(0).gid(0);
        let out = feed(cmd, b"x\n");
        assert_exit(&out, 1);
        assert!(String::from_utf8_lossy(&out.stderr).contains("root"));
        assert!(!target.exists(), "{bin} wrote as root");
    }
}

#[test]
fn ctime_utc_matches_known_dates() {
    // The checker of the From_ line must be right itself.
    assert_eq!(ctime_utc(0), "Thu Jan  1 00:00:00 1970\n");
    assert_eq!(ctime_utc(1_709_210_096), "Thu Feb 29 12:34:56 2024\n");
}

#[test]
fn mboxfile_appends_messages_with_from_lines_and_quoting() {
    let t = TempDir::new("mboxfile-append");
    let mbox = t.path().join("mbox");
    let arg = mbox.to_str().unwrap();

    let first = b"Subject: one\n\nFrom here on\n>From stays\nlast line";
    let t0 = now();
    assert_exit(
        &mboxfile(&["-f", "alice@example.org", arg], t.path(), first),
        0,
    );
    let t1 = now();
    assert_eq!(fs::metadata(&mbox).unwrap().mode() & 0o777, 0o600);

    assert_exit(&mboxfile(&[arg], t.path(), b"Subject: two\n\nbody\n"), 0);
    let t2 = now();

    let messages = mbox_split(&fs::read(&mbox).unwrap());
    assert_eq!(messages.len(), 2, "{messages:?}");
    let (from1, body1) = &messages[0];
    let (from2, body2) = &messages[1];
    assert!(
        (t0..=t1).any(|t| *from1 == format!("From alice@example.org {}", ctime_utc(t))),
        "{from1:?}"
    );
    // Without -f the sender is "<unknown>", as C has it.
    assert!(
        (t1..=t2).any(|t| *from2 == format!("From <unknown> {}", ctime_utc(t))),
        "{from2:?}"
    );
    assert_eq!(
        body1,
        b"Subject: one\n\n>From here on\n>From stays\nlast line\n\n"
    );
    assert_eq!(body2, b"Subject: two\n\nbody\n\n");
}

#[test]
fn mboxfile_keeps_8bit_bytes() {
    let t = TempDir::new("mboxfile-bytes");
    let mbox = t.path().join("mbox");
    assert_exit(&mboxfile(&[mbox.to_str().unwrap()], t.path(), MESSAGE), 0);
    let messages = mbox_split(&fs::read(&mbox).unwrap());
    assert_eq!(messages.len(), 1);
    let mut expected = MESSAGE.to_vec();
    let i = expected.windows(6).position(|w| w == b"\nFrom ").unwrap();
    expected.insert(i + 1, b'>');
    expected.push(b'\n');
    assert_eq!(messages[0].1, expected);
}

#[test]
fn mboxfile_waits_for_the_lock() {
    let t = TempDir::new("mboxfile-lock");
    let mbox = t.path().join("mbox");
    fs::write(&mbox, b"").unwrap();
    if let Some((uid, gid)) = delivery_user() {
        std::os::unix::fs::chown(&mbox, Some(uid), Some(gid)).unwrap();
    }
    let holder = fs::File::open(&mbox).unwrap();
    smtpd::sys::mailbox::flock_exclusive(&holder).unwrap();

    let mut child = helper(MAIL_MBOXFILE, &[mbox.to_str().unwrap()], t.path())
        .spawn()
        .unwrap();
    feed_child(&mut child, b"locked out\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "did not wait for the lock"
    );
    assert_eq!(fs::metadata(&mbox).unwrap().len(), 0);

    drop(holder);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        mbox_split(&fs::read(&mbox).unwrap())[0].1,
        b"locked out\n\n"
    );
}

#[test]
fn mboxfile_errors_exit_with_sysexits_codes() {
    let t = TempDir::new("mboxfile-errors");
    let locked = t.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let mbox = locked.join("mbox");
    let out = mboxfile(&[mbox.to_str().unwrap()], t.path(), b"x\n");
    assert_exit(&out, EX_TEMPFAIL);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mail.mboxfile: "));
    assert!(!mbox.exists());

    // No file: C fails in open(2), a temporary failure.
    assert_exit(&mboxfile(&[], t.path(), b"x\n"), EX_TEMPFAIL);

    let a = t.path().join("a");
    let b = t.path().join("b");
    let out = mboxfile(
        &[a.to_str().unwrap(), b.to_str().unwrap()],
        t.path(),
        b"x\n",
    );
    assert_exit(&out, 1);
    assert!(!a.exists() && !b.exists());
}
