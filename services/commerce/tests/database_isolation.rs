//! Each service's role reaches its own database and no other (`scripts/infra.sh` sets
//! this up the way a per-service PostgreSQL instance enforces it in Kubernetes).

use sqlx::{Connection, PgConnection};

const SERVICES: [&str; 9] = [
    "auth",
    "product",
    "cart",
    "order",
    "payment",
    "fulfillment",
    "notification",
    "chat",
    "search",
];

fn url_for(role: &str, database: &str) -> String {
    let admin = commerce_testkit::required_env("COMMERCE_TEST_DATABASE_URL");
    // postgres://postgres:secret@host:port/postgres → postgres://role:role@host:port/database
    let host = admin
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host in the admin URL");
    format!("postgres://{role}:{role}@{host}/{database}")
}

#[tokio::test]
async fn every_service_role_reaches_only_its_own_database() {
    for role in SERVICES {
        let mut own = PgConnection::connect(&url_for(role, role))
            .await
            .unwrap_or_else(|error| panic!("{role} cannot reach its own database: {error}"));
        let user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut own)
            .await
            .unwrap();
        assert_eq!(user, role);
        for other in SERVICES.iter().filter(|other| **other != role) {
            let error = PgConnection::connect(&url_for(role, other))
                .await
                .err()
                .unwrap_or_else(|| panic!("{role} reached the {other} database"));
            assert!(
                error.to_string().contains("CONNECT privilege")
                    || error.to_string().contains("permission denied"),
                "{role} → {other}: {error}"
            );
        }
    }
}
