//! The operator's HTTP endpoint (`metrics.addr`), served on the control thread's
//! tokio runtime, never on a shard:
//!
//! - `GET /metrics`: the Prometheus exposition ([`super::exposition`]);
//! - `GET /healthz`: `200 ok` while the process serves requests at all;
//! - `GET /readyz`: `200` when the gateway should get traffic: auth data loaded,
//!   every configured Kafka cluster answering and its latest produce not failed,
//!   not shutting down; else `503`.
//!   The JSON body says why, and how stale the auth data is (a MySQL outage
//!   keeps the gateway serving from its last snapshot, so it stays ready).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;

use super::exposition;
use super::Sources;

/// How long `/readyz` waits for each cluster's metadata answer. Probes (a
/// load balancer's, Kubernetes') time out after a few seconds themselves.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts and serves until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, sources: Arc<Sources>) {
    let registry = Arc::new(exposition::registry(Arc::clone(&sources)));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let sources = Arc::clone(&sources);
        let registry = Arc::clone(&registry);
        let service = service_fn(move |request| {
            let sources = Arc::clone(&sources);
            let registry = Arc::clone(&registry);
            async move { Ok::<_, Infallible>(route(request, sources, &registry).await) }
        });
        tokio::spawn(async move {
            // A client that never finishes its request headers is dropped
            // instead of holding a task and a socket forever.
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

async fn route(
    request: Request<Incoming>,
    sources: Arc<Sources>,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, exposition::render(registry));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(exposition::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(sources).await,
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

async fn readiness(sources: Arc<Sources>) -> Response<Full<Bytes>> {
    let refresh = sources.auth.refresh_stats();
    let stopping = *sources.shutdown.borrow();
    // A metadata request blocks in librdkafka: off the runtime's thread.
    let probed = Arc::clone(&sources);
    let clusters = tokio::task::spawn_blocking(move || probed.producers.reachable(PROBE_TIMEOUT))
        .await
        .unwrap_or_default();
    let all_reachable = !clusters.is_empty() && clusters.iter().all(|(_, up)| *up);
    let failing = sources.producers.failing();
    let ready = refresh.loads > 0 && all_reachable && failing.is_empty() && !stopping;
    let body = serde_json::json!({
        "ready": ready,
        "shutting_down": stopping,
        "auth_snapshot_age_seconds": (refresh.snapshot_age.as_secs_f64() * 10.0).round() / 10.0,
        "auth_refresh_failures": refresh.failures,
        "auth_consecutive_refresh_failures": refresh.consecutive_failures,
        "produces_failing": failing,
        "clusters": clusters
            .into_iter()
            .map(|(name, up)| (name, serde_json::Value::Bool(up)))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = text(status, format!("{body}\n"));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
