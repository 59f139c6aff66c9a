//! Lines run by worker shells behave as lines run by their own `sh -c`: these run through
//! the public [`crate::run_script`], which uses the workers.

use std::path::Path;
use std::time::Duration;

use dtk_model::ProviderError;
use dtk_model::provider::ExecOutput;

async fn run(dir: &Path, lines: &[&str], env: &[(&str, &str)]) -> ExecOutput {
    run_within(dir, lines, env, Duration::from_secs(20))
        .await
        .expect("the lines run")
}

async fn run_within(
    dir: &Path,
    lines: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<ExecOutput, ProviderError> {
    let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    crate::run_script(dir, &lines, &env, timeout).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for this purpose: its state letter is `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

async fn gone_soon(pid: i32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn pid_in(dir: &Path, file: &str) -> i32 {
    std::fs::read_to_string(dir.join(file))
        .expect("the pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[tokio::test]
async fn a_line_gets_its_directory_environment_and_captures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run(
        dir,
        &[
            "echo out; echo err >&2; pwd; echo \"$GREETING\"",
            "printf 'port=%s\\n' 8080 >> \"$DTK_OUTPUT\"; echo second",
        ],
        &[("GREETING", "it's \"quoted\" $HOME `x`")],
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(
        text(&out.stdout),
        format!(
            "out\n{}\nit's \"quoted\" $HOME `x`\nsecond\n",
            dir.display()
        )
    );
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.outputs, vec![("port".to_owned(), "8080".to_owned())]);
}

#[tokio::test]
async fn nothing_a_line_sets_reaches_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run(
        dir,
        &[
            "export LEAK=1; PLAIN=2; cd /; set -e; trap 'echo trapped' EXIT; umask 077",
            "echo \"${LEAK:-none} ${PLAIN:-none} $(pwd) $(umask)\"",
        ],
        &[],
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    let umask = run(dir, &["umask"], &[]).await;
    assert_eq!(
        text(&out.stdout),
        format!(
            "trapped\nnone none {} {}",
            dir.display(),
            text(&umask.stdout)
        )
    );
    // The next action does not see the first one's environment either.
    let again = run(dir, &["echo \"${GREETING:-unset}\""], &[]).await;
    assert_eq!(text(&again.stdout), "unset\n");
}

#[tokio::test]
async fn exit_stops_the_action_not_the_worker_and_workers_are_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run(dir, &["echo one", "exit 3", "echo never"], &[]).await;
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(text(&out.stdout), "one\n");
    // `$$` names the worker: two actions in a row run in the same one.
    let a = run(dir, &["echo $$"], &[]).await;
    let b = run(dir, &["echo $$"], &[]).await;
    assert_eq!(a.exit_code, Some(0));
    assert!(!text(&a.stdout).trim().is_empty());
    // Another test may have taken the worker in between; then it was returned to the pool
    // and a third run finds one of the two.
    if a.stdout != b.stdout {
        let c = run(dir, &["echo $$"], &[]).await;
        assert!(c.stdout == a.stdout || c.stdout == b.stdout);
    }
}

#[tokio::test]
async fn standard_input_is_empty_and_syntax_errors_fail_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run(dir, &["cat; echo read-nothing"], &[]).await;
    assert_eq!(text(&out.stdout), "read-nothing\n");
    let bad = run(dir, &["echo (", "echo never"], &[]).await;
    assert_eq!(bad.exit_code, Some(2));
    assert!(text(&bad.stderr).to_lowercase().contains("syntax error"));
    assert!(bad.stdout.is_empty());
    let next = run(dir, &["echo fine"], &[]).await;
    assert_eq!(text(&next.stdout), "fine\n");
}

#[tokio::test]
async fn a_background_process_does_not_hold_the_action() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_within(
        dir,
        &["sleep 30 & echo $! > bg.pid; echo started"],
        &[],
        Duration::from_secs(10),
    )
    .await
    .expect("the action ends while its background process runs");
    assert_eq!(text(&out.stdout), "started\n");
    let bg = pid_in(dir, "bg.pid");
    assert!(alive(bg));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bg),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn a_timeout_kills_the_line_and_what_it_started_but_not_earlier_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A server left running by an earlier line of the same action (the same worker).
    let err = run_within(
        dir,
        &[
            "sleep 60 & echo $! > server.pid",
            "sleep 61 & echo $! > child.pid; (sleep 62 & echo $! > orphan.pid); sleep 63",
        ],
        &[],
        Duration::from_millis(1500),
    )
    .await
    .expect_err("the last line outlives the timeout");
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    assert!(
        gone_soon(pid_in(dir, "child.pid")).await,
        "the line's child"
    );
    assert!(
        gone_soon(pid_in(dir, "orphan.pid")).await,
        "the line's orphan"
    );
    let server = pid_in(dir, "server.pid");
    assert!(alive(server), "the earlier line's server still runs");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    );
    let next = run(dir, &["echo after"], &[]).await;
    assert_eq!(text(&next.stdout), "after\n");
}

#[tokio::test]
async fn a_line_that_kills_its_shell_fails_without_an_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run(dir, &["echo before; kill -9 $$", "echo never"], &[]).await;
    assert_eq!(out.exit_code, None);
    assert_eq!(text(&out.stdout), "before\n");
    assert!(text(&out.stderr).contains("ended"), "{}", text(&out.stderr));
    let next = run(dir, &["echo after"], &[]).await;
    assert_eq!(text(&next.stdout), "after\n");
}

#[tokio::test]
async fn environment_names_that_are_not_shell_names_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // `export` cannot take this name: the line runs by its own `sh -c`, as it always did.
    let out = run(
        dir,
        &["echo \"$GOOD\""],
        &[("odd-name", "1"), ("GOOD", "2")],
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(text(&out.stdout), "2\n");
}

#[tokio::test]
async fn a_job_larger_than_the_pipe_reaches_its_worker_whole() {
    let tmp = tempfile::tempdir().unwrap();
    // More than a pipe holds (64 KB on Linux), less than one environment string may be
    // (128 KB, for `wc`'s exec): the job is written as the worker reads it.
    let big = "x".repeat(100_000);
    let out = run(
        tmp.path(),
        &["printf '%s' \"$BIG\" | wc -c; echo $$"],
        &[("BIG", &big)],
    )
    .await;
    assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"100000"), "{stdout}");
    // `$$` is a worker's, which outlives the line (a `sh -c` of its own would be gone).
    let pid: i32 = lines.get(1).and_then(|p| p.parse().ok()).expect("a pid");
    assert!(alive(pid), "the line did not run in a worker: {stdout}");
}
