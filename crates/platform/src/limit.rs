//! Protection for a server in front of an audience: a per-client rate limit (token
//! buckets) and the client address it is keyed by.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// The client's address: the TCP peer, or — only when the operator says a proxy in
/// front can be trusted — the last address of `X-Forwarded-For`, the one that proxy
/// appended for the connection it received. Earlier entries are whatever the client
/// sent and are ignored; without the switch the whole header is, or any client could
/// pick its own bucket.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_proxy: bool) -> IpAddr {
    if trust_proxy {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// `rate` requests a second per client, in bursts of up to `burst`. A client is an
/// address unless said otherwise (a room keys its attendees' reports by attendee).
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Clients tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 50_000;

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter { rate: rate.max(0.001), burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Ok, or how long until the client may try again.
    pub fn check(&self, client: K) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let burst = self.burst;
            let rate = self.rate;
            // A bucket that would be full again carries no state worth keeping.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.burst, updated: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_the_rate() {
        let limiter: RateLimiter = RateLimiter::new(2.0, 3.0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(a, start).is_ok());
        }
        let wait = limiter.check_at(a, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(limiter.check_at(b, start).is_ok(), "another client has its own bucket");
        assert!(limiter.check_at(a, start + Duration::from_millis(500)).is_ok(), "refilled at the rate");
        assert!(limiter.check_at(a, start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let peer: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        // The client claimed 198.51.100.1; the trusted proxy appended what it saw.
        headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, false), peer.ip());
        assert_eq!(client_ip(peer, &headers, true), "203.0.113.7".parse::<IpAddr>().unwrap());
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, true), peer.ip());
    }
}
