//! Merging a table's schema with the Iceberg type of a new value schema version.

use std::sync::Arc;

use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use super::error::DecodeError;
use super::ids::{display, join, ELEMENT, KEY, VALUE};

/// Merges `incoming` (a value schema's [`super::ValueDecoder::iceberg_type`]) into the table's
/// `current` schema, matching fields by name:
///
/// - fields only in `incoming` are added as optional columns (old rows read null), with fresh
///   ids above `current.highest_field_id()`;
/// - fields only in `current` stay as they are (new rows write null there, so a required one
///   becomes optional);
/// - a field in both keeps its id and type, widened where Iceberg allows it (int -> long,
///   float -> double, decimal precision) and made optional if `incoming` makes it optional;
/// - any other type change (e.g. string -> long, struct -> list) is
///   [`DecodeError::Incompatible`] naming the column.
///
/// Returns `Ok(None)` when `current` already accepts every value of `incoming`. After a
/// change, rebuild [`super::FieldIds`] from the new schema.
pub fn evolve(current: &Schema, incoming: &StructType) -> Result<Option<Schema>, DecodeError> {
    let highest = current.highest_field_id();
    let mut ctx = Ctx {
        next_id: highest.max(max_id_of_struct(incoming)) + 1,
        highest,
        changed: false,
    };
    let mut merged = merge_struct(current.as_struct(), incoming, "", &mut ctx, true)?;
    // New columns keep the ids `incoming` gave them (from a `FieldIds` seeded with `current`)
    // when those are above every id of `current` and unique; otherwise they get fresh ones.
    let mut seen = std::collections::HashSet::new();
    if !ids_unique(&Type::Struct(merged.clone()), &mut seen) {
        let mut fresh = Ctx {
            next_id: highest + 1,
            highest,
            changed: false,
        };
        merged = merge_struct(
            current.as_struct(),
            &strip_ids(incoming),
            "",
            &mut fresh,
            true,
        )?;
    }
    if !ctx.changed {
        return Ok(None);
    }
    let schema = Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_identifier_field_ids(current.identifier_field_ids())
        .with_fields(merged.fields().iter().cloned())
        .build()
        .map_err(|e| DecodeError::incompatible("", e.to_string()))?;
    Ok(Some(schema))
}

struct Ctx {
    next_id: i32,
    /// The current schema's highest field id: ids of new fields must be above it.
    highest: i32,
    changed: bool,
}

fn merge_struct(
    cur: &StructType,
    inc: &StructType,
    path: &str,
    ctx: &mut Ctx,
    top_level: bool,
) -> Result<StructType, DecodeError> {
    let mut fields: Vec<NestedFieldRef> = Vec::with_capacity(cur.fields().len());
    for f in cur.fields() {
        let p = join(path, &f.name);
        match inc.fields().iter().find(|i| i.name == f.name) {
            Some(i) => {
                let ty = merge_type(&f.field_type, &i.field_type, &p, ctx)?;
                let required = f.required && i.required;
                if required != f.required {
                    ctx.changed = true;
                }
                fields.push(Arc::new(with_type(f, ty, required)));
            }
            // Columns the value never had (e.g. the translator's own metadata columns at
            // the top level) are left alone; a required nested field that a new version
            // dropped becomes optional.
            None if !top_level && f.required => {
                ctx.changed = true;
                fields.push(Arc::new(with_type(f, f.field_type.as_ref().clone(), false)));
            }
            None => fields.push(f.clone()),
        }
    }
    for i in inc.fields() {
        if cur.fields().iter().any(|f| f.name == i.name) {
            continue;
        }
        ctx.changed = true;
        let keep = i.id > ctx.highest && min_id(&i.field_type).is_none_or(|m| m > ctx.highest);
        let (id, ty) = if keep {
            (i.id, i.field_type.as_ref().clone())
        } else {
            let id = take(&mut ctx.next_id);
            (id, renumber(&i.field_type, &mut ctx.next_id))
        };
        let mut nf = NestedField::optional(id, i.name.clone(), ty);
        if let Some(doc) = &i.doc {
            nf = nf.with_doc(doc.clone());
        }
        fields.push(Arc::new(nf));
    }
    Ok(StructType::new(fields))
}

fn with_type(f: &NestedField, ty: Type, required: bool) -> NestedField {
    let mut nf = NestedField::new(f.id, f.name.clone(), ty, required);
    nf.doc = f.doc.clone();
    nf.initial_default = f.initial_default.clone();
    nf.write_default = f.write_default.clone();
    nf
}

fn take(next_id: &mut i32) -> i32 {
    let id = *next_id;
    *next_id += 1;
    id
}

