//! Module files on SSH nodes, and the `ADD` steps of command actions.
//!
//! A module's files live in `WORKDIR/modules/NS/NAME` on the node, with the manifest of
//! what is there beside it (`modules/NS/.NAME.manifest`, see
//! [`dtk_model::content::Manifest`]). Bringing the node's copy up to date takes one
//! session that prints the node's manifest and the files it lists that are gone; when
//! anything differs, a second session empties the old manifest, removes the files the
//! module no longer has, and unpacks a tar archive of the changed files only, the new
//! manifest its last entry, in the work directory (tar makes the directories: no other
//! process runs). A copy this process already brought to a content digest is not asked
//! again, nor is one on a node this process made without a `modules` directory
//! ([`Synced::set_empty`]). Converging an unchanged module therefore sends nothing but a
//! manifest check, once per node and run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dtk_model::ProviderError;
use dtk_model::content::{Manifest, ModuleContent, ModuleFile};
use dtk_model::provider::{ExecStep, PutContent, PutFile};
use dtk_model::render::shell_quote as quote;

use crate::transport::{self as ssh, SshHost, SshPool};

/// What this process knows the nodes' module copies hold: `(host, workdir, module dir)`
/// → content digest; and the work directories that held no module copy when this process
/// made their node (`(host, workdir, "")` → an empty digest), whose copies need no check.
#[derive(Debug, Default)]
pub(crate) struct Synced(Mutex<HashMap<String, String>>);

impl Synced {
    /// Records that `workdir` on `host` holds no module copy (its node was just made and
    /// has no `modules` directory): what was known of its copies is forgotten.
    pub(crate) fn set_empty(&self, host: &SshHost, workdir: &str) {
        let prefix = Self::key(host, workdir, "");
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| !k.starts_with(&prefix));
            m.insert(prefix, String::new());
        }
    }

    /// Whether `workdir` on `host` held no module copy when its node was made.
    fn is_empty_dir(&self, host: &SshHost, workdir: &str) -> bool {
        self.0
            .lock()
            .map(|m| {
                m.get(&Self::key(host, workdir, ""))
                    .is_some_and(String::is_empty)
            })
            .unwrap_or(false)
    }

    fn key(host: &SshHost, workdir: &str, dir: &str) -> String {
        format!(
            "{}@{}:{}\u{0}{workdir}\u{0}{dir}",
            host.user, host.address, host.port
        )
    }

    fn is(&self, key: &str, digest: &str) -> bool {
        self.0
            .lock()
            .map(|m| m.get(key).is_some_and(|d| d == digest))
            .unwrap_or(false)
    }

    fn set(&self, key: String, digest: String) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, digest);
        }
    }
}

const MISSING: &str = "--dtk-missing-files--";

/// How long the manifest check and the upload may take, besides the upload's own size.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Brings the copy of `content` in `workdir` on `host` up to date (see the [module
/// documentation](self)).
pub(crate) async fn sync_module(
    pool: &SshPool,
    synced: &Synced,
    host: &SshHost,
    workdir: &str,
    content: &ModuleContent,
    cancel: &dtk_model::provider::Cancel,
) -> Result<(), ProviderError> {
    let op = || {
        format!(
            "place the files of module {} on {}@{}:{}",
            content.module, host.user, host.address, host.port
        )
    };
    let dir = content.dir();
    let key = Synced::key(host, workdir, &dir);
    if synced.is(&key, &content.digest) {
        return Ok(());
    }
    // A node this process made without a `modules` directory has no copy to check.
    let (old, missing_text) = if synced.is_empty_dir(host, workdir) {
        (None, String::new())
    } else {
        node_copy(pool, host, workdir, content, cancel, &op).await?
    };
    let missing: Vec<&str> = missing_text.lines().filter(|l| !l.is_empty()).collect();
    if let Some(old) = &old
        && old.digest == content.digest
        && missing.is_empty()
    {
        synced.set(key, content.digest.clone());
        return Ok(());
    }
    let plan = old.unwrap_or_default().changes_to(content);
    let mut send: Vec<&ModuleFile> = plan.send;
    for p in missing {
        if let Some(f) = content.file(p)
            && !send.iter().any(|s| s.path == f.path)
        {
            send.push(f);
        }
    }
    // Unpacked in the work directory, in order: the files, then the manifest, so that a copy
    // cut short has no manifest for its new content. Beforehand, the old manifest is emptied
    // (a copy cut short is then checked in full next time) and the files the module no
    // longer has are removed. No other process runs: tar makes the directories.
    let mut archive = tar::Builder::new(Vec::new());
    let mut size: u64 = 0;
    for f in &send {
        let data = content
            .store
            .read(&f.id)
            .map_err(|e| ProviderError::failed(op(), format!("{e}: {}", e.source)))?;
        size += data.len() as u64;
        append(
            &mut archive,
            &format!("{dir}/{}", f.path),
            if f.executable { 0o755 } else { 0o644 },
            &data,
        )
        .map_err(|e| ProviderError::failed(op(), e))?;
    }
    let manifest = content.manifest().to_text();
    let manifest_path = content.manifest_path();
    append(&mut archive, &manifest_path, 0o644, manifest.as_bytes())
        .map_err(|e| ProviderError::failed(op(), e))?;
    let archive = archive
        .into_inner()
        .map_err(|e| ProviderError::failed(op(), format!("cannot make the archive: {e}")))?;
    let before = before_unpack(&manifest_path, &dir, &plan.remove);
    // A generous limit for the transfer: a megabyte a second at least.
    let timeout = SYNC_TIMEOUT + Duration::from_secs(size / (1 << 20));
    let pool_result = pool
        .upload(host, workdir, "", archive, &before, timeout)
        .await;
    pool_result.map_err(|e| crate::errors::from_ssh(op(), e))?;
    tracing::debug!(module = %content.module, files = send.len(), bytes = size,
        removed = plan.remove.len(), "module files sent");
    synced.set(key, content.digest.clone());
    Ok(())
}

