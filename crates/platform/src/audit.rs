//! What every service's `ListAuditEntries` shares: the subject of the query, checked
//! the same way everywhere, and the refusals as one error.

use tonic::Status;
use uuid::Uuid;

use crate::error::{ErrorCode, FieldViolation, ServiceError, Violations, to_status};

/// Whose story is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Learner(Uuid),
    Agreement(Uuid),
    Card(Uuid),
}

/// The kinds of subject an RPC answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Learner,
    Agreement,
    Card,
}

impl SubjectKind {
    fn field(self) -> &'static str {
        match self {
            SubjectKind::Learner => "learner_id",
            SubjectKind::Agreement => "agreement_id",
            SubjectKind::Card => "card_id",
        }
    }
}

/// A bad subject, or the database failing.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ServiceError for AuditError {
    fn code(&self) -> ErrorCode {
        match self {
            AuditError::Invalid(_) => ErrorCode::InvalidArgument,
            AuditError::Database(error) => crate::error::database_code(error),
        }
    }

    fn violations(&self) -> &[FieldViolation] {
        match self {
            AuditError::Invalid(violations) => &violations.0,
            AuditError::Database(_) => &[],
        }
    }
}

impl From<AuditError> for Status {
    fn from(error: AuditError) -> Self {
        if let AuditError::Database(cause) = &error {
            tracing::error!(error = %cause, "audit query failed");
        }
        to_status(&error)
    }
}

fn invalid(field: &str, reason: String) -> AuditError {
    let mut violations = Violations::default();
    violations.add(field, reason);
    AuditError::Invalid(violations)
}

/// The one subject a request names among its `fields` (each kind with the value
/// given), as a UUID.
pub fn subject(fields: &[(SubjectKind, &str)]) -> Result<Subject, AuditError> {
    let given: Vec<(SubjectKind, &str)> = fields
        .iter()
        .map(|(kind, value)| (*kind, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let [(kind, value)] = given.as_slice() else {
        let names: Vec<&str> = fields.iter().map(|(kind, _)| kind.field()).collect();
        let field = match fields {
            [(kind, _)] => kind.field(),
            _ => "subject",
        };
        return Err(invalid(
            field,
            format!("required: exactly one of {}", names.join(", ")),
        ));
    };
    let id = Uuid::parse_str(value)
        .map_err(|_| invalid(kind.field(), "not an id (a UUID)".to_owned()))?;
    Ok(match kind {
        SubjectKind::Learner => Subject::Learner(id),
        SubjectKind::Agreement => Subject::Agreement(id),
        SubjectKind::Card => Subject::Card(id),
    })
}

/// The id of a request's only subject field.
pub fn required_id(kind: SubjectKind, value: &str) -> Result<Uuid, AuditError> {
    match subject(&[(kind, value)])? {
        Subject::Learner(id) | Subject::Agreement(id) | Subject::Card(id) => Ok(id),
    }
}

/// `Some(id)` as text, or empty.
pub fn id_text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<Subject, AuditError>) -> String {
        match result {
            Err(AuditError::Invalid(violations)) => violations.0[0].field.clone(),
            other => panic!("must be refused: {other:?}"),
        }
    }

    #[test]
    fn exactly_one_subject_as_a_uuid() {
        let id = Uuid::now_v7().to_string();
        assert!(matches!(
            subject(&[(SubjectKind::Learner, &id)]),
            Ok(Subject::Learner(_))
        ));
        assert!(matches!(
            subject(&[(SubjectKind::Learner, ""), (SubjectKind::Card, &id)]),
            Ok(Subject::Card(_))
        ));
        assert_eq!(
            field_of(subject(&[(SubjectKind::Learner, " ")])),
            "learner_id"
        );
        assert_eq!(
            field_of(subject(&[
                (SubjectKind::Learner, &id),
                (SubjectKind::Card, &id)
            ])),
            "subject"
        );
        assert_eq!(
            field_of(subject(&[
                (SubjectKind::Learner, ""),
                (SubjectKind::Card, "")
            ])),
            "subject"
        );
        assert_eq!(
            field_of(subject(&[(SubjectKind::Agreement, "paul.durand")])),
            "agreement_id"
        );
    }
}
