//! One client for standalone Redis and Redis Cluster. Both implement
//! [`redis::aio::ConnectionLike`], so commands, pipelines and Lua scripts are written once.
//! Keys that must meet on one cluster node (a script's keys, a lock and its data) share a
//! hash tag: see [`hash_tagged`].

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::RedisError;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Cluster,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    #[serde(default)]
    pub mode: RedisMode,
    /// One URL for standalone; one or more seed nodes for a cluster.
    pub urls: Vec<String>,
    /// The password of the `default` user (`requirepass`), for every node. Kept apart from
    /// the URLs so it can reach a pod from a Secret (`COMMERCE_REDIS__PASSWORD`) while the
    /// URLs stay in a ConfigMap.
    #[serde(default)]
    pub password: Option<SecretString>,
}

impl RedisConfig {
    pub fn standalone(url: impl Into<String>) -> Self {
        Self {
            mode: RedisMode::Standalone,
            urls: vec![url.into()],
            password: None,
        }
    }

    pub fn cluster(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            mode: RedisMode::Cluster,
            urls: urls.into_iter().map(Into::into).collect(),
            password: None,
        }
    }

    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(SecretString::from(password.into()));
        self
    }

    /// Returns the offending key (relative to the `redis` section) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.urls.is_empty() {
            return Err(("urls", "must list at least one redis:// URL".to_owned()));
        }
        if self.mode == RedisMode::Standalone && self.urls.len() > 1 {
            return Err((
                "urls",
                "standalone mode takes exactly one URL; set mode = \"cluster\" for several"
                    .to_owned(),
            ));
        }
        if let Some(bad) = self
            .urls
            .iter()
            .find(|url| !(url.starts_with("redis://") || url.starts_with("rediss://")))
        {
            return Err(("urls", format!("`{bad}` is not a redis:// URL")));
        }
        Ok(())
    }
}

/// A cheap-to-clone, reconnecting connection to standalone Redis or a cluster.
#[derive(Clone)]
pub enum RedisClient {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisClient {
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        config
            .validate()
            .map_err(|(key, message)| RedisError::Config(format!("redis.{key}: {message}")))?;
        match config.mode {
            RedisMode::Standalone => {
                let mut info = config.urls[0].as_str().into_connection_info()?;
                if let Some(password) = &config.password {
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_password(password.expose_secret());
                    info = info.set_redis_settings(settings);
                }
                let client = redis::Client::open(info)?;
                Ok(Self::Standalone(ConnectionManager::new(client).await?))
            }
            RedisMode::Cluster => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(config.urls.clone());
                if let Some(password) = &config.password {
                    builder = builder.password(password.expose_secret());
                }
                Ok(Self::Cluster(
                    builder.build()?.get_async_connection().await?,
                ))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut connection = self.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}

impl ConnectionLike for RedisClient {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// `prefix:{tag}:suffix` — every key built with the same tag lands on the same cluster slot.
pub fn hash_tagged(prefix: &str, tag: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        format!("{prefix}:{{{tag}}}")
    } else {
        format!("{prefix}:{{{tag}}}:{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert!(
            RedisConfig::standalone("redis://127.0.0.1:6379")
                .validate()
                .is_ok()
        );
        assert_eq!(
            RedisConfig::cluster(Vec::<String>::new())
                .validate()
                .unwrap_err()
                .0,
            "urls"
        );
        let error = RedisConfig::standalone("http://x").validate().unwrap_err();
        assert!(error.1.contains("http://x"));
        let mut two = RedisConfig::cluster(["redis://a", "redis://b"]);
        assert!(two.validate().is_ok());
        two.mode = RedisMode::Standalone;
        assert!(two.validate().unwrap_err().1.contains("cluster"));
    }

    #[test]
    fn hash_tags_share_a_slot() {
        let lock = hash_tagged("lock", "order-1", "");
        let data = hash_tagged("order", "order-1", "state");
        assert_eq!(lock, "lock:{order-1}");
        assert_eq!(data, "order:{order-1}:state");
    }
}
