// Status and Result<T>: errors as values across module boundaries.
//
// A Status is either OK or carries a code and a message that names the file,
// tensor or field at fault. Result<T> holds a T or a non-OK Status.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace tierlm {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // caller passed something unusable (flag, prompt, shape)
  kNotFound,           // a named key, tensor or file is missing
  kCorruption,         // a file's bytes contradict its own structure
  kUnsupported,        // well-formed but not handled (type, version, architecture)
  kIoError,            // the OS failed a read or write
  kOutOfRange,         // a size or index past a limit (context, budget)
  kResourceExhausted,  // memory or disk ran out
  kInternal,           // a broken invariant inside tierlm
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corruption: model.gguf: tensor 'x' data ends past end of file"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "Result constructed from OK status without a value");
    if (status_.ok()) status_ = Status::Internal("Result built from OK status without value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace tierlm

#define TIERLM_CONCAT_INNER(a, b) a##b
#define TIERLM_CONCAT(a, b) TIERLM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define TIERLM_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::tierlm::Status _st = (expr);            \
    if (!_st.ok()) return _st;                \
  } while (0)

// `lhs = value of expr`, or returns its Status from the enclosing function.
#define TIERLM_ASSIGN_OR_RETURN(lhs, expr) \
  TIERLM_ASSIGN_OR_RETURN_IMPL(TIERLM_CONCAT(_res_, __LINE__), lhs, expr)
#define TIERLM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
