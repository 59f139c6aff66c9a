//! The shell text sent to a node: pure functions from a request to bytes, and back.
//!
//! Every script travels over the session's stdin to `exec sh -s`, never in an argv, so
//! environment values (secrets included) are not visible in any process list.
//!
//! An action runs in a long-lived shell on its host's connection ([`shell_job`]: `setsid sh
//! -s` per action, so each still has a session of its own), or, where the node cannot run
//! such shells, as a session of its own. A run's files in the work directory are named by
//! an ID: the run's own in a session of its own; in a long-lived shell, the shell's, so
//! that its jobs reuse one set of files (emptied between jobs) rather than each making and
//! removing five. They are `.dtk-run-ID.pid` (the script's shell's pid, which is also its process
//! group: sshd, or `setsid` in a long-lived shell, makes it a session leader),
//! `.dtk-run-ID.stdout` and `.stderr` (the lines' output: files, as
//! on the local target, so that a background process started by a line does not hold the
//! session open), `.dtk-run-ID.out` (`$DTK_OUTPUT`) and, once the script ended,
//! `.dtk-run-ID.done` (its exit status).
//!
//! The script's EXIT trap copies the lines' stdout to the session's stdout, then writes a
//! trailer: a line `MARKER STATUS`, the outputs file, a line `MARKER err`, the lines'
//! stderr, and `MARKER end`, where MARKER is a random word that the commands cannot know.
//! In a session of its own, it removes every file but the `.done` tombstone, which lets the
//! node tell "ran" from "never started" after a lost connection, and which a later session
//! removes ([`tombstone_word`], [`cleanup_script`]); in a long-lived shell, the shell
//! empties them once dtk has read the result ([`shell_confirm`]) and removes them when it
//! ends.
//!
//! When no trailer arrives (the connection dropped, the shell was killed),
//! [`collect_script`] asks the node what happened, in a second session.

use std::fmt::Write as _;

use super::ExecRequest;

/// The remote command of every session: the login shell replaces itself with `sh` reading the
/// script from stdin, so the script's shell is the session leader.
pub(crate) const REMOTE_COMMAND: &str = "exec sh -s";

/// Quotes `s` as one POSIX shell word (left bare when it needs no quotes).
pub(crate) use dtk_model::render::shell_quote as quote;

/// The first line of every script: the remote user's home, saved before the action's
/// environment (which may set `HOME`) is exported.
const HOME_LINE: &str = "__dtk_h=$HOME\n";

/// Where an action's script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A session of its own, whose shell sshd makes a session leader.
    Session,
    /// A job of a long-lived shell, as `setsid sh -s` ([`shell_job`]): a session of its own.
    SessionJob,
    /// A job of a long-lived shell, as a subshell of it ([`subshell_job`]): no process of its
    /// own to start, in the long-lived shell's session and process group.
    Subshell,
}

/// The work directory as an absolute shell word: a leading `~/` and a relative path both
/// mean the remote user's home (where sessions start); anything else is literal.
pub(crate) fn workdir_word(workdir: &str) -> String {
    if workdir == "~" {
        "\"$__dtk_h\"".to_owned()
    } else if let Some(rest) = workdir.strip_prefix("~/") {
        format!("\"$__dtk_h\"/{}", quote(rest))
    } else if workdir.starts_with('/') {
        quote(workdir)
    } else {
        format!("\"$__dtk_h\"/{}", quote(workdir))
    }
}

