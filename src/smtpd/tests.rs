//! smtpd.c driven directly: the command line, and the parent's work on
//! real files, users and processes.
use super::*;

fn args(s: &str) -> Vec<String> {
    std::iter::once("smtpd")
        .chain(s.split_whitespace())
        .map(String::from)
        .collect()
}

#[test]
fn options_as_smtpd_c_reads_them() {
    let o = parse_options(
        &args("-dv -n -f /tmp/x.conf -T imsg -T profile-imsg -P mda -B queue=ram"),
        "smtpd",
    )
    .unwrap();
    assert!(o.foreground && o.foreground_log);
    assert_eq!(o.conffile, "/tmp/x.conf");
    assert_eq!(o.tracing, TRACE_DEBUG | TRACE_IMSG);
    assert_eq!(o.profiling, PROFILE_IMSG);
    assert_eq!(o.flags, SMTPD_MDA_PAUSED);
    assert_eq!(o.backend_queue, "ram");
    assert_eq!(o.opts, SMTPD_OPT_NOACTION | SMTPD_OPT_VERBOSE);
}

#[test]
fn operands_and_unknown_options_are_usage_errors() {
    assert!(parse_options(&args("extra"), "smtpd").is_err());
    assert!(parse_options(&args("-q"), "smtpd").is_err());
    assert!(parse_options(&args("-f"), "smtpd").is_err());
}

// The parent's work on real files, users and processes: these need root
// (to chown, and to become other users), and skip with a note otherwise.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

fn skip_unless_root(test: &str) -> bool {
    if geteuid() == 0 {
        return false;
    }
    eprintln!("note: {test}: skipped, it must run as root");
    true
}

/// A directory of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("smtpd-unit-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        chmod(&p, 0o755);
        Scratch(p.canonicalize().unwrap())
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn user(name: &str) -> sysproc::Passwd {
    match sysproc::getpwnam(name) {
        Ok(Some(pw)) => pw,
        other => panic!("no user {name}: {other:?}"),
    }
}

#[allow(clippy::disallowed_methods)] // no mkfifo wrapper in sys; a test tool
fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo");
    assert!(st.success(), "mkfifo {p:?}: {st}");
}

fn forking_test_runs_here(test: &str) -> bool {
    crate::sys::testing::run_alone(module_path!(), test)
}

/// Waits for a forked child, 10 s at most (polling /proc for the zombie,
/// so that a child stuck on a lock inherited through fork fails the test
/// instead of hanging it); then kills it and fails.
#[allow(clippy::disallowed_methods)] // polling with a deadline
fn wait_child(pid: libc::pid_t, what: &str) -> WaitStatus {
    let ended = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ended() {
        if Instant::now() >= deadline {
            let _ = sysproc::kill(pid, libc::SIGKILL);
            let _ = sysproc::waitpid(pid);
            panic!("{what}: child {pid} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sysproc::waitpid(pid).unwrap()
}

/// A home directory and its .forward, both the user's (nobody), 0755
/// and 0644: what parent_forward_open() accepts.
struct Home {
    _scratch: Scratch,
    dir: PathBuf,
    pw: sysproc::Passwd,
}

impl Home {
    fn new(tag: &str) -> Home {
        let scratch = Scratch::new(tag);
        let pw = user("nobody");
        let dir = scratch.join("home");
        std::fs::create_dir(&dir).unwrap();
        chown(&dir, pw.uid, pw.gid);
        chmod(&dir, 0o755);
        let home = Home {
            _scratch: scratch,
            dir,
            pw,
        };
        std::fs::write(home.forward(), "nobody@example.org\n").unwrap();
        chown(&home.forward(), home.pw.uid, home.pw.gid);
        chmod(&home.forward(), 0o644);
        home
    }

    fn forward(&self) -> PathBuf {
        self.dir.join(".forward")
    }

    fn open(&self) -> std::io::Result<File> {
        parent_forward_open(
            &self.pw.name,
            self.dir.to_str().unwrap(),
            self.pw.uid,
            self.pw.gid,
        )
    }
}

/// Refused: an error that is neither "no .forward" (ENOENT, which means
/// deliver as usual) nor "try again later" (EAGAIN).
#[track_caller]
fn assert_refused(r: std::io::Result<File>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: opened"),
        Err(e) => assert!(
            !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EAGAIN)),
            "{what}: {e}"
        ),
    }
}

