//! Resolving a component's inputs from its producers, shared by the planner (against
//! actual state) and the executor (against this run's results).

use dtk_model::instance::{ComponentId, ComponentInstance, LinkSource};
use dtk_model::value::Attributes;
use thiserror::Error;

use crate::hash::lookup_path;

/// The error returned when a linked input cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    /// The producer has never been applied (and did not run in this converge).
    #[error(
        "input `{input}` of `{component}` is linked to `{producer}`, which has not been applied"
    )]
    ProducerNotApplied {
        /// The consumer.
        component: ComponentId,
        /// The consumer's input.
        input: String,
        /// The producer.
        producer: ComponentId,
    },
    /// The producer has no such attribute among its outputs or inputs.
    #[error(
        "input `{input}` of `{component}` is linked to `{producer}.{path}`, which has no value"
    )]
    NoSuchAttribute {
        /// The consumer.
        component: ComponentId,
        /// The consumer's input.
        input: String,
        /// The producer.
        producer: ComponentId,
        /// The producer's attribute path, dotted.
        path: String,
    },
}

/// A producer's values as the consumer sees them: outputs first, then inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerValues<'a> {
    pub outputs: &'a Attributes,
    pub inputs: &'a Attributes,
}

/// Resolves `component`'s inputs: `static_inputs` (its own and external links' values)
/// plus every link within the service, looked up with `producer`. Linked inputs that
/// are secret go to `secrets` instead (when given) and never into the result.
pub(crate) fn resolve_inputs<'a>(
    component: &ComponentInstance,
    static_inputs: &Attributes,
    mut producer: impl FnMut(&ComponentId) -> Option<ProducerValues<'a>>,
    mut secrets: Option<&mut Attributes>,
) -> Result<Attributes, ResolveError> {
    let mut inputs = static_inputs.clone();
    for link in &component.links {
        let LinkSource::Component(from) = &link.from else {
            continue;
        };
        let values = producer(from);
        for (path, to) in &link.mappings {
            let Some(values) = values else {
                return Err(ResolveError::ProducerNotApplied {
                    component: component.id.clone(),
                    input: to.clone(),
                    producer: from.clone(),
                });
            };
            let v = lookup_path(values.outputs, path)
                .or_else(|| lookup_path(values.inputs, path))
                .ok_or_else(|| ResolveError::NoSuchAttribute {
                    component: component.id.clone(),
                    input: to.clone(),
                    producer: from.clone(),
                    path: path.join("."),
                })?;
            if component.secret_inputs.iter().any(|s| s == to) {
                if let Some(s) = secrets.as_deref_mut() {
                    s.insert(to.clone(), v.clone());
                }
            } else {
                inputs.insert(to.clone(), v.clone());
            }
        }
    }
    Ok(inputs)
}

/// The values of `component`'s links within the service (secret inputs excepted), by
/// input name, looked up with `producer`: what [`crate::input_digest`] covers.
pub(crate) fn linked_values<'a>(
    component: &'a ComponentInstance,
    mut producer: impl FnMut(&ComponentId) -> Option<ProducerValues<'a>>,
) -> Vec<(&'a str, Option<&'a dtk_model::value::Value>)> {
    let mut out = Vec::new();
    for link in &component.links {
        let LinkSource::Component(from) = &link.from else {
            continue;
        };
        let values = producer(from);
        for (path, to) in &link.mappings {
            if component.secret_inputs.iter().any(|s| s == to) {
                continue;
            }
            let v = values
                .and_then(|p| lookup_path(p.outputs, path).or_else(|| lookup_path(p.inputs, path)));
            out.push((to.as_str(), v));
        }
    }
    out
}
