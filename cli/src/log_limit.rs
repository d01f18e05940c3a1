//! Logs that cannot flood: a repeated message is written once per window,
//! and what was held back is summarised in one line per window.
//!
//! A node whose peers are down retries every heartbeat and replication
//! call, and each retry may log (openraft's own warnings included): about
//! 20 lines a second per node, which over a long outage fills the log disk
//! of the survivors. Here a message (its call site and text, digits
//! ignored so "node 2" and "node 3" or changing indexes count as one) is
//! let through at most once per window; the rest are counted, and every
//! window one `sen::log` line lists what was held back and how often.
//! The node's own peer tracking (`sen_node::peers`) adds a line when a
//! peer stops answering and one when it answers again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The target of the summary lines (never held back themselves).
const SUMMARY_TARGET: &str = "sen::log";

#[derive(Default)]
struct Seen {
    /// When a message with this key was last let through.
    passed: Option<Instant>,
    /// Held back since the last summary.
    held: u64,
    /// How to name it in the summary.
    sample: String,
}

/// The state shared by the layer and its summary thread.
#[derive(Clone)]
pub struct RepeatLimiter {
    window: Duration,
    seen: Arc<Mutex<HashMap<(tracing::callsite::Identifier, String), Seen>>>,
}

impl RepeatLimiter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Arc::default(),
        }
    }

    /// Start the thread writing one summary line per window.
    pub fn spawn_summaries(&self) {
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("sen-log-summary".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(me.window);
                    if let Some(line) = me.take_summary() {
                        tracing::warn!(target: SUMMARY_TARGET, "{line}");
                    }
                }
            });
    }

    /// What was held back since the last call, as one line (and forget
    /// messages not seen for a while, so the table stays small).
    pub fn take_summary(&self) -> Option<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut held: Vec<(u64, String)> = seen
            .values_mut()
            .filter(|s| s.held > 0)
            .map(|s| (std::mem::take(&mut s.held), s.sample.clone()))
            .collect();
        let forget_before = Instant::now().checked_sub(self.window * 10);
        seen.retain(|_, s| s.held > 0 || forget_before.is_none_or(|t| s.passed.is_some_and(|p| p > t)));
        drop(seen);
        if held.is_empty() {
            return None;
        }
        held.sort_by_key(|h| std::cmp::Reverse(h.0));
        let total: u64 = held.iter().map(|h| h.0).sum();
        let mut line = format!("{total} repeated log lines held back in the last {:?}:", self.window);
        for (n, sample) in held.iter().take(10) {
            let _ = write!(line, " {n}× \"{sample}\";");
        }
        if held.len() > 10 {
            let _ = write!(line, " and {} other messages", held.len() - 10);
        }
        Some(line)
    }

    /// Whether an event with this key may be written now.
    fn admit(&self, key: (tracing::callsite::Identifier, String), now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 && !seen.contains_key(&key) {
            // A storm of distinct messages: let them through rather than
            // grow without bound (they are not repeats).
            return true;
        }
        let sample = key.1.clone();
        let s = seen.entry(key).or_default();
        match s.passed {
            Some(t) if now.duration_since(t) < self.window => {
                s.held += 1;
                if s.sample.is_empty() {
                    s.sample = sample;
                }
                false
            }
            _ => {
                s.passed = Some(now);
                s.sample = sample;
                true
            }
        }
    }
}

/// The text of an event's `message`, each run of digits replaced by `#`,
/// at most 120 characters: what makes two lines "the same".
fn message_key(event: &Event<'_>) -> String {
    struct V(String);
    impl Visit for V {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0.push_str(value);
            }
        }
    }
    let mut v = V(String::new());
    event.record(&mut v);
    // A run of digits (an index, a node id, a duration) counts as one `#`.
    let mut key = String::with_capacity(v.0.len().min(120));
    let mut in_number = false;
    for c in v.0.chars() {
        if key.len() >= 120 {
            break;
        }
        if c.is_ascii_digit() {
            if !in_number {
                key.push('#');
            }
            in_number = true;
        } else {
            key.push(c);
            in_number = false;
        }
    }
    key
}

impl<S: Subscriber> Layer<S> for RepeatLimiter {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() == SUMMARY_TARGET {
            return true;
        }
        self.admit((meta.callsite(), message_key(event)), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the events that reach it.
    #[derive(Clone, Default)]
    struct Count(Arc<Mutex<Vec<String>>>);
    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            self.0.lock().unwrap().push(message_key(event));
        }
    }

    #[test]
    fn repeats_are_held_back_and_summarised() {
        let limiter = RepeatLimiter::new(Duration::from_secs(3600));
        let count = Count::default();
        let subscriber = tracing_subscriber::registry().with(limiter.clone()).with(count.clone());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                tracing::warn!("append to node {} failed at index {i}", 2 + i % 2);
                if i % 100 == 0 {
                    tracing::warn!("another message {i}");
                }
            }
            tracing::error!("a different call site");
        });
        let got = count.0.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                "append to node # failed at index #".to_owned(),
                "another message #".to_owned(),
                "a different call site".to_owned(),
            ]
        );
        let summary = limiter.take_summary().unwrap();
        assert!(summary.starts_with("1008 repeated log lines held back"), "{summary}");
        assert!(
            summary.contains("999× \"append to node # failed at index #\""),
            "{summary}"
        );
        assert!(summary.contains("9× \"another message #\""), "{summary}");
        assert_eq!(limiter.take_summary(), None, "counts start again");
    }

    #[test]
    fn a_message_passes_again_after_its_window() {
        let limiter = RepeatLimiter::new(Duration::from_millis(50));
        let key = |m: &str| (tracing::callsite::Identifier(&CALLSITE), m.to_owned());
        let t0 = Instant::now();
        assert!(limiter.admit(key("x"), t0));
        assert!(!limiter.admit(key("x"), t0 + Duration::from_millis(10)));
        assert!(limiter.admit(key("y"), t0 + Duration::from_millis(10)));
        assert!(limiter.admit(key("x"), t0 + Duration::from_millis(60)));
    }

    struct Site;
    static CALLSITE: Site = Site;
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unimplemented!("not called by the limiter")
        }
    }
}
