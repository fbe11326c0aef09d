//! enqueue.c: sendmail(8), the local enqueuer (OpenSMTPD enqueue.c 1.126).
//!
//! Reads a message on the standard input, collects its recipients (the
//! arguments, and with `-t` the To, Cc and Bcc fields), completes its
//! header (From, Date, and the MIME fields when long lines make the body
//! quoted-printable) and submits it over a local SMTP session that the
//! daemon hands over its control socket. When no daemon runs, the message
//! is left in the spool's offline directory, its arguments on the first
//! line, for the daemon to enqueue at start with `sendmail -S`.
//!
//! Also smtpctl.c's sendmail_compat() and offline_file(), which run before
//! enqueue() while the program still has the group it is installed
//! set-group-ID to; they live here so that smtpctl.rs keeps to the
//! control commands.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use crate::control::IMSG_VERSION;
use crate::ipc::imsg::{
    imsg_compose, imsg_get, imsg_get_fd, imsgbuf_flush, imsgbuf_read, ReadResult,
};
use crate::ipc::mproc::ImsgType;
use crate::pathnames::path_spool;
use crate::queue::queue_backend::PATH_OFFLINE;
use crate::smtpctl::smtpctl::{srv_connect, usage, Srv};
use crate::sys::process::{getpwnam, getpwuid, mkstemp, Passwd};
use crate::sys::unistd::{arc4random_uniform, getegid, getgid, getlogin, getuid, setresgid};
use crate::util::getopt::{Getopt, Opt};
use crate::util::log::strerror;
use crate::util::to::time_to_text;
use crate::util::util::{getmailname, time_now};

// sysexits(3).
const EX_OK: i32 = 0;
const EX_NOHOST: i32 = 68;
const EX_UNAVAILABLE: i32 = 69;
const EX_SOFTWARE: i32 = 70;
const EX_TEMPFAIL: i32 = 75;

/// enum headerfields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderField {
    None,
    From,
    To,
    Cc,
    Bcc,
    Subject,
    Date,
    MsgId,
    MimeVersion,
    ContentType,
    ContentDisposition,
    ContentTransferEncoding,
    UserAgent,
}

/// keywords[]: the header fields parse_message() looks for.
const KEYWORDS: &[(&str, HeaderField)] = &[
    ("From:", HeaderField::From),
    ("To:", HeaderField::To),
    ("Cc:", HeaderField::Cc),
    ("Bcc:", HeaderField::Bcc),
    ("Subject:", HeaderField::Subject),
    ("Date:", HeaderField::Date),
    ("Message-Id:", HeaderField::MsgId),
    ("MIME-Version:", HeaderField::MimeVersion),
    ("Content-Type:", HeaderField::ContentType),
    ("Content-Disposition:", HeaderField::ContentDisposition),
    (
        "Content-Transfer-Encoding:",
        HeaderField::ContentTransferEncoding,
    ),
    ("User-Agent:", HeaderField::UserAgent),
];

/// A line this long (with its newline) asks for quoted-printable.
const LINESPLIT: usize = 990;
/// The address parser's buffer: addresses are shorter.
const SMTP_LINELEN: usize = 1000;

fn wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// The options of OpenSMTPD 7.8's enqueue; those not handled below are
/// accepted for compatibility with Sendmail and ignored.
const OPTSTRING: &str = "A:B:b:E::e:F:f:iJ::L:mN:o:p:qr:R:StvV:x";

/// struct msg: the message being submitted.
#[derive(Debug, Default)]
struct Msg {
    from: Vec<u8>,
    fromname: Option<Vec<u8>>,
    rcpts: Vec<Vec<u8>>,
    dsn_notify: Option<String>,
    dsn_ret: Option<String>,
    dsn_envid: Option<String>,
    need_linesplit: bool,
    /// A CR that does not end its line: smtpd refuses it on the wire
    /// (OpenSMTPD's takes it), so the body goes quoted-printable, as for
    /// long lines.
    saw_bare_cr: bool,
    saw_date: bool,
    saw_msgid: bool,
    saw_from: bool,
    saw_mime_version: bool,
    saw_content_type: bool,
    saw_content_disposition: bool,
    saw_content_transfer_encoding: bool,
    saw_user_agent: bool,
    noheader: bool,
}

/// struct pstate: the address parser, across the lines of a field
/// (C's `wpos` is the length of `buf`).
#[derive(Debug, Default)]
struct Pstate {
    quote: bool,
    comment: u32,
    esc: bool,
    brackets: bool,
    buf: Vec<u8>,
}

/// What enqueue.c keeps in globals.
struct Enqueue {
    /// __progname, for messages: sendmail, send-mail.
    progname: String,
    verbose: bool,
    /// The mail name, which qualifies addresses without a domain.
    host: String,
    user: String,
    timestamp: i64,
    msg: Msg,
    pstate: Pstate,
}

impl Msg {
    /// Whether the body must be sent quoted-printable.
    fn need_qp(&self) -> bool {
        self.need_linesplit || self.saw_bare_cr
    }
}

