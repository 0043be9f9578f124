//! The gRPC edge of intake: converts wire types, checks, calls the store, converts back.

use hosted_contracts::{subjects, v1};
use hosted_platform::auth::{Actor, Role};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    Intake,
    domain::{
        self,
        registration::{PersonInput, StayInput},
    },
    error::IntakeError,
    events,
    store::{self, LookupKey, Registered},
};

use Role::{CardOffice, Deve, Dosi, Finance, Integrator, Legal};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("RegisterStay", &[Deve]),
    ("GetLearner", &[Deve, Dosi, Integrator]),
    ("SearchLearners", &[Deve, Dosi, Integrator]),
    ("AmendPerson", &[Deve]),
    ("ExtendStay", &[Deve]),
    ("EndStay", &[Deve]),
    ("CancelStay", &[Deve]),
    ("ImportStays", &[Deve]),
    (
        "ListPopulations",
        &[Deve, Legal, Finance, Dosi, Integrator, CardOffice],
    ),
    ("CreateAgreement", &[Legal]),
    ("AmendAgreement", &[Legal]),
    ("EndAgreement", &[Legal]),
    ("GetAgreement", &[Deve, Legal, Finance, Dosi]),
    ("ListAgreements", &[Deve, Legal, Finance, Dosi]),
    ("RecordPayment", &[Finance]),
    ("RecordCohortPayment", &[Finance]),
    ("GetStats", &[Dosi, Deve]),
];

fn person_input(person: Option<v1::PersonInput>) -> PersonInput {
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

fn stay_input(stay: Option<v1::StayInput>) -> StayInput {
    let stay = stay.unwrap_or_default();
    StayInput {
        population: stay.population,
        sponsor_unit: stay.sponsor_unit,
        sponsor_login: stay.sponsor_login,
        agreement_id: stay.agreement_id,
        start_date: stay.start_date,
        end_date: stay.end_date,
    }
}

fn unimplemented<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    Err(IntakeError::Unimplemented(rpc).into())
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
        let population = store::population(&self.pool, &stay.population)
            .await
            .map_err(IntakeError::from)?;
        let registration =
            domain::registration::validate(&person, &stay, population.as_ref(), self.today())
                .map_err(IntakeError::from)?;
        let (learner, stay_id, registered) = self.register(&registration, actor.name()).await?;
        Ok(Response::new(v1::RegisterStayResponse {
            learner: Some(learner),
            stay_id: stay_id.to_string(),
            new_person: registered == Registered::NewPerson,
        }))
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
            populations: populations
                .into_iter()
                .map(|population| v1::Population {
                    code: population.code,
                    label: population.label,
                    supann_population: population.supann_population,
                    agreement_required: population.agreement_required,
                    default_duration_days: population.default_duration_days,
                    max_duration_days: population.max_duration_days,
                })
                .collect(),
        }))
    }

    async fn search_learners(
        &self,
        _request: Request<v1::SearchLearnersRequest>,
    ) -> Result<Response<v1::SearchLearnersResponse>, Status> {
        unimplemented("SearchLearners")
    }

    async fn amend_person(
        &self,
        _request: Request<v1::AmendPersonRequest>,
    ) -> Result<Response<v1::AmendPersonResponse>, Status> {
        unimplemented("AmendPerson")
    }

    async fn extend_stay(
        &self,
        _request: Request<v1::ExtendStayRequest>,
    ) -> Result<Response<v1::ExtendStayResponse>, Status> {
        unimplemented("ExtendStay")
    }

    async fn end_stay(
        &self,
        _request: Request<v1::EndStayRequest>,
    ) -> Result<Response<v1::EndStayResponse>, Status> {
        unimplemented("EndStay")
    }

    async fn cancel_stay(
        &self,
        _request: Request<v1::CancelStayRequest>,
    ) -> Result<Response<v1::CancelStayResponse>, Status> {
        unimplemented("CancelStay")
    }

    async fn import_stays(
        &self,
        _request: Request<v1::ImportStaysRequest>,
    ) -> Result<Response<v1::ImportStaysResponse>, Status> {
        unimplemented("ImportStays")
    }

    async fn create_agreement(
        &self,
        _request: Request<v1::CreateAgreementRequest>,
    ) -> Result<Response<v1::CreateAgreementResponse>, Status> {
        unimplemented("CreateAgreement")
    }

    async fn amend_agreement(
        &self,
        _request: Request<v1::AmendAgreementRequest>,
    ) -> Result<Response<v1::AmendAgreementResponse>, Status> {
        unimplemented("AmendAgreement")
    }

    async fn end_agreement(
        &self,
        _request: Request<v1::EndAgreementRequest>,
    ) -> Result<Response<v1::EndAgreementResponse>, Status> {
        unimplemented("EndAgreement")
    }

    async fn get_agreement(
        &self,
        _request: Request<v1::GetAgreementRequest>,
    ) -> Result<Response<v1::GetAgreementResponse>, Status> {
        unimplemented("GetAgreement")
    }

    async fn list_agreements(
        &self,
        _request: Request<v1::ListAgreementsRequest>,
    ) -> Result<Response<v1::ListAgreementsResponse>, Status> {
        unimplemented("ListAgreements")
    }

    async fn record_payment(
        &self,
        _request: Request<v1::RecordPaymentRequest>,
    ) -> Result<Response<v1::RecordPaymentResponse>, Status> {
        unimplemented("RecordPayment")
    }

    async fn record_cohort_payment(
        &self,
        _request: Request<v1::RecordCohortPaymentRequest>,
    ) -> Result<Response<v1::RecordCohortPaymentResponse>, Status> {
        unimplemented("RecordCohortPayment")
    }

    async fn get_stats(
        &self,
        _request: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::GetStatsResponse>, Status> {
        unimplemented("GetStats")
    }
}

impl Intake {
    /// Registers in one transaction with its event; wakes the relay after commit.
    async fn register(
        &self,
        registration: &domain::Registration,
        actor: &str,
    ) -> Result<(v1::Learner, Uuid, Registered), IntakeError> {
        let mut tx = self.pool.begin().await?;
        let (learner_id, stay_id, registered) =
            store::register(&mut tx, registration, &self.learner_number_prefix).await??;
        let record = store::learner(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let learner = events::learner_message(&record, self.today());
        if registered != Registered::AlreadyRegistered {
            let event = events::learner_event(
                &self.namespace,
                subjects::intake::STAY_REGISTERED,
                learner.clone(),
                stay_id,
                actor,
            );
            hosted_platform::outbox::enqueue(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(learner_id = %learner_id, stay_id = %stay_id, outcome = ?registered, "stay registered");
        Ok((learner, stay_id, registered))
    }
}
