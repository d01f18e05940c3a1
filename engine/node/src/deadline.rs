//! Request deadlines: every call a node makes or serves has one.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The deadline the caller set with the standard `grpc-timeout` header, if
/// any (format: digits followed by one of H M S m u n).
pub fn from_metadata(meta: &MetadataMap) -> Option<Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time budget for serving a request: the caller's deadline if it set
/// one, else `default`.
pub fn budget(meta: &MetadataMap, default: Duration) -> Duration {
    from_metadata(meta).unwrap_or(default)
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
}
