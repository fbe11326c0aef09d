//! smtpctl(8): the control program (and sendmail, mailq, newaliases,
//! makemap by name).

fn main() {
    let args = match smtpd::util::util::args_utf8() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(1);
        }
    };
    let argv0 = args.first().map_or("smtpctl", String::as_str);
    // smtpctl.c's sendmail_compat(): the name decides the program.
    let status = match argv0.rsplit('/').next() {
        Some("makemap" | "newaliases") => smtpd::smtpctl::makemap::makemap_main(args),
        _ => smtpd::smtpctl::smtpctl::main(args),
    };
    std::process::exit(status);
}
