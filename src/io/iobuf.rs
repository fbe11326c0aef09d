//! iobuf.c: the input buffer and output queue of a connection (OpenSMTPD
//! iobuf.c 1.16). No I/O happens here: ioev.rs reads into and writes out
//! of these buffers from the event loop.
//!
//! Unlike C, which allocates the whole 64 KiB input buffer with each
//! connection, the buffer starts small and grows up to its maximum only
//! when a client sends long lines, then shrinks back once drained: an
//! idle session costs a few KiB, not 64.

/// IOBUF_MAX: the most a connection's input buffer holds.
pub const IOBUF_MAX: usize = 65536;
/// What a read asks for at least; the buffer's first size.
const IOBUF_READ_MIN: usize = 4096;
/// A drained buffer larger than this gives its memory back.
const IOBUF_KEEP: usize = 16384;

/// struct iobuf.
#[derive(Debug, Default)]
pub struct Iobuf {
    buf: Vec<u8>,
    rpos: usize,
    max: usize,
    out: Vec<u8>,
    opos: usize,
}

impl Iobuf {
    /// iobuf_init(): an input buffer of at most `max` bytes (0: IOBUF_MAX).
    pub fn new(max: usize) -> Iobuf {
        Iobuf {
            max: if max == 0 { IOBUF_MAX } else { max },
            ..Default::default()
        }
    }

    /// iobuf_len(): bytes received and not consumed.
    pub fn len(&self) -> usize {
        self.buf.len() - self.rpos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// iobuf_data(): the bytes received and not consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.rpos..]
    }

    /// iobuf_drop(): consumes `n` bytes.
    pub fn drop_front(&mut self, n: usize) {
        self.rpos = (self.rpos + n).min(self.buf.len());
        if self.rpos == self.buf.len() {
            self.buf.clear();
            self.rpos = 0;
            if self.buf.capacity() > IOBUF_KEEP {
                self.buf.shrink_to(IOBUF_READ_MIN);
            }
        }
    }

    /// iobuf_normalize(): moves what is left to the front.
    pub fn normalize(&mut self) {
        if self.rpos > 0 {
            self.buf.drain(..self.rpos);
            self.rpos = 0;
        }
    }

    /// iobuf_left(): room for more input, up to the maximum.
    pub fn left(&self) -> usize {
        self.max - self.len()
    }

    /// iobuf_read()'s half that is not I/O: lets `read` fill at most
    /// `want` bytes (within the maximum) at the end of the input, and
    /// keeps what it says it read.
    pub fn read_with(
        &mut self,
        want: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        self.normalize();
        let n = want.min(self.left());
        let old = self.buf.len();
        self.buf.resize(old + n, 0);
        let r = read(&mut self.buf[old..]);
        let got = r.as_ref().map_or(0, |k| (*k).min(n));
        self.buf.truncate(old + got);
        r
    }

    /// iobuf_getline(): the next line ending with LF, without it (a CR
    /// before it stays, for the caller to judge); None until a whole line
    /// is there.
    pub fn getline(&mut self) -> Option<Vec<u8>> {
        let pos = self.data().iter().position(|&b| b == b'\n')?;
        let line = self.data()[..pos].to_vec();
        self.drop_front(pos + 1);
        Some(line)
    }

    /// The next line ending with CRLF, without it: in message data a
    /// line ends there and nowhere else (SMTP smuggling). None until a
    /// whole line is there.
    pub fn getline_crlf(&mut self) -> Option<Vec<u8>> {
        let pos = self.data().windows(2).position(|w| w == b"\r\n")?;
        let line = self.data()[..pos].to_vec();
        self.drop_front(pos + 2);
        Some(line)
    }

    /// Whether a whole line (ending with LF) is buffered.
    pub fn has_line(&self) -> bool {
        self.data().contains(&b'\n')
    }

    /// iobuf_queued(): bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.out.len() - self.opos
    }

    /// iobuf_queue(): appends to the output.
    pub fn queue(&mut self, data: &[u8]) {
        if self.opos == self.out.len() {
            self.out.clear();
            self.opos = 0;
        }
        self.out.extend_from_slice(data);
    }

    /// What is waiting to be written.
    pub fn outq(&self) -> &[u8] {
        &self.out[self.opos..]
    }

    /// iobuf_drain(): `n` bytes were written.
    pub fn drain(&mut self, n: usize) {
        self.opos = (self.opos + n).min(self.out.len());
        if self.opos == self.out.len() {
            self.out.clear();
            self.opos = 0;
            if self.out.capacity() > IOBUF_KEEP {
                self.out.shrink_to(IOBUF_READ_MIN);
            }
        } else if self.opos > IOBUF_KEEP {
            self.out.drain(..self.opos);
            self.opos = 0;
        }
    }
}

/// The size of one read.
pub const IOBUF_READ: usize = IOBUF_READ_MIN * 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(b: &mut Iobuf, data: &[u8]) -> usize {
        b.read_with(data.len(), |space| {
            let n = space.len();
            space.copy_from_slice(&data[..n]);
            Ok(n)
        })
        .unwrap()
    }

    #[test]
    fn lines_end_at_lf_and_may_span_reads() {
        let mut b = Iobuf::new(0);
        feed(&mut b, b"EHLO a\r\nMAIL FR");
        assert_eq!(b.getline().as_deref(), Some(&b"EHLO a\r"[..]));
        assert_eq!(b.getline(), None);
        feed(&mut b, b"OM:<>\n");
        assert_eq!(b.getline().as_deref(), Some(&b"MAIL FROM:<>"[..]));
        assert!(b.is_empty());
    }

    #[test]
    fn crlf_lines_ignore_bare_lf_and_cr() {
        let mut b = Iobuf::new(0);
        feed(&mut b, b"a\nb\rc\r\n.\r\n");
        assert_eq!(b.getline_crlf().as_deref(), Some(&b"a\nb\rc"[..]));
        assert_eq!(b.getline_crlf().as_deref(), Some(&b"."[..]));
        assert_eq!(b.getline_crlf(), None);
    }

    #[test]
    fn input_stops_at_the_maximum() {
        let mut b = Iobuf::new(16);
        assert_eq!(feed(&mut b, &[b'x'; 40]), 16);
        assert_eq!(b.left(), 0);
        assert_eq!(feed(&mut b, b"more"), 0);
        b.drop_front(6);
        assert_eq!(b.left(), 6);
    }

    #[test]
    fn a_short_read_keeps_only_what_came() {
        let mut b = Iobuf::new(0);
        let n = b
            .read_with(100, |space| {
                space[..3].copy_from_slice(b"abc");
                Ok(3)
            })
            .unwrap();
        assert_eq!((n, b.data()), (3, &b"abc"[..]));
        let e = b.read_with(100, |_| Err(std::io::ErrorKind::WouldBlock.into()));
        assert!(e.is_err());
        assert_eq!(b.data(), b"abc");
    }

    #[test]
    fn output_queues_and_drains() {
        let mut b = Iobuf::new(0);
        b.queue(b"220 hello\r\n");
        b.queue(b"250 ok\r\n");
        assert_eq!(b.queued(), 19);
        b.drain(11);
        assert_eq!(b.outq(), b"250 ok\r\n");
        b.drain(8);
        assert_eq!(b.queued(), 0);
    }
}
