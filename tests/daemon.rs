//! The daemon's process tree, end to end: the real smtpd binary started
//! as root with a private spool and control socket (SMTPD_SPOOL,
//! SMTPD_SOCKET), looked at through /proc (Linux), then stopped by signal
//! or by the loss of one of its processes.
//!
//! Every test owns its directory and its daemons; the guards kill
//! whatever is left of a tree and wait for it, pass or fail. Tests that
//! start a daemon skip (with a note) unless run as root.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use smtpd::pathnames::{PATH_CHROOT, SMTPD_QUEUE_USER};

const UP: Duration = Duration::from_secs(2);
const DOWN: Duration = Duration::from_secs(2);

#[test]
fn the_tree_is_six_children_each_under_its_user_and_root() {
    if skip_unless_root("the_tree_is_six_children_each_under_its_user_and_root") {
        return;
    }
    let dir = TestDir::new("tree");
    let t0 = Instant::now();
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    // Titles ("smtpd: crypto", ...) and uids (_smtpq for the queue,
    // _smtpd for the others) are part of being up.
    let tree = d.wait_ready(UP);
    eprintln!("tree up in {:?}", t0.elapsed());

    assert_eq!(tree.parent.uids(), Some([0; 4]), "the parent stays root");
    for (title, p) in &tree.children {
        let want: PathBuf = match title.as_str() {
            "queue" => dir.spool(),
            // lka reads tables and .forward files where they are.
            "lookup" => "/".into(),
            _ => PATH_CHROOT.into(),
        };
        assert_eq!(p.root(), Some(want), "root directory of {title}");
        assert_eq!(p.title(), format!("smtpd: {title}"));
    }

    let m = fs::symlink_metadata(dir.socket()).expect("the control socket exists");
    assert!(m.file_type().is_socket(), "{:?}", m.file_type());
    assert_eq!(m.mode() & 0o7777, 0o666, "control socket mode");
    assert_eq!(m.uid(), 0);

    // queue_init() and queue_fs_init(), as OpenSMTPD's.
    let (q, g) = (user(SMTPD_QUEUE_USER).0, group(SMTPD_QUEUE_USER));
    for (name, mode, uid, gid) in [
        ("", 0o711, 0, 0),
        ("offline", 0o770, 0, g),
        ("purge", 0o700, q, 0),
        ("temporary", 0o700, q, 0),
        ("queue", 0o700, q, 0),
        ("incoming", 0o700, q, 0),
    ] {
        let path = dir.spool().join(name);
        let m = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(m.is_dir(), "{path:?}");
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (mode, uid, gid),
            "mode, owner and group of {path:?}"
        );
    }
    let mut entries: Vec<String> = fs::read_dir(dir.spool())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["incoming", "offline", "purge", "queue", "temporary"]
    );
}

#[test]
fn sigterm_stops_every_process_and_removes_the_socket() {
    if skip_unless_root("sigterm_stops_every_process_and_removes_the_socket") {
        return;
    }
    let dir = TestDir::new("sigterm");
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    let tree = d.wait_ready(UP);
    d.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let st = d.wait_exit(DOWN).unwrap_or_else(|| {
        panic!(
            "still running {DOWN:?} after SIGTERM\nstderr:\n{}",
            d.stderr()
        )
    });
    eprintln!("tree down in {:?}", t0.elapsed());
    let err = d.stderr();
    assert_eq!(st.code(), Some(0), "exit status {st}\nstderr:\n{err}");
    for (title, p) in tree.all() {
        assert!(!p.running(), "{title} [{}] is still running", p.pid);
    }
    assert_eq!(
        children_of(d.pid),
        vec![],
        "processes whose parent was ours"
    );
    assert!(!dir.socket().exists(), "the control socket is still there");
    assert!(err.lines().any(|l| l == "Exiting"), "stderr:\n{err}");
    assert!(!err.contains("lost child"), "stderr:\n{err}");
}

