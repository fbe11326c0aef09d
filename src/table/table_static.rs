//! table_static.c: tables held in memory, declared inline in smtpd.conf or
//! read from a table(5) file (OpenSMTPD table_static.c 1.35): loading,
//! reloading (`smtpctl update table`), lookups and fetches. There is no
//! dump, open or close: nothing here needs them before the proc backend.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::config::config::Smtpd;
use crate::util::util::{parse_table_line, TableFileType, TableLine};

use super::table::{
    table_domain_match, table_mailaddr_match, table_netaddr_match, table_regex_match, Table,
    TableBackend, TableHandle, TableService, TableState, TableType,
};

pub static TABLE_BACKEND_STATIC: TableBackend = TableBackend {
    name: "static",
    services: TableService::K_ALIAS
        .union(TableService::K_CREDENTIALS)
        .union(TableService::K_DOMAIN)
        .union(TableService::K_NETADDR)
        .union(TableService::K_USERINFO)
        .union(TableService::K_SOURCE)
        .union(TableService::K_MAILADDR)
        .union(TableService::K_ADDRNAME)
        .union(TableService::K_MAILADDRMAP)
        .union(TableService::K_RELAYHOST)
        .union(TableService::K_STRING)
        .union(TableService::K_REGEX),
    config: Some(table_static_config),
    add: Some(table_static_add),
    update: Some(table_static_update),
    lookup: Some(table_static_lookup),
    fetch: Some(table_static_fetch),
};

/// struct table_static_priv: the entries, keyed by lowercased key. A list
/// entry has no value.
#[derive(Clone, Debug, Default)]
pub struct TableStaticPriv {
    pub ty: TableType,
    pub dict: BTreeMap<String, Option<String>>,
}

/// table_static_priv_add(): keys are lowercased, as lookups lowercase
/// theirs; a second entry with the same key replaces the first.
fn table_static_priv_add(priv_: &mut TableStaticPriv, key: &str, val: Option<&str>) {
    priv_
        .dict
        .insert(key.to_ascii_lowercase(), val.map(str::to_string));
}

/// table_static_priv_load(): reads a table(5) file.
fn table_static_priv_load(priv_: &mut TableStaticPriv, path: &str) -> Result<(), String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("{path}: {}", crate::util::log::strerror(&e)))?;
    let mut ty = match priv_.ty {
        t if t.contains(TableType::T_LIST) => TableFileType::List,
        t if t.contains(TableType::T_HASH) => TableFileType::Hash,
        _ => TableFileType::None,
    };
    for (n, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{path}: {}", crate::util::log::strerror(&e)))?;
        let line = String::from_utf8_lossy(&line);
        match parse_table_line(&line, &mut ty) {
            TableLine::Skip => {}
            TableLine::Entry(k, v) => table_static_priv_add(priv_, k, v),
            TableLine::Malformed => return Err(format!("{path}:{}: invalid map entry", n + 1)),
        }
    }
    priv_.ty = match ty {
        TableFileType::List => TableType::T_LIST,
        // Empty files (an empty aliases file, say) are accepted as mappings.
        TableFileType::Hash | TableFileType::None => TableType::T_HASH,
    };
    Ok(())
}

/// table_static_config(): loads the table's file, if it has one. A table
/// already loaded is reloaded only when it has a file; if that fails, it
/// keeps what it had.
fn table_static_config(t: &mut Table) -> Result<(), String> {
    if let TableHandle::Static(priv_) = &t.t_handle {
        if t.t_config.is_empty() {
            return Ok(());
        }
        let ty = table_static_reload(priv_, &t.t_config)?;
        t.t_type = ty;
        return Ok(());
    }
    let mut priv_ = TableStaticPriv {
        ty: t.t_type,
        dict: BTreeMap::new(),
    };
    if !t.t_config.is_empty() {
        table_static_priv_load(&mut priv_, &t.t_config)?;
    }
    t.t_type = priv_.ty;
    t.t_handle = TableHandle::Static(Arc::new(RwLock::new(priv_)));
    Ok(())
}

/// Reads `path` again into a new set of entries, of the table's current
/// shape, and puts them in place of the old ones; returns the shape.
fn table_static_reload(priv_: &RwLock<TableStaticPriv>, path: &str) -> Result<TableType, String> {
    let mut new = TableStaticPriv {
        ty: table_static_priv(priv_).ty,
        dict: BTreeMap::new(),
    };
    table_static_priv_load(&mut new, path)?;
    let ty = new.ty;
    *priv_.write().unwrap_or_else(|e| e.into_inner()) = new;
    Ok(ty)
}