impl Enqueue {
    fn new(progname: &str, host: &str) -> Enqueue {
        Enqueue {
            progname: progname.to_string(),
            verbose: false,
            host: host.to_string(),
            user: String::new(),
            timestamp: 0,
            msg: Msg::default(),
            pstate: Pstate::default(),
        }
    }

    /// warnx(3).
    fn warnx(&self, args: fmt::Arguments) {
        eprintln!("{}: {args}", self.progname);
    }

    /// warn(3).
    fn warn(&self, args: fmt::Arguments, e: &io::Error) {
        eprintln!("{}: {args}: {}", self.progname, strerror(e));
    }

    /// errx(3).
    fn errx(&self, code: i32, args: fmt::Arguments) -> ! {
        self.warnx(args);
        std::process::exit(code)
    }

    /// err(3).
    fn err(&self, code: i32, args: fmt::Arguments, e: &io::Error) -> ! {
        self.warn(args, e);
        std::process::exit(code)
    }
}

/// Where the message goes: the daemon that answered on the control socket
/// (C's global ibuf, srv_connected()), or the offline file made for it.
pub(crate) enum Submission {
    Online(Box<Srv>),
    Offline(File),
}

/// enqueue()'s Submission, with the message as read for the offline file.
enum Dest {
    Online(Box<Srv>),
    Offline { ofp: File, raw: File },
}

/// How parse_message() can fail.
#[derive(Debug)]
enum ParseError {
    Read(io::Error),
    Write(io::Error),
    Address(&'static str),
}

/// qp_encoded_write(): one body line as quoted-printable (RFC 2045
/// section 6.7), soft line breaks keeping lines within 76 characters.
fn qp_encoded_write(fp: &mut impl Write, line: &[u8], eol: &[u8], stuff: bool) -> io::Result<()> {
    let mut linelen = 0;
    for (i, &c) in line.iter().enumerate() {
        // Point 3: a blank must be followed by a printable character on
        // its line, so only a blank at the end of the line is encoded.
        // Point 1 (except the EBCDIC note) for the rest; point 2 keeps
        // 33 to 60 and 62 to 126 literal. C writes "=%2X", which pads
        // with a space ("= 9" for a tab); the code must be two digits.
        let literal = if c == b' ' || c == b'\t' {
            i + 1 < line.len()
        } else {
            (33..=60).contains(&c) || (62..=126).contains(&c)
        };
        let size = if literal { 1 } else { 3 };
        // QP_TEST_WRAP: a soft break, and the next line dot-stuffed if
        // it starts with a dot.
        linelen += size;
        if linelen + 1 > 76 {
            fp.write_all(b"=")?;
            fp.write_all(eol)?;
            if stuff && c == b'.' {
                fp.write_all(b".")?;
            }
            linelen = size;
        }
        if literal {
            fp.write_all(&[c])?;
        } else {
            write!(fp, "={c:02X}")?;
        }
    }
    fp.write_all(eol)
}

/// enqueue(): submits the message on the standard input, as `args` (the
/// whole command line) says; the exit status (sysexits(3)).
pub(crate) fn enqueue(args: &[String], submission: Submission) -> i32 {
    let progname = args
        .first()
        .map_or("sendmail", |a| a.rsplit('/').next().unwrap_or(a));
    let mut e = Enqueue::new(progname, "");
    e.timestamp = time_now();

    let mut fake_from: Option<String> = None;
    let mut tflag = false;
    let mut no_getlogin = false;
    let mut g = Getopt::new(args, OPTSTRING);
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('f' | 'r', v) => fake_from = v,
            Opt::Flag('F', v) => e.msg.fromname = v.map(String::into_bytes),
            Opt::Flag('N', v) => e.msg.dsn_notify = v,
            Opt::Flag('R', v) => e.msg.dsn_ret = v,
            Opt::Flag('S', _) => no_getlogin = true,
            Opt::Flag('t', _) => tflag = true,
            Opt::Flag('v', _) => e.verbose = true,
            Opt::Flag('V', v) => e.msg.dsn_envid = v,
            // XXX in C as well: "process all now" is not implemented.
            Opt::Flag('q', _) => return EX_SOFTWARE,
            // -A -B -b -E -e -i -J -L -m -o -p -x: sendmail compatibility.
            Opt::Flag(..) => {}
            Opt::Unknown(c) => {
                eprintln!("{progname}: unknown option -- {c}");
                return usage(progname);
            }
            Opt::MissingArg(c) => {
                eprintln!("{progname}: option requires an argument -- {c}");
                return usage(progname);
            }
        }
    }

    match getmailname() {
        Ok(h) => e.host = h,
        Err(_) => e.errx(EX_NOHOST, format_args!("getmailname")),
    }
    let pw = enqueue_user(&mut e, no_getlogin);

    if let Err(why) = build_from(&mut e, fake_from.as_deref(), pw.as_ref()) {
        e.errx(1, format_args!("{why}"));
    }

    for rcpt in g.operands() {
        rcpt_add(&mut e, rcpt.as_bytes());
    }

    let mut fp =
        tmpfile().unwrap_or_else(|err| e.err(EX_UNAVAILABLE, format_args!("tmpfile"), &err));
    // Offline, the message is kept as it came: the daemon runs sendmail
    // again on it, which parses it again. (C keeps the parsed copy,
    // whose Bcc fields are gone: with -t, the Bcc recipients were lost.)
    let mut dest = match submission {
        Submission::Online(srv) => Dest::Online(srv),
        Submission::Offline(ofp) => match tmpfile() {
            Ok(raw) => Dest::Offline { ofp, raw },
            Err(err) => e.err(EX_UNAVAILABLE, format_args!("tmpfile"), &err),
        },
    };

    let parsed = {
        let mut fout = BufWriter::new(&mut fp);
        let mut rawout = match &mut dest {
            Dest::Offline { raw, .. } => Some(BufWriter::new(raw)),
            Dest::Online(_) => None,
        };
        let r = parse_message(
            &mut e,
            &mut io::stdin().lock(),
            fake_from.is_none(),
            tflag,
            &mut fout,
            rawout.as_mut(),
        );
        let flushed = fout
            .flush()
            .and_then(|()| rawout.as_mut().map_or(Ok(()), Write::flush));
        r.and_then(|noheader| flushed.map(|()| noheader).map_err(ParseError::Write))
    };
    match parsed {
        Ok(noheader) => e.msg.noheader = noheader,
        Err(ParseError::Read(err)) => e.err(EX_UNAVAILABLE, format_args!("getline"), &err),
        Err(ParseError::Write(err)) => e.err(1, format_args!("write error"), &err),
        Err(ParseError::Address(why)) => e.errx(1, format_args!("{why}")),
    }

    if e.msg.rcpts.is_empty() {
        e.errx(EX_SOFTWARE, format_args!("no recipients"));
    }

    if let Err(err) = fp.rewind() {
        e.err(EX_UNAVAILABLE, format_args!("rewind"), &err);
    }

    let srv = match dest {
        Dest::Online(srv) => srv,
        Dest::Offline { ofp, mut raw } => match enqueue_offline(&e, args, &mut raw, ofp) {
            Offline::Queued => return EX_TEMPFAIL,
            // The daemon started while the message was read, and its scan
            // of the offline directory removed the file, still empty: the
            // daemon takes the message now.
            Offline::Removed => match srv_connect() {
                Some(srv) => Box::new(srv),
                None => {
                    if let Some(pw) = &pw {
                        savedeadletter(&e, pw, &mut fp);
                    }
                    e.errx(
                        EX_UNAVAILABLE,
                        format_args!("the offline file was removed and smtpd does not answer"),
                    )
                }
            },
        },
    };
    enqueue_online(&mut e, srv, &mut fp, pw.as_ref())
}

