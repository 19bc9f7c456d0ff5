//! The HTTP/1.1 server under the router: the accept loop, the connection bound, header and idle
//! timeouts, and a shutdown that gives in-flight requests a bounded grace period.
//!
//! `axum::serve` exposes none of these, and without them a client that sends half a header
//! holds its connection (and a file descriptor) forever and keeps a stopped server alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::Http;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets open
/// connections finish their requests for at most the grace period, and returns.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Http,
    shutdown: impl Future<Output = ()>,
) {
    // INVARIANT: a connection task holds one permit for as long as its socket is open, so at
    // most `max_connections` sockets are open; the rest wait in the kernel's listen backlog.
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    let idle = limits.idle_timeout();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON responses: send them now rather than waiting to fill a segment.
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let activity = activity.clone();
            let router = router.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let busy = activity.request();
                let router = router.clone();
                async move {
                    let response = router.oneshot(req.map(axum::body::Body::new)).await;
                    drop(busy);
                    response
                }
            })
        };
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                }
                () = activity.idle_for(idle) => {
                    tracing::debug!("closing connection from {peer}: idle for {idle:?}");
                }
            }
        });
    }
    // New clients are refused from here on instead of queueing behind a stopping server.
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!("waiting for {open} open connections to finish");
    }
    let grace = limits.shutdown_grace();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("closing the connections still open after the grace period of {grace:?}");
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
#[derive(Clone)]
struct Activity {
    inner: Arc<ActivityInner>,
}

struct ActivityInner {
    opened: Instant,
    /// Milliseconds after `opened` of the last read or write.
    last_ms: AtomicU64,
    requests: AtomicUsize,
}

/// Marks a request as being handled while alive: a slow handler is not an idle connection.
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            inner: Arc::new(ActivityInner {
                opened: Instant::now(),
                last_ms: AtomicU64::new(0),
                requests: AtomicUsize::new(0),
            }),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.inner.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.store(now, Ordering::Relaxed);
    }

    fn request(&self) -> Busy {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once the connection has been idle for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            if self.inner.requests.load(Ordering::Relaxed) > 0 {
                self.touch();
            }
            let last = Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
            let deadline = self.inner.opened + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A socket that records its activity for the idle timeout.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
