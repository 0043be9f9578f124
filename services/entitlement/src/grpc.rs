//! The gRPC edge of entitlement: Check answers from the grants cache, without a query
//! once a learner is held; Explain,
//! ListGrants, and the policy's simulation and activation.

use hosted_contracts::v1;
use hosted_platform::{
    auth::{Actor, Role},
    clock::{format_day, wire_instant},
    error::{ErrorCode, FieldViolation, ServiceError, Violations, to_status},
    personal_data,
};
use time::Date;
use tonic::{Request, Response, Status};

use crate::{
    Entitlement,
    domain::{grants, impact::Impact, policy},
    events::grant_message,
    policies::{self, ActivationError},
    store,
};

use Role::{Deve, Dosi, Integrator};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("Check", &[Integrator, Dosi]),
    ("Explain", &[Dosi, Deve]),
    ("ListGrants", &[Dosi, Deve, Integrator]),
    ("SimulatePolicy", &[Dosi]),
    ("ActivatePolicy", &[Dosi]),
    ("ListDeadLetters", &[Dosi]),
    ("ReplayDeadLetters", &[Dosi]),
    ("RestateGrants", &[Dosi]),
    ("ListAuditEntries", &[Dosi]),
    ("ExportPersonalData", &[Dosi]),
];

/// What an entitlement RPC can fail with.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Internal(String),
    /// A dependency (the database) is away: the caller may retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl ServiceError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Invalid(_) => ErrorCode::InvalidArgument,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            ApiError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            ApiError::Aborted(_) => ErrorCode::Aborted,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn violations(&self) -> &[FieldViolation] {
        match self {
            ApiError::Invalid(violations) => &violations.0,
            _ => &[],
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let message = format!("database: {error}");
        match hosted_platform::error::database_code(&error) {
            ErrorCode::Unavailable => ApiError::Unavailable(message),
            _ => ApiError::Internal(message),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        to_status(&error)
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    let mut violations = Violations::default();
    violations.add(field, reason);
    ApiError::Invalid(violations)
}

/// The day of an optional instant, in the university's time zone; today when absent.
fn day(
    entitlement: &Entitlement,
    field: &str,
    at: Option<prost_types::Timestamp>,
) -> Result<Date, ApiError> {
    match at {
        None => Ok(entitlement.clock.today()),
        Some(at) => jiff::Timestamp::new(at.seconds, at.nanos)
            .map(|instant| entitlement.clock.date_at(instant))
            .map_err(|_| invalid(field, "not an instant")),
    }
}

/// A candidate policy document, checked: every problem as a field violation that
/// names the line.
fn candidate(field: &str, document: &str) -> Result<policy::Policy, ApiError> {
    if document.trim().is_empty() {
        return Err(invalid(field, "required: the policy document (TOML)"));
    }
    policy::load(field, document).map_err(|errors| {
        let mut violations = Violations::default();
        for problem in &errors.problems {
            // One line per violation: a parser's multi-line message is joined.
            let reason = problem
                .reason
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            violations.add(field, format!("line {}: {reason}", problem.line));
        }
        ApiError::Invalid(violations)
    })
}

fn impact_message(impact: &Impact, active: &str, candidate: &str) -> v1::SimulatePolicyResponse {
    v1::SimulatePolicyResponse {
        impacts: impact
            .resources
            .iter()
            .map(|(resource, one)| v1::ResourceImpact {
                resource: resource.clone(),
                gained: i64::try_from(one.gained).unwrap_or(i64::MAX),
                lost: i64::try_from(one.lost).unwrap_or(i64::MAX),
                changed: i64::try_from(one.changed).unwrap_or(i64::MAX),
                gained_examples: one.gained_examples.clone(),
                lost_examples: one.lost_examples.clone(),
                changed_examples: one.changed_examples.clone(),
            })
            .collect(),
        active_version: active.to_owned(),
        candidate_version: candidate.to_owned(),
        learners_examined: i64::try_from(impact.examined).unwrap_or(i64::MAX),
        learners_changed: i64::try_from(impact.changed_learners.len()).unwrap_or(i64::MAX),
        warnings: Vec::new(),
    }
}

/// A denial as the contract says it. A decision denied without a code (none is
/// expected) is `NOT_GRANTED`, the code for any other case.
fn denial_message(denial: Option<grants::Denial>) -> v1::Denial {
    match denial {
        None | Some(grants::Denial::NotGranted) => v1::Denial::NotGranted,
        Some(grants::Denial::UnknownResource) => v1::Denial::UnknownResource,
        Some(grants::Denial::NotStarted) => v1::Denial::NotStarted,
        Some(grants::Denial::Ended) => v1::Denial::Ended,
        Some(grants::Denial::NotForPopulation) => v1::Denial::NotForPopulation,
        Some(grants::Denial::NotPaid) => v1::Denial::NotPaid,
        Some(grants::Denial::OptionMissing) => v1::Denial::OptionMissing,
        Some(grants::Denial::NotRequested) => v1::Denial::NotRequested,
        Some(grants::Denial::Locked) => v1::Denial::Locked,
    }
}

impl Entitlement {
    async fn check(&self, request: v1::CheckRequest) -> Result<v1::CheckResponse, ApiError> {
        let key = match request.learner {
            Some(v1::check_request::Learner::LearnerId(id)) => id,
            Some(v1::check_request::Learner::Login(login)) => login,
            None => return Err(invalid("learner", "learner_id or login is required")),
        };
        let key = key.trim();
        let resource = request.resource.trim();
        if key.is_empty() {
            return Err(invalid("learner", "learner_id or login is required"));
        }
        if resource.is_empty() {
            return Err(invalid("resource", "required"));
        }
        let on = day(self, "at", request.at)?;
        let on_text = format_day(on);
        let policy = self.policy.get();
        let deny = |denial: v1::Denial, reason: String| v1::CheckResponse {
            allowed: false,
            reason,
            policy_version: policy.version.clone(),
            denial: denial.into(),
            on: on_text.clone(),
            ..Default::default()
        };
        let Some(learner) = self.cache.learner(&self.pool, key).await? else {
            return Ok(deny(
                v1::Denial::UnknownLearner,
                "unknown learner".to_owned(),
            ));
        };
        let known_resource = policy.resources.contains_key(grants::split(resource).0);
        if let Some(lock) = grants::locked(&learner.stays, on)
            && known_resource
        {
            return Ok(deny(v1::Denial::Locked, lock.describe()));
        }
        // Allowed: answered from the index. Denied: the rules say why.
        if let Some(grant) = learner.holding(resource, on) {
            return Ok(v1::CheckResponse {
                allowed: true,
                allowed_until: Some(wire_instant(self.clock.end_of(grant.valid_until))),
                reason: format!("granted by stay {} under {}", grant.stay_id, grant.rule),
                rule: grant.rule.to_string(),
                policy_version: policy.version.clone(),
                denial: v1::Denial::Unspecified.into(),
                on: on_text,
                last_day: format_day(grant.valid_until),
            });
        }
        // The same rules as the database path: the code comes from the stays, held or
        // read, never from where they came from.
        let decision = grants::check(&policy, &learner.stays, resource, on);
        Ok(deny(denial_message(decision.denial), decision.reason))
    }

    async fn explain(&self, request: v1::ExplainRequest) -> Result<v1::ExplainResponse, ApiError> {
        let key = request.learner_id.trim();
        if key.is_empty() {
            return Err(invalid("learner_id", "required: a learner id or a login"));
        }
        let on = day(self, "at", request.at)?;
        let mut conn = self.pool.acquire().await?;
        let Some((learner_id, login, _)) = store::learner(&mut conn, key).await? else {
            return Err(ApiError::NotFound(format!("learner {key:?} not found")));
        };
        let stays = store::stay_facts(&mut conn, learner_id).await?;
        let policy = self.policy.get();
        Ok(v1::ExplainResponse {
            resources: grants::explain(&policy, &stays, on)
                .into_iter()
                .map(|one| v1::ResourceExplanation {
                    resource: one.resource,
                    description: one.description,
                    granted: one.decision.allowed,
                    reason: one.decision.reason,
                    denial: if one.decision.allowed {
                        v1::Denial::Unspecified.into()
                    } else {
                        denial_message(one.decision.denial).into()
                    },
                    grant: one
                        .grant
                        .as_ref()
                        .map(|grant| grant_message(grant, &self.clock)),
                })
                .collect(),
            policy_version: policy.version.clone(),
            learner_id: learner_id.to_string(),
            login,
            on: format_day(on),
        })
    }

    async fn list_grants(
        &self,
        request: v1::ListGrantsRequest,
    ) -> Result<v1::ListGrantsResponse, ApiError> {
        let key = request.learner_id.trim();
        if key.is_empty() {
            return Err(invalid("learner_id", "required: a learner id or a login"));
        }
        let mut conn = self.pool.acquire().await?;
        let Some((learner_id, _, version)) = store::learner(&mut conn, key).await? else {
            return Err(ApiError::NotFound(format!("learner {key:?} not found")));
        };
        let grants = store::grants(&mut conn, learner_id).await?;
        Ok(v1::ListGrantsResponse {
            grants: grants
                .iter()
                .map(|grant| grant_message(grant, &self.clock))
                .collect(),
            learner_version: version,
        })
    }

    async fn restate_grants(
        &self,
        actor: &str,
        request: v1::RestateGrantsRequest,
    ) -> Result<v1::RestateGrantsResponse, ApiError> {
        use crate::restate::{DEFAULT_PAGE, Selection};
        let key = request.learner.trim();
        let selection = if !key.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let Some((learner_id, _, _)) = store::learner(&mut conn, key).await? else {
                return Err(ApiError::NotFound(format!("learner {key:?} not found")));
            };
            Selection::One(learner_id)
        } else if request.after.trim().is_empty() {
            Selection::After(uuid::Uuid::nil())
        } else {
            Selection::After(
                uuid::Uuid::parse_str(request.after.trim())
                    .map_err(|_| invalid("after", "not a learner id"))?,
            )
        };
        let limit = match request.limit {
            limit if limit <= 0 => DEFAULT_PAGE,
            limit => i64::from(limit),
        };
        let page = self.restate(selection, limit, actor).await?;
        Ok(v1::RestateGrantsResponse {
            learners: page.learners,
            next_after: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
            published: page.published,
        })
    }

    async fn simulate(
        &self,
        request: v1::SimulatePolicyRequest,
    ) -> Result<v1::SimulatePolicyResponse, ApiError> {
        let candidate = candidate("policy", &request.policy)?;
        let active = self.policy.get();
        let warnings = policies::version_warnings(&self.pool, &candidate).await?;
        let impact = policies::simulate(&self.pool, &candidate).await?;
        Ok(v1::SimulatePolicyResponse {
            warnings,
            ..impact_message(&impact, &active.version, &candidate.version)
        })
    }

    async fn activate(
        &self,
        actor: &str,
        request: v1::ActivatePolicyRequest,
    ) -> Result<v1::ActivatePolicyResponse, ApiError> {
        let candidate = candidate("policy", &request.policy);
        let reason = request.reason.trim();
        let mut violations = match &candidate {
            Err(ApiError::Invalid(violations)) => violations.clone(),
            _ => Violations::default(),
        };
        if reason.is_empty() {
            violations.add("reason", "required: why this policy is activated");
        }
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations));
        }
        let candidate = candidate?;
        let expected = request.expected_active_version.trim();
        let activation = policies::activate(
            &self.pool,
            &self.recomputer,
            candidate,
            &request.policy,
            actor,
            reason,
            (!expected.is_empty()).then_some(expected),
        )
        .await
        .map_err(|error| match error {
            ActivationError::AlreadyActive(_) => ApiError::FailedPrecondition(error.to_string()),
            ActivationError::VersionTaken(_) => ApiError::AlreadyExists(error.to_string()),
            ActivationError::NotExpected { .. } => ApiError::Aborted(error.to_string()),
            ActivationError::Recompute(crate::recompute::Error::Database(error)) => error.into(),
            ActivationError::Recompute(error) => ApiError::Internal(error.to_string()),
        })?;
        Ok(v1::ActivatePolicyResponse {
            policy_version: activation.version,
            learners_changed: i64::try_from(activation.learners_changed).unwrap_or(i64::MAX),
            previous_version: activation.previous.unwrap_or_default(),
            already_active: activation.already_active,
        })
    }
}

