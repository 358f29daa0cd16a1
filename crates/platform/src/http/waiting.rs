//! Connections that have not sent a request yet are few, and the oldest give way.
//!
//! A browser sends its first request the moment its connection is open. A connection
//! that sends nothing (a port scan, a slowloris, a speculative socket never used) costs
//! a file descriptor until the header timeout closes it: 1,100 of them opened at once
//! under the common limit of 1,024 descriptors made every accept fail, and `/health`
//! answered nothing for the ten seconds they lasted. So at most [`MAX_WAITING`]
//! connections may wait for their first request: the next one closes the oldest
//! waiting among those that have waited [`GRACE`] already (a burst of new connections
//! whose requests are still on their way is left alone). A failed accept (out of
//! descriptors all the same) closes the older half of them, whatever their age,
//! before it tries again. Connections that have sent a request are never touched, so a
//! room behind one NAT address is served as before; this is not a per-address limit,
//! which would refuse exactly such a room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Connections that may wait for their first request at once.
pub const MAX_WAITING: usize = 256;
/// How long a new connection may take to send its first request before it can be
/// closed to make room: a phone on a slow network sends it well within this.
pub const GRACE: Duration = Duration::from_secs(1);

const WAITING: u8 = 0;
const SERVED: u8 = 1;
const GONE: u8 = 2;

/// One connection's place in the line.
#[derive(Clone)]
pub struct Ticket {
    state: Arc<AtomicU8>,
    joined: Instant,
    /// Fired when this connection is closed to make room.
    pub evicted: CancellationToken,
    count: Arc<AtomicUsize>,
}

impl Ticket {
    /// Its first request arrived: it leaves the line for good.
    pub fn served(&self) {
        self.leave(SERVED);
    }

    /// It closed (on its own, or when evicted).
    pub fn closed(&self) {
        self.leave(GONE);
    }

    fn leave(&self, to: u8) {
        if self.state.compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The line of connections waiting for their first request, oldest first.
#[derive(Default)]
pub struct Waiting {
    line: Mutex<VecDeque<Ticket>>,
    count: Arc<AtomicUsize>,
}

impl Waiting {
    /// A new connection joins; the oldest waiting ones are closed beyond [`MAX_WAITING`].
    pub fn join(&self) -> Ticket {
        let ticket = Ticket {
            state: Arc::new(AtomicU8::new(WAITING)),
            joined: Instant::now(),
            evicted: CancellationToken::new(),
            count: self.count.clone(),
        };
        self.count.fetch_add(1, Ordering::AcqRel);
        let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        line.push_back(ticket.clone());
        let excess = self.count.load(Ordering::Acquire).saturating_sub(MAX_WAITING);
        Self::evict(&mut line, excess, Some(GRACE));
        // Those that left (served or closed) are dropped from the front as it moves.
        while line.front().is_some_and(|t| t.state.load(Ordering::Acquire) != WAITING) {
            line.pop_front();
        }
        ticket
    }

    /// Out of descriptors: closes half of the waiting connections, oldest first.
    pub fn make_room(&self) -> usize {
        let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        let half = self.count.load(Ordering::Acquire).div_ceil(2);
        Self::evict(&mut line, half, None)
    }

    /// Closes up to `wanted` of the oldest waiting connections, only those older than
    /// `min_age` when it is given.
    fn evict(line: &mut VecDeque<Ticket>, mut wanted: usize, min_age: Option<Duration>) -> usize {
        let mut evicted = 0;
        while wanted > 0 {
            let Some(front) = line.front() else { break };
            if min_age.is_some_and(|age| front.joined.elapsed() < age) && front.state.load(Ordering::Acquire) == WAITING
            {
                break; // the rest are younger still
            }
            let oldest = line.pop_front().expect("a front");
            if oldest.state.compare_exchange(WAITING, GONE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                oldest.count.fetch_sub(1, Ordering::AcqRel);
                oldest.evicted.cancel();
                wanted -= 1;
                evicted += 1;
            }
        }
        evicted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_gives_way_and_served_ones_never_do() {
        let waiting = Waiting::default();
        let first = waiting.join();
        let served = waiting.join();
        served.served();
        let rest: Vec<Ticket> = (0..MAX_WAITING - 1).map(|_| waiting.join()).collect();
        let burst = waiting.join();
        assert!(!first.evicted.is_cancelled(), "within its grace, even the oldest is left alone");
        burst.closed();
        std::thread::sleep(GRACE);
        assert_eq!(waiting.len(), MAX_WAITING);
        assert!(!first.evicted.is_cancelled(), "at the limit, nobody is closed");
        let newest = waiting.join();
        assert!(first.evicted.is_cancelled(), "one more: the oldest waiting is closed");
        assert!(!served.evicted.is_cancelled(), "a connection that was served is never closed");
        assert!(!rest[0].evicted.is_cancelled() && !newest.evicted.is_cancelled());
        assert_eq!(waiting.len(), MAX_WAITING);
        rest[0].closed();
        first.closed(); // closing after eviction counts once
        assert_eq!(waiting.len(), MAX_WAITING - 1);
        assert_eq!(waiting.make_room(), (MAX_WAITING - 1).div_ceil(2), "out of descriptors: half give way");
        assert_eq!(waiting.len(), (MAX_WAITING - 1) / 2);
    }
}
