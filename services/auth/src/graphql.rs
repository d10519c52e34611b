//! The auth subgraph at `/graphql`: `User` is a federation entity keyed by `id`, so an
//! order's customer resolves here. A user is visible to themself and to admin and support;
//! to anyone else a reference resolves to null.

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Schema};
use axum::Extension;
use axum::response::IntoResponse;
use commerce_access::{MaybePrincipal, Role};
use uuid::Uuid;

use crate::domain::User;
use crate::service::{AuthError, AuthService};

pub type AuthSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema; executing it needs the `AuthService` in its data.
pub fn schema(auth: Option<AuthService>) -> AuthSchema {
    let builder = Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        // Bounds on what one request may ask for; the gateway's entity fetches stay far below.
        .limit_depth(12)
        .limit_complexity(1000);
    match auth {
        Some(auth) => builder.data(auth).finish(),
        None => builder.finish(),
    }
}

/// The subgraph's SDL as the federation gateway composes it (`graphql/auth.graphql`).
pub fn sdl() -> String {
    schema(None).sdl_with_options(async_graphql::SDLExportOptions::new().federation())
}

/// Who is asking.
#[derive(Clone, Copy)]
struct Caller {
    user_id: Uuid,
    staff: bool,
}

pub async fn handler(
    Extension(schema): Extension<AuthSchema>,
    caller: MaybePrincipal,
    request: async_graphql_axum::GraphQLRequest,
) -> impl IntoResponse {
    let mut request = request.into_inner();
    if let Some(user_id) = caller
        .0
        .as_ref()
        .and_then(|principal| principal.claims().user_id())
    {
        request = request.data(Caller {
            user_id,
            staff: caller.has_role(&[Role::Admin, Role::Support]),
        });
    }
    async_graphql_axum::GraphQLResponse::from(schema.execute(request).await)
}

struct UserObject(User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn first_name(&self) -> &str {
        &self.0.first_name
    }
    async fn last_name(&self) -> &str {
        &self.0.last_name
    }
    /// `customer`, `support` or `admin`.
    async fn role(&self) -> &str {
        self.0.role.as_str()
    }
}

/// The user if the caller may see them.
async fn visible(context: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<UserObject>> {
    let Some(caller) = context.data_opt::<Caller>() else {
        return Ok(None);
    };
    if !caller.staff && caller.user_id != id {
        return Ok(None);
    }
    match context.data_unchecked::<AuthService>().user(id).await {
        Ok(user) => Ok(Some(UserObject(user))),
        Err(AuthError::NotFound(_)) => Ok(None),
        Err(error) => {
            tracing::error!(%error, "GraphQL query failed");
            Err(async_graphql::Error::new("internal error"))
        }
    }
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; null when signed out.
    async fn me(&self, context: &Context<'_>) -> async_graphql::Result<Option<UserObject>> {
        match context.data_opt::<Caller>() {
            Some(caller) => visible(context, caller.user_id).await,
            None => Ok(None),
        }
    }

    /// Federation: resolves `User` references from other subgraphs.
    #[graphql(entity)]
    async fn find_user_by_id(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<UserObject>> {
        match Uuid::parse_str(&id) {
            Ok(id) => visible(context, id).await,
            Err(_) => Err(async_graphql::Error::new("id must be a UUID")),
        }
    }
}
