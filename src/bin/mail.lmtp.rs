//! mail.lmtp.c: mail.lmtp(8), hands the message on standard input to an
//! LMTP server for one or more recipients (OpenSMTPD mail.lmtp.c 1.1,
//! as shipped in 7.8).
//!
//! The dialogue is C's: LHLO, MAIL, one RCPT a recipient, DATA, QUIT,
//! each command waiting for its reply. Where we differ (PORTING.md and
//! the man page): a refused recipient no longer stops the delivery to the
//! others, every recipient's reply after the final dot is read (C reads
//! one), input lines ending in CRLF are not sent with a doubled CR, the
//! server gets a deadline, and a failed QUIT after a good delivery is not
//! reported as a failure.

use std::env;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::process::exit;
use std::time::Duration;

use smtpd::smtpd::{EX_TEMPFAIL, EX_UNAVAILABLE};
use smtpd::sys::unistd::geteuid;
use smtpd::util::getopt::{Getopt, Opt};

/// RFC 5321 4.5.3.2 suggests 5 minutes for most replies (C waits
/// forever: a hung server held the delivery, and its slot, for good).
const LMTP_TIMEOUT_REPLY: Duration = Duration::from_secs(5 * 60);
/// RFC 5321 4.5.3.2.6: 10 minutes for the replies to the final dot, which
/// come only once the server has delivered.
const LMTP_TIMEOUT_EOM: Duration = Duration::from_secs(10 * 60);
/// RFC 5321 4.5.3.2.5: 3 minutes for each block of data sent.
const LMTP_TIMEOUT_SEND: Duration = Duration::from_secs(3 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Banner,
    Helo,
    MailFrom,
    RcptTo,
    Data,
    Eom,
    Quit,
}

struct Session {
    lhlo: String,
    mailfrom: Option<String>,
    rcptto: Option<String>,
    rcpts: Vec<String>,
}

/// The connection, to a TCP or a unix socket.
enum Conn {
    Inet(TcpStream),
    Unix(UnixStream),
}

fn main() {
    smtpd::sys::process::note_parent();
    // OpenSMTPD prints its name twice here; once is enough.
    if geteuid() == 0 {
        errx(EX_TEMPFAIL, "may not be executed as root");
    }
    let args = args_utf8();
    let mut destination = String::from("localhost");
    let mut session = Session {
        lhlo: String::from("localhost"),
        mailfrom: env::var("SENDER").ok(),
        rcptto: None,
        rcpts: Vec::new(),
    };

    let mut g = Getopt::new(&args, "d:l:f:ru");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('d', Some(v)) => destination = v,
            Opt::Flag('l', Some(v)) => session.lhlo = v,
            Opt::Flag('f', Some(v)) => session.mailfrom = Some(v),
            Opt::Flag('r', _) => session.rcptto = env::var("RECIPIENT").ok(),
            Opt::Flag('u', _) => session.rcptto = env::var("USER").ok(),
            // C's getopt warns and the switch ignores the option.
            Opt::Unknown(c) => warnx(format_args!("unknown option -- {c}")),
            Opt::MissingArg(c) => warnx(format_args!("option requires an argument -- {c}")),
            Opt::Flag(..) => {}
        }
    }
    let operands = g.operands();

    if session.mailfrom.is_none() {
        errx(EX_TEMPFAIL, "sender must be specified with -f");
    }
    if operands.is_empty() && session.rcptto.is_none() {
        errx(EX_TEMPFAIL, "no recipient was specified");
    }
    session.rcpts = match &session.rcptto {
        Some(r) => vec![r.clone()],
        None => operands.to_vec(),
    };

    let conn = lmtp_connect(&destination);
    exit(lmtp_engine(conn, &session));
}

/// The arguments, which must be UTF-8: an address mangled by a lossy
/// conversion would deliver to somebody else.
fn args_utf8() -> Vec<String> {
    env::args_os()
        .map(|a| {
            a.into_string()
                .unwrap_or_else(|_| errx(EX_TEMPFAIL, "argument is not valid UTF-8"))
        })
        .collect()
}

