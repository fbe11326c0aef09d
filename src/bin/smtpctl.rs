//! smtpctl(8): the control program (and sendmail, mailq, newaliases,
//! makemap by name).

fn main() {
    std::process::exit(smtpd::smtpctl::smtpctl::main(std::env::args().collect()));
}
