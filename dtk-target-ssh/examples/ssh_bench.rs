//! The pooled side of `scripts/bench-ssh`: runs NODES × ACTIONS actions through one
//! [`SshPool`], each node's actions in order (as a converge runs them), nodes concurrently,
//! and prints the wall time in seconds.
//!
//! Node `n` is the host `127.0.0.n` (every loopback address reaches the benchmark's sshd),
//! so each node gets its own master connection as distinct machines would.
//!
//! ```text
//! ssh_bench --port P --user U --key KEY --known-hosts FILE --dir NODES_DIR \
//!           --control-dir DIR [--nodes 50] [--actions 10] [--parallel 16]
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dtk_target_ssh::transport::{ExecRequest, SshHost, SshPool, SshPoolConfig};

struct Args {
    port: u16,
    user: String,
    key: PathBuf,
    known_hosts: PathBuf,
    dir: PathBuf,
    control_dir: PathBuf,
    nodes: u32,
    actions: u32,
    parallel: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        user: String::new(),
        key: PathBuf::new(),
        known_hosts: PathBuf::new(),
        dir: PathBuf::new(),
        control_dir: PathBuf::new(),
        nodes: 50,
        actions: 10,
        parallel: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--port" => args.port = number(&value)?.try_into().map_err(|_| "bad port")?,
            "--user" => args.user = value,
            "--key" => args.key = value.into(),
            "--known-hosts" => args.known_hosts = value.into(),
            "--dir" => args.dir = value.into(),
            "--control-dir" => args.control_dir = value.into(),
            "--nodes" => args.nodes = number(&value)?.clamp(1, 254),
            "--actions" => args.actions = number(&value)?,
            "--parallel" => args.parallel = number(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.port == 0 || args.user.is_empty() || args.dir.as_os_str().is_empty() {
        return Err(
            "--port, --user, --key, --known-hosts, --dir and --control-dir are required".to_owned(),
        );
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ssh_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let config = SshPoolConfig {
        max_connections: args.parallel,
        ..SshPoolConfig::default()
    };
    let pool = match SshPool::with_config(&args.control_dir, config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ssh_bench: {e}");
            return ExitCode::FAILURE;
        }
    };

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=args.nodes {
        let host = SshHost::new(format!("127.0.0.{n}"), &args.user, &args.known_hosts)
            .with_port(args.port)
            .with_identity_file(&args.key);
        let workdir = args.dir.join(format!("node-{n}")).display().to_string();
        let (pool, actions) = (pool.clone(), args.actions);
        tasks.spawn(async move {
            for a in 1..=actions {
                let req = ExecRequest::new(workdir.clone())
                    .env("ACTION", a.to_string())
                    .line("echo \"action $ACTION\" > \"file-$ACTION\"");
                match pool.exec(&host, &req).await {
                    Ok(out) if out.success() => {}
                    Ok(out) => {
                        return Err(format!(
                            "{}: action {a} exited with {:?}: {}",
                            host.address,
                            out.exit_code,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    Err(e) => return Err(format!("{}: action {a}: {e}", host.address)),
                }
            }
            Ok(())
        });
    }
    let mut failed = false;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("ssh_bench: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("ssh_bench: a node task failed: {e}");
                failed = true;
            }
        }
    }
    let elapsed = started.elapsed();
    pool.close_all().await;
    if failed {
        return ExitCode::FAILURE;
    }
    println!("{:.3}", elapsed.as_secs_f64());
    ExitCode::SUCCESS
}
