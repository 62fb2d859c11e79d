//! The read-only path agent (`brick serve`): os-brick's path-validation calls over HTTP/JSON,
//! for test and gate hosts (not production), so a gate job can ask every host after a live
//! migration whether anything of the volume is left.
//!
//! Routes (JSON in and out; every error is `{"error": "<code>", "message": "..."}`, codes in
//! [`wire::ErrorCode`]):
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | [`wire::Health`], never needs the token |
//! | `GET /v1/{protocol}/search-path` | [`wire::SearchPath`] |
//! | `GET /v1/{protocol}/volumes` | [`wire::Volumes`] (`get_all_available_volumes`) |
//! | `POST /v1/{protocol}/paths[?multipath=true]` | [`wire::Paths`] for the posted connection properties (Cinder's JSON, wrapper optional) |
//! | `GET /v1/orphans` | [`wire::Orphans`] (`brick_connectors::find_orphans`) |
//! | `GET /v1/connector` | [`wire::ConnectorInfo`] (`brick_connectors::connector_properties`) |
//!
//! Safety, by construction:
//! - every connector runs on a [`ReadOnlyHost`], which refuses writes, removals and commands
//!   and never sleeps, so no request can change the host, even through a connector bug;
//! - the root is fixed and canonicalized at start; the only path-like inputs are inside the
//!   posted connection properties, which the connectors' typed parser validates (absolute,
//!   no `..`), and every read resolves symlinks inside the root (`brick_connectors::fs`);
//! - loopback by default; a non-loopback address needs a bearer token (from a file),
//!   compared in constant time; body size limit (413); request timeout (503 `timeout`);
//!   filesystem work in `spawn_blocking`; graceful shutdown on SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use brick_connectors::{
    ConnectionProperties, ConnectorConfig, ConnectorError, Protocol, connector_for,
    connector_properties, find_orphans,
};

pub mod auth;
pub mod error;
pub mod fixture;
pub mod readonly;
pub mod wire;

pub use auth::Token;
pub use error::{AgentError, ApiError};
pub use readonly::ReadOnlyHost;
use wire::ErrorCode;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7450";
/// The default request body limit (connection properties are a few hundred bytes).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The default time a request may take before it is answered with `timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The directory that stands for the host's `/` (`/` on a real host).
    pub root: PathBuf,
    /// Where to listen. A non-loopback address requires `token`.
    pub listen: SocketAddr,
    /// The bearer token every `/v1` request must present, if any.
    pub token: Option<Token>,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// How long a request may take.
    pub request_timeout: Duration,
}

impl AgentConfig {
    /// Defaults (loopback, no token, 64 KiB, 30 s) for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7450)),
            token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Whether `addr` is a loopback address (IPv4-mapped IPv6 included).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// What every handler shares: the fixed root and the security settings.
#[derive(Debug, Clone)]
pub struct AppState {
    root: Arc<PathBuf>,
    pub(crate) token: Option<Arc<Token>>,
    body_limit: usize,
    request_timeout: Duration,
}

impl AppState {
    /// Checks the configuration: the root must exist and be a directory (it is canonicalized
    /// once, here); a non-loopback listen address needs a token.
    pub fn from_config(config: &AgentConfig) -> Result<Self, AgentError> {
        if !is_loopback(&config.listen) && config.token.is_none() {
            return Err(AgentError::NonLoopbackWithoutToken {
                addr: config.listen,
            });
        }
        let root = std::fs::canonicalize(&config.root).map_err(|source| AgentError::Root {
            path: config.root.clone(),
            source,
        })?;
        if !root.is_dir() {
            return Err(AgentError::RootNotDir {
                path: config.root.clone(),
            });
        }
        Ok(Self {
            root: Arc::new(root),
            token: config.token.clone().map(Arc::new),
            body_limit: config.body_limit,
            request_timeout: config.request_timeout,
        })
    }

    /// The canonical root being served.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The agent's router. Tests drive it with `tower::ServiceExt::oneshot`, no socket needed.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/{protocol}/search-path", get(search_path))
        .route("/v1/{protocol}/volumes", get(volumes))
        .route("/v1/{protocol}/paths", post(paths))
        .route("/v1/orphans", get(orphans))
        .route("/v1/connector", get(connector))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .layer(RequestBodyLimitLayer::new(state.body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A bound, not yet serving, agent: lets the caller learn the port before serving.
#[derive(Debug)]
pub struct Agent {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
    root: PathBuf,
}

impl Agent {
    /// Validates `config` and binds its listen address.
    pub async fn bind(config: AgentConfig) -> Result<Self, AgentError> {
        let state = AppState::from_config(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| AgentError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
        let root = state.root().to_path_buf();
        Ok(Self {
            listener,
            router: router(state),
            addr,
            root,
        })
    }

    /// The address actually bound (the port is chosen by the OS for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The canonical root served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves until `shutdown` completes, then drains in-flight requests (each bounded by
    /// the request timeout).
    pub async fn run<F>(self, shutdown: F) -> Result<(), AgentError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(AgentError::Serve)
    }
}

/// Binds and serves `config` until `shutdown` completes.
pub async fn serve<F>(config: AgentConfig, shutdown: F) -> Result<(), AgentError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let agent = Agent::bind(config).await?;
    tracing::info!(addr = %agent.local_addr(), root = %agent.root().display(), "path agent listening");
    agent.run(shutdown).await
}

/// Completes on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

// ---------------------------------------------------------------------------- middleware

async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout,
            format!(
                "the request took longer than {} s",
                state.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Gives every error response without a JSON body (from the router or a layer: 404, 405,
/// 413) the agent's JSON error shape.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = ApiError::from_status(status).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

// ---------------------------------------------------------------------------- handlers

async fn healthz() -> Json<wire::Health> {
    Json(wire::Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        read_only: true,
    })
}

/// A protocol named in the URL. Unknown names are 404 `unsupported_protocol`.
fn url_protocol(path: Result<UrlPath<String>, PathRejection>) -> Result<Protocol, ApiError> {
    let UrlPath(name) = path.map_err(|e| ApiError::bad_query(e.body_text()))?;
    name.parse::<Protocol>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnsupportedProtocol,
            format!("unknown protocol {shown:?} (known: iscsi, fc, nvmeof, local)"),
        )
    })
}

/// Maps a connector failure to the API: no connector yet → `unsupported_protocol` (501);
/// bad properties → `invalid_properties`; anything else is internal (logged, not shown).
fn connector_error(e: ConnectorError) -> ApiError {
    match e {
        ConnectorError::Unsupported { protocol } => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::UnsupportedProtocol,
            format!("no connector for protocol {protocol} yet"),
        ),
        e @ (ConnectorError::Props(_)
        | ConnectorError::WrongProtocol { .. }
        | ConnectorError::Id(_)) => ApiError::invalid_properties(e.to_string()),
        ConnectorError::Host(e) => {
            tracing::error!(error = %e, "connector attempted a side effect");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the connector attempted a side effect, which the read-only agent refused",
            )
        }
        other => {
            tracing::error!(error = %other, "connector failed");
            ApiError::internal()
        }
    }
}

