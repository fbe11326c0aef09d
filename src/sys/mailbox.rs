//! What the delivery helpers (mail.maildir, mail.mboxfile) need from the
//! system beyond std: an exclusive lock on a mailbox; and the shared lock
//! makemap takes on the file it reads. (The fsync of a directory is
//! sys::fsync::fsync_dir.)

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Takes an exclusive `flock(2)` lock on `f`, waiting for it, and retries
/// when a signal interrupts the wait. The lock goes when the last
/// descriptor of the open file is closed.
///
/// This is the lock OpenBSD's `O_EXLOCK` takes at open(2) time, which
/// OpenSMTPD's mail.mboxfile relies on; Linux has no `O_EXLOCK`, so the
/// helpers lock right after opening, on every system alike. Readers that
/// use fcntl(2) locks only (some mbox readers on Linux) do not see it.
pub fn flock_exclusive(f: &File) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for as long as `f` is borrowed;
        // flock takes integers only and touches no memory of ours.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes a shared `flock(2)` lock on `fd` without waiting: an error of
/// kind `WouldBlock` when someone holds an exclusive one (a writer of the
/// file that locks it). Retried when a signal interrupts the call.
pub fn flock_shared_nonblock(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for as long as `fd` is borrowed;
        // flock takes integers only and touches no memory of ours.
        let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_exclusive_lock_is_refused_while_the_first_is_held() {
        let path = std::env::temp_dir().join(format!("smtpd-flock-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        flock_exclusive(&a).unwrap();
        // A separate open file description: flock locks are per open
        // file, so this one must wait; LOCK_NB makes it say so instead.
        let b = File::open(&path).unwrap();
        // SAFETY: b is open for the duration of the call.
        let r = unsafe { libc::flock(b.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EWOULDBLOCK)
        );
        drop(a);
        flock_exclusive(&b).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_shared_lock_is_refused_at_once_while_an_exclusive_one_is_held() {
        use std::os::fd::AsFd;
        let path = std::env::temp_dir().join(format!("smtpd-flock-sh-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        flock_exclusive(&a).unwrap();
        let b = File::open(&path).unwrap();
        let e = flock_shared_nonblock(b.as_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        flock_shared_nonblock(b.as_fd()).unwrap();
        // Shared locks do not exclude each other.
        let c = File::open(&path).unwrap();
        flock_shared_nonblock(c.as_fd()).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
