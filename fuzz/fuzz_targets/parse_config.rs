//! Fuzzes the smtpd.conf lexer and parser: any input gives a result and
//! diagnostics, never a panic or a hang; and whatever parses prints back
//! as canonical text that parses to the same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::config::config::config_default_with;
use smtpd::config::lex::Symtab;
use smtpd::config::parse::parse_config_buffer;
use smtpd::config::printconf::print_config;

fuzz_target!(|data: &[u8]| {
    let mut conf = config_default_with("fuzz.example.org", &[]);
    let (r, diags) = parse_config_buffer(&mut conf, "fuzz.conf", data, Symtab::default());
    if r.is_err() {
        assert!(diags.iter().any(|d| d.error));
        return;
    }
    let dump = print_config(&conf);
    let mut again = config_default_with("fuzz.example.org", &[]);
    let (r2, diags2) = parse_config_buffer(&mut again, "dump.conf", dump.as_bytes(), Symtab::default());
    assert!(r2.is_ok(), "dump does not parse: {diags2:?}\n{dump}");
    assert_eq!(print_config(&again), dump);
});
