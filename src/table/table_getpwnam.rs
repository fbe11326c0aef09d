//! table_getpwnam.c: the system's password database as a userbase
//! (OpenSMTPD table_getpwnam.c 1.16).

use std::io;

use crate::config::config::Smtpd;
use crate::sys::process::getpwnam;

use super::table::{Table, TableBackend, TableService};

pub static TABLE_BACKEND_GETPWNAM: TableBackend = TableBackend {
    name: "getpwnam",
    services: TableService::K_USERINFO,
    config: Some(table_getpwnam_config),
    add: None,
    update: None,
    lookup: Some(table_getpwnam_lookup),
    fetch: None,
};

/// table_getpwnam_config(): the backend takes no configuration.
fn table_getpwnam_config(t: &mut Table) -> Result<(), String> {
    if t.t_config.is_empty() {
        Ok(())
    } else {
        Err("the getpwnam backend takes no configuration".into())
    }
}

/// table_getpwnam_lookup(): `uid:gid:directory` of the user `key` (which
/// table_lookup has lowercased, as in C). Only K_USERINFO is served.
fn table_getpwnam_lookup(
    _conf: &Smtpd,
    _table: &Table,
    kind: TableService,
    key: &str,
    want_value: bool,
) -> io::Result<Option<String>> {
    if kind != TableService::K_USERINFO {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // A user that does not exist is not an error.
    let pw = loop {
        match getpwnam(key) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    let Some(pw) = pw else {
        return Ok(None);
    };
    if !want_value {
        return Ok(Some(String::new()));
    }
    Ok(Some(format!("{}:{}:{}", pw.uid, pw.gid, pw.dir)))
}
