//! util.c: small helpers shared by every process (OpenSMTPD util.c 1.160),
//! plus the two libc helpers OpenSMTPD takes from OpenBSD's libraries and
//! the portable tree ships as compat code: `res_hnok` and `scan_scaled`.

use std::io::BufRead;

use crate::defines::LINE_MAX;
use crate::pathnames::MAILNAME_FILE;
use crate::sys::net::{self, Family};
use crate::sys::unistd;
use crate::util::mailaddr::Mailaddr;

/// The program's arguments as text; an argument that is not UTF-8 is an
/// error naming it (std::env::args would panic).
pub fn args_utf8() -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate() {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(a) => {
                let name = args.first().map_or("smtpd", String::as_str);
                let name = name.rsplit('/').next().unwrap_or(name);
                return Err(format!(
                    "{name}: argument {i} is not valid UTF-8: {}",
                    a.to_string_lossy()
                ));
            }
        }
    }
    Ok(args)
}

/// res_hnok(3): whether `dn` is a syntactically valid host name: labels of
/// letters, digits, `-` and `_`, each beginning and ending with a letter or
/// digit. Like glibc's (which Linux OpenSMTPD uses) and unlike OpenBSD's,
/// it also holds the name to what DNS can carry: no empty label, labels
/// of at most 63 octets, at most 253 octets without a final dot.
pub fn res_hnok(dn: &str) -> bool {
    let b = dn.as_bytes();
    let name = b.strip_suffix(b".").unwrap_or(b);
    if name.len() > 253
        || name
            .split(|&c| c == b'.')
            .any(|l| l.is_empty() || l.len() > 63)
    {
        return false;
    }
    let border = |c: u8| c.is_ascii_alphanumeric();
    let middle = |c: u8| border(c) || c == b'-' || c == b'_';
    let mut pch = b'.';
    for (i, &ch) in b.iter().enumerate() {
        let nch = b.get(i + 1).copied().unwrap_or(0);
        let ok = if ch == b'.' {
            true
        } else if pch == b'.' || nch == b'.' || nch == 0 {
            border(ch)
        } else {
            middle(ch)
        };
        if !ok {
            return false;
        }
        pch = ch;
    }
    true
}

/// lowercase(): ASCII lowercasing, as tolower(3) in the C locale.
pub fn lowercase(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// MAILADDR_ALLOWED of smtpd.h: the characters of a local part besides
/// letters and digits.
pub const MAILADDR_ALLOWED: &str = "!#$%&'*/?^`{|}~+-=_";

/// isspace(3) in the C locale: space, \t, \n, \v, \f, \r (Rust's
/// is_ascii_whitespace leaves out \v).
pub fn isspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// strip(): `s` without its leading and trailing white space.
pub fn strip(s: &str) -> &str {
    s.trim_matches(isspace)
}

/// hostname_match(): `hostname` against `pattern`, ignoring ASCII case,
/// where a `*` skips to the next occurrence of the character after it.
/// The skip never backtracks, so `*.example.org` matches
/// `a.example.org` but not `a.b.example.org`, as in OpenSMTPD.
pub fn hostname_match(hostname: &str, pattern: &str) -> bool {
    let (h, p) = (hostname.as_bytes(), pattern.as_bytes());
    let (mut i, mut j) = (0, 0);
    while j < p.len() && i < h.len() {
        if p[j] == b'*' {
            while j < p.len() && p[j] == b'*' {
                j += 1;
            }
            // After trailing stars, C compares with the NUL: nothing
            // stops the skip.
            let next = p.get(j).map(u8::to_ascii_lowercase);
            while i < h.len() && Some(h[i].to_ascii_lowercase()) != next {
                i += 1;
            }
            continue;
        }
        if !p[j].eq_ignore_ascii_case(&h[i]) {
            return false;
        }
        j += 1;
        i += 1;
    }
    i == h.len() && j == p.len()
}

/// mailaddr_match(): whether the session's `maddr1` matches the table's
/// `maddr2`: an empty `maddr2` is a catch-all, its domain is a pattern
/// (hostname_match), and its user is compared without case, after
/// stripping the sub-address (from `delim` on) off `maddr1` unless
/// `maddr2` has one itself. C reads `delim` from env.
pub fn mailaddr_match(maddr1: &Mailaddr, maddr2: &Mailaddr, delim: char) -> bool {
    if maddr2.user.is_empty() && maddr2.domain.is_empty() {
        return true;
    }
    if !maddr2.domain.is_empty() && !hostname_match(&maddr1.domain, &maddr2.domain) {
        return false;
    }
    if !maddr2.user.is_empty() {
        let mut user1 = maddr1.user.as_str();
        if !maddr2.user.contains(delim) {
            if let Some(i) = user1.find(delim) {
                user1 = &user1[..i];
            }
        }
        if !user1.eq_ignore_ascii_case(&maddr2.user) {
            return false;
        }
    }
    true
}

/// valid_localpart(): dot-separated atoms of letters, digits and
/// MAILADDR_ALLOWED.
pub fn valid_localpart(s: &str) -> bool {
    s.split('.').all(valid_atom)
}

/// An RFC 5322 atom: one or more letters, digits and MAILADDR_ALLOWED.
pub fn valid_atom(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || MAILADDR_ALLOWED.contains(c))
}

