//! smtpd.c: the parent process, and what every process shares to set
//! itself up (OpenSMTPD smtpd.c 1.355).
//!
//! main() reads the command line and the configuration, then either
//! becomes the parent (root, which starts the six other processes by
//! re-executing itself with `-x NAME`, links them with socket pairs, and
//! then serves the few requests that need root) or, with `-x`, one of
//! those processes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, Seek};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::config::config::{
    config_default, config_peer, config_process, env, set_env, ListenerFlags, QueueFlags, Smtpd,
    SMTPD_OPT_NOACTION, SMTPD_OPT_VERBOSE,
};
use crate::config::lex::Symtab;
use crate::config::parse::parse_config;
use crate::config::printconf::print_config;
use crate::defines::{SMTPD_NAME, SMTPD_VERSION};
use crate::io::event::{EvFlags, EventBase, EventId};
use crate::ipc::imsg::*;
use crate::ipc::mproc::*;
use crate::pathnames::{
    path_spool, smtpd_socket, CONF_FILE, PATH_SMTPCTL, SMTPD_QUEUE_USER, SMTPD_USER,
};
use crate::sys::event as sysev;
use crate::sys::process::{self as sysproc, Fork, WaitStatus};
use crate::sys::unistd::geteuid;
use crate::util::getopt::{Getopt, Opt};
use crate::util::log::*;
use crate::util::util::{rmtree, secure_file};

/// Which process this is (C's global `smtpd_process`), set once at start.
static SMTPD_PROCESS: AtomicU32 = AtomicU32::new(ProcType::PROC_PARENT as u32);

pub fn smtpd_process() -> ProcType {
    ProcType::from_u32(SMTPD_PROCESS.load(Ordering::Relaxed)).unwrap_or(ProcType::PROC_PARENT)
}

pub fn set_smtpd_process(p: ProcType) {
    SMTPD_PROCESS.store(p as u32, Ordering::Relaxed);
}

pub const SMTPD_MDA_PAUSED: u32 = 0x02;
pub const SMTPD_MTA_PAUSED: u32 = 0x04;
pub const SMTPD_SMTP_PAUSED: u32 = 0x08;

/// What the command line asked for.
#[derive(Debug)]
pub struct Options {
    pub conffile: String,
    pub backend_queue: String,
    pub backend_scheduler: String,
    pub backend_stat: String,
    pub foreground: bool,
    pub foreground_log: bool,
    pub opts: u32,
    pub flags: u32,
    pub tracing: u32,
    pub profiling: u32,
    pub rexec: Option<String>,
    pub symtab: Symtab,
}

fn progname(argv0: &str) -> String {
    argv0.rsplit('/').next().unwrap_or(argv0).to_string()
}

/// usage().
fn usage(progname: &str) -> i32 {
    eprintln!("usage: {progname} [-dFhnv] [-D macro=value] [-f file] [-P system] [-T trace]");
    1
}

/// The `-T` names and the trace or profile bit each sets.
fn trace_flag(name: &str) -> Option<(u32, u32)> {
    Some(match name {
        "imsg" => (TRACE_IMSG, 0),
        "io" => (TRACE_IO, 0),
        "smtp" => (TRACE_SMTP, 0),
        "filters" => (TRACE_FILTERS, 0),
        "mta" | "transfer" => (TRACE_MTA, 0),
        "bounce" | "bounces" => (TRACE_BOUNCE, 0),
        "scheduler" => (TRACE_SCHEDULER, 0),
        "lookup" => (TRACE_LOOKUP, 0),
        "stat" | "stats" => (TRACE_STAT, 0),
        "rules" => (TRACE_RULES, 0),
        "mproc" => (TRACE_MPROC, 0),
        "expand" => (TRACE_EXPAND, 0),
        "table" | "tables" => (TRACE_TABLES, 0),
        "queue" => (TRACE_QUEUE, 0),
        "all" => (!TRACE_DEBUG, 0),
        "profstat" => (0, PROFILE_TOSTAT),
        "profile-imsg" => (0, PROFILE_IMSG),
        "profile-queue" => (0, PROFILE_QUEUE),
        _ => return None,
    })
}

/// main()'s getopt loop. Err carries the exit status of usage().
fn parse_options(args: &[String], progname: &str) -> Result<Options, i32> {
    let mut o = Options {
        conffile: CONF_FILE.to_string(),
        backend_queue: "fs".into(),
        backend_scheduler: "ramqueue".into(),
        backend_stat: "ram".into(),
        foreground: false,
        foreground_log: false,
        opts: 0,
        flags: 0,
        tracing: 0,
        profiling: 0,
        rexec: None,
        symtab: Symtab::default(),
    };
    let mut g = Getopt::new(args, "B:dD:hnP:f:FT:vx:");
    for opt in g.by_ref() {
        let (c, arg) = match opt {
            Opt::Flag(c, arg) => (c, arg.unwrap_or_default()),
            // getopt(3)'s own words, before the usage.
            Opt::Unknown(c) => {
                eprintln!("{progname}: unknown option -- {c}");
                return Err(usage(progname));
            }
            Opt::MissingArg(c) => {
                eprintln!("{progname}: option requires an argument -- {c}");
                return Err(usage(progname));
            }
        };
        match c {
            'B' => {
                if let Some(v) = arg.strip_prefix("queue=") {
                    o.backend_queue = v.into();
                } else if let Some(v) = arg.strip_prefix("scheduler=") {
                    o.backend_scheduler = v.into();
                } else if let Some(v) = arg.strip_prefix("stat=") {
                    o.backend_stat = v.into();
                } else {
                    log_warnx!("warn: invalid backend specifier {arg}");
                }
            }
            'd' => {
                o.foreground = true;
                o.foreground_log = true;
            }
            'D' => {
                if !o.symtab.cmdline_symset(&arg) {
                    log_warnx!("warn: could not parse macro definition {arg}");
                }
            }
            'h' => {
                log_info!("version: {SMTPD_NAME} {SMTPD_VERSION}");
                return Err(usage(progname));
            }
            'n' => o.opts |= SMTPD_OPT_NOACTION,
            'f' => o.conffile = arg,
            'F' => o.foreground = true,
            'T' => match trace_flag(&arg) {
                Some((t, p)) => {
                    o.tracing |= t;
                    o.profiling |= p;
                }
                None => log_warnx!("warn: unknown trace flag \"{arg}\""),
            },
            'P' => match arg.as_str() {
                "smtp" => o.flags |= SMTPD_SMTP_PAUSED,
                "mta" => o.flags |= SMTPD_MTA_PAUSED,
                "mda" => o.flags |= SMTPD_MDA_PAUSED,
                _ => {}
            },
            'v' => o.tracing |= TRACE_DEBUG,
            'x' => o.rexec = Some(arg),
            _ => return Err(usage(progname)),
        }
    }
    if !g.operands().is_empty() {
        return Err(usage(progname));
    }
    // OpenSMTPD never sets SMTPD_OPT_VERBOSE, so its unused-macro warning
    // cannot show; -v turns it on here.
    if o.tracing & TRACE_DEBUG != 0 {
        o.opts |= SMTPD_OPT_VERBOSE;
    }
    Ok(o)
}

/// main().
pub fn main(args: Vec<String>) -> i32 {
    let progname = progname(args.first().map_or("smtpd", String::as_str));
    log_init(1, LOG_MAIL, &progname);

    let mut conf: Smtpd = match config_default() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{progname}: {e}");
            return 1;
        }
    };
    let mut o = match parse_options(&args, &progname) {
        Ok(o) => o,
        Err(status) => return status,
    };
    conf.sc_opts |= o.opts;

    if parse_config(&mut conf, &o.conffile, std::mem::take(&mut o.symtab)).is_err() {
        return 1;
    }

    if conf.sc_opts & SMTPD_OPT_NOACTION != 0 {
        load_pki_tree(&mut conf);
        load_pki_keys(&mut conf);
        if conf.sc_opts & SMTPD_OPT_VERBOSE != 0 {
            print!("{}", print_config(&conf));
        }
        eprintln!("configuration OK");
        return 0;
    }

    conf.sc_flags |= o.flags;

    if geteuid() != 0 {
        fatalx!("need root privileges");
    }

    log_init(i32::from(o.foreground_log), LOG_MAIL, &progname);
    log_trace_verbose(o.tracing, o.foreground_log);
    set_profiling(o.profiling);
    load_pki_tree(&mut conf);
    // OpenSMTPD loads the keys in every process and lets each purge them;
    // only ca ever uses them, so only ca loads them.
    if o.rexec.as_deref() == Some("ca") {
        load_pki_keys(&mut conf);
    }

    log_debug!("debug: using \"{}\" queue backend", o.backend_queue);
    log_debug!("debug: using \"{}\" scheduler backend", o.backend_scheduler);
    log_debug!("debug: using \"{}\" stat backend", o.backend_stat);

    if conf.sc_hostname.is_empty() {
        fatalx!("machine does not have a hostname set");
    }
    conf.sc_uptime = crate::util::util::time_now();

    let Some(rexec) = o.rexec.clone() else {
        return parent_main(conf, &o, &args);
    };
    let proc = match rexec.as_str() {
        "ca" => ProcType::PROC_CA,
        "control" => ProcType::PROC_CONTROL,
        "lka" => ProcType::PROC_LKA,
        "dispatcher" => ProcType::PROC_DISPATCHER,
        "queue" => ProcType::PROC_QUEUE,
        "scheduler" => ProcType::PROC_SCHEDULER,
        _ => fatalx!("bad rexec: {rexec}"),
    };
    set_smtpd_process(proc);
    let peers = setup_proc(&mut conf);
    match proc {
        ProcType::PROC_CONTROL => {
            // The control socket ensures that only one smtpd runs.
            let sock = crate::control::control_create_socket();
            set_env(conf);
            crate::control::control(peers, sock, &o.backend_stat)
        }
        ProcType::PROC_QUEUE => {
            set_env(conf);
            if !crate::queue::queue_backend::queue_init(&o.backend_queue, true) {
                fatalx!("could not initialize queue backend");
            }
            crate::queue::queue::queue(peers, &o.backend_queue)
        }
        ProcType::PROC_SCHEDULER => {
            set_env(conf);
            for d in env().sc_bounce_warn.iter().take_while(|&&d| d != 0) {
                log_debug!(
                    "debug: bounce warning after {}",
                    crate::util::to::duration_to_text(*d)
                );
            }
            crate::scheduler::scheduler::scheduler(peers, &o.backend_scheduler)
        }
        ProcType::PROC_CA => {
            set_env(conf);
            crate::ca::ca(peers)
        }
        ProcType::PROC_LKA => {
            set_env(conf);
            crate::lka::lka::lka(peers)
        }
        _ => {
            set_env(conf);
            crate::dispatcher::dispatcher::dispatcher(peers)
        }
    }
}

