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
            "{api}[services.alpha]\ncommand = [\"sleep\", \"300\"]\n[services.alpha.backoff]\ninitial_delay = \"100ms\"\n[services.beta]\ncommand = [\"sleep\", \"301\"]\n[services.gamma]\ncommand = [\"sh\", \"-c\", \"{} '--status=warm: 3 maps'; exec sleep 302\"]\nsockets = {{ http = \"tcp://127.0.0.1:{}\" }}\n[services.delta]\ncommand = [\"sh\", \"-c\", \"i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.3; done\"]\n[alerts.ops]\nexec = [\"true\"]\nevents = [\"guardian_started\"]\n",
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
            text(&c, "#count").await.filter(|t| t.starts_with("0 of 4"))
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

        // The detail view (issue 35): click delta's row. A line delta prints after the view
        // opened shows up in its live log.
        let log = sb.state_dir().join("logs").join("delta.log");
        let printed = |text: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix("tick-")?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        };
        c.find(Locator::Css("tr[data-service=\"delta\"] td:first-child"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let at_open = printed(&std::fs::read_to_string(&log).unwrap_or_default());
        eventually("a line delta printed after the view opened", || async {
            let shown = text(&c, "#d-log").await?;
            (printed(&shown) > at_open).then_some(())
        })
        .await;
        assert_eq!(text(&c, "#d-name").await.as_deref(), Some("delta"));
        // Search narrows the log to the lines that hold the text.
        let search = c.find(Locator::Css("#d-search")).await.unwrap();
        search.send_keys("tick-1").await.unwrap();
        eventually("only matching lines", || async {
            let shown = text(&c, "#d-log").await?;
            (!shown.is_empty() && shown.lines().all(|l| l.contains("tick-1"))).then_some(())
        })
        .await;
        search.clear().await.unwrap();
        c.execute(
            "document.querySelector('#d-search').dispatchEvent(new Event('input'))",
            vec![],
        )
        .await
        .unwrap();
        // A restart shows in the chart of the last hour, and among the recent events.
        let total = |c: &fantoccini::Client| {
            let c = c.clone();
            async move {
                let svg = c.find(Locator::Css("#c-restarts")).await.ok()?;
                svg.attr("data-total").await.ok()??.parse::<f64>().ok()
            }
        };
        let before = eventually("the restart chart drawn", || total(&c)).await;
        let firsts = |shown: &str| shown.lines().filter(|l| *l == "tick-1").count();
        let had = firsts(&text(&c, "#d-log").await.unwrap_or_default());
        kill(sb.pid_of(&cfg, "delta").unwrap(), Signal::SIGKILL);
        eventually("the restart in the chart", || async {
            total(&c).await.filter(|t| *t >= before + 1.0)
        })
        .await;
        eventually("the restart among the recent events", || async {
            text(&c, "#d-events").await.filter(|t| t.contains("restart"))
        })
        .await;
        // The live log goes on with the new process (it counts from 1 again).
        eventually("the new process's lines", || async {
            (firsts(&text(&c, "#d-log").await?) > had).then_some(())
        })
        .await;
        c.execute("document.querySelector('#detail').scrollIntoView()", vec![])
            .await
            .unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(target_dir().join("browser-detail-view.png"), png).unwrap();
        c.close().await.unwrap();
    });
}
