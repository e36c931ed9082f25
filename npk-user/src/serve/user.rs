//! The userspace inference server: the same protocol and the same `respond` (PlainLoop infer)
//! as the kernel server, over an ordinary UDP socket. Two I/O styles: one recvfrom/sendto
//! pair per request, or batches through recvmmsg/sendmmsg.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use npk_common::{
    infer::{PlainLoop, Scratch},
    model::Model,
    service::peer::IfAddr,
    service::wire::{MAX_REPLY_LEN, ServeCounters, respond},
};

use super::{ServeError, check_datagram, interface_addrs};

/// Requests longer than this are cut (and answered WRONG_FEATURE_COUNT: the longest valid
/// request is far shorter).
const RECV_BUF: usize = 2048;
/// How often a blocked receive wakes up to look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// The same for the kernel server's sockets ([`UserServer::bind_device`]), which are rarely
/// used: fewer wake-ups keep the kernel server's process nearly free of system calls.
const PASSED_STOP_POLL: Duration = Duration::from_secs(1);
/// How often the addresses the server answers at are read again.
const ADDRESS_REFRESH: Duration = Duration::from_secs(1);

/// Room for the IP_PKTINFO or IPV6_PKTINFO message of a datagram, aligned for cmsghdr.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 64]);

/// How the server moves datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// One recvfrom and one sendto per request.
    Plain,
    /// recvmmsg (up to `batch` datagrams, waiting for the first only) and one sendmmsg.
    Mmsg { batch: usize },
}

/// [`Io`] without its parameters: what `npk serve --io` chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoStyle {
    /// One recvfrom and one sendto per request.
    Plain,
    /// Batches through recvmmsg/sendmmsg.
    Mmsg,
}

impl IoStyle {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Mmsg => "mmsg",
        }
    }

    /// This style with `batch` datagrams per call where it batches.
    pub fn with_batch(self, batch: usize) -> Io {
        match self {
            Self::Plain => Io::Plain,
            Self::Mmsg => Io::Mmsg { batch },
        }
    }
}

impl Io {
    pub fn name(self) -> &'static str {
        self.style().name()
    }

    pub fn style(self) -> IoStyle {
        match self {
            Self::Plain => IoStyle::Plain,
            Self::Mmsg { .. } => IoStyle::Mmsg,
        }
    }
}

pub struct UserServer {
    socket: UdpSocket,
    model: Box<Model>,
    io: Io,
    scratch: Scratch,
    counters: ServeCounters,
    /// The interface whose addresses the server answers at; `None`: every interface's.
    iface: Option<String>,
    /// Those addresses (npk_common::service::peer), read again every [`ADDRESS_REFRESH`].
    local: Vec<IfAddr>,
    read_at: Instant,
}

impl UserServer {
    pub fn bind(addr: SocketAddr, model: Box<Model>, io: Io) -> Result<Self, ServeError> {
        if let Io::Mmsg { batch } = io
            && !(1..=1024).contains(&batch)
        {
            return Err(ServeError::Batch(batch));
        }
        let socket =
            UdpSocket::bind(addr).map_err(|e| ServeError::io(format!("binding {addr}"), e))?;
        socket
            .set_read_timeout(Some(STOP_POLL))
            .map_err(|e| ServeError::io("setting the receive timeout", e))?;
        super::grow_buffers(&socket);
        Self::new(socket, model, io, None)
    }

    fn new(
        socket: UdpSocket,
        model: Box<Model>,
        io: Io,
        iface: Option<&str>,
    ) -> Result<Self, ServeError> {
        enable_pktinfo(&socket)
            .map_err(|e| ServeError::io("asking for the destination addresses", e))?;
        let local = interface_addrs(iface).map_err(|e| {
            ServeError::io(
                format!("listing the addresses of {}", iface.unwrap_or("the host")),
                e,
            )
        })?;
        Ok(Self {
            socket,
            model,
            io,
            scratch: Scratch::new(),
            counters: bytemuck::Zeroable::zeroed(),
            iface: iface.map(str::to_string),
            local,
            read_at: Instant::now(),
        })
    }

