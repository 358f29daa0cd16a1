//! The shop lab under the [`platform::lab::Lab`] contract: four services, each with
//! its own port, which one process runs together or each alone.

use platform::Platform;
use platform::console::{ConsoleSpec, Graph, Line};
use platform::db::Db;
use platform::lab::{Boxed, Built, Lab, RehearsalContext, Service, ServiceSpec, StageContext};
use platform::rehearsal::Rehearsal;
use platform::stage::{Scenario, StageCommand, StageError};

use crate::settings::{ShopArgs, ShopDataArgs, ShopService};
use crate::timeline::{Shop, TimelineArgs};
use crate::{BUGS, Peers, RETRY_SCENARIO, SCENARIO, service_name, stage, stage_retry};
use platform::bugs::BugInfo;

const NAME: &str = "shop";

/// The shop lab, with its settings; `timeline` is what the stage commands run.
#[derive(Debug, Clone, Default)]
pub struct ShopLab {
    pub settings: ShopArgs,
    pub data: ShopDataArgs,
    pub timeline: Option<TimelineArgs>,
}

impl ShopLab {
    /// Where checkout finds `service`: on this process's listener when it runs it,
    /// else at the configured URL, else on this host's port for it.
    fn peer(&self, local: &[(&'static str, String)], service: ShopService) -> String {
        let name = service_name(service);
        let (configured, port) = match service {
            ShopService::Catalog => (&self.settings.catalog_url, self.settings.catalog_port),
            ShopService::Payment => (&self.settings.payment_url, self.settings.payment_port),
            _ => (&self.settings.cart_url, self.settings.cart_port),
        };
        let url = local.iter().find(|(n, _)| *n == name).map(|(_, url)| url.clone());
        let url = url.or_else(|| configured.clone()).unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        url.trim_end_matches('/').to_string()
    }
}

impl Lab for ShopLab {
    fn name(&self) -> &'static str {
        NAME
    }

    fn console(&self) -> ConsoleSpec {
        CONSOLE
    }

    fn bugs(&self) -> &'static [BugInfo] {
        BUGS
    }

