//! The gRPC edge of intake: converts wire types, checks, calls the store, converts back.

use hosted_contracts::v1;
use hosted_platform::auth::{Actor, Role};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    Intake,
    domain::{
        self,
        agreement::{AgreementInput, Payer},
        registration::{PersonInput, StayInput},
        stay::{AmendmentInput, EarlyEnd},
    },
    error::IntakeError,
    events,
    registry::{self, StayChange},
    store::{
        self, LookupKey,
        batch::{BatchRow, RowOutcome},
    },
};
use hosted_platform::error::Violations;
use std::collections::HashMap;

use Role::{CardOffice, Deve, Dosi, Finance, Integrator, Legal};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("RegisterStay", &[Deve]),
    ("GetLearner", &[Deve, Dosi]),
    ("SearchLearners", &[Deve, Dosi]),
    ("IdentifyLearner", &[Deve, Dosi, Integrator]),
    ("AmendPerson", &[Deve]),
    ("AmendStay", &[Deve]),
    ("ExtendStay", &[Deve]),
    ("EndStay", &[Deve]),
    ("CancelStay", &[Deve]),
    ("ImportStays", &[Deve]),
    (
        "ListPopulations",
        &[Deve, Legal, Finance, Dosi, Integrator, CardOffice],
    ),
    ("SavePopulation", &[Deve]),
    ("CreateAgreement", &[Legal]),
    ("AmendAgreement", &[Legal]),
    ("EndAgreement", &[Legal]),
    ("GetAgreement", &[Deve, Legal, Finance, Dosi]),
    ("ListAgreements", &[Deve, Legal, Finance, Dosi]),
    ("RecordPayment", &[Finance]),
    ("RecordCohortPayment", &[Finance]),
    ("ListPaymentsDue", &[Finance, Deve]),
    ("GetStats", &[Dosi, Deve]),
    (
        "ListUnits",
        &[Deve, Legal, Finance, Dosi, Integrator, CardOffice],
    ),
    ("SaveUnit", &[Deve]),
    ("RestateLearners", &[Dosi]),
    ("LockLearner", &[Deve, Dosi]),
    ("UnlockLearner", &[Deve, Dosi]),
    ("ErasePerson", &[Deve]),
    ("ExportPersonalData", &[Dosi]),
    ("ListAuditEntries", &[Dosi]),
    ("ListAgreementAuditEntries", &[Dosi, Legal]),
];

pub(crate) fn person_input(person: Option<v1::PersonInput>) -> PersonInput {
    let person = person.unwrap_or_default();
    PersonInput {
        family_name: person.family_name,
        birth_name: person.birth_name,
        given_names: person.given_names,
        birth_date: person.birth_date,
        email: person.email,
        ine: person.ine,
        phone: person.phone,
    }
}

pub(crate) fn stay_input(stay: Option<v1::StayInput>) -> StayInput {
    let stay = stay.unwrap_or_default();
    StayInput {
        population: stay.population,
        sponsor_unit: stay.sponsor_unit,
        sponsor_login: stay.sponsor_login,
        agreement_id: stay.agreement_id,
        start_date: stay.start_date,
        end_date: stay.end_date,
        requested_resources: stay.requested_resources,
    }
}

fn agreement_input(agreement: Option<v1::AgreementInput>) -> AgreementInput {
    let agreement = agreement.unwrap_or_default();
    AgreementInput {
        partner_name: agreement.partner_name,
        partner_uai: agreement.partner_uai,
        populations: agreement.populations,
        start_date: agreement.start_date,
        end_date: agreement.end_date,
        head_count_cap: agreement.head_count_cap,
        options: agreement.options,
        payer: match v1::Payer::try_from(agreement.payer).unwrap_or(v1::Payer::Unspecified) {
            v1::Payer::Nobody => Some(Payer::Nobody),
            v1::Payer::Learner => Some(Payer::Learner),
            v1::Payer::Partner => Some(Payer::Partner),
            v1::Payer::Unspecified => None,
        },
    }
}

/// A trimmed text, `None` when blank.
fn text(value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| value.trim().to_owned())
}

