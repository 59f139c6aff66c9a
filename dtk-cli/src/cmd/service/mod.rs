//! `dtk service ...`: stage, edit, converge and inspect service instances.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Subcommand;
use dtk_instance::converge::RunOptions;
use dtk_instance::repo::ChangeKind;
use dtk_instance::stage::StageRequest;
use dtk_model::{Value, VersionReq};
use dtk_workflow::Limits;
use serde::Serialize;

use crate::Ctx;
use crate::cmd::module::ModuleSpec;
use crate::output::{table, utc_time};

mod run;
mod show;

pub(crate) use run::runtime;
use run::{print_task_status, run_tasks};
use show::{attributes, status, unified};

/// The formats of `dtk service graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT text
    Dot,
    /// SVG, laid out by dtk
    Svg,
}

/// `dtk service` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Stage an assembly: make a service instance with its own repository of desired state
    ///
    /// The module's dependency closure is resolved and pinned; the instance holds
    /// instance copies of every module it uses, isolated from later module versions.
    /// Without --target the default target is used (see `dtk target set-default`), else
    /// the built-in local one.
    #[command(
        after_help = "Examples:\n  dtk service stage demo/webapp two_tier -n shop\n  \
                            dtk service stage aws/network target -n aws1 --base\n  \
                            dtk service stage demo/webapp@1.0.0 two_tier -n shop2 --target aws1"
    )]
    Stage {
        /// The module holding the assembly, `NS/NAME[@VER]` (default: the latest version)
        #[arg(value_name = "NS/NAME[@VER]")]
        module: ModuleSpec,
        /// The assembly to stage
        assembly: String,
        /// The new service instance's name
        #[arg(short = 'n', long = "name", value_name = "NAME")]
        name: String,
        /// The target instance to deploy into
        #[arg(long, value_name = "TARGET", conflicts_with = "base")]
        target: Option<String>,
        /// Stage a target instance (a base for other services)
        #[arg(long)]
        base: bool,
    },
    /// List service instances
    #[command(after_help = "Example:\n  dtk service list")]
    List,
    /// One instance's nodes, components, attributes and their states
    #[command(after_help = "Example:\n  dtk service status shop")]
    Status {
        /// The service instance
        name: String,
    },
    /// Print the path of the instance repository, for editing its files
    #[command(
        after_help = "Example:\n  cd \"$(dtk service dir shop)\" && $EDITOR dtk.service.yaml"
    )]
    Dir {
        /// The service instance
        name: String,
    },
    /// Make files of the desired state editable in the instance repository
    ///
    /// Module files bigger than 64 KiB (and a module's files past its first 256 or 4 MiB)
    /// stay in git only, so that staging a big module costs nothing; this writes the
    /// files named (a directory: every file under it) to the work tree, where `git
    /// status` and `git diff` see edits and converge commits them. PATH is relative to
    /// the instance repository (default: dtk.service.yaml). On a terminal, opens $VISUAL
    /// or $EDITOR on them; otherwise prints their paths.
    #[command(
        after_help = "Examples:\n  dtk service edit shop modules/demo/webapp/bin/start-web\n  \
                            dtk service edit shop modules/demo/webapp/data --no-editor"
    )]
    Edit {
        /// The service instance
        name: String,
        /// Files or directories, relative to the instance repository
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
        /// Only write the files; do not open an editor
        #[arg(long)]
        no_editor: bool,
    },
    /// Set an attribute of the desired state (converge applies it)
    ///
    /// PATH is `node/attr` (a node's own, e.g. `workers/cardinality`),
    /// `node/component/attr`, or `component[inst]/attr`. VALUE is YAML: `4`, `true`,
    /// `hello`, `[a, b]`, `{k: v}`. Secret attributes go to the secret store, never to the
    /// repository.
    #[command(
        name = "set-attribute",
        after_help = "Examples:\n  dtk service set-attribute shop db/backend/message 'hello again'\n  \
                      dtk service set-attribute crunch workers/cardinality 4"
    )]
    SetAttribute {
        /// The service instance
        name: String,
        /// The attribute's path
        path: String,
        /// The value, as YAML (`-1` is a value, not an option)
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Add a component to a node (`NODE/CMP[INST]`) or to the assembly (`CMP[INST]`)
    #[command(
        name = "add-component",
        after_help = "Example:\n  dtk service add-component shop web/worker[extra] job=reindex"
    )]
    AddComponent {
        /// The service instance
        name: String,
        /// Where and what: `NODE/CMP[INST]` or `CMP[INST]`
        #[arg(value_name = "[NODE/]CMP[INST]")]
        path: String,
        /// Attribute values, `name=value` (value is YAML)
        #[arg(value_name = "K=V")]
        attributes: Vec<String>,
    },
    /// Remove a component from the desired state (converge runs its delete action)
    #[command(
        name = "remove-component",
        after_help = "Example:\n  dtk service remove-component shop web/worker[extra]"
    )]
    RemoveComponent {
        /// The service instance
        name: String,
        /// `NODE/CMP[INST]` or `CMP[INST]`
        #[arg(value_name = "[NODE/]CMP[INST]")]
        path: String,
    },
    /// Link a component to the one that satisfies its dependency
    #[command(
        name = "add-link",
        after_help = "Example:\n  dtk service add-link shop web/web db/backend --dependency backend"
    )]
    AddLink {
        /// The service instance
        name: String,
        /// The component with the dependency, `[NODE/]CMP[INST]`
        #[arg(value_name = "[NODE/]CMP")]
        from: String,
        /// The component that satisfies it, `[NODE/]CMP[INST]`
        #[arg(value_name = "[NODE/]TARGET")]
        to: String,
        /// The dependency's name, when the component has several
        #[arg(long)]
        dependency: Option<String>,
    },
    /// Every attribute of every component, with its value and where it comes from
    #[command(after_help = "Example:\n  dtk service attributes shop")]
    Attributes {
        /// The service instance
        name: String,
        /// Also show hidden attributes
        #[arg(long)]
        all: bool,
    },
    /// What must be fixed before converge or exec may run (the original's list-violations)
    ///
    /// Required attributes unset, illegal values, unmet or ambiguous dependencies,
    /// unsupported action kinds, `RUN ./path` lines naming files the module does not
    /// have. Exit status 1 when there is any: converge and exec refuse with the same list.
    #[command(after_help = "Example:\n  dtk service violations shop")]
    Violations {
        /// The service instance
        name: String,
    },
    /// The tasks converge would run, as a tree, without running them
    ///
    /// Provider resources are read (drift shows), but no command runs and nothing is
    /// written: the `check` actions converge would run are listed. With --out, the plan
    /// is saved; `converge --plan FILE` runs exactly it, or refuses if anything changed.
    #[command(after_help = "Examples:\n  dtk service plan shop\n  \
                            dtk service plan shop --only web/web --out shop.plan\n  \
                            dtk service converge shop --plan shop.plan")]
    Plan {
        /// The service instance
        name: String,
        #[command(flatten)]
        select: crate::cmd::day2::SelectArgs,
        /// Save the plan (with the desired-state commit and an actual-state digest)
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Commit the edits, plan, execute and record
    ///
    /// A failed task skips only what depends on it; the rest runs to the end (unless
    /// --fail-fast). --only, --exclude and --replace select what runs; --plan runs a plan
    /// saved by `plan --out` exactly, or nothing if the desired or actual state changed.
    #[command(after_help = "Examples:\n  dtk service converge shop\n  \
                            dtk service converge shop -m 'new message' --concurrency 32\n  \
                            dtk service converge shop --only web/web --replace 'node[web]'\n  \
                            dtk service converge shop --plan shop.plan --limit aws=4")]
    Converge {
        /// The service instance
        name: String,
        /// The commit message for the edits
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        #[command(flatten)]
        select: crate::cmd::day2::SelectArgs,
        /// Run exactly this saved plan (`dtk service plan --out FILE`)
        #[arg(long, value_name = "FILE", conflicts_with_all = ["only", "exclude", "replace"])]
        plan: Option<std::path::PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a custom action of a component: `[NODE/]CMP.ACTION [k=v ...]`
    ///
    /// Without NODE/, the action runs on every instance of the component. Parameters are
    /// available to the action's lines as `{{k}}`. What the action prints is kept in its
    /// task log: the summary names the log directory, and `--json` gives each task's log.
    #[command(after_help = "Examples:\n  dtk service exec shop web.smoke_test\n  \
                            dtk service exec shop web/web.smoke_test   # on node web only")]
    Exec {
        /// The service instance
        name: String,
        /// The action, `[NODE/]COMPONENT.ACTION`
        #[arg(value_name = "[NODE/]CMP.ACTION")]
        action: String,
        /// Parameters, `name=value` (value is YAML)
        #[arg(value_name = "K=V")]
        params: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The last run's tree (or any run's, with --run): each step's status, node and
    /// duration
    #[command(
        name = "task-status",
        after_help = "Examples:\n  dtk service task-status shop\n  \
                      dtk service task-status shop --run 1712345678-"
    )]
    TaskStatus {
        /// The service instance
        name: String,
        /// A run's id, or the start of it (see `dtk service runs`)
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
    /// The instance's history: desired-state commits and runs
    #[command(after_help = "Example:\n  dtk service log shop")]
    Log {
        /// The service instance
        name: String,
        /// At most this many entries
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// Uncommitted edits of the instance repository
    #[command(after_help = "Example:\n  dtk service diff shop")]
    Diff {
        /// The service instance
        name: String,
    },
    /// The workflow DAG as Graphviz DOT, or as SVG laid out by dtk (no Graphviz needed)
    #[command(
        after_help = "Examples:\n  dtk service graph shop --format svg > shop.svg\n  \
                      dtk service graph shop | dot -Tpng > shop.png"
    )]
    Graph {
        /// The service instance
        name: String,
        /// The output format: `dot` (Graphviz text) or `svg` (drawn by dtk, the same
        /// layout as `dtk ui`)
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Same as --format svg
        #[arg(long, conflicts_with = "format")]
        svg: bool,
    },
    /// Set the desired state back to an earlier revision, as a new commit
    #[command(after_help = "Example:\n  dtk service rollback shop HEAD~1")]
    Rollback {
        /// The service instance
        name: String,
        /// The revision (a commit id, `HEAD~2`)
        rev: String,
    },
    /// Move the instance to a newer version of one of its modules (three-way merge)
    ///
    /// Takes the whole new version: its files and its assembly's changes (new nodes,
    /// components, links, defaults), merged with the instance's own edits. A conflict
    /// leaves standard conflict markers in the work tree and exits 1: resolve them and
    /// converge (or --continue), or --abort.
    #[command(
        name = "pull-base",
        after_help = "Examples:\n  dtk service pull-base shop                       # the staged module's latest\n  \
                      dtk service pull-base shop demo/webapp@1.1.0\n  \
                      dtk service pull-base shop --abort              # undo a conflicted one"
    )]
    PullBase {
        /// The service instance
        name: String,
        /// The module and version (default: the staged module, latest version)
        #[arg(value_name = "NS/NAME[@VER]", conflicts_with_all = ["abort", "continue_"])]
        module: Option<ModuleSpec>,
        /// Undo a pull-base that waits for its conflicts to be resolved
        #[arg(long, conflicts_with = "continue_")]
        abort: bool,
        /// Commit a pull-base whose conflicts are resolved (converge does it too)
        #[arg(long = "continue")]
        continue_: bool,
    },
    /// Run every delete action in reverse dependency order; nothing stays deployed
    #[command(after_help = "Example:\n  dtk service delete shop")]
    Delete {
        /// The service instance
        name: String,
        /// Delete a target instance even though services are staged on it
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Remove the instance: its repository, secrets and sandboxes
    #[command(after_help = "Example:\n  dtk service delete shop && dtk service uninstall shop")]
    Uninstall {
        /// The service instance
        name: String,
        /// Remove it even though components are still deployed (or, for a target, services
        /// are staged on it)
        #[arg(long)]
        force: bool,
    },
    #[command(flatten)]
    Day2(crate::cmd::day2::Day2Command),
    /// Make a service of the team's remote on this machine (with the targets it needs)
    #[command(after_help = "Example:\n  dtk service clone shop && dtk service converge shop")]
    Clone {
        /// The service instance on the remote
        name: String,
    },
    /// Bring others' desired-state commits from the remote, merged with your edits
    ///
    /// Uncommitted edits are kept; files changed on both sides get conflict markers
    /// (nothing is lost), and converge refuses them until they are resolved.
    #[command(after_help = "Example:\n  dtk service pull shop")]
    Pull {
        /// The service instance
        name: String,
    },
    /// Push this machine's desired-state commits to the remote (refused when the remote
    /// has commits you lack: pull first)
    #[command(after_help = "Example:\n  dtk service push shop")]
    Push {
        /// The service instance
        name: String,
    },
    /// Clear the service's lock on the remote (after a holder that will not come back)
    #[command(after_help = "Example:\n  dtk service unlock shop --force")]
    Unlock {
        /// The service instance
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
    },
}

