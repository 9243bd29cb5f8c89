//! A real browser for the dashboard's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` with the W3C WebDriver protocol (JSON over HTTP, a handful of commands; no
//! WebDriver crate needed).
//!
//! [`Browser::start`] returns `Ok(None)` when `chromium` or `chromedriver` is not installed
//! (`scripts/ensure-deps` installs both), so a test can say why it skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to accept sessions.
const DRIVER_START: Duration = Duration::from_secs(20);
/// Longest a single WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Debian installs the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless chromium session; the driver is killed when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// Chromium's profile, removed with the browser.
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn installed(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    p.exists().then(|| p.to_path_buf())
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless chromium session with a
    /// `width`×`height` window; `Ok(None)` when chromium or chromedriver is not installed.
    ///
    /// # Errors
    /// When the driver or the browser does not start.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Option<Browser>> {
        let (Some(chromium), Some(driver_bin)) = (installed(CHROMIUM), installed(CHROMEDRIVER)) else {
            return Ok(None);
        };
        let port = crate::free_port()?;
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::builder().timeout(COMMAND_TIMEOUT).build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, base, session: String::new(), http, _profile: profile };
        let deadline = crate::process::now() + DRIVER_START;
        loop {
            let ready = browser.http.get(format!("{}/status", browser.base)).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == json!(true)
            {
                break;
            }
            if crate::process::now() > deadline {
                bail!("chromedriver did not get ready within {DRIVER_START:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ]
            }
        }}});
        let session = browser.call("POST", "/session", Some(caps)).await?;
        browser.session =
            session["sessionId"].as_str().context("no sessionId in the new session")?.to_owned();
        Ok(Some(browser))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.with_context(|| format!("WebDriver {method} {path}"))?;
        let status = response.status();
        let value: Value =
            response.json().await.with_context(|| format!("WebDriver {method} {path}: not JSON"))?;
        if !status.is_success() {
            bail!("WebDriver {method} {path}: {status}: {}", value["value"]);
        }
        Ok(value["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({"url": url}))).await.map(|_| ())
    }

    /// The current page's URL.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.call("GET", &self.at("/url"), None).await?.as_str().unwrap_or_default().to_owned())
    }

    /// The current page's HTML as the browser holds it now (live refreshes included).
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn source(&self) -> anyhow::Result<String> {
        Ok(self.call("GET", &self.at("/source"), None).await?.as_str().unwrap_or_default().to_owned())
    }

    /// The elements matching a CSS selector (none is not an error).
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let found = self
            .call("POST", &self.at("/elements"), Some(json!({"using": "css selector", "value": css})))
            .await?;
        Ok(found
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned()))).collect())
            .unwrap_or_default())
    }

    /// The first element matching a CSS selector, waiting up to `timeout` for one to appear.
    ///
    /// # Errors
    /// When none appears in time, or the driver fails.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        let deadline = crate::process::now() + timeout;
        loop {
            if let Some(first) = self.find_all(css).await?.into_iter().next() {
                return Ok(first);
            }
            if crate::process::now() > deadline {
                bail!("no element {css:?} on {} within {timeout:?}", self.url().await.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `timeout` for an element matching `css` and clicks it, finding it again when
    /// the page replaced it in between (a live refresh makes a found element stale).
    ///
    /// # Errors
    /// When none appears in time, or the click keeps failing.
    pub async fn click_on(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..5 {
            let element = self.wait_for(css, timeout).await?;
            match self.click(&element).await {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot click {css:?}")))
    }

    /// The visible text of the first element matching `css` (waiting up to `timeout` for one),
    /// found again when the page replaced it in between.
    ///
    /// # Errors
    /// When none appears in time, or reading keeps failing.
    pub async fn text_of(&self, css: &str, timeout: Duration) -> anyhow::Result<String> {
        let mut last = None;
        for _ in 0..5 {
            let element = self.wait_for(css, timeout).await?;
            match self.text(&element).await {
                Ok(text) => return Ok(text),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot read {css:?}")))
    }

    /// Clicks `element` (a link or a submit button: the page it leads to is loaded on return).
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.call("POST", &self.at(&format!("/element/{}/click", element.0)), None).await.map(|_| ())
    }

    /// The visible text of `element`.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let text = self.call("GET", &self.at(&format!("/element/{}/text", element.0)), None).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Types `text` into `element`.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn type_into(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        self.call("POST", &self.at(&format!("/element/{}/value", element.0)), Some(json!({"text": text})))
            .await
            .map(|_| ())
    }

    /// Runs `script` (a function body) in the page and returns its result.
    ///
    /// # Errors
    /// When the script throws, or the driver fails.
    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.call("POST", &self.at("/execute/sync"), Some(json!({"script": script, "args": []}))).await
    }

    /// Resizes the window.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call("POST", &self.at("/window/rect"), Some(json!({"width": width, "height": height})))
            .await
            .map(|_| ())
    }

    /// A PNG of the whole page: the window is made as tall as the page first.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn screenshot_page(&self, width: u32) -> anyhow::Result<Vec<u8>> {
        // Short first: a page never measures shorter than the window it is in.
        self.resize(width, 600).await?;
        let height = self.execute("return document.documentElement.scrollHeight").await?;
        // The window is taller than its viewport by the browser's own frame.
        let height = height.as_u64().and_then(|h| u32::try_from(h).ok()).unwrap_or(1000).saturating_add(160);
        let height = height.clamp(600, 4000);
        self.resize(width, height).await?;
        self.screenshot().await
    }

    /// A PNG of the window.
    ///
    /// # Errors
    /// When the driver fails.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let b64 = self.call("GET", &self.at("/screenshot"), None).await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default())?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close its chromium; killing the driver alone
        // would leave the browser running. Plain blocking HTTP: a destructor cannot await.
        use std::io::{Read, Write};
        if !self.session.is_empty()
            && let Ok(mut tcp) = std::net::TcpStream::connect(self.base.trim_start_matches("http://"))
        {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session,
                self.base.trim_start_matches("http://")
            );
            if tcp.write_all(request.as_bytes()).is_ok() {
                let _ = tcp.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
