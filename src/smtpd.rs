//! smtpd.c: the parent process (OpenSMTPD smtpd.c 1.355).
//!
//! So far: main()'s command line, the configuration check (`-n`) and the
//! canonical dump (`-n -v`). The process tree (start_child, setup_peers,
//! the imsg loop and everything the parent does for its children) is not
//! there yet, and smtpd says so instead of starting.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::config::{config_default, Smtpd, SMTPD_OPT_NOACTION, SMTPD_OPT_VERBOSE};
use crate::config::lex::Symtab;
use crate::config::parse::parse_config;
use crate::config::printconf::print_config;
use crate::defines::{SMTPD_NAME, SMTPD_VERSION};
use crate::ipc::mproc::{ImsgType, ProcType};
use crate::pathnames::CONF_FILE;
use crate::sys::unistd::geteuid;
use crate::util::getopt::{Getopt, Opt};
use crate::util::log::*;

/// Which process this is (C's global `smtpd_process`), set once at start.
static SMTPD_PROCESS: AtomicU32 = AtomicU32::new(ProcType::PROC_PARENT as u32);

pub fn smtpd_process() -> ProcType {
    ProcType::from_u32(SMTPD_PROCESS.load(Ordering::Relaxed)).unwrap_or(ProcType::PROC_PARENT)
}

pub fn set_smtpd_process(p: ProcType) {
    SMTPD_PROCESS.store(p as u32, Ordering::Relaxed);
}

pub const SMTPD_MDA_PAUSED: u32 = 0x02;
pub const SMTPD_MTA_PAUSED: u32 = 0x04;
pub const SMTPD_SMTP_PAUSED: u32 = 0x08;

/// What the command line asked for.
#[derive(Debug)]
pub struct Options {
    pub conffile: String,
    pub backend_queue: String,
    pub backend_scheduler: String,
    pub backend_stat: String,
    pub foreground: bool,
    pub foreground_log: bool,
    pub opts: u32,
    pub flags: u32,
    pub tracing: u32,
    pub profiling: u32,
    pub rexec: Option<String>,
    pub symtab: Symtab,
}

fn progname(argv0: &str) -> String {
    argv0.rsplit('/').next().unwrap_or(argv0).to_string()
}

/// usage().
fn usage(progname: &str) -> i32 {
    eprintln!("usage: {progname} [-dFhnv] [-D macro=value] [-f file] [-P system] [-T trace]");
    1
}

/// The `-T` names and the trace or profile bit each sets.
fn trace_flag(name: &str) -> Option<(u32, u32)> {
    Some(match name {
        "imsg" => (TRACE_IMSG, 0),
        "io" => (TRACE_IO, 0),
        "smtp" => (TRACE_SMTP, 0),
        "filters" => (TRACE_FILTERS, 0),
        "mta" | "transfer" => (TRACE_MTA, 0),
        "bounce" | "bounces" => (TRACE_BOUNCE, 0),
        "scheduler" => (TRACE_SCHEDULER, 0),
        "lookup" => (TRACE_LOOKUP, 0),
        "stat" | "stats" => (TRACE_STAT, 0),
        "rules" => (TRACE_RULES, 0),
        "mproc" => (TRACE_MPROC, 0),
        "expand" => (TRACE_EXPAND, 0),
        "table" | "tables" => (TRACE_TABLES, 0),
        "queue" => (TRACE_QUEUE, 0),
        "all" => (!TRACE_DEBUG, 0),
        "profstat" => (0, PROFILE_TOSTAT),
        "profile-imsg" => (0, PROFILE_IMSG),
        "profile-queue" => (0, PROFILE_QUEUE),
        _ => return None,
    })
}

/// main()'s getopt loop. Err carries the exit status of usage().
fn parse_options(args: &[String], progname: &str) -> Result<Options, i32> {
    let mut o = Options {
        conffile: CONF_FILE.to_string(),
        backend_queue: "fs".into(),
        backend_scheduler: "ramqueue".into(),
        backend_stat: "ram".into(),
        foreground: false,
        foreground_log: false,
        opts: 0,
        flags: 0,
        tracing: 0,
        profiling: 0,
        rexec: None,
        symtab: Symtab::default(),
    };
    let mut g = Getopt::new(args, "B:dD:hnP:f:FT:vx:");
    for opt in g.by_ref() {
        let (c, arg) = match opt {
            Opt::Flag(c, arg) => (c, arg.unwrap_or_default()),
            Opt::Unknown(_) | Opt::MissingArg(_) => return Err(usage(progname)),
        };
        match c {
            'B' => {
                if let Some(v) = arg.strip_prefix("queue=") {
                    o.backend_queue = v.into();
                } else if let Some(v) = arg.strip_prefix("scheduler=") {
                    o.backend_scheduler = v.into();
                } else if let Some(v) = arg.strip_prefix("stat=") {
                    o.backend_stat = v.into();
                } else {
                    log_warnx!("warn: invalid backend specifier {arg}");
                }
            }
            'd' => {
                o.foreground = true;
                o.foreground_log = true;
            }
            'D' => {
                if !o.symtab.cmdline_symset(&arg) {
                    log_warnx!("warn: could not parse macro definition {arg}");
                }
            }
            'h' => {
                log_info!("version: {SMTPD_NAME} {SMTPD_VERSION}");
                return Err(usage(progname));
            }
            'n' => o.opts |= SMTPD_OPT_NOACTION,
            'f' => o.conffile = arg,
            'F' => o.foreground = true,
            'T' => match trace_flag(&arg) {
                Some((t, p)) => {
                    o.tracing |= t;
                    o.profiling |= p;
                }
                None => log_warnx!("warn: unknown trace flag \"{arg}\""),
            },
            'P' => match arg.as_str() {
                "smtp" => o.flags |= SMTPD_SMTP_PAUSED,
                "mta" => o.flags |= SMTPD_MTA_PAUSED,
                "mda" => o.flags |= SMTPD_MDA_PAUSED,
                _ => {}
            },
            'v' => o.tracing |= TRACE_DEBUG,
            'x' => o.rexec = Some(arg),
            _ => return Err(usage(progname)),
        }
    }
    if !g.operands().is_empty() {
        return Err(usage(progname));
    }
    // OpenSMTPD never sets SMTPD_OPT_VERBOSE, so its unused-macro warning
    // cannot show; -v turns it on here.
    if o.tracing & TRACE_DEBUG != 0 {
        o.opts |= SMTPD_OPT_VERBOSE;
    }
    Ok(o)
}