/// enqueue()'s choice of the sending user: with -S (the daemon's offline
/// enqueuer) the real uid's; else the login name, unless it belongs to
/// another user than the real uid (root may send as its login name).
fn enqueue_user(e: &mut Enqueue, no_getlogin: bool) -> Option<Passwd> {
    let ruid = getuid();
    let login = if no_getlogin { None } else { getlogin() };
    let pw = match login.as_deref().map(getpwnam) {
        Some(Ok(Some(pw))) if ruid == 0 || ruid == pw.uid => Some(pw),
        _ => getpwuid(ruid).ok().flatten(),
    };
    e.user = match &pw {
        Some(pw) => pw.name.clone(),
        None => login.unwrap_or_else(|| "anonymous".to_string()),
    };
    pw
}

/// The online part of enqueue(): the SMTP dialogue over the session the
/// daemon gives; on failure the message goes to ~/dead.letter.
fn enqueue_online(e: &mut Enqueue, mut srv: Box<Srv>, fp: &mut File, pw: Option<&Passwd>) -> i32 {
    let Some(fd) = open_connection(e, &mut srv) else {
        e.errx(EX_UNAVAILABLE, format_args!("server too busy"));
    };
    drop(srv);
    if let Err(err) = crate::sys::pledge::pledge("stdio wpath cpath", None) {
        e.err(1, format_args!("pledge"), &err);
    }
    // A session that goes away mid-message is a write error, reported,
    // and the message saved; C dies of SIGPIPE and saves nothing.
    let _ = crate::sys::event::signal_ignore(libc::SIGPIPE);
    let stream = UnixStream::from(fd);
    match enqueue_session(e, &stream, fp) {
        Ok(()) => EX_OK,
        Err(()) => {
            if let Some(pw) = pw {
                savedeadletter(e, pw, fp);
            }
            EX_SOFTWARE
        }
    }
}

