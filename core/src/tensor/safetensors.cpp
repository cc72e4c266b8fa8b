// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/tensor/safetensors.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

namespace synergos::core::tensor {

namespace {

static_assert(std::endian::native == std::endian::little,
              "the codec copies tensor bytes as they are: a little-endian host is required");

using sdk::Error;
using sdk::ErrorCode;
using sdk::Result;
using sdk::Status;
using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::size_t kLengthBytes = 8;

Status invalid(std::string message) {
    return Status(ErrorCode::InvalidArgument, "safetensors: " + std::move(message));
}

std::string quote_name(std::string_view name) {
    return "'" + std::string(name) + "'";
}

std::uint64_t read_u64_le(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);  // little-endian host (static_assert above)
    return v;
}

/// Element count of `shape`, or false when a dimension is negative or a partial product
/// leaves int64 (Tensor::numel multiplies in int64 from the left: [2^62, 3, 0] counts 0 here
/// but overflowed there, undefined behaviour).
bool checked_numel(const std::vector<std::int64_t>& shape, std::uint64_t& numel) noexcept {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
        if (d < 0) {
            return false;
        }
        if (__builtin_mul_overflow(n, d, &n)) {
            return false;
        }
    }
    numel = static_cast<std::uint64_t>(n);
    return true;
}

bool checked_bytes(const std::vector<std::int64_t>& shape, sdk::DType dtype,
                   std::uint64_t& bytes) noexcept {
    std::uint64_t numel = 0;
    if (!checked_numel(shape, numel)) {
        return false;
    }
    return !__builtin_mul_overflow(numel, static_cast<std::uint64_t>(sdk::dtype_size(dtype)),
                                   &bytes);
}

/// Reads a non-negative JSON integer (unsigned or signed >= 0); rejects floats and negatives.
bool read_count(const Json& value, std::uint64_t& out) {
    if (value.is_number_unsigned()) {
        out = value.get<std::uint64_t>();
        return true;
    }
    if (value.is_number_integer()) {
        const auto v = value.get<std::int64_t>();
        if (v >= 0) {
            out = static_cast<std::uint64_t>(v);
            return true;
        }
    }
    return false;
}

/// Parses the header JSON, refusing duplicate keys in any object (nlohmann keeps the last one,
/// which would let two entries hide each other).
Result<Json> parse_header_json(std::string_view text) {
    std::vector<std::unordered_set<std::string>> keys;
    std::string duplicate;
    auto callback = [&](int, Json::parse_event_t event, Json& parsed) {
        switch (event) {
            case Json::parse_event_t::object_start:
                keys.emplace_back();
                break;
            case Json::parse_event_t::object_end:
                if (!keys.empty()) {
                    keys.pop_back();
                }
                break;
            case Json::parse_event_t::key:
                if (!keys.empty() && parsed.is_string() &&
                    !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
                    duplicate = parsed.get<std::string>();
                }
                break;
            default:
                break;
        }
        return true;
    };
    Json header = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
    if (header.is_discarded()) {
        return Error{ErrorCode::InvalidArgument, "safetensors: header is not valid JSON"};
    }
    if (!duplicate.empty()) {
        return Error{ErrorCode::InvalidArgument,
                     "safetensors: header has a duplicate key " + quote_name(duplicate)};
    }
    if (!header.is_object()) {
        return Error{ErrorCode::InvalidArgument, "safetensors: header is not a JSON object"};
    }
    return header;
}

