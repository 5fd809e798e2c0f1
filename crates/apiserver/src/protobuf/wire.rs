//! Walks one protobuf message guided by the schema and renders it as Kubernetes JSON.
//! The few apimachinery types whose JSON form is not their message shape (Quantity,
//! IntOrString, Time, raw JSON holders, named string lists) are rendered here as their
//! Go `MarshalJSON` would.

use base64::Engine;
use bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use serde_json::{Map, Number, Value};

use super::schema::{Cardinality, Field, Scalar, Schema, ValueType};
use super::time;
use super::ProtobufError;

/// Nested messages deeper than this are refused: the recursive types (JSONSchemaProps)
/// would otherwise let a small body exhaust the stack.
const MAX_DEPTH: usize = 100;

const META: &str = "apimachinery.pkg.apis.meta.v1";
const APIEXT: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1";

/// Go structs embedded with `json:",inline"`: protobuf nests them as a field, JSON
/// flattens their fields into the parent.
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("api.core.v1.VolumeMountStatus", "volumeStatus"),
    ("api.networking.v1.IngressRule", "ingressRuleValue"),
    (
        "api.admissionregistration.v1.NamedRuleWithOperations",
        "ruleWithOperations",
    ),
    ("api.admissionregistration.v1.RuleWithOperations", "rule"),
];

/// Go `*string` fields, the only strings for which "" differs from unset.
const POINTER_STRINGS: &[&str] = &["storageClassName", "volumeAttributesClassName"];

/// Go's encoder writes every non-pointer field, so a body carries `"namespace": ""`,
/// `"restartPolicy": ""` and the like where JSON clients leave the field out; Kubernetes
/// reads "" as unset, but typed Rust defaulting sees `Some("")`. Empty singular strings
/// are therefore dropped (map values and list items keep theirs).
fn is_unset_string(field: &Field, value: &Value) -> bool {
    field.value == ValueType::Scalar(Scalar::String)
        && value.as_str() == Some("")
        && !POINTER_STRINGS.contains(&field.json_name)
}

fn is_inline(message: &str, field: &Field) -> bool {
    field.json_name == "localObjectReference" || INLINE.contains(&(message, field.json_name))
}

/// One field value as it came off the wire, before the schema gives it a meaning.
pub(super) enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// Splits `buf` into (field number, value) pairs.
pub(super) fn fields(
    mut buf: &[u8],
) -> impl Iterator<Item = Result<(u32, Raw<'_>), ProtobufError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        Some(next_field(&mut buf))
    })
}

fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u32, Raw<'a>), ProtobufError> {
    let (number, wire_type) = decode_key(buf)?;
    let raw = match wire_type {
        WireType::Varint => Raw::Varint(decode_varint(buf)?),
        WireType::SixtyFourBit => {
            if buf.len() < 8 {
                return Err(ProtobufError::Truncated);
            }
            Raw::Fixed64(buf.get_u64_le())
        }
        WireType::ThirtyTwoBit => {
            if buf.len() < 4 {
                return Err(ProtobufError::Truncated);
            }
            Raw::Fixed32(buf.get_u32_le())
        }
        WireType::LengthDelimited => {
            let len = usize::try_from(decode_varint(buf)?).map_err(|_| ProtobufError::Truncated)?;
            if buf.len() < len {
                return Err(ProtobufError::Truncated);
            }
            let (value, rest) = buf.split_at(len);
            *buf = rest;
            Raw::Bytes(value)
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(ProtobufError::Groups { field: number })
        }
    };
    Ok((number, raw))
}

/// Decodes `bytes` as the message `name` into a JSON value.
pub fn decode_message(
    schema: &Schema,
    name: &'static str,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    if let Some(value) = decode_special(schema, name, bytes, depth)? {
        return Ok(value);
    }
    let message = schema
        .message(name)
        .ok_or(ProtobufError::UnknownMessage(name))?;
    let mut out = Map::new();
    for item in fields(bytes) {
        let (number, raw) = item?;
        let Some(field) = message.field(number) else {
            // Fields newer than our table are skipped, as every protobuf reader does.
            tracing::debug!(
                message = name,
                field = number,
                "unknown protobuf field skipped"
            );
            continue;
        };
        match field.cardinality {
            Cardinality::Single => {
                let value = decode_value(schema, name, field, field.value, raw, depth)?;
                match value {
                    value if is_unset_string(field, &value) => {}
                    Value::Object(inner) if is_inline(name, field) => out.extend(inner),
                    value => {
                        out.insert(field.json_name.to_string(), value);
                    }
                }
            }
            Cardinality::Repeated => {
                push_repeated(schema, name, field, raw, depth, array_slot(&mut out, field))?;
            }
            Cardinality::Map(key_type) => {
                let Raw::Bytes(entry) = raw else {
                    return Err(wire_mismatch(name, field));
                };
                let (key, value) = decode_map_entry(schema, name, field, key_type, entry, depth)?;
                object_slot(&mut out, field).insert(key, value);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The array a repeated field collects into (a stray non-array is replaced).
fn array_slot<'m>(out: &'m mut Map<String, Value>, field: &Field) -> &'m mut Vec<Value> {
    let slot = out
        .entry(field.json_name)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .expect("the slot was just made an array")
}

/// The object a map field collects into (a stray non-object is replaced).
fn object_slot<'m>(out: &'m mut Map<String, Value>, field: &Field) -> &'m mut Map<String, Value> {
    let slot = out
        .entry(field.json_name)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .expect("the slot was just made an object")
}

