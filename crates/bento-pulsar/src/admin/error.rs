//! [`AdminError`]: what went wrong with an admin call, with the broker's own words.

use std::fmt;

/// A failed call to Pulsar's admin REST API.
///
/// Every variant names the call (`GET /admin/v2/tenants`), so the message alone tells an
/// operator what was attempted; [`AdminError::Status`] carries the HTTP status and the broker's
/// message (the `reason` of its JSON error body when it sends one).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminError {
    /// The broker answered with an error status.
    Status {
        /// HTTP method of the call.
        method: String,
        /// Path of the call, e.g. `/admin/v2/tenants/acme`.
        path: String,
        /// HTTP status code, e.g. 404 or 409.
        status: u16,
        /// The broker's explanation: the `reason` field of its JSON body, else the body's text,
        /// else the status's standard phrase.
        message: String,
    },
    /// The admin endpoint could not be reached, or did not answer in time.
    Connection {
        /// HTTP method of the call.
        method: String,
        /// Full URL that was called (never carries credentials: tokens travel in a header).
        url: String,
        /// Why, as the HTTP client reports it.
        reason: String,
    },
    /// The broker answered with a success status, but with a body this client cannot read.
    Decode {
        /// HTTP method of the call.
        method: String,
        /// Path of the call.
        path: String,
        /// What was wrong with the body.
        reason: String,
    },
    /// An argument or a setting is invalid; nothing was sent.
    Invalid {
        /// What is invalid: a configuration key (`messaging.pulsar.admin_url`) or an argument.
        what: String,
        /// Why.
        reason: String,
    },
}

impl AdminError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        AdminError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status the broker answered with, if it answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The broker's message (for [`AdminError::Status`]) or the reason of the failure.
    pub fn message(&self) -> &str {
        match self {
            AdminError::Status { message, .. } => message,
            AdminError::Connection { reason, .. }
            | AdminError::Decode { reason, .. }
            | AdminError::Invalid { reason, .. } => reason,
        }
    }

    /// Whether the broker said the resource does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the broker said the resource already exists or is in a conflicting state (409).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Status {
                method,
                path,
                status,
                message,
            } => write!(
                f,
                "Pulsar admin {method} {path} failed: HTTP {status}: {message}"
            ),
            AdminError::Connection {
                method,
                url,
                reason,
            } => write!(
                f,
                "cannot reach the Pulsar admin API at {url} ({method}): {reason}"
            ),
            AdminError::Decode {
                method,
                path,
                reason,
            } => write!(
                f,
                "Pulsar admin {method} {path}: unexpected answer from the broker: {reason}"
            ),
            AdminError::Invalid { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

impl std::error::Error for AdminError {}

impl From<AdminError> for bento_application::BusError {
    fn from(error: AdminError) -> Self {
        bento_application::BusError::backend("pulsar", "a Pulsar admin call", error)
    }
}

/// The text of `error` and of every error it wraps, joined with `: ` (reqwest's own message is
/// only "error sending request"; the cause, like "connection refused", is further down).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The broker's message in an error body: the JSON `reason` (or `message`) field when there is
/// one, else the body's text if it is short plain text, else the status's standard phrase.
pub(crate) fn broker_message(status: u16, body: &[u8]) -> String {
    const MAX: usize = 500;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["reason", "message", "error"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str())
                && !text.trim().is_empty()
            {
                return text.trim().to_owned();
            }
        }
        if let Some(text) = value.as_str()
            && !text.trim().is_empty()
        {
            return text.trim().to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let looks_like_html = text.starts_with('<');
    if !text.is_empty() && !looks_like_html {
        let mut short: String = text.chars().take(MAX).collect();
        if text.chars().count() > MAX {
            short.push('…');
        }
        return short;
    }
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_field_wins() {
        assert_eq!(
            broker_message(409, br#"{"reason":"Tenant already exist"}"#),
            "Tenant already exist"
        );
        assert_eq!(
            broker_message(400, b"Unrecognized token 'x'\n"),
            "Unrecognized token 'x'"
        );
        assert_eq!(broker_message(404, b""), "Not Found");
        assert_eq!(
            broker_message(502, b"<html>bad gateway</html>"),
            "Bad Gateway"
        );
        assert_eq!(broker_message(599, b""), "no message");
        assert_eq!(broker_message(500, br#""boom""#), "boom");
        let long = "x".repeat(2000);
        assert!(broker_message(500, long.as_bytes()).chars().count() <= 501);
    }

    #[test]
    fn display_names_the_call_status_and_message() {
        let error = AdminError::Status {
            method: "PUT".into(),
            path: "/admin/v2/tenants/acme".into(),
            status: 409,
            message: "Tenant already exist".into(),
        };
        assert_eq!(
            error.to_string(),
            "Pulsar admin PUT /admin/v2/tenants/acme failed: HTTP 409: Tenant already exist"
        );
        assert!(error.is_conflict());
        assert!(!error.is_not_found());
        assert_eq!(error.message(), "Tenant already exist");
    }
}