#[tonic::async_trait]
impl v1::entitlement_service_server::EntitlementService for Entitlement {
    async fn check(
        &self,
        request: Request<v1::CheckRequest>,
    ) -> Result<Response<v1::CheckResponse>, Status> {
        Ok(Response::new(
            Entitlement::check(self, request.into_inner()).await?,
        ))
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        Ok(Response::new(
            Entitlement::explain(self, request.into_inner()).await?,
        ))
    }

    async fn list_grants(
        &self,
        request: Request<v1::ListGrantsRequest>,
    ) -> Result<Response<v1::ListGrantsResponse>, Status> {
        Ok(Response::new(
            Entitlement::list_grants(self, request.into_inner()).await?,
        ))
    }

    async fn simulate_policy(
        &self,
        request: Request<v1::SimulatePolicyRequest>,
    ) -> Result<Response<v1::SimulatePolicyResponse>, Status> {
        Ok(Response::new(self.simulate(request.into_inner()).await?))
    }

    async fn activate_policy(
        &self,
        request: Request<v1::ActivatePolicyRequest>,
    ) -> Result<Response<v1::ActivatePolicyResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.activate(&actor.0, request.into_inner()).await?,
        ))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::EntitlementServiceListAuditEntriesRequest>,
    ) -> Result<Response<v1::EntitlementServiceListAuditEntriesResponse>, Status> {
        Ok(Response::new(
            crate::audit::list(&self.pool, request.get_ref()).await?,
        ))
    }

    async fn export_personal_data(
        &self,
        request: Request<v1::EntitlementServiceExportPersonalDataRequest>,
    ) -> Result<Response<v1::EntitlementServiceExportPersonalDataResponse>, Status> {
        let actor = Actor::of(&request);
        let data = personal_data::export(
            &self.pool,
            crate::audit::SERVICE,
            &request.get_ref().learner_id,
            &[],
            actor.name(),
        )
        .await?;
        Ok(Response::new(
            v1::EntitlementServiceExportPersonalDataResponse { data: Some(data) },
        ))
    }

    async fn list_dead_letters(
        &self,
        _request: Request<v1::EntitlementServiceListDeadLettersRequest>,
    ) -> Result<Response<v1::EntitlementServiceListDeadLettersResponse>, Status> {
        let letters = self
            .dead_letters
            .list()
            .await
            .map_err(ApiError::Unavailable)?;
        Ok(Response::new(
            v1::EntitlementServiceListDeadLettersResponse {
                dead_letters: letters.iter().map(|letter| letter.to_wire()).collect(),
            },
        ))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<v1::EntitlementServiceReplayDeadLettersRequest>,
    ) -> Result<Response<v1::EntitlementServiceReplayDeadLettersResponse>, Status> {
        let sequences = request.into_inner().sequences;
        let (replayed, failed) = self
            .dead_letters
            .replay(&self.pool, &self.handler, &sequences)
            .await
            .map_err(ApiError::Unavailable)?;
        tracing::info!(replayed, failed, "dead letters replayed");
        Ok(Response::new(
            v1::EntitlementServiceReplayDeadLettersResponse { replayed, failed },
        ))
    }

    async fn restate_grants(
        &self,
        request: Request<v1::RestateGrantsRequest>,
    ) -> Result<Response<v1::RestateGrantsResponse>, Status> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            Entitlement::restate_grants(self, actor.name(), request.into_inner()).await?,
        ))
    }
}
