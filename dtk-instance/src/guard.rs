//! Targets are not pulled from under their services, unless forced: deleting a target
//! instance is refused while a service staged on it still has resources (a deleted
//! service has none, so its network may go), and uninstalling one while any service is
//! staged on it at all. The refusal names them.

use crate::error::InstanceError;
use crate::service::Service;

impl Service {
    /// The services staged on this instance as their target (or base), by name.
    pub fn staged_on_this(&self) -> Result<Vec<String>, InstanceError> {
        if !self.is_target()? {
            return Ok(Vec::new());
        }
        Ok(self
            .home()
            .services()?
            .into_iter()
            .filter(|s| s.name != self.name() && s.target.as_deref() == Some(self.name()))
            .map(|s| s.name)
            .collect())
    }

    /// Refuses `what` (`delete`, `uninstall`) of a target that services are staged on,
    /// unless `force`.
    pub(crate) fn guard_target(
        &self,
        what: &'static str,
        force: bool,
    ) -> Result<(), InstanceError> {
        if force {
            return Ok(());
        }
        let mut on = self.staged_on_this()?;
        if what == "delete" {
            let mut live = Vec::new();
            for name in on {
                let s = self.home().service(&name)?;
                if !s.actual_state()?.components.is_empty() {
                    live.push(name);
                }
            }
            on = live;
        }
        if on.is_empty() {
            return Ok(());
        }
        let (state, first) = if what == "delete" {
            (
                "with resources",
                "delete them first (`dtk service delete NAME`)",
            )
        } else {
            (
                "staged",
                "delete and uninstall them first (`dtk service delete NAME` and `dtk service uninstall NAME`)",
            )
        };
        Err(InstanceError::TargetInUse {
            target: self.name().to_owned(),
            operation: what,
            services: on,
            state,
            first,
        })
    }
}
