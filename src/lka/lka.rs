//! lka.c: the lookup agent, which reads tables, matches rules, expands
//! aliases and .forward files, resolves names and runs filters
//! (OpenSMTPD lka.c 1.253).
//!
//! So far the process itself: privilege drop (no chroot: it reads the
//! tables where they are), its channels, the messages every process takes,
//! the narrowing of its pledge once configured, and the lookups it
//! resolves for the dispatcher (resolver.c and dns.c).

use crate::config::config::config_peer;
use crate::dns::asr::Asr;
use crate::dns::dns::{dns_imsg, Dns, DnsOwner};
use crate::dns::event_asr::{AsrOwner, EventAsr};
use crate::dns::resolver::resolver_dispatch_request;
use crate::io::event::{EvFlags, EventBase};
use crate::ipc::imsg::Imsg;
use crate::ipc::mproc::{mproc_disable, mproc_enable, ImsgType, ProcType};
use crate::pathnames::SMTPD_USER;
use crate::smtpd::{child_imsg_common, child_privdrop, imsg_to_str, Peers};
use crate::sys::process::exit_now;

pub struct Lka {
    peers: Peers,
    asr: EventAsr<Lka>,
    dns: Dns,
}

crate::impl_mproc_owner!(Lka, lka_imsg);

impl AsrOwner for Lka {
    fn event_asr(&mut self) -> &mut EventAsr<Lka> {
        &mut self.asr
    }
}

impl DnsOwner for Lka {
    fn dns(&mut self) -> &mut Dns {
        &mut self.dns
    }
}

impl Lka {
    /// The process state on its channels and resolver.
    pub fn new(peers: Peers, asr: Asr) -> Lka {
        Lka {
            peers,
            asr: EventAsr::new(asr),
            dns: Dns::default(),
        }
    }
}

/// lka_imsg().
fn lka_imsg(s: &mut Lka, base: &mut EventBase<Lka>, from: ProcType, imsg: Option<Imsg>) {
    use ImsgType::*;
    let Some(imsg) = imsg else { lka_shutdown() };
    let Some(imsg) = child_imsg_common(imsg) else {
        return;
    };
    match ImsgType::from_u32(imsg.hdr.type_) {
        Some(IMSG_GETADDRINFO | IMSG_GETNAMEINFO | IMSG_RES_QUERY) => {
            resolver_dispatch_request(s, base, from, &imsg)
        }
        Some(IMSG_MTA_DNS_HOST | IMSG_MTA_DNS_MX | IMSG_MTA_DNS_MX_PREFERENCE) => {
            dns_imsg(s, base, from, &imsg)
        }
        Some(ImsgType::IMSG_CONF_START) => {}
        Some(ImsgType::IMSG_CONF_END) => {
            // Filter and table processes are started by now: lka needs
            // proc and exec no longer.
            if let Err(e) =
                crate::sys::pledge::pledge("stdio rpath inet dns getpw recvfd sendfd", None)
            {
                fatal!(e, "pledge");
            }
            // Start fulfilling requests.
            let p = ProcType::PROC_DISPATCHER;
            mproc_enable(base, s.peers.p(p), p as u64);
        }
        _ => fatalx!("lka_imsg: unexpected {} imsg", imsg_to_str(imsg.hdr.type_)),
    }
}

/// lka_sig_handler(): reaps lka's own children (table processes).
fn lka_sig_handler(_s: &mut Lka, _base: &mut EventBase<Lka>, _sig: i32, _ev: EvFlags, _arg: u64) {
    while let Ok(Some(_)) = crate::sys::process::waitpid_any_nohang() {}
}

/// lka_shutdown().
fn lka_shutdown() -> ! {
    log_debug!("debug: lookup agent exiting");
    exit_now(0)
}

/// lka(): the process's main.
pub fn lka(mut peers: Peers) -> ! {
    child_privdrop("lka", &[SMTPD_USER], None, ProcType::PROC_LKA, true);
    let mut base = EventBase::new();
    let ev = base.signal_set(libc::SIGCHLD, lka_sig_handler, 0);
    if let Err(e) = base.event_add(ev, None) {
        fatal!(e, "signal_add");
    }
    use ProcType::*;
    for p in [PROC_PARENT, PROC_QUEUE, PROC_CONTROL, PROC_DISPATCHER] {
        config_peer(&mut base, &mut peers, p);
    }
    // Ignore the dispatcher until the configuration is complete.
    mproc_disable(peers.p(PROC_DISPATCHER));
    // proc and exec are revoked before serving requests.
    if let Err(e) =
        crate::sys::pledge::pledge("stdio rpath inet dns getpw recvfd sendfd proc exec", None)
    {
        fatal!(e, "pledge");
    }
    // resolv.conf is read now, where lka lives (it is not chrooted), and
    // again whenever it changes.
    let s = Lka::new(peers, Asr::new());
    lka_loop(s, base)
}

/// The event loop of a configured lka; tests run it on channels of their
/// own.
pub fn lka_loop(mut s: Lka, mut base: EventBase<Lka>) -> ! {
    if let Err(e) = base.event_dispatch(&mut s) {
        fatal!(e, "event_dispatch");
    }
    fatalx!("exited event loop")
}