#[test]
fn forward_in_a_well_kept_home_opens() {
    if skip_unless_root("forward_in_a_well_kept_home_opens") {
        return;
    }
    let home = Home::new("fwd-ok");
    let mut s = String::new();
    std::io::Read::read_to_string(&mut home.open().unwrap(), &mut s).unwrap();
    assert_eq!(s, "nobody@example.org\n");
    // A home root owns is as good as the user's own.
    chown(&home.dir, 0, 0);
    home.open().unwrap();
}

#[test]
fn missing_forward_is_enoent() {
    if skip_unless_root("missing_forward_is_enoent") {
        return;
    }
    let home = Home::new("fwd-missing");
    std::fs::remove_file(home.forward()).unwrap();
    let e = home.open().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
}

#[test]
fn sticky_home_is_refused() {
    if skip_unless_root("sticky_home_is_refused") {
        return;
    }
    let home = Home::new("fwd-sticky");
    for mode in [0o1777, 0o1755] {
        chmod(&home.dir, mode);
        let e = home.open().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "mode {mode:o}: {e}");
    }
}

#[test]
fn forward_that_is_a_symlink_is_refused_with_eloop() {
    if skip_unless_root("forward_that_is_a_symlink_is_refused_with_eloop") {
        return;
    }
    let home = Home::new("fwd-symlink");
    // The target itself would be accepted.
    let target = home.dir.join("forward.real");
    std::fs::rename(home.forward(), &target).unwrap();
    symlink(&target, home.forward()).unwrap();
    let e = home.open().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
}

#[test]
fn forward_others_can_write_is_refused() {
    if skip_unless_root("forward_others_can_write_is_refused") {
        return;
    }
    let home = Home::new("fwd-writable");
    for mode in [0o664, 0o646, 0o666] {
        chmod(&home.forward(), mode);
        assert_refused(home.open(), &format!(".forward mode {mode:o}"));
    }
    // Readable by others is fine (mayread).
    chmod(&home.forward(), 0o644);
    home.open().unwrap();
}

#[test]
fn forward_owned_by_someone_else_is_refused() {
    if skip_unless_root("forward_owned_by_someone_else_is_refused") {
        return;
    }
    let home = Home::new("fwd-owner");
    for uid in [0, home.pw.uid - 1] {
        chown(&home.forward(), uid, home.pw.gid);
        assert_refused(home.open(), &format!(".forward owned by uid {uid}"));
    }
}

#[test]
fn home_others_can_write_or_own_is_refused() {
    if skip_unless_root("home_others_can_write_or_own_is_refused") {
        return;
    }
    let home = Home::new("fwd-home");
    for mode in [0o777, 0o775, 0o757] {
        chmod(&home.dir, mode);
        assert_refused(home.open(), &format!("home mode {mode:o}"));
    }
    chmod(&home.dir, 0o755);
    chown(&home.dir, home.pw.uid - 1, home.pw.gid);
    assert_refused(home.open(), "home owned by another user");
}

