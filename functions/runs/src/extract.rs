//! Who is calling: [`runwarden_tenancy::access::OrgAccess`], shared by every function.

use runwarden_tenancy::access::AccessState;
use sqlx::PgPool;

use crate::AppState;

pub use runwarden_tenancy::access::OrgAccess;

impl AccessState for AppState {
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn verifier(&self) -> &runwarden_tokens::TokenVerifier {
        &self.verifier
    }
}
