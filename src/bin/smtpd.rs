//! smtpd(8): the mail daemon.

fn main() {
    let args = match smtpd::util::util::args_utf8() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(1);
        }
    };
    std::process::exit(smtpd::smtpd::main(args));
}
