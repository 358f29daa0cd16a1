//! The `breakroom` binary as a speaker runs it, with what it prints captured: the
//! tests of what only the real process has (its telemetry, signals, the banner).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `breakroom serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    /// The first service's base URL.
    pub url: String,
    /// stdout (JSON logs) and stderr (the banner), as they came.
    pub transcript: Arc<Mutex<String>>,
}

/// Starts `breakroom serve LAB` on a free port with `args` and `envs` (none of the
/// machine's DATABASE_URL, REDIS_URL, admin token or collector leaks in); returns once
/// it answers `/health`.
pub async fn serve(lab: &str, data_dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Served {
    serve_on(super::free_port(), lab, data_dir, args, envs).await
}

/// [`serve`] with the first service on `port` (a lab of several services is told the
/// ports of all in `args`).
pub async fn serve_on(
    port: u16,
    lab: &str,
    data_dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_breakroom"));
    command
        .args(["serve", lab, "--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("BREAKROOM_ADMIN_TOKEN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("breakroom starts");
    let transcript = Arc::new(Mutex::new(String::new()));
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    for mut lines in [Box::new(stderr) as Box<dyn LineSource>, Box::new(stdout)] {
        let sink = transcript.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.next().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
    let url = format!("http://127.0.0.1:{port}");
    let client = breakroom::platform::http::client().build().unwrap();
    for _ in 0..150 {
        if client.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return Served { child, url, transcript };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("breakroom did not answer within 15 s:\n{}", transcript.lock().unwrap());
}

/// A pipe read line by line, whichever of the child's it is.
trait LineSource: Send {
    fn next(&mut self) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;
}

impl<R: tokio::io::AsyncBufRead + Unpin + Send> LineSource for tokio::io::Lines<R> {
    fn next(&mut self) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move { self.next_line().await.ok().flatten() })
    }
}

/// SIGTERM, and the exit status within 5 s.
pub async fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("breakroom exits within 5 s of SIGTERM")
        .unwrap()
}