fn push_repeated(
    schema: &Schema,
    message: &'static str,
    field: &Field,
    raw: Raw<'_>,
    depth: usize,
    items: &mut Vec<Value>,
) -> Result<(), ProtobufError> {
    // Numeric repeated fields may arrive packed into one length-delimited run.
    if let (ValueType::Scalar(scalar), Raw::Bytes(mut packed)) = (field.value, &raw) {
        if !matches!(scalar, Scalar::String | Scalar::Bytes) {
            while !packed.is_empty() {
                let element = match scalar {
                    Scalar::Double | Scalar::Fixed64 => {
                        if packed.len() < 8 {
                            return Err(ProtobufError::Truncated);
                        }
                        Raw::Fixed64(packed.get_u64_le())
                    }
                    Scalar::Float | Scalar::Fixed32 => {
                        if packed.len() < 4 {
                            return Err(ProtobufError::Truncated);
                        }
                        Raw::Fixed32(packed.get_u32_le())
                    }
                    _ => Raw::Varint(decode_varint(&mut packed)?),
                };
                items.push(decode_value(
                    schema,
                    message,
                    field,
                    field.value,
                    element,
                    depth,
                )?);
            }
            return Ok(());
        }
    }
    items.push(decode_value(
        schema,
        message,
        field,
        field.value,
        raw,
        depth,
    )?);
    Ok(())
}

fn decode_map_entry(
    schema: &Schema,
    message: &'static str,
    field: &Field,
    key_type: Scalar,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let mut key = None;
    let mut value = None;
    for item in fields(entry) {
        match item? {
            (1, raw) => {
                key = Some(decode_value(
                    schema,
                    message,
                    field,
                    ValueType::Scalar(key_type),
                    raw,
                    depth,
                )?)
            }
            (2, raw) => {
                value = Some(decode_value(
                    schema,
                    message,
                    field,
                    field.value,
                    raw,
                    depth,
                )?)
            }
            _ => {}
        }
    }
    let key = match key {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    // An absent value is the type's zero value, as in any protobuf map.
    let value = match value {
        Some(v) => v,
        None => zero_value(schema, field.value, depth)?,
    };
    Ok((key, value))
}

fn zero_value(schema: &Schema, value: ValueType, depth: usize) -> Result<Value, ProtobufError> {
    Ok(match value {
        ValueType::Scalar(Scalar::String | Scalar::Bytes) => Value::String(String::new()),
        ValueType::Scalar(Scalar::Bool) => Value::Bool(false),
        ValueType::Scalar(_) => Value::from(0),
        ValueType::Message(m) => decode_message(schema, m, &[], depth + 1)?,
    })
}

fn wire_mismatch(message: &'static str, field: &Field) -> ProtobufError {
    ProtobufError::WireType {
        message,
        field: field.json_name,
    }
}

fn decode_value(
    schema: &Schema,
    message: &'static str,
    field: &Field,
    value: ValueType,
    raw: Raw<'_>,
    depth: usize,
) -> Result<Value, ProtobufError> {
    let mismatch = || wire_mismatch(message, field);
    let scalar = match value {
        ValueType::Message(m) => {
            let Raw::Bytes(bytes) = raw else {
                return Err(mismatch());
            };
            return decode_message(schema, m, bytes, depth + 1);
        }
        ValueType::Scalar(s) => s,
    };
    Ok(match (scalar, raw) {
        (Scalar::String, Raw::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| ProtobufError::Utf8 {
                    message,
                    field: field.json_name,
                })?
                .to_string(),
        ),
        (Scalar::Bytes, Raw::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
        // Truncation to the declared width is the protobuf rule for 32-bit varints.
        (Scalar::Int32, Raw::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, Raw::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, Raw::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, Raw::Varint(v)) => Value::from(v),
        (Scalar::Sint32, Raw::Varint(v)) => Value::from(zigzag(v) as i32),
        (Scalar::Sint64, Raw::Varint(v)) => Value::from(zigzag(v)),
        (Scalar::Fixed64, Raw::Fixed64(v)) => Value::from(v),
        (Scalar::Fixed32, Raw::Fixed32(v)) => Value::from(v),
        (Scalar::Double, Raw::Fixed64(v)) => float(f64::from_bits(v), message, field)?,
        (Scalar::Float, Raw::Fixed32(v)) => float(f64::from(f32::from_bits(v)), message, field)?,
        _ => return Err(mismatch()),
    })
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn float(v: f64, message: &'static str, field: &Field) -> Result<Value, ProtobufError> {
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or(ProtobufError::NonFinite {
            message,
            field: field.json_name,
        })
}

/// The scalar fields of a small message, by number, for the special renderings.
fn scalar_fields(bytes: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ProtobufError> {
    fields(bytes).collect()
}

fn last_varint(fields: &[(u32, Raw<'_>)], number: u32) -> Option<u64> {
    fields.iter().rev().find_map(|(n, raw)| match raw {
        Raw::Varint(v) if *n == number => Some(*v),
        _ => None,
    })
}

fn last_bytes<'a>(fields: &[(u32, Raw<'a>)], number: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(n, raw)| match raw {
        Raw::Bytes(b) if *n == number => Some(*b),
        _ => None,
    })
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, ProtobufError> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| ProtobufError::Utf8 {
            message: what,
            field: "",
        })
}

