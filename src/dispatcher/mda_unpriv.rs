//! mda_unpriv.c: the delivery child once the parent has dropped to the
//! user's privileges: the delivery command, expanded, in the environment
//! other MTAs give, through /bin/sh (OpenSMTPD mda_unpriv.c 1.9).
//!
//! Its standard output and error are the delivery's capture file, whose
//! last line becomes the delivery's error message: failures are printed
//! there as errx(3) and perror(3) would, and the child leaves with
//! _exit(2) (a forked child must not run its parent's exit handlers).

use std::io::Write;

use crate::config::config::{DispatcherLocal, Smtpd};
use crate::defines::LINE_MAX;
use crate::dispatcher::mda::Deliver;
use crate::dispatcher::mda_variables::mda_expand_format;
use crate::sys::process::{execve, exit_now};
use crate::sys::unistd::PATH_DEFPATH;
use crate::util::log::strerror;

/// errx(3) in the delivery child: `smtpd: msg` on stderr, then _exit.
/// The child is a fork of the parent process, whose program name is
/// smtpd.
pub(crate) fn mda_errx(status: i32, msg: &str) -> ! {
    let _ = std::io::stderr().write_all(format!("smtpd: {msg}\n").as_bytes());
    exit_now(status)
}

/// perror(3) in the delivery child.
pub(crate) fn mda_perror(what: &str, e: &std::io::Error) {
    let _ = std::io::stderr().write_all(format!("{what}: {}\n", strerror(e)).as_bytes());
}

/// Runs the delivery of `deliver` for the local action `dsp` and never
/// returns: the command is `deliver.mda_exec` (a `|command` of a .forward
/// file or an alias) if set, else the action's; it is expanded (see
/// mda_expand_format), then wrapped in the action's mda wrapper if it has
/// one, and run with `/bin/sh -c`.
///
/// `conf` is the configuration, `env()` in the daemon: C reads the
/// wrappers (env->sc_mda_wrappers) and the sub-address delimiter from its
/// global, we take them from here so that tests need no global.
/// `pw_dir` becomes HOME; `pw_name` is unused, as in C, where LOGNAME
/// and USER are the recipient's user name even under `user`.
pub fn mda_unpriv(
    conf: &Smtpd,
    dsp: &DispatcherLocal,
    deliver: &Deliver,
    _pw_name: &str,
    pw_dir: &str,
) -> ! {
    let command = match mda_unpriv_command(conf, dsp, deliver) {
        Ok(c) => c,
        Err(msg) => mda_errx(1, &msg),
    };
    let mda_environ = mda_unpriv_environ(deliver, pw_dir);
    // A command without shell syntax, such as the helpers' own command
    // lines, is run directly: one process less (C always forks a shell),
    // and the agent is the process the parent watches, which dies with
    // it (forkmda) instead of living on as the shell's child.
    if let Some(argv) = mda_simple_argv(&command) {
        let e = execve(&argv[0], &argv, &mda_environ);
        mda_perror(&argv[0], &e);
        // What the shell answers for a command it cannot run.
        exit_now(127)
    }
    let argv = ["/bin/sh".to_string(), "-c".to_string(), command];
    let e = execve("/bin/sh", &argv, &mda_environ);
    mda_perror("execle", &e);
    exit_now(1)
}

/// The argument vector of a command line that means the same to the
/// shell as to a plain split at blanks: words of characters the shell
/// gives no meaning to, or double-quoted parts holding no `$`, `` ` ``,
/// `\` or newline; the first word an absolute or relative path (no PATH
/// search, no builtin, no assignment). None for anything else, which
/// goes to /bin/sh.
pub fn mda_simple_argv(command: &str) -> Option<Vec<String>> {
    let mut argv: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in command.chars() {
        if quoted {
            match c {
                '"' => quoted = false,
                '$' | '`' | '\\' | '\n' => return None,
                c => word.get_or_insert_with(String::new).push(c),
            }
            continue;
        }
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    argv.push(w);
                }
            }
            '"' => {
                quoted = true;
                word.get_or_insert_with(String::new);
            }
            c if c.is_ascii_alphanumeric() || "-_./:,+@%=".contains(c) => {
                word.get_or_insert_with(String::new).push(c)
            }
            _ => return None,
        }
    }
    if quoted {
        return None;
    }
    if let Some(w) = word {
        argv.push(w);
    }
    let first = argv.first()?;
    if !first.contains('/') || first.contains('=') {
        return None;
    }
    Some(argv)
}

