//! rfc5322.c: a line-by-line reader of a message's header block and body
//! (OpenSMTPD rfc5322.c 1.3). The SMTP server pushes each data line and
//! takes what it means: a header starts, continues or ends, the headers
//! end, a body line. Lines are bytes: messages need not be UTF-8.

/// Header names longer than this are refused (C's hdr.bufmax).
const HDR_MAX: usize = 1024;
/// Unfolded header values longer than this are refused (val.bufmax).
const VAL_MAX: usize = 65536;

/// What the next line means (RFC5322_* results).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rfc5322 {
    /// RFC5322_NONE: push the next line.
    None,
    HeaderStart {
        hdr: Vec<u8>,
        value: Vec<u8>,
    },
    HeaderCont {
        hdr: Vec<u8>,
        value: Vec<u8>,
    },
    /// The end of a header; the whole value when it was unfolded.
    HeaderEnd {
        hdr: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    EndOfHeaders,
    BodyStart(Vec<u8>),
    Body(Vec<u8>),
    EndOfMessage,
}

/// Why the message cannot be read (C's errno values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rfc5322Error {
    /// EINVAL: not a message (a body without the blank line before it).
    Invalid,
    /// ERANGE: a header name or unfolded value too long.
    TooLong,
    /// EALREADY: a line pushed before the last was taken.
    Already,
    /// ENOMSG: read past the end of the message.
    NoMessage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    None,
    HeaderStart,
    HeaderCont,
    HeaderEnd,
    EndOfHeaders,
    BodyStart,
    Body,
    EndOfMessage,
}

/// struct rfc5322_parser.
#[derive(Debug)]
pub struct Rfc5322Parser {
    /// The line pushed and not taken yet; Some(None) is the end of data.
    line: Option<Option<Vec<u8>>>,
    state: State,
    next: bool,
    unfold: bool,
    /// The start of the current header's value, while it may be unfolded.
    currhdr: Option<Vec<u8>>,
    hdr: Vec<u8>,
    val: Vec<u8>,
}

impl Default for Rfc5322Parser {
    fn default() -> Self {
        Rfc5322Parser::new()
    }
}

impl Rfc5322Parser {
    /// rfc5322_parser_new().
    pub fn new() -> Rfc5322Parser {
        Rfc5322Parser {
            line: None,
            state: State::None,
            next: false,
            unfold: false,
            currhdr: None,
            hdr: Vec::new(),
            val: Vec::new(),
        }
    }

    /// rfc5322_push(): the next line, or None at the end of the data.
    pub fn push(&mut self, line: Option<&[u8]>) -> Result<(), Rfc5322Error> {
        if self.line.is_some() {
            return Err(Rfc5322Error::Already);
        }
        self.line = Some(line.map(<[u8]>::to_vec));
        self.next = false;
        Ok(())
    }

    /// rfc5322_unfold_header(): the current header's value is to be
    /// gathered whole, for HeaderEnd.
    pub fn unfold_header(&mut self) -> Result<(), Rfc5322Error> {
        if self.unfold {
            return Err(Rfc5322Error::Already);
        }
        let Some(start) = self.currhdr.take() else {
            return Err(Rfc5322Error::Invalid);
        };
        self.val_cat(&start)?;
        self.unfold = true;
        Ok(())
    }

    fn val_cat(&mut self, s: &[u8]) -> Result<(), Rfc5322Error> {
        if self.val.len() + s.len() + 1 >= VAL_MAX {
            return Err(Rfc5322Error::TooLong);
        }
        self.val.extend_from_slice(s);
        Ok(())
    }

    /// Takes the pushed line: the parser needs the next one.
    fn take(&mut self) -> Option<Vec<u8>> {
        self.next = true;
        self.line.take().flatten()
    }

    /// rfc5322_next() (not `next`, which reads as Iterator::next): what
    /// the pushed line means, one result at a time;
    /// Rfc5322::None when it was all taken.
    pub fn next_result(&mut self) -> Result<Rfc5322, Rfc5322Error> {
        if self.next {
            return Ok(Rfc5322::None);
        }
        let r = self.next_inner()?;
        self.state = match &r {
            Rfc5322::None => self.state,
            Rfc5322::HeaderStart { .. } => State::HeaderStart,
            Rfc5322::HeaderCont { .. } => State::HeaderCont,
            Rfc5322::HeaderEnd { .. } => State::HeaderEnd,
            Rfc5322::EndOfHeaders => State::EndOfHeaders,
            Rfc5322::BodyStart(_) => State::BodyStart,
            Rfc5322::Body(_) => State::Body,
            Rfc5322::EndOfMessage => State::EndOfMessage,
        };
        Ok(r)
    }

    /// The pushed line, without taking it: None at the end of data.
    fn peek(&self) -> Option<&[u8]> {
        self.line.as_ref().and_then(|l| l.as_deref())
    }

