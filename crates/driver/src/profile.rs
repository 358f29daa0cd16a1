//! Named traffic, as data: a profile is weighted journeys, a journey a sequence of
//! request steps with think time between them. The engine knows only this shape, so
//! a new lab's traffic is a new profile, not a new engine.

use std::time::Duration;

use rand::Rng;

/// One request of a journey. `path` and `body` may hold placeholders filled per
/// request: `{choice}` (a weighted poll choice), `{item_id}` (an id from the setup
/// pool), `{n}` (a sequence number), `{journey}` (the journey's number, the same for
/// all its steps), and for the shop `{category}`, `{price_min}`, `{price_max}`,
/// `{product_id}` (any product) and `{doorbuster}` (one of the first products, fixed
/// per journey). A `path` starting with `http://` is a full URL: a journey may visit
/// several services.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: hyper::Method,
    pub path: String,
    pub body: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Journey {
    pub name: String,
    pub weight: f64,
    pub steps: Vec<Step>,
    /// Pause between two steps, as a person reading a page would.
    pub think: Duration,
}

/// What a profile needs created before traffic starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setup {
    None,
    /// Create this many items (`POST /items`) and use their ids as `{item_id}`.
    Items(usize),
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub journeys: Vec<Journey>,
    pub choices: Vec<(String, f64)>,
    pub setup: Setup,
    /// Journey weights once the run switches to its later mix (the shop's degradation).
    pub later_weights: Option<Vec<f64>>,
    /// How many products `{product_id}` draws from.
    pub products: u64,
}

fn step(name: &str, method: hyper::Method, path: &str, body: Option<&str>) -> Step {
    Step { name: name.into(), method, path: path.into(), body: body.map(str::to_owned) }
}

fn single(name: &str, weight: f64, step: Step) -> Journey {
    Journey { name: name.into(), weight, steps: vec![step], think: Duration::ZERO }
}

