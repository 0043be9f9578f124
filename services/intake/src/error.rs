//! The one error type of the intake service; the platform maps it to gRPC.

use hosted_platform::error::{ErrorCode, FieldViolation, ServiceError, Violations};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0} not found")]
    NotFound(String),
    /// The state does not allow the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The state does not allow the change, because of these fields' values (an INE
    /// that is another learner's, an agreement's cap reached).
    #[error("refused: {}", .0.listed())]
    Refused(Violations),
    /// What the request would create exists already, otherwise than asked (a cohort
    /// payment's reference booked with another amount).
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won (stale version).
    #[error("{0}")]
    Aborted(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event encoding: {0}")]
    Encoding(String),
}

impl From<Violations> for IntakeError {
    fn from(violations: Violations) -> Self {
        IntakeError::Invalid(violations)
    }
}

impl ServiceError for IntakeError {
    fn code(&self) -> ErrorCode {
        match self {
            IntakeError::Invalid(_) => ErrorCode::InvalidArgument,
            IntakeError::NotFound(_) => ErrorCode::NotFound,
            IntakeError::FailedPrecondition(_) | IntakeError::Refused(_) => {
                ErrorCode::FailedPrecondition
            }
            IntakeError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            IntakeError::Aborted(_) => ErrorCode::Aborted,
            IntakeError::Database(error) => hosted_platform::error::database_code(error),
            IntakeError::Encoding(_) => ErrorCode::Internal,
        }
    }

    fn violations(&self) -> &[FieldViolation] {
        match self {
            IntakeError::Invalid(violations) | IntakeError::Refused(violations) => &violations.0,
            _ => &[],
        }
    }
}

impl From<IntakeError> for tonic::Status {
    fn from(error: IntakeError) -> Self {
        hosted_platform::error::to_status(&error)
    }
}
