//! The items lab's own settings, each default written once.

use clap::Args;

const CACHE_TTL_SECONDS: u64 = 300;
const POPULAR_TTL_SECONDS: u64 = 5;

/// Settings of the `items` lab.
#[derive(Debug, Clone, Args)]
pub struct ItemsArgs {
    /// How long an item stays in the cache after it was written or read
    #[arg(long, env = "CACHE_TTL_SECONDS", default_value_t = CACHE_TTL_SECONDS)]
    pub cache_ttl_seconds: u64,
    /// How long an item's popular view stays in the cache after it was aggregated
    #[arg(long, env = "POPULAR_TTL_SECONDS", default_value_t = POPULAR_TTL_SECONDS)]
    pub popular_ttl_seconds: u64,
}

impl Default for ItemsArgs {
    fn default() -> Self {
        ItemsArgs { cache_ttl_seconds: CACHE_TTL_SECONDS, popular_ttl_seconds: POPULAR_TTL_SECONDS }
    }
}
