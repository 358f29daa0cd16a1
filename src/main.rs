use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use breakroom::config::{Cli, Command, ServeConfig};
use breakroom::labs::{self, StageCommand};
use breakroom::platform::{db::Db, telemetry};

/// How long in-flight requests may take to finish after SIGTERM/Ctrl-C.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime");
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve(args.port, args.bind, ServeConfig::from(args)).await.map(|()| 0),
        Command::Seed(args) => seed(args).await.map(|()| 0),
        Command::Demonstrate(args) => stage(StageCommand::Demonstrate, args).await,
        Command::Check(args) => stage(StageCommand::Check, args).await,
        Command::Reset(args) => stage(StageCommand::Reset, args).await,
        Command::Drive(args) => {
            telemetry::init_logs_only();
            breakroom::driver::run(args).await.map_err(anyhow::Error::from)
        }
        Command::Rehearse(args) => {
            // No log output: the servers it starts would drown the table in expected errors.
            breakroom::rehearse::run(args).await.map_err(anyhow::Error::from)
        }
        Command::Scenarios(args) => {
            print!("{}", breakroom::rehearse::list(&args));
            Ok(0)
        }
        Command::Explain(args) => {
            print!("{}", labs::explain(args.lab));
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("breakroom: {error:#}");
            ExitCode::from(breakroom::stage::EXIT_TROUBLE)
        }
    }
}

async fn stage(command: StageCommand, args: breakroom::config::StageArgs) -> anyhow::Result<u8> {
    telemetry::init_logs_only();
    Ok(labs::stage(command, &args).await?)
}

async fn seed(args: breakroom::config::SeedArgs) -> anyhow::Result<()> {
    telemetry::init(args.lab.service_name(), None)?;
    let backend = &args.backend;
    let database_url = backend.database_url.as_deref().filter(|u| !u.is_empty());
    let db = Db::open(database_url, &backend.data_dir, args.lab.as_str(), backend.db_max_connections).await?;
    let summary = labs::seed(args.lab, &db, &args).await?;
    db.close().await;
    eprintln!("{summary}");
    Ok(())
}

async fn serve(port: u16, bind: IpAddr, config: ServeConfig) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(config.lab.service_name(), config.otlp_endpoint.as_deref())?;
    let shutdown = CancellationToken::new();
    let app = breakroom::build(config, shutdown.clone()).await?;
    let address = SocketAddr::new(bind, port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}: is another program using port {port}? Try --port"))?;
    let token_file = app.platform.write_generated_token()?;
    print_banner(&app.platform, listener.local_addr()?, token_file.as_deref());
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests, ending event streams");
        shutdown.cancel();
        // A second Ctrl-C, or a drain that hangs on a stuck client, ends the process now.
        tokio::select! {
            _ = wait_for_signal() => eprintln!("breakroom: second signal, exiting without waiting"),
            _ = tokio::time::sleep(DRAIN_LIMIT) => eprintln!("breakroom: requests still open after {DRAIN_LIMIT:?}; exiting"),
        }
        std::process::exit(1);
    });
    breakroom::serve(app, listener).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// What a speaker needs at a glance, on stderr so stdout stays JSON log lines.
fn print_banner(platform: &breakroom::platform::Platform, local: SocketAddr, token_file: Option<&std::path::Path>) {
    let config = &platform.config;
    let host = if local.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { local.ip() };
    let base = format!("http://{}", SocketAddr::new(host, local.port()));
    let lab = config.lab.as_str();
    let mut lines = vec![format!("breakroom {} · {lab} lab · listening on {local}", config.app_version)];
    if config.lab == labs::LabName::Datasets {
        lines.push(format!("  datasets       {base}/api/datasets/   (Authorization: Token alice-token)"));
        lines.push(format!("  statistics     {base}/api/datasets/{}/statistics/", labs::datasets::FLAGSHIP_ID));
    }
    if config.lab == labs::LabName::Items {
        lines.push(format!("  items          {base}/items"));
        lines.push(format!("  cache stats    {base}/cache/stats"));
    }
    let audience_base = config.public_url.clone().unwrap_or_else(|| base.clone());
    if config.lab == labs::LabName::Vote {
        lines.push(format!("  vote page      {}", labs::vote::vote_url(&audience_base)));
        lines.push(format!("  referral link  {}", labs::vote::referral_url(&audience_base)));
        lines.push(format!("  results        {base}/results"));
        lines.push(format!("  presenter      {base}/presenter"));
        lines.push(format!("  admin          {base}/admin"));
    }
    for bug in platform.bugs.states() {
        let hint = if bug.fixed { String::new() } else { format!("   (fix: --fixed {})", bug.name) };
        lines.push(format!("  bug {:<10} {}{hint}", bug.name, bug.mode.to_uppercase()));
    }
    let database = match &config.backend.database_url {
        Some(url) => format!("postgres {}", breakroom::platform::db::redact(url)),
        None => format!("sqlite {}", config.backend.data_dir.join(format!("{lab}.db")).display()),
    };
    lines.push(format!("  database       {database}"));
    let live =
        config.backend.redis_url.as_deref().map(breakroom::platform::db::redact).unwrap_or_else(|| "in-process".into());
    lines.push(format!("  live state     {live}"));
    match token_file {
        Some(file) if std::io::stderr().is_terminal() => lines.push(format!(
            "  admin token    {}   (generated for this run; also in {})",
            platform.admin.expose(),
            file.display()
        )),
        Some(file) => lines.push(format!("  admin token    generated for this run; written to {}", file.display())),
        None => lines.push("  admin token    from BREAKROOM_ADMIN_TOKEN".into()),
    }
    eprintln!("{}", lines.join("\n"));
    // On a terminal, the two audience links as QR codes, to test with a phone at once.
    if config.lab == labs::LabName::Vote && std::io::stderr().is_terminal() {
        let codes = [
            ("vote", labs::vote::vote_url(&audience_base)),
            ("vote + referral", labs::vote::referral_url(&audience_base)),
        ];
        for (title, url) in codes {
            if let Some(code) = labs::vote::qr_text(&url) {
                eprintln!("\n  {title}: {url}\n{code}");
            }
        }
    }
}
