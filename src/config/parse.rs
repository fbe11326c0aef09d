//! parse.y, second half: the grammar of smtpd.conf as a recursive-descent
//! parser over the tokens of lex.rs, building the model of config.rs with
//! the same semantic checks and defaults as OpenSMTPD 7.8 (parse.y 1.299).
//!
//! It accepts exactly what parse.y accepts. Where OpenSMTPD answers
//! `syntax error`, or calls fatalx() without a line, we say what was found
//! and what was expected, with the line, and go on to the next statement
//! so that every error is reported in one run. What OpenSMTPD accepts but
//! cannot work (a reject message that is not an SMTP reply, a regex that
//! does not compile) gets a warning; what OpenSMTPD refuses only once its
//! processes start (an unknown pki on a relay, ciphers or protocols that
//! libtls refuses) is an error here, with its line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::config::*;
use super::lex::{Kw, Lexer, Symtab, Tok, Token};
use crate::defines::{MAX_BOUNCE_WARN, PKI_MAX, QUEUE_KEY_SIZE, SMTPD_TAG_SIZE};
use crate::sys::net::{self, Family};
use crate::sys::regex::Regex;
use crate::table::table::{
    table_add, table_check_service, table_check_type, table_config, table_create, Table,
    TableService as K, TableType as T, BACKEND_NAMES,
};
use crate::util::limit::{limit_mta_set, MTA_LIMIT_KEYWORDS};
use crate::util::to::text_to_relayhost;
use crate::util::util::{lowercase, res_hnok, scan_scaled};

/// A statement was abandoned; the error has been reported.
#[derive(Debug)]
pub struct Abort;

type PResult<T> = Result<T, Abort>;

/// The first words of a statement, for error recovery and suggestions.
const STATEMENTS: [Kw; 17] = [
    Kw::Action,
    Kw::Admd,
    Kw::Bounce,
    Kw::Ca,
    Kw::Filter,
    Kw::Include,
    Kw::Listen,
    Kw::Match,
    Kw::Mda,
    Kw::Mta,
    Kw::Pki,
    Kw::Proc,
    Kw::Queue,
    Kw::Scheduler,
    Kw::Smtp,
    Kw::Srs,
    Kw::Table,
];

const LISTEN_OPTIONS: [&str; 24] = [
    "inet4",
    "inet6",
    "port",
    "filter",
    "smtps",
    "tls",
    "tls-require",
    "ciphers",
    "protocols",
    "pki",
    "ca",
    "auth",
    "auth-optional",
    "tag",
    "hostname",
    "hostnames",
    "mask-src",
    "received-auth",
    "no-dsn",
    "proxy-v2",
    "senders",
    "verify",
    "masquerade",
    "no-verify",
];
const SOCKET_OPTIONS: [&str; 4] = ["filter", "mask-src", "no-dsn", "tag"];
const LOCAL_METHODS: [&str; 7] = [
    "mbox",
    "maildir",
    "lmtp",
    "mda",
    "forward-only",
    "expand-only",
    "relay",
];
const LOCAL_OPTIONS: [&str; 5] = ["alias", "virtual", "userbase", "user", "wrapper"];
const REMOTE_OPTIONS: [&str; 15] = [
    "backup",
    "ca",
    "ciphers",
    "domain",
    "filter",
    "helo",
    "helo-src",
    "host",
    "mail-from",
    "pki",
    "protocols",
    "src",
    "srs",
    "tls",
    "auth",
];
const MATCH_OPTIONS: [&str; 10] = [
    "from",
    "for",
    "tag",
    "helo",
    "tls",
    "auth",
    "mail-from",
    "rcpt-to",
    "action",
    "reject",
];
const FILTER_PHASES: [&str; 8] = [
    "connect",
    "helo",
    "ehlo",
    "auth",
    "mail-from",
    "rcpt-to",
    "data",
    "commit",
];

/// Where a named thing was declared, for "already declared at" messages.
#[derive(Clone, Copy)]
struct Loc {
    file: usize,
    line: usize,
}

/// listen_opts: what a `listen on` statement has said so far.
#[derive(Clone, Default)]
struct ListenOpts {
    ifx: String,
    family: Family,
    port: u16,
    ssl: ListenerFlags,
    filtername: Option<String>,
    pki: Vec<String>,
    tls_ciphers: Option<String>,
    tls_protocols: Option<String>,
    ca: Option<String>,
    auth: ListenerFlags,
    authtable: Option<String>,
    tag: Option<String>,
    hostname: Option<String>,
    hostnametable: Option<String>,
    sendertable: Option<String>,
    masquerade: bool,
    flags: ListenerFlags,
    /// Options given, to refuse each a second time (C's LO_* mask).
    seen: Vec<&'static str>,
}

/// The parser state: the lexer, one token of lookahead, the model.
pub struct Parser<'c> {
    lex: Lexer,
    tok: Token,
    conf: &'c mut Smtpd,
    last_dynchain_id: u32,
    last_table_id: u32,
    listen_origin: usize,
    decls: HashMap<(&'static str, String), Loc>,
    /// Unclosed braces of the statement being read, for recovery.
    depth: i32,
    /// The current token is the first of its line.
    bol: bool,
    /// pki statements that had an error.
    broken_pki: std::collections::HashSet<String>,
}

/// How many errors a configuration had.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub usize);

/// parse_config(): reads `filename` into `conf`. Diagnostics go to the log
/// (stderr with `-n` or `-d`).
pub fn parse_config(conf: &mut Smtpd, filename: &str, symtab: Symtab) -> Result<(), ConfigErrors> {
    let (r, diags) = parse_config_diags(conf, filename, symtab);
    for d in &diags {
        if d.error {
            crate::util::log::logit(crate::util::log::LOG_CRIT, format_args!("{}", d.text));
        } else {
            crate::util::log::log_warnx(format_args!("{}", d.text));
        }
    }
    r
}

/// parse_config() returning its diagnostics instead of logging them.
pub fn parse_config_diags(
    conf: &mut Smtpd,
    filename: &str,
    symtab: Symtab,
) -> (Result<(), ConfigErrors>, Vec<super::lex::Diag>) {
    let mut lex = Lexer::new(symtab);
    if let Err(e) = lex.pushfile(filename) {
        lex.names.push(filename.to_string());
        lex.errors += 1;
        lex.diags.push(super::lex::Diag {
            error: true,
            text: e,
        });
        return (Err(ConfigErrors(1)), lex.diags);
    }
    parse_lexer(conf, filename, lex)
}

/// parse_config() of a configuration held in memory, for the fuzzer and
/// benchmarks; `include` still reads files.
pub fn parse_config_buffer(
    conf: &mut Smtpd,
    name: &str,
    data: &[u8],
    symtab: Symtab,
) -> (Result<(), ConfigErrors>, Vec<super::lex::Diag>) {
    let mut lex = Lexer::new(symtab);
    lex.push_data(name, data.to_vec(), name.into());
    parse_lexer(conf, name, lex)
}

fn parse_lexer(
    conf: &mut Smtpd,
    filename: &str,
    mut lex: Lexer,
) -> (Result<(), ConfigErrors>, Vec<super::lex::Diag>) {
    conf.sc_conffile = filename.to_string();
    let first = lex.yylex();
    let mut p = Parser {
        lex,
        tok: first,
        conf,
        last_dynchain_id: 1,
        last_table_id: 0,
        listen_origin: 0,
        decls: HashMap::new(),
        depth: 0,
        bol: true,
        broken_pki: Default::default(),
    };
    p.grammar();
    p.finish();
    let r = match p.lex.errors {
        0 => Ok(()),
        n => Err(ConfigErrors(n)),
    };
    (r, p.lex.diags)
}

/// Whether `a` and `b` differ by at most `max` edits (insertions,
/// deletions, substitutions, transpositions of neighbours).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= max && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(s: Option<&str>) -> String {
    s.map(|s| format!("; did you mean \"{s}\"?"))
        .unwrap_or_default()
}

