//! Violations: what must be fixed before converge (or exec) may run anything, as the
//! original dtk's `list-violations` listed them. `dtk service violations NAME` prints the
//! list; converge and exec refuse with the same list.
//!
//! | kind | what |
//! | --- | --- |
//! | `required_unset_attribute` | a required attribute has no value, default or link |
//! | `illegal_attribute_value` | a value is not of its attribute's type |
//! | `unknown_attribute` | a value is set for an attribute the component does not have |
//! | `unmet_dependency` | no component satisfies a dependency |
//! | `ambiguous_dependency` | several components could, and no link chooses one |
//! | `unsupported_action` | an action of a kind dtk-rs does not run (`puppet_class`, ...) |
//! | `missing_module_file` | a `RUN ./path` line (its first word) or an `ADD` source names a file the module does not have |
//! | `unsafe_file_placement` | an `ADD` source outside the module, or (in a local sandbox) a target outside the sandbox |
//! | `invalid_desired_state` | any other problem of the desired state's files (located) |

use std::collections::BTreeSet;

use dtk_model::content::{ModuleContent, check_relative_path, leading_dot_slash};
use dtk_model::{ActionKind, ServiceModel};

use crate::error::InstanceError;
pub use crate::error::ServiceViolation;
use crate::service::Service;

/// The kind of an expansion problem, from its message (expansion reports them as located
/// diagnostics).
fn classify(message: &str) -> &'static str {
    if message.contains("which dtk-rs does not run") {
        "unsupported_action"
    } else if message.contains("several components match") || message.contains("is ambiguous") {
        "ambiguous_dependency"
    } else if message.contains(" depends on ") {
        "unmet_dependency"
    } else if message.contains(" must be ") {
        "illegal_attribute_value"
    } else if message.contains("has no attribute") {
        "unknown_attribute"
    } else {
        "invalid_desired_state"
    }
}

impl Service {
    /// Every violation of the work tree's desired state (see the [module
    /// documentation](self)); empty when converge may run.
    pub fn list_violations(&self) -> Result<Vec<ServiceViolation>, InstanceError> {
        match self.model() {
            Ok(model) => {
                let contents = self.module_contents(&model)?;
                self.violations_of(&model, &contents)
            }
            Err(InstanceError::Dsl(e)) => Ok(e
                .diagnostics
                .iter()
                .map(|d| ServiceViolation {
                    kind: classify(&d.message).to_owned(),
                    at: format!("{}:{}:{}", d.file, d.location.line, d.location.col),
                    message: match &d.help {
                        Some(h) => format!("{} ({h})", d.message),
                        None => d.message.clone(),
                    },
                })
                .collect()),
            Err(e) => Err(e),
        }
    }

