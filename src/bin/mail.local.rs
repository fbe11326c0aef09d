//! mail.local(8): appends the message read on standard input to the mbox
//! of each user named, /var/mail/USER, for smtpd's `mbox` action, run as
//! root (OpenSMTPD 7.8 contrib/libexec/mail.local: mail.local.c 1.42,
//! locking.c 1.15).
//!
//! The message is first copied to an unlinked temporary file, with its
//! From_ line and quoting, so that each mailbox is locked only while the
//! copy is appended. Unlike OpenSMTPD, the mailbox is flock(2)ed on every
//! system, fsynced before the exit that acknowledges it, cut back to its
//! size when any step fails, and refused when another user owns it; a
//! stale dot-lock is broken; see mail.local.8, CAVEATS, for the rest.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::exit;

use smtpd::defines::PATH_MAILDIR;
use smtpd::smtpd::{EX_CANTCREAT, EX_NOUSER, EX_OSERR, EX_TEMPFAIL, EX_USAGE};
use smtpd::sys::event::signal_ignore;
use smtpd::sys::fsync::fsync_dir;
use smtpd::sys::mailbox::flock_exclusive;
use smtpd::sys::net::{getaddrinfo, getservbyname, Family};
use smtpd::sys::process::{getpwnam, getpwuid, mkstemp, Passwd};
use smtpd::sys::syslog::{openlog, syslog, LOG_ERR, LOG_MAIL, LOG_PERROR};
use smtpd::sys::unistd::{getlogin, getuid, sleep};
use smtpd::util::getopt::{Getopt, Opt};
use smtpd::util::log::strerror;
use smtpd::util::to::ctime;
use smtpd::util::util::time_now;

const PROGNAME: &str = "mail.local";

/// _PATH_LOCTMP of pathnames.h: the message's copy, unlinked once open.
const PATH_LOCTMP: &str = "/tmp/local.XXXXXXXXXX";

/// getlock() sleeps 1, 2, 4, ... seconds between its tries, 10 times:
/// 1023 seconds in all before it gives up, as in C.
const LOCK_SLEEPS: u32 = 10;

/// A dot-lock untouched for this many seconds is taken for one left by
/// a holder that died (sendmail's mail.local and liblockfile say 5 min).
const LOCK_STALE: i64 = 300;

fn main() {
    smtpd::sys::process::note_parent();
    // LOG_PERROR: each message goes to standard error too, where smtpd
    // takes the last line for its log and the bounce.
    openlog(PROGNAME, LOG_PERROR, LOG_MAIL);
    // A file size limit must fail the write (EFBIG), which deliver() can
    // undo, rather than kill us half way through a mailbox.
    let _ = signal_ignore(libc::SIGXFSZ);

    let args: Vec<String> = match std::env::args_os().map(OsString::into_string).collect() {
        Ok(args) => args,
        Err(_) => merr(EX_USAGE, format_args!("arguments must be UTF-8")),
    };
    let mut from: Option<String> = None;
    let mut lockfile = true;
    let mut g = Getopt::new(&args, "lLdf:r:");
    for opt in g.by_ref() {
        match opt {
            // -d: backward compatible, and ignored.
            Opt::Flag('d', _) => {}
            // -r: backward compatible spelling of -f.
            Opt::Flag('f' | 'r', arg) => {
                if from.is_some() {
                    merr(EX_USAGE, format_args!("multiple -f options"));
                }
                from = arg;
            }
            Opt::Flag('l', _) => lockfile = true,
            Opt::Flag('L', _) => lockfile = false,
            Opt::MissingArg(c) => {
                eprintln!("{PROGNAME}: option requires an argument -- {c}");
                usage();
            }
            Opt::Unknown(c) | Opt::Flag(c, _) => {
                eprintln!("{PROGNAME}: unknown option -- {c}");
                usage();
            }
        }
    }
    let users = g.operands();
    if users.is_empty() {
        usage();
    }
    let from = from.unwrap_or_else(getfrom);

    let mut fd = storemail(&from);
    if smtpd::sys::process::orphaned() {
        merr(
            EX_TEMPFAIL,
            format_args!("delivery abandoned: the process that started it is gone"),
        );
    }
    let mut biff = Biff::default();
    let mut eval = 0;
    for name in users {
        let ch = deliver(&mut fd, name, lockfile, &mut biff);
        if ch != 0 {
            eval = ch;
        }
    }
    exit(eval);
}