/// The parent's part of main(): the queue key, detaching, then the six
/// children and their links, then smtpd().
fn parent_main(mut conf: Smtpd, o: &Options, args: &[String]) -> i32 {
    set_smtpd_process(ProcType::PROC_PARENT);

    if conf.sc_queue_flags.contains(QueueFlags::QUEUE_ENCRYPTION) {
        match conf.sc_queue_key.as_deref() {
            None => match crate::sys::unistd::getpass("queue key: ") {
                Ok(k) => conf.sc_queue_key = Some(k),
                Err(e) => fatal!(e, "getpass"),
            },
            Some(k) if k.eq_ignore_ascii_case("stdin") => {
                let mut line = String::new();
                match std::io::stdin().lock().read_line(&mut line) {
                    Ok(0) => fatalx!("getline: no queue key on standard input"),
                    Ok(_) => {}
                    Err(e) => fatal!(e, "getline"),
                }
                if line.ends_with('\n') {
                    line.pop();
                }
                conf.sc_queue_key = Some(line);
            }
            Some(_) => {}
        }
    }

    // The control process refuses to take over a live control socket, as
    // in OpenSMTPD; asking here first spares starting a tree for nothing,
    // and keeps a refused second daemon from touching the first's socket
    // and pid file on its way out.
    if std::os::unix::net::UnixStream::connect(smtpd_socket()).is_ok() {
        fatalx!("control socket already listening");
    }

    // lka takes filter programs with the filters' issue; a tree started
    // now would die on the first one, so say so instead.
    if let Some(name) = conf.sc_filter_processes_dict.keys().next() {
        fatalx!("filter process \"{name}\": filters are not implemented yet");
    }
    // STARTTLS, SMTPS and AUTH come with the TLS issue: a listener that
    // asks for them would not do what its configuration says.
    let tls = ListenerFlags::F_SSL | ListenerFlags::F_AUTH;
    for l in conf.sc_listeners.iter() {
        if l.flags.intersects(tls) {
            fatalx!(
                "listener {} port {}: tls, smtps and auth are not implemented yet",
                l.address(),
                l.port
            );
        }
    }

    log_info!("info: {SMTPD_NAME} {SMTPD_VERSION} starting");
    // The MTA comes with its issue; until then the scheduler holds what
    // is to be relayed (scheduler.rs), and the administrator is told.
    for (name, dsp) in conf.sc_dispatchers.iter() {
        if matches!(dsp.u, crate::config::config::DispatcherAgent::Remote(_)) {
            log_warnx!(
                "warn: action \"{name}\": relaying is not implemented yet; \
                 its mail stays queued"
            );
        }
    }

    if !o.foreground {
        if let Err(e) = sysproc::daemon() {
            fatal!(e, "failed to daemonize");
        }
    }

    let mut peers = Peers::default();
    for (name, proc) in [
        ("ca", ProcType::PROC_CA),
        ("control", ProcType::PROC_CONTROL),
        ("lka", ProcType::PROC_LKA),
        ("dispatcher", ProcType::PROC_DISPATCHER),
        ("queue", ProcType::PROC_QUEUE),
        ("scheduler", ProcType::PROC_SCHEDULER),
    ] {
        peers.set(proc, start_child(args, name, proc));
    }

    use ProcType::*;
    for (a, b) in [
        (PROC_CONTROL, PROC_CA),
        (PROC_CONTROL, PROC_LKA),
        (PROC_CONTROL, PROC_DISPATCHER),
        (PROC_CONTROL, PROC_QUEUE),
        (PROC_CONTROL, PROC_SCHEDULER),
        (PROC_DISPATCHER, PROC_CA),
        (PROC_DISPATCHER, PROC_LKA),
        (PROC_DISPATCHER, PROC_QUEUE),
        (PROC_QUEUE, PROC_LKA),
        (PROC_QUEUE, PROC_SCHEDULER),
    ] {
        setup_peers(&mut peers, a, b);
    }

    if let Some(key) = &conf.sc_queue_key {
        let mut data = key.as_bytes().to_vec();
        data.push(0);
        let q = peers.p(PROC_QUEUE);
        if let Err(e) = imsg_compose(
            &mut q.imsgbuf,
            ImsgType::IMSG_SETUP_KEY as u32,
            0,
            0,
            None,
            &data,
        ) {
            fatalx!("imsg_compose: {e}");
        }
        if let Err(e) = imsgbuf_flush(&mut q.imsgbuf) {
            fatalx!("imsgbuf_flush: {e}");
        }
    }

    for proc in [
        PROC_CA,
        PROC_CONTROL,
        PROC_LKA,
        PROC_DISPATCHER,
        PROC_QUEUE,
        PROC_SCHEDULER,
    ] {
        setup_done(peers.p(proc));
    }
    log_debug!("smtpd: setup done");

    set_env(conf);
    smtpd(peers)
}

/// start_child(): a socket pair, then fork; the child puts its end on
/// descriptor 3, closes everything above, and executes smtpd again with
/// `-x rexec`.
fn start_child(args: &[String], rexec: &str, proc: ProcType) -> Mproc {
    if args.len() >= SMTPD_MAXARG - 2 {
        fatalx!("too many arguments");
    }
    let (sp0, sp1) = match crate::sys::socket::socketpair() {
        Ok(p) => p,
        Err(e) => fatal!(e, "socketpair"),
    };
    match sysproc::fork() {
        Err(e) => fatal!(e, "{}: fork", args[0]),
        Ok(Fork::Parent(pid)) => {
            drop(sp0);
            mproc_init(sp1, proc, rexec, pid as u32)
        }
        Ok(Fork::Child) => {
            let fd = sp0.as_raw_fd();
            if fd != 3 {
                if let Err(e) = sysproc::dup2(fd, 3) {
                    fatal!(e, "{rexec}: dup2");
                }
            } else if let Err(e) = sysproc::clear_cloexec(fd) {
                fatal!(e, "{rexec}: fcntl");
            }
            sysproc::closefrom(4);
            let mut argv = args.to_vec();
            argv.push("-x".into());
            argv.push(rexec.into());
            let e = sysproc::execvp(&argv);
            fatal!(e, "{rexec}: execvp")
        }
    }
}

/// setup_peers(): a socket pair between two children, each end sent to
/// one of them with IMSG_SETUP_PEER.
fn setup_peers(peers: &mut Peers, a: ProcType, b: ProcType) {
    let (sa, sb) = match crate::sys::socket::socketpair() {
        Ok(p) => p,
        Err(e) => fatal!(e, "socketpair"),
    };
    let (pa, pb) = (peers.p(a).pid, peers.p(b).pid);
    for (to, other, other_pid, fd) in [(a, b, pb, sa), (b, a, pa, sb)] {
        let p = peers.p(to);
        let r = imsg_compose(
            &mut p.imsgbuf,
            ImsgType::IMSG_SETUP_PEER as u32,
            other as u32,
            other_pid,
            Some(fd),
            &[],
        );
        if let Err(e) = r {
            fatalx!("imsg_compose: {e}");
        }
        if let Err(e) = imsgbuf_flush(&mut p.imsgbuf) {
            fatalx!("imsgbuf_flush: {e}");
        }
    }
}

