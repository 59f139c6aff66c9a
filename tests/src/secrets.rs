//! Looking for secret values where they must never be: every file under a `DTK_HOME` but
//! its secret stores, every object of every git repository in it, and captured output.
//!
//! Git objects are compressed on disk, so a plain grep of the files would miss a secret
//! committed to a repository: each repository's objects are read back through
//! `git cat-file --batch-all-objects` (loose, packed and borrowed through alternates).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One place a secret was found. It names the secret by its position in the list given,
/// never by its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The position of the secret in the list searched for.
    pub secret: usize,
    /// Where it was: a file, `git objects of DIR`, or the label of some text.
    pub place: String,
}

/// The secrets of `secrets` that occur in `text`, labelled `label`.
pub fn leaks_in_text(label: &str, text: &[u8], secrets: &[&str]) -> Vec<Leak> {
    secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty() && contains(text, s.as_bytes()))
        .map(|(i, _)| Leak {
            secret: i,
            place: label.to_owned(),
        })
        .collect()
}

/// Every place under `home` holding one of `secrets`: each file (journals, logs, actual
/// state, repository work trees and git metadata alike) except those under `excluded`
/// (paths relative to `home`: the secret stores), and the objects of each git repository
/// (work trees' `.git` and bare ones such as the catalog).
pub fn leaks_in_home(home: &Path, secrets: &[&str], excluded: &[&str]) -> Vec<Leak> {
    let excluded: Vec<PathBuf> = excluded.iter().map(|e| home.join(e)).collect();
    let mut leaks = Vec::new();
    let mut repos = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if excluded.iter().any(|e| dir.starts_with(e)) {
            continue;
        }
        if dir.join("HEAD").is_file() && dir.join("objects").is_dir() {
            repos.push(dir.clone());
        }
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && !excluded.iter().any(|e| path.starts_with(e)) {
                let data = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                leaks.extend(leaks_in_text(&path.display().to_string(), &data, secrets));
            }
        }
    }
    for repo in repos {
        let label = format!("git objects of {}", repo.display());
        leaks.extend(leaks_in_text(&label, &git_objects(&repo), secrets));
    }
    leaks
}

/// Every object of the repository whose git directory is `git_dir`, decompressed.
pub fn git_objects(git_dir: &Path) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git cat-file in {} failed: {}",
        git_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secrets_in_files_and_git_objects_but_not_in_excluded_stores() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        std::fs::create_dir_all(h.join("secrets")).unwrap();
        std::fs::write(h.join("secrets/s.json"), "alpha-secret").unwrap();
        std::fs::write(h.join("log.txt"), "a line with beta-secret in it").unwrap();
        let repo = h.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        crate::git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("f"), "gamma-secret").unwrap();
        crate::git(&repo, &["add", "f"]);
        crate::git(
            &repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "m",
            ],
        );
        std::fs::remove_file(repo.join("f")).unwrap();
        let leaks = leaks_in_home(
            h,
            &[
                "alpha-secret",
                "beta-secret",
                "gamma-secret",
                "delta-secret",
            ],
            &["secrets"],
        );
        let found: Vec<usize> = leaks.iter().map(|l| l.secret).collect();
        assert!(!found.contains(&0), "{leaks:?}");
        assert!(found.contains(&1), "{leaks:?}");
        assert!(
            leaks
                .iter()
                .any(|l| l.secret == 2 && l.place.starts_with("git objects")),
            "{leaks:?}"
        );
        assert!(!found.contains(&3), "{leaks:?}");
    }
}