/// Why a request cannot be turned into a script. The message names the offending entry but
/// never prints an environment value.
pub(crate) fn check_request(req: &ExecRequest) -> Result<(), String> {
    if req.workdir.is_empty() {
        return Err("the work directory is empty".to_owned());
    }
    if req.workdir.contains('\0') {
        return Err("the work directory contains a NUL byte".to_owned());
    }
    // A long-lived shell keeps its run files' names one set per line.
    if req.workdir.contains('\n') {
        return Err("the work directory contains a newline".to_owned());
    }
    for (name, value) in &req.env {
        if !is_env_name(name) {
            return Err(format!(
                "environment name {name:?} is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "the value of environment variable {name} contains a NUL byte"
            ));
        }
    }
    if let Some(n) = req.script.iter().position(|line| line.contains('\0')) {
        return Err(format!("script line {} contains a NUL byte", n + 1));
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The script that runs an action: exports, work directory, bookkeeping, then each line in
/// order, stopping at the first line whose status is not zero. Its EXIT trap also removes the
/// earlier runs' tombstones named in `cleanup`.
///
/// Each line runs in a subshell, as each line of the local target runs in its own `sh -c`
/// (no `cd` or variable carries over to the next line), through `eval`, so that a syntax
/// error fails its own line alone; with stdin from `/dev/null`, so that no command can read
/// the rest of the script; and without descriptors 8 and 9, the session's own stdout and
/// stderr, kept for the trap.
///
/// Its files are named by `stem` ([`run_file_stem`]): the run's own id in a session of its
/// own; in a long-lived shell, the shell's, whose files every job of that shell reuses.
/// A script for a long-lived shell (`place` other than [`Place::Session`]) removes nothing
/// itself: the shell empties its files once dtk has read its result, and removes them when
/// it ends (see [`shell_confirm`]). Its `.pid` file holds the pid of the script's shell; in
/// a [`Place::Subshell`], also its start time and process group, which [`kill_script`]
/// needs there.
pub(crate) fn run_script(
    req: &ExecRequest,
    run_id: &str,
    stem: &str,
    marker: &str,
    cleanup: &[String],
    place: Place,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# dtk action {run_id}");
    s.push_str(HOME_LINE);
    for (name, value) in &req.env {
        let _ = writeln!(s, "export {name}={}", quote(value));
    }
    let _ = writeln!(s, "__dtk_d={}", workdir_word(&req.workdir));
    s.push_str(concat!(
        "{ [ -d \"$__dtk_d\" ] || mkdir -p -- \"$__dtk_d\"; } && cd -- \"$__dtk_d\" || {\n",
        "  printf 'dtk: cannot use the work directory %s\\n' \"$__dtk_d\" >&2\n",
        "  exit 125\n",
        "}\n",
    ));
    let _ = writeln!(s, "__dtk_r=\"$PWD\"/{}", quote(stem));
    let _ = writeln!(s, "__dtk_m={}", quote(marker));
    s.push_str("exec 8>&1 9>&2\n");
    if place == Place::Subshell {
        // `$$` is the long-lived shell's; `/proc/self` is this subshell. After the command
        // name: state, ppid, pgrp, ... field 22, the start time. `set --` leaves the lines
        // no positional parameters, as `sh -s` has none.
        s.push_str(concat!(
            "read -r __dtk_t < /proc/self/stat; __dtk_i=${__dtk_t%% *}; __dtk_t=${__dtk_t##*) }\n",
            "set -- $__dtk_t; echo \"$__dtk_i ${20} $3\" > \"$__dtk_r.pid\"; set --\n",
        ));
    } else {
        s.push_str("echo $$ > \"$__dtk_r.pid\"\n");
    }
    s.push_str(concat!(
        "__dtk_end() {\n",
        "  echo \"$1\" > \"$__dtk_r.done\"\n",
        // With nothing to copy (the usual case), the trailer is one write, so one packet.
        "  if [ -s \"$__dtk_r.stdout\" ] || [ -s \"$__dtk_r.out\" ] || [ -s \"$__dtk_r.stderr\" ]; then\n",
        "    [ -s \"$__dtk_r.stdout\" ] && cat -- \"$__dtk_r.stdout\" >&8\n",
        "    printf '\\n%s %s\\n' \"$__dtk_m\" \"$1\" >&8\n",
        "    [ -s \"$__dtk_r.out\" ] && cat -- \"$__dtk_r.out\" >&8\n",
        "    printf '\\n%s err\\n' \"$__dtk_m\" >&8\n",
        "    [ -s \"$__dtk_r.stderr\" ] && cat -- \"$__dtk_r.stderr\" >&8\n",
        "    printf '\\n%s end\\n' \"$__dtk_m\" >&8\n",
        "  else\n",
        "    printf '\\n%s %s\\n\\n%s err\\n\\n%s end\\n' \"$__dtk_m\" \"$1\" \"$__dtk_m\" \"$__dtk_m\" >&8\n",
        "  fi\n",
    ));
    // One `rm` for this run's files and the tombstones of earlier ones.
    if place == Place::Session {
        let _ = write!(
            s,
            "  rm -f -- \"$__dtk_r.pid\" \"$__dtk_r.out\" \"$__dtk_r.stdout\" \"$__dtk_r.stderr\""
        );
        for word in cleanup {
            let _ = write!(s, " {word}");
        }
        s.push('\n');
    }
    s.push_str(concat!(
        "}\n",
        "trap '__dtk_end $?' EXIT\n",
        "export DTK_OUTPUT=\"$__dtk_r.out\"\n",
    ));
    if let Some(dir) = &req.module_dir {
        let _ = writeln!(
            s,
            "{{ {{ [ -d {d} ] || mkdir -p -- {d}; }} && cd -- {d}; }} || {{ printf 'dtk: cannot use the module directory %s\\n' {d} >>\"$__dtk_r.stderr\"; exit 125; }}",
            d = quote(dir)
        );
        s.push_str("export DTK_MODULE_DIR=\"$PWD\"\n");
    }
    for line in &req.script {
        let _ = writeln!(
            s,
            "( eval {} ) </dev/null >>\"$__dtk_r.stdout\" 2>>\"$__dtk_r.stderr\" 8>&- 9>&- || exit $?",
            quote(line)
        );
    }
    s.push_str("exit 0\n");
    s
}

/// The program of an upload session (see `SshPool::upload`): makes `dir` in `workdir` if
/// it is missing, runs `before` there, then unpacks the archive on stdin there.
pub(crate) fn upload_script(workdir: &str, dir: &str, before: &str) -> String {
    upload_program(workdir, dir, before, "tar -xf -")
}

/// The same program as a job of a long-lived shell: the archive (gzip-compressed when
/// `gzipped`) travels base64-encoded in a quoted word that the builtin `printf` writes to
/// `base64 -d`, the program runs in a subshell that reads nothing else, and a
/// [`done_prefix`] line ends its part of the stream (as in [`shell_job`]).
pub(crate) fn shell_upload(
    workdir: &str,
    dir: &str,
    archive: &[u8],
    gzipped: bool,
    before: &str,
    marker: &str,
) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(archive);
    // Base64 needs no quoting inside single quotes; lines of 76 as the tool writes them.
    let mut data = String::with_capacity(encoded.len() * 77 / 76 + 4);
    data.push('\'');
    for chunk in encoded.as_bytes().chunks(76) {
        // Base64 is ASCII: every chunk is text.
        data.push_str(&String::from_utf8_lossy(chunk));
        data.push('\n');
    }
    data.push('\'');
    let mut s = String::with_capacity(data.len() + before.len() + 512);
    s.push_str("(\n");
    s.push_str(&upload_program(
        workdir,
        dir,
        before,
        &format!(
            "printf '%s' {data} | base64 -d | tar -x{}f -",
            if gzipped { "z" } else { "" }
        ),
    ));
    s.push_str(") </dev/null 2>&1\n");
    push_done(&mut s, marker, "$?");
    s
}

/// What starts the line that ends a job's part of a long-lived shell's stream; the job's
/// status and a newline follow.
pub(crate) fn done_prefix(marker: &str) -> String {
    format!("\n{marker}.done ")
}

/// The command that prints the [`done_prefix`] line with the status in `status` (a shell
/// word).
fn push_done(s: &mut String, marker: &str, status: &str) {
    let _ = writeln!(
        s,
        "printf '\\n%s.done %s\\n' {} \"{status}\"",
        quote(marker)
    );
}

/// An upload program: into `dir` in `workdir` (the work directory itself when `dir` is
/// empty; made only if missing, which spares a `mkdir` process), `before`, then `unpack`
/// (which reads the archive). A failure of either ends it with status 1.
fn upload_program(workdir: &str, dir: &str, before: &str, unpack: &str) -> String {
    let mut s = String::from(HOME_LINE);
    if dir.is_empty() {
        let _ = writeln!(s, "__dtk_d={}", workdir_word(workdir));
    } else {
        let _ = writeln!(s, "__dtk_d={}/{}", workdir_word(workdir), quote(dir));
    }
    s.push_str(
        "{ [ -d \"$__dtk_d\" ] || mkdir -p -- \"$__dtk_d\"; } && cd -- \"$__dtk_d\" || exit 1\n",
    );
    if !before.trim().is_empty() {
        s.push_str("{\n");
        push_line(&mut s, before);
        s.push_str("} || exit 1\n");
    }
    let _ = writeln!(s, "{unpack} || exit 1");
    s
}

fn push_line(s: &mut String, text: &str) {
    s.push_str(text);
    if !text.ends_with('\n') {
        s.push('\n');
    }
}

/// A shell word naming run `run_id`'s tombstone in `workdir`, for a later script's clean-up
/// line (which runs in the home directory, where sessions start).
pub(crate) fn tombstone_word(workdir: &str, run_id: &str) -> String {
    format!(
        "{}/{}",
        workdir_word(workdir),
        quote(&format!("{}.done", run_file_stem(run_id)))
    )
}

/// A script that only removes tombstones.
pub(crate) fn cleanup_script(cleanup: &[String]) -> String {
    format!("{HOME_LINE}rm -f -- {}\nexit 0\n", cleanup.join(" "))
}

/// What a run's trailer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trailer {
    /// The commands' stdout, without the trailer.
    pub(crate) stdout: Vec<u8>,
    /// The script's exit status.
    pub(crate) status: i32,
    /// The `name=value` lines of `$DTK_OUTPUT`, in order.
    pub(crate) outputs: Vec<(String, String)>,
    /// The commands' stderr (the trailer's `err` section).
    pub(crate) stderr: Vec<u8>,
}

