//! Actual state under version control: every state a run leaves is also committed on
//! [`STATE_REF`] in the instance repository, with or without a remote.
//!
//! A state commit's tree:
//!
//! ```text
//! actual.json           the actual state (as .dtk/actual.json)
//! secrets.json          which secret attributes were set on the machine that wrote it:
//!                       {"COMPONENT": ["ATTR", ...]}; names only, never a value
//! journal/RUN.jsonl     journals of runs not folded into actual.json yet (checkpoints
//!                       of a run in progress, or of one that was killed)
//! ```
//!
//! `.dtk/actual.json` is the working copy. When it is missing or does not parse, it is
//! restored from the last commit (and the restore is logged), never silently replaced by
//! an empty state: an empty state would make converge create everything again.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use dtk_workflow::ActualState;
use gix::ObjectId;

use crate::error::{Damage, InstanceError};
use crate::repo::{Signature, TreeEdit, io_err, write_file_atomic};
use crate::service::Service;

pub use crate::layout::STATE_REF;
/// The reference holding the history of converge records in an instance repository.
pub const RECORDS_REF: &str = "refs/dtk/converges";

pub(crate) use crate::layout::ACTUAL_FILE;
/// The file of a state commit naming the secrets that were set.
pub(crate) const SECRETS_FILE: &str = "secrets.json";
/// The directory of a state commit holding unfolded journals.
pub(crate) const JOURNAL_DIR: &str = "journal";

impl Service {
    pub(crate) fn actual_path(&self) -> PathBuf {
        self.private_dir().join("actual.json")
    }

