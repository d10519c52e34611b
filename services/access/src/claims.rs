//! What an access token says.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Service tokens have `sub = "service:<id>"`.
pub const SERVICE_SUBJECT_PREFIX: &str = "service:";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Support,
    Admin,
    /// Another service of the platform, authenticated with its client credentials.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Support => "support",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "customer" => Ok(Self::Customer),
            "support" => Ok(Self::Support),
            "admin" => Ok(Self::Admin),
            "service" => Ok(Self::Service),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub role: Role,
    /// The session a user token belongs to (absent on service tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Claims {
    /// The user id, for user tokens.
    pub fn user_id(&self) -> Option<Uuid> {
        if self.role == Role::Service {
            return None;
        }
        self.sub.parse().ok()
    }

    /// The calling service's id, for service tokens.
    pub fn service(&self) -> Option<&str> {
        if self.role != Role::Service {
            return None;
        }
        self.sub.strip_prefix(SERVICE_SUBJECT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, role: Role) -> Claims {
        Claims {
            iss: "i".into(),
            sub: sub.into(),
            aud: "a".into(),
            exp: 0,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            role,
            sid: None,
            email: None,
        }
    }

    #[test]
    fn users_and_services_are_told_apart() {
        let id = Uuid::new_v4();
        let user = claims(&id.to_string(), Role::Customer);
        assert_eq!(user.user_id(), Some(id));
        assert_eq!(user.service(), None);
        let service = claims("service:order", Role::Service);
        assert_eq!(service.service(), Some("order"));
        assert_eq!(service.user_id(), None);
        // A user token whose subject looks like a service is still not a service.
        assert_eq!(claims("service:order", Role::Admin).service(), None);
    }
}
