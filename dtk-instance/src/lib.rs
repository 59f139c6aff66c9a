//! dtk service instances: staging an assembly into a service instance with its own git
//! repository of desired state, editing that state, and converging it.
//!
//! This crate knows neither AWS nor the terminal: providers are injected as
//! `Arc<dyn Provider>`, progress is reported through events.

pub mod converge;
pub mod error;
pub mod home;
pub mod local;
pub mod lock;
pub mod repo;
pub mod secrets;
pub mod service;
pub mod ssh_target;
pub mod stage;
pub mod transport;

pub use error::InstanceError;