/// Validates a header's JSON against a data section of `data_size` bytes: every entry, and
/// tensors that tile the data exactly. Layouts come back in data order (by offset).
Result<HeaderLayout> parse_header_impl(std::string_view header_text, std::uint64_t data_size) {
    auto parsed = parse_header_json(header_text);
    if (!parsed) {
        return parsed.error();
    }
    const Json& header = *parsed;
    HeaderLayout out;
    std::vector<TensorLayout>& entries = out.tensors;
    entries.reserve(header.size());
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const Json& value = it.value();
        if (name == kMetadataKey) {
            if (!value.is_object()) {
                return Error{ErrorCode::InvalidArgument,
                             "safetensors: __metadata__ is not a JSON object"};
            }
            for (auto m = value.begin(); m != value.end(); ++m) {
                if (!m.value().is_string()) {
                    return Error{ErrorCode::InvalidArgument, "safetensors: __metadata__ value of " +
                                                                 quote_name(m.key()) +
                                                                 " is not a string"};
                }
                out.metadata.emplace(m.key(), m.value().get<std::string>());
            }
            continue;
        }
        const std::string where = "tensor " + quote_name(name);
        if (name.empty()) {
            return Error{ErrorCode::InvalidArgument, "safetensors: a tensor has an empty name"};
        }
        if (!value.is_object()) {
            return Error{ErrorCode::InvalidArgument, "safetensors: " + where + " is not an object"};
        }
        for (auto f = value.begin(); f != value.end(); ++f) {
            if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") {
                return Error{ErrorCode::InvalidArgument,
                             "safetensors: " + where + " has unknown field " + quote_name(f.key())};
            }
        }
        TensorLayout entry;
        entry.name = name;
        const auto dtype_it = value.find("dtype");
        if (dtype_it == value.end() || !dtype_it->is_string()) {
            return Error{ErrorCode::InvalidArgument,
                         "safetensors: " + where + " has no string field 'dtype'"};
        }
        auto dtype = parse_dtype(dtype_it->get_ref<const std::string&>());
        if (!dtype) {
            return Error{ErrorCode::InvalidArgument,
                         "safetensors: " + where + ": " + dtype.error().message};
        }
        entry.dtype = *dtype;
        const auto shape_it = value.find("shape");
        if (shape_it == value.end() || !shape_it->is_array()) {
            return Error{ErrorCode::InvalidArgument,
                         "safetensors: " + where + " has no array field 'shape'"};
        }
        entry.shape.reserve(shape_it->size());
        for (const Json& d : *shape_it) {
            std::uint64_t dim = 0;
            if (!read_count(d, dim) || dim > static_cast<std::uint64_t>(INT64_MAX)) {
                return Error{ErrorCode::InvalidArgument, "safetensors: " + where +
                                                             " has a shape entry that is not a "
                                                             "non-negative integer"};
            }
            entry.shape.push_back(static_cast<std::int64_t>(dim));
        }
        const auto offsets_it = value.find("data_offsets");
        if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
            !read_count((*offsets_it)[0], entry.begin) ||
            !read_count((*offsets_it)[1], entry.end)) {
            return Error{
                ErrorCode::InvalidArgument,
                "safetensors: " + where + " needs 'data_offsets' as two non-negative integers"};
        }
        if (entry.begin > entry.end || entry.end > data_size) {
            return Error{ErrorCode::InvalidArgument,
                         "safetensors: " + where + " has data_offsets [" +
                             std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                             "] outside the " + std::to_string(data_size) + "-byte data"};
        }
        std::uint64_t bytes = 0;
        if (!checked_bytes(entry.shape, entry.dtype, bytes) || bytes != entry.end - entry.begin) {
            return Error{ErrorCode::InvalidArgument, "safetensors: " + where +
                                                         " has shape x dtype size that does not "
                                                         "match its " +
                                                         std::to_string(entry.end - entry.begin) +
                                                         " data bytes"};
        }
        entries.push_back(std::move(entry));
    }

    // The tensors must tile the data exactly: no gap, no overlap, nothing left over.
    std::sort(entries.begin(), entries.end(), [](const TensorLayout& a, const TensorLayout& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t cursor = 0;
    for (const TensorLayout& e : entries) {
        if (e.begin != cursor) {
            return Error{ErrorCode::InvalidArgument,
                         "safetensors: tensor " + quote_name(e.name) +
                             (e.begin < cursor ? " overlaps the previous tensor"
                                               : " leaves a gap before it") +
                             " (begins at " + std::to_string(e.begin) + ", expected " +
                             std::to_string(cursor) + ")"};
        }
        cursor = e.end;
    }
    if (cursor != data_size) {
        return Error{ErrorCode::InvalidArgument,
                     "safetensors: " + std::to_string(data_size - cursor) +
                         " trailing data bytes are not covered by any tensor"};
    }
    return out;
}

/// Checks the 8-byte length prefix against the body size and the limits; the header length.
Result<std::uint64_t> check_prefix(std::uint64_t body_size, const unsigned char* prefix,
                                   const DecodeLimits& limits) {
    if (body_size > limits.max_total_bytes) {
        return Error{ErrorCode::ResourceExhausted,
                     "safetensors: body of " + std::to_string(body_size) +
                         " bytes exceeds the limit of " + std::to_string(limits.max_total_bytes)};
    }
    if (body_size < kLengthBytes) {
        return Error{ErrorCode::InvalidArgument,
                     "safetensors: body of " + std::to_string(body_size) +
                         " bytes is shorter than the 8-byte header length"};
    }
    const std::uint64_t header_len = read_u64_le(prefix);
    if (header_len > limits.max_header_bytes) {
        return Error{ErrorCode::ResourceExhausted,
                     "safetensors: header length " + std::to_string(header_len) +
                         " exceeds the limit of " + std::to_string(limits.max_header_bytes)};
    }
    if (header_len > body_size - kLengthBytes) {
        return Error{ErrorCode::InvalidArgument,
                     "safetensors: header length " + std::to_string(header_len) +
                         " runs past the end of the " + std::to_string(body_size) + "-byte body"};
    }
    return header_len;
}

Result<SafetensorsView> parse_impl(std::span<const unsigned char> body,
                                   const DecodeLimits& limits) {
    // check_prefix reads the 8 prefix bytes only after it has checked that the body has them.
    auto header_len = check_prefix(body.size(), body.data(), limits);
    if (!header_len) {
        return header_len.error();
    }
    if (*header_len < 2 || body[kLengthBytes] != '{') {
        return Error{ErrorCode::InvalidArgument, "safetensors: header does not start with '{'"};
    }
    const std::string_view header_text(reinterpret_cast<const char*>(body.data()) + kLengthBytes,
                                       static_cast<std::size_t>(*header_len));
    const std::span<const unsigned char> data =
        body.subspan(kLengthBytes + static_cast<std::size_t>(*header_len));
    auto layout = parse_header_impl(header_text, data.size());
    if (!layout) {
        return layout.error();
    }
    SafetensorsView out;
    out.metadata = std::move(layout->metadata);
    out.tensors.reserve(layout->tensors.size());
    for (TensorLayout& e : layout->tensors) {
        TensorView v;
        v.name = std::move(e.name);
        v.dtype = e.dtype;
        v.shape = std::move(e.shape);
        v.data = data.subspan(static_cast<std::size_t>(e.begin),
                              static_cast<std::size_t>(e.end - e.begin));
        out.tensors.push_back(std::move(v));
    }
    return out;
}

std::span<const unsigned char> as_bytes(std::string_view body) noexcept {
    return {reinterpret_cast<const unsigned char*>(body.data()), body.size()};
}

/// The header text (padded) and the data size, after validating every tensor.
Status build_header(const sdk::TensorMap& tensors, const Metadata& metadata, std::string& header,
                    std::uint64_t& data_bytes) {
    std::unordered_set<std::string_view> names;
    names.reserve(tensors.tensors.size());
    header.clear();
    header.push_back('{');
    bool first = true;
    if (!metadata.empty()) {
        Json meta = Json::object();
        for (const auto& [key, value] : metadata) {
            meta[key] = value;
        }
        header += "\"__metadata__\":";
        header += meta.dump();
        first = false;
    }
    std::uint64_t offset = 0;
    for (const sdk::Tensor& t : tensors.tensors) {
        if (t.name.empty()) {
            return invalid("a tensor has an empty name");
        }
        if (t.name == kMetadataKey) {
            return invalid("tensor name '__metadata__' is reserved");
        }
        if (!names.insert(t.name).second) {
            return invalid("duplicate tensor name " + quote_name(t.name));
        }
        std::uint64_t bytes = 0;
        if (!checked_bytes(t.shape, t.dtype, bytes) || bytes != t.data.size()) {
            return invalid("tensor " + quote_name(t.name) + " holds " +
                           std::to_string(t.data.size()) +
                           " bytes, which does not match its shape and dtype");
        }
        if (!first) {
            header.push_back(',');
        }
        first = false;
        header += Json(t.name).dump();
        header += ":{\"dtype\":\"";
        header += sdk::to_string(t.dtype);
        header += "\",\"shape\":[";
        for (std::size_t i = 0; i < t.shape.size(); ++i) {
            if (i != 0) {
                header.push_back(',');
            }
            header += std::to_string(t.shape[i]);
        }
        header += "],\"data_offsets\":[";
        header += std::to_string(offset);
        header.push_back(',');
        offset += bytes;
        header += std::to_string(offset);
        header += "]}";
    }
    header.push_back('}');
    // Pad with spaces so the data starts on an 8-byte boundary (8 + N is a multiple of 8).
    const std::size_t padded = (header.size() + 7) / 8 * 8;
    header.append(padded - header.size(), ' ');
    data_bytes = offset;
    return Status::ok();
}

void append_bytes(std::vector<unsigned char>& out, const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    out.insert(out.end(), p, p + size);
}

void append_bytes(std::string& out, const void* data, std::size_t size) {
    out.append(static_cast<const char*>(data), size);
}

template <typename Buffer>
Status encode_impl(const sdk::TensorMap& tensors, const Metadata& metadata, Buffer& out) {
    std::string header;
    std::uint64_t data_bytes = 0;
    Status st = build_header(tensors, metadata, header, data_bytes);
    if (!st) {
        return st;
    }
    const std::uint64_t header_len = header.size();
    out.clear();
    out.reserve(static_cast<std::size_t>(kLengthBytes + header_len + data_bytes));
    unsigned char len_bytes[kLengthBytes];
    std::memcpy(len_bytes, &header_len, kLengthBytes);  // little-endian host
    append_bytes(out, len_bytes, kLengthBytes);
    append_bytes(out, header.data(), header.size());
    for (const sdk::Tensor& t : tensors.tensors) {
        append_bytes(out, t.data.data(), t.data.size());
    }
    return Status::ok();
}

Status from_exception(const std::exception& e) {
    if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
        return Status(ErrorCode::ResourceExhausted, "safetensors: out of memory");
    }
    // nlohmann throws type_error 316 for a name or metadata value that is not valid UTF-8.
    return Status(ErrorCode::InvalidArgument, std::string("safetensors: ") + e.what());
}

}  // namespace

