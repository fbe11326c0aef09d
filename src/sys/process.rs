//! Processes: fork and exec, waiting, signals to others, privilege drop,
//! chroot, descriptor hygiene across exec, and the process title.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::cstring;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The two sides of fork(2).
#[derive(Debug, PartialEq, Eq)]
pub enum Fork {
    Child,
    Parent(libc::pid_t),
}

/// fork(2). The caller is single-threaded (every smtpd process is), so
/// the child may do anything the parent could.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: fork has no arguments; smtpd processes have one thread.
    match check(unsafe { libc::fork() })? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// execvp(3): returns only on failure.
pub fn execvp(argv: &[String]) -> io::Error {
    let cargs: Result<Vec<CString>, _> = argv.iter().map(|a| cstring(a)).collect();
    let cargs = match cargs {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return io::Error::from_raw_os_error(libc::EINVAL),
        Err(e) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: ptrs is a NULL-terminated array of NUL-terminated strings
    // that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// dup2(2).
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 has no memory arguments; closing `new` first is its
    // documented effect.
    check(unsafe { libc::dup2(old, new) }).map(|_| ())
}

/// Clears close-on-exec on `fd`, so that it survives an exec.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments only.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) }).map(|_| ())
}

/// closefrom(2): closes every descriptor from `lowfd` up.
pub fn closefrom(lowfd: RawFd) {
    #[cfg(target_os = "openbsd")]
    {
        // SAFETY: closefrom has no memory arguments.
        unsafe { libc::closefrom(lowfd) };
    }
    #[cfg(target_os = "linux")]
    {
        // close_range(2) exists since Linux 5.9; older kernels (and some
        // sandboxes) refuse it, and we close what /proc lists instead.
        // SAFETY: close_range takes integers only.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                lowfd as libc::c_uint,
                libc::c_uint::MAX,
                0,
            )
        };
        if r == 0 {
            return;
        }
        let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
            Ok(dir) => dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd >= lowfd)
                .collect(),
            Err(_) => (lowfd..1024).collect(),
        };
        for fd in fds {
            // SAFETY: closing descriptors this process owns by number is
            // the point of closefrom; nothing uses them after exec.
            unsafe { libc::close(fd) };
        }
    }
}

/// How a child ended, from waitpid(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// waitpid(-1, WNOHANG): one child that has ended, if any.
pub fn waitpid_any_nohang() -> io::Result<Option<(libc::pid_t, WaitStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(None);
        }
        if pid == -1 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(e),
            }
        }
        let ws = if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        };
        return Ok(Some((pid, ws)));
    }
}

/// waitpid(-1, 0): waits for any child to end.
pub fn wait_any() -> io::Result<(libc::pid_t, WaitStatus)> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid != -1 {
            let ws = if libc::WIFSIGNALED(status) {
                WaitStatus::Signaled(libc::WTERMSIG(status))
            } else {
                WaitStatus::Exited(libc::WEXITSTATUS(status))
            };
            return Ok((pid, ws));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// waitpid(pid, 0): waits for one child to end.
pub fn waitpid(pid: libc::pid_t) -> io::Result<WaitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != -1 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    })
}

/// kill(2).
pub fn kill(pid: libc::pid_t, signo: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    check(unsafe { libc::kill(pid, signo) }).map(|_| ())
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid always succeeds.
    unsafe { libc::getpid() }
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: getppid always succeeds.
    unsafe { libc::getppid() }
}

/// Asks the kernel to SIGKILL this process when the process that forked
/// it dies (Linux prctl PR_SET_PDEATHSIG); nothing elsewhere, where no
/// such request exists. The request is dropped by a change of uid or
/// gid, so it is made after the privilege drop; and if the parent,
/// `ppid`, is gone already, the process exits at once.
pub fn die_with_parent(ppid: libc::pid_t) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if r == -1 || getppid() != ppid {
            exit_now(1);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ppid;
}

/// The parent a delivery helper was started by (note_parent).
static PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Notes the process's parent, for orphaned().
pub fn note_parent() {
    PARENT.store(getppid(), std::sync::atomic::Ordering::Relaxed);
}

