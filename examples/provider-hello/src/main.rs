//! `dtk-provider-hello`: the `hello` provider as a plugin executable that the stock `dtk`
//! binary runs (put it in `DTK_HOME/plugins`, next to `dtk`, or on `PATH`).

fn main() -> std::process::ExitCode {
    let plugin = dtk_provider_plugin::Plugin::new(provider_hello::HelloProvider::new())
        .without_exec()
        .named("dtk-provider-hello", env!("CARGO_PKG_VERSION"));
    dtk_provider_plugin::serve(plugin)
}
