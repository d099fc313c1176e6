//! The tracer's sequence, map, struct and enum access: each element, entry, field or variant
//! traced at its own path.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Node, VariantKind};
use super::tracer::{TraceError, Tracer};

/// The elements of a sequence (one element, or none when pruned) or of a tuple (all).
pub(super) struct Items<'a, 'p> {
    pub(super) tracer: &'a mut Tracer<'p>,
    pub(super) next: usize,
    pub(super) len: usize,
    pub(super) tuple: bool,
}

impl<'de> de::SeqAccess<'de> for Items<'_, '_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        if self.next >= self.len {
            return Ok(None);
        }
        let segment = if self.tuple {
            format!("[{}]", self.next)
        } else {
            "[]".to_owned()
        };
        self.next += 1;
        let len = self.tracer.enter(&segment)?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result.map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.next)
    }
}

/// One entry of a map (none when pruned): its key at `{key}`, its value at `{}`.
pub(super) struct Entry<'a, 'p> {
    pub(super) tracer: &'a mut Tracer<'p>,
    pub(super) done: bool,
}

impl<'de> de::MapAccess<'de> for Entry<'_, '_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        if self.done {
            return Ok(None);
        }
        let len = self.tracer.enter("{key}")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        self.done = true;
        let len = self.tracer.enter("{}")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result
    }
}

/// Every field of a struct (or of a struct variant), in order, each at `.<field>`.
pub(super) struct Fields<'a, 'p> {
    pub(super) tracer: &'a mut Tracer<'p>,
    pub(super) fields: &'static [&'static str],
    pub(super) next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.get(self.next) {
            Some(field) => {
                let key: de::value::StrDeserializer<'static, TraceError> =
                    field.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.fields.get(self.next).copied().unwrap_or_default();
        self.next += 1;
        let len = self.tracer.enter(&format!(".{field}"))?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result
    }
}

/// The variant the plan chose for an enum.
pub(super) struct Choice<'a, 'p> {
    pub(super) tracer: &'a mut Tracer<'p>,
    pub(super) variant: &'static str,
}

impl<'de, 'a, 'p> de::EnumAccess<'de> for Choice<'a, 'p> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), TraceError> {
        let name: de::value::StrDeserializer<'static, TraceError> =
            self.variant.into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for Choice<'_, '_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        let len = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Unit));
        self.tracer.leave(len);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        let len = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Newtype));
        let inner = self.tracer.enter("=")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(inner);
        self.tracer.leave(len);
        result
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let at = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Tuple(len)));
        let result = visitor.visit_seq(Items {
            tracer: &mut *self.tracer,
            next: 0,
            len,
            tuple: true,
        });
        self.tracer.leave(at);
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let at = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Struct(fields)));
        let result = visitor.visit_map(Fields {
            tracer: &mut *self.tracer,
            fields,
            next: 0,
        });
        self.tracer.leave(at);
        result
    }
}
