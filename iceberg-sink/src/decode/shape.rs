//! The Iceberg shape of a decoded value before field ids are assigned: what every format's
//! schema compiles to.

use std::sync::Arc;

use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, StructType, Type};

use super::ids::{join, FieldIds, ELEMENT, KEY, VALUE};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    Primitive(PrimitiveType),
    Struct(Vec<ShapeField>),
    List {
        element: Box<Shape>,
        element_required: bool,
    },
    Map {
        key: Box<Shape>,
        value: Box<Shape>,
        value_required: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShapeField {
    pub name: String,
    pub shape: Shape,
    pub required: bool,
    pub doc: Option<String>,
}

impl ShapeField {
    /// An optional field (the default for every struct field: see docs/iceberg.md).
    pub fn optional(name: impl Into<String>, shape: Shape) -> Self {
        ShapeField {
            name: name.into(),
            shape,
            required: false,
            doc: None,
        }
    }
}

pub(crate) fn struct_type(fields: &[ShapeField], ids: &mut FieldIds, prefix: &str) -> StructType {
    let fields = fields
        .iter()
        .map(|f| {
            let path = join(prefix, &f.name);
            let id = ids.id(&path);
            let ty = iceberg_type(&f.shape, ids, &path);
            let mut nf = NestedField::new(id, f.name.clone(), ty, f.required);
            if let Some(doc) = &f.doc {
                nf = nf.with_doc(doc.clone());
            }
            Arc::new(nf)
        })
        .collect();
    StructType::new(fields)
}

fn iceberg_type(shape: &Shape, ids: &mut FieldIds, path: &str) -> Type {
    match shape {
        Shape::Primitive(p) => Type::Primitive(p.clone()),
        Shape::Struct(fields) => Type::Struct(struct_type(fields, ids, path)),
        Shape::List {
            element,
            element_required,
        } => {
            let p = join(path, ELEMENT);
            let id = ids.id(&p);
            let ty = iceberg_type(element, ids, &p);
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                id,
                ty,
                *element_required,
            ))))
        }
        Shape::Map {
            key,
            value,
            value_required,
        } => {
            let kp = join(path, KEY);
            let kid = ids.id(&kp);
            let kty = iceberg_type(key, ids, &kp);
            let vp = join(path, VALUE);
            let vid = ids.id(&vp);
            let vty = iceberg_type(value, ids, &vp);
            Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(kid, kty)),
                Arc::new(NestedField::map_value_element(vid, vty, *value_required)),
            ))
        }
    }
}
