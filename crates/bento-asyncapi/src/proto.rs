//! The `.proto` text of a Protobuf event, rebuilt from the `FileDescriptorSet` its codec
//! registers (`SchemaKind::ProtobufNative`): the root message and what it uses from its own
//! file, which is what AsyncAPI's Protobuf schema format (one file, no imports but the
//! well-known `google/protobuf/*` ones) can hold.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;

use base64::Engine as _;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};
use serde_json::Value;

/// A rendered schema: the `.proto` text and its syntax version (2 or 3).
pub(crate) struct Proto {
    pub(crate) text: String,
    pub(crate) version: u8,
}

/// Renders the root message of Pulsar's `PROTOBUF_NATIVE` schema document `definition`
/// (`fileDescriptorSet` in base64, `rootMessageTypeName`, `rootFileDescriptorName`).
pub(crate) fn render(definition: &str) -> Result<Proto, String> {
    let document: Value = serde_json::from_str(definition)
        .map_err(|e| format!("the Protobuf schema document is not JSON: {e}"))?;
    let field = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the Protobuf schema document has no `{name}`"))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(field("fileDescriptorSet")?)
        .map_err(|e| format!("the FileDescriptorSet is not base64: {e}"))?;
    let set = FileDescriptorSet::decode(bytes.as_slice())
        .map_err(|e| format!("the FileDescriptorSet cannot be decoded: {e}"))?;
    let root = field("rootMessageTypeName")?.trim_start_matches('.');
    let file_name = field("rootFileDescriptorName")?;
    let file = set
        .file
        .iter()
        .find(|file| file.name() == file_name)
        .or_else(|| {
            set.file
                .iter()
                .find(|file| find_message(file, root).is_some())
        })
        .ok_or_else(|| format!("the FileDescriptorSet has no file `{file_name}`"))?;
    let package = file.package();
    let (root_message, _) =
        find_message(file, root).ok_or_else(|| format!("`{file_name}` has no message `{root}`"))?;

    let used = used_types(&set, file, root_message, root)?;
    let version = if file.syntax() == "proto3" { 3 } else { 2 };
    let mut text = String::new();
    let _ = writeln!(text, "syntax = \"proto{version}\";");
    if !package.is_empty() {
        let _ = writeln!(text, "package {package};");
    }
    for import in &used.imports {
        let _ = writeln!(text, "import \"{import}\";");
    }
    for name in &used.messages {
        if let Some(message) = file.message_type.iter().find(|m| m.name() == name) {
            text.push('\n');
            write_message(&mut text, message, version, package, 0);
        }
    }
    for name in &used.enums {
        if let Some(enumeration) = file.enum_type.iter().find(|e| e.name() == name) {
            text.push('\n');
            write_enum(&mut text, enumeration, 0);
        }
    }
    Ok(Proto { text, version })
}

/// The top-level messages and enums of a file that its root message uses, transitively, and
/// the well-known files it imports.
struct Used {
    /// The root first.
    messages: Vec<String>,
    enums: BTreeSet<String>,
    imports: BTreeSet<String>,
}

/// What `root_message` (named `root`) of `file` uses; an error for a type from another file
/// than google/protobuf/*, which AsyncAPI's one-file Protobuf format cannot hold.
fn used_types(
    set: &FileDescriptorSet,
    file: &FileDescriptorProto,
    root_message: &DescriptorProto,
    root: &str,
) -> Result<Used, String> {
    let package = file.package();
    let mut wanted: Vec<String> = vec![root_message.name().to_owned()];
    let mut queue: VecDeque<&DescriptorProto> = VecDeque::from([root_message]);
    let mut enums: BTreeSet<String> = BTreeSet::new();
    let mut imports: BTreeSet<String> = BTreeSet::new();
    while let Some(message) = queue.pop_front() {
        for field in all_fields(message) {
            let Some(type_name) = field.type_name.as_deref() else {
                continue;
            };
            let type_name = type_name.trim_start_matches('.');
            let local = type_name
                .strip_prefix(package)
                .map(|rest| rest.trim_start_matches('.'))
                .filter(|_| !package.is_empty())
                .unwrap_or(type_name);
            let top = local.split('.').next().unwrap_or(local);
            if let Some(found) = file.message_type.iter().find(|m| m.name() == top) {
                if !wanted.iter().any(|w| w == top) {
                    wanted.push(top.to_owned());
                    queue.push_back(found);
                }
            } else if file.enum_type.iter().any(|e| e.name() == top) {
                enums.insert(top.to_owned());
            } else if !nested_in(root_message, local) {
                let from = set
                    .file
                    .iter()
                    .find(|other| {
                        !other.package().is_empty()
                            && type_name.starts_with(&format!("{}.", other.package()))
                    })
                    .map(|other| other.name().to_owned())
                    .unwrap_or_default();
                if from.starts_with("google/protobuf/") {
                    imports.insert(from);
                } else {
                    return Err(format!(
                        "`{root}` uses `{type_name}` from {}: AsyncAPI's Protobuf format holds one \
                         file, importing only google/protobuf/*",
                        if from.is_empty() {
                            "another file"
                        } else {
                            &from
                        }
                    ));
                }
            }
        }
    }
    Ok(Used {
        messages: wanted,
        enums,
        imports,
    })
}

/// The top-level message `root` (full name, package included) names, with its path.
fn find_message<'f>(
    file: &'f FileDescriptorProto,
    root: &str,
) -> Option<(&'f DescriptorProto, String)> {
    let local = if file.package().is_empty() {
        root
    } else {
        root.strip_prefix(file.package())?.strip_prefix('.')?
    };
    // Only top-level roots: a nested root would need its parent, which is rendered anyway.
    let top = local.split('.').next()?;
    let message = file.message_type.iter().find(|m| m.name() == top)?;
    Some((message, local.to_owned()))
}