/// Whether the parent noted at start is gone. A delivery helper asks
/// before it makes a delivery final: smtpd's death closes the helper's
/// standard input as the end of a message would, and what it read may
/// be only the start of one.
///
/// On Linux a parent that is dying counts as gone too. A process that
/// exits closes its descriptors, among them smtpd's copy of the helper's
/// standard input, before its children are handed to init and sent their
/// death signal: in between, the helper can read that end of file while
/// its parent is still the one it noted. The kernel marks the process
/// exiting (PF_EXITING in /proc/PID/stat) before it closes anything.
pub fn orphaned() -> bool {
    let p = PARENT.load(std::sync::atomic::Ordering::Relaxed);
    p != 0 && (getppid() != p || process_exiting(p))
}

/// Whether the process `pid` has begun to exit (Linux's PF_EXITING); no
/// when that cannot be told.
fn process_exiting(pid: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    {
        /// PF_EXITING of <linux/sched.h>.
        const PF_EXITING: u64 = 0x4;
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp session tty_nr tpgid flags ...: the
        // command name may hold spaces and parentheses, so count from the
        // last ')'.
        let flags = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(6))
            .and_then(|f| f.parse::<u64>().ok());
        flags.is_some_and(|f| f & PF_EXITING != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        false
    }
}

/// setsid(2).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no arguments.
    check(unsafe { libc::setsid() }).map(|_| ())
}

/// alarm(3): SIGALRM after `secs` seconds (0 cancels).
pub fn alarm(secs: u32) {
    // SAFETY: alarm has no memory arguments and cannot fail.
    unsafe { libc::alarm(secs) };
}

/// umask(2); returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// chroot(2) then chdir("/"), as every chrooted smtpd process does.
pub fn chroot(path: &str) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: c is NUL-terminated.
    check(unsafe { libc::chroot(c.as_ptr()) })?;
    // SAFETY: a literal, NUL-terminated path.
    check(unsafe { libc::chdir(c"/".as_ptr()) }).map(|_| ())
}

/// setgroups(2), setresgid(2), setresuid(2) in that order: the privilege
/// drop of every smtpd process. The group list becomes just `gid`.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    let groups = [gid as libc::gid_t];
    // SAFETY: groups holds one gid_t.
    check(unsafe { libc::setgroups(1, groups.as_ptr()) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map(|_| ())
}

/// setresgid(2) to `gid` for the real, effective and saved group ids:
/// how a set-group-id program (smtpctl as makemap) gives up its group.
pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) }).map(|_| ())
}

/// A password database entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub dir: String,
    pub shell: String,
    /// The comment field (the user's full name first, then details
    /// separated by commas; `&` stands for the login name).
    pub gecos: String,
}

/// getpwnam(3) (getpwnam_r, so no static storage is shared).
pub fn getpwnam(name: &str) -> io::Result<Option<Passwd>> {
    let cname = cstring(name)?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: passwd is plain data filled by getpwnam_r.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the sizes given; the strings
        // in pw point into buf, which outlives their use below.
        let r = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(passwd_from(&pw)));
    }
}

/// getpwuid(3) (getpwuid_r).
pub fn getpwuid(uid: u32) -> io::Result<Option<Passwd>> {
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: passwd is plain data filled by getpwuid_r.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the sizes given.
        let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(passwd_from(&pw)));
    }
}

fn passwd_from(pw: &libc::passwd) -> Passwd {
    let s = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: the C library filled these with NUL-terminated
            // strings that live in the caller's buffer.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    Passwd {
        name: s(pw.pw_name),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        dir: s(pw.pw_dir),
        shell: s(pw.pw_shell),
        gecos: s(pw.pw_gecos),
    }
}

/// getgrnam(3): a group's id.
pub fn getgrnam(name: &str) -> io::Result<Option<u32>> {
    let cname = cstring(name)?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: group is plain data filled by getgrnam_r.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the sizes given.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        return Ok((!result.is_null()).then_some(gr.gr_gid));
    }
}

