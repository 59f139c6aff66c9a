//! How runs and their tasks end, and what kind of run they are: enums that serialize as
//! the lower-case words of every run report (`"succeeded"`, `"skipped"`, `"refresh"`), so
//! reports written before them read the same.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `dtk service converge`.
    Converge,
    /// `dtk service delete`.
    Delete,
    /// `dtk service exec` (a workflow or an action).
    Exec,
    /// `dtk service refresh`.
    Refresh,
    /// `dtk service import`.
    Import,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every task done or unchanged.
    Succeeded,
    /// At least one task failed.
    Failed,
    /// Stopped (Ctrl-C, SIGTERM, fencing) before the end.
    Cancelled,
}

/// How one task of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// It ran and succeeded.
    Done,
    /// A conditional task with nothing to do.
    Unchanged,
    /// It ran and failed.
    Failed,
    /// Not run: something it depends on failed.
    Skipped,
    /// Not run, or stopped: the run was cancelled.
    Cancelled,
}

macro_rules! words {
    ($t:ty { $($v:ident => $w:literal),* $(,)? }) => {
        impl $t {
            /// The word reports use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$t>::$v => $w,)*
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

words!(RunKind {
    Converge => "converge",
    Delete => "delete",
    Exec => "exec",
    Refresh => "refresh",
    Import => "import",
});
words!(RunStatus {
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});
words!(TaskOutcome {
    Done => "done",
    Unchanged => "unchanged",
    Failed => "failed",
    Skipped => "skipped",
    Cancelled => "cancelled",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_the_serialized_forms() {
        for k in [
            RunKind::Converge,
            RunKind::Delete,
            RunKind::Exec,
            RunKind::Refresh,
            RunKind::Import,
        ] {
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<RunKind>(&json).expect("parses"), k);
        }
        for s in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_string(&s).expect("serializes"),
                format!("\"{s}\"")
            );
        }
        for t in [
            TaskOutcome::Done,
            TaskOutcome::Unchanged,
            TaskOutcome::Failed,
            TaskOutcome::Skipped,
            TaskOutcome::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_string(&t).expect("serializes"),
                format!("\"{t}\"")
            );
        }
        assert!(TaskOutcome::Failed == "failed");
    }
}
