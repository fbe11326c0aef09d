//! Network configuration lookups: interface addresses, blocking name
//! resolution (configuration time only; the daemons resolve through the
//! asynchronous resolver), and the services database.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use super::cstring;

/// Address families as `listen on ... inet4|inet6` restricts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Unspec,
    Inet4,
    Inet6,
}

impl Family {
    fn to_af(self) -> libc::c_int {
        match self {
            Family::Unspec => libc::AF_UNSPEC,
            Family::Inet4 => libc::AF_INET,
            Family::Inet6 => libc::AF_INET6,
        }
    }

    /// Whether `addr` belongs to this family (`Unspec` admits both).
    pub fn admits(self, addr: &IpAddr) -> bool {
        match self {
            Family::Unspec => true,
            Family::Inet4 => addr.is_ipv4(),
            Family::Inet6 => addr.is_ipv6(),
        }
    }
}

/// One IPv4 or IPv6 address of a network interface, as `getifaddrs(3)`
/// lists it. Entries of other families (link layer) are left out.
#[derive(Clone, Debug)]
pub struct IfAddr {
    pub name: String,
    pub addr: SocketAddr,
}

/// Reads a `sockaddr` of family `AF_INET` or `AF_INET6`.
///
/// # Safety
/// `sa` must be null or point to a socket address whose length matches
/// its `sa_family`, as getifaddrs(3) and getaddrinfo(3) guarantee.
unsafe fn sockaddr_to_std(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: sa is non-null and points to at least a sockaddr header.
    match libc::c_int::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; read_unaligned
            // because the C library gives no alignment promise.
            let sin = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Lists the IPv4 and IPv6 addresses of every interface.
pub fn getifaddrs() -> io::Result<Vec<IfAddr>> {
    let mut ifap: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: ifap is a valid out-pointer; on success it owns a list that
    // we release with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut ifap) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: p is an element of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        // SAFETY: ifa_addr is null or a valid sockaddr for its family.
        if let Some(addr) = unsafe { sockaddr_to_std(ifa.ifa_addr) } {
            let addr = kame_unembed(addr);
            // SAFETY: ifa_name is a NUL-terminated interface name.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            out.push(IfAddr {
                name: name.to_string_lossy().into_owned(),
                addr,
            });
        }
        p = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
}

/// OpenBSD's kernel (KAME) hands out a link-local address with its
/// scope embedded in the second 16-bit word and sin6_scope_id 0; bind(2)
/// wants the word cleared and the scope in sin6_scope_id, as C's
/// interface() in parse.y rewrites it. Linux gives the scope already.
fn kame_unembed(addr: SocketAddr) -> SocketAddr {
    let SocketAddr::V6(sa) = addr else {
        return addr;
    };
    let mut seg = sa.ip().segments();
    let scoped =
        seg[0] & 0xffc0 == 0xfe80 || seg[0] & 0xff0f == 0xff02 || seg[0] & 0xff0f == 0xff01;
    if !cfg!(target_os = "openbsd") || !scoped || sa.scope_id() != 0 {
        return addr;
    }
    let scope = u32::from(seg[1]);
    seg[1] = 0;
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(seg),
        sa.port(),
        sa.flowinfo(),
        scope,
    ))
}

/// A getaddrinfo(3) failure, with the C library's own description.
#[derive(Debug)]
pub struct GaiError {
    pub code: libc::c_int,
    pub msg: String,
}

impl GaiError {
    /// The name has no address (or not yet): OpenSMTPD's host_dns treats
    /// these as "not a host name" rather than as errors.
    pub fn is_no_name(&self) -> bool {
        matches!(
            self.code,
            libc::EAI_AGAIN | libc::EAI_NODATA | libc::EAI_NONAME
        )
    }
}

impl std::fmt::Display for GaiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

fn gai_error(code: libc::c_int) -> GaiError {
    let msg = if code == libc::EAI_SYSTEM {
        io::Error::last_os_error().to_string()
    } else {
        gai_strerror(code)
    };
    GaiError { code, msg }
}