/// The command line given to /bin/sh: expanded, and wrapped in the
/// action's mda wrapper if it has one (its `%{mda}` being the expanded
/// command). Errors are errx's messages.
pub fn mda_unpriv_command(
    conf: &Smtpd,
    dsp: &DispatcherLocal,
    deliver: &Deliver,
) -> Result<String, String> {
    let delim = conf.sc_subaddressing_delim;
    // OpenSMTPD dereferences the NULL command of an mbox action that has
    // a wrapper and crashes; say so instead.
    let mda_command = if deliver.mda_exec.is_empty() {
        dsp.command()
            .ok_or_else(|| "no mda command for this action".to_string())?
    } else {
        deliver.mda_exec.clone()
    };
    if mda_command.len() >= LINE_MAX {
        return Err("mda command line too long".into());
    }
    let mda_command = mda_expand_format(&mda_command, deliver, &deliver.userinfo, None, delim)
        .map_err(|e| format!("mda command line could not be expanded: {e}"))?;

    let Some(wrapper) = &dsp.mda_wrapper else {
        return Ok(mda_command);
    };
    let Some(mda_command_wrap) = conf.sc_mda_wrappers.get(wrapper) else {
        return Err(format!("could not find wrapper {wrapper}"));
    };
    if mda_command_wrap.len() >= LINE_MAX {
        return Err("mda command line too long".into());
    }
    mda_expand_format(
        mda_command_wrap,
        deliver,
        &deliver.userinfo,
        Some(&mda_command),
        delim,
    )
    .map_err(|e| format!("mda command line could not be expanded: {e}"))
}

