//! Helps for making many files durable at once.
//!
//! fsync(2) itself is std's `File::sync_all`, on directories too (a
//! directory opened read-only may be fsynced). What std lacks is a way to
//! start the writeback of a file without waiting for it: flushing a
//! batch of files one fsync after the other makes each of them a journal
//! commit of its own, where starting them all first lets the first fsync
//! commit them together and the others find their work done.

use std::fs::File;
use std::io;

/// Starts writing back `f`'s dirty pages, without waiting for the I/O
/// (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE` on Linux). It makes
/// nothing durable by itself, not even the data: it is a hint that an
/// fsync of the file follows soon. Elsewhere it does nothing.
#[cfg(target_os = "linux")]
pub fn sync_file_range_write(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for as long as `f` is borrowed;
        // the call takes integers only and touches no memory of ours.
        let r = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Elsewhere: nothing to start; the fsync that follows does it all.
#[cfg(not(target_os = "linux"))]
pub fn sync_file_range_write(_f: &File) -> io::Result<()> {
    Ok(())
}