std::int64_t TensorView::numel() const noexcept {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
        n *= d;
    }
    return n;
}

const TensorView* SafetensorsView::find(std::string_view name) const noexcept {
    for (const TensorView& t : tensors) {
        if (t.name == name) {
            return &t;
        }
    }
    return nullptr;
}

Result<sdk::DType> parse_dtype(std::string_view name) noexcept {
    if (name == "F32") {
        return sdk::DType::F32;
    }
    if (name == "F64") {
        return sdk::DType::F64;
    }
    if (name == "I64") {
        return sdk::DType::I64;
    }
    if (name == "I32") {
        return sdk::DType::I32;
    }
    if (name == "U8") {
        return sdk::DType::U8;
    }
    try {
        return Error{ErrorCode::InvalidArgument, "unsupported dtype '" + std::string(name) +
                                                     "' (supported: F32, F64, I64, "
                                                     "I32, U8)"};
    } catch (...) {
        return Error{ErrorCode::ResourceExhausted, "out of memory"};
    }
}

Result<SafetensorsView> parse(std::span<const unsigned char> body,
                              const DecodeLimits& limits) noexcept {
    try {
        return parse_impl(body, limits);
    } catch (const std::exception& e) {
        return from_exception(e).error();
    }
}

Result<SafetensorsView> parse(std::string_view body, const DecodeLimits& limits) noexcept {
    return parse(as_bytes(body), limits);
}

