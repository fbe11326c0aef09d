//! ioev.c: buffered, event-driven I/O on a connection (OpenSMTPD ioev.c
//! 1.49). An `Io` owns a socket, its input buffer and output queue; the
//! event loop reads and writes for it and tells its owner what happened
//! (IO_DATAIN, IO_LOWAT, IO_DISCONNECTED, IO_TIMEOUT, IO_ERROR).
//!
//! C re-registers the libevent event after every change (io_reload,
//! io_hold/io_release frames). Here the loop asks each turn what the io
//! waits for (event_set_dynamic): reading unless paused or in write mode,
//! writing while output is queued. The idle timeout counts from the last
//! activity, as C's re-armed timeout does, and is not effective while
//! the io waits for nothing (paused), as in C.
//!
//! TLS (io_connect_tls, io_accept_tls and the IO_TLSREADY event) comes with
//! the TLS issue; the seams are the `Stream` type and `IoEvent::TlsReady`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bitflags::bitflags;

use super::event::{EvFlags, EventBase, EventId};
use super::iobuf::{Iobuf, IOBUF_READ};
use crate::util::log::TRACE_IO;

/// What happened on an io (IO_CONNECTED ... IO_ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEvent {
    Connected,
    TlsReady,
    DataIn,
    LowAt,
    Disconnected,
    Timeout,
    Error,
}

/// io_strevent().
pub fn io_strevent(evt: IoEvent) -> &'static str {
    match evt {
        IoEvent::Connected => "IO_CONNECTED",
        IoEvent::TlsReady => "IO_TLSREADY",
        IoEvent::DataIn => "IO_DATAIN",
        IoEvent::LowAt => "IO_LOWAT",
        IoEvent::Disconnected => "IO_DISCONNECTED",
        IoEvent::Timeout => "IO_TIMEOUT",
        IoEvent::Error => "IO_ERROR",
    }
}

bitflags! {
    /// The io's mode and pauses (IO_READ, IO_WRITE, IO_PAUSE_IN,
    /// IO_PAUSE_OUT).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct IoFlags: u8 {
        const IO_PAUSE_IN = 0x01;
        const IO_PAUSE_OUT = 0x02;
        const IO_READ = 0x04;
        const IO_WRITE = 0x08;
    }
}

/// IO_IN and IO_OUT, the directions io_pause() and io_resume() take.
pub const IO_IN: IoFlags = IoFlags::IO_PAUSE_IN;
pub const IO_OUT: IoFlags = IoFlags::IO_PAUSE_OUT;

/// The socket under an io: TCP, a unix socket (local submission), or
/// the pipe to a delivery agent's stdin (the MDA), set non-blocking.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Pipe(std::fs::File),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Pipe(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Pipe(s) => s.write(buf),
        }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Pipe(s) => s.as_raw_fd(),
        }
    }
}

/// struct io.
#[derive(Debug)]
pub struct Io {
    sock: Option<Stream>,
    pub iobuf: Iobuf,
    flags: IoFlags,
    lowat: usize,
    timeout: Option<Duration>,
    ev: Option<EventId>,
    /// Why the last IO_ERROR happened; valid in its callback.
    error: Option<String>,
}

impl Default for Io {
    fn default() -> Self {
        Io::new()
    }
}

/// A process state whose connections are ios, each known by a key.
pub trait IoOwner: Sized {
    fn io(&mut self, key: u64) -> Option<&mut Io>;
    fn io_ref(&self, key: u64) -> Option<&Io>;
    /// What happened on the io `key`: the owner's callback (C's io->cb).
    fn io_callback(&mut self, base: &mut EventBase<Self>, key: u64, evt: IoEvent);
}

impl Io {
    /// io_new().
    pub fn new() -> Io {
        Io {
            sock: None,
            iobuf: Iobuf::new(0),
            flags: IoFlags::empty(),
            lowat: 0,
            timeout: None,
            ev: None,
            error: None,
        }
    }

    /// io_set_timeout(): the idle time after which IO_TIMEOUT comes.
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// io_set_lowat(): IO_LOWAT comes when the output queue drains to
    /// this many bytes.
    pub fn set_lowat(&mut self, lowat: usize) {
        self.lowat = lowat;
    }