/// setup_done(): tells a child its peers are all there, and waits (10 s)
/// for it to say it is ready.
fn setup_done(p: &mut Mproc) {
    if let Err(e) = imsg_compose(
        &mut p.imsgbuf,
        ImsgType::IMSG_SETUP_DONE as u32,
        0,
        0,
        None,
        &[],
    ) {
        fatalx!("imsg_compose: {e}");
    }
    if let Err(e) = imsgbuf_flush(&mut p.imsgbuf) {
        fatalx!("imsgbuf_flush: {e}");
    }
    let imsg = match imsg_wait(&mut p.imsgbuf, Duration::from_secs(10)) {
        Ok(i) => i,
        Err(e) => fatalx!("imsg_wait: {}: {e}", p.name),
    };
    if imsg.hdr.type_ != ImsgType::IMSG_SETUP_DONE as u32 {
        fatalx!("expect IMSG_SETUP_DONE");
    }
    log_debug!("setup_done: {}[{}] done", p.name, p.pid);
}

/// setup_proc(): a child's side of the set-up, on descriptor 3: the queue
/// key, the peers, then IMSG_SETUP_DONE answered in kind.
fn setup_proc(conf: &mut Smtpd) -> Peers {
    log_procinit(proc_title(smtpd_process()));
    let fd = match crate::sys::socket::take_fd(3) {
        Some(fd) => fd,
        None => fatalx!("setup_proc: descriptor 3 is not open"),
    };
    let mut peers = Peers::default();
    let mut parent = mproc_init(
        fd,
        ProcType::PROC_PARENT,
        "parent",
        sysproc::getppid() as u32,
    );
    loop {
        let mut imsg = match imsg_wait(&mut parent.imsgbuf, Duration::from_secs(10)) {
            Ok(i) => i,
            Err(e) => fatalx!("imsg_wait: {e}"),
        };
        match ImsgType::from_u32(imsg.hdr.type_) {
            Some(ImsgType::IMSG_SETUP_KEY) => {
                let key = imsg.data.split(|&b| b == 0).next().unwrap_or_default();
                conf.sc_queue_key = Some(String::from_utf8_lossy(key).into_owned());
            }
            Some(ImsgType::IMSG_SETUP_PEER) => {
                let Some(proc) = ProcType::from_u32(imsg.hdr.peerid) else {
                    fatalx!("unknown peer");
                };
                let pid = imsg.hdr.pid;
                setup_peer(&mut peers, proc, pid, imsg_get_fd(&mut imsg));
            }
            Some(ImsgType::IMSG_SETUP_DONE) => break,
            _ => fatalx!("bad imsg {}", imsg.hdr.type_),
        }
    }
    if let Err(e) = imsg_compose(
        &mut parent.imsgbuf,
        ImsgType::IMSG_SETUP_DONE as u32,
        0,
        0,
        None,
        &[],
    ) {
        fatalx!("imsg_compose: {e}");
    }
    if let Err(e) = imsgbuf_flush(&mut parent.imsgbuf) {
        fatalx!("imsgbuf_flush: {e}");
    }
    peers.set(ProcType::PROC_PARENT, parent);
    log_debug!("setup_proc: {} done", proc_title(smtpd_process()));
    peers
}

/// setup_peer(): the channel to one peer.
fn setup_peer(peers: &mut Peers, proc: ProcType, pid: u32, sock: Option<OwnedFd>) {
    let Some(sock) = sock else {
        fatalx!("peer socket not received");
    };
    log_debug!(
        "setup_peer: {} -> {}[{}] fd={}",
        proc_title(smtpd_process()),
        proc_title(proc),
        pid,
        sock.as_raw_fd()
    );
    if !matches!(
        proc,
        ProcType::PROC_LKA
            | ProcType::PROC_QUEUE
            | ProcType::PROC_CONTROL
            | ProcType::PROC_SCHEDULER
            | ProcType::PROC_DISPATCHER
            | ProcType::PROC_CA
    ) {
        fatalx!("unknown peer");
    }
    if peers.get_ref(proc).is_some() {
        fatalx!("peer already set");
    }
    peers.set(proc, mproc_init(sock, proc, proc_title(proc), pid));
}