/// SIGKILL of one child: the parent says which it lost, and the whole
/// tree goes, with a failure status.
fn losing_a_child_ends_the_tree(title: &str) {
    let dir = TestDir::new(&format!("lost-{title}"));
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    let tree = d.wait_ready(UP);
    let victim = tree.child(title);
    smtpd::sys::process::kill(victim.pid, libc::SIGKILL).expect("kill");
    let st = d.wait_exit(DOWN).unwrap_or_else(|| {
        panic!(
            "still running {DOWN:?} after the {title} process was killed\nstderr:\n{}",
            d.stderr()
        )
    });
    let err = d.stderr();
    let want = format!("warn: lost child: {title} terminated; signal 9");
    assert!(
        err.lines().any(|l| l == want),
        "no {want:?} line\nstderr:\n{err}"
    );
    assert!(
        st.code().is_some_and(|c| c != 0),
        "exit status {st}\nstderr:\n{err}"
    );
    for (t, p) in tree.all() {
        assert!(!p.running(), "{t} [{}] is still running", p.pid);
    }
    assert_eq!(
        children_of(d.pid),
        vec![],
        "processes whose parent was ours"
    );
    assert!(err.lines().any(|l| l == "Exiting"), "stderr:\n{err}");
}

#[test]
fn losing_crypto_ends_the_tree() {
    if !skip_unless_root("losing_crypto_ends_the_tree") {
        losing_a_child_ends_the_tree("crypto");
    }
}

#[test]
fn losing_control_ends_the_tree() {
    if !skip_unless_root("losing_control_ends_the_tree") {
        losing_a_child_ends_the_tree("control");
    }
}

#[test]
fn losing_lookup_ends_the_tree() {
    if !skip_unless_root("losing_lookup_ends_the_tree") {
        losing_a_child_ends_the_tree("lookup");
    }
}

#[test]
fn losing_dispatcher_ends_the_tree() {
    if !skip_unless_root("losing_dispatcher_ends_the_tree") {
        losing_a_child_ends_the_tree("dispatcher");
    }
}

#[test]
fn losing_queue_ends_the_tree() {
    if !skip_unless_root("losing_queue_ends_the_tree") {
        losing_a_child_ends_the_tree("queue");
    }
}

