//! A spool written by OpenSMTPD, read by ours: Debian's OpenSMTPD 6.8
//! (unpacked under run/ref/ by mk/opensmtpd-ref.sh, which mk/deps.sh
//! runs as root) receives mail over SMTP on loopback and keeps it queued
//! (its relay and delivery agents paused), in a private spool mounted
//! over its compiled-in /var/spool/smtpd in a private mount namespace.
//! Once it has stopped, queue_fs walks that spool: every envelope must
//! load with every field as sent, and every message with its data.
//!
//! What differs between the envelope text of 6.8 and 7.8 (envelope.c
//! 1.47 and 1.52): `dsn-orcpt`, the bare address in 6.8 (`bob@orig.test`,
//! written only when it has a user and a domain), the whole ORCPT value
//! in 7.8 (`rfc822;bob@orig.test`). We load the 6.8 form with `rfc822;`
//! put back (envelope_upgrade). 6.8 also read `IPv6:addr` peers, which we
//! read too; it writes `[addr]` as 7.8 does, without a scope. Everything
//! else, and the layout, is the same.
#![allow(clippy::disallowed_methods)]

// tests/common re-exports things only the daemon tests use.
#[allow(unused_imports)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smtpd::config::config::QueueFlags;
use smtpd::queue::envelope::{
    envelope_dump_buffer, evpid_to_msgid, DeliveryType, DsnNotify, DsnRet, Envelope, PeerAddr,
};
use smtpd::queue::queue_backend::{
    queue_envelope_delete, queue_envelope_walk, queue_message_fd_r, queue_message_walk, queue_open,
    MessageWalk, QueueWalk,
};
use smtpd::util::mailaddr::Mailaddr;

/// Debian's smtpd, where mk/opensmtpd-ref.sh unpacks it, or
/// `$OPENSMTPD_REF`.
fn reference_smtpd() -> PathBuf {
    match std::env::var_os("OPENSMTPD_REF") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("run/ref/opensmtpd/usr/sbin/smtpd"),
    }
}

/// The reference daemon, killed with its tree when the test ends
/// however it ends (its children exit when it does).
struct Reference(Child);