Result<std::uint64_t> header_length(std::uint64_t body_size,
                                    std::span<const unsigned char, 8> prefix,
                                    const DecodeLimits& limits) noexcept {
    try {
        return check_prefix(body_size, prefix.data(), limits);
    } catch (const std::exception& e) {
        return from_exception(e).error();
    }
}

Result<HeaderLayout> parse_header(std::string_view header_json, std::uint64_t data_bytes) noexcept {
    try {
        if (header_json.size() < 2 || header_json.front() != '{') {
            return Error{ErrorCode::InvalidArgument, "safetensors: header does not start with '{'"};
        }
        return parse_header_impl(header_json, data_bytes);
    } catch (const std::exception& e) {
        return from_exception(e).error();
    }
}

Result<Decoded> decode(std::span<const unsigned char> body, const DecodeLimits& limits) noexcept {
    try {
        auto view = parse_impl(body, limits);
        if (!view) {
            return view.error();
        }
        Decoded out;
        out.metadata = std::move(view->metadata);
        out.tensors.tensors.reserve(view->tensors.size());
        for (TensorView& v : view->tensors) {
            sdk::Tensor t;
            t.name = std::move(v.name);
            t.dtype = v.dtype;
            t.shape = std::move(v.shape);
            t.data.assign(v.data.begin(), v.data.end());  // one pass: allocate and copy
            out.tensors.tensors.push_back(std::move(t));
        }
        return out;
    } catch (const std::exception& e) {
        return from_exception(e).error();
    }
}

Result<Decoded> decode(std::string_view body, const DecodeLimits& limits) noexcept {
    return decode(as_bytes(body), limits);
}