#[test]
fn losing_scheduler_ends_the_tree() {
    if !skip_unless_root("losing_scheduler_ends_the_tree") {
        losing_a_child_ends_the_tree("scheduler");
    }
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_and_leaves_the_first_alone() {
    if skip_unless_root("a_second_daemon_on_the_same_socket_refuses_and_leaves_the_first_alone") {
        return;
    }
    let dir = TestDir::new("second");
    let mut first = Daemon::start(&dir, &dir.foreground_args());
    let tree = first.wait_ready(UP);
    let mut second = Daemon::start(&dir, &dir.foreground_args());
    let st = second
        .wait_exit(DOWN)
        .unwrap_or_else(|| panic!("the second daemon runs\nstderr:\n{}", second.stderr()));
    let err = second.stderr();
    assert_eq!(st.code(), Some(1), "exit status {st}\nstderr:\n{err}");
    assert!(
        err.contains("control socket already listening"),
        "stderr:\n{err}"
    );

    assert!(first.try_wait().is_none(), "the first daemon exited");
    for (title, p) in tree.all() {
        assert!(p.running(), "the first daemon's {title} is gone");
    }
    let m = fs::symlink_metadata(dir.socket()).expect("the first's socket is gone");
    assert!(m.file_type().is_socket());
    UnixStream::connect(dir.socket()).expect("the first's control process no longer listens");
    assert_eq!(
        fs::read_to_string(dir.pidfile()).expect("the pid file is gone"),
        format!("{}\n", first.pid)
    );
}

#[test]
fn without_root_only_the_configuration_check_runs() {
    let dir = TestDir::new("nonroot");
    // As root, become nobody; otherwise we are already unprivileged.
    let ids = is_root().then(|| user("nobody"));
    let bin = match ids {
        Some((uid, gid)) => binary_for(&dir, uid, gid),
        None => smtpd_bin(),
    };
    if let Some((uid, gid)) = ids {
        assert!(
            accessible_by(&dir.conf(), uid, gid, 4),
            "nobody cannot read {:?}",
            dir.conf()
        );
    }
    let as_user = |cmd: &mut Command| {
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
    };

    let mut d = Daemon::start_with(&dir, &bin, &dir.foreground_args(), as_user);
    let st = d
        .wait_exit(DOWN)
        .unwrap_or_else(|| panic!("smtpd -d runs without root\nstderr:\n{}", d.stderr()));
    let err = d.stderr();
    assert_eq!(st.code(), Some(1), "exit status {st}\nstderr:\n{err}");
    assert!(err.contains("need root privileges"), "stderr:\n{err}");
    assert!(!dir.spool().exists(), "a spool was created");
    assert!(!dir.socket().exists(), "a control socket was created");

    let conf = dir.conf().display().to_string();
    let mut n = Daemon::start_with(&dir, &bin, &["-n".into(), "-f".into(), conf], as_user);
    let st = n
        .wait_exit(DOWN)
        .unwrap_or_else(|| panic!("smtpd -n runs\nstderr:\n{}", n.stderr()));
    let err = n.stderr();
    assert_eq!(st.code(), Some(0), "exit status {st}\nstderr:\n{err}");
    assert!(
        err.lines().any(|l| l == "configuration OK"),
        "stderr:\n{err}"
    );
}

#[test]
fn help_unknown_options_and_operands_print_the_usage_and_exit_1() {
    let dir = TestDir::new("usage");
    let conf = dir.conf().display().to_string();
    // -d -f CONF first: should a case be accepted by mistake, the daemon
    // stays in the foreground, on the test's configuration, under the
    // guard.
    for extra in ["-h", "-q", "extra"] {
        let args: Vec<String> = vec!["-d".into(), "-f".into(), conf.clone(), extra.into()];
        let mut d = Daemon::start(&dir, &args);
        let st = d
            .wait_exit(DOWN)
            .unwrap_or_else(|| panic!("{args:?}: still running\nstderr:\n{}", d.stderr()));
        let err = d.stderr();
        assert_eq!(
            st.code(),
            Some(1),
            "{args:?}: exit status {st}\nstderr:\n{err}"
        );
        assert!(
            err.lines().any(|l| l.starts_with("usage: smtpd ")),
            "{args:?}: no usage line\nstderr:\n{err}"
        );
        assert_eq!(d.stdout(), "", "{args:?}: stdout");
    }
}

#[test]
fn sighup_is_logged_and_ignored() {
    if skip_unless_root("sighup_is_logged_and_ignored") {
        return;
    }
    let dir = TestDir::new("sighup");
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    let tree = d.wait_ready(UP);
    d.signal(libc::SIGHUP);
    assert!(
        poll_until(UP, || d.stderr().contains("received SIGHUP")),
        "SIGHUP not logged\nstderr:\n{}",
        d.stderr()
    );
    // Nothing is expected to happen: give it the time to.
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.try_wait().is_none(), "stderr:\n{}", d.stderr());
    for (title, p) in tree.all() {
        assert!(p.running(), "{title} is gone after SIGHUP");
    }
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(DOWN).expect("SIGTERM after SIGHUP");
    assert_eq!(st.code(), Some(0), "stderr:\n{}", d.stderr());
    for (title, p) in tree.all() {
        assert!(!p.running(), "{title} is still running");
    }
}

