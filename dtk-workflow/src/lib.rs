//! dtk-workflow: the planner and the executor of converge.
//!
//! - [`plan()`] (pure, no IO) turns a [`ServiceModel`](dtk_model::ServiceModel) and its
//!   [`ActualState`] into a [`Plan`]: a petgraph DAG of tasks that can be printed
//!   ([`Plan::render_tree`], [`Plan::render_dot`]) and tested without running anything.
//!   [`build_graph`] + [`render_dot`] draw the graph even when it has a cycle.
//! - [`execute`] (tokio) runs a plan against providers
//!   ([`dtk_model::provider::Provider`], by kind) and a [`CommandTransport`], with
//!   concurrency limits, retries, timeouts, cancellation and progress [`Event`]s, and
//!   returns an [`Outcome`] with the new actual state.
//! - [`plan_selected`] reshapes a converge plan for `--only`, `--exclude` and `--replace`
//!   ([`select`]); [`record`] makes records without running anything (imports, renames).
//! - A run writes a durable [`journal`] (JSON lines, group commit); after a failure or a
//!   kill, [`replay`] + [`ActualState::apply_journal`] + [`plan()`] resumes exactly: what
//!   completed is not run again.
//!
//! This crate never names a concrete provider: it sees only the `Provider` trait.
//!
//! # Examples
//!
//! `dtk_instance::converge` is the real caller: it expands a service into a model, plans,
//! executes with a journal, and saves the outcome. This crate's own tests
//! (`dtk-workflow/tests/it/`) build models by hand and run them against recording fake
//! providers: `exec.rs` for the executor, `planner.rs` for plans, `journal.rs` for crash
//! and resume. Most programs want the level above, `dtk_instance` (see `examples/embed`).
//!
//! # Resuming a run
//!
//! ```text
//! state = load actual state (as saved after the last complete run)
//! if a journal of an unfinished run exists: state.apply_journal(&replay(path)?)
//! plan = plan(&model, &state, &PlanRequest::Converge)?
//! outcome = execute(&plan, &model, &state, &ctx with journal = new path).await?
//! save outcome.state; then the journals may go
//! ```

mod exec;
mod hash;
pub mod journal;
mod plan;
pub mod record;
mod render;
mod resolve;
pub mod select;
mod state;
mod task;

pub use exec::{
    CapturedOutput, CommandTransport, Event, EventSink, ExecContext, ExecError, Limits, Outcome,
    RetryPolicy, SecretSource, TaskReport, TaskStatus, env_name, execute, execute_owned,
};
pub use hash::{desired_hash, input_digest, outputs_digest, static_inputs};
pub use journal::{
    JournalError, JournalLine, JournalState, JournalStats, JournalTask, SyncMode, parse_lines,
    replay,
};
pub use plan::{
    ActionRequest, ActionTarget, CycleEdge, ParseTargetError, Plan, PlanError, PlanGraph,
    PlanRequest, WorkflowRequest, build_graph, plan,
};
pub use record::{expected_digests, imported_record, resolved_inputs};
pub use render::render_dot;
pub use resolve::ResolveError;
pub use select::{
    LeftOut, ParseSelectorError, Replace, SelectError, SelectedPlan, Selection, Selector,
    plan_selected,
};
pub use state::{
    ActualState, AppliedComponent, ComponentStatus, DriftMark, Imported, Observation,
    RecordedAction, RecordedKind, RecordedStep, STATE_VERSION,
};
pub use task::{Edge, PlanKind, Reason, Task, TaskId, TaskOp};

#[cfg(test)]
mod tests;
