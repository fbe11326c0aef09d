//! mail.mda.c: mail.mda(8), runs a command with the message on its
//! standard input and reports the command's exit status as its own
//! (OpenSMTPD mail.mda.c 1.1, as shipped in 7.8).
//!
//! C calls system(3); this is system(3) written out with src/sys, so the
//! parent and the child can each set their signals as system(3) does
//! while std's own SIGPIPE setting (ignored) is not passed on to the
//! command. Where we differ (PORTING.md and the man page): a command
//! killed by a signal is reported on standard error, not only by status.

use std::process::exit;

use smtpd::smtpd::EX_TEMPFAIL;
use smtpd::sys::event::{signal_default, signal_ignore};
use smtpd::sys::process::{execvp, exit_now, fork, waitpid, Fork, WaitStatus};
use smtpd::sys::unistd::geteuid;
use smtpd::util::getopt::{Getopt, Opt};

/// _PATH_BSHELL, the shell system(3) runs.
const PATH_BSHELL: &str = "/bin/sh";

/// The status system(3) gives a child whose shell could not be run.
const MDA_EXEC_FAILED: i32 = 127;

fn main() {
    // OpenSMTPD prints its name twice in these three messages; once here.
    if geteuid() == 0 {
        errx(1, "may not be executed as root");
    }
    let args: Vec<String> = std::env::args_os()
        .map(|a| {
            a.into_string()
                .unwrap_or_else(|_| errx(1, "argument is not valid UTF-8"))
        })
        .collect();
    let mut g = Getopt::new(&args, "");
    for opt in g.by_ref() {
        // C's getopt warns and the switch ignores the option.
        let (Opt::Unknown(c) | Opt::MissingArg(c) | Opt::Flag(c, _)) = opt;
        eprintln!("mail.mda: unknown option -- {c}");
    }
    let argv = g.operands();
    if argv.is_empty() {
        errx(1, "command required");
    }
    if argv.len() > 1 {
        errx(1, "only one command is supported");
    }
    exit(mda_system(&argv[0]));
}

/// system(3), then C's reading of its result: what the command exited
/// with, or EX_TEMPFAIL when there is no shell or no exit status to give.
fn mda_system(command: &str) -> i32 {
    // system(3) ignores these while it waits, so that a ^C reaches the
    // command only.
    let _ = signal_ignore(libc::SIGINT);
    let _ = signal_ignore(libc::SIGQUIT);
    let pid = match fork() {
        Ok(Fork::Child) => mda_system_child(command),
        Ok(Fork::Parent(pid)) => pid,
        Err(e) => errx(EX_TEMPFAIL, &e.to_string()),
    };
    match waitpid(pid) {
        Ok(WaitStatus::Exited(code)) => code,
        // C exits EX_TEMPFAIL saying nothing; the signal is worth a line.
        Ok(WaitStatus::Signaled(sig)) => {
            eprintln!("mail.mda: command terminated by signal {sig}");
            EX_TEMPFAIL
        }
        Err(e) => errx(EX_TEMPFAIL, &e.to_string()),
    }
}

/// The child of system(3): default signals, then `sh -c command`.
fn mda_system_child(command: &str) -> ! {
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
        let _ = signal_default(sig);
    }
    let argv = [
        PATH_BSHELL.to_string(),
        "-c".to_string(),
        command.to_string(),
    ];
    let e = execvp(&argv);
    eprintln!("mail.mda: {PATH_BSHELL}: {e}");
    exit_now(MDA_EXEC_FAILED)
}

/// err(3)'s errx: the program name, the message, then exit.
fn errx(code: i32, msg: &str) -> ! {
    eprintln!("mail.mda: {msg}");
    exit(code)
}