/// Each process's descriptors, each named by what it leads to: for a
/// socket, the title of the process at the other end (or `listener` for
/// the control socket); a pipe whose two ends the process holds is its
/// signal self-pipe. Descriptors 0-2 are checked apart.
fn descriptor_picture(tree: &Tree, dir: &TestDir) -> BTreeMap<String, Vec<String>> {
    let socks = unix_sockets().expect("sock_diag");
    let tcp_listen = tcp_listening_inodes();
    let fds: Vec<(String, Vec<(i32, String)>)> =
        tree.all().into_iter().map(|(t, p)| (t, p.fds())).collect();
    let mut owner: HashMap<u32, Vec<&str>> = HashMap::new();
    for (title, list) in &fds {
        for ino in inodes(list, "socket") {
            owner.entry(ino).or_default().push(title);
        }
    }
    let mut picture = BTreeMap::new();
    for (title, list) in &fds {
        let mut labels = Vec::new();
        for (fd, target) in list.iter().filter(|(fd, _)| *fd > 2) {
            let label = if let Some(ino) = link_inode(target, "socket") {
                let s = socks.get(&ino).cloned().unwrap_or_default();
                if tcp_listen.contains(&ino) {
                    "tcp listener".into()
                } else if owner[&ino].len() > 1 {
                    format!("socket shared with {:?}", owner[&ino])
                } else if s.state == TCP_LISTEN {
                    match s.name {
                        Some(n) if n == dir.socket().display().to_string() => "listener".into(),
                        n => format!("listener {n:?}"),
                    }
                } else {
                    match owner.get(&s.peer) {
                        Some(o) if o.len() == 1 => o[0].to_string(),
                        _ => format!("socket to outside ({target}, peer {})", s.peer),
                    }
                }
            } else if let Some(ino) = link_inode(target, "pipe") {
                let ends = list
                    .iter()
                    .filter(|(_, t)| link_inode(t, "pipe") == Some(ino))
                    .count();
                if ends == 2 {
                    "self-pipe".into()
                } else {
                    format!("pipe ({target})")
                }
            } else if target
                .strip_prefix("/proc/")
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                // Kept open for counting descriptors in the chroot.
                "proc".into()
            } else {
                format!("fd {fd}: {target}")
            };
            labels.push(label);
        }
        labels.sort();
        picture.insert(title.clone(), labels);
    }
    picture
}

/// The inodes of the TCP sockets in LISTEN state (state 0A in
/// /proc/net/tcp and tcp6), which sock_diag's unix query does not see.
fn tcp_listening_inodes() -> std::collections::HashSet<u32> {
    let mut set = std::collections::HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" {
                if let Ok(ino) = cols[9].parse() {
                    set.insert(ino);
                }
            }
        }
    }
    set
}

