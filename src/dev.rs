//! `breakroom dev LAB`: the fix loop of seeds 000 and 004 — edit the bug, save, and the
//! room's traffic reaches the edited code seconds later.
//!
//! The supervisor binds the lab's ports itself and hands the listening sockets to each
//! server it starts (`BREAKROOM_LISTEN_FDS`), so a restart refuses no connection: while
//! one server stops and the next starts, new connections wait in the socket's backlog.
//! Every save starts `cargo build` while the running server keeps answering; only a
//! build that succeeds replaces it. The data stays where it is (the SQLite file or the
//! PostgreSQL database), in-memory state (the referral cache) starts empty, exactly as
//! a restart does in the story.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config::ServeArgs;

/// The environment variable that carries inherited listeners: `ADDRESS=FD,…`.
pub const LISTEN_FDS: &str = "BREAKROOM_LISTEN_FDS";

/// How often the sources are looked at; a save is seen within this.
const POLL: Duration = Duration::from_millis(200);
/// Edits within this of each other (an editor writing several files) make one rebuild.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a new server may take to answer `/health` (the shop generates its catalog
/// on a first start).
const READY_LIMIT: Duration = Duration::from_secs(300);
/// How long a stopping server may drain before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(12);

/// The listener a supervising `breakroom dev` handed this process for `address`, if any.
pub fn inherited_listener(address: SocketAddr) -> Option<std::net::TcpListener> {
    listener_in(&std::env::var(LISTEN_FDS).ok()?, address)
}

/// The listener `value` (`ADDRESS=FD,…`) names for `address`.
fn listener_in(value: &str, address: SocketAddr) -> Option<std::net::TcpListener> {
    let fd = value.split(',').find_map(|entry| {
        let (at, fd) = entry.split_once('=')?;
        (at.parse::<SocketAddr>().ok()? == address).then(|| fd.parse::<RawFd>().ok()).flatten()
    })?;
    // SAFETY: the supervisor opened this descriptor as a listening TCP socket and left
    // it open across exec for this process alone; nothing else in this process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true).ok()?;
    Some(listener)
}

/// What `dev` watches, relative to the checkout: everything compiled into the binary.
const WATCHED: &[&str] = &["crates", "src", "web", "migrations", "Cargo.toml", "Cargo.lock"];

/// Runs the loop until Ctrl-C, SIGTERM or SIGHUP; `passthrough` are the arguments after `dev`.
pub async fn run(args: ServeArgs, passthrough: Vec<OsString>) -> anyhow::Result<()> {
    let checkout = checkout()?;
    let addresses = args.listen_addresses();
    let mut listeners = Vec::new();
    for address in &addresses {
        let listener = std::net::TcpListener::bind(address).with_context(|| {
            format!("cannot listen on {address}: is another program using port {}? Pick another port", address.port())
        })?;
        listeners.push(listener);
    }
    let fds: Vec<String> = addresses.iter().zip(&listeners).map(|(a, l)| format!("{a}={}", l.as_raw_fd())).collect();
    let mut env = vec![(LISTEN_FDS.to_string(), fds.join(","))];
    env.extend(keep_admin_token(&args)?);
    let health = format!("http://{}/health", loopback(addresses[0]));
    let server = Server { listeners, env, passthrough, health };

    eprintln!("breakroom dev · watching {} · serving on {}", checkout.display(), list(&addresses));
    let mut sources = Sources::scan(&checkout);
    let started = Instant::now();
    let Build::Built { executable, .. } = build(&checkout).await? else {
        bail!("the first build failed (above); fix it and run `breakroom dev` again");
    };
    let mut running = Some(server.start(&executable).await?);
    eprintln!("dev: serving in {:.1} s · save a file to rebuild and restart", started.elapsed().as_secs_f64());

    let mut stop = std::pin::pin!(crate::stage::interrupted());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        if let Some(child) = running.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            eprintln!("dev: the server exited ({status}); save a file to rebuild and start it again");
            running = None;
        }
        let changed = sources.changes(&checkout);
        if changed.is_empty() {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        let mut changed = changed;
        changed.extend(sources.changes(&checkout));
        let saved = Instant::now();
        eprintln!("dev: {} changed · rebuilding (the running server keeps answering)", describe(&changed));
        match build(&checkout).await? {
            Build::Failed => {
                let still = if running.is_some() { "the previous server keeps answering" } else { "no server runs" };
                eprintln!("dev: ✗ the build failed (above); {still} · fix it and save again");
            }
            Build::Built { executable, seconds } => {
                if let Some(old) = running.take() {
                    stop_server(old).await;
                }
                let restarted = Instant::now();
                match server.start(&executable).await {
                    Ok(child) => {
                        running = Some(child);
                        eprintln!(
                            "dev: ✓ built in {seconds:.1} s, restarted in {:.1} s · serving the edited code {:.1} s after the save",
                            restarted.elapsed().as_secs_f64(),
                            saved.elapsed().as_secs_f64()
                        );
                    }
                    Err(error) => eprintln!("dev: ✗ the edited server did not start: {error:#}"),
                }
            }
        }
    }
    // Not eprintln!: after a hangup (the terminal closed) it would panic, and the server
    // would be killed without its drain.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dev: stopping");
    if let Some(child) = running {
        stop_server(child).await;
    }
    Ok(())
}