/// Splits a run's stdout into the commands' output and the trailer; `None` when the trailer
/// is missing or incomplete. Output that arrived after the trailer (from a background process
/// that kept stdout open) is given back to stdout.
pub(crate) fn split_trailer(stdout: &[u8], marker: &str) -> Option<Trailer> {
    // The commands cannot print the marker, so its first appearance is the trailer's.
    let head = format!("\n{marker} ");
    let start = find(stdout, head.as_bytes())?;
    let rest = &stdout[start + head.len()..];
    let eol = rest.iter().position(|&b| b == b'\n')?;
    let status = std::str::from_utf8(&rest[..eol])
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    let body = &rest[eol + 1..];
    let end = format!("\n{marker} end\n");
    let at = find(body, end.as_bytes())?;
    let mut user = stdout[..start].to_vec();
    user.extend_from_slice(&body[at + end.len()..]);
    let sections = &body[..at];
    let err = format!("\n{marker} err\n");
    let (outputs, stderr) = match find(sections, err.as_bytes()) {
        Some(e) => (&sections[..e], &sections[e + err.len()..]),
        None => (sections, &[][..]),
    };
    Some(Trailer {
        stdout: user,
        status,
        outputs: parse_outputs(&String::from_utf8_lossy(outputs)),
        stderr: stderr.to_vec(),
    })
}

