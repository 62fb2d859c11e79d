//! The agent's errors: [`ApiError`] (what a request gets back) and [`AgentError`] (why the
//! agent could not start or stopped).

use std::path::PathBuf;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::wire::{ErrorBody, ErrorCode};

/// A request that failed: a status, a stable code and a human message.
///
/// Internal causes are logged where they happen and never put in the message.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_json`.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadJson, message)
    }

    /// 400 `invalid_properties`.
    pub fn invalid_properties(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidProperties,
            message,
        )
    }

    /// 400 `bad_query`.
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadQuery, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token (send `Authorization: Bearer <token>`)",
        )
    }

    /// 500 `internal`, with a generic message.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the agent's log",
        )
    }

    /// The error for a response status that carried no JSON body (from a layer or the
    /// router itself: 404, 405, 413...).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                ErrorCode::PayloadTooLarge,
                "request body larger than the agent's limit",
            ),
            StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "missing or wrong bearer token"),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
                (ErrorCode::Timeout, "the request took too long")
            }
            s if s.is_client_error() => (ErrorCode::BadQuery, "bad request"),
            _ => (ErrorCode::Internal, "internal error; see the agent's log"),
        };
        Self::new(status, code, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Why the agent could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The root to serve does not exist or cannot be resolved.
    #[error("host root `{}` cannot be used", path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The root exists but is not a directory.
    #[error("host root `{}` is not a directory", path.display())]
    RootNotDir {
        /// The root as given.
        path: PathBuf,
    },
    /// A non-loopback listen address without a token.
    #[error(
        "refusing to listen on non-loopback address {addr} without a token: pass --token-file \
         (the agent is for test and gate hosts; it exposes the host's storage layout)"
    )]
    NonLoopbackWithoutToken {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The token file could not be read.
    #[error("reading token file `{}`", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty (after trimming whitespace) or not one line of visible text.
    #[error("token file `{}` {problem}", path.display())]
    BadToken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// Binding the listen address failed.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}
