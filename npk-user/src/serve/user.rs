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

/// How the server moves datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// One recvfrom and one sendto per request.
    Plain,
    /// recvmmsg (up to `batch` datagrams, waiting for the first only) and one sendmmsg.
    Mmsg { batch: usize },
}

impl Io {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Mmsg { .. } => "mmsg",
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

    /// The kernel server's other half: a socket on `port` that receives only from `iface`
    /// (SO_BINDTODEVICE), IPv6 and IPv4 alike where IPv6 is available. `npk_serve` passes
    /// what it cannot parse in XDP (IP fragments, IPv6 extension headers) to the stack; the
    /// stack reassembles it and this answers it with the same [`respond`], so that a request
    /// gets the same reply whatever its size or shape.
    pub fn bind_device(iface: &str, port: u16, model: Box<Model>) -> Result<Self, ServeError> {
        let what = || format!("binding UDP port {port} on {iface}");
        let socket = device_socket(iface, port).map_err(|e| ServeError::io(what(), e))?;
        socket
            .set_read_timeout(Some(STOP_POLL))
            .map_err(|e| ServeError::io("setting the receive timeout", e))?;
        Ok(Self {
            socket,
            model,
            io: Io::Plain,
            scratch: Scratch::new(),
            counters: bytemuck::Zeroable::zeroed(),
        })
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

/// A UDP socket bound to `port` on interface `iface` only: `[::]` with IPV6_V6ONLY off (both
/// families), or `0.0.0.0` where the kernel has no IPv6.
fn device_socket(iface: &str, port: u16) -> io::Result<UdpSocket> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: socket() has no memory arguments; the fd is owned right away.
    let (fd, ipv6) = match check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0) }) {
        Ok(fd) => (fd, true),
        Err(_) => (
            check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) })?,
            false,
        ),
    };
    // SAFETY: fd is a new socket nothing else owns.
    let socket = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let set = |level, option, value: *const libc::c_void, len: usize| {
        // SAFETY: `value` points at `len` readable bytes.
        check(unsafe { libc::setsockopt(fd, level, option, value, len as libc::socklen_t) })
    };
    set(
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        iface.as_ptr().cast(),
        iface.len(),
    )?;
    let addr: SocketAddr = if ipv6 {
        let off: libc::c_int = 0;
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const off).cast(),
            size_of::<libc::c_int>(),
        )?;
        (std::net::Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, port).into()
    };
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
