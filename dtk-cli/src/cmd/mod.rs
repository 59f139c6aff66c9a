//! The commands: one module (file) per noun, each with its own clap subcommand enum and
//! a `run` function. To add a noun, add a file, a variant here and its arm in
//! [`Command::run`].

pub mod module;
pub mod service;
pub mod target;

use clap::Subcommand;

use crate::Ctx;

/// The nouns of the command line.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Modules in the catalog: install (publish), list, show, validate
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Service instances: stage, edit, converge, inspect, delete
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Target instances and the default target
    #[command(subcommand)]
    Target(target::TargetCommand),
    /// Print a shell completion script: `dtk completions bash > /etc/bash_completion.d/dtk`
    #[command(after_help = "Example:\n  dtk completions zsh > ~/.zfunc/_dtk")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Runs the command.
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            Command::Module(c) => module::run(c, ctx),
            Command::Service(c) => service::run(c, ctx),
            Command::Target(c) => target::run(c, ctx),
            Command::Completions { shell } => {
                let mut cmd = <crate::Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "dtk", &mut std::io::stdout());
                Ok(())
            }
        }
    }
}
