//! The EC2 client: built from [`AwsSettings`], shared by every operation of this crate.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{Credentials, Region};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::AwsError;
use crate::settings::{AwsSettings, WaiterSettings};

/// A connection to EC2 in one region. Cheap to clone; clones share the connection pool
/// and the limit on requests in flight.
///
/// Every operation is idempotent: it finds what an earlier run made (by the tags in
/// [`crate::Owner`]) before it creates anything, so running it again, or after a crash,
/// makes no duplicate. Operations can be cancelled by dropping their future; a later run
/// picks up where it stopped.
#[derive(Clone)]
pub struct Ec2 {
    pub(crate) client: aws_sdk_ec2::Client,
    pub(crate) region: String,
    pub(crate) waiter: WaiterSettings,
    limit: Arc<Semaphore>,
    /// Requests sent through [`Ec2::permit`] by this client and its clones.
    sent: Arc<AtomicU64>,
    cancel: Option<CancelCheck>,
}

/// Tells whether the caller wants the operation in progress to stop.
type CancelCheck = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Ec2 {
    /// A client for `settings`. What the settings leave unset (endpoint, credentials) is
    /// resolved by the SDK's standard chain: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_PROFILE`, web identity, container and instance profiles. Nothing is sent yet.
    pub async fn connect(settings: &AwsSettings) -> Result<Ec2, AwsError> {
        if settings.region.trim().is_empty() {
            return Err(crate::error::SpecError::new("region", "", "the region is empty").into());
        }
        let retry = RetryConfig::standard()
            .with_max_attempts(settings.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(20));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.timeouts.connect)
            .operation_attempt_timeout(settings.timeouts.attempt)
            .operation_timeout(settings.timeouts.operation)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(creds) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                creds.session_token().map(str::to_owned),
                None,
                "dtk-static",
            ));
        }
        let config = loader.load().await;
        Ok(Ec2 {
            client: aws_sdk_ec2::Client::new(&config),
            region: settings.region.clone(),
            waiter: settings.waiter,
            limit: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            sent: Arc::new(AtomicU64::new(0)),
            cancel: None,
        })
    }

    /// The region this client works in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// This client (sharing its connections and request limit) with a cancellation
    /// check: before every request and every wait, `is_cancelled` is asked, and when it
    /// says yes the operation stops with [`AwsError::Cancelled`]. What was done stays done,
    /// tagged, and the next run adopts it. (Dropping an operation's future stops it too.)
    pub fn with_cancel(&self, is_cancelled: impl Fn() -> bool + Send + Sync + 'static) -> Ec2 {
        Ec2 {
            cancel: Some(Arc::new(is_cancelled)),
            ..self.clone()
        }
    }

    pub(crate) fn check_cancelled(&self) -> Result<(), AwsError> {
        match &self.cancel {
            Some(is_cancelled) if is_cancelled() => Err(AwsError::Cancelled),
            _ => Ok(()),
        }
    }

    /// A permit to send one request; held while it is in flight. Fails when the caller
    /// cancelled. (The semaphore is never closed, so the permit is always `Some`; were it
    /// `None`, going on unlimited would be harmless.)
    pub(crate) async fn permit(&self) -> Result<Option<SemaphorePermit<'_>>, AwsError> {
        self.check_cancelled()?;
        let permit = self.limit.acquire().await.ok();
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    /// How many API requests this client and its clones have sent (each page of a
    /// paginated call counts; the SDK's own retries of one request do not).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The pauses between polls: 250 ms (or `poll_interval` when shorter), doubling up to
    /// `poll_interval`, for as long as the caller's `when` allows ([`WaiterSettings`]).
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.waiter.first_pause())
            .with_max_delay(self.waiter.poll_interval)
            .with_factor(2.0)
            .without_max_times()
    }

    /// Polls `check` until it returns `Some`, or fails with a timeout naming `resource` and
    /// `state` after the waiter's timeout. Polls come quickly at first (most resources are
    /// ready at once) and then every `poll_interval`.
    pub(crate) async fn wait_for<T, F, Fut>(
        &self,
        resource: &str,
        state: &str,
        mut check: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, AwsError>>,
    {
        /// A poll's outcome other than the value: not there yet, or an error that ends it.
        enum Poll {
            NotYet,
            Failed(AwsError),
        }
        let start = Instant::now();
        let timeout = self.waiter.timeout;
        let poll = || {
            let checked = check();
            async move {
                match checked.await {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(Poll::NotYet),
                    Err(e) => Err(Poll::Failed(e)),
                }
            }
        };
        let cancelled = || self.check_cancelled().is_err();
        let waited = poll
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(|p| matches!(p, Poll::NotYet) && !cancelled() && start.elapsed() < timeout)
            .await;
        match waited {
            Ok(v) => Ok(v),
            Err(Poll::Failed(e)) => Err(e),
            Err(Poll::NotYet) => {
                self.check_cancelled()?;
                Err(AwsError::Timeout {
                    resource: resource.to_owned(),
                    state: state.to_owned(),
                    waited: start.elapsed(),
                })
            }
        }
    }

    /// Runs a delete-like step, trying again while EC2 says something still depends on
    /// the resource (ENIs of just-terminated instances linger for a while).
    pub(crate) async fn retry_dependency<F, Fut>(&self, step: F) -> Result<(), AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
    {
        let start = Instant::now();
        let timeout = self.waiter.timeout;
        let done = step
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &AwsError| {
                e.code() == Some("DependencyViolation")
                    && start.elapsed() < timeout
                    && self.check_cancelled().is_ok()
            })
            .notify(|e, _| tracing::debug!(error = %e, "still in use; trying again"))
            .await;
        match done {
            Err(e) if e.code() == Some("DependencyViolation") => {
                self.check_cancelled()?;
                Err(e)
            }
            other => other,
        }
    }
}

/// Whether an error is EC2 saying that the thing asked about does not exist.
pub(crate) fn is_not_found(err: &AwsError) -> bool {
    err.code().is_some_and(|code| code.ends_with("NotFound"))
}