/// imsg_wait(): the next message, waiting at most `timeout` for it
/// (used during set-up, before any event loop runs).
fn imsg_wait(ibuf: &mut Imsgbuf, timeout: Duration) -> std::io::Result<Imsg> {
    let deadline = Instant::now() + timeout;
    loop {
        match imsg_get(ibuf) {
            Ok(Some(imsg)) => return Ok(imsg),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let mut pfd = [sysev::pollfd {
            fd: ibuf.as_raw_fd(),
            events: sysev::POLLIN,
            revents: 0,
        }];
        let left = deadline.saturating_duration_since(Instant::now());
        if sysev::poll(&mut pfd, Some(left))? == 0 && Instant::now() >= deadline {
            return Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        match imsgbuf_read(ibuf) {
            Ok(ReadResult::Data(_) | ReadResult::WouldBlock) => {}
            Ok(_) => return Err(std::io::Error::from_raw_os_error(libc::EPIPE)),
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// The channels of a process to its peers: C's p_parent, p_lka, p_queue,
/// p_control, p_scheduler, p_dispatcher and p_ca, indexed by process
/// type. The event loop finds a channel by its process type as key.
#[derive(Default)]
pub struct Peers {
    p: [Option<Mproc>; 7],
}

impl Peers {
    fn index(key: u64) -> Option<usize> {
        (key < 7).then_some(key as usize)
    }

    pub fn get(&mut self, key: u64) -> Option<&mut Mproc> {
        self.p.get_mut(Self::index(key)?)?.as_mut()
    }

    pub fn get_ref_key(&self, key: u64) -> Option<&Mproc> {
        self.p.get(Self::index(key)?)?.as_ref()
    }

    pub fn get_ref(&self, proc: ProcType) -> Option<&Mproc> {
        self.get_ref_key(proc as u64)
    }

    pub fn set(&mut self, proc: ProcType, p: Mproc) {
        self.p[proc as usize] = Some(p);
    }

    pub fn take(&mut self, proc: ProcType) -> Option<Mproc> {
        self.p.get_mut(proc as usize)?.take()
    }

    /// The channel to `proc`, which must exist (C dereferences p_lka).
    pub fn p(&mut self, proc: ProcType) -> &mut Mproc {
        match self.get(proc as u64) {
            Some(p) => p,
            None => fatalx!("no channel to {}", proc_name(proc)),
        }
    }
}

/// Implements MprocOwner for a process struct with a `peers: Peers`
/// field, routing every message through imsg_dispatch to `$handler`.
#[macro_export]
macro_rules! impl_mproc_owner {
    ($t:ty, $handler:path) => {
        impl $crate::ipc::mproc::MprocOwner for $t {
            fn mproc(&mut self, key: u64) -> Option<&mut $crate::ipc::mproc::Mproc> {
                self.peers.get(key)
            }
            fn mproc_ref(&self, key: u64) -> Option<&$crate::ipc::mproc::Mproc> {
                self.peers.get_ref_key(key)
            }
            fn mproc_imsg(
                &mut self,
                base: &mut $crate::io::event::EventBase<Self>,
                key: u64,
                imsg: Option<$crate::ipc::imsg::Imsg>,
            ) {
                $crate::smtpd::imsg_dispatch(self, base, key, imsg, $handler)
            }
        }
    };
}

/// A process's imsg handler (C's imsg_callback).
pub type ImsgHandler<S> = fn(&mut S, &mut EventBase<S>, ProcType, Option<Imsg>);

/// imsg_dispatch(): traces the message (-T imsg), times the handler when
/// profiling (-T profile-imsg), and calls it.
pub fn imsg_dispatch<S>(
    s: &mut S,
    base: &mut EventBase<S>,
    key: u64,
    imsg: Option<Imsg>,
    handler: ImsgHandler<S>,
) {
    let from = ProcType::from_u32(key as u32).unwrap_or(ProcType::PROC_CLIENT);
    let Some(imsg) = imsg else {
        handler(s, base, from, None);
        return;
    };
    log_imsg(smtpd_process(), from, &imsg);
    let (type_, len) = (imsg.hdr.type_, imsg.hdr.len);
    let t0 = (profiling() & PROFILE_IMSG != 0).then(Instant::now);
    handler(s, base, from, Some(imsg));
    if let Some(t0) = t0 {
        let dt = t0.elapsed();
        log_debug!(
            "profile-imsg: {} {} {} {} {}.{:09}",
            proc_name(smtpd_process()),
            proc_name(from),
            imsg_to_str(type_),
            len,
            dt.as_secs(),
            dt.subsec_nanos()
        );
    }
}

/// log_imsg().
fn log_imsg(to: ProcType, from: ProcType, imsg: &Imsg) {
    if to == ProcType::PROC_CONTROL && imsg.hdr.type_ == ImsgType::IMSG_STAT_SET as u32 {
        return;
    }
    log_trace!(
        TRACE_IMSG,
        "imsg: {} <- {}: {} (len={})",
        proc_name(to),
        proc_name(from),
        imsg_to_str(imsg.hdr.type_),
        imsg.data.len()
    );
}

/// The common part of every child's imsg handler: the messages every
/// process takes from the parent and control. Returns the message back
/// when it is not one of them.
pub fn child_imsg_common(imsg: Imsg) -> Option<Imsg> {
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CTL_VERBOSE) => {
            let mut m = m_msg(&imsg);
            let v = m_get_int(&mut m);
            m_end(&m);
            log_trace_verbose(v as u32, log_getverbose() != 0);
            None
        }
        Some(ImsgType::IMSG_CTL_PROFILE) => {
            let mut m = m_msg(&imsg);
            let v = m_get_int(&mut m);
            m_end(&m);
            set_profiling(v as u32);
            None
        }
        _ => Some(imsg),
    }
}

/// What every child does before its event loop: find its user (the
/// first of `users` that exists), chroot where it lives, name itself
/// (config_process), give up root, and ignore the signals the parent
/// handles for the whole tree.
pub fn child_privdrop(
    name: &str,
    users: &[&str],
    chroot: Option<&str>,
    proc: ProcType,
    initgroups: bool,
) {
    let pw = users
        .iter()
        .find_map(|u| sysproc::getpwnam(u).ok().flatten());
    let Some(pw) = pw else {
        fatalx!("unknown user {}", users.last().copied().unwrap_or(""));
    };
    if let Some(dir) = chroot {
        if let Err(e) = sysproc::chroot(dir) {
            fatal!(e, "{name}: chroot");
        }
    }
    config_process(proc);
    let r = if initgroups {
        sysproc::drop_privileges_initgroups(&pw.name, pw.uid, pw.gid)
    } else {
        sysproc::drop_privileges(pw.uid, pw.gid)
    };
    if let Err(e) = r {
        fatal!(e, "{name}: cannot drop privileges");
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGPIPE, libc::SIGHUP] {
        let _ = sysev::signal_ignore(sig);
    }
}

pub const SMTPD_MAXARG: usize = 32;
const OFFLINE_READMAX: usize = 20;
const OFFLINE_QUEUEMAX: usize = 5;

/// enum child_type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildType {
    Daemon,
    Mda,
    Processor,
    EnqueueOffline,
}

/// struct child: a process the parent waits for.
struct Child {
    type_: ChildType,
    title: String,
    mda_out: Option<File>,
    mda_id: u64,
    /// Our copy of the write end of an MDA's stdin, kept until the
    /// dispatcher has written the whole message: should the dispatcher
    /// die before, the agent never reads an end of file that would make
    /// it deliver part of a message; it is killed instead.
    mda_in: Option<OwnedFd>,
    path: Option<String>,
    cause: Option<String>,
}

/// struct offline: an offline message waiting for its enqueuer.
struct Offline {
    uid: u32,
    gid: u32,
    path: String,
}

/// The parent's state (the C globals of smtpd.c).
pub struct Parent {
    peers: Peers,
    children: BTreeMap<libc::pid_t, Child>,
    offline_q: VecDeque<Offline>,
    offline_running: usize,
    /// An offline scan in progress, resumed by timer (C's fts handle).
    offline_scan: Option<std::vec::IntoIter<(String, u32, u32)>>,
    offline_ev: Option<EventId>,
    config_ev: Option<EventId>,
    purge_pid: Option<libc::pid_t>,
    /// Filter processes' stderr, handed to lka on request.
    processor_errfd: HashMap<String, OwnedFd>,
}

impl_mproc_owner!(Parent, parent_imsg);

/// parent_imsg().
fn parent_imsg(s: &mut Parent, base: &mut EventBase<Parent>, from: ProcType, imsg: Option<Imsg>) {
    let Some(imsg) = imsg else {
        // OpenSMTPD exits here with fatalx() and leaves the other children
        // to notice on their own; we close their channels and reap them,
        // so that no process outlives the tree, and exit 1.
        let name = s
            .peers
            .get_ref(from)
            .map_or("?".to_string(), |p| p.name.clone());
        log_warnx!("{}: process {name} socket closed", log_procname());
        parent_shutdown_status(s, base, 1);
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_MDA_KILL) => parent_imsg_mda_kill(s, &imsg),
        Some(ImsgType::IMSG_MDA_DONE) => parent_imsg_mda_done(s, &imsg),
        Some(ImsgType::IMSG_LKA_OPEN_FORWARD) => parent_imsg_open_forward(s, from, &imsg),
        Some(ImsgType::IMSG_MDA_FORK) => {
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let data = m_get_data(&mut m);
            m_end(&m);
            let deliver = match crate::dispatcher::mda::Deliver::from_bytes(data) {
                Ok(d) => d,
                Err(e) => fatalx!("expected deliver: {e}"),
            };
            forkmda(s, from, reqid, &deliver);
        }
        Some(ImsgType::IMSG_LKA_AUTHENTICATE) => {
            // lka asks root to check a system user's password.
            let mut m = m_msg(&imsg);
            let reqid = m_get_id(&mut m);
            let username = m_get_string(&mut m);
            let password = m_get_string(&mut m);
            m_end(&m);
            let (Some(username), Some(password)) = (username, password) else {
                fatalx!("parent_imsg: missing username or password");
            };
            let ret = parent_auth_user(username, password);
            let p = s.peers.p(from);
            m_create(p, ImsgType::IMSG_LKA_AUTHENTICATE, 0, 0, None);
            m_add_id(p, reqid);
            m_add_int(p, ret as i32);
            m_close(p);
        }
        Some(ImsgType::IMSG_CTL_VERBOSE | ImsgType::IMSG_CTL_PROFILE) => {
            let _ = child_imsg_common(imsg);
        }
        Some(ImsgType::IMSG_LKA_PROCESSOR_ERRFD) => {
            let mut m = m_msg(&imsg);
            let procname = m_get_string(&mut m);
            m_end(&m);
            let Some(procname) = procname else {
                fatalx!("parent_imsg: missing procname");
            };
            let errfd = s.processor_errfd.remove(procname);
            let lka = s.peers.p(ProcType::PROC_LKA);
            m_create(lka, ImsgType::IMSG_LKA_PROCESSOR_ERRFD, 0, 0, errfd);
            m_add_string(lka, Some(procname));
            m_close(lka);
        }
        _ => fatalx!(
            "parent_imsg: unexpected {} imsg from {}",
            imsg_to_str(imsg.hdr.type_),
            proc_title(from)
        ),
    }
}

/// IMSG_LKA_OPEN_FORWARD: lka needs a user's .forward, which only root
/// may open; the answer carries the descriptor, or none with a status.
fn parent_imsg_open_forward(s: &mut Parent, from: ProcType, imsg: &Imsg) {
    use crate::lka::forward::ForwardReq;
    let Some(mut fwreq) = ForwardReq::from_bytes(&imsg.data) else {
        fatalx!(
            "parent_imsg: {}: expected struct forward_req, got {} bytes",
            imsg_to_str(imsg.hdr.type_),
            imsg.data.len()
        );
    };
    let (fd, status) =
        match parent_forward_open(&fwreq.user, &fwreq.directory, fwreq.uid, fwreq.gid) {
            Ok(f) => (Some(OwnedFd::from(f)), 1),
            // A .forward refused as unsafe (anyone may have written it: a
            // sticky or writable home, a link, a file writable by others)
            // is ignored, and the mail goes to the mailbox as if there
            // were none. C refuses the recipient instead (smtpd.8).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EPERM | libc::ELOOP)
                ) =>
            {
                (None, 1)
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => (None, u8::MAX),
            Err(_) => (None, 0),
        };
    fwreq.status = status;
    let Some(data) = fwreq.to_bytes() else {
        fatalx!("parent_imsg: forward_req does not fit");
    };
    m_compose(
        s.peers.p(from),
        ImsgType::IMSG_LKA_OPEN_FORWARD,
        0,
        0,
        fd,
        &data,
    );
}

/// IMSG_MDA_DONE from the dispatcher (not in OpenSMTPD, where only the
/// parent sends it): the whole message is written to the agent; our copy
/// of its stdin goes, and the agent sees the end of the message.
fn parent_imsg_mda_done(s: &mut Parent, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    m_end(&m);
    mda_input_done(s, reqid);
}

/// Closes our copy of the stdin of the agent of delivery `reqid`.
fn mda_input_done(s: &mut Parent, reqid: u64) {
    if let Some(c) = s
        .children
        .values_mut()
        .find(|c| c.type_ == ChildType::Mda && c.mda_id == reqid)
    {
        c.mda_in = None;
    }
}

/// IMSG_MDA_KILL: the dispatcher gives up on a delivery; the agent gets
/// SIGTERM, and its end is reported with the given cause.
fn parent_imsg_mda_kill(s: &mut Parent, imsg: &Imsg) {
    let mut m = m_msg(imsg);
    let reqid = m_get_id(&mut m);
    let cause = m_get_string(&mut m);
    m_end(&m);
    let Some(cause) = cause else {
        fatalx!("parent_imsg: missing cause");
    };
    let found = s
        .children
        .iter_mut()
        .find(|(_, c)| c.type_ == ChildType::Mda && c.mda_id == reqid && c.cause.is_none());
    let Some((&pid, c)) = found else {
        log_debug!("debug: smtpd: kill request: proc not found");
        return;
    };
    c.cause = Some(cause.to_string());
    log_debug!("debug: smtpd: kill requested for {pid}: {cause}");
    let _ = sysproc::kill(pid, libc::SIGTERM);
}

/// parent_shutdown(): closes every channel, waits for the children to
/// go, removes the control socket and exits.
fn parent_shutdown(s: &mut Parent, base: &mut EventBase<Parent>) -> ! {
    parent_shutdown_status(s, base, 0)
}

fn parent_shutdown_status(s: &mut Parent, base: &mut EventBase<Parent>, status: i32) -> ! {
    use ProcType::*;
    // An agent that has not had its whole message will never have it.
    for (&pid, c) in s.children.iter_mut() {
        if c.mda_in.take().is_some() {
            let _ = sysproc::kill(pid, libc::SIGKILL);
        }
    }
    for proc in [
        PROC_CA,
        PROC_DISPATCHER,
        PROC_CONTROL,
        PROC_LKA,
        PROC_SCHEDULER,
        PROC_QUEUE,
    ] {
        if let Some(p) = s.peers.take(proc) {
            mproc_clear(base, p);
        }
    }
    // Wait for every child; one that died on its own (the reason we are
    // here, often) is reported as SIGCHLD would have.
    while let Ok((pid, status)) = sysproc::wait_any() {
        if let Some(c) = s.children.remove(&pid) {
            let end = child_end(status);
            if c.type_ == ChildType::Daemon && end.fail && !matches!(status, WaitStatus::Exited(_))
            {
                log_warnx!("warn: lost child: {} {}", c.title, end.cause);
            }
        }
    }
    let _ = std::fs::remove_file(smtpd_socket());
    log_info!("Exiting");
    std::process::exit(status);
}

/// parent_send_config(): tells lka, the dispatcher and ca that the
/// configuration is complete (each has read it itself).
fn parent_send_config(
    s: &mut Parent,
    _base: &mut EventBase<Parent>,
    _fd: RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    for (proc, what) in [
        (
            ProcType::PROC_LKA,
            "debug: parent_send_config_ruleset: reloading",
        ),
        (
            ProcType::PROC_DISPATCHER,
            "debug: parent_send_config: configuring dispatcher process",
        ),
        (
            ProcType::PROC_CA,
            "debug: parent_send_config: configuring ca process",
        ),
    ] {
        log_debug!("{what}");
        let p = s.peers.p(proc);
        m_compose(p, ImsgType::IMSG_CONF_START, 0, 0, None, &[]);
        m_compose(p, ImsgType::IMSG_CONF_END, 0, 0, None, &[]);
    }
}

/// How a child's end reads in the logs, and what it means for a delivery
/// agent (the MDA status mapping of parent_sig_handler).
struct ChildEnd {
    fail: bool,
    cause: String,
    mda_status: i32,
    mda_sysexit: i32,
}

pub const MDA_OK: i32 = 0;
pub const MDA_TEMPFAIL: i32 = 1;
pub const MDA_PERMFAIL: i32 = 2;
pub const EX_USAGE: i32 = 64;
pub const EX_OSERR: i32 = 71;
pub const EX_CANTCREAT: i32 = 73;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_NOUSER: i32 = 67;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_NOPERM: i32 = 77;

fn child_end(status: WaitStatus) -> ChildEnd {
    match status {
        // Killed: a temporary failure for a delivery.
        WaitStatus::Signaled(sig) => ChildEnd {
            fail: true,
            cause: format!("terminated; signal {sig}"),
            mda_status: MDA_TEMPFAIL,
            mda_sysexit: 0,
        },
        WaitStatus::Exited(0) => ChildEnd {
            fail: false,
            cause: "exited okay".into(),
            mda_status: MDA_OK,
            mda_sysexit: 0,
        },
        // sysexits(3): EX_OSERR and EX_TEMPFAIL are worth a retry.
        WaitStatus::Exited(code) => ChildEnd {
            fail: true,
            cause: "exited abnormally".into(),
            mda_status: if code == EX_OSERR || code == EX_TEMPFAIL {
                MDA_TEMPFAIL
            } else {
                MDA_PERMFAIL
            },
            mda_sysexit: code,
        },
    }
}

/// parent_sig_handler().
fn parent_sig_handler(
    s: &mut Parent,
    base: &mut EventBase<Parent>,
    sig: RawFd,
    _ev: EvFlags,
    _arg: u64,
) {
    match sig {
        libc::SIGTERM | libc::SIGINT => {
            log_debug!("debug: got signal {sig}");
            parent_shutdown(s, base);
        }
        libc::SIGCHLD => loop {
            match sysproc::waitpid_any_nohang() {
                Ok(Some((pid, status))) => parent_child_ended(s, base, pid, status),
                Ok(None) => return,
                Err(e) => {
                    log_warn!(e, "warn: waitpid");
                    return;
                }
            }
        },
        // OpenSMTPD dies on SIGHUP ("unexpected signal"); we must not,
        // and have no reload yet: say so and go on.
        libc::SIGHUP => {
            log_info!("info: received SIGHUP: configuration reload is not supported, ignoring")
        }
        _ => fatalx!("smtpd: unexpected signal"),
    }
}

/// One child reaped: what its end means depends on what it was.
fn parent_child_ended(
    s: &mut Parent,
    base: &mut EventBase<Parent>,
    pid: libc::pid_t,
    status: WaitStatus,
) {
    let end = child_end(status);
    if s.purge_pid == Some(pid) {
        s.purge_pid = None;
    }
    let Some(mut child) = s.children.remove(&pid) else {
        return;
    };
    match child.type_ {
        ChildType::Processor => {
            if end.fail {
                log_warnx!("warn: lost processor: {} {}", child.title, end.cause);
                parent_shutdown(s, base);
            }
        }
        ChildType::Daemon => {
            if end.fail {
                log_warnx!("warn: lost child: {} {}", child.title, end.cause);
            }
        }
        ChildType::Mda => {
            let cause = match status {
                WaitStatus::Signaled(libc::SIGALRM) => "terminated; timeout".to_string(),
                WaitStatus::Signaled(libc::SIGTERM) if child.cause.is_some() => {
                    child.cause.take().unwrap_or_default()
                }
                _ => end.cause,
            };
            log_debug!(
                "debug: smtpd: mda process done for session {:016x}: {cause}",
                child.mda_id
            );
            let d = s.peers.p(ProcType::PROC_DISPATCHER);
            m_create(
                d,
                ImsgType::IMSG_MDA_DONE,
                0,
                0,
                child.mda_out.take().map(OwnedFd::from),
            );
            m_add_id(d, child.mda_id);
            m_add_int(d, end.mda_status);
            m_add_int(d, end.mda_sysexit);
            m_add_string(d, Some(&cause));
            m_close(d);
        }
        ChildType::EnqueueOffline => {
            let path = child.path.take().unwrap_or_default();
            if end.fail {
                log_warnx!(
                    "warn: smtpd: couldn't enqueue offline message {path}; smtpctl {}",
                    end.cause
                );
            } else {
                let _ = std::fs::remove_file(&path);
            }
            offline_done(s);
        }
    }
}

/// smtpd(): the parent's event loop.
fn smtpd(peers: Peers) -> ! {
    let mut s = Parent {
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
    use ProcType::*;
    for proc in [
        PROC_QUEUE,
        PROC_CONTROL,
        PROC_LKA,
        PROC_SCHEDULER,
        PROC_DISPATCHER,
        PROC_CA,
    ] {
        let pid = s.peers.p(proc).pid;
        child_add(
            &mut s,
            pid as libc::pid_t,
            ChildType::Daemon,
            proc_title(proc),
        );
    }

    let mut base = EventBase::new();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD, libc::SIGHUP] {
        let ev = base.signal_set(sig, parent_sig_handler, 0);
        if let Err(e) = base.event_add(ev, None) {
            fatal!(e, "signal_add");
        }
    }
    let _ = sysev::signal_ignore(libc::SIGPIPE);

    for proc in [PROC_CONTROL, PROC_LKA, PROC_QUEUE, PROC_CA, PROC_DISPATCHER] {
        config_peer(&mut base, &mut s.peers, proc);
    }

    let ev = base.evtimer_set(parent_send_config, 0);
    add_timer(&mut base, ev, Duration::ZERO);
    s.config_ev = Some(ev);

    // Defer the offline scan for a second.
    let ev = base.evtimer_set(offline_scan, 0);
    add_timer(&mut base, ev, Duration::from_secs(1));
    s.offline_ev = Some(ev);

    pidfile();
    fork_filter_processes(&mut s);
    purge_task(&mut s);

    if let Err(e) = crate::sys::pledge::pledge(
        "stdio rpath wpath cpath fattr tmppath getpw sendfd proc exec id inet chown unix",
        None,
    ) {
        fatal!(e, "pledge");
    }

    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop");
}

fn add_timer<S>(base: &mut EventBase<S>, ev: EventId, delay: Duration) {
    if let Err(e) = base.evtimer_add(ev, delay) {
        fatal!(e, "evtimer_add");
    }
}

/// pidfile(3): the parent's pid, next to the control socket (so that
/// daemons running side by side with their own socket do not collide).
fn pidfile() {
    let sock = smtpd_socket();
    let dir = std::path::Path::new(&sock)
        .parent()
        .map_or("/var/run".into(), |d| d.to_path_buf());
    let path = dir.join("smtpd.pid");
    if let Err(e) = std::fs::write(&path, format!("{}\n", sysproc::getpid())) {
        log_warn!(e, "pidfile: {}", path.display());
        std::process::exit(1);
    }
}

/// child_add().
fn child_add<'a>(
    s: &'a mut Parent,
    pid: libc::pid_t,
    type_: ChildType,
    title: &str,
) -> &'a mut Child {
    let c = Child {
        type_,
        title: title.to_string(),
        mda_out: None,
        mda_id: 0,
        mda_in: None,
        path: None,
        cause: None,
    };
    if s.children.insert(pid, c).is_some() {
        fatalx!("child_add: pid {pid} already known");
    }
    s.children.get_mut(&pid).expect("just inserted")
}

