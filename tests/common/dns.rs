//! DNS servers for the resolver tests: nsd serving the zones of tests/dns/
//! on loopback, and small hostile peers in front of it: a relay that sends
//! forged answers before the real one, a server that never answers, one
//! that answers late, one that truncates every UDP answer.
//!
//! Everything listens on loopback, on ports the kernel hands out, and is
//! stopped by its guard's Drop: the peers run in background threads whose
//! sockets time out every TICK so that they see the stop flag, and nsd is
//! killed and waited for. A guard belongs to one test; do not keep one in
//! a static (nsd is started with PR_SET_PDEATHSIG, so it also dies when the
//! thread that started it ends, and statics are never dropped).
//!
//! The peers parse just enough DNS to do their job with the small private
//! codec at the end of this file, on purpose independent of the crate's
//! own.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Debian's nsd (package `nsd`, installed by mk/deps.sh).
pub const NSD: &str = "/usr/sbin/nsd";
/// The test zone.
pub const ZONE: &str = "smtpd.test.";
/// What forged answers carry instead of the real addresses.
pub const POISON_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
pub const POISON_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66);
/// The reverse zone that holds the PTR of ::1 (31 zero nibbles).
pub const IP6_ZONE: &str =
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";

/// How often the background servers look at their stop flag.
const TICK: Duration = Duration::from_millis(20);
/// How long a peer waits for its upstream.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long nsd has to answer its first query.
const NSD_START: Duration = Duration::from_secs(10);
/// How long nsd has to go after SIGTERM (then SIGKILL).
const NSD_STOP: Duration = Duration::from_secs(5);
/// Starts of nsd tried when its port was taken in the meantime.
const NSD_TRIES: usize = 5;

/// The zones nsd serves and their files in tests/dns/.
const ZONES: [(&str, &str); 5] = [
    (ZONE, "smtpd.test.zone"),
    // The SPF records of tests/spfwalk.rs.
    ("spf.test.", "spf.test.zone"),
    ("0.0.127.in-addr.arpa.", "0.0.127.in-addr.arpa.zone"),
    (IP6_ZONE, "0.ip6.arpa.zone"),
    // Does not load: nsd answers SERVFAIL for everything under it.
    ("broken.test.", "broken.test.zone"),
];

/// tests/dns/ in the source tree.
pub fn zone_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A new empty directory under the system's temporary directory.
fn private_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("smtpd-dns-{tag}-{}-{n}", std::process::id()));
    // A leftover of an earlier run that had the same pid.
    let _ = fs::remove_dir_all(&path);
    fs::create_dir(&path).expect("create a directory for nsd");
    path.canonicalize().expect("canonicalize")
}

/// nsd serving the test zones on 127.0.0.1 and ::1, on one port for UDP
/// and TCP, in the foreground (`nsd -d -c CONF`), without privilege drop
/// or chroot; its configuration, zone copies, pid file, state and log live
/// in a private directory. Dropping it stops nsd (its whole process group)
/// and removes the directory.
pub struct Nsd {
    pub addr: SocketAddr,
    pub addr6: SocketAddr,
    child: Option<Child>,
    dir: PathBuf,
}

