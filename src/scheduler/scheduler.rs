//! scheduler.c: the process that decides when each envelope is tried,
//! retried, warned about and expired (OpenSMTPD scheduler.c 1.62).
//!
//! So far the process itself: its backend chosen, chroot, privilege
//! drop, its channels. Envelopes arrive with the queue.

use crate::config::config::config_peer;
use crate::io::event::EventBase;
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::ProcType;
use crate::pathnames::{PATH_CHROOT, SMTPD_USER};
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Scheduler {
    peers: Peers,
}

crate::impl_mproc_owner!(Scheduler, scheduler_imsg);

/// scheduler_imsg().
fn scheduler_imsg(
    _s: &mut Scheduler,
    _base: &mut EventBase<Scheduler>,
    _from: ProcType,
    imsg: Option<Imsg>,
) {
    let Some(imsg) = imsg else {
        scheduler_shutdown()
    };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    fatalx!(
        "scheduler_imsg: unexpected {} imsg",
        imsg_to_str(imsg.hdr.type_)
    )
}

/// scheduler_shutdown().
fn scheduler_shutdown() -> ! {
    log_debug!("debug: scheduler agent exiting");
    exit_now(0)
}

/// scheduler(): the process's main.
pub fn scheduler(mut peers: Peers, backend: &str) -> ! {
    // scheduler_backend_lookup(): only the in-memory queue exists yet.
    if backend != "ramqueue" {
        fatalx!("cannot find scheduler backend \"{backend}\"");
    }
    child_privdrop(
        "scheduler",
        &[SMTPD_USER],
        Some(PATH_CHROOT),
        ProcType::PROC_SCHEDULER,
        false,
    );
    let mut base = EventBase::new();
    for p in [ProcType::PROC_CONTROL, ProcType::PROC_QUEUE] {
        config_peer(&mut base, &mut peers, p);
    }
    if let Err(e) = crate::sys::pledge::pledge("stdio", None) {
        fatal!(e, "pledge");
    }
    let mut s = Scheduler { peers };
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
