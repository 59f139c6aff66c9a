//! The day-2 commands of `dtk service`: `refresh`, `outputs`, `runs`, `import`, `mv`,
//! and the options of `plan` and `converge` that select (`--only`, `--exclude`,
//! `--replace`) and save plans (`plan --out`, `converge --plan`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use dtk_instance::converge::RunOptions;
use dtk_instance::home::Home;
use dtk_instance::plans::{PLAN_SCHEMA, PlanDoc};
use dtk_instance::refresh::{DriftLine, drift_text};
use dtk_workflow::{Replace, Selection, Selector};
use serde::Serialize;

use crate::Ctx;
use crate::cmd::service::runtime;
use crate::output::{table, utc_time};

/// `--only`, `--exclude`, `--replace`: what a converge (or its plan) acts on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Run only these components, and before them what they need that is not up to
    /// date: `node/cmp[inst]`, `cmp[inst]`, `node` (everything on it), or an id
    /// (`node[web]`)
    #[arg(long, value_name = "REF", num_args = 1..)]
    pub only: Vec<String>,
    /// Leave these components out (and what would follow a change of theirs)
    #[arg(long, value_name = "REF", num_args = 1..)]
    pub exclude: Vec<String>,
    /// Delete and create these components again (what consumes them follows)
    #[arg(long, value_name = "REF", num_args = 1..)]
    pub replace: Vec<String>,
}

impl SelectArgs {
    /// Parses the references.
    pub fn selection(&self) -> anyhow::Result<Selection> {
        let parse = |v: &[String]| -> anyhow::Result<Vec<Selector>> {
            v.iter()
                .map(|s| s.parse::<Selector>().map_err(anyhow::Error::from))
                .collect()
        };
        Ok(Selection {
            only: parse(&self.only)?,
            exclude: parse(&self.exclude)?,
            replace: parse(&self.replace)?
                .into_iter()
                .map(Replace::requested)
                .collect(),
        })
    }
}

/// Who runs a command, for run records: `$USER@HOSTNAME` (what is known of it).
pub fn who() -> Option<String> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty());
    match (user, host) {
        (Some(u), Some(h)) => Some(format!("{u}@{h}")),
        (Some(u), None) => Some(u),
        (None, Some(h)) => Some(format!("@{h}")),
        (None, None) => None,
    }
}

/// The day-2 subcommands, flattened into `dtk service`.
#[derive(Debug, Subcommand)]
pub enum Day2Command {
    /// Read the world: every recorded resource and every `check` action; record what
    /// changed (drift, new outputs) and print it. Creates, updates and deletes nothing
    ///
    /// The next plan shows what converge will do about it: create what is gone, repair
    /// what drifted (start a stopped instance, restore its type, tags, groups).
    #[command(after_help = "Example:\n  dtk service refresh shop && dtk service plan shop")]
    Refresh {
        /// The service instance
        name: String,
        /// The time limit of one `check` action, in seconds
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
    },
    /// The recorded outputs of every component, or of those REF names
    #[command(after_help = "Examples:\n  dtk service outputs shop\n  \
                            dtk --json service outputs shop web/web")]
    Outputs {
        /// The service instance
        name: String,
        /// `node/cmp[inst]`, `cmp[inst]`, `node`, or a component id (`node[web]`)
        #[arg(value_name = "REF")]
        reference: Option<String>,
    },
    /// Every run of the instance, newest first: id, kind, who, when, result, counts
    #[command(after_help = "Example:\n  dtk service runs shop\n  \
                            dtk service task-status shop --run 1712345678-")]
    Runs {
        /// The service instance
        name: String,
        /// At most this many runs
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
    },
    /// Bind a resource that exists already (an EC2 instance, a VPC, a subnet, a security
    /// group, an SSH host) to a component, instead of creating one
    ///
    /// The resource is read and compared with the component's desired attributes; the
    /// differences are the next plan's. It is never created twice; dtk never deletes it
    /// unless --adopt (then `delete` removes it like what dtk made).
    #[command(
        after_help = "Examples:\n  dtk service import app 'node[web]' i-0abc123\n  \
                            dtk service import aws1 'vpc[vpc1]' vpc-0def456 --adopt"
    )]
    Import {
        /// The service instance
        name: String,
        /// The component: `node[web]`, `vpc[vpc1]`, `node/cmp[inst]`
        #[arg(value_name = "REF")]
        reference: String,
        /// The provider's id of the resource (`i-...`, `vpc-...`, a host name)
        id: String,
        /// Make it dtk's: deleting the component deletes the resource
        #[arg(long)]
        adopt: bool,
    },
    /// Rename a node or a component instance, moving what is recorded of it (the next
    /// converge runs nothing for it)
    #[command(after_help = "Examples:\n  dtk service mv shop web frontend\n  \
                            dtk service mv shop 'web/app[a]' 'web/app[b]'")]
    Mv {
        /// The service instance
        name: String,
        /// The node, or `node/cmp[inst]` / `cmp[inst]`
        from: String,
        /// The new name, in the same form
        to: String,
    },
}

