//! Errors as the protocol names them. Every failure a client can see is an [`ApiError`]: a
//! sentence for people, a [`Code`] for programs. Mapping from internal errors happens here and
//! nowhere else, so that no server path or OS error text can reach the wire by accident.

use serde::Serialize;
use serde_json::Value;

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    InvalidMessage,
    UnknownType,
    ValidationFailed,
    InvalidPath,
    ProjectNesting,
    ProjectExists,
    ProjectLimit,
    ProjectNotFound,
    ProjectBusy,
    NoActiveRun,
    RequestNotFound,
    AlreadyResolved,
    QueueFull,
    AgentNotFound,
    /// The agent's circuit breaker is open: its backend keeps failing.
    AgentUnavailable,
    /// The project's node of the cluster cannot be reached now (docs/scaling.md): retryable.
    NodeUnavailable,
    ExecutionFailed,
    RateLimited,
    Unauthorized,
    StorageError,
    InternalError,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidMessage => "INVALID_MESSAGE",
            Code::UnknownType => "UNKNOWN_TYPE",
            Code::ValidationFailed => "VALIDATION_FAILED",
            Code::InvalidPath => "INVALID_PATH",
            Code::ProjectNesting => "PROJECT_NESTING",
            Code::ProjectExists => "PROJECT_EXISTS",
            Code::ProjectLimit => "PROJECT_LIMIT",
            Code::ProjectNotFound => "PROJECT_NOT_FOUND",
            Code::ProjectBusy => "PROJECT_BUSY",
            Code::NoActiveRun => "NO_ACTIVE_RUN",
            Code::RequestNotFound => "REQUEST_NOT_FOUND",
            Code::AlreadyResolved => "ALREADY_RESOLVED",
            Code::QueueFull => "QUEUE_FULL",
            Code::AgentNotFound => "AGENT_NOT_FOUND",
            Code::AgentUnavailable => "AGENT_UNAVAILABLE",
            Code::NodeUnavailable => "NODE_UNAVAILABLE",
            Code::ExecutionFailed => "EXECUTION_FAILED",
            Code::RateLimited => "RATE_LIMITED",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::StorageError => "STORAGE_ERROR",
            Code::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// A failure to tell a client about: `data` of an `error` message.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub error: String,
    pub code: Code,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: Code, error: impl Into<String>) -> Self {
        ApiError {
            error: error.into(),
            code,
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn validation(error: impl Into<String>) -> Self {
        Self::new(Code::ValidationFailed, error)
    }

    pub fn project_not_found(id: &str) -> Self {
        let shown = crate::logfmt::sanitize(id, 128);
        Self::new(Code::ProjectNotFound, format!("project not found: {shown}"))
            .with_details(serde_json::json!({ "project_id": shown }))
    }

    /// A storage failure, told without the path or the OS text that caused it (those go to the
    /// log, where the operator can see them).
    pub fn storage(what: &str) -> Self {
        Self::new(
            Code::StorageError,
            format!("could not {what}: the server could not write to its data directory (the disk may be full); try again later"),
        )
    }

    pub fn internal(what: impl Into<String>) -> Self {
        Self::new(Code::InternalError, what)
    }

    /// A request on a project whose node of the cluster cannot be reached now: not carried
    /// out, and worth sending again (`details.retryable`), `details.node` says which node.
    pub fn node_unavailable(what: impl Into<String>, node: &str) -> Self {
        Self::new(Code::NodeUnavailable, what)
            .with_details(serde_json::json!({ "node": node, "retryable": true }))
    }

    /// An `INTERNAL_ERROR` for a request that was not carried out and may be sent again as it
    /// is (with its `idempotency_key`, if it had one): `details.retryable` tells programs so.
    pub fn retryable(what: impl Into<String>) -> Self {
        Self::internal(what).with_details(serde_json::json!({ "retryable": true }))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.code.as_str())
    }
}

impl std::error::Error for ApiError {}
