//! The system calls under imsg (OpenBSD imsg-buffer.c's msgbuf_write and
//! msgbuf_read, OpenSMTPD-portable's getdtablecount.c): socket pairs,
//! sendmsg(2) and recvmsg(2) with SCM_RIGHTS descriptor passing, and the
//! descriptor-table accounting that keeps a receiver from losing a passed
//! descriptor when its table is full.
//!
//! Everything here is non-blocking-aware but policy-free: EINTR is
//! retried, EAGAIN comes back as an `io::Error` of kind `WouldBlock`, and
//! the caller (`ipc::imsg`) decides what "try later" means.

use std::io::{self, IoSlice};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// The most buffers one sendmsg(2) takes: `IOV_MAX`, 1024 on both
/// OpenBSD and Linux (the libc crate does not export the constant).
pub const IOV_MAX: usize = 1024;

/// Bytes of control buffer for one `int`-sized descriptor, as imsg's
/// `CMSG_SPACE(sizeof(int))`.
// SAFETY: CMSG_SPACE is plain arithmetic on its argument.
const CMSG_FD_SPACE: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) } as usize;

/// Bytes of a control message header with no data, `CMSG_LEN(0)`.
// SAFETY: CMSG_LEN is plain arithmetic on its argument.
const CMSG_HDR_LEN: usize = unsafe { libc::CMSG_LEN(0) } as usize;

/// The most descriptors one [`recvmsg_fds`] can install in this process.
///
/// The control buffer is sized for one descriptor, as imsg's is, but
/// alignment padding leaves room for more (two on LP64 systems). The
/// kernel installs as many as fit, so a receiver must have this many free
/// slots before it calls recvmsg, or a descriptor may be lost.
pub const RECV_MAX_FDS: usize = (CMSG_FD_SPACE - CMSG_HDR_LEN) / mem::size_of::<libc::c_int>();
const _: () = assert!(RECV_MAX_FDS >= 1);

/// A control buffer aligned for `cmsghdr`, as imsg's union is.
#[repr(C)]
union CmsgBuf {
    _align: libc::cmsghdr,
    buf: [u8; CMSG_FD_SPACE],
}

impl CmsgBuf {
    fn zeroed() -> CmsgBuf {
        CmsgBuf {
            buf: [0; CMSG_FD_SPACE],
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn is_eintr(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINTR)
}

/// A connected pair of `AF_UNIX` stream sockets, as the parent creates
/// for each child and each pair of peers (`socketpair(2)`).
///
/// Both ends are close-on-exec from birth: OpenBSD (since 5.7) and Linux
/// both take `SOCK_CLOEXEC` in the type argument, so no other thread's
/// fork+exec can inherit them between the call and an fcntl. An end that
/// must survive exec (a child's socket, moved to fd 3) has the flag
/// cleared by whoever dup2()s it into place. The ends are blocking;
/// `imsgbuf_init` makes its own end non-blocking.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [-1 as libc::c_int; 2];
    // SAFETY: sv has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            libc::PF_UNSPEC,
            sv.as_mut_ptr(),
        )
    })?;
    // SAFETY: on success both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