/// The sender when no -f is given, as C's main() finds it: the login name
/// when its uid is ours, else our uid's name, else "???".
fn getfrom() -> String {
    let uid = getuid();
    if let Some(login) = getlogin() {
        if matches!(getpwnam(&login), Ok(Some(pw)) if pw.uid == uid) {
            return login;
        }
    }
    match getpwuid(uid) {
        Ok(Some(pw)) => pw.name,
        _ => "???".to_string(),
    }
}

/// Copies standard input to an unlinked temporary file, after a From_
/// line naming `from`, quoting as C does; returns the file.
fn storemail(from: &str) -> File {
    let (file, tbuf) = match mkstemp(PATH_LOCTMP) {
        Ok(r) => r,
        Err(e) => merr(
            EX_OSERR,
            format_args!(
                "unable to open temporary file: {PATH_LOCTMP}: {}",
                strerror(&e)
            ),
        ),
    };
    let _ = fs::remove_file(&tbuf);

    let mut fp = BufWriter::with_capacity(64 * 1024, file);
    let mut stdin = io::stdin().lock();
    match storemail_copy(&mut stdin, &mut fp, from, time_now()) {
        Ok(()) => {}
        // OpenSMTPD takes a read error for the end of the message and
        // delivers what it has; we deliver nothing and ask for a retry.
        Err(StoreError::Read(e)) => merr(
            EX_TEMPFAIL,
            format_args!("standard input: {}", strerror(&e)),
        ),
        Err(StoreError::Write(e)) => merr(
            EX_OSERR,
            format_args!("temporary file write error: {tbuf}: {}", strerror(&e)),
        ),
    }
    match fp.into_inner() {
        Ok(file) => file,
        Err(e) => merr(
            EX_OSERR,
            format_args!(
                "temporary file write error: {tbuf}: {}",
                strerror(e.error())
            ),
        ),
    }
}

/// Which side of storemail_copy() failed.
#[derive(Debug)]
enum StoreError {
    Read(io::Error),
    Write(io::Error),
}

/// The body of C's storemail(): the From_ line, the message with every
/// line ending in a newline and a '>' before each line that starts with
/// "From " at the start of the message or after an empty line, and the
/// empty line that ends it in the mailbox.
fn storemail_copy<R: BufRead, W: Write>(
    input: &mut R,
    fp: &mut W,
    from: &str,
    now: i64,
) -> Result<(), StoreError> {
    write!(fp, "From {from} {}", ctime(now)).map_err(StoreError::Write)?;
    let mut eline = true;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(StoreError::Read)?
            == 0
        {
            break;
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        // OpenSMTPD prints each line up to its first NUL (a line starting
        // with one counts as empty); we keep every byte.
        if line.len() == 1 {
            eline = true;
        } else {
            if eline && line.starts_with(b"From ") {
                fp.write_all(b">").map_err(StoreError::Write)?;
            }
            eline = false;
        }
        fp.write_all(&line).map_err(StoreError::Write)?;
    }
    // Empty messages are allowed: they still get their empty line.
    fp.write_all(b"\n").map_err(StoreError::Write)
}

/// Appends the message in `fd` to the mailbox of user `name`, under the
/// dot-lock when `lockfile`; returns 0 or the sysexits(3) code of the
/// failure, which has been reported.
fn deliver(fd: &mut File, name: &str, lockfile: bool, biff: &mut Biff) -> i32 {
    // Unknown names are refused: special mailboxes belong in aliases.
    let pw = match getpwnam(name) {
        Ok(Some(pw)) => pw,
        Ok(None) => {
            mwarn(format_args!("unknown name: {name}"));
            return EX_NOUSER;
        }
        // The errors getpwnam(3) gives for a name it did not find.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM)
            ) =>
        {
            mwarn(format_args!("unknown name: {name}"));
            return EX_NOUSER;
        }
        // OpenSMTPD bounces when the user database fails; we retry.
        Err(e) => {
            mwarn(format_args!("getpwnam: {name}: {}", strerror(&e)));
            return EX_TEMPFAIL;
        }
    };
    let path = format!("{PATH_MAILDIR}/{name}");

    let lock = if lockfile {
        match lockspool(name) {
            Some(lock) => Some(lock),
            None => return EX_OSERR,
        }
    } else {
        None
    };
    // The mailbox is closed, and its flock released, before the dot-lock.
    let r = deliver_open(&path, &pw)
        .and_then(|(mbfd, created)| deliver_copy(fd, &mbfd, &path, created));
    if let Some(lock) = lock {
        unlockspool(lock);
    }
    match r {
        Ok(curoff) => {
            notifybiff(biff, &format!("{name}@{curoff}\n"));
            0
        }
        Err(rval) => rval,
    }
}