/// The SMTP dialogue of enqueue(), one command at a time (C does not
/// pipeline either). Once the server has accepted the message, the
/// dialogue has succeeded whatever QUIT gets (C fails then, and the
/// message, already queued, is saved as a dead letter as well).
fn enqueue_session(e: &Enqueue, stream: &UnixStream, fp: &mut File) -> Result<(), ()> {
    let rd = stream
        .try_clone()
        .map_err(|err| e.warn(format_args!("dup"), &err))?;
    let mut fin = BufReader::new(rd);
    let mut fout = BufWriter::new(stream);
    // The banner.
    get_responses(e, &mut fout, &mut fin, 1)?;
    let v = e.verbose;
    let mut step = |fout: &mut BufWriter<&UnixStream>, line: &[u8]| -> Result<(), ()> {
        send_line(e, fout, v, line)?;
        get_responses(e, fout, &mut fin, 1)
    };
    step(&mut fout, b"EHLO localhost\r\n")?;

    let msg = &e.msg;
    let envid = msg.dsn_envid.as_deref().filter(|s| !s.is_empty());
    let mut mail = b"MAIL FROM:<".to_vec();
    mail.extend_from_slice(&msg.from);
    mail.extend_from_slice(
        format!(
            "> {}{} {}{}\r\n",
            if msg.dsn_ret.is_some() { "RET=" } else { "" },
            msg.dsn_ret.as_deref().unwrap_or(""),
            if envid.is_some() { "ENVID=" } else { "" },
            envid.unwrap_or("")
        )
        .as_bytes(),
    );
    step(&mut fout, &mail)?;

    for rcpt in &msg.rcpts {
        let mut line = b"RCPT TO:<".to_vec();
        line.extend_from_slice(rcpt);
        line.extend_from_slice(
            format!(
                "> {}{}\r\n",
                if msg.dsn_notify.is_some() {
                    "NOTIFY="
                } else {
                    ""
                },
                msg.dsn_notify.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
        step(&mut fout, &line)?;
    }

    step(&mut fout, b"DATA\r\n")?;
    if let Err(err) = enqueue_message(e, fp, &mut fout, &Form::SMTP) {
        match err {
            MessageError::Eol => e.errx(EX_SOFTWARE, format_args!("expect EOL")),
            MessageError::Read(err) => e.err(EX_UNAVAILABLE, format_args!("getline"), &err),
            MessageError::Write(err) => {
                e.warnx(format_args!("ferror: {}", strerror(&err)));
                return Err(());
            }
        }
    }
    step(&mut fout, b".\r\n")?;
    let _ = step(&mut fout, b"QUIT\r\n");
    Ok(())
}

/// How a message is written out: on the wire, or into a dead letter.
struct Form {
    eol: &'static [u8],
    /// Dot-stuffing (RFC 5321 section 4.5.2).
    stuff: bool,
}

impl Form {
    const SMTP: Form = Form {
        eol: b"\r\n",
        stuff: true,
    };
    const DEADLETTER: Form = Form {
        eol: b"\n",
        stuff: false,
    };
}

#[derive(Debug)]
enum MessageError {
    /// A line of the parsed copy without its newline: a bug.
    Eol,
    Read(io::Error),
    Write(io::Error),
}

/// The DATA part of enqueue(): the header fields the message lacks, then
/// the message from the parsed copy `fp`, its body quoted-printable when
/// long lines need it and it has no transfer encoding of its own.
fn enqueue_message(
    e: &Enqueue,
    fp: &mut File,
    out: &mut impl Write,
    form: &Form,
) -> Result<(), MessageError> {
    let msg = &e.msg;
    let eol = form.eol;
    let w = |out: &mut dyn Write, parts: &[&[u8]]| -> Result<(), MessageError> {
        for p in parts {
            out.write_all(p).map_err(MessageError::Write)?;
        }
        out.write_all(eol).map_err(MessageError::Write)
    };
    if !msg.saw_from {
        let name = msg.fromname.as_deref();
        w(
            out,
            &[
                b"From: ",
                name.unwrap_or(b""),
                if name.is_some() { b" " } else { b"" },
                b"<",
                &msg.from,
                b">",
            ],
        )?;
    }
    if !msg.saw_date {
        w(out, &[b"Date: ", time_to_text(e.timestamp).as_bytes()])?;
    }
    if msg.need_qp() {
        // Long lines are always sent quoted-printable.
        if !msg.saw_mime_version {
            w(out, &[b"MIME-Version: 1.0"])?;
        }
        if !msg.saw_content_type {
            w(out, &[b"Content-Type: text/plain; charset=unknown-8bit"])?;
        }
        if !msg.saw_content_disposition {
            w(out, &[b"Content-Disposition: inline"])?;
        }
        if !msg.saw_content_transfer_encoding {
            w(out, &[b"Content-Transfer-Encoding: quoted-printable"])?;
        }
    }
    // The separating empty line when there was no header.
    let mut inheaders = true;
    if msg.noheader {
        w(out, &[])?;
        inheaders = false;
    }

    fp.rewind().map_err(MessageError::Read)?;
    let mut fin = BufReader::new(fp);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if fin
            .read_until(b'\n', &mut buf)
            .map_err(MessageError::Read)?
            == 0
        {
            return Ok(());
        }
        // Newlines were normalised by parse_message().
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Err(MessageError::Eol);
        };
        if form.stuff && line.first() == Some(&b'.') {
            out.write_all(b".").map_err(MessageError::Write)?;
        }
        if inheaders && (starts_with_ci(line, b"from ") || starts_with_ci(line, b"return-path: ")) {
            continue;
        }
        // C sends a message without header as it is even when it has just
        // labelled it quoted-printable; its body is encoded here.
        if msg.saw_content_transfer_encoding || inheaders || !msg.need_qp() {
            w(out, &[line])?;
            if inheaders && line.is_empty() {
                inheaders = false;
            }
            continue;
        }
        // No transfer encoding of its own: the default one.
        qp_encoded_write(out, line, eol, form.stuff).map_err(MessageError::Write)?;
    }
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// get_responses(): reads `n` replies; false, after saying why, unless
/// each is positive (2xx or 3xx).
fn get_responses(
    e: &Enqueue,
    fout: &mut impl Write,
    fin: &mut impl BufRead,
    mut n: usize,
) -> Result<(), ()> {
    if let Err(err) = fout.flush() {
        e.warnx(format_args!("ferror: {}", strerror(&err)));
        return Err(());
    }
    let mut buf = Vec::new();
    while n > 0 {
        buf.clear();
        match fin.read_until(b'\n', &mut buf) {
            Err(err) => {
                e.warn(format_args!("getline"), &err);
                return Err(());
            }
            // C takes an end of file for success: a session that ends
            // before the reply to the final dot lost the message.
            Ok(0) => {
                e.warnx(format_args!("server closed the connection"));
                return Err(());
            }
            Ok(_) => {}
        }
        if buf.ends_with(b"\r\n") {
            buf.truncate(buf.len() - 2);
            buf.push(b'\n');
        }
        if buf.len() < 4 {
            e.warnx(format_args!("bad response"));
            return Err(());
        }
        if e.verbose {
            vprint(format_args!("<<< {}", String::from_utf8_lossy(&buf)));
        }
        if buf[3] == b'-' {
            continue;
        }
        if buf[0] != b'2' && buf[0] != b'3' {
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            e.warnx(format_args!(
                "command failed: {}",
                String::from_utf8_lossy(line)
            ));
            return Err(());
        }
        n -= 1;
    }
    Ok(())
}

/// Verbose output on the standard output; a reader gone is no reason to
/// stop sending.
fn vprint(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.flush();
}

/// send_line(): a command, shown with `>>> ` when verbose.
fn send_line(e: &Enqueue, fp: &mut impl Write, v: bool, line: &[u8]) -> Result<(), ()> {
    if let Err(err) = fp.write_all(line) {
        e.warnx(format_args!("ferror: {}", strerror(&err)));
        return Err(());
    }
    if v {
        vprint(format_args!(">>> {}", String::from_utf8_lossy(line)));
    }
    Ok(())
}

/// build_from(): the envelope sender (-f, else the user, qualified) and
/// the full name of the From field (-F, else the account's, with `&`
/// standing for the login name capitalised).
fn build_from(
    e: &mut Enqueue,
    fake_from: Option<&str>,
    pw: Option<&Passwd>,
) -> Result<(), &'static str> {
    e.msg.from = match fake_from {
        None => qualify_addr(&e.host, e.user.as_bytes()),
        Some(f) if f.starts_with('<') => {
            let Some(inner) = f[1..].strip_suffix('>') else {
                return Err("leading < but no trailing >");
            };
            qualify_addr(&e.host, inner.as_bytes())
        }
        Some(f) => qualify_addr(&e.host, f.as_bytes()),
    };

    if let (None, None, Some(pw)) = (&e.msg.fromname, fake_from, pw) {
        let gecos = pw.gecos.as_bytes();
        let len = gecos.iter().position(|&c| c == b',').unwrap_or(gecos.len());
        let gecos = &gecos[..len];
        let name = match gecos.iter().position(|&c| c == b'&') {
            Some(apos) => {
                let mut n = gecos[..apos].to_vec();
                n.extend_from_slice(pw.name.as_bytes());
                n.extend_from_slice(&gecos[apos + 1..]);
                if let Some(c) = n.get_mut(apos) {
                    c.make_ascii_uppercase();
                }
                n
            }
            None => gecos.to_vec(),
        };
        e.msg.fromname = Some(name);
    }
    Ok(())
}

