//! parse.y, first half: the smtpd.conf lexer (yylex, lgetc, igetc,
//! lungetc, findeol, pushfile, popfile), macros (symset, symget,
//! cmdline_symset) and the keyword table (lookup), as OpenSMTPD 7.8 reads
//! them, character for character.
//!
//! Where C marks macro expansion with the bytes 1 and 2 in the unget
//! buffer, we use values above 255, so that such bytes in a file are just
//! bytes. Diagnostics are collected rather than printed, so that the
//! parser can be driven from tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The longest token OpenSMTPD's lexer accepts (its `buf[8096]`).
pub const MAXTOKEN: usize = 8096;
/// How deep `include` may nest (OpenSMTPD has no limit, and recurses until
/// it runs out of descriptors on a loop).
pub const MAXINCLUDE: usize = 32;

const EOF: i32 = -1;
const START_EXPAND: u32 = 0x100;
const DONE_EXPAND: u32 = 0x101;

macro_rules! keywords {
    ($($kw:ident => $name:literal,)*) => {
        /// The reserved words of smtpd.conf (parse.y `%token`s that
        /// lookup() returns).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Kw { $($kw,)* }

        /// Sorted, as lookup()'s bsearch needs.
        const KEYWORDS: &[(&str, Kw)] = &[$(($name, Kw::$kw),)*];

        impl Kw {
            pub fn name(self) -> &'static str {
                match self { $(Kw::$kw => $name,)* }
            }
        }
    };
}

keywords! {
    Action => "action",
    Admd => "admd",
    Alias => "alias",
    Any => "any",
    Auth => "auth",
    AuthOptional => "auth-optional",
    Backup => "backup",
    Bounce => "bounce",
    Bypass => "bypass",
    Ca => "ca",
    Cert => "cert",
    Chain => "chain",
    Chroot => "chroot",
    Ciphers => "ciphers",
    Commit => "commit",
    Compression => "compression",
    Connect => "connect",
    Data => "data",
    DataLine => "data-line",
    Dhe => "dhe",
    Disconnect => "disconnect",
    Domain => "domain",
    Ehlo => "ehlo",
    Encryption => "encryption",
    ExpandOnly => "expand-only",
    Fcrdns => "fcrdns",
    Filter => "filter",
    For => "for",
    ForwardOnly => "forward-only",
    From => "from",
    Group => "group",
    Helo => "helo",
    HeloSrc => "helo-src",
    Host => "host",
    Hostname => "hostname",
    Hostnames => "hostnames",
    Include => "include",
    Inet4 => "inet4",
    Inet6 => "inet6",
    Junk => "junk",
    Key => "key",
    Limit => "limit",
    Listen => "listen",
    Lmtp => "lmtp",
    Local => "local",
    MailFrom => "mail-from",
    Maildir => "maildir",
    MaskSrc => "mask-src",
    Masquerade => "masquerade",
    Match => "match",
    MaxDeferred => "max-deferred",
    MaxMessageSize => "max-message-size",
    Mbox => "mbox",
    Mda => "mda",
    Mta => "mta",
    Mx => "mx",
    NoDsn => "no-dsn",
    NoVerify => "no-verify",
    Noop => "noop",
    On => "on",
    Phase => "phase",
    Pki => "pki",
    Port => "port",
    Proc => "proc",
    ProcExec => "proc-exec",
    Protocols => "protocols",
    ProxyV2 => "proxy-v2",
    Queue => "queue",
    Quit => "quit",
    RcptTo => "rcpt-to",
    Rdns => "rdns",
    ReceivedAuth => "received-auth",
    Recipient => "recipient",
    Regex => "regex",
    Reject => "reject",
    Relay => "relay",
    Report => "report",
    Rewrite => "rewrite",
    Rset => "rset",
    Scheduler => "scheduler",
    Senders => "senders",
    Smtp => "smtp",
    SmtpIn => "smtp-in",
    SmtpOut => "smtp-out",
    Smtps => "smtps",
    Socket => "socket",
    Src => "src",
    Srs => "srs",
    SubAddrDelim => "sub-addr-delim",
    Table => "table",
    Tag => "tag",
    Tagged => "tagged",
    Tls => "tls",
    TlsRequire => "tls-require",
    Ttl => "ttl",
    User => "user",
    Userbase => "userbase",
    Verify => "verify",
    Virtual => "virtual",
    WarnInterval => "warn-interval",
    Wrapper => "wrapper",
}

