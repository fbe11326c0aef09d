//! smtpctl and the sendmail family (smtpctl.c, parser.c, enqueue.c,
//! makemap.c, parser.c, spfwalk.c), and the encrypt helper (encrypt.c).

pub mod encrypt;
pub mod enqueue;
pub mod makemap;
pub mod parser;
#[allow(clippy::module_inception)]
pub mod smtpctl;
pub mod spfwalk;
