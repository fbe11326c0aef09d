//! queue.c: the process that owns the spool (OpenSMTPD queue.c 1.196).
//!
//! So far the process itself: chroot into the spool, privilege drop to
//! the queue user, its channels and the messages every process takes.
//! Messages and envelopes arrive with the receiving side.

use crate::config::config::config_peer;
use crate::io::event::EventBase;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::ProcType;
use crate::pathnames::{path_spool, SMTPD_QUEUE_USER, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Queue {
    peers: Peers,
}

crate::impl_mproc_owner!(Queue, queue_imsg);

/// queue_imsg().
fn queue_imsg(_s: &mut Queue, _base: &mut EventBase<Queue>, _from: ProcType, imsg: Option<Imsg>) {
    let Some(imsg) = imsg else { queue_shutdown() };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    fatalx!(
        "queue_imsg: unexpected {} imsg",
        imsg_to_str(imsg.hdr.type_)
    )
}

/// queue_shutdown().
fn queue_shutdown() -> ! {
    log_debug!("debug: queue agent exiting");
    exit_now(0)
}

/// queue(): the process's main.
pub fn queue(mut peers: Peers) -> ! {
    let spool = path_spool();
    child_privdrop(
        "queue",
        &[SMTPD_QUEUE_USER, SMTPD_USER],
        Some(&spool),
        ProcType::PROC_QUEUE,
        false,
    );
    let mut base = EventBase::new();
    use ProcType::*;
    for p in [
        PROC_PARENT,
        PROC_CONTROL,
        PROC_LKA,
        PROC_SCHEDULER,
        PROC_DISPATCHER,
    ] {
        config_peer(&mut base, &mut peers, p);
    }
    if let Err(e) = crate::sys::pledge::pledge("stdio rpath wpath cpath flock recvfd sendfd", None)
    {
        fatal!(e, "pledge");
    }
    let mut s = Queue { peers };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
