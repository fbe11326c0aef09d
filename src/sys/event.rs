//! What the event loop needs from the kernel: poll(2), a non-blocking
//! close-on-exec pipe, and signal handlers that write the signal number
//! into that pipe (the self-pipe trick: the only thing a handler does).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

pub use libc::pollfd;
pub use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

/// Waits for readiness on `fds`, for at most `timeout` (forever when
/// None). Like mio, a timeout below one millisecond is rounded up so that
/// a timer due in 0.3 ms cannot make the loop spin, and huge timeouts are
/// capped at what poll(2) takes. EINTR returns 0 ready descriptors: the
/// caller's loop looks at its signal pipe and timers again.
pub fn poll(fds: &mut [pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms: libc::c_int = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    };
    // SAFETY: fds points to fds.len() initialised pollfd structures that
    // poll only writes the revents of.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

/// A pipe whose ends are non-blocking and close-on-exec: (read, write).
pub fn pipe_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The write end of the signal pipe, for the handler (-1: none).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn signal_handler(signo: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let b = signo as u8;
    // SAFETY: write(2) is async-signal-safe; errno is saved and restored
    // so that the interrupted code sees its own. A full pipe drops the
    // byte, which is harmless: the loop wakes up for the ones queued.
    unsafe {
        let errno = *errno_location();
        libc::write(fd, (&b as *const u8).cast(), 1);
        *errno_location() = errno;
    }
}

#[cfg(target_os = "linux")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: the C library returns the calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

#[cfg(target_os = "openbsd")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: the C library returns the calling thread's errno slot.
    unsafe { libc::__errno() }
}

/// Routes signal `signo` to the pipe whose write end is `pipe_wr`: the
/// handler writes the signal number as one byte. One pipe per process.
pub fn signal_to_pipe(signo: libc::c_int, pipe_wr: &OwnedFd) -> io::Result<()> {
    SIGNAL_PIPE.store(pipe_wr.as_raw_fd(), Ordering::Relaxed);
    let handler: extern "C" fn(libc::c_int) = signal_handler;
    sigaction(signo, handler as libc::sighandler_t)
}

/// Puts signal `signo` back to its default action.
pub fn signal_default(signo: libc::c_int) -> io::Result<()> {
    sigaction(signo, libc::SIG_DFL)
}

/// Ignores signal `signo` (SIGPIPE, for one).
pub fn signal_ignore(signo: libc::c_int) -> io::Result<()> {
    sigaction(signo, libc::SIG_IGN)
}

fn sigaction(signo: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid starting point; we set the
    // handler and flags, and block every signal while the handler runs.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa.sa_mask is a valid sigset_t to fill.
    unsafe { libc::sigfillset(&mut sa.sa_mask) };
    // SAFETY: sa is fully initialised; the old action is not wanted.
    if unsafe { libc::sigaction(signo, &sa, std::ptr::null_mut()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends signal `signo` to this process.
pub fn raise(signo: libc::c_int) -> io::Result<()> {
    // SAFETY: raise has no memory arguments.
    if unsafe { libc::raise(signo) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads what is in a non-blocking descriptor (the signal pipe), up to
/// `buf.len()` bytes; 0 when there is nothing.
pub fn read_nonblock(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes of writing.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// CPU time (user + system) the calling thread has used (the process,
/// where threads cannot be told apart), for the tests that check an idle
/// loop does not spin.
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // The calling thread only: tests run in parallel threads.
    #[cfg(target_os = "linux")]
    let who = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    let who = libc::RUSAGE_SELF;
    // SAFETY: a valid `who` and out-pointer: getrusage cannot fail.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
