//! The pages in a real browser: Debian's headless Chromium driven by playwright-core
//! (tests/browser/e2e.mjs), against a fresh vote lab on 127.0.0.1. Needs chromium,
//! zbar-tools and `npm ci` in tests/browser (.ci/run does all three).
//! `BREAKROOM_SCREENSHOTS=docs/screenshots cargo test --test browser` refreshes the
//! README's screenshots.

mod common;

use common::{ADMIN_TOKEN, Backend, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_work_in_headless_chromium() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (.ci/run does)"
    );
    let app = spawn_app(Backend::Embedded, |c| c.platform.conference = Some("sreday".into())).await;
    // A lab without pages of its own: its landing page is checked at every size too.
    let items = common::spawn_lab(breakroom::labs::LabName::Items, Backend::Embedded, |_| {}).await;
    let room =
        common::spawn_lab(breakroom::labs::LabName::Datasets, Backend::Embedded, |c| c.platform.room = true).await;
    let shots = tempfile::tempdir().unwrap();
    let shots_dir = common::screenshot_dir(&shots);
    let output = tokio::process::Command::new("node")
        .arg("e2e.mjs")
        .current_dir(dir)
        .env("BASE_URL", &app.url)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ITEMS_URL", &items.url)
        .env("ROOM_URL", &room.url)
        .env("SCREENSHOT_DIR", &shots_dir)
        .output()
        .await
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("14 passed, 0 failed"), "{text}");
}