    /// The violations of an expanded model whose modules hold `contents`.
    pub(crate) fn violations_of(
        &self,
        model: &ServiceModel,
        contents: &std::collections::HashMap<String, ModuleContent>,
    ) -> Result<Vec<ServiceViolation>, InstanceError> {
        let mut out: Vec<ServiceViolation> = self
            .violations(model)?
            .into_iter()
            .map(|v| ServiceViolation {
                kind: "required_unset_attribute".to_owned(),
                at: format!("{}/{}", v.component, v.attribute),
                message: v.message,
            })
            .collect();
        // Where each node's commands run: a local sandbox (the node realized by the
        // `local` provider, or by nothing), or elsewhere.
        let local_node = |node: Option<&str>| -> bool {
            let Some(node) = node else { return true };
            let Some(n) = model.nodes.iter().find(|n| n.name == node) else {
                return true;
            };
            let Some(r) = n.realized_by.as_ref().and_then(|id| model.component(id)) else {
                return true;
            };
            matches!(
                r.def.actions.get("create").map(|a| &a.kind),
                Some(ActionKind::Provider { kind, .. }) if kind == dtk_target_local::KIND
            )
        };
        let mut placed: BTreeSet<(String, String)> = BTreeSet::new();
        for c in model.components.iter().filter(|c| !c.realizes_node) {
            let local = local_node(c.node.as_deref());
            for (name, action) in &c.def.actions {
                let ActionKind::Commands(cmds) = &action.kind else {
                    continue;
                };
                for cmd in cmds {
                    let dtk_model::module::Command::Add(a) = cmd else {
                        continue;
                    };
                    let at = format!("{}.{name}", c.id);
                    let mut push = |kind: &str, message: String| {
                        if placed.insert((at.clone(), message.clone())) {
                            out.push(ServiceViolation {
                                kind: kind.to_owned(),
                                at: at.clone(),
                                message,
                            });
                        }
                    };
                    match check_relative_path(&a.source) {
                        Err(e) => push(
                            "unsafe_file_placement",
                            format!(
                                "`ADD` source `{}` is not a file inside the module: {e}",
                                a.source
                            ),
                        ),
                        Ok(()) => {
                            let path = dtk_model::content::normalize_relative(&a.source);
                            if let Some(content) = contents.get(&c.module.to_string())
                                && content.file(&path).is_none()
                            {
                                push(
                                    "missing_module_file",
                                    format!(
                                        "`ADD` source `{}` is not a file of module {} (a symbolic link or a directory is not one either)",
                                        a.source, c.module
                                    ),
                                );
                            }
                        }
                    }
                    if local
                        && !a.target.contains("{{")
                        && let Err(e) = check_relative_path(&a.target)
                    {
                        push(
                            "unsafe_file_placement",
                            format!(
                                "`ADD` target `{}` is outside the node's local sandbox ({e}): on the local target a target is relative to the action's directory",
                                a.target
                            ),
                        );
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        for c in &model.components {
            // One report per definition, not per instance.
            if !seen.insert((c.module.to_string(), c.def.name.clone())) {
                continue;
            }
            let Some(content) = contents.get(&c.module.to_string()) else {
                continue;
            };
            for (name, action) in &c.def.actions {
                let ActionKind::Commands(cmds) = &action.kind else {
                    continue;
                };
                for cmd in cmds {
                    let Some(line) = cmd_line(cmd) else { continue };
                    let Some(path) = leading_dot_slash(line) else {
                        continue;
                    };
                    if content.file(&path).is_none() {
                        out.push(ServiceViolation {
                            kind: "missing_module_file".to_owned(),
                            at: format!("{}.{name}", c.id),
                            message: format!(
                                "`RUN {}` runs ./{path}, which module {} does not have (add it to modules/{}/{}/{path})",
                                line.lines().next().unwrap_or(line).trim(),
                                c.module,
                                c.module.namespace,
                                c.module.name,
                            ),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Refuses with the violations of `model` (committed), if any.
    pub(crate) fn refuse_violations(&self, model: &ServiceModel) -> Result<(), InstanceError> {
        let contents = self.module_contents(model)?;
        let list = self.violations_of(model, &contents)?;
        if list.is_empty() {
            Ok(())
        } else {
            Err(InstanceError::Violations { violations: list })
        }
    }
}

/// The shell line of a `RUN` step.
fn cmd_line(cmd: &dtk_model::module::Command) -> Option<&str> {
    cmd.run_line()
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn expansion_problems_are_classified() {
        assert_eq!(
            classify("`web/web` depends on `db`: no component of the service matches `a/b::db`"),
            "unmet_dependency"
        );
        assert_eq!(
            classify("`web/web` depends on `db`: several components match (`a`, `b`); choose one"),
            "ambiguous_dependency"
        );
        assert_eq!(
            classify(
                "component `x` (module a/b) has a `puppet_class` action `create`, which dtk-rs does not run"
            ),
            "unsupported_action"
        );
        assert_eq!(
            classify("`port` of `web` must be a port, not string"),
            "illegal_attribute_value"
        );
        assert_eq!(
            classify("component `web` has no attribute `prot`"),
            "unknown_attribute"
        );
        assert_eq!(classify("something else"), "invalid_desired_state");
    }
}
