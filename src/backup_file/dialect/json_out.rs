//! Writing JSON a piece at a time. The normalizers learn an object's keys in the order the
//! foreign file gives them and its long lists one element at a time, so they cannot build the
//! canonical form as one value: they write it as they go, and this writer only keeps track of
//! where the commas go (values themselves are written by serde_json).

use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

pub(super) struct JsonOut<W> {
    out: W,
    /// For each object or list open: whether it has an element yet.
    open: Vec<bool>,
    /// A key was written; its value comes next, without a comma.
    after_key: bool,
}

impl<W: Write> JsonOut<W> {
    pub(super) fn new(out: W) -> Self {
        JsonOut {
            out,
            open: Vec::new(),
            after_key: false,
        }
    }

    pub(super) fn begin_object(&mut self) -> io::Result<()> {
        self.before_value()?;
        self.open.push(false);
        self.out.write_all(b"{")
    }

    pub(super) fn end_object(&mut self) -> io::Result<()> {
        self.open.pop();
        self.out.write_all(b"}")
    }

    pub(super) fn begin_list(&mut self) -> io::Result<()> {
        self.before_value()?;
        self.open.push(false);
        self.out.write_all(b"[")
    }

    pub(super) fn end_list(&mut self) -> io::Result<()> {
        self.open.pop();
        self.out.write_all(b"]")
    }

    /// A key of the object open; its value is written next.
    pub(super) fn key(&mut self, key: &str) -> io::Result<()> {
        self.separate()?;
        serde_json::to_writer(&mut self.out, key)?;
        self.after_key = true;
        self.out.write_all(b":")
    }

    /// A whole value: an element of the list open, or the value of the key just written.
    pub(super) fn value(&mut self, value: &(impl Serialize + ?Sized)) -> io::Result<()> {
        self.before_value()?;
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::from)
    }

    /// A value already serialized (a record read back from a temp file).
    pub(super) fn raw(&mut self, json: &[u8]) -> io::Result<()> {
        self.before_value()?;
        self.out.write_all(json)
    }

    pub(super) fn field(&mut self, key: &str, value: &(impl Serialize + ?Sized)) -> io::Result<()> {
        self.key(key)?;
        self.value(value)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    #[cfg(test)]
    pub(super) fn into_inner(self) -> W {
        self.out
    }

    fn before_value(&mut self) -> io::Result<()> {
        if self.after_key {
            self.after_key = false;
            Ok(())
        } else {
            self.separate()
        }
    }

    fn separate(&mut self) -> io::Result<()> {
        if let Some(has_elements) = self.open.last_mut() {
            if *has_elements {
                self.out.write_all(b",")?;
            }
            *has_elements = true;
        }
        Ok(())
    }
}

/// An object serialized with `leading` keys first (those present, in that order) and every
/// other key after them in key order: the canonical form's order whatever the input's.
pub(super) struct Ordered<'a> {
    pub object: &'a Map<String, Value>,
    pub leading: &'a [&'a str],
}

impl<'a> Ordered<'a> {
    /// The keys that are not `leading`, in key order.
    pub(super) fn rest(&self) -> Vec<(&'a String, &'a Value)> {
        let mut rest: Vec<_> = self
            .object
            .iter()
            .filter(|(key, _)| !self.leading.contains(&key.as_str()))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(b.0));
        rest
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.object.len()))?;
        for key in self.leading {
            if let Some(value) = self.object.get(*key) {
                map.serialize_entry(key, value)?;
            }
        }
        for (key, value) in self.rest() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn places_commas_in_nested_objects_and_lists() {
        let mut out = JsonOut::new(Vec::new());
        out.begin_object().unwrap();
        out.field("a", &1).unwrap();
        out.key("b").unwrap();
        out.begin_list().unwrap();
        out.value(&json!({"x": null})).unwrap();
        out.raw(b"[]").unwrap();
        out.begin_object().unwrap();
        out.end_object().unwrap();
        out.end_list().unwrap();
        out.field("c", "d").unwrap();
        out.end_object().unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(text, r#"{"a":1,"b":[{"x":null},[],{}],"c":"d"}"#);
    }

    #[test]
    fn orders_leading_keys_then_the_rest_by_key() {
        let object = json!({"z": 1, "id": 2, "b": 3, "content": 4});
        let Value::Object(object) = object else {
            unreachable!()
        };
        let ordered = Ordered {
            object: &object,
            leading: &["id", "content", "absent"],
        };
        assert_eq!(
            serde_json::to_string(&ordered).unwrap(),
            r#"{"id":2,"content":4,"b":3,"z":1}"#
        );
    }
}
