//! `dtk provider ...`: the target providers this `dtk` runs, built in or plugins.

use std::path::PathBuf;

use clap::Subcommand;
use dtk_instance::providers::{ProviderSource, UnusedPlugin};
use serde::Serialize;

use crate::Ctx;
use crate::output::table;

/// `dtk provider` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// List the provider kinds: built in, or plugin executables (`dtk-provider-KIND`) found
    /// in DTK_HOME/plugins, then DTK_PLUGIN_PATH if set, else next to dtk and on PATH
    #[command(after_help = "Example:\n  dtk provider list\n  dtk --json provider list")]
    List,
}

/// One line of `dtk provider list`.
#[derive(Debug, Serialize)]
struct Row {
    kind: String,
    source: &'static str,
    path: Option<PathBuf>,
    plugin: Option<String>,
    version: Option<String>,
    protocol: Option<u32>,
    resources: Vec<String>,
    modules: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Doc<'a> {
    search_path: &'a [PathBuf],
    providers: &'a [Row],
    unused: &'a [UnusedPlugin],
}

/// Runs a `dtk provider` command.
pub fn run(cmd: ProviderCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        ProviderCommand::List => {
            let dirs = crate::cmd::home::plugin_search_dirs(&ctx.home);
            // Plugins remembered as unusable are tried again: this is where one looks
            // after fixing one.
            let found = dtk_instance::providers::discover(&ctx.home, &dirs, true);
            let rows: Vec<Row> = found
                .kinds
                .iter()
                .map(|p| {
                    let (source, path, plugin, version, protocol) = match &p.source {
                        ProviderSource::BuiltIn => ("built-in", None, None, None, None),
                        ProviderSource::Plugin {
                            path,
                            name,
                            version,
                            protocol,
                        } => (
                            "plugin",
                            Some(path.clone()),
                            Some(name.clone()),
                            Some(version.clone()),
                            Some(*protocol),
                        ),
                    };
                    Row {
                        kind: p.kind.clone(),
                        source,
                        path,
                        plugin,
                        version,
                        protocol,
                        resources: p.resources.clone(),
                        modules: p.modules.clone(),
                    }
                })
                .collect();
            let doc = Doc {
                search_path: &found.searched,
                providers: &rows,
                unused: &found.unused,
            };
            ctx.out.emit("dtk.provider.list/v1", &doc, |w| {
                let mut t = vec![vec![
                    "KIND".to_owned(),
                    "SOURCE".to_owned(),
                    "PROTOCOL".to_owned(),
                    "MODULES".to_owned(),
                ]];
                for r in &rows {
                    t.push(vec![
                        r.kind.clone(),
                        match &r.path {
                            Some(p) => p.display().to_string(),
                            None => "built-in".to_owned(),
                        },
                        r.protocol.map_or_else(|| "-".to_owned(), |v| v.to_string()),
                        if r.modules.is_empty() {
                            "-".to_owned()
                        } else {
                            r.modules.join(", ")
                        },
                    ]);
                }
                table(w, &t)?;
                for u in &found.unused {
                    writeln!(
                        w,
                        "not used: {} ({}): {}",
                        u.path.display(),
                        u.kinds.join(", "),
                        u.reason
                    )?;
                }
                let dirs: Vec<String> = found
                    .searched
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                writeln!(w, "searched: {}", dirs.join(":"))
            })
        }
    }
}