/// getpeereid(2): the effective uid and gid of the process at the other
/// end of a connected unix socket (SO_PEERCRED on Linux).
pub fn getpeereid(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    #[cfg(target_os = "linux")]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred and len are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                ptr::addr_of_mut!(cred).cast(),
                &mut len,
            )
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((cred.uid, cred.gid))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: uid and gid are valid for writes.
        if unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((uid, gid))
    }
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments only, on a live descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd` (for the tests that check
/// descriptor hygiene).
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl with integer arguments only, on a live descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Whether `FD_CLOEXEC` is set on `fd` (for the tests that check
/// descriptor hygiene).
pub fn is_cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl with integer arguments only, on a live descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// sendmsg(2) of `bufs` on the stream socket `fd`, with `sendfd` passed
/// by `SCM_RIGHTS` alongside the first byte (imsg's msgbuf_write).
///
/// Returns the number of bytes sent, which may be short. If anything was
/// sent, the descriptor went with it: the caller may close its copy. An
/// empty `bufs` sends nothing and returns 0. EINTR is retried; a full
/// socket is an error of kind `WouldBlock` (EAGAIN) or ENOBUFS, which
/// imsg treats alike. `MSG_NOSIGNAL` keeps a closed peer from raising
/// SIGPIPE: that is an EPIPE error instead.
pub fn sendmsg_fd(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    sendfd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    if bufs.is_empty() {
        return Ok(0);
    }
    let iovcnt = bufs.len().min(IOV_MAX);
    let mut cmsgbuf = CmsgBuf::zeroed();
    // SAFETY: msghdr is plain data; all-zero is "no name, no control".
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with struct iovec; sendmsg only
    // reads through the pointer despite its *mut type.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iovcnt as _;
    if let Some(sendfd) = sendfd {
        msg.msg_control = ptr::addr_of_mut!(cmsgbuf).cast();
        msg.msg_controllen = CMSG_FD_SPACE as _;
        // SAFETY: msg_control points to CMSG_FD_SPACE aligned bytes, so
        // CMSG_FIRSTHDR returns a header with room for one int of data.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            debug_assert!(!cmsg.is_null());
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as _;
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            ptr::write_unaligned(
                libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                sendfd.as_raw_fd(),
            );
        }
    }
    loop {
        // SAFETY: msg points to iovcnt live buffers and, when set, to the
        // initialised control buffer above; both outlive the call.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if !is_eintr(&e) {
            return Err(e);
        }
    }
}

/// Whether a [`sendmsg_fd`] error only means "the socket is full, try
/// later": EAGAIN, or ENOBUFS, which OpenBSD returns when mbufs run short
/// (imsg's msgbuf_write retries both).
pub fn send_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// What one [`recvmsg_fds`] received.
#[derive(Debug)]
pub struct Recv {
    /// Bytes written at the start of the buffer; 0 means end of file.
    pub len: usize,
    /// The descriptors that came with them, in order, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// `MSG_CTRUNC`: the kernel had descriptors for us that it could not
    /// install (no room in the control buffer or in the descriptor
    /// table) and closed them. They are lost.
    pub ctrunc: bool,
}

/// recvmsg(2) on the stream socket `fd` into `buf` (imsg's msgbuf_read).
///
/// With `fdpass`, a control buffer for [`RECV_MAX_FDS`] descriptors is
/// offered and any `SCM_RIGHTS` descriptors come back in
/// [`Recv::fds`]; without it, the kernel closes any descriptor the peer
/// sent (and may set `ctrunc`). Received descriptors are created with
/// `MSG_CMSG_CLOEXEC`, which OpenBSD (since 5.7) and Linux both support,
/// so they are never inherited across exec unless asked for.
///
/// The caller must make sure the process has room for `RECV_MAX_FDS` new
/// descriptors ([`fd_room`]): Linux silently drops (and flags with
/// `ctrunc`) what it cannot install, and OpenBSD fails with EMSGSIZE,
/// after which imsg's C code reads again and loses the descriptor. EINTR
/// is retried; nothing to read is an error of kind `WouldBlock`.
pub fn recvmsg_fds(fd: BorrowedFd<'_>, buf: &mut [u8], fdpass: bool) -> io::Result<Recv> {
    let mut cmsgbuf = CmsgBuf::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is "no name, no control".
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fdpass {
        msg.msg_control = ptr::addr_of_mut!(cmsgbuf).cast();
        msg.msg_controllen = CMSG_FD_SPACE as _;
    }
    let n = loop {
        // SAFETY: msg points to one iovec covering buf and, with fdpass, to
        // CMSG_FD_SPACE aligned bytes of control buffer; all outlive the
        // call, and the kernel writes no more than the lengths given.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if !is_eintr(&e) {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    if fdpass {
        // SAFETY: msg was filled by recvmsg: msg_controllen now says how
        // much of the control buffer holds complete control messages.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg is a header inside the control buffer, as
            // CMSG_FIRSTHDR/CMSG_NXTHDR only return those.
            let (level, type_, len) = unsafe {
                (
                    (*cmsg).cmsg_level,
                    (*cmsg).cmsg_type,
                    (*cmsg).cmsg_len as usize,
                )
            };
            if level == libc::SOL_SOCKET && type_ == libc::SCM_RIGHTS {
                let count = len.saturating_sub(CMSG_HDR_LEN) / mem::size_of::<libc::c_int>();
                for i in 0..count {
                    // SAFETY: the kernel wrote `count` ints after the
                    // header; read_unaligned as CMSG_DATA has no alignment
                    // promise for int.
                    let raw: RawFd = unsafe {
                        ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>().add(i))
                    };
                    // SAFETY: SCM_RIGHTS installed a fresh descriptor that
                    // nothing else in this process owns.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
            // SAFETY: msg and cmsg are as above; CMSG_NXTHDR checks bounds.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
    Ok(Recv {
        len: n,
        fds,
        ctrunc: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Whether the process can open `n` more descriptors right now, below its
/// `RLIMIT_NOFILE` soft limit.
///
/// imsg's C code (before 2024) compared `getdtablecount()` with
/// `getdtablesize()`; on Linux the count needs /proc, which a chrooted
/// process does not have. This asks the kernel directly instead: it
/// duplicates `fd` (any live descriptor) `n` times with
/// `F_DUPFD_CLOEXEC` and closes the copies. The kernel installs received
/// descriptors by the same rule (lowest free slot below the soft limit),
/// so in a single-threaded process the answer holds until the next
/// descriptor is opened. Costs 2n system calls.
pub fn fd_room(fd: BorrowedFd<'_>, n: usize) -> io::Result<bool> {
    let mut probes = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: fcntl with integer arguments only, on a live descriptor.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EMFILE) | Some(libc::ENFILE) => Ok(false),
                _ => Err(e),
            };
        }
        // SAFETY: the duplicate is fresh and ours; dropping closes it.
        probes.push(unsafe { OwnedFd::from_raw_fd(r) });
    }
    Ok(true)
}

/// The soft limit on open descriptors, `RLIMIT_NOFILE`, as OpenBSD's
/// getdtablesize(3) returns it (an unlimited limit is `usize::MAX`).
pub fn getdtablesize() -> io::Result<usize> {
    // SAFETY: rlimit is plain data that getrlimit fills.
    let mut rl: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: rl is a valid out-pointer.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    Ok(usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(target_os = "openbsd")]
extern "C" {
    fn getdtablecount() -> libc::c_int;
}

/// /proc/self, kept open by getdtablecount_init() for a process that
/// chroots where there is no /proc.
#[cfg(not(target_os = "openbsd"))]
static PROC_SELF: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Opens /proc/self before the process chroots, so that getdtablecount()
/// can still list its descriptors cheaply there: the dispatcher counts
/// them before each accept. Nothing to do on OpenBSD, whose kernel counts.
pub fn getdtablecount_init() {
    #[cfg(not(target_os = "openbsd"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking as every descriptor of a process with a loop is,
        // though a directory is never polled.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
            .open("/proc/self");
        if let Ok(f) = dir {
            let _ = PROC_SELF.set(f.into());
        }
    }
}

/// How many descriptors the process has open (OpenBSD's getdtablecount(2)).
///
/// OpenBSD counts in the kernel. Linux lists /proc/self/fd, as
/// OpenSMTPD-portable does, through the /proc/self getdtablecount_init()
/// kept open when /proc is out of reach (a chroot). Failing both, it asks
/// poll(2) which of the descriptors below the soft limit are open: one
/// call, but as slow as the limit is high (portable returns 0 there,
/// which hides exhaustion).
pub fn getdtablecount() -> io::Result<usize> {
    #[cfg(target_os = "openbsd")]
    {
        // SAFETY: getdtablecount takes no arguments and cannot fail.
        Ok(unsafe { getdtablecount() } as usize)
    }
    #[cfg(not(target_os = "openbsd"))]
    {
        getdtablecount_proc().or_else(|_| getdtablecount_poll())
    }
}

/// The entries of /proc/self/fd, less the descriptor that lists them.
#[cfg(not(target_os = "openbsd"))]
fn getdtablecount_proc() -> io::Result<usize> {
    let fd = match PROC_SELF.get() {
        Some(dir) => {
            // SAFETY: dir is an open descriptor and the path is a
            // NUL-terminated literal.
            cvt(unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    c"fd".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })?
        }
        None => {
            // SAFETY: the path is a NUL-terminated literal.
            cvt(unsafe {
                libc::open(
                    c"/proc/self/fd".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })?
        }
    };
    // SAFETY: fd is an open directory that fdopendir takes over.
    let dir = unsafe { libc::fdopendir(fd) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so fd is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return Err(e);
    }
    let mut n = 0usize;
    loop {
        // SAFETY: dir is an open DIR stream, used by this thread only.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry, whose d_name is
        // NUL-terminated, so its first byte can be read.
        let first = unsafe { (*ent).d_name[0] } as u8;
        // Descriptors are named by their number; skip "." and "..".
        if first.is_ascii_digit() {
            n += 1;
        }
    }
    // SAFETY: dir came from fdopendir and is closed once, here.
    unsafe { libc::closedir(dir) };
    Ok(n.saturating_sub(1))
}

#[cfg(not(target_os = "openbsd"))]
fn getdtablecount_poll() -> io::Result<usize> {
    let limit = getdtablesize()?.min(1 << 20);
    let mut pfds: Vec<libc::pollfd> = (0..limit)
        .map(|fd| libc::pollfd {
            fd: fd as libc::c_int,
            events: 0,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: pfds holds pfds.len() initialised pollfd structures, of
        // which poll writes only revents; a zero timeout never blocks.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if !is_eintr(&e) {
            return Err(e);
        }
    }
    Ok(pfds
        .iter()
        .filter(|p| p.revents & libc::POLLNVAL == 0)
        .count())
}

/// Sets the soft `RLIMIT_NOFILE` limit: tests use it to fill the
/// descriptor table in a child process.
#[cfg(test)]
pub(crate) fn setrlimit_nofile(soft: u64) -> io::Result<()> {
    // SAFETY: rlimit is plain data that getrlimit fills.
    let mut rl: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: rl is a valid out-pointer.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    rl.rlim_cur = soft as libc::rlim_t;
    // SAFETY: rl is initialised.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }).map(|_| ())
}

/// Runs the ignored test `name` (its full path, `ipc::imsg::tests::...`)
/// alone in a fresh copy of the test binary, with `SMTPD_TEST_CHILD` set
/// so that the test knows it may change process-wide state (limits, the
/// descriptor table) without disturbing the tests running in parallel.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn run_test_in_child(name: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SMTPD_TEST_CHILD", name)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process is the child that [`run_test_in_child`] started
/// for test `name`.
#[cfg(test)]
pub(crate) fn is_test_child(name: &str) -> bool {
    std::env::var("SMTPD_TEST_CHILD").as_deref() == Ok(name)
}

/// shutdown(2) of the write side: the peer reads end of file, and we
/// can still read what it sends.
pub fn shutdown_write(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: shutdown takes integers only.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of descriptor `fd`, inherited across exec (the set-up
/// channel smtpd's children find on descriptor 3), if it is open.
pub fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the descriptor is open and, by the exec protocol, ours alone.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: as above; close-on-exec so our own children do not inherit it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(owned)
}

/// A socket address as this platform's C library lays out `struct
/// sockaddr_in` or `struct sockaddr_in6` (with `sin_len` on OpenBSD):
/// mproc sends socket addresses between processes in this raw form, as
/// OpenSMTPD does.
pub fn sockaddr_bytes(sa: &SocketAddr) -> Vec<u8> {
    match sa {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain data; all-zero is valid.
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            #[cfg(target_os = "openbsd")]
            {
                sin.sin_len = mem::size_of::<libc::sockaddr_in>() as u8;
            }
            as_bytes(&sin)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            #[cfg(target_os = "openbsd")]
            {
                sin6.sin6_len = mem::size_of::<libc::sockaddr_in6>() as u8;
            }
            as_bytes(&sin6)
        }
    }
}

