//! mda_mbox.c: delivery to the user's mbox through mail.local(8), and the
//! creation of that mailbox while the delivery child is still root
//! (OpenSMTPD mda_mbox.c 1.3).

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use crate::defines::{LINE_MAX, PATH_MAILDIR};
use crate::dispatcher::mda::Deliver;
use crate::dispatcher::mda_unpriv::{mda_errx, mda_perror};
use crate::pathnames::path_libexec;
use crate::sys::process::{execve, exit_now};
use crate::sys::unistd::PATH_DEFPATH;
use crate::util::log::strerror;

/// sysexits.h: a temporary failure, to be retried.
const EX_TEMPFAIL: i32 = 75;

/// Runs `mail.local -f SENDER USER` from the libexec directory (PATH_MAILLOCAL)
/// as root, with a fixed environment, and never returns; the null sender
/// is MAILER-DAEMON.
pub fn mda_mbox(deliver: &Deliver) -> ! {
    let sender = if deliver.sender.user.is_empty() && deliver.sender.domain.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        format!("{}@{}", deliver.sender.user, deliver.sender.domain)
    };
    if sender.len() >= LINE_MAX {
        mda_errx(EX_TEMPFAIL, "sender address too long");
    }
    let envp = [
        "HOME=/".to_string(),
        format!("PATH={PATH_DEFPATH}"),
        "LOGNAME=root".to_string(),
        "USER=root".to_string(),
    ];
    let mail_local = format!("{}/mail.local", path_libexec());
    let argv = [
        mail_local.clone(),
        "-f".to_string(),
        sender,
        deliver.userinfo.username.clone(),
    ];
    let e = execve(&mail_local, &argv, &envp);
    mda_perror("execl", &e);
    exit_now(EX_TEMPFAIL)
}

/// Creates the user's mailbox, PATH_MAILDIR/USER, if it does not exist:
/// empty, owned by the user, mode 0600. Run as root before the privilege
/// drop; a failure prints the reason and exits EX_TEMPFAIL.
pub fn mda_mbox_init(deliver: &Deliver) {
    if let Err(msg) = mda_mbox_init_in(PATH_MAILDIR, deliver) {
        mda_errx(EX_TEMPFAIL, &msg);
    }
}

