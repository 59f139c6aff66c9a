//! `dtk service import NAME REF ID`: binds a resource that exists already (an EC2
//! instance, a VPC, a subnet, a security group, an SSH host) to a component of the
//! desired state, instead of creating one.
//!
//! The component's provider reads the resource ([`Provider::import`]) and compares it
//! with the component's desired inputs; it is recorded in actual state as applied, with
//! the differences as drift, so the next plan shows them and the next converge repairs
//! them (never creates the resource again). Without `adopt` dtk never deletes it: a
//! delete forgets it and leaves it as it is; with `adopt` it is dtk's, and deleted like
//! what dtk made.
//!
//! [`Provider::import`]: dtk_model::Provider::import

use std::time::Instant;

use dtk_model::module::ActionKind;
use dtk_model::provider::{Change, Observed, ResourceRequest, Secrets};
use dtk_model::{Attributes, ProviderError};
use dtk_workflow::{DriftMark, Imported, Selector};
use serde::Serialize;

use crate::converge::{RunOptions, RunReport, TaskLine, redact_all, run_id};
use crate::error::{ImportError, InstanceError};
use crate::runs::resolve_ids;
use crate::service::{Service, now_secs};

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The service.
    pub service: String,
    /// The component instance the resource is bound to.
    pub component: String,
    /// The provider's id of the resource.
    pub id: String,
    /// Whether dtk owns it now (deleting the component deletes it).
    pub adopt: bool,
    /// `matches` (the resource is as the desired state asks) or `drifted` (the next
    /// converge repairs what differs).
    pub status: String,
    /// What differs from the desired state.
    pub changes: Vec<Change>,
    /// The outputs recorded.
    pub outputs: Attributes,
    /// The run's id (its record is in `dtk service runs`).
    pub run: String,
    /// With a team remote: whether the new actual state and the record reached it
    /// (absent without a remote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::team::RemoteReport>,
}

