//! The accept loop: HTTP/1.1 connections from WeChat, browsers and the brand's systems, each
//! served by the [`Dispatch`](super::webhook::Dispatch) service — with the limits a server
//! facing the internet needs and `axum::serve` does not set.
//!
//! * **Slow and idle clients.** A whole request head must arrive within
//!   `server.header_read_timeout_secs` of waiting for it (the first request, and each next one on
//!   a kept-alive connection), or the connection is closed: a slowloris trickle gets no more time
//!   than silence, nor does an idle keep-alive. A body gets the same time (the webhook reads its
//!   own; the router's routes have a 30 s limit overall).
//! * **A cap on open connections** (`server.max_connections`, never more than the process may open
//!   files for, less a reserve; the soft limit is raised to the hard one, [`raise_fd_limit`]): one
//!   beyond it is closed at once, so what is connected is served and nothing grows.
//! * **A bounded shutdown.** On the shutdown signal the listener closes, idle connections are
//!   closed, and requests in flight may finish for `server.shutdown_grace_secs`; what is still
//!   open then is dropped. A stalled client cannot keep the process alive.

use super::webhook::Dispatch;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Descriptors kept free for the database, the WeChat client, the CRM and the log.
const FD_RESERVE: u64 = 256;

/// The limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

impl Limits {
    /// From the config, with the connection cap brought under the descriptor limit.
    pub fn from_config(s: &crate::config::ServerConfig) -> Limits {
        let fds = fd_limit().map(|n| n.saturating_sub(FD_RESERVE)).unwrap_or(u64::MAX);
        Limits {
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            max_connections: (s.max_connections as u64).min(fds).max(1) as usize,
            grace: Duration::from_secs(s.shutdown_grace_secs),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(lim.rlim_max);
        }
        Ok(lim.rlim_cur)
    }
}

fn fd_limit() -> Option<u64> {
    // SAFETY: as above.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0).then_some(lim.rlim_cur)
    }
}

/// A listener on `addr` (`host:port`; every address it resolves to is tried in turn) whose
/// accept queue holds `backlog` connections — tokio's own `bind` asks for 1024 and std's for
/// 128; the kernel caps either at `net.core.somaxconn`.
pub async fn listen(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // As `TcpListener::bind` does: a restarted server takes its port back at once, not
        // after the old connections' TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains within the grace.
pub async fn serve(
    listener: TcpListener,
    service: Dispatch,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let open = metrics::gauge!("wxoa_http_connections");
    let refused = metrics::counter!("wxoa_http_connections_refused_total");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => open.set(connections.len() as f64),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, or the peer left before we took it: wait a
                        // moment instead of spinning on an error that persists.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if connections.len() >= limits.max_connections {
                    refused.increment(1);
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let http = http.clone();
                let mut stopped = stopped.clone();
                connections.spawn(async move {
                    let hyper_service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut service = service.clone();
                        async move { tower::Service::call(&mut service, req.map(Body::new)).await }
                    });
                    let conn = http.serve_connection(TokioIo::new(stream), hyper_service);
                    let mut conn = std::pin::pin!(conn);
                    let stopping = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = stopping => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
                open.set(connections.len() as f64);
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "closing connections still open after the shutdown grace of {:?}",
            limits.grace
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    open.set(0.0);
    Ok(())
}

/// The shutdown signal, registered now: a SIGTERM or SIGINT that arrives at any moment after
/// this returns — even before the server first polls the future — is kept, not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight calls");
    })
}