/// delaytonum(): `30s`, `5m`, `4h`, `4d` to seconds; None when malformed.
pub fn delaytonum(s: &str) -> Option<i64> {
    if s.len() < 2 {
        return None;
    }
    let factor: i64 = match s.as_bytes()[s.len() - 1] {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86400,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    (1..=i64::from(i32::MAX) / factor)
        .contains(&n)
        .then_some(n * factor)
}

/// valid_smtp_response() of util.c.
fn valid_smtp_response(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
}

fn is_table_start(t: &Tok) -> bool {
    matches!(t, Tok::Str(_) | Tok::Char(b'{') | Tok::Char(b'<'))
}

impl<'c> Parser<'c> {
    // ---- tokens ---------------------------------------------------------

    fn advance(&mut self) {
        match self.tok.tok {
            Tok::Char(b'{') => self.depth += 1,
            Tok::Char(b'}') => self.depth -= 1,
            _ => {}
        }
        self.bol = matches!(self.tok.tok, Tok::Newline | Tok::Error);
        self.tok = self.lex.yylex();
    }

    fn is_kw(&self, kw: Kw) -> bool {
        self.tok.tok == Tok::Kw(kw)
    }

    fn kw(&self) -> Option<Kw> {
        match self.tok.tok {
            Tok::Kw(k) => Some(k),
            _ => None,
        }
    }

    fn accept_kw(&mut self, kw: Kw) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.advance();
        }
        yes
    }

    fn is_char(&self, c: u8) -> bool {
        self.tok.tok == Tok::Char(c)
    }

    fn accept_char(&mut self, c: u8) -> bool {
        let yes = self.is_char(c);
        if yes {
            self.advance();
        }
        yes
    }

    fn at_eol(&self) -> bool {
        matches!(self.tok.tok, Tok::Newline | Tok::Eof | Tok::Error)
    }

    /// How the current token reads in a message.
    fn found(&self) -> String {
        describe(&self.tok.tok)
    }

    fn loc(&self) -> Loc {
        Loc {
            file: self.tok.file,
            line: self.tok.line,
        }
    }

    fn where_(&self, l: Loc) -> String {
        format!("{}:{}", self.lex.names[l.file], l.line)
    }

    /// Reports an error at `l`; an Error token means the lexer already did.
    fn error_at(&mut self, l: Loc, msg: &str) -> Abort {
        if self.tok.tok != Tok::Error || l.line != self.tok.line {
            self.lex.error_at(l.file, l.line, msg);
        }
        Abort
    }

    /// An error at the current token.
    fn error(&mut self, msg: &str) -> Abort {
        let l = self.loc();
        self.error_at(l, msg)
    }

    fn warn_at(&mut self, l: Loc, msg: &str) {
        self.lex.warn_at(l.file, l.line, msg);
    }

    /// "`ctx` expects `what`, found X", with a suggestion among `options`.
    fn expected(&mut self, ctx: &str, what: &str, options: &[&str]) -> Abort {
        let mut msg = format!("\"{ctx}\" expects {what}, found {}", self.found());
        let word = match &self.tok.tok {
            Tok::Kw(k) => Some(k.name().to_string()),
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        };
        if let Some(word) = word {
            msg += &did_you_mean(suggest(&word, options.iter().copied()));
        }
        self.error(&msg)
    }

    fn expect_kw(&mut self, kw: Kw, ctx: &str) -> PResult<()> {
        if self.accept_kw(kw) {
            return Ok(());
        }
        Err(self.expected(ctx, &format!("\"{}\"", kw.name()), &[kw.name()]))
    }

    fn expect_char(&mut self, c: u8, ctx: &str) -> PResult<()> {
        if self.accept_char(c) {
            return Ok(());
        }
        Err(self.expected(ctx, &format!("'{}'", c as char), &[]))
    }

    /// STRING: a quoted string or a bare word that is not a keyword.
    fn string(&mut self, ctx: &str, what: &str) -> PResult<(String, Loc)> {
        let l = self.loc();
        match &self.tok.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance();
                Ok((s, l))
            }
            Tok::Kw(k) => {
                let k = k.name();
                Err(self.error(&format!(
                    "\"{ctx}\" expects {what}, found the reserved word \"{k}\" (quote it, \"{k}\", to use it as a string)"
                )))
            }
            Tok::Num(n) => {
                let n = *n;
                Err(self.error(&format!(
                    "\"{ctx}\" expects {what}, found the number {n} (quote it, \"{n}\", to use it as a string)"
                )))
            }
            _ => Err(self.expected(ctx, what, &[])),
        }
    }

    fn number(&mut self, ctx: &str, what: &str) -> PResult<i64> {
        if let Tok::Num(n) = self.tok.tok {
            self.advance();
            return Ok(n);
        }
        Err(self.expected(ctx, what, &[]))
    }

    /// optnl: any number of newlines (inside braces).
    fn optnl(&mut self) {
        while self.tok.tok == Tok::Newline {
            self.advance();
        }
    }

    /// The end of a statement whose options ran out: anything but the end
    /// of the line is an option this statement does not take.
    fn end(&mut self, ctx: &str, options: &[&str]) -> PResult<()> {
        if self.at_eol() {
            return Ok(());
        }
        let word = match &self.tok.tok {
            Tok::Kw(k) => Some(k.name().to_string()),
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        };
        let mut msg = format!("unexpected {} in \"{ctx}\"", self.found());
        if let Some(w) = word {
            if let Some(s) = suggest(&w, options.iter().copied()) {
                msg += &format!("; did you mean \"{s}\"?");
            } else if !options.is_empty() {
                msg += &format!("; expected one of: {}", options.join(", "));
            }
        }
        Err(self.error(&msg))
    }

    fn declare(&mut self, kind: &'static str, name: &str, l: Loc) {
        self.decls.insert((kind, name.to_string()), l);
    }

    fn declared_at(&self, kind: &'static str, name: &str) -> String {
        match self.decls.get(&(kind, name.to_string())) {
            Some(l) => format!(" (at {})", self.where_(*l)),
            None => String::new(),
        }
    }

    // ---- statements -----------------------------------------------------

    /// grammar: statements separated by newlines; after an error, skip to
    /// the end of the statement and go on.
    fn grammar(&mut self) {
        loop {
            match self.tok.tok {
                Tok::Eof => return,
                Tok::Newline | Tok::Error => {
                    self.advance();
                    continue;
                }
                _ => {}
            }
            self.depth = 0;
            let r = self.statement().and_then(|()| self.statement_end());
            if r.is_err() {
                self.recover();
            }
        }
    }

    /// Whatever follows a complete statement on its line is a mistake.
    fn statement_end(&mut self) -> PResult<()> {
        if self.at_eol() {
            return Ok(());
        }
        Err(self.error(&format!(
            "unexpected {} after the end of the statement",
            self.found()
        )))
    }

    /// yacc's `error '\n'`, with braces: skip to a newline outside braces,
    /// or to a line that starts a new statement.
    fn recover(&mut self) {
        loop {
            match self.tok.tok {
                Tok::Eof => return,
                Tok::Error => {
                    self.advance();
                    return;
                }
                Tok::Newline => {
                    self.advance();
                    if self.depth <= 0 {
                        return;
                    }
                }
                _ if self.at_statement_start() => return,
                _ => self.advance(),
            }
        }
    }

    /// A statement keyword at the start of a line: inside braces, the
    /// sign of a missing '}'.
    fn at_statement_start(&self) -> bool {
        self.bol && self.kw().is_some_and(|k| STATEMENTS.contains(&k))
    }

    /// The error for a value missing inside braces opened on line `open`.
    fn in_braces_expected(&mut self, open: Loc, ctx: &str, what: &str) -> Abort {
        if self.at_statement_start() {
            return self.error(&format!(
                "'{{' opened on line {} is not closed before this statement",
                open.line
            ));
        }
        self.expected(ctx, what, &[])
    }

    fn statement(&mut self) -> PResult<()> {
        let l = self.loc();
        let Tok::Kw(kw) = self.tok.tok else {
            return self.statement_other();
        };
        if !STATEMENTS.contains(&kw) {
            return Err(self.old_grammar(kw.name(), l));
        }
        self.advance();
        match kw {
            Kw::Include => self.include(),
            Kw::Bounce => self.bounce(),
            Kw::Admd => self.admd(),
            Kw::Ca => self.ca(),
            Kw::Mda => self.mda(),
            Kw::Mta => self.mta(),
            Kw::Pki => self.pki(),
            Kw::Proc => self.proc(),
            Kw::Queue => self.queue(),
            Kw::Scheduler => self.scheduler(),
            Kw::Smtp => self.smtp(),
            Kw::Srs => self.srs(),
            Kw::Listen => self.listen(),
            Kw::Table => self.table(),
            Kw::Action => self.dispatcher(),
            Kw::Match => self.match_(),
            Kw::Filter => self.filter(),
            _ => unreachable!("STATEMENTS lists every keyword handled here"),
        }
    }

    /// A statement that does not start with a keyword: a macro definition,
    /// or a mistake.
    fn statement_other(&mut self) -> PResult<()> {
        let l = self.loc();
        let Tok::Str(name) = self.tok.tok.clone() else {
            return Err(self.error(&format!("expected a statement, found {}", self.found())));
        };
        self.advance();
        if self.accept_char(b'=') {
            return self.varset(&name, l);
        }
        Err(self.old_grammar(&name, l))
    }

    /// An unknown first word: the 6.3-era grammar, or a typo.
    fn old_grammar(&mut self, word: &str, l: Loc) -> Abort {
        let msg = match word {
            "accept" | "reject" => format!(
                "\"{word}\" rules are the grammar of OpenSMTPD 6.3 and earlier; since 6.4, deliveries are declared \
                 with \"action NAME ...\" and chosen with \"match ... action NAME\" or \"match ... reject\" \
                 (see smtpd.conf(5))"
            ),
            "expire" => "\"expire\" is OpenSMTPD 6.3 syntax; use \"queue ttl DELAY\" (see smtpd.conf(5))".to_string(),
            "limit" => {
                "\"limit\" is OpenSMTPD 6.3 syntax; use \"smtp limit\", \"mta limit\" or \"scheduler limit\"".to_string()
            }
            "max-message-size" => {
                "\"max-message-size\" is OpenSMTPD 6.3 syntax; use \"smtp max-message-size SIZE\"".to_string()
            }
            _ => {
                let names = STATEMENTS.iter().map(|k| k.name());
                format!("unknown statement \"{word}\"{}", did_you_mean(suggest(word, names)))
            }
        };
        self.error_at(l, &msg)
    }

    /// include: INCLUDE STRING
    fn include(&mut self) -> PResult<()> {
        let (path, l) = self.string("include", "a file name")?;
        if !self.at_eol() {
            return self.end("include", &[]);
        }
        self.lex
            .pushfile(&path)
            .map_err(|e| self.error_at(l, &format!("failed to include file: {e}")))
    }

    /// varset: STRING '=' STRING
    fn varset(&mut self, name: &str, l: Loc) -> PResult<()> {
        if name.chars().any(|c| c.is_ascii_whitespace()) {
            return Err(self.error_at(l, "macro name cannot contain whitespace"));
        }
        let (val, _) = match &self.tok.tok {
            Tok::Num(n) => {
                let n = *n;
                return Err(
                    self.error(&format!("macro values are strings: write {name} = \"{n}\""))
                );
            }
            _ => self.string("=", "a macro value")?,
        };
        self.lex.symtab.symset(name, &val, false);
        Ok(())
    }

    /// bounce: BOUNCE WARN_INTERVAL delay [, delay ...]
    fn bounce(&mut self) -> PResult<()> {
        self.expect_kw(Kw::WarnInterval, "bounce")?;
        let mut delays = Vec::new();
        loop {
            let l = self.loc();
            let d = self.delay("bounce warn-interval", "a delay such as 4h")?;
            if delays.len() == MAX_BOUNCE_WARN {
                self.warn_at(
                    l,
                    "at most 4 bounce warn-interval delays are used; the rest are ignored",
                );
            } else {
                delays.push(d);
            }
            if !self.accept_char(b',') {
                break;
            }
        }
        self.conf.sc_bounce_warn = [0; MAX_BOUNCE_WARN];
        self.conf.sc_bounce_warn[..delays.len()].copy_from_slice(&delays);
        Ok(())
    }

    /// A delay (`4h`): a STRING that delaytonum() accepts.
    fn delay(&mut self, ctx: &str, what: &str) -> PResult<i64> {
        if let Tok::Num(n) = self.tok.tok {
            return Err(self.error(&format!(
                "\"{ctx}\" expects {what}, found {n} without a unit (s, m, h or d)"
            )));
        }
        let (s, l) = self.string(ctx, what)?;
        delaytonum(&s).ok_or_else(|| {
            self.error_at(l, &format!("invalid {ctx} delay \"{s}\": expected a positive number and a unit s, m, h or d"))
        })
    }

    /// admd: ADMD STRING
    fn admd(&mut self) -> PResult<()> {
        let (s, l) = self.string("admd", "an authserv-id")?;
        if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(self.error_at(l, "not a valid admd: only printable ASCII is allowed"));
        }
        self.conf.sc_admd = Some(s);
        Ok(())
    }

    /// A `ciphers` or `protocols` string, checked by libtls as OpenSMTPD's
    /// processes check it when they start (and die on it).
    fn tls_string(&mut self, kw: Kw) -> PResult<String> {
        let (s, l) = self.string(kw.name(), "a string")?;
        let bad = match kw {
            Kw::Protocols => crate::sys::tls::parse_protocols(&s).is_none().then(|| {
                format!("invalid protocols \"{s}\": expected a list such as \"tlsv1.2:tlsv1.3\" or \"secure\"")
            }),
            _ => crate::sys::tls::check_ciphers(&s).err().map(|e| format!("invalid ciphers \"{s}\": {e}")),
        };
        match bad {
            Some(msg) => Err(self.error_at(l, &msg)),
            None => Ok(s),
        }
    }

    /// A pki or ca name: a host name or `*`, lowercased.
    fn tls_name(&mut self, ctx: &str) -> PResult<(String, Loc)> {
        let (s, l) = self.string(ctx, "a name (a host name or *)")?;
        if s != "*" && !res_hnok(&s) {
            return Err(self.error_at(l, &format!("not a valid domain name: {s}")));
        }
        Ok((lowercase(&s), l))
    }

    /// ca: CA STRING CERT STRING
    fn ca(&mut self) -> PResult<()> {
        let (name, l) = self.tls_name("ca")?;
        self.declare("ca", &name, l);
        self.expect_kw(Kw::Cert, "ca")?;
        let (cert, _) = self.string("ca cert", "a file name")?;
        let ca = self
            .conf
            .sc_ca_dict
            .entry(name.clone())
            .or_insert_with(|| Ca {
                ca_name: name,
                ..Default::default()
            });
        ca.ca_cert_file = Some(cert);
        self.end("ca", &[])
    }

    /// mda: MDA LIMIT (STRING NUMBER)* | MDA WRAPPER STRING STRING
    fn mda(&mut self) -> PResult<()> {
        if self.accept_kw(Kw::Limit) {
            const KEYS: [&str; 5] = [
                "max-session",
                "max-session-per-user",
                "task-lowat",
                "task-hiwat",
                "task-release",
            ];
            while let Some((key, l, n)) = self.limit_pair("mda limit", &KEYS)? {
                let v = n as usize;
                match key.as_str() {
                    "max-session" => self.conf.sc_mda_max_session = v,
                    "max-session-per-user" => self.conf.sc_mda_max_user_session = v,
                    "task-lowat" => self.conf.sc_mda_task_lowat = v,
                    "task-hiwat" => self.conf.sc_mda_task_hiwat = v,
                    "task-release" => self.conf.sc_mda_task_release = v,
                    _ => return Err(self.bad_limit("mda", &key, l, &KEYS)),
                }
            }
            return self.end("mda limit", &KEYS);
        }
        if self.accept_kw(Kw::Wrapper) {
            let (name, l) = self.string("mda wrapper", "a wrapper name")?;
            let (cmd, _) = self.string("mda wrapper", "a command")?;
            if self.conf.sc_mda_wrappers.contains_key(&name) {
                let at = self.declared_at("wrapper", &name);
                return Err(self.error_at(
                    l,
                    &format!("mda wrapper already declared with that name: {name}{at}"),
                ));
            }
            self.declare("wrapper", &name, l);
            self.conf.sc_mda_wrappers.insert(name, cmd);
            return Ok(());
        }
        Err(self.expected("mda", "\"limit\" or \"wrapper\"", &["limit", "wrapper"]))
    }

    /// One `KEY NUMBER` pair of a limit statement, or None at its end.
    fn limit_pair(&mut self, ctx: &str, keys: &[&str]) -> PResult<Option<(String, Loc, i64)>> {
        let Tok::Str(key) = self.tok.tok.clone() else {
            return Ok(None);
        };
        let l = self.loc();
        self.advance();
        let n = match self.tok.tok {
            Tok::Num(n) => n,
            _ => {
                let hint = if keys.contains(&key.as_str()) {
                    String::new()
                } else {
                    format!("; {}", self.limit_hint(&key, keys))
                };
                return Err(self.error(&format!(
                    "\"{ctx} {key}\" expects a number, found {}{hint}",
                    self.found()
                )));
            }
        };
        self.advance();
        Ok(Some((key, l, n)))
    }

    fn limit_hint(&self, key: &str, keys: &[&str]) -> String {
        match suggest(key, keys.iter().copied()) {
            Some(s) => format!("did you mean \"{s}\"?"),
            None => format!("the limits are: {}", keys.join(", ")),
        }
    }

    fn bad_limit(&mut self, what: &str, key: &str, l: Loc, keys: &[&str]) -> Abort {
        let hint = self.limit_hint(key, keys);
        self.error_at(l, &format!("invalid {what} limit keyword: {key}; {hint}"))
    }

    /// mta: MTA MAX_DEFERRED NUMBER | MTA LIMIT [FOR DOMAIN STRING] limits
    fn mta(&mut self) -> PResult<()> {
        if self.accept_kw(Kw::MaxDeferred) {
            let n = self.number("mta max-deferred", "a number")?;
            self.conf.sc_mta_max_deferred = n as usize;
            return Ok(());
        }
        self.expect_kw(Kw::Limit, "mta")?;
        let key = if self.accept_kw(Kw::For) {
            self.expect_kw(Kw::Domain, "mta limit for")?;
            let (d, _) = self.string("mta limit for domain", "a domain")?;
            let default = self.conf.sc_limits_dict["default"].clone();
            self.conf.sc_limits_dict.entry(d.clone()).or_insert(default);
            d
        } else {
            "default".to_string()
        };
        loop {
            let family = if self.accept_kw(Kw::Inet4) {
                Family::Inet4
            } else if self.accept_kw(Kw::Inet6) {
                Family::Inet6
            } else if let Some((k, l, n)) = self.limit_pair("mta limit", &MTA_LIMIT_KEYWORDS)? {
                let limits = self
                    .conf
                    .sc_limits_dict
                    .get_mut(&key)
                    .expect("created above");
                if !limit_mta_set(limits, &k, n) {
                    return Err(self.bad_limit("mta", &k, l, &MTA_LIMIT_KEYWORDS));
                }
                continue;
            } else {
                break;
            };
            self.conf
                .sc_limits_dict
                .get_mut(&key)
                .expect("created above")
                .family = family;
        }
        let mut opts = MTA_LIMIT_KEYWORDS.to_vec();
        opts.extend(["inet4", "inet6"]);
        self.end("mta limit", &opts)
    }

    /// pki: PKI STRING (CERT STRING | KEY STRING | DHE STRING)*
    fn pki(&mut self) -> PResult<()> {
        let (name, l) = self.tls_name("pki")?;
        if !self.decls.contains_key(&("pki", name.clone())) {
            self.declare("pki", &name, l);
        }
        self.conf
            .sc_pki_dict
            .entry(name.clone())
            .or_insert_with(|| Pki {
                pki_name: name.clone(),
                ..Default::default()
            });
        let r = self.pki_params(&name);
        if r.is_err() {
            // Its missing cert or key would only repeat this error.
            self.broken_pki.insert(name);
        }
        r
    }

    /// pki_params: (CERT STRING | KEY STRING | DHE STRING)*
    fn pki_params(&mut self, name: &str) -> PResult<()> {
        while let Some(field @ (Kw::Cert | Kw::Key | Kw::Dhe)) = self.kw() {
            self.advance();
            let (v, vl) = self.string(&format!("pki {}", field.name()), "a string")?;
            let pki = self
                .conf
                .sc_pki_dict
                .get_mut(name)
                .expect("inserted by pki()");
            match field {
                Kw::Cert => pki.pki_cert_file = Some(v),
                Kw::Key => pki.pki_key_file = Some(v),
                _ => match PKI_DHE_NAMES
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(&v))
                {
                    Some(i) => pki.pki_dhe = i as i32,
                    None => {
                        return Err(self.error_at(
                            vl,
                            &format!("invalid DHE keyword: {v}; expected none, auto or legacy"),
                        ))
                    }
                },
            }
        }
        self.end("pki", &["cert", "key", "dhe"])
    }

    /// proc: PROC STRING STRING proc_params
    fn proc(&mut self) -> PResult<()> {
        let (name, l) = self.string("proc", "a name")?;
        let (command, _) = self.string("proc", "a command")?;
        if self.conf.sc_filter_processes_dict.contains_key(&name) {
            let at = self.declared_at("proc", &name);
            return Err(self.error_at(
                l,
                &format!("processor already exists with that name: {name}{at}"),
            ));
        }
        self.declare("proc", &name, l);
        let mut processor = FilterProc {
            command,
            ..Default::default()
        };
        let r = self.proc_params(&mut processor, "proc");
        self.conf.sc_filter_processes_dict.insert(name, processor);
        r
    }

    /// proc_params: (USER STRING | GROUP STRING | CHROOT STRING)*
    fn proc_params(&mut self, p: &mut FilterProc, ctx: &str) -> PResult<()> {
        while let Some(k @ (Kw::User | Kw::Group | Kw::Chroot)) = self.kw() {
            let l = self.loc();
            self.advance();
            let (v, _) = self.string(&format!("{ctx} {}", k.name()), "a string")?;
            let slot = match k {
                Kw::User => &mut p.user,
                Kw::Group => &mut p.group,
                _ => &mut p.chroot,
            };
            if slot.is_some() {
                return Err(self.error_at(
                    l,
                    &format!("{} already specified for this processor", k.name()),
                ));
            }
            *slot = Some(v);
        }
        self.end(ctx, &["user", "group", "chroot"])
    }

    /// queue: COMPRESSION | ENCRYPTION [STRING] | TTL STRING
    fn queue(&mut self) -> PResult<()> {
        if self.accept_kw(Kw::Compression) {
            self.conf.sc_queue_flags |= QueueFlags::QUEUE_COMPRESSION;
        } else if self.accept_kw(Kw::Encryption) {
            if let Tok::Str(_) | Tok::Num(_) | Tok::Kw(_) = self.tok.tok {
                let (key, kl) = self.string("queue encryption", "a key")?;
                let key = if key.eq_ignore_ascii_case("stdin") || key == "-" {
                    "stdin".to_string()
                } else {
                    // smtpd -n runs crypto_setup(), which takes only a
                    // 32-byte key: say so at the key's line.
                    if key.len() != QUEUE_KEY_SIZE {
                        return Err(self.error_at(
                            kl,
                            &format!(
                                "invalid key for queue encryption: it must be {QUEUE_KEY_SIZE} bytes \
                                 (openssl rand -hex 16), not {}",
                                key.len()
                            ),
                        ));
                    }
                    key
                };
                self.conf.sc_queue_key = Some(key);
            }
            self.conf.sc_queue_flags |= QueueFlags::QUEUE_ENCRYPTION;
        } else if self.accept_kw(Kw::Ttl) {
            self.conf.sc_ttl = self.delay("queue ttl", "a delay such as 4d")?;
        } else {
            return Err(self.expected(
                "queue",
                "\"compression\", \"encryption\" or \"ttl\"",
                &["compression", "encryption", "ttl"],
            ));
        }
        Ok(())
    }

    /// scheduler: SCHEDULER LIMIT (STRING NUMBER)*
    fn scheduler(&mut self) -> PResult<()> {
        const KEYS: [&str; 4] = [
            "max-inflight",
            "max-evp-batch-size",
            "max-msg-batch-size",
            "max-schedule",
        ];
        self.expect_kw(Kw::Limit, "scheduler")?;
        while let Some((key, l, n)) = self.limit_pair("scheduler limit", &KEYS)? {
            let v = n as usize;
            match key.as_str() {
                "max-inflight" => self.conf.sc_scheduler_max_inflight = v,
                "max-evp-batch-size" => self.conf.sc_scheduler_max_evp_batch_size = v,
                "max-msg-batch-size" => self.conf.sc_scheduler_max_msg_batch_size = v,
                "max-schedule" => self.conf.sc_scheduler_max_schedule = v,
                _ => return Err(self.bad_limit("scheduler", &key, l, &KEYS)),
            }
        }
        self.end("scheduler limit", &KEYS)
    }

    /// smtp: LIMIT limits | CIPHERS STRING | MAX_MESSAGE_SIZE size |
    /// SUB_ADDR_DELIM STRING
    fn smtp(&mut self) -> PResult<()> {
        const KEYS: [&str; 2] = ["max-rcpt", "max-mails"];
        if self.accept_kw(Kw::Limit) {
            while let Some((key, l, n)) = self.limit_pair("smtp limit", &KEYS)? {
                match key.as_str() {
                    "max-rcpt" => self.conf.sc_session_max_rcpt = n as usize,
                    "max-mails" => self.conf.sc_session_max_mails = n as usize,
                    _ => return Err(self.bad_limit("session", &key, l, &KEYS)),
                }
            }
            return self.end("smtp limit", &KEYS);
        }
        if self.accept_kw(Kw::Ciphers) {
            self.conf.sc_tls_ciphers = Some(self.tls_string(Kw::Ciphers)?);
            return Ok(());
        }
        if self.accept_kw(Kw::MaxMessageSize) {
            self.conf.sc_maxsize = self.size("smtp max-message-size")? as usize;
            return Ok(());
        }
        if self.accept_kw(Kw::SubAddrDelim) {
            let (d, l) = self.string("smtp sub-addr-delim", "one character")?;
            let mut chars = d.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(self.error_at(l, "subaddressing-delimiter must be one character"));
            };
            if !c.is_ascii_graphic() || c == '@' {
                return Err(self.error_at(l, "sub-addr-delim uses invalid character"));
            }
            self.conf.sc_subaddressing_delim = c;
            return Ok(());
        }
        let opts = ["limit", "ciphers", "max-message-size", "sub-addr-delim"];
        Err(self.expected(
            "smtp",
            "\"limit\", \"ciphers\", \"max-message-size\" or \"sub-addr-delim\"",
            &opts,
        ))
    }

    /// size: NUMBER | STRING (scan_scaled)
    fn size(&mut self, ctx: &str) -> PResult<i64> {
        let l = self.loc();
        if let Tok::Num(n) = self.tok.tok {
            self.advance();
            if n < 0 {
                return Err(self.error_at(l, &format!("invalid size: {n}")));
            }
            return Ok(n);
        }
        let (s, l) = self.string(ctx, "a size such as 35M")?;
        match scan_scaled(&s) {
            Some(n) if n >= 0 => Ok(n),
            _ => Err(self.error_at(l, &format!("invalid size: {s}"))),
        }
    }

    /// srs: KEY STRING | KEY BACKUP STRING | TTL STRING
    fn srs(&mut self) -> PResult<()> {
        if self.accept_kw(Kw::Key) {
            if self.accept_kw(Kw::Backup) {
                self.conf.sc_srs_key_backup = Some(self.string("srs key backup", "a secret")?.0);
            } else {
                self.conf.sc_srs_key = Some(self.string("srs key", "a secret")?.0);
            }
            return Ok(());
        }
        if self.accept_kw(Kw::Ttl) {
            let l = self.loc();
            let d = self.delay("srs ttl", "a delay such as 4d")? / 86400;
            if d == 0 {
                return Err(self.error_at(l, "srs ttl delay is too short: it counts in days"));
            }
            self.conf.sc_srs_ttl = d;
            return Ok(());
        }
        Err(self.expected("srs", "\"key\" or \"ttl\"", &["key", "ttl"]))
    }

    // ---- tables ----------------------------------------------------------

    /// table: TABLE STRING STRING | TABLE STRING '{' tableval_list '}'
    fn table(&mut self) -> PResult<()> {
        let (name, l) = self.string("table", "a table name")?;
        if self.conf.sc_tables_dict.contains_key(&name) {
            let at = self.declared_at("table", &name);
            return Err(self.error_at(l, &format!("table \"{name}\" is already defined{at}")));
        }
        self.declare("table", &name, l);
        if self.is_char(b'{') {
            let mut t = table_create("static", &name, None).map_err(|e| self.error_at(l, &e))?;
            let r = self.table_braces(&mut t);
            let t = if r.is_ok() {
                t
            } else {
                placeholder_table(&name)
            };
            self.conf.sc_tables_dict.insert(name, t);
            return r;
        }
        let (spec, sl) = self.string(&format!("table {name}"), "a [backend:]path or '{'")?;
        let (backend, config) = match spec.find(':') {
            _ if spec.starts_with('/') => ("static", Some(spec.as_str())),
            Some(i) => (&spec[..i], Some(&spec[i + 1..])),
            None => (spec.as_str(), None),
        };
        if config.is_some_and(|c| !c.starts_with('/')) {
            return Err(self.error_at(
                sl,
                &format!("invalid backend parameter for table: {name} (the path after \"{backend}:\" must be absolute)"),
            ));
        }
        let mut t = match table_create(backend, &name, config) {
            Ok(t) => t,
            Err(e) => {
                let hint = did_you_mean(suggest(backend, BACKEND_NAMES));
                self.conf
                    .sc_tables_dict
                    .insert(name.clone(), placeholder_table(&name));
                return Err(self.error_at(sl, &format!("{e}{hint}")));
            }
        };
        if let Err(e) = table_config(&mut t) {
            let c = config.unwrap_or("");
            self.conf
                .sc_tables_dict
                .insert(name.clone(), placeholder_table(&name));
            return Err(self.error_at(
                sl,
                &format!("invalid configuration file {c} for table {name}: {e}"),
            ));
        }
        self.conf.sc_tables_dict.insert(name, t);
        Ok(())
    }

    /// '{' optnl tableval_list '}' into `t`.
    fn table_braces(&mut self, t: &mut Table) -> PResult<()> {
        let open = self.loc();
        self.expect_char(b'{', "table")?;
        self.optnl();
        let mut hash: Option<bool> = None;
        loop {
            let l = self.loc();
            if self.at_statement_start() {
                return Err(self.in_braces_expected(open, "table", "a value"));
            }
            let (key, _) = self.string("table", "a value")?;
            let val = if matches!(self.tok.tok, Tok::Char(b'=') | Tok::Arrow) {
                self.advance();
                Some(self.string("table", "a value after '='")?.0)
            } else {
                None
            };
            if *hash.get_or_insert(val.is_some()) != val.is_some() {
                return Err(self.error_at(
                    l,
                    "a table holds either values or key = value pairs, not both",
                ));
            }
            if !table_add(t, &key, val.as_deref()) {
                return Err(self.error_at(
                    l,
                    &format!("failed to add \"{key}\" in table \"{}\"", t.t_name),
                ));
            }
            // comma: ',' optnl | nl | (nothing)
            if self.accept_char(b',') {
                self.optnl();
                continue;
            }
            self.optnl();
            if self.accept_char(b'}') {
                return Ok(());
            }
            if !matches!(self.tok.tok, Tok::Str(_)) {
                return Err(self.in_braces_expected(open, "table", "',' or '}'"));
            }
        }
    }

    /// tables: STRING (a table of one value) | '{' ... '}' | '<' STRING '>'.
    /// Returns the table's name.
    fn tables(&mut self, ctx: &str) -> PResult<(String, Loc)> {
        let l = self.loc();
        match &self.tok.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance();
                let mut t = self.new_anonymous_table(l)?;
                table_add(&mut t, &s, None);
                Ok((self.register(t), l))
            }
            Tok::Char(b'{') => {
                let mut t = self.new_anonymous_table(l)?;
                if let Err(e) = self.table_braces(&mut t) {
                    // The statement is abandoned anyway; a stand-in keeps
                    // later checks of this table quiet.
                    self.register(placeholder_table(&t.t_name));
                    return Err(e);
                }
                Ok((self.register(t), l))
            }
            Tok::Char(b'<') => {
                self.advance();
                let (name, nl) = self.string(ctx, "a table name")?;
                self.expect_char(b'>', ctx)?;
                if !self.conf.sc_tables_dict.contains_key(&name) {
                    let names = self
                        .conf
                        .sc_tables_dict
                        .keys()
                        .filter(|k| !k.starts_with('<'))
                        .map(String::as_str);
                    let hint = did_you_mean(suggest(&name, names));
                    return Err(self.error_at(nl, &format!("no such table: {name}{hint}")));
                }
                Ok((name, l))
            }
            Tok::Num(n) => {
                let n = *n;
                Err(self.error(&format!(
                    "\"{ctx}\" expects a table, found the number {n} (quote it, \"{n}\", to use it as a value)"
                )))
            }
            _ => Err(self.expected(ctx, "a table: <name>, { value, ... } or a value", &[])),
        }
    }

    fn new_anonymous_table(&mut self, l: Loc) -> PResult<Table> {
        // OpenSMTPD dies when a table was declared with the name the next
        // anonymous one would take; we take the next free name.
        let mut name = format!("<dynamic:{}>", self.last_table_id);
        while self.conf.sc_tables_dict.contains_key(&name) {
            self.last_table_id += 1;
            name = format!("<dynamic:{}>", self.last_table_id);
        }
        self.last_table_id += 1;
        table_create("static", &name, None).map_err(|e| self.error_at(l, &e))
    }

    fn register(&mut self, t: Table) -> String {
        let name = t.t_name.clone();
        self.conf.sc_tables_dict.insert(name.clone(), t);
        name
    }

    /// How a table reads in a message: its name, or its inline content.
    fn table_desc(&self, name: &str) -> String {
        let t = &self.conf.sc_tables_dict[name];
        if !t.is_anonymous() {
            return format!("table \"{name}\"");
        }
        let entries: Vec<String> = t
            .static_entries()
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} = {v}"),
                None => k,
            })
            .collect();
        format!("table {{ {} }}", entries.join(", "))
    }

    /// table_check_use() with a message that says why not.
    fn check_use(&mut self, name: &str, l: Loc, tmask: T, smask: K, what: &str) -> PResult<()> {
        let t = &self.conf.sc_tables_dict[name];
        let why = if !table_check_type(t, tmask) {
            let is = if t.t_type.contains(T::T_LIST) {
                "a list"
            } else {
                "a mapping"
            };
            let needs = if tmask.contains(T::T_LIST) {
                "a list"
            } else {
                "key-value pairs"
            };
            format!(": it is {is}, and {what} lookups need {needs}")
        } else if !table_check_service(t, smask) {
            format!(": the {} backend cannot serve them", t.t_backend.name)
        } else {
            return Ok(());
        };
        let desc = self.table_desc(name);
        Err(self.error_at(
            l,
            &format!("{desc} may not be used for {what} lookups{why}"),
        ))
    }

    /// Warns about entries of a static regex table that do not compile
    /// (OpenSMTPD compiles them at each lookup and never matches).
    fn check_regex_table(&mut self, name: &str, l: Loc) {
        let bad: Vec<(String, String)> = self.conf.sc_tables_dict[name]
            .static_entries()
            .into_iter()
            .filter_map(|(k, _)| {
                let (pat, icase) = match k.strip_prefix("(?i)") {
                    Some(p) => (p, true),
                    None => (k.as_str(), false),
                };
                Regex::new(pat, icase).err().map(|e| (k.clone(), e))
            })
            .collect();
        for (k, e) in bad {
            self.warn_at(
                l,
                &format!("regular expression \"{k}\" does not compile ({e}): it will never match"),
            );
        }
    }

    /// `[regex] tables` as most criteria take them: the table name and
    /// whether it holds regular expressions.
    fn regex_tables(&mut self, ctx: &str) -> PResult<(String, Loc, bool)> {
        let regex = self.accept_kw(Kw::Regex);
        let (name, l) = self.tables(ctx)?;
        if regex {
            self.check_regex_table(&name, l);
        }
        Ok((name, l, regex))
    }

    // ---- actions ---------------------------------------------------------

    /// dispatcher: ACTION STRING dispatcher_type dispatcher_options
    fn dispatcher(&mut self) -> PResult<()> {
        let (name, l) = self.string("action", "an action name")?;
        if self.conf.sc_dispatchers.contains_key(&name) {
            let at = self.declared_at("action", &name);
            return Err(self.error_at(l, &format!("action \"{name}\" is already declared{at}")));
        }
        self.declare("action", &name, l);
        let mut dsp = Dispatcher {
            u: DispatcherAgent::Local(DispatcherLocal::new(LocalMethod::ExpandOnly)),
            ttl: 0,
        };
        let r = self
            .dispatcher_type(&mut dsp)
            .and_then(|()| self.dispatcher_options(&mut dsp));
        if let DispatcherAgent::Local(local) = &mut dsp.u {
            local
                .table_userbase
                .get_or_insert_with(|| DEFAULT_USERBASE.to_string());
        }
        // Registered even after an error, so that the matches using it do
        // not report it missing as well.
        self.conf.sc_dispatchers.insert(name, dsp);
        r
    }

    fn dispatcher_type(&mut self, dsp: &mut Dispatcher) -> PResult<()> {
        let method = match self.kw() {
            Some(Kw::Relay) => {
                self.advance();
                let mut remote = DispatcherRemote::default();
                let r = self.dispatcher_remote_options(&mut remote);
                dsp.u = DispatcherAgent::Remote(remote);
                return r;
            }
            Some(Kw::Mbox) => LocalMethod::Mbox,
            Some(Kw::Maildir) => {
                self.advance();
                let path = match &self.tok.tok {
                    Tok::Str(_) => Some(self.string("maildir", "a path")?.0),
                    _ => None,
                };
                let junk = self.accept_kw(Kw::Junk);
                dsp.u = DispatcherAgent::Local(DispatcherLocal::new(LocalMethod::Maildir {
                    path,
                    junk,
                }));
                return self.dispatcher_local_options(dsp);
            }
            Some(Kw::Lmtp) => {
                self.advance();
                let (destination, _) =
                    self.string("lmtp", "a destination (host:port or socket path)")?;
                let rcpt_to = self.accept_kw(Kw::RcptTo);
                dsp.u = DispatcherAgent::Local(DispatcherLocal::new(LocalMethod::Lmtp {
                    destination,
                    rcpt_to,
                }));
                return self.dispatcher_local_options(dsp);
            }
            Some(Kw::Mda) => {
                self.advance();
                let (cmd, _) = self.string("mda", "a command")?;
                dsp.u = DispatcherAgent::Local(DispatcherLocal::new(LocalMethod::Mda(cmd)));
                return self.dispatcher_local_options(dsp);
            }
            Some(Kw::ForwardOnly) => LocalMethod::ForwardOnly,
            Some(Kw::ExpandOnly) => LocalMethod::ExpandOnly,
            _ => return Err(self.expected(
                "action",
                "a delivery method (mbox, maildir, lmtp, mda, forward-only, expand-only or relay)",
                &LOCAL_METHODS,
            )),
        };
        self.advance();
        dsp.u = DispatcherAgent::Local(DispatcherLocal::new(method));
        self.dispatcher_local_options(dsp)
    }

    /// dispatcher_local_options.
    fn dispatcher_local_options(&mut self, dsp: &mut Dispatcher) -> PResult<()> {
        let DispatcherAgent::Local(local) = &mut dsp.u else {
            unreachable!("called for local dispatchers")
        };
        loop {
            let l = self.loc();
            match self.kw() {
                Some(Kw::User) => {
                    self.advance();
                    let (user, _) = self.string("user", "a user name")?;
                    let why = match local.method {
                        LocalMethod::Mbox => {
                            Some("mbox delivery (mail.local delivers as the recipient)")
                        }
                        LocalMethod::ForwardOnly => Some("forward-only"),
                        LocalMethod::ExpandOnly => Some("expand-only"),
                        _ => None,
                    };
                    if let Some(why) = why {
                        return Err(
                            self.error_at(l, &format!("user may not be specified for {why}"))
                        );
                    }
                    if local.user.is_some() {
                        return Err(self.error_at(l, "user already specified for this action"));
                    }
                    local.user = Some(user);
                }
                Some(k @ (Kw::Alias | Kw::Virtual)) => {
                    self.advance();
                    let (t, tl) = self.tables(k.name())?;
                    if local.table_alias.is_some() || local.table_virtual.is_some() {
                        let msg = if (k == Kw::Alias) == local.table_alias.is_some() {
                            format!("{} mapping already specified for this action", k.name())
                        } else {
                            "alias and virtual may not be used together in one action".to_string()
                        };
                        return Err(self.error_at(l, &msg));
                    }
                    let what = if k == Kw::Alias { "alias" } else { "virtual" };
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_HASH, K::K_ALIAS, what)?;
                    if k == Kw::Alias {
                        local.table_alias = Some(t);
                    } else {
                        local.table_virtual = Some(t);
                    }
                }
                Some(Kw::Userbase) => {
                    self.advance();
                    let (t, tl) = self.tables("userbase")?;
                    if local.table_userbase.is_some() {
                        return Err(
                            self.error_at(l, "userbase mapping already specified for this action")
                        );
                    }
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_HASH, K::K_USERINFO, "userbase")?;
                    local.table_userbase = Some(t);
                }
                Some(Kw::Wrapper) => {
                    self.advance();
                    let (w, wl) = self.string("wrapper", "a wrapper name")?;
                    if !self.conf.sc_mda_wrappers.contains_key(&w) {
                        let hint = did_you_mean(suggest(
                            &w,
                            self.conf.sc_mda_wrappers.keys().map(String::as_str),
                        ));
                        return Err(
                            self.error_at(wl, &format!("no mda wrapper with that name: {w}{hint}"))
                        );
                    }
                    local.mda_wrapper = Some(w);
                }
                _ => return Ok(()),
            }
        }
    }

    /// dispatcher_remote_options.
    fn dispatcher_remote_options(&mut self, r: &mut DispatcherRemote) -> PResult<()> {
        loop {
            let l = self.loc();
            let Some(k) = self.kw() else { return Ok(()) };
            if !REMOTE_OPTIONS.contains(&k.name()) {
                return Ok(());
            }
            self.advance();
            let dup = |set: bool, what: &str, p: &mut Self| -> PResult<()> {
                if set {
                    return Err(p.error_at(l, &format!("{what} already specified for this action")));
                }
                Ok(())
            };
            match k {
                Kw::Helo => {
                    dup(r.helo.is_some(), "helo", self)?;
                    r.helo = Some(self.string("helo", "a host name")?.0);
                }
                Kw::HeloSrc => {
                    let (t, tl) = self.tables("helo-src")?;
                    dup(r.helo_source.is_some(), "helo-source mapping", self)?;
                    self.check_use(
                        &t,
                        tl,
                        T::T_DYNAMIC | T::T_HASH,
                        K::K_ADDRNAME,
                        "helo-source",
                    )?;
                    r.helo_source = Some(t);
                }
                Kw::Pki => {
                    let (name, nl) = self.string("pki", "a pki name")?;
                    dup(r.pki.is_some(), "pki", self)?;
                    r.pki = Some(self.pki_ref(&name, nl)?);
                }
                Kw::Ca => {
                    let (name, nl) = self.string("ca", "a ca name")?;
                    dup(r.ca.is_some(), "ca", self)?;
                    r.ca = Some(self.ca_ref(&name, nl)?);
                }
                Kw::Ciphers => {
                    let c = self.tls_string(k)?;
                    dup(r.tls_ciphers.is_some(), "ciphers", self)?;
                    r.tls_ciphers = Some(c);
                }
                Kw::Protocols => {
                    let p = self.tls_string(k)?;
                    dup(r.tls_protocols.is_some(), "protocols", self)?;
                    r.tls_protocols = Some(p);
                }
                Kw::Src => {
                    let (t, tl) = self.tables("src")?;
                    dup(r.source.is_some(), "source mapping", self)?;
                    self.check_use(
                        &t,
                        tl,
                        T::T_DYNAMIC | T::T_LIST | T::T_HASH,
                        K::K_SOURCE,
                        "source",
                    )?;
                    r.source = Some(t);
                }
                Kw::MailFrom => {
                    let (m, _) = self.string("mail-from", "an address")?;
                    dup(r.mail_from.is_some(), "mail-from", self)?;
                    r.mail_from = Some(m);
                }
                Kw::Backup => {
                    let mx = if self.accept_kw(Kw::Mx) {
                        Some(self.string("backup mx", "a host name")?.0)
                    } else {
                        None
                    };
                    dup(r.backup, "backup", self)?;
                    if r.smarthost.is_some() {
                        return Err(self.error_at(l, "backup and host are mutually exclusive"));
                    }
                    r.backup = true;
                    r.backupmx = mx;
                }
                Kw::Host | Kw::Domain => {
                    let (t, tl) = self.tables(k.name())?;
                    dup(r.smarthost.is_some(), "host mapping", self)?;
                    if r.backup {
                        let other = if k == Kw::Host { "host" } else { "domain" };
                        return Err(
                            self.error_at(l, &format!("backup and {other} are mutually exclusive"))
                        );
                    }
                    let shape = if k == Kw::Host {
                        T::T_DYNAMIC | T::T_LIST
                    } else {
                        T::T_DYNAMIC | T::T_HASH
                    };
                    self.check_use(&t, tl, shape, K::K_RELAYHOST, "host")?;
                    self.check_relay_urls(&t, tl, k == Kw::Domain);
                    r.smarthost = Some(t);
                    r.smarthost_domain = k == Kw::Domain;
                }
                Kw::Tls => {
                    let verify = !self.accept_kw(Kw::NoVerify);
                    dup(r.tls_required, "tls", self)?;
                    r.tls_required = true;
                    r.tls_verify = verify;
                }
                Kw::Auth => {
                    let (t, tl) = self.tables("auth")?;
                    if r.smarthost.is_none() {
                        return Err(self.error_at(l, "auth may not be specified without host on an action (write \"host\" first)"));
                    }
                    dup(r.auth.is_some(), "auth mapping", self)?;
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_HASH, K::K_CREDENTIALS, "auth")?;
                    r.auth = Some(t);
                }
                Kw::Filter => {
                    dup(r.filtername.is_some(), "filter", self)?;
                    r.filtername =
                        Some(self.filter_ref(FilterSubsystem::FILTER_SUBSYSTEM_SMTP_OUT)?);
                }
                Kw::Srs => {
                    if self.conf.sc_srs_key.is_none() {
                        return Err(self.error_at(l, "an srs key is required for srs to be specified in an action (declare \"srs key\" first)"));
                    }
                    dup(r.srs, "srs", self)?;
                    r.srs = true;
                }
                _ => unreachable!("REMOTE_OPTIONS lists the keywords handled here"),
            }
        }
    }

    /// Warns about relay URLs that text_to_relayhost() will refuse when
    /// the first mail is relayed.
    fn check_relay_urls(&mut self, name: &str, l: Loc, values: bool) {
        let bad: Vec<String> = self.conf.sc_tables_dict[name]
            .static_entries()
            .into_iter()
            .map(|(k, v)| if values { v.unwrap_or_default() } else { k })
            .filter(|u| text_to_relayhost(u).is_none())
            .collect();
        for u in bad {
            self.warn_at(
                l,
                &format!("invalid relay host \"{u}\": expected [smtp|smtp+tls|smtp+notls|smtps|lmtp://[label@]]host[:port]"),
            );
        }
    }

    fn pki_ref(&mut self, name: &str, l: Loc) -> PResult<String> {
        let key = lowercase(name);
        if !self.conf.sc_pki_dict.contains_key(&key) {
            let hint = did_you_mean(suggest(
                &key,
                self.conf.sc_pki_dict.keys().map(String::as_str),
            ));
            return Err(self.error_at(l, &format!("pki name not found: {name} (declare it with \"pki {name} cert ...\" first){hint}")));
        }
        Ok(key)
    }

    fn ca_ref(&mut self, name: &str, l: Loc) -> PResult<String> {
        let key = lowercase(name);
        if !self.conf.sc_ca_dict.contains_key(&key) {
            let hint = did_you_mean(suggest(
                &key,
                self.conf.sc_ca_dict.keys().map(String::as_str),
            ));
            return Err(self.error_at(l, &format!("ca name not found: {name}{hint}")));
        }
        Ok(key)
    }

    /// dispatcher_options: (TTL STRING)*; local or relay options after the
    /// ttl are a mistake parse.y refuses as well.
    fn dispatcher_options(&mut self, dsp: &mut Dispatcher) -> PResult<()> {
        while self.is_kw(Kw::Ttl) {
            let l = self.loc();
            self.advance();
            let d = self.delay("ttl", "a delay such as 4d")?;
            if dsp.ttl != 0 {
                return Err(self.error_at(l, "ttl already specified for this action"));
            }
            dsp.ttl = d;
        }
        let (kind, opts): (&str, &[&str]) = match dsp.u {
            DispatcherAgent::Remote(_) => ("relay", &REMOTE_OPTIONS),
            _ => ("local", &LOCAL_OPTIONS),
        };
        if let Some(k) = self.kw() {
            if opts.contains(&k.name()) {
                return Err(self.error(&format!(
                    "\"{}\" must come before \"ttl\" in an action",
                    k.name()
                )));
            }
        }
        let mut all = opts.to_vec();
        all.push("ttl");
        self.end(&format!("action ... {kind}"), &all)
    }

    // ---- match -----------------------------------------------------------

    /// match: MATCH match_options (REJECT | ACTION STRING)
    fn match_(&mut self) -> PResult<()> {
        let mut rule = Rule::default();
        loop {
            let l = self.loc();
            let negated = self.accept_char(b'!');
            if !self.match_option(&mut rule, negated, l)? {
                if negated {
                    return Err(self.expected("match", "a criterion after '!'", &MATCH_OPTIONS));
                }
                break;
            }
        }
        if self.accept_kw(Kw::Reject) {
            rule.reject = true;
        } else if self.accept_kw(Kw::Action) {
            let (name, l) = self.string("match ... action", "an action name")?;
            if !self.conf.sc_dispatchers.contains_key(&name) {
                let hint = did_you_mean(suggest(
                    &name,
                    self.conf.sc_dispatchers.keys().map(String::as_str),
                ));
                return Err(self.error_at(l, &format!("unknown action \"{name}\"{hint}")));
            }
            rule.dispatcher = Some(name);
        } else {
            return Err(self.expected(
                "match",
                "a criterion, \"action NAME\" or \"reject\"",
                &MATCH_OPTIONS,
            ));
        }
        if rule.flag_from == 0 {
            rule.table_from = Some("<localhost>".into());
            rule.flag_from = 1;
        }
        if rule.flag_for == 0 {
            rule.table_for = Some("<localnames>".into());
            rule.flag_for = 1;
        }
        self.conf.sc_rules.push(rule);
        self.end("match", &[])
    }

    /// match_option; false when the current token starts none.
    fn match_option(&mut self, rule: &mut Rule, negated: bool, l: Loc) -> PResult<bool> {
        let flag: i8 = if negated { -1 } else { 1 };
        let Some(k) = self.kw() else { return Ok(false) };
        let already = |p: &mut Self, set: bool, what: &str| -> PResult<()> {
            if set {
                return Err(p.error_at(l, &format!("{what} already specified for this rule")));
            }
            Ok(())
        };
        match k {
            Kw::Tag | Kw::Helo | Kw::MailFrom | Kw::RcptTo => {
                self.advance();
                let (t, tl, regex) = self.regex_tables(k.name())?;
                let (f, tmask, smask, what) = match k {
                    Kw::Tag => (&mut rule.flag_tag, T::T_LIST, K::K_STRING, "tag"),
                    Kw::Helo => (&mut rule.flag_smtp_helo, T::T_LIST, K::K_DOMAIN, "helo"),
                    Kw::MailFrom => (
                        &mut rule.flag_smtp_mail_from,
                        T::T_LIST | T::T_HASH,
                        K::K_MAILADDR,
                        "mail-from",
                    ),
                    _ => (
                        &mut rule.flag_smtp_rcpt_to,
                        T::T_LIST | T::T_HASH,
                        K::K_MAILADDR,
                        "rcpt-to",
                    ),
                };
                already(self, *f != 0, what)?;
                *f = flag;
                let (tmask, smask) = if regex {
                    (T::T_LIST, K::K_REGEX)
                } else {
                    (tmask, smask)
                };
                self.check_use(&t, tl, T::T_DYNAMIC | tmask, smask, what)?;
                match k {
                    Kw::Tag => (rule.flag_tag_regex, rule.table_tag) = (regex, Some(t)),
                    Kw::Helo => {
                        (rule.flag_smtp_helo_regex, rule.table_smtp_helo) = (regex, Some(t))
                    }
                    Kw::MailFrom => {
                        (rule.flag_smtp_mail_from_regex, rule.table_smtp_mail_from) =
                            (regex, Some(t))
                    }
                    _ => (rule.flag_smtp_rcpt_to_regex, rule.table_smtp_rcpt_to) = (regex, Some(t)),
                }
            }
            Kw::Tls => {
                self.advance();
                already(self, rule.flag_smtp_starttls != 0, "tls")?;
                rule.flag_smtp_starttls = flag;
            }
            Kw::Auth => {
                self.advance();
                already(self, rule.flag_smtp_auth != 0, "auth")?;
                self.match_auth(rule, flag)?;
            }
            Kw::From => {
                self.advance();
                already(self, rule.flag_from != 0, "from")?;
                self.match_from(rule, flag)?;
            }
            Kw::For => {
                self.advance();
                already(self, rule.flag_for != 0, "for")?;
                self.match_for(rule, flag)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `auth`, `auth [regex] <table>` (bare or after `from`).
    fn match_auth(&mut self, rule: &mut Rule, flag: i8) -> PResult<()> {
        rule.flag_smtp_auth = flag;
        if !is_table_start(&self.tok.tok) && !self.is_kw(Kw::Regex) {
            return Ok(());
        }
        let (t, tl, regex) = self.regex_tables("auth")?;
        if regex {
            self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, K::K_REGEX, "auth")?;
        } else {
            self.check_use(
                &t,
                tl,
                T::T_DYNAMIC | T::T_LIST | T::T_HASH,
                K::K_STRING | K::K_CREDENTIALS,
                "auth",
            )?;
        }
        rule.flag_smtp_auth_regex = regex;
        rule.table_smtp_auth = Some(t);
        Ok(())
    }

    fn match_from(&mut self, rule: &mut Rule, flag: i8) -> PResult<()> {
        rule.flag_from = flag;
        match self.kw() {
            Some(Kw::Socket) => {
                self.advance();
                rule.flag_from_socket = true;
            }
            Some(Kw::Local) => {
                self.advance();
                rule.table_from = Some("<localhost>".into());
            }
            Some(Kw::Any) => {
                self.advance();
                rule.table_from = Some("<anyhost>".into());
            }
            Some(Kw::Src) => {
                self.advance();
                let (t, tl, regex) = self.regex_tables("from src")?;
                let smask = if regex { K::K_REGEX } else { K::K_NETADDR };
                self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, smask, "from")?;
                rule.flag_from_regex = regex;
                rule.table_from = Some(t);
            }
            Some(Kw::Rdns) => {
                self.advance();
                rule.flag_from_rdns = true;
                if is_table_start(&self.tok.tok) || self.is_kw(Kw::Regex) {
                    let (t, tl, regex) = self.regex_tables("from rdns")?;
                    // parse.y checks both forms as domains.
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, K::K_DOMAIN, "rdns")?;
                    rule.flag_from_regex = regex;
                    rule.table_from = Some(t);
                }
            }
            // The sender criteria of `from` match any source address.
            Some(Kw::Auth) => {
                self.advance();
                rule.flag_from = 1;
                rule.table_from = Some("<anyhost>".into());
                if is_table_start(&self.tok.tok) || self.is_kw(Kw::Regex) {
                    let (t, tl, regex) = self.regex_tables("from auth")?;
                    let smask = if regex {
                        K::K_REGEX
                    } else {
                        K::K_STRING | K::K_CREDENTIALS
                    };
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, smask, "from")?;
                    rule.flag_smtp_auth_regex = regex;
                    rule.table_smtp_auth = Some(t);
                }
                rule.flag_smtp_auth = flag;
            }
            Some(Kw::MailFrom) => {
                self.advance();
                let (t, tl, regex) = self.regex_tables("from mail-from")?;
                if regex {
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, K::K_REGEX, "from")?;
                } else {
                    self.check_use(
                        &t,
                        tl,
                        T::T_DYNAMIC | T::T_LIST | T::T_HASH,
                        K::K_MAILADDR,
                        "from",
                    )?;
                }
                rule.flag_from = 1;
                rule.table_from = Some("<anyhost>".into());
                rule.flag_smtp_mail_from = flag;
                rule.flag_smtp_mail_from_regex = regex;
                rule.table_smtp_mail_from = Some(t);
            }
            _ => {
                let opts = ["any", "local", "socket", "src", "rdns", "auth", "mail-from"];
                return Err(self.expected(
                    "match from",
                    "any, local, socket, src, rdns, auth or mail-from",
                    &opts,
                ));
            }
        }
        Ok(())
    }

    fn match_for(&mut self, rule: &mut Rule, flag: i8) -> PResult<()> {
        rule.flag_for = flag;
        match self.kw() {
            Some(Kw::Local) => {
                self.advance();
                rule.table_for = Some("<localnames>".into());
            }
            Some(Kw::Any) => {
                self.advance();
                rule.table_for = Some("<anydestination>".into());
            }
            Some(Kw::Domain) => {
                self.advance();
                let (t, tl, regex) = self.regex_tables("for domain")?;
                let smask = if regex { K::K_REGEX } else { K::K_DOMAIN };
                self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, smask, "'for'")?;
                rule.flag_for_regex = regex;
                rule.table_for = Some(t);
            }
            Some(Kw::RcptTo) => {
                self.advance();
                let (t, tl, regex) = self.regex_tables("for rcpt-to")?;
                if regex {
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_LIST, K::K_REGEX, "for")?;
                } else {
                    self.check_use(
                        &t,
                        tl,
                        T::T_DYNAMIC | T::T_LIST | T::T_HASH,
                        K::K_MAILADDR,
                        "for",
                    )?;
                }
                rule.flag_for = 1;
                rule.table_for = Some("<anydestination>".into());
                rule.flag_smtp_rcpt_to = flag;
                rule.flag_smtp_rcpt_to_regex = regex;
                rule.table_smtp_rcpt_to = Some(t);
            }
            _ => {
                let opts = ["any", "local", "domain", "rcpt-to"];
                return Err(self.expected("match for", "any, local, domain or rcpt-to", &opts));
            }
        }
        Ok(())
    }

    // ---- filters ---------------------------------------------------------

    /// filter: FILTER STRING (PROC STRING | PROC_EXEC STRING proc_params |
    /// PHASE filter_phase | CHAIN '{' filter_list '}')
    fn filter(&mut self) -> PResult<()> {
        let (name, l) = self.string("filter", "a filter name")?;
        if self.conf.sc_filters_dict.contains_key(&name) {
            let at = self.declared_at("filter", &name);
            return Err(self.error_at(
                l,
                &format!("filter already exists with that name: {name}{at}"),
            ));
        }
        self.declare("filter", &name, l);
        let mut fc = FilterConfig {
            name: name.clone(),
            filter_subsystem: FilterSubsystem::empty(),
            filter_type: FilterType::Chain(Vec::new()),
        };
        let r = self.filter_body(&name, l, &mut fc);
        self.conf.sc_filters_dict.insert(name, fc);
        r
    }

    fn filter_body(&mut self, name: &str, l: Loc, fc: &mut FilterConfig) -> PResult<()> {
        match self.kw() {
            Some(Kw::Proc) => {
                self.advance();
                let (proc, pl) = self.string("filter ... proc", "a proc name")?;
                if !self.conf.sc_filter_processes_dict.contains_key(&proc) {
                    let hint = did_you_mean(suggest(
                        &proc,
                        self.conf
                            .sc_filter_processes_dict
                            .keys()
                            .map(String::as_str),
                    ));
                    return Err(self.error_at(
                        pl,
                        &format!("no processor exist with that name: {proc}{hint}"),
                    ));
                }
                fc.filter_type = FilterType::Proc(proc);
                Ok(())
            }
            Some(Kw::ProcExec) => {
                self.advance();
                let (command, _) = self.string("filter ... proc-exec", "a command")?;
                // OpenSMTPD replaces a proc of the same name silently, and
                // the filters using it then run this command instead.
                if self.conf.sc_filter_processes_dict.contains_key(name) {
                    let at = self.declared_at("proc", name);
                    return Err(self.error_at(
                        l,
                        &format!(
                            "proc-exec filter {name} would replace the proc of the same name{at}"
                        ),
                    ));
                }
                self.declare("proc", name, l);
                fc.filter_type = FilterType::Proc(name.to_string());
                let mut processor = FilterProc {
                    command,
                    ..Default::default()
                };
                let r = self.proc_params(&mut processor, "filter ... proc-exec");
                self.conf
                    .sc_filter_processes_dict
                    .insert(name.to_string(), processor);
                r
            }
            Some(Kw::Phase) => {
                self.advance();
                fc.filter_type = FilterType::Builtin(self.filter_phase()?);
                self.end("filter ... phase", &[])
            }
            Some(Kw::Chain) => {
                self.advance();
                let chain = self.filter_list(FilterSubsystem::empty())?;
                fc.filter_type = FilterType::Chain(chain);
                Ok(())
            }
            _ => Err(self.expected(
                "filter",
                "\"proc\", \"proc-exec\", \"phase\" or \"chain\"",
                &["proc", "proc-exec", "phase", "chain"],
            )),
        }
    }

    /// filter_phase: PHASE_NAME MATCH check decision.
    fn filter_phase(&mut self) -> PResult<FilterBuiltin> {
        let phase = match self.kw() {
            Some(Kw::Connect) => FilterPhase::Connect,
            Some(Kw::Helo) => FilterPhase::Helo,
            Some(Kw::Ehlo) => FilterPhase::Ehlo,
            // OpenSMTPD leaves filter_config->phase at 0 here, registering
            // the filter for connect; we register it for auth.
            Some(Kw::Auth) => FilterPhase::Auth,
            Some(Kw::MailFrom) => FilterPhase::MailFrom,
            Some(Kw::RcptTo) => FilterPhase::RcptTo,
            Some(Kw::Data) => FilterPhase::Data,
            Some(Kw::Commit) => FilterPhase::Commit,
            Some(k @ (Kw::DataLine | Kw::Quit | Kw::Rset | Kw::Noop)) => {
                return Err(self.error(&format!(
                    "builtin filters cannot run at the {} phase; the phases are: {}",
                    k.name(),
                    FILTER_PHASES.join(", ")
                )))
            }
            _ => return Err(self.expected("filter ... phase", "a phase name", &FILTER_PHASES)),
        };
        self.advance();
        self.expect_kw(Kw::Match, &format!("filter ... phase {}", phase.name()))?;
        let l = self.loc();
        let negate = self.accept_char(b'!');
        let check = self.filter_check(phase, l)?;
        let decision = self.filter_decision(phase)?;
        Ok(FilterBuiltin {
            phase,
            negate,
            check,
            decision,
        })
    }

    /// The one condition of a builtin filter, if its phase knows the data.
    fn filter_check(&mut self, phase: FilterPhase, l: Loc) -> PResult<FilterCheck> {
        use FilterPhase as P;
        let k = self.kw();
        let on = match k {
            Some(Kw::Fcrdns) => {
                self.advance();
                return Ok(FilterCheck::Fcrdns);
            }
            Some(Kw::Rdns) => FilterCheckOn::Rdns,
            Some(Kw::Src) => FilterCheckOn::Src,
            Some(Kw::Helo) => FilterCheckOn::Helo,
            Some(Kw::Auth) => FilterCheckOn::Auth,
            Some(Kw::MailFrom) => FilterCheckOn::MailFrom,
            Some(Kw::RcptTo) => FilterCheckOn::RcptTo,
            _ => {
                let opts = [
                    "fcrdns",
                    "rdns",
                    "src",
                    "helo",
                    "auth",
                    "mail-from",
                    "rcpt-to",
                ];
                return Err(self.expected(
                    "filter ... match",
                    "a condition (fcrdns, rdns, src, helo, auth, mail-from or rcpt-to)",
                    &opts,
                ));
            }
        };
        // The data each phase has seen so far (filter_phase_*_options).
        let known = match on {
            FilterCheckOn::Rdns | FilterCheckOn::Src => true,
            FilterCheckOn::Helo => !matches!(phase, P::Connect),
            FilterCheckOn::Auth => !matches!(phase, P::Connect | P::Helo | P::Ehlo),
            FilterCheckOn::MailFrom => !matches!(phase, P::Connect | P::Helo | P::Ehlo | P::Auth),
            FilterCheckOn::RcptTo => phase == P::RcptTo,
        };
        if !known {
            return Err(self.error_at(
                l,
                &format!(
                    "\"{}\" cannot be matched at the {} phase: it is not known yet",
                    on.name(),
                    phase.name()
                ),
            ));
        }
        self.advance();
        let bare = !is_table_start(&self.tok.tok) && !self.is_kw(Kw::Regex);
        match on {
            FilterCheckOn::Rdns if bare => return Ok(FilterCheck::Rdns),
            FilterCheckOn::Auth if bare => return Ok(FilterCheck::Auth),
            _ => {}
        }
        let (table, _, regex) = self.regex_tables(&format!("filter ... match {}", on.name()))?;
        Ok(FilterCheck::Table { on, regex, table })
    }

    /// filter_action_builtin (filter_action_builtin_nojunk at commit).
    fn filter_decision(&mut self, phase: FilterPhase) -> PResult<FilterDecision> {
        let l = self.loc();
        let k = self.kw();
        let msg = |p: &mut Self, what: &str| -> PResult<String> {
            let (m, ml) = p.string(what, "a message such as \"550 go away\"")?;
            let is_reply = valid_smtp_response(&m) && (m.starts_with('4') || m.starts_with('5'));
            if matches!(what, "reject" | "disconnect") && !is_reply {
                p.warn_at(ml, &format!(
                    "\"{m}\" is not an SMTP error reply (4xx or 5xx and a space): sessions will get \
                     \"421 Internal server error\" and be disconnected instead"
                ));
            }
            Ok(m)
        };
        let d = match k {
            Some(Kw::Reject) => {
                self.advance();
                FilterDecision::Reject(msg(self, "reject")?)
            }
            Some(Kw::Disconnect) => {
                self.advance();
                FilterDecision::Disconnect(msg(self, "disconnect")?)
            }
            Some(Kw::Rewrite) => {
                self.advance();
                FilterDecision::Rewrite(msg(self, "rewrite")?)
            }
            Some(Kw::Report) => {
                self.advance();
                FilterDecision::Report(msg(self, "report")?)
            }
            Some(k @ (Kw::Junk | Kw::Bypass)) if phase == FilterPhase::Commit => {
                return Err(self.error_at(l, &format!("\"{}\" is not possible at the commit phase: the message is already accepted", k.name())));
            }
            Some(Kw::Junk) => {
                self.advance();
                FilterDecision::Junk
            }
            Some(Kw::Bypass) => {
                self.advance();
                FilterDecision::Bypass
            }
            _ => {
                let opts = [
                    "reject",
                    "disconnect",
                    "rewrite",
                    "report",
                    "junk",
                    "bypass",
                ];
                return Err(self.expected(
                    "filter ... match",
                    "a decision (reject, disconnect, rewrite, report, junk or bypass)",
                    &opts,
                ));
            }
        };
        Ok(d)
    }

    /// A filter used by a listener or a relay: a name, or an inline chain.
    fn filter_ref(&mut self, subsystem: FilterSubsystem) -> PResult<String> {
        if self.is_char(b'{') {
            let mut name = format!("<dynchain:{:08x}>", self.last_dynchain_id);
            while self.conf.sc_filters_dict.contains_key(&name) {
                self.last_dynchain_id += 1;
                name = format!("<dynchain:{:08x}>", self.last_dynchain_id);
            }
            self.last_dynchain_id += 1;
            let chain = self.filter_list(subsystem)?;
            self.conf.sc_filters_dict.insert(
                name.clone(),
                FilterConfig {
                    name: name.clone(),
                    filter_subsystem: subsystem,
                    filter_type: FilterType::Chain(chain),
                },
            );
            return Ok(name);
        }
        let (name, l) = self.string("filter", "a filter name or '{'")?;
        let Some(fc) = self.conf.sc_filters_dict.get_mut(&name) else {
            let hint = did_you_mean(suggest(
                &name,
                self.conf.sc_filters_dict.keys().map(String::as_str),
            ));
            return Err(self.error_at(l, &format!("no filter exist with that name: {name}{hint}")));
        };
        fc.filter_subsystem |= subsystem;
        Ok(name)
    }

    /// '{' optnl filter_list '}': filter names, no chains, none twice, no
    /// proc twice.
    fn filter_list(&mut self, subsystem: FilterSubsystem) -> PResult<Vec<String>> {
        let open = self.loc();
        self.expect_char(b'{', "filter chain")?;
        self.optnl();
        let mut chain: Vec<String> = Vec::new();
        let mut procs: Vec<String> = Vec::new();
        loop {
            if self.at_statement_start() {
                return Err(self.in_braces_expected(open, "filter chain", "a filter name"));
            }
            let (name, l) = self.string("filter chain", "a filter name")?;
            let Some(fr) = self.conf.sc_filters_dict.get_mut(&name) else {
                let hint = did_you_mean(suggest(
                    &name,
                    self.conf.sc_filters_dict.keys().map(String::as_str),
                ));
                return Err(
                    self.error_at(l, &format!("no filter exist with that name: {name}{hint}"))
                );
            };
            let proc = match &fr.filter_type {
                FilterType::Chain(_) => {
                    return Err(self.error_at(
                        l,
                        &format!("no filter chain allowed within a filter chain: {name}"),
                    ))
                }
                FilterType::Proc(p) => Some(p.clone()),
                FilterType::Builtin(_) => None,
            };
            fr.filter_subsystem |= subsystem;
            if chain.contains(&name) {
                return Err(self.error_at(
                    l,
                    &format!("no filter allowed twice within a filter chain: {name}"),
                ));
            }
            if let Some(p) = proc {
                // OpenSMTPD means to refuse this, but its check never
                // fires: such chains load there, so they load here too.
                if procs.contains(&p) {
                    self.warn_at(l, &format!("proc {p} runs twice within this filter chain"));
                }
                procs.push(p);
            }
            chain.push(name);
            if self.accept_char(b',') {
                self.optnl();
                continue;
            }
            self.optnl();
            if self.accept_char(b'}') {
                return Ok(chain);
            }
            if !matches!(self.tok.tok, Tok::Str(_)) {
                return Err(self.in_braces_expected(open, "filter chain", "',' or '}'"));
            }
        }
    }

    // ---- listen ----------------------------------------------------------

    /// listen: LISTEN ON (SOCKET sock_listen | STRING if_listen)
    fn listen(&mut self) -> PResult<()> {
        self.expect_kw(Kw::On, "listen")?;
        let l = self.loc();
        let mut lo = ListenOpts {
            flags: ListenerFlags::F_EXT_DSN,
            ..Default::default()
        };
        if self.accept_kw(Kw::Socket) {
            self.sock_listen(&mut lo)?;
            if self.conf.sc_sock_listener.is_some() {
                return Err(self.error_at(l, "socket listener already configured"));
            }
            self.create_sock_listener(lo);
            return Ok(());
        }
        let Tok::Str(ifx) = self.tok.tok.clone() else {
            return Err(self.expected(
                "listen on",
                "an interface, address or \"socket\"",
                &["socket"],
            ));
        };
        self.advance();
        lo.ifx = ifx;
        self.if_listen(&mut lo)?;
        self.create_if_listener(lo, l)
    }

    fn once(&mut self, lo: &mut ListenOpts, opt: &'static str, l: Loc, msg: &str) -> PResult<()> {
        if lo.seen.contains(&opt) {
            return Err(self.error_at(l, msg));
        }
        lo.seen.push(opt);
        Ok(())
    }

    /// opt_sock_listen*: the options `listen on socket` takes.
    fn sock_listen(&mut self, lo: &mut ListenOpts) -> PResult<()> {
        loop {
            let l = self.loc();
            match self.kw() {
                Some(Kw::Filter | Kw::MaskSrc | Kw::NoDsn | Kw::Tag) => {
                    self.listen_common(lo, l)?
                }
                Some(k) if LISTEN_OPTIONS.contains(&k.name()) => {
                    return Err(self.error(&format!(
                        "\"{}\" is not an option of \"listen on socket\", which takes only: {}",
                        k.name(),
                        SOCKET_OPTIONS.join(", ")
                    )))
                }
                _ => return self.end("listen on socket", &SOCKET_OPTIONS),
            }
        }
    }

    /// The options both kinds of listener take.
    fn listen_common(&mut self, lo: &mut ListenOpts, l: Loc) -> PResult<()> {
        match self.kw() {
            Some(Kw::Filter) => {
                self.advance();
                self.once(lo, "filter", l, "filter already specified")?;
                lo.filtername = Some(self.filter_ref(FilterSubsystem::FILTER_SUBSYSTEM_SMTP_IN)?);
            }
            Some(Kw::MaskSrc) => {
                self.advance();
                self.once(lo, "mask-src", l, "mask-source already specified")?;
                lo.flags |= ListenerFlags::F_MASK_SOURCE;
            }
            Some(Kw::NoDsn) => {
                self.advance();
                self.once(lo, "no-dsn", l, "no-dsn already specified")?;
                lo.flags.remove(ListenerFlags::F_EXT_DSN);
            }
            Some(Kw::Tag) => {
                self.advance();
                let (tag, tl) = self.string("tag", "a tag")?;
                self.once(lo, "tag", l, "tag already specified")?;
                if tag.len() >= SMTPD_TAG_SIZE {
                    return Err(self.error_at(
                        tl,
                        &format!(
                            "tag name too long: at most {} characters",
                            SMTPD_TAG_SIZE - 1
                        ),
                    ));
                }
                lo.tag = Some(tag);
            }
            _ => unreachable!("called for common options"),
        }
        Ok(())
    }

    /// opt_if_listen*.
    fn if_listen(&mut self, lo: &mut ListenOpts) -> PResult<()> {
        use ListenerFlags as F;
        loop {
            let l = self.loc();
            let Some(k) = self.kw() else {
                if let Tok::Str(s) = &self.tok.tok {
                    if s == "certificate" {
                        return Err(self.error("\"certificate\" is OpenSMTPD 6.3 syntax; declare \"pki NAME cert FILE\" and use \"pki NAME\" here"));
                    }
                }
                return self.end("listen on", &LISTEN_OPTIONS);
            };
            match k {
                Kw::Filter | Kw::MaskSrc | Kw::NoDsn | Kw::Tag => self.listen_common(lo, l)?,
                Kw::Inet4 | Kw::Inet6 => {
                    self.advance();
                    self.once(lo, "family", l, "address family already specified")?;
                    lo.family = if k == Kw::Inet4 {
                        Family::Inet4
                    } else {
                        Family::Inet6
                    };
                }
                Kw::Port => {
                    self.advance();
                    lo.port = self.listen_port()?;
                    self.once(lo, "port", l, "port already specified")?;
                }
                Kw::Smtps | Kw::Tls | Kw::TlsRequire => {
                    self.advance();
                    let verify = k != Kw::Tls && self.accept_kw(Kw::Verify);
                    self.once(lo, "ssl", l, "TLS mode already specified")?;
                    lo.ssl = match k {
                        Kw::Smtps => F::F_SMTPS,
                        Kw::Tls => F::F_STARTTLS,
                        _ => F::F_STARTTLS | F::F_STARTTLS_REQUIRE,
                    };
                    if verify {
                        lo.ssl |= F::F_TLS_VERIFY;
                    }
                }
                Kw::Ciphers | Kw::Protocols => {
                    self.advance();
                    let v = self.tls_string(k)?;
                    let slot = if k == Kw::Ciphers {
                        &mut lo.tls_ciphers
                    } else {
                        &mut lo.tls_protocols
                    };
                    if slot.is_some() {
                        return Err(self.error_at(l, &format!("{} already specified", k.name())));
                    }
                    *slot = Some(v);
                }
                Kw::Pki => {
                    self.advance();
                    let (name, nl) = self.string("pki", "a pki name")?;
                    if lo.pki.len() == PKI_MAX {
                        return Err(self.error_at(l, "too many pki specified"));
                    }
                    let name = self.pki_ref(&name, nl)?;
                    lo.pki.push(name);
                }
                Kw::Ca => {
                    self.advance();
                    let (name, nl) = self.string("ca", "a ca name")?;
                    self.once(lo, "ca", l, "ca already specified")?;
                    lo.ca = Some(self.ca_ref(&name, nl)?);
                }
                Kw::Auth | Kw::AuthOptional => {
                    self.advance();
                    self.once(lo, "auth", l, "auth already specified")?;
                    lo.auth = if k == Kw::Auth {
                        F::F_AUTH | F::F_AUTH_REQUIRE
                    } else {
                        F::F_AUTH
                    };
                    if is_table_start(&self.tok.tok) {
                        lo.authtable = Some(self.tables(k.name())?.0);
                    }
                }
                Kw::Hostname => {
                    self.advance();
                    let (h, _) = self.string("hostname", "a host name")?;
                    self.once(lo, "hostname", l, "hostname already specified")?;
                    lo.hostname = Some(h);
                }
                Kw::Hostnames => {
                    self.advance();
                    let (t, tl) = self.tables("hostnames")?;
                    self.once(lo, "hostnames", l, "hostnames already specified")?;
                    self.check_use(&t, tl, T::T_DYNAMIC | T::T_HASH, K::K_ADDRNAME, "hostnames")?;
                    lo.hostnametable = Some(t);
                }
                Kw::ReceivedAuth => {
                    self.advance();
                    self.once(lo, "received-auth", l, "received-auth already specified")?;
                    lo.flags |= F::F_RECEIVEDAUTH;
                }
                Kw::ProxyV2 => {
                    self.advance();
                    self.once(lo, "proxy-v2", l, "proxy-v2 already specified")?;
                    lo.flags |= F::F_PROXY;
                }
                Kw::Senders => {
                    self.advance();
                    let (t, tl) = self.tables("senders")?;
                    lo.masquerade = self.accept_kw(Kw::Masquerade);
                    self.once(lo, "senders", l, "senders already specified")?;
                    self.check_use(
                        &t,
                        tl,
                        T::T_DYNAMIC | T::T_HASH,
                        K::K_MAILADDRMAP,
                        "senders",
                    )?;
                    lo.sendertable = Some(t);
                }
                _ => return self.end("listen on", &LISTEN_OPTIONS),
            }
        }
    }

    /// PORT (STRING | SMTP | SMTPS | NUMBER).
    fn listen_port(&mut self) -> PResult<u16> {
        let l = self.loc();
        let service = match self.tok.tok.clone() {
            Tok::Num(n) => {
                self.advance();
                return u16::try_from(n)
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| self.error_at(l, &format!("invalid port: {n}")));
            }
            Tok::Kw(Kw::Smtp) => "smtp".to_string(),
            Tok::Kw(Kw::Smtps) => "smtps".to_string(),
            Tok::Str(s) => s,
            _ => return Err(self.expected("port", "a port number or service name", &[])),
        };
        self.advance();
        net::getservbyname_tcp(&service).ok_or_else(|| {
            self.error_at(
                l,
                &format!("invalid port: {service} (not in the services database)"),
            )
        })
    }

    /// create_sock_listener().
    fn create_sock_listener(&mut self, lo: ListenOpts) {
        let hostname = self.conf.sc_hostname.clone();
        let mut l = self.config_listener(lo, None, hostname);
        l.local = true;
        l.ifx = "socket".into();
        self.conf.sc_sock_listener = Some(l);
    }

    /// create_if_listener(): the checks OpenSMTPD makes with fatalx(), here
    /// with the statement's line, then one listener per address.
    fn create_if_listener(&mut self, mut lo: ListenOpts, l: Loc) -> PResult<()> {
        use ListenerFlags as F;
        if !lo.auth.is_empty() && lo.ssl.is_empty() {
            return Err(self.error_at(l, "invalid listen option: auth requires tls/smtps"));
        }
        if !lo.pki.is_empty() && lo.ssl.is_empty() {
            return Err(self.error_at(l, "invalid listen option: pki requires tls/smtps"));
        }
        if lo.pki.is_empty() && !lo.ssl.is_empty() {
            return Err(self.error_at(l, "invalid listen option: pki required for tls/smtps"));
        }
        let flags = lo.flags;
        if lo.port != 0 {
            lo.flags = lo.ssl | lo.auth | flags;
        } else if lo.ssl.contains(F::F_SMTPS) {
            lo.port = 465;
            lo.flags = F::F_SMTPS | lo.auth | flags;
        } else {
            lo.port = 25;
            lo.flags = lo.auth | flags;
            if lo.ssl.contains(F::F_STARTTLS) {
                lo.flags |= F::F_STARTTLS;
            }
        }
        let addrs = self.listen_addresses(&lo, l)?;
        let hostname = lo
            .hostname
            .clone()
            .unwrap_or_else(|| self.conf.sc_hostname.clone());
        self.listen_origin += 1;
        for mut sa in addrs {
            sa.set_port(lo.port);
            let ip = sa.ip();
            let mut h = self.config_listener(lo.clone(), Some(sa), hostname.clone());
            // Exactly 127.0.0.1 or ::1, as C compares with
            // INADDR_LOOPBACK: 127.0.0.2 is not a local listener.
            h.local = ip == IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
                || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
            self.conf.sc_listeners.push(h);
        }
        Ok(())
    }

    /// interface(), host_v4(), host_v6(), host_dns(), in that order. An
    /// interface's link-local addresses keep their scope, without which
    /// they cannot be bound.
    fn listen_addresses(&mut self, lo: &ListenOpts, l: Loc) -> PResult<Vec<SocketAddr>> {
        let ifaddrs =
            net::getifaddrs().map_err(|e| self.error_at(l, &format!("getifaddrs: {e}")))?;
        let mut found = Vec::new();
        for ifa in &ifaddrs {
            let member =
                ifa.name == lo.ifx || net::is_if_in_group(&ifa.name, &lo.ifx).unwrap_or(false);
            if member && lo.family.admits(&ifa.addr.ip()) {
                found.push(ifa.addr);
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
        if let Ok(ip) = lo.ifx.parse::<IpAddr>() {
            if lo.family.admits(&ip) {
                return Ok(vec![SocketAddr::new(ip, 0)]);
            }
            let (is, asked) = if ip.is_ipv4() {
                ("an IPv4", "inet6")
            } else {
                ("an IPv6", "inet4")
            };
            return Err(self.error_at(
                l,
                &format!("{} is {is} address, but {asked} was given", lo.ifx),
            ));
        }
        match net::getaddrinfo(&lo.ifx, lo.family, true, false) {
            Ok(ai) if !ai.addrs.is_empty() => Ok(ai
                .addrs
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect()),
            Err(e) if !e.is_no_name() => {
                Err(self.error_at(l, &format!("could not resolve \"{}\": {e}", lo.ifx)))
            }
            _ => {
                let fam = match lo.family {
                    Family::Unspec => String::new(),
                    Family::Inet4 => " for inet4".into(),
                    Family::Inet6 => " for inet6".into(),
                };
                Err(self.error_at(l, &format!("invalid virtual ip or interface: {} (no interface, address or host name{fam})", lo.ifx)))
            }
        }
    }

    /// config_listener().
    fn config_listener(
        &mut self,
        lo: ListenOpts,
        ss: Option<SocketAddr>,
        hostname: String,
    ) -> Listener {
        use ListenerFlags as F;
        let mut flags = lo.flags;
        if lo.filtername.is_some() {
            flags |= F::F_FILTERED;
        }
        if lo.sendertable.is_some() && lo.masquerade {
            flags |= F::F_MASQUERADE;
        }
        flags |= lo.ssl & (F::F_TLS_VERIFY | F::F_STARTTLS_REQUIRE);
        Listener {
            flags,
            port: ss.map_or(0, |s| s.port()),
            ss,
            filter_name: lo.filtername,
            pki: lo.pki,
            ca_name: lo.ca,
            tag: lo.tag,
            authtable: lo.authtable,
            hostname,
            hostnametable: lo.hostnametable,
            sendertable: lo.sendertable,
            local: false,
            tls_protocols: lo.tls_protocols,
            tls_ciphers: lo.tls_ciphers,
            ifx: lo.ifx,
            family: lo.family,
            origin: self.listen_origin,
        }
    }

    // ---- after the last line --------------------------------------------

    /// The end of parse_config(): the default socket listener, unused
    /// macros, the rule count, and the pki checks of load_pki_tree().
    fn finish(&mut self) {
        if self.conf.sc_sock_listener.is_none() {
            let lo = ListenOpts {
                flags: ListenerFlags::F_EXT_DSN,
                ..Default::default()
            };
            self.create_sock_listener(lo);
        }
        if self.conf.sc_opts & SMTPD_OPT_VERBOSE != 0 {
            let unused: Vec<String> = self
                .lex
                .symtab
                .unused()
                .into_iter()
                .map(str::to_string)
                .collect();
            for name in unused {
                self.lex.diags.push(super::lex::Diag {
                    error: false,
                    text: format!("warning: macro '{name}' not used"),
                });
            }
        }
        if self.conf.sc_rules.is_empty() && self.lex.errors == 0 {
            self.lex
                .error_file("no rules, nothing to do: add a \"match ... action\" line");
        }
        self.check_pki();
    }

    /// load_pki_tree() refuses a pki without certificate or key, and files
    /// it cannot read; we say which, at the pki's line.
    fn check_pki(&mut self) {
        let mut problems: Vec<(usize, usize, String)> = Vec::new();
        for pki in self.conf.sc_pki_dict.values() {
            if self.broken_pki.contains(&pki.pki_name) {
                continue;
            }
            let l = self.decls[&("pki", pki.pki_name.clone())];
            let name = &pki.pki_name;
            for (what, kw, file) in [
                ("certificate", "cert", &pki.pki_cert_file),
                ("key", "key", &pki.pki_key_file),
            ] {
                let msg = match file {
                    None => {
                        format!("pki {name}: missing {what} file (add \"pki {name} {kw} FILE\")")
                    }
                    Some(f) => match std::fs::File::open(f) {
                        Ok(_) => continue,
                        Err(e) => format!(
                            "pki {name}: cannot read {what} file {f}: {}",
                            crate::util::log::strerror(&e)
                        ),
                    },
                };
                problems.push((l.file, l.line, msg));
            }
        }
        for ca in self.conf.sc_ca_dict.values() {
            let l = self.decls[&("ca", ca.ca_name.clone())];
            if let Some(Err(e)) = ca.ca_cert_file.as_ref().map(std::fs::File::open) {
                let f = ca.ca_cert_file.as_deref().unwrap_or_default();
                let msg = format!(
                    "ca {}: cannot read CA file {f}: {}",
                    ca.ca_name,
                    crate::util::log::strerror(&e)
                );
                problems.push((l.file, l.line, msg));
            }
        }
        // In the order of the lines they are about.
        problems.sort_by_key(|(f, l, _)| (*f, *l));
        for (f, l, msg) in problems {
            self.lex.error_at(f, l, &msg);
        }
    }
}

/// A table that stands in for one that failed to load, so that the
/// statements referring to it report neither a missing table nor a
/// wrong shape: a proc table has every shape and serves everything.
fn placeholder_table(name: &str) -> Table {
    table_create("proc", name, None).expect("the proc backend is built in")
}

/// A token as messages show it.
fn describe(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("\"{}\"", s.escape_debug()),
        Tok::Num(n) => format!("\"{n}\""),
        Tok::Kw(k) => format!("\"{}\"", k.name()),
        Tok::Arrow => "\"=>\"".into(),
        Tok::Newline | Tok::Error => "end of line".into(),
        Tok::Char(c) if c.is_ascii_graphic() => format!("\"{}\"", *c as char),
        Tok::Char(c) => format!("byte 0x{c:02x}"),
        Tok::Eof => "end of file".into(),
    }
}

#[cfg(test)]
mod tests;
