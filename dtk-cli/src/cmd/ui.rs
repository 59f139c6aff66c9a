//! `dtk ui`: serve the read-only web view of this `DTK_HOME` (the `dtk-ui` crate).

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use crate::Ctx;

/// `dtk ui` arguments.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The address to listen on; port 0 picks a free port. Another address than loopback
    /// makes every service's state (never a secret) readable from other machines
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
}

/// Serves until Ctrl-C (or SIGTERM).
pub fn run(args: UiArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let home = ctx.open_home()?;
    let loopback = args.listen.ip().is_loopback();
    if !loopback {
        let mut err = std::io::stderr().lock();
        let _ = std::io::Write::write_all(
            &mut err,
            format!(
                "warning: dtk ui listens on {}, not on loopback: anyone who can reach it sees \
                 every service's nodes, components, outputs and runs (secrets are never shown)\n",
                args.listen
            )
            .as_bytes(),
        );
    }
    // A server of many connections at once: a thread per core, not the one of a
    // task-running command.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        #[derive(Serialize)]
        struct Doc {
            url: String,
            listen: String,
        }
        let doc = Doc {
            url: format!("http://{host}:{}/", addr.port()),
            listen: addr.to_string(),
        };
        ctx.out.emit("dtk.ui/v1", &doc, |w| {
            writeln!(w, "dtk ui: serving {} (read-only; Ctrl-C to stop)", doc.url)
        })?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        };
        dtk_ui::serve(
            listener,
            home,
            dtk_ui::ServeOptions {
                loopback_hosts_only: loopback,
            },
            shutdown,
        )
        .await
        .context("the web server failed")
    })
}