/// valid_domainpart(): a host name, or an address literal in brackets
/// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub fn valid_domainpart(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('[') {
        // get(): the client's bytes need not end a character at 5.
        let rest = match rest.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("IPv6:") => &rest[5..],
            _ => rest,
        };
        let Some(inner) = rest.strip_suffix(']') else {
            return false;
        };
        return inner.parse::<std::net::IpAddr>().is_ok();
    }
    if s.is_empty() || s.len() >= crate::defines::SMTPD_MAXDOMAINPARTSIZE || s.ends_with('.') {
        return false;
    }
    res_hnok(s)
}

/// strtonum(3): a decimal integer between `minval` and `maxval`, as
/// strtoll(3) reads it (leading white space and a sign allowed), with
/// nothing after it.
pub fn strtonum(numstr: &str, minval: i64, maxval: i64) -> Option<i64> {
    let t = numstr.trim_start_matches(isspace);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for c in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    let v = if neg { -v } else { v };
    (minval <= maxval && v >= minval && v <= maxval).then_some(v)
}

/// scan_scaled(3): a number with an optional fraction and an optional
/// binary unit (B, K, M, G, T, P, E, either case), `"35M"` or `"1.5G"`.
pub fn scan_scaled(scaled: &str) -> Option<i64> {
    const UNITS: &[u8] = b"BKMGTPE";
    let mut p = scaled
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .as_bytes();
    let mut sign = 0i64;
    while let Some(&c) = p.first() {
        match c {
            b'-' | b'+' if sign != 0 => return None,
            b'-' => sign = -1,
            b'+' => sign = 1,
            _ => break,
        }
        p = &p[1..];
    }
    let (mut whole, mut fpart, mut fract_digits, mut ndigits) = (0i64, 0i64, 0u32, 0u32);
    // The C code caps digits at 3 per unit of the scale table.
    const MAX_DIGITS: u32 = 7 * 3;
    while let Some(&c) = p.first() {
        if c == b'.' {
            if fract_digits > 0 {
                return None;
            }
            fract_digits = 1;
        } else if c.is_ascii_digit() {
            let d = i64::from(c - b'0');
            if fract_digits > 0 {
                if fract_digits < MAX_DIGITS - 1 {
                    fract_digits += 1;
                    fpart = fpart.checked_mul(10)?.checked_add(d)?;
                }
            } else {
                ndigits += 1;
                if ndigits >= MAX_DIGITS {
                    return None;
                }
                whole = whole.checked_mul(10)?.checked_add(d)?;
            }
        } else {
            break;
        }
        p = &p[1..];
    }
    if sign != 0 {
        whole *= sign;
    }
    let Some(&unit) = p.first() else {
        return Some(whole);
    };
    let i = UNITS.iter().position(|&u| u == unit.to_ascii_uppercase())?;
    if p.get(1).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let scale = 1i64 << (10 * i);
    whole = whole.checked_mul(scale)?;
    while fpart >= i64::MAX / scale {
        fpart /= 10;
        fract_digits -= 1;
    }
    fpart *= scale;
    for _ in 1..fract_digits.max(1) {
        fpart /= 10;
    }
    Some(if sign == -1 {
        whole - fpart
    } else {
        whole + fpart
    })
}