#[test]
#[allow(clippy::disallowed_methods)] // a thread, to time the open out
fn forward_that_is_a_fifo_is_refused_without_blocking() {
    if skip_unless_root("forward_that_is_a_fifo_is_refused_without_blocking") {
        return;
    }
    let home = Home::new("fwd-fifo");
    std::fs::remove_file(home.forward()).unwrap();
    mkfifo(&home.forward());
    chown(&home.forward(), home.pw.uid, home.pw.gid);
    chmod(&home.forward(), 0o644);
    let (dir, pw) = (home.dir.to_str().unwrap().to_string(), home.pw.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parent_forward_open(&pw.name, &dir, pw.uid, pw.gid));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(r) => assert_refused(r, ".forward is a FIFO"),
        Err(_) => {
            // Let the stuck open return before failing.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(home.forward());
            panic!("parent_forward_open blocked on a FIFO");
        }
    }
}

/// Runs offline_enqueue_child() in a forked child and tells whether it
/// refused the file while still root (exit 10), or passed its checks and
/// became the file's owner before failing to run smtpctl (exit 20).
fn offline_enqueue_outcome(path: &Path, uid: u32, gid: u32) -> WaitStatus {
    let path = path.to_str().unwrap().to_string();
    match sysproc::fork().unwrap() {
        Fork::Child => {
            // The test harness has other threads: do the call and leave.
            // The alarm ends a child stuck on a lock fork copied.
            sysproc::alarm(10);
            let OfflineRefused = offline_enqueue_child(&path, uid, gid);
            sysproc::exit_now(if geteuid() == 0 { 10 } else { 20 })
        }
        Fork::Parent(pid) => wait_child(pid, &path),
    }
}

/// An offline message as sendmail leaves it: owned by its sender (here
/// nobody), one link, arguments on the first line.
fn offline_file(scratch: &Scratch, name: &str, pw: &sysproc::Passwd) -> PathBuf {
    let p = scratch.join(name);
    std::fs::write(&p, "-t\nSubject: offline\n\nbody\n").unwrap();
    chown(&p, pw.uid, pw.gid);
    chmod(&p, 0o600);
    p
}

#[test]
fn offline_enqueue_refuses_links_special_files_and_foreign_owners() {
    if skip_unless_root("offline_enqueue_refuses_links_special_files_and_foreign_owners") {
        return;
    }
    if !forking_test_runs_here("offline_enqueue_refuses_links_special_files_and_foreign_owners") {
        return;
    }
    let scratch = Scratch::new("offline");
    let pw = user("nobody");
    let refused = WaitStatus::Exited(10);

    // The one that passes every check, to show the refusals below are
    // refusals; only meaningful while smtpctl is not installed (it would
    // enqueue the message).
    let good = offline_file(&scratch, "good", &pw);
    if Path::new(PATH_SMTPCTL).exists() {
        eprintln!("note: {PATH_SMTPCTL} exists: the accepted case is not run");
    } else {
        assert_eq!(
            offline_enqueue_outcome(&good, pw.uid, pw.gid),
            WaitStatus::Exited(20),
            "a well-formed offline file"
        );
    }

    let link = scratch.join("symlink");
    symlink(&good, &link).unwrap();
    assert_eq!(
        offline_enqueue_outcome(&link, pw.uid, pw.gid),
        refused,
        "symbolic link"
    );

    let linked = offline_file(&scratch, "linked", &pw);
    std::fs::hard_link(&linked, scratch.join("hardlink")).unwrap();
    assert_eq!(
        offline_enqueue_outcome(&linked, pw.uid, pw.gid),
        refused,
        "hard link (nlink 2)"
    );

    let fifo = scratch.join("fifo");
    mkfifo(&fifo);
    chown(&fifo, pw.uid, pw.gid);
    assert_eq!(
        offline_enqueue_outcome(&fifo, pw.uid, pw.gid),
        refused,
        "FIFO"
    );

    let dir = scratch.join("directory");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, pw.uid, pw.gid);
    assert_eq!(
        offline_enqueue_outcome(&dir, pw.uid, pw.gid),
        refused,
        "directory"
    );

    // The owner and group the scan saw are not the file's any more.
    assert_eq!(
        offline_enqueue_outcome(&good, pw.uid - 1, pw.gid),
        refused,
        "another owner"
    );
    assert_eq!(
        offline_enqueue_outcome(&good, pw.uid, pw.gid - 1),
        refused,
        "another group"
    );
}

