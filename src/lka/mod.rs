//! The lookup agent: tables, rules, expansion, DNS, filters.

pub mod forward;
#[allow(clippy::module_inception)]
pub mod lka;