impl Reference {
    /// SIGTERM, as an administrator stops it; whether it exited.
    fn stop(&mut self) -> bool {
        let _ = smtpd::sys::process::kill(self.0.id() as i32, libc::SIGTERM);
        common::poll_until(Duration::from_secs(15), || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the reference daemon in a private mount namespace where its
/// spool is `spool` and its control socket in a private /var/run.
fn start_reference(smtpd: &Path, spool: &Path, conf: &Path, log: &Path) -> Reference {
    let script = r#"set -e
mount --bind "$1" /var/spool/smtpd
if [ -L /var/run ]; then run=/run; else run=/var/run; fi
mount -t tmpfs -o mode=755 tmpfs "$run"
exec "$2" -d -v -P mta -P mda -f "$3"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(spool)
    .arg(smtpd)
    .arg(conf)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(log).expect("create the log"))
    .stderr(std::fs::File::create(log.with_extension("err")).expect("create the log"));
    smtpd::sys::testing::daemon_pre_exec(&mut cmd);
    Reference(cmd.spawn().expect("spawn unshare"))
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// One SMTP reply, its lines joined; panics unless its code is `code`.
fn reply(r: &mut BufReader<TcpStream>, code: &str) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read a reply");
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Sends one message; its id, from the reply to the final dot.
fn send(port: u16, from: &str, rcpts: &[&str], body: &str) -> u32 {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut cmd = |line: &str, r: &mut BufReader<TcpStream>, code: &str| {
        w.write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        reply(r, code)
    };
    reply(&mut r, "220");
    cmd("EHLO client.test", &mut r, "250");
    cmd(&format!("MAIL FROM:{from}"), &mut r, "250");
    for rcpt in rcpts {
        cmd(&format!("RCPT TO:{rcpt}"), &mut r, "250");
    }
    cmd("DATA", &mut r, "354");
    let done = cmd(&format!("{body}."), &mut r, "250");
    cmd("QUIT", &mut r, "221");
    // "250 2.0.0 c6cf3932 Message accepted for delivery"
    let id = done.split_whitespace().nth(2).expect("a message id");
    u32::from_str_radix(id, 16).expect("a hex message id")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[test]
fn a_spool_written_by_opensmtpd_6_8_loads_intact() {
    if common::skip_unless_root("a_spool_written_by_opensmtpd_6_8_loads_intact") {
        return;
    }
    let reference = reference_smtpd();
    if !reference.exists() {
        eprintln!(
            "note: a_spool_written_by_opensmtpd_6_8_loads_intact: skipped, {} is missing \
             (mk/opensmtpd-ref.sh fetches it, as root on Debian)",
            reference.display()
        );
        return;
    }
    for user in ["opensmtpd", "opensmtpq"] {
        assert!(
            matches!(smtpd::sys::process::getpwnam(user), Ok(Some(_))),
            "user {user} is missing: run mk/opensmtpd-ref.sh as root"
        );
    }
    let dir = common::TestDir::new("queue-compat");
    let spool = dir.spool();
    std::fs::create_dir(&spool).expect("mkdir spool");
    std::fs::set_permissions(&spool, std::os::unix::fs::PermissionsExt::from_mode(0o711))
        .expect("chmod spool");
    let port = dir.port;
    // Mail for remote.test relayed to a smarthost that is not there, mail
    // for local.test delivered by a command; both agents paused (-P), so
    // that everything stays queued as it was received.
    let conf = format!(
        "table al {{ carol = root }}\n\
         listen on 127.0.0.1 port {port} tag TAGGED hostname mx.test\n\
         action \"relay\" relay host smtp://127.0.0.1:{}\n\
         action \"local\" mda \"/bin/cat\" alias <al>\n\
         match from any for domain \"remote.test\" action \"relay\"\n\
         match from any for domain \"local.test\" action \"local\"\n",
        closed_port()
    );
    std::fs::write(dir.conf(), conf).expect("write smtpd.conf");
    let log = dir.path.join("opensmtpd.log");

    let before = now();
    let mut daemon = start_reference(&reference, &spool, &dir.conf(), &log);
    let up = common::poll_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let stderr = || std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    assert!(up, "OpenSMTPD 6.8 did not start:\n{}", stderr());

    let dsn = send(
        port,
        "<alice@sender.test> RET=HDRS ENVID=envid-68",
        &["<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@orig.test"],
        "Subject: dsn\r\n\r\nwith DSN\r\n",
    );
    let bounce = send(
        port,
        "<>",
        &["<dave@remote.test>", "<erin@remote.test>"],
        "Subject: null sender\r\n\r\ntwo recipients\r\n",
    );
    let local = send(
        port,
        "<frank@sender.test>",
        &["<carol@local.test>"],
        "Subject: local\r\n\r\n..dot-stuffed line\r\n",
    );
    assert!(daemon.stop(), "OpenSMTPD 6.8 did not stop:\n{}", stderr());
    let after = now();

    // What it left: nothing half-received, each message in its bucket.
    let incoming = std::fs::read_dir(spool.join("incoming")).expect("incoming/");
    assert_eq!(incoming.count(), 0);
    for msgid in [dsn, bounce, local] {
        let msgdir = spool.join(format!("queue/{:02x}/{msgid:08x}", msgid >> 24));
        assert!(msgdir.join("message").is_file(), "{}", msgdir.display());
    }

    // The walk at start, as our queue process does it.
    let dispatchers: BTreeSet<String> = ["relay".into(), "local".into()].into();
    let mut q = queue_open("fs", &spool, QueueFlags::QUEUE_EVPCACHE, Some(dispatchers))
        .expect("queue_open");
    let mut by_msgid: BTreeMap<u32, Vec<Envelope>> = BTreeMap::new();
    loop {
        match queue_envelope_walk(&mut q) {
            QueueWalk::Done => break,
            QueueWalk::Skip => panic!("an envelope of OpenSMTPD 6.8 did not load"),
            QueueWalk::Envelope(ep) => by_msgid.entry(evpid_to_msgid(ep.id)).or_default().push(*ep),
        }
    }
    assert_eq!(
        by_msgid.keys().copied().collect::<BTreeSet<_>>(),
        [dsn, bounce, local].into()
    );
    let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
    for evps in by_msgid.values_mut() {
        evps.sort_by(|a, b| a.rcpt.user.cmp(&b.rcpt.user));
        for ep in evps.iter() {
            assert_eq!(ep.version, 3);
            assert_eq!(ep.tag, "TAGGED");
            assert_eq!(ep.smtpname, "mx.test");
            assert_eq!(ep.helo, "client.test");
            assert!(!ep.hostname.is_empty());
            assert_eq!(ep.ss, PeerAddr::Inet(localhost));
            assert!(
                (before..=after).contains(&ep.creation),
                "ctime {}",
                ep.creation
            );
            assert_eq!((ep.lasttry, ep.lastbounce, ep.retry), (0, 0, 0));
            assert_eq!(ep.ttl, 0);
            assert!(ep.errorline.is_empty());
            assert_eq!(ep.dest, ep.rcpt);
        }
    }

    let ep = &by_msgid[&dsn][0];
    assert_eq!(ep.dispatcher, "relay");
    assert_eq!(ep.type_, DeliveryType::Mta);
    assert_eq!(ep.sender, Mailaddr::new("alice", "sender.test"));
    assert_eq!(ep.rcpt, Mailaddr::new("bob", "remote.test"));
    assert_eq!(ep.dsn_ret, Some(DsnRet::Hdrs));
    assert_eq!(ep.dsn_envid, "envid-68");
    assert_eq!(
        ep.dsn_notify,
        DsnNotify::DSN_SUCCESS | DsnNotify::DSN_FAILURE
    );
    // 6.8 wrote the bare address; 7.x wants the address type with it.
    assert_eq!(ep.dsn_orcpt, "rfc822;bob@orig.test");
    let path = spool.join(format!("queue/{:02x}/{dsn:08x}/{:016x}", dsn >> 24, ep.id));
    let text = std::fs::read_to_string(&path).expect("read the envelope");
    assert!(text.contains("\ndsn-orcpt: bob@orig.test\n"), "{text}");
    // Apart from that line, ours writes what 6.8 wrote, byte for byte.
    assert_eq!(
        envelope_dump_buffer(ep).expect("dump"),
        text.replace(
            "dsn-orcpt: bob@orig.test",
            "dsn-orcpt: rfc822;bob@orig.test"
        )
    );

    let evps = &by_msgid[&bounce];
    assert_eq!(evps.len(), 2);
    for (ep, user) in evps.iter().zip(["dave", "erin"]) {
        assert_eq!(ep.sender, Mailaddr::default());
        assert_eq!(ep.rcpt, Mailaddr::new(user, "remote.test"));
        assert_eq!(ep.dsn_notify, DsnNotify::empty());
        assert_eq!(ep.dsn_ret, None);
        assert!(ep.dsn_orcpt.is_empty() && ep.dsn_envid.is_empty());
    }

    let ep = &by_msgid[&local][0];
    assert_eq!(ep.dispatcher, "local");
    assert_eq!(ep.type_, DeliveryType::Mda);
    assert_eq!(ep.sender, Mailaddr::new("frank", "sender.test"));
    assert_eq!(ep.rcpt, Mailaddr::new("carol", "local.test"));
    assert_eq!(ep.mda_user, "root");
    assert!(ep.mda_exec.is_empty() && ep.mda_subaddress.is_empty());

    // The data, as a delivery agent gets it: 6.8's Received: line, the
    // headers it adds, then the message, its dots unstuffed.
    for (msgid, subject, body) in [
        (dsn, "Subject: dsn\n", "\n\nwith DSN\n"),
        (bounce, "Subject: null sender\n", "\n\ntwo recipients\n"),
        (local, "Subject: local\n", "\n\n.dot-stuffed line\n"),
    ] {
        let mut data = String::new();
        queue_message_fd_r(&mut q, msgid)
            .expect("the message data")
            .read_to_string(&mut data)
            .expect("read it");
        assert!(data.starts_with("Received: from client.test"), "{data}");
        assert!(data.contains(&format!(" id {msgid:08x}")), "{data}");
        assert!(data.contains(subject) && data.ends_with(body), "{data}");
    }

    // A discover walks the same envelopes.
    let mut w = MessageWalk::new(bounce);
    let mut n = 0;
    while let QueueWalk::Envelope(_) | QueueWalk::Skip = queue_message_walk(&mut q, &mut w) {
        n += 1;
    }
    assert_eq!(n, 2);

    // Delivered by us: the message goes with its last envelope.
    for ep in &by_msgid[&bounce] {
        assert!(queue_envelope_delete(&mut q, ep.id));
    }
    let msgdir = spool.join(format!("queue/{:02x}/{bounce:08x}", bounce >> 24));
    assert!(!msgdir.exists());
}