impl Nsd {
    /// Starts nsd and waits (at most 10 s) until it answers a SOA query
    /// for smtpd.test. over UDP; panics with its log otherwise.
    pub fn start() -> Nsd {
        assert!(
            Path::new(NSD).exists(),
            "{NSD} is missing: the DNS tests need Debian's nsd package \
             (run mk/deps.sh as root, or apt-get install nsd)"
        );
        if UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
            panic!("the IPv6 loopback address ::1 is not available: nsd listens on it");
        }
        let dir = private_dir("nsd");
        // From here on, Drop cleans up whatever happens.
        let mut nsd = Nsd {
            addr: (Ipv4Addr::LOCALHOST, 0).into(),
            addr6: (Ipv6Addr::LOCALHOST, 0).into(),
            child: None,
            dir,
        };
        for (_, file) in ZONES {
            let from = zone_dir().join(file);
            if let Err(e) = fs::copy(&from, nsd.dir.join(file)) {
                panic!("copy {}: {e}", from.display());
            }
        }
        for attempt in 1..=NSD_TRIES {
            let port = free_port();
            nsd.addr.set_port(port);
            nsd.addr6.set_port(port);
            nsd.spawn();
            let why = match nsd.wait_ready() {
                Ok(()) => return nsd,
                Err(why) => why,
            };
            let log = nsd.log();
            nsd.stop();
            // Another socket took the port between free_port() and
            // nsd's bind(): try another one.
            if attempt < NSD_TRIES && log.contains("Address already in use") {
                continue;
            }
            panic!("nsd is not up: {why}\n--- nsd's log ---\n{log}");
        }
        unreachable!()
    }

    /// The pid of the process started (nsd forks its server and xfrd
    /// processes into the same process group).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// nsd's log file, then what it wrote on stdout and stderr.
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.join("nsd.log")).unwrap_or_default();
        let out = fs::read_to_string(self.dir.join("nsd.out")).unwrap_or_default();
        if out.is_empty() {
            log
        } else {
            format!("{log}--- stdout and stderr ---\n{out}")
        }
    }

    fn conf(&self) -> String {
        let d = self.dir.display();
        let port = self.addr.port();
        let mut c = format!(
            "server:\n\
             \tip-address: 127.0.0.1\n\
             \tip-address: ::1\n\
             \tport: {port}\n\
             \tserver-count: 1\n\
             \tusername: \"\"\n\
             \tchroot: \"\"\n\
             \tzonesdir: \"{d}\"\n\
             \tdatabase: \"\"\n\
             \tzonelistfile: \"{d}/zone.list\"\n\
             \txfrdfile: \"{d}/xfrd.state\"\n\
             \txfrdir: \"{d}\"\n\
             \tpidfile: \"{d}/nsd.pid\"\n\
             \tlogfile: \"{d}/nsd.log\"\n\
             \tcookie-secret-file: \"{d}/cookiesecrets.txt\"\n\
             \tzonefiles-write: 0\n\
             \thide-version: yes\n\
             \thide-identity: yes\n\
             \tverbosity: 1\n\
             \t# Tests may ask the same thing many times in a row.\n\
             \trrl-ratelimit: 0\n\
             remote-control:\n\
             \tcontrol-enable: no\n"
        );
        for (name, file) in ZONES {
            let _ = write!(c, "zone:\n\tname: \"{name}\"\n\tzonefile: \"{file}\"\n");
        }
        c
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("nsd.conf");
        fs::write(&conf, self.conf()).expect("write nsd.conf");
        // Only this attempt's messages, for the "port taken" check.
        let _ = fs::remove_file(self.dir.join("nsd.log"));
        let out = fs::File::create(self.dir.join("nsd.out")).expect("create nsd.out");
        let err = out.try_clone().expect("dup nsd.out");
        let mut cmd = Command::new(NSD);
        cmd.arg("-d")
            .arg("-c")
            .arg(&conf)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        smtpd::sys::testing::daemon_pre_exec(&mut cmd);
        match cmd.spawn() {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("cannot run {NSD}: {e}"),
        }
    }

    /// Sends SOA queries for the zone over UDP until one is answered with
    /// the SOA, nsd exits, or NSD_START passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
        sock.connect(self.addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TICK))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + NSD_START;
        let mut buf = vec![0u8; 65535];
        // One id for every probe: an answer that comes late still counts.
        let id: u16 = 0x5a5a;
        let probe = query(id, ZONE, T_SOA);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("nsd exited ({status})"));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer to a SOA query within {NSD_START:?}"));
            }
            // Refused (ICMP) until nsd has bound its sockets: wait a
            // little before the next probe.
            let _ = sock.send(&probe);
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    continue;
                }
            };
            let Some(m) = Message::parse(&buf[..n]) else {
                continue;
            };
            if m.id != id || m.flags & QR == 0 {
                continue;
            }
            let rcode = m.flags & 0xf;
            let answers = m.sections[0].len();
            if rcode != 0 || answers == 0 {
                return Err(format!(
                    "nsd answers the SOA query for {ZONE} with rcode {rcode} and {answers} \
                     answers: does tests/dns/smtpd.test.zone load?"
                ));
            }
            return Ok(());
        }
    }

    /// SIGTERM to nsd's process group, SIGKILL when it is not gone within
    /// NSD_STOP; reaps the process started.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        let _ = smtpd::sys::process::kill(-pgid, libc::SIGTERM);
        let gone = |child: &mut Child| {
            matches!(child.try_wait(), Ok(Some(_)) | Err(_)) && !group_running(pgid)
        };
        let deadline = Instant::now() + NSD_STOP;
        while !gone(&mut child) && Instant::now() < deadline {
            std::thread::sleep(TICK);
        }
        if !gone(&mut child) {
            let _ = smtpd::sys::process::kill(-pgid, libc::SIGKILL);
            let _ = child.kill();
        }
        let _ = child.wait();
        let deadline = Instant::now() + NSD_STOP;
        while group_running(pgid) && Instant::now() < deadline {
            std::thread::sleep(TICK);
        }
        if group_running(pgid) {
            eprintln!("warning: processes of nsd[{pgid}] survived SIGKILL");
        }
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether a process of group `pgid` is still running (zombies do not
/// count: whoever inherited them reaps them).
fn group_running(pgid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[2].parse() == Ok(pgid) && !matches!(f[0], "Z" | "X")
    })
}

