//! Accepting connections on one port: the per-address connection rate, TLS when configured, a
//! deadline for the TLS handshake and the request headers (slowloris), then HTTP/1.1 with
//! upgrades (the media WebSocket) served by the router. Replaces `axum::serve`, which has no
//! header timeout and no TLS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::access::Refusals;
use crate::app::AppState;
use crate::tls::Tls;

/// Addresses tracked for the connection rate; past it the table is cleared (and counted).
const MAX_TRACKED: usize = 10_000;
/// After an accept error (out of descriptors), a pause before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Refused connections closed gracefully at once (their 429 sure to arrive); past these, a
/// flood's connections are answered in one write and dropped.
const MAX_LINGERING: usize = 64;
/// How long a refused connection is kept to read what its client sends before closing.
const LINGER: Duration = Duration::from_secs(1);

/// New connections per address in the current second.
pub struct ConnRate {
    per_sec: u32,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Times the table was full and cleared (shared by the listeners, for /health and /metrics).
    pub overflows: Arc<AtomicU64>,
}

impl ConnRate {
    pub fn new(per_sec: u32, overflows: Arc<AtomicU64>) -> Self {
        Self { per_sec, table: Mutex::default(), overflows }
    }

    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut t) = self.table.lock() else { return true };
        if t.len() >= MAX_TRACKED && !t.contains_key(&ip) {
            t.retain(|_, (since, _)| now.saturating_duration_since(*since) < Duration::from_secs(1));
            if t.len() >= MAX_TRACKED {
                t.clear();
                self.overflows.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (since, n) = t.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(*since) >= Duration::from_secs(1) {
            *since = now;
            *n = 0;
        }
        *n += 1;
        *n <= self.per_sec
    }
}

/// The answer to a connection over the rate, shaped as every other error of the API (an
/// `ErrorBody`), so clients and schema checks read it as they read the rest.
static TOO_MANY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":"too many new connections from this address; retry after 1 s"}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Serves `router` on `listener` until `stopped`; then open connections are asked to finish
/// (HTTP keep-alive closes; upgraded WebSockets live on as sessions) and waited for.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    app: Arc<AppState>,
    tls: Option<Arc<Tls>>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let rate = ConnRate::new(app.config.limits.conns_per_ip_per_sec, app.conn_rate_overflows.clone());
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let lingering = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => break,
        };
        // A trusted proxy carries everyone's connections: its clients can't be told apart here.
        let proxied = app.config.access.trusted_proxies.contains(peer.ip());
        if !proxied && !rate.admit(peer.ip(), Instant::now()) {
            Refusals::count(&app.refusals.conn_rate);
            // Plain HTTP clients get told why, in one non-blocking write to a fresh socket's empty
            // buffer; a TLS client would need a handshake first, which a flood doesn't deserve.
            if tls.as_ref().and_then(|t| t.acceptor()).is_none() {
                match lingering.clone().try_acquire_owned() {
                    // Closing over bytes the client sends after the answer (its request, which
                    // often comes after the accept) sends a reset, which can destroy the answer
                    // before the client reads it: read them for a moment, then close.
                    Ok(permit) => {
                        tokio::spawn(async move {
                            let _permit = permit;
                            let mut stream = stream;
                            let _ = tokio::time::timeout(LINGER, async {
                                stream.write_all(&TOO_MANY).await?;
                                stream.shutdown().await?;
                                let mut sink = [0u8; 1024];
                                while stream.read(&mut sink).await? > 0 {}
                                Ok::<(), std::io::Error>(())
                            })
                            .await;
                        });
                    }
                    Err(_) => {
                        let mut sink = [0u8; 4096];
                        let _ = stream.try_read(&mut sink);
                        let _ = stream.try_write(&TOO_MANY);
                    }
                }
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (router, app, tls, stopped, open) =
            (router.clone(), app.clone(), tls.clone(), stopped.clone(), open.clone());
        tokio::spawn(async move {
            let header_timeout = app.config.limits.header_timeout;
            match tls.and_then(|t| t.acceptor()) {
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => connection(tls_stream, peer, router, header_timeout, stopped).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => connection(stream, peer, router, header_timeout, stopped).await,
            }
            drop(open);
        });
    }
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { let _ = stopped.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_per_address_and_per_second() {
        let rate = ConnRate::new(3, Default::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.admit(a, t0)));
        assert!(!rate.admit(a, t0));
        assert!(rate.admit(b, t0), "another address has its own budget");
        assert!(rate.admit(a, t0 + Duration::from_secs(1)), "a new second, a new budget");
    }

    #[test]
    fn the_table_is_bounded() {
        let rate = ConnRate::new(1, Default::default());
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            assert!(rate.admit(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(rate.table.lock().unwrap().len() <= MAX_TRACKED);
        assert_eq!(rate.overflows.load(Ordering::Relaxed), 1);
    }
}
