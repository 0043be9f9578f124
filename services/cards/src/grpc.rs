//! The gRPC edge of cards: the card office's reads, transitions, replacements, print
//! batches and e-purse exports.

use hosted_contracts::v1;
use hosted_platform::{
    auth::{Actor, Role},
    error::{ErrorCode, FieldViolation, ServiceError, Violations, to_status},
    personal_data,
};
use tonic::{Request, Response, Status};

use crate::{Cards, documents, domain::lifecycle::State, office::OfficeError, store};

use Role::{CardOffice, Dosi};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("GetCard", &[CardOffice, Dosi]),
    ("ListCards", &[CardOffice, Dosi]),
    ("ListPrintQueue", &[CardOffice]),
    ("ExportPrintBatch", &[CardOffice]),
    ("GetPrintBatch", &[CardOffice]),
    ("TransitionCard", &[CardOffice]),
    ("ReplaceCard", &[CardOffice]),
    ("ExportEpurse", &[CardOffice]),
    ("GetEpurseExport", &[CardOffice]),
    ("ListDeadLetters", &[Dosi]),
    ("ReplayDeadLetters", &[Dosi]),
    ("RestateCards", &[Dosi]),
    ("ListAuditEntries", &[Dosi]),
    ("ExportPersonalData", &[Dosi]),
];

/// The most cards a print batch or a queue listing holds.
const MAX_BATCH: i32 = 1_000;

/// What a cards RPC can fail with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ApiError {
    code: ErrorCode,
    message: String,
    violations: Violations,
}

impl ServiceError for ApiError {
    fn code(&self) -> ErrorCode {
        self.code
    }

    fn violations(&self) -> &[FieldViolation] {
        &self.violations.0
    }
}