/// table_static_update(): `smtpctl update table`. An inline table has no
/// file and nothing to reload.
fn table_static_update(t: &Table) -> bool {
    let r = match &t.t_handle {
        TableHandle::Static(priv_) if !t.t_config.is_empty() => {
            table_static_reload(priv_, &t.t_config).map(drop)
        }
        TableHandle::Static(_) => Ok(()),
        TableHandle::None => Err("not loaded".to_string()),
    };
    match r {
        Ok(()) => {
            log_info!("info: Table \"{}\" successfully updated", t.t_name);
            true
        }
        Err(e) => {
            log_warnx!("warn: {e}");
            log_info!("info: Failed to update table \"{}\"", t.t_name);
            false
        }
    }
}

/// The entries of a static table, for reading. A lock poisoned by a panic
/// cannot happen in these single-threaded processes; its data is used as
/// it is.
pub(super) fn table_static_priv(
    priv_: &RwLock<TableStaticPriv>,
) -> RwLockReadGuard<'_, TableStaticPriv> {
    priv_.read().unwrap_or_else(|e| e.into_inner())
}

/// table_static_add(): the first entry decides whether the table is a list
/// or a mapping; tables read from a file take no inline entries.
fn table_static_add(t: &mut Table, key: &str, val: Option<&str>) -> bool {
    if !t.t_config.is_empty() {
        return false;
    }
    if t.t_type.is_empty() {
        t.t_type = if val.is_some() {
            TableType::T_HASH
        } else {
            TableType::T_LIST
        };
    } else if t.t_type.contains(TableType::T_LIST) == val.is_some() {
        return false;
    }
    if !matches!(t.t_handle, TableHandle::Static(_)) && table_static_config(t).is_err() {
        return false;
    }
    let ty = t.t_type;
    match &t.t_handle {
        TableHandle::Static(priv_) => {
            let mut priv_ = priv_.write().unwrap_or_else(|e| e.into_inner());
            priv_.ty = ty;
            table_static_priv_add(&mut priv_, key, val);
            true
        }
        TableHandle::None => false,
    }
}

/// keycmp[]: how a key matches the table's keys, for the services that
/// do not compare them as plain strings (the last argument is the
/// sub-address delimiter). The db backend has the same table in C.
pub(super) type KeyCmp = fn(&str, &str, char) -> bool;
static KEYCMP: [(TableService, KeyCmp); 4] = [
    (TableService::K_DOMAIN, |s1, s2, _| {
        table_domain_match(s1, s2)
    }),
    (TableService::K_NETADDR, |s1, s2, _| {
        table_netaddr_match(s1, s2)
    }),
    (TableService::K_MAILADDR, table_mailaddr_match),
    (TableService::K_REGEX, |s1, s2, _| table_regex_match(s1, s2)),
];

/// The keycmp[] entry of `service`, if it has one.
pub(super) fn table_static_keycmp(service: TableService) -> Option<KeyCmp> {
    KEYCMP.iter().find(|(s, _)| *s == service).map(|(_, f)| *f)
}

/// table_static_lookup(): the first key, in key order, that `key` matches
/// for `service`. A list entry has no value: asking for one is an error
/// (C would return the address of its placeholder).
fn table_static_lookup(
    conf: &Smtpd,
    table: &Table,
    service: TableService,
    key: &str,
    want_value: bool,
) -> io::Result<Option<String>> {
    let TableHandle::Static(priv_) = &table.t_handle else {
        return Ok(None);
    };
    let priv_ = table_static_priv(priv_);
    let delim = conf.sc_subaddressing_delim;
    let found = match table_static_keycmp(service) {
        Some(matches) => priv_.dict.iter().find(|(k, _)| matches(key, k, delim)),
        None => priv_.dict.get_key_value(key),
    };
    match found {
        None => Ok(None),
        Some(_) if !want_value => Ok(Some(String::new())),
        Some((_, Some(v))) => Ok(Some(v.clone())),
        Some((_, None)) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// table_static_fetch(): the key after the one fetched last, starting
/// over after the last key.
fn table_static_fetch(
    st: &mut TableState,
    table: &Table,
    _service: TableService,
) -> io::Result<Option<String>> {
    let TableHandle::Static(priv_) = &table.t_handle else {
        return Ok(None);
    };
    let priv_ = table_static_priv(priv_);
    let after = st.fetch_cursors.get(&table.t_name);
    let next = after
        .and_then(|last| {
            priv_
                .dict
                .range::<str, _>((Bound::Excluded(last.as_str()), Bound::Unbounded))
                .next()
        })
        .or_else(|| priv_.dict.iter().next())
        .map(|(k, _)| k.clone());
    if let Some(k) = &next {
        st.fetch_cursors.insert(table.t_name.clone(), k.clone());
    }
    Ok(next)
}
