//! `.proto` text for a Protobuf schema that was registered as a base64 `FileDescriptorProto`
//! (what Confluent's Python serializer sends), so responses show a schema as Confluent's
//! registry does: as `.proto` text. The stored form stays the descriptor; a file this printer
//! cannot write faithfully (options, extensions, services, editions) is shown as stored, and so
//! is any text that does not compile back to the same schema (checked by the caller).

use std::fmt::Write;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};

/// The file as `.proto` text, or None if it uses something the printer does not write.
pub fn print(fd: &FileDescriptorProto) -> Option<String> {
    let syntax = fd.syntax.as_deref().unwrap_or("proto2");
    if !matches!(syntax, "proto2" | "proto3")
        || fd.options.is_some()
        || !fd.service.is_empty()
        || !fd.extension.is_empty()
    {
        return None;
    }
    let mut out = format!("syntax = \"{syntax}\";\n");
    if let Some(p) = fd.package.as_deref().filter(|p| !p.is_empty()) {
        writeln!(out, "package {p};").ok()?;
    }
    if !fd.dependency.is_empty() {
        out.push('\n');
    }
    for (i, d) in fd.dependency.iter().enumerate() {
        let public = if fd.public_dependency.contains(&(i as i32)) {
            "public "
        } else if fd.weak_dependency.contains(&(i as i32)) {
            "weak "
        } else {
            ""
        };
        writeln!(out, "import {public}{};", quote(d)).ok()?;
    }
    let proto3 = syntax == "proto3";
    for m in &fd.message_type {
        out.push('\n');
        message(&mut out, m, proto3, 0)?;
    }
    for e in &fd.enum_type {
        out.push('\n');
        enumeration(&mut out, e, 0)?;
    }
    Some(out)
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn is_map_entry(m: &DescriptorProto) -> bool {
    m.options.as_ref().and_then(|o| o.map_entry) == Some(true)
}

fn message(out: &mut String, m: &DescriptorProto, proto3: bool, depth: usize) -> Option<()> {
    let map_only = m.options.as_ref().is_some_and(|o| {
        o.map_entry == Some(true)
            && o.message_set_wire_format.is_none()
            && o.deprecated.is_none()
            && o.uninterpreted_option.is_empty()
    });
    if (m.options.is_some() && !map_only)
        || !m.extension.is_empty()
        || !m.extension_range.is_empty()
        || depth > 64
    {
        return None;
    }
    let pad = "  ".repeat(depth);
    writeln!(out, "{pad}message {} {{", m.name()).ok()?;
    let inner = "  ".repeat(depth + 1);
    let mut oneofs_done = vec![false; m.oneof_decl.len()];
    for f in &m.field {
        match f.oneof_index {
            Some(i) if f.proto3_optional != Some(true) => {
                let i = usize::try_from(i).ok()?;
                if *oneofs_done.get(i)? {
                    continue;
                }
                oneofs_done[i] = true;
                writeln!(out, "{inner}oneof {} {{", m.oneof_decl[i].name()).ok()?;
                for g in m.field.iter().filter(|g| g.oneof_index == Some(i as i32)) {
                    writeln!(out, "{inner}  {}", field(m, g, proto3, true)?).ok()?;
                }
                writeln!(out, "{inner}}}").ok()?;
            }
            _ => writeln!(out, "{inner}{}", field(m, f, proto3, false)?).ok()?,
        }
    }
    if !m.reserved_range.is_empty() {
        let ranges: Vec<String> = m
            .reserved_range
            .iter()
            .map(|r| match (r.start(), r.end().saturating_sub(1)) {
                (a, b) if a == b => a.to_string(),
                (a, 536_870_911) => format!("{a} to max"),
                (a, b) => format!("{a} to {b}"),
            })
            .collect();
        writeln!(out, "{inner}reserved {};", ranges.join(", ")).ok()?;
    }
    if !m.reserved_name.is_empty() {
        let names: Vec<String> = m.reserved_name.iter().map(|n| quote(n)).collect();
        writeln!(out, "{inner}reserved {};", names.join(", ")).ok()?;
    }
    for n in m.nested_type.iter().filter(|n| !is_map_entry(n)) {
        message(out, n, proto3, depth + 1)?;
    }
    for e in &m.enum_type {
        enumeration(out, e, depth + 1)?;
    }
    writeln!(out, "{pad}}}").ok()
}

fn scalar(t: Type) -> Option<&'static str> {
    Some(match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

/// A field's type as written: a scalar keyword or the fully qualified type name.
fn type_name(f: &FieldDescriptorProto) -> Option<String> {
    match f.r#type() {
        Type::Message | Type::Enum => f.type_name.clone(),
        Type::Group => None,
        t => scalar(t).map(str::to_string),
    }
}

fn field(
    owner: &DescriptorProto,
    f: &FieldDescriptorProto,
    proto3: bool,
    in_oneof: bool,
) -> Option<String> {
    if f.options.is_some() || f.extendee.is_some() {
        return None;
    }
    // A map field is a repeated field of a nested map-entry message.
    if f.label() == Label::Repeated && f.r#type() == Type::Message {
        let entry_name = f.type_name().rsplit('.').next()?;
        if let Some(entry) = owner
            .nested_type
            .iter()
            .find(|n| n.name() == entry_name && is_map_entry(n))
        {
            let k = entry.field.iter().find(|x| x.number() == 1)?;
            let v = entry.field.iter().find(|x| x.number() == 2)?;
            return Some(format!(
                "map<{}, {}> {} = {};",
                type_name(k)?,
                type_name(v)?,
                f.name(),
                f.number()
            ));
        }
    }
    let label = match (f.label(), proto3, in_oneof) {
        (_, _, true) => "",
        (Label::Repeated, _, _) => "repeated ",
        (Label::Required, _, _) => "required ",
        (Label::Optional, true, _) if f.proto3_optional == Some(true) => "optional ",
        (Label::Optional, true, _) => "",
        (Label::Optional, false, _) => "optional ",
    };
    let default = match &f.default_value {
        None => String::new(),
        Some(d) if matches!(f.r#type(), Type::String) => format!(" [default = {}]", quote(d)),
        // Bytes defaults are stored C-escaped already.
        Some(d) if matches!(f.r#type(), Type::Bytes) => format!(" [default = \"{d}\"]"),
        Some(d) => format!(" [default = {d}]"),
    };
    Some(format!(
        "{label}{} {} = {}{default};",
        type_name(f)?,
        f.name(),
        f.number()
    ))
}

fn enumeration(out: &mut String, e: &EnumDescriptorProto, depth: usize) -> Option<()> {
    if e.options.is_some() || e.value.iter().any(|v| v.options.is_some()) {
        return None;
    }
    let pad = "  ".repeat(depth);
    writeln!(out, "{pad}enum {} {{", e.name()).ok()?;
    for v in &e.value {
        writeln!(out, "{pad}  {} = {};", v.name(), v.number()).ok()?;
    }
    if !e.reserved_range.is_empty() {
        let ranges: Vec<String> = e
            .reserved_range
            .iter()
            .map(|r| match (r.start(), r.end()) {
                (a, b) if a == b => a.to_string(),
                (a, b) => format!("{a} to {b}"),
            })
            .collect();
        writeln!(out, "{pad}  reserved {};", ranges.join(", ")).ok()?;
    }
    if !e.reserved_name.is_empty() {
        let names: Vec<String> = e.reserved_name.iter().map(|n| quote(n)).collect();
        writeln!(out, "{pad}  reserved {};", names.join(", ")).ok()?;
    }
    writeln!(out, "{pad}}}").ok()
}