/// A purge directory as the queue leaves it: _smtpq's, 0700, holding
/// what mvpurge() moved there.
fn purge_dir(scratch: &Scratch) -> (PathBuf, sysproc::Passwd) {
    let q = user(SMTPD_QUEUE_USER);
    let dir = scratch.join("purge");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, q.uid, 0);
    chmod(&dir, 0o700);
    (dir, q)
}

/// A directory tree of `depth` levels, each with two files, all the
/// queue user's.
fn purge_fill(dir: &Path, q: &sysproc::Passwd, depth: u32) {
    for f in ["envelope", "message"] {
        let p = dir.join(f);
        std::fs::write(&p, "x").unwrap();
        chown(&p, q.uid, q.gid);
    }
    if depth > 0 {
        let sub = dir.join(format!("d{depth}"));
        std::fs::create_dir(&sub).unwrap();
        chown(&sub, q.uid, q.gid);
        chmod(&sub, 0o700);
        purge_fill(&sub, q, depth - 1);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn purge_empties_the_directory_and_keeps_it() {
    if skip_unless_root("purge_empties_the_directory_and_keeps_it") {
        return;
    }
    if !forking_test_runs_here("purge_empties_the_directory_and_keeps_it") {
        return;
    }
    let scratch = Scratch::new("purge");
    let (dir, q) = purge_dir(&scratch);
    for i in 0..5 {
        let d = dir.join(format!("{i:08x}"));
        std::fs::create_dir(&d).unwrap();
        chown(&d, q.uid, q.gid);
        purge_fill(&d, &q, 3);
    }
    // Whoever owns a file, its directory decides whether it goes.
    let rootfile = dir.join("root-file");
    std::fs::write(&rootfile, "x").unwrap();
    chmod(&rootfile, 0o600);
    // Links to outside the purge directory go, never what they point to.
    let outside = scratch.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), "x").unwrap();
    symlink(&outside, dir.join("link-to-dir")).unwrap();
    symlink(outside.join("keep"), dir.join("link-to-file")).unwrap();

    let pid = purge_spawn(dir.to_str().unwrap()).expect("fork");
    assert_eq!(wait_child(pid, "purge"), WaitStatus::Exited(0));
    assert_eq!(entries(&dir), Vec::<String>::new(), "left in {dir:?}");
    let m = std::fs::metadata(&dir).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (q.uid, 0o700));
    assert_eq!(entries(&outside), ["keep"]);
}

#[test]
fn purge_removes_all_it_can_when_one_entry_resists() {
    if skip_unless_root("purge_removes_all_it_can_when_one_entry_resists") {
        return;
    }
    if !forking_test_runs_here("purge_removes_all_it_can_when_one_entry_resists") {
        return;
    }
    // A directory root made in the purge directory: _smtpq cannot empty
    // it. OpenSMTPD's rmtree() logs that and goes on with the rest, so one
    // stray entry does not keep every later message on disk.
    let scratch = Scratch::new("purge-stuck");
    let (dir, q) = purge_dir(&scratch);
    for i in 0..10 {
        let d = dir.join(format!("a{i}"));
        std::fs::create_dir(&d).unwrap();
        chown(&d, q.uid, q.gid);
        purge_fill(&d, &q, 1);
    }
    let stuck = dir.join("stuck");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("file"), "x").unwrap();
    for i in 0..10 {
        let d = dir.join(format!("b{i}"));
        std::fs::create_dir(&d).unwrap();
        chown(&d, q.uid, q.gid);
        purge_fill(&d, &q, 1);
    }

    let pid = purge_spawn(dir.to_str().unwrap()).expect("fork");
    assert_eq!(wait_child(pid, "purge"), WaitStatus::Exited(0));
    assert_eq!(entries(&dir), ["stuck"], "left in {dir:?}");
    assert_eq!(entries(&stuck), ["file"]);
}

