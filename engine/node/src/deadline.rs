//! Request deadlines: every call a node makes or serves has one.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The deadline the caller set with the standard `grpc-timeout` header, if
/// any (format: digits followed by one of H M S m u n).
pub fn from_metadata(meta: &MetadataMap) -> Option<Duration> {
    parse(meta.get("grpc-timeout")?.to_str().ok()?)
}

/// The time budget for serving a request: the caller's deadline if it set
/// one, else `default`.
pub fn budget(meta: &MetadataMap, default: Duration) -> Duration {
    from_metadata(meta).unwrap_or(default)
}

/// Cut the `grpc-timeout` header of an incoming request to `max`, so
/// every handler's budget, and every call it forwards, ends by then. A
/// request without one (or with one that does not parse) gets the
/// handler's default, which configuration keeps below `max`.
pub fn cap(headers: &mut tonic::codegen::http::HeaderMap, max: Duration) {
    let asked = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse);
    if asked.is_none_or(|d| d <= max) {
        return;
    }
    // Milliseconds: at most 8 digits in the header format.
    let ms = max.as_millis().min(99_999_999);
    if let Ok(v) = format!("{ms}m").parse() {
        headers.insert("grpc-timeout", v);
    }
}

/// Parse a `grpc-timeout` value (digits followed by one of H M S m u n).
fn parse(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        let mut m = MetadataMap::new();
        assert_eq!(from_metadata(&m), None);
        m.insert("grpc-timeout", "1500m".parse().unwrap());
        assert_eq!(from_metadata(&m), Some(Duration::from_millis(1500)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(from_metadata(&m), Some(Duration::from_secs(3)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(from_metadata(&m), None);
        assert_eq!(budget(&m, Duration::from_secs(9)), Duration::from_secs(9));
    }

    #[test]
    fn client_deadlines_are_capped() {
        let max = Duration::from_secs(600);
        let mut h = tonic::codegen::http::HeaderMap::new();
        cap(&mut h, max);
        assert!(h.get("grpc-timeout").is_none(), "absent: the handler's default applies");
        h.insert("grpc-timeout", "99999999H".parse().unwrap());
        cap(&mut h, max);
        assert_eq!(h["grpc-timeout"], "600000m", "a century: cut");
        h.insert("grpc-timeout", "30S".parse().unwrap());
        cap(&mut h, max);
        assert_eq!(h["grpc-timeout"], "30S", "within the cap: kept");
    }
}
