//! Errors at the gRPC edge: each service has one error enum that says which
//! [`ErrorCode`] each variant is; [`to_status`] is the one place where that becomes a
//! `tonic::Status`. Internal detail goes to the log with a reference that the caller
//! sees, never into the caller's message.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The kinds of failure a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request is valid but the state does not allow it.
    FailedPrecondition,
    /// A concurrent change won (stale version): read again and retry.
    Aborted,
    /// A dependency is away; retrying later may work.
    Unavailable,
    /// Part of the contract that this version does not serve yet.
    Unimplemented,
    Internal,
}

impl ErrorCode {
    fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::Aborted => Code::Aborted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Unimplemented => Code::Unimplemented,
            ErrorCode::Internal => Code::Internal,
        }
    }
}

/// What a database error tells the caller: UNAVAILABLE when PostgreSQL cannot be
/// reached or is not taking work (no connection in time, a connection lost, the
/// server shutting down or starting, out of connections), so that clients retry;
/// INTERNAL for anything else.
pub fn database_code(error: &sqlx::Error) -> ErrorCode {
    let unavailable = match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: shutting down, crashed, starting;
            // 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    };
    if unavailable {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    }
}

/// One bad field of a request: its path (`stay.end_date`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub reason: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every bad field of a request, collected before answering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldViolation::new(field, reason));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found wrong.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl Violations {
    /// `field: reason; field: reason`.
    pub fn listed(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        parts.join("; ")
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.listed())
    }
}

/// What a service's error enum tells the edge.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// The bad fields, for `InvalidArgument`; the fields whose state refuses the change,
    /// for `FailedPrecondition`.
    fn violations(&self) -> &[FieldViolation] {
        &[]
    }
}

/// The one mapping from a service error to a gRPC status.
pub fn to_status<E: ServiceError>(error: &E) -> Status {
    let code = error.code();
    match code {
        ErrorCode::InvalidArgument => {
            let violations = error.violations();
            let mut details = ErrorDetails::new();
            for violation in violations {
                details
                    .add_bad_request_violation(violation.field.clone(), violation.reason.clone());
            }
            Status::with_error_details(code.grpc(), error.to_string(), details)
        }
        ErrorCode::FailedPrecondition if !error.violations().is_empty() => {
            let mut details = ErrorDetails::new();
            for violation in error.violations() {
                details.add_precondition_failure_violation(
                    "STATE",
                    violation.field.clone(),
                    violation.reason.clone(),
                );
            }
            Status::with_error_details(code.grpc(), error.to_string(), details)
        }
        ErrorCode::Internal | ErrorCode::Unavailable => {
            let reference = uuid::Uuid::now_v7();
            tracing::error!(%reference, error = %error, "request failed");
            let message = if code == ErrorCode::Internal {
                format!("internal error (reference {reference})")
            } else {
                format!("service temporarily unavailable (reference {reference})")
            };
            Status::new(code.grpc(), message)
        }
        _ => Status::new(code.grpc(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum SampleError {
        #[error("{0}")]
        Invalid(Violations),
        #[error("database password=hunter2 unreachable")]
        Database,
    }

    impl ServiceError for SampleError {
        fn code(&self) -> ErrorCode {
            match self {
                SampleError::Invalid(_) => ErrorCode::InvalidArgument,
                SampleError::Database => ErrorCode::Internal,
            }
        }

        fn violations(&self) -> &[FieldViolation] {
            match self {
                SampleError::Invalid(violations) => &violations.0,
                SampleError::Database => &[],
            }
        }
    }

    #[test]
    fn invalid_argument_names_every_field() {
        let mut violations = Violations::default();
        violations.add("person.email", "not an e-mail address");
        violations.add("stay.end_date", "before stay.start_date");
        let status = to_status(&SampleError::Invalid(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("person.email: not an e-mail address")
        );
        assert!(
            status
                .message()
                .contains("stay.end_date: before stay.start_date")
        );
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), 2);
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_bad_query_internal() {
        assert_eq!(
            database_code(&sqlx::Error::PoolTimedOut),
            ErrorCode::Unavailable
        );
        assert_eq!(
            database_code(&sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            ErrorCode::Unavailable
        );
        assert_eq!(
            database_code(&sqlx::Error::RowNotFound),
            ErrorCode::Internal
        );
    }

    #[test]
    fn internal_detail_stays_in_the_log() {
        let status = to_status(&SampleError::Database);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
        assert!(status.message().contains("reference"));
    }
}
