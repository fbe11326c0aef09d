//! smtpctl and the sendmail family (smtpctl.c, parser.c, enqueue.c,
//! makemap.c).

#[allow(clippy::module_inception)]
pub mod smtpctl;
