//! The vote lab's own settings: its flags of `breakroom serve vote`, each default
//! written once (the flag and `Default` read the same constant).

use clap::Args;

const SEED_PARTNERS: u32 = 10_000;
const REFERRAL_CACHE_CAPACITY: usize = 10;
const VOTE_RATE_LIMIT: f64 = 50.0;
const MAX_VIEWERS: usize = 20_000;

/// Settings of the `vote` lab.
#[derive(Debug, Clone, Args)]
pub struct VoteArgs {
    /// Generated referral partners seeded next to conf-partner-2026 (the original used 500000)
    #[arg(long, env = "BREAKROOM_SEED_PARTNERS", default_value_t = SEED_PARTNERS)]
    pub seed_partners: u32,
    /// Entries the buggy referral cache holds before it reports itself exhausted
    #[arg(long, env = "BREAKROOM_REFERRAL_CACHE_CAPACITY", default_value_t = REFERRAL_CACHE_CAPACITY)]
    pub referral_cache_capacity: usize,
    /// Votes a second one client address may send (in bursts of twice as many); a
    /// whole room behind one NAT stays well under the default
    #[arg(long, env = "BREAKROOM_VOTE_RATE_LIMIT", default_value_t = VOTE_RATE_LIMIT)]
    pub vote_rate_limit: f64,
    /// Live-results viewers one process serves at most; beyond it /stream answers 503
    #[arg(long, env = "BREAKROOM_MAX_VIEWERS", default_value_t = MAX_VIEWERS)]
    pub max_viewers: usize,
}

impl Default for VoteArgs {
    fn default() -> Self {
        VoteArgs {
            seed_partners: SEED_PARTNERS,
            referral_cache_capacity: REFERRAL_CACHE_CAPACITY,
            vote_rate_limit: VOTE_RATE_LIMIT,
            max_viewers: MAX_VIEWERS,
        }
    }
}