/// parse_message(): copies the message from `fin` to `fout`, lines ended
/// by LF alone and Bcc fields left out, noting which header fields it has
/// and collecting addresses: the From field's as the sender when
/// `get_from` (not Sendmail's way, OpenSMTPD's choice), To, Cc and Bcc's
/// as recipients with `tflag`. `raw`, if given, gets the input as it is.
/// Whether the message had no header field parse_message() knows.
fn parse_message(
    e: &mut Enqueue,
    fin: &mut impl BufRead,
    get_from: bool,
    tflag: bool,
    fout: &mut impl Write,
    mut raw: Option<&mut impl Write>,
) -> Result<bool, ParseError> {
    use HeaderField as H;
    let mut buf = Vec::new();
    let mut cur = H::None;
    let (mut header_seen, mut header_done) = (false, false);
    let terminal = |e: &mut Enqueue, cur: H| match cur {
        H::From => parse_addr_terminal(e, true),
        H::To | H::Cc | H::Bcc => parse_addr_terminal(e, false),
        _ => Ok(()),
    };

    e.pstate = Pstate::default();
    loop {
        buf.clear();
        if fin.read_until(b'\n', &mut buf).map_err(ParseError::Read)? == 0 {
            break;
        }
        if let Some(raw) = raw.as_mut() {
            raw.write_all(&buf).map_err(ParseError::Write)?;
        }
        if buf.ends_with(b"\r\n") {
            buf.truncate(buf.len() - 2);
            buf.push(b'\n');
        }
        let len = buf.len();

        if buf == b"\n" {
            header_done = true;
        }

        // Whitespace: a continuation line; anything else ends a field.
        if !wsp(buf[0]) {
            terminal(e, cur).map_err(ParseError::Address)?;
            cur = H::None;
        }

        // Not exact while in the header, as in C.
        if len + usize::from(buf[len - 1] != b'\n') >= LINESPLIT {
            e.msg.need_linesplit = true;
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.contains(&b'\r') {
            e.msg.saw_bare_cr = true;
        }

        if !header_done && cur == H::None {
            if let Some(&(_, t)) = KEYWORDS
                .iter()
                .find(|(word, _)| len > word.len() && starts_with_ci(&buf, word.as_bytes()))
            {
                cur = t;
            }
        }

        if cur != H::None {
            header_seen = true;
        }

        if cur != H::Bcc {
            fout.write_all(&buf).map_err(ParseError::Write)?;
            if buf[len - 1] != b'\n' {
                fout.write_all(b"\n").map_err(ParseError::Write)?;
            }
        }

        match cur {
            H::From => {
                e.msg.saw_from = true;
                if get_from {
                    parse_addr(e, &buf, true).map_err(ParseError::Address)?;
                }
            }
            H::To | H::Cc | H::Bcc if tflag => {
                parse_addr(e, &buf, false).map_err(ParseError::Address)?
            }
            H::Date => e.msg.saw_date = true,
            H::MsgId => e.msg.saw_msgid = true,
            H::MimeVersion => e.msg.saw_mime_version = true,
            H::ContentType => e.msg.saw_content_type = true,
            H::ContentDisposition => e.msg.saw_content_disposition = true,
            H::ContentTransferEncoding => e.msg.saw_content_transfer_encoding = true,
            H::UserAgent => e.msg.saw_user_agent = true,
            _ => {}
        }
    }
    // A message that ends inside an address field: C forgets its last
    // address, which only the next line would have completed.
    terminal(e, cur).map_err(ParseError::Address)?;

    Ok(!header_seen)
}

/// parse_addr(): the addresses of one line of an address field (the
/// field's first line or a continuation), as the parser state carries
/// over; each complete address goes to parse_addr_terminal(). C recurses
/// after each comma; this loops.
fn parse_addr(e: &mut Enqueue, mut s: &[u8], is_from: bool) -> Result<(), &'static str> {
    loop {
        let len = s.len();
        let mut pos = 0;
        let mut terminal = false;

        // Unless this is a continuation, skip the field name, and check
        // and reset the parser state.
        if len > 0 && !wsp(s[0]) && s[0] != b',' && s[0] != b';' {
            while pos < len && s[pos] != b':' {
                pos += 1;
            }
            parse_addr_terminal(e, is_from)?;
        }

        // Skip ':', ',', ';' and whitespace.
        while pos < len && !e.pstate.quote && (wsp(s[pos]) || matches!(s[pos], b':' | b',' | b';'))
        {
            pos += 1;
        }

        while pos < len {
            let ps = &mut e.pstate;
            let c = s[pos];
            if !ps.esc && !ps.quote && c == b'(' {
                ps.comment += 1;
            }
            if ps.comment == 0 && !ps.esc && c == b'"' {
                ps.quote = !ps.quote;
            }

            if ps.comment == 0 && !ps.quote && !ps.esc {
                if c == b':' {
                    // A group: what came before was its name. C goes on
                    // with the first character after the blanks in this
                    // same pass, past the comment and quote checks, so
                    // that a quoted name there is misread; it starts a
                    // pass of its own here.
                    pos += 1;
                    while pos < len && wsp(s[pos]) {
                        pos += 1;
                    }
                    ps.buf.clear();
                    continue;
                }
                if c == b'\n' || c == b'\r' {
                    break;
                }
                if c == b',' || c == b';' {
                    terminal = true;
                    break;
                }
                if c == b'<' {
                    ps.brackets = true;
                    ps.buf.clear();
                }
                if ps.brackets && c == b'>' {
                    terminal = true;
                }
            }

            if ps.comment == 0 && !terminal && (ps.quote || ps.esc || !(c == b'<' || wsp(c))) {
                if ps.buf.len() >= SMTP_LINELEN {
                    return Err("address exceeds buffer size");
                }
                ps.buf.push(c);
            }

            if !ps.quote && ps.comment > 0 && c == b')' {
                ps.comment -= 1;
            }

            ps.esc = !ps.esc && ps.comment == 0 && c == b'\\';
            pos += 1;
        }

        if terminal {
            parse_addr_terminal(e, is_from)?;
        }

        while pos < len && (s[pos] == b'\r' || s[pos] == b'\n') {
            pos += 1;
        }
        if pos >= len {
            return Ok(());
        }
        s = &s[pos..];
    }
}