/// purge_task(): when the purge directory holds anything, a child
/// chrooted there as the queue user empties it.
fn purge_task(s: &mut Parent) {
    let dir = format!("{}/purge", path_spool());
    let busy = match std::fs::read_dir(&dir) {
        Ok(mut d) => d.next().is_some(),
        Err(e) => {
            log_warn!(e, "warn: purge_task: opendir");
            return;
        }
    };
    if busy {
        s.purge_pid = purge_spawn(&dir);
    }
}

/// The purge child: chrooted in `dir` as the queue user, it removes
/// everything there. Returns its pid.
pub(crate) fn purge_spawn(dir: &str) -> Option<libc::pid_t> {
    match sysproc::fork() {
        Err(e) => {
            log_warn!(e, "warn: purge_task: fork");
            None
        }
        Ok(Fork::Parent(pid)) => Some(pid),
        Ok(Fork::Child) => purge_child(dir),
    }
}

fn purge_child(dir: &str) -> ! {
    let pw = match sysproc::getpwnam(SMTPD_QUEUE_USER) {
        Ok(Some(pw)) => pw,
        _ => fatalx!("unknown user {SMTPD_QUEUE_USER}"),
    };
    if let Err(e) = sysproc::chroot(dir) {
        fatal!(e, "smtpd: chroot");
    }
    if let Err(e) = sysproc::drop_privileges(pw.uid, pw.gid) {
        fatal!(e, "smtpd: cannot drop privileges");
    }
    rmtree(std::path::Path::new("/"), true);
    sysproc::exit_now(0)
}

