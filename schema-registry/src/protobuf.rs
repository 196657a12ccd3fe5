//! Protobuf schemas (`schemaType: "PROTOBUF"`): parsing `.proto` text without protoc
//! (`protox`), the form that identifies a schema, and the Confluent registry's Protobuf
//! compatibility rules (its `SchemaDiff`), compared on `prost-reflect` descriptors.
//!
//! A schema is one `.proto` file. Its imports are resolved through the request's references:
//! a reference's `name` is the import path, its subject/version gives the text. Google's
//! well-known types (`google/protobuf/timestamp.proto`, ...) resolve without a reference, as in
//! Confluent's registry. Confluent's serializers may also send a file as a base64-encoded
//! `FileDescriptorProto`; that is accepted too.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use miette::Diagnostic;
use prost::Message;
use prost_reflect::{Cardinality, DescriptorPool, FileDescriptor, Kind, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::compat::{check_versions, Level};

/// The name the schema's own file is compiled under (imports name the other files).
const MAIN: &str = "__registered_schema__.proto";

/// A parsed `.proto` schema (its descriptor keeps the pool with its imports alive).
#[derive(Debug, Clone)]
pub struct Proto {
    file: FileDescriptor,
}

impl Proto {
    fn file(&self) -> FileDescriptor {
        self.file.clone()
    }

    /// The schema's `FileDescriptorProto`, base64-encoded: what Confluent serves for
    /// `?format=serialized` and its serializers decode.
    pub fn serialized(&self, name: &str) -> String {
        let mut fd = self.file().file_descriptor_proto().clone();
        fd.name = Some(name.to_string());
        fd.source_code_info = None;
        base64::engine::general_purpose::STANDARD.encode(fd.encode_to_vec())
    }
}

/// Serves the schema and its references to the compiler by import name.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(text) => load(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// A file from `.proto` text, or from a base64 `FileDescriptorProto`.
fn load(name: &str, text: &str) -> Result<File, protox::Error> {
    if let Some(mut fd) = decode_descriptor(text) {
        fd.name = Some(name.to_string());
        return Ok(File::from_file_descriptor_proto(fd));
    }
    File::from_source(name, text)
}

fn decode_descriptor(text: &str) -> Option<prost_types::FileDescriptorProto> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
    prost_types::FileDescriptorProto::decode(&bytes[..]).ok()
}

/// Parses a schema; `imports` maps each referenced import path to its text (the references'
/// own references included). The error names the file, line and column.
pub fn parse(text: &str, imports: &HashMap<String, String>) -> Result<Proto, String> {
    let mut files = imports.clone();
    files.insert(MAIN.to_string(), text.to_string());
    let mut chain = ChainFileResolver::new();
    chain.add(Sources(files.clone()));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler.open_file(MAIN).map_err(|e| describe(&e, &files))?;
    let pool: DescriptorPool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(MAIN)
        .ok_or_else(|| "the compiler lost the schema's file".to_string())?;
    Ok(Proto { file })
}

/// The compiler's message with the place it points at as `file:line:column`.
fn describe(e: &protox::Error, files: &HashMap<String, String>) -> String {
    let file = e.file().unwrap_or(MAIN);
    let shown = if file == MAIN { "schema" } else { file };
    let place = e
        .labels()
        .and_then(|mut l| l.next())
        .zip(files.get(file))
        .map(|(label, src)| {
            // Byte offsets: fall back to the whole text rather than split a character.
            let upto = src.get(..label.offset()).unwrap_or(src);
            let line = upto.matches('\n').count() + 1;
            let col = upto.len() - upto.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{shown}:{line}:{col}: ")
        })
        .unwrap_or_else(|| format!("{shown}: "));
    format!("{place}{e}")
}

/// Whether a stored schema is a base64 `FileDescriptorProto` rather than `.proto` text.
pub fn is_descriptor(text: &str) -> bool {
    decode_descriptor(text).is_some()
}

/// The schema as `.proto` text, if the printer can write it and the text compiles back to the
/// same schema (same identity); None otherwise.
pub fn to_text(p: &Proto, imports: &HashMap<String, String>) -> Option<String> {
    let text = crate::proto_text::print(p.file().file_descriptor_proto())?;
    let again = parse(&text, imports).ok()?;
    (canonical(&again) == canonical(p)).then_some(text)
}

