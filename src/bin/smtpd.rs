//! smtpd(8): the mail daemon.

fn main() {
    std::process::exit(smtpd::smtpd::main(std::env::args().collect()));
}
