//! Support for the tests: what a test needs from the system that the
//! daemon itself does not (running a forking test alone; a scratch
//! directory; on Linux, preparing a spawned daemon and listing unix
//! sockets with their peers).
//! Kept here because `unsafe` lives in src/sys only; smtpd never calls it.

#[cfg(target_os = "linux")]
use std::collections::HashMap;
#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
#[cfg(target_os = "linux")]
use std::process::Command;

#[cfg(target_os = "linux")]
/// What runs in the forked child before exec.
fn child_setup() -> io::Result<()> {
    // Descriptors the test process inherited without close-on-exec
    // (cargo's jobserver pipes, say) are not the daemon's: mark them so
    // that the descriptor test sees only what smtpd opens itself.
    // SAFETY: close_range takes integers only and is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // Should the test process die without running the guards (^C), the
    // daemon's parent dies too, and the children follow it as they do
    // when their parent goes. (This runs after Command's setuid, which
    // would clear it.)
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
/// Runs child_setup() in a spawned daemon between fork and exec.
pub fn daemon_pre_exec(cmd: &mut Command) {
    // SAFETY: child_setup only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(child_setup) };
}

#[cfg(target_os = "linux")]
/// Runs a spawned command in a mount namespace of its own, in which each
/// `(source, target)` of `binds` is bind-mounted over `target`, then as
/// `user` (uid, gid, and no other group) if given. Tests use it to put
/// their own directories and the build's programs where the paths
/// compiled into smtpd and smtpctl point (the spool, the control socket,
/// smtpctl), which set-id programs and the daemon's offline enqueuer use
/// whatever the environment says, without touching the system's. The
/// command must not also be given a uid or gid (those would apply first,
/// and an unprivileged process cannot mount).
pub fn mount_ns_pre_exec(
    cmd: &mut Command,
    binds: &[(std::path::PathBuf, std::path::PathBuf)],
    user: Option<(u32, u32)>,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let binds = binds
        .iter()
        .map(|(s, t)| Ok((cpath(s)?, cpath(t)?)))
        .collect::<io::Result<Vec<_>>>()?;
    let root = cpath(std::path::Path::new("/"))?;
    let check = |r: libc::c_int| {
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let setup = move || -> io::Result<()> {
        // SAFETY: integer argument only.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        // Nothing mounted here may show outside.
        // SAFETY: a NUL-terminated path and null pointers where mount(2)
        // takes none for a change of propagation.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        for (source, target) in &binds {
            // SAFETY: NUL-terminated paths prepared before fork; no data.
            check(unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            })?;
        }
        if let Some((uid, gid)) = user {
            let groups = [gid as libc::gid_t];
            // SAFETY: groups holds one gid_t.
            check(unsafe { libc::setgroups(1, groups.as_ptr()) })?;
            // SAFETY: integer arguments only.
            check(unsafe { libc::setresgid(gid, gid, gid) })?;
            // SAFETY: integer arguments only.
            check(unsafe { libc::setresuid(uid, uid, uid) })?;
        }
        Ok(())
    };
    // SAFETY: the closure makes system calls only (unshare, mount,
    // setgroups, setresgid, setresuid), all async-signal-safe, on memory
    // prepared before the fork.
    unsafe { cmd.pre_exec(setup) };
    Ok(())
}

#[cfg(target_os = "linux")]
/// The AF_UNIX sockets the kernel knows (what `ss -x` lists), from
/// NETLINK_SOCK_DIAG.
#[derive(Clone, Debug, Default)]
pub struct UnixSock {
    pub state: u8,
    pub peer: u32,
    pub name: Option<String>,
}

#[cfg(target_os = "linux")]
pub const TCP_LISTEN: u8 = 10;

#[cfg(target_os = "linux")]
pub fn unix_sockets() -> io::Result<HashMap<u32, UnixSock>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_NAME: u32 = 1;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UNIX_DIAG_NAME: u16 = 0;
    const UNIX_DIAG_PEER: u16 = 2;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;

    // SAFETY: socket takes integers only.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // struct nlmsghdr, then struct unix_diag_req: every state, any inode,
    // with names and peers.
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: an all-zero sockaddr_nl is valid; it addresses the kernel.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and sa are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }

    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes of writing.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == -1 {
            return Err(io::Error::last_os_error());
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + 16 <= data.len() {
            let len = u32_at(data, off) as usize;
            let kind = u16_at(data, off + 4);
            if len < 16 || off + len > data.len() {
                return Err(io::Error::other("sock_diag: truncated message"));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => return Err(io::Error::other("sock_diag: NLMSG_ERROR")),
                _ => {}
            }
            // struct unix_diag_msg: family, type, state, pad, ino,
            // cookie[2]; then attributes.
            let m = &data[off + 16..off + len];
            if m.len() >= 16 {
                let mut s = UnixSock {
                    state: m[2],
                    ..UnixSock::default()
                };
                let ino = u32_at(m, 4);
                let mut a = 16;
                while a + 4 <= m.len() {
                    let alen = u16_at(m, a) as usize;
                    let atype = u16_at(m, a + 2);
                    if alen < 4 || a + alen > m.len() {
                        break;
                    }
                    let payload = &m[a + 4..a + alen];
                    match atype {
                        UNIX_DIAG_PEER if payload.len() >= 4 => s.peer = u32_at(payload, 0),
                        UNIX_DIAG_NAME => {
                            let end = payload
                                .iter()
                                .position(|&b| b == 0)
                                .unwrap_or(payload.len());
                            s.name = Some(String::from_utf8_lossy(&payload[..end]).into_owned());
                        }
                        _ => {}
                    }
                    a += (alen + 3) & !3;
                }
                out.insert(ino, s);
            }
            off += (len + 3) & !3;
        }
    }
}

/// Whether the body of a test that forks runs here. fork() copies the
/// locks other test threads hold at that moment (stderr's, the C
/// library's), and a child that logs or looks up a user could wait on one
/// forever; so such a test runs again in a process of its own, with one
/// test thread, and here only checks that that run passed.
#[allow(clippy::disallowed_methods)] // re-runs the test binary
pub fn run_alone(module_path: &str, test: &str) -> bool {
    const ALONE: &str = "SMTPD_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    // The path inside the test binary's crate: none for a test at the
    // root of an integration test.
    let name = match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name.as_str(),
            "--exact",
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ALONE, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, alone: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    false
}

/// A scratch directory under the system's temporary directory, unique to
/// the process and the call, removed with its contents when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new empty directory whose name starts with `smtpd-TAG-`.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smtpd-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of an earlier run that had the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("{}: {e}", dir.display());
        }
        TempDir(dir)
    }

    /// The path of `name` in the directory, as a string.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