/// parse_addr_terminal(): the address collected so far is complete: the
/// sender, or recipients.
fn parse_addr_terminal(e: &mut Enqueue, is_from: bool) -> Result<(), &'static str> {
    let ps = &mut e.pstate;
    if ps.comment > 0 || ps.quote || ps.esc {
        return Err("syntax error in address");
    }
    if !ps.buf.is_empty() {
        if ps.buf.len() >= SMTP_LINELEN {
            return Err("address exceeds buffer size");
        }
        let addr = std::mem::take(&mut ps.buf);
        if is_from {
            e.msg.from = qualify_addr(&e.host, &addr);
        } else {
            rcpt_add(e, &addr);
        }
    }
    Ok(())
}

/// qualify_addr(): an address without a domain gets the mail name's.
fn qualify_addr(host: &str, addr: &[u8]) -> Vec<u8> {
    let mut out = addr.to_vec();
    if !addr.is_empty() && !addr.contains(&b'@') {
        out.push(b'@');
        out.extend_from_slice(host.as_bytes());
    }
    out
}

/// rcpt_add(): recipients, several to an argument when separated by
/// commas.
fn rcpt_add(e: &mut Enqueue, addr: &[u8]) {
    for a in addr.split(|&c| c == b',') {
        let q = qualify_addr(&e.host, a);
        e.msg.rcpts.push(q);
    }
}

