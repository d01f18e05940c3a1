//! Byte ranges of a file: the `Range` / `If-Range` request headers
//! (RFC 9110 §14) and the chunk pieces that cover a range. Pure functions,
//! shared by the HTTP server and `Content/ReadFile`, and fuzzed
//! (`engine/fuzz`).

use crate::{ChunkId, ChunkRef};

/// What to send of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The whole file (no usable range: 200).
    Whole,
    /// Bytes `[start, end)` (206).
    Part { start: u64, end: u64 },
    /// A valid range that starts past the end (416).
    Unsatisfiable,
}

/// Decide from the `Range` and `If-Range` headers (as text) and the
/// file's current ETag. A Range under an If-Range that is not this
/// version's ETag is ignored: resuming a download across a deployment
/// gets the whole new file instead of stitching two versions together.
pub fn select(range: Option<&str>, if_range: Option<&str>, etag: &str, size: u64) -> Selection {
    let range = match if_range {
        Some(cond) if cond.trim() != etag => None,
        _ => range,
    };
    match parse(range, size) {
        Ok(None) => Selection::Whole,
        Ok(Some((start, end))) => Selection::Part { start, end },
        Err(Unsatisfiable) => Selection::Unsatisfiable,
    }
}

/// A syntactically valid range that no byte of the file satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parse a single `bytes=` range against `size`: `Ok(None)` = no usable
/// range (absent, several ranges, invalid syntax, an empty file: serve
/// everything), `Ok(Some((start, end)))` with `start < end <= size`.
pub fn parse(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(v) = h else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') || size == 0 {
        // Several ranges: answer with the whole file (allowed by RFC 9110).
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return Ok(None) };
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(n), size)
    } else {
        let Ok(start) = a.parse::<u64>() else { return Ok(None) };
        let end = if b.is_empty() {
            size
        } else {
            let Ok(last) = b.parse::<u64>() else { return Ok(None) };
            if last < start {
                return Ok(None);
            }
            last.saturating_add(1).min(size)
        };
        (start, end)
    };
    if range.0 >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
}

/// A byte range inside one chunk's plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub id: ChunkId,
    pub from: usize,
    pub to: usize,
}

/// The pieces of `chunks` covering bytes `[start, end)` of the file.
pub fn pieces(chunks: &[ChunkRef], start: u64, end: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut off = 0u64;
    for c in chunks {
        let (c_start, c_end) = (off, off.saturating_add(u64::from(c.len)));
        off = c_end;
        if c_end <= start {
            continue;
        }
        if c_start >= end {
            break;
        }
        out.push(Piece {
            id: c.id,
            from: (start.max(c_start) - c_start) as usize,
            to: (end.min(c_end) - c_start) as usize,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(len: u32, n: u8) -> ChunkRef {
        ChunkRef {
            id: ChunkId([n; 32]),
            len,
        }
    }

    #[test]
    fn pieces_cover_exactly_the_requested_bytes() {
        let chunks = [c(10, 1), c(10, 2), c(5, 3)];
        let r = pieces(&chunks, 0, 25);
        assert_eq!(r.iter().map(|p| p.to - p.from).sum::<usize>(), 25);
        let r = pieces(&chunks, 8, 12);
        assert_eq!(
            r,
            vec![
                Piece {
                    id: ChunkId([1; 32]),
                    from: 8,
                    to: 10
                },
                Piece {
                    id: ChunkId([2; 32]),
                    from: 0,
                    to: 2
                }
            ]
        );
        assert!(pieces(&chunks, 25, 25).is_empty());
        assert_eq!(
            pieces(&chunks, 24, 25),
            vec![Piece {
                id: ChunkId([3; 32]),
                from: 4,
                to: 5
            }]
        );
    }

    #[test]
    fn range_headers() {
        let p = |s: &str, size| parse(Some(s), size);
        assert_eq!(parse(None, 100), Ok(None));
        assert_eq!(p("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(p("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(p("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(p("bytes=50-500", 100), Ok(Some((50, 100))));
        assert_eq!(p("bytes=100-", 100), Err(Unsatisfiable));
        // Invalid syntax is ignored (RFC 9110), not refused.
        assert_eq!(p("bytes=5-2", 100), Ok(None));
        assert_eq!(p("bytes=x-", 100), Ok(None));
        assert_eq!(p("bytes=-0", 100), Err(Unsatisfiable));
        assert_eq!(p("bytes=0-0", 100), Ok(Some((0, 1))));
        assert_eq!(p("bytes=-500", 100), Ok(Some((0, 100))));
        assert_eq!(p("bytes=0-", 0), Ok(None));
        assert_eq!(p("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(p("items=0-1", 100), Ok(None));
    }

    #[test]
    fn if_range_must_name_this_version() {
        let etag = "\"abc\"";
        assert_eq!(
            select(Some("bytes=0-9"), Some(etag), etag, 100),
            Selection::Part { start: 0, end: 10 }
        );
        assert_eq!(select(Some("bytes=0-9"), Some("\"old\""), etag, 100), Selection::Whole);
        assert_eq!(select(Some("bytes=200-"), None, etag, 100), Selection::Unsatisfiable);
        assert_eq!(select(None, None, etag, 100), Selection::Whole);
    }
}