fn nested_in(message: &DescriptorProto, local: &str) -> bool {
    local
        .strip_prefix(message.name())
        .is_some_and(|rest| rest.starts_with('.'))
}

fn all_fields(message: &DescriptorProto) -> Vec<&FieldDescriptorProto> {
    let mut fields: Vec<&FieldDescriptorProto> = message.field.iter().collect();
    for nested in &message.nested_type {
        fields.extend(all_fields(nested));
    }
    fields
}

fn indent(text: &mut String, depth: usize) {
    text.push_str(&"  ".repeat(depth));
}

fn write_message(
    text: &mut String,
    message: &DescriptorProto,
    version: u8,
    package: &str,
    depth: usize,
) {
    indent(text, depth);
    let _ = writeln!(text, "message {} {{", message.name());
    for nested in message
        .nested_type
        .iter()
        .filter(|nested| !is_map_entry(nested))
    {
        write_message(text, nested, version, package, depth + 1);
    }
    for enumeration in &message.enum_type {
        write_enum(text, enumeration, depth + 1);
    }
    let mut oneofs_written = BTreeSet::new();
    for field in &message.field {
        match field.oneof_index {
            Some(index) if !field.proto3_optional() => {
                if oneofs_written.insert(index) {
                    let name = message
                        .oneof_decl
                        .get(usize::try_from(index).unwrap_or(usize::MAX))
                        .map(|oneof| oneof.name())
                        .unwrap_or("choice");
                    indent(text, depth + 1);
                    let _ = writeln!(text, "oneof {name} {{");
                    for member in message
                        .field
                        .iter()
                        .filter(|f| f.oneof_index == Some(index) && !f.proto3_optional())
                    {
                        indent(text, depth + 2);
                        let _ = writeln!(
                            text,
                            "{} {} = {};",
                            type_of(member, message, package),
                            member.name(),
                            member.number()
                        );
                    }
                    indent(text, depth + 1);
                    text.push_str("}\n");
                }
            }
            _ => {
                indent(text, depth + 1);
                let _ = writeln!(
                    text,
                    "{}{} {} = {};",
                    label(field, message, version),
                    type_of(field, message, package),
                    field.name(),
                    field.number()
                );
            }
        }
    }
    indent(text, depth);
    text.push_str("}\n");
}

fn write_enum(text: &mut String, enumeration: &EnumDescriptorProto, depth: usize) {
    indent(text, depth);
    let _ = writeln!(text, "enum {} {{", enumeration.name());
    for value in &enumeration.value {
        indent(text, depth + 1);
        let _ = writeln!(text, "{} = {};", value.name(), value.number());
    }
    indent(text, depth);
    text.push_str("}\n");
}

fn is_map_entry(message: &DescriptorProto) -> bool {
    message
        .options
        .as_ref()
        .is_some_and(|options| options.map_entry())
}

/// The map entry a `repeated` field of `message` is, if it is a map.
fn map_entry<'m>(
    field: &FieldDescriptorProto,
    message: &'m DescriptorProto,
) -> Option<&'m DescriptorProto> {
    if field.label() != Label::Repeated || field.r#type() != Type::Message {
        return None;
    }
    let entry_name = field.type_name().rsplit('.').next()?;
    message
        .nested_type
        .iter()
        .find(|nested| nested.name() == entry_name && is_map_entry(nested))
}

fn label(field: &FieldDescriptorProto, message: &DescriptorProto, version: u8) -> &'static str {
    if map_entry(field, message).is_some() {
        return "";
    }
    match field.label() {
        Label::Repeated => "repeated ",
        Label::Required => "required ",
        Label::Optional if version == 2 || field.proto3_optional() => "optional ",
        Label::Optional => "",
    }
}

fn type_of(field: &FieldDescriptorProto, message: &DescriptorProto, package: &str) -> String {
    if let Some(entry) = map_entry(field, message) {
        let key = entry.field.iter().find(|f| f.number() == 1);
        let value = entry.field.iter().find(|f| f.number() == 2);
        if let (Some(key), Some(value)) = (key, value) {
            return format!(
                "map<{}, {}>",
                type_of(key, entry, package),
                type_of(value, entry, package)
            );
        }
    }
    match field.r#type() {
        Type::Double => "double".into(),
        Type::Float => "float".into(),
        Type::Int64 => "int64".into(),
        Type::Uint64 => "uint64".into(),
        Type::Int32 => "int32".into(),
        Type::Fixed64 => "fixed64".into(),
        Type::Fixed32 => "fixed32".into(),
        Type::Bool => "bool".into(),
        Type::String => "string".into(),
        Type::Bytes => "bytes".into(),
        Type::Uint32 => "uint32".into(),
        Type::Sfixed32 => "sfixed32".into(),
        Type::Sfixed64 => "sfixed64".into(),
        Type::Sint32 => "sint32".into(),
        Type::Sint64 => "sint64".into(),
        Type::Group | Type::Message | Type::Enum => {
            // Relative to the package, as written in a .proto (the AsyncAPI Protobuf parser
            // finds the root message by the names other messages use).
            let name = field.type_name().trim_start_matches('.');
            match name
                .strip_prefix(package)
                .and_then(|rest| rest.strip_prefix('.'))
            {
                Some(local) if !package.is_empty() => local.to_owned(),
                _ => name.to_owned(),
            }
        }
    }
}
