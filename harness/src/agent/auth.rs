//! Bearer-token authentication: the token is read from a file (never from argv) and
//! compared in constant time.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::{AgentError, ApiError};

/// A bearer token. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from text: trimmed, non-empty, visible ASCII without spaces (what an HTTP
    /// header can carry unchanged).
    pub fn new(text: &str) -> Result<Self, &'static str> {
        let t = text.trim();
        if t.is_empty() {
            return Err("is empty");
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must hold one token of visible ASCII characters without spaces");
        }
        Ok(Self(t.to_owned()))
    }

    /// Reads a token file (trimmed; empty is an error). Warns when others can read it.
    pub fn from_file(path: &Path) -> Result<Self, AgentError> {
        let bytes = std::fs::read(path).map_err(|source| AgentError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| AgentError::BadToken {
            path: path.to_path_buf(),
            problem: "is not UTF-8 text",
        })?;
        let token = Self::new(&text).map_err(|problem| AgentError::BadToken {
            path: path.to_path_buf(),
            problem,
        })?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "token file is readable by group or others");
            }
        }
        Ok(token)
    }

    /// The secret, for clients that send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Rejects a request without `Authorization: Bearer <token>` matching the agent's token.
/// Installed only when the agent has a token.
pub(crate) async fn require_bearer(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(req).await;
    };
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| token.matches(presented.trim()));
    if ok {
        next.run(req).await
    } else {
        tracing::info!(uri = %req.uri(), "rejected request without a valid bearer token");
        ApiError::unauthorized().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_validated() {
        assert_eq!(Token::new("  s3cret\n").unwrap().expose(), "s3cret");
        assert!(Token::new(" \n\t").is_err());
        assert!(Token::new("two words").is_err());
        assert!(Token::new("caf\u{e9}").is_err());
        let t = Token::new("abc").unwrap();
        assert!(t.matches("abc"));
        assert!(!t.matches("abd"));
        assert!(!t.matches("ab"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn token_files_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = Token::from_file(&empty).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let missing = Token::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, AgentError::TokenFile { .. }));
        let good = dir.path().join("good");
        std::fs::write(&good, "tok-123\n").unwrap();
        assert_eq!(Token::from_file(&good).unwrap().expose(), "tok-123");
    }
}