/// ckdir(): checks that `path` is a directory with exactly `mode`, owned
/// by `owner`:`group`, creating it so when `create` is set and it does not
/// exist. Every mismatch is logged; false if any.
pub fn ckdir(path: &str, mode: u32, owner: u32, group: u32, create: bool) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            // The mode is set after creation, so that the umask has no say.
            let made = std::fs::create_dir(path)
                .and_then(|()| std::os::unix::fs::chown(path, Some(owner), Some(group)))
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                })
                .and_then(|()| std::fs::metadata(path));
            match made {
                Ok(m) => m,
                Err(e) => {
                    log_warn!(e, "mkdir: {path}");
                    return false;
                }
            }
        }
        Err(e) => {
            log_warn!(e, "stat: {path}");
            return false;
        }
    };
    let mut ok = true;
    if !meta.is_dir() {
        ok = false;
        log_warnx!("{path} is not a directory");
    }
    if meta.uid() != owner {
        ok = false;
        log_warnx!("{path} is not owned by uid {owner}");
    }
    if meta.gid() != group {
        ok = false;
        log_warnx!("{path} is not owned by gid {group}");
    }
    if meta.mode() & 0o7777 != mode {
        ok = false;
        log_warnx!("{path} must be {} ({mode:o})", strmode(mode));
    }
    ok
}

/// strmode(3)'s permission part: `rwx--x--x` for 0711.
pub fn strmode(mode: u32) -> String {
    let mut s = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 0o400 >> i;
        let special = match i {
            2 if mode & 0o4000 != 0 => Some(if mode & bit != 0 { 's' } else { 'S' }),
            5 if mode & 0o2000 != 0 => Some(if mode & bit != 0 { 's' } else { 'S' }),
            8 if mode & 0o1000 != 0 => Some(if mode & bit != 0 { 't' } else { 'T' }),
            _ => None,
        };
        s.push(special.unwrap_or(if mode & bit != 0 { c } else { '-' }));
    }
    s
}