/// The node's manifest of `content`'s copy in `workdir` (`None` when there is none, or it
/// is empty or unreadable) and the paths it lists that are gone, one per line.
async fn node_copy(
    pool: &SshPool,
    host: &SshHost,
    workdir: &str,
    content: &ModuleContent,
    cancel: &dtk_model::provider::Cancel,
    op: &impl Fn() -> String,
) -> Result<(Option<Manifest>, String), ProviderError> {
    let check = format!(
        "m={m}; d={d}; [ -f \"$m\" ] || exit 0; cat -- \"$m\"; echo {MISSING}; \
         tail -n +2 -- \"$m\" | while IFS=' ' read -r x id size p; do \
         [ -f \"$d/$p\" ] || printf '%s\\n' \"$p\"; done",
        m = quote(&content.manifest_path()),
        d = quote(&content.dir()),
    );
    let req = ssh::ExecRequest::new(workdir.to_owned())
        .line(check)
        .timeout(SYNC_TIMEOUT)
        .cancel(cancel.clone());
    let out = pool
        .exec(host, &req)
        .await
        .map_err(|e| crate::errors::from_ssh(op(), e))?;
    if !out.success() {
        return Err(ProviderError::failed(
            op(),
            format!(
                "reading the node's manifest failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (manifest_text, missing_text) = text
        .split_once(&format!("{MISSING}\n"))
        .unwrap_or((text.as_ref(), ""));
    Ok((Manifest::parse(manifest_text), missing_text.to_owned()))
}

/// What runs in the work directory before an upload unpacks: the old manifest emptied (the
/// builtin `:`; it stays where it is, and an empty one reads as none), then the files of
/// `remove` (paths in the module's directory `dir`) removed, by `rm` lines of at most
/// about 64 KB (far below any `ARG_MAX`); nothing else when there are none.
fn before_unpack(manifest_path: &str, dir: &str, remove: &[String]) -> String {
    let mut s = format!("[ ! -s {m} ] || : > {m}\n", m = quote(manifest_path));
    let mut line = String::new();
    for p in remove {
        if line.is_empty() {
            line.push_str("rm -f --");
        }
        line.push(' ');
        line.push_str(&quote(&format!("{dir}/{p}")));
        if line.len() > 64 * 1024 {
            s.push_str(&line);
            s.push('\n');
            line.clear();
        }
    }
    if !line.is_empty() {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

fn append(
    archive: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), String> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    archive
        .append_data(&mut header, path, data)
        .map_err(|e| format!("cannot add `{path}` to the archive: {e}"))
}

/// The shell line that does an `ADD` step on an SSH node: the target is absolute, under
/// the remote user's home (`~/...`), or relative to the action's directory (the module's
/// copy); a module file is copied from that copy, rendered content travels in the line
/// (which goes over the session's stdin, never in an argv). The file is written beside
/// its target and renamed over it.
pub(crate) fn put_line(put: &PutFile) -> Result<String, String> {
    let t = &put.target;
    if t.is_empty() || t.contains(['\0', '\n']) {
        return Err(format!(
            "{}: the target is empty or holds a NUL or newline",
            put.label
        ));
    }
    let target = if t == "~" {
        return Err(format!("{}: the target is a directory", put.label));
    } else if let Some(rest) = t.strip_prefix("~/") {
        format!("\"$__dtk_h\"/{}", quote(rest))
    } else {
        quote(t)
    };
    let mut s = format!("__dtk_t={target}; mkdir -p -- \"$(dirname -- \"$__dtk_t\")\" && ");
    let (mode, write) = match &put.content {
        PutContent::ModuleFile(src) => {
            dtk_model::content::check_relative_path(src)
                .map_err(|e| format!("{}: source: {e}", put.label))?;
            (
                None,
                format!(
                    "cp -f -- {} \"$__dtk_t.dtk-tmp\"",
                    quote(&format!("./{src}"))
                ),
            )
        }
        PutContent::Rendered(bytes) => {
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| format!("{}: the rendered file is not UTF-8 text", put.label))?;
            (
                Some(0o644),
                format!("printf '%s' {} > \"$__dtk_t.dtk-tmp\"", quote(&text)),
            )
        }
    };
    s.push_str(&write);
    if let Some(m) = put.mode.or(mode) {
        s.push_str(&format!(" && chmod {m:o} \"$__dtk_t.dtk-tmp\""));
    }
    if let Some(owner) = &put.owner {
        s.push_str(&format!(" && chown {} \"$__dtk_t.dtk-tmp\"", quote(owner)));
    }
    s.push_str(" && mv -f -- \"$__dtk_t.dtk-tmp\" \"$__dtk_t\"");
    Ok(s)
}

/// The shell lines of `steps`.
pub(crate) fn lines(steps: &[ExecStep]) -> Result<Vec<String>, String> {
    steps
        .iter()
        .map(|s| match s {
            ExecStep::Run(l) => Ok(l.clone()),
            ExecStep::Put(p) => put_line(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(target: &str, content: PutContent, mode: Option<u32>) -> PutFile {
        PutFile {
            target: target.to_owned(),
            content,
            mode,
            owner: None,
            label: "ADD".to_owned(),
        }
    }

    #[test]
    fn put_lines_copy_or_print_then_rename() {
        assert_eq!(
            put_line(&put(
                "/etc/app b.conf",
                PutContent::ModuleFile("conf/app.conf".into()),
                Some(0o600)
            ))
            .expect("line"),
            "__dtk_t='/etc/app b.conf'; mkdir -p -- \"$(dirname -- \"$__dtk_t\")\" && \
             cp -f -- ./conf/app.conf \"$__dtk_t.dtk-tmp\" && chmod 600 \"$__dtk_t.dtk-tmp\" && \
             mv -f -- \"$__dtk_t.dtk-tmp\" \"$__dtk_t\""
        );
        assert_eq!(
            put_line(&put(
                "~/app.conf",
                PutContent::Rendered(b"k='v'\n".to_vec()),
                None
            ))
            .expect("line"),
            "__dtk_t=\"$__dtk_h\"/app.conf; mkdir -p -- \"$(dirname -- \"$__dtk_t\")\" && \
             printf '%s' 'k='\\''v'\\''\n' > \"$__dtk_t.dtk-tmp\" && chmod 644 \"$__dtk_t.dtk-tmp\" && \
             mv -f -- \"$__dtk_t.dtk-tmp\" \"$__dtk_t\""
        );
        assert!(put_line(&put("x", PutContent::ModuleFile("../up".into()), None)).is_err());
        assert!(
            format!(
                "{:?}",
                put("x", PutContent::Rendered(b"secret".to_vec()), None)
            )
            .contains("<6 bytes>")
        );
    }

    #[test]
    fn before_an_upload_the_old_manifest_is_emptied_and_removed_files_go() {
        let m = "modules/t/.x.manifest";
        assert_eq!(
            before_unpack(m, "modules/t/x", &[]),
            "[ ! -s modules/t/.x.manifest ] || : > modules/t/.x.manifest\n"
        );
        assert_eq!(
            before_unpack(m, "modules/t/x", &["a b".to_owned(), "c".to_owned()]),
            "[ ! -s modules/t/.x.manifest ] || : > modules/t/.x.manifest\n\
             rm -f -- 'modules/t/x/a b' modules/t/x/c\n"
        );
        // Long lists go in several lines, each far below any ARG_MAX.
        let many: Vec<String> = (0..20_000).map(|i| format!("dir/file-{i}")).collect();
        let text = before_unpack(m, "modules/t/x", &many);
        let rm: Vec<&str> = text.lines().skip(1).collect();
        assert!(rm.len() > 1, "{} lines", rm.len());
        assert!(
            rm.iter()
                .all(|l| l.starts_with("rm -f -- ") && l.len() < 70_000)
        );
        assert_eq!(
            rm.iter().map(|l| l.split(' ').count() - 3).sum::<usize>(),
            many.len()
        );
    }
}
