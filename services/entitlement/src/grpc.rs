//! The gRPC edge of entitlement. The contract is a draft that the entitlement issue
//! refines; until then every RPC is refused as UNIMPLEMENTED, behind the access check.

use hosted_contracts::v1;
use hosted_platform::auth::Role;
use tonic::{Request, Response, Status};

use crate::Entitlement;

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

#[tonic::async_trait]
impl v1::entitlement_service_server::EntitlementService for Entitlement {
    async fn check(
        &self,
        _request: Request<v1::CheckRequest>,
    ) -> Result<Response<v1::CheckResponse>, Status> {
        let _ = &self.pool;
        unimplemented("Check")
    }

    async fn explain(
        &self,
        _request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        unimplemented("Explain")
    }

    async fn list_grants(
        &self,
        _request: Request<v1::ListGrantsRequest>,
    ) -> Result<Response<v1::ListGrantsResponse>, Status> {
        unimplemented("ListGrants")
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
