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

/// The real group id (`getgid(2)`), which cannot fail.
pub fn getgid() -> u32 {
    // SAFETY: getgid takes no arguments and always succeeds.
    unsafe { libc::getgid() }
}

/// The effective group id (`getegid(2)`), which cannot fail: the group a
/// set-group-ID program runs with until it gives it up.
pub fn getegid() -> u32 {
    // SAFETY: getegid takes no arguments and always succeeds.
    unsafe { libc::getegid() }
}

/// `setresgid(2)`: sets the real, effective and saved group ids; `None`
/// leaves one as it is (C's -1). Keeping the saved id lets a set-group-ID
/// program put its group aside and take it back; setting all three to the
/// real group gives it up for good.
pub fn setresgid(rgid: Option<u32>, egid: Option<u32>, sgid: Option<u32>) -> io::Result<()> {
    let id = |g: Option<u32>| g.unwrap_or(u32::MAX) as libc::gid_t;
    // SAFETY: integer arguments only; (gid_t)-1 means "unchanged".
    if unsafe { libc::setresgid(id(rgid), id(egid), id(sgid)) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// POSIX, in OpenBSD's libc and glibc alike; the libc crate binds only
// getlogin(3), whose static buffer another thread could overwrite.
extern "C" {
    fn getlogin_r(buf: *mut libc::c_char, bufsize: libc::size_t) -> libc::c_int;
}

/// The name logged in on the process's controlling terminal
/// (`getlogin_r(3)`); None without one, as for a daemon's children.
pub fn getlogin() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes, which getlogin_r
    // fills with a NUL-terminated name or leaves alone on error.
    let r = unsafe { getlogin_r(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let name = CStr::from_bytes_until_nul(&buf).ok()?;
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

/// sleep(3) for `secs` whole seconds, for the delivery helpers, which
/// have no event loop to block (mail.local waiting for a dot-lock);
/// never for a daemon process.
#[allow(clippy::disallowed_methods)]
pub fn sleep(secs: u32) {
    std::thread::sleep(std::time::Duration::from_secs(secs.into()));
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

/// Fills `buf` with random bytes from the kernel: `arc4random_buf(3)` on
/// OpenBSD, `getrandom(2)` on Linux. Neither needs a file, so it works in
/// a chroot and under pledge. Never fails: a kernel that cannot give
/// randomness is a broken invariant for DNS ids and queue ids alike.
pub fn arc4random_buf(buf: &mut [u8]) {
    #[cfg(target_os = "openbsd")]
    {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        unsafe { libc::arc4random_buf(buf.as_mut_ptr().cast(), buf.len()) };
    }
    #[cfg(not(target_os = "openbsd"))]
    {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: rest is valid for writes of rest.len() bytes.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                panic!("getrandom: {e}");
            }
            done += n as usize;
        }
    }
}

/// A random u32, as `arc4random(3)`.
pub fn arc4random() -> u32 {
    let mut b = [0u8; 4];
    arc4random_buf(&mut b);
    u32::from_ne_bytes(b)
}

/// A random u32 below `bound` without modulo bias, as
/// `arc4random_uniform(3)`; 0 when `bound` is below 2.
pub fn arc4random_uniform(bound: u32) -> u32 {
    if bound < 2 {
        return 0;
    }
    // Values below `min` would make some results likelier than others.
    let min = bound.wrapping_neg() % bound;
    loop {
        let r = arc4random();
        if r >= min {
            return r % bound;
        }
    }
}

/// The broken-down local time localtime_r(3) gives, with the zone's
/// offset from UTC and its abbreviation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tm {
    pub sec: i32,
    pub min: i32,
    pub hour: i32,
    pub mday: i32,
    /// Months since January (0-11).
    pub mon: i32,
    /// Years since 1900.
    pub year: i32,
    /// Days since Sunday (0-6).
    pub wday: i32,
    /// Seconds east of UTC.
    pub gmtoff: i64,
    pub zone: String,
}

/// localtime_r(3), None when the time cannot be represented.
pub fn localtime(t: i64) -> Option<Tm> {
    let when = t as libc::time_t;
    // SAFETY: an all-zero struct tm is valid for localtime_r to fill.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::localtime_r(&when, &mut tm) }.is_null() {
        return None;
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points to a NUL-terminated string that lives
        // as long as the time zone data, which is never freed.
        unsafe { CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some(Tm {
        sec: tm.tm_sec,
        min: tm.tm_min,
        hour: tm.tm_hour,
        mday: tm.tm_mday,
        mon: tm.tm_mon,
        year: tm.tm_year,
        wday: tm.tm_wday,
        gmtoff: tm.tm_gmtoff as i64,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_differ_between_calls() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        arc4random_buf(&mut a);
        arc4random_buf(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn uniform_stays_below_its_bound() {
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let r = arc4random_uniform(7) as usize;
            seen[r] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
        assert_eq!(arc4random_uniform(1), 0);
    }
}
