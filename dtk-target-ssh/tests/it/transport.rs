//! The SSH transport against a real sshd (Debian's openssh-server, which `./scripts/test`
//! installs): each test starts its own server on 127.0.0.1 and a free port, with a generated
//! host key and user key in a temporary directory, and stops it by PID. Many "nodes" are many
//! work directories on one server.

use dtk_model::render::shell_quote;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sshd::{self, Sshd, current_user, run_files};
use dtk_target_ssh::transport::{
    ExecRequest, HostKeyPolicy, SshError, SshHost, SshPool, SshPoolConfig,
};
use tempfile::TempDir;

/// A test's world: a server, a pool with its control directory, a place for nodes.
struct World {
    sshd: Sshd,
    pool: SshPool,
    tmp: TempDir,
}

impl World {
    fn new() -> World {
        Self::with_limit(16)
    }

    fn with_limit(max_connections: usize) -> World {
        Self::with_config(SshPoolConfig {
            max_connections,
            ..SshPoolConfig::default()
        })
    }

    /// A world whose long-lived shells run jobs as subshells (`true`, the default) or as
    /// sessions of their own (`setsid sh -s`).
    fn with_subshells(subshell_jobs: bool) -> World {
        Self::with_config(SshPoolConfig {
            subshell_jobs,
            ..SshPoolConfig::default()
        })
    }

    fn with_config(config: SshPoolConfig) -> World {
        let sshd = Sshd::start();
        let tmp = tempfile::Builder::new()
            .prefix("dtk-ssh")
            .tempdir()
            .expect("temp dir");
        let pool = SshPool::with_config(tmp.path().join("ctl"), config).expect("pool");
        World { sshd, pool, tmp }
    }

    /// A host entry for the server whose key is already known.
    fn host(&self) -> SshHost {
        let known_hosts = self.tmp.path().join("known_hosts");
        if !known_hosts.exists() {
            self.sshd.write_known_hosts(&known_hosts);
        }
        host_for(&self.sshd, known_hosts, HostKeyPolicy::Strict)
    }

    fn node(&self, name: &str) -> PathBuf {
        self.tmp.path().join("nodes").join(name)
    }
}

fn host_for(sshd: &Sshd, known_hosts: PathBuf, policy: HostKeyPolicy) -> SshHost {
    SshHost::new("127.0.0.1", current_user(), known_hosts)
        .with_port(sshd.port())
        .with_identity_file(sshd.user_key())
        .with_host_key_policy(policy)
        .with_connect_timeout(Duration::from_secs(5))
}