/// `host:port`, `[address]:port`, `[IPv6:address]:port`, or a bare host
/// (port 25, as C).
fn lmtp_parse_inet(destination: &str) -> Result<(&str, &str), &'static str> {
    if let Some(rest) = destination.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("inet: invalid address syntax")?;
        let host = match host.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("IPv6:") => &host[5..],
            _ => host,
        };
        return match after {
            "" => Ok((host, "25")),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, port)),
                None => Err("inet: invalid address syntax"),
            },
        };
    }
    Ok(destination.split_once(':').unwrap_or((destination, "25")))
}

fn lmtp_connect_inet(destination: &str) -> Conn {
    let (hostname, servname) =
        lmtp_parse_inet(destination).unwrap_or_else(|e| errx(EX_TEMPFAIL, e));
    // AI_NUMERICSERV, as C: a service name is not looked up.
    let port: u16 = servname
        .parse()
        .unwrap_or_else(|_| errx(EX_TEMPFAIL, "inet: Servname not supported for ai_socktype"));
    let addrs = (hostname, port)
        .to_socket_addrs()
        .unwrap_or_else(|e| errx(EX_TEMPFAIL, &format!("inet: {e}")));
    // C reports only "connect"; the last address's error says more.
    let mut cause = String::from("inet: no address");
    for sa in addrs {
        match TcpStream::connect(sa) {
            Ok(s) => return Conn::Inet(s),
            Err(e) => cause = format!("connect: {sa}: {e}"),
        }
    }
    errx(EX_TEMPFAIL, &cause)
}

fn lmtp_connect_unix(destination: &str) -> Conn {
    if !destination.starts_with('/') {
        errx(EX_TEMPFAIL, "unix: path must be absolute");
    }
    match UnixStream::connect(destination) {
        Ok(s) => Conn::Unix(s),
        // std refuses a path longer than sun_path before connecting.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            errx(EX_TEMPFAIL, "unix: socket path is too long")
        }
        Err(e) => errx(EX_TEMPFAIL, &format!("connect: {e}")),
    }
}

fn lmtp_connect(destination: &str) -> Conn {
    if destination.starts_with('/') {
        return lmtp_connect_unix(destination);
    }
    lmtp_connect_inet(destination)
}