    /// The kernel server's other half: one server per address of `iface` (IPv4, and IPv6
    /// but link-local), on `port`, receiving only from `iface` (SO_BINDTODEVICE). `npk_serve`
    /// passes what it cannot parse in XDP (IP fragments, IPv6 extension headers) to the stack;
    /// the stack reassembles it and these answer it with the same [`respond`], so that a
    /// request gets the same reply whatever its size or shape. Bound to the addresses, not the
    /// wildcard: userspace servers on the same port at other addresses keep working.
    pub fn bind_device(iface: &str, port: u16, model: &Model) -> Result<Vec<Self>, ServeError> {
        let addresses = interface_addrs(Some(iface))
            .map_err(|e| ServeError::io(format!("listing the addresses of {iface}"), e))?;
        addresses
            .iter()
            .filter_map(IfAddr::ip)
            .filter(|ip| !matches!(ip, IpAddr::V6(a) if a.is_unicast_link_local()))
            .map(|ip| {
                let addr = SocketAddr::new(ip, port);
                let socket = device_socket(iface, addr)
                    .map_err(|e| ServeError::io(format!("binding {addr} on {iface}"), e))?;
                socket
                    .set_read_timeout(Some(PASSED_STOP_POLL))
                    .map_err(|e| ServeError::io("setting the receive timeout", e))?;
                Self::new(socket, Box::new(*model), Io::Plain, Some(iface))
            })
            .collect()
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.socket
            .local_addr()
            .map_err(|e| ServeError::io("reading the socket address", e))
    }

    /// Serves until `stop` is set; returns the counters.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<ServeCounters, ServeError> {
        match self.io {
            Io::Plain => self.run_plain(stop)?,
            Io::Mmsg { batch } => self.run_mmsg(stop, batch)?,
        }
        Ok(self.counters)
    }

    /// Answers one request from `from` to `to` into `out`; returns the reply length, or
    /// `None` where no reply goes out (npk_common::service::peer's rule, or a reply longer than the
    /// request).
    fn answer(
        &mut self,
        request: &[u8],
        from: Option<IpAddr>,
        to: Option<IpAddr>,
        out: &mut [u8; MAX_REPLY_LEN],
    ) -> Option<usize> {
        if self.read_at.elapsed() >= ADDRESS_REFRESH {
            // On an error the last list stays.
            if let Ok(local) = interface_addrs(self.iface.as_deref()) {
                self.local = local;
            }
            self.read_at = Instant::now();
        }
        let (Some(from), Some(to)) = (from, to) else {
            self.counters.refused_address += 1;
            return None;
        };
        if check_datagram(from, to, &self.local).is_err() {
            self.counters.refused_address += 1;
            return None;
        }
        self.counters.requests += 1;
        let Some(n) = respond(
            request,
            Some(&self.model),
            &mut self.scratch,
            &mut PlainLoop,
            out,
        ) else {
            self.counters.refused_amplifying += 1;
            return None;
        };
        let status = u16::from_le_bytes([out[6], out[7]]) as usize;
        if let Some(c) = self.counters.replies.get_mut(status) {
            *c += 1;
        }
        Some(n)
    }

    fn run_plain(&mut self, stop: &AtomicBool) -> Result<(), ServeError> {
        let mut request = [0u8; RECV_BUF];
        let mut reply = [0u8; MAX_REPLY_LEN];
        let mut control = Control([0; 64]);
        // SAFETY (zeroed): plain C structs.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: request.as_mut_ptr().cast(),
            iov_len: RECV_BUF,
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        while !stop.load(Ordering::Relaxed) {
            msg.msg_name = (&raw mut from).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            msg.msg_control = (&raw mut control).cast();
            msg.msg_controllen = size_of::<Control>();
            // SAFETY: msg points at live buffers of the stated sizes.
            let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if is_transient(&e) {
                    continue;
                }
                return Err(ServeError::io("recvmsg", e));
            }
            let n = (n as usize).min(RECV_BUF);
            let source = socket_addr(&from);
            let to = destination(&msg);
            // SAFETY: recvmsg wrote the datagram's first n bytes.
            let datagram = unsafe { std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), n) };
            let Some(len) = self.answer(datagram, source.map(|s| s.ip()), to, &mut reply) else {
                continue;
            };
            let sent = source.is_some_and(|s| self.socket.send_to(&reply[..len], s).is_ok());
            if !sent {
                self.counters.tx_errors += 1;
            }
        }
        Ok(())
    }

    fn run_mmsg(&mut self, stop: &AtomicBool, batch: usize) -> Result<(), ServeError> {
        let fd = self.socket.as_raw_fd();
        let mut requests = vec![[0u8; RECV_BUF]; batch];
        let mut replies = vec![[0u8; MAX_REPLY_LEN]; batch];
        let mut controls = vec![Control([0; 64]); batch];
        // SAFETY (zeroed): sockaddr_storage, iovec and mmsghdr are plain C structs.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; batch];
        // The replies' addresses: only the requests answered get one, in order.
        let mut reply_addrs: Vec<libc::sockaddr_storage> =
            vec![unsafe { std::mem::zeroed() }; batch];
        let mut rx_iov: Vec<libc::iovec> = requests
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            })
            .collect();
        let mut tx_iov: Vec<libc::iovec> = replies
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 0,
            })
            .collect();
        let mut rx: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; batch];
        let mut tx: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; batch];
        for i in 0..batch {
            rx[i].msg_hdr.msg_iov = &mut rx_iov[i];
            rx[i].msg_hdr.msg_iovlen = 1;
            rx[i].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
            tx[i].msg_hdr.msg_iov = &mut tx_iov[i];
            tx[i].msg_hdr.msg_iovlen = 1;
            tx[i].msg_hdr.msg_name = (&raw mut reply_addrs[i]).cast();
        }
        while !stop.load(Ordering::Relaxed) {
            for (m, c) in rx.iter_mut().zip(controls.iter_mut()) {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                m.msg_hdr.msg_control = (c as *mut Control).cast();
                m.msg_hdr.msg_controllen = size_of::<Control>();
            }
            // SAFETY: every header points at live buffers of the stated sizes.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    rx.as_mut_ptr(),
                    batch as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                if is_transient(&e) {
                    continue;
                }
                return Err(ServeError::io("recvmmsg", e));
            }
            let mut answered = 0;
            for i in 0..got as usize {
                let n = (rx[i].msg_len as usize).min(RECV_BUF);
                let from = socket_addr(&addrs[i]).map(|s| s.ip());
                let to = destination(&rx[i].msg_hdr);
                let Some(len) = self.answer(&requests[i][..n], from, to, &mut replies[answered])
                else {
                    continue;
                };
                tx_iov[answered].iov_len = len;
                reply_addrs[answered] = addrs[i];
                tx[answered].msg_hdr.msg_namelen = rx[i].msg_hdr.msg_namelen;
                answered += 1;
            }
            let got = answered;
            let mut sent = 0;
            while sent < got {
                // SAFETY: as above; the first `got` headers are filled in.
                let r =
                    unsafe { libc::sendmmsg(fd, tx[sent..].as_mut_ptr(), (got - sent) as u32, 0) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // The datagram at `sent` cannot go out (e.g. no route back): skip it.
                    self.counters.tx_errors += 1;
                    sent += 1;
                    continue;
                }
                sent += r as usize;
            }
        }
        Ok(())
    }
}

