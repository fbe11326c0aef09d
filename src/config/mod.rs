//! The configuration: smtpd.conf's lexer and parser (parse.y), the model
//! and its defaults (config.c, smtpd.h), and the canonical printer.

#[allow(clippy::module_inception)]
pub mod config;
pub mod lex;
pub mod parse;
pub mod printconf;