/// The remote command of a long-lived shell (see the `shell` module): `sh` reading jobs from
/// the session's stdin. The same words as a session's, which any login shell runs (csh
/// and fish included); the probe then joins the shell's stderr to its stdout.
pub(crate) const SHELL_COMMAND: &str = REMOTE_COMMAND;

/// The first thing a long-lived shell is sent: it answers [`SHELL_READY`] when the node can
/// decode an upload (`base64`), [`SHELL_UNSUPPORTED`] when it cannot. The ready answer goes
/// on with words: ` gzip` when uploads may come compressed (`tar -z`), ` fork` when a
/// subshell can read its own process's line of `/proc` (so jobs may run as subshells:
/// [`subshell_job`]), ` setsid` when jobs may run as sessions of their own ([`shell_job`]).
/// It keeps the path of `sh` in `__dtk_sh`, so that `setsid` does not search `PATH` for it
/// on every job, and sets up the removal of run
/// files. Its jobs' files are named by the shell's id, one set in each work directory it
/// ran a job in; `__dtk_q` holds the words naming the last job's, `__dtk_w` the sets of
/// jobs whose results dtk has read ([`shell_confirm`]), one per line, and `__dtk_p` words of
/// other files to remove (tombstones of runs in sessions of their own). `__dtk_rm` removes
/// `__dtk_p` and every set of `__dtk_w` but the last job's while dtk has not read its result
/// (those files tell "ran" from "never started" after a lost connection): when the lists
/// grow long, and when the shell ends (at the end of its input, when the connection closes,
/// or by HUP or TERM).
pub(crate) const SHELL_PROBE: &str = concat!(
    "exec 2>&1\n",
    "__dtk_h=$HOME; __dtk_p=; __dtk_q=; __dtk_w='\n'\n",
    "__dtk_rm() {\n",
    "  __dtk_k=$__dtk_p; __dtk_o=$IFS; IFS='\n'; set -f\n",
    "  for __dtk_g in $__dtk_w; do [ \"$__dtk_g\" = \"$__dtk_q\" ] || __dtk_k=\"$__dtk_k $__dtk_g\"; done\n",
    "  set +f; IFS=$__dtk_o\n",
    "  [ -z \"$__dtk_k\" ] || eval \"rm -f -- $__dtk_k\" >/dev/null 2>&1\n",
    "  __dtk_p=; __dtk_w='\n'\n",
    "}\n",
    "trap __dtk_rm EXIT\n",
    "trap 'exit 129' HUP; trap 'exit 143' TERM\n",
    "__dtk_sh=$(command -v sh); __dtk_f=\n",
    "(read -r __dtk_x __dtk_y </proc/self/stat && [ \"$__dtk_x\" != \"$$\" ]) >/dev/null 2>&1 && __dtk_f=' fork'\n",
    "command -v setsid >/dev/null 2>&1 && [ -n \"$__dtk_sh\" ] && __dtk_f=\"$__dtk_f setsid\"\n",
    "command -v gzip >/dev/null 2>&1 && __dtk_f=\" gzip$__dtk_f\"\n",
    "command -v base64 >/dev/null 2>&1 && echo \"dtk-shell-ready$__dtk_f\" || ",
    "echo dtk-shell-unsupported\n",
);

