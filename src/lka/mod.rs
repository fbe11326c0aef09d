//! The lookup agent: tables, rules, expansion, DNS, filters.

pub mod expand;
pub mod forward;
#[allow(clippy::module_inception)]
pub mod lka;
pub mod ruleset;
