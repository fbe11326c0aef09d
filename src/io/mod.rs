//! I/O for the processes: the event loop (libevent's role), TLS.

pub mod event;
pub mod iobuf;
pub mod ioev;
pub mod ssl;
