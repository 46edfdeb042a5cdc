//! A tunnel handed to the host as a socket: one end of a Unix socketpair, with a task copying
//! bytes between the other end and the HBONE stream.
//!
//! Mapping, like a TCP proxy (and ztunnel):
//! - host `shutdown(SHUT_WR)` (or `close` with nothing unread) -> END_STREAM to the peer; the
//!   peer's END_STREAM -> the host reads EOF and may keep writing (half-close both ways);
//! - host `close` with unread data (the kernel reports ECONNRESET) or a write into a socket
//!   the host closed -> RST_STREAM to the peer;
//! - the peer's RST_STREAM (or a dead connection) -> the host's socket is closed at once, so
//!   it reads EOF and its writes fail with EPIPE; the tunnel's state says `RESET`, which the
//!   bindings turn into "connection reset" errors (Unix sockets cannot carry a reset).
//!
//! Writes to the host use `MSG_NOSIGNAL`: a host that never ignored SIGPIPE must not die
//! because it closed a tunnel.

use std::{
    future::poll_fn,
    io::{self, Read},
    os::fd::OwnedFd,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll, ready},
};

use mesh_client::hbone::H2Stream;
use socket2::SockRef;
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::UnixStream,
};

/// Bytes buffered per direction; large enough for HTTP/2's big DATA frames.
const BUFFER: usize = 64 * 1024;

/// How a tunnel stands, as `mesh_tunnel_state` reports it.
pub(crate) const OPEN: u32 = 0;
/// Both directions ended with END_STREAM / EOF.
pub(crate) const CLOSED: u32 = 1;
/// The tunnel ended with a reset, from either side.
pub(crate) const RESET: u32 = 2;

/// The state shared by the copying task and the host's tunnel handle.
#[derive(Debug, Default)]
pub(crate) struct BridgeState(AtomicU32);

impl BridgeState {
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, state: u32) {
        self.0.store(state, Ordering::SeqCst);
    }
}

/// Creates the socketpair and starts copying. Returns the host's end (blocking mode,
/// close-on-exec). Must run inside the runtime.
pub(crate) fn spawn(stream: H2Stream) -> io::Result<(OwnedFd, Arc<BridgeState>)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let ours = UnixStream::from_std(ours)?;
    let state = Arc::new(BridgeState::default());
    tokio::spawn(run(stream, ours, state.clone()));
    Ok((theirs.into(), state))
}

/// How the copying ended.
enum End {
    Clean,
    /// The peer reset the stream or the connection failed.
    PeerReset,
    /// The host closed its socket with unread data, or it fails.
    HostReset,
}

async fn run(mut stream: H2Stream, socket: UnixStream, state: Arc<BridgeState>) {
    let mut up = Pump::new(); // host -> peer
    let mut down = Pump::new(); // peer -> host
    let end = poll_fn(|cx| poll_both(cx, &mut stream, &socket, &mut up, &mut down)).await;
    match end {
        End::Clean => state.set(CLOSED),
        End::PeerReset => {
            // Recorded before the host can observe the close.
            state.set(RESET);
            drop(socket);
        }
        End::HostReset => {
            stream.reset();
            state.set(RESET);
        }
    }
}

fn poll_both(
    cx: &mut Context<'_>,
    stream: &mut H2Stream,
    socket: &UnixStream,
    up: &mut Pump,
    down: &mut Pump,
) -> Poll<End> {
    let up_done = match up.poll_up(cx, socket, stream) {
        Poll::Ready(Ok(())) => true,
        Poll::Ready(Err(end)) => return Poll::Ready(end),
        Poll::Pending => false,
    };
    let down_done = match down.poll_down(cx, stream, socket) {
        Poll::Ready(Ok(())) => true,
        Poll::Ready(Err(end)) => return Poll::Ready(end),
        Poll::Pending => false,
    };
    if up_done && down_done {
        Poll::Ready(End::Clean)
    } else {
        Poll::Pending
    }
}

/// One direction's buffer and progress.
struct Pump {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
}

impl Pump {
    fn new() -> Self {
        Self {
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            done: false,
        }
    }

    /// Host socket -> HBONE stream, until EOF has been passed on as END_STREAM.
    fn poll_up(
        &mut self,
        cx: &mut Context<'_>,
        socket: &UnixStream,
        stream: &mut H2Stream,
    ) -> Poll<Result<(), End>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.start == self.end && !self.eof {
                match ready!(poll_recv(cx, socket, &mut self.buf)) {
                    Ok(0) => self.eof = true,
                    Ok(n) => (self.start, self.end) = (0, n),
                    Err(_) => return Poll::Ready(Err(End::HostReset)),
                }
            }
            if self.start < self.end {
                let pending = &self.buf[self.start..self.end];
                match ready!(Pin::new(&mut *stream).poll_write(cx, pending)) {
                    Ok(n) => self.start += n,
                    Err(_) => return Poll::Ready(Err(End::PeerReset)),
                }
            } else if self.eof {
                match ready!(Pin::new(&mut *stream).poll_shutdown(cx)) {
                    Ok(()) => self.done = true,
                    Err(_) => return Poll::Ready(Err(End::PeerReset)),
                }
            }
        }
    }

    /// HBONE stream -> host socket, until END_STREAM has been passed on as `SHUT_WR`.
    fn poll_down(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut H2Stream,
        socket: &UnixStream,
    ) -> Poll<Result<(), End>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.start == self.end && !self.eof {
                let mut read = ReadBuf::new(&mut self.buf);
                match ready!(Pin::new(&mut *stream).poll_read(cx, &mut read)) {
                    Ok(()) if read.filled().is_empty() => self.eof = true,
                    Ok(()) => (self.start, self.end) = (0, read.filled().len()),
                    Err(_) => return Poll::Ready(Err(End::PeerReset)),
                }
            }
            if self.start < self.end {
                match ready!(poll_send(cx, socket, &self.buf[self.start..self.end])) {
                    Ok(n) => self.start += n,
                    Err(_) => return Poll::Ready(Err(End::HostReset)),
                }
            } else if self.eof {
                match SockRef::from(socket).shutdown(std::net::Shutdown::Write) {
                    Ok(()) => self.done = true,
                    Err(_) => return Poll::Ready(Err(End::HostReset)),
                }
            }
        }
    }
}

fn poll_recv(cx: &mut Context<'_>, socket: &UnixStream, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_read_ready(cx))?;
        // A short read drains the socket (a stream socket hands over all it holds, up to the
        // buffer): report it as "would block" to tokio, which then clears the readiness, and
        // keep the bytes. That saves the recv() answering EAGAIN that would otherwise be
        // needed to learn it, one system call per message on the latency path. No wake-up is
        // lost: tokio clears only the readiness observed before this recv(); data arriving
        // since is a new edge that sets it again.
        let mut short = None;
        let read = socket.try_io(Interest::READABLE, || {
            let n = (&*SockRef::from(socket)).read(buf)?;
            if n > 0 && n < buf.len() {
                short = Some(n);
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            Ok(n)
        });
        if let Some(n) = short {
            return Poll::Ready(Ok(n));
        }
        match read {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            other => return Poll::Ready(other),
        }
    }
}

fn poll_send(cx: &mut Context<'_>, socket: &UnixStream, buf: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_write_ready(cx))?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            SockRef::from(socket).send_with_flags(buf, libc::MSG_NOSIGNAL)
        });
        match sent {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            other => return Poll::Ready(other),
        }
    }
}