    fn next_inner(&mut self) -> Result<Rfc5322, Rfc5322Error> {
        let folded = |l: &[u8]| matches!(l.first(), Some(b' ' | b'\t'));
        match self.state {
            State::HeaderStart | State::HeaderCont => {
                let hdr = self.hdr.clone();
                if let Some(line) = self.peek().filter(|l| folded(l)).map(<[u8]>::to_vec) {
                    self.take();
                    if self.unfold {
                        self.val_cat(b"\n")?;
                        self.val_cat(&line)?;
                    }
                    return Ok(Rfc5322::HeaderCont { hdr, value: line });
                }
                let value = if self.unfold {
                    self.unfold = false;
                    Some(std::mem::take(&mut self.val))
                } else {
                    None
                };
                self.currhdr = None;
                Ok(Rfc5322::HeaderEnd { hdr, value })
            }
            State::None | State::HeaderEnd => {
                let colon = self
                    .peek()
                    .filter(|l| !folded(l))
                    .and_then(|l| l.iter().position(|&b| b == b':'));
                let Some(pos) = colon else {
                    return Ok(Rfc5322::EndOfHeaders);
                };
                if pos + 1 >= HDR_MAX {
                    return Err(Rfc5322Error::TooLong);
                }
                let line = self.take().unwrap_or_default();
                self.hdr = line[..pos].to_vec();
                let value = line[pos + 1..].to_vec();
                self.currhdr = Some(value.clone());
                Ok(Rfc5322::HeaderStart {
                    hdr: self.hdr.clone(),
                    value,
                })
            }
            State::EndOfHeaders => match self.peek() {
                None => Ok(Rfc5322::EndOfMessage),
                Some([]) => {
                    self.take();
                    Ok(Rfc5322::BodyStart(Vec::new()))
                }
                // The header block did not end with an empty line.
                Some(_) => Err(Rfc5322Error::Invalid),
            },
            State::BodyStart | State::Body => {
                if self.peek().is_none() {
                    return Ok(Rfc5322::EndOfMessage);
                }
                Ok(Rfc5322::Body(self.take().unwrap_or_default()))
            }
            State::EndOfMessage => Err(Rfc5322Error::NoMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every result of a message, lines then the end.
    fn parse(lines: &[&str], unfold: &[&str]) -> Result<Vec<Rfc5322>, Rfc5322Error> {
        let mut p = Rfc5322Parser::new();
        let mut out = Vec::new();
        let pushes: Vec<Option<&[u8]>> = lines
            .iter()
            .map(|l| Some(l.as_bytes()))
            .chain([None])
            .collect();
        for line in pushes {
            p.push(line)?;
            loop {
                let r = p.next_result()?;
                if let Rfc5322::HeaderStart { hdr, .. } = &r {
                    if unfold
                        .iter()
                        .any(|u| u.as_bytes().eq_ignore_ascii_case(hdr))
                    {
                        p.unfold_header()?;
                    }
                }
                match r {
                    Rfc5322::None => break,
                    Rfc5322::EndOfMessage => {
                        out.push(r);
                        return Ok(out);
                    }
                    r => out.push(r),
                }
            }
        }
        Ok(out)
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn headers_then_body() {
        let r = parse(&["Subject: hi", "To: a,", "\tb", "", "body", ""], &["To"]).unwrap();
        assert_eq!(
            r,
            [
                Rfc5322::HeaderStart {
                    hdr: b("Subject"),
                    value: b(" hi")
                },
                Rfc5322::HeaderEnd {
                    hdr: b("Subject"),
                    value: None
                },
                Rfc5322::HeaderStart {
                    hdr: b("To"),
                    value: b(" a,")
                },
                Rfc5322::HeaderCont {
                    hdr: b("To"),
                    value: b("\tb")
                },
                Rfc5322::HeaderEnd {
                    hdr: b("To"),
                    value: Some(b(" a,\n\tb"))
                },
                Rfc5322::EndOfHeaders,
                Rfc5322::BodyStart(Vec::new()),
                Rfc5322::Body(b("body")),
                Rfc5322::Body(Vec::new()),
                Rfc5322::EndOfMessage,
            ]
        );
    }

    #[test]
    fn an_empty_message_is_fine() {
        assert_eq!(
            parse(&[], &[]).unwrap(),
            [Rfc5322::EndOfHeaders, Rfc5322::EndOfMessage]
        );
    }

    #[test]
    fn a_body_without_a_blank_line_is_refused() {
        assert_eq!(
            parse(&["Subject: x", "no colon here"], &[]),
            Err(Rfc5322Error::Invalid)
        );
        // A first line that starts with white space ends a header block
        // that never began, and is no blank line.
        assert_eq!(parse(&[" folded"], &[]), Err(Rfc5322Error::Invalid));
    }

    #[test]
    fn long_header_names_and_values_are_refused() {
        let name = format!("{}: x", "X".repeat(HDR_MAX));
        assert_eq!(parse(&[&name], &[]), Err(Rfc5322Error::TooLong));
        let cont = format!("\t{}", "y".repeat(VAL_MAX));
        assert_eq!(
            parse(&["To: a", &cont], &["To"]),
            Err(Rfc5322Error::TooLong)
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_through() {
        let mut p = Rfc5322Parser::new();
        p.push(Some(b"Subject: \xe9t\xe9")).unwrap();
        assert_eq!(
            p.next_result().unwrap(),
            Rfc5322::HeaderStart {
                hdr: b("Subject"),
                value: b" \xe9t\xe9".to_vec()
            }
        );
        assert_eq!(p.push(Some(b"x")), Ok(()));
        assert_eq!(p.push(Some(b"y")), Err(Rfc5322Error::Already));
    }
}
