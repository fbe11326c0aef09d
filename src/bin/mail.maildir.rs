//! mail.maildir(8): stores the message read on standard input in a maildir,
//! for smtpd's `maildir` action, running as the recipient (OpenSMTPD
//! mail.maildir.c, 7.8).
//!
//! The message is written to tmp/ under a unique name, fsynced, and renamed
//! into new/. Unlike OpenSMTPD, the directories whose entries changed are
//! fsynced too (new/ after the rename, a parent after a mkdir), and a
//! failed delivery removes its file from tmp/.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::exit;

use smtpd::smtpd::EX_TEMPFAIL;
use smtpd::sys::fsync::fsync_dir;
use smtpd::sys::unistd::{arc4random, geteuid, gethostname};
use smtpd::util::getopt::{Getopt, Opt};
use smtpd::util::log::strerror;
use smtpd::util::util::time_now;

/// Characters of an address extension that may not appear in a folder
/// name; each becomes ':' (smtpd.h's MAILADDR_ESCAPE).
const MAILADDR_ESCAPE: &str = "!#$%&'*/?^`{|}~";

const PROGNAME: &str = "mail.maildir";

fn main() {
    smtpd::sys::process::note_parent();
    let args: Vec<String> = match std::env::args_os().map(OsString::into_string).collect() {
        Ok(args) => args,
        Err(_) => errx(1, "arguments must be UTF-8"),
    };
    if geteuid() == 0 {
        errx(1, "may not be executed as root");
    }
    let mut junk = false;
    let mut g = Getopt::new(&args, "j");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('j', _) => junk = true,
            // OpenSMTPD goes on after getopt(3) has complained.
            Opt::Unknown(c) | Opt::MissingArg(c) | Opt::Flag(c, _) => {
                eprintln!("{PROGNAME}: unknown option -- {c}")
            }
        }
    }
    let operands = g.operands();
    if operands.len() > 1 {
        errx(1, "only one maildir is allowed");
    }
    maildir_engine(operands.first().map(PathBuf::from), junk);
}

/// The folder name for an address extension, MAILADDR_ESCAPE characters
/// turned into ':'; None when nothing usable is left.
fn maildir_subdir(extension: &str) -> Option<String> {
    let sanitized: String = extension
        .chars()
        .map(|c| if MAILADDR_ESCAPE.contains(c) { ':' } else { c })
        .collect();
    // OpenSMTPD takes "." too, which makes the folder "<maildir>/..", the
    // parent, then creates cur/tmp/new there and chmods it 0700; we refuse.
    if sanitized.is_empty() || sanitized == "." {
        return None;
    }
    Some(sanitized)
}

/// Creates `dirname` and its cur/, tmp/ and new/ as needed.
fn maildir_mkdirs(dirname: &Path) {
    // OpenSMTPD tests mkdirs() for -1 where it returns 0 on failure, so
    // its errors pass unnoticed until the mkdir of a subdirectory; here
    // they count, with the codes C meant: a bad path is permanent.
    if let Err(e) = mkdirs(dirname, 0o700) {
        let code = match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENAMETOOLONG) => 1,
            _ => EX_TEMPFAIL,
        };
        err(code, dirname, &e);
    }
    let mut created = false;
    for sub in ["cur", "tmp", "new"] {
        let pathname = dirname.join(sub);
        match DirBuilder::new().mode(0o700).create(&pathname) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => err(EX_TEMPFAIL, &pathname, &e),
        }
    }
    if created {
        if let Err(e) = fsync_dir(dirname) {
            err(EX_TEMPFAIL, dirname, &e);
        }
    }
}

