//! imsg.c and imsg-buffer.c: OpenBSD's framed messages between processes
//! (OpenSMTPD-portable openbsd-compat/imsg.c 1.38, imsg-buffer.c 1.31).
//!
//! Every smtpd process talks to its peers through an [`Imsgbuf`] on a
//! `AF_UNIX` stream socket. A message is a 16-byte header in host byte
//! order ([`ImsgHdr`]: type, total length, peer id, pid) and its payload,
//! [`MAX_IMSGSIZE`] bytes at most in all. The top bit of the length
//! ([`IMSG_FD_MARK`]) says that one descriptor travels with the message,
//! passed by `SCM_RIGHTS` in the same sendmsg(2) as the message's first
//! byte. The bytes are those of OpenBSD's imsg, so a C peer could talk to
//! a Rust one.
//!
//! The calls keep C's names and order; the state is the first argument.
//! What differs from C, and why:
//! - Buffers are owned Rust values: [`Imsg`] owns its payload and its
//!   descriptor (`imsg_free` is `Drop`), an [`ImsgBuilder`] stands for the
//!   `struct ibuf` that `imsg_create` returns, and the socket itself is
//!   owned by the [`Imsgbuf`] (dropping it closes the socket; C's callers
//!   close it by hand).
//! - [`imsgbuf_read`] tells "would block", "closed" and "closed in the
//!   middle of a message" apart instead of C's 1/0 ([`ReadResult`]).
//! - A descriptor is never lost to a full descriptor table: before a
//!   receive that could carry one, [`imsgbuf_read`] checks that the
//!   process has room and otherwise reports [`ReadResult::WouldBlock`]
//!   without reading (C's current code reads anyway and drops the
//!   descriptor, see msgbuf_read's EMSGSIZE case).
//! - Received descriptors wait in a queue, each tagged with the stream
//!   bytes of the receive that brought it, and go to the first message
//!   carrying [`IMSG_FD_MARK`] whose header starts in those bytes. C
//!   only attaches a descriptor to a header parsed in the same receive,
//!   which loses it if the kernel splits the header across two reads.
//! - Framing errors are sticky: after a bad header, every later
//!   [`imsgbuf_read`] and, once the good messages before it are taken,
//!   [`imsg_get`] return the same error, so nothing resynchronises on
//!   garbage (C: "XXX how to properly clean up is unclear").
//!
//! Not ported: the general `ibuf_*` buffer toolkit (mproc has its own
//! reader and builder), `imsg_compose_ibuf` and `imsg_get_ibuf` (a
//! message's payload is a plain `Vec<u8>`), and the `writev`/`readv` path
//! of channels without descriptor passing, which use sendmsg/recvmsg
//! without control data instead: same bytes, and the socket is always a
//! socket.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys::event::{poll, pollfd, POLLOUT};
use crate::sys::socket;

/// Bytes one [`imsgbuf_read`] asks the kernel for, at most.
pub const IBUF_READ_SIZE: usize = 65535;
/// Size of [`ImsgHdr`] on the wire.
pub const IMSG_HEADER_SIZE: usize = 16;
/// Default largest message, header included.
pub const MAX_IMSGSIZE: usize = 16384;
/// Set in the header's length field when a descriptor comes with the
/// message; never part of the length itself.
pub const IMSG_FD_MARK: u32 = 0x8000_0000;

/// The header that starts every message, in host byte order on the wire.
///
/// In a received [`Imsg`], `len` is the total length (header included)
/// with [`IMSG_FD_MARK`] cleared, as C's imsg_get leaves it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImsgHdr {
    /// The message type: an `IMSG_*` value.
    pub type_: u32,
    /// Header plus payload length, in bytes.
    pub len: u32,
    /// The sender's id for whatever the message is about (a session, a
    /// request, a process type at setup).
    pub peerid: u32,
    /// The pid the sender put in (its own by default).
    pub pid: u32,
}

impl ImsgHdr {
    fn to_bytes(self) -> [u8; IMSG_HEADER_SIZE] {
        let mut b = [0u8; IMSG_HEADER_SIZE];
        b[0..4].copy_from_slice(&self.type_.to_ne_bytes());
        b[4..8].copy_from_slice(&self.len.to_ne_bytes());
        b[8..12].copy_from_slice(&self.peerid.to_ne_bytes());
        b[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        b
    }

    /// Reads a header from the first 16 bytes of `b`, which the caller
    /// has checked are there.
    fn from_bytes(b: &[u8]) -> ImsgHdr {
        let ne32 = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        ImsgHdr {
            type_: ne32(0),
            len: ne32(4),
            peerid: ne32(8),
            pid: ne32(12),
        }
    }
}

/// One received message: its header, its payload and the descriptor that
/// came with it, if any. Dropping it closes the descriptor (C's
/// imsg_free).
#[derive(Debug)]
pub struct Imsg {
    /// The header, `len` without [`IMSG_FD_MARK`].
    pub hdr: ImsgHdr,
    /// The payload: `hdr.len - 16` bytes.
    pub data: Vec<u8>,
    /// The passed descriptor, close-on-exec; take it with [`imsg_get_fd`].
    pub fd: Option<OwnedFd>,
}

/// What one [`imsgbuf_read`] found on the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// This many bytes arrived; complete messages wait for [`imsg_get`].
    Data(usize),
    /// Nothing to read now (EAGAIN), or nothing may be read yet because
    /// the descriptor table has no room for a passed descriptor (see
    /// [`imsgbuf_fd_starved`]). Try again later; nothing was lost.
    WouldBlock,
    /// The peer closed the connection between two messages.
    Closed,
    /// The peer closed the connection after sending only the first
    /// `pending` bytes of a message, which are dropped. C reports this as
    /// a plain close; a caller should treat the peer as gone, and may log
    /// that it died mid-message.
    ClosedMidMessage {
        /// Bytes of the incomplete message that were received.
        pending: usize,
    },
}

/// Why an imsg call failed.
#[derive(Debug)]
pub enum ImsgError {
    /// A message being built would be longer than the buffer's maximum
    /// (C: ERANGE from imsg_create or imsg_add). Nothing was queued.
    TooBig {
        /// The message type.
        type_: u32,
        /// The length it would have, header included.
        len: usize,
        /// The maximum, header included.
        max: usize,
    },
    /// A received header's length is below the header size or above the
    /// maximum (C: ERANGE from imsg_parse_hdr). The stream cannot be
    /// trusted any more: the peer is broken or hostile.
    BadLength {
        /// The type in the offending header.
        type_: u32,
        /// Its length field, [`IMSG_FD_MARK`] cleared.
        len: u32,
        /// The maximum, header included.
        max: usize,
    },
    /// [`imsg_get_data`] was asked for a payload size the message does
    /// not have (C: EBADMSG, or EINVAL for a zero size).
    DataSize {
        /// The message type.
        type_: u32,
        /// The size asked for.
        expected: usize,
        /// The payload's size.
        got: usize,
    },
    /// [`imsgbuf_set_maxsize`] was given less than a header or a value
    /// with the descriptor bit (C: EINVAL).
    BadMaxsize(u32),
    /// The kernel had a descriptor for us that it could not deliver
    /// (`MSG_CTRUNC`); it is lost, and a message may be missing it.
    FdTruncated,
    /// A descriptor came on a channel that takes none (a control
    /// client's): the kernel closed it, and the peer is not to be trusted
    /// further. C's imsgbuf, which closes it too, reads on.
    FdRefused,
    /// A system call failed.
    Io(io::Error),
}