/// initgroups(3) then setresgid and setresuid: the privilege drop of
/// processes that keep the user's supplementary groups (lka).
pub fn drop_privileges_initgroups(user: &str, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstring(user)?;
    // SAFETY: c is NUL-terminated; the gid type differs by platform.
    check(unsafe { libc::initgroups(c.as_ptr(), gid as _) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map(|_| ())
}

/// A pipe with close-on-exec set on both ends: (read, write).
pub fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// mkstemp(3): creates and opens a unique file from `template` (ending in
/// X's); returns it and its path.
pub fn mkstemp(template: &str) -> io::Result<(std::fs::File, String)> {
    use std::os::fd::FromRawFd;
    let mut buf = cstring(template)?.into_bytes_with_nul();
    // SAFETY: buf is a writable NUL-terminated template.
    let fd = check(unsafe { libc::mkstemp(buf.as_mut_ptr().cast()) })?;
    buf.pop();
    // SAFETY: mkstemp returned a fresh descriptor that nothing else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    Ok((f, String::from_utf8_lossy(&buf).into_owned()))
}

/// execve(2) of `path` with `argv` and exactly the environment `envp`:
/// returns only on failure.
pub fn execve(path: &str, argv: &[String], envp: &[String]) -> io::Error {
    let to_c = |v: &[String]| {
        v.iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<CString>, _>>()
    };
    let (cpath, cargs, cenv) = match (cstring(path), to_c(argv), to_c(envp)) {
        (Ok(p), Ok(a), Ok(e)) => (p, a, e),
        _ => return io::Error::from_raw_os_error(libc::EINVAL),
    };
    let mut a: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that
    // outlive the call.
    unsafe { libc::execve(cpath.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// execv(3): runs `path` with `argv` in this process, keeping the
/// environment; returns only on failure.
pub fn execv(path: &str, argv: &[String]) -> io::Error {
    let cargs: Result<Vec<CString>, _> = argv.iter().map(|a| cstring(a)).collect();
    let (cpath, cargs) = match (cstring(path), cargs) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: cpath is NUL-terminated; ptrs is a NULL-terminated array of
    // NUL-terminated strings; all outlive the call.
    unsafe { libc::execv(cpath.as_ptr(), ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// _exit(2): leaves a forked child without running the parent's exit
/// handlers or flushing its buffers.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit never returns and has no memory arguments.
    unsafe { libc::_exit(status) }
}

/// read(2) on a descriptor this process holds by number (a child's
/// standard streams).
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes of writing.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// daemon(3): detaches from the terminal: forks (the parent exits 0),
/// starts a new session, moves to / and points stdio at /dev/null.
pub fn daemon() -> io::Result<()> {
    match fork()? {
        Fork::Parent(_) => exit_now(0),
        Fork::Child => {}
    }
    setsid()?;
    std::env::set_current_dir("/")?;
    stdio_to_devnull()
}

/// The root directory of process `pid`, as Linux shows it in /proc (for
/// tests that check chroots); None elsewhere.
pub fn proc_root(pid: libc::pid_t) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/root")).ok()
}

/// Whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Redirects stdin, stdout and stderr to /dev/null, as daemon(3) does
/// once the process is detached.
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_exiting() {
        assert!(!process_exiting(getppid()));
        assert!(!process_exiting(std::process::id() as libc::pid_t));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_exited_process_not_yet_reaped_is_exiting() {
        let pid = match fork().unwrap() {
            Fork::Child => exit_now(0),
            Fork::Parent(pid) => pid,
        };
        // A zombie until waited for: the state after the command name.
        let zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !zombie() && std::time::Instant::now() < deadline {
            let _ = crate::sys::event::poll(&mut [], Some(std::time::Duration::from_millis(10)));
        }
        assert!(zombie());
        assert!(process_exiting(pid));
        waitpid(pid).unwrap();
        // Reaped: no such process, which says nothing.
        assert!(!process_exiting(pid));
    }
}
