//! HTTP/1 with bounds, for the control sockets and the metrics endpoint: a
//! client that opens connections and never finishes a request costs a
//! bounded amount.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::Listener;
use forklet_state::api::ErrorCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more are closed as they come.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, its body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connections may finish their requests after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown`, then lets open requests
/// finish for a moment.
pub async fn serve<L: Listener>(
    mut listener: L,
    app: Router,
    name: &'static str,
    shutdown: CancellationToken,
) {
    let app = app.layer(axum::middleware::from_fn(request_deadline));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            // axum's listeners wait and retry on a failed accept (out of
            // file descriptors, most likely) rather than spin.
            (stream, _) = listener.accept() => stream,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("{name}: {MAX_CONNECTIONS} connections open already; closing a new one");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "{name}: connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => {}
    }
}

/// A request whose body never finishes, or whose answer never comes, ends.
async fn request_deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::problem_response::problem(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Timeout,
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}
