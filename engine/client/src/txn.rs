//! The `sen kv txn` mini-language.
//!
//! Comparisons (`--if`):
//!   value(KEY) = VALUE     value(KEY) != VALUE    value(KEY) < VALUE   value(KEY) > VALUE
//!   mod(KEY) OP N          create(KEY) OP N       version(KEY) OP N    (OP: = != < >)
//!   exists(KEY)            !exists(KEY)
//! Operations (`--then`, `--else`):
//!   put KEY VALUE          del KEY          append KEY VALUE
//! KEY and VALUE are bare words, or double-quoted strings with JSON escapes
//! (`"a key with spaces"`, `"line\nbreak"`). A file given with `--file`
//! holds one clause per line, prefixed by `if`, `then` or `else`; blank
//! lines and lines starting with `#` are ignored.

use sen_proto::v1::{Compare, TxnAppend, TxnDelete, TxnOp, TxnPut, compare, txn_op};

/// A tokenizer over one clause.
struct Lexer<'a> {
    s: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        self.s = self.s.trim_start();
    }

    fn eat(&mut self, t: &str) -> bool {
        self.skip_ws();
        if let Some(rest) = self.s.strip_prefix(t) {
            self.s = rest;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let end = self.s.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(self.s.len());
        if end == 0 {
            return None;
        }
        let (w, rest) = self.s.split_at(end);
        self.s = rest;
        Some(w)
    }

    /// A bare word (up to whitespace or `stop` chars) or a quoted string.
    fn word(&mut self, stop: &[char]) -> Result<String, String> {
        self.skip_ws();
        if self.s.starts_with('"') {
            // Find the closing quote, honouring backslash escapes.
            let bytes = self.s.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            if i >= bytes.len() {
                return Err("unterminated quoted string".into());
            }
            let lit = &self.s[..=i];
            self.s = &self.s[i + 1..];
            serde_json::from_str::<String>(lit).map_err(|e| format!("bad quoted string {lit}: {e}"))
        } else {
            let end = self
                .s
                .find(|c: char| c.is_whitespace() || stop.contains(&c))
                .unwrap_or(self.s.len());
            if end == 0 {
                return Err(format!("expected a word at {:?}", self.s));
            }
            let (w, rest) = self.s.split_at(end);
            self.s = rest;
            Ok(w.to_owned())
        }
    }

    fn end(&mut self) -> Result<(), String> {
        self.skip_ws();
        if self.s.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected {:?}", self.s))
        }
    }
}

/// Parse one `--if` clause.
pub fn parse_compare(clause: &str) -> Result<Compare, String> {
    let err = |m: String| format!("in --if {clause:?}: {m}");
    let mut lx = Lexer { s: clause };
    let negated = lx.eat("!");
    let func = lx
        .ident()
        .ok_or_else(|| err("expected value(...), mod(...), create(...), version(...) or exists(...)".into()))?;
    if !lx.eat("(") {
        return Err(err(format!("expected '(' after {func}")));
    }
    let key = lx.word(&[')']).map_err(err)?;
    if !lx.eat(")") {
        return Err(err("expected ')' after the key".into()));
    }
    if func == "exists" {
        lx.end().map_err(err)?;
        return Ok(Compare {
            key: key.into_bytes(),
            op: compare::Op::Equal as i32,
            target: Some(compare::Target::Exists(!negated)),
        });
    }
    if negated {
        return Err(err("'!' only goes before exists(...)".into()));
    }
    let op = if lx.eat("!=") {
        compare::Op::NotEqual
    } else if lx.eat("=") {
        compare::Op::Equal
    } else if lx.eat("<") {
        compare::Op::Less
    } else if lx.eat(">") {
        compare::Op::Greater
    } else {
        return Err(err("expected one of = != < >".into()));
    };
    let operand = lx.word(&[]).map_err(err)?;
    lx.end().map_err(err)?;
    let number = |what: &str| -> Result<u64, String> {
        operand
            .parse::<u64>()
            .map_err(|_| err(format!("{what} must be compared with a number, got {operand:?}")))
    };
    let target = match func {
        "value" => compare::Target::Value(operand.clone().into_bytes()),
        "mod" => compare::Target::ModRevision(number("mod")?),
        "create" => compare::Target::CreateRevision(number("create")?),
        "version" => compare::Target::Version(number("version")?),
        other => return Err(err(format!("unknown function {other}(...)"))),
    };
    Ok(Compare {
        key: key.into_bytes(),
        op: op as i32,
        target: Some(target),
    })
}