/// An optional id: `None` when blank; a violation of `field` when it is not one.
fn optional_id(
    value: &str,
    field: &str,
    reason: &str,
    violations: &mut Violations,
) -> Option<Uuid> {
    let parsed = Uuid::parse_str(&text(value)?).ok();
    if parsed.is_none() {
        violations.add(field, reason);
    }
    parsed
}

/// Page sizes: 50 by default, 500 at most.
fn page_size(requested: i32) -> i64 {
    match requested {
        size if size <= 0 => 50,
        size => i64::from(size.min(500)),
    }
}

/// Rows per ImportStays call: large enough to amortise a transaction, small enough
/// to keep one call short.
pub const MAX_IMPORT_ROWS: usize = 1000;

/// The answer to one import row; `row_numbers` are the request's, for a duplicate's
/// earlier row.
fn import_result(row_number: i64, outcome: RowOutcome, row_numbers: &[i64]) -> v1::ImportResult {
    let mut result = v1::ImportResult {
        row_number,
        ..Default::default()
    };
    let (outcome, learner_id, stay_id, login) = match outcome {
        RowOutcome::Created {
            learner_id,
            stay_id,
            login,
        } => (v1::ImportOutcome::Created, learner_id, stay_id, login),
        RowOutcome::StayAdded {
            learner_id,
            stay_id,
            login,
            ..
        } => (v1::ImportOutcome::StayAdded, learner_id, stay_id, login),
        RowOutcome::Unchanged {
            learner_id,
            stay_id,
            login,
        } => (v1::ImportOutcome::Unchanged, learner_id, stay_id, login),
        RowOutcome::DuplicateOfRow(earlier) => {
            result.outcome = v1::ImportOutcome::DuplicateRow.into();
            result.duplicate_of_row = row_numbers.get(earlier).copied().unwrap_or_default();
            return result;
        }
        RowOutcome::Rejected(violations) | RowOutcome::Refused(violations) => {
            result.outcome = v1::ImportOutcome::Rejected.into();
            result.violations = violations
                .0
                .into_iter()
                .map(|violation| v1::FieldViolation {
                    field: violation.field,
                    reason: violation.reason,
                })
                .collect();
            return result;
        }
        RowOutcome::PossibleDuplicate(candidates) => {
            result.outcome = v1::ImportOutcome::PossibleDuplicate.into();
            result.possible_duplicates = candidates
                .into_iter()
                .map(events::possible_duplicate)
                .collect();
            return result;
        }
    };
    // A dry run has no ids for what it would create: nil ids are left empty.
    let id = |id: Uuid| {
        if id.is_nil() {
            String::new()
        } else {
            id.to_string()
        }
    };
    result.outcome = outcome.into();
    result.learner_id = id(learner_id);
    result.stay_id = id(stay_id);
    result.login = login;
    result
}

