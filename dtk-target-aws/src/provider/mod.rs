//! [`AwsProvider`]: the `aws` target provider (see its documentation).

mod credentials;
mod inputs;
mod instance;
mod network;
mod resolve_images;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use dtk_model::provider::{Observed, ResourceRequest};
use dtk_model::{Attributes, Provider, ProviderError, Value};

use crate::client::Ec2;
use crate::error::AwsError;
use crate::settings::{AwsSettings, StaticCredentials};

pub use credentials::{CredentialStore, CredentialStoreError};

/// The provider kind: the `aws` of `provider: aws.vpc`.
pub const KIND: &str = "aws";

/// The resource types [`AwsProvider`] handles.
pub const RESOURCES: &[&str] = &[
    "credentials",
    "vpc",
    "vpc_subnet",
    "security_group",
    "images",
    "ec2_instance",
];

/// The `aws` target provider of dtk: it does the `provider: aws.RESOURCE` actions of the
/// bundled `aws/network` and `aws/ec2` modules.
///
/// | resource | component | inputs | outputs |
/// | --- | --- | --- | --- |
/// | `credentials` | `aws/network` `credentials` | secrets `aws_access_key_id`, `aws_secret_access_key` (`aws_session_token`) | `credentials_handle` |
/// | `vpc` | `aws/network` `vpc` | `region`, `vpc_id`, `cidr_block`, `credentials_handle` | `vpc_id`, `cidr_block`, `region`, `credentials_handle` |
/// | `vpc_subnet` | `aws/network` `vpc_subnet` | `vpc_id`, `subnet_id`, `subnet_cidr_block`, `subnet_length`, `availability_zone`, `gateway`, `enable_public_ip_in_subnet` | `subnet_id`, `subnet_cidr_block`, `availability_zone`, `vpc_id`, `region`, `credentials_handle` |
/// | `security_group` | `aws/network` `security_group` | `vpc_id`, `group_id`, `group_name`, `description`, `constant_rules`, `dynamic_rules` | `group_id`, `group_name`, `vpc_id`, `region`, `credentials_handle` |
/// | `images` | `aws/network` `images` | `images` | `images` (resolved), `unresolved_images`, `region`, `credentials_handle` |
/// | `ec2_instance` | `aws/ec2` `node` | `image`, `size`, `tags`, `key_name`, `ssh_user`, `subnet_id`, `group_id`, `images`, `ssh_key_path`, `ssh_host_key_policy`, `ssh_known_hosts_path` | `instance_id`, `state`, `private_ip_address`, `public_ip_address`, `host`, `ssh_host`, `ssh_user`, `image_id`, `instance_type`, `availability_zone`, and the `ssh_*` inputs that are set (what runs the node's commands over SSH reads them) |
///
/// Every resource but `credentials` also takes `region` (else the base settings' region)
/// and `credentials_handle`.
///
/// # Credentials
///
/// The `credentials` resource stores the keys it is given as secrets in a file of its own
/// under the provider's state directory, readable by its owner alone, and returns only a
/// handle naming them (`SERVICE/COMPONENT`). The handle flows through links to every
/// other component (the app's nodes included); a request carrying a handle is made with
/// the stored keys, one without with the base settings (the SDK's default chain unless the
/// embedding program set keys). No key ever appears in an output, an error or a log.
///
/// # Ownership
///
/// Everything is created with the `dtk:*` tags of its service and component, found again
/// by them (a create after a crash adopts what the first one made), and deleted only when
/// the tags say dtk made it for that service: a VPC, subnet or security group given by id
/// is used as it is and never deleted.
///
/// # Nodes
///
/// `ec2_instance` makes one instance per node: `node[web]` is the instance tagged
/// `dtk:node=web`, and each member of a node group is a component of its own
/// (`node[workers:2]`: tagged `dtk:node=workers`, `dtk:index=2`), so raising a group's
/// cardinality creates members and lowering it deletes the extra ones. RunInstances
/// carries a `ClientToken` derived from the request's idempotency key and the member, and
/// an instance made earlier is found by its tags before any is launched. `read` says
/// `Missing` for an instance that is terminated or gone, so converge makes it again; a
/// stopped instance is started by the next create or update. An existing instance is not
/// replaced when the node's image or size changes: its outputs show what it runs.
///
/// Clients are connected lazily, on the first request for a region and credential
/// handle, and reused after.
pub struct AwsProvider {
    base: AwsSettings,
    state_dir: PathBuf,
    store: CredentialStore,
    clients: Mutex<HashMap<ClientKey, Cached>>,
}

