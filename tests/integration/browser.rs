//! The status page in a real browser: headless Chromium driven over WebDriver (chromedriver).
//! scripts/test installs Debian's chromium and chromium-driver when they are missing.

use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::Signal;

use crate::support::*;

const TOKEN: &str = "browser-test-token";

struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, u16) {
    let port = free_port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run chromedriver ({e}): install it with `apt-get install chromium chromium-driver` (scripts/test does)")
        });
    let d = Driver(child);
    assert!(
        wait_for(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "chromedriver did not listen on {port}"
    );
    (d, port)
}

fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/integration-…
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// Polls `f` until it gives `Some`, for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &fantoccini::Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

#[test]
fn the_status_page_shows_services_and_drives_them() {
    let notify = require("systemd-notify", "systemd");
    let sb = Sandbox::new();
    let (api, addr) = sb.api_section(TOKEN);
    // gamma holds a socket (SPEC §13) and says how it is (STATUS=, SPEC §14).
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{api}[services.alpha]\ncommand = [\"sleep\", \"300\"]\n[services.alpha.backoff]\ninitial_delay = \"100ms\"\n[services.beta]\ncommand = [\"sleep\", \"301\"]\n[services.gamma]\ncommand = [\"sh\", \"-c\", \"{} '--status=warm: 3 maps'; exec sleep 302\"]\nsockets = {{ http = \"tcp://127.0.0.1:{}\" }}\n[alerts.ops]\nexec = [\"true\"]\nevents = [\"guardian_started\"]\n",
            notify.display(),
            free_port()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(Duration::from_secs(30), || sb
        .pid_of(&cfg, "alpha")
        .is_some()
        && sb.pid_of(&cfg, "beta").is_some()));
    let (_driver, wd) = chromedriver();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,720"]}),
        );
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{wd}"))
            .await
            .expect("a WebDriver session with headless chromium");
        c.goto(&format!("http://{addr}/")).await.unwrap();

        // Both services, running.
        for name in ["alpha", "beta"] {
            let css = format!("tr[data-service=\"{name}\"] td:nth-child(2)");
            eventually(&format!("{name} running"), || async {
                text(&c, &css).await.filter(|t| t == "running")
            })
            .await;
        }

        // What gamma says of itself shows under its state; its port cell says it is held.
        eventually("gamma's STATUS= on the page", || async {
            text(&c, "tr[data-service=\"gamma\"] td:nth-child(2)")
                .await
                .filter(|t| t.contains("warm: 3 maps"))
        })
        .await;
        let port = text(&c, "tr[data-service=\"gamma\"] td:nth-child(4)").await;
        assert!(
            port.as_deref().is_some_and(|p| p.ends_with("(held)")),
            "{port:?}"
        );

        // The last alerts and their delivery (SPEC §15).
        eventually("the alert on the page", || async {
            text(&c, "#alerts li")
                .await
                .filter(|t| t.contains("ops: guardian_started → sent"))
        })
        .await;

        // Nothing changes: the page's polls are answered 304 without a body, and uptimes
        // still move on (the page adds the time elapsed since the last full answer).
        eventually("a 304 poll", || async {
            text(&c, "#poll").await.filter(|t| t == "304, unchanged")
        })
        .await;
        let first = eventually("beta's uptime", || async {
            text(&c, "tr[data-service=\"beta\"] td:nth-child(5)").await.filter(|t| t.ends_with('s'))
        })
        .await;
        let secs = |t: &str| t.trim_end_matches('s').parse::<u64>().ok();
        eventually("beta's uptime moving on while unchanged", || async {
            let now = text(&c, "tr[data-service=\"beta\"] td:nth-child(5)").await?;
            let poll = text(&c, "#poll").await?;
            (secs(&now)? >= secs(&first)? + 3 && poll == "304, unchanged").then_some(())
        })
        .await;

        // SIGKILL alpha: its restart count goes up on the page.
        let alpha = sb.pid_of(&cfg, "alpha").unwrap();
        kill(alpha, Signal::SIGKILL);
        eventually("alpha restarts = 1", || async {
            text(&c, "tr[data-service=\"alpha\"] td.restarts").await.filter(|t| t == "1")
        })
        .await;

        // A wrong token: the error is shown, nothing restarts.
        let beta = sb.pid_of(&cfg, "beta").unwrap();
        let token_box = c.find(Locator::Css("#token")).await.unwrap();
        token_box.send_keys("wrong").await.unwrap();
        let restart = "tr[data-service=\"beta\"] button[data-action=\"restart\"]";
        c.find(Locator::Css(restart)).await.unwrap().click().await.unwrap();
        let banner = eventually("the error banner", || async {
            text(&c, "#banner").await.filter(|t| t.contains("403"))
        })
        .await;
        assert!(banner.contains("wrong token"), "{banner}");
        assert_eq!(sb.pid_of(&cfg, "beta"), Some(beta));

        // The right token: beta restarts with a new PID, shown on the page.
        let token_box = c.find(Locator::Css("#token")).await.unwrap();
        token_box.clear().await.unwrap();
        token_box.send_keys(TOKEN).await.unwrap();
        c.find(Locator::Css(restart)).await.unwrap().click().await.unwrap();
        let shown = eventually("beta's new pid on the page", || async {
            text(&c, "tr[data-service=\"beta\"] td.pid")
                .await
                .filter(|t| t.parse::<i32>().is_ok_and(|p| p != beta))
        })
        .await;
        assert_eq!(Some(shown.parse::<i32>().unwrap()), sb.pid_of(&cfg, "beta"));

        // Filtering by name and by state narrows the table.
        let filter = c.find(Locator::Css("#filter")).await.unwrap();
        filter.send_keys("alp").await.unwrap();
        eventually("only alpha listed", || async {
            let rows = c.find_all(Locator::Css("#services tbody tr")).await.ok()?;
            let first = rows.first()?.attr("data-service").await.ok()??;
            (rows.len() == 1 && first == "alpha").then_some(())
        })
        .await;
        filter.clear().await.unwrap();
        c.find(Locator::Css("#state option[value=\"failed\"]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually("no failed service listed", || async {
            text(&c, "#count").await.filter(|t| t.starts_with("0 of 3"))
        })
        .await;
        c.find(Locator::Css("#state option[value=\"\"]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        let png = c.screenshot().await.unwrap();
        std::fs::write(target_dir().join("browser-status-page.png"), png).unwrap();
        c.close().await.unwrap();
    });
}
