//! SMTP helpers of the tests that run the real daemon: start it on its
//! TestDir's port, talk to it as a client, look at its spool.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    let resolv = dir.path.join("resolv.conf");
    fs::write(&resolv, "lookup file\n").unwrap();
    let mut args = dir.foreground_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut d = Daemon::start_with(dir, &smtpd_bin(), &args, |cmd| {
        cmd.env("ASR_CONFIG", &resolv);
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

/// One transaction; `body` ends with CRLF, the dot line is added.
pub fn send_message(c: &mut Client, from: &str, to: &str, body: &str) -> String {
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{from}>"))), "250");
    assert_eq!(code(&c.cmd(&format!("RCPT TO:<{to}>"))), "250");
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(body.as_bytes());
    c.send(b".\r\n");
    c.reply().remove(0)
}
