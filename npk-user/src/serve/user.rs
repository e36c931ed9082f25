//! The userspace inference server: the same protocol and the same `respond` (PlainLoop infer)
//! as the kernel server, over an ordinary UDP socket. Two I/O styles: one recvfrom/sendto
//! pair per request, or batches through recvmmsg/sendmmsg.

use std::{
    io,
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use npk_common::{
    infer::{PlainLoop, Scratch},
    model::Model,
    wire::{MAX_REPLY_LEN, ServeCounters, respond},
};

use super::ServeError;

/// Requests longer than this are cut (and answered WRONG_FEATURE_COUNT: the longest valid
/// request is far shorter).
const RECV_BUF: usize = 2048;
/// How often a blocked receive wakes up to look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// The same for the kernel server's sockets ([`UserServer::bind_device`]), which are rarely
/// used: fewer wake-ups keep the kernel server's process nearly free of system calls.
const PASSED_STOP_POLL: Duration = Duration::from_secs(1);

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
        Ok(Self {
            socket,
            model,
            io,
            scratch: Scratch::new(),
            counters: bytemuck::Zeroable::zeroed(),
        })
    }

    /// The kernel server's other half: one server per address of `iface` (IPv4, and IPv6
    /// but link-local), on `port`, receiving only from `iface` (SO_BINDTODEVICE). `npk_serve`
    /// passes what it cannot parse in XDP (IP fragments, IPv6 extension headers) to the stack;
    /// the stack reassembles it and these answer it with the same [`respond`], so that a
    /// request gets the same reply whatever its size or shape. Bound to the addresses, not the
    /// wildcard: userspace servers on the same port at other addresses keep working.
    pub fn bind_device(iface: &str, port: u16, model: &Model) -> Result<Vec<Self>, ServeError> {
        let addresses = interface_addresses(iface)
            .map_err(|e| ServeError::io(format!("listing the addresses of {iface}"), e))?;
        addresses
            .into_iter()
            .map(|ip| {
                let addr = SocketAddr::new(ip, port);
                let socket = device_socket(iface, addr)
                    .map_err(|e| ServeError::io(format!("binding {addr} on {iface}"), e))?;
                socket
                    .set_read_timeout(Some(PASSED_STOP_POLL))
                    .map_err(|e| ServeError::io("setting the receive timeout", e))?;
                Ok(Self {
                    socket,
                    model: Box::new(*model),
                    io: Io::Plain,
                    scratch: Scratch::new(),
                    counters: bytemuck::Zeroable::zeroed(),
                })
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

    /// Answers one request into `out`; returns the reply length.
    fn answer(&mut self, request: &[u8], out: &mut [u8; MAX_REPLY_LEN]) -> usize {
        self.counters.requests += 1;
        let n = respond(
            request,
            Some(&self.model),
            &mut self.scratch,
            &mut PlainLoop,
            out,
        );
        let status = u16::from_le_bytes([out[6], out[7]]) as usize;
        if let Some(c) = self.counters.replies.get_mut(status) {
            *c += 1;
        }
        n
    }

    fn run_plain(&mut self, stop: &AtomicBool) -> Result<(), ServeError> {
        let mut request = [0u8; RECV_BUF];
        let mut reply = [0u8; MAX_REPLY_LEN];
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match self.socket.recv_from(&mut request) {
                Ok(r) => r,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(ServeError::io("recvfrom", e)),
            };
            let len = self.answer(&request[..n], &mut reply);
            if self.socket.send_to(&reply[..len], from).is_err() {
                self.counters.tx_errors += 1;
            }
        }
        Ok(())
    }

    fn run_mmsg(&mut self, stop: &AtomicBool, batch: usize) -> Result<(), ServeError> {
        let fd = self.socket.as_raw_fd();
        let mut requests = vec![[0u8; RECV_BUF]; batch];
        let mut replies = vec![[0u8; MAX_REPLY_LEN]; batch];
        // SAFETY (zeroed): sockaddr_storage, iovec and mmsghdr are plain C structs.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; batch];
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
            tx[i].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
        }
        while !stop.load(Ordering::Relaxed) {
            for m in rx.iter_mut() {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
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
            let got = got as usize;
            for i in 0..got {
                let n = (rx[i].msg_len as usize).min(RECV_BUF);
                let len = self.answer(&requests[i][..n], &mut replies[i]);
                tx_iov[i].iov_len = len;
                tx[i].msg_hdr.msg_namelen = rx[i].msg_hdr.msg_namelen;
            }
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

/// The IPv4 and IPv6 addresses of `iface`, link-local IPv6 ones left out.
fn interface_addresses(iface: &str) -> io::Result<Vec<std::net::IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entries of the list getifaddrs returned, alive until freeifaddrs.
        let e = unsafe { &*entry };
        entry = e.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(e.ifa_name) };
        if e.ifa_addr.is_null() || name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of the family it names.
        match i32::from(unsafe { (*e.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*e.ifa_addr.cast::<libc::sockaddr_in>() };
                addresses.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into());
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*e.ifa_addr.cast::<libc::sockaddr_in6>() };
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if !ip.is_unicast_link_local() {
                    addresses.push(ip.into());
                }
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned, not used after this.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
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