/// The whole environment of the delivery command, in C's order: "setup
/// environment similar to other MTA". EXTENSION only with a sub-address;
/// SENDER empty for the null sender (or any sender without a local part).
pub fn mda_unpriv_environ(deliver: &Deliver, pw_dir: &str) -> Vec<String> {
    let mut env = vec![
        format!("PATH={PATH_DEFPATH}"),
        format!("DOMAIN={}", deliver.rcpt.domain),
        format!("HOME={pw_dir}"),
        format!(
            "ORIGINAL_RECIPIENT={}@{}",
            deliver.rcpt.user, deliver.rcpt.domain
        ),
        format!("RECIPIENT={}@{}", deliver.dest.user, deliver.dest.domain),
        "SHELL=/bin/sh".to_string(),
        format!("LOCAL={}", deliver.rcpt.user),
        format!("LOGNAME={}", deliver.userinfo.username),
        format!("USER={}", deliver.userinfo.username),
    ];
    if deliver.sender.user.is_empty() {
        env.push("SENDER=".to_string());
    } else {
        env.push(format!(
            "SENDER={}@{}",
            deliver.sender.user, deliver.sender.domain
        ));
    }
    if !deliver.mda_subaddress.is_empty() {
        env.push(format!("EXTENSION={}", deliver.mda_subaddress));
    }
    env
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::config::{config_default_with, LocalMethod};
    use crate::sys::process::{alarm, dup2, fork, waitpid, Fork, WaitStatus};
    use crate::table::table::Userinfo;
    use crate::util::mailaddr::Mailaddr;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    /// A fresh directory for one test.
    pub(crate) fn test_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smtpd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An executable shell script.
    pub(crate) fn write_script(path: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs `f`, which must not return, in a forked child whose stderr
    /// goes to `dir/stderr`; returns how it ended and what it printed.
    /// The child of this multi-threaded harness only sets things up and
    /// execs or exits; the alarm ends it should a lock that another
    /// thread held at fork time block it. A script that another test's
    /// fork still held open for writing gives ETXTBSY: then try again.
    pub(crate) fn run_in_child(dir: &Path, f: impl Fn()) -> (WaitStatus, String) {
        assert!(
            std::env::var_os("SMTPD_TEST_ALONE").is_some(),
            "a test that forks must begin with sys::testing::run_alone()"
        );
        let errpath = dir.join("stderr");
        for _ in 0..5 {
            let err = std::fs::File::create(&errpath).unwrap();
            match fork().unwrap() {
                Fork::Child => {
                    alarm(20);
                    if dup2(err.as_raw_fd(), 2).is_err() {
                        exit_now(98);
                    }
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&f));
                    exit_now(99)
                }
                Fork::Parent(pid) => {
                    drop(err);
                    let status = waitpid(pid).unwrap();
                    let stderr = std::fs::read_to_string(&errpath).unwrap();
                    if !stderr.contains("Text file busy") {
                        return (status, stderr);
                    }
                }
            }
        }
        panic!("ETXTBSY five times");
    }

    /// A NUL-separated /proc file as a list.
    pub(crate) fn nul_list(path: &Path) -> Vec<String> {
        let raw = std::fs::read(path).unwrap();
        let s = String::from_utf8(raw).unwrap();
        let mut v: Vec<String> = s.split('\0').map(String::from).collect();
        assert_eq!(v.pop().as_deref(), Some(""), "not NUL-terminated");
        v
    }

    fn deliver() -> Deliver {
        Deliver {
            dispatcher: "local".into(),
            sender: Mailaddr::new("alice", "example.com"),
            rcpt: Mailaddr::new("Bob+Lists", "example.org"),
            dest: Mailaddr::new("bob", "example.net"),
            mda_subaddress: "Lists".into(),
            mda_exec: String::new(),
            userinfo: Userinfo {
                username: "bob".into(),
                directory: "/home/bob".into(),
                uid: 1000,
                gid: 1000,
            },
        }
    }

    fn conf() -> Smtpd {
        config_default_with("mx.example.org", &[])
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// A command that records the shell's argv and environment as the
    /// kernel got them from execve.
    fn recorder(dir: &Path) -> String {
        let d = dir.display();
        format!("cat /proc/$$/cmdline > {d}/cmdline; cat /proc/$$/environ > {d}/environ")
    }

    #[test]
    fn environment_is_that_of_mda_unpriv_c() {
        let d = deliver();
        assert_eq!(
            mda_unpriv_environ(&d, "/var/vmail"),
            s(&[
                &format!("PATH={PATH_DEFPATH}"),
                "DOMAIN=example.org",
                "HOME=/var/vmail",
                "ORIGINAL_RECIPIENT=Bob+Lists@example.org",
                "RECIPIENT=bob@example.net",
                "SHELL=/bin/sh",
                "LOCAL=Bob+Lists",
                "LOGNAME=bob",
                "USER=bob",
                "SENDER=alice@example.com",
                "EXTENSION=Lists",
            ])
        );
        let mut d = deliver();
        d.sender = Mailaddr::default();
        d.mda_subaddress.clear();
        let env = mda_unpriv_environ(&d, "/home/bob");
        assert_eq!(env.len(), 10);
        assert_eq!(env.last().unwrap(), "SENDER=");
        assert!(!env.iter().any(|e| e.starts_with("EXTENSION=")));
    }

    #[test]
    fn mda_exec_runs_expanded_under_sh_with_exactly_that_environment() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "mda_exec_runs_expanded_under_sh_with_exactly_that_environment",
        ) {
            return;
        }
        let dir = test_dir("mda-unpriv-exec");
        let mut d = deliver();
        d.mda_exec = format!(
            "{}; echo %{{rcpt.user:strip|lowercase}} > {}/out",
            recorder(&dir),
            dir.display()
        );
        // The action's own command must not run: mda_exec replaces it.
        let dsp = DispatcherLocal::new(LocalMethod::Mda("touch /nonexistent/x".into()));
        let c = conf();
        let (status, stderr) = run_in_child(&dir, || {
            mda_unpriv(&c, &dsp, &d, "vmail", "/var/vmail");
        });
        assert_eq!((status, stderr.as_str()), (WaitStatus::Exited(0), ""));
        let expanded = format!("{}; echo bob > {}/out", recorder(&dir), dir.display());
        assert_eq!(
            nul_list(&dir.join("cmdline")),
            s(&["/bin/sh", "-c", &expanded])
        );
        assert_eq!(
            nul_list(&dir.join("environ")),
            mda_unpriv_environ(&d, "/var/vmail")
        );
        assert!(nul_list(&dir.join("environ")).contains(&"HOME=/var/vmail".to_string()));
        assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "bob\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn action_command_runs_when_there_is_no_mda_exec_and_its_status_is_the_childs() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "action_command_runs_when_there_is_no_mda_exec_and_its_status_is_the_childs",
        ) {
            return;
        }
        let dir = test_dir("mda-unpriv-action");
        write_script(
            &dir.join("mail.mda"),
            &format!("printf '%s\\n' \"$@\" > {}/args; exit 75", dir.display()),
        );
        let dsp = DispatcherLocal::new(LocalMethod::Mda(
            "deliver %{rcpt.user} %{sender:uppercase}".into(),
        ));
        let d = deliver();
        let c = conf();
        let libexec = dir.clone();
        let (status, stderr) = run_in_child(&dir, || {
            std::env::set_var("SMTPD_LIBEXEC", &libexec);
            mda_unpriv(&c, &dsp, &d, "bob", "/home/bob");
        });
        assert_eq!((status, stderr.as_str()), (WaitStatus::Exited(75), ""));
        assert_eq!(
            std::fs::read_to_string(dir.join("args")).unwrap(),
            "deliver Bob+Lists ALICE@EXAMPLE.COM\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrapper_runs_with_the_expanded_command_as_its_mda() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "wrapper_runs_with_the_expanded_command_as_its_mda",
        ) {
            return;
        }
        let dir = test_dir("mda-unpriv-wrapper");
        let dd = dir.display();
        let mut c = conf();
        c.sc_mda_wrappers.insert(
            "w".into(),
            format!(
                "{}; echo wrapped %{{rcpt.domain[0:-4]:uppercase}} > {dd}/wrapped; %{{mda}}",
                recorder(&dir)
            ),
        );
        let mut dsp = DispatcherLocal::new(LocalMethod::Mbox);
        dsp.mda_wrapper = Some("w".into());
        let mut d = deliver();
        d.mda_exec = format!("echo inner %{{dest.user}} > {dd}/inner");
        let (status, stderr) = run_in_child(&dir, || {
            mda_unpriv(&c, &dsp, &d, "bob", "/home/bob");
        });
        assert_eq!((status, stderr.as_str()), (WaitStatus::Exited(0), ""));
        let inner = format!("echo inner bob > {dd}/inner");
        assert_eq!(
            nul_list(&dir.join("cmdline")),
            s(&[
                "/bin/sh",
                "-c",
                &format!(
                    "{}; echo wrapped EXAMPLE > {dd}/wrapped; {inner}",
                    recorder(&dir)
                )
            ])
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("wrapped")).unwrap(),
            "wrapped EXAMPLE\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("inner")).unwrap(),
            "inner bob\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_are_printed_as_errx_and_exit_1() {
        if !crate::sys::testing::run_alone(
            module_path!(),
            "failures_are_printed_as_errx_and_exit_1",
        ) {
            return;
        }
        let dir = test_dir("mda-unpriv-errors");
        let c = conf();
        let mut d = deliver();
        let mut dsp = DispatcherLocal::new(LocalMethod::Mda("x".into()));
        dsp.mda_wrapper = Some("nosuch".into());
        let run = |dsp: &DispatcherLocal, d: &Deliver| {
            run_in_child(&dir, || {
                mda_unpriv(&c, dsp, d, "bob", "/home/bob");
            })
        };
        assert_eq!(
            run(&dsp, &d),
            (
                WaitStatus::Exited(1),
                "smtpd: could not find wrapper nosuch\n".to_string()
            )
        );
        d.mda_exec = "deliver %{nosuch}".into();
        let dsp = DispatcherLocal::new(LocalMethod::Mda("x".into()));
        assert_eq!(
            run(&dsp, &d),
            (
                WaitStatus::Exited(1),
                "smtpd: mda command line could not be expanded: \
                 unknown format specifier %{nosuch}\n"
                    .to_string()
            )
        );
        d.mda_exec = "x".repeat(LINE_MAX);
        assert_eq!(
            run(&dsp, &d),
            (
                WaitStatus::Exited(1),
                "smtpd: mda command line too long\n".to_string()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_errors_say_why() {
        let mut c = conf();
        let mut d = deliver();
        // An mbox action reaches mda_unpriv only through a wrapper.
        let mut dsp = DispatcherLocal::new(LocalMethod::Mbox);
        dsp.mda_wrapper = Some("w".into());
        c.sc_mda_wrappers.insert("w".into(), "wrap %{mda}".into());
        assert_eq!(
            mda_unpriv_command(&c, &dsp, &d).unwrap_err(),
            "no mda command for this action"
        );
        d.mda_exec = "deliver %{mda}".into();
        assert_eq!(
            mda_unpriv_command(&c, &dsp, &d).unwrap_err(),
            "mda command line could not be expanded: %{mda} is only available in mda wrappers"
        );
        d.mda_exec = "deliver".into();
        c.sc_mda_wrappers.insert("w".into(), "x".repeat(LINE_MAX));
        assert_eq!(
            mda_unpriv_command(&c, &dsp, &d).unwrap_err(),
            "mda command line too long"
        );
        c.sc_mda_wrappers
            .insert("w".into(), "wrap %{mda} %{bad".into());
        assert_eq!(
            mda_unpriv_command(&c, &dsp, &d).unwrap_err(),
            "mda command line could not be expanded: unterminated format specifier \"%{bad\""
        );
        // The configured sub-address delimiter reaches strip.
        c.sc_subaddressing_delim = '-';
        d.rcpt.user = "bob-lists".into();
        d.mda_exec = "deliver %{rcpt.user:strip}".into();
        dsp.mda_wrapper = None;
        assert_eq!(mda_unpriv_command(&c, &dsp, &d).unwrap(), "deliver bob");
    }

    #[test]
    fn only_commands_without_shell_syntax_run_without_the_shell() {
        let v = |c: &str| mda_simple_argv(c);
        assert_eq!(
            v("/usr/libexec/smtpd/mail.maildir -j \"/home/bob/Mail Dir\""),
            Some(s(&[
                "/usr/libexec/smtpd/mail.maildir",
                "-j",
                "/home/bob/Mail Dir"
            ]))
        );
        assert_eq!(
            v("  /x/mail.lmtp   -d 127.0.0.1:24 -r "),
            Some(s(&["/x/mail.lmtp", "-d", "127.0.0.1:24", "-r"]))
        );
        assert_eq!(v("/x/a\"b c\"d"), Some(s(&["/x/ab cd"])));
        assert_eq!(v("/x/mail.mda \"\""), Some(s(&["/x/mail.mda", ""])));
        for shell in [
            "procmail -f x",
            "/bin/cat | /bin/sh",
            "/bin/cat > /tmp/x",
            "/bin/cat; /bin/true",
            "/bin/echo $HOME",
            "/x/y \"$HOME\"",
            "/x/y \"`id`\"",
            "/x/y \"a\\\"b\"",
            "/x/y 'single'",
            "/x/y ~/Maildir",
            "/x/y *",
            "/x/y # comment",
            "FOO=1 /x/y",
            "/x/y \"unterminated",
            "/x/y (sub)",
            "/x/y &",
            "",
        ] {
            assert_eq!(v(shell), None, "{shell}");
        }
    }
}
