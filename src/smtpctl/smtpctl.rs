//! smtpctl.c: the control program (OpenSMTPD smtpctl.c 1.175).
//!
//! So far the commands that pause and resume the daemon's parts, show
//! their status, and change its logging, traces and profiling, over the
//! control socket with OpenSMTPD's messages and output. The commands on
//! the queue and its envelopes, the statistics, monitor, the MTA's
//! commands, encrypt and spf walk, and the sendmail personalities, come
//! later in the same issue: each says plainly that it is not there yet.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::control::IMSG_VERSION;
use crate::ipc::imsg::{
    imsg_compose, imsg_get, imsgbuf_allow_fdpass, imsgbuf_flush, imsgbuf_init, imsgbuf_read, Imsg,
    Imsgbuf, ReadResult,
};
use crate::ipc::mproc::ImsgType;
use crate::pathnames::smtpd_socket;
use crate::smtpd::{SMTPD_MDA_PAUSED, SMTPD_MTA_PAUSED, SMTPD_SMTP_PAUSED};
use crate::sys::unistd::geteuid;
use crate::util::log::{
    PROFILE_IMSG, PROFILE_QUEUE, TRACE_BOUNCE, TRACE_DEBUG, TRACE_EXPAND, TRACE_FILTERS,
    TRACE_IMSG, TRACE_IO, TRACE_LOOKUP, TRACE_MPROC, TRACE_MTA, TRACE_RULES, TRACE_SCHEDULER,
    TRACE_SMTP, TRACE_STAT,
};

fn progname(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// errx(3) with the program's name.
fn errx(msg: &str) -> ! {
    eprintln!("smtpctl: {msg}");
    std::process::exit(1)
}

/// The connection to the daemon.
struct Srv {
    ibuf: Imsgbuf,
}

/// srv_connect(): None when no daemon listens.
fn srv_connect() -> Option<Srv> {
    let stream = UnixStream::connect(smtpd_socket()).ok()?;
    let mut ibuf = match imsgbuf_init(OwnedFd::from(stream)) {
        Ok(b) => b,
        Err(e) => errx(&format!("imsgbuf_init: {e}")),
    };
    imsgbuf_allow_fdpass(&mut ibuf);
    Some(Srv { ibuf })
}

/// srv_send(): one request, marked with IMSG_VERSION.
fn srv_send(srv: &mut Srv, t: ImsgType, data: &[u8]) {
    if let Err(e) = imsg_compose(&mut srv.ibuf, t as u32, IMSG_VERSION, 0, None, data) {
        errx(&format!("imsg_compose: {e}"));
    }
}

/// srv_recv(): the next message, of type `want` if given.
fn srv_recv(srv: &mut Srv, want: Option<ImsgType>) -> Imsg {
    if let Err(e) = imsgbuf_flush(&mut srv.ibuf) {
        errx(&format!("write error: {e}"));
    }
    loop {
        match imsg_get(&mut srv.ibuf) {
            Err(e) => errx(&format!("imsg_get error: {e}")),
            Ok(Some(imsg)) => {
                if imsg.hdr.type_ == ImsgType::IMSG_CTL_FAIL as u32
                    && imsg.hdr.peerid != 0
                    && imsg.hdr.peerid != IMSG_VERSION
                {
                    errx("incompatible smtpctl and smtpd");
                }
                if want.is_some_and(|t| t as u32 != imsg.hdr.type_) {
                    errx("bad message type");
                }
                return imsg;
            }
            Ok(None) => {}
        }
        match imsgbuf_read(&mut srv.ibuf) {
            Err(e) => errx(&format!("read error: {e}")),
            Ok(ReadResult::Data(_) | ReadResult::WouldBlock) => {}
            Ok(_) => errx("pipe closed"),
        }
    }
}

/// srv_check_result(): IMSG_CTL_OK or IMSG_CTL_FAIL, said as C says it.
fn srv_check_result(srv: &mut Srv, verbose: bool) -> i32 {
    let imsg = srv_recv(srv, None);
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(ImsgType::IMSG_CTL_OK) => {
            if verbose {
                println!("command succeeded");
            }
            0
        }
        Some(ImsgType::IMSG_CTL_FAIL) => {
            if verbose {
                let why = imsg.data.split(|&b| b == 0).next().unwrap_or_default();
                if why.is_empty() {
                    println!("command failed");
                } else {
                    println!("command failed: {}", String::from_utf8_lossy(why));
                }
            }
            1
        }
        _ => errx(&format!("wrong message in response: {}", imsg.hdr.type_)),
    }
}

/// A request with an int, and its result.
fn srv_int_command(t: ImsgType, v: u32) -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, t, &(v as i32).to_ne_bytes());
    srv_check_result(&mut srv, true)
}

/// A request without data, and its result.
fn srv_command(t: ImsgType) -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, t, &[]);
    srv_check_result(&mut srv, true)
}

fn srv_or_exit() -> Srv {
    srv_connect().unwrap_or_else(|| errx("smtpd doesn't seem to be running"))
}

/// do_show_status().
fn do_show_status() -> i32 {
    let mut srv = srv_or_exit();
    srv_send(&mut srv, ImsgType::IMSG_CTL_SHOW_STATUS, &[]);
    let imsg = srv_recv(&mut srv, Some(ImsgType::IMSG_CTL_SHOW_STATUS));
    let Ok(b) = <[u8; 4]>::try_from(imsg.data.as_slice()) else {
        errx("bogus data");
    };
    let flags = u32::from_ne_bytes(b);
    let state = |f: u32| if flags & f != 0 { "paused" } else { "running" };
    println!("MDA {}", state(SMTPD_MDA_PAUSED));
    println!("MTA {}", state(SMTPD_MTA_PAUSED));
    println!("SMTP {}", state(SMTPD_SMTP_PAUSED));
    0
}

