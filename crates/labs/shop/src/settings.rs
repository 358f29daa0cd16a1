//! The shop lab's own settings (shared by its services and its load generator), each
//! default written once.

use clap::{Args, ValueEnum};

const CATALOG_PORT: u16 = 8014;
const CART_PORT: u16 = 8013;
const CHECKOUT_PORT: u16 = 8016;
const PAYMENT_PORT: u16 = 8017;
const CHECKOUT_POOL: u32 = 50;

/// Which of the shop's services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShopService {
    /// catalog, cart, checkout and payment in one process, each on its own port
    All,
    Catalog,
    Cart,
    Checkout,
    Payment,
}

/// Settings of the `shop` lab.
#[derive(Debug, Clone, Args)]
pub struct ShopArgs {
    /// shop: which service this process runs (one per pod in a cluster)
    #[arg(long, env = "SHOP_SERVICE", value_enum, default_value_t = ShopService::All)]
    pub service: ShopService,
    /// shop: the product catalog's port
    #[arg(long, env = "CATALOG_PORT", default_value_t = CATALOG_PORT)]
    pub catalog_port: u16,
    /// shop: the cart's port
    #[arg(long, env = "CART_PORT", default_value_t = CART_PORT)]
    pub cart_port: u16,
    /// shop: checkout's port
    #[arg(long, env = "CHECKOUT_PORT", default_value_t = CHECKOUT_PORT)]
    pub checkout_port: u16,
    /// shop: the payment processor's port
    #[arg(long, env = "PAYMENT_PORT", default_value_t = PAYMENT_PORT)]
    pub payment_port: u16,
    /// shop: where checkout finds the catalog (default: this host's --catalog-port)
    #[arg(long, env = "CATALOG_URL")]
    pub catalog_url: Option<String>,
    /// shop: where checkout finds the cart (default: this host's --cart-port)
    #[arg(long, env = "CART_URL")]
    pub cart_url: Option<String>,
    /// shop: where checkout finds the payment processor (default: this host's --payment-port)
    #[arg(long, env = "PAYMENT_URL")]
    pub payment_url: Option<String>,
    /// loadgen: where checkout answers (default: this host's --checkout-port)
    #[arg(long, env = "CHECKOUT_URL")]
    pub checkout_url: Option<String>,
    /// shop: checkout's database pool in normal operation (the timeline shrinks it)
    #[arg(long, env = "CHECKOUT_POOL_SIZE", default_value_t = CHECKOUT_POOL)]
    pub checkout_pool: u32,
}

impl Default for ShopArgs {
    fn default() -> Self {
        ShopArgs {
            service: ShopService::All,
            catalog_port: CATALOG_PORT,
            cart_port: CART_PORT,
            checkout_port: CHECKOUT_PORT,
            payment_port: PAYMENT_PORT,
            catalog_url: None,
            cart_url: None,
            payment_url: None,
            checkout_url: None,
            checkout_pool: CHECKOUT_POOL,
        }
    }
}

/// How much catalog the shop generates when its database is empty.
#[derive(Debug, Clone, Args)]
pub struct ShopDataArgs {
    /// shop: products to generate (a catalog query without its index scans all of them)
    #[arg(long = "products", env = "SHOP_PRODUCTS", default_value_t = DEFAULT_PRODUCTS)]
    pub products: u64,
}

/// Big enough that a scan without the index costs real time on a 2-core machine;
/// see docs/runbooks/shop.md for the measured figures.
pub const DEFAULT_PRODUCTS: u64 = 1_000_000;

impl Default for ShopDataArgs {
    fn default() -> Self {
        ShopDataArgs { products: DEFAULT_PRODUCTS }
    }
}

impl ShopArgs {
    /// The services this process runs, each with the port it listens on.
    pub fn ports(&self) -> Vec<(ShopService, u16)> {
        let all = [
            (ShopService::Catalog, self.catalog_port),
            (ShopService::Cart, self.cart_port),
            (ShopService::Checkout, self.checkout_port),
            (ShopService::Payment, self.payment_port),
        ];
        all.into_iter().filter(|(service, _)| self.service == ShopService::All || self.service == *service).collect()
    }
}
