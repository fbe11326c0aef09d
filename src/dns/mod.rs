//! DNS: the asynchronous resolver that lka runs in its event loop (asr's
//! role), the lookups it serves to the other processes (resolver.c), the
//! MTA's MX and host lookups (dns.c), and the message codec under them
//! (unpack_dns.c).

pub mod asr;
#[allow(clippy::module_inception)]
pub mod dns;
pub mod event_asr;
pub mod getaddrinfo_async;
pub mod gethostnamadr_async;
pub mod getnameinfo_async;
pub mod res_search_async;
pub mod res_send_async;
pub mod resolver;
pub mod unpack_dns;
