//! Per-provider concurrency declared by a target: `limits.yaml` at the root of a target
//! instance's repository (desired state like `dtk.service.yaml`: edited with any editor,
//! committed by converge), a mapping from provider kind to how many of a run's tasks may
//! use that provider at once:
//!
//! ```yaml
//! aws: 4        # at most 4 EC2 tasks at once for every service on this target
//! ```
//!
//! A service's converge takes its target's limits, then its own `limits.yaml` (if it has
//! one), then what the caller gives (`converge --limit aws=2`): each later one wins per
//! kind.

use std::collections::BTreeMap;

use dtk_model::Value;

use crate::error::InstanceError;
use crate::service::Service;

/// The file a target (or a service) declares its provider limits in.
pub const LIMITS_FILE: &str = "limits.yaml";

impl Service {
    /// The provider limits this service's committed `limits.yaml` declares (empty
    /// without one). Refused, naming the file, when it is not a mapping of provider kinds
    /// to whole numbers above 0.
    pub fn declared_limits(&self) -> Result<BTreeMap<String, usize>, InstanceError> {
        let head = self.repo().head()?;
        let Some(data) = self.repo().read_file_at(head, LIMITS_FILE)? else {
            return Ok(BTreeMap::new());
        };
        let what = format!("{}/{LIMITS_FILE}", self.dir().display());
        let text = String::from_utf8(data)
            .map_err(|_| InstanceError::refused(format!("{what} is not UTF-8 text")))?;
        let value = dtk_model::dsl::parse_value(&text, &what)?;
        let entries = match value {
            Value::Null => BTreeMap::new(),
            Value::Hash(h) => h,
            other => {
                return Err(InstanceError::refused(format!(
                    "{what} must be a mapping of provider kinds to numbers (`aws: 4`), not {}",
                    other.kind_name()
                )));
            }
        };
        let mut out = BTreeMap::new();
        for (kind, v) in entries {
            let n = match &v {
                Value::Int(n) => usize::try_from(*n).ok().filter(|n| *n > 0),
                _ => None,
            }
            .ok_or_else(|| {
                InstanceError::refused(format!(
                    "{what}: `{kind}` must be a whole number above 0, not `{v}`"
                ))
            })?;
            out.insert(kind, n);
        }
        Ok(out)
    }

    /// The provider limits of a run of this service: its target's, then its own, then
    /// `given` (each later one wins per kind).
    pub fn provider_limits(
        &self,
        given: &BTreeMap<String, usize>,
    ) -> Result<BTreeMap<String, usize>, InstanceError> {
        let target = self.committed_doc()?.target;
        self.provider_limits_on(target.as_deref(), given)
    }

    /// [`Service::provider_limits`] for a service staged on `target` (what its committed
    /// document says), without reading the document again.
    pub(crate) fn provider_limits_on(
        &self,
        target: Option<&str>,
        given: &BTreeMap<String, usize>,
    ) -> Result<BTreeMap<String, usize>, InstanceError> {
        let mut out = BTreeMap::new();
        if let Some(t) = target
            && t != self.name()
            && let Ok(target) = self.home().service(t)
        {
            out.extend(target.declared_limits()?);
        }
        out.extend(self.declared_limits()?);
        out.extend(given.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(out)
    }
}
