//! encrypt.c: the `encrypt` helper, which prints a crypt(3) hash of a
//! password for the credentials tables of AUTH (OpenSMTPD's
//! contrib/libexec/encrypt/encrypt.c), and smtpctl.c's do_encrypt and
//! droppriv, which start it for `smtpctl encrypt`.
//!
//! The scheme is the system's strongest as encrypt.c picks it
//! (sys::crypt::crypt_newhash): bcrypt on OpenBSD, yescrypt on Debian.

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;

use crate::pathnames::{path_libexec, SMTPD_USER};
use crate::sys::crypt::crypt_newhash;
use crate::sys::process::{drop_privileges, execv, getpwnam};
use crate::sys::unistd::geteuid;
use crate::util::log::strerror;

/// main() of the helper: hashes its one argument, or else each line of
/// the standard input, printing one hash a line.
pub fn main(args: Vec<OsString>) -> i32 {
    // As a C program: a reader gone ends it quietly.
    let _ = crate::sys::event::signal_default(libc::SIGPIPE);
    if args.len() > 2 {
        eprintln!("usage: encrypt <string>");
        return 1;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match args.get(1) {
        Some(arg) => print_passwd(&mut out, arg.as_bytes()),
        None => encrypt_stdin(&mut out),
    };
    match result.and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("encrypt: {}", strerror(&e));
            1
        }
    }
}

/// main()'s getline loop: each line without its newline is hashed, an
/// empty one too, and a last line without newline as well.
fn encrypt_stdin(out: &mut impl Write) -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = stdin
            .read_until(b'\n', &mut line)
            .map_err(|e| io::Error::new(e.kind(), format!("stdin: {}", strerror(&e))))?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        print_passwd(out, &line)?;
    }
}

/// print_passwd(): one new hash of `string`, on a line of its own.
///
/// OpenSMTPD prints `(null)`, or a DES hash, when no scheme of its list
/// works (a password of 512 bytes or more on Linux, say); we stop with
/// the reason, and a password with a NUL byte is refused rather than
/// cut there.
fn print_passwd(out: &mut impl Write, string: &[u8]) -> io::Result<()> {
    let hash = crypt_newhash(string)?;
    writeln!(out, "{hash}")
}

/// errx(3) for smtpctl.
fn errx(msg: &str) -> ! {
    eprintln!("smtpctl: {msg}");
    std::process::exit(1)
}

/// droppriv() of smtpctl.c: run as root, become SMTPD_USER (its group
/// alone) before running anything on the caller's behalf.
pub fn droppriv() {
    if geteuid() != 0 {
        return;
    }
    let pw = match getpwnam(SMTPD_USER) {
        Ok(Some(pw)) => pw,
        _ => errx(&format!("unknown user {SMTPD_USER}")),
    };
    if let Err(e) = drop_privileges(pw.uid, pw.gid) {
        errx(&format!("cannot drop privileges: {}", strerror(&e)));
    }
}

/// do_encrypt(): `smtpctl encrypt [string]` runs the helper in place of
/// smtpctl (whose main gave up the set-group-ID group already) and, for
/// root, as SMTPD_USER.
pub fn do_encrypt(arg: Option<&str>) -> i32 {
    let path = format!("{}/encrypt", path_libexec());
    droppriv();
    let mut argv = vec!["encrypt".to_string()];
    argv.extend(arg.map(str::to_string));
    let e = execv(&path, &argv);
    // C says only "execl".
    errx(&format!("{path}: {}", strerror(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::crypt::crypt_checkpass;

    #[test]
    fn print_passwd_writes_one_hash_a_line() {
        let mut out = Vec::new();
        print_passwd(&mut out, b"secret").unwrap();
        print_passwd(&mut out, b"").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(text.ends_with('\n'));
        assert!(crypt_checkpass(b"secret", lines[0]));
        assert!(crypt_checkpass(b"", lines[1]));
        assert!(!crypt_checkpass(b"secret", lines[1]));
    }

    #[test]
    fn print_passwd_refuses_a_nul_and_writes_nothing() {
        let mut out = Vec::new();
        assert!(print_passwd(&mut out, b"a\0b").is_err());
        assert!(out.is_empty());
    }
}
