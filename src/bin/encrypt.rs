//! encrypt: prints a crypt(3) hash of its argument, or of each line of
//! its standard input, for smtpd's credentials tables; `smtpctl encrypt`
//! runs it (OpenSMTPD contrib/libexec/encrypt/encrypt.c).

fn main() {
    let args = std::env::args_os().collect();
    std::process::exit(smtpd::smtpctl::encrypt::main(args));
}