/// A parent whose dispatcher channel is a socket pair: the test holds the
/// dispatcher's end.
fn parent_with_dispatcher() -> (Parent, Imsgbuf) {
    let (a, b) = crate::sys::socket::socketpair().unwrap();
    let mut peers = Peers::default();
    peers.set(
        ProcType::PROC_DISPATCHER,
        mproc_init(a, ProcType::PROC_DISPATCHER, "dispatcher", 0),
    );
    let mut far = imsgbuf_init(b).unwrap();
    imsgbuf_allow_fdpass(&mut far);
    let s = Parent {
        peers,
        children: BTreeMap::new(),
        offline_q: VecDeque::new(),
        offline_running: 0,
        offline_scan: None,
        offline_ev: None,
        config_ev: None,
        purge_pid: None,
        processor_errfd: HashMap::new(),
    };
    (s, far)
}

/// The next message on the dispatcher's end, once the parent has written.
fn dispatcher_reads(s: &mut Parent, far: &mut Imsgbuf) -> Imsg {
    imsgbuf_flush(&mut s.peers.p(ProcType::PROC_DISPATCHER).imsgbuf).unwrap();
    imsg_wait(far, Duration::from_secs(10)).unwrap()
}

/// IMSG_MDA_DONE's fields: id, status, sysexit, cause, and the capture
/// file's content if one came with it.
fn mda_done(mut imsg: Imsg) -> (u64, i32, i32, String, Option<String>) {
    assert_eq!(imsg.hdr.type_, ImsgType::IMSG_MDA_DONE as u32);
    let out = imsg_get_fd(&mut imsg).map(|fd| {
        let mut f = File::from(fd);
        let mut s = String::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        s
    });
    let mut m = m_msg(&imsg);
    let r = (
        m_get_id(&mut m),
        m_get_int(&mut m),
        m_get_int(&mut m),
        m_get_string(&mut m).unwrap_or_default().to_string(),
        out,
    );
    m_end(&m);
    r
}

fn deliver_to(dispatcher: &str, pw: &sysproc::Passwd) -> crate::dispatcher::mda::Deliver {
    use crate::util::mailaddr::Mailaddr;
    crate::dispatcher::mda::Deliver {
        dispatcher: dispatcher.into(),
        sender: Mailaddr::new("alice", "example.org"),
        rcpt: Mailaddr::new(&pw.name, "example.org"),
        dest: Mailaddr::new(&pw.name, "example.org"),
        mda_subaddress: String::new(),
        mda_exec: String::new(),
        userinfo: crate::table::table::Userinfo {
            username: pw.name.clone(),
            directory: pw.dir.clone(),
            uid: pw.uid,
            gid: pw.gid,
        },
    }
}

/// One delivery through forkmda: the message written to the pipe it
/// hands the dispatcher, the child reaped as SIGCHLD would, and the
/// report it sends.
fn deliver_one(
    s: &mut Parent,
    far: &mut Imsgbuf,
    base: &mut EventBase<Parent>,
    id: u64,
    d: &crate::dispatcher::mda::Deliver,
) -> (u64, i32, i32, String, Option<String>) {
    forkmda(s, ProcType::PROC_DISPATCHER, id, d);
    let mut fork = dispatcher_reads(s, far);
    assert_eq!(fork.hdr.type_, ImsgType::IMSG_MDA_FORK as u32);
    let pipe = imsg_get_fd(&mut fork).expect("the message pipe");
    std::io::Write::write_all(&mut File::from(pipe), b"Subject: hi\n\nhello\n").unwrap();
    // The dispatcher's IMSG_MDA_DONE: the parent lets go of its copy.
    mda_input_done(s, id);
    let pid = *s.children.keys().next().expect("the agent is a child");
    let status = wait_child(pid, "mda");
    parent_child_ended(s, base, pid, status);
    mda_done(dispatcher_reads(s, far))
}

