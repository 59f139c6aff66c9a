//! dtk target providers as separate executables.
//!
//! A provider plugin is an executable named `dtk-provider-KIND` that speaks dtk's plugin
//! protocol on its standard input and output: JSON lines, a `hello` handshake (protocol
//! version, the kinds it serves with their resources and bundled modules), one request
//! per [`Provider`](dtk_model::Provider) method (`create`, `read`, `update`, `delete`,
//! `exec`), many at once told apart by id, `cancel`, `ping` and `shutdown`. The protocol
//! is written down in `docs/providers.md` (in the repository), so that a plugin can be
//! written in any language.
//!
//! This crate is both sides of it, for Rust:
//!
//! - **The plugin side.** [`serve`] turns any `Provider` into such an executable; its
//!   `main` is three lines:
//!
//!   ```text
//!   fn main() -> std::process::ExitCode {
//!       dtk_provider_plugin::serve(provider_hello::HelloProvider::new())
//!   }
//!   ```
//!
//!   [`serve_with`] is for a provider that needs to know `DTK_HOME` (its state
//!   directory) before it is made, and [`Plugin`] serves several kinds from one
//!   executable.
//!
//! - **The host side.** [`PluginProcess`] runs one executable, started on first use (one
//!   process per executable for the whole host process), and its [`PluginProvider`]s are
//!   `Provider`s that forward every call to it, with a timeout per call and a ping while
//!   calls are in flight. A plugin that exits, hangs or writes something that is not a
//!   protocol message fails the calls in flight with an error naming the plugin and what
//!   happened; the next call starts it again. [`discover`] finds the executables in a
//!   list of directories and describes each once, remembered in a cache file.
//!
//! The crate depends on `dtk-model` and the async runtime, never on `dtk-instance`: a
//! provider plugin links nothing of dtk's instance layer.

mod discover;
mod host;
mod serve;
mod spawn;
mod wire;

pub use discover::{
    Discovery, EXECUTABLE_PREFIX, Found, FoundStatus, describe, discover, kind_of_executable,
    validate,
};
pub use host::{PluginOptions, PluginProcess, PluginProvider, STDERR_TARGET};
pub use serve::{Plugin, PluginContext, ServeError, SetupError, serve, serve_io, serve_with};
pub use wire::{
    MAX_LINE, PROTOCOL_VERSION, PluginDescription, PluginName, ProvidedKind, RemoteError,
    SUPPORTED_PROTOCOLS, WireModule,
};

#[cfg(test)]
mod tests;
