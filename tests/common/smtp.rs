//! SMTP helpers of the tests that run the real daemon: start it on its
//! TestDir's port, talk to it as a client, look at its spool.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{poll_until, smtpd_bin, Daemon, TestDir};

/// A daemon on the TestDir's port, resolving names from /etc/hosts only
/// (no name server is asked: tests run without one).
pub fn start(dir: &TestDir, conf: Option<&str>) -> Daemon {
    start_with_args(dir, conf, &[])
}

/// start(), with more options for smtpd.
pub fn start_with_args(dir: &TestDir, conf: Option<&str>, extra: &[&str]) -> Daemon {
    start_with_env(dir, conf, extra, &[])
}

/// start_with_args(), with more variables in smtpd's environment.
pub fn start_with_env(
    dir: &TestDir,
    conf: Option<&str>,
    extra: &[&str],
    vars: &[(&str, &Path)],
) -> Daemon {
    if let Some(c) = conf {
        fs::write(dir.conf(), c.replace("@PORT@", &dir.port.to_string())).unwrap();
    }
    let mut args = dir.foreground_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut d = Daemon::start_with(dir, &smtpd_bin(), &args, |cmd| {
        for (k, v) in vars {
            cmd.env(k, v);
        }
    });
    d.wait_ready(Duration::from_secs(10));
    assert!(
        poll_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            dir.port
        ))
        .is_ok()),
        "the listener does not accept:\n{}",
        d.stderr()
    );
    d
}

/// A client that reads whole replies (multi-line ones too).
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// The next reply's lines.
    pub fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).unwrap_or(0);
            assert!(n > 0, "connection closed after {lines:?}");
            let l = l.trim_end().to_string();
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if last {
                return lines;
            }
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    /// Sends a command, returns the first line of its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply().remove(0)
    }
}

pub fn code(reply: &str) -> &str {
    &reply[..3]
}

/// Every message directory of the spool's queue/, with its files.
pub fn queued(spool: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(buckets) = fs::read_dir(spool.join("queue")) else {
        return out;
    };
    for b in buckets.flatten() {
        for m in fs::read_dir(b.path()).into_iter().flatten().flatten() {
            let mut files: Vec<String> = fs::read_dir(m.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            out.push((m.path(), files));
        }
    }
    out
}

/// Whether the spool's queue/ holds no message any more (the empty
/// bucket directories a message leaves do not count).
pub fn queue_is_empty(spool: &Path) -> bool {
    queued(spool).iter().all(|(_, files)| files.is_empty())
}

/// One transaction; `body` ends with CRLF, the dot line is added.
pub fn send_message(c: &mut Client, from: &str, to: &str, body: &str) -> String {
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{from}>"))), "250");
    assert_eq!(code(&c.cmd(&format!("RCPT TO:<{to}>"))), "250");
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(body.as_bytes());
    c.send(b".\r\n");
    c.reply().remove(0)
}

/// What became of the messages a client sent while the daemon was
/// killed under it, by message number.
#[derive(Default)]
pub struct Outcome {
    /// Acknowledged with 250: (number, queue id).
    pub accepted: Vec<(usize, String)>,
    /// The whole message was sent, but no reply came: it may or may not
    /// have been committed (at-least-once: the client will send again).
    pub in_doubt: Vec<usize>,
    /// The session died before the end of the data: never committed.
    pub failed: Vec<usize>,
}

/// One message from `from` to `to`, numbered `n` (`Subject: nN`, body
/// `message N`): what became of it.
pub fn try_message(port: u16, n: usize, from: &str, to: &str, out: &mut Outcome) {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        std::thread::sleep(Duration::from_millis(20));
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(r) = s.try_clone() else {
        return;
    };
    let mut c = Client {
        r: BufReader::new(r),
        w: s,
    };
    let mut data_sent = false;
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.reply();
        c.cmd("EHLO client.example");
        assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{from}>"))), "250");
        assert_eq!(code(&c.cmd(&format!("RCPT TO:<{to}>"))), "250");
        assert_eq!(code(&c.cmd("DATA")), "354");
        c.send(format!("Subject: n{n}\r\n\r\nmessage {n}\r\n.\r\n").as_bytes());
        data_sent = true;
        c.reply().remove(0)
    }));
    match reply {
        Ok(r) if r.starts_with("250 ") => out
            .accepted
            .push((n, r.split(' ').nth(2).unwrap().to_string())),
        _ if data_sent => out.in_doubt.push(n),
        _ => out.failed.push(n),
    }
}

/// Messages numbered from `first` on, one session each, until `stop`.
pub fn stream_messages(port: u16, stop: Instant, first: usize, from: &str, to: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut n = first;
    while Instant::now() < stop {
        try_message(port, n, from, to, &mut out);
        n += 1;
    }
    out
}

/// SIGKILL to the daemon's parent and every process of its tree at once,
/// as a crash would.
pub fn sigkill_tree(d: Daemon) {
    let tree = super::descendants_of(d.pid);
    let _ = smtpd::sys::process::kill(d.pid, libc::SIGKILL);
    for p in tree {
        let _ = smtpd::sys::process::kill(p.pid, libc::SIGKILL);
    }
    drop(d);
}
