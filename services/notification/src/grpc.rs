//! gRPC `NotificationService` (service tokens only): `Send` for peers.

use std::collections::BTreeMap;

use commerce_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::domain::Channel;
use crate::service::{NotificationError, NotificationService, NotifyRequest};

pub(crate) struct GrpcHandler {
    pub(crate) notifications: NotificationService,
}

fn grpc_error(error: NotificationError) -> tonic::Status {
    match error {
        NotificationError::Invalid { field, message } => {
            tonic::Status::invalid_argument(format!("{field}: {message}"))
        }
        NotificationError::UnknownKind(_) | NotificationError::NotFound => {
            tonic::Status::not_found(error.to_string())
        }
        NotificationError::Template { .. } => tonic::Status::invalid_argument(error.to_string()),
        NotificationError::Database(_) => tonic::Status::unavailable(error.to_string()),
    }
}

#[tonic::async_trait]
impl pb::notification_service_server::NotificationService for GrpcHandler {
    async fn send(
        &self,
        request: tonic::Request<pb::SendRequest>,
    ) -> Result<tonic::Response<pb::SendResponse>, tonic::Status> {
        let request = request.into_inner();
        let uuid = |field: &str, raw: &str| {
            Uuid::parse_str(raw)
                .map_err(|_| tonic::Status::invalid_argument(format!("{field}: must be a UUID")))
        };
        let request_id = uuid("request_id", &request.request_id)?;
        let user_id = uuid("user_id", &request.user_id)?;
        if !crate::domain::valid_kind(&request.kind) {
            return Err(tonic::Status::invalid_argument(
                "kind: lowercase letters, digits and `_`, starting with a letter",
            ));
        }
        let mut channels = Vec::new();
        for raw in &request.channels {
            channels.push(match pb::Channel::try_from(*raw) {
                Ok(pb::Channel::Email) => Channel::Email,
                Ok(pb::Channel::Sms) => Channel::Sms,
                Ok(pb::Channel::Push) => Channel::Push,
                _ => {
                    return Err(tonic::Status::invalid_argument(
                        "channels: each must be EMAIL, SMS or PUSH",
                    ));
                }
            });
        }
        let data: BTreeMap<String, String> = request.data.into_iter().collect();
        let notified = self
            .notifications
            .send(NotifyRequest {
                source: format!("request:{request_id}"),
                user_id,
                kind: &request.kind,
                data,
                only: (!channels.is_empty()).then_some(channels.as_slice()),
            })
            .await
            .map_err(grpc_error)?;
        Ok(tonic::Response::new(pb::SendResponse {
            notification_id: notified.id.to_string(),
            channels: notified
                .channels
                .iter()
                .map(|channel| match channel {
                    Channel::Email => pb::Channel::Email as i32,
                    Channel::Sms => pb::Channel::Sms as i32,
                    Channel::Push => pb::Channel::Push as i32,
                })
                .collect(),
        }))
    }
}
