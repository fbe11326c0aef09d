//! What the tests that run the real daemon share: a private directory per
//! daemon (spool, control socket, pid file, configuration, captured
//! output), a guard that kills a daemon's whole tree when the test ends
//! however it ends, and readers of /proc and of the kernel's table of
//! unix sockets (Linux).
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use smtpd::pathnames::{SMTPD_QUEUE_USER, SMTPD_USER};

pub mod dns;
pub mod dovecot;
pub mod mbox;
pub mod smtp;

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// The titles (proc_title()) of the six children, in start order.
pub const TITLES: [&str; 6] = [
    "crypto",
    "control",
    "lookup",
    "dispatcher",
    "queue",
    "scheduler",
];

pub fn smtpd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smtpd"))
}

pub fn is_root() -> bool {
    smtpd::sys::unistd::geteuid() == 0
}

/// True (after a note) when the test cannot run: it needs root.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("note: {test}: skipped, it must run as root");
    true
}

/// True (after a note) when a test that delivers to the test users
/// cannot run: it needs root; the users (mk/testusers.sh) must exist.
pub fn skip_unless_test_users(test: &str) -> bool {
    if skip_unless_root(test) {
        return true;
    }
    for u in ["smtpdtest1", "smtpdtest2"] {
        assert!(
            smtpd::sys::process::getpwnam(u).ok().flatten().is_some(),
            "user {u} is missing: run mk/testusers.sh (make test does) as root"
        );
    }
    false
}

/// Polls `cond` every POLL until it holds or `timeout` passes; whether it
/// held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Asserts that a helper run as `out` exited `code`, showing how it ended
/// and what it said otherwise.
#[track_caller]
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user's uid and gid.
pub fn user(name: &str) -> (u32, u32) {
    match smtpd::sys::process::getpwnam(name) {
        Ok(Some(pw)) => (pw.uid, pw.gid),
        other => panic!("no user {name} ({other:?}); mk/users.sh makes smtpd's"),
    }
}

pub fn group(name: &str) -> u32 {
    match smtpd::sys::process::getgrnam(name) {
        Ok(Some(gid)) => gid,
        other => panic!("no group {name} ({other:?}); mk/users.sh makes smtpd's"),
    }
}