    /// io_set_read(): half-duplex, reading.
    pub fn set_read(&mut self) {
        let mode = self.flags & (IoFlags::IO_READ | IoFlags::IO_WRITE);
        if !(mode.is_empty() || mode == IoFlags::IO_WRITE) {
            fatalx!("io_set_read: full-duplex or reading");
        }
        self.flags.remove(IoFlags::IO_WRITE);
        self.flags.insert(IoFlags::IO_READ);
    }

    /// io_set_write(): half-duplex, writing.
    pub fn set_write(&mut self) {
        let mode = self.flags & (IoFlags::IO_READ | IoFlags::IO_WRITE);
        if !(mode.is_empty() || mode == IoFlags::IO_READ) {
            fatalx!("io_set_write: full-duplex or writing");
        }
        self.flags.remove(IoFlags::IO_READ);
        self.flags.insert(IoFlags::IO_WRITE);
    }

    /// Whether the io is in write mode.
    pub fn is_writing(&self) -> bool {
        self.flags.contains(IoFlags::IO_WRITE)
    }

    /// io_pause().
    pub fn pause(&mut self, dir: IoFlags) {
        self.flags |= dir & (IO_IN | IO_OUT);
    }

    /// io_resume().
    pub fn resume(&mut self, dir: IoFlags) {
        self.flags &= !(dir & (IO_IN | IO_OUT));
    }

    /// io_paused().
    pub fn paused(&self, what: IoFlags) -> bool {
        self.flags & (IO_IN | IO_OUT) == what
    }

    /// io_write(): queues bytes for the peer.
    pub fn write(&mut self, data: &[u8]) {
        self.iobuf.queue(data);
    }

    /// io_print().
    pub fn print(&mut self, s: &str) {
        self.iobuf.queue(s.as_bytes());
    }

    /// io_queued().
    pub fn queued(&self) -> usize {
        self.iobuf.queued()
    }

    /// io_datalen().
    pub fn datalen(&self) -> usize {
        self.iobuf.len()
    }

    /// io_getline().
    pub fn getline(&mut self) -> Option<Vec<u8>> {
        self.iobuf.getline()
    }

    /// io_error().
    pub fn error(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }

    /// io_fileno().
    pub fn fileno(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, Stream::as_raw_fd)
    }

    /// io_strio(): the io, for traces.
    pub fn strio(&self) -> String {
        format!(
            "<io:{:p} fd={} to={} fl={} ib={} ob={}>",
            self,
            self.fileno(),
            self.timeout.map_or(-1, |t| t.as_millis() as i64),
            io_strflags(self.flags),
            self.datalen(),
            self.queued()
        )
    }

    /// What the loop waits for on this io now (io_reload()'s choice).
    fn interest(&self) -> EvFlags {
        let mut ev = EvFlags::empty();
        let reading = !self.flags.contains(IoFlags::IO_WRITE);
        let writing = !self.flags.contains(IoFlags::IO_READ);
        if reading && !self.flags.contains(IO_IN) && self.iobuf.left() > 0 {
            ev |= EvFlags::EV_READ;
        }
        if writing && !self.flags.contains(IO_OUT) && self.queued() > 0 {
            ev |= EvFlags::EV_WRITE;
        }
        ev
    }
}

/// io_strflags().
fn io_strflags(flags: IoFlags) -> String {
    let mut s = match flags & (IoFlags::IO_READ | IoFlags::IO_WRITE) {
        f if f == IoFlags::IO_READ => "R",
        f if f == IoFlags::IO_WRITE => "W",
        f if f.is_empty() => "rw",
        _ => "RW",
    }
    .to_string();
    if flags.contains(IO_IN) {
        s.push_str(",F_PI");
    }
    if flags.contains(IO_OUT) {
        s.push_str(",F_PO");
    }
    s
}

/// io_set_fd(): gives the io its socket and registers it in the loop
/// under `key`.
pub fn io_set_fd<S: IoOwner>(base: &mut EventBase<S>, io: &mut Io, sock: Stream, key: u64) {
    let fd = sock.as_raw_fd();
    io.sock = Some(sock);
    let ev = base.event_set_dynamic(fd, io_interest::<S>, io_dispatch::<S>, key);
    if let Err(e) = base.event_add(ev, io.timeout) {
        fatal!(e, "io_set_fd: event_add");
    }
    io.ev = Some(ev);
}