/// Runs filesystem work on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        ApiError::internal()
    })?
}

fn refused_diagnostics(host: &ReadOnlyHost) -> Vec<wire::Diagnostic> {
    host.refused()
        .into_iter()
        .map(|what| wire::Diagnostic {
            path: None,
            message: format!("refused side effect (read-only agent): {what}"),
        })
        .collect()
}

async fn search_path(
    State(state): State<AppState>,
    protocol: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<wire::SearchPath>, ApiError> {
    let protocol = url_protocol(protocol)?;
    let root = state.root.clone();
    blocking(move || {
        let host = ReadOnlyHost::new(root.as_path());
        let connector =
            connector_for(protocol, &host, ConnectorConfig::default()).map_err(connector_error)?;
        Ok(Json(wire::SearchPath {
            protocol: protocol.as_str().to_owned(),
            search_path: connector.get_search_path(),
        }))
    })
    .await
}

async fn volumes(
    State(state): State<AppState>,
    protocol: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<wire::Volumes>, ApiError> {
    let protocol = url_protocol(protocol)?;
    let root = state.root.clone();
    blocking(move || {
        let host = ReadOnlyHost::new(root.as_path());
        let connector =
            connector_for(protocol, &host, ConnectorConfig::default()).map_err(connector_error)?;
        let volumes = connector
            .get_all_available_volumes(None)
            .map_err(connector_error)?;
        drop(connector);
        Ok(Json(wire::Volumes {
            protocol: protocol.as_str().to_owned(),
            volumes,
            diagnostics: refused_diagnostics(&host),
        }))
    })
    .await
}

/// `?multipath=true`: run the connector with `use_multipath` (every target is checked).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsQuery {
    #[serde(default)]
    multipath: bool,
}

async fn paths(
    State(state): State<AppState>,
    protocol: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<PathsQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<wire::Paths>, ApiError> {
    let protocol = url_protocol(protocol)?;
    let Query(query) = query.map_err(|e| ApiError::bad_query(e.body_text()))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_json(format!(
                "could not read the request body: {}",
                e.body_text()
            ))
        }
    })?;
    let root = state.root.clone();
    blocking(move || {
        let host = ReadOnlyHost::new(root.as_path());
        let config = ConnectorConfig {
            use_multipath: query.multipath,
            ..ConnectorConfig::default()
        };
        let connector = connector_for(protocol, &host, config).map_err(connector_error)?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_json(format!("the body is not valid JSON: {e}")))?;
        let props = ConnectionProperties::from_json(&value, Some(protocol))
            .map_err(|e| ApiError::invalid_properties(e.to_string()))?;
        let found = connector
            .get_volume_paths(&props)
            .map_err(connector_error)?;
        drop(connector);
        let mut diagnostics: Vec<wire::Diagnostic> = found
            .diagnostics
            .iter()
            .map(wire::Diagnostic::from)
            .collect();
        diagnostics.extend(refused_diagnostics(&host));
        Ok(Json(wire::Paths {
            protocol: protocol.as_str().to_owned(),
            multipath: query.multipath,
            paths: found.paths.iter().map(wire::PathEntry::from).collect(),
            diagnostics,
        }))
    })
    .await
}

async fn orphans(State(state): State<AppState>) -> Result<Json<wire::Orphans>, ApiError> {
    let root = state.root.clone();
    blocking(move || {
        let host = ReadOnlyHost::new(root.as_path());
        let report = find_orphans(&host);
        let mut out = wire::Orphans::from(&report);
        out.diagnostics.extend(refused_diagnostics(&host));
        Ok(Json(out))
    })
    .await
}

async fn connector(State(state): State<AppState>) -> Result<Json<wire::ConnectorInfo>, ApiError> {
    let root = state.root.clone();
    blocking(move || {
        let host = ReadOnlyHost::new(root.as_path());
        Ok(Json(wire::ConnectorInfo::from(&connector_properties(
            &host,
        ))))
    })
    .await
}

#[cfg(test)]
mod tests;