impl fmt::Display for ImsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImsgError::TooBig { type_, len, max } => {
                write!(f, "imsg type {type_} too large: {len} bytes, at most {max}")
            }
            ImsgError::BadLength { type_, len, max } => write!(
                f,
                "bad imsg header: type {type_} with length {len}, not within {IMSG_HEADER_SIZE}..={max}"
            ),
            ImsgError::DataSize {
                type_,
                expected,
                got,
            } => write!(
                f,
                "imsg type {type_} carries {got} bytes of data, expected {expected}"
            ),
            ImsgError::BadMaxsize(v) => write!(f, "invalid imsg maximum size {v}"),
            ImsgError::FdTruncated => f.write_str("passed file descriptor lost (MSG_CTRUNC)"),
            ImsgError::FdRefused => f.write_str("file descriptor passed where none is allowed"),
            ImsgError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImsgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImsgError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ImsgError {
    fn from(e: io::Error) -> ImsgError {
        ImsgError::Io(e)
    }
}

/// A receive-side error that stays once it has happened.
#[derive(Clone, Copy, Debug)]
enum Fault {
    BadLength { type_: u32, len: u32, max: usize },
    FdTruncated,
    FdRefused,
}

impl From<Fault> for ImsgError {
    fn from(f: Fault) -> ImsgError {
        match f {
            Fault::BadLength { type_, len, max } => ImsgError::BadLength { type_, len, max },
            Fault::FdTruncated => ImsgError::FdTruncated,
            Fault::FdRefused => ImsgError::FdRefused,
        }
    }
}

/// A message queued for writing: header and payload in one buffer, how
/// much of it is already sent, and its descriptor until that is sent.
struct Wbuf {
    buf: Vec<u8>,
    pos: usize,
    fd: Option<OwnedFd>,
}

/// A received descriptor waiting for its message: `start..end` are the
/// stream offsets of the bytes that came with it.
struct Rfd {
    fd: OwnedFd,
    start: u64,
    end: u64,
}

/// The message being read (C's rpmsg): its header, the payload so far,
/// its descriptor and the stream offset of its first byte.
struct Rpmsg {
    hdr: ImsgHdr,
    data: Vec<u8>,
    fd: Option<OwnedFd>,
    start: u64,
}

/// Both directions of one imsg channel (C's `struct imsgbuf` and the
/// `struct msgbuf` inside it): the socket, the messages waiting to be
/// written, the bytes and descriptors read but not yet made into
/// messages, and the messages ready for [`imsg_get`].
///
/// The event loop watches [`AsRawFd::as_raw_fd`]; it wants write
/// readiness while [`imsgbuf_queuelen`] is not 0.
pub struct Imsgbuf {
    fd: OwnedFd,
    pid: u32,
    maxsize: usize,
    fdpass: bool,
    w: VecDeque<Wbuf>,
    /// Read buffer; between reads it holds at most a partial header.
    rbuf: Box<[u8]>,
    roff: usize,
    /// Stream offset of `rbuf[0]`: bytes received before it.
    rbase: u64,
    rpmsg: Option<Rpmsg>,
    rfds: VecDeque<Rfd>,
    rmsgs: VecDeque<Imsg>,
    fault: Option<Fault>,
    starved: bool,
}