/// `remote: ...` when a run's results reached the team's remote (when they did not, the
/// command fails: see [`not_pushed`]).
fn pushed_line(
    w: &mut dyn std::io::Write,
    remote: Option<&dtk_instance::team::RemoteReport>,
) -> std::io::Result<()> {
    match remote.filter(|r| r.pushed) {
        Some(r) => match &r.message {
            None => writeln!(w, "remote: state and record pushed to {}", r.url),
            Some(m) => writeln!(w, "remote: pushed to {} ({m})", r.url),
        },
        None => Ok(()),
    }
}

/// Fails (exit 1) when a run's results did not reach the team's remote.
fn not_pushed(
    what: &str,
    name: &str,
    remote: Option<&dtk_instance::team::RemoteReport>,
) -> anyhow::Result<()> {
    match remote.filter(|r| !r.pushed) {
        Some(r) => Err(crate::output::Reported(format!(
            "{what} of `{name}` succeeded, but its results did not reach the remote {}: {}",
            r.url,
            r.message.as_deref().unwrap_or("no reason given")
        ))
        .into()),
        None => Ok(()),
    }
}

/// Runs a day-2 command.
pub fn run(cmd: Day2Command, home: &Home, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        Day2Command::Refresh { name, timeout } => {
            let svc = home.service(&name)?;
            let opts = RunOptions {
                default_timeout: std::time::Duration::from_secs(timeout.max(1)),
                who: who(),
                ..RunOptions::default()
            };
            let report = runtime()?.block_on(svc.refresh(&opts))?;
            ctx.out.emit("dtk.service.refresh/v1", &report, |w| {
                writeln!(
                    w,
                    "refreshed {}: {} resource(s) read, {} check(s) run",
                    report.service,
                    report.read,
                    report.checks.len()
                )?;
                print_drift(w, &report.drift)?;
                pushed_line(w, report.remote.as_ref())?;
                if report.drift.iter().any(|d| d.status != "outputs changed") {
                    writeln!(w, "next: dtk service plan {name}")?;
                }
                Ok(())
            })?;
            not_pushed("refresh", &name, report.remote.as_ref())
        }
        Day2Command::Outputs { name, reference } => {
            let svc = home.service(&name)?;
            let outputs = svc.outputs(reference.as_deref())?;
            #[derive(Serialize)]
            struct Doc<'a> {
                service: &'a str,
                components: &'a [dtk_instance::runs::ComponentOutputs],
            }
            ctx.out.emit(
                "dtk.service.outputs/v1",
                &Doc {
                    service: &name,
                    components: &outputs,
                },
                |w| {
                    if outputs.is_empty() {
                        return writeln!(w, "nothing recorded yet (converge `{name}` first)");
                    }
                    for c in &outputs {
                        writeln!(w, "{}", c.component)?;
                        if c.outputs.is_empty() {
                            writeln!(w, "  (no outputs)")?;
                        }
                        for (k, v) in &c.outputs {
                            writeln!(w, "  {k} = {v}")?;
                        }
                    }
                    Ok(())
                },
            )
        }
        Day2Command::Runs { name, limit } => {
            let svc = home.service(&name)?;
            let runs = svc.run_history(limit)?;
            #[derive(Serialize)]
            struct Doc<'a> {
                service: &'a str,
                runs: &'a [dtk_instance::runs::RunSummary],
            }
            ctx.out.emit(
                "dtk.service.runs/v1",
                &Doc {
                    service: &name,
                    runs: &runs,
                },
                |w| {
                    if runs.is_empty() {
                        return writeln!(w, "no runs yet");
                    }
                    let mut rows = vec![
                        [
                            "RUN", "KIND", "WHO", "STARTED", "DURATION", "RESULT", "TASKS",
                        ]
                        .map(str::to_owned)
                        .to_vec(),
                    ];
                    for r in &runs {
                        let c = &r.counts;
                        rows.push(vec![
                            r.run.clone(),
                            r.kind.to_string(),
                            r.who.clone().unwrap_or_else(|| "-".into()),
                            utc_time(i64::try_from(r.started_at).unwrap_or(0)),
                            format!("{:.1}s", r.duration_ms as f64 / 1000.0),
                            r.status.to_string(),
                            format!(
                                "{} ({} done, {} unchanged, {} failed, {} skipped)",
                                c.tasks, c.done, c.unchanged, c.failed, c.skipped
                            ),
                        ]);
                    }
                    table(w, &rows)
                },
            )
        }
        Day2Command::Import {
            name,
            reference,
            id,
            adopt,
        } => {
            let svc = home.service(&name)?;
            let opts = RunOptions {
                who: who(),
                ..RunOptions::default()
            };
            let report = runtime()?.block_on(svc.import(&reference, &id, adopt, &opts))?;
            ctx.out.emit("dtk.service.import/v1", &report, |w| {
                writeln!(
                    w,
                    "imported `{}` into {} of `{}`{}",
                    report.id,
                    report.component,
                    report.service,
                    if report.adopt {
                        " (adopted: `dtk service delete` deletes it)"
                    } else {
                        " (kept: `dtk service delete` leaves it as it is)"
                    }
                )?;
                pushed_line(w, report.remote.as_ref())?;
                if report.changes.is_empty() {
                    writeln!(w, "it matches the desired state")
                } else {
                    writeln!(w, "it differs from the desired state; converge repairs:")?;
                    for c in &report.changes {
                        writeln!(w, "  {c}")?;
                    }
                    writeln!(w, "next: dtk service plan {name}")
                }
            })?;
            not_pushed("import", &name, report.remote.as_ref())
        }
        Day2Command::Mv { name, from, to } => {
            let svc = home.service(&name)?;
            let report = svc.mv(&from, &to)?;
            ctx.out.emit("dtk.service.mv/v1", &report, |w| {
                writeln!(
                    w,
                    "renamed {} `{}` to `{}` in `{}` (commit {})",
                    report.kind,
                    report.from,
                    report.to,
                    report.service,
                    &report.commit[..report.commit.len().min(10)]
                )?;
                for (a, b) in &report.moved {
                    writeln!(w, "  {a} -> {b}")?;
                }
                Ok(())
            })
        }
    }
}

