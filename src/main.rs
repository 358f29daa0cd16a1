use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use breakroom::config::{Cli, Command, ServeConfig};
use breakroom::labs::{self, StageCommand};
use breakroom::platform::{db::Db, telemetry};

/// How long in-flight requests may take to finish after SIGTERM/Ctrl-C.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime");
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => match args.lab.lab() {
            Some(lab) => serve(lab, args).await.map(|()| 0),
            None => serve_loadgen(args).await.map(|()| 0),
        },
        Command::Seed(args) => seed(args).await.map(|()| 0),
        Command::Dev(args) => {
            // What follows `dev` is what each restarted `serve` gets.
            let passthrough = std::env::args_os().skip(2).collect();
            breakroom::dev::run(args, passthrough).await.map(|()| 0)
        }
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
        Command::Explain(args) => labs::explain(&args.scenario)
            .map(|text| {
                print!("{text}");
                0
            })
            .map_err(anyhow::Error::from),
        Command::Hint(args) => match breakroom::hint::run(&args) {
            Ok(text) => {
                print!("{text}");
                breakroom::join::report_hint(&args).await;
                Ok(0)
            }
            Err(error) => Err(error.into()),
        },
        Command::Join(args) => breakroom::join::run(&args).await.map(|text| {
            print!("{text}");
            0
        }),
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
    let settings = labs::LabSettings { vote: args.vote, shop_data: args.shop, ..labs::LabSettings::default() };
    let lab = labs::lab(args.lab, &settings);
    telemetry::init(lab.service_name(), None, telemetry::Recording::default())?;
    let backend = &args.backend;
    let database_url = backend.database_url.as_deref().filter(|u| !u.is_empty());
    let db = Db::open(database_url, &backend.data_dir, lab.name(), backend.db_max_connections).await?;
    let summary = lab.seed(&db).await?;
    db.close().await;
    eprintln!("{summary}");
    Ok(())
}

/// `breakroom serve LAB`: every service of the lab, each on its port.
async fn serve(lab: labs::LabName, args: breakroom::config::ServeArgs) -> anyhow::Result<()> {
    let specs = args.listen_specs();
    let config = ServeConfig::from_args(lab, args);
    let lab = config.open();
    // A lab whose services export their own traces leaves the process's layer to logs.
    let otlp = if lab.traces_per_service() { None } else { config.platform.otlp_endpoint.as_deref() };
    let console = &config.platform.console;
    breakroom::platform::console::traces::store().set_capacity(console.traces);
    // A collector wants every span; the console alone keeps to its budget.
    let collector = config.platform.otlp_endpoint.is_some();
    breakroom::platform::console::traces::set_rate(if collector { 0 } else { console.trace_rate });
    let recording =
        telemetry::Recording { spans: console.recording && !lab.traces_per_service(), logs: console.recording };
    let _telemetry = telemetry::init(lab.service_name(), otlp, recording)?;
    let mut listeners = Vec::new();
    for (name, address) in specs {
        listeners.push((name, listen(address, name).await?));
    }
    let shutdown = CancellationToken::new();
    let app = breakroom::build(config, shutdown.clone(), listeners).await?;
    let token_file = app.platform.write_generated_token()?;
    print_banner(lab.as_ref(), &app, token_file.as_deref());
    shut_down_on_signal(shutdown, DRAIN_LIMIT);
    breakroom::serve(app).await
}

/// SIGTERM/Ctrl-C fires `shutdown`; a second signal, or a drain longer than `limit`,
/// ends the process at once.
fn shut_down_on_signal(shutdown: CancellationToken, limit: std::time::Duration) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests, ending event streams");
        shutdown.cancel();
        tokio::select! {
            _ = wait_for_signal() => eprintln!("breakroom: second signal, exiting without waiting"),
            _ = tokio::time::sleep(limit) => eprintln!("breakroom: still busy after {limit:?}; exiting"),
        }
        std::process::exit(1);
    });
}

async fn listen(address: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    // Under `breakroom dev` the socket outlives each server: a restart refuses nobody.
    if let Some(listener) = breakroom::dev::inherited_listener(address) {
        return Ok(tokio::net::TcpListener::from_std(listener)?);
    }
    let port = address.port();
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} for {what}: is another program using port {port}? Pick another port")
    })
}