/// A port free for UDP and TCP on both 127.0.0.1 and ::1 (when asked).
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        let port = udp.local_addr().expect("local_addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
            && TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
        {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 and ::1");
}

/// A UDP socket on 127.0.0.1 and, on the same port, whatever `also`
/// binds there.
fn bind_udp_and<T>(also: impl Fn(u16) -> io::Result<T>) -> (UdpSocket, T) {
    for _ in 0..100 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        let port = udp.local_addr().expect("local_addr").port();
        if let Ok(t) = also(port) {
            udp.set_read_timeout(Some(TICK)).expect("set_read_timeout");
            return (udp, t);
        }
    }
    panic!("no UDP port on 127.0.0.1 whose twin is free");
}

/// How a forged answer differs from the real one (besides its poisoned
/// addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoof {
    /// The id plus one.
    WrongId,
    /// One letter of the question's name changed (to the next letter or
    /// digit: not only its case).
    WrongQuestion,
    /// Sent from another socket of 127.0.0.1 (another port).
    WrongSourcePort,
    /// Sent from 127.0.0.2, from the relay's port.
    WrongSourceAddr,
    /// The QR bit cleared.
    NotResponse,
}

/// The stop flag and the threads of a background server: dropping it
/// raises the flag and joins them.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn new() -> Threads {
        Threads {
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = Arc::clone(&self.stop);
        let h = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || f(stop))
            .expect("spawn a DNS test server thread");
        self.handles.push(h);
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                eprintln!("warning: a DNS test server thread panicked");
            }
        }
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A datagram, or None when the read timed out (or failed).
fn recv_udp(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    sock.recv_from(buf).ok()
}

/// Asks `upstream` over UDP; its answer (the first datagram with the
/// query's id), or None after UPSTREAM_TIMEOUT or once `stop` is raised.
fn udp_exchange(upstream: SocketAddr, query: &[u8], stop: &AtomicBool) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let sock = UdpSocket::bind(local).ok()?;
    sock.connect(upstream).ok()?;
    sock.set_read_timeout(Some(TICK)).ok()?;
    sock.send(query).ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] => {
                return Some(buf[..n].to_vec())
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Asks `upstream` over TCP (one connection per query).
fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT).ok()?;
    s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    s.write_all(&framed(query)?).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).ok()?;
    Some(answer)
}

/// A message with its 2-byte length in front, as on TCP.
fn framed(msg: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    Some(v)
}

/// Cuts the byte stream of a TCP connection into DNS messages.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    eof: bool,
}

impl Framer {
    /// One read from `s` (which times out, or is non-blocking); whether it
    /// brought bytes. End of file and errors other than a timeout mark
    /// the connection as done.
    fn fill(&mut self, s: &mut TcpStream) -> bool {
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) {
                    self.eof = true;
                }
                false
            }
        }
    }

    /// The next complete message read so far.
    fn next(&mut self) -> Option<Vec<u8>> {
        let len = usize::from(u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]));
        if self.buf.len() < 2 + len {
            return None;
        }
        let msg = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(msg)
    }
}