/// mvpurge(): moves `from` into the purge directory `to` under a random
/// name, for the purge task to delete.
pub fn mvpurge(from: &str, to: &str) -> std::io::Result<()> {
    let sep = if to.ends_with('/') { "" } else { "/" };
    let mut retry = 0;
    loop {
        let name = format!("{to}{sep}{}", random_u32());
        match std::fs::rename(from, &name) {
            Ok(()) => return Ok(()),
            // A name already taken (ENOTEMPTY, EISDIR, ENOTDIR): try
            // another, but not forever.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTEMPTY | libc::EISDIR | libc::ENOTDIR)
                ) && retry < 20 =>
            {
                retry += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A random u32 from the kernel (arc4random's role). It used to read
/// /dev/urandom, which a chrooted process cannot open.
pub fn random_u32() -> u32 {
    crate::sys::unistd::arc4random()
}

/// secure_file(): whether `file`, opened as `path`, is a regular file
/// owned by `uid` that others cannot write (or read, unless `mayread`),
/// in directories up to `userdir` that only root or `uid` own and only
/// they can write.
pub fn secure_file(
    file: &std::fs::File,
    path: &str,
    userdir: &str,
    uid: u32,
    mayread: bool,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(mut buf) = std::fs::canonicalize(path) else {
        return false;
    };
    let homedir = std::fs::canonicalize(userdir).ok();
    // Check the open file itself, not the path, to avoid races.
    let Ok(st) = file.metadata() else {
        return false;
    };
    let mask = if mayread { 0o022 } else { 0o066 };
    if !st.is_file() || st.uid() != uid || st.mode() & mask != 0 {
        return false;
    }
    // Each directory of the canonical path, walking up.
    loop {
        let Some(parent) = buf.parent().map(std::path::Path::to_path_buf) else {
            return false;
        };
        buf = parent;
        let Ok(st) = std::fs::metadata(&buf) else {
            return false;
        };
        if (st.uid() != 0 && st.uid() != uid) || st.mode() & 0o022 != 0 {
            return false;
        }
        if homedir.as_deref() == Some(buf.as_path()) || buf.as_os_str() == "/" {
            return true;
        }
    }
}

/// rmtree(): removes everything below `path` (and `path` itself unless
/// `keepdir`), depth first, without following symbolic links. What cannot
/// be removed is logged and skipped, so that one stubborn entry keeps
/// nothing else on disk; the result says whether everything went.
pub fn rmtree(path: &std::path::Path, keepdir: bool) -> bool {
    let mut ok = true;
    match std::fs::read_dir(path) {
        Ok(dir) => {
            for entry in dir.flatten() {
                let p = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    ok &= rmtree(&p, false);
                } else if let Err(e) = std::fs::remove_file(&p) {
                    log_warn!(e, "unlink: {}", p.display());
                    ok = false;
                }
            }
        }
        Err(e) => {
            log_warn!(e, "opendir: {}", path.display());
            ok = false;
        }
    }
    if !keepdir {
        if let Err(e) = std::fs::remove_dir(path) {
            log_warn!(e, "rmdir: {}", path.display());
            ok = false;
        }
    }
    ok
}

/// time(3): seconds since the epoch.
pub fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The kind of a table file, as its first entry (or an `# @list` comment)
/// decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFileType {
    None,
    List,
    Hash,
}

/// One line of a table file, as parse_table_line() splits it.
#[derive(Debug, PartialEq, Eq)]
pub enum TableLine<'a> {
    /// Blank line or comment.
    Skip,
    Entry(&'a str, Option<&'a str>),
    /// A `[` with no `]`, or a key of a mapping with no value.
    Malformed,
}

/// parse_table_line(): splits one line of a table(5) file. The first entry
/// fixes the type of the whole file: a key alone makes a list, a key and a
/// value a mapping; `# @list` before any entry forces a list.
pub fn parse_table_line<'a>(line: &'a str, ty: &mut TableFileType) -> TableLine<'a> {
    let keyp = line.trim_matches(|c: char| c.is_ascii_whitespace());
    if keyp.is_empty() {
        return TableLine::Skip;
    }
    if let Some(comment) = keyp.strip_prefix('#') {
        if *ty == TableFileType::None && comment.trim_start() == "@list" {
            *ty = TableFileType::List;
        }
        return TableLine::Skip;
    }
    let split = if keyp.starts_with('[') {
        match keyp.find(']') {
            Some(i) => i + 1,
            None => return TableLine::Malformed,
        }
    } else {
        keyp.find([' ', '\t', ':']).unwrap_or(keyp.len())
    };
    if *ty == TableFileType::None {
        *ty = if split == keyp.len() {
            TableFileType::List
        } else {
            TableFileType::Hash
        };
    }
    if *ty == TableFileType::List {
        return TableLine::Entry(keyp, None);
    }
    let key = &keyp[..split];
    let mut val = &keyp[split..];
    if !val.is_empty() {
        val = val[1..].trim_start_matches([' ', '\t']);
    }
    if val.is_empty() {
        return TableLine::Malformed;
    }
    TableLine::Entry(key, Some(val))
}

/// parse_smtp_response(): a reply line of an SMTP server, its CR already
/// taken off: the text after the code, and whether more lines follow
/// (`250-`); or why it is no reply.
pub fn parse_smtp_response(line: &[u8]) -> Result<(&[u8], bool), &'static str> {
    let len = line.len();
    if len >= LINE_MAX {
        return Err("line too long");
    }
    let (msg, cont) = match len {
        0..=2 => return Err("line too short"),
        3 => (&line[3..], false),
        _ => (&line[4..], line[3] == b'-'),
    };
    if !(b'2'..=b'5').contains(&line[0]) || !line[1].is_ascii_digit() || !line[2].is_ascii_digit() {
        return Err("reply code out of range");
    }
    Ok((msg, cont))
}

/// parse_mailname_file(): the first line of the mailname file, if any.
fn parse_mailname_file() -> Option<String> {
    let f = std::fs::File::open(MAILNAME_FILE).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    if line.ends_with('\n') {
        line.pop();
    }
    if line.len() > crate::defines::HOST_NAME_MAX {
        eprintln!("{MAILNAME_FILE} entry too long");
        return None;
    }
    Some(line)
}

/// getmailname(): the server name: the mailname file, else the host name,
/// canonicalised through the resolver when it has no domain part.
pub fn getmailname() -> Result<String, String> {
    if let Some(name) = parse_mailname_file() {
        return Ok(name);
    }
    let hostname =
        unistd::gethostname().map_err(|_| "getmailname: gethostname() failed".to_string())?;
    if hostname.contains('.') {
        return Ok(hostname);
    }
    match net::getaddrinfo(&hostname, Family::Unspec, false, true) {
        Ok(ai) => match ai.canonname {
            Some(c) if c.len() > crate::defines::HOST_NAME_MAX => Err("hostname too long".into()),
            Some(c) => Ok(c),
            None => Ok(hostname),
        },
        // Continue with the name as it is.
        Err(_) => Ok(hostname),
    }
}

