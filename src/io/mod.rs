//! I/O for the processes: the event loop (libevent's role).

pub mod event;