/// A cached client: the region and credential handle it was made for.
type ClientKey = (String, Option<String>);

struct Cached {
    ec2: Ec2,
    /// The keys it was made with; a client made with other keys is stale.
    credentials: Option<StaticCredentials>,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("state_dir", &self.state_dir)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The resource types, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Credentials,
    Vpc,
    Subnet,
    SecurityGroup,
    Images,
    Instance,
}

impl Resource {
    fn parse(s: &str) -> Option<Resource> {
        Some(match s {
            "credentials" => Resource::Credentials,
            "vpc" => Resource::Vpc,
            "vpc_subnet" => Resource::Subnet,
            "security_group" => Resource::SecurityGroup,
            "images" => Resource::Images,
            "ec2_instance" => Resource::Instance,
            _ => return None,
        })
    }
}

/// One operation on one resource: names it in errors.
pub(crate) struct Call<'r, 'a> {
    pub(crate) req: &'r ResourceRequest<'a>,
    op: &'static str,
}

impl Call<'_, '_> {
    /// `create aws.vpc for vpc[vpc1] of aws-target`.
    pub(crate) fn operation(&self) -> String {
        format!(
            "{} {KIND}.{} for {} of {}",
            self.op, self.req.resource, self.req.component, self.req.service
        )
    }

    /// `aws.vpc`, for invalid-input errors.
    pub(crate) fn resource(&self) -> String {
        format!("{KIND}.{}", self.req.resource)
    }

    /// An invalid-input error of this call.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::InvalidInput {
            resource: format!("{} ({})", self.resource(), self.req.component),
            message: message.into(),
        }
    }

    /// An error of this call from an [`AwsError`].
    pub(crate) fn aws(&self, e: AwsError) -> ProviderError {
        to_provider_error(self, e)
    }

    /// Fails with `Cancelled` when the caller asked to stop.
    pub(crate) fn check_cancel(&self) -> Result<(), ProviderError> {
        if self.req.cancel.is_cancelled() {
            Err(ProviderError::Cancelled {
                operation: self.operation(),
            })
        } else {
            Ok(())
        }
    }
}

/// Maps an error of the EC2 layer to a provider error naming the operation: invalid
/// values are invalid input, cancellation is cancellation, the rest a failure that is
/// retryable when throttling, a transient EC2 or connection error, or a wait that timed
/// out. None of them holds a credential: [`AwsError`] never does.
fn to_provider_error(call: &Call<'_, '_>, e: AwsError) -> ProviderError {
    match e {
        AwsError::Cancelled => ProviderError::Cancelled {
            operation: call.operation(),
        },
        AwsError::Spec(_) | AwsError::Image(_) => call.invalid(e.to_string()),
        other => {
            let retryable = other.is_retryable();
            let message = other.to_string();
            let source: Option<Box<dyn std::error::Error + Send + Sync>> = match other {
                AwsError::Api { source, .. } => Some(Box::new(source)),
                _ => None,
            };
            ProviderError::Failed {
                operation: call.operation(),
                message,
                retryable,
                source,
            }
        }
    }
}