#[tonic::async_trait]
impl v1::intake_service_server::IntakeService for Intake {
    async fn register_stay(
        &self,
        request: Request<v1::RegisterStayRequest>,
    ) -> Result<Response<v1::RegisterStayResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let person = person_input(request.person);
        let stay = stay_input(request.stay);
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let population = store::population(&mut conn, &stay.population)
            .await
            .map_err(IntakeError::from)?;
        drop(conn);
        let unit = self
            .unit(&domain::unit::normalise_code(&stay.sponsor_unit))
            .await?;
        let registration = domain::registration::validate(
            &person,
            &stay,
            population.as_ref(),
            unit.as_ref(),
            self.max_start_ahead_days,
            self.today(),
        )
        .map_err(IntakeError::from)?;
        let response = self
            .register(registration, request.confirm_new_person, actor.name())
            .await?;
        Ok(Response::new(response))
    }

    async fn get_learner(
        &self,
        request: Request<v1::GetLearnerRequest>,
    ) -> Result<Response<v1::GetLearnerResponse>, Status> {
        use v1::get_learner_request::Key;
        let key = request.into_inner().key;
        let learner_id = match key {
            Some(Key::LearnerId(id)) => Uuid::parse_str(id.trim()).ok(),
            Some(Key::Login(login)) => store::learner_id_by(&self.pool, LookupKey::Login, &login)
                .await
                .map_err(IntakeError::from)?,
            Some(Key::LearnerNumber(number)) => {
                store::learner_id_by(&self.pool, LookupKey::LearnerNumber, &number)
                    .await
                    .map_err(IntakeError::from)?
            }
            None => {
                let mut violations = hosted_platform::error::Violations::default();
                violations.add(
                    "key",
                    "one of learner_id, login or learner_number is required",
                );
                return Err(IntakeError::Invalid(violations).into());
            }
        };
        let not_found = || IntakeError::NotFound("learner".to_owned());
        let learner_id = learner_id.ok_or_else(not_found)?;
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let record = store::learner(&mut conn, learner_id)
            .await
            .map_err(IntakeError::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(v1::GetLearnerResponse {
            learner: Some(events::learner_message(&record, self.today())),
            erased_at: record
                .person
                .erased_at
                .map(hosted_platform::clock::wire_time),
        }))
    }

    async fn list_populations(
        &self,
        _request: Request<v1::ListPopulationsRequest>,
    ) -> Result<Response<v1::ListPopulationsResponse>, Status> {
        let populations = store::populations(&self.pool)
            .await
            .map_err(IntakeError::from)?;
        Ok(Response::new(v1::ListPopulationsResponse {
            populations: populations.iter().map(events::population_message).collect(),
        }))
    }

    async fn save_population(
        &self,
        request: Request<v1::SavePopulationRequest>,
    ) -> Result<Response<v1::SavePopulationResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let population = request.population.unwrap_or_default();
        let population = domain::Population {
            code: population.code.trim().to_owned(),
            label: population.label.trim().to_owned(),
            supann_population: population.supann_population.trim().to_owned(),
            agreement_required: population.agreement_required,
            default_duration_days: population.default_duration_days,
            max_duration_days: population.max_duration_days,
            payment_required: population.payment_required,
            fee_cents: population.fee_cents,
        };
        let (population, created) = self
            .save_population(population, &request.reason, actor.name())
            .await?;
        Ok(Response::new(v1::SavePopulationResponse {
            population: Some(population),
            created,
        }))
    }

    async fn list_units(
        &self,
        _request: Request<v1::ListUnitsRequest>,
    ) -> Result<Response<v1::ListUnitsResponse>, Status> {
        let units = store::units::list(&self.pool)
            .await
            .map_err(IntakeError::from)?;
        Ok(Response::new(v1::ListUnitsResponse {
            units: units.iter().map(events::unit_message).collect(),
        }))
    }

    async fn save_unit(
        &self,
        request: Request<v1::SaveUnitRequest>,
    ) -> Result<Response<v1::SaveUnitResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let unit = request.unit.unwrap_or_default();
        let unit = domain::Unit {
            code: domain::unit::normalise_code(&unit.code),
            kind: unit.kind.trim().to_ascii_lowercase(),
            label: unit.label.trim().to_owned(),
        };
        let (unit, created) = self.save_unit(unit, &request.reason, actor.name()).await?;
        Ok(Response::new(v1::SaveUnitResponse {
            unit: Some(unit),
            created,
        }))
    }

    async fn search_learners(
        &self,
        request: Request<v1::SearchLearnersRequest>,
    ) -> Result<Response<v1::SearchLearnersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let agreement_id = optional_id(
            &request.agreement_id,
            "agreement_id",
            "not an id",
            &mut violations,
        );
        let active_on = text(&request.active_on)
            .and_then(|day| domain::registration::parse_date("active_on", &day, &mut violations));
        let after = optional_id(
            &request.page_token,
            "page_token",
            "not a token this service gave",
            &mut violations,
        );
        let name_words: Vec<String> = request
            .name
            .split([' ', '-', '\'', ','])
            .map(domain::names::fold)
            .filter(|word| !word.is_empty())
            .collect();
        if name_words.is_empty() && !request.name.trim().is_empty() {
            violations.add(
                "name",
                "needs at least one letter or digit: punctuation alone (*, %, _) matches nobody",
            );
        }
        let filter = store::SearchFilter {
            name_words,
            login: text(&request.login).map(|login| login.to_ascii_lowercase()),
            learner_number: text(&request.learner_number),
            ine: text(&request.ine).map(|ine| ine.to_ascii_uppercase()),
            population: text(&request.population),
            agreement_id,
            sponsor_unit: text(&request.sponsor_unit)
                .map(|unit| domain::unit::normalise_code(&unit)),
            active_on,
        };
        if violations.is_empty() && filter.is_empty() {
            violations.add(
                "name",
                "needs at least one letter or digit, or give another filter (login, learner_number, \
                 ine, population, agreement_id, sponsor_unit, active_on): a search never lists everyone",
            );
        }
        if !violations.is_empty() {
            return Err(IntakeError::Invalid(violations).into());
        }
        let limit = page_size(request.page_size);
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let mut ids = store::search(&mut conn, &filter, after, limit + 1)
            .await
            .map_err(IntakeError::from)?;
        let next_page_token = if ids.len() as i64 > limit {
            ids.truncate(limit as usize);
            ids.last().map(Uuid::to_string).unwrap_or_default()
        } else {
            String::new()
        };
        let records = store::learners(&mut conn, &ids)
            .await
            .map_err(IntakeError::from)?;
        let today = self.today();
        let found: Vec<&store::LearnerRecord> =
            ids.iter().filter_map(|id| records.get(id)).collect();
        Ok(Response::new(v1::SearchLearnersResponse {
            learners: found
                .iter()
                .map(|record| events::learner_message(record, today))
                .collect(),
            next_page_token,
            erased_learner_ids: found
                .iter()
                .filter(|record| record.person.erased_at.is_some())
                .map(|record| record.person.learner_id.to_string())
                .collect(),
        }))
    }

    async fn amend_person(
        &self,
        request: Request<v1::AmendPersonRequest>,
    ) -> Result<Response<v1::AmendPersonResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let learner_id = registry::parse_id("learner_id", &request.learner_id)?;
        let learner = self
            .amend_person(
                learner_id,
                request.expected_version,
                person_input(request.person),
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::AmendPersonResponse {
            learner: Some(learner),
        }))
    }

    async fn amend_stay(
        &self,
        request: Request<v1::AmendStayRequest>,
    ) -> Result<Response<v1::AmendStayResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let stay_id = registry::parse_id("stay_id", &request.stay_id)?;
        let sponsor_login = if request.clear_sponsor_login {
            Some(None)
        } else if request.sponsor_login.trim().is_empty() {
            None
        } else {
            Some(Some(request.sponsor_login.trim().to_owned()))
        };
        let sponsor_unit = (!request.sponsor_unit.trim().is_empty())
            .then(|| request.sponsor_unit.trim().to_owned());
        // The unit's form is the domain's to judge (with the rest of the amendment);
        // a well-formed code must also be in the catalogue.
        if let Some(code) = sponsor_unit.as_deref().map(domain::unit::normalise_code)
            && domain::unit::is_code(&code)
            && self.unit(&code).await?.is_none()
        {
            let mut violations = Violations::default();
            violations.add("sponsor_unit", domain::unit::not_in_catalogue(&code));
            return Err(IntakeError::Invalid(violations).into());
        }
        let amendment = AmendmentInput {
            sponsor_unit,
            sponsor_login,
            set_requested_resources: request.set_requested_resources,
            requested_resources: request.requested_resources,
        };
        let learner = self
            .change_stay(
                stay_id,
                StayChange::Amend(amendment),
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::AmendStayResponse {
            learner: Some(learner),
        }))
    }

    async fn extend_stay(
        &self,
        request: Request<v1::ExtendStayRequest>,
    ) -> Result<Response<v1::ExtendStayResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let stay_id = registry::parse_id("stay_id", &request.stay_id)?;
        let new_end = self.day("new_end_date", &request.new_end_date)?;
        let learner = self
            .change_stay(
                stay_id,
                StayChange::Extend(new_end),
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::ExtendStayResponse {
            learner: Some(learner),
        }))
    }

    async fn end_stay(
        &self,
        request: Request<v1::EndStayRequest>,
    ) -> Result<Response<v1::EndStayResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let stay_id = registry::parse_id("stay_id", &request.stay_id)?;
        let end_date = self.day("end_date", &request.end_date)?;
        let early_end = match v1::EarlyEnd::try_from(request.early_end) {
            Ok(v1::EarlyEnd::Unspecified) => None,
            Ok(v1::EarlyEnd::Left) => Some(EarlyEnd::Left),
            Ok(v1::EarlyEnd::Expelled) => Some(EarlyEnd::Expelled),
            Ok(v1::EarlyEnd::Deceased) => Some(EarlyEnd::Deceased),
            Ok(v1::EarlyEnd::Transferred) => Some(EarlyEnd::Transferred),
            Err(_) => {
                let mut violations = Violations::default();
                violations.add(
                    "early_end",
                    "unknown code (left, expelled, deceased or transferred)",
                );
                return Err(IntakeError::Invalid(violations).into());
            }
        };
        let learner = self
            .change_stay(
                stay_id,
                StayChange::End(end_date, early_end),
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::EndStayResponse {
            learner: Some(learner),
        }))
    }

    async fn cancel_stay(
        &self,
        request: Request<v1::CancelStayRequest>,
    ) -> Result<Response<v1::CancelStayResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let stay_id = registry::parse_id("stay_id", &request.stay_id)?;
        let learner = self
            .change_stay(stay_id, StayChange::Cancel, &request.reason, actor.name())
            .await?;
        Ok(Response::new(v1::CancelStayResponse {
            learner: Some(learner),
        }))
    }

    async fn import_stays(
        &self,
        request: Request<v1::ImportStaysRequest>,
    ) -> Result<Response<v1::ImportStaysResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        if request.rows.len() > MAX_IMPORT_ROWS {
            let mut violations = Violations::default();
            violations.add("rows", format!("at most {MAX_IMPORT_ROWS} rows per call"));
            return Err(IntakeError::Invalid(violations).into());
        }
        let catalogue: HashMap<String, domain::Population> = store::populations(&self.pool)
            .await
            .map_err(IntakeError::from)?
            .into_iter()
            .map(|population| (population.code.clone(), population))
            .collect();
        let units = self.unit_catalogue().await?;
        let today = self.today();
        // Rows that pass validation go to the registry together; the others are
        // answered at once. Results keep the rows' order.
        let mut results: Vec<v1::ImportResult> = Vec::with_capacity(request.rows.len());
        let mut valid_rows: Vec<BatchRow> = Vec::new();
        let mut valid_positions: Vec<usize> = Vec::new();
        for row in request.rows {
            let person = person_input(row.person);
            let stay = stay_input(row.stay);
            let population = catalogue.get(stay.population.trim());
            let unit = units.get(&domain::unit::normalise_code(&stay.sponsor_unit));
            match domain::registration::validate(
                &person,
                &stay,
                population,
                unit,
                self.max_start_ahead_days,
                today,
            ) {
                Ok(registration) => {
                    valid_positions.push(results.len());
                    valid_rows.push(BatchRow {
                        registration,
                        confirm_new_person: row.confirm_new_person,
                    });
                    results.push(v1::ImportResult {
                        row_number: row.row_number,
                        ..Default::default()
                    });
                }
                Err(violations) => results.push(import_result(
                    row.row_number,
                    RowOutcome::Rejected(violations),
                    &[],
                )),
            }
        }
        let outcomes = self
            .register_batch(&valid_rows, request.dry_run, actor.name())
            .await?;
        let row_numbers: Vec<i64> = valid_positions
            .iter()
            .map(|&position| results[position].row_number)
            .collect();
        for (position, outcome) in valid_positions.into_iter().zip(outcomes) {
            let row_number = results[position].row_number;
            results[position] = import_result(row_number, outcome, &row_numbers);
        }
        Ok(Response::new(v1::ImportStaysResponse { results }))
    }

    async fn create_agreement(
        &self,
        request: Request<v1::CreateAgreementRequest>,
    ) -> Result<Response<v1::CreateAgreementResponse>, Status> {
        let actor = Actor::of(&request);
        let agreement = self
            .create_agreement(
                agreement_input(request.into_inner().agreement),
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::CreateAgreementResponse {
            agreement: Some(agreement),
        }))
    }

    async fn amend_agreement(
        &self,
        request: Request<v1::AmendAgreementRequest>,
    ) -> Result<Response<v1::AmendAgreementResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let agreement_id = registry::parse_id("agreement_id", &request.agreement_id)?;
        let agreement = self
            .amend_agreement(
                agreement_id,
                request.expected_version,
                agreement_input(request.agreement),
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::AmendAgreementResponse {
            agreement: Some(agreement),
        }))
    }

    async fn end_agreement(
        &self,
        request: Request<v1::EndAgreementRequest>,
    ) -> Result<Response<v1::EndAgreementResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let agreement_id = registry::parse_id("agreement_id", &request.agreement_id)?;
        let (agreement, affected_stay_ids) = self
            .end_agreement(
                agreement_id,
                &request.end_date,
                &request.reason,
                actor.name(),
            )
            .await?;
        Ok(Response::new(v1::EndAgreementResponse {
            agreement: Some(agreement),
            affected_stay_ids,
        }))
    }

    async fn get_agreement(
        &self,
        request: Request<v1::GetAgreementRequest>,
    ) -> Result<Response<v1::GetAgreementResponse>, Status> {
        let agreement_id = registry::parse_id("agreement_id", &request.into_inner().agreement_id)?;
        let (row, head_count) = self.agreement(agreement_id).await?;
        Ok(Response::new(v1::GetAgreementResponse {
            agreement: Some(events::agreement_message(&row)),
            current_head_count: i32::try_from(head_count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_agreements(
        &self,
        request: Request<v1::ListAgreementsRequest>,
    ) -> Result<Response<v1::ListAgreementsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let active_on = if request.active_on.trim().is_empty() {
            None
        } else {
            domain::registration::parse_date("active_on", &request.active_on, &mut violations)
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            let token = Uuid::parse_str(&request.page_token).ok();
            if token.is_none() {
                violations.add("page_token", "not a token this service gave");
            }
            token
        };
        if !violations.is_empty() {
            return Err(IntakeError::Invalid(violations).into());
        }
        let limit = page_size(request.page_size);
        let population =
            (!request.population.trim().is_empty()).then(|| request.population.trim().to_owned());
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let rows = store::agreements::list(
            &mut conn,
            population.as_deref(),
            active_on,
            after,
            limit + 1,
        )
        .await
        .map_err(IntakeError::from)?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.get(limit as usize - 1)
                .map(|row| row.agreement_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListAgreementsResponse {
            agreements: rows
                .iter()
                .take(limit as usize)
                .map(events::agreement_message)
                .collect(),
            next_page_token,
        }))
    }

    async fn record_payment(
        &self,
        request: Request<v1::RecordPaymentRequest>,
    ) -> Result<Response<v1::RecordPaymentResponse>, Status> {
        let actor = Actor::of(&request);
        let payment = self
            .record_payment(request.into_inner(), actor.name())
            .await?;
        Ok(Response::new(v1::RecordPaymentResponse {
            payment: Some(payment),
        }))
    }

    async fn record_cohort_payment(
        &self,
        request: Request<v1::RecordCohortPaymentRequest>,
    ) -> Result<Response<v1::RecordCohortPaymentResponse>, Status> {
        let actor = Actor::of(&request);
        let booking = self
            .record_cohort_payment(request.into_inner(), actor.name())
            .await?;
        Ok(Response::new(booking))
    }

    async fn list_payments_due(
        &self,
        request: Request<v1::ListPaymentsDueRequest>,
    ) -> Result<Response<v1::ListPaymentsDueResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let agreement_id = optional_id(
            &request.agreement_id,
            "agreement_id",
            "not an id",
            &mut violations,
        );
        let after = optional_id(
            &request.page_token,
            "page_token",
            "not a token this service gave",
            &mut violations,
        );
        let population = text(&request.population);
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        if let Some(code) = &population
            && store::population(&mut conn, code)
                .await
                .map_err(IntakeError::from)?
                .is_none()
        {
            violations.add("population", "not a population of the catalogue");
        }
        if !violations.is_empty() {
            return Err(IntakeError::Invalid(violations).into());
        }
        let limit = page_size(request.page_size);
        let mut rows = store::payments::due(
            &mut conn,
            agreement_id,
            population.as_deref(),
            after,
            limit + 1,
        )
        .await
        .map_err(IntakeError::from)?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|row| row.stay_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListPaymentsDueResponse {
            payments_due: rows.into_iter().map(events::payment_due_message).collect(),
            next_page_token,
        }))
    }

    async fn identify_learner(
        &self,
        request: Request<v1::IdentifyLearnerRequest>,
    ) -> Result<Response<v1::IdentifyLearnerResponse>, Status> {
        use v1::identify_learner_request::Key;
        let not_found = || IntakeError::NotFound("learner".to_owned());
        let learner_id = match request.into_inner().key {
            Some(Key::LearnerId(id)) => Uuid::parse_str(id.trim()).ok(),
            Some(Key::Login(login)) => store::learner_id_by(&self.pool, LookupKey::Login, &login)
                .await
                .map_err(IntakeError::from)?,
            None => {
                let mut violations = Violations::default();
                violations.add("key", "one of learner_id or login is required");
                return Err(IntakeError::Invalid(violations).into());
            }
        };
        let learner_id = learner_id.ok_or_else(not_found)?;
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let record = store::learner(&mut conn, learner_id)
            .await
            .map_err(IntakeError::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(v1::IdentifyLearnerResponse {
            identity: Some(events::identity_message(&record, self.today())),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::GetStatsResponse>, Status> {
        let on = request.into_inner().on;
        let on = if on.trim().is_empty() {
            self.today()
        } else {
            self.day("on", &on)?
        };
        let mut conn = self.pool.acquire().await.map_err(IntakeError::from)?;
        let counts = store::counts(&mut conn, on)
            .await
            .map_err(IntakeError::from)?;
        let to_counts = |pairs: Vec<(String, i64)>| {
            pairs
                .into_iter()
                .map(|(key, learners)| v1::Count { key, learners })
                .collect()
        };
        let years = store::counts_by_year(&mut conn)
            .await
            .map_err(IntakeError::from)?;
        Ok(Response::new(v1::GetStatsResponse {
            on: domain::registration::format_date(on),
            total_learners: counts.total,
            by_population: to_counts(counts.by_population),
            by_agreement: to_counts(counts.by_agreement),
            by_sponsor_unit: to_counts(counts.by_sponsor_unit),
            by_year: years
                .into_iter()
                .map(|year| v1::YearCounts {
                    year: year.year,
                    learners: year.learners,
                    by_population: to_counts(year.by_population),
                    by_agreement: to_counts(year.by_agreement),
                })
                .collect(),
        }))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::ListAuditEntriesRequest>,
    ) -> Result<Response<v1::ListAuditEntriesResponse>, Status> {
        let entries = crate::audit::of_learner(&self.pool, request.get_ref()).await?;
        Ok(Response::new(v1::ListAuditEntriesResponse { entries }))
    }

    async fn list_agreement_audit_entries(
        &self,
        request: Request<v1::ListAgreementAuditEntriesRequest>,
    ) -> Result<Response<v1::ListAgreementAuditEntriesResponse>, Status> {
        let entries = crate::audit::of_agreement(&self.pool, request.get_ref()).await?;
        Ok(Response::new(v1::ListAgreementAuditEntriesResponse {
            entries,
        }))
    }

    async fn restate_learners(
        &self,
        request: Request<v1::RestateLearnersRequest>,
    ) -> Result<Response<v1::RestateLearnersResponse>, Status> {
        use crate::restate::{DEFAULT_PAGE, Selection};
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let learner = request.learner.trim();
        let selection = if !learner.is_empty() {
            let learner_id = match Uuid::parse_str(learner) {
                Ok(id) => Some(id),
                Err(_) => store::learner_id_by(&self.pool, LookupKey::Login, learner)
                    .await
                    .map_err(IntakeError::from)?,
            };
            Selection::One(learner_id.ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?)
        } else if request.after.trim().is_empty() {
            Selection::After(Uuid::nil())
        } else {
            Selection::After(registry::parse_id("after", &request.after)?)
        };
        let limit = match request.limit {
            limit if limit <= 0 => DEFAULT_PAGE,
            limit => i64::from(limit),
        };
        let page = self.restate(selection, limit, actor.name()).await?;
        Ok(Response::new(v1::RestateLearnersResponse {
            learners: page.learners,
            agreements: page.agreements,
            next_after: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
            published: page.published,
        }))
    }

    async fn lock_learner(
        &self,
        request: Request<v1::LockLearnerRequest>,
    ) -> Result<Response<v1::LockLearnerResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let mut violations = Violations::default();
        let reason = domain::lock::parse_reason(&request.reason, &mut violations);
        domain::lock::check_note(&request.note, &mut violations);
        let learner_id = self
            .learner_named(&request.learner, &mut violations)
            .await?;
        let (Some(reason), true) = (reason, violations.is_empty()) else {
            return Err(IntakeError::Invalid(violations).into());
        };
        let learner_id = learner_id.ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let (learner, changed) = self
            .lock_learner(learner_id, reason, &request.note, actor.name())
            .await?;
        Ok(Response::new(v1::LockLearnerResponse {
            learner: Some(learner),
            changed,
        }))
    }

    async fn unlock_learner(
        &self,
        request: Request<v1::UnlockLearnerRequest>,
    ) -> Result<Response<v1::UnlockLearnerResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let mut violations = Violations::default();
        domain::lock::check_note(&request.note, &mut violations);
        let learner_id = self
            .learner_named(&request.learner, &mut violations)
            .await?;
        if !violations.is_empty() {
            return Err(IntakeError::Invalid(violations).into());
        }
        let learner_id = learner_id.ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let (learner, changed) = self
            .unlock_learner(learner_id, &request.note, actor.name())
            .await?;
        Ok(Response::new(v1::UnlockLearnerResponse {
            learner: Some(learner),
            changed,
        }))
    }

    async fn erase_person(
        &self,
        request: Request<v1::ErasePersonRequest>,
    ) -> Result<Response<v1::ErasePersonResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let mut violations = Violations::default();
        let reason = domain::erasure::parse_reason(&request.reason, &mut violations);
        let reference = domain::erasure::check_reference(&request.reference, &mut violations);
        let learner_id = self
            .learner_named(&request.learner, &mut violations)
            .await?;
        let (Some(reason), true) = (reason, violations.is_empty()) else {
            return Err(IntakeError::Invalid(violations).into());
        };
        let learner_id = learner_id.ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let outcome = self
            .erase_person(learner_id, reason, reference.as_deref(), actor.name())
            .await?;
        Ok(Response::new(v1::ErasePersonResponse {
            learner: Some(outcome.learner),
            erased_at: outcome.erased_at,
            already_erased: outcome.already_erased,
        }))
    }

    async fn export_personal_data(
        &self,
        request: Request<v1::ExportPersonalDataRequest>,
    ) -> Result<Response<v1::ExportPersonalDataResponse>, Status> {
        let actor = Actor::of(&request);
        let mut violations = Violations::default();
        let learner_id = self
            .learner_named(&request.get_ref().learner, &mut violations)
            .await?;
        if !violations.is_empty() {
            return Err(IntakeError::Invalid(violations).into());
        }
        let learner_id = learner_id.ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let data = self.export_personal_data(learner_id, actor.name()).await?;
        Ok(Response::new(v1::ExportPersonalDataResponse {
            learner_id: learner_id.to_string(),
            data: Some(data),
        }))
    }
}

impl Intake {
    /// The learner a request names by login (any case) or learner id: None when no
    /// learner has it; a violation on `learner` when it is empty.
    async fn learner_named(
        &self,
        learner: &str,
        violations: &mut Violations,
    ) -> Result<Option<Uuid>, IntakeError> {
        let learner = learner.trim();
        if learner.is_empty() {
            violations.add("learner", "required: a login or a learner id");
            return Ok(None);
        }
        if let Ok(id) = Uuid::parse_str(learner) {
            return Ok(Some(id));
        }
        Ok(store::learner_id_by(&self.pool, LookupKey::Login, learner).await?)
    }
}
