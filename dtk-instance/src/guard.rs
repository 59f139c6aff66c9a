//! Targets are not pulled from under their services: deleting or uninstalling a target
//! instance that services are staged on is refused, naming them, unless forced.

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
    pub(crate) fn guard_target(&self, what: &str, force: bool) -> Result<(), InstanceError> {
        if force {
            return Ok(());
        }
        let on = self.staged_on_this()?;
        if on.is_empty() {
            return Ok(());
        }
        Err(InstanceError::refused(format!(
            "`{}` is the target of {} staged service{}: {}; {what} them first (`dtk service delete NAME` and \
             `dtk service uninstall NAME`), or {what} `{}` anyway with `--force`, which leaves them without their target",
            self.name(),
            on.len(),
            if on.len() == 1 { "" } else { "s" },
            on.join(", "),
            self.name(),
        )))
    }
}
