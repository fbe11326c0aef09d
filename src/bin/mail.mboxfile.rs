//! mail.mboxfile(8): appends the message read on standard input to a file
//! in mbox format, for smtpd's `mbox` to a file, running as the recipient
//! (OpenSMTPD mail.mboxfile.c, 7.8).
//!
//! Unlike OpenSMTPD on systems without O_EXLOCK (Linux), the file is
//! always locked; a failed delivery cuts the file back to its size before
//! it; and a file this delivery created has its directory fsynced.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::exit;

use smtpd::smtpd::EX_TEMPFAIL;
use smtpd::sys::fsync::fsync_dir;
use smtpd::sys::mailbox::flock_exclusive;
use smtpd::sys::unistd::geteuid;
use smtpd::util::getopt::{Getopt, Opt};
use smtpd::util::log::strerror;
use smtpd::util::to::ctime;
use smtpd::util::util::time_now;

const PROGNAME: &str = "mail.mboxfile";

fn main() {
    smtpd::sys::process::note_parent();
    let args: Vec<String> = match std::env::args_os().map(OsString::into_string).collect() {
        Ok(args) => args,
        Err(_) => errx(1, "arguments must be UTF-8"),
    };
    if geteuid() == 0 {
        errx(1, "may not be executed as root");
    }
    let mut sender = "<unknown>".to_string();
    let mut g = Getopt::new(&args, "f:");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('f', Some(s)) => sender = s,
            // OpenSMTPD goes on after getopt(3) has complained.
            Opt::MissingArg(c) => eprintln!("{PROGNAME}: option requires an argument -- {c}"),
            Opt::Unknown(c) | Opt::Flag(c, _) => eprintln!("{PROGNAME}: unknown option -- {c}"),
        }
    }
    let operands = g.operands();
    if operands.len() > 1 {
        errx(1, "only one mboxfile is allowed");
    }
    match operands.first() {
        Some(filename) => mboxfile_engine(&sender, Path::new(filename)),
        // C passes a null path to open(2) and fails with EFAULT, hence
        // EX_TEMPFAIL: the same code, with a message that says why.
        None => errx(EX_TEMPFAIL, "no mboxfile given"),
    }
}

/// Appends standard input to `filename` under an exclusive lock, after a
/// From_ line naming `sender`, with body lines starting "From " quoted.
fn mboxfile_engine(sender: &str, filename: &Path) {
    let now = time_now();
    let (file, created) = match mboxfile_open(filename) {
        Ok(opened) => opened,
        Err(e) => err(EX_TEMPFAIL, filename, &e),
    };
    if let Err(e) = flock_exclusive(&file) {
        err(EX_TEMPFAIL, filename, &e);
    }
    // Taken under the lock: no other delivery can grow the file meanwhile.
    let size = match file.metadata() {
        Ok(sb) => sb.len(),
        Err(e) => err(EX_TEMPFAIL, filename, &e),
    };
    if let Err(e) = mboxfile_write(&file, sender, now) {
        // OpenSMTPD leaves a partial message, which the next one would
        // run into; we cut it off, so the retry starts clean.
        let _ = file.set_len(size);
        err(EX_TEMPFAIL, filename, &e);
    }
    if smtpd::sys::process::orphaned() {
        let _ = file.set_len(size);
        errx(
            EX_TEMPFAIL,
            "delivery abandoned: the process that started it is gone",
        );
    }
    if created {
        let dir = match filename.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Err(e) = fsync_dir(dir) {
            let _ = file.set_len(size);
            err(EX_TEMPFAIL, dir, &e);
        }
    }
}

/// Opens `filename` for appending, creating it mode 0600; says whether it
/// was created, which asks for an fsync of its directory.
fn mboxfile_open(filename: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.append(true).mode(0o600);
    match options.clone().create_new(true).open(filename) {
        Ok(file) => Ok((file, true)),
        // O_CREAT again, as C opens: a dangling symbolic link (which
        // O_EXCL refuses) gets its target made, as with OpenSMTPD.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options
            .create(true)
            .open(filename)
            .map(|file| (file, false)),
        Err(e) => Err(e),
    }
}

/// Writes the From_ line, the message and the blank line that ends it,
/// then makes them durable.
fn mboxfile_write(file: &File, sender: &str, now: i64) -> io::Result<()> {
    let mut fp = BufWriter::new(file);
    write!(fp, "From {sender} {}", ctime(now))?;
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        // C writes every line with a newline, the last one too.
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        if line.starts_with(b"From ") {
            fp.write_all(b">")?;
        }
        // OpenSMTPD writes each line up to its first NUL and drops the
        // rest; we keep every byte.
        fp.write_all(&line)?;
    }
    fp.write_all(b"\n")?;
    fp.flush()?;
    drop(fp);
    match file.sync_all() {
        // As in C: a device such as /dev/null cannot be fsynced.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// err(3): the path and the error on standard error, then exit.
fn err(code: i32, path: &Path, e: &io::Error) -> ! {
    eprintln!("{PROGNAME}: {}: {}", path.display(), strerror(e));
    exit(code);
}

/// errx(3): a message on standard error, then exit.
fn errx(code: i32, msg: &str) -> ! {
    eprintln!("{PROGNAME}: {msg}");
    exit(code);
}