/// The `retry:` part of C's deliver(): opens and flocks the mailbox
/// `path` of `pw` for appending, creating it when missing; says whether
/// it did.
fn deliver_open(path: &str, pw: &Passwd) -> Result<(File, bool), i32> {
    loop {
        match fs::symlink_metadata(path) {
            Ok(sb) => return deliver_existing(path, pw, &sb).map(|mbfd| (mbfd, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(mbfd) = deliver_create(path, pw)? {
                    return Ok((mbfd, true));
                }
                // The file appeared since the lstat: look again.
            }
            Err(e) => {
                mwarn(format_args!("{path}: {}", strerror(&e)));
                return Err(EX_OSERR);
            }
        }
    }
}

/// Creates the mailbox `path`, 0600 and owned by `pw`, and flocks it;
/// None when it exists after all.
fn deliver_create(path: &str, pw: &Passwd) -> Result<Option<File>, i32> {
    let mbfd = match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mbfd) => mbfd,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => {
            mwarn(format_args!("{path}: {}", strerror(&e)));
            return Err(EX_CANTCREAT);
        }
    };
    // Set once, at creation: an owner or mode changed later was changed
    // for a reason (C's comment on binmail).
    if let Err(e) = std::os::unix::fs::fchown(&mbfd, Some(pw.uid), Some(pw.gid)) {
        // OpenSMTPD leaves the file root's, for the next delivery to use
        // as it is; we remove it, so that the retry starts over.
        let _ = fs::remove_file(path);
        mwarn(format_args!(
            "chown {}:{}: {path}: {}",
            pw.uid,
            pw.gid,
            strerror(&e)
        ));
        return Err(EX_OSERR);
    }
    // Locked once it is the user's: a failure here leaves an empty
    // mailbox that the retry can use.
    deliver_flock(&mbfd, path)?;
    Ok(Some(mbfd))
}

/// Opens and flocks the existing mailbox `path`, whose lstat is `sb`,
/// after checking it is a plain file with one link, owned by `pw`, and
/// the same file as the one lstat saw.
fn deliver_existing(path: &str, pw: &Passwd, sb: &Metadata) -> Result<File, i32> {
    if sb.nlink() != 1 || !sb.file_type().is_file() {
        mwarn(format_args!("{path}: linked or special file"));
        return Err(EX_OSERR);
    }
    // O_NOFOLLOW: a symbolic link put here since the lstat is not even
    // opened (C opens it, then sees the change in the inode numbers).
    let mbfd = match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(mbfd) => mbfd,
        Err(e) => {
            mwarn(format_args!("{path}: {}", strerror(&e)));
            return Err(EX_OSERR);
        }
    };
    deliver_flock(&mbfd, path)?;
    let fsb = match mbfd.metadata() {
        Ok(fsb) => fsb,
        Err(e) => {
            mwarn(format_args!("{path}: {}", strerror(&e)));
            return Err(EX_OSERR);
        }
    };
    if sb.dev() != fsb.dev() || sb.ino() != fsb.ino() {
        mwarn(format_args!("{path}: changed after open"));
        return Err(EX_OSERR);
    }
    if fsb.nlink() != 1 || !fsb.file_type().is_file() {
        mwarn(format_args!("{path}: linked or special file"));
        return Err(EX_CANTCREAT);
    }
    // OpenSMTPD appends to the file whoever owns it: mail for one user
    // in a file another can read.
    if fsb.uid() != pw.uid {
        mwarn(format_args!(
            "{path}: owned by uid {}, not by {} (uid {})",
            fsb.uid(),
            pw.name,
            pw.uid
        ));
        return Err(EX_OSERR);
    }
    Ok(mbfd)
}

/// The O_EXLOCK of C's open(2) calls, which Linux lacks: an exclusive
/// flock(2) on the mailbox, waited for.
fn deliver_flock(mbfd: &File, path: &str) -> Result<(), i32> {
    flock_exclusive(mbfd).map_err(|e| {
        mwarn(format_args!("{path}: flock: {}", strerror(&e)));
        EX_OSERR
    })
}