/// lookup(): the keyword a bare word spells, if any.
pub fn lookup(s: &str) -> Option<Kw> {
    KEYWORDS
        .binary_search_by(|(k, _)| (*k).cmp(s))
        .ok()
        .map(|i| KEYWORDS[i].1)
}

/// Every reserved word, for suggestions.
pub fn keyword_names() -> impl Iterator<Item = &'static str> {
    KEYWORDS.iter().map(|(k, _)| *k)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A quoted string, or a bare word that is not a keyword.
    Str(String),
    Num(i64),
    Kw(Kw),
    /// `=>`
    Arrow,
    Newline,
    /// Any other character: `{ } < > ! = , -` and stray bytes.
    Char(u8),
    /// The lexer reported an error and skipped the rest of the line.
    Error,
    Eof,
}

/// A token and where it starts.
#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub quoted: bool,
    pub file: usize,
    pub line: usize,
}

/// sym: a macro.
#[derive(Debug)]
struct Sym {
    val: String,
    used: bool,
    /// Set from the command line (`-D`): the file cannot redefine it.
    persist: bool,
    /// Definition order, for the unused-macro warnings.
    seq: usize,
}

/// The macro table. OpenSMTPD keeps a list; a map keeps large generated
/// configurations from spending their time in name comparisons.
#[derive(Debug, Default)]
pub struct Symtab {
    syms: HashMap<String, Sym>,
    seq: usize,
}

impl Symtab {
    /// symset(): defines `nam`, unless a persistent (command line)
    /// definition exists, which wins silently as in OpenSMTPD.
    pub fn symset(&mut self, nam: &str, val: &str, persist: bool) {
        if self.syms.get(nam).is_some_and(|s| s.persist) {
            return;
        }
        self.seq += 1;
        let sym = Sym {
            val: val.to_string(),
            used: false,
            persist,
            seq: self.seq,
        };
        self.syms.insert(nam.to_string(), sym);
    }

    /// cmdline_symset(): `-D name=value`, split at the last `=`; false
    /// without one.
    pub fn cmdline_symset(&mut self, s: &str) -> bool {
        let Some(i) = s.rfind('=') else { return false };
        self.symset(&s[..i], &s[i + 1..], true);
        true
    }

    /// symget(): the value of `nam`, marking it used.
    pub fn symget(&mut self, nam: &str) -> Option<String> {
        let s = self.syms.get_mut(nam)?;
        s.used = true;
        Some(s.val.clone())
    }

    /// Names of macros defined but never expanded, in definition order.
    pub fn unused(&self) -> Vec<&str> {
        let mut v: Vec<(&str, usize)> = self
            .syms
            .iter()
            .filter(|(_, s)| !s.used)
            .map(|(n, s)| (n.as_str(), s.seq))
            .collect();
        v.sort_by_key(|&(_, seq)| seq);
        v.into_iter().map(|(n, _)| n).collect()
    }
}

/// struct file: one configuration file being read.
struct File {
    name: usize,
    data: Vec<u8>,
    pos: usize,
    unget: Vec<u32>,
    eof_reached: bool,
    lineno: usize,
    /// Canonical path, for include loop detection.
    path: PathBuf,
}

/// A message about the configuration, in `file:line: message` form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub error: bool,
    pub text: String,
}

/// The lexer state: the include stack, macro expansion, diagnostics.
pub struct Lexer {
    files: Vec<File>,
    /// Every file name seen, indexed by `Token::file`.
    pub names: Vec<String>,
    expanding: bool,
    pub symtab: Symtab,
    pub diags: Vec<Diag>,
    pub errors: usize,
    /// Line of the token being read (yylval.lineno).
    tokline: usize,
}

fn isalnum(c: i32) -> bool {
    (0..=0x7f).contains(&c) && (c as u8).is_ascii_alphanumeric()
}

fn isdigit(c: i32) -> bool {
    (0..=0x7f).contains(&c) && (c as u8).is_ascii_digit()
}

fn ispunct(c: i32) -> bool {
    (0..=0x7f).contains(&c) && (c as u8).is_ascii_punctuation()
}

