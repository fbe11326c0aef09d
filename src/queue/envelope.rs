//! envelope.c: the envelope, one recipient of one message, and its text
//! form (OpenSMTPD envelope.c 1.52). The text form is both what the queue
//! writes to disk and what processes pass each other (m_add_envelope), so
//! it must stay byte for byte OpenSMTPD's.
//!
//! So far the type (struct envelope of smtpd.h and the enums of
//! smtpd-api.h it uses); loading and dumping follow.

use std::net::SocketAddr;

use bitflags::bitflags;

use crate::util::mailaddr::Mailaddr;

/// SMTPD_ENVELOPE_VERSION: the text format's version.
pub const SMTPD_ENVELOPE_VERSION: u32 = 3;

/// DSN_ENVID_LEN, DSN_ORCPT_LEN: the longest ENVID and ORCPT kept.
pub const DSN_ENVID_LEN: usize = 100;
pub const DSN_ORCPT_LEN: usize = 500;

bitflags! {
    /// enum envelope_flags. The first three are saved on disk; the others
    /// are the scheduler's run state.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EnvelopeFlags: u32 {
        const EF_AUTHENTICATED = 0x01;
        const EF_BOUNCE = 0x02;
        /// An internal expansion forward.
        const EF_INTERNAL = 0x04;
        const EF_PENDING = 0x10;
        const EF_INFLIGHT = 0x20;
        const EF_SUSPEND = 0x40;
        const EF_HOLD = 0x80;
    }
}

bitflags! {
    /// The DSN NOTIFY= values (DSN_SUCCESS ... DSN_NEVER).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DsnNotify: u8 {
        const DSN_SUCCESS = 0x01;
        const DSN_FAILURE = 0x02;
        const DSN_DELAY = 0x04;
        const DSN_NEVER = 0x08;
    }
}

/// enum delivery_type: who takes the envelope next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryType {
    /// D_MDA: a local delivery agent.
    #[default]
    Mda,
    /// D_MTA: relaying to another server.
    Mta,
    /// D_BOUNCE: a bounce or warning to the sender.
    Bounce,
}

/// enum bounce_type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BounceType {
    #[default]
    Failed,
    Delayed,
    Delivered,
}

/// enum dsn_ret: RET= of MAIL FROM (None: not given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnRet {
    /// DSN_RETFULL.
    Full = 1,
    /// DSN_RETHDRS.
    Hdrs = 2,
}

/// struct delivery_bounce: what a bounce envelope says about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryBounce {
    pub type_: BounceType,
    pub delay: i64,
    pub ttl: i64,
    pub dsn_ret: Option<DsnRet>,
    pub mta_without_dsn: bool,
}

/// The peer of a session: an IP address and port, or the local socket
/// (AF_LOCAL in C's sockaddr_storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerAddr {
    /// No address (AF_UNSPEC): an envelope made inside smtpd.
    #[default]
    Unspec,
    Inet(SocketAddr),
    Local,
}

/// struct envelope. Strings stand for C's fixed `char[]` fields; the text
/// form refuses what would not fit them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The name of the action (dispatcher) that delivers it.
    pub dispatcher: String,
    pub tag: String,
    pub version: u32,
    pub id: u64,
    pub flags: EnvelopeFlags,
    /// The server name the message was received under.
    pub smtpname: String,
    pub helo: String,
    /// The client's host name (rDNS, or its address in brackets).
    pub hostname: String,
    /// The authenticated user, if any.
    pub username: String,
    /// The last error, for bounces and `smtpctl show queue`.
    pub errorline: String,
    pub ss: PeerAddr,
    pub sender: Mailaddr,
    pub rcpt: Mailaddr,
    pub dest: Mailaddr,
    pub mda_user: String,
    pub mda_subaddress: String,
    pub mda_exec: String,
    pub type_: DeliveryType,
    /// C's `agent.bounce`, meaningful for D_BOUNCE.
    pub agent_bounce: DeliveryBounce,
    pub retry: u16,
    pub creation: i64,
    pub ttl: i64,
    pub lasttry: i64,
    pub nexttry: i64,
    pub lastbounce: i64,
    pub dsn_orcpt: String,
    pub dsn_envid: String,
    pub dsn_notify: DsnNotify,
    pub dsn_ret: Option<DsnRet>,
    pub esc_class: u8,
    pub esc_code: u8,
}

/// evpid_to_msgid(): the message id is the envelope id's top half.
pub fn evpid_to_msgid(evpid: u64) -> u32 {
    (evpid >> 32) as u32
}

/// msgid_to_evpid(): the first envelope id of a message (low half 0).
pub fn msgid_to_evpid(msgid: u32) -> u64 {
    u64::from(msgid) << 32
}