Status decode_into(std::span<const unsigned char> body, sdk::TensorMap& out, Metadata* metadata,
                   DecodeInto mode, const DecodeLimits& limits) noexcept {
    try {
        auto view = parse_impl(body, limits);
        if (!view) {
            return view.status();
        }
        if (mode == DecodeInto::MatchExisting) {
            if (view->tensors.size() != out.tensors.size()) {
                return invalid("body holds " + std::to_string(view->tensors.size()) +
                               " tensors, expected " + std::to_string(out.tensors.size()));
            }
            std::vector<std::pair<sdk::Tensor*, const TensorView*>> pairs;
            pairs.reserve(out.tensors.size());
            for (sdk::Tensor& t : out.tensors) {
                const TensorView* v = view->find(t.name);
                if (v == nullptr) {
                    return invalid("body has no tensor " + quote_name(t.name));
                }
                if (v->dtype != t.dtype || v->shape != t.shape) {
                    return invalid("tensor " + quote_name(t.name) +
                                   " differs in dtype or shape from the expected tensor");
                }
                if (t.data.size() != v->data.size()) {
                    return invalid("expected tensor " + quote_name(t.name) +
                                   " has a buffer of the wrong size");
                }
                pairs.emplace_back(&t, v);
            }
            for (auto& [t, v] : pairs) {
                if (!v->data.empty()) {
                    std::memcpy(t->data.data(), v->data.data(), v->data.size());
                }
            }
        } else {
            std::unordered_map<std::string_view, std::size_t> existing;
            existing.reserve(out.tensors.size());
            for (std::size_t i = 0; i < out.tensors.size(); ++i) {
                existing.emplace(out.tensors[i].name, i);
            }
            std::vector<sdk::Tensor> next;
            next.reserve(view->tensors.size());
            for (TensorView& v : view->tensors) {
                sdk::Tensor t;
                auto it = existing.find(v.name);
                if (it != existing.end()) {
                    t = std::move(out.tensors[it->second]);  // keeps its buffer's capacity
                    existing.erase(it);
                } else {
                    t.name = v.name;
                }
                t.dtype = v.dtype;
                t.shape = std::move(v.shape);
                t.data.resize(v.data.size());
                if (!v.data.empty()) {
                    std::memcpy(t.data.data(), v.data.data(), v.data.size());
                }
                next.push_back(std::move(t));
            }
            out.tensors = std::move(next);
        }
        if (metadata != nullptr) {
            *metadata = std::move(view->metadata);
        }
        return Status::ok();
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

Status decode_into(std::string_view body, sdk::TensorMap& out, Metadata* metadata, DecodeInto mode,
                   const DecodeLimits& limits) noexcept {
    return decode_into(as_bytes(body), out, metadata, mode, limits);
}

Result<std::size_t> encoded_size(const sdk::TensorMap& tensors, const Metadata& metadata) noexcept {
    try {
        std::string header;
        std::uint64_t data_bytes = 0;
        Status st = build_header(tensors, metadata, header, data_bytes);
        if (!st) {
            return st;
        }
        return static_cast<std::size_t>(kLengthBytes + header.size() + data_bytes);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

Status encode_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                   std::vector<unsigned char>& out) noexcept {
    try {
        return encode_impl(tensors, metadata, out);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

Status encode_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                   std::string& out) noexcept {
    try {
        return encode_impl(tensors, metadata, out);
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

Status encode_header_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                          std::string& out) noexcept {
    try {
        std::string header;
        std::uint64_t data_bytes = 0;
        Status st = build_header(tensors, metadata, header, data_bytes);
        if (!st) {
            return st;
        }
        const std::uint64_t header_len = header.size();
        out.resize(kLengthBytes);
        std::memcpy(out.data(), &header_len, kLengthBytes);  // little-endian host
        out += header;
        return Status::ok();
    } catch (const std::exception& e) {
        return from_exception(e);
    }
}

Result<std::vector<unsigned char>> encode(const sdk::TensorMap& tensors,
                                          const Metadata& metadata) noexcept {
    std::vector<unsigned char> out;
    Status st = encode_into(tensors, metadata, out);
    if (!st) {
        return st;
    }
    return out;
}

Result<std::string> encode_to_string(const sdk::TensorMap& tensors,
                                     const Metadata& metadata) noexcept {
    std::string out;
    Status st = encode_into(tensors, metadata, out);
    if (!st) {
        return st;
    }
    return out;
}

}  // namespace synergos::core::tensor
