//! The one error type of the directory service; the platform maps it to gRPC.

use hosted_platform::error::{ErrorCode, FieldViolation, ServiceError, Violations};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ldap: {0}")]
    Ldap(#[from] crate::ldap::LdapError),
    #[error("events: {0}")]
    Events(String),
    #[error("projection: {0}")]
    Projection(String),
}

impl ServiceError for DirectoryError {
    fn code(&self) -> ErrorCode {
        match self {
            DirectoryError::Invalid(_) => ErrorCode::InvalidArgument,
            DirectoryError::NotFound(_) => ErrorCode::NotFound,
            DirectoryError::Ldap(_) | DirectoryError::Events(_) => ErrorCode::Unavailable,
            DirectoryError::Database(error) => hosted_platform::error::database_code(error),
            DirectoryError::Projection(_) => ErrorCode::Internal,
        }
    }

    fn violations(&self) -> &[FieldViolation] {
        match self {
            DirectoryError::Invalid(violations) => &violations.0,
            _ => &[],
        }
    }
}

impl From<DirectoryError> for tonic::Status {
    fn from(error: DirectoryError) -> Self {
        hosted_platform::error::to_status(&error)
    }
}
