use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
            Some(labs::LabName::Shop) => serve_shop(args).await.map(|()| 0),
            Some(lab) => {
                let (port, bind) = (args.port.unwrap_or(8000), args.bind);
                serve(port, bind, ServeConfig::from_args(lab, args)).await.map(|()| 0)
            }
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
    let summary = labs::seed(args.lab, &db, args.vote.seed_partners, args.shop.products).await?;
    db.close().await;
    eprintln!("{summary}");
    Ok(())
}

async fn serve(port: u16, bind: IpAddr, config: ServeConfig) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(config.lab.service_name(), config.otlp_endpoint.as_deref())?;
    let shutdown = CancellationToken::new();
    let lab = config.lab.as_str();
    let app = breakroom::build(config, shutdown.clone()).await?;
    let listener = listen(bind, port, lab).await?;
    let token_file = app.platform.write_generated_token()?;
    print_banner(&app.platform, listener.local_addr()?, token_file.as_deref());
    shut_down_on_signal(shutdown, DRAIN_LIMIT);
    breakroom::serve(app, listener).await
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

async fn listen(bind: IpAddr, port: u16, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let address = SocketAddr::new(bind, port);
    // Under `breakroom dev` the socket outlives each server: a restart refuses nobody.
    if let Some(listener) = breakroom::dev::inherited_listener(address) {
        return Ok(tokio::net::TcpListener::from_std(listener)?);
    }
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} for {what}: is another program using port {port}? Pick another port")
    })
}

/// `breakroom serve shop`: catalog, cart and checkout, or the one `--service` names.
async fn serve_shop(args: breakroom::config::ServeArgs) -> anyhow::Result<()> {
    use breakroom::config::ShopService;
    let bind = args.bind;
    let config = ServeConfig::from_args(labs::LabName::Shop, args);
    // The shop's three services export their own traces; the global layer only logs.
    let _telemetry = telemetry::init("shop", None)?;
    let shop = &config.shop;
    let ports = [
        (ShopService::Catalog, shop.catalog_port),
        (ShopService::Cart, shop.cart_port),
        (ShopService::Checkout, shop.checkout_port),
    ];
    let mut listeners = Vec::new();
    for (service, port) in ports {
        if shop.service == ShopService::All || shop.service == service {
            listeners.push((service, listen(bind, port, labs::shop::service_name(service)).await?));
        }
    }
    let shutdown = CancellationToken::new();
    let addresses: Vec<(ShopService, SocketAddr)> =
        listeners.iter().filter_map(|(s, l)| l.local_addr().ok().map(|a| (*s, a))).collect();
    let server = breakroom::build_shop(config, shutdown.clone(), listeners).await?;
    let token_file = server.platform.write_generated_token()?;
    print_shop_banner(&server.platform, &addresses, token_file.as_deref());
    shut_down_on_signal(shutdown, DRAIN_LIMIT);
    breakroom::serve_shop(server).await
}

/// `breakroom serve loadgen`: the Black Friday timeline as a service (port 8010).
async fn serve_loadgen(args: breakroom::config::ServeArgs) -> anyhow::Result<()> {
    use breakroom::platform::http::AdminToken;
    let _telemetry = telemetry::init("load-generator", None)?;
    let port = args.port.unwrap_or(8010);
    let listener = listen(args.bind, port, "loadgen").await?;
    let shop = &args.shop;
    let url = |given: &Option<String>, port: u16| given.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let urls = breakroom::driver::ShopUrls {
        catalog_url: url(&shop.catalog_url, shop.catalog_port),
        cart_url: url(&shop.cart_url, shop.cart_port),
        checkout_url: url(&shop.checkout_url, shop.checkout_port),
    };
    let configured = args.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    let data_dir = args.backend.data_dir.clone();
    let (admin, generated) = match &configured {
        Some(token) => (AdminToken::new(token), false),
        None => (AdminToken::generate(), true),
    };
    eprintln!("breakroom {} · loadgen · listening on {}", args.app_version, listener.local_addr()?);
    eprintln!("  shop           catalog {}  cart {}  checkout {}", urls.catalog_url, urls.cart_url, urls.checkout_url);
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

fn print_shop_banner(
    platform: &breakroom::platform::Platform,
    addresses: &[(breakroom::config::ShopService, SocketAddr)],
    token_file: Option<&std::path::Path>,
) {
    let config = &platform.config;
    let mut lines = vec![format!("breakroom {} · shop lab (Black Friday)", config.app_version)];
    for (service, address) in addresses {
        let host = if address.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { address.ip() };
        let base = format!("http://{}", SocketAddr::new(host, address.port()));
        let example = match service {
            breakroom::config::ShopService::Catalog => "/products?category=electronics&price_min=100&price_max=200",
            breakroom::config::ShopService::Cart => "/cart/demo-user",
            _ => "/orders/popular-products",
        };
        lines.push(format!("  {:<15}{base}{example}", labs::shop::service_name(*service)));
    }
    let database = match &config.backend.database_url {
        Some(url) => format!("postgres {}", breakroom::platform::db::redact(url)),
        None => format!("sqlite {}", config.backend.data_dir.join("shop.db").display()),
    };
    lines.push(format!("  database       {database}"));
    lines.push("  run the story  breakroom demonstrate shop --speedup 10".into());
    lines.push(token_line(platform, token_file));
    eprintln!("{}", lines.join("\n"));
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
fn print_banner(platform: &breakroom::platform::Platform, local: SocketAddr, token_file: Option<&std::path::Path>) {
    let config = &platform.config;
    let host = if local.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { local.ip() };
    let base = format!("http://{}", SocketAddr::new(host, local.port()));
    let lab = config.lab;
    let mut lines = vec![format!("breakroom {} · {lab} lab · listening on {local}", config.app_version)];
    if lab == "datasets" {
        lines.push(format!("  datasets       {base}/api/datasets/   (Authorization: Token alice-token)"));
        lines.push(format!("  statistics     {base}/api/datasets/{}/statistics/", labs::datasets::FLAGSHIP_ID));
    }
    if lab == "items" {
        lines.push(format!("  items          {base}/items"));
        lines.push(format!("  cache stats    {base}/cache/stats"));
    }
    let audience_base = config.public_url.clone().unwrap_or_else(|| base.clone());
    if lab == "vote" {
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
    lines.push(token_line(platform, token_file));
    eprintln!("{}", lines.join("\n"));
    // On a terminal, the two audience links as QR codes, to test with a phone at once.
    if lab == "vote" && std::io::stderr().is_terminal() {
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