/// The form that identifies a schema: its descriptor without source positions, file name or
/// derived JSON names, so that the same file as text or as a descriptor is one schema.
pub fn canonical(p: &Proto) -> String {
    let mut fd = p.file().file_descriptor_proto().clone();
    fd.name = None;
    fd.source_code_info = None;
    fn clear(m: &mut prost_types::DescriptorProto) {
        for f in &mut m.field {
            f.json_name = None;
        }
        m.nested_type.iter_mut().for_each(clear);
    }
    fd.message_type.iter_mut().for_each(clear);
    format!(
        "PROTOBUF:{}",
        base64::engine::general_purpose::STANDARD.encode(fd.encode_to_vec())
    )
}

/// Confluent's compatible change types; every other difference is incompatible.
const COMPATIBLE: &[&str] = &[
    "MESSAGE_ADDED",
    "MESSAGE_MOVED",
    "ENUM_ADDED",
    "ENUM_REMOVED",
    "ENUM_CONST_ADDED",
    "ENUM_CONST_CHANGED",
    "ENUM_CONST_REMOVED",
    "FIELD_ADDED",
    "FIELD_REMOVED",
    "FIELD_NAME_CHANGED",
    "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
    "ONEOF_ADDED",
    "ONEOF_REMOVED",
    "ONEOF_FIELD_ADDED",
];

#[derive(Default)]
struct Ctx {
    diffs: Vec<(String, &'static str)>,
    /// Messages already compared (original full name), so recursive types end.
    seen: HashSet<String>,
}

impl Ctx {
    fn add(&mut self, path: &str, kind: &'static str) {
        self.diffs.push((path.to_string(), kind));
    }
}

/// Every difference between two schemas as (path, Confluent's type name), compatible or not.
fn differences(original: &Proto, update: &Proto) -> Vec<(String, &'static str)> {
    let (o, u) = (original.file(), update.file());
    let mut ctx = Ctx::default();
    if o.package_name() != u.package_name() {
        ctx.add("#/", "PACKAGE_CHANGED");
    }
    compare_types(
        &mut ctx,
        "#",
        o.messages().collect(),
        o.enums().collect(),
        u.messages().collect(),
        u.enums().collect(),
    );
    ctx.diffs
}

fn compare_types(
    ctx: &mut Ctx,
    path: &str,
    o_msgs: Vec<MessageDescriptor>,
    o_enums: Vec<prost_reflect::EnumDescriptor>,
    u_msgs: Vec<MessageDescriptor>,
    u_enums: Vec<prost_reflect::EnumDescriptor>,
) {
    let index = |ms: &[MessageDescriptor]| -> HashMap<String, (usize, MessageDescriptor)> {
        ms.iter()
            .filter(|m| !m.is_map_entry())
            .enumerate()
            .map(|(i, m)| (m.name().to_string(), (i, m.clone())))
            .collect()
    };
    let (om, um) = (index(&o_msgs), index(&u_msgs));
    let mut names: Vec<&String> = om.keys().chain(um.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let p = format!("{path}/{name}");
        match (om.get(name), um.get(name)) {
            (Some(_), None) => ctx.add(&p, "MESSAGE_REMOVED"),
            (None, Some(_)) => ctx.add(&p, "MESSAGE_ADDED"),
            (Some((oi, o)), Some((ui, u))) => {
                compare_message(ctx, &p, o, u);
                if oi != ui {
                    ctx.add(&p, "MESSAGE_MOVED");
                }
            }
            (None, None) => {}
        }
    }
    let oe: HashMap<&str, &prost_reflect::EnumDescriptor> =
        o_enums.iter().map(|e| (e.name(), e)).collect();
    let ue: HashMap<&str, &prost_reflect::EnumDescriptor> =
        u_enums.iter().map(|e| (e.name(), e)).collect();
    let mut names: Vec<&str> = oe.keys().chain(ue.keys()).copied().collect();
    names.sort();
    names.dedup();
    for name in names {
        let p = format!("{path}/{name}");
        match (oe.get(name), ue.get(name)) {
            (Some(_), None) => ctx.add(&p, "ENUM_REMOVED"),
            (None, Some(_)) => ctx.add(&p, "ENUM_ADDED"),
            (Some(o), Some(u)) => {
                let ov: HashMap<i32, String> =
                    o.values().map(|v| (v.number(), v.name().into())).collect();
                let uv: HashMap<i32, String> =
                    u.values().map(|v| (v.number(), v.name().into())).collect();
                let mut nums: Vec<&i32> = ov.keys().chain(uv.keys()).collect();
                nums.sort();
                nums.dedup();
                for n in nums {
                    let p = format!("{p}/{n}");
                    match (ov.get(n), uv.get(n)) {
                        (Some(_), None) => ctx.add(&p, "ENUM_CONST_REMOVED"),
                        (None, Some(_)) => ctx.add(&p, "ENUM_CONST_ADDED"),
                        (Some(a), Some(b)) if a != b => ctx.add(&p, "ENUM_CONST_CHANGED"),
                        _ => {}
                    }
                }
            }
            (None, None) => {}
        }
    }
}

/// The fields of a message by number, and the real (not proto3-`optional`) oneof each is in.
fn fields_by_tag(
    m: &MessageDescriptor,
) -> (
    HashMap<u32, prost_reflect::FieldDescriptor>,
    HashMap<u32, String>,
) {
    let mut all = HashMap::new();
    let mut oneof = HashMap::new();
    for f in m.fields() {
        if let Some(o) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
            oneof.insert(f.number(), o.name().to_string());
        }
        all.insert(f.number(), f);
    }
    (all, oneof)
}