/// The words naming every run file of stem `stem` in `workdir`, for a long-lived shell's
/// lists (evaluated there, where `__dtk_h` is the home).
pub(crate) fn run_words(workdir: &str, stem: &str) -> String {
    let dir = workdir_word(workdir);
    let mut s = String::new();
    for ext in ["pid", "out", "stdout", "stderr", "done"] {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{dir}/{}", quote(&format!("{stem}.{ext}")));
    }
    s
}

/// What dtk sends a long-lived shell once it has read a job's result: the job's files are
/// emptied (those that hold anything: the builtin `:` with a redirection, no process and no
/// new inode) for the shell's next job in that directory, and their set joins `__dtk_w`
/// unless it is there; `earlier`, words of files of runs elsewhere on this connection, join
/// `__dtk_p`. One `rm` removes both lists once they are long. Nothing of it prints.
pub(crate) fn shell_confirm(earlier: &[String]) -> String {
    let mut s = String::from(concat!(
        "if [ -n \"$__dtk_q\" ]; then\n",
        "  { eval \"set -- $__dtk_q\"; for __dtk_f; do [ ! -s \"$__dtk_f\" ] || : >\"$__dtk_f\"; done; set --; } >/dev/null 2>&1\n",
        "  case $__dtk_w in *'\n'\"$__dtk_q\"'\n'*) ;; *) __dtk_w=\"$__dtk_w$__dtk_q\n\" ;; esac\n",
        "  __dtk_q=\n",
        "fi\n",
    ));
    if !earlier.is_empty() {
        let _ = writeln!(s, "__dtk_p=\"$__dtk_p\"' '{}", quote(&earlier.join(" ")));
    }
    s.push_str("[ ${#__dtk_p} -lt 4096 ] && [ ${#__dtk_w} -lt 65536 ] || __dtk_rm\n");
    s
}
/// The probe's answer when jobs can run in a long-lived shell.
pub(crate) const SHELL_READY: &str = "dtk-shell-ready";
/// The probe's answer when they cannot.
pub(crate) const SHELL_UNSUPPORTED: &str = "dtk-shell-unsupported";

