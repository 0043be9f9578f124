//! The gRPC edge of cards. The contract is a draft that the cards issue refines;
//! until then every RPC is refused as UNIMPLEMENTED, behind the access check.

use hosted_contracts::v1;
use hosted_platform::auth::Role;
use tonic::{Request, Response, Status};

use crate::Cards;

use Role::{CardOffice, Dosi};

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("GetCard", &[CardOffice, Dosi]),
    ("ListPrintQueue", &[CardOffice]),
    ("TransitionCard", &[CardOffice]),
];

fn unimplemented<T>(rpc: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{rpc} is not served by this version yet"
    )))
}

#[tonic::async_trait]
impl v1::cards_service_server::CardsService for Cards {
    async fn get_card(
        &self,
        _request: Request<v1::GetCardRequest>,
    ) -> Result<Response<v1::GetCardResponse>, Status> {
        let _ = &self.pool;
        unimplemented("GetCard")
    }

    async fn list_print_queue(
        &self,
        _request: Request<v1::ListPrintQueueRequest>,
    ) -> Result<Response<v1::ListPrintQueueResponse>, Status> {
        unimplemented("ListPrintQueue")
    }

    async fn transition_card(
        &self,
        _request: Request<v1::TransitionCardRequest>,
    ) -> Result<Response<v1::TransitionCardResponse>, Status> {
        unimplemented("TransitionCard")
    }
}