/// Delivers standard input to the maildir `dirname`, $HOME/Maildir when
/// None; with `junk`, a message flagged as spam goes to its .Junk folder.
/// Exits: 0 once the message is durable in new/.
fn maildir_engine(dirname: Option<PathBuf>, junk: bool) -> ! {
    let rootpath = match dirname {
        Some(d) => d,
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join("Maildir"),
            None => errx(1, "HOME is not set"),
        },
    };
    let mut dirname = rootpath.clone();
    maildir_mkdirs(&dirname);

    // As in C, .Junk is made whenever -j is given, and belongs to the
    // root maildir even when an extension picks another folder.
    let junkpath = rootpath.join(".Junk");
    if junk {
        maildir_mkdirs(&junkpath);
    }

    // An extension's folder is used only when it exists already.
    if let Some(extension) = std::env::var_os("EXTENSION") {
        let extension = extension.to_string_lossy();
        if let Some(subdir) = maildir_subdir(&extension) {
            let extpath = rootpath.join(format!(".{subdir}"));
            if extpath.metadata().is_ok() {
                dirname = extpath;
                maildir_mkdirs(&dirname);
            }
        }
    }

    let filename = maildir_filename();
    let tmp = dirname.join("tmp").join(&filename);
    let is_junk = match maildir_write(&tmp, junk) {
        Ok(is_junk) => is_junk,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            err(EX_TEMPFAIL, &tmp, &e);
        }
    };

    if smtpd::sys::process::orphaned() {
        let _ = std::fs::remove_file(&tmp);
        errx(
            EX_TEMPFAIL,
            "delivery abandoned: the process that started it is gone",
        );
    }
    let newdir = if is_junk { &junkpath } else { &dirname }.join("new");
    let new = newdir.join(&filename);
    if let Err(e) = std::fs::rename(&tmp, &new) {
        let _ = std::fs::remove_file(&tmp);
        err(EX_TEMPFAIL, &new, &e);
    }
    // OpenSMTPD stops at the rename, whose new name a crash can lose.
    // Unsure whether it will last, the file goes and the delivery is
    // retried: a copy twice is better than none.
    if let Err(e) = fsync_dir(&newdir) {
        let _ = std::fs::remove_file(&new);
        err(EX_TEMPFAIL, &newdir, &e);
    }
    exit(0);
}

/// A file name unique to this delivery, as C makes it: seconds since the
/// epoch, 32 random bits and the host name.
fn maildir_filename() -> String {
    let hostname = gethostname().unwrap_or_else(|_| "localhost".to_string());
    // The maildir convention keeps '/' and ':' out of the host part: the
    // first would split the path, the second starts a flags suffix.
    let hostname = hostname.replace('/', "\\057").replace(':', "\\072");
    format!("{}.{:08x}.{}", time_now(), arc4random(), hostname)
}

/// Copies standard input to the new file `tmp` and makes it durable; says
/// whether `junk` was asked and the header flags the message as spam.
fn maildir_write(tmp: &Path, junk: bool) -> io::Result<bool> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let mut fp = BufWriter::new(file);
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    let mut in_hdr = true;
    let mut is_junk = false;
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        // C writes every line with a newline, the last one too.
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let text = &line[..line.len() - 1];
        if text.is_empty() {
            in_hdr = false;
        }
        if junk && in_hdr && maildir_is_junk(text) {
            is_junk = true;
        }
        // OpenSMTPD writes each line up to its first NUL and drops the
        // rest; we keep every byte.
        fp.write_all(&line)?;
    }
    let file = fp.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(is_junk)
}

/// The header lines that mark a message as spam for -j, as C compares
/// them: the whole line, case aside.
fn maildir_is_junk(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"x-spam: yes") || line.eq_ignore_ascii_case(b"x-spam-flag: yes")
}

/// mkdirs(): creates the absolute path `path` and its missing parents,
/// then sets its mode to `mode`.
fn mkdirs(path: &Path, mode: u32) -> io::Result<()> {
    if !path.is_absolute() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if path.as_os_str().len() >= libc::PATH_MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let mut buf = PathBuf::new();
    for component in path.components() {
        buf.push(component);
        mkdirs_component(&buf, mode)?;
    }
    // C's chmod failure went unseen (see maildir_mkdirs); a maildir owned
    // by someone else but writable by us still takes mail, so it stays so.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    Ok(())
}

/// Makes sure `path` is a directory, creating it (and fsyncing its parent,
/// which C does not) when it is missing.
fn mkdirs_component(path: &Path, mode: u32) -> io::Result<()> {
    match path.metadata() {
        Ok(sb) if sb.is_dir() => return Ok(()),
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    // S_IWUSR | S_IXUSR: whatever `mode`, we must be able to go on inside.
    match DirBuilder::new().mode(mode | 0o300).create(path) {
        Ok(()) => {}
        // Another delivery made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
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
