//! The character-level reader behind `query`: field names, quoted values, in-lists and logic
//! trees, with PostgREST's rules for where a value ends.

use super::{compare_op, Condition, Filter, FilterOp, IsValue, LogicOp};
use crate::postgrest::error::ApiError;

/// A tiny recursive-descent reader over one parameter value.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str, what: &'static str) -> Self {
        Cursor { text, pos: 0, what }
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(super) fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, expected: &str) -> bool {
        if self.rest().starts_with(expected) {
            self.pos += expected.len();
            true
        } else {
            false
        }
    }

    pub(super) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    pub(super) fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.text[start..self.pos].to_owned()
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

    /// A column name: double-quoted, or letters, digits, `_`, `$`, spaces and dashes
    /// (PostgREST's pFieldName), trimmed.
    pub(super) fn field_name(&mut self) -> Result<String, ApiError> {
        self.skip_ws();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let name = self.take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | ' ' | '-'));
        let name = name.trim();
        if name.is_empty() {
            return Err(self.error("expecting field name (* or [a..z0..9_$])"));
        }
        Ok(name.to_owned())
    }

    /// `"..."` with backslash escapes.
    fn quoted(&mut self) -> Result<String, ApiError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(value),
                Some('\\') => match self.bump() {
                    Some(c) => value.push(c),
                    None => break,
                },
                Some(c) => value.push(c),
                None => break,
            }
        }
        self.pos = start;
        Err(self.error("unterminated quoted value"))
    }

    /// `[not.]op.value` after a column; `in_logic` selects the logic-tree value grammar.
    pub(super) fn op_expr(&mut self, column: String, in_logic: bool) -> Result<Filter, ApiError> {
        let negated = self.eat_str("not.");
        let op = if self.eat_str("in.") {
            FilterOp::In(self.list()?)
        } else if self.eat_str("is.") {
            let word = self
                .take_while(|c| c.is_ascii_alphabetic())
                .to_ascii_lowercase();
            FilterOp::Is(match word.as_str() {
                "null" => IsValue::Null,
                "true" => IsValue::True,
                "false" => IsValue::False,
                "unknown" => IsValue::Unknown,
                _ => {
                    return Err(self.error("expecting null or trilean value (unknown, true, false)"))
                }
            })
        } else {
            let name = self.take_while(|c| c != '.');
            let Some(op) = compare_op(&name) else {
                return Err(self.error(&format!("unknown single value operator {name}")));
            };
            if !self.eat('.') {
                return Err(self.error("expecting delimiter (.)"));
            }
            let value = if in_logic {
                self.logic_value()?
            } else {
                self.rest().to_owned()
            };
            if !in_logic {
                self.pos = self.text.len();
            }
            FilterOp::Compare(op, value)
        };
        Ok(Filter {
            column,
            negated,
            op,
        })
    }

    /// `(a,b,"c,d")`; a quoted element must end at `,` or `)`.
    fn list(&mut self) -> Result<Vec<String>, ApiError> {
        self.skip_ws();
        if !self.eat('(') {
            return Err(self.error("expecting \"(\""));
        }
        let mut items = Vec::new();
        loop {
            items.push(self.element()?);
            if !self.eat(',') {
                break;
            }
        }
        if !self.eat(')') {
            return Err(self.error("expecting \",\" or \")\""));
        }
        self.skip_ws();
        Ok(items)
    }

    fn element(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            let start = self.pos;
            let value = self.quoted()?;
            if matches!(self.peek(), Some(',' | ')')) {
                return Ok(value);
            }
            self.pos = start;
        }
        Ok(self.take_while(|c| c != ',' && c != ')'))
    }

    /// A value inside a logic tree: quoted, a `{...}` array literal, or up to `,` / `)`.
    fn logic_value(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('{') {
            let start = self.pos;
            self.take_while(|c| c != '}');
            if self.eat('}') {
                return Ok(self.text[start..self.pos].to_owned());
            }
            self.pos = start;
        }
        self.element()
    }

    /// `(child, child, ...)` of a logic tree.
    pub(super) fn logic_children(&mut self) -> Result<Vec<Condition>, ApiError> {
        self.skip_ws();
        if !self.eat('(') {
            return Err(self.error("expecting \"(\""));
        }
        let mut children = Vec::new();
        loop {
            self.skip_ws();
            children.push(self.logic_child()?);
            self.skip_ws();
            if !self.eat(',') {
                break;
            }
        }
        if !self.eat(')') {
            return Err(self.error("expecting \",\" or \")\""));
        }
        self.skip_ws();
        Ok(children)
    }

    fn logic_child(&mut self) -> Result<Condition, ApiError> {
        for (prefix, negated, op) in [
            ("not.and(", true, LogicOp::And),
            ("not.or(", true, LogicOp::Or),
            ("and(", false, LogicOp::And),
            ("or(", false, LogicOp::Or),
        ] {
            if self.rest().starts_with(prefix) {
                self.pos += prefix.len() - 1;
                let children = self.logic_children()?;
                return Ok(Condition::Logic {
                    negated,
                    op,
                    children,
                });
            }
        }
        let column = self.field_name()?;
        if !self.eat('.') {
            return Err(self.error("expecting delimiter (.)"));
        }
        Ok(Condition::Filter(self.op_expr(column, true)?))
    }
}