/// Runs the dialogue; the exit status. A reply that is not positive ends
/// the session as in C, except for the recipients': a recipient the
/// server refuses is reported and the others still get the message, and
/// after the dot each accepted recipient has its own reply (RFC 2033 4.2).
fn lmtp_engine(conn: Conn, session: &Session) -> i32 {
    let wr = conn
        .try_clone()
        .unwrap_or_else(|e| errx(EX_TEMPFAIL, &format!("dup: {e}")));
    conn.set_timeouts(LMTP_TIMEOUT_REPLY, LMTP_TIMEOUT_SEND)
        .unwrap_or_else(|e| errx(EX_TEMPFAIL, &format!("setsockopt: {e}")));
    let mut rd = BufReader::new(conn);
    let mut wr = BufWriter::new(wr);
    let mailfrom = session.mailfrom.as_deref().unwrap_or("");
    // Recipients sent so far, accepted so far, and replies after the dot.
    let mut sent = 0;
    let mut accepted = 0;
    let mut eom_replies = 0;
    let mut status = 0;
    let mut phase = Phase::Banner;

    loop {
        flush(&mut wr);
        if phase == Phase::Quit {
            // The outcome is known by now. C exits EX_TEMPFAIL when QUIT
            // is not answered 2xx, and the retry delivers a second copy.
            let _ = lmtp_read_reply(&mut rd);
            return status;
        }
        let line = lmtp_read_reply(&mut rd).unwrap_or_else(|e| errx(EX_TEMPFAIL, &e));
        match phase {
            Phase::Banner => {
                lmtp_expect(&line, b'2');
                send(&mut wr, format_args!("LHLO {}\r\n", session.lhlo));
                phase = Phase::Helo;
            }
            Phase::Helo => {
                lmtp_expect(&line, b'2');
                send(&mut wr, format_args!("MAIL FROM:<{mailfrom}>\r\n"));
                phase = Phase::MailFrom;
            }
            Phase::MailFrom => {
                lmtp_expect(&line, b'2');
                send(
                    &mut wr,
                    format_args!("RCPT TO:<{}>\r\n", session.rcpts[sent]),
                );
                sent += 1;
                phase = Phase::RcptTo;
            }
            Phase::RcptTo => {
                match lmtp_check(&line, b'2') {
                    Ok(()) => accepted += 1,
                    Err(code) => status = lmtp_worse(status, code),
                }
                if sent < session.rcpts.len() {
                    send(
                        &mut wr,
                        format_args!("RCPT TO:<{}>\r\n", session.rcpts[sent]),
                    );
                    sent += 1;
                } else if accepted == 0 {
                    send(&mut wr, format_args!("QUIT\r\n"));
                    phase = Phase::Quit;
                } else {
                    send(&mut wr, format_args!("DATA\r\n"));
                    phase = Phase::Data;
                }
            }
            Phase::Data => {
                lmtp_expect(&line, b'3');
                stream_file(&mut wr);
                send(&mut wr, format_args!(".\r\n"));
                rd.get_ref()
                    .set_timeouts(LMTP_TIMEOUT_EOM, LMTP_TIMEOUT_SEND)
                    .unwrap_or_else(|e| errx(EX_TEMPFAIL, &format!("setsockopt: {e}")));
                phase = Phase::Eom;
            }
            Phase::Eom => {
                if let Err(code) = lmtp_check(&line, b'2') {
                    status = lmtp_worse(status, code);
                }
                eom_replies += 1;
                if eom_replies == accepted {
                    send(&mut wr, format_args!("QUIT\r\n"));
                    phase = Phase::Quit;
                }
            }
            Phase::Quit => unreachable!("handled before reading"),
        }
    }
}

/// The last line of a reply, continuation lines skipped; an invalid line
/// or the end of the connection is a temporary failure, as in C.
fn lmtp_read_reply(rd: &mut BufReader<Conn>) -> Result<String, String> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match rd.read_until(b'\n', &mut buf) {
            Ok(0) => return Err("unexpected EOF from LMTP server".into()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err("timeout waiting for the LMTP server".into()),
            Err(e) => return Err(format!("getline: {e}")),
        }
        let line = lmtp_strip(&buf);
        if !lmtp_valid_line(line) {
            return Err("LMTP server sent an invalid line".into());
        }
        if line[3] == b'-' {
            continue;
        }
        return Ok(String::from_utf8_lossy(line).into_owned());
    }
}

/// The line up to its first LF, then up to its first CR, as C cuts it.
fn lmtp_strip(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..end];
    let end = line.iter().position(|&b| b == b'\r').unwrap_or(line.len());
    &line[..end]
}

/// Three digits then a space or a dash.
fn lmtp_valid_line(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..3].iter().all(u8::is_ascii_digit)
        && (line[3] == b' ' || line[3] == b'-')
}

/// Whether the reply starts with `want`; if not, reports it with C's
/// words and returns C's exit status: 4xx is temporary, anything else
/// permanent.
fn lmtp_check(line: &str, want: u8) -> Result<(), i32> {
    let first = line.as_bytes()[0];
    if first == want {
        return Ok(());
    }
    warnx(format_args!("LMTP server error: {line}"));
    Err(if first == b'4' {
        EX_TEMPFAIL
    } else {
        EX_UNAVAILABLE
    })
}

/// lmtp_check, where a failure ends the session (C's errx).
fn lmtp_expect(line: &str, want: u8) {
    if let Err(code) = lmtp_check(line, want) {
        exit(code);
    }
}

