//! table_getpwnam.c: the system's password database as a userbase
//! (OpenSMTPD table_getpwnam.c 1.15). Lookups arrive with lka.

use super::table::{Table, TableBackend, TableService};

pub static TABLE_BACKEND_GETPWNAM: TableBackend = TableBackend {
    name: "getpwnam",
    services: TableService::K_USERINFO,
    config: Some(table_getpwnam_config),
    add: None,
};

/// table_getpwnam_config(): the backend takes no configuration.
fn table_getpwnam_config(t: &mut Table) -> Result<(), String> {
    if t.t_config.is_empty() {
        Ok(())
    } else {
        Err("the getpwnam backend takes no configuration".into())
    }
}