/// The text that runs one action's `script` in a long-lived shell: `setsid sh -s` reading the
/// script from a pipe that the shell's builtin `printf` fills (so nothing of it is in an
/// argv or a file, whatever the shell does with here-documents; and the job has a session
/// and process group of its own, as a session of its own would give it: a timeout stops that
/// group, and only that group), its stdout and stderr in the shell's stream, then a line
/// `MARKER.done STATUS` that ends the job's part of the stream. `files` (see [`run_words`])
/// wait in `__dtk_q` until dtk confirms it read the result ([`shell_confirm`]): until then
/// they are what tells "ran" from "never started" if the connection drops, and nothing
/// empties or removes them.
pub(crate) fn shell_job(script: &str, marker: &str, files: &str) -> String {
    let quoted = quote(script);
    let mut s = String::with_capacity(quoted.len() + files.len() + 160);
    let _ = writeln!(s, "printf '%s' {quoted} | setsid \"$__dtk_sh\" -s 2>&1");
    push_job_end(&mut s, marker, files);
    s
}

/// The end of a job's text: its status kept, its `files` waiting in `__dtk_q` for dtk's
/// confirmation ([`shell_confirm`]), and the [`done_prefix`] line.
fn push_job_end(s: &mut String, marker: &str, files: &str) {
    let _ = writeln!(s, "__dtk_s=$?; __dtk_q={}", quote(files));
    push_done(s, marker, "$__dtk_s");
}