#[test]
fn forkmda_runs_the_agent_as_the_user_and_maps_its_end() {
    if skip_unless_root("forkmda_runs_the_agent_as_the_user_and_maps_its_end")
        || !forking_test_runs_here("forkmda_runs_the_agent_as_the_user_and_maps_its_end")
    {
        return;
    }
    let scratch = Scratch::new("forkmda");
    chmod(&scratch.0, 0o777);
    let out = scratch.join("out");
    // mda actions run through mail.mda, which comes with local delivery:
    // a stand-in that runs its argument as the real one does. (This test
    // runs alone in its process, so the environment is its own.)
    let libexec = scratch.join("libexec");
    std::fs::create_dir(&libexec).unwrap();
    std::fs::write(
        libexec.join("mail.mda"),
        "#!/bin/sh\nexec /bin/sh -c \"$1\"\n",
    )
    .unwrap();
    chmod(&libexec.join("mail.mda"), 0o755);
    std::env::set_var("SMTPD_LIBEXEC", &libexec);
    let src = format!(
        "action \"cmd\" mda \"cat > {out}\"\n\
         action \"tempfail\" mda \"echo try later >&2; exit 75\"\n\
         action \"permfail\" mda \"echo no such box >&2; exit 1\"\n\
         action \"mbox\" mbox\n\
         action \"asuser\" mda \"true\" user \"nosuchuser-smtpd-test\"\n\
         match from any for any action \"cmd\"\n",
        out = out.display()
    );
    let mut conf = crate::config::config::config_default_with("test.example.org", &[]);
    let (r, diags) = crate::config::parse::parse_config_buffer(
        &mut conf,
        "t.conf",
        src.as_bytes(),
        Default::default(),
    );
    assert!(r.is_ok(), "{diags:?}");
    set_env(conf);
    let (mut s, mut far) = parent_with_dispatcher();
    let mut base = EventBase::new();
    let nobody = user("nobody");
    let root = user("root");

    // Delivered as the user, the message on its standard input.
    let (id, status, sysexit, cause, _) =
        deliver_one(&mut s, &mut far, &mut base, 7, &deliver_to("cmd", &nobody));
    assert_eq!(
        (id, status, sysexit, cause.as_str()),
        (7, MDA_OK, 0, "exited okay")
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "Subject: hi\n\nhello\n"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), nobody.uid);

    // EX_TEMPFAIL is worth a retry, other failures are not; what the
    // agent printed comes back in the capture file.
    let (_, status, sysexit, cause, captured) = deliver_one(
        &mut s,
        &mut far,
        &mut base,
        8,
        &deliver_to("tempfail", &nobody),
    );
    assert_eq!(
        (status, sysexit, cause.as_str()),
        (MDA_TEMPFAIL, 75, "exited abnormally")
    );
    assert_eq!(captured.as_deref(), Some("try later\n"));
    let (_, status, sysexit, _, captured) = deliver_one(
        &mut s,
        &mut far,
        &mut base,
        9,
        &deliver_to("permfail", &nobody),
    );
    assert_eq!((status, sysexit), (MDA_PERMFAIL, 1));
    assert_eq!(captured.as_deref(), Some("no such box\n"));

    // Root never runs a command; an unknown delivery user is permanent.
    forkmda(
        &mut s,
        ProcType::PROC_DISPATCHER,
        10,
        &deliver_to("cmd", &root),
    );
    let (id, status, sysexit, cause, _) = mda_done(dispatcher_reads(&mut s, &mut far));
    assert_eq!((id, status, sysexit), (10, MDA_PERMFAIL, EX_NOPERM));
    assert_eq!(cause, "MDA not allowed to deliver to: root");
    forkmda(
        &mut s,
        ProcType::PROC_DISPATCHER,
        11,
        &deliver_to("asuser", &nobody),
    );
    let (_, status, sysexit, cause, _) = mda_done(dispatcher_reads(&mut s, &mut far));
    assert_eq!((status, sysexit), (MDA_PERMFAIL, EX_NOUSER));
    assert_eq!(
        cause,
        "delivery user 'nosuchuser-smtpd-test' does not exist"
    );
    assert!(s.children.is_empty());

    // An agent killed by its five-minute alarm, or by a kill request.
    for (signal, asked, expected) in [
        (libc::SIGALRM, None, "terminated; timeout"),
        (
            libc::SIGTERM,
            Some("delivery cancelled"),
            "delivery cancelled",
        ),
        (libc::SIGKILL, None, "terminated; signal 9"),
    ] {
        let c = child_add(&mut s, 424242, ChildType::Mda, "");
        c.mda_id = 12;
        c.cause = asked.map(str::to_string);
        parent_child_ended(&mut s, &mut base, 424242, WaitStatus::Signaled(signal));
        let (_, status, _, cause, _) = mda_done(dispatcher_reads(&mut s, &mut far));
        assert_eq!((status, cause.as_str()), (MDA_TEMPFAIL, expected));
    }
}

