//! mda_variables.c: expansion of the `%{...}` format specifiers of
//! smtpd.conf(5) in delivery commands and mda wrappers (OpenSMTPD
//! mda_variables.c 1.10).
//!
//! C's -1 becomes an `ExpandError` that says what is wrong. Where
//! mda_expand_format returns 0 without touching its buffer (an unterminated
//! `%{`, a specifier of 128 bytes or more, a home directory too long for
//! `~/`), mda_unpriv takes that for success and runs the command with its
//! format specifiers unexpanded; here these are errors too.

use std::fmt;

use crate::defines::EXPAND_BUFFER;
use crate::dispatcher::mda::Deliver;
use crate::table::table::Userinfo;
use crate::util::mailaddr::Mailaddr;

/// smtpd.h MAILADDR_ESCAPE: the characters of an expanded value that are
/// replaced by ':' unless the `raw` modifier is given. They are the
/// MAILADDR_ALLOWED characters a shell may interpret, less `/^+-=_`.
pub const MAILADDR_ESCAPE: &str = "!#$%&'*?`{|}~";

/// The longest specifier between `%{` and `}` is MAXTOKENLEN - 1 bytes.
const MAXTOKENLEN: usize = 128;

/// Why a format does not expand (C returns -1, or 0 for the cases named
/// at the top of this file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// `%{` without a `}` after it; holds the text from the `%{`.
    Unterminated(String),
    /// A specifier of MAXTOKENLEN bytes or more.
    TokenTooLong(String),
    /// A leading `~/` and a home directory of EXPAND_BUFFER bytes or more.
    HomeTooLong(String),
    UnknownToken(String),
    UnknownModifier {
        token: String,
        modifier: String,
    },
    /// A malformed range, or one that falls outside the value.
    BadRange(String),
    /// `%{mda}` outside an mda wrapper.
    NoMdaCommand,
    /// The value of a specifier does not fit EXPAND_BUFFER.
    ValueTooLong(String),
    /// The whole expansion does not fit EXPAND_BUFFER.
    TooLong,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unterminated(s) => write!(f, "unterminated format specifier \"{s}\""),
            ExpandError::TokenTooLong(t) => write!(f, "format specifier %{{{t}}} too long"),
            ExpandError::HomeTooLong(d) => write!(f, "user directory for {d} too large"),
            ExpandError::UnknownToken(t) => write!(f, "unknown format specifier %{{{t}}}"),
            ExpandError::UnknownModifier { token, modifier } => {
                write!(f, "unknown modifier \"{modifier}\" in %{{{token}}}")
            }
            ExpandError::BadRange(t) => write!(f, "invalid range in %{{{t}}}"),
            ExpandError::NoMdaCommand => {
                write!(f, "%{{mda}} is only available in mda wrappers")
            }
            ExpandError::ValueTooLong(t) => write!(f, "expansion of %{{{t}}} too long"),
            ExpandError::TooLong => write!(f, "expansion longer than {} bytes", EXPAND_BUFFER - 1),
        }
    }
}

impl std::error::Error for ExpandError {}

/// The entries of C's token_modifiers[], `raw` being the one without a
/// function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modifier {
    Lowercase,
    Uppercase,
    Strip,
    Raw,
}

const TOKEN_MODIFIERS: [(&str, Modifier); 4] = [
    ("lowercase", Modifier::Lowercase),
    ("uppercase", Modifier::Uppercase),
    ("strip", Modifier::Strip),
    ("raw", Modifier::Raw),
];

/// `user@domain`, or "" for the null address (C prints "%s@%s" and turns
/// a lone "@" into `null`).
fn mda_expand_mailaddr(m: &Mailaddr, null: &str) -> String {
    if m.user.is_empty() && m.domain.is_empty() {
        null.to_string()
    } else {
        format!("{}@{}", m.user, m.domain)
    }
}

