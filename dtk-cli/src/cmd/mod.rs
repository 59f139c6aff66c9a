//! The commands: one module (file) per noun, each with its own clap subcommand enum and
//! a `run` function. To add a noun, add a file, a variant here and its arm in
//! [`Command::run`].

pub mod day2;
pub mod home;
pub mod module;
pub mod provider;
pub mod remote;
pub mod service;
pub mod target;
pub mod ui;

use clap::Subcommand;

use crate::Ctx;

/// The nouns of the command line.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Modules in the catalog: install (publish), list, show, validate
    #[command(
        subcommand,
        after_help = "Examples:\n  dtk module install examples/modules/webapp\n  \
                      dtk module show demo/webapp"
    )]
    Module(module::ModuleCommand),
    /// Service instances: stage, edit, converge, inspect, delete
    #[command(
        subcommand,
        after_help = "Examples:\n  dtk service stage demo/webapp two_tier -n shop\n  \
                      dtk service set-attribute shop db/backend/message 'hello again'\n  \
                      dtk service converge shop\n  \
                      dtk service status shop"
    )]
    Service(service::ServiceCommand),
    /// Target instances and the default target
    #[command(
        subcommand,
        after_help = "Examples:\n  dtk target list\n  \
                      dtk target set-default aws1      # a converged target instance"
    )]
    Target(target::TargetCommand),
    /// The team's git remote: the catalog, every service and its state shared
    #[command(
        subcommand,
        after_help = "Examples:\n  dtk remote set ssh://git@git.example.com/ops/dtk.git\n  \
                      dtk remote show"
    )]
    Remote(remote::RemoteCommand),
    /// Serve a read-only web view of the services, their runs and DAGs, live
    ///
    /// The index lists services and targets; each service's page shows its nodes,
    /// components and their states, outputs (never a secret), history, a run's timeline
    /// with its critical path, and its plan's DAG; a run started from another `dtk` is
    /// followed live. Listens on loopback unless --listen says otherwise.
    #[command(
        after_help = "Examples:\n  dtk ui                           # http://127.0.0.1:7878/\n  \
                      dtk ui --listen 127.0.0.1:0      # a free port (the URL is printed)"
    )]
    Ui(ui::UiArgs),
    /// Target providers: the built-in ones and plugin executables (`dtk-provider-KIND`)
    #[command(subcommand, after_help = "Example:\n  dtk provider list")]
    Provider(provider::ProviderCommand),
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
            Command::Remote(c) => remote::run(c, ctx),
            Command::Ui(args) => ui::run(args, ctx),
            Command::Provider(c) => provider::run(c, ctx),
            Command::Completions { shell } => {
                let mut cmd = <crate::Cli as clap::CommandFactory>::command();
                // Into a buffer first: clap_complete panics when its writer fails, and a
                // closed stdout (`dtk completions bash | head`) is not a failure.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "dtk", &mut script);
                std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
                Ok(())
            }
        }
    }
}