fn as_bytes<T>(v: &T) -> Vec<u8> {
    // SAFETY: T is a plain C struct (sockaddr_in/in6) fully initialised
    // above; reading its bytes is always defined.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), mem::size_of::<T>()) }
        .to_vec()
}

/// The inverse of sockaddr_bytes: None for other families (the local
/// socket's AF_UNIX) or sizes that do not match.
pub fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    if b.len() == mem::size_of::<libc::sockaddr_in>() {
        // SAFETY: the length matches; read_unaligned copes with any
        // alignment of the message buffer.
        let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
        if libc::c_int::from(sin.sin_family) == libc::AF_INET {
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            return Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)));
        }
    }
    if b.len() == mem::size_of::<libc::sockaddr_in6>() {
        // SAFETY: as above.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
        if libc::c_int::from(sin6.sin6_family) == libc::AF_INET6 {
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            return Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )));
        }
    }
    None
}

/// A non-blocking socket to a name server, connected (or, for TCP, still
/// connecting), as asr's sockaddr_connect(). On OpenBSD it is a
/// `SOCK_DNS` socket, which a process pledged "dns" may use without
/// "inet". A datagram socket gets a random source port from the kernel
/// at connect time and, being connected, only receives datagrams from
/// `sa`. A stream socket may still be connecting: wait until it is
/// writable, then read its pending error.
pub fn dns_connect(sa: &SocketAddr, stream: bool) -> io::Result<OwnedFd> {
    let family = match sa {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let mut ty = if stream {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    ty |= libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(target_os = "openbsd")]
    {
        ty |= libc::SOCK_DNS;
    }
    // SAFETY: socket takes plain integers and returns a new descriptor.
    let fd = cvt(unsafe { libc::socket(family, ty, 0) })?;
    // SAFETY: fd was just returned by socket and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = sockaddr_bytes(sa);
    // SAFETY: raw holds a complete sockaddr_in or sockaddr_in6 of
    // raw.len() bytes, which connect only reads.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            raw.as_ptr().cast(),
            raw.len() as libc::socklen_t,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        let pending = matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR));
        if !(stream && pending) {
            return Err(e);
        }
    }
    Ok(fd)
}