/// The checkout this binary was built from.
fn checkout() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !root.join("Cargo.toml").is_file() || !root.join("crates").is_dir() {
        bail!(
            "`breakroom dev` rebuilds the checkout it was built from ({}), which is not there: \
             run it from a clone as `cargo run -- dev LAB`",
            root.display()
        );
    }
    Ok(root)
}

/// Servers started with a token generated here share it, so a reload does not log the
/// speaker's admin page out; `breakroom reset` finds it in the usual file.
fn keep_admin_token(args: &ServeArgs) -> anyhow::Result<Option<(String, String)>> {
    let lab = match args.lab.lab() {
        Some(lab) => lab.as_str(),
        None => return Ok(None),
    };
    if args.admin_token.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        return Ok(None);
    }
    let token = platform::http::AdminToken::generate().expose().to_string();
    let file = platform::write_token_file(&args.backend.data_dir, lab, &token)?;
    if std::io::stderr().is_terminal() {
        eprintln!("dev: admin token {token} (kept across reloads; also in {})", file.display());
    } else {
        eprintln!("dev: admin token generated for this session, kept across reloads; written to {}", file.display());
    }
    Ok(Some(("BREAKROOM_ADMIN_TOKEN".into(), token)))
}

struct Server {
    listeners: Vec<std::net::TcpListener>,
    env: Vec<(String, String)>,
    passthrough: Vec<OsString>,
    health: String,
}