#[test]
fn every_process_holds_only_its_channels() {
    if skip_unless_root("every_process_holds_only_its_channels") {
        return;
    }
    // Besides 0-2, from smtpd.rs (start_child, setup_peers, smtpd()),
    // each child's main and io/event.rs (a signal handler opens the
    // self-pipe, both ends):
    //   parent     11: 6 channels (one per child) + self-pipe (SIGINT,
    //                  SIGTERM, SIGCHLD, SIGHUP)
    //   control    10: parent + 5 peers (crypto, lookup, dispatcher,
    //                  queue, scheduler) + the listening control socket
    //   lookup      9: parent + 3 peers (control, dispatcher, queue) +
    //                  self-pipe (SIGCHLD, for its table processes)
    //   dispatcher  8: parent + 4 peers (control, crypto, lookup, queue)
    //   queue       8: parent + 4 peers (control, dispatcher, lookup,
    //                  scheduler)
    //   crypto      6: parent + 2 peers (control, dispatcher)
    //   scheduler   6: parent + 2 peers (control, queue)
    // The children ignore their signals (child_privdrop) and have no
    // self-pipe.
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "parent",
            &[
                "control",
                "crypto",
                "dispatcher",
                "lookup",
                "queue",
                "scheduler",
                "self-pipe",
                "self-pipe",
            ][..],
        ),
        (
            "control",
            &[
                "crypto",
                "dispatcher",
                "listener",
                "lookup",
                "parent",
                // /proc/self, to count descriptors in the chroot.
                "proc",
                "queue",
                "scheduler",
            ][..],
        ),
        (
            "lookup",
            &[
                "control",
                "dispatcher",
                "parent",
                "queue",
                "self-pipe",
                "self-pipe",
            ][..],
        ),
        (
            "dispatcher",
            &[
                "control",
                "crypto",
                "lookup",
                "parent",
                "proc",
                "queue",
                "tcp listener",
            ][..],
        ),
        (
            "queue",
            &[
                "control",
                "dispatcher",
                "lookup",
                "parent",
                "scheduler",
                // The commit thread wakes the loop through it.
                "self-pipe",
                "self-pipe",
            ][..],
        ),
        ("crypto", &["control", "dispatcher", "parent"][..]),
        ("scheduler", &["control", "parent", "queue"][..]),
    ]
    .into_iter()
    .map(|(t, l)| (t.to_string(), l.iter().map(|s| s.to_string()).collect()))
    .collect();

    let dir = TestDir::new("fds");
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    let tree = d.wait_ready(UP);
    // A process is up before its loop has registered everything (lka's
    // self-pipe comes last): wait for the picture to settle.
    let mut picture = BTreeMap::new();
    let settled = poll_until(UP, || {
        picture = descriptor_picture(&tree, &dir);
        picture == expected
    });
    if !settled {
        let raw: Vec<String> = tree
            .all()
            .into_iter()
            .map(|(t, p)| format!("{t} [{}]: {:?}", p.pid, p.fds()))
            .collect();
        panic!(
            "descriptors:\n{picture:#?}\nexpected:\n{expected:#?}\nraw:\n{}",
            raw.join("\n")
        );
    }
    for (title, labels) in &picture {
        eprintln!(
            "{title}: {} descriptors: 0-2 + {labels:?}",
            labels.len() + 3
        );
    }

    let stdout = d.stdout.display().to_string();
    let stderr = d.stderr.display().to_string();
    for (title, p) in tree.all() {
        let fds = p.fds();
        let std: Vec<(i32, &str)> = fds
            .iter()
            .filter(|(fd, _)| *fd <= 2)
            .map(|(fd, t)| (*fd, t.as_str()))
            .collect();
        assert_eq!(
            std,
            [(0, "/dev/null"), (1, stdout.as_str()), (2, stderr.as_str())],
            "{title}'s standard descriptors"
        );
        // Nothing leaks into what a process executes, and no descriptor
        // can block a loop.
        for (fd, target) in fds.iter().filter(|(fd, _)| *fd > 2) {
            let flags = p.fd_flags(*fd).expect("fdinfo");
            assert!(
                flags & libc::O_CLOEXEC != 0,
                "{title}: fd {fd} ({target}) is not close-on-exec"
            );
            assert!(
                flags & libc::O_NONBLOCK != 0,
                "{title}: fd {fd} ({target}) is blocking"
            );
        }
    }
}

#[test]
fn an_idle_tree_uses_no_cpu() {
    if skip_unless_root("an_idle_tree_uses_no_cpu") {
        return;
    }
    // At most this many clock ticks (1/100 s each, usually) in all over
    // two idle seconds: an offline scan and a wake-up or two.
    const MAX_TICKS: u64 = 5;
    let dir = TestDir::new("idle");
    let mut d = Daemon::start(&dir, &dir.foreground_args());
    let tree = d.wait_ready(UP);
    let procs = tree.all();
    let before: Vec<u64> = procs.iter().map(|(_, p)| p.cpu_ticks()).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = procs.iter().map(|(_, p)| p.cpu_ticks()).collect();
    for (title, p) in &procs {
        assert!(p.running(), "{title} exited\nstderr:\n{}", d.stderr());
    }
    let used: Vec<(String, u64)> = procs
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((t, _), (b, a))| (t.clone(), a - b))
        .collect();
    let total: u64 = used.iter().map(|(_, n)| n).sum();
    eprintln!("ticks over 2 s: {used:?}");
    assert!(
        total <= MAX_TICKS,
        "{total} ticks in 2 idle seconds: {used:?}"
    );
}