fn merge_type(cur: &Type, inc: &Type, path: &str, ctx: &mut Ctx) -> Result<Type, DecodeError> {
    let incompatible = || {
        DecodeError::incompatible(
            &display(path),
            format!("column is {cur}, the new schema has {inc}"),
        )
    };
    match (cur, inc) {
        (Type::Primitive(c), Type::Primitive(i)) => {
            use PrimitiveType as P;
            let merged = match (c, i) {
                _ if c == i => c.clone(),
                (P::Long, P::Int) | (P::Double, P::Float) => c.clone(),
                (P::Int, P::Long) | (P::Float, P::Double) => i.clone(),
                (
                    P::Decimal {
                        precision: pc,
                        scale: sc,
                    },
                    P::Decimal {
                        precision: pi,
                        scale: si,
                    },
                ) if sc == si => P::Decimal {
                    precision: (*pc).max(*pi),
                    scale: *sc,
                },
                _ => return Err(incompatible()),
            };
            if &merged != c {
                ctx.changed = true;
            }
            Ok(Type::Primitive(merged))
        }
        (Type::Struct(c), Type::Struct(i)) => {
            Ok(Type::Struct(merge_struct(c, i, path, ctx, false)?))
        }
        (Type::List(c), Type::List(i)) => {
            let p = join(path, ELEMENT);
            let ce = &c.element_field;
            let ty = merge_type(&ce.field_type, &i.element_field.field_type, &p, ctx)?;
            let required = ce.required && i.element_field.required;
            if required != ce.required {
                ctx.changed = true;
            }
            Ok(Type::List(ListType::new(Arc::new(with_type(
                ce, ty, required,
            )))))
        }
        (Type::Map(c), Type::Map(i)) => {
            let kp = join(path, KEY);
            let kty = merge_type(&c.key_field.field_type, &i.key_field.field_type, &kp, ctx)?;
            if kty != *c.key_field.field_type {
                return Err(incompatible());
            }
            let vp = join(path, VALUE);
            let cv = &c.value_field;
            let vty = merge_type(&cv.field_type, &i.value_field.field_type, &vp, ctx)?;
            let required = cv.required && i.value_field.required;
            if required != cv.required {
                ctx.changed = true;
            }
            Ok(Type::Map(MapType::new(
                c.key_field.clone(),
                Arc::new(with_type(cv, vty, required)),
            )))
        }
        _ => Err(incompatible()),
    }
}

/// A copy of `ty` with fresh ids for every nested field.
fn renumber(ty: &Type, next_id: &mut i32) -> Type {
    match ty {
        Type::Primitive(_) => ty.clone(),
        Type::Struct(st) => Type::Struct(StructType::new(
            st.fields()
                .iter()
                .map(|f| {
                    let id = take(next_id);
                    let t = renumber(&f.field_type, next_id);
                    let mut nf = NestedField::new(id, f.name.clone(), t, f.required);
                    nf.doc = f.doc.clone();
                    Arc::new(nf)
                })
                .collect(),
        )),
        Type::List(l) => {
            let id = take(next_id);
            let t = renumber(&l.element_field.field_type, next_id);
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                id,
                t,
                l.element_field.required,
            ))))
        }
        Type::Map(m) => {
            let kid = take(next_id);
            let kt = renumber(&m.key_field.field_type, next_id);
            let vid = take(next_id);
            let vt = renumber(&m.value_field.field_type, next_id);
            Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(kid, kt)),
                Arc::new(NestedField::map_value_element(
                    vid,
                    vt,
                    m.value_field.required,
                )),
            ))
        }
    }
}

/// The highest field id in a struct type (0 if none).
fn max_id_of_struct(st: &StructType) -> i32 {
    st.fields()
        .iter()
        .map(|f| f.id.max(max_id(&f.field_type)))
        .max()
        .unwrap_or(0)
}

fn max_id(ty: &Type) -> i32 {
    match ty {
        Type::Primitive(_) => 0,
        Type::Struct(st) => max_id_of_struct(st),
        Type::List(l) => l.element_field.id.max(max_id(&l.element_field.field_type)),
        Type::Map(m) => m
            .key_field
            .id
            .max(m.value_field.id)
            .max(max_id(&m.key_field.field_type))
            .max(max_id(&m.value_field.field_type)),
    }
}

/// The lowest field id nested in `ty` (`None` for a primitive).
fn min_id(ty: &Type) -> Option<i32> {
    let of = |f: &NestedField| Some(min_id(&f.field_type).map_or(f.id, |m| m.min(f.id)));
    match ty {
        Type::Primitive(_) => None,
        Type::Struct(st) => st.fields().iter().filter_map(|f| of(f)).min(),
        Type::List(l) => of(&l.element_field),
        Type::Map(m) => of(&m.key_field).min(of(&m.value_field)),
    }
}

/// True if every id in `ty` is positive and unique.
fn ids_unique(ty: &Type, seen: &mut std::collections::HashSet<i32>) -> bool {
    match ty {
        Type::Primitive(_) => true,
        Type::Struct(st) => st
            .fields()
            .iter()
            .all(|f| f.id > 0 && seen.insert(f.id) && ids_unique(&f.field_type, seen)),
        Type::List(l) => {
            l.element_field.id > 0
                && seen.insert(l.element_field.id)
                && ids_unique(&l.element_field.field_type, seen)
        }
        Type::Map(m) => {
            m.key_field.id > 0
                && seen.insert(m.key_field.id)
                && m.value_field.id > 0
                && seen.insert(m.value_field.id)
                && ids_unique(&m.key_field.field_type, seen)
                && ids_unique(&m.value_field.field_type, seen)
        }
    }
}

/// `st` with every id set to 0, so that merging assigns fresh ids to new fields.
fn strip_ids(st: &StructType) -> StructType {
    StructType::new(
        st.fields()
            .iter()
            .map(|f| {
                let mut nf = NestedField::new(0, f.name.clone(), strip(&f.field_type), f.required);
                nf.doc = f.doc.clone();
                Arc::new(nf)
            })
            .collect(),
    )
}

fn strip(ty: &Type) -> Type {
    match ty {
        Type::Primitive(_) => ty.clone(),
        Type::Struct(st) => Type::Struct(strip_ids(st)),
        Type::List(l) => Type::List(ListType::new(Arc::new(NestedField::list_element(
            0,
            strip(&l.element_field.field_type),
            l.element_field.required,
        )))),
        Type::Map(m) => Type::Map(MapType::new(
            Arc::new(NestedField::map_key_element(
                0,
                strip(&m.key_field.field_type),
            )),
            Arc::new(NestedField::map_value_element(
                0,
                strip(&m.value_field.field_type),
                m.value_field.required,
            )),
        )),
    }
}
