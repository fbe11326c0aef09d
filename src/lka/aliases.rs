//! aliases.c: the aliases and virtual tables of a local action, as
//! recipients expand through them (OpenSMTPD aliases.c 1.79).

use std::io::BufRead;

use super::expand::{expand_insert, expand_line, Expand, ExpandType, ExpandU};
use crate::config::config::{env, DispatcherAgent};
use crate::table::table::{table_find, table_lookup, Lookup, TableService};
use crate::util::mailaddr::Mailaddr;

/// The local action of the rule the expansion runs under, and the table
/// it names through `which`.
fn mapping<'a>(
    expand: &Expand,
    which: impl Fn(&crate::config::config::DispatcherLocal) -> Option<&String>,
) -> Option<&'a crate::table::table::Table> {
    let conf = env();
    let rule = conf.sc_rules.get(expand.rule?)?;
    let dsp = conf.sc_dispatchers.get(rule.dispatcher.as_deref()?)?;
    let DispatcherAgent::Local(local) = &dsp.u else {
        return None;
    };
    table_find(conf, which(local)?)
}

/// One K_ALIAS lookup: Ok(Some(expansion)), Ok(None) when there is no
/// such alias, Err on a lookup error.
fn alias_lookup(table: &crate::table::table::Table, key: &str) -> Result<Option<Expand>, ()> {
    match table_lookup(env(), table, TableService::K_ALIAS, key) {
        Err(_) => Err(()),
        Ok(Some(Lookup::Expand(x))) => Ok(Some(x)),
        Ok(_) => Ok(None),
    }
}

/// aliases_get(): the aliases of `username` (with its subaddress first,
/// then without) merged into `expand`: the number of destinations, 0 for
/// none, -1 on a lookup error.
pub fn aliases_get(expand: &mut Expand, username: &str) -> i32 {
    let Some(table) = mapping(expand, |l| l.table_alias.as_ref()) else {
        return -1;
    };
    let buf = username.to_ascii_lowercase();
    let delim = env().sc_subaddressing_delim;
    // With a subaddress, the whole name first, then the name alone.
    let mut keys = vec![buf.as_str()];
    if let Some(p) = buf.find(delim) {
        keys.push(&buf[..p]);
    }
    let mut found = None;
    for key in keys {
        match alias_lookup(table, key) {
            Err(()) => return -1,
            Ok(Some(x)) => {
                found = Some(x);
                break;
            }
            Ok(None) => {}
        }
    }
    let Some(lk) = found else {
        return 0;
    };
    let n = aliases_merge(expand, lk);
    log_debug!("debug: aliases_get: returned {n} aliases");
    n
}

/// aliases_virtual_get(): the virtual table's entry for `maddr`, tried
/// as `user+tag@domain`, `user@domain`, `user+tag`, `user`, `@domain`
/// then `@`: the number of destinations, 0 for none, -1 on error.
pub fn aliases_virtual_get(expand: &mut Expand, maddr: &Mailaddr) -> i32 {
    let Some(table) = mapping(expand, |l| l.table_virtual.as_ref()) else {
        return -1;
    };
    let delim = env().sc_subaddressing_delim;
    let mut user = maddr.user.to_ascii_lowercase();
    let domain = maddr.domain.to_ascii_lowercase();
    let mut tag = String::new();
    if let Some(p) = user.find(delim) {
        tag = user[p + delim.len_utf8()..].to_string();
        user.truncate(p);
    }
    let mut keys = Vec::new();
    if !tag.is_empty() {
        keys.push(format!("{user}{delim}{tag}@{domain}"));
    }
    keys.push(format!("{user}@{domain}"));
    if !tag.is_empty() {
        keys.push(format!("{user}{delim}{tag}"));
    }
    keys.push(user.clone());
    // Catch-all entries need a domain.
    if !domain.is_empty() {
        keys.push(format!("@{domain}"));
        keys.push("@".to_string());
    }
    for key in keys {
        match alias_lookup(table, &key) {
            Err(()) => return -1,
            Ok(None) => {}
            Ok(Some(lk)) => {
                let n = aliases_merge(expand, lk);
                log_debug!("debug: aliases_virtual_get: '{key}' resolved to {n} nodes");
                return n;
            }
        }
    }
    0
}

/// The destinations of a lookup merged into `expand`, `:include:` files
/// read in place.
fn aliases_merge(expand: &mut Expand, lk: Expand) -> i32 {
    let mut n = 0;
    for xn in lk.iter() {
        if xn.type_ == ExpandType::Include {
            if let ExpandU::Text(path) = &xn.u {
                n += aliases_expand_include(expand, path);
            }
        } else {
            let mut node = xn.clone();
            node.parent = None;
            node.rule = None;
            expand_insert(expand, node);
            n += 1;
        }
    }
    n
}

/// aliases_expand_include(): each line of an `:include:` file is an
/// aliases right-hand side (backslash continuations and `#` comments as
/// fparseln reads them). 1 when the file was read.
fn aliases_expand_include(expand: &mut Expand, filename: &str) -> i32 {
    let f = match std::fs::File::open(filename) {
        Ok(f) => f,
        Err(e) => {
            log_warn!(e, "warn: failed to open include file \"{filename}\".");
            return 0;
        }
    };
    for line in fparseln(std::io::BufReader::new(f)) {
        expand_line(expand, &line, false);
    }
    1
}

/// fparseln(3) with `\` as escape and `#` as comment: logical lines,
/// continued by a backslash at the end, comments removed, escaped
/// characters unescaped.
pub fn fparseln(r: impl BufRead) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in r.split(b'\n').map_while(Result::ok) {
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (text, continued) = fparseln_one(&raw);
        cur.push_str(&text);
        if !continued {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One physical line: its text (comment dropped, escapes resolved) and
/// whether it continues on the next.
fn fparseln_one(line: &str) -> (String, bool) {
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                None => return (text, true),
                // Only the comment and escape characters are unescaped;
                // others keep their backslash, as fparseln does.
                Some(n @ ('#' | '\\')) => text.push(n),
                Some(n) => {
                    text.push('\\');
                    text.push(n);
                }
            },
            '#' => break,
            c => text.push(c),
        }
    }
    (text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fparseln_joins_continuations_and_drops_comments() {
        let text = "a, b \\\n  c # note\n\\#lit, d\\\\\n";
        assert_eq!(
            fparseln(std::io::Cursor::new(text)),
            ["a, b   c ", "#lit, d\\"]
        );
    }
}
