//! `dtk target ...`: target instances and the default target.

use clap::Subcommand;
use serde::Serialize;

use crate::Ctx;
use crate::output::table;

/// `dtk target` subcommands.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List target instances (staged with `dtk service stage ... --base`)
    #[command(after_help = "Example:\n  dtk target list")]
    List,
    /// Make NAME the target `dtk service stage` uses when none is named
    #[command(
        name = "set-default",
        after_help = "Example:\n  dtk target set-default aws1"
    )]
    SetDefault {
        /// The target instance (or `local`, the built-in one)
        name: String,
    },
}

/// Runs a `dtk target` command.
pub fn run(cmd: TargetCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let home = ctx.open_home()?;
    match cmd {
        TargetCommand::List => {
            let targets = home.targets()?;
            let default = home.default_target()?;
            #[derive(Serialize)]
            struct Doc<'a> {
                default: &'a str,
                targets: &'a [dtk_instance::service::ServiceSummary],
            }
            ctx.out.emit(
                "dtk.target.list/v1",
                &Doc {
                    default: &default,
                    targets: &targets,
                },
                |w| {
                    let mut rows = vec![vec![
                        "NAME".to_owned(),
                        "STAGED FROM".to_owned(),
                        "LAST CONVERGE".to_owned(),
                        "DEFAULT".to_owned(),
                    ]];
                    for t in &targets {
                        rows.push(vec![
                            t.name.clone(),
                            t.staged_from.clone().unwrap_or_else(|| "-".into()),
                            t.last_converge.clone().unwrap_or_else(|| "never".into()),
                            if t.name == default {
                                "*".into()
                            } else {
                                String::new()
                            },
                        ]);
                    }
                    if targets.iter().all(|t| t.name != default) {
                        rows.push(vec![
                            default.clone(),
                            "(built in)".into(),
                            "-".into(),
                            "*".into(),
                        ]);
                    }
                    table(w, &rows)
                },
            )
        }
        TargetCommand::SetDefault { name } => {
            if name == dtk_instance::home::LOCAL_TARGET {
                home.ensure_local_target()?;
            }
            home.set_default_target(&name)?;
            #[derive(Serialize)]
            struct Doc<'a> {
                default: &'a str,
            }
            ctx.out
                .emit("dtk.target.set-default/v1", &Doc { default: &name }, |w| {
                    writeln!(w, "default target: {name}")
                })
        }
    }
}