/// One offset of a range: strtonum(s, -EXPAND_BUFFER, EXPAND_BUFFER),
/// which takes leading white space and a sign as strtoll does.
fn mda_expand_offset(s: &str, token: &str) -> Result<i64, ExpandError> {
    let limit = EXPAND_BUFFER as i64;
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    match s.parse::<i64>() {
        Ok(n) if (-limit..=limit).contains(&n) => Ok(n),
        _ => Err(ExpandError::BadRange(token.to_string())),
    }
}

/// The bytes `begoff..=endoff` of `value`, offsets as mda_expand_token
/// reads them: a negative begin counts from the end, a negative end too
/// but one further (`[0:-4]` of "example.org" is "example"), an end past
/// the value stops at its last byte. `[-n]` alone is thus an empty range,
/// refused as in C.
fn mda_expand_range<'a>(
    value: &'a str,
    mut begoff: i64,
    mut endoff: i64,
    token: &str,
) -> Result<&'a str, ExpandError> {
    let bad = || ExpandError::BadRange(token.to_string());
    let i = value.len() as i64;
    if begoff >= i {
        return Err(bad());
    }
    if endoff >= i {
        endoff = i - 1;
    }
    if begoff < 0 {
        begoff += i;
    }
    if endoff < 0 {
        endoff += i - 1;
    }
    if begoff < 0 || endoff < 0 || endoff < begoff {
        return Err(bad());
    }
    // C cuts bytes; a cut inside a UTF-8 character is refused.
    value
        .get(begoff as usize..endoff as usize + 1)
        .ok_or_else(bad)
}

