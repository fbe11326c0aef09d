//! A private dovecot LMTP server (Debian's dovecot-lmtpd, mk/deps.sh) for
//! the tests: its own configuration, listening on 127.0.0.1 and on a unix
//! socket, with the user alice in a passwd-file and her mail in a maildir,
//! all in the test's directory.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{poll_until, skip_unless_root};

const DOVECOT: &str = "/usr/sbin/dovecot";
/// nobody: who owns the maildirs.
const NOBODY: u32 = 65534;

/// A private dovecot, stopped when dropped.
pub struct Dovecot {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Dovecot {
    /// Starts dovecot in `dir` with the user alice; None (and a note) when
    /// the test cannot run here.
    pub fn start(test: &str, dir: &Path) -> Option<Dovecot> {
        if skip_unless_root(test) {
            return None;
        }
        if !Path::new(DOVECOT).exists() {
            eprintln!(
                "note: {test}: skipped, {DOVECOT} is missing \
                 (mk/deps.sh installs dovecot-core and dovecot-lmtpd, as root on Debian)"
            );
            return None;
        }
        let mail = dir.join("mail");
        fs::create_dir(&mail).expect("create mail/");
        std::os::unix::fs::chown(&mail, Some(NOBODY), Some(NOBODY)).expect("chown mail/");
        fs::write(
            dir.join("users"),
            format!(
                "alice:{{PLAIN}}secret:{NOBODY}:{NOBODY}::{}::\n",
                mail.display()
            ),
        )
        .expect("write users");
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "base_dir = {d}/dovecot\n\
             state_dir = {d}/dovecot-state\n\
             instance_name = smtpd-test-lmtp-{pid}-{port}\n\
             protocols = lmtp\n\
             listen = 127.0.0.1\n\
             log_path = {d}/dovecot.log\n\
             ssl = no\n\
             first_valid_uid = 1\n\
             auth_username_format = %Ln\n\
             mail_location = maildir:{d}/mail/%n\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\n\
             service lmtp {{\n\
               inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
               unix_listener lmtp {{\n    mode = 0666\n  }}\n\
             }}\n",
            pid = std::process::id(),
        );
        fs::write(dir.join("dovecot.conf"), conf).expect("write dovecot.conf");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let dovecot = Dovecot {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        let ready = poll_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && UnixStream::connect(dovecot.socket()).is_ok()
        });
        assert!(
            ready,
            "dovecot did not come up: {}",
            fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
        Some(dovecot)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("dovecot").join("lmtp")
    }

    pub fn inet(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The messages in a user's maildir new/.
    pub fn delivered(&self, user: &str) -> Vec<String> {
        let new = self.dir.join("mail").join(user).join("new");
        let Ok(entries) = fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .map(|e| fs::read_to_string(e.expect("entry").path()).expect("read message"))
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = smtpd::sys::process::kill(self.child.id() as i32, libc::SIGTERM);
        if !poll_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}
