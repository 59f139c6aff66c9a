//! The `dtk` command line.
//!
//! This file parses the arguments, dispatches to the command modules under `cmd/`, renders
//! errors and picks the exit status: 0 on success, 1 when a request is refused (bad
//! input, a missing module, an immutable version, a failed operation), 2 on a usage error
//! (clap's own). Each command is a thin layer over a library call: the logic a library
//! user would need lives in the library crates.

mod cmd;
mod output;
mod progress;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::output::Output;

/// mimalloc instead of glibc's malloc: parsing and expanding a large service is
/// allocation-bound (glibc's malloc and free were 40% of a 100,000-component plan).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dtk: manage deployed services the way object-oriented code manages objects.
///
/// Modules are classes, staging an assembly makes a service instance with its own git
/// repository of desired state, and converge turns edits into a parallel DAG of tasks.
#[derive(Debug, Parser)]
#[command(
    name = "dtk",
    version,
    propagate_version = true,
    after_help = "Example:\n  dtk module install ./modules/webapp\n  dtk --json module list"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: cmd::Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The state directory: the module catalog and the service instances
    /// [default: $DTK_HOME, else ~/.dtk]
    #[arg(long, global = true, value_name = "DIR", env = "DTK_HOME")]
    home: Option<PathBuf>,

    /// Print one JSON document on stdout instead of human output (errors too); each
    /// document names its schema in a "schema" field, e.g. "dtk.module.list/v1"
    #[arg(long, global = true)]
    json: bool,

    /// Log what dtk does on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when set,
    /// takes precedence: e.g. RUST_LOG=dtk_target_ssh=debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// What every command gets: where the state is, and how to print.
#[derive(Debug)]
pub struct Ctx {
    /// `DTK_HOME`: the catalog is `home/catalog`.
    pub home: PathBuf,
    /// Human or JSON output.
    pub out: Output,
}

impl Ctx {
    /// The module catalog directory.
    pub fn catalog_dir(&self) -> PathBuf {
        self.home.join("catalog")
    }

    /// Opens `DTK_HOME` with every provider this binary has.
    pub fn open_home(&self) -> anyhow::Result<dtk_instance::home::Home> {
        cmd::home::open_home(&self.home)
    }
}

fn default_home() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(".dtk")),
        _ => anyhow::bail!("no --home given, and neither DTK_HOME nor HOME is set"),
    }
}

/// Installs the log subscriber: the libraries' `tracing` events go to stderr, filtered by
/// `RUST_LOG` when it is set, else by `-v` (warnings only without it).
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => {
                "warn,dtk=info,dtk_model=info,dtk_catalog=info,dtk_workflow=info,dtk_instance=info,dtk_target_local=info,dtk_target_ssh=info,dtk_provider_plugin=info"
            }
            2 => {
                "info,dtk=debug,dtk_model=debug,dtk_catalog=debug,dtk_workflow=debug,dtk_instance=debug,dtk_target_local=debug,dtk_target_ssh=debug,dtk_provider_plugin=debug"
            }
            _ => {
                "debug,dtk=trace,dtk_model=trace,dtk_catalog=trace,dtk_workflow=trace,dtk_instance=trace,dtk_target_local=trace,dtk_target_ssh=trace,dtk_provider_plugin=trace"
            }
        }),
    };
    // A second subscriber (never here) would be the only reason this fails: ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` exit 0; a usage error exits 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.global.verbose);
    let out = Output::new(cli.global.json);
    let result = match cli.global.home.map_or_else(default_home, Ok) {
        Ok(home) => {
            let ctx = Ctx { home, out };
            cli.command.run(&ctx)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<output::Reported>().is_some() => {
            if !out.is_json() {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "error: {e}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            render::error(&out, &e);
            ExitCode::from(1)
        }
    }
}
