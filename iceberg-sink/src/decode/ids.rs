//! Stable Iceberg field ids. A field is identified by its name path from the top-level struct
//! (list elements, map keys and map values are path segments of their own), so a field keeps
//! its id across schema versions and new fields get ids above every id already used.

use std::collections::HashMap;

use iceberg::spec::{Schema, StructType, Type};

const SEP: char = '\u{0}';
pub(crate) const ELEMENT: &str = "[element]";
pub(crate) const KEY: &str = "[key]";
pub(crate) const VALUE: &str = "[value]";

/// Assigns field ids by name path. Seed it with the table's current schema
/// ([`FieldIds::from_schema`]) so that existing columns keep their ids.
#[derive(Debug, Clone)]
pub struct FieldIds {
    by_path: HashMap<String, i32>,
    next: i32,
}

impl Default for FieldIds {
    fn default() -> Self {
        Self::new()
    }
}

impl FieldIds {
    /// No ids used yet: the first field gets id 1.
    pub fn new() -> Self {
        FieldIds {
            by_path: HashMap::new(),
            next: 1,
        }
    }

    /// Every field of `schema` keeps its id; new fields get ids above the highest one.
    pub fn from_schema(schema: &Schema) -> Self {
        let mut ids = FieldIds::new();
        ids.record_struct(schema.as_struct(), "");
        ids.next = ids.next.max(schema.highest_field_id() + 1);
        ids
    }

    /// Like [`FieldIds::from_schema`] for a struct type.
    pub fn from_struct(st: &StructType) -> Self {
        let mut ids = FieldIds::new();
        ids.record_struct(st, "");
        ids
    }

    /// The highest id handed out or recorded so far (0 if none).
    pub fn last_assigned(&self) -> i32 {
        self.next - 1
    }

    /// The id of the field at `path` (segments from the top level), assigning a new one the
    /// first time the path is seen.
    pub(crate) fn id(&mut self, path: &str) -> i32 {
        if let Some(&id) = self.by_path.get(path) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        self.by_path.insert(path.to_string(), id);
        id
    }

    fn record(&mut self, path: String, id: i32) {
        self.next = self.next.max(id + 1);
        self.by_path.insert(path, id);
    }

    fn record_struct(&mut self, st: &StructType, prefix: &str) {
        for f in st.fields() {
            let path = join(prefix, &f.name);
            self.record(path.clone(), f.id);
            self.record_type(&f.field_type, &path);
        }
    }

    fn record_type(&mut self, ty: &Type, path: &str) {
        match ty {
            Type::Primitive(_) => {}
            Type::Struct(st) => self.record_struct(st, path),
            Type::List(l) => {
                let p = join(path, ELEMENT);
                self.record(p.clone(), l.element_field.id);
                self.record_type(&l.element_field.field_type, &p);
            }
            Type::Map(m) => {
                let k = join(path, KEY);
                self.record(k.clone(), m.key_field.id);
                self.record_type(&m.key_field.field_type, &k);
                let v = join(path, VALUE);
                self.record(v.clone(), m.value_field.id);
                self.record_type(&m.value_field.field_type, &v);
            }
        }
    }
}

/// Appends one segment to a path.
pub(crate) fn join(prefix: &str, segment: &str) -> String {
    if prefix.is_empty() {
        segment.to_string()
    } else {
        let mut s = String::with_capacity(prefix.len() + 1 + segment.len());
        s.push_str(prefix);
        s.push(SEP);
        s.push_str(segment);
        s
    }
}

/// A path for messages: segments joined with dots.
pub(crate) fn display(path: &str) -> String {
    path.replace(SEP, ".")
}