/// open_connection(): asks the daemon for a local SMTP session; its
/// socket, if the answer carries one.
fn open_connection(e: &Enqueue, srv: &mut Srv) -> Option<OwnedFd> {
    let ibuf = &mut srv.ibuf;
    let t = ImsgType::IMSG_CTL_SMTP_SESSION as u32;
    if let Err(err) = imsg_compose(ibuf, t, IMSG_VERSION, 0, None, &[]) {
        e.errx(1, format_args!("imsg_compose: {err}"));
    }
    if let Err(err) = imsgbuf_flush(ibuf) {
        e.errx(1, format_args!("write error: {err}"));
    }
    loop {
        match imsgbuf_read(ibuf) {
            Err(err) => e.errx(1, format_args!("read error: {err}")),
            Ok(ReadResult::Data(_) | ReadResult::WouldBlock) => {}
            Ok(_) => e.errx(1, format_args!("pipe closed")),
        }
        let mut imsg = match imsg_get(ibuf) {
            Err(_) => e.errx(1, format_args!("imsg_get error")),
            Ok(None) => continue,
            Ok(Some(imsg)) => imsg,
        };
        match ImsgType::from_u32(imsg.hdr.type_) {
            Some(ImsgType::IMSG_CTL_OK) => return imsg_get_fd(&mut imsg),
            Some(ImsgType::IMSG_CTL_FAIL) => {
                e.errx(1, format_args!("server disallowed submission request"))
            }
            _ => e.errx(1, format_args!("unexpected imsg reply type")),
        }
    }
}

/// What became of an offline submission.
enum Offline {
    /// In the offline directory, for the daemon to enqueue.
    Queued,
    /// The daemon removed the file before it was written.
    Removed,
}

/// enqueue_offline(): the arguments (without the program name) separated
/// by `|` on the first line of the offline file, then the message. The
/// file is flushed to the disk before sendmail says it is queued
/// (EX_TEMPFAIL); any failure leaves it empty, which the daemon removes.
fn enqueue_offline(e: &Enqueue, args: &[String], ifile: &mut File, ofile: File) -> Offline {
    let fail = |ofile: &File, code: i32, what: &str, err: Option<&io::Error>| -> ! {
        match err {
            Some(err) => e.warn(format_args!("{what}"), err),
            None => e.warnx(format_args!("{what}")),
        }
        let _ = ofile.set_len(0);
        std::process::exit(code)
    };
    // The first line is split at '|' and ends at the newline: neither
    // may be in an argument (C checks for '|' only).
    for a in args.iter().skip(1) {
        if a.contains(['|', '\n']) {
            fail(
                &ofile,
                EX_SOFTWARE,
                &format!("{a} contains illegal character"),
                None,
            );
        }
    }
    let mut line = args.get(1..).unwrap_or_default().join("|").into_bytes();
    line.push(b'\n');

    if let Err(err) = ifile.rewind() {
        fail(&ofile, EX_UNAVAILABLE, "read error", Some(&err));
    }
    let mut w = BufWriter::new(&ofile);
    if let Err(err) = w.write_all(&line) {
        fail(&ofile, EX_UNAVAILABLE, "write error", Some(&err));
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match ifile.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                fail(&ofile, EX_UNAVAILABLE, "read error", Some(&err));
            }
        };
        if let Err(err) = w.write_all(&chunk[..n]) {
            drop(w);
            fail(&ofile, EX_UNAVAILABLE, "write error", Some(&err));
        }
    }
    if let Err(err) = w.flush() {
        fail(&ofile, EX_UNAVAILABLE, "write error", Some(&err));
    }
    drop(w);
    if let Err(err) = ofile.sync_all() {
        fail(&ofile, EX_UNAVAILABLE, "write error", Some(&err));
    }
    // The daemon's scan removes empty offline files: one that started
    // while the message was read took this one for abandoned.
    match ofile.metadata() {
        Ok(sb) if sb.nlink() == 0 => Offline::Removed,
        _ => Offline::Queued,
    }
}

