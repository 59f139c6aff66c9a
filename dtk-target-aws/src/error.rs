//! The errors of this crate. None of them holds an SDK type or a credential.

use std::fmt;
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// The error returned by the operations of [`crate::Ec2`].
///
/// Each variant names the EC2 operation or the step that failed and the resource it was
/// about; none holds a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// An EC2 request failed (after the SDK's retries).
    #[error("EC2 {operation} failed for {resource}")]
    Api {
        /// The EC2 API operation, e.g. `CreateVpc`.
        operation: &'static str,
        /// What it was about, e.g. `vpc vpc-0abc` or `subnet in vpc-0abc`.
        resource: String,
        /// What EC2 or the connection said.
        #[source]
        source: ApiError,
    },
    /// A resource given by id does not exist.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// The kind of resource.
        kind: ResourceKind,
        /// The id that was looked for.
        id: String,
    },
    /// A resource did not reach a state in time.
    #[error("timed out after {waited:?} waiting for {resource} to be {state}")]
    Timeout {
        /// What was waited for, e.g. `instance i-0abc`.
        resource: String,
        /// The state it should have reached.
        state: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// What was asked for contradicts what exists and cannot be changed in place.
    #[error("{kind} {id}: {reason}")]
    Conflict {
        /// The kind of resource.
        kind: ResourceKind,
        /// Its id.
        id: String,
        /// What contradicts what.
        reason: String,
    },
    /// No block of the asked prefix length is free in the VPC.
    #[error("no free /{prefix_len} block left in vpc {vpc_id} ({vpc_cidr})")]
    NoFreeCidr {
        /// The VPC searched.
        vpc_id: String,
        /// Its CIDR block.
        vpc_cidr: String,
        /// The subnet prefix length asked for.
        prefix_len: u8,
    },
    /// An image or size could not be resolved.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A value given to an operation is not valid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The caller cancelled the operation (see [`crate::Ec2::with_cancel`]).
    #[error("cancelled")]
    Cancelled,
    /// EC2 answered with something this crate cannot use (a missing id, ...).
    #[error("EC2 {operation} answered without {missing}")]
    Incomplete {
        /// The operation.
        operation: &'static str,
        /// The field that was missing.
        missing: &'static str,
    },
}

impl AwsError {
    /// The EC2 error code, e.g. `InvalidVpcID.NotFound`, when EC2 answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether trying the operation again later may help: throttling, EC2's internal
    /// errors, timeouts and connection failures (after the SDK's own retries).
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Api { source, .. } => match source.kind() {
                ApiErrorKind::Timeout | ApiErrorKind::Connection | ApiErrorKind::Response => true,
                ApiErrorKind::Request => false,
                ApiErrorKind::Service => matches!(
                    source.code(),
                    Some(
                        "RequestLimitExceeded"
                            | "Throttling"
                            | "ThrottlingException"
                            | "InternalError"
                            | "InternalFailure"
                            | "ServiceUnavailable"
                            | "Unavailable"
                            | "InsufficientInstanceCapacity"
                            | "DependencyViolation"
                    )
                ),
            },
            AwsError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Whether EC2 said that the thing asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            AwsError::NotFound { .. } => true,
            _ => self.code().is_some_and(|c| c.ends_with("NotFound")),
        }
    }

    pub(crate) fn api<E>(
        operation: &'static str,
        resource: impl fmt::Display,
        err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        AwsError::Api {
            operation,
            resource: resource.to_string(),
            source: ApiError::from_sdk(err),
        }
    }
}

/// A kind of EC2 resource, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A VPC.
    Vpc,
    /// A subnet.
    Subnet,
    /// A security group.
    SecurityGroup,
    /// An internet gateway.
    InternetGateway,
    /// A route table.
    RouteTable,
    /// An EC2 instance.
    Instance,
    /// A machine image.
    Image,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Vpc => "vpc",
            ResourceKind::Subnet => "subnet",
            ResourceKind::SecurityGroup => "security group",
            ResourceKind::InternetGateway => "internet gateway",
            ResourceKind::RouteTable => "route table",
            ResourceKind::Instance => "instance",
            ResourceKind::Image => "image",
        })
    }
}

/// How an EC2 request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// EC2 answered with an error (see [`ApiError::code`]).
    Service,
    /// The request timed out.
    Timeout,
    /// The request could not be sent (connection refused, DNS, TLS, ...).
    Connection,
    /// The answer could not be read.
    Response,
    /// The request could not be built (bad input, no credentials, ...).
    Request,
}

/// What EC2 or the connection said when a request failed: the error code and message of
/// an EC2 error, or a description of a transport failure. A leaf: it has no source.
#[derive(Clone, Debug)]
pub struct ApiError {
    kind: ApiErrorKind,
    code: Option<String>,
    message: Option<String>,
    /// The HTTP status of EC2's answer, said when the answer has no error code (an
    /// endpoint that failed inside, a proxy's error page).
    status: Option<u16>,
}