/// The text that runs one action's `script` in a long-lived shell as a subshell of it: the
/// shell parses the script from its own input (nothing of it in an argv or a file), and
/// the subshell, a fork of the shell, runs it with stdin from `/dev/null` (not the
/// shell's input, which holds the jobs to come) and its stderr in the shell's stream; then
/// a line `MARKER.done STATUS`, and `files` wait in `__dtk_q`, as in [`shell_job`]. Its
/// environment, directory, options and traps end with it; its processes share the shell's
/// session and process group, so [`kill_script`] finds them by ancestry and start time.
pub(crate) fn subshell_job(script: &str, marker: &str, files: &str) -> String {
    let mut s = String::with_capacity(script.len() + files.len() + 160);
    s.push_str("(\n");
    s.push_str(script);
    if !script.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(") </dev/null 2>&1\n");
    push_job_end(&mut s, marker, files);
    s
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The stem of a run's files in the work directory.
pub(crate) fn run_file_stem(run_id: &str) -> String {
    format!(".dtk-run-{run_id}")
}

/// The script that asks the node what became of a run whose trailer never arrived (its files
/// named by `stem`), and removes its files. Its stdout is one line `dtk-run STATUS STARTED` (`STATUS` a number or
/// `none`, `STARTED` `started` or `unstarted`), the run's stdout, a line `MARKER`, then the
/// content of `$DTK_OUTPUT`; its stderr is the run's stderr.
pub(crate) fn collect_script(workdir: &str, stem: &str, marker: &str) -> String {
    let mut s = String::from(HOME_LINE);
    let _ = writeln!(
        s,
        "cd -- {} 2>/dev/null || {{ echo 'dtk-run none unstarted'; exit 0; }}",
        workdir_word(workdir)
    );
    let _ = writeln!(s, "__dtk_r={}", quote(stem));
    let _ = writeln!(s, "__dtk_m={}", quote(marker));
    s.push_str(concat!(
        "__dtk_s=none; __dtk_p=unstarted\n",
        "[ -s \"$__dtk_r.pid\" ] && __dtk_p=started\n",
        "[ -s \"$__dtk_r.done\" ] && __dtk_p=started && __dtk_s=$(cat \"$__dtk_r.done\")\n",
        "echo \"dtk-run $__dtk_s $__dtk_p\"\n",
        "[ -f \"$__dtk_r.stdout\" ] && cat -- \"$__dtk_r.stdout\"\n",
        "[ -f \"$__dtk_r.stderr\" ] && cat -- \"$__dtk_r.stderr\" >&2\n",
        "printf '\\n%s\\n' \"$__dtk_m\"\n",
        "[ -f \"$__dtk_r.out\" ] && cat -- \"$__dtk_r.out\"\n",
        "rm -f -- \"$__dtk_r\".pid \"$__dtk_r\".done \"$__dtk_r\".out \"$__dtk_r\".stdout \"$__dtk_r\".stderr\n",
        "exit 0\n",
    ));
    s
}

/// The script that stops a run that outlived its timeout (its files named by `stem`): TERM to
/// its processes, a short grace period, then KILL; then its files are removed.
///
/// A run that is a session of its own (its `.pid` file holds one pid, a process group's)
/// is stopped by its process group. A [`Place::Subshell`] job (the file holds its pid,
/// start time and the long-lived shell's group) shares that group with the shell and with
/// what earlier jobs left running, so its processes are found in `/proc`: the job, its
/// descendants, and the processes of the group that started after it (a line's background
/// process whose parent already ended is no longer a descendant, but stays in the group).
/// Start times count clock ticks: within the job's own tick, the later pid is taken as the
/// later process. The table is read again before each signal, so what started meanwhile
/// is caught too.
pub(crate) fn kill_script(workdir: &str, stem: &str) -> String {
    let mut s = String::from(HOME_LINE);
    let _ = writeln!(s, "cd -- {} 2>/dev/null || exit 0", workdir_word(workdir));
    let _ = writeln!(s, "__dtk_r={}", quote(stem));
    s.push_str(concat!(
        "__dtk_j=; __dtk_t=; __dtk_g=\n",
        "[ -s \"$__dtk_r.pid\" ] && read -r __dtk_j __dtk_t __dtk_g < \"$__dtk_r.pid\"\n",
        "if [ -n \"$__dtk_g\" ]; then\n",
        "  __dtk_doomed() {\n",
        "    __dtk_tab=$(for __dtk_e in /proc/[0-9]*; do\n",
        "      read -r __dtk_l < \"$__dtk_e/stat\" 2>/dev/null || continue\n",
        "      __dtk_l=${__dtk_l##*) }; set -- $__dtk_l; echo \"${__dtk_e#/proc/} $2 $3 ${20}\"\n",
        "    done)\n",
        "    __dtk_o=\" $__dtk_j \"; __dtk_c=1\n",
        "    while [ $__dtk_c = 1 ]; do\n",
        "      __dtk_c=0\n",
        "      while read -r __dtk_p __dtk_pp __dtk_pg __dtk_st; do\n",
        "        case $__dtk_o in *\" $__dtk_p \"*) continue ;; esac\n",
        "        case $__dtk_o in *\" $__dtk_pp \"*) __dtk_o=\"$__dtk_o$__dtk_p \"; __dtk_c=1; continue ;; esac\n",
        "        [ \"$__dtk_pg\" = \"$__dtk_g\" ] && [ \"$__dtk_p\" != \"$__dtk_g\" ] || continue\n",
        "        if [ \"$__dtk_st\" -gt \"$__dtk_t\" ] || { [ \"$__dtk_st\" -eq \"$__dtk_t\" ] && [ \"$__dtk_p\" -ge \"$__dtk_j\" ]; }; then\n",
        "          __dtk_o=\"$__dtk_o$__dtk_p \"; __dtk_c=1\n",
        "        fi\n",
        "      done <<__DTK_TABLE__\n",
        "$__dtk_tab\n",
        "__DTK_TABLE__\n",
        "    done\n",
        "    echo $__dtk_o\n",
        "  }\n",
        "  kill -TERM $(__dtk_doomed) 2>/dev/null\n",
        "  __dtk_i=0\n",
        "  while [ $__dtk_i -lt 20 ] && kill -0 \"$__dtk_j\" 2>/dev/null; do\n",
        "    sleep 0.1; __dtk_i=$((__dtk_i + 1))\n",
        "  done\n",
        "  kill -KILL $(__dtk_doomed) 2>/dev/null\n",
        "  kill -KILL $(__dtk_doomed) 2>/dev/null\n",
        "elif [ -s \"$__dtk_r.pid\" ]; then\n",
        "  __dtk_p=$(cat \"$__dtk_r.pid\")\n",
        "  kill -TERM \"-$__dtk_p\" 2>/dev/null || kill -TERM \"$__dtk_p\" 2>/dev/null\n",
        "  __dtk_i=0\n",
        "  while [ $__dtk_i -lt 20 ] && kill -0 \"$__dtk_p\" 2>/dev/null; do\n",
        "    sleep 0.1; __dtk_i=$((__dtk_i + 1))\n",
        "  done\n",
        "  kill -KILL \"-$__dtk_p\" 2>/dev/null || kill -KILL \"$__dtk_p\" 2>/dev/null\n",
        "fi\n",
        "rm -f -- \"$__dtk_r\".pid \"$__dtk_r\".done \"$__dtk_r\".out \"$__dtk_r\".stdout \"$__dtk_r\".stderr\n",
        "exit 0\n",
    ));
    s
}

/// What [`collect_script`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collected {
    /// The status the run's EXIT trap recorded, if it ran.
    pub(crate) status: Option<i32>,
    /// Whether the run's script got as far as recording its pid.
    pub(crate) started: bool,
    /// What the run's lines wrote to stdout.
    pub(crate) stdout: Vec<u8>,
    /// The `name=value` lines of `$DTK_OUTPUT`, in order.
    pub(crate) outputs: Vec<(String, String)>,
}