/// fork_filter_processes(): passes each chain's subsystems to its filters
/// and each filter's to its program, then starts every program.
fn fork_filter_processes(s: &mut Parent) {
    use crate::config::config::{FilterSubsystem, FilterType};
    let conf = env();
    let mut subsystem: BTreeMap<&str, FilterSubsystem> = conf
        .sc_filters_dict
        .iter()
        .map(|(k, f)| (k.as_str(), f.filter_subsystem))
        .collect();
    for f in conf.sc_filters_dict.values() {
        if let FilterType::Chain(chain) = &f.filter_type {
            for name in chain {
                *subsystem.entry(name.as_str()).or_default() |= f.filter_subsystem;
            }
        }
    }
    let mut proc_subsystem: BTreeMap<&str, FilterSubsystem> = BTreeMap::new();
    for f in conf.sc_filters_dict.values() {
        if let FilterType::Proc(p) = &f.filter_type {
            *proc_subsystem.entry(p.as_str()).or_default() |= subsystem[f.name.as_str()];
        }
    }
    for (name, fp) in &conf.sc_filter_processes_dict {
        let sub = proc_subsystem
            .get(name.as_str())
            .copied()
            .unwrap_or_default();
        fork_filter_process(s, name, fp, sub.bits());
    }
}

/// fork_filter_process(): starts one filter program with its stdin and
/// stdout on a socket for lka and its stderr on another, as its user and
/// group, in its chroot if any, through `/bin/sh -c "exec COMMAND"`.
fn fork_filter_process(
    s: &mut Parent,
    name: &str,
    fp: &crate::config::config::FilterProc,
    subsystems: u32,
) {
    let user = fp.user.as_deref().unwrap_or(SMTPD_USER);
    let pw = match sysproc::getpwnam(user) {
        Ok(Some(pw)) => pw,
        Ok(None) => fatalx!("getpwnam: no user {user}"),
        Err(e) => fatal!(e, "getpwnam"),
    };
    let gid = match fp.group.as_deref() {
        Some(g) => match sysproc::getgrnam(g) {
            Ok(Some(gid)) => gid,
            Ok(None) => fatalx!("getgrnam: no group {g}"),
            Err(e) => fatal!(e, "getgrnam"),
        },
        None => pw.gid,
    };
    let (sp0, sp1) = crate::sys::socket::socketpair().unwrap_or_else(|e| fatal!(e, "socketpair"));
    let (err0, err1) = crate::sys::socket::socketpair().unwrap_or_else(|e| fatal!(e, "socketpair"));
    match sysproc::fork() {
        Err(e) => fatal!(e, "fork"),
        Ok(Fork::Parent(pid)) => {
            s.processor_errfd.insert(name.to_string(), err1);
            child_add(s, pid, ChildType::Processor, name);
            drop((sp0, err0));
            let lka = s.peers.p(ProcType::PROC_LKA);
            m_create(lka, ImsgType::IMSG_LKA_PROCESSOR_FORK, 0, 0, Some(sp1));
            m_add_string(lka, Some(name));
            m_add_u32(lka, subsystems);
            m_close(lka);
        }
        Ok(Fork::Child) => {
            drop((sp1, err1));
            filter_child(name, fp, &pw, gid, sp0, err0)
        }
    }
}

fn filter_child(
    name: &str,
    fp: &crate::config::config::FilterProc,
    pw: &sysproc::Passwd,
    gid: u32,
    sp: OwnedFd,
    err: OwnedFd,
) -> ! {
    for (from, to) in [
        (sp.as_raw_fd(), 0),
        (sp.as_raw_fd(), 1),
        (err.as_raw_fd(), 2),
    ] {
        if let Err(e) = sysproc::dup2(from, to) {
            fatal!(e, "dup2");
        }
    }
    if let Some(dir) = &fp.chroot {
        if let Err(e) = sysproc::chroot(dir) {
            fatal!(e, "chroot: {dir}");
        }
    }
    if let Err(e) = sysproc::drop_privileges(pw.uid, gid) {
        fatal!(e, "fork_filter_process: cannot drop privileges");
    }
    sysproc::closefrom(3);
    if let Err(e) = sysproc::setsid() {
        fatal!(e, "setsid");
    }
    for sig in [
        libc::SIGPIPE,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGCHLD,
        libc::SIGHUP,
    ] {
        if let Err(e) = sysev::signal_default(sig) {
            fatal!(e, "signal");
        }
    }
    let exec = if fp.command.starts_with('/') {
        format!("exec {}", fp.command)
    } else {
        format!("exec {}/{}", crate::pathnames::path_libexec(), fp.command)
    };
    // Wait for lka to acknowledge that it holds our stderr (it shuts down
    // its write end): a filter that writes an error and exits at once
    // would otherwise race lka's logging of it against SIGCHLD.
    let mut b = [0u8; 1];
    if !matches!(sysproc::read_fd(2, &mut b), Ok(0)) {
        fatalx!("{name}: lka didn't properly close write end of error socket");
    }
    let argv = ["/bin/sh".to_string(), "-c".to_string(), exec];
    let e = sysproc::execvp(&argv);
    fatal!(e, "execvp /bin/sh")
}

/// Reports a delivery that could not start to the dispatcher.
fn mda_done_early(s: &mut Parent, id: u64, status: i32, sysexit: i32, why: &str) {
    let d = s.peers.p(ProcType::PROC_DISPATCHER);
    m_create(d, ImsgType::IMSG_MDA_DONE, 0, 0, None);
    m_add_id(d, id);
    m_add_int(d, status);
    m_add_int(d, sysexit);
    m_add_string(d, Some(why));
    m_close(d);
}