    fn scenarios(&self) -> &'static [Scenario] {
        &[SCENARIO, RETRY_SCENARIO]
    }

    fn services(&self) -> Vec<ServiceSpec> {
        let ports = self.settings.ports().into_iter();
        ports.map(|(service, port)| ServiceSpec { name: service_name(service), port }).collect()
    }

    fn build<'a>(
        &'a self,
        platform: &'a Platform,
        local: &'a [(&'static str, String)],
    ) -> Boxed<'a, anyhow::Result<Built>> {
        Box::pin(async move {
            let peers = Peers {
                catalog: self.peer(local, ShopService::Catalog),
                cart: self.peer(local, ShopService::Cart),
                payment: self.peer(local, ShopService::Payment),
            };
            let mut built = crate::build(platform, &self.settings, self.data.products, peers).await?;
            let routers = std::mem::take(&mut built.routers);
            let services = routers.into_iter().map(|(s, router)| Service { name: service_name(s), router }).collect();
            Ok(Built { services, close: Some(Box::pin(built.close())) })
        })
    }

    fn seed<'a>(&'a self, db: &'a Db) -> Boxed<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let generated = crate::seed(db, self.data.products).await?;
            Ok(if generated == 0 {
                "shop: the catalog already has products; nothing generated (reset keeps the catalog)".into()
            } else {
                format!(
                    "shop: {generated} products and their order history generated in {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            })
        })
    }

    fn traces_per_service(&self) -> bool {
        true
    }

    fn banner(&self, services: &[(&'static str, String)], _: &str) -> Vec<String> {
        let example = |name: &str| match name {
            "product-catalog" => "/products?category=electronics&price_min=100&price_max=200",
            "cart" => "/cart/demo-user",
            "payment" => "/health",
            _ => "/orders/popular-products",
        };
        let mut lines: Vec<String> =
            services.iter().map(|(name, base)| format!("  {name:<14} {base}{}", example(name))).collect();
        lines.push("  run the story  breakroom demonstrate shop --speedup 10".into());
        lines
    }

    fn stage<'a>(
        &'a self,
        scenario: &'static Scenario,
        command: StageCommand,
        context: &'a StageContext,
    ) -> Boxed<'a, Result<u8, StageError>> {
        Box::pin(async move {
            let timeline =
                self.timeline.as_ref().ok_or_else(|| StageError("the shop's stage needs its timeline".into()))?;
            if scenario.name == RETRY_SCENARIO.name {
                let token = platform::stage::admin_token(context.token.as_deref(), &context.data_dir, NAME)?;
                let shop = Shop::new(&timeline.urls, token)?;
                return stage_retry::run(command, &shop, timeline.payment_work_ms).await;
            }
            stage::run(command, timeline, context.token.as_deref(), &context.data_dir).await
        })
    }

    fn rehearsal(&self, scenario: &Scenario, context: RehearsalContext) -> Result<Box<dyn Rehearsal>, StageError> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let url = |service: ShopService, variable: &str, default: String| {
            let local = context.service_url(service_name(service)).map(str::to_owned);
            local.or_else(|| from_env(variable)).unwrap_or(default)
        };
        let urls = driver::ShopUrls {
            catalog_url: url(ShopService::Catalog, "SHOP_CATALOG_URL", context.target.url("")),
            cart_url: url(ShopService::Cart, "SHOP_CART_URL", "http://127.0.0.1:8013".into()),
            checkout_url: url(ShopService::Checkout, "SHOP_CHECKOUT_URL", "http://127.0.0.1:8016".into()),
            payment_url: url(ShopService::Payment, "SHOP_PAYMENT_URL", "http://127.0.0.1:8017".into()),
        };
        let shop = Shop::new(&urls, context.token)?;
        if scenario.name == RETRY_SCENARIO.name {
            return Ok(Box::new(stage_retry::Rehearse::new(shop, stage_retry::TALK_WORK_MS)));
        }
        Ok(Box::new(stage::Rehearse::new(shop)))
    }

    /// Black Friday has nothing planted to fix; the retry storm names its bug.
    fn explain(&self, scenario: &Scenario) -> String {
        if scenario.name == RETRY_SCENARIO.name {
            return platform::lab::bug_notes(self);
        }
        "No planted bug: Black Friday's two faults are injected from outside (DROP INDEX, then a \
         pool cut) over the admin API, and its reset undoes both.\n"
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_keeps_a_space_between_each_service_and_its_url() {
        let services = [("product-catalog", "http://h:1".to_string()), ("cart", "http://h:2".to_string())];
        let lines = ShopLab::default().banner(&services, "http://h:1");
        assert!(lines[0].starts_with("  product-catalog http://h:1/products?"), "{lines:?}");
        assert!(lines[1].starts_with("  cart           http://h:2/cart/demo-user"), "{lines:?}");
    }
}

/// The console's view of the lab: its alert rules (deploy/prometheus/rules/shop.yml,
/// the file promtool tests) and the graphs that tell its story.
pub const CONSOLE: ConsoleSpec = ConsoleSpec {
    rules: &[include_str!("../../../../deploy/prometheus/rules/shop.yml")],
    graphs: &[
        Graph {
            id: "checkout",
            title: "Checkouts per second by outcome",
            unit: "per s",
            lines: &[Line {
                legend: "{status}",
                expr: r#"sum by (status) (rate(http_requests_total{job="checkout", endpoint="/orders/create"}[1m]))"#,
            }],
        },
        Graph {
            id: "pool",
            title: "Checkout's database pool: size, exhausted per second",
            unit: "connections",
            lines: &[
                Line { legend: "size", expr: r#"sum(shop_db_pool_size{job="checkout"})"# },
                Line {
                    legend: "exhausted per s",
                    expr: r#"sum(rate(shop_db_pool_exhausted_total{job="checkout"}[1m]))"#,
                },
            ],
        },
        Graph {
            id: "queries",
            title: "Catalog queries: slow per second, full scans per second",
            unit: "per s",
            lines: &[
                Line { legend: "slow {shape}", expr: "sum by (shape) (rate(shop_slow_queries_total[1m]))" },
                Line { legend: "full scans", expr: r#"sum(rate(shop_db_queries_total{plan="full_scan"}[1m]))"# },
                Line { legend: "indexes present", expr: "sum(shop_index_present)" },
            ],
        },
        Graph {
            id: "payment",
            title: "Payment calls per second: first tries and retries",
            unit: "per s",
            lines: &[Line { legend: "{attempt}", expr: "sum by (attempt) (rate(shop_payment_calls_total[1m]))" }],
        },
    ],
};