impl Service {
    /// Binds the existing resource `id` to the component `reference` names (exactly one,
    /// made by a provider action, not recorded yet): see the [module documentation](self).
    /// Uses the work tree's desired state.
    pub async fn import(
        &self,
        reference: &str,
        id: &str,
        adopt: bool,
        opts: &RunOptions,
    ) -> Result<ImportReport, InstanceError> {
        let _lock = self.lock("import")?;
        let started = Instant::now();
        let started_at = now_secs();
        let id = id.trim();
        if id.is_empty() {
            return Err(import_error(ImportError::EmptyId));
        }
        let model = self.model()?;
        // With a remote, import writes the shared actual state: it holds the lock, like
        // converge, from the remote's state (crate::team).
        let mut team = self.team_begin("import", opts.lease)?;
        if let Some(t) = team.as_mut() {
            t.take_fresh(self, false)?;
            t.start_lease_keeper(self, &self.journal_dir(), &opts.cancel)?;
        }
        let (mut state, old_journals, _) = self.recovered_state()?;
        let sel: Selector = reference.parse()?;
        let ids: Vec<_> = resolve_ids(&model, &state, &[sel])?
            .into_iter()
            .filter(|i| model.component(i).is_some())
            .collect();
        let c = match ids.as_slice() {
            [one] => model.component(one).ok_or_else(|| {
                import_error(ImportError::NotDesired {
                    reference: reference.to_owned(),
                    service: None,
                })
            })?,
            [] => {
                return Err(import_error(ImportError::NotDesired {
                    reference: reference.to_owned(),
                    service: Some(self.name().to_owned()),
                }));
            }
            many => {
                return Err(import_error(ImportError::Ambiguous {
                    reference: reference.to_owned(),
                    ids: many.iter().map(ToString::to_string).collect(),
                }));
            }
        };
        let Some(ActionKind::Provider { kind, resource }) =
            c.def.actions.get("create").map(|a| &a.kind)
        else {
            return Err(import_error(ImportError::NotAResource {
                component: c.id.to_string(),
            }));
        };
        if let Some(rec) = state.get(&c.id)
            && rec.is_applied()
        {
            return Err(import_error(ImportError::AlreadyDeployed {
                component: c.id.to_string(),
                imported_from: rec.imported.as_ref().map(|i| i.id.clone()),
            }));
        }
        let providers = self.home().providers();
        let Some(provider) = providers.get(kind).cloned() else {
            return Err(import_error(ImportError::NoProvider {
                kind: kind.clone(),
                resource: resource.clone(),
                component: c.id.to_string(),
            }));
        };
        let inputs = dtk_workflow::resolved_inputs(c, &state).map_err(|why| {
            import_error(ImportError::Inputs {
                component: c.id.to_string(),
                why,
                hint: true,
            })
        })?;
        let store = self.secrets()?;
        let secrets = Secrets(
            c.secret_inputs
                .iter()
                .filter_map(|n| Some((n.clone(), store.effective(&c.id, n)?.clone())))
                .collect(),
        );
        let node = c.node.clone().or_else(|| {
            model
                .nodes
                .iter()
                .find(|n| n.realized_by.as_ref() == Some(&c.id))
                .map(|n| n.name.clone())
        });
        let key = format!("{}/{}/import", self.name(), c.id);
        let req = ResourceRequest {
            service: self.name(),
            component: c.id.as_str(),
            node: node.as_deref(),
            resource,
            idempotency_key: &key,
            inputs: &inputs,
            secrets: &secrets,
            prior: None,
            service_nodes: &model.nodes,
            cancel: &opts.cancel,
        };
        let observed = provider
            .import(&req, id, adopt)
            .await
            .map_err(|e| match e {
                ProviderError::Unsupported { .. } | ProviderError::InvalidInput { .. } => {
                    import_error(ImportError::Unsupported {
                        id: id.to_owned(),
                        component: c.id.to_string(),
                        detail: redact_all(&e.to_string(), &secrets),
                    })
                }
                e => import_error(ImportError::Failed {
                    id: id.to_owned(),
                    component: c.id.to_string(),
                    detail: redact_all(&chain(&e), &secrets),
                }),
            })?;
        let secret = |k: &str| c.def.attributes.get(k).is_some_and(|a| a.secret);
        let (outputs, changes) = match observed {
            Observed::Present(o) => (o, Vec::new()),
            Observed::Drifted { outputs, changes } => (outputs, changes),
            Observed::Missing => {
                return Err(import_error(ImportError::Missing {
                    kind: kind.clone(),
                    resource: resource.clone(),
                    id: id.to_owned(),
                    component: c.id.to_string(),
                }));
            }
            Observed::Unknown => {
                return Err(import_error(ImportError::Unknown {
                    kind: kind.clone(),
                    id: id.to_owned(),
                }));
            }
        };
        let outputs: Attributes = outputs.into_iter().filter(|(k, _)| !secret(k)).collect();
        let drift = (!changes.is_empty()).then(|| DriftMark::Changed {
            observed: outputs.clone(),
            changes: changes.clone(),
        });
        let rec = dtk_workflow::imported_record(
            &model,
            c,
            &state,
            outputs.clone(),
            Imported {
                id: id.to_owned(),
                adopt,
            },
            drift,
        )
        .map_err(|why| {
            import_error(ImportError::Inputs {
                component: c.id.to_string(),
                why,
                hint: false,
            })
        })?;
        state.components.insert(c.id.clone(), rec);
        if let Some(t) = team.as_mut() {
            t.stop_keeper_holding(self.name(), "import")?;
        }
        // Actual state first, durably; only then may the journals go.
        self.save_actual_state(&state)?;
        crate::converge::remove_journals(&old_journals)?;
        let status = if changes.is_empty() {
            "matches"
        } else {
            "drifted"
        };
        let run = run_id();
        let detail = format!(
            "imported `{id}`{}: {status}{}",
            if adopt { " (adopted)" } else { "" },
            if changes.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    changes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(&RunReport {
            kind: crate::outcome::RunKind::Import,
            run: run.clone(),
            service: self.name().to_owned(),
            status: crate::outcome::RunStatus::Succeeded,
            commit: Some(self.repo().head()?.to_string()),
            started_at,
            duration_ms,
            tasks: vec![TaskLine {
                id: format!("{}.import", c.id),
                component: c.id.to_string(),
                action: "import".to_owned(),
                node: node.clone(),
                status: crate::outcome::TaskOutcome::Done,
                detail: Some(detail.clone()),
                duration_ms,
                attempts: 1,
                log: None,
                started_ms: None,
                after: Vec::new(),
            }],
            tree: format!("import {}: {} {detail}\n", self.name(), c.id),
            logs: self.private_dir().join("logs").join(&run),
            resumed_from_journal: 0,
            who: opts.who.clone(),
            remote: None,
            left_out: Vec::new(),
        })?;
        Ok(ImportReport {
            service: self.name().to_owned(),
            component: c.id.to_string(),
            id: id.to_owned(),
            adopt,
            status: status.to_owned(),
            changes,
            outputs,
            run,
            remote: team.map(|t| t.finish(self)),
        })
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An import refused or failed.
fn import_error(e: ImportError) -> InstanceError {
    InstanceError::Import(Box::new(e))
}