fn isspace(c: i32) -> bool {
    matches!(c, 0x09..=0x0d | 0x20)
}

/// Characters that may end a number token (parse.y allowed_to_end_number).
fn allowed_to_end_number(c: i32) -> bool {
    isspace(c) || [')', ',', '/', '}', '='].contains(&(c as u8 as char))
}

/// Characters that may continue a bare word (parse.y allowed_in_string).
pub fn allowed_in_string(c: i32) -> bool {
    isalnum(c) || (ispunct(c) && !b"(){}<>!=#,".contains(&(c as u8)))
}

impl Lexer {
    pub fn new(symtab: Symtab) -> Lexer {
        Lexer {
            files: Vec::new(),
            names: Vec::new(),
            expanding: false,
            symtab,
            diags: Vec::new(),
            errors: 0,
            tokline: 0,
        }
    }

    fn file(&self) -> Option<&File> {
        self.files.last()
    }

    /// The name of the file being read now.
    pub fn cur_file(&self) -> usize {
        self.file().map_or(0, |f| f.name)
    }

    pub fn depth(&self) -> usize {
        self.files.len()
    }

    /// yyerror(): an error at `file:line`.
    pub fn error_at(&mut self, file: usize, line: usize, msg: &str) {
        self.errors += 1;
        let text = format!(
            "{}:{line}: {msg}",
            self.names.get(file).map_or("-", String::as_str)
        );
        self.diags.push(Diag { error: true, text });
    }

    pub fn warn_at(&mut self, file: usize, line: usize, msg: &str) {
        let text = format!(
            "{}:{line}: warning: {msg}",
            self.names.get(file).map_or("-", String::as_str)
        );
        self.diags.push(Diag { error: false, text });
    }

    /// An error that belongs to no line (the file as a whole).
    pub fn error_file(&mut self, msg: &str) {
        self.errors += 1;
        let text = format!("{}: {msg}", self.names.first().map_or("-", String::as_str));
        self.diags.push(Diag { error: true, text });
    }

    fn yyerror(&mut self, msg: &str) {
        let (file, line) = (self.cur_file(), self.tokline);
        self.error_at(file, line, msg);
    }

    /// pushfile(): starts reading `name` (read whole: configuration files
    /// are small, and this keeps the lexer free of I/O errors). Refuses
    /// a file already being read (an include loop) and deep nesting.
    pub fn pushfile(&mut self, name: &str) -> Result<(), String> {
        let path = std::fs::canonicalize(name).unwrap_or_else(|_| PathBuf::from(name));
        if let Some(f) = self.files.iter().find(|f| f.path == path) {
            return Err(format!(
                "include loop: {name} is already being read (by {})",
                self.names[f.name]
            ));
        }
        if self.files.len() >= MAXINCLUDE {
            return Err(format!("includes nested deeper than {MAXINCLUDE} files"));
        }
        let data = read_config_file(Path::new(name))?;
        self.push_data(name, data, path);
        Ok(())
    }

    /// Starts reading `data` as if it were the file `name`.
    pub fn push_data(&mut self, name: &str, data: Vec<u8>, path: PathBuf) {
        self.names.push(name.to_string());
        self.files.push(File {
            name: self.names.len() - 1,
            data,
            pos: 0,
            unget: Vec::new(),
            eof_reached: false,
            lineno: 1,
            path,
        });
    }

    /// popfile(): back to the including file; false at the top.
    fn popfile(&mut self) -> bool {
        self.files.pop();
        !self.files.is_empty()
    }

    fn igetc(&mut self) -> i32 {
        loop {
            let Some(f) = self.files.last_mut() else {
                return EOF;
            };
            let c = if let Some(c) = f.unget.pop() {
                c
            } else if f.pos < f.data.len() {
                f.pos += 1;
                u32::from(f.data[f.pos - 1])
            } else {
                return EOF;
            };
            match c {
                START_EXPAND => self.expanding = true,
                DONE_EXPAND => self.expanding = false,
                c => return c as i32,
            }
        }
    }

    fn lineno_inc(&mut self) {
        if let Some(f) = self.files.last_mut() {
            f.lineno += 1;
        }
    }

    fn lineno(&self) -> usize {
        self.file().map_or(0, |f| f.lineno)
    }