/// The C library's text for a getaddrinfo error code, as OpenSMTPD logs
/// it.
pub fn gai_strerror(code: libc::c_int) -> String {
    // SAFETY: gai_strerror returns a pointer to a static string, for any
    // code ("Unknown error" for codes it does not know).
    unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// What a blocking getaddrinfo(3) call found for a name.
pub struct AddrInfo {
    pub addrs: Vec<IpAddr>,
    pub canonname: Option<String>,
}

/// Blocking getaddrinfo(3) for stream sockets, as the parent uses it at
/// configuration time (never inside an event loop). `addrconfig` asks for
/// `AI_ADDRCONFIG`, `canonname` for `AI_CANONNAME`.
pub fn getaddrinfo(
    host: &str,
    family: Family,
    addrconfig: bool,
    canonname: bool,
) -> Result<AddrInfo, GaiError> {
    let chost = cstring(host).map_err(|_| GaiError {
        code: libc::EAI_NONAME,
        msg: "name contains a NUL byte".into(),
    })?;
    // SAFETY: an all-zero addrinfo is the documented way to start hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family.to_af();
    hints.ai_socktype = libc::SOCK_STREAM;
    if addrconfig {
        hints.ai_flags |= libc::AI_ADDRCONFIG;
    }
    if canonname {
        hints.ai_flags |= libc::AI_CANONNAME;
    }
    let mut res: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: chost is NUL-terminated, hints is initialised, res is a valid
    // out-pointer whose list we free below.
    let r = unsafe { libc::getaddrinfo(chost.as_ptr(), ptr::null(), &hints, &mut res) };
    if r != 0 {
        return Err(gai_error(r));
    }
    let mut out = AddrInfo {
        addrs: Vec::new(),
        canonname: None,
    };
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p is an element of the list getaddrinfo returned.
        let ai = unsafe { &*p };
        if out.canonname.is_none() && !ai.ai_canonname.is_null() {
            // SAFETY: ai_canonname is a NUL-terminated string when set.
            let name = unsafe { CStr::from_ptr(ai.ai_canonname) };
            out.canonname = Some(name.to_string_lossy().into_owned());
        }
        // SAFETY: ai_addr is a valid sockaddr of ai_addrlen bytes.
        if let Some(sa) = unsafe { sockaddr_to_std(ai.ai_addr) } {
            out.addrs.push(sa.ip());
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from getaddrinfo and is freed exactly once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// The TCP port of a service name from the services database, as
/// `getservbyname(name, "tcp")` finds it.
pub fn getservbyname_tcp(name: &str) -> Option<u16> {
    getservbyname(name, "tcp")
}

/// The port of a service name for protocol `proto` ("tcp", "udp") from
/// the services database.
pub fn getservbyname(name: &str, proto: &str) -> Option<u16> {
    let cname = cstring(name).ok()?;
    let proto = cstring(proto).ok()?;
    // SAFETY: both arguments are NUL-terminated; the result points to
    // static storage that we copy out of before any other netdb call.
    let se = unsafe { libc::getservbyname(cname.as_ptr(), proto.as_ptr()) };
    if se.is_null() {
        return None;
    }
    // SAFETY: se is non-null and points to a servent.
    let port = unsafe { (*se).s_port };
    // s_port holds the port in network byte order in its low 16 bits.
    Some(u16::from_be(port as u16))
}

/// The service name of `port` for protocol `proto` from the services
/// database, as `getservbyport(3)` finds it.
pub fn getservbyport(port: u16, proto: &str) -> Option<String> {
    let proto = cstring(proto).ok()?;
    // s_port and the argument hold the port in network byte order.
    let nport = libc::c_int::from(port.to_be());
    // SAFETY: proto is NUL-terminated; the result points to static
    // storage that we copy out of before any other netdb call.
    let se = unsafe { libc::getservbyport(nport, proto.as_ptr()) };
    if se.is_null() {
        return None;
    }
    // SAFETY: se is non-null; s_name is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr((*se).s_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The index of the interface named `name`, for IPv6 scoped addresses
/// (`fe80::1%em0`); None when there is no such interface.
pub fn if_nametoindex(name: &str) -> Option<u32> {
    let cname = cstring(name).ok()?;
    // SAFETY: cname is NUL-terminated; the call only reads it.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of the interface with index `index`, for printing IPv6
/// link-local addresses as getnameinfo(3) does (`fe80::1%em0`).
pub fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Whether interface `ifname` is a member of interface group `group`.
///
/// Interface groups (`egress`, `lo`, ...) exist on OpenBSD only; elsewhere
/// no interface belongs to any group.
#[cfg(not(target_os = "openbsd"))]
pub fn is_if_in_group(_ifname: &str, _group: &str) -> io::Result<bool> {
    Ok(false)
}

#[cfg(target_os = "openbsd")]
mod ifgroup {
    // <net/if.h>: struct ifg_req and struct ifgroupreq, which the libc
    // crate does not carry.
    #[repr(C)]
    pub struct IfgReq {
        pub ifgrq_group: [libc::c_char; libc::IFNAMSIZ],
    }
    #[repr(C)]
    pub struct IfGroupReq {
        pub ifgr_name: [libc::c_char; libc::IFNAMSIZ],
        pub ifgr_len: libc::c_uint,
        pub ifgr_groups: *mut IfgReq,
    }
    // _IOWR('i', 136, struct ifgroupreq)
    pub const SIOCGIFGROUP: libc::c_ulong = 0xc0000000
        | ((std::mem::size_of::<IfGroupReq>() as libc::c_ulong & 0x1fff) << 16)
        | ((b'i' as libc::c_ulong) << 8)
        | 136;
}

#[cfg(target_os = "openbsd")]
pub fn is_if_in_group(ifname: &str, group: &str) -> io::Result<bool> {
    use ifgroup::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: socket has no memory arguments; the fd goes straight into
    // an OwnedFd so that it is closed on every path.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a fresh descriptor that nothing else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: the request is plain data, all-zero is its initial state.
    let mut ifgr: IfGroupReq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, b) in ifgr.ifgr_name.iter_mut().zip(name) {
        *d = *b as libc::c_char;
    }
    // SAFETY: ifgr is a valid ifgroupreq; with ifgr_groups null the kernel
    // only reports the length it needs.
    if unsafe { libc::ioctl(s.as_raw_fd(), SIOCGIFGROUP, &mut ifgr) } == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOTTY) => Ok(false),
            _ => Err(e),
        };
    }
    let n = ifgr.ifgr_len as usize / std::mem::size_of::<IfgReq>();
    let mut groups: Vec<IfgReq> = (0..n)
        .map(|_| IfgReq {
            ifgrq_group: [0; libc::IFNAMSIZ],
        })
        .collect();
    ifgr.ifgr_groups = groups.as_mut_ptr();
    // SAFETY: ifgr_groups points to ifgr_len bytes of IfgReq entries.
    if unsafe { libc::ioctl(s.as_raw_fd(), SIOCGIFGROUP, &mut ifgr) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(groups.iter().any(|g| {
        // SAFETY: the kernel NUL-terminates each group name.
        let gname = unsafe { CStr::from_ptr(g.ifgrq_group.as_ptr()) };
        gname.to_bytes() == group.as_bytes()
    }))
}