/// The socket of an SMTP listener, bound but not listening yet, as
/// smtp_setup_listeners() makes it while the dispatcher is still root:
/// SO_REUSEADDR so that a restart does not wait for old connections, and
/// IPV6_V6ONLY so that `::` and `0.0.0.0` can both be bound.
pub fn tcp_bind(sa: &SocketAddr) -> io::Result<OwnedFd> {
    let family = match sa {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket takes plain integers and returns a new descriptor.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    let optlen = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` is a valid c_int of optlen bytes for both options.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&on as *const libc::c_int).cast(),
            optlen,
        )
    })?;
    if family == libc::AF_INET6 {
        // SAFETY: as above.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&on as *const libc::c_int).cast(),
                optlen,
            )
        })?;
    }
    let raw = sockaddr_bytes(sa);
    // SAFETY: raw holds a complete sockaddr_in or sockaddr_in6 of
    // raw.len() bytes, which bind only reads.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            raw.as_ptr().cast(),
            raw.len() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// listen(2).
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes a descriptor and an integer.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    fn pipe() -> (File, File) {
        let (r, w) = crate::sys::event::pipe_nonblock().unwrap();
        set_nonblocking(r.as_fd(), false).unwrap();
        (File::from(r), File::from(w))
    }

    #[test]
    fn socketpair_ends_are_close_on_exec_and_connected() {
        let (a, b) = socketpair().unwrap();
        assert!(is_cloexec(a.as_fd()).unwrap());
        assert!(is_cloexec(b.as_fd()).unwrap());
        assert!(!is_nonblocking(a.as_fd()).unwrap());
        let n = sendmsg_fd(a.as_fd(), &[IoSlice::new(b"ping")], None).unwrap();
        assert_eq!(n, 4);
        let mut buf = [0u8; 16];
        let r = recvmsg_fds(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"ping");
        assert!(r.fds.is_empty() && !r.ctrunc);
    }

    #[test]
    fn set_nonblocking_toggles_o_nonblock() {
        let (a, _b) = socketpair().unwrap();
        set_nonblocking(a.as_fd(), true).unwrap();
        assert!(is_nonblocking(a.as_fd()).unwrap());
        set_nonblocking(a.as_fd(), false).unwrap();
        assert!(!is_nonblocking(a.as_fd()).unwrap());
    }

    #[test]
    fn empty_nonblocking_socket_reads_would_block() {
        let (a, _b) = socketpair().unwrap();
        set_nonblocking(a.as_fd(), true).unwrap();
        let mut buf = [0u8; 16];
        let e = recvmsg_fds(a.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn passed_descriptor_arrives_close_on_exec_and_works() {
        let (a, b) = socketpair().unwrap();
        let (mut pr, pw) = pipe();
        let n = sendmsg_fd(a.as_fd(), &[IoSlice::new(b"x")], Some(pw.as_fd())).unwrap();
        assert_eq!(n, 1);
        drop(pw);
        let mut buf = [0u8; 16];
        let mut r = recvmsg_fds(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!((r.len, r.fds.len(), r.ctrunc), (1, 1, false));
        let fd = r.fds.pop().unwrap();
        assert!(is_cloexec(fd.as_fd()).unwrap());
        File::from(fd).write_all(b"through").unwrap();
        let mut got = String::new();
        pr.read_to_string(&mut got).unwrap();
        assert_eq!(got, "through");
    }

    #[test]
    fn receiving_without_fdpass_drops_the_descriptor() {
        let (a, b) = socketpair().unwrap();
        let (_pr, pw) = pipe();
        sendmsg_fd(a.as_fd(), &[IoSlice::new(b"x")], Some(pw.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        let r = recvmsg_fds(b.as_fd(), &mut buf, false).unwrap();
        assert_eq!(r.len, 1);
        assert!(r.fds.is_empty());
    }

    #[test]
    fn receive_control_buffer_holds_at_least_one_descriptor() {
        assert!(fd_room(File::open("/dev/null").unwrap().as_fd(), RECV_MAX_FDS).unwrap());
    }

    #[test]
    fn descriptor_table_accounting_in_child_process() {
        run_test_in_child("sys::socket::tests::descriptor_table_accounting_child");
    }

    /// Runs only in the child started by the test above: it lowers the
    /// process's descriptor limit, which would break tests running in
    /// parallel.
    #[test]
    #[ignore = "run by descriptor_table_accounting_in_child_process"]
    fn descriptor_table_accounting_child() {
        if !is_test_child("sys::socket::tests::descriptor_table_accounting_child") {
            return;
        }
        let (a, b) = socketpair().unwrap();
        let (_pr, pw) = pipe();
        let before = getdtablecount().unwrap();
        let f = File::open("/dev/null").unwrap();
        assert_eq!(getdtablecount().unwrap(), before + 1);
        // Through the /proc/self kept for a chroot, itself one more.
        getdtablecount_init();
        assert!(PROC_SELF.get().is_some());
        assert_eq!(getdtablecount_proc().unwrap(), before + 2);

        let limit = before + 16;
        setrlimit_nofile(limit as u64).unwrap();
        assert_eq!(getdtablesize().unwrap(), limit);
        // The poll(2) fallback sees the descriptors below the limit only
        // (the test harness may have left one above it).
        let below = getdtablecount_poll().unwrap();
        let g = File::open("/dev/null").unwrap();
        assert_eq!(getdtablecount_poll().unwrap(), below + 1);
        drop(g);
        let mut fill = Vec::new();
        while fd_room(f.as_fd(), 1).unwrap() {
            fill.push(File::open("/dev/null").unwrap());
        }
        assert_eq!(getdtablecount_poll().unwrap(), limit);

        // What imsg must never do: receive with a full table. Linux keeps
        // the data, drops the descriptor and says MSG_CTRUNC.
        sendmsg_fd(a.as_fd(), &[IoSlice::new(b"x")], Some(pw.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        match recvmsg_fds(b.as_fd(), &mut buf, true) {
            Ok(r) => {
                assert_eq!(r.len, 1);
                assert!(r.fds.is_empty());
                assert!(r.ctrunc);
            }
            // OpenBSD refuses the whole receive instead.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE)),
        }
    }

    #[test]
    fn socket_addresses_round_trip_in_c_layout() {
        for a in ["192.0.2.1:25", "[2001:db8::1]:587", "[::1]:0"] {
            let sa: SocketAddr = a.parse().unwrap();
            let b = sockaddr_bytes(&sa);
            assert_eq!(sockaddr_from_bytes(&b), Some(sa), "{a}");
        }
        assert_eq!(sockaddr_from_bytes(&[0u8; 3]), None);
    }
}
