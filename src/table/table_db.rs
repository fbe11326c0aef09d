//! table_db.c: tables in dbopen(3) hash files built by makemap(8)
//! (OpenSMTPD table_db.c 1.26): the check at configuration time, lookups
//! and fetches.
//!
//! makemap stores keys and values as C strings, their NUL included, the
//! keys lowercased; a set stores `<set>` as every value. A lookup asks
//! for the key with its NUL, except for the services whose keys match
//! by pattern (domains, networks, addresses, regular expressions), for
//! which C walks the whole database.
//!
//! OpenSMTPD keeps each table's database open in lka and reopens it when
//! its mtime changes. We open it for each lookup or fetch instead: the
//! configuration that holds the tables is read-only and shared, a handle
//! is not, and C stats the file on every lookup anyway. A rebuilt map
//! is seen at once (C misses a rebuild within the same second).

use std::io;

use crate::config::config::Smtpd;
use crate::sys::db::{Db, DbOpen, DbSeq, DbType};
use crate::util::log::strerror;

use super::table::{Table, TableBackend, TableService, TableState};
use super::table_static::table_static_keycmp;

pub static TABLE_BACKEND_DB: TableBackend = TableBackend {
    name: "db",
    services: super::table_static::TABLE_BACKEND_STATIC.services,
    config: Some(table_db_config),
    add: None,
    update: Some(table_db_update),
    lookup: Some(table_db_lookup),
    fetch: Some(table_db_fetch),
};

/// table_db_config(): the database must open, so that `smtpd -n` reports
/// a missing or damaged map.
fn table_db_config(t: &mut Table) -> Result<(), String> {
    if t.t_config.is_empty() {
        return Err("db tables need the path of a database".into());
    }
    table_db_open2(t)
        .map(drop)
        .map_err(|e| format!("{}: {}", t.t_config, strerror(&e)))
}

/// table_db_update(): `smtpctl update table`. Every lookup opens the
/// database afresh, so there is nothing to swap: the map need only open.
fn table_db_update(t: &Table) -> bool {
    match table_db_open2(t) {
        Ok(_) => true,
        Err(e) => {
            log_warnx!("warn: {}: {}", t.t_config, strerror(&e));
            false
        }
    }
}

/// table_db_open2(): the table's database, read-only. makemap can write
/// btrees, but tables are read as hashes only, as in C.
fn table_db_open2(t: &Table) -> io::Result<Db> {
    Db::open(&t.t_config, DbOpen::ReadOnly, DbType::Hash)
}

/// table_db_lookup(): the value of `key`, or for the services that match
/// keys by pattern, the first key in the database's order that `key`
/// matches. C answers the matching key itself in that case, not its
/// value, and so do we: those services are asked for matches, where only
/// the answer's presence counts.
fn table_db_lookup(
    conf: &Smtpd,
    table: &Table,
    service: TableService,
    key: &str,
    _want_value: bool,
) -> io::Result<Option<String>> {
    let mut db = table_db_open2(table)?;
    match table_static_keycmp(service) {
        None => table_db_get_entry(&db, key),
        Some(matches) => {
            let delim = conf.sc_subaddressing_delim;
            table_db_get_entry_match(&mut db, |k| matches(key, k, delim))
        }
    }
}

/// table_db_fetch(): the key after the one fetched last, starting over
/// after the last key. C means this but gets it backwards (it starts
/// over when seq succeeds and returns a stale key when it fails, so a
/// db table never fetches anything); we do what it means. The cursor is
/// the key fetched last, found again in a freshly opened database.
fn table_db_fetch(
    st: &mut TableState,
    table: &Table,
    _service: TableService,
) -> io::Result<Option<String>> {
    let mut db = table_db_open2(table)?;
    let first = db.seq(DbSeq::First)?;
    let mut next = None;
    if let Some(last) = st.fetch_cursors.get(&table.t_name) {
        let mut entry = first.clone();
        while let Some((k, _)) = entry {
            if table_db_cstr(&k) == *last {
                next = db.seq(DbSeq::Next)?;
                break;
            }
            entry = db.seq(DbSeq::Next)?;
        }
    }
    let Some((k, _)) = next.or(first) else {
        return Ok(None);
    };
    let k = table_db_cstr(&k);
    st.fetch_cursors.insert(table.t_name.clone(), k.clone());
    Ok(Some(k))
}

