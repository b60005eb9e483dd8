//! The fake gateway's listener: plain TCP whose connections can be cut
//! from a handler (to lose a response on purpose) or all at once (on
//! shutdown).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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

/// A TCP listener whose connections are children of one shutdown token.
pub(super) struct CutListener {
    pub(super) tcp: TcpListener,
    pub(super) shutdown: CancellationToken,
}

impl axum::serve::Listener for CutListener {
    type Io = CutStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, _peer)) => {
                    // Latency matters more than packet count on loopback.
                    let _ = tcp.set_nodelay(true);
                    let kill = self.shutdown.child_token();
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
        let _: SocketAddr = self.tcp.local_addr()?;
        Ok(Conn {
            kill: self.shutdown.child_token(),
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
