//! Process identity: user ids, set-id detection, the host name.

use std::ffi::CStr;
use std::io;

/// _PATH_DEFPATH of <paths.h>: the PATH given to delivery agents.
#[cfg(target_os = "openbsd")]
pub const PATH_DEFPATH: &str =
    "/usr/bin:/bin:/usr/sbin:/sbin:/usr/X11R6/bin:/usr/local/bin:/usr/local/sbin";
#[cfg(not(target_os = "openbsd"))]
pub const PATH_DEFPATH: &str = "/usr/bin:/bin";

/// The effective user id (`geteuid(2)`), which cannot fail.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid takes no arguments and always succeeds.
    unsafe { libc::geteuid() }
}

/// The real user id (`getuid(2)`), which cannot fail.
pub fn getuid() -> u32 {
    // SAFETY: getuid takes no arguments and always succeeds.
    unsafe { libc::getuid() }
}

/// Whether the process was started set-user-id or set-group-id, in which
/// case nothing it reads from its environment may be trusted.
///
/// OpenBSD has `issetugid(2)`; Linux reports the same through the
/// `AT_SECURE` auxiliary vector entry, which the kernel sets on set-id
/// execution and when a security module asks for secure mode.
pub fn issetugid() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getauxval only reads the auxiliary vector; an unknown
        // type returns 0, which is the safe default here as well.
        unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: issetugid takes no arguments and always succeeds.
        unsafe { libc::issetugid() != 0 }
    }
}

/// The host name as `gethostname(3)` returns it.
pub fn gethostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes; we pass one less so
    // that the result is NUL-terminated even when the name fills it.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    let name = CStr::from_bytes_until_nul(&buf)
        .map_err(|_| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
    Ok(name.to_string_lossy().into_owned())
}

/// Raises the soft limit on open descriptors to the hard limit, as
/// config_process() does for every process; returns the new limit.
pub fn nofile_to_max() -> io::Result<u64> {
    // SAFETY: rlimit is plain data that getrlimit fills.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == -1 {
        return Err(io::Error::last_os_error());
    }
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: rl is initialised. EINVAL (a hard limit above what the
    // kernel allows) leaves the old limit, as OpenSMTPD tolerates.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(rl.rlim_cur as u64)
}

/// getpass(3): reads a line from the terminal with echo off, after
/// writing `prompt` to it. The trailing newline is removed.
pub fn getpass(prompt: &str) -> io::Result<String> {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data that tcgetattr fills.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is the open terminal, old a valid out-pointer.
    if unsafe { libc::tcgetattr(fd, &mut old) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut quiet = old;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
    // SAFETY: quiet is a valid termios copied from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut line = String::new();
    let result = (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // SAFETY: restores the settings read above, whatever happened.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &old) };
    let _ = (&tty).write_all(b"\n");
    result?;
    if line.ends_with('\n') {
        line.pop();
    }
    Ok(line)
}