/// Appends the temporary file `fd` to the mailbox `mbfd` and makes it
/// durable, the spool directory too when `created`; returns the offset
/// the message starts at. On any failure the mailbox is cut back to it.
fn deliver_copy(fd: &mut File, mbfd: &File, path: &str, created: bool) -> Result<u64, i32> {
    let mut mb = mbfd;
    let curoff = match mb.seek(SeekFrom::End(0)) {
        Ok(off) => off,
        Err(e) => {
            mwarn(format_args!("{path}: {}", strerror(&e)));
            return Err(EX_OSERR);
        }
    };
    if let Err(e) = fd.seek(SeekFrom::Start(0)) {
        mwarn(format_args!("temporary file: {}", strerror(&e)));
        return Err(EX_OSERR);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let nr = match fd.read(&mut buf) {
            Ok(0) => break,
            Ok(nr) => nr,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                deliver_truncate(mbfd, path, curoff);
                mwarn(format_args!("temporary file: {}", strerror(&e)));
                return Err(EX_OSERR);
            }
        };
        if let Err(e) = mb.write_all(&buf[..nr]) {
            mwarn(format_args!("{path}: {}", strerror(&e)));
            deliver_truncate(mbfd, path, curoff);
            return Err(EX_OSERR);
        }
    }
    // OpenSMTPD fsyncs and ignores the result, and never fsyncs the
    // spool; here the exit 0 that acknowledges the message waits for both.
    if let Err(e) = mbfd.sync_all() {
        mwarn(format_args!("{path}: fsync: {}", strerror(&e)));
        deliver_truncate(mbfd, path, curoff);
        return Err(EX_OSERR);
    }
    if created {
        if let Err(e) = fsync_dir(Path::new(PATH_MAILDIR)) {
            mwarn(format_args!("{PATH_MAILDIR}: fsync: {}", strerror(&e)));
            deliver_truncate(mbfd, path, curoff);
            return Err(EX_OSERR);
        }
    }
    Ok(curoff)
}

/// Cuts the mailbox back to `curoff`, its size before this delivery, so
/// that no part of the message is left for the next one to follow.
fn deliver_truncate(mbfd: &File, path: &str, curoff: u64) {
    if let Err(e) = mbfd.set_len(curoff) {
        mwarn(format_args!(
            "{path}: truncate to {curoff} bytes: {}",
            strerror(&e)
        ));
    }
}

/// notifybiff()'s static state in C: the biff service's socket and
/// address, looked up at the first delivery.
#[derive(Default)]
struct Biff {
    looked_up: bool,
    target: Option<(UdpSocket, SocketAddr)>,
}

/// Tells comsat(8), through the biff service on localhost, that `msg`
/// ("user@offset\n") arrived; silent when there is no such service.
fn notifybiff(biff: &mut Biff, msg: &str) {
    if !biff.looked_up {
        biff.looked_up = true;
        biff.target = notifybiff_open();
    }
    let Some((f, addr)) = &biff.target else {
        return;
    };
    // C sends the terminating NUL too; comsat reads a C string.
    let mut buf = msg.as_bytes().to_vec();
    buf.push(0);
    match f.send_to(&buf, addr) {
        Ok(n) if n == buf.len() => {}
        Ok(_) => mwarn(format_args!("sendto biff: short write")),
        Err(e) => mwarn(format_args!("sendto biff: {}", strerror(&e))),
    }
}