/// forkmda(): runs one local delivery as the recipient (or the action's
/// user): the message comes on a pipe whose write end goes back to the
/// dispatcher, stdout and stderr go to an unlinked capture file the
/// parent keeps for the report, the child drops to the user, starts a
/// session, has five minutes, and execs mail.local or the command.
/// Delivering to uid 0 is refused except plain mbox delivery.
pub(crate) fn forkmda(
    s: &mut Parent,
    from: ProcType,
    id: u64,
    deliver: &crate::dispatcher::mda::Deliver,
) {
    use crate::config::config::DispatcherAgent;
    let conf = env();
    let Some(dsp) = conf.sc_dispatchers.get(&deliver.dispatcher) else {
        fatalx!("forkmda: unknown dispatcher {}", deliver.dispatcher);
    };
    let DispatcherAgent::Local(local) = &dsp.u else {
        fatalx!("non-local dispatcher called from forkmda()");
    };
    let ui = &deliver.userinfo;
    log_debug!(
        "debug: smtpd: forking mda for session {id:016x}: {} as {}",
        ui.username,
        local.user.as_deref().unwrap_or(&ui.username)
    );
    let (pw_name, pw_uid, pw_gid, pw_dir) = match &local.user {
        Some(user) => match sysproc::getpwnam(user) {
            Ok(Some(pw)) => (pw.name, pw.uid, pw.gid, pw.dir),
            _ => {
                let why = format!("delivery user '{user}' does not exist");
                return mda_done_early(s, id, MDA_PERMFAIL, EX_NOUSER, &why);
            }
        },
        None => (ui.username.clone(), ui.uid, ui.gid, ui.directory.clone()),
    };
    if pw_uid == 0 && (!local.is_mbox() || !deliver.mda_exec.is_empty()) {
        let why = format!("MDA not allowed to deliver to: {}", ui.username);
        return mda_done_early(s, id, MDA_PERMFAIL, EX_NOPERM, &why);
    }
    let (pipe_r, pipe_w) = match sysproc::pipe() {
        Ok(p) => p,
        Err(e) => {
            return mda_done_early(
                s,
                id,
                MDA_TEMPFAIL,
                EX_OSERR,
                &format!("pipe: {}", strerror(&e)),
            )
        }
    };
    // The capture file of the agent's stdout and stderr, unlinked at once.
    let allout = match sysproc::mkstemp("/tmp/smtpd.out.XXXXXXXXXXX") {
        Ok((f, path)) => {
            let _ = std::fs::remove_file(path);
            f
        }
        Err(e) => {
            return mda_done_early(
                s,
                id,
                MDA_TEMPFAIL,
                EX_OSERR,
                &format!("mkstemp: {}", strerror(&e)),
            )
        }
    };
    match sysproc::fork() {
        Err(e) => mda_done_early(
            s,
            id,
            MDA_TEMPFAIL,
            EX_OSERR,
            &format!("fork: {}", strerror(&e)),
        ),
        Ok(Fork::Parent(pid)) => {
            let mda_in = match pipe_w.try_clone() {
                Ok(fd) => fd,
                Err(e) => fatal!(e, "forkmda: dup"),
            };
            let c = child_add(s, pid, ChildType::Mda, "");
            c.mda_out = Some(allout);
            c.mda_id = id;
            c.mda_in = Some(mda_in);
            drop(pipe_r);
            let p = s.peers.p(from);
            m_create(p, ImsgType::IMSG_MDA_FORK, 0, 0, Some(pipe_w));
            m_add_id(p, id);
            m_close(p);
        }
        Ok(Fork::Child) => {
            drop(pipe_w);
            forkmda_child(
                conf,
                local,
                deliver,
                (&pw_name, pw_uid, pw_gid, &pw_dir),
                pipe_r,
                allout,
            )
        }
    }
}

/// The delivery agent's side of forkmda(); never returns.
fn forkmda_child(
    conf: &Smtpd,
    local: &crate::config::config::DispatcherLocal,
    deliver: &crate::dispatcher::mda::Deliver,
    (pw_name, pw_uid, pw_gid, pw_dir): (&str, u32, u32, &str),
    pipe_r: OwnedFd,
    allout: File,
) -> ! {
    use crate::dispatcher::{mda_mbox, mda_unpriv};
    let ppid = sysproc::getppid();
    // mail.local runs as root and needs the mailbox to exist already.
    if local.is_mbox() {
        mda_mbox::mda_mbox_init(deliver);
    }
    if std::env::set_current_dir(pw_dir).is_err() && std::env::set_current_dir("/").is_err() {
        fatalx!("chdir");
    }
    if let Err(e) = sysproc::drop_privileges(pw_uid, pw_gid) {
        fatal!(e, "forkmda: cannot drop privileges");
    }
    // Should the whole tree be killed, the agent goes with it rather
    // than deliver the part of the message it had (smtpd.8).
    sysproc::die_with_parent(ppid);
    for (from, to) in [
        (pipe_r.as_raw_fd(), 0),
        (allout.as_raw_fd(), 1),
        (allout.as_raw_fd(), 2),
    ] {
        if let Err(e) = sysproc::dup2(from, to) {
            fatal!(e, "forkmda: dup2");
        }
    }
    sysproc::closefrom(3);
    if let Err(e) = sysproc::setsid() {
        fatal!(e, "setsid");
    }
    for sig in [
        libc::SIGPIPE,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGCHLD,
        libc::SIGHUP,
    ] {
        if let Err(e) = sysev::signal_default(sig) {
            fatal!(e, "signal");
        }
    }
    // Avoid hangs: five minutes at most.
    sysproc::alarm(300);
    if local.is_mbox() && local.mda_wrapper.is_none() && deliver.mda_exec.is_empty() {
        mda_mbox::mda_mbox(deliver)
    } else {
        mda_unpriv::mda_unpriv(conf, local, deliver, pw_name, pw_dir)
    }
}

/// offline_scan(): enqueues what sendmail left in the offline directory
/// while the daemon was down, at most OFFLINE_READMAX files per pass.
fn offline_scan(s: &mut Parent, base: &mut EventBase<Parent>, _fd: RawFd, _ev: EvFlags, _arg: u64) {
    if s.offline_scan.is_none() {
        log_debug!("debug: smtpd: scanning offline queue...");
        match offline_list(&format!("{}/offline", path_spool())) {
            Ok(files) => s.offline_scan = Some(files.into_iter()),
            Err(e) => {
                log_warn!(e, "fts_open: {}/offline", path_spool());
                return;
            }
        }
    }
    let mut n = 0;
    while let Some((name, uid, gid)) = s.offline_scan.as_mut().and_then(Iterator::next) {
        if offline_add(s, &name, uid, gid).is_err() {
            log_warnx!("warn: smtpd: could not add offline message {name}");
            continue;
        }
        n += 1;
        if n == OFFLINE_READMAX {
            if let Some(ev) = s.offline_ev {
                add_timer(base, ev, Duration::from_millis(100));
            }
            return;
        }
    }
    s.offline_scan = None;
    log_debug!("debug: smtpd: offline scanning done");
}

/// The regular files directly in the offline directory whose group is the
/// directory's, with their owner and group; empty ones are removed.
fn offline_list(dir: &str) -> std::io::Result<Vec<(String, u32, u32)>> {
    let dirgid = std::fs::metadata(dir)?.gid();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.gid() != dirgid {
            continue;
        }
        if meta.len() == 0 {
            if std::fs::remove_file(entry.path()).is_err() {
                log_warnx!("warn: smtpd: could not unlink {}", entry.path().display());
            }
            continue;
        }
        files.push((
            entry.file_name().to_string_lossy().into_owned(),
            meta.uid(),
            meta.gid(),
        ));
    }
    Ok(files)
}

/// offline_add(): at most OFFLINE_QUEUEMAX enqueuers at once; the rest
/// wait their turn.
fn offline_add(s: &mut Parent, name: &str, uid: u32, gid: u32) -> Result<(), ()> {
    if s.offline_running < OFFLINE_QUEUEMAX {
        return offline_enqueue(s, name, uid, gid);
    }
    s.offline_q.push_back(Offline {
        uid,
        gid,
        path: name.to_string(),
    });
    Ok(())
}

/// offline_done(): one enqueuer finished; start waiting ones.
fn offline_done(s: &mut Parent) {
    s.offline_running -= 1;
    while s.offline_running < OFFLINE_QUEUEMAX {
        let Some(q) = s.offline_q.pop_front() else {
            break;
        };
        let _ = offline_enqueue(s, &q.path, q.uid, q.gid);
    }
}

/// offline_enqueue(): a child that checks the file (regular, one link,
/// the owner and group seen by the scan), becomes its owner, and runs
/// `smtpctl sendmail -S` with the saved arguments and the message on its
/// standard input.
fn offline_enqueue(s: &mut Parent, name: &str, uid: u32, gid: u32) -> Result<(), ()> {
    let path = format!("{}/offline/{name}", path_spool());
    if path.len() >= crate::defines::PATH_MAX {
        log_warnx!("warn: smtpd: pathname exceeds PATH_MAX");
        return Err(());
    }
    log_debug!("debug: smtpd: enqueueing offline message {path}");
    match sysproc::fork() {
        Err(e) => {
            log_warn!(e, "warn: smtpd: fork");
            Err(())
        }
        Ok(Fork::Child) => {
            sysproc::closefrom(3);
            let OfflineRefused = offline_enqueue_child(&path, uid, gid);
            sysproc::exit_now(1)
        }
        Ok(Fork::Parent(pid)) => {
            s.offline_running += 1;
            child_add(s, pid, ChildType::EnqueueOffline, "").path = Some(path);
            Ok(())
        }
    }
}

