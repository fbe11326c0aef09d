//! smtpctl.c: the control program (OpenSMTPD smtpctl.c 1.175).
//!
//! Only the usage exists so far: the control socket, its commands and the
//! sendmail personalities come with their own issue. Until then every
//! invocation says so and fails, rather than pretending.

use crate::util::getopt::{Getopt, Opt};

fn progname(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// usage() of smtpctl.c, for each personality.
fn usage(name: &str) -> i32 {
    match name {
        "sendmail" | "send-mail" | "mailq" | "newaliases" | "makemap" => {
            eprintln!("usage: {name} [-tv] [-f from] [-F name] to ...");
        }
        _ => eprintln!("usage: {name} command [argument ...]"),
    }
    1
}

pub fn main(args: Vec<String>) -> i32 {
    let name = progname(args.first().map_or("smtpctl", String::as_str)).to_string();
    // The sendmail personalities take options smtpctl does not know yet:
    // what they cannot do is said before any usage complaint.
    if name != "smtpctl" {
        eprintln!("{name}: not implemented yet: this smtpd port has no mail submission yet");
        return 1;
    }
    let mut g = Getopt::new(&args, "");
    if let Some(Opt::Unknown(_) | Opt::MissingArg(_) | Opt::Flag(..)) = g.next() {
        return usage(&name);
    }
    if g.operands().is_empty() {
        return usage(&name);
    }
    eprintln!(
        "{name}: not implemented yet: this smtpd port has no control socket or mail submission yet"
    );
    1
}
