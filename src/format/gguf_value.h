// A GGUF metadata value: a scalar, a string, or an array of values (arrays may nest).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tierlm::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* ValueTypeName(ValueType t);
// Bytes of one element of a fixed-size scalar type; 0 for string and array.
size_t ScalarSize(ValueType t);

struct Value {
  ValueType type = ValueType::kUint32;
  // Scalars: integers in u64 (unsigned) or i64 (signed), floats in f64, bools in u64.
  uint64_t u64 = 0;
  int64_t i64 = 0;
  double f64 = 0;
  std::string str;              // kString
  ValueType elem_type = ValueType::kUint8;  // kArray: the type of its items
  std::vector<Value> items;     // kArray

  bool is_integer() const;
  bool is_float() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }
  // Human-readable rendering; long arrays are abbreviated to `max_items`.
  std::string ToString(size_t max_items = 8) const;

  static Value U32(uint32_t v) { Value x; x.type = ValueType::kUint32; x.u64 = v; return x; }
  static Value I32(int32_t v) { Value x; x.type = ValueType::kInt32; x.i64 = v; return x; }
  static Value U64(uint64_t v) { Value x; x.type = ValueType::kUint64; x.u64 = v; return x; }
  static Value F32(float v) { Value x; x.type = ValueType::kFloat32; x.f64 = v; return x; }
  static Value Bool(bool v) { Value x; x.type = ValueType::kBool; x.u64 = v; return x; }
  static Value Str(std::string v) { Value x; x.type = ValueType::kString; x.str = std::move(v); return x; }
  static Value Array(ValueType elem, std::vector<Value> items) {
    Value x; x.type = ValueType::kArray; x.elem_type = elem; x.items = std::move(items); return x;
  }
};

}  // namespace tierlm::gguf