/// The offline enqueuer refused the file, or could not run smtpctl (the
/// reason is logged).
pub struct OfflineRefused;

/// The offline enqueuer's checks and exec; it returns only on failure.
pub fn offline_enqueue_child(path: &str, uid: u32, gid: u32) -> OfflineRefused {
    match offline_enqueue_exec(path, uid, gid) {
        Ok(never) => match never {},
        Err(refused) => refused,
    }
}

fn offline_enqueue_exec(
    path: &str,
    uid: u32,
    gid: u32,
) -> Result<std::convert::Infallible, OfflineRefused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            log_warn!(e, "warn: smtpd: open: {path}");
            OfflineRefused
        })?;
    let sb = file.metadata().map_err(|e| {
        log_warn!(e, "warn: smtpd: fstat: {path}");
        OfflineRefused
    })?;
    if !sb.is_file() {
        log_warnx!("warn: smtpd: file {path} (uid {}) not regular", sb.uid());
        return Err(OfflineRefused);
    }
    if sb.nlink() != 1 {
        log_warnx!("warn: smtpd: file {path} is hard-link");
        return Err(OfflineRefused);
    }
    if sb.uid() != uid {
        log_warnx!("warn: smtpd: file {path} has bad uid {}", sb.uid());
        return Err(OfflineRefused);
    }
    if sb.gid() != gid {
        log_warnx!("warn: smtpd: file {path} has bad gid {}", sb.gid());
        return Err(OfflineRefused);
    }
    // Not in C: sendmail holds the file locked from its creation until
    // the whole message is in it and on the disk. A scan at start-up may
    // find it meanwhile, empty or half written: wait for the writer.
    if let Err(e) = crate::sys::mailbox::flock_exclusive(&file) {
        log_warn!(e, "warn: smtpd: flock: {path}");
        return Err(OfflineRefused);
    }
    let pw = match sysproc::getpwuid(sb.uid()) {
        Ok(Some(pw)) => pw,
        _ => {
            log_warnx!("warn: smtpd: getpwuid for uid {} failed", sb.uid());
            return Err(OfflineRefused);
        }
    };
    sysproc::drop_privileges(pw.uid, pw.gid).map_err(|_| OfflineRefused)?;
    if std::env::set_current_dir(&pw.dir).is_err() && std::env::set_current_dir("/").is_err() {
        return Err(OfflineRefused);
    }
    sysproc::setsid().map_err(|_| OfflineRefused)?;
    sysev::signal_default(libc::SIGPIPE).map_err(|_| OfflineRefused)?;
    // The first line holds the arguments, separated by '|'; the message
    // follows it.
    let mut reader = std::io::BufReader::new(&file);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 && line.ends_with('\n') => {}
        _ => return Err(OfflineRefused),
    }
    line.pop();
    let mut args = vec!["sendmail".to_string(), "-S".to_string()];
    args.extend(line.split('|').map(str::to_string));
    (&file)
        .seek(std::io::SeekFrom::Start((line.len() + 1) as u64))
        .map_err(|_| OfflineRefused)?;
    sysproc::dup2(file.as_raw_fd(), 0).map_err(|_| OfflineRefused)?;
    let envp = [format!("PATH={}", crate::sys::unistd::PATH_DEFPATH)];
    let _ = sysproc::execve(PATH_SMTPCTL, &args, &envp);
    Err(OfflineRefused)
}

/// parent_forward_open(): opens a user's ~/.forward for lka, refusing a
/// sticky home, symbolic links and files others could have written.
/// Err(EAGAIN) means "try again later"; a missing file is ENOENT.
pub fn parent_forward_open(
    username: &str,
    directory: &str,
    uid: u32,
    _gid: u32,
) -> std::io::Result<File> {
    let _ = username;
    let pathname = format!("{directory}/.forward");
    if pathname.len() >= crate::defines::PATH_MAX {
        log_warnx!("warn: smtpd: {pathname}: pathname too large");
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let sb = std::fs::metadata(directory).map_err(|e| {
        log_warn!(e, "warn: smtpd: parent_forward_open: {directory}");
        e
    })?;
    // S_ISVTX: a sticky home is shared, and anyone could plant a .forward.
    // Refused, as an insecure file is (C: EAGAIN, a temporary failure).
    if sb.mode() & 0o1000 != 0 {
        log_warnx!("warn: smtpd: parent_forward_open: {directory} is sticky");
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&pathname);
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => e,
                Some(libc::EMFILE | libc::ENFILE | libc::EIO) => {
                    std::io::Error::from_raw_os_error(libc::EAGAIN)
                }
                Some(libc::ELOOP) => {
                    log_warnx!("warn: smtpd: parent_forward_open: {pathname}: cannot follow symbolic links");
                    e
                }
                _ => {
                    log_warn!(e, "warn: smtpd: parent_forward_open: {pathname}");
                    e
                }
            })
        }
    };
    if !secure_file(&file, &pathname, directory, uid, true) {
        log_warnx!("warn: smtpd: {pathname}: insecure file");
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(file)
}

/// load_pki_tree(): every pki's certificate chain and every ca's bundle
/// (root's files, modes at most 0755), or exit.
fn load_pki_tree(conf: &mut Smtpd) {
    log_debug!("debug: init ssl-tree");
    for (k, pki) in conf.sc_pki_dict.iter_mut() {
        log_debug!("info: loading pki information for {k}");
        let Some(cert) = &pki.pki_cert_file else {
            fatalx!("load_pki_tree: missing certificate file");
        };
        if pki.pki_key_file.is_none() {
            fatalx!("load_pki_tree: missing key file");
        }
        match crate::io::ssl::ssl_load_certificate(cert) {
            Ok(c) => pki.pki_cert = c,
            Err(e) => {
                log_warnx!("{e}");
                fatalx!("load_pki_tree: failed to load certificate file");
            }
        }
    }
    log_debug!("debug: init ca-tree");
    for (k, ca) in conf.sc_ca_dict.iter_mut() {
        log_debug!("info: loading CA information for {k}");
        let file = ca.ca_cert_file.clone().unwrap_or_default();
        match crate::io::ssl::ssl_load_cafile(&file) {
            Ok(c) => ca.ca_cert = c,
            Err(e) => {
                log_warnx!("{e}");
                fatalx!("load_pki_tree: failed to load CA file");
            }
        }
    }
}

/// load_pki_keys(): every pki's private key (root's, mode at most 0740,
/// decrypted with a passphrase when it is encrypted), or exit.
fn load_pki_keys(conf: &mut Smtpd) {
    log_debug!("debug: init ssl-tree");
    for (k, pki) in conf.sc_pki_dict.iter_mut() {
        log_debug!("info: loading pki keys for {k}");
        let file = pki.pki_key_file.clone().unwrap_or_default();
        match crate::io::ssl::ssl_load_keyfile(&file, k) {
            Ok(key) => pki.pki_key = key,
            Err(e) => {
                log_warnx!("{e}");
                fatalx!("load_pki_keys: failed to load key file");
            }
        }
    }
}

/// parent_auth_user(): bsd_auth on OpenBSD, PAM (service "smtpd") on
/// Linux.
pub fn parent_auth_user(username: &str, password: &str) -> crate::sys::auth::AuthResult {
    crate::sys::auth::auth_userokay(username, password, crate::sys::auth::AUTH_SERVICE)
}

/// proc_title(): a process as `ps` and the logs name it.
pub fn proc_title(proc: ProcType) -> &'static str {
    match proc {
        ProcType::PROC_PARENT => "[priv]",
        ProcType::PROC_LKA => "lookup",
        ProcType::PROC_QUEUE => "queue",
        ProcType::PROC_CONTROL => "control",
        ProcType::PROC_SCHEDULER => "scheduler",
        ProcType::PROC_DISPATCHER => "dispatcher",
        ProcType::PROC_CA => "crypto",
        ProcType::PROC_CLIENT => "client",
        ProcType::PROC_PROCESSOR => "processor",
    }
}

/// proc_name(): a process as traces name it.
pub fn proc_name(proc: ProcType) -> &'static str {
    match proc {
        ProcType::PROC_PARENT => "parent",
        ProcType::PROC_LKA => "lka",
        ProcType::PROC_QUEUE => "queue",
        ProcType::PROC_CONTROL => "control",
        ProcType::PROC_SCHEDULER => "scheduler",
        ProcType::PROC_DISPATCHER => "dispatcher",
        ProcType::PROC_CA => "ca",
        ProcType::PROC_CLIENT => "client-proc",
        ProcType::PROC_PROCESSOR => "unknown",
    }
}

/// imsg_to_str(): the C name of an imsg type.
pub fn imsg_to_str(type_: u32) -> String {
    match ImsgType::from_u32(type_) {
        Some(t) => t.name().to_string(),
        None => format!("IMSG_??? ({type_})"),
    }
}

#[cfg(test)]
mod tests;