/// Expands one specifier, the text between `%{` and `}`:
/// `name[range]:modifier|modifier...`, range and modifiers optional.
///
/// OpenSMTPD never expands a specifier with both a range and modifiers:
/// once it has found the brackets, mda_expand_token takes the modifiers
/// with `mods = strchr(rbracket + 1, ':')` but, unlike its bracket-less
/// branch (`*mods++ = '\0'`), does not step over that ':'. The first
/// modifier it looks up is thus ":uppercase", which is in no entry of
/// token_modifiers[], and the whole expansion fails ("modifier not found",
/// so "mda command line could not be expanded"). Whatever sits between
/// ']' and a ':' is also ignored without a word (`%{rcpt[0]junk}` is
/// `%{rcpt[0]}`). We skip the ':', so that range and modifiers combine
/// as smtpd.conf(5) presents them, and refuse anything else after ']'.
/// The specifier reads left to right: the range selects part of the
/// value, then the modifiers apply to that part in the order written,
/// then the sanitising: `%{rcpt.domain[0:-4]:uppercase}` of example.org
/// is "EXAMPLE". Without a range the order makes no difference (C runs
/// the modifiers first); with one, only `strip` can tell: range first,
/// `%{rcpt[0:4]:strip}` of User+Tag@example.org is "User", not "User@".
fn mda_expand_token(
    token: &str,
    dlv: &Deliver,
    ui: &Userinfo,
    mda_command: Option<&str>,
    subaddressing_delim: char,
) -> Result<String, ExpandError> {
    let mut begoff: i64 = 0;
    let mut endoff: i64 = EXPAND_BUFFER as i64;
    let name;
    let mods;

    // token[x[:y]] -> extracts optional x and y
    if let (Some(lbracket), Some(rbracket)) = (token.find('['), token.find(']')) {
        if rbracket < lbracket || rbracket - lbracket <= 1 {
            return Err(ExpandError::BadRange(token.to_string()));
        }
        let content = &token[lbracket + 1..rbracket];
        match content.split_once(':') {
            None => {
                begoff = mda_expand_offset(content, token)?;
                endoff = begoff;
            }
            Some((b, e)) => {
                if !b.is_empty() {
                    begoff = mda_expand_offset(b, token)?;
                }
                if !e.is_empty() {
                    endoff = mda_expand_offset(e, token)?;
                }
            }
        }
        name = &token[..lbracket];
        let rest = &token[rbracket + 1..];
        mods = if rest.is_empty() {
            None
        } else if let Some(m) = rest.strip_prefix(':') {
            Some(m)
        } else {
            return Err(ExpandError::BadRange(token.to_string()));
        };
    } else {
        match token.split_once(':') {
            Some((n, m)) => {
                name = n;
                mods = Some(m);
            }
            None => {
                name = token;
                mods = None;
            }
        }
    }

    // token -> expanded token; user.directory and mda are not sanitised
    let mut replace = true;
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    let value = if is("sender") {
        mda_expand_mailaddr(&dlv.sender, "")
    } else if is("rcpt") {
        mda_expand_mailaddr(&dlv.rcpt, "")
    } else if is("dest") {
        mda_expand_mailaddr(&dlv.dest, "")
    } else if is("sender.user") {
        dlv.sender.user.clone()
    } else if is("sender.domain") {
        dlv.sender.domain.clone()
    } else if is("user.username") {
        ui.username.clone()
    } else if is("user.directory") {
        replace = false;
        ui.directory.clone()
    } else if is("rcpt.user") {
        dlv.rcpt.user.clone()
    } else if is("rcpt.domain") {
        dlv.rcpt.domain.clone()
    } else if is("dest.user") {
        dlv.dest.user.clone()
    } else if is("dest.domain") {
        dlv.dest.domain.clone()
    } else if is("mda") {
        replace = false;
        mda_command.ok_or(ExpandError::NoMdaCommand)?.to_string()
    } else if is("mbox.from") {
        mda_expand_mailaddr(&dlv.sender, "MAILER-DAEMON")
    } else {
        return Err(ExpandError::UnknownToken(token.to_string()));
    };
    if value.len() >= EXPAND_BUFFER {
        return Err(ExpandError::ValueTooLong(token.to_string()));
    }

    // expanded string is empty, whatever the range
    if value.is_empty() {
        return Ok(value);
    }
    let mut out = mda_expand_range(&value, begoff, endoff, token)?.to_string();

    // apply modifiers
    let mut raw = false;
    if let Some(mods) = mods {
        for m in mods.split('|') {
            let Some((_, modifier)) = TOKEN_MODIFIERS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(m))
            else {
                return Err(ExpandError::UnknownModifier {
                    token: token.to_string(),
                    modifier: m.to_string(),
                });
            };
            match modifier {
                Modifier::Lowercase => mod_lowercase(&mut out),
                Modifier::Uppercase => mod_uppercase(&mut out),
                Modifier::Strip => mod_strip(&mut out, subaddressing_delim),
                Modifier::Raw => raw = true,
            }
        }
    }

    if !raw && replace {
        out = out
            .chars()
            .map(|c| if MAILADDR_ESCAPE.contains(c) { ':' } else { c })
            .collect();
    }

    // the substring and its NUL must fit the destination buffer
    if out.len() + 1 >= EXPAND_BUFFER {
        return Err(ExpandError::ValueTooLong(token.to_string()));
    }
    Ok(out)
}

/// Expands the format specifiers of `buf`: `%{...}`, `%%` for a '%', and
/// a leading `~/` for the user's home directory. `mda_command` is what
/// `%{mda}` expands to (an mda wrapper's inner command; None elsewhere).
/// `subaddressing_delim` is the `smtp sub-addr-delim` of the
/// configuration, for the `strip` modifier (C reads env->
/// sc_subaddressing_delim there). The result is at most EXPAND_BUFFER - 1
/// bytes, as C's.
pub fn mda_expand_format(
    buf: &str,
    dlv: &Deliver,
    ui: &Userinfo,
    mda_command: Option<&str>,
    subaddressing_delim: char,
) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut rest = buf;

    // special case: ~/ only allowed expanded at the beginning
    if let Some(r) = rest.strip_prefix("~/") {
        out = format!("{}/", ui.directory);
        if out.len() >= EXPAND_BUFFER {
            return Err(ExpandError::HomeTooLong(ui.directory.clone()));
        }
        rest = r;
    }

    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("%%") {
            out.push('%');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("%{") {
            let Some((token, r)) = r.split_once('}') else {
                return Err(ExpandError::Unterminated(rest.to_string()));
            };
            if token.len() >= MAXTOKENLEN {
                return Err(ExpandError::TokenTooLong(token.to_string()));
            }
            out.push_str(&mda_expand_token(
                token,
                dlv,
                ui,
                mda_command,
                subaddressing_delim,
            )?);
            rest = r;
        } else {
            // up to the next '%' after this character
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let n = rest[first..].find('%').map_or(rest.len(), |n| n + first);
            out.push_str(&rest[..n]);
            rest = &rest[n..];
        }
        if out.len() >= EXPAND_BUFFER {
            return Err(ExpandError::TooLong);
        }
    }
    Ok(out)
}

