//! `dtk-provider-aws`: the `aws` provider as a plugin executable, which the stock `dtk`
//! binary finds next to itself, in `DTK_HOME/plugins` or on `PATH`, and starts when a
//! service needs it.
//!
//! It honours the standard AWS environment like every AWS SDK tool: the region from
//! `AWS_REGION` (else `AWS_DEFAULT_REGION`, else `us-east-1`), the endpoint from
//! `AWS_ENDPOINT_URL`, and the SDK's own chain for the rest (`AWS_PROFILE`, ...). Its
//! state (stored credentials) lives in `DTK_HOME/providers/aws`, as dtk says in the
//! handshake. It runs no commands itself: commands on its nodes go over SSH.

use dtk_provider_plugin::{Plugin, PluginContext, SetupError};
use dtk_target_aws::{AwsProvider, AwsSettings, DEFAULT_REGION, KIND};

fn main() -> std::process::ExitCode {
    dtk_provider_plugin::serve_with(setup)
}

/// The provider for the dtk home of the handshake, with the environment's settings.
fn setup(ctx: &PluginContext) -> Result<Plugin, SetupError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let mut settings = AwsSettings::new(region);
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        settings = settings.with_endpoint_url(url);
    }
    let provider = AwsProvider::new(ctx.state_dir(KIND), settings);
    Ok(Plugin::new(provider)
        .without_exec()
        .named("dtk-provider-aws", env!("CARGO_PKG_VERSION")))
}
