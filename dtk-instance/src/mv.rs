//! `dtk service mv NAME FROM TO`: renames a node (`web` → `frontend`, a node group with
//! its members) or a component instance (`web/app[a]` → `web/app[b]`, `db[main]` →
//! `db[primary]`) in `dtk.service.yaml`, and moves what is recorded of it (actual state,
//! secrets) to the new ids, so that the next converge runs nothing for it.
//!
//! The links, and the workflow steps, that name the old name follow. Records that were
//! up to date stay up to date: their desired hash and input digest are carried over to
//! what the planner computes for the new ids; a record that had something to do keeps it.
//!
//! Order, for a crash at any point: the work tree's file is written (uncommitted), then
//! actual state and secrets, then the edit is committed. Killed before the state is
//! written, the work tree holds the rename (converge would recreate); after it, the next
//! converge commits the edit and finds nothing to do.

use std::collections::BTreeMap;

use dtk_model::ident::{ComponentRef, NodeComponentRef};
use dtk_model::module::{ComponentDecl, LinkDecl, NodeSelector, Subtask};
use dtk_model::service::{SERVICE_FILE, ServiceDoc};
use dtk_model::{ComponentId, ServiceModel};
use serde::Serialize;

use crate::error::{Existing, InstanceError, RenameProblem};
use crate::repo::write_file_atomic;
use crate::service::Service;

/// What a rename did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    /// The service.
    pub service: String,
    /// `node` or `component`.
    pub kind: String,
    /// The old name, as given.
    pub from: String,
    /// The new name, as given.
    pub to: String,
    /// The component ids renamed in actual state, old → new.
    pub moved: Vec<(String, String)>,
    /// The commit of the edit.
    pub commit: String,
}

/// What is renamed in the document.
enum Rename {
    Node {
        from: String,
        to: String,
    },
    Component {
        from: NodeComponentRef,
        to: NodeComponentRef,
    },
}

fn bad(from: &str, to: &str, problem: RenameProblem) -> InstanceError {
    InstanceError::BadRename {
        from: from.to_owned(),
        to: to.to_owned(),
        problem,
    }
}

fn same_ref(a: &ComponentRef, b: &ComponentRef) -> bool {
    a.name == b.name && a.instance == b.instance && (a.module.is_none() || a.module == b.module)
}

