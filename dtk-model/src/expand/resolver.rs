//! Resolving component references against the pinned modules, and placing each
//! component instance with its input values.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::diag::{Diagnostics, Location, did_you_mean};
use crate::expand::inputs::ModuleSet;
use crate::ident::{ComponentRef, ModuleId};
use crate::instance::ComponentId;
use crate::module::{ComponentDecl, ComponentDef, LinkDecl, Module};
use crate::value::Attributes;

/// A component instance placed in the service, before its dependencies are resolved.
pub(crate) struct Placed<'a> {
    pub(crate) id: ComponentId,
    pub(crate) node: Option<String>,
    pub(crate) module: ModuleId,
    pub(crate) def: Arc<ComponentDef>,
    pub(crate) reference: ComponentRef,
    pub(crate) decl_links: &'a [LinkDecl],
    pub(crate) at: Location,
    pub(crate) key: String,
    pub(crate) realizes_node: bool,
}

pub(crate) fn article(ty: &str) -> String {
    match ty.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {ty}"),
        _ => format!("a {ty}"),
    }
}

pub(crate) struct Resolver<'a> {
    pub(crate) modules: &'a ModuleSet,
    pub(crate) root: Option<&'a Module>,
    /// One shared copy of each definition, however many instances use it: the model
    /// stays small, and per-definition caches downstream (the executor converts a
    /// definition's actions once) see one pointer per definition.
    pub(crate) defs: RefCell<HashMap<usize, Arc<ComponentDef>>>,
}

impl Resolver<'_> {
    /// The shared copy of definition `name` (`def`) of module `m`.
    pub(crate) fn shared(&self, def: &ComponentDef) -> Arc<ComponentDef> {
        // Keyed by the definition's address in the module set, which outlives the
        // resolver: one lookup without building an owned key per component placed.
        let key = std::ptr::from_ref(def) as usize;
        self.defs
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| Arc::new(def.clone()))
            .clone()
    }

    /// Finds the definition `r` names, seen from module `from` (or the service).
    pub(crate) fn component(
        &self,
        r: &ComponentRef,
        from: Option<&ModuleId>,
    ) -> Result<(ModuleId, Arc<ComponentDef>), String> {
        let found = |m: &Module| m.component(&r.name).map(|d| (m.id.clone(), self.shared(d)));
        if let Some(mname) = &r.module {
            let ms = self.modules.by_name(mname);
            return match ms.as_slice() {
                [] => Err(format!(
                    "no module named `{mname}` among the service's modules ({})",
                    self.modules
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                [m] => found(m).ok_or_else(|| {
                    let hint = did_you_mean(&r.name, m.components.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    format!("module `{}` has no component `{}`{hint}", m.id, r.name)
                }),
                several => Err(format!(
                    "`{mname}` is ambiguous: {}",
                    several
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
        if let Some(m) = from.and_then(|id| self.modules.get(id))
            && let Some(f) = found(m)
        {
            return Ok(f);
        }
        if let Some(m) = self.root
            && let Some(f) = found(m)
        {
            return Ok(f);
        }
        let all: Vec<_> = self.modules.iter().filter_map(|m| found(m)).collect();
        match all.len() {
            1 => Ok(all.into_iter().next().expect("one element")),
            0 => {
                let names: Vec<&str> = self
                    .modules
                    .iter()
                    .flat_map(|m| m.components.keys().map(String::as_str))
                    .collect();
                let hint = did_you_mean(&r.name, names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                Err(format!(
                    "no module of the service defines component `{}`{hint}",
                    r.name
                ))
            }
            _ => Err(format!(
                "component `{}` is defined in several modules ({}); write `module::{}`",
                r.name,
                all.iter()
                    .map(|(m, _)| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.name
            )),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn place<'a>(
    resolver: &Resolver<'_>,
    diags: &mut Diagnostics,
    placed: &mut Vec<Placed<'a>>,
    inputs_of: &mut Vec<(Attributes, Vec<String>)>,
    seen_ids: &mut HashSet<ComponentId>,
    node: Option<&str>,
    decl: &'a ComponentDecl,
    key: String,
) {
    let (module, def) = match resolver.component(&decl.reference, None) {
        Ok(x) => x,
        Err(e) => {
            diags.error(decl.at, &key, e);
            return;
        }
    };
    let id = ComponentId::on(node, &decl.reference);
    if !seen_ids.insert(id.clone()) {
        diags.error(decl.at, &key, format!("component `{id}` is declared twice"));
        return;
    }
    let mut inputs = Attributes::new();
    let mut secrets = Vec::new();
    for (name, a) in &def.attributes {
        if a.secret {
            secrets.push(name.clone());
        } else if let Some(d) = &a.default {
            inputs.insert(name.clone(), d.clone());
        }
    }
    for (name, v) in &decl.attributes {
        let akey = || format!("{key}.attributes.{name}");
        match def.attributes.get(name) {
            None => {
                let hint = did_you_mean(name, def.attributes.keys().map(String::as_str));
                match hint {
                    Some(h) => diags.error_help(
                        v.at,
                        &akey(),
                        format!("component `{}` has no attribute `{name}`", decl.reference),
                        format!("did you mean `{h}`?"),
                    ),
                    None => diags.error(
                        v.at,
                        &akey(),
                        format!("component `{}` has no attribute `{name}`", decl.reference),
                    ),
                }
            }
            Some(a) if a.constant && !v.value.is_null() => diags.error_help(
                v.at,
                &akey(),
                format!(
                    "attribute `{name}` of `{}` is constant (`constant: true`) and cannot be set",
                    decl.reference
                ),
                "remove the value: the module fixes it",
            ),
            Some(a) if a.secret && !v.value.is_null() => diags.error(
                v.at,
                &akey(),
                format!("`{name}` is a secret attribute; set it with `dtk service set-attribute`, which keeps it out of the repository"),
            ),
            Some(a) if !a.ty.accepts(&v.value) => diags.error(
                v.at,
                &akey(),
                format!(
                    "`{name}` of `{}` must be {}, not {}",
                    decl.reference,
                    article(a.ty.as_str()),
                    v.value.kind_name()
                ),
            ),
            Some(_) => {
                if v.value.is_null() {
                    inputs.remove(name);
                } else {
                    inputs.insert(name.clone(), v.value.clone());
                }
            }
        }
    }
    placed.push(Placed {
        id,
        node: node.map(str::to_owned),
        module,
        def,
        reference: decl.reference.clone(),
        decl_links: &decl.links,
        at: decl.at,
        key,
        realizes_node: false,
    });
    inputs_of.push((inputs, secrets));
}
