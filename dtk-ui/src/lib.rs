//! dtk-ui: the read-only web view of a `DTK_HOME` (`dtk ui`).
//!
//! An [axum] server renders, in the server, an index of the services and targets and a
//! page per service: its nodes and components with their states and outputs (secrets never:
//! only whether each is set), its history (desired-state commits and runs), a run's tasks
//! as a timeline with the critical path marked, and its plan's DAG as SVG laid out here
//! ([`layout`]: no Graphviz). A run in progress, started by `dtk` in another process, is
//! shown live: the server follows the run's journal ([`dtk_instance::watch`]) and sends
//! each task's changes as server-sent events to a small hand-written script
//! (`assets/ui.js`, embedded: no build step, no framework).
//!
//! It only reads, through the library's public calls; it never writes state, never takes
//! an instance's lock, and answers `GET` (and `HEAD`) only. [`router`] is the whole
//! application, for embedding; [`serve`] runs it on a listener.
//!
//! The JSON endpoints (`/api/...`) are documented with their schemas in `dtk-cli/JSON.md`.

pub mod graph;
pub mod html;
pub mod layout;
pub mod pages;
mod server;
pub mod timeline;
pub mod view;

use thiserror::Error;

pub use server::{ServeOptions, router, serve};

/// The error returned when a page or document cannot be made.
#[derive(Debug, Error)]
pub enum UiError {
    /// There is no such service instance.
    #[error("no service instance named `{name}`")]
    NoSuchService {
        /// The name asked for.
        name: String,
    },
    /// The service has no such run (among its recorded runs).
    #[error("service `{service}` has no recorded run `{run}`")]
    NoSuchRun {
        /// The service.
        service: String,
        /// The run asked for.
        run: String,
    },
    /// Reading the service (or the home) failed.
    #[error("cannot read service `{service}`")]
    Read {
        /// The service (`*` for the home's listing).
        service: String,
        /// Why.
        #[source]
        source: Box<dtk_instance::InstanceError>,
    },
    /// The service's DAG cannot be built.
    #[error("cannot build the task graph of service `{service}`")]
    Graph {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<dtk_workflow::PlanError>,
    },
}

impl UiError {
    /// Whether the thing asked for does not exist (HTTP 404), rather than failing.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            UiError::NoSuchService { .. } | UiError::NoSuchRun { .. }
        )
    }
}

/// Renders the page of service `name` in `home`, with run `run` (default: the run in
/// progress, else the last one): what `GET /services/NAME[?run=RUN]` answers.
pub fn render_service_page(
    home: &dtk_instance::home::Home,
    name: &str,
    run: Option<&str>,
) -> Result<String, UiError> {
    let svc = view::open(home, name)?;
    let v = view::service(&svc)?;
    let r = view::run(&svc, run)?;
    let mut g = view::graph(&svc)?;
    if let Some(live) = r.as_ref().filter(|r| r.live) {
        // The boxes of the run in progress show how far it got.
        let states: std::collections::HashMap<&str, &str> = live
            .timeline
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.status.as_str()))
            .collect();
        for n in &mut g.0 {
            n.state = states.get(n.id.as_str()).map(|s| (*s).to_owned());
        }
    }
    Ok(pages::service(&v, r.as_ref(), &g, run))
}