/// table_db_get_entry_match(): the first key of the database, in its
/// order, that `func` accepts.
fn table_db_get_entry_match(
    db: &mut Db,
    func: impl Fn(&str) -> bool,
) -> io::Result<Option<String>> {
    let mut entry = db.seq(DbSeq::First)?;
    while let Some((k, _)) = entry {
        let k = table_db_cstr(&k);
        if func(&k) {
            return Ok(Some(k));
        }
        entry = db.seq(DbSeq::Next)?;
    }
    Ok(None)
}

/// table_db_get_entry(): the value stored under `key` and its NUL, as
/// makemap writes keys.
fn table_db_get_entry(db: &Db, key: &str) -> io::Result<Option<String>> {
    let mut pkey = Vec::with_capacity(key.len() + 1);
    pkey.extend_from_slice(key.as_bytes());
    pkey.push(0);
    Ok(db.get(&pkey)?.map(|v| table_db_cstr(&v)))
}

/// What C reads from a key or value: a C string, up to its first NUL.
fn table_db_cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testing::TempDir;
    use crate::table::table::{
        table_create, table_fetch, table_lookup, table_match, table_test_config, Lookup,
    };
    use TableService as K;

    /// A database at a scratch path holding `entries` as makemap writes
    /// them (NUL-terminated), removed when dropped.
    struct Map(TempDir);

    impl Map {
        fn new(entries: &[(&str, &str)]) -> Map {
            let map = Map(TempDir::new("table-db"));
            map.write(entries);
            map
        }

        fn write(&self, entries: &[(&str, &str)]) {
            let c = |s: &str| [s.as_bytes(), b"\0"].concat();
            let mut db =
                Db::open(&self.path(), DbOpen::Truncate { mode: 0o600 }, DbType::Hash).unwrap();
            for (k, v) in entries {
                db.put(&c(k), &c(v)).unwrap();
            }
            db.close().unwrap();
        }

        fn path(&self) -> String {
            self.0.path("map.db")
        }

        fn conf(&self, extra: &str) -> Smtpd {
            table_test_config(
                &format!(
                    "table t db:{}\n{extra}action a mbox\nmatch for local action a\n",
                    self.path()
                ),
                &[],
            )
        }
    }

    fn lookup(c: &Smtpd, kind: TableService, key: &str) -> io::Result<Option<Lookup>> {
        table_lookup(c, c.table_find("t").unwrap(), kind, key)
    }

    fn matches(c: &Smtpd, kind: TableService, key: &str) -> bool {
        table_match(c, c.table_find("t").unwrap(), kind, key).unwrap()
    }

    #[test]
    fn values_are_looked_up_by_lowercased_key_and_parsed_per_service() {
        let map = Map::new(&[
            ("root", "alice, bob@example.org"),
            ("bob", "bob@example.org:secret"),
            ("relay", "smtp+tls://mx.example.org:587"),
        ]);
        let c = map.conf("");
        let Some(Lookup::Expand(e)) = lookup(&c, K::K_ALIAS, "ROOT").unwrap() else {
            panic!("no expansion");
        };
        assert_eq!(
            crate::lka::expand::expand_to_text(&e, 1024).unwrap(),
            "alice, bob@example.org"
        );
        let Some(Lookup::Creds(cr)) = lookup(&c, K::K_CREDENTIALS, "bob").unwrap() else {
            panic!("no credentials");
        };
        assert_eq!(
            (cr.username.as_str(), cr.password.as_str()),
            ("bob@example.org", "secret")
        );
        let Some(Lookup::Relayhost(r)) = lookup(&c, K::K_RELAYHOST, "relay").unwrap() else {
            panic!("no relay");
        };
        assert_eq!(r, "smtp+tls://mx.example.org:587");
        assert!(lookup(&c, K::K_ALIAS, "nobody").unwrap().is_none());
        assert!(matches(&c, K::K_STRING, "root"));
        assert!(!matches(&c, K::K_STRING, "roo"));
    }

    #[test]
    fn a_key_stored_without_its_nul_is_not_found() {
        let map = Map::new(&[]);
        let mut db = Db::open(&map.path(), DbOpen::Truncate { mode: 0o600 }, DbType::Hash).unwrap();
        db.put(b"bare", b"value\0").unwrap();
        db.close().unwrap();
        let c = map.conf("");
        assert!(!matches(&c, K::K_STRING, "bare"));
    }

    #[test]
    fn pattern_services_walk_the_keys() {
        let map = Map::new(&[
            ("*.example.org", "<set>"),
            ("192.168.0.0/16", "<set>"),
            ("@example.net", "<set>"),
            ("^mx[0-9]+\\.", "<set>"),
        ]);
        let c = map.conf("");
        assert!(matches(&c, K::K_DOMAIN, "mx.EXAMPLE.org"));
        assert!(!matches(&c, K::K_DOMAIN, "example.org"));
        assert!(matches(&c, K::K_NETADDR, "192.168.7.1"));
        assert!(!matches(&c, K::K_NETADDR, "192.169.7.1"));
        assert!(matches(&c, K::K_MAILADDR, "carol@example.net"));
        assert!(!matches(&c, K::K_MAILADDR, "carol@example.com"));
        assert!(matches(&c, K::K_REGEX, "MX12.example.com"));
        assert!(!matches(&c, K::K_REGEX, "mail.example.com"));
        // As in C, a pattern lookup answers the key that matched.
        let Some(Lookup::Domain(d)) = lookup(&c, K::K_DOMAIN, "a.example.org").unwrap() else {
            panic!("no domain");
        };
        assert_eq!(d.name, "*.example.org");
    }

    #[test]
    fn the_sub_address_delimiter_comes_from_the_configuration() {
        let map = Map::new(&[("bob@example.org", "<set>")]);
        let c = map.conf("smtp sub-addr-delim \"-\"\n");
        assert!(matches(&c, K::K_MAILADDR, "bob-lists@example.org"));
        assert!(!matches(&c, K::K_MAILADDR, "bob+lists@example.org"));
    }

    #[test]
    fn fetches_go_round_the_keys() {
        let map = Map::new(&[
            ("192.0.2.1", "<set>"),
            ("192.0.2.2", "<set>"),
            ("192.0.2.3", "<set>"),
        ]);
        let c = map.conf("");
        let t = c.table_find("t").unwrap();
        let mut st = TableState::default();
        let mut got = Vec::new();
        for _ in 0..7 {
            match table_fetch(&mut st, t, K::K_SOURCE).unwrap() {
                Some(Lookup::Source(s)) => got.push(s.addr.ip().to_string()),
                other => panic!("{other:?}"),
            }
        }
        // Each key once per turn, in the same order every turn.
        let mut turn: Vec<String> = got[..3].to_vec();
        turn.sort();
        assert_eq!(turn, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        assert_eq!(got[3..6], got[..3]);
        assert_eq!(got[6], got[0]);

        // A rebuilt map without the last key fetched starts over.
        let last = got[6].clone();
        let rest: Vec<(&str, &str)> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .into_iter()
            .filter(|a| *a != last)
            .map(|a| (a, "<set>"))
            .collect();
        map.write(&rest);
        assert!(table_fetch(&mut st, t, K::K_SOURCE).unwrap().is_some());

        map.write(&[]);
        assert!(table_fetch(&mut st, t, K::K_SOURCE).unwrap().is_none());
    }

    #[test]
    fn a_rebuilt_map_is_seen_by_the_next_lookup() {
        let map = Map::new(&[("old", "x@example.org")]);
        let c = map.conf("");
        assert!(matches(&c, K::K_STRING, "old"));
        map.write(&[("new", "y@example.org")]);
        assert!(!matches(&c, K::K_STRING, "old"));
        assert!(matches(&c, K::K_STRING, "new"));
    }

    #[test]
    fn missing_and_damaged_maps_are_configuration_errors() {
        let map = Map::new(&[]);
        let missing = format!("{}.nothere", map.path());
        let mut t = table_create("db", "t", Some(&missing)).unwrap();
        let e = table_db_config(&mut t).unwrap_err();
        assert!(e.contains("No such file or directory"), "{e}");

        std::fs::write(map.path(), b"root: alice\n").unwrap();
        let mut t = table_create("db", "t", Some(&map.path())).unwrap();
        let e = table_db_config(&mut t).unwrap_err();
        assert!(e.contains("not a db(3) hash database"), "{e}");
    }

    #[test]
    fn a_map_removed_after_configuration_fails_lookups() {
        let map = Map::new(&[("k", "v")]);
        let c = map.conf("");
        std::fs::remove_file(map.path()).unwrap();
        let e = lookup(&c, K::K_STRING, "k").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