/// The uid each child runs as.
pub fn expected_uid(title: &str) -> u32 {
    if title == "queue" {
        user(SMTPD_QUEUE_USER).0
    } else {
        user(SMTPD_USER).0
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A private directory, removed when dropped: the configuration, the
/// spool (created by the queue process), `run/` for the control socket
/// and the pid file, and the daemons' output.
pub struct TestDir {
    pub path: PathBuf,
    pub port: u16,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let n = seq();
        let path = std::env::temp_dir().join(format!("smtpd-{tag}-{}-{n}", std::process::id()));
        // A leftover of an earlier run that had the same pid.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).expect("create the test directory");
        // Readable by anyone: the non-root test reads the configuration.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = path.canonicalize().expect("canonicalize");
        fs::create_dir(path.join("run")).expect("create run/");
        // Below the kernel's ephemeral range (32768 up on Linux, 49152
        // up on OpenBSD): a client's own end of a connection, even one in
        // TIME_WAIT, would keep smtpd from binding the port.
        let port = 21000 + ((std::process::id() * 7 + n) % 2000) as u16;
        let conf = format!(
            "listen on 127.0.0.1 port {port}\n\
             action \"local\" mbox\n\
             match from any for local action \"local\"\n"
        );
        let d = TestDir { path, port };
        fs::write(d.conf(), conf).expect("write smtpd.conf");
        fs::set_permissions(d.conf(), fs::Permissions::from_mode(0o644)).expect("chmod");
        d
    }

    pub fn conf(&self) -> PathBuf {
        self.path.join("smtpd.conf")
    }

    pub fn spool(&self) -> PathBuf {
        self.path.join("spool")
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join("run/smtpd.sock")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.path.join("run/smtpd.pid")
    }

    /// `-d -f CONF`: the daemon in the foreground, logging to stderr.
    pub fn foreground_args(&self) -> Vec<String> {
        vec!["-d".into(), "-f".into(), self.conf().display().to_string()]
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// One line of /proc/PID/stat.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub utime: u64,
    pub stime: u64,
    pub starttime: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses.
    let rest = s.get(s.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 of proc(5): state, ppid, ... utime (14), stime
    // (15), starttime (22).
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
    })
}

/// A process, told apart from a later one that reuses its pid by its
/// start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: i32) -> Option<Proc> {
        stat(pid).map(|s| Proc {
            pid,
            start: s.starttime,
        })
    }

    fn stat(&self) -> Option<Stat> {
        stat(self.pid).filter(|s| s.starttime == self.start)
    }

    /// Still running: exists and is not a zombie.
    pub fn running(&self) -> bool {
        self.stat().is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
    }

    /// utime + stime, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.stat().map_or(0, |s| s.utime + s.stime)
    }

    /// The title (/proc/PID/cmdline up to its first NUL).
    pub fn title(&self) -> String {
        let raw = fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }

    /// Real, effective, saved and filesystem uids.
    pub fn uids(&self) -> Option<[u32; 4]> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = s.lines().find(|l| l.starts_with("Uid:"))?;
        let v: Vec<u32> = line[4..]
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        v.try_into().ok()
    }

    pub fn root(&self) -> Option<PathBuf> {
        fs::read_link(format!("/proc/{}/root", self.pid)).ok()
    }

    /// Open descriptors: number -> what /proc/PID/fd links to.
    pub fn fds(&self) -> Vec<(i32, String)> {
        let mut v: Vec<(i32, String)> = fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let fd = e.file_name().to_str()?.parse().ok()?;
                        let target = fs::read_link(e.path()).ok()?;
                        Some((fd, target.display().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The open-file flags of a descriptor (the octal `flags:` line of
    /// /proc/PID/fdinfo/FD).
    pub fn fd_flags(&self, fd: i32) -> Option<i32> {
        let s = fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", self.pid)).ok()?;
        let line = s.lines().find(|l| l.starts_with("flags:"))?;
        i32::from_str_radix(line[6..].trim(), 8).ok()
    }
}

/// Every (pid, ppid) on the system.
fn all_ppids() -> Vec<(i32, i32)> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                    Some((pid, stat(pid)?.ppid))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The live (non-zombie) children of `pid`.
pub fn children_of(pid: i32) -> Vec<Proc> {
    all_ppids()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid)
        .filter_map(|(p, _)| Proc::of(p))
        .filter(Proc::running)
        .collect()
}

/// Every descendant of `pid`, zombies included.
pub fn descendants_of(pid: i32) -> Vec<Proc> {
    let all = all_ppids();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &(c, ppid) in &all {
            if ppid == p {
                if let Some(pr) = Proc::of(c) {
                    out.push(pr);
                }
                todo.push(c);
            }
        }
    }
    out
}

/// A daemon's process tree once it is up: the parent and its children by
/// title (without the `smtpd: ` prefix).
#[derive(Clone, Debug)]
pub struct Tree {
    pub parent: Proc,
    pub children: Vec<(String, Proc)>,
}

impl Tree {
    pub fn child(&self, title: &str) -> Proc {
        match self.children.iter().find(|(t, _)| t == title) {
            Some((_, p)) => *p,
            None => panic!("no {title} child in {self:?}"),
        }
    }

    /// The parent, then the children.
    pub fn all(&self) -> Vec<(String, Proc)> {
        let mut v = vec![("parent".to_string(), self.parent)];
        v.extend(self.children.iter().cloned());
        v
    }
}

/// A running smtpd (or one that was started and may have exited) with its
/// output going to files in its TestDir. Dropping it kills whatever is
/// left of its tree and waits for it.
pub struct Daemon {
    child: Child,
    pub pid: i32,
    pub progname: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pidfile: PathBuf,
    /// Every process of the tree seen so far, for the final kill.
    seen: Vec<Proc>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// smtpd (the build's binary) with `args`, as the test's user.
    pub fn start(dir: &TestDir, args: &[String]) -> Daemon {
        Daemon::start_with(dir, &smtpd_bin(), args, |_| {})
    }

    /// `bin` with `args`, the spool and socket of `dir` in its
    /// environment; `adjust` may change the command further (uid, gid).
    pub fn start_with(
        dir: &TestDir,
        bin: &Path,
        args: &[String],
        adjust: impl FnOnce(&mut Command),
    ) -> Daemon {
        let n = seq();
        let stdout = dir.path.join(format!("stdout.{n}"));
        let stderr = dir.path.join(format!("stderr.{n}"));
        let out = fs::File::create(&stdout).expect("create stdout file");
        let err = fs::File::create(&stderr).expect("create stderr file");
        // The hosts file only, unless `adjust` says otherwise: no test
        // waits on this machine's name server.
        let resolv = dir.path.join("resolv.conf");
        if !resolv.exists() {
            fs::write(&resolv, "lookup file\n").expect("write resolv.conf");
        }
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("ASR_CONFIG", &resolv)
            .env("SMTPD_SPOOL", dir.spool())
            .env("SMTPD_SOCKET", dir.socket())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        smtpd::sys::testing::daemon_pre_exec(&mut cmd);
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn smtpd");
        let pid = child.id() as i32;
        let seen = Proc::of(pid).into_iter().collect();
        Daemon {
            child,
            pid,
            progname: bin
                .file_name()
                .map_or("smtpd".into(), |n| n.to_string_lossy().into_owned()),
            stdout,
            stderr,
            pidfile: dir.pidfile(),
            seen,
            status: None,
        }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The exit status, if the parent has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waitpid");
        }
        self.status
    }

    /// Waits at most `timeout` for the parent to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.try_wait().is_some());
        self.status
    }

    pub fn signal(&self, sig: libc::c_int) {
        assert!(self.status.is_none(), "signal to a daemon already reaped");
        smtpd::sys::process::kill(self.pid, sig).expect("kill");
    }

    /// The tree as it is now, if it is complete: the pid file written
    /// (the parent's signal handlers are in place by then), six children
    /// with their titles, each running as its user.
    fn tree_now(&mut self) -> Result<Tree, String> {
        if let Some(st) = self.try_wait() {
            return Err(format!("the parent exited: {st}"));
        }
        let pidfile = fs::read_to_string(&self.pidfile).unwrap_or_default();
        let kids = children_of(self.pid);
        for k in &kids {
            if !self.seen.contains(k) {
                self.seen.push(*k);
            }
        }
        if pidfile.trim() != self.pid.to_string() {
            return Err(format!("pid file holds {pidfile:?}"));
        }
        if kids.len() != 6 {
            return Err(format!("{} children", kids.len()));
        }
        let prefix = format!("{}: ", self.progname);
        let mut children = Vec::new();
        for k in kids {
            let full = k.title();
            let Some(title) = full.strip_prefix(&prefix).filter(|t| TITLES.contains(t)) else {
                return Err(format!("child {} has title {full:?}", k.pid));
            };
            let uid = expected_uid(title);
            if k.uids() != Some([uid; 4]) {
                return Err(format!("{full} has uids {:?}", k.uids()));
            }
            children.push((title.to_string(), k));
        }
        children.sort_by_key(|(t, _)| TITLES.iter().position(|x| x == t));
        children.dedup_by(|a, b| a.0 == b.0);
        if children.len() != 6 {
            return Err(format!("titles: {children:?}"));
        }
        Ok(Tree {
            parent: Proc::of(self.pid).ok_or("the parent is gone")?,
            children,
        })
    }

    /// Waits at most `timeout` for the whole tree; panics with what is
    /// missing and the daemon's stderr otherwise.
    pub fn wait_ready(&mut self, timeout: Duration) -> Tree {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.tree_now() {
                Ok(t) => return t,
                Err(why) => why,
            };
            if self.status.is_some() || Instant::now() >= deadline {
                panic!(
                    "the daemon is not up after {timeout:?}: {why}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut victims: Vec<Proc> = self.seen.clone();
        if self.try_wait().is_none() {
            // Stopped, the parent cannot start anything more; its
            // descendants are stopped as they are found, for the same
            // reason. (Its pid stays ours until it is reaped below.)
            let _ = smtpd::sys::process::kill(self.pid, libc::SIGSTOP);
            loop {
                let new: Vec<Proc> = descendants_of(self.pid)
                    .into_iter()
                    .filter(|p| !victims.contains(p))
                    .collect();
                if new.is_empty() {
                    break;
                }
                for p in &new {
                    let _ = smtpd::sys::process::kill(p.pid, libc::SIGSTOP);
                }
                victims.extend(new);
            }
        }
        for p in &victims {
            if p.pid != self.pid && p.running() {
                let _ = smtpd::sys::process::kill(p.pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Orphans are reaped by init; killed, they no longer run.
        if !poll_until(Duration::from_secs(5), || {
            victims.iter().all(|p| !p.running())
        }) {
            eprintln!(
                "warning: processes of smtpd[{}] survived the guard",
                self.pid
            );
        }
    }
}

/// The `mda delivery` log lines so far.
pub fn deliveries(d: &Daemon) -> Vec<String> {
    d.stderr()
        .lines()
        .filter(|l| l.contains(" mda delivery "))
        .map(str::to_string)
        .collect()
}

/// Waits until `n` delivery lines are logged; returns them.
pub fn wait_deliveries(d: &Daemon, n: usize, timeout: Duration) -> Vec<String> {
    let ok = poll_until(timeout, || deliveries(d).len() >= n);
    let lines = deliveries(d);
    assert!(
        ok,
        "expected {n} deliveries, got {lines:?}\nlog:\n{}",
        d.stderr()
    );
    lines
}

/// The value of `key=` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 2;
    let rest = &line[start..];
    if key == "stat" {
        return rest;
    }
    rest.split(' ').next().unwrap_or("")
}

pub use smtpd::sys::testing::{unix_sockets, TCP_LISTEN};

/// The inode of a `socket:[N]` or `pipe:[N]` link.
pub fn link_inode(target: &str, kind: &str) -> Option<u32> {
    target
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether every ancestor of `path` lets `uid`/`gid` through and `path`
/// itself grants it `bits` (4 read, 2 write, 1 execute), from the mode
/// bits alone (no ACLs).
pub fn accessible_by(path: &Path, uid: u32, gid: u32, bits: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allows = |p: &Path, want: u32| {
        fs::metadata(p).is_ok_and(|m| {
            let mode = m.mode();
            let class = if m.uid() == uid {
                mode >> 6
            } else if m.gid() == gid {
                mode >> 3
            } else {
                mode
            };
            class & want == want
        })
    };
    let mut ok = allows(path, bits);
    let mut p = path.parent();
    while let Some(dir) = p {
        ok &= allows(dir, 1);
        p = dir.parent();
    }
    ok
}

/// The smtpd binary as `uid`/`gid` can run it: the build's own, or a
/// copy in `dir` when the build tree is closed to that user.
pub fn binary_for(dir: &TestDir, uid: u32, gid: u32) -> PathBuf {
    let bin = smtpd_bin();
    if accessible_by(&bin, uid, gid, 5) {
        return bin;
    }
    let copy_dir = dir.path.join("bin");
    fs::create_dir_all(&copy_dir).expect("mkdir bin");
    fs::set_permissions(&copy_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = copy_dir.join("smtpd");
    fs::copy(&bin, &copy).expect("copy smtpd");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// The set of inodes behind a list of descriptors, by kind.
pub fn inodes(fds: &[(i32, String)], kind: &str) -> HashSet<u32> {
    fds.iter()
        .filter_map(|(_, t)| link_inode(t, kind))
        .collect()
}