/// `dtk service plan NAME [--only/--exclude/--replace] [--out FILE]`.
pub fn plan(
    home: &Home,
    name: &str,
    select: &SelectArgs,
    out: Option<&Path>,
    ctx: &Ctx,
) -> anyhow::Result<()> {
    let svc = home.service(name)?;
    let opts = RunOptions {
        selection: select.selection()?,
        ..RunOptions::default()
    };
    let report = runtime()?.block_on(svc.plan_with(&opts))?;
    // The process ends after this command: the model and plan (100,000 components and
    // tasks in a large plan) are left to the exit rather than freed one allocation at a
    // time, which was 3% of `dtk service plan` of 100,000.
    let report = std::mem::ManuallyDrop::new(report);
    let doc = &report.doc;
    if let Some(file) = out {
        std::fs::write(file, doc.to_json())
            .with_context(|| format!("cannot write the plan to {}", file.display()))?;
    }
    ctx.out.emit(PLAN_SCHEMA, doc, |w| {
        print_drift(w, &doc.drift)?;
        if report.plan.is_empty() {
            writeln!(w, "nothing to do: `{name}` matches its desired state")?;
        } else {
            write!(w, "{}", report.plan.render_tree())?;
        }
        print_left_out(w, doc)?;
        if !doc.kept.is_empty() {
            writeln!(
                w,
                "kept: {} (imported without --adopt: its delete only forgets it, the resource stays)",
                doc.kept.join(", ")
            )?;
        }
        if !doc.checks.is_empty() {
            writeln!(
                w,
                "converge first runs the `check` action of: {} (a plan runs none)",
                doc.checks.join(", ")
            )?;
        }
        if let Some(file) = out {
            writeln!(
                w,
                "plan saved to {}; run exactly it with: dtk service converge {name} --plan {}",
                file.display(),
                file.display()
            )?;
        }
        Ok(())
    })
}

/// Reads a plan file for `converge --plan`.
pub fn read_plan(file: &PathBuf) -> anyhow::Result<PlanDoc> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the plan {}", file.display()))?;
    Ok(PlanDoc::from_json(&text, &file.display().to_string())?)
}

fn print_left_out(w: &mut dyn Write, doc: &PlanDoc) -> std::io::Result<()> {
    if doc.left_out.is_empty() {
        return Ok(());
    }
    writeln!(w, "left out ({}):", doc.left_out.len())?;
    for l in &doc.left_out {
        writeln!(w, "  {} ({}): {}", l.task, l.reason, l.why)?;
    }
    Ok(())
}

/// Prints what reading the world found, one line per component.
pub fn print_drift(w: &mut dyn Write, drift: &[DriftLine]) -> std::io::Result<()> {
    if drift.is_empty() {
        return Ok(());
    }
    writeln!(w, "drift:")?;
    for d in drift {
        writeln!(w, "  {}: {}", d.component, drift_text(d))?;
    }
    Ok(())
}

/// `--limit PROVIDER=N` values, by provider kind.
pub fn parse_limits(limits: &[String]) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for l in limits {
        let Some((kind, n)) = l.split_once('=') else {
            anyhow::bail!("`--limit {l}` is not PROVIDER=N (e.g. aws=4)");
        };
        let n: usize = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("`--limit {l}`: N must be a whole number above 0"))?;
        out.insert(kind.trim().to_owned(), n);
    }
    Ok(out)
}