#[test]
fn a_filter_process_waits_for_lka_then_runs_as_its_user() {
    if skip_unless_root("a_filter_process_waits_for_lka_then_runs_as_its_user")
        || !forking_test_runs_here("a_filter_process_waits_for_lka_then_runs_as_its_user")
    {
        return;
    }
    let (a, b) = crate::sys::socket::socketpair().unwrap();
    let (mut s, _dispatcher) = parent_with_dispatcher();
    s.peers.set(
        ProcType::PROC_LKA,
        mproc_init(a, ProcType::PROC_LKA, "lka", 0),
    );
    let mut lka = imsgbuf_init(b).unwrap();
    imsgbuf_allow_fdpass(&mut lka);
    let fp = crate::config::config::FilterProc {
        command: "/bin/sh -c 'id -un; echo to stderr >&2'".into(),
        user: Some("nobody".into()),
        group: None,
        chroot: None,
    };
    fork_filter_process(&mut s, "f1", &fp, 1);
    imsgbuf_flush(&mut s.peers.p(ProcType::PROC_LKA).imsgbuf).unwrap();
    let mut imsg = imsg_wait(&mut lka, Duration::from_secs(10)).unwrap();
    assert_eq!(imsg.hdr.type_, ImsgType::IMSG_LKA_PROCESSOR_FORK as u32);
    let io = File::from(imsg_get_fd(&mut imsg).expect("the filter's stdin/stdout"));
    let mut m = m_msg(&imsg);
    assert_eq!((m_get_string(&mut m), m_get_u32(&mut m)), (Some("f1"), 1));
    m_end(&m);

    // The filter waits until lka holds its stderr: nothing comes before.
    let pid = *s.children.keys().next().unwrap();
    assert!(s.children[&pid].type_ == ChildType::Processor);
    crate::sys::socket::set_nonblocking(std::os::fd::AsFd::as_fd(&io), true).unwrap();
    let mut b = [0u8; 1];
    let early = std::io::Read::read(&mut &io, &mut b);
    assert_eq!(
        early.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
    crate::sys::socket::set_nonblocking(std::os::fd::AsFd::as_fd(&io), false).unwrap();
    let errfd = File::from(s.processor_errfd.remove("f1").expect("stderr kept for lka"));
    // lka shuts its write end down once it has the descriptor.
    crate::sys::socket::shutdown_write(&errfd).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut &io, &mut out).unwrap();
    assert_eq!(out, "nobody\n");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut &errfd, &mut err).unwrap();
    assert_eq!(err, "to stderr\n");
    assert_eq!(wait_child(pid, "filter"), WaitStatus::Exited(0));
}
