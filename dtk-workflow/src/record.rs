//! Records made without running an action: an import binds an existing resource to a
//! component, a rename carries records over to new ids. What the planner will compare
//! such a record with is computed here exactly as the planner computes it, so that a
//! record made here is up to date (or drifted, when said so) at the next plan.

use dtk_model::instance::{ComponentId, ComponentInstance, ServiceModel};
use dtk_model::value::Attributes;

use crate::hash::{desired_hash, input_digest, outputs_digest, static_inputs};
use crate::plan::dependency_ids;
use crate::resolve::{ProducerValues, ResolveError, linked_values, resolve_inputs};
use crate::state::{
    ActualState, AppliedComponent, ComponentStatus, DriftMark, Imported, RecordedAction,
};

/// What the planner compares with `c`'s record: its desired hash and its input digest
/// (from the outputs recorded in `actual` for what it depends on).
pub fn expected_digests(c: &ComponentInstance, actual: &ActualState) -> (String, String) {
    let desired = desired_hash(c, &static_inputs(c));
    let linked = linked_values(c, |p| {
        actual.get(p).map(|r| ProducerValues {
            outputs: &r.outputs,
            inputs: &r.inputs,
        })
    });
    let digest = input_digest(
        dependency_ids(c).map(|d| (d, actual.get(d).map(|r| r.outputs_digest.as_str()))),
        linked.iter().map(|(k, v)| (*k, *v)),
    );
    (desired, digest)
}

/// The inputs `c` gets from `actual` now: its own values and every link resolved (secret
/// linked inputs left out).
pub fn resolved_inputs(
    c: &ComponentInstance,
    actual: &ActualState,
) -> Result<Attributes, ResolveError> {
    resolve_inputs(
        c,
        &static_inputs(c),
        |p| {
            actual.get(p).map(|r| ProducerValues {
                outputs: &r.outputs,
                inputs: &r.inputs,
            })
        },
        None,
    )
}

/// The record of component `c` of `model` bound to a resource that exists already
/// (`dtk service import`): applied with its desired state, with `outputs` as read (pass
/// them without the component's secret ones), and `drift` when the resource differs
/// from what the inputs ask (the next converge then updates it).
pub fn imported_record(
    model: &ServiceModel,
    c: &ComponentInstance,
    actual: &ActualState,
    outputs: Attributes,
    imported: Imported,
    drift: Option<DriftMark>,
) -> Result<AppliedComponent, ResolveError> {
    let inputs = resolved_inputs(c, actual)?;
    let (desired_hash, input_digest) = expected_digests(c, actual);
    let node = c.node.clone().or_else(|| {
        model
            .nodes
            .iter()
            .find(|n| n.realized_by.as_ref() == Some(&c.id))
            .map(|n| n.name.clone())
    });
    let create = c
        .def
        .actions
        .get("create")
        .and_then(RecordedAction::from_def);
    Ok(AppliedComponent {
        status: ComponentStatus::Applied,
        desired_hash,
        input_digest,
        outputs_digest: outputs_digest(&outputs),
        inputs,
        outputs,
        node,
        realizes_node: c.realizes_node,
        provider: create.and_then(|a| a.provider_kind().map(str::to_owned)),
        depends_on: dependency_ids(c).cloned().collect::<Vec<ComponentId>>(),
        delete: c
            .def
            .actions
            .get("delete")
            .and_then(RecordedAction::from_def)
            .map(std::sync::Arc::new),
        secret_inputs: c.secret_inputs.clone(),
        drift,
        imported: Some(imported),
        module: Some(c.module.to_string()),
    })
}
