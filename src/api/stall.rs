//! A TCP client that stops reading is dropped: a write that cannot go on for `WRITE_STALL`
//! fails the connection, so a follower that never reads costs guardian a socket's buffers for
//! that long, then nothing (issue 35). A reading client, however slow, is never cut.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// How long one write may wait for the client to read.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// `io` whose writes fail with `TimedOut` once one has waited `WRITE_STALL`.
pub struct Stall<I> {
    io: I,
    /// Armed when a write finds the socket full; boxed only then.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> Stall<I> {
    pub fn new(io: I) -> Self {
        Stall { io, deadline: None }
    }

    /// After a write was polled: `Pending` arms the deadline (and fails once it passed),
    /// anything else disarms it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.deadline = None;
            return r;
        }
        let d = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        ready!(d.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Stall<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Stall<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Write as _;
    use hyper_util::rt::TokioIo;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_too_long_fails_and_one_that_goes_on_does_not() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = Stall::new(TokioIo::new(a));
        fn write<I: hyper::rt::Write + Unpin>(
            w: &mut Stall<I>,
        ) -> impl Future<Output = io::Result<usize>> + '_ {
            std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, b"0123456789abcdef"))
        }
        assert_eq!(write(&mut w).await.unwrap(), 16);
        // The peer reads within the deadline: the waiting write goes through.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(WRITE_STALL / 2).await;
            let mut buf = [0u8; 16];
            tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
                .await
                .unwrap();
            b
        });
        assert_eq!(write(&mut w).await.unwrap(), 16);
        let _b = reader.await.unwrap();
        // Nobody reads now: the next write fails after WRITE_STALL.
        let e = write(&mut w).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