impl ApiError {
    /// How the request failed.
    pub fn kind(&self) -> ApiErrorKind {
        self.kind
    }

    /// The EC2 error code, e.g. `InvalidSubnetID.NotFound`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The EC2 error message, or the description of a transport failure.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    fn from_sdk<E>(err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let kind = match &err {
            SdkError::ServiceError(_) => ApiErrorKind::Service,
            SdkError::TimeoutError(_) => ApiErrorKind::Timeout,
            SdkError::DispatchFailure(_) => ApiErrorKind::Connection,
            SdkError::ResponseError(_) => ApiErrorKind::Response,
            _ => ApiErrorKind::Request,
        };
        match kind {
            ApiErrorKind::Service => ApiError {
                kind,
                code: err.code().map(str::to_owned),
                message: err.message().map(str::to_owned),
                status: err.raw_response().map(|r| r.status().as_u16()),
            },
            // The SDK's texts of a transport failure name the cause (connection refused,
            // timeout, ...); they hold no credential.
            _ => ApiError {
                kind,
                code: None,
                message: Some(error_chain(&err)),
                status: None,
            },
        }
    }
}

/// The texts of `err` and of its sources, joined by `: `, each said once: `dispatch
/// failure: io error: client error (Connect): tcp connect error: Connection refused (os
/// error 111)`. (The SDK's `DisplayErrorContext` adds the error's `Debug` form to that,
/// which says it all again, with type names.)
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        let said = parts.last().is_some_and(|p| p.contains(text.as_str()));
        if !text.is_empty() && !said {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ApiErrorKind::Service => "EC2 error",
            ApiErrorKind::Timeout => "timed out",
            ApiErrorKind::Connection => "could not connect",
            ApiErrorKind::Response => "unreadable response",
            ApiErrorKind::Request => "could not make the request",
        };
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}"),
            (Some(code), None) => write!(f, "{code}"),
            (None, Some(message)) => write!(f, "{what}: {message}"),
            (None, None) => match self.status {
                Some(status) => write!(f, "{what}: HTTP {status} without an error code"),
                None => write!(f, "{what}"),
            },
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod api_error_tests {
    use super::{ApiError, ApiErrorKind};

    #[test]
    fn an_answer_without_a_code_names_its_http_status() {
        let e = |code: Option<&str>, message: Option<&str>, status: Option<u16>| ApiError {
            kind: ApiErrorKind::Service,
            code: code.map(str::to_owned),
            message: message.map(str::to_owned),
            status,
        };
        assert_eq!(
            e(None, None, Some(500)).to_string(),
            "EC2 error: HTTP 500 without an error code"
        );
        assert_eq!(e(None, None, None).to_string(), "EC2 error");
        assert_eq!(
            e(
                Some("InsufficientFreeAddressesInSubnet"),
                Some("no room"),
                Some(400)
            )
            .to_string(),
            "InsufficientFreeAddressesInSubnet: no room"
        );
    }
}

/// The error returned when an image or a size cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The image map has no entry for the region.
    #[error("the image map has no images for region {region}")]
    UnknownRegion {
        /// The region asked for.
        region: String,
    },
    /// The logical image name is not in the region's map.
    #[error("unknown image {image:?} in region {region} (known: {known})")]
    UnknownImage {
        /// The region.
        region: String,
        /// The logical name asked for.
        image: String,
        /// The names the map has, comma-separated.
        known: String,
    },
    /// The size is neither a logical size of the image nor an instance type.
    #[error(
        "unknown size {size:?} for image {image:?} (known: {known}; or give an instance type such as t3.micro)"
    )]
    UnknownSize {
        /// The image (logical name or AMI id).
        image: String,
        /// The size asked for.
        size: String,
        /// The logical sizes known for it, comma-separated.
        known: String,
    },
    /// No image matched a describe-images name filter.
    #[error("no image in {region} matches name filter {pattern:?} for image {image:?}")]
    NoMatch {
        /// The region searched.
        region: String,
        /// The logical image name being resolved.
        image: String,
        /// The name pattern.
        pattern: String,
    },
    /// An image map given as a value is not well formed.
    #[error("image map: {reason}")]
    BadMap {
        /// What is wrong, with the path to the offending key.
        reason: String,
    },
}

/// The error returned when a value given to this crate is not valid (a CIDR block, a
/// protocol, a port range, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct SpecError {
    /// What the value is, e.g. `CIDR block`.
    pub what: &'static str,
    /// The value given.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl SpecError {
    pub(crate) fn new(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        SpecError {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}
