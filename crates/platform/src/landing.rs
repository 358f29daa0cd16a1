//! `/` on a lab that has no page of its own (items, datasets, each shop service): what
//! the lab is, its state, where its contract and telemetry are, and the commands that
//! tell its stories — for the speaker's browser rather than a JSON 404.
//!
//! The state is the service's own `/health`, asked through the service itself (so the
//! page shows exactly what a probe sees), and the planted bugs' switches (which
//! implementation runs; where the bug lives is left to the hints).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;

use crate::bugs::Bugs;
use crate::stage::Scenario;

/// The most of `/health` the page reads.
const HEALTH_LIMIT: usize = 64 * 1024;

/// What a landing page says about its service.
pub struct Landing {
    pub lab: &'static str,
    pub service: &'static str,
    pub scenarios: &'static [Scenario],
    pub bugs: Bugs,
    /// The lab's other services, by name and base URL, when it has several.
    pub siblings: Vec<(&'static str, String)>,
}

/// `router` with the landing page on `/`. Only `/` takes the extra step: every other
/// request goes straight to `router`. The page asks the service's own `/health` through
/// `router` (so each view also counts as a `/health` request).
pub fn wrap(router: Router, landing: Landing) -> Router {
    let state = Arc::new((landing, router.clone()));
    // `/` with another method goes on to the service too, for its own JSON answer.
    let home = get(page).fallback_service(router.clone()).with_state(state);
    Router::new().route("/", home).fallback_service(router)
}

async fn page(State(state): State<Arc<(Landing, Router)>>, headers: HeaderMap) -> Response {
    let (landing, router) = &*state;
    let health = Request::get("/health").body(Body::empty()).expect("a request to /health builds");
    let answer = match router.clone().oneshot(health).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    let status = answer.status();
    let body = axum::body::to_bytes(answer.into_body(), HEALTH_LIMIT).await.unwrap_or_default();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    // The siblings' links as this browser reaches this host, on their own ports.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let host = host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(h, _)| h);
    let html = render(landing, host, status, &health);
    let mut page = (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response();
    // Outside the service's own layers: the page gets the headers every page carries here.
    crate::http::add_security_headers(&mut page);
    page
}

/// Text made safe for HTML, in an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `/health`'s fields as rows: nested objects flattened to `pool.in_use`.
fn rows(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                rows(&name, value, out);
            }
        }
        serde_json::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn render(landing: &Landing, host: &str, status: StatusCode, health: &serde_json::Value) -> String {
    let title = if landing.service == landing.lab {
        format!("breakroom · {}", landing.lab)
    } else {
        format!("breakroom · {} · {}", landing.lab, landing.service)
    };
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"dark\">\n<title>{t}</title>\n\
         <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/static/breakroom.css\">\n</head>\n<body class=\"page-landing\">\n\
         <div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n<header class=\"masthead\">\
         <span class=\"badge\" aria-hidden=\"true\">B</span><h1 class=\"title\">{t}</h1></header>\n<main>\n",
        t = escape(&title)
    );
    for scenario in landing.scenarios {
        let name = escape(scenario.name);
        html.push_str(&format!(
            "<section class=\"card\">\n<h2>{}</h2>\n<p class=\"scenario-name\"><code>{name}</code></p>\n<p>{}</p>\n\
             <pre class=\"commands\">breakroom demonstrate {name}\nbreakroom check {name}\nbreakroom hint {name}\n\
             breakroom explain {name}\nbreakroom reset {name}\nbreakroom rehearse {name}</pre>\n</section>\n",
            escape(scenario.title),
            escape(scenario.story)
        ));
    }
    html.push_str("<section class=\"card\">\n<h2>State</h2>\n");
    let bugs = landing.bugs.states();
    if !bugs.is_empty() {
        // Where each bug lives is the hints' business (and /admin/bugs'), not the room's.
        html.push_str("<table class=\"state\">\n<tr><th>planted bug</th><th>running</th></tr>\n");
        for bug in bugs {
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td class=\"mode-{}\">{}</td></tr>\n",
                escape(bug.name),
                bug.mode,
                bug.mode.to_uppercase()
            ));
        }
        html.push_str("</table>\n");
    }
    let mut fields = Vec::new();
    rows("", health, &mut fields);
    html.push_str(&format!(
        "<table class=\"state\">\n<tr><th colspan=\"2\"><a href=\"/health\">/health</a> ({})</th></tr>\n",
        status.as_u16()
    ));
    for (key, value) in fields {
        html.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>\n", escape(&key), escape(&value)));
    }
    html.push_str("</table>\n</section>\n<section class=\"card\">\n<h2>Look closer</h2>\n<ul class=\"links\">\n");
    for (path, what) in [
        ("/console", "the telemetry console: traces, graphs, alerts, logs"),
        ("/openapi.json", "the OpenAPI contract"),
        ("/health", "the health probe"),
        ("/metrics", "Prometheus metrics"),
    ] {
        html.push_str(&format!("<li><a href=\"{path}\">{path}</a> — {what}</li>\n"));
    }
    for (name, url) in &landing.siblings {
        let port = url.rsplit_once(':').map_or("", |(_, port)| port.trim_end_matches('/'));
        let url = format!("http://{host}:{port}/");
        html.push_str(&format!("<li><a href=\"{u}\">{u}</a> — {}</li>\n", escape(name), u = escape(&url)));
    }
    html.push_str(&format!(
        "</ul>\n<p>The runbook: <code>docs/runbooks/{}.md</code>. The admin API needs \
         <code>Authorization: Bearer $BREAKROOM_ADMIN_TOKEN</code>.</p>\n</section>\n</main>\n\
         <footer class=\"footer\"><span>breakroom · {l} lab</span></footer>\n\
         <div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n</body>\n</html>\n",
        escape(landing.lab),
        l = escape(landing.lab)
    ));
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn nested_health_fields_become_dotted_rows() {
        let mut out = Vec::new();
        rows("", &serde_json::json!({ "status": "ok", "pool": { "in_use": 3, "normal": { "size": 50 } } }), &mut out);
        // In the order /health writes them.
        assert_eq!(
            out,
            [
                ("status".to_string(), "ok".to_string()),
                ("pool.in_use".to_string(), "3".to_string()),
                ("pool.normal.size".to_string(), "50".to_string())
            ]
        );
    }
}
