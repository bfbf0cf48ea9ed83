//! Horizontal filters as PostgREST v12 reads them (ApiRequest/QueryParams.hs, docs "Tables and
//! Views"): `col=op.value` with `eq neq gt gte lt lte in`, and `or=(...)` / `and=(...)` trees
//! nesting `and(...)`/`or(...)`. Values inside `in.(...)` and trees may be double-quoted
//! (`"a,b"`, with `\"` and `\\` escaped); after a top-level operator the rest of the value is
//! taken literally. Operators PostgREST has and the stand-in does not are refused as not
//! implemented; what PostgREST would not parse is PGRST100. Pure: no schema, no SQL.

use super::error::ApiError;

#[derive(Debug, PartialEq)]
pub(crate) enum Condition {
    Compare {
        column: String,
        op: CompareOp,
        value: String,
    },
    In {
        column: String,
        values: Vec<String>,
    },
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CompareOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CompareOp {
    fn parse(name: &str) -> Option<CompareOp> {
        Some(match name {
            "eq" => CompareOp::Eq,
            "neq" => CompareOp::Neq,
            "gt" => CompareOp::Gt,
            "gte" => CompareOp::Gte,
            "lt" => CompareOp::Lt,
            "lte" => CompareOp::Lte,
            _ => return None,
        })
    }

    pub fn sql(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Neq => "<>",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
        }
    }
}

/// Operators and modifiers real PostgREST has that the stand-in does not.
const UNSUPPORTED_OPERATORS: [&str; 19] = [
    "not",
    "is",
    "isdistinct",
    "like",
    "ilike",
    "match",
    "imatch",
    "fts",
    "plfts",
    "phfts",
    "wfts",
    "cs",
    "cd",
    "ov",
    "sl",
    "sr",
    "nxr",
    "nxl",
    "adj",
];

/// PostgREST's pFieldName: letters, digits, `_`, `$`, spaces and dashes.
pub(super) fn is_field_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '$' | ' ' | '-')
}

/// A small recursive-descent reader over one parameter.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str, what: &'static str) -> Self {
        Cursor { text, pos: 0, what }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn eat(&mut self, expected: char) -> bool {
        let matched = self.peek() == Some(expected);
        if matched {
            self.pos += expected.len_utf8();
        }
        matched
    }

    pub(super) fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            self.pos += c.len_utf8();
        }
        &self.text[start..self.pos]
    }

    pub(super) fn error(&self, details: &str) -> ApiError {
        ApiError::parse(self.what, self.text, self.pos, details)
    }

    pub(super) fn expect_end(&self) -> Result<(), ApiError> {
        match self.peek() {
            None => Ok(()),
            Some(c) => Err(self.error(&format!("unexpected \"{c}\" expecting end of input"))),
        }
    }

    pub(super) fn field_name(&mut self) -> Result<String, ApiError> {
        let name = self.take_while(is_field_char).trim();
        if name.is_empty() {
            return Err(self.error("expecting field name (* or [a..z0..9_$])"));
        }
        Ok(name.to_owned())
    }

    /// `op.value` after a column; `in_tree` selects the logic-tree value grammar.
    pub(super) fn filter(&mut self, column: String, in_tree: bool) -> Result<Condition, ApiError> {
        let op = self.take_while(|c| c != '.');
        if !self.eat('.') {
            return Err(self.error("expecting operator (eq, gt, ...) and \".\""));
        }
        if op == "in" {
            let values = self.list()?;
            return Ok(Condition::In { column, values });
        }
        let Some(op) = CompareOp::parse(op) else {
            if UNSUPPORTED_OPERATORS.contains(&op) || op.contains('(') {
                return Err(ApiError::not_implemented(&format!("the {op} operator")));
            }
            return Err(self.error(&format!("unknown operator \"{op}\"")));
        };
        let value = if in_tree {
            self.tree_value()?
        } else {
            let rest = self.rest().to_owned();
            self.pos = self.text.len();
            rest
        };
        Ok(Condition::Compare { column, op, value })
    }

    /// `(a,b,"c,d")`; `()` is the empty list.
    fn list(&mut self) -> Result<Vec<String>, ApiError> {
        if self.rest().starts_with("()") {
            self.pos += 2;
            return Ok(Vec::new());
        }
        self.parenthesized(Self::element)
    }

    /// `(item,item,...)`.
    fn parenthesized<T>(
        &mut self,
        item: impl Fn(&mut Self) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        if !self.eat('(') {
            return Err(self.error("expecting \"(\""));
        }
        let mut items = vec![item(self)?];
        while self.eat(',') {
            items.push(item(self)?);
        }
        if !self.eat(')') {
            return Err(self.error("expecting \",\" or \")\""));
        }
        Ok(items)
    }

    /// One list element: `"..."` (which must end at `,` or `)`) or everything up to them.
    fn element(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            let start = self.pos;
            let value = self.quoted()?;
            if matches!(self.peek(), Some(',' | ')')) {
                return Ok(value);
            }
            self.pos = start;
        }
        match self.take_while(|c| c != ',' && c != ')') {
            "" => Err(self.error("expecting a value")),
            value => Ok(value.to_owned()),
        }
    }

    /// `"..."` with backslash escapes.
    fn quoted(&mut self) -> Result<String, ApiError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += offset + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        self.pos = start;
        Err(self.error("unterminated quoted value"))
    }

    /// A value inside a tree: quoted, a `{...}` array literal, or up to `,` / `)`.
    fn tree_value(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('{') {
            if let Some(end) = self.rest().find('}') {
                let value = self.rest()[..=end].to_owned();
                self.pos += end + 1;
                return Ok(value);
            }
        }
        self.element()
    }

    /// `(child, child, ...)` of a logic tree.
    pub(super) fn children(&mut self) -> Result<Vec<Condition>, ApiError> {
        self.parenthesized(Self::child)
    }

    fn child(&mut self) -> Result<Condition, ApiError> {
        self.take_while(|c| c == ' ');
        for (prefix, is_and) in [("and(", true), ("or(", false)] {
            if self.rest().starts_with(prefix) {
                self.pos += prefix.len() - 1;
                let children = self.children()?;
                return Ok(if is_and {
                    Condition::And(children)
                } else {
                    Condition::Or(children)
                });
            }
        }
        if self.rest().starts_with("not.") {
            return Err(ApiError::not_implemented("not. inside logic trees"));
        }
        let column = self.field_name()?;
        if !self.eat('.') {
            return Err(self.error("expecting \".\" after the field name"));
        }
        self.filter(column, true)
    }
}