/// The socket and address of localhost's biff service, None when there
/// is none (said only when the name fails, as in C).
fn notifybiff_open() -> Option<(UdpSocket, SocketAddr)> {
    let port = getservbyname("biff", "udp")?;
    let res0 = match getaddrinfo("localhost", Family::Unspec, false, false) {
        Ok(res0) => res0,
        Err(e) => {
            mwarn(format_args!("localhost: {e}"));
            return None;
        }
    };
    let mut last = None;
    for ip in res0.addrs {
        let any: IpAddr = match ip {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        match UdpSocket::bind((any, 0)) {
            Ok(f) => return Some((f, SocketAddr::new(ip, port))),
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        mwarn(format_args!("socket: {}", strerror(&e)));
    }
    None
}

/// A held dot-lock: its path, and the descriptor C keeps open with it.
struct Lock {
    lpath: String,
    _lfd: File,
}

/// Takes the dot-lock of user `name`. OpenSMTPD asks lockspool(1) for it
/// when not root; smtpd ships no lockspool and always runs us as root,
/// so we try ourselves, which works where the spool is writable to us.
fn lockspool(name: &str) -> Option<Lock> {
    getlock(name)
}

/// Releases a lock taken by lockspool().
fn unlockspool(lock: Lock) {
    rellock(&lock);
}

/// Removes the dot-lock file; the descriptor goes with `lock`.
fn rellock(lock: &Lock) {
    // Left behind, it would hold up this user's mail until it is stale.
    if let Err(e) = fs::remove_file(&lock.lpath) {
        mwarn(format_args!("{}: {}", lock.lpath, strerror(&e)));
    }
}

/// Creates PATH_MAILDIR/NAME.lock, waiting while another process holds
/// it (locking.c's getlock); None, reported, when it cannot.
fn getlock(name: &str) -> Option<Lock> {
    let lpath = format!("{PATH_MAILDIR}/{name}.lock");

    // S_IWOTH: anyone could take or break locks in such a spool.
    if let Ok(sb) = fs::metadata(PATH_MAILDIR) {
        if sb.mode() & 0o002 != 0 {
            mwarn(format_args!(
                "{PATH_MAILDIR}: will not deliver to world-writable spool"
            ));
            return None;
        }
    }
    let mut tries = 0;
    let mut broke_stale = false;
    loop {
        let e = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lpath)
        {
            Ok(lfd) => return Some(Lock { lpath, _lfd: lfd }),
            Err(e) => e,
        };
        // OpenSMTPD waits out any error for 17 minutes; only a lock
        // someone holds is worth waiting for.
        if e.kind() != io::ErrorKind::AlreadyExists {
            mwarn(format_args!("{lpath}: {}", strerror(&e)));
            return None;
        }
        if !broke_stale && getlock_stale(&lpath) {
            broke_stale = true;
            continue;
        }
        if tries >= LOCK_SLEEPS {
            mwarn(format_args!(
                "{lpath}: still locked after {} seconds",
                (1u32 << LOCK_SLEEPS) - 1
            ));
            return None;
        }
        sleep(1 << tries);
        tries += 1;
    }
}

/// Removes the dot-lock `lpath` when it is a plain file nobody touched
/// for LOCK_STALE seconds; says whether it is gone. OpenSMTPD never
/// breaks a lock, so one left by a killed holder stops the user's mail
/// until someone removes it by hand.
fn getlock_stale(lpath: &str) -> bool {
    let Ok(sb) = fs::symlink_metadata(lpath) else {
        return false;
    };
    let age = time_now() - sb.mtime();
    if !sb.file_type().is_file() || age < LOCK_STALE {
        return false;
    }
    match fs::remove_file(lpath) {
        Ok(()) => {
            mwarn(format_args!(
                "{lpath}: removed stale lock, untouched for {age} seconds"
            ));
            true
        }
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Logs `args` at LOG_ERR, and on standard error (LOG_PERROR).
fn mwarn(args: fmt::Arguments) {
    syslog(LOG_ERR, &args.to_string());
}

/// mwarn(), then exit with `eval`.
fn merr(eval: i32, args: fmt::Arguments) -> ! {
    mwarn(args);
    exit(eval);
}

fn usage() -> ! {
    merr(
        EX_USAGE,
        format_args!("usage: {PROGNAME} [-Ll] [-f from] user ..."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        storemail_copy(&mut &input[..], &mut out, "alice@example.org", 0).unwrap();
        // Past the From_ line, whose date depends on the zone.
        let nl = out.iter().position(|&c| c == b'\n').unwrap();
        assert!(out.starts_with(b"From alice@example.org "));
        out.split_off(nl + 1)
    }

    #[test]
    fn from_lines_are_quoted_at_the_start_and_after_an_empty_line_only() {
        assert_eq!(
            stored(b"From a\nFrom b\n\nFrom c\n\r\nFrom d\nFromage\n"),
            b">From a\nFrom b\n\n>From c\n\r\nFrom d\nFromage\n\n"
        );
    }

    #[test]
    fn a_last_line_gets_its_newline_and_an_empty_message_its_empty_line() {
        assert_eq!(stored(b"x\ny"), b"x\ny\n\n");
        assert_eq!(stored(b""), b"\n");
        assert_eq!(stored(b"\0From x\n\xff\n"), b"\0From x\n\xff\n\n");
    }
}
