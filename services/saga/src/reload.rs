//! The saga policy from a file that changes under the running service: the ConfigMap a
//! `SagaPolicy` resource renders (mounted, so the kubelet swaps its content in place).
//! Polling the content is what works across that swap (a symlink flip), editors' renames
//! and plain writes alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::policy::{Engine, ServicePolicy, SharedPolicy};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyFileError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("{path}: engine `{wanted:?}` needs a restart (this process runs `{running:?}`)")]
    EngineChange {
        path: String,
        wanted: Engine,
        running: Engine,
    },
}

/// Parses and checks one version of the file.
pub fn parse<P: ServicePolicy>(
    path: &Path,
    text: &str,
    step_names: &[&str],
) -> Result<P, PolicyFileError> {
    let policy: P = toml::from_str(text).map_err(|error| PolicyFileError::Parse {
        path: path.display().to_string(),
        message: error.message().to_owned(),
    })?;
    policy
        .validate(step_names)
        .map_err(|(key, message)| PolicyFileError::Invalid {
            path: path.display().to_string(),
            key,
            message,
        })?;
    Ok(policy)
}

/// The file's content, or `None` while it does not exist (an optional ConfigMap not yet
/// created).
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

pub struct PolicyWatcher<P> {
    pub path: PathBuf,
    pub shared: SharedPolicy<P>,
    pub step_names: Vec<&'static str>,
    pub interval: Duration,
    /// The content last applied (or refused), so an unchanged file is not parsed again.
    pub last: Option<String>,
}

impl<P: ServicePolicy> PolicyWatcher<P> {
    /// One look at the file: `Ok(true)` when a new policy took effect.
    pub fn check(&mut self) -> Result<bool, PolicyFileError> {
        let text = match read(&self.path) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(false),
            Err(error) => {
                return Err(PolicyFileError::Parse {
                    path: self.path.display().to_string(),
                    message: error.to_string(),
                });
            }
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        self.last = Some(text.clone());
        let policy: P = parse(&self.path, &text, &self.step_names)?;
        let running = self.shared.current().saga().engine;
        let wanted = policy.saga().engine;
        if wanted != running {
            return Err(PolicyFileError::EngineChange {
                path: self.path.display().to_string(),
                wanted,
                running,
            });
        }
        if *self.shared.current() == policy {
            return Ok(false);
        }
        self.shared.replace(policy);
        Ok(true)
    }

    /// Checks the file every `interval` until shutdown. A bad version is logged and the
    /// policy in force stays.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            match self.check() {
                Ok(true) => {
                    let policy = self.shared.current();
                    metrics::counter!("saga_policy_reloads_total", "result" => "applied")
                        .increment(1);
                    tracing::info!(
                        path = %self.path.display(),
                        policy = ?policy,
                        "saga policy reloaded"
                    );
                }
                Ok(false) => {}
                Err(error) => {
                    metrics::counter!("saga_policy_reloads_total", "result" => "refused")
                        .increment(1);
                    tracing::error!(%error, "saga policy file refused; the policy in force stays");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SagaPolicy;

    const STEPS: &[&str] = &["reserve_stock"];

    fn watcher(dir: &Path) -> PolicyWatcher<SagaPolicy> {
        PolicyWatcher {
            path: dir.join("saga.toml"),
            shared: SharedPolicy::new(SagaPolicy::default()),
            step_names: STEPS.to_vec(),
            interval: Duration::from_millis(10),
            last: None,
        }
    }

    #[test]
    fn a_new_file_replaces_the_policy_and_a_bad_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = watcher(dir.path());
        assert_eq!(watcher.check(), Ok(false), "no file yet: nothing changes");

        std::fs::write(&watcher.path, "step = { attempts = 7 }\n").unwrap();
        assert_eq!(watcher.check(), Ok(true));
        assert_eq!(watcher.shared.current().step.attempts, 7);
        assert_eq!(
            watcher.check(),
            Ok(false),
            "unchanged content is not applied twice"
        );

        std::fs::write(&watcher.path, "steps = { reserve = { attempts = 2 } }\n").unwrap();
        match watcher.check() {
            Err(PolicyFileError::Invalid { key, .. }) => assert_eq!(key, "steps.reserve"),
            other => panic!("expected the unknown step refused, got {other:?}"),
        }
        assert_eq!(
            watcher.shared.current().step.attempts,
            7,
            "the policy in force stays"
        );

        std::fs::write(&watcher.path, "engine = \"temporal\"\n").unwrap();
        assert!(matches!(
            watcher.check(),
            Err(PolicyFileError::EngineChange { .. })
        ));
        std::fs::write(&watcher.path, "step = [").unwrap();
        assert!(matches!(
            watcher.check(),
            Err(PolicyFileError::Parse { .. })
        ));
        assert_eq!(watcher.shared.current().step.attempts, 7);
    }
}