fn compare_message(ctx: &mut Ctx, path: &str, o: &MessageDescriptor, u: &MessageDescriptor) {
    if !ctx.seen.insert(o.full_name().to_string()) {
        return;
    }
    let (o_all, o_oneof) = fields_by_tag(o);
    let (u_all, u_oneof) = fields_by_tag(u);
    // Fields moved into a oneof: one is compatible, several are not (only one survives).
    let mut u_oneofs: Vec<String> = u_oneof.values().cloned().collect();
    u_oneofs.sort();
    u_oneofs.dedup();
    for name in &u_oneofs {
        let tags: Vec<u32> = u_oneof
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(t, _)| *t)
            .collect();
        let moved = tags
            .iter()
            .filter(|t| o_all.contains_key(t) && !o_oneof.contains_key(t))
            .count();
        let existing = tags.iter().filter(|t| o_oneof.contains_key(t)).count();
        let p = format!("{path}/{name}");
        if moved > 1 {
            ctx.add(&p, "MULTIPLE_FIELDS_MOVED_TO_ONEOF");
        } else if moved == 1 && existing > 0 {
            ctx.add(&p, "FIELD_MOVED_TO_EXISTING_ONEOF");
        }
    }
    let mut o_oneofs: Vec<String> = o_oneof.values().cloned().collect();
    o_oneofs.sort();
    o_oneofs.dedup();
    let mut names: Vec<&String> = o_oneofs.iter().chain(u_oneofs.iter()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let p = format!("{path}/{name}");
        let in_o = o_oneofs.contains(name);
        let in_u = u_oneofs.contains(name);
        if in_o && !in_u {
            ctx.add(&p, "ONEOF_REMOVED");
        } else if in_u && !in_o {
            ctx.add(&p, "ONEOF_ADDED");
        } else {
            let mut tags: Vec<u32> = o_oneof
                .iter()
                .chain(u_oneof.iter())
                .filter(|(_, n)| *n == name)
                .map(|(t, _)| *t)
                .collect();
            tags.sort();
            tags.dedup();
            for t in tags {
                let p = format!("{p}/{t}");
                let ou = o_oneof.get(&t) == Some(name);
                let uu = u_oneof.get(&t) == Some(name);
                match (ou, uu) {
                    (true, false) if !u_all.contains_key(&t) => ctx.add(&p, "ONEOF_FIELD_REMOVED"),
                    (false, true) if !o_all.contains_key(&t) => ctx.add(&p, "ONEOF_FIELD_ADDED"),
                    (true, true) => compare_field(ctx, &p, &o_all[&t], &u_all[&t]),
                    _ => {}
                }
            }
        }
    }
    // Top-level fields (not in a oneof on either side).
    let mut tags: Vec<u32> = o_all.keys().chain(u_all.keys()).copied().collect();
    tags.sort();
    tags.dedup();
    for t in tags {
        let p = format!("{path}/{t}");
        let (of, uf) = (o_all.get(&t), u_all.get(&t));
        let (oo, uo) = (o_oneof.get(&t), u_oneof.get(&t));
        match (of, uf) {
            (Some(f), None) if oo.is_none() => {
                if f.cardinality() == Cardinality::Required {
                    ctx.add(&p, "REQUIRED_FIELD_REMOVED")
                } else {
                    ctx.add(&p, "FIELD_REMOVED")
                }
            }
            (None, Some(f)) if uo.is_none() => {
                if f.cardinality() == Cardinality::Required {
                    ctx.add(&p, "REQUIRED_FIELD_ADDED")
                } else {
                    ctx.add(&p, "FIELD_ADDED")
                }
            }
            // Both top-level, or the field moved into or out of a oneof (or between two).
            (Some(a), Some(b)) if (oo.is_none() && uo.is_none()) || oo != uo => {
                compare_field(ctx, &p, a, b)
            }
            _ => {}
        }
    }
    compare_types(
        ctx,
        path,
        o.child_messages().collect(),
        o.child_enums().collect(),
        u.child_messages().collect(),
        u.child_enums().collect(),
    );
}