    fn at_top(&self) -> bool {
        self.files.len() <= 1
    }

    /// lgetc(): the next character; outside quotes, backslash-newline
    /// joins lines and a backslash takes the next character literally.
    /// The first end of a file reads as a newline, so that a last line
    /// without one still ends its statement.
    fn lgetc(&mut self, quotec: i32) -> i32 {
        if quotec != 0 {
            let c = self.igetc();
            if c != EOF {
                return c;
            }
            self.yyerror("reached end of file while parsing quoted string");
            if self.at_top() || !self.popfile() {
                return EOF;
            }
            return quotec;
        }
        let mut c = self.igetc();
        while c == i32::from(b'\\') {
            let next = self.igetc();
            if next != i32::from(b'\n') {
                c = next;
                break;
            }
            self.tokline = self.lineno();
            self.lineno_inc();
            c = self.igetc();
        }
        if c == EOF {
            if let Some(f) = self.files.last_mut() {
                if !f.eof_reached {
                    f.eof_reached = true;
                    return i32::from(b'\n');
                }
            }
            while c == EOF {
                if self.at_top() || !self.popfile() {
                    return EOF;
                }
                c = self.igetc();
            }
        }
        c
    }

    fn lungetc(&mut self, c: u32) {
        if let Some(f) = self.files.last_mut() {
            f.unget.push(c);
        }
    }

    fn lungetc_i(&mut self, c: i32) {
        if c != EOF {
            self.lungetc(c as u32);
        }
    }

    /// findeol(): skips to the end of the line after an error.
    fn findeol(&mut self) -> Tok {
        loop {
            let c = self.lgetc(0);
            if c == i32::from(b'\n') {
                self.lineno_inc();
                break;
            }
            if c == EOF {
                break;
            }
        }
        Tok::Error
    }

    fn token(&self, tok: Tok, quoted: bool, file: usize) -> Token {
        Token {
            tok,
            quoted,
            file,
            line: self.tokline,
        }
    }

    /// yylex().
    pub fn yylex(&mut self) -> Token {
        loop {
            let mut buf: Vec<u8> = Vec::new();
            let mut c = self.lgetc(0);
            while c == i32::from(b' ') || c == i32::from(b'\t') {
                c = self.lgetc(0);
            }
            self.tokline = self.lineno();
            let file = self.cur_file();
            if c == i32::from(b'#') {
                while c != i32::from(b'\n') && c != EOF {
                    c = self.lgetc(0);
                }
            }
            if c == i32::from(b'$') && !self.expanding {
                match self.macro_expand() {
                    Some(tok) => return self.token(tok, false, file),
                    None => continue,
                }
            }
            let tok = match u8::try_from(c) {
                Ok(q @ (b'\'' | b'"')) => {
                    let t = self.quoted(i32::from(q));
                    return self.token(t, true, file);
                }
                _ => self.unquoted(c, &mut buf),
            };
            return self.token(tok, false, file);
        }
    }

