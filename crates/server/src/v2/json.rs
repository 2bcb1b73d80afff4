//! JSON as Go's `encoding/json` writes it, which v2 clients see byte for byte: fields in
//! struct order, `<`, `>` and `&` escaped as `\u003c`..., U+2028/U+2029 escaped, one value
//! per line. serde_json orders and escapes differently, so the v2 bodies are written here.

#[derive(Default)]
pub struct JsonWriter {
    out: String,
    /// Whether the object being written already has a field (a comma goes before the next).
    needs_comma: Vec<bool>,
}

impl JsonWriter {
    pub fn begin_object(&mut self) {
        self.value_separator();
        self.out.push('{');
        self.needs_comma.push(false);
    }

    pub fn end_object(&mut self) {
        self.out.push('}');
        self.needs_comma.pop();
    }

    pub fn begin_array_field(&mut self, name: &str) {
        self.key(name);
        self.out.push('[');
        self.needs_comma.push(false);
    }

    pub fn end_array(&mut self) {
        self.out.push(']');
        self.needs_comma.pop();
    }

    /// Starts an object as the value of field `name`.
    pub fn begin_object_field(&mut self, name: &str) {
        self.key(name);
        self.out.push('{');
        self.needs_comma.push(false);
    }

    pub fn field_str(&mut self, name: &str, value: &str) {
        self.key(name);
        push_go_string(&mut self.out, value);
    }

    pub fn field_u64(&mut self, name: &str, value: u64) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    pub fn field_i64(&mut self, name: &str, value: i64) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    pub fn field_bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// A field whose value is already JSON.
    pub fn field_raw(&mut self, name: &str, json: &str) {
        self.key(name);
        self.out.push_str(json);
    }

    /// A string element of the array being written.
    pub fn element_str(&mut self, value: &str) {
        self.value_separator();
        push_go_string(&mut self.out, value);
    }

    /// The document, ended by the newline Go's `json.Encoder` adds.
    pub fn finish_line(mut self) -> String {
        self.out.push('\n');
        self.out
    }

    /// A field name; the caller writes its value right after.
    fn key(&mut self, name: &str) {
        self.value_separator();
        push_go_string(&mut self.out, name);
        self.out.push(':');
    }

    /// The comma before every field or element of an object or array but its first.
    fn value_separator(&mut self) {
        if let Some(needs) = self.needs_comma.last_mut() {
            if *needs {
                self.out.push(',');
            }
            *needs = true;
        }
    }
}

/// `s` as a Go JSON string literal (HTML-safe escaping, as `json.Marshal`).
pub fn push_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A Go JSON string literal of `s`.
pub fn go_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_escapes_as_go() {
        let mut w = JsonWriter::default();
        w.begin_object();
        w.field_str("a", "<x>&\"\\\n\u{1}\u{2028}é");
        w.begin_array_field("list");
        w.begin_object();
        w.field_u64("n", 1);
        w.end_object();
        w.begin_object();
        w.field_bool("b", true);
        w.field_i64("i", -3);
        w.end_object();
        w.end_array();
        w.begin_object_field("o");
        w.end_object();
        w.field_raw("r", "null");
        w.end_object();
        assert_eq!(
            w.finish_line(),
            "{\"a\":\"\\u003cx\\u003e\\u0026\\\"\\\\\\n\\u0001\\u2028é\",\
             \"list\":[{\"n\":1},{\"b\":true,\"i\":-3}],\"o\":{},\"r\":null}\n"
        );
    }
}