impl From<OfficeError> for ApiError {
    fn from(error: OfficeError) -> Self {
        let code = match &error {
            OfficeError::Invalid { .. } => ErrorCode::InvalidArgument,
            OfficeError::NotFound(_) => ErrorCode::NotFound,
            OfficeError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            OfficeError::Aborted(_) => ErrorCode::Aborted,
            OfficeError::Database(error) => hosted_platform::error::database_code(error),
        };
        let mut violations = Violations::default();
        if let OfficeError::Invalid { field, reason } = &error {
            violations.add(*field, reason.clone());
        }
        ApiError {
            code,
            message: error.to_string(),
            violations,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        OfficeError::Database(error).into()
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        to_status(&error)
    }
}

/// NATS could not be read: the caller may try again later.
fn unavailable(reason: String) -> ApiError {
    ApiError {
        code: ErrorCode::Unavailable,
        message: format!("dead letters: {reason}"),
        violations: Violations::default(),
    }
}

fn invalid(field: &'static str, reason: &str) -> ApiError {
    OfficeError::Invalid {
        field,
        reason: reason.to_owned(),
    }
    .into()
}

fn limit(field: &'static str, asked: i32) -> Result<i64, ApiError> {
    match asked {
        0 => Ok(i64::from(MAX_BATCH)),
        1..=MAX_BATCH => Ok(i64::from(asked)),
        _ => Err(invalid(field, "must be between 1 and 1000 (0: 1000)")),
    }
}

fn format(asked: i32) -> v1::DocumentFormat {
    match v1::DocumentFormat::try_from(asked) {
        Ok(v1::DocumentFormat::Json) => v1::DocumentFormat::Json,
        _ => v1::DocumentFormat::Csv,
    }
}

impl Cards {
    async fn get_card(&self, request: v1::GetCardRequest) -> Result<v1::GetCardResponse, ApiError> {
        let key = request.card.trim();
        if key.is_empty() {
            return Err(invalid("card", "required: a card id or a card number"));
        }
        let mut conn = self.office.pool.acquire().await?;
        let card = store::card(&mut conn, key, false)
            .await?
            .ok_or_else(|| OfficeError::NotFound(format!("card {key:?} not found")))?;
        let history = store::history(&mut conn, card.card_id).await?;
        let wire = |name: &str| {
            State::parse(name)
                .map(State::to_wire)
                .unwrap_or_default()
                .into()
        };
        Ok(v1::GetCardResponse {
            card: Some(self.office.card_message(&card)),
            history: history
                .into_iter()
                .map(|step| v1::CardTransition {
                    from: step.from_state.as_deref().map(wire).unwrap_or_default(),
                    to: wire(&step.to_state),
                    reason: step.reason,
                    actor: step.actor,
                    at: Some(hosted_platform::clock::wire_time(step.at)),
                    cause_event_id: step
                        .cause_event_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }

    async fn list_cards(
        &self,
        request: v1::ListCardsRequest,
    ) -> Result<v1::ListCardsResponse, ApiError> {
        let key = request.learner.trim();
        if key.is_empty() {
            return Err(invalid("learner", "required: a learner id or a login"));
        }
        let mut conn = self.office.pool.acquire().await?;
        let Some(learner_id) = store::find_learner(&mut conn, key).await? else {
            return Err(OfficeError::NotFound(format!("learner {key:?} not known here")).into());
        };
        let cards = store::cards_of(&mut conn, learner_id).await?;
        Ok(v1::ListCardsResponse {
            cards: cards
                .iter()
                .map(|card| self.office.card_message(card))
                .collect(),
        })
    }

    async fn restate_cards(
        &self,
        actor: &str,
        request: v1::RestateCardsRequest,
    ) -> Result<v1::RestateCardsResponse, ApiError> {
        use crate::restate::{DEFAULT_PAGE, Selection};
        let key = request.learner.trim();
        let selection = if !key.is_empty() {
            let mut conn = self.office.pool.acquire().await?;
            let Some(learner_id) = store::find_learner(&mut conn, key).await? else {
                return Err(
                    OfficeError::NotFound(format!("learner {key:?} not known here")).into(),
                );
            };
            Selection::Learner(learner_id)
        } else if request.after.trim().is_empty() {
            Selection::After(uuid::Uuid::nil())
        } else {
            Selection::After(
                uuid::Uuid::parse_str(request.after.trim())
                    .map_err(|_| invalid("after", "not a card id"))?,
            )
        };
        let limit = match request.limit {
            limit if limit <= 0 => DEFAULT_PAGE,
            limit => i64::from(limit),
        };
        let page = self.office.restate(selection, limit, actor).await?;
        Ok(v1::RestateCardsResponse {
            cards: page.cards,
            next_after: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
            published: page.published,
        })
    }

    async fn list_print_queue(
        &self,
        request: v1::ListPrintQueueRequest,
    ) -> Result<v1::ListPrintQueueResponse, ApiError> {
        let limit = limit("limit", request.limit)?;
        let mut conn = self.office.pool.acquire().await?;
        let cards = store::print_queue(&mut conn, limit, false).await?;
        Ok(v1::ListPrintQueueResponse {
            cards: cards
                .iter()
                .map(|card| self.office.card_message(card))
                .collect(),
        })
    }

    async fn export_print_batch(
        &self,
        actor: &str,
        request: v1::ExportPrintBatchRequest,
    ) -> Result<v1::ExportPrintBatchResponse, ApiError> {
        let limit = limit("limit", request.limit)?;
        let format = format(request.format);
        let (batch_id, cards, lines) = self.office.export_batch(actor, limit).await?;
        Ok(v1::ExportPrintBatchResponse {
            batch_id: batch_id.map(|id| id.to_string()).unwrap_or_default(),
            cards: cards
                .iter()
                .map(|card| self.office.card_message(card))
                .collect(),
            format: format.into(),
            document: documents::print_document(&lines, format),
        })
    }

    async fn get_print_batch(
        &self,
        request: v1::GetPrintBatchRequest,
    ) -> Result<v1::GetPrintBatchResponse, ApiError> {
        let format = format(request.format);
        let lines = self.office.batch(&request.batch_id).await?;
        let mut conn = self.office.pool.acquire().await?;
        let mut cards = Vec::with_capacity(lines.len());
        for line in &lines {
            if let Some(card) = store::card(&mut conn, &line.card_id, false).await? {
                cards.push(self.office.card_message(&card));
            }
        }
        Ok(v1::GetPrintBatchResponse {
            batch_id: request.batch_id.trim().to_owned(),
            cards,
            format: format.into(),
            document: documents::print_document(&lines, format),
        })
    }

    async fn transition_card(
        &self,
        actor: &str,
        request: v1::TransitionCardRequest,
    ) -> Result<v1::TransitionCardResponse, ApiError> {
        let to = State::from_wire(request.to());
        let card = self
            .office
            .transition(
                actor,
                &request.card_id,
                to,
                &request.reason,
                &request.csn,
                request.expected_version,
            )
            .await?;
        Ok(v1::TransitionCardResponse {
            card: Some(self.office.card_message(&card)),
        })
    }

    async fn replace_card(
        &self,
        actor: &str,
        request: v1::ReplaceCardRequest,
    ) -> Result<v1::ReplaceCardResponse, ApiError> {
        let (replaced, card) = self
            .office
            .replace(actor, &request.card_id, &request.reason)
            .await?;
        Ok(v1::ReplaceCardResponse {
            replaced: Some(self.office.card_message(&replaced)),
            card: Some(self.office.card_message(&card)),
        })
    }

    async fn export_epurse(
        &self,
        actor: &str,
        request: v1::ExportEpurseRequest,
    ) -> Result<v1::ExportEpurseResponse, ApiError> {
        let (export_id, right_holders) = self.office.export_epurse(actor, request.full).await?;
        Ok(v1::ExportEpurseResponse {
            export_id: export_id.to_string(),
            document: documents::epurse_document(&right_holders),
            right_holders,
        })
    }

    async fn get_epurse_export(
        &self,
        request: v1::GetEpurseExportRequest,
    ) -> Result<v1::GetEpurseExportResponse, ApiError> {
        let (export, right_holders) = self.office.epurse_export(&request.export_id).await?;
        Ok(v1::GetEpurseExportResponse {
            export_id: export.export_id.to_string(),
            full: export.full_export,
            exported_at: Some(hosted_platform::clock::wire_time(export.created_at)),
            actor: export.actor,
            document: documents::epurse_document(&right_holders),
            right_holders,
        })
    }
}

#[tonic::async_trait]
impl v1::cards_service_server::CardsService for Cards {
    async fn get_card(
        &self,
        request: Request<v1::GetCardRequest>,
    ) -> Result<Response<v1::GetCardResponse>, Status> {
        Ok(Response::new(
            Cards::get_card(self, request.into_inner()).await?,
        ))
    }

    async fn list_cards(
        &self,
        request: Request<v1::ListCardsRequest>,
    ) -> Result<Response<v1::ListCardsResponse>, Status> {
        Ok(Response::new(
            Cards::list_cards(self, request.into_inner()).await?,
        ))
    }

    async fn list_print_queue(
        &self,
        request: Request<v1::ListPrintQueueRequest>,
    ) -> Result<Response<v1::ListPrintQueueResponse>, Status> {
        Ok(Response::new(
            Cards::list_print_queue(self, request.into_inner()).await?,
        ))
    }

    async fn export_print_batch(
        &self,
        request: Request<v1::ExportPrintBatchRequest>,
    ) -> Result<Response<v1::ExportPrintBatchResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Cards::export_print_batch(self, actor.name(), request.into_inner()).await?,
        ))
    }

    async fn get_print_batch(
        &self,
        request: Request<v1::GetPrintBatchRequest>,
    ) -> Result<Response<v1::GetPrintBatchResponse>, Status> {
        Ok(Response::new(
            Cards::get_print_batch(self, request.into_inner()).await?,
        ))
    }

    async fn transition_card(
        &self,
        request: Request<v1::TransitionCardRequest>,
    ) -> Result<Response<v1::TransitionCardResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Cards::transition_card(self, actor.name(), request.into_inner()).await?,
        ))
    }

    async fn replace_card(
        &self,
        request: Request<v1::ReplaceCardRequest>,
    ) -> Result<Response<v1::ReplaceCardResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Cards::replace_card(self, actor.name(), request.into_inner()).await?,
        ))
    }

    async fn export_epurse(
        &self,
        request: Request<v1::ExportEpurseRequest>,
    ) -> Result<Response<v1::ExportEpurseResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Cards::export_epurse(self, actor.name(), request.into_inner()).await?,
        ))
    }

    async fn get_epurse_export(
        &self,
        request: Request<v1::GetEpurseExportRequest>,
    ) -> Result<Response<v1::GetEpurseExportResponse>, Status> {
        Ok(Response::new(
            Cards::get_epurse_export(self, request.into_inner()).await?,
        ))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::CardsServiceListAuditEntriesRequest>,
    ) -> Result<Response<v1::CardsServiceListAuditEntriesResponse>, Status> {
        Ok(Response::new(
            crate::audit::list(&self.office.pool, request.get_ref()).await?,
        ))
    }

    async fn export_personal_data(
        &self,
        request: Request<v1::CardsServiceExportPersonalDataRequest>,
    ) -> Result<Response<v1::CardsServiceExportPersonalDataResponse>, Status> {
        let actor = Actor::of(&request);
        let data = personal_data::export(
            &self.office.pool,
            crate::audit::SERVICE,
            &request.get_ref().learner_id,
            crate::store::PERSONAL_DATA_RELATED,
            actor.name(),
        )
        .await?;
        Ok(Response::new(v1::CardsServiceExportPersonalDataResponse {
            data: Some(data),
        }))
    }

    async fn list_dead_letters(
        &self,
        _request: Request<v1::CardsServiceListDeadLettersRequest>,
    ) -> Result<Response<v1::CardsServiceListDeadLettersResponse>, Status> {
        let letters = self.dead_letters.list().await.map_err(unavailable)?;
        Ok(Response::new(v1::CardsServiceListDeadLettersResponse {
            dead_letters: letters.iter().map(|letter| letter.to_wire()).collect(),
        }))
    }

    /// Each consumer's dead letters go through that consumer's handler.
    async fn replay_dead_letters(
        &self,
        request: Request<v1::CardsServiceReplayDeadLettersRequest>,
    ) -> Result<Response<v1::CardsServiceReplayDeadLettersResponse>, Status> {
        let sequences = request.into_inner().sequences;
        let pool = &self.office.pool;
        let (people_replayed, people_failed) = self
            .dead_letters
            .replay_of(
                pool,
                crate::events::INTAKE_CONSUMER,
                &self.people,
                &sequences,
            )
            .await
            .map_err(unavailable)?;
        let (grants_replayed, grants_failed) = self
            .dead_letters
            .replay_of(
                pool,
                crate::events::ENTITLEMENT_CONSUMER,
                &self.grants,
                &sequences,
            )
            .await
            .map_err(unavailable)?;
        let (replayed, failed) = (
            people_replayed + grants_replayed,
            people_failed + grants_failed,
        );
        tracing::info!(replayed, failed, "dead letters replayed");
        Ok(Response::new(v1::CardsServiceReplayDeadLettersResponse {
            replayed,
            failed,
        }))
    }

    async fn restate_cards(
        &self,
        request: Request<v1::RestateCardsRequest>,
    ) -> Result<Response<v1::RestateCardsResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Cards::restate_cards(self, actor.name(), request.into_inner()).await?,
        ))
    }
}
