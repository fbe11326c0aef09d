//! setproctitle(3): what `ps` shows for a process: the program name, a
//! colon and the title (`smtpd: queue`).
//!
//! OpenBSD has it in libc. On Linux, as OpenSMTPD's portable compat code
//! does, the title overwrites the memory that held the command line (and
//! the environment strings that follow it, moved aside first), which is
//! what /proc/PID/cmdline and so `ps` read. The command line is captured
//! when the program starts, from glibc's initialisation array, so callers
//! must have copied their arguments (std::env::args) before setting a
//! title.

#[cfg(target_os = "openbsd")]
pub fn setproctitle(title: &str) {
    let Ok(t) = super::cstring(title) else { return };
    // SAFETY: a literal "%s" format and a NUL-terminated argument.
    unsafe { libc::setproctitle(c"%s".as_ptr(), t.as_ptr()) };
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod linux {
    use std::ffi::CStr;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    static ARGC: AtomicUsize = AtomicUsize::new(0);
    static ARGV: AtomicPtr<*mut libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

    /// Called by glibc before main with the real argc and argv.
    extern "C" fn capture(
        argc: libc::c_int,
        argv: *mut *mut libc::c_char,
        _envp: *mut *mut libc::c_char,
    ) {
        ARGC.store(argc.max(0) as usize, Ordering::Relaxed);
        ARGV.store(argv, Ordering::Relaxed);
    }

    #[used]
    #[link_section = ".init_array.00098"]
    static CAPTURE: extern "C" fn(libc::c_int, *mut *mut libc::c_char, *mut *mut libc::c_char) =
        capture;

    extern "C" {
        // libc's environ, which setenv(3) may replace: an AtomicPtr (the
        // layout of a pointer, with interior mutability) lets it change
        // under us without a `static mut`.
        static environ: AtomicPtr<*mut libc::c_char>;
    }

    /// The contiguous strings starting at argv[0]: argv's, then those of
    /// environ that follow without a gap. Returns (start, length).
    unsafe fn area() -> Option<(*mut libc::c_char, usize)> {
        let argv = ARGV.load(Ordering::Relaxed);
        let argc = ARGC.load(Ordering::Relaxed);
        if argv.is_null() || argc == 0 {
            return None;
        }
        // SAFETY: argv holds argc valid string pointers (from the kernel).
        let start = unsafe { *argv };
        let mut end = start;
        for i in 0..argc {
            // SAFETY: as above.
            let p = unsafe { *argv.add(i) };
            if p != end {
                break;
            }
            // SAFETY: p is a NUL-terminated argument string.
            end = unsafe { p.add(CStr::from_ptr(p).to_bytes().len() + 1) };
        }
        // SAFETY: environ is the process's environment array; we only read
        // it here, single-threaded.
        let mut envp = unsafe { environ.load(Ordering::Relaxed) };
        while !envp.is_null() {
            // SAFETY: envp walks a NULL-terminated array.
            let p = unsafe { *envp };
            if p.is_null() || p != end {
                break;
            }
            // SAFETY: p is a NUL-terminated environment string.
            end = unsafe { p.add(CStr::from_ptr(p).to_bytes().len() + 1) };
            // SAFETY: still inside the array, which ends with NULL.
            envp = unsafe { envp.add(1) };
        }
        Some((start, end as usize - start as usize))
    }

    /// Moves the environment strings that live in the title area to the
    /// heap, so that overwriting the area leaves getenv(3) working.
    unsafe fn move_environ(start: usize, len: usize) {
        // SAFETY: environ is a NULL-terminated array this single-threaded
        // process may rewrite; the copies are leaked on purpose (the
        // environment lives as long as the process).
        unsafe {
            let mut envp = environ.load(Ordering::Relaxed);
            while !envp.is_null() && !(*envp).is_null() {
                let p = *envp as usize;
                if p >= start && p < start + len {
                    let copy = CStr::from_ptr(*envp).to_owned();
                    *envp = copy.into_raw();
                }
                envp = envp.add(1);
            }
        }
    }

    /// The program name, read from argv[0] before the first title
    /// overwrites it.
    static PROGNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

    fn progname(start: *const libc::c_char) -> &'static str {
        PROGNAME.get_or_init(|| {
            // SAFETY: start is argv[0], NUL-terminated, not yet overwritten
            // (this runs before the first title is written).
            let argv0 = unsafe { CStr::from_ptr(start) }.to_string_lossy();
            argv0.rsplit('/').next().unwrap_or("smtpd").to_string()
        })
    }

    pub fn setproctitle(title: &str) {
        // SAFETY: single-threaded; area() only reads.
        let Some((start, len)) = (unsafe { area() }) else {
            return;
        };
        let title = format!("{}: {title}", progname(start));
        let title = title.as_str();
        if len < 2 {
            return;
        }
        // SAFETY: see move_environ.
        unsafe { move_environ(start as usize, len) };
        let bytes = title.as_bytes();
        let n = bytes.len().min(len - 1);
        // SAFETY: [start, start + len) is the process's own argument and
        // environment memory, no longer referenced by environ; we write
        // within it and leave a NUL at the end.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), start.cast::<u8>(), n);
            std::ptr::write_bytes(start.cast::<u8>().add(n), 0, len - n);
        }
        let comm = super::super::cstring(&title.replace('\0', "")).unwrap_or_default();
        // SAFETY: PR_SET_NAME copies at most 16 bytes of a NUL-terminated
        // string; it names the thread for top(1) and ps -o comm.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use linux::setproctitle;

#[cfg(not(any(target_os = "openbsd", all(target_os = "linux", target_env = "gnu"))))]
pub fn setproctitle(_title: &str) {}
