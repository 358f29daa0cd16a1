//! SSE fan-out benchmark client: opens N `/stream` viewers on a running vote lab,
//! measures the server's CPU and memory while they idle, casts one vote, and reports
//! how long each viewer took to see it. Run by `bench/sse.sh`.
//!
//!   cargo run --release --example sse_fanout -- http://127.0.0.1:8000 1000 <server pid>

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What starts each event of the stream.
const EVENT: &[u8] = b"event: votes";

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:8000".into());
    let viewers: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let pid = args.get(3).cloned().unwrap_or_default();
    let ready = Arc::new(AtomicUsize::new(0));
    let voted_at: Arc<OnceLock<Instant>> = Arc::default();
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let rss_before = rss_mib(&pid);

    let address = base.trim_start_matches("http://").to_string();
    for _ in 0..viewers {
        let (address, ready, voted_at, seen) = (address.clone(), ready.clone(), voted_at.clone(), seen.clone());
        tokio::spawn(async move {
            // One connection of its own per viewer, as each phone has: no client pool.
            let Ok(stream) = tokio::net::TcpStream::connect(&address).await else { return };
            let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                return;
            };
            tokio::spawn(connection);
            let request =
                hyper::Request::get("/stream").header(hyper::header::HOST, &address).body(Empty::<Bytes>::new());
            let Ok(response) = sender.send_request(request.unwrap()).await else { return };
            let mut body = response.into_body();
            let mut events = 0;
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else { continue };
                let before = events;
                events += data.windows(EVENT.len()).filter(|w| *w == EVENT).count();
                if before == 0 && events > 0 {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                if events > 1
                    && let Some(at) = voted_at.get()
                {
                    let elapsed = at.elapsed().as_secs_f64() * 1000.0;
                    seen.lock().unwrap().push(elapsed);
                    // A phone stays on the results page: the connection stays open, so
                    // the server's CPU for the vote is the delivery, not 10,000 hang-ups.
                    std::future::pending::<()>().await;
                }
            }
        });
    }
    let started = Instant::now();
    while ready.load(Ordering::Relaxed) < viewers && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    // Idle: everyone connected, nothing happens.
    let cpu_before = cpu_seconds(&pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = (cpu_seconds(&pid) - cpu_before) / 5.0 * 100.0;
    let rss_viewers = rss_mib(&pid);

    let poster: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let vote = hyper::Request::post(format!("{base}/vote"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"choice":"ai","referral":null}"#)))
        .unwrap();
    let cpu_at_vote = cpu_seconds(&pid);
    voted_at.set(Instant::now()).unwrap();
    let status = poster.request(vote).await.map(|r| r.status().as_u16()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fan_out_cpu_ms = (cpu_seconds(&pid) - cpu_at_vote) * 1000.0;
    let mut times = seen.lock().unwrap().clone();
    times.sort_by(f64::total_cmp);
    let pct =
        |q: f64| times.get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    println!(
        "viewers {viewers:>6} connected {connected:>6} | vote {status} seen by {:>6} | p50 {:>7.1} ms p99 {:>7.1} ms max {:>7.1} ms | server CPU for the vote {fan_out_cpu_ms:>4.0} ms | idle CPU {idle_cpu:>4.1}% of a core | RSS {rss_before:.0} → {rss_viewers:.0} MiB",
        times.len(),
        pct(0.50),
        pct(0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
}
