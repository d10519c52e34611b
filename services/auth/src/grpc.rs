//! gRPC `AuthService` (service tokens only): token validation, users and addresses for peers.

use commerce_access::Role;
use commerce_proto::auth::v1 as pb;
use uuid::Uuid;

use crate::domain::{User, UserStatus};
use crate::service::{self, AuthError, AuthService};

pub(crate) struct GrpcHandler {
    pub(crate) auth: AuthService,
}

fn grpc_status(error: AuthError) -> tonic::Status {
    match error {
        AuthError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        AuthError::Unauthenticated(_) => tonic::Status::unauthenticated(error.to_string()),
        AuthError::Invalid { .. } => tonic::Status::invalid_argument(error.to_string()),
        other => commerce_runtime::api::storage_status(&other),
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: must be a UUID")))
}

fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Customer => pb::Role::Customer,
        Role::Support => pb::Role::Support,
        Role::Admin => pb::Role::Admin,
        Role::Service => pb::Role::Unspecified,
    }
}

fn user_to_proto(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        role: role_to_proto(user.role) as i32,
        status: match user.status {
            UserStatus::Unverified => pb::UserStatus::Unverified,
            UserStatus::Active => pb::UserStatus::Active,
            UserStatus::Disabled => pb::UserStatus::Disabled,
        } as i32,
        created_at: Some(service::timestamp(user.created_at)),
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for GrpcHandler {
    async fn validate_token(
        &self,
        request: tonic::Request<pb::ValidateTokenRequest>,
    ) -> Result<tonic::Response<pb::ValidateTokenResponse>, tonic::Status> {
        let claims = self
            .auth
            .validate_user_token(&request.into_inner().token)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::ValidateTokenResponse {
            subject: claims.sub.clone(),
            role: role_to_proto(claims.role) as i32,
            session_id: claims.sid.map(|sid| sid.to_string()).unwrap_or_default(),
            expires_at: Some(prost_types::Timestamp {
                seconds: claims.exp,
                nanos: 0,
            }),
        }))
    }

    async fn get_user(
        &self,
        request: tonic::Request<pb::GetUserRequest>,
    ) -> Result<tonic::Response<pb::GetUserResponse>, tonic::Status> {
        let id = grpc_uuid("user_id", &request.into_inner().user_id)?;
        let user = self.auth.user(id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::GetUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn get_address(
        &self,
        request: tonic::Request<pb::GetAddressRequest>,
    ) -> Result<tonic::Response<pb::GetAddressResponse>, tonic::Status> {
        let request = request.into_inner();
        let user_id = grpc_uuid("user_id", &request.user_id)?;
        let address_id = grpc_uuid("address_id", &request.address_id)?;
        let address = self
            .auth
            .address(user_id, address_id)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::GetAddressResponse {
            address: Some(pb::Address {
                id: address.id.to_string(),
                user_id: address.user_id.to_string(),
                label: address.label,
                recipient: address.recipient,
                line1: address.line1,
                line2: address.line2,
                city: address.city,
                region: address.region,
                postal_code: address.postal_code,
                country: address.country,
                phone: address.phone,
                is_default: address.is_default,
            }),
        }))
    }
}
