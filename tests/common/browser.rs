//! A real browser for end-to-end tests of the pages the api serves: headless
//! Chromium driven over WebDriver (`chromedriver`) with `fantoccini`.
//!
//! ```ignore
//! let driver = browser::Driver::start().await;          // chromedriver on a free port
//! let fan = driver.session(1024, 900).await;             // one browser window, 1024×900
//! fan.goto(&app.url("/")).await;
//! fan.type_text("#name", "Kim").await;
//! fan.click("#signup").await;
//! fan.wait_js("the line is shown", "!document.getElementById('step-queue').hidden").await;
//! fan.screenshot("docs/screenshots/web-1.png").await;
//! ```
//!
//! Every session has its own profile (cookies, storage), so two sessions are
//! two people. Waiting is always polling a condition ([`Browser::wait_until`],
//! [`Browser::wait_js`]) with a deadline, never a sleep; a wait that times out
//! panics with what it waited for, the page's URL and a screenshot path.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`
//! (`scripts/services.sh --test-tools` installs them; `scripts/test.sh` runs
//! it). `CHROMIUM` and `CHROMEDRIVER` override their paths. A missing browser
//! fails the test: it never skips.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction},
    elements::Element,
};
use serde_json::Value;

/// How long a wait lasts unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(100);

fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found (set {var} to override): install Debian's chromium and chromium-driver, \
         e.g. by running scripts/services.sh --test-tools (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running `chromedriver`, killed (with every browser it started) on drop.
pub struct Driver {
    child: Child,
    url: String,
    chromium: PathBuf,
    /// Profiles of this driver's sessions, removed on drop.
    profiles: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub async fn start() -> Self {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let profiles =
            std::env::temp_dir().join(format!("concert-browser-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profiles).expect("browser profile directory");
        let log = profiles.join("chromedriver.log");
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so drop can end chromedriver and every browser it started.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()))
        };
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            profiles,
        };
        let status = format!("{}/status", driver.url);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = match http.get(&status).send().await {
                Ok(resp) => resp
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited ({exit}) before it was ready:\n{}",
                    log_text()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver not ready within 20 s:\n{}",
                log_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Opens a new headless Chromium window of `width`×`height` CSS pixels
    /// (device scale 1, English locale), with its own empty profile.
    pub async fn session(&self, width: u32, height: u32) -> Browser {
        let profile = self.profiles.join(uuid::Uuid::new_v4().to_string());
        let args = vec![
            "--headless=new".to_owned(),
            // Tests run as root in containers, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": self.chromium.display().to_string(),
                "args": args,
                "prefs": { "intl.accept_languages": "en-US" },
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening a Chromium session: {e}"));
        client
            .set_window_size(width, height)
            .await
            .expect("set window size");
        Browser {
            client,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole process group: chromedriver and the browsers it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// One browser window (one person). Cheap to clone: clones drive the same window.
#[derive(Clone)]
pub struct Browser {
    /// The WebDriver client, for anything the helpers below do not cover.
    pub client: Client,
    /// How long the waits of this window last.
    pub timeout: Duration,
}

impl Browser {
    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The element matching the CSS selector `css` (panics if there is none now).
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
    }

    /// Every element matching `css` (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find all `{css}`: {e}"))
    }

    /// Clicks the element matching `css`, as a user would (it must be visible).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Double-clicks the element matching `css` with real pointer events.
    pub async fn double_click(&self, css: &str) {
        let element = self.find(css).await;
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client
            .perform_actions(mouse)
            .await
            .unwrap_or_else(|e| panic!("double-click `{css}`: {e}"));
    }

    /// Replaces the text of the field matching `css` with `text`, typed key by key.
    pub async fn type_text(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear `{css}`: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Presses `keys` on whatever has focus, one after another, as a keyboard
    /// would (key down, key up). Special keys: [`fantoccini::key::Key`], e.g.
    /// `Key::Tab.into()`, or their WebDriver code points (`'\u{E004}'` is Tab).
    pub async fn press(&self, keys: &[char]) {
        let mut keyboard = KeyActions::new("keyboard".into());
        for &key in keys {
            keyboard = keyboard
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(keyboard)
            .await
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    /// Chooses the option with `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in `{css}`: {e}"));
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
    }

    /// An attribute of the element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of `{css}`: {e}"))
    }

    /// Runs `expression` (a JavaScript expression) in the page and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("evaluating `{expression}`: {e}"))
    }

    /// Polls `check` until it returns `Some` and returns that, panicking after
    /// [`Browser::timeout`] with `what` (and a screenshot of the page).
    pub async fn wait_until<T, Fut>(&self, what: &str, mut check: impl FnMut() -> Fut) -> T
    where
        Fut: Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if started.elapsed() >= self.timeout {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("timeout-{}.png", uuid::Uuid::new_v4().simple()));
                let saved = match self.client.screenshot().await {
                    Ok(png) => std::fs::write(&shot, png).map(|()| shot.display().to_string()),
                    Err(e) => Ok(format!("(no screenshot: {e})")),
                };
                panic!(
                    "waited {:?} for {what}; page {url:?}; screenshot {saved:?}",
                    self.timeout
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the JavaScript `expression` is truthy and returns its value.
    pub async fn wait_js(&self, what: &str, expression: &str) -> Value {
        let script = format!("return ({expression});");
        self.wait_until(what, || {
            let (client, script) = (self.client.clone(), script.clone());
            async move {
                let value = client
                    .execute(&script, vec![])
                    .await
                    .unwrap_or_else(|e| panic!("evaluating `{script}`: {e}"));
                truthy(&value).then_some(value)
            }
        })
        .await
    }

    /// Waits until an element matching `css` is displayed and returns it.
    pub async fn wait_visible(&self, css: &str) -> Element {
        self.wait_until(&format!("`{css}` to be visible"), || {
            let client = self.client.clone();
            async move {
                let element = client.find(Locator::Css(css)).await.ok()?;
                element.is_displayed().await.ok()?.then_some(element)
            }
        })
        .await
    }

    /// Waits until the text of the element matching `css` contains `needle`, returning the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_until(&format!("`{css}` to contain {needle:?}"), || {
            let client = self.client.clone();
            async move {
                let element = client.find(Locator::Css(css)).await.ok()?;
                let text = element.text().await.ok()?;
                text.contains(needle).then_some(text)
            }
        })
        .await
    }

    /// Saves a PNG of the window's viewport to `path` (directories are created).
    /// Tests pass [`screenshot_path`], so a normal run leaves the docs alone.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Ends the session (the window closes). Dropping the [`Driver`] ends any left open.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// JavaScript truthiness of a WebDriver result.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Where a test saves the screenshot `name`: `docs/screenshots/` when
/// `UPDATE_SCREENSHOTS=1` (to refresh the documentation's pictures on purpose),
/// else the build's scratch directory, so a test run never dirties the work tree.
pub fn screenshot_path(name: &str) -> PathBuf {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/screenshots")
            .join(name)
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("screenshots")
            .join(name)
    }
}
