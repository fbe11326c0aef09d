//! The lookup agent: tables, rules, expansion, DNS, filters.

pub mod aliases;
pub mod expand;
pub mod forward;
#[allow(clippy::module_inception)]
pub mod lka;
pub mod lka_session;
pub mod ruleset;
