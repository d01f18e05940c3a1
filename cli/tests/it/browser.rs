//! A real browser for the pages people read: headless Chromium (Debian's
//! `chromium`, installed by scripts/setup.sh) driven over the DevTools
//! protocol by the `headless_chrome` crate. A page is loaded the way the
//! Board's browser loads it — over TLS, with the reader's credentials on
//! every request — and everything the browser complains about is kept:
//! console errors, uncaught exceptions, messages of its own log (a
//! Content-Security-Policy refusal lands there), failed requests and
//! answers of 400 or more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Log::LogEntryLevel;
use headless_chrome::protocol::cdp::Page;
use headless_chrome::protocol::cdp::Runtime::ConsoleAPICalledEventTypeOption as Console;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};

/// What the browser made of one page.
pub struct Rendered {
    /// The page's text as a reader sees it (`document.body.innerText`).
    pub text: String,
    /// Everything the browser reported as wrong, one line each.
    pub problems: Vec<String>,
    /// A screenshot of the first 1280×1000 pixels.
    pub png: Vec<u8>,
    /// The page printed to PDF, when asked for.
    pub pdf: Option<Vec<u8>>,
}

/// What in a browser event is a problem, as a line to print.
fn problem(event: &Event) -> Option<String> {
    match event {
        Event::RuntimeConsoleAPICalled(c) if matches!(c.params.Type, Console::Error | Console::Assert) => {
            let args: Vec<String> = c
                .params
                .args
                .iter()
                .map(|a| {
                    a.value
                        .as_ref()
                        .map_or_else(|| format!("{:?}", a.Type), |v| v.to_string())
                })
                .collect();
            Some(format!("console.{:?}: {}", c.params.Type, args.join(" ")))
        }
        Event::RuntimeExceptionThrown(x) => Some(format!("uncaught exception: {}", x.params.exception_details.text)),
        Event::LogEntryAdded(l) if l.params.entry.level == LogEntryLevel::Error => Some(format!(
            "browser log ({:?}): {} {}",
            l.params.entry.source,
            l.params.entry.text,
            l.params.entry.url.as_deref().unwrap_or("")
        )),
        Event::NetworkLoadingFailed(f) => Some(format!(
            "request {} failed: {}",
            f.params.request_id, f.params.error_text
        )),
        Event::NetworkResponseReceived(r) if r.params.response.status >= 400 => Some(format!(
            "{} answered {}",
            r.params.response.url, r.params.response.status
        )),
        _ => None,
    }
}

/// Load `url` in a fresh headless Chromium, sending `headers` with every
/// request; wait until it has loaded; keep its text, a screenshot and,
/// with `pdf`, the page printed. The test's CA is not in Chromium's
/// trust store, so certificate errors are ignored: TLS itself is tested
/// elsewhere, this is about the page.
pub fn render(url: &str, headers: &[(&str, &str)], pdf: bool) -> Rendered {
    let chromium = std::process::Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("chromium is not installed: run scripts/setup.sh");
    let options = LaunchOptions::default_builder()
        .path(Some(chromium.into()))
        .sandbox(false)
        .ignore_certificate_errors(true)
        .window_size(Some((1280, 1000)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("browser options");
    let browser = Browser::new(options).expect("start headless chromium");
    let tab = browser.new_tab().expect("open a tab");

    let problems = Arc::new(Mutex::new(Vec::new()));
    let seen = problems.clone();
    tab.add_event_listener(Arc::new(move |e: &Event| {
        if let Some(p) = problem(e) {
            seen.lock().unwrap().push(p);
        }
    }))
    .unwrap();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    // Also turns the Network domain on, so failed requests are reported.
    tab.set_extra_http_headers(headers.iter().copied().collect::<HashMap<_, _>>())
        .unwrap();

    tab.navigate_to(url)
        .and_then(|t| t.wait_until_navigated())
        .unwrap_or_else(|e| panic!("chromium could not load {url}: {e}"));
    let text = tab
        .evaluate("document.body.innerText", false)
        .ok()
        .and_then(|o| o.value)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let pdf = pdf.then(|| tab.print_to_pdf(None).expect("print to PDF"));
    let problems = problems.lock().unwrap().clone();
    Rendered {
        text,
        problems,
        png,
        pdf,
    }
}
