//! Clearing source locations, for comparing documents by content (round trips, "did the
//! user change anything").

use crate::diag::Location;
use crate::module::{
    Assembly, AttrValue, ComponentDecl, ComponentDef, LinkDecl, Module, NodeDecl, Subtask, Workflow,
};
use crate::service::ServiceDoc;

impl Module {
    /// Sets every source location in the module to the default, so that two modules
    /// read from differently laid out text compare equal when their content is.
    pub fn clear_locations(&mut self) {
        for d in &mut self.dependencies {
            d.at = Location::default();
        }
        self.components.values_mut().for_each(clear_def);
        self.assemblies.values_mut().for_each(clear_assembly);
        self.workflows.values_mut().for_each(clear_workflow);
    }
}

impl ServiceDoc {
    /// Sets every source location in the document to the default (see
    /// [`Module::clear_locations`]).
    pub fn clear_locations(&mut self) {
        self.at = Location::default();
        self.nodes.iter_mut().for_each(clear_node);
        self.components.iter_mut().for_each(clear_decl);
        self.workflows.values_mut().for_each(clear_workflow);
    }
}

fn clear_def(def: &mut ComponentDef) {
    def.at = Location::default();
    for a in def.attributes.values_mut() {
        a.at = Location::default();
    }
    for d in &mut def.dependencies {
        d.at = Location::default();
    }
    for l in &mut def.link_defs {
        l.at = Location::default();
        for m in &mut l.attribute_mappings {
            m.at = Location::default();
        }
    }
    for a in def.actions.values_mut() {
        a.at = Location::default();
    }
}

fn clear_assembly(a: &mut Assembly) {
    a.at = Location::default();
    a.nodes.iter_mut().for_each(clear_node);
    a.components.iter_mut().for_each(clear_decl);
    a.workflows.values_mut().for_each(clear_workflow);
}

fn clear_values(attrs: &mut std::collections::BTreeMap<String, AttrValue>) {
    for v in attrs.values_mut() {
        v.at = Location::default();
    }
}

fn clear_links(links: &mut [LinkDecl]) {
    for l in links {
        l.at = Location::default();
    }
}

fn clear_node(n: &mut NodeDecl) {
    n.at = Location::default();
    clear_values(&mut n.attributes);
    clear_links(&mut n.links);
    n.components.iter_mut().for_each(clear_decl);
}

fn clear_decl(c: &mut ComponentDecl) {
    c.at = Location::default();
    clear_values(&mut c.attributes);
    clear_links(&mut c.links);
}

fn clear_workflow(w: &mut Workflow) {
    w.at = Location::default();
    w.subtasks.iter_mut().for_each(clear_subtask);
}

fn clear_subtask(s: &mut Subtask) {
    s.at = Location::default();
    for a in &mut s.actions {
        a.at = Location::default();
    }
    s.subtasks.iter_mut().for_each(clear_subtask);
}