/// The io changes hands (C's io_set_callback on a live io): it is
/// registered again under its new owner's key.
pub fn io_rekey<S: IoOwner>(base: &mut EventBase<S>, io: &mut Io, key: u64) {
    if let Some(ev) = io.ev.take() {
        base.event_free(ev);
    }
    let fd = io.fileno();
    let ev = base.event_set_dynamic(fd, io_interest::<S>, io_dispatch::<S>, key);
    if let Err(e) = base.event_add(ev, io.timeout) {
        fatal!(e, "io_rekey: event_add");
    }
    io.ev = Some(ev);
}

/// io_free(): unregisters the io and closes its socket.
pub fn io_free<S>(base: &mut EventBase<S>, mut io: Io) {
    if let Some(ev) = io.ev.take() {
        base.event_free(ev);
    }
    io.sock = None;
}

fn io_interest<S: IoOwner>(s: &S, key: u64) -> EvFlags {
    s.io_ref(key).map_or(EvFlags::empty(), Io::interest)
}

/// io_dispatch(): the socket is ready, or idle for too long.
fn io_dispatch<S: IoOwner>(s: &mut S, base: &mut EventBase<S>, _fd: RawFd, ev: EvFlags, key: u64) {
    let Some(io) = s.io(key) else {
        return;
    };
    if ev == EvFlags::EV_TIMEOUT {
        // A paused io has no timeout, as C deletes its event.
        if io.interest().is_empty() {
            if let (Some(id), t) = (io.ev, io.timeout) {
                let _ = base.event_add(id, t);
            }
            return;
        }
        return io_callback(s, base, key, IoEvent::Timeout);
    }
    let w = io.queued();
    if ev.contains(EvFlags::EV_WRITE) && w > 0 {
        if let Some(evt) = io_write_out(io) {
            return io_callback(s, base, key, evt);
        }
        // IO_LOWAT when the queue crosses the low-water mark.
        if w > io.lowat && io.queued() <= io.lowat {
            io_callback(s, base, key, IoEvent::LowAt);
        }
    }
    if ev.contains(EvFlags::EV_READ) {
        let Some(io) = s.io(key) else {
            return;
        };
        // The io may have been paused or switched by the write callback.
        if !io.interest().contains(EvFlags::EV_READ) {
            return;
        }
        match io_read_in(io) {
            Ok(0) => {}
            Ok(_) => io_callback(s, base, key, IoEvent::DataIn),
            Err(evt) => io_callback(s, base, key, evt),
        }
    }
}

fn io_callback<S: IoOwner>(s: &mut S, base: &mut EventBase<S>, key: u64, evt: IoEvent) {
    if let Some(io) = s.io_ref(key) {
        log_trace!(TRACE_IO, "io: {}: {}", io_strevent(evt), io.strio());
    }
    s.io_callback(base, key, evt);
}

/// The write half of io_dispatch(): as much of the queue as the socket
/// takes. Some(event) when the connection ended or failed.
fn io_write_out(io: &mut Io) -> Option<IoEvent> {
    let sock = io.sock.as_mut()?;
    loop {
        match sock.write(io.iobuf.outq()) {
            Ok(0) => return Some(IoEvent::Disconnected),
            Ok(n) => {
                io.iobuf.drain(n);
                if io.iobuf.queued() == 0 {
                    return None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Some(IoEvent::Disconnected),
            Err(e) => {
                io.error = Some(crate::util::log::strerror(&e));
                return Some(IoEvent::Error);
            }
        }
    }
}

/// The read half of io_dispatch(): one read into the input buffer.
fn io_read_in(io: &mut Io) -> Result<usize, IoEvent> {
    let Some(sock) = io.sock.as_mut() else {
        return Ok(0);
    };
    loop {
        match io.iobuf.read_with(IOBUF_READ, |buf| sock.read(buf)) {
            Ok(0) => return Err(IoEvent::Disconnected),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                io.error = Some(crate::util::log::strerror(&e));
                return Err(IoEvent::Error);
            }
        }
    }
}
