//! Transport errors as the provider errors the executor expects (a leaf: the provider and
//! the content sync both map through it).

use dtk_model::ProviderError;

use crate::transport::SshError;

/// Maps a transport error to the provider error the executor expects: connection trouble
/// is retryable, refusals (host key, login, settings) are not.
pub(crate) fn from_ssh(operation: String, e: SshError) -> ProviderError {
    match e {
        SshError::Timeout { timeout, .. } => ProviderError::Timeout {
            operation,
            after: timeout,
        },
        SshError::Cancelled { .. } => ProviderError::Cancelled { operation },
        SshError::InvalidHost { .. } | SshError::InvalidRequest { .. } => {
            ProviderError::InvalidInput {
                resource: operation,
                message: e.to_string(),
            }
        }
        e => ProviderError::Failed {
            operation,
            message: e.to_string(),
            retryable: e.is_transient(),
            source: None,
        },
    }
}