impl AwsProvider {
    /// A provider keeping its files (stored credentials) under `state_dir` (the embedding
    /// program passes `dtk_model::provider::provider_state_dir(home, "aws")`), and making
    /// its clients from `base`: its endpoint, retries, timeouts and waiter are used for
    /// every client; its region when a request names none; its credentials (none: the
    /// SDK's default chain) when a request carries no credential handle.
    ///
    /// Nothing is read or connected yet.
    pub fn new(state_dir: impl Into<PathBuf>, base: AwsSettings) -> AwsProvider {
        let state_dir = state_dir.into();
        AwsProvider {
            store: CredentialStore::new(state_dir.join("credentials")),
            state_dir,
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The directory the provider keeps its files in.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The settings clients are made from.
    pub fn base_settings(&self) -> &AwsSettings {
        &self.base
    }

    /// Where the stored credentials are.
    pub fn credential_store(&self) -> &CredentialStore {
        &self.store
    }

    /// The region of a request: its `region` input, else the base settings' region. A
    /// read or delete looks first at the outputs recorded by the last create, which say
    /// where the resource is.
    pub(crate) fn region(&self, call: &Call<'_, '_>) -> Result<String, ProviderError> {
        Ok(self
            .context_value(call, "region")?
            .unwrap_or_else(|| self.base.region.clone()))
    }

    /// The credential handle of a request (`credentials_handle`, empty meaning none),
    /// found as the region is.
    pub(crate) fn handle(&self, call: &Call<'_, '_>) -> Result<Option<String>, ProviderError> {
        self.context_value(call, "credentials_handle")
    }

    fn context_value(
        &self,
        call: &Call<'_, '_>,
        name: &str,
    ) -> Result<Option<String>, ProviderError> {
        let input = inputs::string(call, call.req.inputs, name)?;
        let prior = match call.req.prior {
            Some(p) => inputs::string(call, p, name)?,
            None => None,
        };
        Ok(match call.op {
            "read" | "delete" => prior.or(input),
            _ => input,
        })
    }

    /// The client for the request's region and credential handle, which stops when the
    /// request is cancelled.
    pub(crate) async fn client(&self, call: &Call<'_, '_>) -> Result<Ec2, ProviderError> {
        let region = self.region(call)?;
        self.client_for(call, &region).await
    }

    /// The client for `region` and the request's credential handle.
    pub(crate) async fn client_for(
        &self,
        call: &Call<'_, '_>,
        region: &str,
    ) -> Result<Ec2, ProviderError> {
        call.check_cancel()?;
        let handle = self.handle(call)?;
        let credentials = match &handle {
            Some(h) => Some(
                self.store
                    .load(h)
                    .map_err(|e| ProviderError::failed(call.operation(), e.to_string()))?,
            ),
            None => None,
        };
        let key: ClientKey = (region.to_owned(), handle.clone());
        let cached = {
            let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients
                .get(&key)
                .filter(|c| c.credentials == credentials)
                .map(|c| c.ec2.clone())
        };
        let ec2 = match cached {
            Some(ec2) => ec2,
            None => {
                let mut settings = self.base.clone();
                settings.region = region.to_owned();
                if let Some(c) = &credentials {
                    settings.credentials = Some(c.clone());
                }
                let ec2 = Ec2::connect(&settings).await.map_err(|e| call.aws(e))?;
                tracing::debug!(region, handle = ?handle, "connected an EC2 client");
                let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
                clients.insert(
                    key,
                    Cached {
                        ec2: ec2.clone(),
                        credentials,
                    },
                );
                ec2
            }
        };
        let cancel = call.req.cancel.clone();
        Ok(ec2.with_cancel(move || cancel.is_cancelled()))
    }

    /// Forgets the clients made with the keys of `handle`.
    pub(crate) fn forget_clients(&self, handle: &str) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|(_, h), _| h.as_deref() != Some(handle));
    }

