//! What every service's `ListAuditEntries` shares: the subject of the query, checked
//! the same way everywhere, and the refusals as one error.

use hosted_contracts::v1;
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

/// The one subject the request names, of a kind in `accepted`, as a UUID.
pub fn subject(
    request: &v1::ListAuditEntriesRequest,
    accepted: &[SubjectKind],
) -> Result<Subject, AuditError> {
    let given: Vec<(SubjectKind, &str)> = [
        (SubjectKind::Learner, request.learner_id.trim()),
        (SubjectKind::Agreement, request.agreement_id.trim()),
        (SubjectKind::Card, request.card_id.trim()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .collect();
    let names = || {
        accepted
            .iter()
            .map(|kind| kind.field())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let [(kind, value)] = given.as_slice() else {
        return Err(invalid(
            "subject",
            format!("required: exactly one of {}", names()),
        ));
    };
    if !accepted.contains(kind) {
        return Err(invalid(
            kind.field(),
            format!("not answered here: give {}", names()),
        ));
    }
    let id = Uuid::parse_str(value)
        .map_err(|_| invalid(kind.field(), "not an id (a UUID)".to_owned()))?;
    Ok(match kind {
        SubjectKind::Learner => Subject::Learner(id),
        SubjectKind::Agreement => Subject::Agreement(id),
        SubjectKind::Card => Subject::Card(id),
    })
}

/// `Some(id)` as text, or empty.
pub fn id_text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(learner: &str, agreement: &str, card: &str) -> v1::ListAuditEntriesRequest {
        v1::ListAuditEntriesRequest {
            learner_id: learner.to_owned(),
            agreement_id: agreement.to_owned(),
            card_id: card.to_owned(),
        }
    }

    #[test]
    fn exactly_one_accepted_subject_as_a_uuid() {
        let id = Uuid::now_v7().to_string();
        let learner = [SubjectKind::Learner];
        assert!(matches!(
            subject(&request(&id, "", ""), &learner),
            Ok(Subject::Learner(_))
        ));
        for (bad, field) in [
            (request("", "", ""), "subject"),
            (request(&id, &id, ""), "subject"),
            (request("", "", &id), "card_id"),
            (request("paul.durand", "", ""), "learner_id"),
        ] {
            let Err(AuditError::Invalid(violations)) = subject(&bad, &learner) else {
                panic!("{bad:?} must be refused");
            };
            assert_eq!(violations.0[0].field, field);
        }
    }
}
