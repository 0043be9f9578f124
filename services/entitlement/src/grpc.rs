//! The gRPC edge of entitlement: Check and ListGrants answer from the grants index;
//! Explain and the policy RPCs come with the rest of the entitlement issue.

use hosted_contracts::v1;
use hosted_platform::auth::Role;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{Entitlement, events::grant_message, store};

use Role::{Deve, Dosi, Integrator};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("Check", &[Integrator, Dosi]),
    ("Explain", &[Dosi, Deve]),
    ("ListGrants", &[Dosi, Deve, Integrator]),
    ("SimulatePolicy", &[Dosi]),
    ("ActivatePolicy", &[Dosi]),
];

fn unimplemented<T>(rpc: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{rpc} is not served by this version yet"
    )))
}

fn internal(error: sqlx::Error) -> Status {
    let reference = uuid::Uuid::now_v7();
    tracing::error!(%reference, %error, "request failed");
    Status::internal(format!("internal error (reference {reference})"))
}

#[tonic::async_trait]
impl v1::entitlement_service_server::EntitlementService for Entitlement {
    async fn check(
        &self,
        request: Request<v1::CheckRequest>,
    ) -> Result<Response<v1::CheckResponse>, Status> {
        let request = request.into_inner();
        let key = match request.learner {
            Some(v1::check_request::Learner::LearnerId(id)) => id,
            Some(v1::check_request::Learner::Login(login)) => login,
            None => {
                return Err(Status::invalid_argument(
                    "learner: learner_id or login is required",
                ));
            }
        };
        if request.resource.trim().is_empty() {
            return Err(Status::invalid_argument("resource: required"));
        }
        let on = match request.at {
            Some(at) => OffsetDateTime::from_unix_timestamp(at.seconds)
                .map_err(|_| Status::invalid_argument("at: not an instant"))?
                .date(),
            None => self.clock.today(),
        };
        let mut conn = self.pool.acquire().await.map_err(internal)?;
        let deny = |reason: String| {
            Ok(Response::new(v1::CheckResponse {
                allowed: false,
                reason,
                policy_version: self.policy.version.clone(),
                ..Default::default()
            }))
        };
        let Some((learner_id, _, _)) = store::learner(&mut conn, key.trim())
            .await
            .map_err(internal)?
        else {
            return deny("unknown learner".to_owned());
        };
        // Allowed: answered from the grants index. Denied: the rules say why.
        let decision =
            match store::holding_grant(&mut conn, learner_id, request.resource.trim(), on)
                .await
                .map_err(internal)?
            {
                Some((until, rule, stay_id)) => crate::domain::grants::Decision {
                    allowed: true,
                    until: Some(until),
                    reason: format!("granted by stay {stay_id} under {rule}"),
                    rule: Some(rule),
                },
                None => {
                    let stays = store::stay_facts(&mut conn, learner_id)
                        .await
                        .map_err(internal)?;
                    crate::domain::grants::check(&self.policy, &stays, request.resource.trim(), on)
                }
            };
        Ok(Response::new(v1::CheckResponse {
            allowed: decision.allowed,
            allowed_until: decision.until.map(|until| prost_types::Timestamp {
                seconds: until
                    .next_day()
                    .unwrap_or(until)
                    .midnight()
                    .assume_utc()
                    .unix_timestamp(),
                nanos: 0,
            }),
            reason: decision.reason,
            rule: decision.rule.unwrap_or_default(),
            policy_version: self.policy.version.clone(),
        }))
    }

    async fn explain(
        &self,
        _request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        unimplemented("Explain")
    }

    async fn list_grants(
        &self,
        request: Request<v1::ListGrantsRequest>,
    ) -> Result<Response<v1::ListGrantsResponse>, Status> {
        let key = request.into_inner().learner_id;
        let mut conn = self.pool.acquire().await.map_err(internal)?;
        let Some((learner_id, _, version)) = store::learner(&mut conn, key.trim())
            .await
            .map_err(internal)?
        else {
            return Err(Status::not_found("learner not found"));
        };
        let grants = store::grants(&mut conn, learner_id)
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::ListGrantsResponse {
            grants: grants.iter().map(grant_message).collect(),
            learner_version: version,
        }))
    }

    async fn simulate_policy(
        &self,
        _request: Request<v1::SimulatePolicyRequest>,
    ) -> Result<Response<v1::SimulatePolicyResponse>, Status> {
        unimplemented("SimulatePolicy")
    }

    async fn activate_policy(
        &self,
        _request: Request<v1::ActivatePolicyRequest>,
    ) -> Result<Response<v1::ActivatePolicyResponse>, Status> {
        unimplemented("ActivatePolicy")
    }
}
