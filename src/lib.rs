//! smtpd: a port of OpenSMTPD to Rust.
//!
//! The modules mirror OpenSMTPD's C files, one Rust file per C file with
//! the same function names (see DESIGN.md and PORTING.md). All `unsafe`
//! lives in `sys`.
#![deny(unsafe_code)]

#[macro_use]
pub mod util;

pub mod ca;
pub mod config;
pub mod control;
pub mod defines;
pub mod dispatcher;
pub mod dns;
pub mod io;
pub mod ipc;
pub mod lka;
pub mod pathnames;
pub mod queue;
pub mod scheduler;
pub mod smtpctl;
pub mod smtpd;
pub mod sys;
pub mod table;
