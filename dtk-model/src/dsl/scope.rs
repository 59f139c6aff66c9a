//! What a document's references can name: the module's own components and the names of
//! its dependencies. References are checked as they are decoded, so that each error
//! points at the offending node.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Location, did_you_mean};
use crate::dsl::decode::{Ctx, shorten};
use crate::ident::ComponentRef;
use crate::module::ComponentDef;

/// How strictly a reference is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefCheck {
    /// Assembly and service components: `module::` must be this module or a dependency;
    /// a plain name must be a component of this module or a dependency's name.
    Strict,
    /// Component dependencies: like `Strict`, but `module::cmp` of a module that is not
    /// declared is left to staging (the original dtk's `aws/ec2` names
    /// `network_aws::vpc_subnet` without depending on it).
    Choices,
    /// `link_defs`: only references into this module are checked (the original dtk's
    /// `aws/aws_vpc` links `image_aws`, which it does not declare).
    Links,
}

/// Where a reference leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A component of this module, by name.
    Local(String),
    /// A component of another module (checked at staging).
    External,
    /// Not resolvable; already reported.
    Bad,
}

/// The names a document's references resolve against.
pub(crate) struct Scope<'a> {
    /// This module's name (`webapp` in `demo/webapp`); `None` in a service document.
    pub(crate) own: Option<String>,
    /// This module's component names.
    pub(crate) local: BTreeSet<String>,
    /// The names of the modules depended on (`ec2` for `aws/ec2`).
    pub(crate) deps: BTreeSet<String>,
    /// The decoded component definitions, once available (for attribute checks).
    pub(crate) defs: Option<&'a BTreeMap<String, ComponentDef>>,
}

impl Scope<'_> {
    /// The resolved identity of a reference, for comparing references written in
    /// different ways (`db`, `webapp::db`): (module name, component name, instance).
    pub(crate) fn key(&self, r: &ComponentRef) -> (String, String, Option<String>) {
        let module = match &r.module {
            Some(m) => m.clone(),
            None if self.local.contains(&r.name) => self.own.clone().unwrap_or_default(),
            None => r.name.clone(),
        };
        (module, r.name.clone(), r.instance.clone())
    }

    /// Where a reference leads, without checking it: a component of this module, or
    /// another module's.
    pub(crate) fn target(&self, r: &ComponentRef) -> Target {
        match &r.module {
            Some(m) if self.own.as_deref() == Some(m.as_str()) => Target::Local(r.name.clone()),
            None if self.local.contains(&r.name) => Target::Local(r.name.clone()),
            _ => Target::External,
        }
    }

    /// Looks a local component definition up.
    pub(crate) fn def(&self, target: &Target) -> Option<&ComponentDef> {
        match target {
            Target::Local(name) => self.defs?.get(name),
            _ => None,
        }
    }

    /// Checks a reference, reporting what cannot be right.
    pub(crate) fn check(
        &self,
        ctx: &mut Ctx,
        r: &ComponentRef,
        at: Location,
        path: &str,
        how: RefCheck,
    ) -> Target {
        match &r.module {
            Some(m) if self.own.as_deref() == Some(m.as_str()) => {
                if self.local.contains(&r.name) {
                    Target::Local(r.name.clone())
                } else {
                    self.unknown_local(ctx, r, at, path);
                    Target::Bad
                }
            }
            Some(m) => {
                if self.deps.contains(m) || how != RefCheck::Strict {
                    return Target::External;
                }
                let help = match did_you_mean(m, self.deps.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}::{}`?", r.name),
                    None => format!(
                        "declare the module under `dependencies` (`NAMESPACE/{m}: VERSION`)"
                    ),
                };
                let what = match &self.own {
                    Some(own) => format!("neither this module (`{own}`) nor a dependency"),
                    None => "not one of the service's `dependencies`".to_owned(),
                };
                ctx.error_help(
                    at,
                    path,
                    format!("component `{r}` names module `{m}`, which is {what}"),
                    help,
                );
                Target::Bad
            }
            None => {
                if self.local.contains(&r.name) {
                    Target::Local(r.name.clone())
                } else if self.deps.contains(&r.name)
                    || how == RefCheck::Links
                    || self.own.is_none()
                {
                    // `stdlib` is the component `stdlib` of the dependency named `stdlib`.
                    Target::External
                } else {
                    let candidates = self.local.iter().chain(self.deps.iter());
                    let help = match did_you_mean(&r.name, candidates.map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if self.local.is_empty() => {
                            "this module defines no components; name another module's component as `MODULE::COMPONENT`".to_owned()
                        }
                        None => format!(
                            "this module's components are {}",
                            list(self.local.iter().map(String::as_str))
                        ),
                    };
                    ctx.error_help(
                        at,
                        path,
                        format!(
                            "unknown component `{}`: not a component of this module nor the name of a dependency",
                            shorten(&r.name)
                        ),
                        help,
                    );
                    Target::Bad
                }
            }
        }
    }

    fn unknown_local(&self, ctx: &mut Ctx, r: &ComponentRef, at: Location, path: &str) {
        let own = self.own.as_deref().unwrap_or_default();
        let help = match did_you_mean(&r.name, self.local.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{own}::{s}`?"),
            None if self.local.is_empty() => "this module defines no components".to_owned(),
            None => format!(
                "this module's components are {}",
                list(self.local.iter().map(String::as_str))
            ),
        };
        ctx.error_help(
            at,
            path,
            format!("module `{own}` has no component `{}`", shorten(&r.name)),
            help,
        );
    }
}

/// `a`, `b`, `c` (at most ten, then `...`).
pub(crate) fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = items.take(11).map(|s| format!("`{s}`")).collect();
    if out.len() > 10 {
        out.truncate(10);
        out.push("...".to_owned());
    }
    out.join(", ")
}
