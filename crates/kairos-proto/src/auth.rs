//! Call credentials: the API token a server requires of every call, compared in constant time,
//! and the client interceptor that sends one. The scheduler API takes `authorization: Bearer
//! TOKEN` ([`TokenScheme::Bearer`]); the Dapr APIs take `dapr-api-token: TOKEN` (spec §3.4,
//! [`TokenScheme::DaprApiToken`]).

use std::sync::Arc;

use tonic::metadata::errors::InvalidMetadataValue;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// How a token travels in a call's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    /// `authorization: Bearer TOKEN` (the scheduler API, `kairos jobs`).
    Bearer,
    /// `dapr-api-token: TOKEN` (the Dapr APIs).
    DaprApiToken,
}

impl TokenScheme {
    /// The metadata key the token travels in.
    pub fn metadata_key(self) -> &'static str {
        match self {
            TokenScheme::Bearer => "authorization",
            TokenScheme::DaprApiToken => "dapr-api-token",
        }
    }

    /// The metadata value carrying `token`.
    ///
    /// # Errors
    /// When the token cannot be sent as metadata (e.g. it holds a newline).
    pub fn value(self, token: &str) -> Result<MetadataValue<Ascii>, InvalidMetadataValue> {
        match self {
            TokenScheme::Bearer => MetadataValue::try_from(format!("Bearer {token}")),
            TokenScheme::DaprApiToken => MetadataValue::try_from(token),
        }
    }

    /// The token a metadata value carries; `None` when the value is not of this scheme.
    fn token(self, value: &MetadataValue<Ascii>) -> Option<&[u8]> {
        match self {
            TokenScheme::Bearer => value.to_str().ok()?.strip_prefix("Bearer ").map(str::as_bytes),
            TokenScheme::DaprApiToken => Some(value.as_bytes()),
        }
    }
}

/// Why a call's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    /// No token was sent.
    Missing,
    /// The token sent is not the configured one.
    Mismatch,
}

impl TokenFailure {
    /// daprd's gRPC message for this failure (`pkg/api/grpc/auth.go`), which the sidecar and
    /// an app served by the SDK answer alike.
    pub fn message(self) -> &'static str {
        match self {
            TokenFailure::Missing => "missing api token in request metadata",
            TokenFailure::Mismatch => "authentication error: api token mismatch",
        }
    }
}

/// Compares tokens in time independent of where they differ.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

/// Checks the token `given` (`None`: none was sent) against `expected`.
///
/// # Errors
/// Which way the token is wrong.
pub fn verify(given: Option<&[u8]>, expected: &str) -> Result<(), TokenFailure> {
    match given {
        None => Err(TokenFailure::Missing),
        Some(given) if tokens_match(given, expected.as_bytes()) => Ok(()),
        Some(_) => Err(TokenFailure::Mismatch),
    }
}

/// A tonic interceptor that requires the configured token (when there is one) and removes it
/// from the metadata before the handler runs; a call without it fails with `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    scheme: TokenScheme,
    expected: Option<Arc<str>>,
    missing: &'static str,
    mismatch: &'static str,
}

impl TokenCheck {
    /// Requires `expected` (nothing when `None`) in `scheme`; a refused call's status carries
    /// the message `missing` or `mismatch`.
    pub fn new(
        scheme: TokenScheme,
        expected: Option<&str>,
        missing: &'static str,
        mismatch: &'static str,
    ) -> Self {
        TokenCheck { scheme, expected: expected.map(Arc::from), missing, mismatch }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let given = request.metadata_mut().remove(self.scheme.metadata_key());
        match verify(given.as_ref().and_then(|v| self.scheme.token(v)), expected) {
            Ok(()) => Ok(request),
            Err(TokenFailure::Missing) => Err(Status::unauthenticated(self.missing)),
            Err(TokenFailure::Mismatch) => Err(Status::unauthenticated(self.mismatch)),
        }
    }
}

/// A tonic interceptor that sends a token on every call (nothing when there is none).
#[derive(Clone)]
pub struct AddToken {
    scheme: TokenScheme,
    value: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for AddToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AddToken").field("scheme", &self.scheme).field("set", &self.value.is_some()).finish()
    }
}

impl AddToken {
    /// Sends nothing.
    pub fn none(scheme: TokenScheme) -> Self {
        AddToken { scheme, value: None }
    }

    /// Sends `token` in `scheme` (nothing when `None`).
    ///
    /// # Errors
    /// When the token cannot be sent as metadata (e.g. it holds a newline).
    pub fn new(scheme: TokenScheme, token: Option<&str>) -> Result<Self, InvalidMetadataValue> {
        Ok(AddToken { scheme, value: token.map(|t| scheme.value(t)).transpose()? })
    }
}

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(self.scheme.metadata_key(), value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secret", b"secreT"));
        assert!(!tokens_match(b"secre", b"secret"));
        assert!(!tokens_match(b"secrets", b"secret"));
        assert!(!tokens_match(b"", b"secret"));
        assert!(tokens_match(b"", b""));
    }

    fn call(check: &mut TokenCheck, add: &mut AddToken) -> Result<Request<()>, Status> {
        check.call(add.call(Request::new(())).unwrap())
    }

    #[test]
    fn what_add_token_sends_the_check_of_the_same_scheme_takes_and_removes() {
        for scheme in [TokenScheme::Bearer, TokenScheme::DaprApiToken] {
            let mut check = TokenCheck::new(scheme, Some("s3cret"), "missing", "mismatch");
            let passed = call(&mut check, &mut AddToken::new(scheme, Some("s3cret")).unwrap()).unwrap();
            assert!(passed.metadata().get(scheme.metadata_key()).is_none(), "{scheme:?}");
            let wrong = call(&mut check, &mut AddToken::new(scheme, Some("other")).unwrap()).unwrap_err();
            assert_eq!((wrong.code(), wrong.message()), (tonic::Code::Unauthenticated, "mismatch"));
            let none = call(&mut check, &mut AddToken::new(scheme, None).unwrap()).unwrap_err();
            assert_eq!((none.code(), none.message()), (tonic::Code::Unauthenticated, "missing"));
        }
    }

    #[test]
    fn a_bearer_check_counts_a_value_without_the_scheme_as_missing() {
        let mut check = TokenCheck::new(TokenScheme::Bearer, Some("s3cret"), "missing", "mismatch");
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", MetadataValue::from_static("s3cret"));
        assert_eq!(check.call(request).unwrap_err().message(), "missing");
    }

    #[test]
    fn no_expected_token_lets_every_call_through() {
        let mut check = TokenCheck::new(TokenScheme::DaprApiToken, None, "missing", "mismatch");
        assert!(check.call(Request::new(())).is_ok());
    }

    #[test]
    fn a_token_with_a_newline_is_refused_up_front() {
        assert!(AddToken::new(TokenScheme::Bearer, Some("a\nb")).is_err());
    }
}