/// A UDP relay on its own port of 127.0.0.1 in front of `upstream`: for
/// each query it gets the upstream's real answer, sends the client one
/// forged answer for each Spoof (in order), then the real one (unless told
/// to drop it). A forged answer is the real one with its A and AAAA
/// records rewritten to POISON_V4 and POISON_V6 and the one defect its
/// Spoof names; it has no other difference that a resolver could catch
/// (it is re-encoded, so its name compression may differ).
pub struct Relay {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    _threads: Threads,
}

impl Relay {
    pub fn start(upstream: SocketAddr, spoofs: Vec<Spoof>) -> Relay {
        Relay::start_with(upstream, spoofs, false)
    }

    /// As start(); with `drop_real`, the client gets only the forged
    /// answers.
    pub fn start_with(upstream: SocketAddr, spoofs: Vec<Spoof>, drop_real: bool) -> Relay {
        let (sock, alias) =
            bind_udp_and(|port| UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), port)));
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        let addr = sock.local_addr().expect("local_addr");
        let queries = counter();
        let mut threads = Threads::new();
        let count = Arc::clone(&queries);
        threads.spawn("dns-relay", move |stop| {
            let mut buf = vec![0u8; 65535];
            while !stop.load(Ordering::SeqCst) {
                let Some((n, client)) = recv_udp(&sock, &mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Some(real) = udp_exchange(upstream, &buf[..n], &stop) else {
                    continue;
                };
                for &spoof in &spoofs {
                    let Some(forged) = forge(&real, spoof) else {
                        eprintln!("relay: the upstream's answer does not parse: no forgery");
                        break;
                    };
                    let from = match spoof {
                        Spoof::WrongSourcePort => &other,
                        Spoof::WrongSourceAddr => &alias,
                        _ => &sock,
                    };
                    let _ = from.send_to(&forged, client);
                }
                if !drop_real {
                    let _ = sock.send_to(&real, client);
                }
            }
        });
        Relay {
            addr,
            queries,
            _threads: threads,
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The forged answer for `spoof` made from the real answer `real`.
fn forge(real: &[u8], spoof: Spoof) -> Option<Vec<u8>> {
    let mut m = Message::parse(real)?;
    m.poison();
    match spoof {
        Spoof::WrongId => m.id = m.id.wrapping_add(1),
        Spoof::WrongQuestion => match m.questions.first_mut() {
            Some(q) => alter_name(&mut q.name),
            None => m.questions.push(Question {
                name: vec![b"x".to_vec()],
                qtype: T_A,
                qclass: 1,
            }),
        },
        Spoof::NotResponse => m.flags &= !QR,
        Spoof::WrongSourcePort | Spoof::WrongSourceAddr => {}
    }
    Some(m.write())
}

/// Changes the first letter or digit of `name` to the next one (z to a, 9
/// to 0, keeping its case); a name with neither gets a label `x` in front.
fn alter_name(name: &mut Name) {
    for label in name.iter_mut() {
        for b in label.iter_mut() {
            *b = match *b {
                b'a'..=b'y' | b'A'..=b'Y' | b'0'..=b'8' => *b + 1,
                b'z' => b'a',
                b'Z' => b'A',
                b'9' => b'0',
                _ => continue,
            };
            return;
        }
    }
    name.insert(0, b"x".to_vec());
}

/// A server on 127.0.0.1 that never answers: it reads UDP queries, and
/// accepts TCP connections, reads what comes and keeps them open, silent,
/// until it is dropped.
pub struct Silent {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    _threads: Threads,
}

impl Silent {
    pub fn start() -> Silent {
        let (udp, tcp) = bind_udp_and(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)));
        tcp.set_nonblocking(true).expect("set_nonblocking");
        let addr = udp.local_addr().expect("local_addr");
        let queries = counter();
        let connections = counter();
        let mut threads = Threads::new();
        let count = Arc::clone(&queries);
        threads.spawn("dns-silent-udp", move |stop| {
            let mut buf = vec![0u8; 65535];
            while !stop.load(Ordering::SeqCst) {
                if recv_udp(&udp, &mut buf).is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let count = Arc::clone(&queries);
        let conns = Arc::clone(&connections);
        threads.spawn("dns-silent-tcp", move |stop| {
            let mut open: Vec<(TcpStream, Framer)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                while let Ok((s, _)) = tcp.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        conns.fetch_add(1, Ordering::SeqCst);
                        open.push((s, Framer::default()));
                    }
                }
                for (s, f) in &mut open {
                    while f.fill(s) {}
                    while f.next().is_some() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                open.retain(|(_, f)| !f.eof);
                std::thread::sleep(TICK);
            }
        });
        Silent {
            addr,
            queries,
            connections,
            _threads: threads,
        }
    }

    /// Queries received so far: UDP datagrams and complete TCP messages.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn tcp_connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A UDP server on 127.0.0.1 that answers each query with `upstream`'s
/// real answer, `delay` after the query came in. It forwards as a
/// forwarding server does, under ids of its own, so that a thousand
/// queries in flight are neither serialized nor lost: one thread takes
/// queries and passes them on, another takes the answers and sends each
/// when it is due.
pub struct Slow {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    _threads: Threads,
}

/// A query forwarded by Slow: who asked, under which id, and when.
type Forwarded = HashMap<u16, (SocketAddr, [u8; 2], Instant)>;

impl Slow {
    pub fn start(upstream: SocketAddr, delay: Duration) -> Slow {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        let addr = sock.local_addr().expect("local_addr");
        let up = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        up.connect(upstream).expect("connect upstream");
        sock.set_read_timeout(Some(TICK)).expect("set_read_timeout");
        let forwarded: Arc<Mutex<Forwarded>> = Arc::new(Mutex::new(HashMap::new()));
        let queries = counter();
        let mut threads = Threads::new();
        let (count, fwd) = (Arc::clone(&queries), Arc::clone(&forwarded));
        let (sock_in, up_in) = (
            sock.try_clone().expect("clone"),
            up.try_clone().expect("clone"),
        );
        threads.spawn("dns-slow-in", move |stop| {
            let mut buf = vec![0u8; 65535];
            let mut next: u16 = 0;
            while !stop.load(Ordering::SeqCst) {
                let Some((n, client)) = recv_udp(&sock_in, &mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                next = next.wrapping_add(1);
                let old = [buf[0], buf[1]];
                fwd.lock()
                    .unwrap()
                    .insert(next, (client, old, Instant::now()));
                buf[..2].copy_from_slice(&next.to_be_bytes());
                let _ = up_in.send(&buf[..n]);
            }
        });
        threads.spawn("dns-slow-out", move |stop| {
            let mut buf = vec![0u8; 65535];
            let mut pending: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                pending.retain(|(due, answer, client)| {
                    if *due > now {
                        return true;
                    }
                    let _ = sock.send_to(answer, *client);
                    false
                });
                let wait = pending
                    .iter()
                    .map(|(due, _, _)| due.saturating_duration_since(now))
                    .min()
                    .unwrap_or(TICK)
                    .clamp(Duration::from_millis(1), TICK);
                let _ = up.set_read_timeout(Some(wait));
                let Ok(n) = up.recv(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let Some((client, old, received)) = forwarded.lock().unwrap().remove(&id) else {
                    continue;
                };
                let mut answer = buf[..n].to_vec();
                answer[..2].copy_from_slice(&old);
                pending.push((received + delay, answer, client));
            }
        });
        Slow {
            addr,
            queries,
            _threads: threads,
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// A server on 127.0.0.1 that answers every UDP query with an empty
/// answer that has TC set (same id and question), and relays TCP queries
/// on the same port to `upstream` over TCP.
pub struct Truncator {
    pub addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    _threads: Threads,
}

impl Truncator {
    pub fn start(upstream: SocketAddr) -> Truncator {
        let (udp, tcp) = bind_udp_and(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)));
        tcp.set_nonblocking(true).expect("set_nonblocking");
        let addr = udp.local_addr().expect("local_addr");
        let udp_queries = counter();
        let tcp_queries = counter();
        let mut threads = Threads::new();
        let count = Arc::clone(&udp_queries);
        threads.spawn("dns-truncator-udp", move |stop| {
            let mut buf = vec![0u8; 65535];
            while !stop.load(Ordering::SeqCst) {
                let Some((n, client)) = recv_udp(&udp, &mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(answer) = truncated(&buf[..n]) {
                    let _ = udp.send_to(&answer, client);
                }
            }
        });
        let count = Arc::clone(&tcp_queries);
        threads.spawn("dns-truncator-tcp", move |stop| {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let Ok((s, _)) = tcp.accept() else {
                    std::thread::sleep(TICK);
                    continue;
                };
                let stop = Arc::clone(&stop);
                let count = Arc::clone(&count);
                let h = std::thread::Builder::new()
                    .name("dns-truncator-conn".to_string())
                    .spawn(move || relay_tcp(s, upstream, &count, &stop));
                if let Ok(h) = h {
                    conns.push(h);
                }
            }
            for h in conns {
                let _ = h.join();
            }
        });
        Truncator {
            addr,
            udp_queries,
            tcp_queries,
            _threads: threads,
        }
    }

    pub fn udp_queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// Serves one TCP connection of the Truncator: each query is asked of
/// `upstream` over TCP and its answer written back.
fn relay_tcp(mut s: TcpStream, upstream: SocketAddr, count: &AtomicUsize, stop: &AtomicBool) {
    if s.set_nonblocking(false).is_err() || s.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let _ = s.set_write_timeout(Some(UPSTREAM_TIMEOUT));
    let mut f = Framer::default();
    loop {
        // Queries already read are answered even after the client shut
        // down its half of the connection.
        while let Some(q) = f.next() {
            count.fetch_add(1, Ordering::SeqCst);
            let Some(answer) = tcp_exchange(upstream, &q).and_then(|a| framed(&a)) else {
                return;
            };
            if s.write_all(&answer).is_err() {
                return;
            }
        }
        if f.eof || stop.load(Ordering::SeqCst) {
            return;
        }
        f.fill(&mut s);
    }
}

/// The Truncator's answer to `query`: its id, opcode, RD and question, QR,
/// AA and TC set, NOERROR, no records.
fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::parse(query)?;
    Some(
        Message {
            id: q.id,
            flags: QR | AA | TC | (q.flags & (OPCODE | RD)),
            questions: q.questions,
            sections: Default::default(),
        }
        .write(),
    )
}

/// Writes `dir`/resolv.conf for the resolver under test: one
/// `nameserver [ADDR]:PORT` line for each of `nameservers` (the form
/// OpenBSD's resolv.conf accepts for a port), then `extra` verbatim.
pub fn resolv_conf(dir: &Path, nameservers: &[SocketAddr], extra: &str) -> PathBuf {
    let mut s = String::new();
    for ns in nameservers {
        let _ = writeln!(s, "nameserver [{}]:{}", ns.ip(), ns.port());
    }
    s.push_str(extra);
    let path = dir.join("resolv.conf");
    if let Err(e) = fs::write(&path, s) {
        panic!("write {}: {e}", path.display());
    }
    path
}

// A small DNS codec: what the peers above need, no more.

const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;

const T_A: u16 = 1;
const T_NS: u16 = 2;
const T_CNAME: u16 = 5;
const T_SOA: u16 = 6;
const T_PTR: u16 = 12;
const T_MX: u16 = 15;
const T_AAAA: u16 = 28;

/// A domain name as its labels, without the root's empty one.
type Name = Vec<Vec<u8>>;

struct Question {
    name: Name,
    qtype: u16,
    qclass: u16,
}

/// A piece of rdata: the names in the rdata of the types that may be
/// compressed (RFC 3597 section 4) are decoded, so that the message can
/// be encoded again; everything else is kept as bytes.
enum Part {
    Name(Name),
    Bytes(Vec<u8>),
}

struct Record {
    name: Name,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Vec<Part>,
}

struct Message {
    id: u16,
    flags: u16,
    questions: Vec<Question>,
    /// Answer, authority, additional.
    sections: [Vec<Record>; 3],
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.msg.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name, following compression pointers (at most 64 of them).
    fn name(&mut self) -> Option<Name> {
        let mut labels = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        let mut hops = 0;
        let mut total = 1;
        loop {
            let len = usize::from(*self.msg.get(pos)?);
            match len & 0xc0 {
                0 if len == 0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Some(labels);
                }
                0 => {
                    labels.push(self.msg.get(pos + 1..pos + 1 + len)?.to_vec());
                    total += len + 1;
                    if total > 255 {
                        return None;
                    }
                    pos += len + 1;
                }
                0xc0 => {
                    let low = usize::from(*self.msg.get(pos + 1)?);
                    if !jumped {
                        self.pos = pos + 2;
                        jumped = true;
                    }
                    hops += 1;
                    if hops > 64 {
                        return None;
                    }
                    pos = (len & 0x3f) << 8 | low;
                }
                _ => return None,
            }
        }
    }

    fn record(&mut self) -> Option<Record> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlength = usize::from(self.u16()?);
        let end = self.pos + rdlength;
        if end > self.msg.len() {
            return None;
        }
        let rdata = match rtype {
            T_NS | T_CNAME | T_PTR => vec![Part::Name(self.name()?)],
            T_MX => vec![
                Part::Bytes(self.bytes(2)?.to_vec()),
                Part::Name(self.name()?),
            ],
            T_SOA => vec![
                Part::Name(self.name()?),
                Part::Name(self.name()?),
                Part::Bytes(self.bytes(20)?.to_vec()),
            ],
            _ => vec![Part::Bytes(self.bytes(rdlength)?.to_vec())],
        };
        if self.pos != end {
            return None;
        }
        Some(Record {
            name,
            rtype,
            class,
            ttl,
            rdata,
        })
    }
}

/// Encodes messages, compressing names against those written before
/// (case-sensitively, so that every name keeps its bytes).
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    seen: HashMap<Name, u16>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn name(&mut self, name: &Name) {
        for i in 0..name.len() {
            let suffix = name[i..].to_vec();
            if let Some(&at) = self.seen.get(&suffix) {
                self.u16(0xc000 | at);
                return;
            }
            if let Ok(at) = u16::try_from(self.out.len()) {
                if at < 0x4000 {
                    self.seen.insert(suffix, at);
                }
            }
            self.out.push(name[i].len() as u8);
            self.out.extend_from_slice(&name[i]);
        }
        self.out.push(0);
    }
}

impl Message {
    fn parse(msg: &[u8]) -> Option<Message> {
        let mut r = Reader { msg, pos: 0 };
        let id = r.u16()?;
        let flags = r.u16()?;
        let qdcount = r.u16()?;
        let counts = [r.u16()?, r.u16()?, r.u16()?];
        let mut questions = Vec::new();
        for _ in 0..qdcount {
            questions.push(Question {
                name: r.name()?,
                qtype: r.u16()?,
                qclass: r.u16()?,
            });
        }
        let mut sections: [Vec<Record>; 3] = Default::default();
        for (section, count) in sections.iter_mut().zip(counts) {
            for _ in 0..count {
                section.push(r.record()?);
            }
        }
        Some(Message {
            id,
            flags,
            questions,
            sections,
        })
    }

    fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(self.id);
        w.u16(self.flags);
        w.u16(self.questions.len() as u16);
        for s in &self.sections {
            w.u16(s.len() as u16);
        }
        for q in &self.questions {
            w.name(&q.name);
            w.u16(q.qtype);
            w.u16(q.qclass);
        }
        for rr in self.sections.iter().flatten() {
            w.name(&rr.name);
            w.u16(rr.rtype);
            w.u16(rr.class);
            w.out.extend_from_slice(&rr.ttl.to_be_bytes());
            let at = w.out.len();
            w.u16(0);
            for part in &rr.rdata {
                match part {
                    Part::Name(n) => w.name(n),
                    Part::Bytes(b) => w.out.extend_from_slice(b),
                }
            }
            let rdlength = (w.out.len() - at - 2) as u16;
            w.out[at..at + 2].copy_from_slice(&rdlength.to_be_bytes());
        }
        w.out
    }

    /// Rewrites the address of every A and AAAA record, in all sections.
    fn poison(&mut self) {
        for rr in self.sections.iter_mut().flatten() {
            if let [Part::Bytes(b)] = rr.rdata.as_mut_slice() {
                match (rr.rtype, b.len()) {
                    (T_A, 4) => *b = POISON_V4.octets().to_vec(),
                    (T_AAAA, 16) => *b = POISON_V6.octets().to_vec(),
                    _ => {}
                }
            }
        }
    }
}

/// A query for `name` (dotted, the final dot optional) without EDNS.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let name = name
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    Message {
        id,
        flags: 0,
        questions: vec![Question {
            name,
            qtype,
            qclass: 1,
        }],
        sections: Default::default(),
    }
    .write()
}