/// main(): up to the point where the configuration is loaded and checked.
pub fn main(args: Vec<String>) -> i32 {
    let progname = progname(args.first().map_or("smtpd", String::as_str));
    log_init(1, LOG_MAIL, &progname);

    let mut conf: Smtpd = match config_default() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{progname}: {e}");
            return 1;
        }
    };
    let o = match parse_options(&args, &progname) {
        Ok(o) => o,
        Err(status) => return status,
    };
    conf.sc_opts |= o.opts;

    if parse_config(&mut conf, &o.conffile, o.symtab).is_err() {
        return 1;
    }

    if conf.sc_opts & SMTPD_OPT_NOACTION != 0 {
        if conf.sc_opts & SMTPD_OPT_VERBOSE != 0 {
            print!("{}", print_config(&conf));
        }
        eprintln!("configuration OK");
        return 0;
    }

    if geteuid() != 0 {
        fatalx!("need root privileges");
    }
    log_init(i32::from(o.foreground_log), LOG_MAIL, &progname);
    log_trace_verbose(o.tracing, o.foreground_log);
    set_profiling(o.profiling);
    if conf.sc_hostname.is_empty() {
        fatalx!("machine does not have a hostname set");
    }
    log_warnx!(
        "{progname}: the daemon is not implemented yet: this version only checks configurations (smtpd -n); \
         the process tree comes next"
    );
    1
}

/// proc_title(): a process as `ps` and the logs name it.
pub fn proc_title(proc: ProcType) -> &'static str {
    match proc {
        ProcType::PROC_PARENT => "[priv]",
        ProcType::PROC_LKA => "lookup",
        ProcType::PROC_QUEUE => "queue",
        ProcType::PROC_CONTROL => "control",
        ProcType::PROC_SCHEDULER => "scheduler",
        ProcType::PROC_DISPATCHER => "dispatcher",
        ProcType::PROC_CA => "crypto",
        ProcType::PROC_CLIENT => "client",
        ProcType::PROC_PROCESSOR => "processor",
    }
}

/// proc_name(): a process as traces name it.
pub fn proc_name(proc: ProcType) -> &'static str {
    match proc {
        ProcType::PROC_PARENT => "parent",
        ProcType::PROC_LKA => "lka",
        ProcType::PROC_QUEUE => "queue",
        ProcType::PROC_CONTROL => "control",
        ProcType::PROC_SCHEDULER => "scheduler",
        ProcType::PROC_DISPATCHER => "dispatcher",
        ProcType::PROC_CA => "ca",
        ProcType::PROC_CLIENT => "client-proc",
        ProcType::PROC_PROCESSOR => "unknown",
    }
}

/// imsg_to_str(): the C name of an imsg type.
pub fn imsg_to_str(type_: u32) -> String {
    match ImsgType::from_u32(type_) {
        Some(t) => t.name().to_string(),
        None => format!("IMSG_??? ({type_})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        std::iter::once("smtpd")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn options_as_smtpd_c_reads_them() {
        let o = parse_options(
            &args("-dv -n -f /tmp/x.conf -T imsg -T profile-imsg -P mda -B queue=ram"),
            "smtpd",
        )
        .unwrap();
        assert!(o.foreground && o.foreground_log);
        assert_eq!(o.conffile, "/tmp/x.conf");
        assert_eq!(o.tracing, TRACE_DEBUG | TRACE_IMSG);
        assert_eq!(o.profiling, PROFILE_IMSG);
        assert_eq!(o.flags, SMTPD_MDA_PAUSED);
        assert_eq!(o.backend_queue, "ram");
        assert_eq!(o.opts, SMTPD_OPT_NOACTION | SMTPD_OPT_VERBOSE);
    }

    #[test]
    fn operands_and_unknown_options_are_usage_errors() {
        assert!(parse_options(&args("extra"), "smtpd").is_err());
        assert!(parse_options(&args("-q"), "smtpd").is_err());
        assert!(parse_options(&args("-f"), "smtpd").is_err());
    }
}