#[derive(PartialEq, Eq, Debug)]
enum FieldKind {
    Scalar,
    Map,
    Message,
}

fn field_kind(f: &prost_reflect::FieldDescriptor) -> FieldKind {
    if f.is_map() {
        FieldKind::Map
    } else if matches!(f.kind(), Kind::Message(_)) {
        FieldKind::Message
    } else {
        FieldKind::Scalar
    }
}

/// Scalars that share a wire encoding, so a change within a group keeps data readable
/// (the groups of the Protobuf language guide's "Updating a message type").
fn scalar_group(k: &Kind) -> &'static str {
    match k {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => {
            "GENERAL_NUMBER"
        }
        Kind::Sint32 | Kind::Sint64 => "SIGNED_NUMBER",
        Kind::String | Kind::Bytes => "STRING_OR_BYTES",
        Kind::Fixed32 | Kind::Sfixed32 => "FIXED32",
        Kind::Fixed64 | Kind::Sfixed64 => "FIXED64",
        Kind::Float => "FLOAT",
        Kind::Double => "DOUBLE",
        Kind::Message(_) => "MESSAGE",
    }
}

fn compare_field(
    ctx: &mut Ctx,
    path: &str,
    o: &prost_reflect::FieldDescriptor,
    u: &prost_reflect::FieldDescriptor,
) {
    if o.name() != u.name() {
        ctx.add(path, "FIELD_NAME_CHANGED");
    }
    compare_field_types(ctx, path, o, u);
}

fn compare_field_types(
    ctx: &mut Ctx,
    path: &str,
    o: &prost_reflect::FieldDescriptor,
    u: &prost_reflect::FieldDescriptor,
) {
    let (ok, uk) = (field_kind(o), field_kind(u));
    if ok != uk {
        ctx.add(path, "FIELD_KIND_CHANGED");
        return;
    }
    match ok {
        FieldKind::Scalar => {
            let (og, ug) = (scalar_group(&o.kind()), scalar_group(&u.kind()));
            if og != ug {
                ctx.add(path, "FIELD_SCALAR_KIND_CHANGED");
            } else if o.is_list() != u.is_list() {
                // repeated <-> singular: the same bytes for strings and bytes, but packed
                // repeated numbers cannot be read as one number.
                if og == "STRING_OR_BYTES" {
                    ctx.add(path, "FIELD_STRING_OR_BYTES_LABEL_CHANGED");
                } else {
                    ctx.add(path, "FIELD_NUMERIC_LABEL_CHANGED");
                }
            }
        }
        FieldKind::Message => {
            let (Kind::Message(om), Kind::Message(um)) = (o.kind(), u.kind()) else {
                return;
            };
            let local = |m: &MessageDescriptor| {
                let pkg = m.package_name();
                m.full_name()
                    .strip_prefix(&format!("{pkg}."))
                    .unwrap_or(m.full_name())
                    .to_string()
            };
            if local(&om) != local(&um) {
                ctx.add(path, "FIELD_NAMED_TYPE_CHANGED");
            } else {
                // A type from an import (or a nested one) is compared where it is used.
                let before = ctx.diffs.len();
                compare_message(ctx, &format!("#/{}", local(&om)), &om, &um);
                let broke = ctx.diffs[before..]
                    .iter()
                    .any(|(_, k)| !COMPATIBLE.contains(k));
                if broke {
                    ctx.add(path, "FIELD_NAMED_TYPE_CHANGED");
                }
            }
        }
        FieldKind::Map => {
            let (Kind::Message(om), Kind::Message(um)) = (o.kind(), u.kind()) else {
                return;
            };
            compare_field_types(
                ctx,
                path,
                &om.map_entry_key_field(),
                &um.map_entry_key_field(),
            );
            compare_field_types(
                ctx,
                path,
                &om.map_entry_value_field(),
                &um.map_entry_value_field(),
            );
        }
    }
}

