//! dtk service instances: staging an assembly into a service instance with its own git
//! repository of desired state, editing that state, and converging it.
//!
//! This crate knows neither AWS nor the terminal: providers are injected as
//! `Arc<dyn Provider>`, progress is reported through events.
//!
//! Everything the `dtk` command line does is a call here:
//!
//! - [`home::Home`] is the entry point: an open `DTK_HOME` (the module catalog, the
//!   service instances, the secret store, the registered providers). `dtk module install`
//!   is [`Home::catalog`](home::Home::catalog)`().publish(dir)`.
//! - [`Home::stage`](home::Home::stage) makes a service instance from an assembly
//!   ([`stage::StageRequest`]); [`Home::service`](home::Home::service) opens one.
//! - [`service::Service`] edits and inspects it: `set_attribute`, `diff`, `log`,
//!   `rollback`, `pull_base`, `model`, `actual_state`; and runs it (in [`converge`]):
//!   `plan`, `converge`, `exec`, `delete`, `last_run`; and watches it (in [`watch`]): the run
//!   in progress from its journal, the lock holder, past runs' reports.
//! - Day-2 operations: [`plans`] (`plan_with`: a read-only plan with `--only`,
//!   `--exclude`, `--replace`, saved and run exactly with `converge_plan`), [`refresh`]
//!   (read the world, record drift), [`import`] (bind a resource that exists), [`mv`]
//!   (rename a node or component with its actual state), [`runs`] (`run_history`,
//!   `run_report`, `outputs`).
//! - [`providers`] holds the standard set of target providers (`local` from
//!   `dtk-target-local`, `ssh` from `dtk-target-ssh`); [`Home::open`](home::Home::open)
//!   registers it, [`Home::with_providers`](home::Home::with_providers) takes your own
//!   registry, and [`Home::register_provider`](home::Home::register_provider) adds one
//!   provider (AWS, your own) with its bundled modules.
//!
//! # Example
//!
//! Stage → set an attribute → converge → status, as `examples/embed` in the repository
//! does in full (with progress events and a delete):
//!
//! ```no_run
//! use dtk_instance::converge::RunOptions;
//! use dtk_instance::home::Home;
//! use dtk_instance::stage::StageRequest;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let home = Home::open(std::path::Path::new("/tmp/dtk-home"))?;
//! let published = home.catalog().publish(std::path::Path::new("examples/modules/webapp"))?;
//! home.stage(&StageRequest {
//!     module: published.module,
//!     version: None,               // the latest published version
//!     assembly: "two_tier".to_owned(),
//!     name: "shop".to_owned(),
//!     target: None,                // the default target: the built-in `local`
//!     base: false,
//! })?;
//! let shop = home.service("shop")?;
//! shop.set_attribute("db/backend/message", "hello again")?;
//! let report = shop.converge(&RunOptions::default()).await?;
//! assert!(report.is_success(), "{}", report.tree);
//! for (component, outputs) in shop.actual_values()? {
//!     println!("{component}: {outputs:?}");
//! }
//! # Ok(()) }
//! ```

pub mod attributes;
pub mod content;
pub mod converge;
pub mod error;
mod guard;
pub mod history;
pub mod home;
pub mod import;
pub mod layout;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod mv;
pub mod outcome;
pub mod plans;
pub mod providers;
pub mod pull;
pub mod refresh;
pub mod remote;
pub mod repo;
pub mod runs;
pub mod secrets;
pub mod service;
pub mod stage;
pub mod status;
pub mod team;
pub mod violations;
pub mod watch;

pub use error::InstanceError;