/// valid_smtp_response(): a reply line a filter may send: a 2xx to 5xx
/// code, a space, and text.
pub fn valid_smtp_response(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
}

/// valid_xtext(): an RFC 3461 xtext (ORCPT): printable ASCII but '=',
/// with '+' followed by two uppercase hex digits.
pub fn valid_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(b'!'..=b'~').contains(&c) || c == b'=' {
            return false;
        }
        if c == b'+' {
            if !hex(b.get(i + 1)) || !hex(b.get(i + 2)) {
                return false;
            }
            i += 2;
        }
        i += 1;
    }
    true
}

/// generate_uid(): a session or request id, unique in this process: a
/// counter that starts at random in the high half, randomness in the low
/// half, never 0.
pub fn generate_uid() -> u64 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static ID: AtomicU32 = AtomicU32::new(0);
    static INITED: std::sync::Once = std::sync::Once::new();
    INITED.call_once(|| ID.store(unistd::arc4random(), Ordering::Relaxed));
    loop {
        let hi = u64::from(ID.fetch_add(1, Ordering::Relaxed));
        let uid = (hi << 32) | u64::from(unistd::arc4random());
        if uid != 0 {
            return uid;
        }
    }
}

/// strnvis(3) with VIS_SAFE | VIS_CSTYLE, and VIS_WHITE when `white`
/// (OpenBSD libc): bytes as they may safely reach a log line. Graphic
/// characters stay, `\` doubles; with VIS_SAFE, backspace, bell and
/// carriage return stay too, and space, tab and newline unless `white`;
/// the rest become C escapes (`\n`, `\t`, `\0`...), `\^X` for control
/// characters and `\M-` for bytes above 127.
pub fn strnvis(b: &[u8], white: bool) -> String {
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        vis_byte(&mut out, c, next, white);
    }
    out
}

