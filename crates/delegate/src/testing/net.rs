//! The fake gateway's listener: plain TCP whose connections can be cut
//! from a handler (to lose a response on purpose) or all at once (on
//! shutdown, or when the gateway goes down), and whose socket can be
//! closed and bound again on the same port (a gateway restarting:
//! connections are refused in between).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// What a handler learns about its connection: the switch that cuts it
/// without a response.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    pub(super) kill: CancellationToken,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CutListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, CutListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Whether the gateway is up, shared by the listener and the
/// [`FakeGateway`](super::FakeGateway) that switches it.
pub(super) struct Power {
    /// `Some(generation)` while up: the token (a child of the shutdown
    /// token) that cuts every connection accepted while up this time.
    up: watch::Sender<Option<CancellationToken>>,
    /// How many times the listener closed its socket (acknowledges a
    /// [`Power::go_down`]).
    downs: watch::Sender<u64>,
    /// A socket bound by [`Power::come_up`], for the listener to take.
    fresh: Mutex<Option<TcpListener>>,
    shutdown: CancellationToken,
    addr: SocketAddr,
}

impl Power {
    pub(super) fn new(shutdown: CancellationToken, addr: SocketAddr) -> Self {
        Self {
            up: watch::Sender::new(Some(shutdown.child_token())),
            downs: watch::Sender::new(0),
            fresh: Mutex::new(None),
            shutdown,
            addr,
        }
    }

    /// Closes the listening socket (new connections are refused) and cuts
    /// every open connection; returns once the socket is closed.
    pub(super) async fn go_down(&self) {
        let mut downs = self.downs.subscribe();
        let want = *downs.borrow_and_update() + 1;
        let Some(generation) = self.up.send_replace(None) else {
            return;
        };
        generation.cancel();
        tokio::select! {
            _ = downs.wait_for(|n| *n >= want) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    /// Binds the same address again; connections succeed once it returns.
    pub(super) async fn come_up(&self) -> io::Result<()> {
        if self.up.borrow().is_some() {
            return Ok(());
        }
        let tcp = TcpListener::bind(self.addr).await?;
        *self.fresh.lock().unwrap_or_else(PoisonError::into_inner) = Some(tcp);
        self.up.send_replace(Some(self.shutdown.child_token()));
        Ok(())
    }
}

/// A TCP listener whose connections are children of the current
/// generation's token (itself a child of the shutdown token).
pub(super) struct CutListener {
    pub(super) tcp: Option<TcpListener>,
    pub(super) power: std::sync::Arc<Power>,
}

impl axum::serve::Listener for CutListener {
    type Io = CutStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut state = self.power.up.subscribe();
        loop {
            let generation = state.borrow_and_update().clone();
            let Some(generation) = generation else {
                if self.tcp.take().is_some() {
                    self.power.downs.send_modify(|n| *n += 1);
                }
                if state.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            };
            let fresh = self
                .power
                .fresh
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if fresh.is_some() {
                self.tcp = fresh;
            }
            let Some(listener) = &self.tcp else {
                if state.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = state.changed() => continue,
            };
            match accepted {
                Ok((tcp, _peer)) => {
                    // Latency matters more than packet count on loopback.
                    let _ = tcp.set_nodelay(true);
                    let kill = generation.child_token();
                    let stream = CutStream {
                        tcp,
                        killed: Box::pin(kill.clone().cancelled_owned()),
                        kill: kill.clone(),
                    };
                    return (stream, Conn { kill });
                }
                // Out of file descriptors and the like: back off a little
                // instead of spinning (what axum's own listener does).
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            kill: self.power.shutdown.child_token(),
        })
    }
}

/// A TCP stream that fails every read and write once its token is
/// cancelled, so hyper drops the connection without writing a response.
/// hyper polls reads while a request is in flight (to notice a client that
/// went away), so a cut is noticed even while the handler still runs.
pub(super) struct CutStream {
    tcp: TcpStream,
    kill: CancellationToken,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl CutStream {
    fn cut(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let cut = self.kill.is_cancelled() || self.killed.as_mut().poll(cx).is_ready();
        cut.then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the fake gateway dropped the connection",
            )
        })
    }
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
