//! toxiproxy (`github.com/Shopify/toxiproxy/v2`, built by `cargo xtask chaos`), driven over its
//! HTTP API: proxies between the clients and the broker, and the toxics that break them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// A toxiproxy server this process started; killed when dropped.
pub struct Toxiproxy {
    child: Child,
    api: String,
}

/// A free loopback port (another process may take it before it is used; unlikely enough).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

impl Toxiproxy {
    /// Starts `server` on a free loopback port and waits until its API answers.
    pub fn start(server: &Path, log: &Path) -> Result<Self> {
        let port = free_port()?;
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(server)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let proxy = Self {
            child,
            api: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.call("GET", "/version", None).is_err() {
            if Instant::now() > deadline {
                bail!("toxiproxy did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(proxy)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.api);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .context("building a toxiproxy request")?;
        let mut response = agent
            .run(request)
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if !(200..300).contains(&status) {
            bail!("{method} {url} answered {status}: {text}");
        }
        Ok(text)
    }

    /// A proxy listening on `listen` and forwarding to `upstream` (replaced if it exists).
    pub fn proxy(&self, name: &str, listen: &str, upstream: &str) -> Result<()> {
        let _ = self.call("DELETE", &format!("/proxies/{name}"), None);
        self.call(
            "POST",
            "/proxies",
            Some(json!({ "name": name, "listen": listen, "upstream": upstream, "enabled": true })),
        )?;
        Ok(())
    }

    /// Removes a proxy, closing its connections.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.call("DELETE", &format!("/proxies/{name}"), None)?;
        Ok(())
    }

    /// Enables or disables a proxy: disabled, it closes every connection and refuses new ones.
    pub fn enable(&self, name: &str, enabled: bool) -> Result<()> {
        self.call(
            "POST",
            &format!("/proxies/{name}"),
            Some(json!({ "enabled": enabled })),
        )?;
        Ok(())
    }

    /// Adds a toxic of `kind` with `attributes` in both directions.
    pub fn add_toxic(&self, proxy: &str, kind: &str, attributes: Value) -> Result<()> {
        for stream in ["upstream", "downstream"] {
            self.call(
                "POST",
                &format!("/proxies/{proxy}/toxics"),
                Some(json!({
                    "name": format!("{kind}-{stream}"),
                    "type": kind,
                    "stream": stream,
                    "toxicity": 1.0,
                    "attributes": attributes,
                })),
            )?;
        }
        Ok(())
    }

    /// Removes the toxics [`Toxiproxy::add_toxic`] added.
    pub fn remove_toxic(&self, proxy: &str, kind: &str) -> Result<()> {
        for stream in ["upstream", "downstream"] {
            self.call(
                "DELETE",
                &format!("/proxies/{proxy}/toxics/{kind}-{stream}"),
                None,
            )?;
        }
        Ok(())
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