/// mda_mbox_init in directory `maildir`; Err holds errx's message.
pub fn mda_mbox_init_in(maildir: &str, deliver: &Deliver) -> Result<(), String> {
    let path = format!("{maildir}/{}", deliver.userinfo.username);
    if path.len() >= LINE_MAX {
        return Err("mailbox pathname too long".into());
    }
    // O_CREAT|O_EXCL with mode 0: an existing mailbox, or a symbolic
    // link in its place, is left alone.
    let f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(format!("open: {}", strerror(&e))),
    };
    std::os::unix::fs::fchown(&f, Some(deliver.userinfo.uid), Some(deliver.userinfo.gid))
        .map_err(|e| format!("fchown: {}", strerror(&e)))?;
    // OpenSMTPD reports a failed fchmod as "fchown".
    f.set_permissions(Permissions::from_mode(0o600))
        .map_err(|e| format!("fchmod: {}", strerror(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::mda_unpriv::tests::{nul_list, run_in_child, test_dir, write_script};
    use crate::sys::process::WaitStatus;
    use crate::sys::unistd::geteuid;
    use crate::table::table::Userinfo;
    use crate::util::mailaddr::Mailaddr;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn deliver(sender: Mailaddr, uid: u32, gid: u32) -> Deliver {
        Deliver {
            dispatcher: "local".into(),
            sender,
            rcpt: Mailaddr::new("bob", "example.org"),
            dest: Mailaddr::new("bob", "example.org"),
            mda_subaddress: String::new(),
            mda_exec: String::new(),
            userinfo: Userinfo {
                username: "bob".into(),
                directory: "/home/bob".into(),
                uid,
                gid,
            },
        }
    }

    /// mda_mbox with a fake mail.local that records its arguments and
    /// environment; returns the exit status, stderr, argv and environ.
    fn run_mbox(tag: &str, sender: Mailaddr) -> (WaitStatus, String, Vec<String>, Vec<String>) {
        let dir = test_dir(tag);
        let dd = dir.display();
        write_script(
            &dir.join("mail.local"),
            &format!(
                "cat /proc/$$/cmdline > {dd}/cmdline; cat /proc/$$/environ > {dd}/environ; exit 0"
            ),
        );
        let d = deliver(sender, 1000, 1000);
        let libexec = dir.clone();
        let (status, stderr) = run_in_child(&dir, || {
            std::env::set_var("SMTPD_LIBEXEC", &libexec);
            mda_mbox(&d);
        });
        let argv = nul_list(&dir.join("cmdline"));
        let environ = nul_list(&dir.join("environ"));
        std::fs::remove_dir_all(&dir).unwrap();
        (status, stderr, argv, environ)
    }

    fn env_of_mda_mbox() -> Vec<String> {
        vec![
            "HOME=/".to_string(),
            format!("PATH={PATH_DEFPATH}"),
            "LOGNAME=root".to_string(),
            "USER=root".to_string(),
        ]
    }

    #[test]
    fn mail_local_gets_the_sender_and_user_and_a_fixed_environment() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "mail_local_gets_the_sender_and_user_and_a_fixed_environment",
        ) {
            return;
        }
        let (status, stderr, argv, environ) =
            run_mbox("mda-mbox-exec", Mailaddr::new("alice", "example.com"));
        assert_eq!((status, stderr.as_str()), (WaitStatus::Exited(0), ""));
        // The kernel runs a script as `interpreter script args...`.
        assert_eq!(argv.len(), 5);
        assert_eq!(argv[0], "/bin/sh");
        assert!(argv[1].ends_with("/mail.local"), "{argv:?}");
        assert_eq!(argv[2..], ["-f", "alice@example.com", "bob"]);
        assert_eq!(environ, env_of_mda_mbox());
    }

    #[test]
    fn null_sender_is_mailer_daemon_for_mail_local() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "null_sender_is_mailer_daemon_for_mail_local",
        ) {
            return;
        }
        let (status, _, argv, environ) = run_mbox("mda-mbox-null", Mailaddr::default());
        assert_eq!(status, WaitStatus::Exited(0));
        assert_eq!(argv[2..], ["-f", "MAILER-DAEMON", "bob"]);
        assert_eq!(environ, env_of_mda_mbox());
    }

    #[test]
    fn missing_mail_local_is_a_temporary_failure() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "missing_mail_local_is_a_temporary_failure",
        ) {
            return;
        }
        let dir = test_dir("mda-mbox-missing");
        let d = deliver(Mailaddr::default(), 1000, 1000);
        let libexec = dir.join("nosuchdir");
        let (status, stderr) = run_in_child(&dir, || {
            std::env::set_var("SMTPD_LIBEXEC", &libexec);
            mda_mbox(&d);
        });
        assert_eq!(
            (status, stderr.as_str()),
            (
                WaitStatus::Exited(EX_TEMPFAIL),
                "execl: No such file or directory\n"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn dir_owner(dir: &Path) -> (u32, u32) {
        let m = std::fs::metadata(dir).unwrap();
        (m.uid(), m.gid())
    }

    #[test]
    fn init_creates_the_mailbox_owned_by_the_user_mode_0600() {
        let dir = test_dir("mda-mbox-init");
        // As root, give it to someone else; otherwise to ourselves.
        let (uid, gid) = if geteuid() == 0 {
            (4242, 4343)
        } else {
            dir_owner(&dir)
        };
        let d = deliver(Mailaddr::default(), uid, gid);
        mda_mbox_init_in(dir.to_str().unwrap(), &d).unwrap();
        let m = std::fs::metadata(dir.join("bob")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.len(), 0);
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_leaves_an_existing_mailbox_alone() {
        let dir = test_dir("mda-mbox-exists");
        let mbox = dir.join("bob");
        std::fs::write(&mbox, "From alice\n").unwrap();
        std::fs::set_permissions(&mbox, Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&mbox).unwrap();
        let d = deliver(Mailaddr::default(), 4242, 4343);
        mda_mbox_init_in(dir.to_str().unwrap(), &d).unwrap();
        let after = std::fs::metadata(&mbox).unwrap();
        assert_eq!(std::fs::read_to_string(&mbox).unwrap(), "From alice\n");
        assert_eq!(after.mode(), before.mode());
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        // A symbolic link in its place is not followed.
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("bob2")).unwrap();
        let mut d2 = d.clone();
        d2.userinfo.username = "bob2".into();
        mda_mbox_init_in(dir.to_str().unwrap(), &d2).unwrap();
        assert!(!dir.join("elsewhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_failures_say_why() {
        if !crate::sys::testing::run_alone(module_path!(), "init_failures_say_why") {
            return;
        }
        let dir = test_dir("mda-mbox-init-fail");
        let d = deliver(Mailaddr::default(), 4242, 4343);
        let missing = dir.join("nosuchdir");
        assert_eq!(
            mda_mbox_init_in(missing.to_str().unwrap(), &d),
            Err("open: No such file or directory".into())
        );
        let mut long = d.clone();
        long.userinfo.username = "u".repeat(LINE_MAX);
        assert_eq!(
            mda_mbox_init_in(dir.to_str().unwrap(), &long),
            Err("mailbox pathname too long".into())
        );
        // mda_mbox_init itself exits EX_TEMPFAIL, here before it touches
        // PATH_MAILDIR.
        let (status, stderr) = run_in_child(&dir, || mda_mbox_init(&long));
        assert_eq!(
            (status, stderr.as_str()),
            (
                WaitStatus::Exited(EX_TEMPFAIL),
                "smtpd: mailbox pathname too long\n"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