impl fmt::Debug for Imsgbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imsgbuf")
            .field("fd", &self.fd)
            .field("pid", &self.pid)
            .field("maxsize", &self.maxsize)
            .field("fdpass", &self.fdpass)
            .field("queued", &self.w.len())
            .field("ready", &self.rmsgs.len())
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl AsFd for Imsgbuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Imsgbuf {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Makes a channel of the stream socket `fd`, which it owns from now on
/// and sets non-blocking. Messages composed with pid 0 carry this
/// process's pid as of now; the maximum size is [`MAX_IMSGSIZE`];
/// descriptor passing is off until [`imsgbuf_allow_fdpass`].
pub fn imsgbuf_init(fd: OwnedFd) -> io::Result<Imsgbuf> {
    socket::set_nonblocking(fd.as_fd(), true)?;
    Ok(Imsgbuf {
        fd,
        pid: std::process::id(),
        maxsize: MAX_IMSGSIZE,
        fdpass: false,
        w: VecDeque::new(),
        rbuf: vec![0; IBUF_READ_SIZE].into_boxed_slice(),
        roff: 0,
        rbase: 0,
        rpmsg: None,
        rfds: VecDeque::new(),
        rmsgs: VecDeque::new(),
        fault: None,
        starved: false,
    })
}

/// Turns on descriptor passing in both directions. Without it, received
/// descriptors are discarded by the kernel (messages marked as carrying
/// one get none), and queued descriptors are not sent but closed, their
/// messages still marked, as in C.
pub fn imsgbuf_allow_fdpass(imsgbuf: &mut Imsgbuf) {
    imsgbuf.fdpass = true;
}

/// Sets the largest message, header included, that may be composed or
/// received. It must hold a header and must not use [`IMSG_FD_MARK`].
pub fn imsgbuf_set_maxsize(imsgbuf: &mut Imsgbuf, maxsize: u32) -> Result<(), ImsgError> {
    if (maxsize as usize) < IMSG_HEADER_SIZE || maxsize & IMSG_FD_MARK != 0 {
        return Err(ImsgError::BadMaxsize(maxsize));
    }
    imsgbuf.maxsize = maxsize as usize;
    Ok(())
}

/// Does one non-blocking receive of whatever the socket has, and turns
/// the complete messages in it into [`Imsg`]s for [`imsg_get`].
///
/// With descriptor passing on, it first checks that the process could
/// take the descriptors one receive may bring
/// ([`socket::RECV_MAX_FDS`]); when it could not, it reads nothing and
/// returns [`ReadResult::WouldBlock`] with [`imsgbuf_fd_starved`] true.
/// The socket stays readable then, so a level-triggered loop should stop
/// watching it for reading and retry from a timer, or after closing
/// descriptors, rather than spin.
///
/// Errors: a header whose length is out of range
/// ([`ImsgError::BadLength`]), a lost descriptor
/// ([`ImsgError::FdTruncated`]) and system call failures. The first two
/// are sticky. Messages complete before a bad header can still be taken.
pub fn imsgbuf_read(imsgbuf: &mut Imsgbuf) -> Result<ReadResult, ImsgError> {
    if let Some(f) = imsgbuf.fault {
        return Err(f.into());
    }
    imsgbuf.starved = false;
    if imsgbuf.fdpass && !socket::fd_room(imsgbuf.fd.as_fd(), socket::RECV_MAX_FDS)? {
        imsgbuf.starved = true;
        return Ok(ReadResult::WouldBlock);
    }
    msgbuf_read(imsgbuf)
}

/// Whether the last [`imsgbuf_read`] returned
/// [`ReadResult::WouldBlock`] for want of room in the descriptor table
/// rather than for want of data. No C twin.
pub fn imsgbuf_fd_starved(imsgbuf: &Imsgbuf) -> bool {
    imsgbuf.starved
}

/// Writes as much of the queue as the socket takes now, without
/// blocking. A full socket is not an error: what is left stays queued
/// and [`imsgbuf_queuelen`] says so. A closed peer is an error (EPIPE;
/// no SIGPIPE is raised).
pub fn imsgbuf_write(imsgbuf: &mut Imsgbuf) -> Result<(), ImsgError> {
    msgbuf_write(imsgbuf).map(|_| ())
}

/// Writes the whole queue, waiting in poll(2) whenever the socket is
/// full. For setup and for short-lived clients, before or outside an
/// event loop: it blocks until the peer has read enough.
pub fn imsgbuf_flush(imsgbuf: &mut Imsgbuf) -> Result<(), ImsgError> {
    while !imsgbuf.w.is_empty() {
        if msgbuf_write(imsgbuf)?.is_none() {
            let mut pfd = [pollfd {
                fd: imsgbuf.fd.as_raw_fd(),
                events: POLLOUT,
                revents: 0,
            }];
            // POLLHUP and POLLERR wake us too: the next write reports them.
            poll(&mut pfd, None)?;
        }
    }
    Ok(())
}

/// Drops everything queued in both directions: unsent messages and their
/// descriptors, received messages not yet taken, partial input, and any
/// sticky error. The socket stays open (dropping the `Imsgbuf` closes
/// it). As in C, reading on after this is only meaningful on a fresh
/// stream.
pub fn imsgbuf_clear(imsgbuf: &mut Imsgbuf) {
    imsgbuf.w.clear();
    imsgbuf.roff = 0;
    imsgbuf.rbase = 0;
    imsgbuf.rpmsg = None;
    imsgbuf.rfds.clear();
    imsgbuf.rmsgs.clear();
    imsgbuf.fault = None;
    imsgbuf.starved = false;
}

/// How many messages wait to be written, the partly written one included.
pub fn imsgbuf_queuelen(imsgbuf: &Imsgbuf) -> usize {
    imsgbuf.w.len()
}

/// Takes the next received message, in order. `Ok(None)`: none is
/// complete yet. After a framing error, the messages before it come
/// first, then the error, again on every call.
pub fn imsg_get(imsgbuf: &mut Imsgbuf) -> Result<Option<Imsg>, ImsgError> {
    if let Some(m) = imsgbuf.rmsgs.pop_front() {
        return Ok(Some(m));
    }
    match imsgbuf.fault {
        Some(f) => Err(f.into()),
        None => Ok(None),
    }
}

/// Copies the payload into `data`, which must be exactly its size and
/// not empty: the check C's callers rely on for fixed-size messages.
pub fn imsg_get_data(imsg: &Imsg, data: &mut [u8]) -> Result<(), ImsgError> {
    if data.is_empty() || imsg.data.len() != data.len() {
        return Err(ImsgError::DataSize {
            type_: imsg.hdr.type_,
            expected: data.len(),
            got: imsg.data.len(),
        });
    }
    data.copy_from_slice(&imsg.data);
    Ok(())
}

/// Takes the descriptor that came with the message; later calls return
/// None.
pub fn imsg_get_fd(imsg: &mut Imsg) -> Option<OwnedFd> {
    imsg.fd.take()
}

/// The peer id of the message.
pub fn imsg_get_id(imsg: &Imsg) -> u32 {
    imsg.hdr.peerid
}

/// The payload length, header excluded.
pub fn imsg_get_len(imsg: &Imsg) -> usize {
    imsg.data.len()
}

/// The pid in the message's header.
pub fn imsg_get_pid(imsg: &Imsg) -> u32 {
    imsg.hdr.pid
}

/// The message type.
pub fn imsg_get_type(imsg: &Imsg) -> u32 {
    imsg.hdr.type_
}

/// Queues one message with payload `data` and, when given, descriptor
/// `fd` (closed once sent). `pid` 0 means this process. On error nothing
/// is queued and `fd` is closed.
pub fn imsg_compose(
    imsgbuf: &mut Imsgbuf,
    type_: u32,
    id: u32,
    pid: u32,
    fd: Option<OwnedFd>,
    data: &[u8],
) -> Result<(), ImsgError> {
    let mut wbuf = imsg_create(imsgbuf, type_, id, pid, data.len())?;
    imsg_add(&mut wbuf, data)?;
    ibuf_fd_set(&mut wbuf, fd);
    imsg_close(imsgbuf, wbuf);
    Ok(())
}

/// As [`imsg_compose`], with the payload given as several slices laid
/// end to end.
pub fn imsg_composev(
    imsgbuf: &mut Imsgbuf,
    type_: u32,
    id: u32,
    pid: u32,
    fd: Option<OwnedFd>,
    iov: &[&[u8]],
) -> Result<(), ImsgError> {
    let datalen = iov.iter().map(|b| b.len()).sum();
    let mut wbuf = imsg_create(imsgbuf, type_, id, pid, datalen)?;
    for b in iov {
        imsg_add(&mut wbuf, b)?;
    }
    ibuf_fd_set(&mut wbuf, fd);
    imsg_close(imsgbuf, wbuf);
    Ok(())
}

/// Queues a copy of a received message (type, peer id, pid, payload) on
/// another channel. Its descriptor is not forwarded: it stays with `msg`.
pub fn imsg_forward(imsgbuf: &mut Imsgbuf, msg: &Imsg) -> Result<(), ImsgError> {
    let mut wbuf = imsg_create(
        imsgbuf,
        msg.hdr.type_,
        msg.hdr.peerid,
        msg.hdr.pid,
        msg.data.len(),
    )?;
    imsg_add(&mut wbuf, &msg.data)?;
    imsg_close(imsgbuf, wbuf);
    Ok(())
}

/// A message being built field by field: [`imsg_create`], then
/// [`imsg_add`] and [`ibuf_fd_set`], then [`imsg_close`] to queue it.
/// Dropping it instead discards it (and closes its descriptor).
#[derive(Debug)]
pub struct ImsgBuilder {
    type_: u32,
    buf: Vec<u8>,
    max: usize,
    fd: Option<OwnedFd>,
}

/// Starts a message on `imsgbuf`; `datalen` is the expected payload size
/// (it may grow up to the maximum). `pid` 0 means this process. Fails
/// when `datalen` alone is already too large.
pub fn imsg_create(
    imsgbuf: &Imsgbuf,
    type_: u32,
    id: u32,
    pid: u32,
    datalen: usize,
) -> Result<ImsgBuilder, ImsgError> {
    let len = datalen.saturating_add(IMSG_HEADER_SIZE);
    if len > imsgbuf.maxsize {
        return Err(ImsgError::TooBig {
            type_,
            len,
            max: imsgbuf.maxsize,
        });
    }
    let hdr = ImsgHdr {
        type_,
        len: 0, // set by imsg_close
        peerid: id,
        pid: if pid == 0 { imsgbuf.pid } else { pid },
    };
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&hdr.to_bytes());
    Ok(ImsgBuilder {
        type_,
        buf,
        max: imsgbuf.maxsize,
        fd: None,
    })
}

/// Appends `data` to the payload. Fails, leaving the message as it was,
/// if the message would grow beyond the maximum.
pub fn imsg_add(msg: &mut ImsgBuilder, data: &[u8]) -> Result<(), ImsgError> {
    let len = msg.buf.len().saturating_add(data.len());
    if len > msg.max {
        return Err(ImsgError::TooBig {
            type_: msg.type_,
            len,
            max: msg.max,
        });
    }
    msg.buf.extend_from_slice(data);
    Ok(())
}