/// Raw JSON carried in a bytes field (RawExtension, FieldsV1, apiextensions JSON); a
/// nested protobuf object (`k8s\0` prefix) is decoded in turn.
fn raw_json(
    bytes: Option<&[u8]>,
    what: &'static str,
    depth: usize,
) -> Result<Value, ProtobufError> {
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return Ok(Value::Null);
    };
    if bytes.starts_with(super::MAGIC) {
        return super::decode_envelope(bytes, depth + 1);
    }
    serde_json::from_slice(bytes).map_err(|e| ProtobufError::RawJson {
        message: what,
        reason: e.to_string(),
    })
}

/// The apimachinery types whose JSON is not their message shape.
fn decode_special(
    schema: &Schema,
    name: &'static str,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let Some((package, short)) = name.rsplit_once('.') else {
        return Ok(None);
    };
    let value = match (package, short) {
        ("apimachinery.pkg.api.resource", "Quantity") => {
            let f = scalar_fields(bytes)?;
            Value::String(utf8(last_bytes(&f, 1).unwrap_or_default(), name)?)
        }
        ("apimachinery.pkg.util.intstr", "IntOrString") => {
            let f = scalar_fields(bytes)?;
            match last_varint(&f, 1).unwrap_or(0) {
                0 => Value::from(last_varint(&f, 2).unwrap_or(0) as i32),
                1 => Value::String(utf8(last_bytes(&f, 3).unwrap_or_default(), name)?),
                other => return Err(ProtobufError::IntOrStringType(other)),
            }
        }
        (META, "Time") | (META, "MicroTime") => {
            let f = scalar_fields(bytes)?;
            let seconds = last_varint(&f, 1).unwrap_or(0) as i64;
            let nanos = last_varint(&f, 2).unwrap_or(0) as i32;
            time::render(seconds, nanos, short == "MicroTime")?
        }
        (META, "Duration") => {
            let f = scalar_fields(bytes)?;
            Value::String(time::go_duration(last_varint(&f, 1).unwrap_or(0) as i64))
        }
        ("apimachinery.pkg.runtime", "RawExtension") | (APIEXT, "JSON") => {
            raw_json(last_bytes(&scalar_fields(bytes)?, 1), name, depth)?
        }
        (META, "FieldsV1") => raw_json(last_bytes(&scalar_fields(bytes)?, 1), name, depth)?,
        // Named string slices in Go: a bare JSON array.
        (_, "ExtraValue") | (META, "Verbs") => {
            let mut items = Vec::new();
            for item in fields(bytes) {
                if let (1, Raw::Bytes(b)) = item? {
                    items.push(Value::String(utf8(b, name)?));
                }
            }
            Value::Array(items)
        }
        // JSON-Schema unions: the schema when there is one, else the other member.
        (
            APIEXT,
            "JSONSchemaPropsOrArray" | "JSONSchemaPropsOrStringArray" | "JSONSchemaPropsOrBool",
        ) => {
            let decoded = decode_union_members(schema, name, bytes, depth)?;
            let Value::Object(mut members) = decoded else {
                return Ok(None);
            };
            let other = match short {
                "JSONSchemaPropsOrArray" => "jSONSchemas",
                "JSONSchemaPropsOrStringArray" => "property",
                _ => "allows",
            };
            match (members.remove("schema"), members.remove(other)) {
                (Some(schema), _) => schema,
                (None, Some(other)) => other,
                (None, None) if short == "JSONSchemaPropsOrBool" => Value::Bool(false),
                (None, None) => Value::Array(Vec::new()),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Decodes a union message with the generic walker (it bypasses `decode_special`).
fn decode_union_members(
    schema: &Schema,
    name: &'static str,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    let message = schema
        .message(name)
        .ok_or(ProtobufError::UnknownMessage(name))?;
    let mut out = Map::new();
    for item in fields(bytes) {
        let (number, raw) = item?;
        let Some(field) = message.field(number) else {
            continue;
        };
        if field.cardinality == Cardinality::Repeated {
            push_repeated(schema, name, field, raw, depth, array_slot(&mut out, field))?;
        } else {
            let value = decode_value(schema, name, field, field.value, raw, depth)?;
            out.insert(field.json_name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}