impl Rename {
    fn parse(doc: &ServiceDoc, from: &str, to: &str) -> Result<Rename, InstanceError> {
        let is_node = !from.contains('/') && doc.nodes.iter().any(|n| n.name == from);
        if is_node {
            dtk_model::ident::check_name("node name", to)?;
            if doc.nodes.iter().any(|n| n.name == to) {
                return Err(InstanceError::AlreadyInService {
                    name: to.to_owned(),
                    what: Existing::Node,
                });
            }
            return Ok(Rename::Node {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        let parse = |s: &str| -> Result<NodeComponentRef, InstanceError> {
            s.parse().map_err(InstanceError::InvalidName)
        };
        let (f, t) = (parse(from)?, parse(to)?);
        if f.node != t.node {
            return Err(bad(from, to, RenameProblem::OtherNode));
        }
        if f.component.name != t.component.name
            || (t.component.module.is_some() && t.component.module != f.component.module)
        {
            return Err(bad(from, to, RenameProblem::OtherComponent));
        }
        if f.component.instance == t.component.instance {
            return Err(bad(from, to, RenameProblem::Same));
        }
        Ok(Rename::Component { from: f, to: t })
    }

    fn rename_node(&self, n: &mut String) {
        if let Rename::Node { from, to } = self
            && n == from
        {
            *n = to.clone();
        }
    }

    /// Renames what `r` (on `node`) names.
    fn rename_ref(&self, node: Option<&str>, r: &mut ComponentRef) {
        if let Rename::Component { from, to } = self
            && (from.node.is_none() || node.is_none() || from.node.as_deref() == node)
            && same_ref(&from.component, r)
        {
            r.instance = to.component.instance.clone();
        }
    }

    fn rename_link(&self, l: &mut LinkDecl) {
        if l.service.is_some() {
            return;
        }
        if let Some(n) = &mut l.target.node {
            self.rename_node(n);
        }
        let node = l.target.node.clone();
        self.rename_ref(node.as_deref(), &mut l.target.component);
    }

    fn rename_steps(&self, steps: &mut [Subtask], node: Option<&str>) {
        for st in steps {
            match &mut st.node {
                Some(NodeSelector::Node(n)) | Some(NodeSelector::Group(n)) => self.rename_node(n),
                None => {}
            }
            let here: Option<String> = match &st.node {
                Some(NodeSelector::Node(n)) | Some(NodeSelector::Group(n)) => Some(n.clone()),
                None => node.map(str::to_owned),
            };
            for c in &mut st.components {
                self.rename_ref(here.as_deref(), c);
            }
            for a in &mut st.actions {
                if let Some(n) = &mut a.component.node {
                    self.rename_node(n);
                }
                let n = a.component.node.clone().or_else(|| here.clone());
                self.rename_ref(n.as_deref(), &mut a.component.component);
            }
            self.rename_steps(&mut st.subtasks, here.as_deref());
        }
    }

    fn apply(&self, doc: &mut ServiceDoc) -> Result<(), InstanceError> {
        match self {
            Rename::Node { from, .. } => {
                let Some(n) = doc.nodes.iter_mut().find(|n| &n.name == from) else {
                    return Err(InstanceError::NoSuchNode {
                        node: from.clone(),
                        known: String::new(),
                    });
                };
                self.rename_node(&mut n.name);
            }
            Rename::Component { from, to } => {
                let list: &mut Vec<ComponentDecl> = match &from.node {
                    Some(n) => match doc.nodes.iter_mut().find(|x| &x.name == n) {
                        Some(node) => &mut node.components,
                        None => {
                            return Err(InstanceError::NoSuchNode {
                                node: n.clone(),
                                known: String::new(),
                            });
                        }
                    },
                    None => &mut doc.components,
                };
                if list.iter().any(|c| same_ref(&to.component, &c.reference)) {
                    return Err(InstanceError::AlreadyInService {
                        name: to.to_string(),
                        what: Existing::Renamed,
                    });
                }
                let Some(decl) = list
                    .iter_mut()
                    .find(|c| same_ref(&from.component, &c.reference))
                else {
                    return Err(InstanceError::NoSuchComponent {
                        path: from.to_string(),
                    });
                };
                decl.reference.instance = to.component.instance.clone();
            }
        }
        for n in &mut doc.nodes {
            for l in &mut n.links {
                self.rename_link(l);
            }
            for c in &mut n.components {
                for l in &mut c.links {
                    self.rename_link(l);
                }
            }
        }
        for c in &mut doc.components {
            for l in &mut c.links {
                self.rename_link(l);
            }
        }
        for wf in doc.workflows.values_mut() {
            self.rename_steps(&mut wf.subtasks, None);
        }
        Ok(())
    }

    /// The node name `n` (a member `g:k` included) after the rename.
    fn node_after(&self, n: &str) -> Option<String> {
        let Rename::Node { from, to } = self else {
            return None;
        };
        if n == from {
            return Some(to.clone());
        }
        let (g, k) = n.rsplit_once(':')?;
        (g == from).then(|| format!("{to}:{k}"))
    }
}

impl Service {
    /// Renames a node or a component instance: see the [module documentation](self).
    /// Refused when the work tree has uncommitted edits.
    pub fn mv(&self, from: &str, to: &str) -> Result<MoveReport, InstanceError> {
        let _lock = self.lock("mv")?;
        self.refuse_uncommitted("mv")?;
        let (mut doc, modules) = self.committed_doc_and_modules()?;
        let old_model = self.expand_doc(&doc, &modules, SERVICE_FILE)?;
        let rename = Rename::parse(&doc, from.trim(), to.trim())?;
        rename.apply(&mut doc)?;
        let text = dtk_model::dsl::write_service(&doc);
        let reread = self.parse_doc(&text, SERVICE_FILE)?;
        let plain = self.expand_doc(&reread, &modules, SERVICE_FILE)?;
        let map = id_map(&old_model, &plain)
            .ok_or_else(|| bad(from, to, RenameProblem::ChangesComponents))?;
        if map.is_empty() {
            return Err(bad(from, to, RenameProblem::NothingNamed));
        }
        // Secrets follow (in memory for now): members' and groups' keys alike.
        let mut secrets = self.secrets()?;
        let mut key_map: BTreeMap<String, String> = map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        for (a, b) in &map {
            if let (Some((an, ar)), Some((bn, br))) =
                (a.as_str().split_once('/'), b.as_str().split_once('/'))
                && let (Some((ag, _)), Some((bg, _))) = (an.rsplit_once(':'), bn.rsplit_once(':'))
            {
                key_map.insert(format!("{ag}/{ar}"), format!("{bg}/{br}"));
            }
        }
        let secrets_moved = secrets.rename_components(|k| key_map.get(k).cloned());
        let new_model = self.expand_doc_with(&reread, &modules, SERVICE_FILE, Some(&secrets))?;

        let (mut state, old_journals, _) = self.recovered_state()?;
        // What was up to date before, by old id.
        let mut was: BTreeMap<ComponentId, (bool, bool)> = BTreeMap::new();
        for c in &old_model.components {
            if let Some(rec) = state.get(&c.id) {
                let (d, i) = dtk_workflow::expected_digests(c, &state);
                was.insert(c.id.clone(), (rec.desired_hash == d, rec.input_digest == i));
            }
        }
        let mut moved = Vec::new();
        let old_records = std::mem::take(&mut state.components);
        for (id, mut rec) in old_records {
            let new_id = map.get(&id).cloned().unwrap_or_else(|| id.clone());
            if new_id != id {
                moved.push((id.to_string(), new_id.to_string()));
            }
            for d in &mut rec.depends_on {
                if let Some(n) = map.get(d) {
                    *d = n.clone();
                }
            }
            if let Some(node) = &rec.node
                && let Some(n) = rename.node_after(node)
            {
                rec.node = Some(n);
            }
            state.components.insert(new_id, rec);
        }
        let back: BTreeMap<&ComponentId, &ComponentId> = map.iter().map(|(a, b)| (b, a)).collect();
        for c in &new_model.components {
            let old_id = back.get(&c.id).copied().unwrap_or(&c.id);
            let Some(&(desired_ok, inputs_ok)) = was.get(old_id) else {
                continue;
            };
            let (d, i) = dtk_workflow::expected_digests(c, &state);
            if let Some(rec) = state.components.get_mut(&c.id) {
                if desired_ok && rec.is_applied() {
                    rec.desired_hash = d;
                }
                if inputs_ok && rec.is_applied() {
                    rec.input_digest = i;
                }
            }
        }
        write_file_atomic(&self.dir().join(SERVICE_FILE), text.as_bytes(), false)?;
        self.save_actual_state(&state)?;
        if secrets_moved {
            secrets.save()?;
        }
        crate::converge::remove_journals(&old_journals)?;
        let commit = self
            .commit_edits(&format!("mv {from} {to}"))?
            .map(|c| c.to_string())
            .unwrap_or_default();
        moved.sort();
        Ok(MoveReport {
            service: self.name().to_owned(),
            kind: match rename {
                Rename::Node { .. } => "node",
                Rename::Component { .. } => "component",
            }
            .to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            moved,
            commit,
        })
    }
}

/// Old id → new id of every component whose id the rename changed: the expansion keeps
/// declaration order, so the models pair up by position. `None` when the rename changed
/// how many components there are.
fn id_map(old: &ServiceModel, new: &ServiceModel) -> Option<BTreeMap<ComponentId, ComponentId>> {
    if old.components.len() != new.components.len() {
        return None;
    }
    Some(
        old.components
            .iter()
            .zip(&new.components)
            .filter(|(a, b)| a.id != b.id)
            .map(|(a, b)| (a.id.clone(), b.id.clone()))
            .collect(),
    )
}