/// Writes the final length (with [`IMSG_FD_MARK`] if a descriptor is
/// attached) into the header and queues the message.
pub fn imsg_close(imsgbuf: &mut Imsgbuf, msg: ImsgBuilder) {
    let ImsgBuilder { mut buf, fd, .. } = msg;
    // imsg_create and imsg_add keep the length within maxsize, which
    // imsgbuf_set_maxsize keeps below IMSG_FD_MARK.
    let mut len = buf.len() as u32;
    debug_assert!(len & IMSG_FD_MARK == 0);
    if fd.is_some() {
        len |= IMSG_FD_MARK;
    }
    buf[4..8].copy_from_slice(&len.to_ne_bytes());
    imsgbuf.w.push_back(Wbuf { buf, pos: 0, fd });
}

/// Validates a header at `rbuf[pos..]` and starts the message it
/// announces, with its descriptor if it is marked as carrying one.
fn imsg_parse_hdr(imsgbuf: &mut Imsgbuf, pos: usize) -> Result<Rpmsg, Fault> {
    let mut hdr = ImsgHdr::from_bytes(&imsgbuf.rbuf[pos..pos + IMSG_HEADER_SIZE]);
    let len = hdr.len & !IMSG_FD_MARK;
    if (len as usize) < IMSG_HEADER_SIZE || len as usize > imsgbuf.maxsize {
        return Err(Fault::BadLength {
            type_: hdr.type_,
            len,
            max: imsgbuf.maxsize,
        });
    }
    let start = imsgbuf.rbase + pos as u64;
    let fd = if hdr.len & IMSG_FD_MARK != 0 {
        imsgbuf_claim_fd(imsgbuf, start)
    } else {
        None
    };
    hdr.len = len;
    Ok(Rpmsg {
        hdr,
        data: Vec::with_capacity(len as usize - IMSG_HEADER_SIZE),
        fd,
        start,
    })
}

/// The descriptor for a marked header at stream offset `start`: the
/// oldest queued one, if it came with the bytes where this header
/// begins. Older ones that no header claimed are closed; a newer one
/// belongs to a later message. A marked header without its descriptor
/// (never sent, or not allowed) gets none, as in C.
fn imsgbuf_claim_fd(imsgbuf: &mut Imsgbuf, start: u64) -> Option<OwnedFd> {
    while let Some(f) = imsgbuf.rfds.front() {
        if f.end <= start {
            imsgbuf.rfds.pop_front();
        } else if f.start <= start {
            return imsgbuf.rfds.pop_front().map(|f| f.fd);
        } else {
            break;
        }
    }
    None
}

/// Bytes of the message being received: a partial header, or a header
/// and part of its payload.
fn imsgbuf_pending(imsgbuf: &Imsgbuf) -> usize {
    match &imsgbuf.rpmsg {
        Some(m) => IMSG_HEADER_SIZE + m.data.len() + imsgbuf.roff,
        None => imsgbuf.roff,
    }
}

// imsg-buffer.c

/// Attaches `fd` to the message being built (None detaches and closes
/// the one attached).
pub fn ibuf_fd_set(msg: &mut ImsgBuilder, fd: Option<OwnedFd>) {
    msg.fd = fd;
}