/// Options of commands that run tasks.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// At most this many tasks at once
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The time limit of one action attempt, in seconds, when the action sets none
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    /// Stop scheduling at the first failure (what has not started is skipped);
    /// otherwise a failure skips only what depends on it
    #[arg(long)]
    fail_fast: bool,
    /// At most N tasks at once using provider PROVIDER (over what the target declares),
    /// e.g. aws=4
    #[arg(long, value_name = "PROVIDER=N")]
    limit: Vec<String>,
    /// With a remote: the lease of the service's lock (renewed while the run goes; after a
    /// holder dies, others wait this long before taking over)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::cmd::remote::parse_duration)]
    lease: std::time::Duration,
}

impl RunArgs {
    fn options(&self, message: Option<String>) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            message,
            limits: Limits {
                concurrency: self.concurrency.max(1),
                per_provider: crate::cmd::day2::parse_limits(&self.limit)?,
            },
            default_timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            fail_fast: self.fail_fast,
            who: crate::cmd::day2::who(),
            lease: self.lease,
            ..RunOptions::default()
        })
    }
}

/// Runs a `dtk service` command.
pub fn run(cmd: ServiceCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let home = ctx.open_home()?;
    match cmd {
        ServiceCommand::Stage {
            module,
            assembly,
            name,
            target,
            base,
        } => {
            let version = module
                .version
                .as_ref()
                .map(dtk_instance::stage::exact)
                .transpose()?;
            let staged = home.stage(&StageRequest {
                module: module.id.clone(),
                version: version.map(|v: VersionReq| v),
                assembly,
                name,
                target,
                base,
            })?;
            ctx.out.emit("dtk.service.stage/v1", &staged, |w| {
                writeln!(
                    w,
                    "staged `{}` ({} nodes, {} components)",
                    staged.name,
                    staged.nodes.len(),
                    staged.components.len()
                )?;
                if let Some(t) = &staged.target {
                    writeln!(w, "  target:      {t}")?;
                }
                writeln!(w, "  repository:  {}", staged.dir.display())?;
                for (m, v) in &staged.modules {
                    writeln!(w, "  module:      {m}@{v}")?;
                }
                writeln!(w, "next: dtk service converge {}", staged.name)
            })
        }
        ServiceCommand::List => {
            let list = home.services()?;
            #[derive(Serialize)]
            struct Doc<'a> {
                services: &'a [dtk_instance::service::ServiceSummary],
            }
            ctx.out
                .emit("dtk.service.list/v1", &Doc { services: &list }, |w| {
                    if list.is_empty() {
                        return writeln!(
                            w,
                            "no service instances (stage one with `dtk service stage`)"
                        );
                    }
                    let mut rows = vec![vec![
                        "NAME".to_owned(),
                        "KIND".to_owned(),
                        "STAGED FROM".to_owned(),
                        "TARGET".to_owned(),
                        "LAST CONVERGE".to_owned(),
                    ]];
                    for s in &list {
                        rows.push(vec![
                            s.name.clone(),
                            if s.is_target { "target" } else { "service" }.to_owned(),
                            s.staged_from.clone().unwrap_or_else(|| "-".into()),
                            s.target.clone().unwrap_or_else(|| "-".into()),
                            s.last_converge.clone().unwrap_or_else(|| "never".into()),
                        ]);
                    }
                    table(w, &rows)
                })
        }
        ServiceCommand::Status { name } => status(&home, &name, ctx),
        ServiceCommand::Dir { name } => {
            let svc = home.service(&name)?;
            #[derive(Serialize)]
            struct Doc {
                dir: std::path::PathBuf,
            }
            let doc = Doc {
                dir: svc.dir().to_path_buf(),
            };
            ctx.out.emit("dtk.service.dir/v1", &doc, |w| {
                writeln!(w, "{}", doc.dir.display())
            })
        }
        ServiceCommand::Edit {
            name,
            paths,
            no_editor,
        } => {
            use std::io::IsTerminal as _;
            let svc = home.service(&name)?;
            let edited = svc.edit(&paths)?;
            let editor = std::env::var("VISUAL")
                .ok()
                .or_else(|| std::env::var("EDITOR").ok())
                .filter(|e| !e.trim().is_empty());
            let interactive = !no_editor
                && !ctx.out.is_json()
                && std::io::stdin().is_terminal()
                && std::io::stdout().is_terminal();
            if let (true, Some(editor)) = (interactive, editor) {
                // `$EDITOR` may hold arguments (`code -w`): let the shell split it.
                let status = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("{editor} \"$@\""))
                    .arg("editor")
                    .args(&edited.paths)
                    .status()
                    .with_context(|| format!("cannot start the editor `{editor}`"))?;
                anyhow::ensure!(
                    status.success(),
                    "the editor `{editor}` ended with {status}"
                );
            }
            ctx.out.emit("dtk.service.edit/v1", &edited, |w| {
                for p in &edited.paths {
                    writeln!(w, "{}", p.display())?;
                }
                writeln!(
                    w,
                    "edits are uncommitted until `dtk service converge {name}` (see `dtk service diff {name}`)"
                )
            })
        }
        ServiceCommand::SetAttribute { name, path, value } => {
            let svc = home.service(&name)?;
            let set = svc.set_attribute(&path, &value)?;
            ctx.out.emit("dtk.service.set-attribute/v1", &set, |w| {
                if set.secret {
                    writeln!(
                        w,
                        "set secret `{}` (kept in the secret store, outside the repository)",
                        set.path
                    )
                } else {
                    writeln!(
                        w,
                        "set `{}` = {} (uncommitted; `dtk service converge {name}` applies it)",
                        set.path,
                        set.value
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )
                }
            })
        }
        ServiceCommand::AddComponent {
            name,
            path,
            attributes,
        } => {
            let svc = home.service(&name)?;
            svc.add_component(&path, parse_params(&attributes)?)?;
            edited(ctx, "add-component", &name, &format!("added `{path}`"))
        }
        ServiceCommand::RemoveComponent { name, path } => {
            let svc = home.service(&name)?;
            svc.remove_component(&path)?;
            edited(ctx, "remove-component", &name, &format!("removed `{path}`"))
        }
        ServiceCommand::AddLink {
            name,
            from,
            to,
            dependency,
        } => {
            let svc = home.service(&name)?;
            svc.add_link(&from, &to, dependency.as_deref())?;
            edited(
                ctx,
                "add-link",
                &name,
                &format!("linked `{from}` to `{to}`"),
            )
        }
        ServiceCommand::Attributes { name, all } => attributes(&home, &name, all, ctx),
        ServiceCommand::Violations { name } => {
            let svc = home.service(&name)?;
            let list = svc.list_violations()?;
            #[derive(Serialize)]
            struct Doc<'a> {
                service: &'a str,
                violations: &'a [dtk_instance::violations::ServiceViolation],
            }
            ctx.out.emit(
                "dtk.service.violations/v1",
                &Doc {
                    service: &name,
                    violations: &list,
                },
                |w| {
                    if list.is_empty() {
                        return writeln!(w, "no violations: `{name}` may converge");
                    }
                    let mut rows = vec![vec![
                        "TYPE".to_owned(),
                        "WHERE".to_owned(),
                        "DESCRIPTION".to_owned(),
                    ]];
                    for v in &list {
                        rows.push(vec![v.kind.clone(), v.at.clone(), v.message.clone()]);
                    }
                    table(w, &rows)
                },
            )?;
            if list.is_empty() {
                Ok(())
            } else {
                Err(
                    crate::output::Reported(format!("`{name}` has {} violation(s)", list.len()))
                        .into(),
                )
            }
        }
        ServiceCommand::Plan { name, select, out } => {
            crate::cmd::day2::plan(&home, &name, &select, out.as_deref(), ctx)
        }
        ServiceCommand::Converge {
            name,
            message,
            select,
            plan,
            run,
        } => {
            let svc = home.service(&name)?;
            let mut opts = run.options(message)?;
            opts.selection = select.selection()?;
            let saved = plan.as_ref().map(crate::cmd::day2::read_plan).transpose()?;
            run_tasks(ctx, "converge", &name, opts, |opts| {
                let svc = &svc;
                Box::pin(async move {
                    match &saved {
                        Some(doc) => svc.converge_plan(doc, &opts).await,
                        None => svc.converge(&opts).await,
                    }
                })
            })
        }
        ServiceCommand::Exec {
            name,
            action,
            params,
            run,
        } => {
            let svc = home.service(&name)?;
            let mut map = BTreeMap::new();
            for p in &params {
                let Some((k, v)) = p.split_once('=') else {
                    anyhow::bail!("parameter `{p}` is not `name=value`");
                };
                map.insert(
                    k.to_owned(),
                    dtk_model::dsl::parse_value(v, &format!("parameter {k}"))?,
                );
            }
            let opts = run.options(None)?;
            run_tasks(ctx, "exec", &name, opts, |opts| {
                let svc = &svc;
                let action = action.clone();
                let map = map.clone();
                Box::pin(async move { svc.exec(&action, map, &opts).await })
            })
        }
        ServiceCommand::TaskStatus { name, run } => {
            let svc = home.service(&name)?;
            let report = match run {
                Some(id) => svc.run_report(&id)?,
                None => match svc.last_run()? {
                    Some(r) => r,
                    None => anyhow::bail!(
                        "`{name}` has not run any task yet (run `dtk service converge {name}`)"
                    ),
                },
            };
            ctx.out.emit("dtk.service.task-status/v1", &report, |w| {
                print_task_status(w, &report)
            })
        }
        ServiceCommand::Log { name, limit } => {
            let svc = home.service(&name)?;
            let commits = svc.log(limit)?;
            let runs = svc.runs(limit)?;
            #[derive(Serialize)]
            struct Doc<'a> {
                commits: &'a [dtk_instance::repo::CommitInfo],
                runs: &'a [dtk_instance::repo::CommitInfo],
            }
            ctx.out.emit(
                "dtk.service.log/v1",
                &Doc {
                    commits: &commits,
                    runs: &runs,
                },
                |w| {
                    writeln!(w, "desired state:")?;
                    for c in &commits {
                        writeln!(
                            w,
                            "  {}  {}  {}",
                            &c.id[..10.min(c.id.len())],
                            utc_time(c.time),
                            c.summary
                        )?;
                    }
                    writeln!(w, "runs:")?;
                    if runs.is_empty() {
                        writeln!(w, "  none yet")?;
                    }
                    for c in &runs {
                        writeln!(w, "  {}  {}", utc_time(c.time), c.summary)?;
                    }
                    Ok(())
                },
            )
        }
        ServiceCommand::Diff { name } => {
            let svc = home.service(&name)?;
            let changes = svc.diff()?;
            #[derive(Serialize)]
            struct Change {
                path: String,
                kind: ChangeKind,
                diff: String,
            }
            let docs: Vec<Change> = changes
                .iter()
                .map(|c| Change {
                    path: c.path.clone(),
                    kind: c.kind,
                    diff: unified(&c.path, c.old.as_deref(), c.new.as_deref()),
                })
                .collect();
            #[derive(Serialize)]
            struct Doc {
                changes: Vec<Change>,
            }
            let doc = Doc { changes: docs };
            ctx.out.emit("dtk.service.diff/v1", &doc, |w| {
                if doc.changes.is_empty() {
                    return writeln!(w, "no uncommitted edits");
                }
                for c in &doc.changes {
                    write!(w, "{}", c.diff)?;
                }
                Ok(())
            })
        }
        ServiceCommand::Graph { name, format, svg } => {
            let svc = home.service(&name)?;
            let model = svc.model()?;
            let state = svc.actual_state()?;
            let graph =
                dtk_workflow::build_graph(&model, &state, &dtk_workflow::PlanRequest::ConvergeAll)?;
            let svg = svg || format == GraphFormat::Svg;
            let text = if svg {
                dtk_ui::graph::plan_graph_svg(&graph)
            } else {
                dtk_workflow::render_dot(&graph)
            };
            #[derive(Serialize)]
            struct Doc {
                format: &'static str,
                graph: String,
            }
            let doc = Doc {
                format: if svg { "svg" } else { "dot" },
                graph: text,
            };
            ctx.out
                .emit("dtk.service.graph/v1", &doc, |w| write!(w, "{}", doc.graph))
        }
        ServiceCommand::Rollback { name, rev } => {
            let svc = home.service(&name)?;
            let commit = svc.rollback(&rev)?;
            #[derive(Serialize)]
            struct Doc {
                commit: String,
            }
            let doc = Doc {
                commit: commit.to_string(),
            };
            ctx.out.emit("dtk.service.rollback/v1", &doc, |w| {
                writeln!(
                    w,
                    "desired state of `{name}` is back at {rev} (commit {}); converge to apply it",
                    &doc.commit[..10]
                )
            })
        }
        ServiceCommand::PullBase {
            name,
            module,
            abort,
            continue_,
        } => {
            let svc = home.service(&name)?;
            if abort || continue_ {
                #[derive(Serialize)]
                struct Doc {
                    service: String,
                    action: &'static str,
                    done: bool,
                    commit: Option<String>,
                }
                let (done, commit) = if abort {
                    (svc.abort_pull()?, None)
                } else {
                    let c = svc.continue_pull()?;
                    (c.is_some(), c.map(|c| c.to_string()))
                };
                let doc = Doc {
                    service: name.clone(),
                    action: if abort { "abort" } else { "continue" },
                    done,
                    commit,
                };
                return ctx.out.emit("dtk.service.pull-base/v1", &doc, |w| {
                    match (abort, done, &doc.commit) {
                        (_, false, _) => writeln!(w, "no pull-base of `{name}` is waiting"),
                        (true, true, _) => writeln!(
                            w,
                            "pull-base of `{name}` undone: the work tree is as it was before it"
                        ),
                        (false, true, c) => writeln!(
                            w,
                            "pull-base of `{name}` committed ({}); converge to apply it",
                            c.as_deref().map_or("", |c| &c[..10.min(c.len())])
                        ),
                    }
                });
            }
            let (id, version) = match module {
                Some(m) => (m.id, m.version),
                None => {
                    let doc = svc.committed_doc()?;
                    let Some(sf) = doc.staged_from else {
                        anyhow::bail!(
                            "`{name}` does not record what it was staged from; name the module"
                        );
                    };
                    (sf.module, None)
                }
            };
            let out = svc.pull_base(&id, version.as_ref())?;
            ctx.out.emit("dtk.service.pull-base/v1", &out, |w| {
                if !out.conflicts.is_empty() {
                    writeln!(
                        w,
                        "{}: {} -> {} merged with {} conflict(s); the work tree holds the merge, \
                         conflicts marked (<<<<<<< instance / ======= / >>>>>>> new version):",
                        out.module,
                        out.from,
                        out.to,
                        out.conflicts.len()
                    )?;
                    for c in &out.conflicts {
                        writeln!(w, "  conflict: {}", svc.dir().join(c).display())?;
                    }
                    return writeln!(
                        w,
                        "resolve them, then `dtk service converge {name}` (or `dtk service pull-base {name} --continue`); \
                         or undo with `dtk service pull-base {name} --abort`"
                    );
                }
                match &out.commit {
                    Some(c) => writeln!(
                        w,
                        "{}: {} -> {} merged (commit {}); converge to apply it",
                        out.module,
                        out.from,
                        out.to,
                        &c[..10]
                    ),
                    None => writeln!(w, "{} is already at {}", out.module, out.to),
                }
            })?;
            if out.conflicts.is_empty() {
                Ok(())
            } else {
                Err(crate::output::Reported(format!(
                    "pull-base of `{name}` has {} conflict(s)",
                    out.conflicts.len()
                ))
                .into())
            }
        }
        ServiceCommand::Delete { name, force, run } => {
            let svc = home.service(&name)?;
            let opts = run.options(None)?;
            run_tasks(ctx, "delete", &name, opts, |opts| {
                let svc = &svc;
                Box::pin(async move { svc.delete_forced(&opts, force).await })
            })
        }
        ServiceCommand::Day2(cmd) => crate::cmd::day2::run(cmd, &home, ctx),
        ServiceCommand::Clone { name } => crate::cmd::remote::clone(&home, &name, ctx),
        ServiceCommand::Pull { name } => crate::cmd::remote::pull(&home, &name, ctx),
        ServiceCommand::Push { name } => crate::cmd::remote::push(&home, &name, ctx),
        ServiceCommand::Unlock { name, force } => {
            crate::cmd::remote::unlock(&home, &name, force, ctx)
        }
        ServiceCommand::Uninstall { name, force } => {
            let svc = home.service(&name)?;
            svc.uninstall(force)?;
            #[derive(Serialize)]
            struct Doc<'a> {
                uninstalled: &'a str,
            }
            ctx.out.emit(
                "dtk.service.uninstall/v1",
                &Doc { uninstalled: &name },
                |w| writeln!(w, "uninstalled `{name}`"),
            )
        }
    }
}

/// Parses `name=value` arguments (values are YAML).
fn parse_params(params: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            anyhow::bail!("`{p}` is not `name=value`");
        };
        map.insert(
            k.to_owned(),
            dtk_model::dsl::parse_value(v, &format!("value of {k}"))?,
        );
    }
    Ok(map)
}

/// Reports an edit of the work tree.
fn edited(ctx: &Ctx, what: &str, name: &str, text: &str) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Doc<'a> {
        service: &'a str,
        edit: &'a str,
        committed: bool,
    }
    ctx.out.emit(
        &format!("dtk.service.{what}/v1"),
        &Doc {
            service: name,
            edit: text,
            committed: false,
        },
        |w| {
            writeln!(
                w,
                "{text} (uncommitted; `dtk service converge {name}` applies it)"
            )
        },
    )
}