/// Asks the kernel for each datagram's destination address (IP_PKTINFO, IPV6_PKTINFO).
fn enable_pktinfo(socket: &UdpSocket) -> io::Result<()> {
    let (level, option) = match socket.local_addr()? {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    };
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and an int option value.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination address recvmsg reported in `msg`'s control messages.
fn destination(msg: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: msg's control buffer holds what recvmsg wrote (msg_controllen bytes); the
    // CMSG macros stay inside it, and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = data.cast::<libc::in_pktinfo>().read_unaligned();
                    return Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)).into());
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    return Some(Ipv6Addr::from(info.ipi6_addr.s6_addr).into());
                }
                _ => c = libc::CMSG_NXTHDR(msg, c),
            }
        }
    }
    None
}

/// A C socket address as a [`SocketAddr`] (`None` for another family).
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in; storage is big and aligned enough.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A UDP socket bound to `addr`, receiving from interface `iface` only.
fn device_socket(iface: &str, addr: SocketAddr) -> io::Result<UdpSocket> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket() has no memory arguments; the fd is owned right away.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_DGRAM, 0) })?;
    // SAFETY: fd is a new socket nothing else owns.
    let socket = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: the name points at iface.len() readable bytes.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            iface.as_ptr().cast(),
            iface.len() as libc::socklen_t,
        )
    })?;
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    check(unsafe { libc::bind(fd, (&raw const storage).cast(), len) })?;
    super::grow_buffers(&socket);
    Ok(socket)
}

/// `addr` as a C socket address.
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Errors a serving loop shrugs off: the stop-flag poll timeout and signals.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