/// Of two exit statuses, the one to report: a temporary failure wins, so
/// that a recipient that may yet succeed is retried rather than bounced.
fn lmtp_worse(a: i32, b: i32) -> i32 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (EX_TEMPFAIL, _) | (_, EX_TEMPFAIL) => EX_TEMPFAIL,
        (x, _) => x,
    }
}

/// Copies standard input as the message: each line dot-stuffed (RFC 5321
/// 4.5.2) and ended with CRLF.
fn stream_file(conn: &mut BufWriter<Conn>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stdin.read_until(b'\n', &mut buf) {
            // Without its final dot the server delivers nothing.
            Ok(0) if smtpd::sys::process::orphaned() => errx(
                EX_TEMPFAIL,
                "delivery abandoned: the process that started it is gone",
            ),
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => errx(EX_TEMPFAIL, &format!("getline: {e}")),
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            // OpenSMTPD keeps the CR of a CRLF line and sends CR CR LF.
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.first() == Some(&b'.') {
            write_all(conn, b".");
        }
        write_all(conn, &buf);
        write_all(conn, b"\r\n");
    }
}

fn send(wr: &mut BufWriter<Conn>, args: std::fmt::Arguments<'_>) {
    if let Err(e) = wr.write_fmt(args) {
        lmtp_write_error(e)
    }
}

fn write_all(wr: &mut BufWriter<Conn>, buf: &[u8]) {
    if let Err(e) = wr.write_all(buf) {
        lmtp_write_error(e)
    }
}

fn flush(wr: &mut BufWriter<Conn>) {
    if let Err(e) = wr.flush() {
        lmtp_write_error(e)
    }
}

fn lmtp_write_error(e: io::Error) -> ! {
    if is_timeout(&e) {
        errx(EX_TEMPFAIL, "timeout sending to the LMTP server");
    }
    errx(EX_TEMPFAIL, &format!("write: {e}"))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// err(3)'s errx: the program name, the message, then exit.
fn errx(code: i32, msg: &str) -> ! {
    eprintln!("mail.lmtp: {msg}");
    exit(code)
}

fn warnx(args: std::fmt::Arguments<'_>) {
    eprintln!("mail.lmtp: {args}");
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Inet(s) => Conn::Inet(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    /// Deadlines for each read and each write; both halves share them,
    /// being one socket.
    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            Conn::Inet(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            Conn::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Inet(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Inet(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_destinations_parse_as_c_does() {
        assert_eq!(lmtp_parse_inet("mx:24"), Ok(("mx", "24")));
        assert_eq!(lmtp_parse_inet("mx"), Ok(("mx", "25")));
        assert_eq!(lmtp_parse_inet("[::1]:24"), Ok(("::1", "24")));
        assert_eq!(lmtp_parse_inet("[IPv6:::1]:24"), Ok(("::1", "24")));
        assert_eq!(lmtp_parse_inet("[127.0.0.1]"), Ok(("127.0.0.1", "25")));
        assert!(lmtp_parse_inet("[::1").is_err());
        assert!(lmtp_parse_inet("[::1]x").is_err());
    }

    #[test]
    fn reply_lines_need_three_digits_and_a_separator() {
        assert!(lmtp_valid_line(b"250 ok"));
        assert!(lmtp_valid_line(b"250-"));
        assert!(!lmtp_valid_line(b"250"));
        assert!(!lmtp_valid_line(b"25a ok"));
        assert!(!lmtp_valid_line(b"250_ok"));
        assert_eq!(lmtp_strip(b"250 ok\r\n"), b"250 ok");
    }

    #[test]
    fn a_temporary_failure_outranks_a_permanent_one() {
        assert_eq!(lmtp_worse(0, EX_UNAVAILABLE), EX_UNAVAILABLE);
        assert_eq!(lmtp_worse(EX_UNAVAILABLE, EX_TEMPFAIL), EX_TEMPFAIL);
        assert_eq!(lmtp_worse(EX_TEMPFAIL, EX_UNAVAILABLE), EX_TEMPFAIL);
        assert_eq!(lmtp_worse(0, 0), 0);
    }
}