/// Parses [`collect_script`]'s stdout. `Err` carries a description of what was malformed
/// (never a value).
pub(crate) fn parse_collected(stdout: &[u8], marker: &str) -> Result<Collected, String> {
    let eol = stdout
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(stdout.len());
    let header = String::from_utf8_lossy(&stdout[..eol]);
    let rest = stdout.get(eol + 1..).unwrap_or_default();
    let mut words = header.split(' ');
    let (Some("dtk-run"), Some(status), Some(started), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("the run's status report is missing or malformed".to_owned());
    };
    let status = match status {
        "none" => None,
        n => Some(
            n.trim()
                .parse::<i32>()
                .map_err(|_| "the run's recorded exit status is not a number".to_owned())?,
        ),
    };
    let started = match started {
        "started" => true,
        "unstarted" => false,
        _ => return Err("the run's status report is malformed".to_owned()),
    };
    let sep = format!("\n{marker}\n");
    let (run_stdout, outputs) = match find(rest, sep.as_bytes()) {
        Some(at) => (&rest[..at], &rest[at + sep.len()..]),
        None if rest.is_empty() => (rest, rest),
        None => return Err("the run's report is cut short".to_owned()),
    };
    Ok(Collected {
        status,
        started,
        stdout: run_stdout.to_vec(),
        outputs: parse_outputs(&String::from_utf8_lossy(outputs)),
    })
}

/// Parses `$DTK_OUTPUT`: one `name=value` per line, split at the first `=`, as the local
/// target does. Blank lines and `#` comments are skipped, and so are lines without `=` or
/// with an empty name (logged by line number only).
pub(crate) fn parse_outputs(text: &str) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                outputs.push((name.trim().to_owned(), value.to_owned()));
            }
            _ => tracing::warn!(
                line = n + 1,
                "ignoring a DTK_OUTPUT line that is not name=value"
            ),
        }
    }
    outputs
}
