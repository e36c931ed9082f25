//! `npk exporter`: Prometheus metrics of every npk attachment and kernel server on the host.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    noteln,
    stats::exporter::{self, DEFAULT_PORT},
};

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address and port to serve /metrics on (IP:PORT; port 0 picks a free one). The
    /// default serves this host only; another address serves whoever can reach it.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Print where it serves as one JSON object ({"listen": "IP:PORT", "url": ...}) on
    /// stdout once it listens (port 0: the port picked).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ExporterArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing a {name} handler"))
        };
        let (mut term, mut int, mut hup) = (
            install(SignalKind::terminate(), "SIGTERM")?,
            install(SignalKind::interrupt(), "SIGINT")?,
            install(SignalKind::hangup(), "SIGHUP")?,
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            noteln!("note: {addr} is not a loopback address: other hosts can read the metrics");
        }
        if args.json {
            crate::outln!(
                "{}",
                serde_json::json!({"listen": addr.to_string(),
                                   "url": format!("http://{addr}/metrics")})
            )?;
        }
        noteln!("serving metrics on http://{addr}/metrics; Ctrl-C stops");
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {}
            }
        };
        exporter::serve(listener, stop).await?;
        noteln!("exporter stopped");
        Ok(())
    })
}