/// str_to_trace().
fn str_to_trace(s: &str) -> u32 {
    match s {
        "imsg" => TRACE_IMSG,
        "io" => TRACE_IO,
        "smtp" => TRACE_SMTP,
        "filters" => TRACE_FILTERS,
        "mta" => TRACE_MTA,
        "bounce" => TRACE_BOUNCE,
        "scheduler" => TRACE_SCHEDULER,
        "lookup" => TRACE_LOOKUP,
        "stat" => TRACE_STAT,
        "rules" => TRACE_RULES,
        "mproc" => TRACE_MPROC,
        "expand" => TRACE_EXPAND,
        "all" => !TRACE_DEBUG,
        _ => errx(&format!("invalid trace keyword: {s}")),
    }
}

/// str_to_profile().
fn str_to_profile(s: &str) -> u32 {
    match s {
        "imsg" => PROFILE_IMSG,
        "queue" => PROFILE_QUEUE,
        _ => errx(&format!("invalid profile keyword: {s}")),
    }
}

/// The commands of OpenSMTPD 7.8's smtpctl (cmd_install_priv and
/// cmd_install in main()), as patterns: `<...>` takes any word.
const COMMANDS: &[&str] = &[
    "discover <id>",
    "pause mta from <addr> for <str>",
    "resume mta from <addr> for <str>",
    "show mta paused",
    "log brief",
    "log verbose",
    "monitor",
    "pause envelope <id>",
    "pause envelope all",
    "pause mda",
    "pause mta",
    "pause smtp",
    "profile <str>",
    "remove <id>",
    "remove all",
    "resume envelope <id>",
    "resume envelope all",
    "resume mda",
    "resume mta",
    "resume route <routeid>",
    "resume smtp",
    "schedule <id>",
    "schedule all",
    "show envelope <evpid>",
    "show hoststats",
    "show message <id>",
    "show queue",
    "show queue <msgid>",
    "show hosts",
    "show relays",
    "show routes",
    "show stats",
    "show status",
    "trace <str>",
    "unprofile <str>",
    "untrace <str>",
    "update table <str>",
    "encrypt",
    "encrypt <str>",
    "spf walk",
];

/// The commands anyone may run (cmd_install).
fn unprivileged(pattern: &str) -> bool {
    pattern.starts_with("encrypt") || pattern == "spf walk"
}

/// Whether `words` fit `pattern`, word for word.
fn matches(pattern: &str, words: &[String]) -> bool {
    let p: Vec<&str> = pattern.split(' ').collect();
    p.len() == words.len()
        && p.iter()
            .zip(words)
            .all(|(p, w)| p.starts_with('<') || p == w)
}

/// cmd_run(): the command `words` names, run.
fn cmd_run(words: &[String]) -> i32 {
    let Some(pattern) = COMMANDS.iter().find(|p| matches(p, words)) else {
        eprintln!("invalid command");
        return 1;
    };
    if !unprivileged(pattern) && geteuid() != 0 {
        errx("need root privileges");
    }
    let arg = |i: usize| words.get(i).map_or("", String::as_str);
    match *pattern {
        "log brief" => srv_int_command(ImsgType::IMSG_CTL_VERBOSE, 0),
        "log verbose" => srv_int_command(ImsgType::IMSG_CTL_VERBOSE, TRACE_DEBUG),
        "pause mda" => srv_command(ImsgType::IMSG_CTL_PAUSE_MDA),
        "pause mta" => srv_command(ImsgType::IMSG_CTL_PAUSE_MTA),
        "pause smtp" => srv_command(ImsgType::IMSG_CTL_PAUSE_SMTP),
        "resume mda" => srv_command(ImsgType::IMSG_CTL_RESUME_MDA),
        "resume mta" => srv_command(ImsgType::IMSG_CTL_RESUME_MTA),
        "resume smtp" => srv_command(ImsgType::IMSG_CTL_RESUME_SMTP),
        "show status" => do_show_status(),
        "trace <str>" => srv_int_command(ImsgType::IMSG_CTL_TRACE_ENABLE, str_to_trace(arg(1))),
        "untrace <str>" => srv_int_command(ImsgType::IMSG_CTL_TRACE_DISABLE, str_to_trace(arg(1))),
        "profile <str>" => {
            srv_int_command(ImsgType::IMSG_CTL_PROFILE_ENABLE, str_to_profile(arg(1)))
        }
        "unprofile <str>" => {
            srv_int_command(ImsgType::IMSG_CTL_PROFILE_DISABLE, str_to_profile(arg(1)))
        }
        _ => {
            eprintln!(
                "smtpctl: {}: not implemented yet in this smtpd port",
                words.join(" ")
            );
            1
        }
    }
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
    // The sendmail personalities come later in this issue: what they
    // cannot do is said before any usage complaint.
    if name != "smtpctl" {
        eprintln!("{name}: not implemented yet: this smtpd port has no mail submission yet");
        return 1;
    }
    let words = &args[1..];
    if words.is_empty() {
        return usage(&name);
    }
    cmd_run(words)
}
