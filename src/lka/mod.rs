//! The lookup agent: tables, rules, expansion, DNS, filters.

#[allow(clippy::module_inception)]
pub mod lka;
