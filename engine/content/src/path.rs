//! Site names and file paths.
//!
//! Paths are relative, `/`-separated, UTF-8 normalised to NFC (so a
//! Vietnamese name typed on macOS — NFD — and on Windows — NFC — is the
//! same file), case-sensitive, and rejected with a clear reason when they
//! contain `.` or `..` components, empty components, NUL or control
//! characters, or exceed the length limits.

use unicode_normalization::UnicodeNormalization;

/// Longest path, in bytes (after normalisation).
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest path component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// A path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {why}")]
pub struct PathError {
    pub path: String,
    pub why: &'static str,
}

/// Validate and normalise a file path (leading `/` is tolerated and
/// removed, as in a URL).
pub fn normalize(path: &str) -> Result<String, PathError> {
    let err = |why| PathError {
        path: path.chars().take(120).collect(),
        why,
    };
    // ASCII is NFC already (the common case, read on every request).
    let p: std::borrow::Cow<str> = if path.is_ascii() {
        path.into()
    } else {
        path.nfc().collect::<String>().into()
    };
    let p = p.strip_prefix('/').unwrap_or(&p);
    if p.is_empty() {
        return Err(err("it is empty"));
    }
    if p.len() > MAX_PATH_BYTES {
        return Err(err("it is longer than 1024 bytes"));
    }
    if p.contains('\\') {
        return Err(err("use '/' to separate directories, not '\\'"));
    }
    for c in p.split('/') {
        match c {
            "" => return Err(err("it has an empty component ('//' or a trailing '/')")),
            "." | ".." => return Err(err("'.' and '..' components are not allowed")),
            _ if c.len() > MAX_COMPONENT_BYTES => return Err(err("a component is longer than 255 bytes")),
            _ if c.chars().any(|ch| ch == '\0' || ch.is_control()) => {
                return Err(err("it contains NUL or a control character"));
            }
            _ => {}
        }
    }
    Ok(p.to_owned())
}

/// Normalise a path prefix for listing (may be empty or end with `/`).
pub fn normalize_prefix(prefix: &str) -> Result<String, PathError> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let dir = trimmed.ends_with('/');
    let p = normalize(trimmed.trim_end_matches('/'))?;
    Ok(if dir { format!("{p}/") } else { p })
}

/// Site names follow database names: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn check_site_name(name: &str) -> Result<(), String> {
    sen_core::limits::check_db_name(name).map_err(|e| e.to_string().replace("database name", "site name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_names_are_normalised_to_nfc() {
        let nfd = "Co\u{0302}ng ba\u{0301}o/Quye\u{0302}\u{0301}t đi\u{0323}nh.pdf";
        let nfc = "Công báo/Quyết định.pdf";
        assert_ne!(nfd, nfc);
        assert_eq!(normalize(nfd).unwrap(), nfc);
        assert_eq!(normalize(&format!("/{nfc}")).unwrap(), nfc);
        assert_eq!(normalize("A.html").unwrap(), "A.html", "case is kept");
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        for (p, why) in [
            ("", "empty"),
            ("a/../b", "'..'"),
            ("./a", "'.'"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("a\0b", "NUL"),
            ("a\\b", "'/'"),
        ] {
            let e = normalize(p).unwrap_err();
            assert!(e.to_string().contains(why), "{p:?}: {e}");
        }
        assert!(normalize(&"x".repeat(256)).is_err());
        assert!(normalize(&["abc"; 300].join("/")).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/docs/").unwrap(), "docs/");
        assert_eq!(normalize_prefix("docs/a").unwrap(), "docs/a");
        assert!(normalize_prefix("../x").is_err());
    }
}