/// The incompatible differences when data written with `original` is read with `update`,
/// as Confluent's verbose messages word them.
pub fn incompatible(update: &Proto, original: &Proto) -> Vec<String> {
    differences(original, update)
        .into_iter()
        .filter(|(_, k)| !COMPATIBLE.contains(k))
        .map(|(p, k)| format!("Found incompatible change: Difference{{fullPath='{p}', type={k}}}"))
        .collect()
}

/// Checks `new` against `existing` (version, schema; oldest first) at `level`.
pub fn check(level: Level, new: &Proto, existing: &[(i32, Proto)]) -> Vec<String> {
    check_versions(level, new, existing, incompatible)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Proto {
        parse(text, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn verdicts(old: &str, new: &str) -> (bool, bool) {
        let (o, n) = (p(old), p(new));
        (
            check(Level::Backward, &n, &[(1, o.clone())]).is_empty(),
            check(Level::Forward, &n, &[(1, o)]).is_empty(),
        )
    }

    const V1: &str = r#"syntax = "proto3"; package t;
message User { string name = 1; int32 age = 2; }
message Other { string x = 1; }"#;

    #[test]
    fn field_added_or_removed_is_full_compatible() {
        let added = r#"syntax = "proto3"; package t;
message User { string name = 1; int32 age = 2; string email = 3; }
message Other { string x = 1; }"#;
        assert_eq!(verdicts(V1, added), (true, true));
        assert_eq!(verdicts(added, V1), (true, true));
    }

    #[test]
    fn int32_to_int64_is_compatible_to_string_is_not() {
        let wider = V1.replace("int32 age", "int64 age");
        assert_eq!(verdicts(V1, &wider), (true, true));
        let reused = V1.replace("int32 age", "string age");
        assert_eq!(verdicts(V1, &reused), (false, false));
        let msgs = check(Level::Backward, &p(&reused), &[(1, p(V1))]);
        assert!(
            msgs[0].contains("fullPath='#/User/2', type=FIELD_SCALAR_KIND_CHANGED"),
            "{msgs:?}"
        );
        let sint = V1.replace("int32 age", "sint32 age");
        assert_eq!(verdicts(V1, &sint), (false, false));
    }

    #[test]
    fn message_removed_is_backward_incompatible_only() {
        let removed = r#"syntax = "proto3"; package t;
message User { string name = 1; int32 age = 2; }"#;
        assert_eq!(verdicts(V1, removed), (false, true));
    }

    #[test]
    fn package_change_and_kind_change_are_incompatible() {
        assert_eq!(
            verdicts(V1, &V1.replace("package t;", "package u;")),
            (false, false)
        );
        let kind = V1.replace("int32 age = 2;", "Other age = 2;");
        assert_eq!(verdicts(V1, &kind), (false, false));
    }

    #[test]
    fn oneof_rules() {
        let one = V1.replace("int32 age = 2;", "oneof choice { int32 age = 2; }");
        assert_eq!(verdicts(V1, &one), (true, true));
        let two = V1.replace(
            "string name = 1; int32 age = 2;",
            "oneof choice { string name = 1; int32 age = 2; }",
        );
        let (b, _) = verdicts(V1, &two);
        assert!(!b, "two fields moved into one oneof");
    }

    #[test]
    fn enum_changes_are_compatible_required_added_is_not() {
        let e1 =
            r#"syntax = "proto3"; enum Color { RED = 0; GREEN = 1; } message M { Color c = 1; }"#;
        let e2 = r#"syntax = "proto3"; enum Color { RED = 0; GREEN = 1; BLUE = 2; } message M { Color c = 1; }"#;
        assert_eq!(verdicts(e1, e2), (true, true));
        let r1 = r#"syntax = "proto2"; message M { optional string a = 1; }"#;
        let r2 = r#"syntax = "proto2"; message M { optional string a = 1; required int32 b = 2; }"#;
        assert_eq!(verdicts(r1, r2), (false, false));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let depth = 20_000;
        let text = format!(
            "syntax = \"proto3\"; {} {}",
            "message M { ".repeat(depth),
            "}".repeat(depth)
        );
        let e = parse(&text, &HashMap::new()).unwrap_err();
        assert!(e.contains("recursion limit"), "{e}");
        let opts = format!(
            "syntax = \"proto3\"; message M {{ option (a) = {}; }}",
            "{ a: ".repeat(depth)
        );
        let _ = parse(&opts, &HashMap::new());
    }

    #[test]
    fn errors_name_line_and_column_and_imports_resolve() {
        let e = parse(
            "syntax = \"proto3\";\nmessage M {\n  string a = 1\n}\n",
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(e.starts_with("schema:4:1:"), "{e}");
        let dep = r#"syntax = "proto3"; package d; message Dep { string v = 1; }"#;
        let main = r#"syntax = "proto3"; import "dep.proto"; import "google/protobuf/timestamp.proto";
message M { d.Dep dep = 1; google.protobuf.Timestamp at = 2; }"#;
        let mut imports = HashMap::new();
        assert!(parse(main, &imports).unwrap_err().contains("dep.proto"));
        imports.insert("dep.proto".to_string(), dep.to_string());
        let parsed = parse(main, &imports).unwrap();
        // the same file sent as a descriptor is the same schema, and prints back as text
        let again = parse(&parsed.serialized("x.proto"), &imports).unwrap();
        assert_eq!(canonical(&parsed), canonical(&again));
        assert!(is_descriptor(&parsed.serialized("x.proto")) && !is_descriptor(main));
        let text = to_text(&again, &imports).expect("printable");
        assert!(text.contains("import \"dep.proto\";"), "{text}");
        assert!(text.contains(".d.Dep dep = 1;"), "{text}");
    }

    #[test]
    fn descriptors_print_back_to_the_same_schema() {
        let cases = [
            V1,
            r#"syntax = "proto3"; package p.q;
message A { optional int32 x = 1; repeated string tags = 2; map<string, B> bs = 3;
  oneof choice { string s = 4; int64 n = 5; } reserved 8, 10 to 12; reserved "old";
  message B { bytes raw = 1; E e = 2; } enum E { E0 = 0; E1 = 1; } }
enum Top { T0 = 0; }"#,
            r#"syntax = "proto2"; message M { required int32 a = 1; optional string b = 2 [default = "x y"]; optional E e = 3 [default = TWO]; enum E { ONE = 1; TWO = 2; } }"#,
        ];
        for text in cases {
            let p = parse(text, &HashMap::new()).unwrap();
            let d = parse(&p.serialized("f.proto"), &HashMap::new()).unwrap();
            let printed =
                to_text(&d, &HashMap::new()).unwrap_or_else(|| panic!("not printable: {text}"));
            assert_eq!(
                canonical(&parse(&printed, &HashMap::new()).unwrap()),
                canonical(&p)
            );
        }
        // options are not printed: such a file is shown as stored
        let opt = parse(
            r#"syntax = "proto3"; option java_package = "x"; message M { int32 a = 1; }"#,
            &HashMap::new(),
        )
        .unwrap();
        assert!(to_text(&opt, &HashMap::new()).is_none());
    }
}