    /// The number of clients connected so far (for tests of the cache).
    #[doc(hidden)]
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or_default()
    }

    fn resource(&self, req: &ResourceRequest<'_>) -> Result<Resource, ProviderError> {
        Resource::parse(req.resource).ok_or_else(|| ProviderError::Unsupported {
            provider: KIND.to_owned(),
            what: format!(
                "resource type `{}` (it handles {})",
                req.resource,
                RESOURCES.join(", ")
            ),
        })
    }

    async fn ensure(
        &self,
        req: &ResourceRequest<'_>,
        op: &'static str,
    ) -> Result<Attributes, ProviderError> {
        let resource = self.resource(req)?;
        let call = Call { req, op };
        call.check_cancel()?;
        match resource {
            Resource::Credentials => credentials::create(self, &call),
            Resource::Vpc => network::create_vpc(self, &call).await,
            Resource::Subnet => network::create_subnet(self, &call).await,
            Resource::SecurityGroup => network::create_group(self, &call).await,
            Resource::Images => resolve_images::create(self, &call).await,
            Resource::Instance => instance::create(self, &call).await,
        }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> &str {
        KIND
    }

    fn resources(&self) -> Vec<String> {
        RESOURCES.iter().map(|r| (*r).to_owned()).collect()
    }

    fn modules(&self) -> Vec<dtk_model::BundledModule> {
        crate::BUNDLED_MODULES
            .iter()
            .map(|(name, text)| {
                dtk_model::BundledModule::new(format!("{name}/dtk.module.yaml"), *text)
            })
            .collect()
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.ensure(req, "create").await
    }

    async fn update(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.ensure(req, "update").await
    }

    /// An EC2 instance's image, subnet and key pair cannot change in place: a node whose
    /// `image`, `subnet_id` or `key_name` changes is replaced (its size, security groups
    /// and tags are changed in place). The network resources are never replaced: their
    /// dependents would have to go first.
    fn replace_on_change(&self, resource: &str) -> Vec<String> {
        match Resource::parse(resource) {
            Some(Resource::Instance) => instance::REPLACE_ON_CHANGE
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    async fn import(
        &self,
        req: &ResourceRequest<'_>,
        id: &str,
        adopt: bool,
    ) -> Result<Observed, ProviderError> {
        let resource = self.resource(req)?;
        let call = Call { req, op: "import" };
        call.check_cancel()?;
        match resource {
            Resource::Instance => instance::import(self, &call, id, adopt).await,
            Resource::Vpc | Resource::Subnet | Resource::SecurityGroup => {
                network::import(self, &call, resource, id, adopt).await
            }
            Resource::Credentials | Resource::Images => Err(ProviderError::Unsupported {
                provider: KIND.to_owned(),
                what: format!(
                    "importing `{}` (only instances, VPCs, subnets and security groups)",
                    req.resource
                ),
            }),
        }
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        let resource = self.resource(req)?;
        let call = Call { req, op: "read" };
        call.check_cancel()?;
        match resource {
            Resource::Credentials => credentials::read(self, &call),
            Resource::Vpc => network::read_vpc(self, &call).await,
            Resource::Subnet => network::read_subnet(self, &call).await,
            Resource::SecurityGroup => network::read_group(self, &call).await,
            Resource::Images => Ok(Observed::Unknown),
            Resource::Instance => instance::read(self, &call).await,
        }
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        let resource = self.resource(req)?;
        let call = Call { req, op: "delete" };
        call.check_cancel()?;
        match resource {
            Resource::Credentials => credentials::delete(self, &call),
            Resource::Vpc => network::delete_vpc(self, &call).await,
            Resource::Subnet => network::delete_subnet(self, &call).await,
            Resource::SecurityGroup => network::delete_group(self, &call).await,
            Resource::Images => Ok(()),
            Resource::Instance => instance::delete(self, &call).await,
        }
    }
}

/// Builds an output map.
pub(crate) fn outputs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A string value, or `Null` for `None`.
pub(crate) fn opt(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::Str)
}