/// C's lowercase(): tolower() in the C locale, so ASCII only.
fn mod_lowercase(buf: &mut str) {
    buf.make_ascii_lowercase();
}

fn mod_uppercase(buf: &mut str) {
    buf.make_ascii_uppercase();
}

/// gilles+hackers@poolp.org -> gilles@poolp.org, gilles+hackers -> gilles:
/// from the first delimiter up to the '@' after it, or to the end.
fn mod_strip(buf: &mut String, delim: char) {
    if let Some(tag) = buf.find(delim) {
        match buf[tag..].find('@') {
            Some(at) => buf.replace_range(tag..tag + at, ""),
            None => buf.truncate(tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver() -> Deliver {
        Deliver {
            dispatcher: "local".into(),
            sender: Mailaddr::new("Alice", "Example.COM"),
            rcpt: Mailaddr::new("User+Tag", "example.org"),
            dest: Mailaddr::new("bob", "example.net"),
            mda_subaddress: "Tag".into(),
            mda_exec: String::new(),
            userinfo: Userinfo {
                username: "bob".into(),
                directory: "/home/b*b".into(),
                uid: 1000,
                gid: 1000,
            },
        }
    }

    fn exp(fmt: &str) -> Result<String, ExpandError> {
        let d = deliver();
        mda_expand_format(fmt, &d, &d.userinfo, None, '+')
    }

    fn exp_with(d: &Deliver, fmt: &str) -> Result<String, ExpandError> {
        mda_expand_format(fmt, d, &d.userinfo, None, '+')
    }

    #[test]
    fn every_variable_expands() {
        let cases = [
            ("%{sender}", "Alice@Example.COM"),
            ("%{sender.user}", "Alice"),
            ("%{sender.domain}", "Example.COM"),
            ("%{rcpt}", "User+Tag@example.org"),
            ("%{rcpt.user}", "User+Tag"),
            ("%{rcpt.domain}", "example.org"),
            ("%{dest}", "bob@example.net"),
            ("%{dest.user}", "bob"),
            ("%{dest.domain}", "example.net"),
            ("%{user.username}", "bob"),
            ("%{user.directory}", "/home/b*b"),
            ("%{mbox.from}", "Alice@Example.COM"),
        ];
        for (f, want) in cases {
            assert_eq!(exp(f).unwrap(), want, "{f}");
        }
    }

    #[test]
    fn variable_names_are_case_insensitive() {
        assert_eq!(exp("%{RCPT.Domain}").unwrap(), "example.org");
        assert_eq!(exp("%{rcpt:LowerCase}").unwrap(), "user+tag@example.org");
    }

    #[test]
    fn null_sender_is_empty_but_mailer_daemon_for_mbox_from() {
        let mut d = deliver();
        d.sender = Mailaddr::default();
        assert_eq!(exp_with(&d, "<%{sender}>").unwrap(), "<>");
        assert_eq!(exp_with(&d, "<%{sender.user}>").unwrap(), "<>");
        assert_eq!(exp_with(&d, "%{mbox.from}").unwrap(), "MAILER-DAEMON");
        // An empty value ignores its range.
        assert_eq!(exp_with(&d, "<%{sender[5]}>").unwrap(), "<>");
        // Only both parts empty make the null address.
        d.sender = Mailaddr::new("", "example.com");
        assert_eq!(exp_with(&d, "%{sender}").unwrap(), "@example.com");
        assert_eq!(exp_with(&d, "%{mbox.from}").unwrap(), "@example.com");
    }

    #[test]
    fn mda_is_only_known_to_wrappers_and_is_not_sanitised() {
        let d = deliver();
        assert_eq!(exp("x %{mda}"), Err(ExpandError::NoMdaCommand));
        let inner = "/usr/local/bin/filter -a 'x|y' \"$HOME\"";
        assert_eq!(
            mda_expand_format("wrap %{mda}", &d, &d.userinfo, Some(inner), '+').unwrap(),
            format!("wrap {inner}")
        );
    }

    #[test]
    fn every_range_form_of_the_man_page() {
        let cases = [
            ("%{rcpt.domain[0]}", "e"),
            ("%{rcpt.domain[1]}", "x"),
            ("%{rcpt.domain[8:]}", "org"),
            ("%{rcpt.domain[-3:]}", "org"),
            ("%{rcpt.domain[0:6]}", "example"),
            ("%{rcpt.domain[0:-4]}", "example"),
            ("%{rcpt.domain[:3]}", "exam"),
            ("%{rcpt.domain[:]}", "example.org"),
            ("%{rcpt.domain[8:100]}", "org"),
            ("%{rcpt.domain[0:-10]}", "e"),
            ("%{rcpt.domain[+1:+2]}", "xa"),
            ("%{rcpt.domain[10]}", "g"),
            ("%{rcpt.domain[ 1:\t2]}", "xa"),
        ];
        for (f, want) in cases {
            assert_eq!(exp(f).unwrap(), want, "{f}");
        }
    }

    #[test]
    fn bad_ranges_are_errors() {
        for f in [
            "%{rcpt.domain[]}",
            "%{rcpt.domain][0}",
            "%{rcpt.domain[x]}",
            "%{rcpt.domain[1:y]}",
            "%{rcpt.domain[1:2:3]}",
            "%{rcpt.domain[1 ]}",
            "%{rcpt.domain[11]}",
            "%{rcpt.domain[-12:]}",
            "%{rcpt.domain[5:2]}",
            "%{rcpt.domain[0:-11]}",
            "%{rcpt.domain[1025]}",
            "%{rcpt.domain[-1025:]}",
            // C's quirk, kept: a lone negative index is an empty range.
            "%{rcpt.domain[-1]}",
            // C ignores what follows ']'; we refuse it.
            "%{rcpt.domain[0]junk}",
        ] {
            assert!(
                matches!(exp(f), Err(ExpandError::BadRange(_))),
                "{f}: {:?}",
                exp(f)
            );
        }
        assert_eq!(
            exp("%{rcpt.domain[5:2]}").unwrap_err().to_string(),
            "invalid range in %{rcpt.domain[5:2]}"
        );
    }

    #[test]
    fn a_range_inside_a_utf8_character_is_refused() {
        let mut d = deliver();
        d.rcpt.domain = "é.example".into();
        assert_eq!(exp_with(&d, "%{rcpt.domain[0:1]}").unwrap(), "é");
        assert!(matches!(
            exp_with(&d, "%{rcpt.domain[0]}"),
            Err(ExpandError::BadRange(_))
        ));
    }

    #[test]
    fn every_modifier_of_the_man_page() {
        let cases = [
            ("%{rcpt:lowercase}", "user+tag@example.org"),
            ("%{rcpt:uppercase}", "USER+TAG@EXAMPLE.ORG"),
            ("%{rcpt:strip}", "User@example.org"),
            ("%{rcpt:lowercase|strip}", "user@example.org"),
            ("%{rcpt.user:strip}", "User"),
            ("%{rcpt.user:strip|uppercase}", "USER"),
            ("%{dest:strip}", "bob@example.net"),
        ];
        for (f, want) in cases {
            assert_eq!(exp(f).unwrap(), want, "{f}");
        }
    }

    #[test]
    fn strip_uses_the_configured_delimiter() {
        let mut d = deliver();
        d.rcpt = Mailaddr::new("gilles-hackers-x", "poolp.org");
        let f = "%{rcpt:strip}";
        assert_eq!(
            mda_expand_format(f, &d, &d.userinfo, None, '-').unwrap(),
            "gilles@poolp.org"
        );
        assert_eq!(
            mda_expand_format(f, &d, &d.userinfo, None, '+').unwrap(),
            "gilles-hackers-x@poolp.org"
        );
    }

    #[test]
    fn modifiers_apply_only_to_ascii_as_c_locale_does() {
        let mut d = deliver();
        d.rcpt.user = "Élodie".into();
        assert_eq!(
            exp_with(&d, "%{rcpt.user:lowercase}").unwrap(),
            "Élodie".to_ascii_lowercase()
        );
        assert_eq!(exp_with(&d, "%{rcpt.user:uppercase}").unwrap(), "ÉLODIE");
    }

    #[test]
    fn range_and_modifiers_combine_range_first() {
        assert_eq!(exp("%{rcpt.domain[0:-4]:uppercase}").unwrap(), "EXAMPLE");
        assert_eq!(exp("%{rcpt.domain[-3:]:uppercase|raw}").unwrap(), "ORG");
        assert_eq!(exp("%{rcpt[0]:lowercase}").unwrap(), "u");
        // The range cuts "User+", then strip drops the "+".
        assert_eq!(exp("%{rcpt[0:4]:strip}").unwrap(), "User");
        assert_eq!(
            exp("%{rcpt[5:]:strip|uppercase}").unwrap(),
            "TAG@EXAMPLE.ORG"
        );
        assert!(matches!(
            exp("%{rcpt[0]:nosuch}"),
            Err(ExpandError::UnknownModifier { .. })
        ));
    }

    #[test]
    fn dangerous_characters_become_colons_unless_raw() {
        let mut d = deliver();
        d.rcpt.user = "a!#$%&'*?`{|}~b/^+-=_.c".into();
        assert_eq!(
            exp_with(&d, "%{rcpt.user}").unwrap(),
            "a:::::::::::::b/^+-=_.c"
        );
        assert_eq!(
            exp_with(&d, "%{rcpt.user:raw}").unwrap(),
            "a!#$%&'*?`{|}~b/^+-=_.c"
        );
        assert_eq!(exp_with(&d, "%{rcpt.user[0:1]:uppercase}").unwrap(), "A:");
        // The man page's example.
        d.rcpt = Mailaddr::new("user+t?g", "example.org");
        assert_eq!(exp_with(&d, "%{rcpt}").unwrap(), "user+t:g@example.org");
        assert_eq!(exp_with(&d, "%{rcpt:raw}").unwrap(), "user+t?g@example.org");
        // Each modifier is its own: raw may come anywhere.
        assert_eq!(
            exp_with(&d, "%{rcpt:raw|uppercase}").unwrap(),
            "USER+T?G@EXAMPLE.ORG"
        );
    }

    #[test]
    fn user_directory_and_tilde_are_not_sanitised() {
        assert_eq!(exp("%{user.directory}/Mail").unwrap(), "/home/b*b/Mail");
        assert_eq!(exp("~/Maildir").unwrap(), "/home/b*b/Maildir");
        // Only at the beginning.
        assert_eq!(exp("x ~/Maildir").unwrap(), "x ~/Maildir");
        assert_eq!(exp("~/%{user.username}").unwrap(), "/home/b*b/bob");
    }

    #[test]
    fn percent_percent_is_a_percent_and_other_text_is_kept() {
        assert_eq!(exp("100%% %d %").unwrap(), "100% %d %");
        assert_eq!(exp("%%{rcpt}").unwrap(), "%{rcpt}");
        assert_eq!(exp("é%{dest.user}é%").unwrap(), "ébobé%");
        assert_eq!(exp("").unwrap(), "");
        assert_eq!(
            exp("/usr/libexec/mail.maildir \"%{user.directory}/%{rcpt.user:strip}\"").unwrap(),
            "/usr/libexec/mail.maildir \"/home/b*b/User\""
        );
    }

    #[test]
    fn malformed_formats_are_errors() {
        assert_eq!(
            exp("cmd %{rcpt"),
            Err(ExpandError::Unterminated("%{rcpt".into()))
        );
        assert_eq!(
            exp("%{nosuch}").unwrap_err().to_string(),
            "unknown format specifier %{nosuch}"
        );
        assert!(matches!(exp("%{}"), Err(ExpandError::UnknownToken(_))));
        assert!(matches!(
            exp("%{rcpt[0}"),
            Err(ExpandError::UnknownToken(_))
        ));
        assert!(matches!(
            exp("%{rcpt.user }"),
            Err(ExpandError::UnknownToken(_))
        ));
        for f in [
            "%{rcpt:}",
            "%{rcpt:lowercase|}",
            "%{rcpt:lower}",
            "%{rcpt:raw,strip}",
        ] {
            assert!(
                matches!(exp(f), Err(ExpandError::UnknownModifier { .. })),
                "{f}"
            );
        }
        assert_eq!(
            exp("%{rcpt:bogus}").unwrap_err().to_string(),
            "unknown modifier \"bogus\" in %{rcpt:bogus}"
        );
        let long = format!("%{{{}}}", "r".repeat(MAXTOKENLEN));
        assert!(matches!(exp(&long), Err(ExpandError::TokenTooLong(_))));
        let almost = format!("%{{{}}}", "r".repeat(MAXTOKENLEN - 1));
        assert!(matches!(exp(&almost), Err(ExpandError::UnknownToken(_))));
    }

    #[test]
    fn expansion_is_limited_to_expand_buffer() {
        let d = deliver();
        let fill = "x".repeat(EXPAND_BUFFER - 1);
        assert_eq!(exp(&fill).unwrap(), fill);
        assert_eq!(exp(&format!("{fill}y")), Err(ExpandError::TooLong));
        let f = format!("{}%{{dest.user}}", "x".repeat(EXPAND_BUFFER - 4));
        assert_eq!(exp(&f).unwrap().len(), EXPAND_BUFFER - 1);
        let f = format!("{}%{{dest.user}}", "x".repeat(EXPAND_BUFFER - 3));
        assert_eq!(exp(&f), Err(ExpandError::TooLong));
        // %% counts as one byte.
        let f = format!("{}%%", "x".repeat(EXPAND_BUFFER - 2));
        assert_eq!(exp(&f).unwrap().len(), EXPAND_BUFFER - 1);
        // One value: at most EXPAND_BUFFER - 2 bytes, as C's `i + 1 >= len`.
        let inner = "m".repeat(EXPAND_BUFFER - 2);
        assert_eq!(
            mda_expand_format("%{mda}", &d, &d.userinfo, Some(&inner), '+').unwrap(),
            inner
        );
        let inner = "m".repeat(EXPAND_BUFFER - 1);
        assert_eq!(
            mda_expand_format("%{mda}", &d, &d.userinfo, Some(&inner), '+'),
            Err(ExpandError::ValueTooLong("mda".into()))
        );
        // A value that does not fit even if a range would cut it.
        let inner = "m".repeat(EXPAND_BUFFER);
        assert_eq!(
            mda_expand_format("%{mda[0]}", &d, &d.userinfo, Some(&inner), '+'),
            Err(ExpandError::ValueTooLong("mda[0]".into()))
        );
        let mut d = deliver();
        d.userinfo.directory = "/".repeat(EXPAND_BUFFER - 1);
        assert!(matches!(
            exp_with(&d, "~/x"),
            Err(ExpandError::HomeTooLong(_))
        ));
        d.userinfo.directory = "/".repeat(EXPAND_BUFFER - 2);
        assert_eq!(exp_with(&d, "~/").unwrap().len(), EXPAND_BUFFER - 1);
        assert_eq!(exp_with(&d, "~/x"), Err(ExpandError::TooLong));
    }
}
