//! dtk as a library: what `./scripts/quickstart` does with the `dtk` binary, in Rust.
//!
//! 1. open a `DTK_HOME` ([`Home::open`]) and publish `examples/modules/webapp` into its
//!    catalog;
//! 2. stage its `two_tier` assembly as the service instance `shop` on the built-in local
//!    target ([`Home::stage`]);
//! 3. converge it ([`Service::converge`]), printing the executor's progress events;
//! 4. edit the desired state ([`Service::set_attribute`]) and converge again: only what
//!    the edit changed runs, and the running web page shows the new message;
//! 5. read the status (the expanded model, [`Service::model`], against the actual state,
//!    [`Service::actual_state`]);
//! 6. delete the deployment ([`Service::delete`]: no process is left running) and remove
//!    the instance ([`Service::uninstall`]).
//!
//! Run it with `cargo run -p embed-example` (it needs `python3`, which serves the example's
//! pages). It works in a fresh temporary `DTK_HOME`, or in the directory given as its
//! argument.

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dtk_instance::converge::{RunOptions, RunReport};
use dtk_instance::home::Home;
use dtk_instance::service::Service;
use dtk_instance::stage::StageRequest;
use dtk_workflow::Event;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The example module, in this repository.
fn webapp_module() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/webapp")
}

/// Converges `svc`, printing each task as it starts and ends, and fails unless every
/// task succeeded.
async fn converge(svc: &Service, message: &str) -> Result<RunReport> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                Event::TaskStarted { task, .. } => say(&format!("  started  {task}")),
                Event::TaskFinished { task, duration, .. } => {
                    say(&format!(
                        "  done     {task} ({:.1}s)",
                        duration.as_secs_f64()
                    ));
                }
                Event::TaskFailed { task, error, .. } => {
                    say(&format!("  failed   {task}: {error}"));
                }
                _ => {}
            }
        }
    });
    let opts = RunOptions {
        message: Some(message.to_owned()),
        events: Some(tx),
        ..RunOptions::default()
    };
    let report = svc.converge(&opts).await;
    // The sender went with `opts`, so the printer ends once it has printed everything.
    drop(opts);
    printer.await?;
    let report = report?;
    say(&format!(
        "converge {}: {} tasks in {:.1}s",
        report.status,
        report.tasks.len(),
        report.duration_ms as f64 / 1000.0
    ));
    if !report.is_success() {
        return Err(format!("converge {}:\n{}", report.status, report.tree).into());
    }
    Ok(report)
}

/// One line of a service's status: a component, its state and its outputs.
#[derive(Debug)]
struct ComponentStatus {
    id: String,
    node: Option<String>,
    state: &'static str,
    outputs: Vec<(String, String)>,
}

/// The status of `svc`: every component of its desired state, and what actual state
/// records of it.
fn status(svc: &Service) -> Result<Vec<ComponentStatus>> {
    let model = svc.model()?;
    let actual = svc.actual_state()?;
    Ok(model
        .components
        .iter()
        .map(|c| {
            let rec = actual.components.get(&c.id);
            ComponentStatus {
                id: c.id.to_string(),
                node: c.node.clone(),
                state: match rec {
                    Some(r) if r.is_applied() => "converged",
                    Some(_) => "failed",
                    None => "pending",
                },
                outputs: rec
                    .map(|r| {
                        r.outputs
                            .iter()
                            .map(|(k, v)| (k.clone(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// The `url` output of component `id`.
fn url_of(svc: &Service, id: &str) -> Result<String> {
    let values = svc.actual_values()?;
    values
        .get(id)
        .and_then(|outputs| outputs.get("url"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("`{id}` has no `url` output").into())
}

/// `GET url` over plain HTTP/1.0, returning the body.
fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let mut stream = std::net::TcpStream::connect(hostport)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
        .unwrap_or(response))
}

/// What [`run`] saw: the page before and after the edit.
#[derive(Debug)]
struct Seen {
    before: String,
    after: String,
    tasks_of_edit: usize,
}

/// Stage → converge → set-attribute → converge → status → delete → uninstall, in the
/// `DTK_HOME` at `root`.
async fn run(root: &Path) -> Result<Seen> {
    let home = Home::open(root)?;
    let published = home.catalog().publish(&webapp_module())?;
    say(&format!(
        "published {} {} ({:?})",
        published.module, published.version, published.status
    ));

    let staged = home.stage(&StageRequest {
        module: published.module.clone(),
        version: None,
        assembly: "two_tier".to_owned(),
        name: "shop".to_owned(),
        target: None,
        base: false,
    })?;
    say(&format!(
        "staged `{}` in {} ({} components)",
        staged.name,
        staged.dir.display(),
        staged.components.len()
    ));
    let svc = home.service(&staged.name)?;

    converge(&svc, "first converge").await?;
    let before = http_get(&url_of(&svc, "web/web")?)?;
    say(&format!("the web page says: {before}"));

    // An edit of the desired state: uncommitted until converge, which commits it.
    svc.set_attribute("db/backend/message", "hello from Rust")?;
    let report = converge(&svc, "a message set from Rust").await?;
    let after = http_get(&url_of(&svc, "web/web")?)?;
    say(&format!("the web page says: {after}"));

    say("status:");
    for c in status(&svc)? {
        say(&format!(
            "  {:<12} on {:<4} {}",
            c.id,
            c.node.as_deref().unwrap_or("-"),
            c.state
        ));
        for (k, v) in &c.outputs {
            say(&format!("      {k} => {v}"));
        }
    }
    for commit in svc.log(10)? {
        say(&format!("  commit {} {}", &commit.id[..10], commit.summary));
    }

    let deleted = svc.delete(&RunOptions::default()).await?;
    say(&format!("delete {}", deleted.status));
    svc.uninstall(false)?;
    Ok(Seen {
        before,
        after,
        tasks_of_edit: report.tasks.len(),
    })
}

#[allow(clippy::print_stdout)] // this program's output is its point
fn say(line: &str) {
    println!("{line}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let tmp;
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("dtk-home")
        }
    };
    let seen = run(&root).await?;
    say(&format!(
        "done: \"{}\" became \"{}\" ({} tasks ran for the edit)",
        seen.before, seen.after, seen.tasks_of_edit
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stage_edit_converge_status_delete() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let seen = super::run(&tmp.path().join("home"))
            .await
            .unwrap_or_else(|e| panic!("the example failed: {e}"));
        assert_eq!(seen.before, "The backend says: hello from dtk");
        assert_eq!(seen.after, "The backend says: hello from Rust");
        // The backend changed, and the web front end that consumes its outputs.
        assert_eq!(seen.tasks_of_edit, 2);
        // Nothing is left behind: the service is gone.
        let home = dtk_instance::home::Home::open(&tmp.path().join("home")).expect("home");
        assert!(home.service("shop").is_err());
    }
}
