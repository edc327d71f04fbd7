//! `missionctl demo-model`

use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: std::net::SocketAddr,
    /// Added latency per answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Refuse requests longer than this many tokens with HTTP 400
    /// `context_length_exceeded`, as OpenAI does (default: no limit).
    #[arg(long)]
    pub context_window: Option<u64>,
    /// Append every request body to this file as JSON lines.
    #[arg(long)]
    pub request_log: Option<std::path::PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = missionctl::runtime()?;
    rt.block_on(async {
        let s = missionctl::eval::demo_model::start(
            a.listen,
            missionctl::eval::demo_model::DemoConfig {
                latency: Duration::from_millis(a.latency_ms),
                context_window: a.context_window,
                request_log: a.request_log.map(std::sync::Arc::new),
                ..Default::default()
            },
        )
        .await?;
        outln!(
            "missionctl demo model listening on {} (a deterministic stand-in for an OpenAI-compatible model, not a language model)",
            s.url()
        );
        tokio::signal::ctrl_c().await?;
        s.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