/// Parse one `--then`/`--else` clause.
pub fn parse_op(clause: &str) -> Result<TxnOp, String> {
    let err = |m: String| format!("in operation {clause:?}: {m}");
    let mut lx = Lexer { s: clause };
    let verb = lx.ident().ok_or_else(|| err("expected put or del".into()))?;
    let key = lx.word(&[]).map_err(err)?;
    let op = match verb {
        "put" => {
            let value = lx.word(&[]).map_err(err)?;
            txn_op::Op::Put(TxnPut {
                key: key.into_bytes(),
                value: value.into_bytes(),
            })
        }
        "del" | "delete" => txn_op::Op::Delete(TxnDelete { key: key.into_bytes() }),
        "append" => {
            let value = lx.word(&[]).map_err(err)?;
            txn_op::Op::Append(TxnAppend {
                key: key.into_bytes(),
                value: value.into_bytes(),
            })
        }
        other => return Err(err(format!("unknown operation {other:?}; use put, del or append"))),
    };
    lx.end().map_err(err)?;
    Ok(TxnOp { op: Some(op) })
}

/// The clauses of a transaction file: (comparisons, then-ops, else-ops).
pub type Clauses = (Vec<String>, Vec<String>, Vec<String>);

/// Parse a transaction file into its clauses.
pub fn parse_file(text: &str) -> Result<Clauses, String> {
    let (mut ifs, mut thens, mut elses) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match kw {
            "if" => ifs.push(rest.to_owned()),
            "then" => thens.push(rest.to_owned()),
            "else" => elses.push(rest.to_owned()),
            _ => {
                return Err(format!("line {}: expected 'if', 'then' or 'else', got {kw:?}", n + 1));
            }
        }
    }
    Ok((ifs, thens, elses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        let c = parse_compare("value(lock) = n1").unwrap();
        assert_eq!(c.key, b"lock");
        assert_eq!(c.op, compare::Op::Equal as i32);
        assert_eq!(c.target, Some(compare::Target::Value(b"n1".to_vec())));
        let c = parse_compare(r#"value("a key") != "x y""#).unwrap();
        assert_eq!(c.key, b"a key");
        assert_eq!(c.op, compare::Op::NotEqual as i32);
        assert_eq!(c.target, Some(compare::Target::Value(b"x y".to_vec())));
        let c = parse_compare("mod(k) < 42").unwrap();
        assert_eq!(c.target, Some(compare::Target::ModRevision(42)));
        assert_eq!(c.op, compare::Op::Less as i32);
        let c = parse_compare("!exists(k)").unwrap();
        assert_eq!(c.target, Some(compare::Target::Exists(false)));
        let c = parse_compare("exists(k)").unwrap();
        assert_eq!(c.target, Some(compare::Target::Exists(true)));
        for bad in [
            "value(k)",
            "mod(k) = x",
            "nope(k) = 1",
            "value(k = 1",
            "!mod(k) = 1",
            "exists(k) extra",
            "value(\"k) = 1",
        ] {
            assert!(parse_compare(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operations_and_files() {
        let o = parse_op("put k \"v w\"").unwrap();
        assert_eq!(
            o.op,
            Some(txn_op::Op::Put(TxnPut {
                key: b"k".to_vec(),
                value: b"v w".to_vec()
            }))
        );
        assert!(parse_op("del k").is_ok());
        assert!(matches!(
            parse_op("append k v").unwrap().op,
            Some(txn_op::Op::Append(_))
        ));
        assert!(parse_op("put k").is_err());
        assert!(parse_op("drop k").is_err());
        let (i, t, e) = parse_file("# cas\nif value(k) = 1\nthen put k 2\n\nelse del k\n").unwrap();
        assert_eq!((i.len(), t.len(), e.len()), (1, 1, 1));
        assert!(parse_file("when x").is_err());
    }
}