/// A room of phones voting: `referral_share` of them through the partner QR code.
pub fn vote_audience(choices: Vec<(String, f64)>, referral_share: f64, referral: &str) -> Profile {
    let referral = serde_json::to_string(referral).expect("a string serializes");
    let with_referral = format!(r#"{{"choice":"{{choice}}","referral":{referral}}}"#);
    Profile {
        name: "vote-audience",
        journeys: vec![
            single(
                "vote",
                1.0 - referral_share,
                step("vote", hyper::Method::POST, "/vote", Some(r#"{"choice":"{choice}","referral":null}"#)),
            ),
            single(
                "vote+referral",
                referral_share,
                step("vote+referral", hyper::Method::POST, "/vote", Some(&with_referral)),
            ),
        ],
        choices,
        setup: Setup::None,
        later_weights: None,
        products: 0,
    }
}

/// The same room with `share` of its votes carrying a referral code no partner has
/// (`code`: last year's, from an old flyer): the trigger of `vote/connection-leak`.
pub fn with_unknown_codes(mut profile: Profile, share: f64, code: &str) -> Profile {
    if share <= 0.0 {
        return profile;
    }
    for journey in &mut profile.journeys {
        journey.weight *= 1.0 - share;
    }
    let code = serde_json::to_string(code).expect("a string serializes");
    let body = format!(r#"{{"choice":"{{choice}}","referral":{code}}}"#);
    profile.journeys.push(single(
        "vote+unknown-code",
        share,
        step("vote+unknown-code", hyper::Method::POST, "/vote", Some(&body)),
    ));
    profile
}

/// Seed 002's k6 mix: 70% reads of existing items, 20% creates, 10% updates.
pub fn items_mixed() -> Profile {
    Profile {
        name: "items-mixed",
        journeys: vec![
            single("read", 0.7, step("read", hyper::Method::GET, "/items/{item_id}", None)),
            single(
                "create",
                0.2,
                step("create", hyper::Method::POST, "/items", Some(r#"{"name":"Load test {n}","price":1.99}"#)),
            ),
            single(
                "update",
                0.1,
                step("update", hyper::Method::PUT, "/items/{item_id}", Some(r#"{"name":"Updated {n}","price":2.99}"#)),
            ),
        ],
        choices: Vec::new(),
        setup: Setup::Items(10),
        later_weights: None,
        products: 0,
    }
}

/// The readers of one hot item's product page: its popular view, aggregated from the
/// sales history whenever its short-lived cache entry expires.
pub fn items_popular(item: &str) -> Profile {
    let path = format!("/items/{item}/popular");
    Profile {
        name: "items-popular",
        journeys: vec![single("popular", 1.0, step("popular", hyper::Method::GET, &path, None))],
        choices: Vec::new(),
        setup: Setup::None,
        later_weights: None,
        products: 0,
    }
}

/// One plain request, for anything else.
pub fn url(method: hyper::Method, path: &str, body: Option<&str>) -> Profile {
    Profile {
        name: "url",
        journeys: vec![single("request", 1.0, step("request", method, path, body))],
        choices: Vec::new(),
        setup: Setup::None,
        later_weights: None,
        products: 0,
    }
}

/// The doorbusters every Black Friday checkout goes for: products 1 to 5.
pub const DOORBUSTERS: u64 = 5;

/// Pause between the steps of a shopper's journey.
const SHOPPER_THINK: Duration = Duration::from_millis(500);

/// Seed 003's Black Friday shoppers: `browse_only` 0.60, `browse_and_cart` 0.25,
/// `full_checkout` 0.15, shifting to 0.50 / 0.20 / 0.30 once degradation starts
/// (people retry checkouts). Each journey is a sequence of real calls to the three
/// services, with think time.
pub fn blackfriday(catalog: &str, cart: &str, checkout: &str, products: u64) -> Profile {
    let browse = format!("{catalog}/products?category={{category}}&price_min={{price_min}}&price_max={{price_max}}");
    let add = format!("{cart}/cart/shopper-{{journey}}/add");
    let journey =
        |name: &str, weight: f64, steps: Vec<Step>| Journey { name: name.into(), weight, steps, think: SHOPPER_THINK };
    Profile {
        name: "blackfriday",
        journeys: vec![
            journey(
                "browse_only",
                0.60,
                vec![
                    step("catalog /products", hyper::Method::GET, &browse, None),
                    step(
                        "catalog /products/{id}",
                        hyper::Method::GET,
                        &format!("{catalog}/products/{{product_id}}"),
                        None,
                    ),
                ],
            ),
            journey(
                "browse_and_cart",
                0.25,
                vec![
                    step("catalog /products", hyper::Method::GET, &browse, None),
                    step("cart add", hyper::Method::POST, &add, Some(r#"{"product_id":{product_id},"quantity":1}"#)),
                    step("cart view", hyper::Method::GET, &format!("{cart}/cart/shopper-{{journey}}"), None),
                ],
            ),
            journey(
                "full_checkout",
                0.15,
                vec![
                    step("catalog /products", hyper::Method::GET, &browse, None),
                    step("cart add", hyper::Method::POST, &add, Some(r#"{"product_id":{doorbuster},"quantity":1}"#)),
                    step(
                        "checkout /orders/create",
                        hyper::Method::POST,
                        &format!("{checkout}/orders/create"),
                        Some(r#"{"user_id":"shopper-{journey}","product_id":{doorbuster},"quantity":1}"#),
                    ),
                ],
            ),
        ],
        choices: Vec::new(),
        setup: Setup::None,
        later_weights: Some(vec![0.50, 0.20, 0.30]),
        products: products.max(1),
    }
}

/// The doorbuster rush of the Black Friday peak: buyers who come for a doorbuster and
/// go straight to checkout (their cart was filled before the doors opened).
pub fn doorbuster_rush(checkout: &str, products: u64) -> Profile {
    Profile {
        name: "doorbuster_rush",
        journeys: vec![Journey {
            name: "doorbuster".into(),
            weight: 1.0,
            steps: vec![step(
                "checkout /orders/create",
                hyper::Method::POST,
                &format!("{checkout}/orders/create"),
                Some(r#"{"user_id":"doorbuster-{journey}","product_id":{doorbuster},"quantity":1}"#),
            )],
            think: Duration::ZERO,
        }],
        choices: Vec::new(),
        setup: Setup::None,
        later_weights: None,
        products: products.max(1),
    }
}

const SHOP_CATEGORIES: [&str; 5] = ["electronics", "furniture", "appliances", "sports", "kitchen"];

/// `print=1,ai=3`: weights by key.
pub fn parse_weights(text: &str) -> Result<Vec<(String, f64)>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (key, weight) = part.split_once('=').ok_or_else(|| format!("'{part}' is not key=weight"))?;
            let weight: f64 = weight.trim().parse().map_err(|_| format!("'{part}': the weight is not a number"))?;
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!("'{part}': weights are numbers ≥ 0"));
            }
            Ok((key.trim().to_string(), weight))
        })
        .collect()
}

/// Picks an index with probability proportional to its weight.
pub fn pick<R: Rng>(rng: &mut R, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut roll = rng.random_range(0.0..total);
    let mut last = 0;
    for (i, weight) in weights.enumerate() {
        last = i;
        if roll < weight {
            return i;
        }
        roll -= weight;
    }
    last
}

impl Profile {
    /// The index of a journey, drawn by weight (the later mix once `later` is set).
    pub fn pick_journey<R: Rng>(&self, rng: &mut R, later: bool) -> usize {
        match &self.later_weights {
            Some(weights) if later => pick(rng, weights.iter().copied()),
            _ => pick(rng, self.journeys.iter().map(|j| j.weight)),
        }
    }

    /// A step's path and body with their placeholders filled, in one pass over the
    /// text (this runs for every request the driver sends). Braces that are not a
    /// placeholder, such as a JSON body's, stay as they are.
    pub fn fill<R: Rng>(&self, rng: &mut R, text: &str, n: u64, journey: u64, ids: &[String]) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(text.len() + 24);
        let mut rest = text;
        let mut price_min = None;
        // Byte scans: the texts are short, and `{`/`}` never occur inside a UTF-8 sequence.
        let position = |text: &str, byte: u8| text.bytes().position(|b| b == byte);
        while let Some(open) = position(rest, b'{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name = position(after, b'}').map_or("", |close| &after[..close]);
            let filled = match name {
                "n" => write!(out, "{n}").is_ok(),
                "journey" => write!(out, "{journey}").is_ok(),
                "category" => {
                    out.push_str(SHOP_CATEGORIES[rng.random_range(0..SHOP_CATEGORIES.len())]);
                    true
                }
                "price_min" => write!(out, "{}", *price_min.get_or_insert_with(|| rng.random_range(5..1900))).is_ok(),
                "price_max" => {
                    write!(out, "{}", *price_min.get_or_insert_with(|| rng.random_range(5..1900)) + 100).is_ok()
                }
                "product_id" => write!(out, "{}", rng.random_range(1..=self.products.max(1))).is_ok(),
                "doorbuster" => write!(out, "{}", 1 + journey % DOORBUSTERS).is_ok(),
                "choice" => {
                    let choice =
                        self.choices.get(pick(rng, self.choices.iter().map(|c| c.1))).map_or("ai", |c| c.0.as_str());
                    out.push_str(choice);
                    true
                }
                "item_id" if !ids.is_empty() => {
                    out.push_str(&ids[rng.random_range(0..ids.len())]);
                    true
                }
                _ => false,
            };
            if filled {
                rest = &after[name.len() + 1..];
            } else {
                out.push('{');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_pick_in_proportion() {
        let mut rng = rand::rng();
        let weights = [0.7, 0.2, 0.1];
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[pick(&mut rng, weights.iter().copied())] += 1;
        }
        assert!((counts[0] as f64 / 20_000.0 - 0.7).abs() < 0.03, "{counts:?}");
        assert!((counts[2] as f64 / 20_000.0 - 0.1).abs() < 0.03, "{counts:?}");
        assert_eq!(pick(&mut rng, [0.0, 0.0].into_iter()), 0);
    }

    #[test]
    fn unknown_codes_take_their_share_of_the_room() {
        let room = vote_audience(parse_weights("ai=1").unwrap(), 0.3, "conf-partner-2026");
        let profile = with_unknown_codes(room, 0.1, "conf-partner-2025");
        let weights: Vec<f64> = profile.journeys.iter().map(|j| j.weight).collect();
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{weights:?}");
        assert!((weights[2] - 0.1).abs() < 1e-9 && (weights[1] - 0.27).abs() < 1e-9, "{weights:?}");
        let body = profile.journeys[2].steps[0].body.clone().unwrap();
        assert_eq!(
            profile.fill(&mut rand::rng(), &body, 1, 0, &[]),
            r#"{"choice":"ai","referral":"conf-partner-2025"}"#
        );
        let untouched = vote_audience(parse_weights("ai=1").unwrap(), 0.3, "conf-partner-2026");
        assert_eq!(with_unknown_codes(untouched, 0.0, "x").journeys.len(), 2);
    }

    #[test]
    fn placeholders_are_filled() {
        let profile = vote_audience(parse_weights("ai=1").unwrap(), 0.5, "conf-partner-2026");
        let body = profile.journeys[1].steps[0].body.clone().unwrap();
        let filled = profile.fill(&mut rand::rng(), &body, 7, 0, &[]);
        assert_eq!(filled, r#"{"choice":"ai","referral":"conf-partner-2026"}"#);
        let items = items_mixed();
        let path = items.fill(&mut rand::rng(), "/items/{item_id}?n={n}", 3, 0, &["abc".into()]);
        assert_eq!(path, "/items/abc?n=3");
        let shop = blackfriday("http://c", "http://k", "http://o", 1000);
        let body = shop.journeys[2].steps[2].body.clone().unwrap();
        let filled = shop.fill(&mut rand::rng(), &body, 1, 41, &[]);
        assert_eq!(filled, r#"{"user_id":"shopper-41","product_id":2,"quantity":1}"#); // 1 + 41 % 5
        let browse = shop.fill(&mut rand::rng(), &shop.journeys[0].steps[0].path, 1, 41, &[]);
        assert!(browse.starts_with("http://c/products?category="), "{browse}");
        assert!(!browse.contains('{'), "{browse}");
        let number = |key: &str| -> u64 {
            let at = browse.find(key).unwrap() + key.len();
            browse[at..].split('&').next().unwrap().parse().unwrap()
        };
        assert_eq!(number("price_max=") - number("price_min="), 100, "one range: {browse}");
        let untouched = items.fill(&mut rand::rng(), r#"{"a":{"b":"{unknown}"}} {n"#, 3, 0, &[]);
        assert_eq!(untouched, r#"{"a":{"b":"{unknown}"}} {n"#, "what is not a placeholder stays");
        assert_eq!(items.fill(&mut rand::rng(), "/items/{item_id}", 3, 0, &[]), "/items/{item_id}", "no ids yet");
        assert!(parse_weights("ai=x").is_err());
    }
}