/// `breakroom serve loadgen`: the Black Friday timeline as a service (port 8010).
async fn serve_loadgen(args: breakroom::config::ServeArgs) -> anyhow::Result<()> {
    use breakroom::platform::http::AdminToken;
    let _telemetry = telemetry::init("load-generator", None, telemetry::Recording::default())?;
    let (_, address) = args.listen_specs()[0];
    let port = address.port();
    let listener = listen(address, "loadgen").await?;
    let shop = &args.shop;
    let url = |given: &Option<String>, port: u16| given.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let urls = breakroom::driver::ShopUrls {
        catalog_url: url(&shop.catalog_url, shop.catalog_port),
        cart_url: url(&shop.cart_url, shop.cart_port),
        checkout_url: url(&shop.checkout_url, shop.checkout_port),
        payment_url: url(&shop.payment_url, shop.payment_port),
    };
    let configured = args.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    let data_dir = args.backend.data_dir.clone();
    let (admin, generated) = match &configured {
        Some(token) => (AdminToken::new(token), false),
        None => (AdminToken::generate(), true),
    };
    eprintln!("breakroom {} · loadgen · listening on {}", args.app_version, listener.local_addr()?);
    eprintln!(
        "  shop           catalog {}  cart {}  checkout {}  payment {}",
        urls.catalog_url, urls.cart_url, urls.checkout_url, urls.payment_url
    );
    eprintln!(
        "  start          curl -X POST http://127.0.0.1:{port}/admin/start-demo -H 'Content-Type: application/json' -d '{{\"scenario\":\"blackfriday\"}}'"
    );
    if generated && std::io::stderr().is_terminal() {
        eprintln!("  admin token    {}   (generated; not needed from this machine's loopback)", admin.expose());
    } else if generated {
        eprintln!("  admin token    generated for this run; calls from loopback need none");
    }
    let config = breakroom::loadgen::LoadgenConfig { urls, admin, shop_token: configured, data_dir };
    let shutdown = CancellationToken::new();
    // Stopping a running demo includes its cleanup: allow it time.
    shut_down_on_signal(shutdown.clone(), std::time::Duration::from_secs(70));
    breakroom::loadgen::serve(listener, config, shutdown).await
}

/// Where the admin token is: shown once, on a terminal only, when generated.
fn token_line(platform: &breakroom::platform::Platform, token_file: Option<&std::path::Path>) -> String {
    match token_file {
        Some(file) if std::io::stderr().is_terminal() => format!(
            "  admin token    {}   (generated for this run; also in {})",
            platform.admin.expose(),
            file.display()
        ),
        Some(file) => format!("  admin token    generated for this run; written to {}", file.display()),
        None => "  admin token    from BREAKROOM_ADMIN_TOKEN".into(),
    }
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
fn print_banner(lab: &dyn labs::Lab, app: &breakroom::App, token_file: Option<&std::path::Path>) {
    let platform = &app.platform;
    let config = &platform.config;
    let urls = app.urls();
    let listening: Vec<String> =
        app.services.iter().filter_map(|(_, l)| l.local_addr().ok().map(|a| a.to_string())).collect();
    let name = lab.name();
    let mut lines =
        vec![format!("breakroom {} · {name} lab · listening on {}", config.app_version, listening.join(", "))];
    let base = urls.first().map(|(_, url)| url.clone()).unwrap_or_default();
    let audience_base = config.public_url.clone().unwrap_or_else(|| base.clone());
    lines.extend(lab.banner(&urls, &audience_base));
    if let Some(room) = &app.room {
        lines.push(format!("  room           {}   board {base}/room (admin token)", room.code()));
        lines.push(format!("  join           {}", room.join_command(&audience_base)));
        if config.public_url.is_none() {
            lines.push("                 (attendees need this machine's address: serve with --public-url URL)".into());
        }
    }
    for bug in platform.bugs.states() {
        let hint = if bug.fixed { String::new() } else { format!("   (fix: --fixed {})", bug.name) };
        lines.push(format!("  {:<14} {}{hint}", format!("bug {}", bug.name), bug.mode.to_uppercase()));
    }
    let database = match &config.backend.database_url {
        Some(url) => format!("postgres {}", breakroom::platform::db::redact(url)),
        None => format!("sqlite {}", config.backend.data_dir.join(format!("{name}.db")).display()),
    };
    lines.push(format!("  database       {database}"));
    let live =
        config.backend.redis_url.as_deref().map(breakroom::platform::db::redact).unwrap_or_else(|| "in-process".into());
    lines.push(format!("  live state     {live}"));
    lines.push(token_line(platform, token_file));
    if let Some(reason) = platform.weak_admin_token() {
        lines.push(format!(
            "  ⚠ WEAK ADMIN TOKEN: {reason}; anyone in the room could guess it. {}",
            breakroom::platform::http::STRONG_TOKEN_HINT
        ));
    }
    eprintln!("{}", lines.join("\n"));
    // On a terminal, the two audience links as QR codes, to test with a phone at once.
    if name == "vote" && std::io::stderr().is_terminal() {
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
