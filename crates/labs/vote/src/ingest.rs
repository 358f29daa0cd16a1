//! Group commit for votes. A keynote room votes in a burst; one INSERT per vote would
//! cap ingest at the database's single-row commit rate. Instead each vote is queued
//! and one task writes whatever is queued as a single multi-row INSERT, then updates
//! the live counts in one round trip, and only then answers each vote. Under load the
//! queue fills while a batch commits, so batches grow by themselves; with one vote at
//! a time nothing waits for company.
//!
//! A vote is acknowledged only after its batch committed; a failed batch fails exactly
//! its own votes (503), so no vote is acknowledged unstored or counted twice.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::ballot::{Choice, Tally};
use super::live::LiveCounts;
use super::store::VoteStore;
use platform::feed::Feed;
use platform::http::ApiError;

/// Votes written by one INSERT at the most.
const MAX_BATCH: usize = 512;
/// Votes waiting for a batch before new ones are refused (503): the back-pressure
/// that keeps a stalled database from growing the queue without bound.
const QUEUE: usize = 20_000;

struct Pending {
    choice: Choice,
    referral: Option<String>,
    done: oneshot::Sender<Result<(), String>>,
}

pub struct Ingest {
    queue: mpsc::Sender<Pending>,
}

impl Ingest {
    /// Starts the batch writer; it ends when the lab (and so this sender) is dropped.
    pub fn start(store: VoteStore, live: Arc<LiveCounts>, feed: Feed) -> Ingest {
        let (queue, mut incoming) = mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(pending) => batch.push(pending),
                        Err(_) => break,
                    }
                }
                let rows: Vec<(Choice, Option<String>)> =
                    batch.iter().map(|p| (p.choice, p.referral.clone())).collect();
                // Committed and counted as one step, never interleaved with a rebuild.
                let writes = live.write_lock().await;
                match store.record_votes(&rows).await {
                    Ok(()) => {
                        let mut delta = Tally::default();
                        for (choice, _) in &rows {
                            delta.0[choice.index()] += 1;
                        }
                        live.record(delta).await;
                        drop(writes);
                        feed.changed();
                        for pending in batch {
                            let _ = pending.done.send(Ok(()));
                        }
                    }
                    Err(error) => {
                        drop(writes);
                        tracing::error!(%error, votes = batch.len(), "vote batch not stored; its votes are refused");
                        let reason = platform::http::database_failure(&error);
                        for pending in batch {
                            let _ = pending.done.send(Err(reason.clone()));
                        }
                    }
                }
            }
        });
        Ingest { queue }
    }

    /// Queues a vote and returns once it is committed (or refused with its reason).
    pub async fn submit(&self, choice: Choice, referral: Option<String>) -> Result<(), ApiError> {
        let (done, committed) = oneshot::channel();
        let unavailable = |detail: String| ApiError::unavailable(detail).with_retry_after(1);
        self.queue.try_send(Pending { choice, referral, done }).map_err(|_| {
            unavailable("Vote not recorded: too many votes are waiting for the database; try again".into())
        })?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(unavailable(format!("Vote not recorded: {reason}; try again"))),
            Err(_) => Err(unavailable("Vote not recorded: the server is shutting down".into())),
        }
    }
}
