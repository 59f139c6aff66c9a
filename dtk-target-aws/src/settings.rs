//! How to reach EC2: region, endpoint, credentials, retries, timeouts and waiting.
//!
//! These are plain values: nothing here reads the environment. Whatever is left unset is
//! resolved by the AWS SDK's own standard chain when the client is built (see
//! [`crate::Ec2::connect`]), which is how `AWS_ENDPOINT_URL`, `AWS_PROFILE`, instance
//! profiles and the rest are honoured.

use std::fmt;
use std::time::Duration;

/// The region used when none is given, as in `aws/network`'s `vpc.region` default.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything needed to build an EC2 client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
    /// An endpoint to use instead of the region's own, e.g. a local moto server
    /// (`http://127.0.0.1:5000`). `None` lets the SDK decide (it honours `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Explicit keys; `None` uses the SDK's default credential chain (environment,
    /// `AWS_PROFILE`, web identity, container and instance profile).
    pub credentials: Option<StaticCredentials>,
    /// How often a throttled or transiently failed request is tried in all.
    pub max_attempts: u32,
    /// Time limits for connecting and for each operation.
    pub timeouts: Timeouts,
    /// How long and how often to poll while waiting for a resource to reach a state.
    pub waiter: WaiterSettings,
    /// At most this many EC2 requests of one client are in flight at once.
    pub max_concurrent_requests: usize,
}

impl AwsSettings {
    /// Settings for `region` with every other field at its default: the SDK's endpoint and
    /// credential chain, 5 attempts, the default timeouts and waiter.
    pub fn new(region: impl Into<String>) -> Self {
        AwsSettings {
            region: region.into(),
            endpoint_url: None,
            credentials: None,
            max_attempts: 5,
            timeouts: Timeouts::default(),
            waiter: WaiterSettings::default(),
            max_concurrent_requests: 8,
        }
    }

    /// These settings with the endpoint set to `url`.
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// These settings with explicit credentials.
    pub fn with_credentials(mut self, credentials: StaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// These settings with another waiter.
    pub fn with_waiter(mut self, waiter: WaiterSettings) -> Self {
        self.waiter = waiter;
        self
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings::new(DEFAULT_REGION)
    }
}

/// Time limits for EC2 requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit for opening a connection.
    pub connect: Duration,
    /// Limit for one attempt of an operation (one HTTP request and its response).
    pub attempt: Duration,
    /// Limit for an operation with all its retries.
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            attempt: Duration::from_secs(60),
            operation: Duration::from_secs(180),
        }
    }
}

/// How the client waits for a resource to reach a state (an instance to run, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterSettings {
    /// Give up after this long.
    pub timeout: Duration,
    /// The longest time between two polls (the first ones come sooner).
    pub poll_interval: Duration,
}

/// The first pause of a wait, when `poll_interval` is longer.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

impl WaiterSettings {
    /// The pause before the second poll: the shorter of 250 ms and `poll_interval`.
    pub fn first_pause(&self) -> Duration {
        self.poll_interval.min(FIRST_PAUSE)
    }
}

impl Default for WaiterSettings {
    fn default() -> Self {
        WaiterSettings {
            timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// An AWS access key pair, and a session token for temporary credentials.
///
/// None of it ever shows: `Debug` prints `<redacted>` for every part (the access key id is
/// a `secret` attribute in `aws/network` too), and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl StaticCredentials {
    /// Long-term credentials: an access key id and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// These credentials with a session token (temporary credentials).
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    pub(crate) fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
