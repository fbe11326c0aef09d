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

/// fsync(2) of the directory `path`, for the entries created, renamed or
/// removed in it: without it a file may be on the disk and its name not.
/// A directory opened read-only may be fsynced, so std does it all.
pub fn fsync_dir(path: &std::path::Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// The most threads sync_all_parallel() runs at once.
const SYNC_THREADS: usize = 8;

/// fsync(2)s every file of `files` (directories too), several at a time,
/// and says how each went, in order. One thread doing them in turn makes
/// each fsync wait for a journal commit of its own; fsyncs that wait
/// together share one, so a batch costs little more than its slowest
/// file. The threads live for this call only.
pub fn sync_all_parallel(files: &[File]) -> Vec<io::Result<()>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    if files.len() < 2 {
        return files.iter().map(File::sync_all).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<io::Result<()>>>> =
        Mutex::new(files.iter().map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(f) = files.get(i) else {
            break;
        };
        let r = f.sync_all();
        if let Ok(mut all) = results.lock() {
            all[i] = Some(r);
        }
    };
    std::thread::scope(|scope| {
        // This thread works too; the others help when they can start.
        for _ in 1..files.len().min(SYNC_THREADS) {
            if std::thread::Builder::new()
                .spawn_scoped(scope, work)
                .is_err()
            {
                break;
            }
        }
        work();
    });
    let all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    all.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("fsync not attempted"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fsync_dir_works_on_directories_and_reports_missing_ones() {
        fsync_dir(&std::env::temp_dir()).unwrap();
        let e = fsync_dir(std::path::Path::new("/nonexistent/smtpd-fsync-dir")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn sync_all_parallel_reports_each_file_in_order() {
        let dir = std::env::temp_dir().join(format!("smtpd-fsync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for i in 0..20 {
            let mut f = File::create(dir.join(format!("f{i}"))).unwrap();
            f.write_all(b"data").unwrap();
            files.push(f);
        }
        files.push(File::open(&dir).unwrap());
        // A pipe cannot be fsynced (EINVAL): its failure must come back
        // in its own place.
        let (r, _w) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(r));
        files.insert(7, pipe);
        let results = sync_all_parallel(&files);
        assert_eq!(results.len(), files.len());
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 7, "file {i}: {r:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