fn req(workdir: &Path) -> ExecRequest {
    ExecRequest::new(workdir.to_str().expect("utf-8 path")).timeout(Duration::from_secs(30))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_quoted_values_are_data_never_code() {
    let w = World::new();
    let pwned = w.tmp.path().join("pwned");
    let p = pwned.display();
    let values = [
        format!("x; touch {p}"),
        format!("$(touch {p})"),
        format!("`touch {p}`"),
        "it's \"quoted\" \\ and\nspans lines".to_owned(),
        format!("' ; touch {p} ; '"),
    ];
    let mut r = req(&w.node("web"));
    for (i, v) in values.iter().enumerate() {
        r = r.env(format!("V{i}"), v.clone());
    }
    r = r
        .line("printf '%s|' \"$V0\" \"$V1\" \"$V2\" \"$V3\" \"$V4\"")
        .line(format!(
            "printf '%s|' {} {}",
            shell_quote(&values[0]),
            shell_quote(&values[4])
        ));
    let out = w.pool.exec(&w.host(), &r).await.expect("exec");
    assert_eq!(out.exit_code, Some(0), "stderr: {}", text(&out.stderr));
    let expected = format!(
        "{}|{}|",
        values.join("|"),
        [&values[0], &values[4]].map(|s| s.as_str()).join("|")
    );
    assert_eq!(text(&out.stdout), expected);
    assert!(!pwned.exists(), "a value was executed");
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtk_output_lines_become_outputs_and_the_file_is_removed() {
    let w = World::new();
    let node = w.node("db/deep/er");
    let r = req(&node)
        .line("echo \"url=http://localhost:8080/?a=b&c=d\" >> \"$DTK_OUTPUT\"")
        .line("printf 'id=%s\\n' 42 >> \"$DTK_OUTPUT\"")
        .line("cd /")
        .line("echo 'after_cd=still works' >> \"$DTK_OUTPUT\"")
        .line("echo not an output line >> \"$DTK_OUTPUT\"")
        .line("echo done");
    let out = w.pool.exec(&w.host(), &r).await.expect("exec");
    assert_eq!(out.exit_code, Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    let outputs: Vec<(&str, &str)> = out
        .outputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("url", "http://localhost:8080/?a=b&c=d"),
            ("id", "42"),
            ("after_cd", "still works")
        ]
    );
    assert!(node.is_dir(), "the work directory is created");
    // The run's files stay while the host's shell lives: they tell "ran" from "never
    // started" if the connection drops before the result arrives. Once dtk has read it, the
    // shell empties them for its next job, and removes them when it ends.
    let first = run_files(&node);
    assert!(first.iter().any(|f| f.ends_with(".done")), "{first:?}");

    // A second action sees none of the first one's outputs.
    let out = w
        .pool
        .exec(&w.host(), &req(&node).line("pwd"))
        .await
        .expect("exec");
    assert_eq!(text(&out.stdout).trim(), node.to_str().expect("utf-8"));
    assert!(out.outputs.is_empty());

    // However many actions run, the node holds one set of files: its shell's.
    for i in 0..40 {
        w.pool
            .exec(&w.host(), &req(&node).line(format!("echo {i}")))
            .await
            .expect("exec");
    }
    let left = run_files(&node);
    assert!(
        left.len() <= 5,
        "{} run files left after 42 actions: {left:?}",
        left.len()
    );
    w.pool.close_all().await;
    assert!(
        run_files(&node).is_empty(),
        "the shell removes the rest as it ends: {:?}",
        run_files(&node)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shells_actions_reuse_one_set_of_run_files_each_seeing_only_its_own() {
    use std::os::unix::fs::MetadataExt as _;
    let w = World::new();
    let node = w.node("reuse");
    // Every file an action can have: stdout, stderr and `$DTK_OUTPUT` written to.
    let action = |i: u32| {
        req(&node)
            .line(format!("echo out{i}; echo err{i} >&2"))
            .line(format!("echo \"n={i}\" >> \"$DTK_OUTPUT\""))
    };
    let files = || {
        let mut v: Vec<(String, u64)> = run_files(&node)
            .into_iter()
            .map(|n| {
                let ino = std::fs::metadata(node.join(&n)).expect("run file").ino();
                (n, ino)
            })
            .collect();
        v.sort();
        v
    };
    let out = w.pool.exec(&w.host(), &action(0)).await.expect("exec");
    assert_eq!(out.outputs, [("n".to_owned(), "0".to_owned())]);
    let first = files();
    assert_eq!(first.len(), 5, "{first:?}");
    for i in 1..8 {
        let out = w.pool.exec(&w.host(), &action(i)).await.expect("exec");
        // Emptied between jobs: nothing of an earlier action's output or outputs shows.
        assert_eq!(text(&out.stdout), format!("out{i}\n"));
        assert_eq!(text(&out.stderr), format!("err{i}\n"));
        assert_eq!(out.outputs, [("n".to_owned(), i.to_string())]);
        // The same files (names and inodes): no new inode per action.
        assert_eq!(files(), first, "action {i}");
    }
    w.pool.close_all().await;
    assert!(
        run_files(&node).is_empty(),
        "the shell removes its files as it ends: {:?}",
        run_files(&node)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_line_ends_the_action_with_its_status_and_stderr() {
    let w = World::new();
    let host = w.host();
    let node = w.node("app");

    let r = req(&node)
        .line("echo one")
        .line("echo bad >&2; exit 3")
        .line("echo never");
    let out = w
        .pool
        .exec(&host, &r)
        .await
        .expect("a failing action is not an error");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(text(&out.stdout), "one\n");
    assert_eq!(text(&out.stderr), "bad\n");
    assert!(!out.success());

    let r = req(&node).line("true").line("false").line("echo never");
    let out = w.pool.exec(&host, &r).await.expect("exec");
    assert_eq!((out.exit_code, text(&out.stdout)), (Some(1), String::new()));

    // 255 is ssh's own failure status too: the transport tells them apart.
    let out = w
        .pool
        .exec(&host, &req(&node).line("exit 255"))
        .await
        .expect("exec");
    assert_eq!(out.exit_code, Some(255));

    // A syntax error fails its own line only; later lines are not swallowed.
    let r = req(&node).line("if then").line("echo never");
    let out = w.pool.exec(&host, &r).await.expect("exec");
    assert_eq!(out.exit_code, Some(2));
    assert!(
        text(&out.stderr).contains("then"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");

    // Commands read /dev/null, not the rest of the script.
    let r = req(&node).line("cat").line("echo after");
    let out = w.pool.exec(&host, &r).await.expect("exec");
    assert_eq!(
        (out.exit_code, text(&out.stdout)),
        (Some(0), "after\n".to_owned())
    );

    // A script shell killed by a signal has no exit code. (`$$` would not do: in a subshell
    // job it names the host's long-lived shell. The pid file's first word is the script's.)
    let out = w
        .pool
        .exec(
            &host,
            &req(&node).line("read -r p x < \"${DTK_OUTPUT%.out}.pid\"; kill -KILL $p"),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, None);
    w.pool.close_all().await;
    assert_eq!(
        run_files(&node),
        Vec::<String>::new(),
        "no run file is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_policy_refuses_an_unknown_host_key() {
    let w = World::new();
    let known_hosts = w.tmp.path().join("empty_known_hosts");
    std::fs::write(&known_hosts, "").expect("write");
    let host = host_for(&w.sshd, known_hosts.clone(), HostKeyPolicy::Strict);
    let err = w
        .pool
        .exec(&host, &req(&w.node("a")).line("true"))
        .await
        .expect_err("refused");
    let SshError::HostKeyUnknown { fingerprint, .. } = &err else {
        panic!("expected HostKeyUnknown, got {err:?}");
    };
    let fingerprint = fingerprint
        .as_deref()
        .expect("the offered fingerprint is shown");
    assert!(
        fingerprint.starts_with(&w.sshd.host_fingerprint()),
        "{fingerprint}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", w.sshd.port())),
        "{message}"
    );
    assert!(
        message.contains(&known_hosts.display().to_string()),
        "{message}"
    );
    assert!(message.contains("strict"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("read"),
        "",
        "nothing recorded"
    );
    assert_eq!(w.sshd.accepted_logins(), 0);
    assert!(!w.node("a").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_records_the_key_and_a_changed_key_is_refused_by_every_policy() {
    let mut w = World::new();
    let known_hosts = w.tmp.path().join("tofu_known_hosts");
    let tofu = host_for(&w.sshd, known_hosts.clone(), HostKeyPolicy::TrustOnFirstUse);
    let strict = host_for(&w.sshd, known_hosts.clone(), HostKeyPolicy::Strict);

    let out = w
        .pool
        .exec(&tofu, &req(&w.node("a")).line("echo hi"))
        .await
        .expect("tofu");
    assert_eq!(text(&out.stdout), "hi\n");
    let recorded = std::fs::read_to_string(&known_hosts).expect("known_hosts written");
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", w.sshd.port())),
        "{recorded}"
    );
    // Now known, the key passes the strict policy too.
    w.pool
        .exec(&strict, &req(&w.node("a")).line("true"))
        .await
        .expect("strict");

    w.sshd.restart_with_new_host_key();
    let new_fingerprint = w.sshd.host_fingerprint();
    for host in [&tofu, &strict] {
        let err = w
            .pool
            .exec(host, &req(&w.node("a")).line("true"))
            .await
            .expect_err("refused");
        let SshError::HostKeyChanged { fingerprint, .. } = &err else {
            panic!(
                "expected HostKeyChanged for {:?}, got {err:?}",
                host.host_key_policy
            );
        };
        assert_eq!(fingerprint.as_deref(), Some(new_fingerprint.as_str()));
        let message = err.to_string();
        assert!(message.contains("man-in-the-middle"), "{message}");
        assert!(
            message.contains(&known_hosts.display().to_string()),
            "{message}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("read"),
        recorded,
        "untouched"
    );
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_does_not_accept_is_refused() {
    let w = World::new();
    let other = w.tmp.path().join("other_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let host = w.host().with_identity_file(&other);
    let err = w
        .pool
        .exec(&host, &req(&w.node("a")).line("true"))
        .await
        .expect_err("refused");
    assert!(matches!(err, SshError::AuthRefused { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&other.display().to_string()), "{message}");
    assert!(message.contains(&format!("{}@127.0.0.1:{}", current_user(), w.sshd.port())));
    let private = std::fs::read_to_string(&other).expect("key");
    let secret_line = private.lines().nth(1).expect("key body");
    assert!(!message.contains(secret_line) && !format!("{err:?}").contains(secret_line));
    assert!(!err.is_transient());

    // The right key, readable by others: ssh ignores it, and the error says why.
    let loose = w.tmp.path().join("loose_key");
    std::fs::copy(w.sshd.user_key(), &loose).expect("copy");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let host = w.host().with_identity_file(&loose);
    let err = w
        .pool
        .exec(&host, &req(&w.node("a")).line("true"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("too open"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_that_action_only_and_the_next_one_reconnects() {
    let a = World::new();
    let b = Sshd::start();
    let b_known = a.tmp.path().join("b_known_hosts");
    b.write_known_hosts(&b_known);
    let host_a = a.host();
    let host_b = host_for(&b, b_known, HostKeyPolicy::Strict);
    let pool = a.pool.clone();

    pool.exec(&host_a, &req(&a.node("a")).line("true"))
        .await
        .expect("warm a");
    pool.exec(&host_b, &req(&a.node("b")).line("true"))
        .await
        .expect("warm b");

    let long = {
        let (pool, host, r) = (
            pool.clone(),
            host_a.clone(),
            req(&a.node("a")).line("sleep 30"),
        );
        tokio::spawn(async move { pool.exec(&host, &r).await })
    };
    let other = {
        let r = req(&a.node("b")).line("sleep 2").line("echo fine");
        let (pool, host) = (pool.clone(), host_b.clone());
        tokio::spawn(async move { pool.exec(&host, &r).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dropped_at = Instant::now();
    a.sshd.drop_connections();

    let err = long
        .await
        .expect("join")
        .expect_err("the action on a fails");
    assert!(
        matches!(err, SshError::ConnectionDropped { port, .. } if port == a.sshd.port()),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        dropped_at.elapsed() < Duration::from_secs(10),
        "noticed promptly"
    );
    let out = other.await.expect("join").expect("b is unaffected");
    assert_eq!(text(&out.stdout), "fine\n");

    let out = pool
        .exec(&host_a, &req(&a.node("a")).line("echo back"))
        .await
        .expect("reconnects");
    assert_eq!(text(&out.stdout), "back\n");
    assert_eq!(a.sshd.accepted_logins(), 2, "one new connection");
    assert_eq!(b.accepted_logins(), 1, "b kept its connection");
    pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_every_action_on_a_host() {
    let w = World::new();
    let host = w.host();
    for i in 0..20 {
        let node = w.node(&format!("n{}", i % 4));
        let out = w
            .pool
            .exec(&host, &req(&node).line(format!("echo {i}")))
            .await
            .expect("exec");
        assert_eq!(text(&out.stdout), format!("{i}\n"));
    }
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (pool, host, r) = (
                w.pool.clone(),
                host.clone(),
                req(&w.node(&format!("c{i}"))).line("true"),
            );
            tokio::spawn(async move { pool.exec(&host, &r).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("exec");
    }
    assert_eq!(w.sshd.accepted_logins(), 1, "26 actions, one connection");
    let sockets = std::fs::read_dir(w.pool.control_dir())
        .expect("control dir")
        .count();
    assert_eq!(sockets, 1, "one control socket");
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_twenty_nodes_runs_concurrently_within_the_limit() {
    let w = World::with_limit(5);
    let host = w.host();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let r = req(&w.node(&format!("node{i}")))
                .env("NODE", format!("node{i}"))
                .line("date +%s%N > start")
                .line("sleep 0.4")
                .line("echo \"$NODE\" > marker")
                .line("date +%s%N > end");
            let (pool, host) = (w.pool.clone(), host.clone());
            tokio::spawn(async move { pool.exec(&host, &r).await })
        })
        .collect();
    for t in tasks {
        let out = t.await.expect("join").expect("exec");
        assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
    }
    let read_ns = |path: PathBuf| -> u128 {
        std::fs::read_to_string(&path)
            .expect("timestamp")
            .trim()
            .parse()
            .expect("number")
    };
    let mut events = Vec::new();
    for i in 0..20 {
        let dir = w.node(&format!("node{i}"));
        let marker = std::fs::read_to_string(dir.join("marker")).expect("marker");
        assert_eq!(marker, format!("node{i}\n"));
        events.push((read_ns(dir.join("start")), 1i32));
        events.push((read_ns(dir.join("end")), -1i32));
    }
    // The most actions running at one instant, from their own start and end times.
    events.sort();
    let peak = events
        .iter()
        .scan(0, |running, &(_, step)| {
            *running += step;
            Some(*running)
        })
        .max()
        .expect("events");
    assert!(peak <= 5, "the limit of 5 was exceeded: {peak} at once");
    assert!(peak >= 2, "the actions did not overlap at all");
    assert_eq!(
        w.sshd.accepted_logins(),
        1,
        "twenty nodes on one host, one connection"
    );
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_past_its_timeout_is_stopped_on_the_node() {
    let w = World::new();
    let host = w.host();
    let node = w.node("slow");
    let r = req(&node)
        .line("sleep 37.25")
        .timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = w.pool.exec(&host, &r).await.expect_err("times out");
    assert!(
        matches!(err, SshError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sshd::process_running(&["sleep", "37.25"]) {
        assert!(Instant::now() < deadline, "the remote command still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run_files(&node).len(), 0);
    let out = w
        .pool
        .exec(&host, &req(&node).line("echo next"))
        .await
        .expect("still usable");
    assert_eq!(text(&out.stdout), "next\n");
    assert_eq!(w.sshd.accepted_logins(), 1);
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_silent_or_closed_port_fails_clearly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pool = SshPool::new(tmp.path().join("ctl"), 4).expect("pool");
    let known_hosts = tmp.path().join("known_hosts");

    // Accepts TCP (the kernel does) but never speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let host = SshHost::new("127.0.0.1", current_user(), &known_hosts)
        .with_port(port)
        .with_connect_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = pool
        .exec(&host, &req(tmp.path()).line("true"))
        .await
        .expect_err("times out");
    assert!(
        matches!(err, SshError::ConnectTimeout { port: p, .. } if p == port),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(silent);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let err = pool
        .exec(&host.clone().with_port(port), &req(tmp.path()).line("true"))
        .await
        .expect_err("refused");
    assert!(matches!(err, SshError::ConnectFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_ends_the_masters_and_the_pool_stays_usable() {
    let w = World::new();
    let host = w.host();
    w.pool
        .exec(&host, &req(&w.node("a")).line("true"))
        .await
        .expect("exec");
    assert!(w.sshd.connection_processes() > 0);
    w.pool.close_all().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.sshd.connection_processes() > 0 {
        assert!(Instant::now() < deadline, "the connection is still served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_dir(w.pool.control_dir())
            .expect("dir")
            .count(),
        0
    );
    w.pool
        .exec(&host, &req(&w.node("a")).line("true"))
        .await
        .expect("reconnects");
    assert_eq!(w.sshd.accepted_logins(), 2);
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_host_is_checked_like_the_target() {
    let w = World::new();
    let jump = format!("{}@127.0.0.1:{}", current_user(), w.sshd.port());
    let host = w.host().with_jump_host(jump);
    let out = w
        .pool
        .exec(&host, &req(&w.node("j")).line("echo via"))
        .await
        .expect("exec");
    assert_eq!(text(&out.stdout), "via\n");
    assert_eq!(
        w.sshd.accepted_logins(),
        2,
        "one login on the jump host, one on the target"
    );
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_without_showing_values() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pool = SshPool::new(tmp.path().join("ctl"), 4).expect("pool");
    let host = SshHost::new("127.0.0.1", "nobody", tmp.path().join("kh")).with_port(1);
    let r = req(tmp.path()).env("BAD-NAME", "s3cret-value").line("true");
    let err = pool.exec(&host, &r).await.expect_err("refused");
    assert!(matches!(err, SshError::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("BAD-NAME"));
    assert!(!format!("{err} {err:?} {r:?}").contains("s3cret-value"));

    let host = SshHost::new("-oProxyCommand=evil", "nobody", tmp.path().join("kh"));
    let err = pool
        .exec(&host, &req(tmp.path()).line("true"))
        .await
        .expect_err("refused");
    assert!(matches!(err, SshError::InvalidHost { .. }), "{err:?}");

    let config = SshPoolConfig::default();
    assert!(config.max_connections > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_run_like_the_local_target() {
    let w = World::new();
    let host = w.host();
    let node = w.node("web");
    // Each line is its own shell: a cd or a variable does not carry over, the environment does.
    let r = req(&node)
        .env("GREETING", "hi")
        .line("cd / && X=1")
        .line("pwd; echo \"${X:-unset} $GREETING\"")
        .line("echo to-stderr >&2");
    let out = w.pool.exec(&host, &r).await.expect("exec");
    let expected = format!("{}\nunset hi\n", node.display());
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (expected, "to-stderr\n".to_owned())
    );

    // A line that leaves a background process does not hold the action open.
    let started = Instant::now();
    let r = req(&node).line("sleep 6.75 &").line("echo started");
    let out = w.pool.exec(&host, &r).await.expect("exec");
    assert_eq!(text(&out.stdout), "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_action_is_stopped_on_the_node() {
    let w = World::new();
    let host = w.host();
    let node = w.node("c");
    let cancel = dtk_model::provider::Cancel::new();
    let r = req(&node).line("sleep 38.25").cancel(cancel.clone());
    let task = {
        let (pool, host) = (w.pool.clone(), host.clone());
        tokio::spawn(async move { pool.exec(&host, &r).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    cancel.cancel();
    let err = task.await.expect("join").expect_err("cancelled");
    assert!(matches!(err, SshError::Cancelled { .. }), "{err:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sshd::process_running(&["sleep", "38.25"]) {
        assert!(Instant::now() < deadline, "the remote command still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.pool.close_all().await;
}

/// A line printing its script shell's pid, parent pid, session and parent's name. The line
/// runs in a subshell of the script's shell (`/proc/self` while `read`, a builtin, runs):
/// field 4 of its stat is the script shell; of that one's, 4 is its parent, 6 its session.
/// (`$$` will not do: in a subshell job it names the long-lived shell.)
const PROBE: &str = "read -r x x x j x < /proc/self/stat; read -r x x x p x s x < /proc/$j/stat; echo $j $p $s $(cat /proc/$p/comm)";

/// `(pid, parent pid, session id)` of an action's script shell, from the [`PROBE`] line it
/// ran; its parent must be a shell, not sshd (which is every session's parent).
fn script_shell(out: &[u8]) -> (u32, u32, u32) {
    let text = text(out);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{text:?}");
    assert_ne!(
        words[3], "sshd",
        "the script's shell was started by sshd: a session of its own, not a job of a shell"
    );
    let n = |w: &str| w.parse().expect("a number");
    (n(words[0]), n(words[1]), n(words[2]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_a_host_share_one_long_lived_shell_each_a_subshell_of_it() {
    actions_share_one_long_lived_shell(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_a_host_share_one_long_lived_shell_each_in_a_session_of_its_own() {
    actions_share_one_long_lived_shell(false).await;
}

async fn actions_share_one_long_lived_shell(subshells: bool) {
    let w = World::with_subshells(subshells);
    let host = w.host();
    let node = w.node("n");
    let probe = PROBE;
    let mut shells = Vec::new();
    for i in 0..8 {
        let out = w
            .pool
            .exec(&host, &req(&node).env("N", i.to_string()).line(probe))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
        shells.push(script_shell(&out.stdout));
    }
    let parents: std::collections::BTreeSet<u32> = shells.iter().map(|s| s.1).collect();
    assert_eq!(
        parents.len(),
        1,
        "eight actions in a row, one shell on the node: {shells:?}"
    );
    let pids: std::collections::BTreeSet<u32> = shells.iter().map(|s| s.0).collect();
    assert_eq!(pids.len(), 8, "each action has a script shell of its own");
    for (pid, parent, sid) in &shells {
        if subshells {
            // A fork of the long-lived shell, in its session.
            let shell_sid = std::fs::read_to_string(format!("/proc/{parent}/stat"))
                .expect("the shell's stat")
                .split(' ')
                .nth(5)
                .map(str::to_owned);
            assert_eq!(Some(sid.to_string()), shell_sid, "{shells:?}");
            assert_ne!(pid, sid, "{shells:?}");
        } else {
            assert_eq!(
                pid, sid,
                "each action leads a session of its own: {shells:?}"
            );
        }
    }

    // A line's environment and directory do not carry over to the next action in the shell.
    let out = w
        .pool
        .exec(&host, &req(&node).line("echo \"[$N]\" && pwd"))
        .await
        .expect("exec");
    assert_eq!(text(&out.stdout), format!("[]\n{}\n", node.display()));

    // Stderr, status and outputs come back apart from stdout, in the same shell.
    let out = w
        .pool
        .exec(
            &host,
            &req(&node)
                .line("echo out; echo err >&2; echo k=v >> \"$DTK_OUTPUT\"")
                .line("echo more >&2; exit 7"),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\nmore\n");
    assert_eq!(out.outputs, vec![("k".to_owned(), "v".to_owned())]);
    let out = w
        .pool
        .exec(&host, &req(&node).line(probe))
        .await
        .expect("exec");
    assert_eq!(script_shell(&out.stdout).1, shells[0].1, "the same shell");
    assert_eq!(w.sshd.accepted_logins(), 1);
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_its_own_subshell_job_and_not_a_server_an_earlier_action_left_running() {
    a_timeout_stops_its_own_action_only(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_its_own_action_and_not_a_server_an_earlier_action_left_running() {
    a_timeout_stops_its_own_action_only(false).await;
}

async fn a_timeout_stops_its_own_action_only(subshells: bool) {
    let w = World::with_subshells(subshells);
    let host = w.host();
    let node = w.node("srv");
    let out = w
        .pool
        .exec(
            &host,
            &req(&node).line("sleep 41.75 >/dev/null 2>&1 & echo $! > server.pid"),
        )
        .await
        .expect("start the server");
    assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
    let server: i32 = std::fs::read_to_string(node.join("server.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let stop_server = || {
        let _ = std::process::Command::new("kill")
            .arg(server.to_string())
            .status();
    };

    let err = w
        .pool
        .exec(
            &host,
            &req(&node)
                .line("sleep 37.75")
                .timeout(Duration::from_secs(1)),
        )
        .await
        .expect_err("times out");
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sshd::process_running(&["sleep", "37.75"]) {
        if Instant::now() > deadline {
            stop_server();
            panic!("the timed-out command still runs");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_runs = sshd::process_running(&["sleep", "41.75"]);
    let out = w
        .pool
        .exec(&host, &req(&node).line("echo next"))
        .await
        .expect("the host is still usable");
    stop_server();
    assert!(
        server_runs,
        "stopping the timed-out action also stopped the server an earlier action started"
    );
    assert_eq!(text(&out.stdout), "next\n");
    assert_eq!(w.sshd.accepted_logins(), 1);
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_master_serves_the_next_pool_and_a_dropped_one_does_not() {
    let w = World::new();
    let host = w.host();
    let node = w.node("k");
    let pool_with = |keep_masters: bool| {
        SshPool::with_config(
            w.tmp.path().join("ctl2"),
            SshPoolConfig {
                keep_masters,
                ..SshPoolConfig::default()
            },
        )
        .expect("pool")
    };
    let run = |pool: SshPool| {
        let (host, r) = (host.clone(), req(&node).line("echo hi"));
        async move {
            let out = pool.exec(&host, &r).await.expect("exec");
            assert_eq!(text(&out.stdout), "hi\n");
        }
    };
    // The first command keeps its master; the next adopts it: no second login.
    run(pool_with(true)).await;
    // The dropped pool's shell ended with it, and removed its runs' files.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run_files(&node).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", run_files(&node));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run(pool_with(true)).await;
    assert_eq!(w.sshd.accepted_logins(), 1, "the kept master was adopted");
    // A pool that does not keep its master ends it when dropped: the next one connects.
    run(pool_with(false)).await;
    run(pool_with(false)).await;
    assert_eq!(w.sshd.accepted_logins(), 2);
    // close_all ends a kept master too.
    let pool = pool_with(true);
    run(pool.clone()).await;
    assert_eq!(w.sshd.accepted_logins(), 3);
    pool.close_all().await;
    run(pool_with(false)).await;
    assert_eq!(w.sshd.accepted_logins(), 4);

    // A kept master that died without removing its socket (killed): the next pool adopts the
    // socket, finds nobody behind it, connects again and runs the action.
    run(pool_with(true)).await;
    assert_eq!(w.sshd.accepted_logins(), 5);
    let sockets: Vec<PathBuf> = std::fs::read_dir(w.tmp.path().join("ctl2"))
        .expect("control dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let check = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-o"])
        .arg(format!("ControlPath={}", sockets[0].display()))
        .args(["-O", "check", "-p", &w.sshd.port().to_string(), "127.0.0.1"])
        .output()
        .expect("ssh -O check");
    let said = text(&check.stderr);
    let pid: String = said
        .split("pid=")
        .nth(1)
        .expect("the master's pid")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sockets[0].exists(), "the socket stays behind");
    run(pool_with(true)).await;
    assert_eq!(w.sshd.accepted_logins(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_travels_through_the_hosts_shell_byte_for_byte() {
    let w = World::new();
    let host = w.host();
    let node = w.node("up");
    let probe = PROBE;
    let out = w
        .pool
        .exec(&host, &req(&node).line(probe))
        .await
        .expect("exec");
    let (_, shell, _) = script_shell(&out.stdout);

    // Every byte value, more than one base64 line and one pipe buffer of it.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    archive
        .append_data(&mut header, "bin/data", data.as_slice())
        .expect("archive");
    let archive = archive.into_inner().expect("archive");
    // `$$` in the upload's program is the shell that runs it.
    w.pool
        .upload(
            &host,
            node.to_str().expect("utf-8"),
            "modules/m",
            archive,
            "echo $$ > ran-in\n",
            Duration::from_secs(30),
        )
        .await
        .expect("upload");
    let placed = std::fs::read(node.join("modules/m/bin/data")).expect("placed");
    assert!(placed == data, "the file arrived changed");
    let ran_in: u32 = std::fs::read_to_string(node.join("modules/m/ran-in"))
        .expect("ran")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(
        ran_in, shell,
        "the upload ran in the host's long-lived shell"
    );

    // A failing unpack (a file where its directory should be) is an error naming what
    // failed, and the shell goes on.
    let err = w
        .pool
        .upload(
            &host,
            node.to_str().expect("utf-8"),
            "modules/m/bin/data",
            b"anything".to_vec(),
            "true\n",
            Duration::from_secs(30),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, SshError::SessionFailed { detail, .. } if detail.contains("data")),
        "{err:?}"
    );
    let out = w
        .pool
        .exec(&host, &req(&node).line(probe))
        .await
        .expect("exec");
    assert_eq!(script_shell(&out.stdout).1, shell, "the same shell");
    assert_eq!(w.sshd.accepted_logins(), 1);
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shell_ends_and_takes_its_runs_files_with_it() {
    let w = World::new();
    let pool = SshPool::with_config(
        w.tmp.path().join("ctl3"),
        SshPoolConfig {
            shell_idle_timeout: Duration::from_millis(300),
            ..SshPoolConfig::default()
        },
    )
    .expect("pool");
    let host = w.host();
    let node = w.node("idle");
    let probe = PROBE;
    let out = pool
        .exec(&host, &req(&node).line(probe))
        .await
        .expect("exec");
    let (_, shell, _) = script_shell(&out.stdout);
    assert!(!run_files(&node).is_empty(), "kept while the shell lives");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run_files(&node).is_empty() || std::path::Path::new(&format!("/proc/{shell}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the idle shell {shell} still runs, or left {:?}",
            run_files(&node)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next action opens a new shell on the same connection.
    let out = pool
        .exec(&host, &req(&node).line(probe))
        .await
        .expect("exec");
    assert_ne!(script_shell(&out.stdout).1, shell);
    assert_eq!(w.sshd.accepted_logins(), 1);
    pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_larger_than_a_pipe_reaches_its_shell_whole() {
    let w = World::new();
    let host = w.host();
    let node = w.node("big");
    // 104 KB of value (a pipe holds 64 KB; one environment string may be 128 KB) with every
    // quote and backslash a shell could trip on.
    let value: String = "a'b\"c\\d$e`f\n".repeat(8_000);
    let out = w
        .pool
        .exec(
            &host,
            &req(&node)
                .env("BIG", value.clone())
                .line("printf '%s' \"$BIG\" > big.txt")
                .line("echo done"),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    let written = std::fs::read_to_string(node.join("big.txt")).expect("written");
    assert!(written == value, "the value arrived changed");
    w.pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_shell_will_not_start_gets_a_session_per_action() {
    let w = World::new();
    // An ssh that refuses the long-lived shell (its first line is the probe's), as an odd
    // login shell or server might, and passes everything else through.
    let wrapper = w.tmp.path().join("ssh-no-shells");
    std::fs::write(
        &wrapper,
        r#"#!/bin/sh
for last; do :; done
if [ "$last" = "exec sh -s" ]; then
    IFS= read -r first
    if [ "$first" = "exec 2>&1" ]; then
        echo "this login shell cannot run that" >&2
        exit 1
    fi
    { printf '%s\n' "$first"; cat; } | ssh "$@"
    exit $?
fi
exec ssh "$@"
"#,
    )
    .expect("wrapper");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pool = SshPool::with_config(
        w.tmp.path().join("ctl4"),
        SshPoolConfig {
            ssh_program: wrapper,
            ..SshPoolConfig::default()
        },
    )
    .expect("pool");
    let host = w.host();
    let node = w.node("plain");
    for i in 0..3 {
        let out = pool
            .exec(&host, &req(&node).line(format!("echo {i}; {PROBE} >&2")))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{i}\n"));
        let parent = text(&out.stderr);
        assert!(
            parent.trim_end().ends_with("sshd"),
            "a session of its own: {parent}"
        );
    }
    pool.upload(
        &host,
        node.to_str().expect("utf-8"),
        "m",
        {
            let mut a = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            a.append_data(&mut h, "f", &b"abc"[..]).expect("archive");
            a.into_inner().expect("archive")
        },
        "true\n",
        Duration::from_secs(30),
    )
    .await
    .expect("upload in a session");
    assert_eq!(std::fs::read(node.join("m/f")).expect("placed"), b"abc");
    assert_eq!(w.sshd.accepted_logins(), 1);
    pool.close_all().await;
}