/// One sendmsg(2) of as many queued messages as fit in `IOV_MAX`
/// buffers, stopping before the second one with a descriptor: a
/// descriptor only travels with its message's first byte. Returns the
/// bytes sent, or None if the socket is full.
fn msgbuf_write(imsgbuf: &mut Imsgbuf) -> Result<Option<usize>, ImsgError> {
    let (res, sent_fd) = {
        let mut iov = Vec::with_capacity(imsgbuf.w.len().min(socket::IOV_MAX));
        let mut sendfd = None;
        for wb in imsgbuf.w.iter().take(socket::IOV_MAX) {
            if imsgbuf.fdpass && wb.pos == 0 {
                if let Some(fd) = &wb.fd {
                    if !iov.is_empty() {
                        break;
                    }
                    sendfd = Some(fd.as_fd());
                }
            }
            iov.push(IoSlice::new(&wb.buf[wb.pos..]));
        }
        if iov.is_empty() {
            return Ok(Some(0));
        }
        let sent_fd = sendfd.is_some();
        (
            socket::sendmsg_fd(imsgbuf.fd.as_fd(), &iov, sendfd),
            sent_fd,
        )
    };
    let n = match res {
        Ok(n) => n,
        Err(e) if socket::send_would_block(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Anything sent means the descriptor went with it (fds go one at a
    // time): close ours.
    if sent_fd {
        if let Some(wb) = imsgbuf.w.front_mut() {
            wb.fd = None;
        }
    }
    msgbuf_drain(imsgbuf, n);
    Ok(Some(n))
}

/// Turns the bytes in the read buffer into messages: headers are checked
/// as soon as they are complete, payloads are gathered across reads, and
/// what is left (less than a header) moves to the front of the buffer.
fn ibuf_read_process(imsgbuf: &mut Imsgbuf) -> Result<(), ImsgError> {
    let end = imsgbuf.roff;
    let mut pos = 0;
    loop {
        let mut m = match imsgbuf.rpmsg.take() {
            Some(m) => m,
            None => {
                if end - pos < IMSG_HEADER_SIZE {
                    break;
                }
                let m = match imsg_parse_hdr(imsgbuf, pos) {
                    Ok(m) => m,
                    Err(f) => {
                        imsgbuf.fault = Some(f);
                        return Err(f.into());
                    }
                };
                pos += IMSG_HEADER_SIZE;
                m
            }
        };
        let want = m.hdr.len as usize - IMSG_HEADER_SIZE - m.data.len();
        let take = want.min(end - pos);
        m.data.extend_from_slice(&imsgbuf.rbuf[pos..pos + take]);
        pos += take;
        if take < want {
            imsgbuf.rpmsg = Some(m);
            break;
        }
        imsgbuf.rmsgs.push_back(Imsg {
            hdr: m.hdr,
            data: m.data,
            fd: m.fd,
        });
    }
    imsgbuf.rbuf.copy_within(pos..end, 0);
    imsgbuf.rbase += pos as u64;
    imsgbuf.roff = end - pos;

    // A descriptor whose bytes lie wholly before the next header to come
    // was claimed by no message: close it (C closes it at once).
    let next = match &imsgbuf.rpmsg {
        Some(m) => m.start + u64::from(m.hdr.len),
        None => imsgbuf.rbase,
    };
    while imsgbuf.rfds.front().is_some_and(|f| f.end <= next) {
        imsgbuf.rfds.pop_front();
    }
    Ok(())
}

/// One recvmsg(2) into the free end of the read buffer; the descriptor
/// that came with the bytes is queued, tagged with their stream offsets.
fn msgbuf_read(imsgbuf: &mut Imsgbuf) -> Result<ReadResult, ImsgError> {
    let roff = imsgbuf.roff;
    let r = match socket::recvmsg_fds(
        imsgbuf.fd.as_fd(),
        &mut imsgbuf.rbuf[roff..],
        imsgbuf.fdpass,
    ) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadResult::WouldBlock),
        Err(e) => return Err(e.into()),
    };
    if r.ctrunc && imsgbuf.fdpass {
        imsgbuf.fault = Some(Fault::FdTruncated);
        return Err(ImsgError::FdTruncated);
    }
    if r.ctrunc {
        imsgbuf.fault = Some(Fault::FdRefused);
        return Err(ImsgError::FdRefused);
    }
    if r.len == 0 {
        return Ok(match imsgbuf_pending(imsgbuf) {
            0 => ReadResult::Closed,
            pending => ReadResult::ClosedMidMessage { pending },
        });
    }
    let start = imsgbuf.rbase + roff as u64;
    // As msgbuf_read, accept one descriptor a receive; close the others.
    if let Some(fd) = r.fds.into_iter().next() {
        imsgbuf.rfds.push_back(Rfd {
            fd,
            start,
            end: start + r.len as u64,
        });
    }
    imsgbuf.roff += r.len;
    ibuf_read_process(imsgbuf)?;
    Ok(ReadResult::Data(r.len))
}

/// Forgets the first `n` bytes of the write queue, which were sent.
fn msgbuf_drain(imsgbuf: &mut Imsgbuf, mut n: usize) {
    while n > 0 {
        let Some(wb) = imsgbuf.w.front_mut() else {
            break;
        };
        let left = wb.buf.len() - wb.pos;
        if n >= left {
            n -= left;
            imsgbuf.w.pop_front();
        } else {
            wb.pos += n;
            n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::event::POLLIN;
    use crate::sys::socket::{is_test_child, run_test_in_child};
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// Two connected channels with descriptor passing on.
    fn pair() -> (Imsgbuf, Imsgbuf) {
        let (a, b) = socket::socketpair().unwrap();
        let mut a = imsgbuf_init(a).unwrap();
        let mut b = imsgbuf_init(b).unwrap();
        imsgbuf_allow_fdpass(&mut a);
        imsgbuf_allow_fdpass(&mut b);
        (a, b)
    }

    /// A channel and the raw, blocking other end of its socket.
    fn raw_pair() -> (Imsgbuf, UnixStream) {
        let (a, b) = socket::socketpair().unwrap();
        let mut a = imsgbuf_init(a).unwrap();
        imsgbuf_allow_fdpass(&mut a);
        (a, UnixStream::from(b))
    }

    /// A pipe: (blocking read end, write end).
    fn pipe() -> (File, OwnedFd) {
        let (r, w) = crate::sys::event::pipe_nonblock().unwrap();
        socket::set_nonblocking(r.as_fd(), false).unwrap();
        (File::from(r), w)
    }

    fn hdr_bytes(type_: u32, len: u32, peerid: u32, pid: u32) -> Vec<u8> {
        ImsgHdr {
            type_,
            len,
            peerid,
            pid,
        }
        .to_bytes()
        .to_vec()
    }

    fn wait_readable(b: &Imsgbuf) {
        let mut pfd = [pollfd {
            fd: b.as_raw_fd(),
            events: POLLIN,
            revents: 0,
        }];
        poll(&mut pfd, None).unwrap();
    }

    /// The next message, reading (and waiting) as needed.
    fn recv(b: &mut Imsgbuf) -> Imsg {
        loop {
            if let Some(m) = imsg_get(b).unwrap() {
                return m;
            }
            match imsgbuf_read(b).unwrap() {
                ReadResult::Data(_) => {}
                ReadResult::WouldBlock => wait_readable(b),
                r => panic!("unexpected {r:?}"),
            }
        }
    }

    /// Writes through a received descriptor, closes it, and reads what
    /// arrived at the read end of its pipe (to EOF: all write ends closed).
    fn write_through(fd: OwnedFd, r: &mut File, text: &str) -> String {
        File::from(fd).write_all(text.as_bytes()).unwrap();
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        got
    }

    #[test]
    fn init_makes_the_socket_nonblocking() {
        let (a, _b) = pair();
        assert!(socket::is_nonblocking(a.as_fd()).unwrap());
        assert!(socket::is_cloexec(a.as_fd()).unwrap());
    }

    #[test]
    fn compose_round_trips_type_peerid_pid_and_empty_payload() {
        let (mut a, mut b) = pair();
        imsg_compose(&mut a, 42, 7, 1234, None, b"").unwrap();
        assert_eq!(imsgbuf_queuelen(&a), 1);
        imsgbuf_flush(&mut a).unwrap();
        assert_eq!(imsgbuf_queuelen(&a), 0);
        let m = recv(&mut b);
        assert_eq!(imsg_get_type(&m), 42);
        assert_eq!(imsg_get_id(&m), 7);
        assert_eq!(imsg_get_pid(&m), 1234);
        assert_eq!(imsg_get_len(&m), 0);
        assert_eq!(m.hdr.len, 16);
        assert!(m.fd.is_none());
        assert!(imsg_get(&mut b).unwrap().is_none());
    }

    #[test]
    fn compose_round_trips_the_largest_payload() {
        let (mut a, mut b) = pair();
        let data: Vec<u8> = (0..MAX_IMSGSIZE - IMSG_HEADER_SIZE)
            .map(|i| (i * 7) as u8)
            .collect();
        imsg_compose(&mut a, 1, 2, 3, None, &data).unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let m = recv(&mut b);
        assert_eq!(m.hdr.len as usize, MAX_IMSGSIZE);
        assert_eq!(m.data, data);
    }

    #[test]
    fn pid_zero_is_sent_as_own_pid() {
        let (mut a, mut b) = pair();
        imsg_compose(&mut a, 1, 0, 0, None, b"x").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        assert_eq!(imsg_get_pid(&recv(&mut b)), std::process::id());
    }

    #[test]
    fn composev_sends_the_slices_as_one_payload() {
        let (mut a, mut b) = pair();
        imsg_composev(&mut a, 5, 6, 7, None, &[b"ab", b"", b"cde"]).unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let m = recv(&mut b);
        assert_eq!((m.hdr.type_, m.hdr.peerid, m.hdr.pid), (5, 6, 7));
        assert_eq!(m.data, b"abcde");
    }

    #[test]
    fn create_add_close_builds_one_message_with_its_fd() {
        let (mut a, mut b) = pair();
        let (mut r, w) = pipe();
        let mut msg = imsg_create(&a, 9, 10, 11, 4).unwrap();
        imsg_add(&mut msg, &1u32.to_ne_bytes()).unwrap();
        imsg_add(&mut msg, b"more than announced").unwrap();
        ibuf_fd_set(&mut msg, Some(w));
        imsg_close(&mut a, msg);
        imsgbuf_flush(&mut a).unwrap();
        let mut m = recv(&mut b);
        assert_eq!((m.hdr.type_, m.hdr.peerid, m.hdr.pid), (9, 10, 11));
        assert_eq!(&m.data[..4], &1u32.to_ne_bytes());
        assert_eq!(&m.data[4..], b"more than announced");
        let fd = imsg_get_fd(&mut m).unwrap();
        assert!(imsg_get_fd(&mut m).is_none());
        assert_eq!(write_through(fd, &mut r, "built"), "built");
    }

    #[test]
    fn get_data_copies_only_an_exact_size() {
        let (mut a, mut b) = pair();
        imsg_compose(&mut a, 3, 0, 0, None, &0x1122_3344u32.to_ne_bytes()).unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let m = recv(&mut b);
        let mut v = [0u8; 4];
        imsg_get_data(&m, &mut v).unwrap();
        assert_eq!(u32::from_ne_bytes(v), 0x1122_3344);
        assert!(matches!(
            imsg_get_data(&m, &mut [0u8; 8]),
            Err(ImsgError::DataSize {
                type_: 3,
                expected: 8,
                got: 4
            })
        ));
        assert!(imsg_get_data(&m, &mut []).is_err());
    }

    #[test]
    fn forward_copies_header_and_payload_but_not_the_fd() {
        let (mut a, mut b) = pair();
        let (mut c, mut d) = pair();
        let (mut r, w) = pipe();
        imsg_compose(&mut a, 20, 21, 22, Some(w), b"payload").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let mut m = recv(&mut b);
        imsg_forward(&mut c, &m).unwrap();
        imsgbuf_flush(&mut c).unwrap();
        let f = recv(&mut d);
        assert_eq!(f.hdr, m.hdr);
        assert_eq!(f.data, b"payload");
        assert!(f.fd.is_none());
        let fd = imsg_get_fd(&mut m).unwrap();
        assert_eq!(write_through(fd, &mut r, "kept"), "kept");
    }

    #[test]
    fn header_is_sixteen_bytes_in_host_order_with_the_fd_mark() {
        let (mut a, mut raw) = raw_pair();
        let (_r, w) = pipe();
        imsg_compose(&mut a, 0x0102_0304, 5, 6, None, b"ab").unwrap();
        imsg_compose(&mut a, 7, 8, 9, Some(w), b"").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let mut got = [0u8; 18 + 16];
        raw.read_exact(&mut got).unwrap();
        let mut want = hdr_bytes(0x0102_0304, 18, 5, 6);
        want.extend_from_slice(b"ab");
        want.extend(hdr_bytes(7, 16 | IMSG_FD_MARK, 8, 9));
        assert_eq!(got.to_vec(), want);
    }

    #[test]
    fn many_messages_arrive_in_one_read() {
        let (mut a, mut b) = pair();
        for i in 0..200u32 {
            imsg_compose(&mut a, i, i, 1, None, &i.to_ne_bytes()).unwrap();
        }
        imsgbuf_flush(&mut a).unwrap();
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(200 * 20));
        for i in 0..200u32 {
            let m = imsg_get(&mut b).unwrap().unwrap();
            assert_eq!((m.hdr.type_, m.data.as_slice()), (i, &i.to_ne_bytes()[..]));
        }
        assert!(imsg_get(&mut b).unwrap().is_none());
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::WouldBlock);
    }

    #[test]
    fn messages_written_one_byte_at_a_time_are_reassembled() {
        let (mut b, mut raw) = raw_pair();
        let mut bytes = hdr_bytes(1, 16 + 5, 2, 3);
        bytes.extend_from_slice(b"hello");
        bytes.extend(hdr_bytes(4, 16, 5, 6));
        for (i, byte) in bytes.iter().enumerate() {
            raw.write_all(&[*byte]).unwrap();
            assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(1));
            let m = imsg_get(&mut b).unwrap();
            match i + 1 {
                21 => assert_eq!(m.unwrap().data, b"hello"),
                37 => assert_eq!(m.unwrap().hdr.type_, 4),
                _ => assert!(m.is_none(), "message after {} bytes", i + 1),
            }
        }
    }

    #[test]
    fn message_larger_than_the_read_buffer_spans_reads() {
        let (mut a, mut b) = pair();
        imsgbuf_set_maxsize(&mut a, 300_000).unwrap();
        imsgbuf_set_maxsize(&mut b, 300_000).unwrap();
        let data: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
        imsg_compose(&mut a, 1, 0, 0, None, &data).unwrap();
        imsg_compose(&mut a, 2, 0, 0, None, b"next").unwrap();
        let mut reads = 0;
        let mut got = Vec::new();
        while got.len() < 2 {
            imsgbuf_write(&mut a).unwrap();
            if let ReadResult::Data(_) = imsgbuf_read(&mut b).unwrap() {
                reads += 1;
            }
            while let Some(m) = imsg_get(&mut b).unwrap() {
                got.push(m);
            }
        }
        assert!(reads >= 4);
        assert_eq!(got[0].data, data);
        assert_eq!(got[1].data, b"next");
    }

    #[test]
    fn compose_over_the_maximum_is_refused_and_queues_nothing() {
        let (mut a, _b) = pair();
        let big = vec![0u8; MAX_IMSGSIZE - IMSG_HEADER_SIZE + 1];
        let e = imsg_compose(&mut a, 77, 0, 0, None, &big).unwrap_err();
        assert!(matches!(
            e,
            ImsgError::TooBig {
                type_: 77,
                len: 16385,
                max: 16384
            }
        ));
        assert_eq!(
            e.to_string(),
            "imsg type 77 too large: 16385 bytes, at most 16384"
        );
        assert!(imsg_composev(&mut a, 1, 0, 0, None, &[&big[..8000], &big[8000..]]).is_err());
        assert!(imsg_create(&a, 1, 0, 0, big.len()).is_err());
        let mut msg = imsg_create(&a, 1, 0, 0, 0).unwrap();
        imsg_add(&mut msg, &big[1..]).unwrap();
        assert!(imsg_add(&mut msg, b"x").is_err());
        assert_eq!(imsgbuf_queuelen(&a), 0);
        imsg_close(&mut a, msg);
        assert_eq!(imsgbuf_queuelen(&a), 1);
    }

    fn receive_raw_header(len: u32) -> (Imsgbuf, Result<ReadResult, ImsgError>) {
        let (mut b, mut raw) = raw_pair();
        let mut bytes = hdr_bytes(1, 20, 0, 0);
        bytes.extend_from_slice(b"good");
        bytes.extend(hdr_bytes(99, len, 0, 0));
        bytes.resize(bytes.len() + 64, 0);
        raw.write_all(&bytes).unwrap();
        let r = imsgbuf_read(&mut b);
        (b, r)
    }

    #[test]
    fn received_length_15_is_a_sticky_framing_error() {
        let (mut b, r) = receive_raw_header(15);
        let e = r.unwrap_err();
        assert!(matches!(
            e,
            ImsgError::BadLength {
                type_: 99,
                len: 15,
                max: 16384
            }
        ));
        assert_eq!(
            e.to_string(),
            "bad imsg header: type 99 with length 15, not within 16..=16384"
        );
        // The message before the bad header is still delivered, then the
        // error, on every call.
        assert_eq!(imsg_get(&mut b).unwrap().unwrap().data, b"good");
        assert!(matches!(imsg_get(&mut b), Err(ImsgError::BadLength { .. })));
        assert!(matches!(imsg_get(&mut b), Err(ImsgError::BadLength { .. })));
        assert!(matches!(
            imsgbuf_read(&mut b),
            Err(ImsgError::BadLength { .. })
        ));
    }

    #[test]
    fn received_length_16385_is_a_framing_error() {
        let (_b, r) = receive_raw_header(16385);
        assert!(matches!(r, Err(ImsgError::BadLength { len: 16385, .. })));
        // The fd mark is not part of the length.
        let (_b, r) = receive_raw_header(16385 | IMSG_FD_MARK);
        assert!(matches!(r, Err(ImsgError::BadLength { len: 16385, .. })));
        let (_b, r) = receive_raw_header(u32::MAX);
        assert!(matches!(r, Err(ImsgError::BadLength { .. })));
    }

    #[test]
    fn received_lengths_16_and_16384_are_accepted() {
        let (mut b, mut raw) = raw_pair();
        let mut bytes = hdr_bytes(1, 16, 0, 0);
        bytes.extend(hdr_bytes(2, 16384, 0, 0));
        bytes.resize(bytes.len() + 16384 - 16, 0xaa);
        raw.write_all(&bytes).unwrap();
        assert_eq!(imsg_get_len(&recv(&mut b)), 0);
        assert_eq!(imsg_get_len(&recv(&mut b)), 16384 - 16);
    }

    #[test]
    fn set_maxsize_refuses_less_than_a_header_and_the_fd_mark() {
        let (mut a, _b) = pair();
        assert!(imsgbuf_set_maxsize(&mut a, 15).is_err());
        assert!(imsgbuf_set_maxsize(&mut a, IMSG_FD_MARK | 100).is_err());
        imsgbuf_set_maxsize(&mut a, 16).unwrap();
        imsg_compose(&mut a, 1, 0, 0, None, b"").unwrap();
        assert!(imsg_compose(&mut a, 1, 0, 0, None, b"x").is_err());
    }

    #[test]
    fn passed_fd_arrives_close_on_exec_and_works() {
        let (mut a, mut b) = pair();
        let (mut r, w) = pipe();
        imsg_compose(&mut a, 1, 0, 0, Some(w), b"fd").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let mut m = recv(&mut b);
        assert_eq!(m.data, b"fd");
        let fd = imsg_get_fd(&mut m).unwrap();
        assert!(socket::is_cloexec(fd.as_fd()).unwrap());
        // Our copy was closed once sent: EOF comes when the receiver's is.
        assert_eq!(write_through(fd, &mut r, "via imsg"), "via imsg");
    }

    #[test]
    fn fds_stay_with_their_messages_when_interleaved() {
        let (mut a, mut b) = pair();
        let mut readers = Vec::new();
        for i in 0..12u32 {
            let fd = if i % 3 != 1 {
                let (r, w) = pipe();
                readers.push((i, r));
                Some(w)
            } else {
                None
            };
            imsg_compose(&mut a, i, 0, 0, fd, &i.to_ne_bytes()).unwrap();
        }
        imsgbuf_flush(&mut a).unwrap();
        let mut readers = readers.into_iter();
        for i in 0..12u32 {
            let mut m = recv(&mut b);
            assert_eq!(m.hdr.type_, i);
            match imsg_get_fd(&mut m) {
                Some(fd) => {
                    let (j, mut r) = readers.next().unwrap();
                    assert_eq!(j, i);
                    let text = format!("message {i}");
                    assert_eq!(write_through(fd, &mut r, &text), text);
                }
                None => assert_eq!(i % 3, 1),
            }
        }
        assert!(readers.next().is_none());
    }

    #[test]
    fn fd_with_an_unmarked_header_is_closed_and_marked_header_without_fd_gets_none() {
        let (mut b, raw) = raw_pair();
        let (mut r, w) = pipe();
        let raw = OwnedFd::from(raw);
        let plain = hdr_bytes(1, 16, 0, 0);
        socket::sendmsg_fd(raw.as_fd(), &[IoSlice::new(&plain)], Some(w.as_fd())).unwrap();
        drop(w);
        let marked = hdr_bytes(2, 16 | IMSG_FD_MARK, 0, 0);
        socket::sendmsg_fd(raw.as_fd(), &[IoSlice::new(&marked)], None).unwrap();
        let m1 = recv(&mut b);
        let m2 = recv(&mut b);
        assert_eq!((m1.hdr.type_, m1.fd.is_none()), (1, true));
        assert_eq!((m2.hdr.type_, m2.fd.is_none(), m2.hdr.len), (2, true, 16));
        // The stray descriptor was closed: the pipe has no writer left.
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "");
    }

    #[test]
    fn fd_that_arrives_with_part_of_its_header_waits_for_the_rest() {
        // 65530 bytes of messages, then one with a descriptor: one read
        // fills the 65535-byte buffer with the first 5 bytes of the last
        // header, and the kernel hands over its descriptor with them. C's
        // msgbuf_read closes it there; it must wait for its header.
        let (mut a, mut b) = pair();
        let (mut r, w) = pipe();
        let big = vec![7u8; MAX_IMSGSIZE - IMSG_HEADER_SIZE];
        for _ in 0..3 {
            imsg_compose(&mut a, 1, 0, 0, None, &big).unwrap();
        }
        imsg_compose(&mut a, 2, 0, 0, None, &big[..65530 - 3 * MAX_IMSGSIZE - 16]).unwrap();
        imsg_compose(&mut a, 3, 0, 0, Some(w), b"data").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        assert_eq!(
            imsgbuf_read(&mut b).unwrap(),
            ReadResult::Data(IBUF_READ_SIZE)
        );
        for type_ in [1, 1, 1, 2] {
            assert_eq!(imsg_get(&mut b).unwrap().unwrap().hdr.type_, type_);
        }
        assert!(imsg_get(&mut b).unwrap().is_none());
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(15));
        let mut m = imsg_get(&mut b).unwrap().unwrap();
        assert_eq!((m.hdr.type_, m.data.as_slice()), (3, &b"data"[..]));
        let fd = imsg_get_fd(&mut m).unwrap();
        assert_eq!(write_through(fd, &mut r, "split"), "split");
    }

    #[test]
    fn fd_is_not_passed_unless_both_sides_allow_it() {
        // The sender does not: the message comes without it. (A receiver
        // that takes none refuses the peer: see the test below.)
        let (a, b) = socket::socketpair().unwrap();
        let mut a = imsgbuf_init(a).unwrap();
        let mut b = imsgbuf_init(b).unwrap();
        imsgbuf_allow_fdpass(&mut b);
        let (mut r, w) = pipe();
        imsg_compose(&mut a, 1, 0, 0, Some(w), b"x").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        let m = recv(&mut b);
        assert_eq!(m.data, b"x");
        assert!(m.fd.is_none());
        // No copy of the write end is left open anywhere.
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "");
    }

    #[test]
    fn fd_sent_to_a_side_that_takes_none_is_refused() {
        let (a, b) = socket::socketpair().unwrap();
        let mut a = imsgbuf_init(a).unwrap();
        let mut b = imsgbuf_init(b).unwrap();
        imsgbuf_allow_fdpass(&mut a);
        let (mut r, w) = pipe();
        imsg_compose(&mut a, 1, 0, 0, Some(w), b"x").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        assert!(matches!(imsgbuf_read(&mut b), Err(ImsgError::FdRefused)));
        // The message is not taken, and the fault stays.
        assert!(!matches!(imsg_get(&mut b), Ok(Some(_))));
        assert!(matches!(imsgbuf_read(&mut b), Err(ImsgError::FdRefused)));
        // The kernel closed the descriptor: no copy of the write end left.
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "");
    }

    #[test]
    fn empty_socket_read_would_block() {
        let (_a, mut b) = pair();
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::WouldBlock);
        assert!(!imsgbuf_fd_starved(&b));
    }

    #[test]
    fn peer_closing_between_messages_is_a_clean_close() {
        let (mut a, mut b) = pair();
        imsg_compose(&mut a, 1, 0, 0, None, b"last").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        drop(a);
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(20));
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Closed);
        assert_eq!(imsg_get(&mut b).unwrap().unwrap().data, b"last");
    }

    #[test]
    fn peer_closing_mid_header_is_reported_with_the_partial_message() {
        let (mut b, mut raw) = raw_pair();
        raw.write_all(&hdr_bytes(1, 20, 0, 0)[..8]).unwrap();
        drop(raw);
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(8));
        assert_eq!(
            imsgbuf_read(&mut b).unwrap(),
            ReadResult::ClosedMidMessage { pending: 8 }
        );
        assert!(imsg_get(&mut b).unwrap().is_none());
    }

    #[test]
    fn peer_closing_mid_payload_is_reported_with_the_partial_message() {
        let (mut b, mut raw) = raw_pair();
        let mut bytes = hdr_bytes(1, 16, 0, 0);
        bytes.extend(hdr_bytes(2, 100, 0, 0));
        bytes.extend_from_slice(&[0; 10]);
        raw.write_all(&bytes).unwrap();
        drop(raw);
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(42));
        assert_eq!(
            imsgbuf_read(&mut b).unwrap(),
            ReadResult::ClosedMidMessage { pending: 26 }
        );
        assert_eq!(imsg_get(&mut b).unwrap().unwrap().hdr.type_, 1);
        assert!(imsg_get(&mut b).unwrap().is_none());
    }

    #[test]
    fn write_to_a_full_socket_keeps_the_rest_queued() {
        let (mut a, mut b) = pair();
        let data = vec![0x55u8; 16000];
        for i in 0..200u32 {
            imsg_compose(&mut a, i, 0, 0, None, &data).unwrap();
        }
        imsgbuf_write(&mut a).unwrap();
        imsgbuf_write(&mut a).unwrap();
        let left = imsgbuf_queuelen(&a);
        assert!(left > 0 && left < 200, "{left} left");
        let mut next = 0;
        while next < 200 {
            imsgbuf_write(&mut a).unwrap();
            let _ = imsgbuf_read(&mut b).unwrap();
            while let Some(m) = imsg_get(&mut b).unwrap() {
                assert_eq!((m.hdr.type_, m.data.len()), (next, 16000));
                next += 1;
            }
        }
        assert_eq!(imsgbuf_queuelen(&a), 0);
    }

    #[test]
    fn write_to_a_closed_peer_is_an_error() {
        let (mut a, b) = pair();
        drop(b);
        imsg_compose(&mut a, 1, 0, 0, None, b"lost").unwrap();
        assert!(matches!(imsgbuf_write(&mut a), Err(ImsgError::Io(_))));
        assert!(matches!(imsgbuf_flush(&mut a), Err(ImsgError::Io(_))));
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn flush_writes_a_queue_larger_than_the_socket_buffer_while_peer_drains() {
        const N: u32 = 300;
        let (mut a, mut b) = pair();
        let mut readers = Vec::new();
        for i in 0..N {
            let fd = if i % 37 == 0 {
                let (r, w) = pipe();
                readers.push(r);
                Some(w)
            } else {
                None
            };
            let data = vec![i as u8; 16000 + (i as usize % 300)];
            imsg_compose(&mut a, i, i, 0, fd, &data).unwrap();
        }
        let reader = std::thread::spawn(move || {
            let mut fds = Vec::new();
            for i in 0..N {
                let mut m = recv(&mut b);
                assert_eq!(m.hdr.type_, i);
                assert_eq!(m.data, vec![i as u8; 16000 + (i as usize % 300)]);
                if let Some(fd) = imsg_get_fd(&mut m) {
                    fds.push((i, fd));
                }
            }
            fds
        });
        imsgbuf_flush(&mut a).unwrap();
        assert_eq!(imsgbuf_queuelen(&a), 0);
        let fds = reader.join().unwrap();
        assert_eq!(fds.len(), readers.len());
        for ((i, fd), mut r) in fds.into_iter().zip(readers) {
            assert_eq!(i % 37, 0);
            let text = format!("fd of {i}");
            assert_eq!(write_through(fd, &mut r, &text), text);
        }
    }

    #[test]
    fn clear_drops_queued_and_received_messages() {
        let (mut a, mut b) = pair();
        imsg_compose(&mut a, 1, 0, 0, None, b"x").unwrap();
        imsgbuf_flush(&mut a).unwrap();
        imsg_compose(&mut a, 2, 0, 0, None, b"y").unwrap();
        imsgbuf_clear(&mut a);
        assert_eq!(imsgbuf_queuelen(&a), 0);
        assert!(matches!(imsgbuf_read(&mut b), Ok(ReadResult::Data(17))));
        imsgbuf_clear(&mut b);
        assert!(imsg_get(&mut b).unwrap().is_none());
    }

    const FD_EXHAUSTION_CHILD: &str = "ipc::imsg::tests::fd_exhaustion_child";

    #[test]
    fn fd_exhaustion_defers_the_read_until_there_is_room_in_child_process() {
        run_test_in_child(FD_EXHAUSTION_CHILD);
    }

    /// Runs only in the child started by the test above: it lowers the
    /// descriptor limit and fills the table, which would break the tests
    /// running in parallel.
    #[test]
    #[ignore = "run by fd_exhaustion_defers_the_read_until_there_is_room_in_child_process"]
    fn fd_exhaustion_child() {
        if !is_test_child(FD_EXHAUSTION_CHILD) {
            return;
        }
        let (mut a, mut b) = pair();
        let (mut r, w) = pipe();
        imsg_compose(&mut a, 1, 0, 0, None, b"before").unwrap();
        imsg_compose(&mut a, 2, 0, 0, Some(w), b"with fd").unwrap();
        imsg_compose(&mut a, 3, 0, 0, None, b"after").unwrap();
        imsgbuf_flush(&mut a).unwrap();

        let open = socket::getdtablecount().unwrap();
        socket::setrlimit_nofile(open as u64 + 8).unwrap();
        let mut fill = Vec::new();
        while socket::fd_room(b.as_fd(), 1).unwrap() {
            fill.push(File::open("/dev/null").unwrap());
        }

        // No room: nothing is read, nothing is lost.
        assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::WouldBlock);
        assert!(imsgbuf_fd_starved(&b));
        assert!(imsg_get(&mut b).unwrap().is_none());
        // Room for fewer than one receive may bring is still no room.
        for _ in 1..socket::RECV_MAX_FDS {
            fill.pop();
            assert_eq!(imsgbuf_read(&mut b).unwrap(), ReadResult::WouldBlock);
        }
        fill.pop();

        let mut got = Vec::new();
        while got.len() < 3 {
            assert!(matches!(imsgbuf_read(&mut b).unwrap(), ReadResult::Data(_)));
            assert!(!imsgbuf_fd_starved(&b));
            while let Some(m) = imsg_get(&mut b).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got[0].data, b"before");
        assert!(got[0].fd.is_none() && got[2].fd.is_none());
        assert_eq!(got[2].data, b"after");
        let fd = imsg_get_fd(&mut got[1]).unwrap();
        drop(fill);
        assert_eq!(write_through(fd, &mut r, "intact"), "intact");
    }
}