    /// The names of the secrets set on this machine, as a state commit records them.
    pub(crate) fn secret_names(&self) -> Result<Vec<u8>, InstanceError> {
        let names: BTreeMap<String, Vec<String>> = self.secrets()?.names();
        serde_json::to_vec_pretty(&names).map_err(|e| InstanceError::Io {
            path: self.private_dir(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Commits a state on [`STATE_REF`] (parent: its tip): `actual` as `actual.json`,
    /// the secret names, and `journals` (file name, content) under `journal/`. Returns
    /// the commit, or the tip when it already holds exactly this. `known` is `actual`'s
    /// blob id when it was computed already; the blob is then written only if the
    /// repository lacks it.
    pub(crate) fn commit_state(
        &self,
        actual: &[u8],
        known: Option<ObjectId>,
        journals: &[(String, Vec<u8>)],
        message: &str,
    ) -> Result<ObjectId, InstanceError> {
        let repo = self.repo();
        let actual = match known {
            Some(id) if repo.has_object(id) => TreeEdit::Blob(ACTUAL_FILE.to_owned(), id),
            _ => TreeEdit::File(ACTUAL_FILE.to_owned(), actual.to_vec()),
        };
        let mut edits = vec![
            actual,
            TreeEdit::File(SECRETS_FILE.to_owned(), self.secret_names()?),
        ];
        edits.extend(
            journals
                .iter()
                .map(|(name, data)| TreeEdit::File(format!("{JOURNAL_DIR}/{name}"), data.clone())),
        );
        let tree = repo.edit_tree(None, &edits)?;
        let tip = repo.reference(STATE_REF)?;
        if let Some(t) = tip
            && repo.commit_tree(t)? == tree
        {
            return Ok(t);
        }
        let parents: Vec<ObjectId> = tip.into_iter().collect();
        // With a team remote, a state commit says who made it (as desired-state ones do).
        let who = if self.home().remote().is_some() {
            self.home().operator().signature()
        } else {
            Signature::default()
        };
        let commit = repo.write_commit(tree, &parents, message, &who)?;
        repo.set_reference(STATE_REF, Some(tip), Some(commit), message)?;
        Ok(commit)
    }

    /// Records `data` (the serialized actual state a run ends with, of `n` components) on
    /// [`STATE_REF`]; `known` is its blob id when it was computed while other work went
    /// on (a no-op converge then hashes nothing).
    pub(crate) fn record_state(
        &self,
        data: &[u8],
        known: Option<ObjectId>,
        n: usize,
    ) -> Result<(), InstanceError> {
        self.commit_state(
            data,
            known,
            &[],
            &format!(
                "actual state: {n} component{}",
                if n == 1 { "" } else { "s" }
            ),
        )?;
        Ok(())
    }

    /// `.dtk/actual.json` is missing (`problem` is `None`) or damaged: restores it from
    /// the last state commit. Without any commit, a missing file is the empty state of a
    /// service never converged, and a damaged one an error.
    pub(crate) fn restore_actual_state(
        &self,
        problem: Option<String>,
    ) -> Result<ActualState, InstanceError> {
        let path = self.actual_path();
        let Some(tip) = self.repo().reference(STATE_REF)? else {
            return match problem {
                None => Ok(ActualState::default()),
                Some(why) => Err(InstanceError::Io {
                    path,
                    op: "parse",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
                }),
            };
        };
        let tree = self.repo().commit_tree(tip)?;
        let Some(data) = self.repo().tree_file(tree, ACTUAL_FILE)? else {
            return Err(InstanceError::Damaged(Box::new(Damage::ActualState {
                path,
                problem,
                commit: tip.to_string(),
            })));
        };
        let state: ActualState = serde_json::from_slice(&data).map_err(|e| InstanceError::Io {
            path: path.clone(),
            op: "parse the committed",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        tracing::warn!(
            file = %path.display(),
            commit = %tip,
            problem = problem.as_deref().unwrap_or("missing"),
            "actual state restored from its last commit"
        );
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
        }
        if problem.is_some() {
            // Keep the damaged file for whoever wants to look at it.
            let damaged =
                path.with_extension(format!("json.damaged-{}", crate::service::now_secs()));
            let _ = fs::rename(&path, damaged);
        }
        write_file_atomic(&path, &data, false)?;
        Ok(state)
    }

    /// The journals (file name, content) waiting in `.dtk/journal/`, by name.
    pub(crate) fn local_journals(&self) -> Result<Vec<(String, Vec<u8>)>, InstanceError> {
        let dir = self.private_dir().join("journal");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir, "list")(e)),
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "jsonl") {
                continue;
            }
            let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            match fs::read(&p) {
                Ok(data) => out.push((name, data)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, "read")(e)),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Makes `.dtk/` hold the state of commit `commit`: its `actual.json`, and its
    /// journals in place of the local ones (which are moved to `.dtk/superseded/` first,
    /// never deleted).
    pub(crate) fn adopt_state(&self, commit: ObjectId) -> Result<(), InstanceError> {
        let repo = self.repo();
        let tree = repo.commit_tree(commit)?;
        let files = repo.tree_files(tree)?;
        let actual = match repo.tree_file(tree, ACTUAL_FILE)? {
            Some(d) => d,
            None => serde_json::to_vec_pretty(&ActualState::default()).unwrap_or_default(),
        };
        let journal_dir = self.private_dir().join("journal");
        let incoming: Vec<(String, ObjectId)> = files
            .iter()
            .filter_map(|(p, (id, _))| {
                p.strip_prefix(&format!("{JOURNAL_DIR}/"))
                    .filter(|n| !n.contains('/') && n.ends_with(".jsonl"))
                    .map(|n| (n.to_owned(), *id))
            })
            .collect();
        let local = self.local_journals()?;
        if !local.is_empty() {
            let keep = self.private_dir().join("superseded").join(format!(
                "{}-{}",
                crate::service::now_secs(),
                std::process::id()
            ));
            fs::create_dir_all(&keep).map_err(io_err(&keep, "create"))?;
            for (name, _) in &local {
                let from = journal_dir.join(name);
                let to = keep.join(name);
                fs::rename(&from, &to).map_err(io_err(&from, "move"))?;
            }
            tracing::warn!(
                kept = %keep.display(),
                "journals of this machine superseded by the remote's state"
            );
        }
        if !incoming.is_empty() {
            fs::create_dir_all(&journal_dir).map_err(io_err(&journal_dir, "create"))?;
        }
        for (name, id) in incoming {
            let data = repo.read_blob(id)?;
            write_file_atomic(&journal_dir.join(&name), &data, false)?;
        }
        let path = self.actual_path();
        if fs::read(&path).ok().as_deref() != Some(actual.as_slice()) {
            write_file_atomic(&path, &actual, false)?;
        }
        Ok(())
    }
}
