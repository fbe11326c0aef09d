//! smtpctl(8): the control program (and sendmail, mailq, newaliases,
//! makemap by name).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map_or("smtpctl", String::as_str);
    // smtpctl.c's sendmail_compat(): the name decides the program.
    let status = match argv0.rsplit('/').next() {
        Some("makemap" | "newaliases") => smtpd::smtpctl::makemap::makemap_main(args),
        _ => smtpd::smtpctl::smtpctl::main(args),
    };
    std::process::exit(status);
}