impl Server {
    /// Starts `executable serve …` on the supervisor's sockets and waits for `/health`.
    async fn start(&self, executable: &Path) -> anyhow::Result<Child> {
        let mut command = Command::new(executable);
        // Its own process group: Ctrl-C in the terminal reaches the supervisor, which
        // stops the server once, gracefully.
        command.arg("serve").args(&self.passthrough).envs(self.env.iter().cloned()).process_group(0).kill_on_drop(true);
        for listener in &self.listeners {
            set_inherited(listener.as_raw_fd(), true)?;
        }
        // The sockets stay open across this exec only: cargo and its compilers, started
        // later, must not hold the lab's ports.
        let spawned = command.spawn();
        for listener in &self.listeners {
            set_inherited(listener.as_raw_fd(), false)?;
        }
        let mut child = spawned.with_context(|| format!("starting {}", executable.display()))?;
        let target = platform::stage::Target::with_timeout(&self.health, "dev", Duration::from_secs(2))?;
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("it exited at start ({status}); its error is above");
            }
            if target.get("").await.is_ok_and(|reply| reply.is_success()) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                bail!("it did not answer {} within {} s", self.health, READY_LIMIT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// SIGTERM, as Ctrl-C would: in-flight requests finish and event streams end.
async fn stop_server(mut child: Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_LIMIT, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn set_inherited(fd: RawFd, inherited: bool) -> anyhow::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns (a listener it holds open).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    let flags = if inherited { flags & !libc::FD_CLOEXEC } else { flags | libc::FD_CLOEXEC };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        bail!("cannot pass the listening socket on: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

enum Build {
    Built { executable: PathBuf, seconds: f64 },
    Failed,
}

/// `cargo build` of this binary in the dev profile, whatever profile runs the
/// supervisor: only there is a rebuild after an edit a matter of seconds (Cargo.toml).
/// The compiler's messages go to the terminal in full.
async fn build(checkout: &Path) -> anyhow::Result<Build> {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(checkout)
        .args(["build", "--bin", "breakroom", "--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut executable = None;
    while let Some(line) = lines.next_line().await? {
        // Cargo's JSON messages; the compiler's own are already rendered on stderr.
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "breakroom" {
            if let Some(path) = message["executable"].as_str() {
                executable = Some(PathBuf::from(path));
            }
        }
    }
    let status = child.wait().await?;
    Ok(match executable {
        Some(executable) if status.success() => Build::Built { executable, seconds: started.elapsed().as_secs_f64() },
        _ => Build::Failed,
    })
}

/// The modification times of the watched files.
struct Sources {
    seen: BTreeMap<PathBuf, SystemTime>,
}

impl Sources {
    fn scan(checkout: &Path) -> Sources {
        let mut seen = BTreeMap::new();
        for entry in WATCHED {
            walk(&checkout.join(entry), &mut seen);
        }
        Sources { seen }
    }

    /// The files added, changed or removed since the last look.
    fn changes(&mut self, checkout: &Path) -> Vec<PathBuf> {
        let now = Sources::scan(checkout).seen;
        let mut changed: Vec<PathBuf> =
            now.iter().filter(|(path, time)| self.seen.get(*path) != Some(time)).map(|(p, _)| p.clone()).collect();
        changed.extend(self.seen.keys().filter(|path| !now.contains_key(*path)).cloned());
        self.seen = now;
        changed.into_iter().map(|p| p.strip_prefix(checkout).map(Path::to_path_buf).unwrap_or(p)).collect()
    }
}

fn walk(path: &Path, seen: &mut BTreeMap<PathBuf, SystemTime>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_file() {
        seen.insert(path.to_path_buf(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Build output and editors' swap and backup files are not sources.
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
            continue;
        }
        walk(&entry.path(), seen);
    }
}

fn describe(changed: &[PathBuf]) -> String {
    match changed {
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} and {} more", first.display(), rest.len()),
        [] => "nothing".into(),
    }
}

fn list(addresses: &[SocketAddr]) -> String {
    addresses.iter().map(|a| loopback(*a).to_string()).collect::<Vec<_>>().join(", ")
}

/// `0.0.0.0:8000` is reached at `127.0.0.1:8000`.
fn loopback(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port()),
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_takes_the_socket_named_for_its_address_and_accepts_on_it() {
        let supervisor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = supervisor.local_addr().unwrap();
        // SAFETY: dup(2) of a descriptor this test owns; the copy is what the server takes.
        let copy = unsafe { libc::dup(supervisor.as_raw_fd()) };
        let value = format!("127.0.0.1:1=99,{address}={copy}");
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert!(listener_in(&value, other).is_none(), "no socket for an address it was not given");
        let server = listener_in(&value, address).expect("the socket for its address");
        assert_eq!(server.local_addr().unwrap(), address);
        // A client connecting to the supervisor's port is accepted by the server.
        let _client = std::net::TcpStream::connect(address).unwrap();
        server.set_nonblocking(false).unwrap();
        assert!(server.accept().is_ok());
    }

    #[test]
    fn a_save_an_addition_and_a_removal_are_seen_and_build_output_is_not() {
        let checkout = tempfile::tempdir().unwrap();
        let root = checkout.path();
        std::fs::create_dir_all(root.join("crates/labs/vote/src")).unwrap();
        std::fs::create_dir_all(root.join("crates/labs/vote/target")).unwrap();
        std::fs::write(root.join("crates/labs/vote/src/referral.rs"), "buggy").unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]").unwrap();
        let mut sources = Sources::scan(root);
        assert!(sources.changes(root).is_empty(), "nothing changed yet");

        let referral = root.join("crates/labs/vote/src/referral.rs");
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::write(&referral, "fixed").unwrap();
        std::fs::File::options().write(true).open(&referral).unwrap().set_modified(later).unwrap();
        std::fs::write(root.join("crates/labs/vote/target/out.rlib"), "built").unwrap();
        std::fs::write(root.join("crates/labs/vote/src/.referral.rs.swp"), "editor").unwrap();
        assert_eq!(sources.changes(root), vec![PathBuf::from("crates/labs/vote/src/referral.rs")]);

        std::fs::write(root.join("crates/labs/vote/src/extra.rs"), "").unwrap();
        std::fs::remove_file(root.join("Cargo.toml")).unwrap();
        let mut changed = sources.changes(root);
        changed.sort();
        assert_eq!(changed, vec![PathBuf::from("Cargo.toml"), PathBuf::from("crates/labs/vote/src/extra.rs")]);
        assert!(sources.changes(root).is_empty(), "each change is reported once");
    }

    #[test]
    fn a_wildcard_address_is_reached_on_loopback() {
        assert_eq!(loopback("0.0.0.0:8000".parse().unwrap()), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(loopback("[::]:8000".parse().unwrap()), "[::1]:8000".parse().unwrap());
        assert_eq!(loopback("10.1.2.3:80".parse().unwrap()), "10.1.2.3:80".parse().unwrap());
    }
}