    /// `$name`: pushes the macro's value back for reading, or reports an
    /// undefined macro. None means "read on".
    fn macro_expand(&mut self) -> Option<Tok> {
        let mut name = Vec::new();
        loop {
            let c = self.lgetc(0);
            if c == EOF {
                return Some(Tok::Eof);
            }
            if name.len() + 1 >= MAXTOKEN - 1 {
                self.yyerror("string too long");
                return Some(self.findeol());
            }
            if isalnum(c) || c == i32::from(b'_') {
                name.push(c as u8);
                continue;
            }
            self.lungetc_i(c);
            break;
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let Some(val) = self.symtab.symget(&name) else {
            self.yyerror(&format!("macro '{name}' not defined"));
            return Some(self.findeol());
        };
        self.lungetc(DONE_EXPAND);
        for b in val.bytes().rev() {
            self.lungetc(u32::from(b));
        }
        self.lungetc(START_EXPAND);
        None
    }

    /// A string in single or double quotes.
    fn quoted(&mut self, quotec: i32) -> Tok {
        let mut buf = Vec::new();
        loop {
            let mut c = self.lgetc(quotec);
            if c == EOF {
                // lgetc has reported the unterminated string.
                return Tok::Error;
            }
            if c == i32::from(b'\n') {
                self.lineno_inc();
                continue;
            } else if c == i32::from(b'\\') {
                let next = self.lgetc(quotec);
                if next == EOF {
                    return Tok::Error;
                }
                if next == quotec || next == i32::from(b' ') || next == i32::from(b'\t') {
                    c = next;
                } else if next == i32::from(b'\n') {
                    self.lineno_inc();
                    continue;
                } else {
                    self.lungetc_i(next);
                }
            } else if c == quotec {
                break;
            } else if c == 0 {
                self.yyerror("NUL byte in quoted string");
                return self.findeol();
            }
            if buf.len() + 1 >= MAXTOKEN - 1 {
                self.yyerror("string too long");
                return self.findeol();
            }
            buf.push(c as u8);
        }
        match String::from_utf8(buf) {
            Ok(s) => Tok::Str(s),
            Err(_) => {
                self.yyerror("quoted string is not valid UTF-8");
                self.findeol()
            }
        }
    }

    /// Numbers, `=>`, bare words and single characters.
    fn unquoted(&mut self, mut c: i32, buf: &mut Vec<u8>) -> Tok {
        if c == i32::from(b'-') || isdigit(c) {
            loop {
                buf.push(c as u8);
                if buf.len() >= MAXTOKEN {
                    self.yyerror("string too long");
                    return self.findeol();
                }
                c = self.lgetc(0);
                if c == EOF || !isdigit(c) {
                    break;
                }
            }
            self.lungetc_i(c);
            let nodigits = buf.len() == 1 && buf[0] == b'-';
            if !nodigits && (c == EOF || allowed_to_end_number(c)) {
                let s = String::from_utf8_lossy(buf).into_owned();
                return match s.parse::<i64>() {
                    Ok(n) => Tok::Num(n),
                    Err(_) => {
                        let why = if s.starts_with('-') {
                            "too small"
                        } else {
                            "too large"
                        };
                        self.yyerror(&format!("\"{s}\" invalid number: {why}"));
                        self.findeol()
                    }
                };
            }
            // Not a number after all: read it again as a word.
            while buf.len() > 1 {
                let b = buf.pop().unwrap_or(b' ');
                self.lungetc(u32::from(b));
            }
            c = i32::from(buf.pop().unwrap_or(b' '));
            if c == i32::from(b'-') {
                return Tok::Char(b'-');
            }
        }
        if c == i32::from(b'=') {
            let next = self.lgetc(0);
            if next == i32::from(b'>') {
                return Tok::Arrow;
            }
            self.lungetc_i(next);
        }
        if isalnum(c) || c == i32::from(b':') || c == i32::from(b'_') {
            loop {
                buf.push(c as u8);
                if buf.len() >= MAXTOKEN {
                    self.yyerror("string too long");
                    return self.findeol();
                }
                c = self.lgetc(0);
                if c == EOF || !allowed_in_string(c) {
                    break;
                }
            }
            self.lungetc_i(c);
            // Only ASCII reaches here (allowed_in_string).
            let s = String::from_utf8_lossy(buf).into_owned();
            return match lookup(&s) {
                Some(kw) => Tok::Kw(kw),
                None => Tok::Str(s),
            };
        }
        if c == i32::from(b'\n') {
            self.lineno_inc();
            return Tok::Newline;
        }
        if c == EOF {
            return Tok::Eof;
        }
        Tok::Char(c as u8)
    }
}

/// Reads a configuration file, refusing anything but a regular file (a
/// FIFO or device would hang or never end).
fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {}", crate::util::log::strerror(&e)))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    std::fs::read(path).map_err(|e| format!("{shown}: {}", crate::util::log::strerror(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(src: &str) -> (Vec<Tok>, Vec<Diag>) {
        lex_with(src, Symtab::default())
    }

    fn lex_with(src: &str, symtab: Symtab) -> (Vec<Tok>, Vec<Diag>) {
        let mut l = Lexer::new(symtab);
        l.names.push("t.conf".into());
        l.files.push(File {
            name: 0,
            data: src.as_bytes().to_vec(),
            pos: 0,
            unget: Vec::new(),
            eof_reached: false,
            lineno: 1,
            path: PathBuf::from("t.conf"),
        });
        let mut out = Vec::new();
        loop {
            let t = l.yylex();
            if t.tok == Tok::Eof {
                break;
            }
            out.push(t.tok);
        }
        (out, l.diags)
    }

    fn s(x: &str) -> Tok {
        Tok::Str(x.into())
    }

    #[test]
    fn keywords_are_sorted_for_lookup() {
        assert!(KEYWORDS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(lookup("listen"), Some(Kw::Listen));
        assert_eq!(lookup("Listen"), None);
    }

    #[test]
    fn words_numbers_and_punctuation() {
        let (t, _) = lex("listen on lo0 port 25\n");
        assert_eq!(
            t,
            [
                Tok::Kw(Kw::Listen),
                Tok::Kw(Kw::On),
                s("lo0"),
                Tok::Kw(Kw::Port),
                Tok::Num(25),
                Tok::Newline,
                Tok::Newline
            ]
        );
        // A number must end on space or one of ) , / } =; otherwise it is
        // read again as a word.
        let (t, _) = lex("35M 192.168.1.0/24 -1 -x a=>b 10/8");
        assert_eq!(
            t,
            [
                s("35M"),
                s("192.168.1.0/24"),
                Tok::Num(-1),
                Tok::Char(b'-'),
                s("x"),
                s("a"),
                Tok::Arrow,
                s("b"),
                Tok::Num(10),
                Tok::Char(b'/'),
                Tok::Num(8),
                Tok::Newline
            ]
        );
    }

    #[test]
    fn quotes_escapes_and_continuations() {
        let (t, _) = lex("\"a \\\" b\" 'c\\ d' \"e\\nf\" x\\\ny # comment\n");
        assert_eq!(
            t,
            [
                s("a \" b"),
                s("c d"),
                s("e\\nf"),
                s("xy"),
                Tok::Newline,
                Tok::Newline
            ]
        );
    }

    #[test]
    fn macros_expand_outside_quotes_only() {
        let mut st = Symtab::default();
        st.symset("lan", "192.168.0.1 port 25", false);
        let (t, _) = lex_with("listen on $lan \"$lan\"", st);
        assert_eq!(t[2..5], [s("192.168.0.1"), Tok::Kw(Kw::Port), Tok::Num(25)]);
        assert_eq!(t[5], s("$lan"));
        let (t, d) = lex("$nope x\ny");
        assert_eq!(t, [Tok::Error, s("y"), Tok::Newline]);
        assert_eq!(d[0].text, "t.conf:1: macro 'nope' not defined");
    }

    #[test]
    fn command_line_macros_win() {
        let mut st = Symtab::default();
        assert!(st.cmdline_symset("a=b=c"));
        st.symset("a=b", "x", false);
        assert_eq!(st.symget("a=b").as_deref(), Some("c"));
        assert!(!st.cmdline_symset("novalue"));
    }

    #[test]
    fn unterminated_quote_and_nul_are_errors() {
        let (t, d) = lex("\"abc");
        assert_eq!(t[0], Tok::Error);
        assert!(d[0]
            .text
            .contains("reached end of file while parsing quoted string"));
        let (t, d) = lex("\"a\0b\" x\ny\n");
        assert_eq!(t, [Tok::Error, s("y"), Tok::Newline, Tok::Newline]);
        assert_eq!(d[0].text, "t.conf:1: NUL byte in quoted string");
    }

    #[test]
    fn long_tokens_are_refused() {
        let long = "a".repeat(MAXTOKEN + 10);
        let (t, d) = lex(&format!("{long}\nok\n"));
        assert_eq!(t, [Tok::Error, s("ok"), Tok::Newline, Tok::Newline]);
        assert_eq!(d[0].text, "t.conf:1: string too long");
    }

    #[test]
    fn line_numbers_follow_continuations() {
        let mut l = Lexer::new(Symtab::default());
        l.names.push("t".into());
        l.files.push(File {
            name: 0,
            data: b"a \\\nb\nc\n".to_vec(),
            pos: 0,
            unget: Vec::new(),
            eof_reached: false,
            lineno: 1,
            path: PathBuf::new(),
        });
        let lines: Vec<usize> = (0..5).map(|_| l.yylex().line).collect();
        assert_eq!(lines, [1, 2, 2, 3, 3]);
    }
}