fn vis_byte(out: &mut String, c: u8, next: Option<u8>, white: bool) {
    let visible = c.is_ascii_graphic()
        || matches!(c, 0x08 | 0x07 | b'\r')
        || (!white && matches!(c, b' ' | b'\t' | b'\n'));
    if visible {
        if c == b'\\' {
            out.push_str("\\\\");
        } else {
            out.push(char::from(c));
        }
        return;
    }
    let cstyle = match c {
        b'\n' => Some("\\n"),
        b'\r' => Some("\\r"),
        0x08 => Some("\\b"),
        0x07 => Some("\\a"),
        0x0b => Some("\\v"),
        b'\t' => Some("\\t"),
        0x0c => Some("\\f"),
        b' ' => Some("\\s"),
        // \0 would read as octal before a digit.
        0 if next.is_some_and(|n| (b'0'..=b'7').contains(&n)) => Some("\\000"),
        0 => Some("\\0"),
        _ => None,
    };
    if let Some(e) = cstyle {
        out.push_str(e);
        return;
    }
    out.push('\\');
    if c & 0x80 != 0 {
        out.push('M');
    }
    match c & 0x7f {
        0x7f => out.push_str("^?"),
        c if c < 0x20 => {
            out.push('^');
            out.push(char::from(c + b'@'));
        }
        // A printable byte with the high bit set.
        c => {
            out.push('-');
            out.push(char::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_and_smtp_responses() {
        assert!(valid_xtext("rfc822;user+2Bx@example.org"));
        assert!(!valid_xtext("rfc822;a=b"));
        assert!(!valid_xtext("rfc822;a+2"));
        assert!(!valid_xtext("rfc822;a+2b"));
        assert!(!valid_xtext("a b"));
        assert!(valid_smtp_response("550 no"));
        assert!(!valid_smtp_response("650 no"));
        assert!(!valid_smtp_response("550-no"));
        assert!(!valid_smtp_response("550 "));
    }

    #[test]
    fn smtp_responses_parse_as_opensmtpd_does() {
        assert_eq!(parse_smtp_response(b"250 ok"), Ok((&b"ok"[..], false)));
        assert_eq!(
            parse_smtp_response(b"250-PIPELINING"),
            Ok((&b"PIPELINING"[..], true))
        );
        assert_eq!(parse_smtp_response(b"354"), Ok((&b""[..], false)));
        assert_eq!(parse_smtp_response(b"25"), Err("line too short"));
        assert_eq!(
            parse_smtp_response(b"150 x"),
            Err("reply code out of range")
        );
        assert_eq!(
            parse_smtp_response(b"2x0 x"),
            Err("reply code out of range")
        );
        let long = vec![b'2'; LINE_MAX];
        assert_eq!(parse_smtp_response(&long), Err("line too long"));
    }

    #[test]
    fn uids_are_unique_and_never_zero() {
        let a: std::collections::HashSet<u64> = (0..1000).map(|_| generate_uid()).collect();
        assert_eq!(a.len(), 1000);
        assert!(!a.contains(&0));
    }

    #[test]
    fn vis_escapes_what_a_log_line_should_not_hold() {
        assert_eq!(strnvis(b"MAIL FROM:<a@b>", false), "MAIL FROM:<a@b>");
        assert_eq!(strnvis(b"a\\b", false), "a\\\\b");
        assert_eq!(strnvis(b"x\x01y\x7f", false), "x\\^Ay\\^?");
        assert_eq!(strnvis(b"\xe9\x80", false), "\\M-i\\M^@");
        assert_eq!(strnvis(b"a b\tc", true), "a\\sb\\tc");
        assert_eq!(strnvis(b"\x001", false), "\\0001");
        assert_eq!(strnvis(b"\x0b", false), "\\v");
    }

    #[test]
    fn res_hnok_accepts_host_names_only() {
        assert!(res_hnok("mail.example.org"));
        assert!(res_hnok("a-b_c.d"));
        assert!(!res_hnok("-a.example"));
        assert!(!res_hnok("a-.example"));
        assert!(!res_hnok("a b"));
        assert!(!res_hnok("*"));
        assert!(!res_hnok("a..b"));
        assert!(!res_hnok(""));
        assert!(res_hnok("example.org."));
        let label = "d".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "d".repeat(61));
        assert!(res_hnok(&longest));
        assert!(!res_hnok(&format!("{longest}d")));
        assert!(!res_hnok(&format!("{}.example", "d".repeat(64))));
    }

    #[test]
    fn scan_scaled_units_and_fractions() {
        assert_eq!(scan_scaled("35M"), Some(35 * 1024 * 1024));
        assert_eq!(scan_scaled("1k"), Some(1024));
        assert_eq!(scan_scaled("1.5K"), Some(1536));
        assert_eq!(scan_scaled("100"), Some(100));
        assert_eq!(scan_scaled("10B"), Some(10));
        assert_eq!(scan_scaled("1X"), None);
        assert_eq!(scan_scaled("1Mb"), None);
        assert_eq!(scan_scaled("1.2.3"), None);
        assert_eq!(scan_scaled("99999999E"), None);
    }

    #[test]
    fn table_lines_fix_the_type_on_the_first_entry() {
        let mut ty = TableFileType::None;
        assert_eq!(parse_table_line("  # comment", &mut ty), TableLine::Skip);
        assert_eq!(
            parse_table_line("root: alice, bob", &mut ty),
            TableLine::Entry("root", Some("alice, bob"))
        );
        assert_eq!(ty, TableFileType::Hash);
        assert_eq!(parse_table_line("lonely", &mut ty), TableLine::Malformed);

        let mut ty = TableFileType::None;
        assert_eq!(parse_table_line("# @list", &mut ty), TableLine::Skip);
        assert_eq!(
            parse_table_line("a b", &mut ty),
            TableLine::Entry("a b", None)
        );

        let mut ty = TableFileType::None;
        assert_eq!(
            parse_table_line("[::1] v", &mut ty),
            TableLine::Entry("[::1]", Some("v"))
        );
        assert_eq!(parse_table_line("[::1 v", &mut ty), TableLine::Malformed);
    }

    #[test]
    fn domain_parts() {
        assert!(valid_domainpart("example.org"));
        assert!(valid_domainpart("[192.0.2.1]"));
        assert!(valid_domainpart("[IPv6:2001:db8::1]"));
        assert!(!valid_domainpart("example.org."));
        assert!(!valid_domainpart("[nope]"));
        // Found by the smtp_command fuzz target: a multi-byte character
        // across the fifth byte after the bracket.
        assert!(!valid_domainpart("[abc\u{fffd}]"));
        assert!(!valid_domainpart(""));
    }

    #[test]
    fn hostname_match_wildcards_do_not_backtrack() {
        assert!(hostname_match("a.example.org", "*.example.org"));
        assert!(hostname_match("A.Example.ORG", "*.example.org"));
        assert!(!hostname_match("a.b.example.org", "*.example.org"));
        assert!(!hostname_match("example.org", "*.example.org"));
        assert!(hostname_match("abbbc", "a*c"));
        // The skip stops at the first c: "cbc" is not "c".
        assert!(!hostname_match("acbc", "a*c"));
        assert!(hostname_match("anything", "*"));
        assert!(hostname_match("any", "a**"));
        assert!(!hostname_match("", "*"));
        assert!(!hostname_match("abc", "abc*"));
        assert!(hostname_match("", ""));
        assert!(!hostname_match("a", ""));
    }

    #[test]
    fn mailaddr_match_forms_and_sub_addresses() {
        let m = |u: &str, d: &str| Mailaddr::new(u, d);
        let bob = m("bob+lists", "example.org");
        assert!(mailaddr_match(&bob, &m("", ""), '+'));
        assert!(mailaddr_match(&bob, &m("", "example.org"), '+'));
        assert!(mailaddr_match(&bob, &m("", "*.org"), '+'));
        assert!(!mailaddr_match(&bob, &m("", "example.net"), '+'));
        assert!(mailaddr_match(&bob, &m("BOB", ""), '+'));
        assert!(mailaddr_match(&bob, &m("bob", "example.org"), '+'));
        assert!(mailaddr_match(&bob, &m("bob+lists", "example.org"), '+'));
        assert!(!mailaddr_match(&bob, &m("bob+other", "example.org"), '+'));
        assert!(!mailaddr_match(&bob, &m("bob", "example.org"), '-'));
        assert!(mailaddr_match(
            &m("bob-x", "example.org"),
            &m("bob", ""),
            '-'
        ));
        assert!(!mailaddr_match(&bob, &m("alice", ""), '+'));
    }

    #[test]
    fn local_parts() {
        assert!(valid_localpart("gilles"));
        assert!(valid_localpart("first.last+tag"));
        assert!(valid_localpart("a!#$%&'*/?^`{|}~+-=_z"));
        assert!(!valid_localpart(""));
        assert!(!valid_localpart(".a"));
        assert!(!valid_localpart("a."));
        assert!(!valid_localpart("a..b"));
        assert!(!valid_localpart("a b"));
        assert!(!valid_localpart("a\"b"));
        assert!(!valid_localpart("caf\u{e9}"));
    }

    #[test]
    fn strtonum_and_strip_as_libc() {
        assert_eq!(strtonum("42", 0, 100), Some(42));
        assert_eq!(strtonum(" +7", 0, 100), Some(7));
        assert_eq!(strtonum("-1", 0, 100), None);
        assert_eq!(strtonum("101", 0, 100), None);
        assert_eq!(strtonum("", 0, 100), None);
        assert_eq!(strtonum("4x", 0, 100), None);
        assert_eq!(strtonum("4 ", 0, 100), None);
        assert_eq!(strtonum("99999999999999999999", 0, i64::MAX), None);
        assert_eq!(strip("\x0b \t a b \r\n"), "a b");
        assert_eq!(strip("   "), "");
    }

    #[test]
    fn strmode_as_ls_shows_it() {
        assert_eq!(strmode(0o711), "rwx--x--x");
        assert_eq!(strmode(0o1777), "rwxrwxrwt");
        assert_eq!(strmode(0o770), "rwxrwx---");
    }

    #[test]
    fn ckdir_creates_and_checks() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("smtpd-ckdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.to_str().unwrap().to_string();
        let me = crate::sys::unistd::geteuid();
        let gid = {
            std::fs::create_dir(&dir).unwrap();
            let g = std::fs::metadata(&dir).unwrap().gid();
            std::fs::remove_dir(&dir).unwrap();
            g
        };
        assert!(!ckdir(&p, 0o700, me, gid, false), "missing and not created");
        assert!(ckdir(&p, 0o700, me, gid, true));
        assert!(ckdir(&p, 0o700, me, gid, false));
        assert!(!ckdir(&p, 0o711, me, gid, false), "wrong mode");
        std::fs::remove_dir(&dir).unwrap();
    }
}