/// savedeadletter(): the message, as it would have been sent, in
/// ~/dead.letter, readable by the user only.
fn savedeadletter(e: &Enqueue, pw: &Passwd, fp: &mut File) -> bool {
    let path = format!("{}/dead.letter", pw.dir);
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
    else {
        return false;
    };
    let mut out = BufWriter::new(f);
    // C copies the body as it came even when it has labelled it
    // quoted-printable; this is the message as it was to be sent.
    if enqueue_message(e, fp, &mut out, &Form::DEADLETTER).is_err() {
        return false;
    }
    out.write_all(b"\n").and_then(|()| out.flush()).is_ok()
}

/// tmpfile(3): an anonymous file in /tmp.
fn tmpfile() -> io::Result<File> {
    let (f, path) = mkstemp("/tmp/sendmail.XXXXXXXXXX")?;
    std::fs::remove_file(path)?;
    Ok(f)
}

/// offline_file() of smtpctl.c: a new file, the sender's and readable
/// by the sender only, in the spool's offline directory, named after the
/// time. Made while the program has its group, which alone may write
/// there; locked while it is written.
fn offline_file(progname: &str) -> File {
    let dir = format!("{}{PATH_OFFLINE}", path_spool());
    // TIME.XXXXXXXXXX as C names it: OpenBSD's mkstemp(3) fills in all
    // ten X's, glibc's the last six only.
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let first: String = (0..4)
        .map(|_| char::from(CHARS[arc4random_uniform(CHARS.len() as u32) as usize]))
        .collect();
    let template = format!("{dir}/{}.{first}XXXXXX", time_now());
    let fail = |code: i32, what: &str, err: &io::Error| -> ! {
        eprintln!("{progname}: {what}: {}", strerror(err));
        std::process::exit(code)
    };
    if template.len() >= crate::defines::PATH_MAX {
        fail(
            EX_UNAVAILABLE,
            "snprintf",
            &io::Error::from_raw_os_error(libc::ENAMETOOLONG),
        );
    }
    let (f, path) = match mkstemp(&template) {
        Ok(r) => r,
        Err(err) => fail(
            EX_UNAVAILABLE,
            &format!("cannot create temporary file {template}"),
            &err,
        ),
    };
    if let Err(err) = f.set_permissions(std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(&path);
        fail(EX_SOFTWARE, "fchmod", &err);
    }
    // The lock tells the daemon's offline enqueuer (offline_enqueue in
    // smtpd.rs), which waits for it, that the file is still being
    // written. The directory is flushed now, while it can be
    // opened: the file's name is then on the disk, and the file empty
    // until its content is flushed in turn.
    let _ = crate::sys::mailbox::flock_exclusive(&f);
    let _ = crate::sys::fsync::fsync_dir(std::path::Path::new(&dir));
    f
}

/// Gives up the group the program runs with, for good.
fn drop_group(progname: &str, rgid: u32) {
    if let Err(err) = setresgid(Some(rgid), Some(rgid), Some(rgid)) {
        eprintln!("{progname}: setresgid: {}", strerror(&err));
        std::process::exit(1);
    }
}

/// sendmail_compat() of smtpctl.c, for sendmail and send-mail: newaliases
/// for `-bi`, else enqueue() online, or offline when no daemon answers.
///
/// smtpctl is installed set-group-ID to the queue's group so that it can
/// create files in the offline directory, and that is all the group is
/// for: it is put aside at once, taken back only to create the offline
/// file, and then given up for good before the arguments or the message
/// are looked at. (C makes newaliases' files and connects with it.)
pub fn sendmail_compat(args: &[String]) -> i32 {
    let progname = args
        .first()
        .map_or("sendmail", |a| a.rsplit('/').next().unwrap_or(a));
    let (rgid, egid) = (getgid(), getegid());
    if let Err(err) = setresgid(Some(rgid), Some(rgid), Some(egid)) {
        eprintln!("{progname}: setresgid: {}", strerror(&err));
        return 1;
    }

    // Called with the flags of newaliases.
    if args.iter().skip(1).any(|a| a.starts_with("-bi")) {
        drop_group(progname, rgid);
        return crate::smtpctl::makemap::makemap(crate::smtpctl::makemap::ProgMode::Sendmail, args);
    }

    let srv = srv_connect();
    let submission = match srv {
        Some(srv) => Submission::Online(Box::new(srv)),
        None => {
            if let Err(err) = setresgid(None, Some(egid), None) {
                eprintln!("{progname}: setresgid: {}", strerror(&err));
                return 1;
            }
            Submission::Offline(offline_file(progname))
        }
    };
    drop_group(progname, rgid);

    // Reduced further down the road. "unix" for an offline submission
    // that finds the daemon started meanwhile (enqueue_offline()).
    if let Err(err) = crate::sys::pledge::pledge(
        "stdio rpath wpath cpath tmppath flock dns getpw recvfd unix",
        None,
    ) {
        eprintln!("{progname}: pledge: {}", strerror(&err));
        return 1;
    }
    enqueue(args, submission)
}

#[cfg(test)]
mod tests;
