//! smtpd.c driven directly: the command line, and the parent's work on
//! real files, users and processes.
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
